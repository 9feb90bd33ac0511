//! The packet codec through its public API: round trips, every drop reason, key rotation,
//! size limits, robustness, and `UdpFramed` on loopback.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use gossip_core::{Envelope, Gossip, Message, MessageId, NodeId, PacketType};
use gossip_crypto::{Key, Keyring};
use gossip_net::{
    DropReason, EncodeError, LABEL_LEN, PACKET_OVERHEAD, PacketCodec, Security, wire,
};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn key(byte: u8) -> Key {
    Key::from_bytes([byte; 32])
}

fn encrypted(key: Key) -> PacketCodec {
    PacketCodec::new(Security::Encrypted(Arc::new(Keyring::new(key))), 1400).unwrap()
}

fn push(payload_len: usize) -> Envelope {
    Envelope {
        sender: NodeId([1; 32]),
        epoch: 1_700_000_000_000_000,
        counter: 7,
        message: Message::PushMessage(Gossip {
            id: MessageId([2; 16]),
            origin: NodeId([3; 32]),
            hop: 4,
            payload: Bytes::from(vec![0xAB; payload_len]),
        }),
    }
}

fn all_messages() -> Vec<Message> {
    let gossip = Gossip {
        id: MessageId([9; 16]),
        origin: NodeId([8; 32]),
        hop: 300,
        payload: Bytes::from_static(b"hello"),
    };
    vec![
        Message::PushMessage(gossip.clone()),
        Message::PushAck {
            id: MessageId([7; 16]),
        },
        Message::PullSync {
            ids: vec![MessageId([1; 16]), MessageId([2; 16])],
        },
        Message::PullRequest {
            ids: vec![MessageId([3; 16])],
        },
        Message::PullResponse(gossip),
    ]
}

fn seal(codec: &mut PacketCodec, envelope: &Envelope) -> BytesMut {
    let mut out = BytesMut::new();
    codec.encode(envelope, &mut out).unwrap();
    out
}

fn decode(codec: &mut PacketCodec, datagram: &[u8]) -> Result<Envelope, DropReason> {
    let mut buf = BytesMut::from(datagram);
    let decoded = codec
        .decode(&mut buf)
        .unwrap()
        .expect("a datagram yields an item");
    assert!(
        buf.is_empty(),
        "the decoder must consume the whole datagram"
    );
    assert_eq!(decoded.len, datagram.len());
    decoded.result
}

/// Seals `plaintext` under `label` exactly as a node would, for crafting datagrams whose
/// label and content disagree but which still authenticate.
fn seal_raw(keyring: &Keyring, packet_type: u8, plaintext: &[u8]) -> Vec<u8> {
    let body_len = (12 + plaintext.len() + 16) as u32;
    let mut label = [1, packet_type, 1, keyring.primary_id(), 0, 0, 0, 0];
    label[4..].copy_from_slice(&body_len.to_be_bytes());
    let mut datagram = label.to_vec();
    datagram.extend_from_slice(&[0; 12]);
    datagram.extend_from_slice(plaintext);
    datagram.extend_from_slice(&[0; 16]);
    let mut rng = rand::rng();
    keyring
        .seal_in_place(&mut rng, &label, &mut datagram[LABEL_LEN..])
        .unwrap();
    datagram
}

#[test]
fn every_message_round_trips_encrypted_and_plaintext() {
    for message in all_messages() {
        let envelope = Envelope {
            sender: NodeId([5; 32]),
            epoch: 1_700_000_000_000_000,
            counter: 7,
            message,
        };
        let mut codec = encrypted(key(1));
        let datagram = seal(&mut codec, &envelope);
        assert_eq!(datagram[1], envelope.message.packet_type().to_byte());
        assert_eq!(datagram.len(), codec.datagram_len(&envelope).unwrap());
        assert_eq!(decode(&mut codec, &datagram), Ok(envelope.clone()));

        let mut plain = PacketCodec::new(Security::Plaintext, 1400).unwrap();
        let datagram = seal(&mut plain, &envelope);
        assert_eq!(datagram[2], 0);
        assert_eq!(decode(&mut plain, &datagram), Ok(envelope));
    }
}

#[test]
fn label_layout_matches_the_wire_document() {
    let mut codec = encrypted(key(1));
    let envelope = push(10);
    let datagram = seal(&mut codec, &envelope);
    assert_eq!(datagram[0], 1, "version");
    assert_eq!(datagram[1], PacketType::PushMessage.to_byte());
    assert_eq!(datagram[2], 1, "AES-256-GCM");
    assert_eq!(datagram[3], key(1).id());
    let body_len = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
    assert_eq!(body_len as usize, datagram.len() - 8);
    let plaintext_len = wire::encoded_len(&envelope).unwrap();
    assert_eq!(datagram.len(), plaintext_len + PACKET_OVERHEAD);
}

#[test]
fn two_seals_of_one_envelope_differ() {
    let mut codec = encrypted(key(1));
    let a = seal(&mut codec, &push(10));
    let b = seal(&mut codec, &push(10));
    assert_ne!(a, b, "each datagram needs a fresh nonce");
}

#[test]
fn tampered_label_is_unauthenticated() {
    let mut codec = encrypted(key(1));
    let mut datagram = seal(&mut codec, &push(10)).to_vec();
    datagram[1] = PacketType::PullResponse.to_byte(); // still a valid type: only the tag can tell
    assert_eq!(
        decode(&mut codec, &datagram),
        Err(DropReason::Unauthenticated)
    );
}

#[test]
fn tampered_body_is_unauthenticated() {
    let mut codec = encrypted(key(1));
    for position in [LABEL_LEN, LABEL_LEN + 12, LABEL_LEN + 30] {
        let mut datagram = seal(&mut codec, &push(40)).to_vec();
        datagram[position] ^= 0x01;
        assert_eq!(
            decode(&mut codec, &datagram),
            Err(DropReason::Unauthenticated)
        );
    }
    let mut datagram = seal(&mut codec, &push(40)).to_vec();
    let last = datagram.len() - 1;
    datagram[last] ^= 0x80; // the tag
    assert_eq!(
        decode(&mut codec, &datagram),
        Err(DropReason::Unauthenticated)
    );
}

#[test]
fn wrong_key_with_a_known_id_is_unauthenticated() {
    // Find a different key whose id collides with key(1)'s, so the receiver tries it.
    let target = key(1).id();
    let colliding = (0u32..100_000)
        .map(|i| {
            let mut bytes = [0x55; 32];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            Key::from_bytes(bytes)
        })
        .find(|k| k.id() == target)
        .expect("a colliding key id within 100,000 tries");
    let mut sender = encrypted(colliding);
    let mut receiver = encrypted(key(1));
    let datagram = seal(&mut sender, &push(10));
    assert_eq!(
        decode(&mut receiver, &datagram),
        Err(DropReason::Unauthenticated)
    );
}

#[test]
fn wrong_passphrase_is_an_unknown_key_id() {
    let mut sender = PacketCodec::new(
        Security::Encrypted(Arc::new(
            Keyring::from_passphrase("wrong", "cluster-a").unwrap(),
        )),
        1400,
    )
    .unwrap();
    let right = Keyring::from_passphrase("correct horse", "cluster-a").unwrap();
    assert_ne!(
        right.primary_id(),
        Key::from_passphrase("wrong", "cluster-a").unwrap().id()
    );
    let mut receiver = PacketCodec::new(Security::Encrypted(Arc::new(right)), 1400).unwrap();
    let datagram = seal(&mut sender, &push(10));
    let reason = decode(&mut receiver, &datagram).unwrap_err();
    assert_eq!(reason, DropReason::UnknownKeyId);
    assert!(reason.is_auth());
}

#[test]
fn unknown_key_id_is_rejected_before_decryption() {
    let mut codec = encrypted(key(1));
    let mut datagram = seal(&mut codec, &push(10)).to_vec();
    datagram[3] = datagram[3].wrapping_add(1);
    assert_eq!(decode(&mut codec, &datagram), Err(DropReason::UnknownKeyId));
}

#[test]
fn plaintext_to_an_encrypted_node_is_refused_and_vice_versa() {
    let mut plain = PacketCodec::new(Security::Plaintext, 1400).unwrap();
    let mut secure = encrypted(key(1));
    let datagram = seal(&mut plain, &push(10));
    assert_eq!(
        decode(&mut secure, &datagram),
        Err(DropReason::CipherMismatch)
    );
    let datagram = seal(&mut secure, &push(10));
    assert_eq!(
        decode(&mut plain, &datagram),
        Err(DropReason::CipherMismatch)
    );
}

#[test]
fn unknown_type_cipher_and_version_bytes_are_rejected() {
    let mut codec = encrypted(key(1));
    let good = seal(&mut codec, &push(10)).to_vec();
    let mut bad = good.clone();
    bad[1] = 0;
    assert_eq!(decode(&mut codec, &bad), Err(DropReason::UnknownType));
    bad[1] = 200;
    assert_eq!(decode(&mut codec, &bad), Err(DropReason::UnknownType));
    let mut bad = good.clone();
    bad[2] = 7;
    assert_eq!(decode(&mut codec, &bad), Err(DropReason::UnknownCipher));
    let mut bad = good;
    bad[0] = 2;
    assert_eq!(
        decode(&mut codec, &bad),
        Err(DropReason::UnsupportedVersion)
    );
}

#[test]
fn truncated_datagrams_are_rejected() {
    let mut codec = encrypted(key(1));
    let good = seal(&mut codec, &push(10)).to_vec();
    for len in 1..LABEL_LEN {
        assert_eq!(decode(&mut codec, &good[..len]), Err(DropReason::Truncated));
    }
    // A consistent label over a body too short for nonce and tag.
    let mut short = good[..LABEL_LEN].to_vec();
    short[4..8].copy_from_slice(&20u32.to_be_bytes());
    short.extend_from_slice(&[0; 20]);
    assert_eq!(decode(&mut codec, &short), Err(DropReason::Truncated));
}

#[test]
fn length_mismatch_is_rejected() {
    let mut codec = encrypted(key(1));
    let good = seal(&mut codec, &push(10)).to_vec();
    let mut bad = good.clone();
    bad.push(0); // one byte more than the label says
    assert_eq!(decode(&mut codec, &bad), Err(DropReason::LengthMismatch));
    let mut bad = good;
    bad.pop(); // one byte less
    assert_eq!(decode(&mut codec, &bad), Err(DropReason::LengthMismatch));
}

#[test]
fn oversize_datagrams_are_rejected_by_the_receiver() {
    let mut big =
        PacketCodec::new(Security::Encrypted(Arc::new(Keyring::new(key(1)))), 9000).unwrap();
    let mut small = encrypted(key(1));
    let datagram = seal(&mut big, &push(2000));
    assert!(datagram.len() > 1400);
    assert_eq!(decode(&mut small, &datagram), Err(DropReason::Oversize));
    assert_eq!(decode(&mut big, &datagram), Ok(push(2000)));
}

#[test]
fn type_mismatch_and_malformed_plaintext_are_rejected_after_authentication() {
    let keyring = Keyring::new(key(1));
    let mut codec = encrypted(key(1));
    let mut plaintext = Vec::new();
    wire::encode_envelope(&push(10), &mut plaintext).unwrap();
    let datagram = seal_raw(&keyring, PacketType::PullSync.to_byte(), &plaintext);
    assert_eq!(decode(&mut codec, &datagram), Err(DropReason::TypeMismatch));

    let datagram = seal_raw(&keyring, PacketType::PushMessage.to_byte(), b"\xff\xff\xff");
    assert_eq!(decode(&mut codec, &datagram), Err(DropReason::Malformed));

    let mut trailing = plaintext.clone();
    trailing.push(0);
    let datagram = seal_raw(&keyring, PacketType::PushMessage.to_byte(), &trailing);
    assert_eq!(decode(&mut codec, &datagram), Err(DropReason::Malformed));

    let datagram = seal_raw(&keyring, PacketType::PushMessage.to_byte(), &plaintext);
    assert_eq!(decode(&mut codec, &datagram), Ok(push(10)));
}

#[test]
fn key_rotation_keeps_old_packets_open_while_the_new_key_seals() {
    let old = Arc::new(Keyring::new(key(1)));
    let mut rotated_ring = Keyring::new(key(1));
    rotated_ring.rotate(key(2));
    let rotated = Arc::new(rotated_ring);

    let mut old_node = PacketCodec::new(Security::Encrypted(old), 1400).unwrap();
    let mut new_node = PacketCodec::new(Security::Encrypted(rotated), 1400).unwrap();

    let from_old = seal(&mut old_node, &push(10));
    assert_eq!(
        decode(&mut new_node, &from_old),
        Ok(push(10)),
        "old key still opens"
    );

    let from_new = seal(&mut new_node, &push(10));
    assert_eq!(from_new[3], key(2).id(), "the new key seals");
    assert_eq!(decode(&mut new_node, &from_new), Ok(push(10)));
    assert_eq!(
        decode(&mut old_node, &from_new),
        Err(DropReason::UnknownKeyId)
    );

    // Step one of a rotation: the old node accepts the new key before anyone seals with it.
    let accepting = Arc::new(Keyring::new(key(1)).with_accepted(key(2)));
    let mut accepting_node = PacketCodec::new(Security::Encrypted(accepting), 1400).unwrap();
    assert_eq!(decode(&mut accepting_node, &from_new), Ok(push(10)));
}

#[test]
fn a_payload_that_cannot_fit_is_refused_naming_both_sizes() {
    let mut codec = encrypted(key(1));
    let max_payload = codec.max_envelope_len() - gossip_core::message::wire_bound::GOSSIP_OVERHEAD;
    let fits = push(max_payload);
    let mut out = BytesMut::new();
    let size = codec.encode_datagram(&fits, &mut out).unwrap();
    assert!(
        size <= 1400,
        "the core's bound keeps a maximal payload inside the datagram"
    );

    let too_big = push(1400);
    let mut out = BytesMut::from(&b"keep"[..]);
    let err = codec.encode_datagram(&too_big, &mut out).unwrap_err();
    let expected = codec.datagram_len(&too_big).unwrap();
    match err {
        EncodeError::TooLarge { size, max } => {
            assert_eq!((size, max), (expected, 1400));
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(&out[..], b"keep", "a refused encode writes nothing");
    let text = codec
        .encode_datagram(&too_big, &mut out)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains(&expected.to_string()) && text.contains("1400"),
        "{text}"
    );
}

#[test]
fn max_datagram_is_validated() {
    assert!(PacketCodec::new(Security::Plaintext, 100).is_err());
    assert!(PacketCodec::new(Security::Plaintext, 65_508).is_err());
    assert!(PacketCodec::new(Security::Plaintext, 65_507).is_ok());
}

fn arb_gossip() -> impl Strategy<Value = Gossip> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..1300),
    )
        .prop_map(|(id, origin, hop, payload)| Gossip {
            id: MessageId(id),
            origin: NodeId(origin),
            hop,
            payload: Bytes::from(payload),
        })
}

fn arb_piece_index() -> impl Strategy<Value = gossip_core::blob::PieceIndex> {
    (any::<u8>(), any::<u32>())
        .prop_map(|(level, index)| gossip_core::blob::PieceIndex { level, index })
}

fn arb_blob_message() -> impl Strategy<Value = Message> {
    use gossip_core::blob::{BlobHave, BlobId, BlobMeta, BlobPiece, BlobRequest, BlobWant};
    prop_oneof![
        any::<[u8; 32]>().prop_map(|b| Message::BlobWant(BlobWant { blob: BlobId(b) })),
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<u32>(),
            any::<[u8; 32]>()
        )
            .prop_map(|(b, size, chunk_size, root)| Message::BlobHave(BlobHave {
                blob: BlobId(b),
                meta: BlobMeta {
                    size,
                    chunk_size,
                    root,
                },
            })),
        (
            any::<[u8; 32]>(),
            proptest::collection::vec(arb_piece_index(), 0..300)
        )
            .prop_map(|(b, pieces)| Message::BlobRequest(BlobRequest {
                blob: BlobId(b),
                pieces,
            })),
        (
            any::<[u8; 32]>(),
            arb_piece_index(),
            proptest::collection::vec(any::<u8>(), 0..2000)
        )
            .prop_map(|(b, piece, data)| Message::BlobPiece(BlobPiece {
                blob: BlobId(b),
                piece,
                data: Bytes::from(data),
            })),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    let ids = proptest::collection::vec(any::<[u8; 16]>().prop_map(MessageId), 0..80);
    prop_oneof![
        arb_gossip().prop_map(Message::PushMessage),
        any::<[u8; 16]>().prop_map(|id| Message::PushAck { id: MessageId(id) }),
        ids.clone().prop_map(|ids| Message::PullSync { ids }),
        ids.prop_map(|ids| Message::PullRequest { ids }),
        arb_gossip().prop_map(Message::PullResponse),
        arb_blob_message(),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut codec = encrypted(key(1));
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = codec.decode(&mut buf);
        prop_assert!(buf.is_empty());
    }

    /// A plaintext node reaches the envelope decoder with attacker-chosen bytes: it must
    /// reject them without panicking or allocating past the limit.
    #[test]
    fn arbitrary_plaintext_envelopes_never_panic(kind in prop_oneof![1u8..=5, 23u8..=26], body in proptest::collection::vec(any::<u8>(), 0..1392)) {
        let mut datagram = vec![1, kind, 0, 0];
        datagram.extend_from_slice(&(body.len() as u32).to_be_bytes());
        datagram.extend_from_slice(&body);
        let codec = PacketCodec::new(Security::Plaintext, 1400).unwrap();
        let _ = codec.decode_datagram(&mut datagram);
    }

    #[test]
    fn envelopes_round_trip_within_the_core_size_bound(
        sender in any::<[u8; 32]>(),
        epoch in any::<u64>(),
        counter in any::<u64>(),
        message in arb_message(),
    ) {
        let envelope = Envelope { sender: NodeId(sender), epoch, counter, message };
        let exact = wire::encoded_len(&envelope).unwrap();
        prop_assert!(exact <= envelope.encoded_len_bound(), "{} > {}", exact, envelope.encoded_len_bound());
        let mut codec = PacketCodec::new(Security::Encrypted(Arc::new(Keyring::new(key(3)))), 65_507).unwrap();
        let mut out = BytesMut::new();
        let len = codec.encode_datagram(&envelope, &mut out).unwrap();
        prop_assert_eq!(len, exact + PACKET_OVERHEAD);
        prop_assert_eq!(codec.decode_datagram(&mut out), Ok(envelope));
    }
}

#[tokio::test]
async fn udp_framed_carries_envelopes_and_skips_bad_datagrams() {
    use futures::{SinkExt, StreamExt};
    use tokio::net::UdpSocket;
    use tokio_util::udp::UdpFramed;

    let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = receiver.local_addr().unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    let mut inbound = UdpFramed::new(receiver, encrypted(key(1)));
    let mut outbound = UdpFramed::new(sender, encrypted(key(1)));

    raw.send_to(b"\x01\x01garbage", receiver_addr)
        .await
        .unwrap();
    raw.send_to(&[1, 1, 1, 1, 0, 0, 0, 0], receiver_addr)
        .await
        .unwrap();
    for message in all_messages() {
        let envelope = Envelope {
            sender: NodeId([4; 32]),
            epoch: 1_700_000_000_000_000,
            counter: 7,
            message,
        };
        outbound.send((envelope, receiver_addr)).await.unwrap();
    }

    let mut results = Vec::new();
    while results.len() < 2 + all_messages().len() {
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), inbound.next())
            .await
            .expect("datagrams arrive on loopback")
            .expect("the stream stays open")
            .unwrap();
        results.push(next.0.result);
    }
    assert_eq!(results[0], Err(DropReason::UnknownCipher)); // byte 2 is b'g'
    assert_eq!(results[1], Err(DropReason::Truncated));
    let delivered: Vec<Message> = results[2..]
        .iter()
        .map(|r| r.clone().unwrap().message)
        .collect();
    assert_eq!(delivered, all_messages());
}

proptest! {
    /// Every message decoder (each of the 13 variants after a valid 48-byte envelope header)
    /// on arbitrary field bytes: no panic, and whatever decodes re-encodes within the core's
    /// size bound and round-trips. The `fuzz/` crate's `message` target does the same for
    /// minutes at a time (`scripts/fuzz.sh`).
    #[test]
    fn arbitrary_fields_of_every_message_never_panic(
        variant in 0u8..13,
        header in any::<[u8; 48]>(),
        fields in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        let mut plaintext = header.to_vec();
        plaintext.push(variant);
        plaintext.extend_from_slice(&fields);
        if let Ok(envelope) = wire::decode_envelope(&plaintext) {
            let mut again = Vec::new();
            wire::encode_envelope(&envelope, &mut again).unwrap();
            prop_assert!(again.len() <= envelope.encoded_len_bound());
            prop_assert_eq!(wire::decode_envelope(&again).unwrap(), envelope);
        }
    }

    /// A plaintext node's whole decode path for every packet type, and an encrypted node's
    /// authenticated path (a body sealed properly under its key, as a key holder could send):
    /// arbitrary bodies are dropped as malformed or mistyped, never panic.
    #[test]
    fn arbitrary_bodies_of_every_type_never_panic(
        type_index in 0usize..13,
        body in proptest::collection::vec(any::<u8>(), 0..1300),
    ) {
        let packet_type = gossip_core::PacketType::ALL[type_index];
        let mut datagram = vec![1, packet_type.to_byte(), 0, 0];
        datagram.extend_from_slice(&(body.len() as u32).to_be_bytes());
        datagram.extend_from_slice(&body);
        let plain = PacketCodec::new(Security::Plaintext, 1400).unwrap();
        if let Ok(envelope) = plain.decode_datagram(&mut datagram) {
            prop_assert_eq!(envelope.message.packet_type(), packet_type);
        }

        let keyring = Keyring::new(key(9));
        let label = gossip_net::Label {
            packet_type,
            cipher: gossip_net::Cipher::Aes256Gcm,
            key_id: keyring.primary_id(),
            body_len: (body.len() + gossip_crypto::SEAL_OVERHEAD) as u32,
        }
        .to_bytes();
        let mut sealed = label.to_vec();
        sealed.extend_from_slice(&[0; gossip_crypto::NONCE_LEN]);
        sealed.extend_from_slice(&body);
        sealed.extend_from_slice(&[0; gossip_crypto::TAG_LEN]);
        keyring.seal_in_place(&mut rand::rng(), &label, &mut sealed[LABEL_LEN..]).unwrap();
        let codec = PacketCodec::new(Security::Encrypted(Arc::new(keyring)), 1400).unwrap();
        match codec.decode_datagram(&mut sealed) {
            Ok(envelope) => prop_assert_eq!(envelope.message.packet_type(), packet_type),
            Err(reason) => prop_assert!(
                matches!(reason, DropReason::Malformed | DropReason::TypeMismatch),
                "{:?}", reason
            ),
        }
    }
}
