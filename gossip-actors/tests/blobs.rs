//! Blobs between real nodes over loopback UDP (127.0.0.1): a 10 MiB blob reaches nine
//! nodes, a fetch completes through 20 % datagram loss, a peer that serves corrupt pieces is
//! caught, and a blob referenced by a followed feed is fetched within the configured size.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gossip_actors::core::blob::{
    BlobConfig, BlobHave, BlobId, BlobMessage, BlobPiece, Layout, PieceIndex, build, reference,
};
use gossip_actors::core::{Envelope, Message, NodeId};
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::net::{PacketCodec, Security};
use gossip_actors::{FaultInjection, Node, NodeConfig, NodeEvent, NodeHandle, StaticDiscovery};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;

fn keyring() -> Keyring {
    Keyring::new(Key::from_bytes([9; 32]))
}

fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill(&mut v[..]);
    Bytes::from(v)
}

/// `n` nodes on 127.0.0.1, each with every other as a static seed.
async fn cluster(n: usize, config: NodeConfig, fault: FaultInjection) -> Vec<NodeHandle> {
    cluster_of(n, |_| config.clone(), fault).await
}

/// As [`cluster`], node `i` configured by `config(i)`.
async fn cluster_of(
    n: usize,
    config: impl Fn(usize) -> NodeConfig,
    fault: FaultInjection,
) -> Vec<NodeHandle> {
    let sockets: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    drop(sockets);
    let mut nodes = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let seeds: Vec<SocketAddr> = addrs.iter().copied().filter(|a| a != addr).collect();
        let node = Node::builder()
            .bind(*addr)
            .keyring(keyring())
            .discovery(StaticDiscovery::new(seeds))
            .config(config(i))
            .fault_injection(fault)
            .rng_seed(100 + i as u64)
            .start()
            .await
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
        nodes.push(node);
    }
    // The state protocol's gossip makes every node known by id (feed trees need ids).
    for node in &nodes {
        for addr in &addrs {
            if *addr != node.local_addr() {
                node.add_peer(*addr).await.unwrap();
            }
        }
    }
    nodes
}

async fn shutdown(nodes: &[NodeHandle]) {
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[actix::test]
async fn ten_mebibytes_added_at_one_node_reach_nine_others_over_loopback() {
    let config = NodeConfig::default();
    let nodes = cluster(10, config.clone(), FaultInjection::default()).await;
    let bytes = random_bytes(10 << 20, 1);
    let id = nodes[0].add_blob(bytes.clone()).await.unwrap();
    assert_eq!(id, BlobId::of(&bytes));
    assert!(nodes[0].has_blob(id).await.unwrap());
    assert!(!nodes[1].has_blob(id).await.unwrap());

    let mut events = nodes[1].subscribe();
    let fetches = nodes[1..].iter().map(|node| {
        let node = node.clone();
        async move { node.get_blob(id).await }
    });
    let started = std::time::Instant::now();
    let copies = tokio::time::timeout(Duration::from_secs(600), futures::future::join_all(fetches))
        .await
        .expect("nine fetches of 10 MiB finish within 10 minutes");
    if std::env::var_os("GOSSIP_DEBUG").is_some() {
        eprintln!("nine fetches took {:?}", started.elapsed());
    }
    for (i, copy) in copies.into_iter().enumerate() {
        let copy = copy.unwrap_or_else(|e| panic!("node {}: {e}", i + 1));
        assert_eq!(
            BlobId::of(&copy),
            id,
            "node {} holds a copy that hashes equal",
            i + 1
        );
        assert!(nodes[i + 1].has_blob(id).await.unwrap());
    }
    // Progress was reported while fetching, and completion at the end.
    let mut progress = 0;
    let mut complete = false;
    while let Ok(event) = events.try_recv() {
        match event {
            NodeEvent::BlobProgress { blob, bytes, size } if blob == id => {
                assert!(bytes <= size);
                progress += 1;
            }
            NodeEvent::BlobComplete { blob, size } if blob == id => {
                assert_eq!(size, 10 << 20);
                complete = true;
            }
            _ => {}
        }
    }
    assert!(progress >= 2 && complete, "{progress} progress events");
    if std::env::var_os("GOSSIP_DEBUG").is_some() {
        for (i, node) in nodes.iter().enumerate() {
            let stats = node.stats().await.unwrap();
            eprintln!("node {i}: {:?}", stats.blobs);
            eprintln!(
                "  sent {} would_block {} full {} drops {:?}",
                stats.transport.datagrams_sent,
                stats.transport.send_would_block,
                stats.transport.mailbox_full,
                stats.transport.drops
            );
        }
    }
    // No fetching node held more pieces than the bound, whatever the blob's size.
    let chunk = Layout::new(10 << 20, 1_280).unwrap().chunk_size() as usize;
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let stats = node.stats().await.unwrap().blobs;
        assert!(
            stats.core.peak_held_pieces <= config.blobs.max_held_pieces,
            "node {i}"
        );
        assert!(
            stats.core.peak_held_bytes <= config.blobs.max_held_pieces * chunk,
            "node {i}"
        );
        assert_eq!(stats.core.held_pieces, 0, "node {i}");
        assert_eq!(stats.core.pieces_corrupt, 0, "node {i}");
        assert_eq!(stats.core.fetches_completed, 1, "node {i}");
    }
    let served: u64 = {
        let mut total = 0;
        for node in &nodes {
            total += node.stats().await.unwrap().blobs.core.pieces_served;
        }
        total
    };
    let pieces = Layout::new(10 << 20, 1_280).unwrap().total_pieces();
    assert!(
        served >= 9 * pieces,
        "{served} pieces served for {pieces} × 9"
    );
    shutdown(&nodes).await;
}

#[actix::test]
async fn a_fetch_completes_through_twenty_percent_datagram_loss() {
    let nodes = cluster(
        3,
        NodeConfig::default(),
        FaultInjection {
            loss: 0.2,
            ..FaultInjection::default()
        },
    )
    .await;
    let bytes = random_bytes(256 << 10, 2);
    let id = nodes[0].add_blob(bytes.clone()).await.unwrap();
    for node in &nodes[1..] {
        let copy = tokio::time::timeout(Duration::from_secs(300), node.get_blob(id))
            .await
            .expect("finishes")
            .unwrap();
        assert_eq!(copy, bytes);
    }
    let mut lost = 0;
    let mut retried = 0;
    for node in &nodes {
        let stats = node.stats().await.unwrap();
        lost += stats.transport.injected_loss;
        retried += stats.blobs.core.pieces_timed_out;
    }
    assert!(lost > 50, "{lost} datagrams lost");
    assert!(retried > 0, "lost pieces were retried");
    shutdown(&nodes).await;
}

/// A peer of our own on a raw socket: it answers every want for one of `blobs` with the
/// honest layout and every request with the right pieces, but flips a byte of every data
/// chunk.
async fn corrupting_peer(socket: UdpSocket, id: NodeId, blobs: Vec<Bytes>) {
    let chunk = BlobConfig::default().chunk_size();
    let held: std::collections::BTreeMap<BlobId, _> = blobs
        .iter()
        .map(|bytes| {
            let built = build(bytes, chunk).unwrap();
            let pieces: std::collections::BTreeMap<PieceIndex, Bytes> =
                built.pieces.iter().cloned().collect();
            (built.id, (built.meta, pieces))
        })
        .collect();
    let mut codec = PacketCodec::new(Security::Encrypted(Arc::new(keyring())), 1400).unwrap();
    // One boot epoch and a fresh packet counter per datagram, as a real node stamps them.
    let epoch = 1;
    let mut counter = 0u64;
    let mut buf = vec![0u8; 65_536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline {
        let Ok(Ok((len, from))) =
            tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await
        else {
            continue;
        };
        let Ok(envelope) = codec.decode_datagram(&mut buf[..len].to_vec()) else {
            continue;
        };
        let replies: Vec<Message> = match envelope.message {
            Message::BlobWant(want) => held
                .get(&want.blob)
                .map(|(meta, _)| {
                    Message::BlobHave(BlobHave {
                        blob: want.blob,
                        meta: *meta,
                    })
                })
                .into_iter()
                .collect(),
            Message::BlobRequest(request) => {
                let Some((_, pieces)) = held.get(&request.blob) else {
                    continue;
                };
                request
                    .pieces
                    .iter()
                    .filter_map(|p| pieces.get(p).map(|data| (*p, data.clone())))
                    .map(|(piece, data)| {
                        let mut data = data.to_vec();
                        if piece.level == 0 && !data.is_empty() {
                            data[0] ^= 0xff;
                        }
                        BlobMessage::Piece(BlobPiece {
                            blob: request.blob,
                            piece,
                            data: Bytes::from(data),
                        })
                        .into_message()
                    })
                    .collect()
            }
            _ => vec![],
        };
        for message in replies {
            let mut out = BytesMut::new();
            counter += 1;
            let envelope = Envelope {
                sender: id,
                epoch,
                counter,
                message,
            };
            if codec.encode_datagram(&envelope, &mut out).is_ok() {
                let _ = socket.send_to(&out, from).await;
            }
        }
    }
}

#[actix::test]
async fn a_peer_serving_corrupt_chunks_is_caught_counted_and_avoided() {
    let bytes = random_bytes(200_000, 3);
    let again = random_bytes(100_000, 9);
    let liar_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let liar_addr = liar_socket.local_addr().unwrap();
    let liar_id = NodeId([0xee; 32]);
    let liar = tokio::spawn(corrupting_peer(
        liar_socket,
        liar_id,
        vec![bytes.clone(), again.clone()],
    ));

    // The honest holder starts later, so the fetcher meets the liar first.
    let fetcher = Node::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .keyring(keyring())
        .discovery(StaticDiscovery::new([liar_addr]))
        .start()
        .await
        .unwrap();
    // The liar is known by id once it has spoken: make it speak by asking for the blob.
    let id = BlobId::of(&bytes);
    let get = {
        let fetcher = fetcher.clone();
        tokio::spawn(async move { fetcher.get_blob(id).await })
    };
    let honest = Node::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .keyring(keyring())
        .discovery(StaticDiscovery::new([fetcher.local_addr()]))
        .start()
        .await
        .unwrap();
    assert_eq!(honest.add_blob(bytes.clone()).await.unwrap(), id);
    fetcher.add_peer(honest.local_addr()).await.unwrap();

    let copy = tokio::time::timeout(Duration::from_secs(120), get)
        .await
        .expect("finishes")
        .unwrap()
        .unwrap();
    assert_eq!(copy, bytes);
    let stats = fetcher.stats().await.unwrap().blobs.core;
    assert!(stats.pieces_corrupt >= 1, "the liar's chunks were caught");
    // The liar is counted by id; the honest holder is not.
    let counted = fetcher.blob_corrupt_peers().await.unwrap();
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert_eq!(counted[0].0, liar_id);
    assert!(u64::from(counted[0].1) == stats.pieces_corrupt);
    // Avoided: a second blob the liar also holds (and would corrupt) is fetched from the
    // honest node only.
    let again_id = honest.add_blob(again.clone()).await.unwrap();
    let copy = tokio::time::timeout(Duration::from_secs(60), fetcher.get_blob(again_id))
        .await
        .expect("finishes")
        .unwrap();
    assert_eq!(copy, again);
    let after = fetcher.stats().await.unwrap().blobs.core;
    assert_eq!(after.pieces_corrupt, stats.pieces_corrupt);
    liar.abort();
    shutdown(&[fetcher, honest]).await;
}

#[actix::test]
async fn blobs_referenced_by_followed_feeds_are_fetched_within_the_size_cap() {
    let config = NodeConfig {
        fetch_blobs_for_feeds: 100_000,
        ..NodeConfig::default()
    };
    let nodes = cluster(2, config, FaultInjection::default()).await;
    let small = random_bytes(50_000, 4);
    let large = random_bytes(150_000, 5);
    let small_id = nodes[0].add_blob(small.clone()).await.unwrap();
    let large_id = nodes[0].add_blob(large.clone()).await.unwrap();
    assert!(nodes[1].follow(nodes[0].feed_id()).await.unwrap());
    nodes[0]
        .publish(format!(
            "two files: {} {}",
            reference(small_id),
            reference(large_id)
        ))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !nodes[1].has_blob(small_id).await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "small blob fetched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The large one is above the cap: not fetched.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!nodes[1].has_blob(large_id).await.unwrap());
    let stats = nodes[1].stats().await.unwrap().blobs;
    assert_eq!(stats.fetched_for_feeds, 2);
    assert_eq!(stats.core.fetches_completed, 1);
    shutdown(&nodes).await;
}

#[actix::test]
async fn a_full_blob_store_evicts_unreferenced_fetched_blobs_but_keeps_referenced_ones() {
    // Node 1 keeps at most 300 kB of blobs; node 0 (the holder) has the default limit.
    let config = |i: usize| NodeConfig {
        blob_store_limit: (i == 1).then_some(300_000),
        ..NodeConfig::default()
    };
    let nodes = cluster_of(2, config, FaultInjection::default()).await;
    let x = random_bytes(180_000, 6);
    let y = random_bytes(180_000, 7);
    let z = random_bytes(180_000, 8);
    let x_id = nodes[0].add_blob(x.clone()).await.unwrap();
    let y_id = nodes[0].add_blob(y.clone()).await.unwrap();
    let z_id = nodes[0].add_blob(z.clone()).await.unwrap();
    let get = |id| {
        let node = nodes[1].clone();
        async move {
            tokio::time::timeout(Duration::from_secs(60), node.get_blob(id))
                .await
                .expect("finishes")
        }
    };
    assert_eq!(get(x_id).await.unwrap(), x);
    // Y does not fit beside X: X (fetched, unreferenced, unpinned) is evicted.
    assert_eq!(get(y_id).await.unwrap(), y);
    assert!(!nodes[1].has_blob(x_id).await.unwrap());
    assert!(nodes[1].has_blob(y_id).await.unwrap());
    // Once a followed feed references Y, Y stays and Z cannot be stored.
    assert!(nodes[1].follow(nodes[0].feed_id()).await.unwrap());
    nodes[0]
        .publish(format!("keep {}", reference(y_id)))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut events = nodes[1].subscribe();
    loop {
        let latest = nodes[1].latest(nodes[0].feed_id()).await.unwrap();
        if latest.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed replicates"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = get(z_id).await;
    assert!(failed.is_err(), "Z does not fit: {failed:?}");
    assert!(nodes[1].has_blob(y_id).await.unwrap());
    let mut saw_failure = false;
    while let Ok(event) = events.try_recv() {
        if matches!(event, NodeEvent::BlobFailed { blob, .. } if blob == z_id) {
            saw_failure = true;
        }
    }
    assert!(saw_failure);
    shutdown(&nodes).await;
}
