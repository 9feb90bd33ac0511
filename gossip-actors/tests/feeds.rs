//! Signed feeds over per-feed broadcast trees, with real nodes on the simulated network.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gossip_actors::core::feed::FeedId;
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::net::sim::{SimConfig, SimNetwork};
use gossip_actors::{CyclonDiscovery, Node, NodeEvent, NodeHandle};

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8 + 1], 7000))
}

async fn start(network: &SimNetwork, n: usize, seed: u64) -> Vec<NodeHandle> {
    let seeds: Vec<SocketAddr> = (0..3).map(addr).collect();
    let start = tokio::time::Instant::now();
    let mut nodes = Vec::new();
    for i in 0..n {
        let node = Node::builder()
            .network(network)
            .bind(addr(i))
            .keyring(Keyring::new(Key::from_bytes([5; 32])))
            .discovery(CyclonDiscovery::new(seeds.clone()))
            .rng_seed(seed * 1000 + i as u64)
            .wall_clock(Arc::new(move || {
                1_700_000_000_000 + start.elapsed().as_millis() as u64
            }))
            .start()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: node {i}: {e}"));
        nodes.push(node);
    }
    nodes
}

#[actix::test]
async fn twenty_nodes_replicate_every_followed_feed_in_order() {
    tokio::time::pause();
    let seed = 4;
    let network = SimNetwork::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let nodes = start(&network, 20, seed).await;
    let feeds: Vec<FeedId> = nodes.iter().map(|n| n.feed_id()).collect();
    for node in &nodes {
        for feed in &feeds {
            if *feed != node.feed_id() {
                assert!(node.follow(*feed).await.unwrap());
            }
        }
    }
    let mut receivers: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();
    // Let CYCLON connect the overlay before anyone publishes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for round in 0..3u64 {
        for node in &nodes {
            let published = node
                .publish(format!("post {round}").into_bytes())
                .await
                .unwrap();
            assert_eq!(published.sequence, round + 1);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(60)).await;

    if std::env::var("GOSSIP_DEBUG").is_ok() {
        for (i, node) in nodes.iter().enumerate() {
            let stats = node.stats().await.unwrap();
            eprintln!(
                "node {i}: convictions {} revivals {} peers_up {} appended {} grafts {} state rounds {}",
                stats.failure.core.convictions,
                stats.failure.core.revivals,
                stats.feeds.peers_up,
                stats.feeds.appended,
                stats.feeds.core.grafts,
                stats.state.core.rounds,
            );
        }
    }
    for (i, rx) in receivers.iter_mut().enumerate() {
        let mut per_feed: BTreeMap<FeedId, Vec<u64>> = BTreeMap::new();
        while let Ok(event) = rx.try_recv() {
            if let NodeEvent::FeedMessage(m) = event {
                per_feed.entry(m.author).or_default().push(m.sequence);
            }
        }
        assert_eq!(
            per_feed.len(),
            20,
            "seed {seed}: node {i} holds {} feeds",
            per_feed.len()
        );
        for (feed, sequences) in &per_feed {
            assert_eq!(
                sequences,
                &vec![1, 2, 3],
                "seed {seed}: node {i}, feed {feed:?}"
            );
        }
    }
    // The stream reads a feed back from the store, in order.
    let replay: Vec<u64> = nodes[7]
        .feed(feeds[3], 2)
        .take(2)
        .map(|m| m.sequence)
        .collect()
        .await;
    assert_eq!(replay, vec![2, 3]);
    let mut appended = 0;
    for node in &nodes {
        let stats = node.stats().await.unwrap();
        appended += stats.feeds.appended;
        assert_eq!(stats.feeds.append_errors, 0);
        node.shutdown().await.unwrap();
    }
    assert_eq!(
        appended,
        20 * 20 * 3,
        "every node appended every message exactly once"
    );
}

#[actix::test]
async fn a_hundred_nodes_replicate_the_first_three_messages_with_rmr_at_most_five_percent() {
    tokio::time::pause();
    let seed = 9;
    let n = 100;
    let network = SimNetwork::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let nodes = start(&network, n, seed).await;
    let authors: Vec<usize> = (0..10).map(|i| i * 10).collect();
    let feeds: Vec<FeedId> = authors.iter().map(|&i| nodes[i].feed_id()).collect();
    for node in &nodes {
        for feed in &feeds {
            if *feed != node.feed_id() {
                node.follow(*feed).await.unwrap();
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    for round in 0..3u64 {
        for &i in &authors {
            nodes[i]
                .publish(format!("post {round}").into_bytes())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(30)).await;

    let mut copies = 0;
    for (i, node) in nodes.iter().enumerate() {
        let stats = node.stats().await.unwrap();
        // Authors append their own 3 and the other 27; everyone else all 30.
        assert_eq!(
            stats.feeds.appended, 30,
            "seed {seed}: node {i} appended {} of 30",
            stats.feeds.appended
        );
        copies += stats.feeds.core.messages_received;
    }
    // Payload RMR over the first three messages of every feed: copies received per needed
    // copy, minus one (each of the 30 messages is needed by the 99 other nodes).
    let needed = (30 * (n - 1)) as f64;
    let rmr = copies as f64 / needed - 1.0;
    println!("payload copies {copies}, needed {needed}, RMR {rmr:.4}");
    assert!(rmr <= 0.05, "seed {seed}: RMR {rmr:.4} above 0.05");
    for node in &nodes {
        node.shutdown().await.unwrap();
    }
}

#[actix::test]
async fn following_the_own_feed_is_refused_and_latest_reads_the_head() {
    tokio::time::pause();
    let network = SimNetwork::new(SimConfig::default());
    let nodes = start(&network, 1, 2).await;
    let node = &nodes[0];
    assert!(matches!(
        node.follow(node.feed_id()).await,
        Err(gossip_actors::NodeError::Follow(_))
    ));
    assert_eq!(node.latest(node.feed_id()).await.unwrap(), None);
    let published = node.publish(&b"one"[..]).await.unwrap();
    assert_eq!(
        node.latest(node.feed_id()).await.unwrap(),
        Some((1, published.id))
    );
    node.shutdown().await.unwrap();
}
