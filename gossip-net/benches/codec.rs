//! Cost of the packet codec against bare AES-256-GCM, measured in the same run.
//!
//! For each datagram size (64, 512 and 1400 bytes, see [`SIZES`]) three functions run on
//! buffers of the same total datagram size:
//!
//! - `raw_aead`: aes-gcm's `Aes256Gcm` `encrypt_in_place_detached` + `decrypt_in_place_detached`
//!   of the whole buffer with a fixed nonce and the 8-byte label as AAD (the baseline);
//! - `seal_open`: `Keyring::seal_in_place` (fresh nonce from a `StdRng`, as the codec draws it)
//!   + `Keyring::open_in_place` of the datagram's body under its label;
//! - `codec`: `PacketCodec::encode_datagram` + `decode_datagram` of a whole envelope (bincode,
//!   label, sealing, opening, checks, and the decoded envelope's allocation).
//!
//! No encrypted datagram is as small as 64 bytes (the smallest, a `PullSync` without ids, takes
//! 86; a `PushMessage` at least 137), so the 64-byte group measures a `PushAck`, the smallest
//! datagram the protocol sends routinely (101 bytes); the others a `PushMessage` whose payload
//! makes the datagram exactly 512 and 1400 bytes. The actual sizes are printed, and all three
//! functions of a group use that actual size.
//!
//! `scripts/bench-ratios.sh` runs this bench and prints `codec / raw_aead` and
//! `seal_open / raw_aead` per size from criterion's `estimates.json` files.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gossip_core::{Envelope, Gossip, Message, MessageId, NodeId};
use gossip_crypto::{Key, Keyring};
use gossip_net::{LABEL_LEN, PacketCodec, Security};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Target datagram sizes, in bytes (label included).
const SIZES: [usize; 3] = [64, 512, 1400];

const KEY: [u8; 32] = [0x42; 32];

fn push(payload_len: usize) -> Envelope {
    Envelope {
        sender: NodeId([1; 32]),
        epoch: 1_700_000_000_000_000,
        counter: 7,
        message: Message::PushMessage(Gossip {
            id: MessageId([2; 16]),
            origin: NodeId([3; 32]),
            hop: 1,
            payload: Bytes::from(vec![0xAB; payload_len]),
        }),
    }
}

/// The envelope whose encrypted datagram is closest to `target` bytes (at or above the
/// smallest routine datagram), with its actual datagram size.
fn envelope_for(codec: &PacketCodec, target: usize) -> (Envelope, usize) {
    let ack = Envelope {
        sender: NodeId([1; 32]),
        epoch: 1_700_000_000_000_000,
        counter: 7,
        message: Message::PushAck {
            id: MessageId([2; 16]),
        },
    };
    let ack_len = codec.datagram_len(&ack).expect("encodable");
    if target <= ack_len {
        return (ack, ack_len);
    }
    // The datagram grows by one byte per payload byte, except where the length prefix widens
    // (250 -> 251 bytes); take the largest payload that does not overshoot.
    let mut best = (push(0), codec.datagram_len(&push(0)).expect("encodable"));
    for payload_len in 0..=target {
        let envelope = push(payload_len);
        let len = codec.datagram_len(&envelope).expect("encodable");
        if len > target {
            break;
        }
        best = (envelope, len);
    }
    best
}

fn bench_codec(c: &mut Criterion) {
    let keyring = Arc::new(Keyring::new(Key::from_bytes(KEY)));
    let aead = Aes256Gcm::new(&KEY.into());
    let mut codec = PacketCodec::new(Security::Encrypted(keyring.clone()), 1400)
        .expect("1400 is a valid maximum");

    for target in SIZES {
        let (envelope, size) = envelope_for(&codec, target);
        println!(
            "datagram_{target}: {} datagram of {size} bytes (target {target})",
            envelope.message.packet_type()
        );
        let mut group = c.benchmark_group(format!("datagram_{target}"));
        group.throughput(Throughput::Bytes(size as u64));

        // Baseline: bare AES-256-GCM over a buffer of the datagram's size.
        let label = [1u8, 1, 1, keyring.primary_id(), 0, 0, 0, 0];
        let nonce = Nonce::from([7u8; 12]);
        let mut buffer = vec![0x5Au8; size];
        group.bench_function("raw_aead", |b| {
            b.iter(|| {
                let tag = aead
                    .encrypt_in_place_detached(&nonce, black_box(&label), &mut buffer)
                    .expect("encrypt");
                aead.decrypt_in_place_detached(&nonce, &label, &mut buffer, &tag)
                    .expect("decrypt");
                black_box(&buffer);
            });
        });

        // The keyring's seal and open of a body under its label, same total size.
        let mut rng = StdRng::seed_from_u64(1);
        let mut datagram = vec![0x5Au8; size];
        datagram[..LABEL_LEN].copy_from_slice(&label);
        group.bench_function("seal_open", |b| {
            b.iter(|| {
                let (label, body) = datagram.split_at_mut(LABEL_LEN);
                keyring
                    .seal_in_place(&mut rng, black_box(label), body)
                    .expect("seal");
                let opened = keyring.open_in_place(label[3], label, body).expect("open");
                black_box(opened);
            });
        });

        // The whole codec: envelope -> datagram -> envelope.
        let mut buf = BytesMut::with_capacity(2048);
        group.bench_function("codec", |b| {
            b.iter(|| {
                buf.clear();
                let len = codec
                    .encode_datagram(black_box(&envelope), &mut buf)
                    .expect("encode");
                debug_assert_eq!(len, size);
                let decoded = codec.decode_datagram(&mut buf).expect("decode");
                black_box(decoded);
            });
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_codec
}
criterion_main!(benches);
