//! Blob transfer throughput over loopback against the raw UDP rate, measured in the same run.
//!
//! Both functions of the group `blob_transfer` move [`BLOB_SIZE`] bytes from one socket on
//! 127.0.0.1 to another and report criterion throughput in bytes:
//!
//! - `raw_udp` (the baseline): two blocking `std::net::UdpSocket`s on two threads; the
//!   sender writes the bytes in datagrams of 1,400 bytes, [`RAW_WINDOW`] at a time, and waits
//!   for a 1-byte acknowledgement of each window from the receiver (a window keeps the
//!   receive buffer from overflowing, so nothing is lost and every byte is counted once): the
//!   rate the kernel's loopback gives a sender and a receiver that do nothing else;
//! - `blob_fetch`: two nodes (the whole actor stack, AES-256-GCM, 1,400-byte datagrams,
//!   in-memory stores) in one actix system; per iteration node A adds a fresh blob (not
//!   timed) and node B's `get_blob` is timed: want, have, windowed requests, pieces verified
//!   against the hash tree, stored, the whole blob hashed, and read back.
//!
//! `scripts/bench-blobs.sh` runs it and prints both rates and `blob_fetch / raw_udp`.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::{Node, NodeHandle, StaticDiscovery};

/// Bytes moved per iteration: 2 MiB (1,639 chunks of 1,280 bytes).
const BLOB_SIZE: usize = 2 << 20;
/// Datagram size of the raw baseline, in bytes.
const RAW_DATAGRAM: usize = 1_400;
/// Datagrams per acknowledged window of the raw baseline (about 45 KB).
const RAW_WINDOW: usize = 32;

fn raw_udp_transfer(bytes: usize) -> Duration {
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let receiver_addr = receiver.local_addr().expect("addr");
    let sender_addr = sender.local_addr().expect("addr");
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sender
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let datagrams = bytes.div_ceil(RAW_DATAGRAM);
    let started = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 2_048];
        let mut received = 0;
        let mut in_window = 0;
        while received < datagrams {
            if receiver.recv(&mut buf).is_err() {
                break;
            }
            received += 1;
            in_window += 1;
            if in_window == RAW_WINDOW || received == datagrams {
                in_window = 0;
                let _ = receiver.send_to(&[1], sender_addr);
            }
        }
        received
    });
    let payload = [0xa5u8; RAW_DATAGRAM];
    let mut sent = 0;
    let mut ack = [0u8; 1];
    while sent < datagrams {
        let window = RAW_WINDOW.min(datagrams - sent);
        for _ in 0..window {
            sender.send_to(&payload, receiver_addr).expect("send");
        }
        sent += window;
        if sender.recv(&mut ack).is_err() {
            break;
        }
    }
    let received = reader.join().expect("reader");
    let elapsed = started.elapsed();
    assert_eq!(received, datagrams, "raw UDP lost datagrams");
    elapsed
}

fn start_pair(system: &actix::SystemRunner) -> (NodeHandle, NodeHandle) {
    system.block_on(async {
        let keyring = || Keyring::new(Key::from_bytes([3; 32]));
        let a = Node::builder()
            .bind("127.0.0.1:0".parse().expect("addr"))
            .keyring(keyring())
            .discovery(StaticDiscovery::new([]))
            .start()
            .await
            .expect("node a");
        let b = Node::builder()
            .bind("127.0.0.1:0".parse().expect("addr"))
            .keyring(keyring())
            .discovery(StaticDiscovery::new([a.local_addr()]))
            .start()
            .await
            .expect("node b");
        (a, b)
    })
}

fn bench_blob_transfer(c: &mut Criterion) {
    let mut group = c.benchmark_group("blob_transfer");
    group.throughput(Throughput::Bytes(BLOB_SIZE as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.warm_up_time(Duration::from_secs(2));

    group.bench_function("raw_udp", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| raw_udp_transfer(BLOB_SIZE)).sum());
    });

    let system = actix::System::new();
    let (a, b) = start_pair(&system);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    group.bench_function("blob_fetch", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // A fresh blob per fetch: the first 8 bytes number it.
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let mut bytes = vec![0x5au8; BLOB_SIZE];
                bytes[..8].copy_from_slice(&n.to_be_bytes());
                let bytes = Bytes::from(bytes);
                total += system.block_on(async {
                    let id = a.add_blob(bytes.clone()).await.expect("add");
                    let started = Instant::now();
                    let copy = b.get_blob(id).await.expect("fetch");
                    let elapsed = started.elapsed();
                    assert_eq!(copy.len(), BLOB_SIZE);
                    elapsed
                });
            }
            total
        });
    });
    group.finish();
    system.block_on(async {
        let _ = a.shutdown().await;
        let _ = b.shutdown().await;
    });
}

criterion_group!(benches, bench_blob_transfer);
criterion_main!(benches);
