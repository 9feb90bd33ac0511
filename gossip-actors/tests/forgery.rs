//! Feed contents are authenticated by their author's signature even against holders of the
//! cluster key: a member that claims the author's sender id and pushes a forged next message
//! of the author's feed gets it rejected (`bad_signature`), and the author's real next
//! message still replicates. On the simulated network, deterministic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gossip_actors::core::feed::FeedMessage;
use gossip_actors::core::tree::FeedBatch;
use gossip_actors::core::{Envelope, Message, NodeId};
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::net::sim::{SimConfig, SimNetwork};
use gossip_actors::net::{PacketCodec, Security};
use gossip_actors::{CyclonDiscovery, Node, NodeEvent, NodeHandle};

fn keyring() -> Keyring {
    Keyring::new(Key::from_bytes([0x5e; 32]))
}

async fn wait_for_sequence(node: &NodeHandle, author: &NodeHandle, sequence: u64) {
    for _ in 0..600 {
        if node
            .latest(author.feed_id())
            .await
            .unwrap()
            .is_some_and(|(s, _)| s >= sequence)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sequence {sequence} never arrived");
}

#[actix::test]
async fn a_key_holder_cannot_forge_another_authors_feed_message() {
    tokio::time::pause();
    let network = SimNetwork::new(SimConfig {
        seed: 11,
        ..SimConfig::default()
    });
    let start = tokio::time::Instant::now();
    let addr = |i: u8| SocketAddr::from(([10, 2, 0, i], 7000));
    let node = |i: u8| {
        Node::builder()
            .network(&network)
            .bind(addr(i))
            .keyring(keyring())
            .discovery(CyclonDiscovery::new([addr(1), addr(2)]))
            .rng_seed(u64::from(i))
            .wall_clock(Arc::new(move || {
                1_700_000_000_000 + start.elapsed().as_millis() as u64
            }))
            .start()
    };
    let author = node(1).await.unwrap();
    let reader = node(2).await.unwrap();
    assert!(reader.follow(author.feed_id()).await.unwrap());
    let mut events = reader.subscribe();
    // Let the overlay connect before anyone publishes.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let first = author.publish(&b"genuine 1"[..]).await.unwrap();
    wait_for_sequence(&reader, &author, 1).await;

    // The forger holds the cluster key: it claims the author's node id as sender (with the
    // author's epoch and a counter ahead of the author's, so the anti-replay window takes
    // it) and pushes a "next message" with content of its choosing.
    let forged = FeedMessage {
        author: author.feed_id(),
        sequence: 2,
        previous: Some(first.id),
        timestamp_ms: 1_700_000_100_000,
        content: Bytes::from_static(b"forged: pay mallory"),
        signature: [7; 64],
    };
    let author_stats = author.stats().await.unwrap().transport;
    let forger = network.bind(addr(66)).unwrap();
    let mut codec = PacketCodec::new(Security::Encrypted(Arc::new(keyring())), 1400).unwrap();
    // The reader ties a tree peer to its source address: the first datagram from the forger's
    // address moves the author's link there (as if the author had restarted elsewhere) and
    // is dropped; the second reaches feed validation.
    for counter in [500, 501] {
        let envelope = Envelope {
            sender: NodeId(author.feed_id().0),
            epoch: author_stats.epoch,
            counter: author_stats.datagrams_sent + counter,
            message: Message::TreeBatch(FeedBatch {
                messages: vec![forged.clone()],
            }),
        };
        let mut datagram = BytesMut::new();
        codec.encode_datagram(&envelope, &mut datagram).unwrap();
        forger.try_send_to(&datagram, reader.local_addr()).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let stats = reader.stats().await.unwrap();
    assert_eq!(
        stats.feeds.core.bad_signature, 1,
        "{:?} {:?}",
        stats.feeds.core, stats.transport
    );
    assert_eq!(
        stats.dropped_replay(),
        0,
        "the forged datagram itself was accepted"
    );
    assert_eq!(
        reader
            .latest(author.feed_id())
            .await
            .unwrap()
            .map(|(s, _)| s),
        Some(1),
        "nothing appended"
    );

    // The author's real second message still replicates.
    author.publish(&b"genuine 2"[..]).await.unwrap();
    wait_for_sequence(&reader, &author, 2).await;
    let mut contents = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let NodeEvent::FeedMessage(m) = event {
            contents.push(String::from_utf8_lossy(&m.content).into_owned());
        }
    }
    println!(
        "forged feed message from a key holder: bad_signature {}, delivered {contents:?}",
        stats.feeds.core.bad_signature
    );
    assert_eq!(contents, ["genuine 1", "genuine 2"]);
}
