//! Nodes over real loopback UDP (127.0.0.1 only), through the public API.

use std::collections::BTreeMap;
use std::time::Duration;

use gossip_actors::core::MessageId;
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::{FaultInjection, Node, NodeConfig, NodeEvent, NodeHandle, StaticDiscovery};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;

const KEY: [u8; 32] = [0x42; 32];

fn fast_config(loss: f64) -> NodeConfig {
    let mut config = NodeConfig {
        fault: FaultInjection {
            loss,
            ..FaultInjection::default()
        },
        ..NodeConfig::default()
    };
    config.dissemination.anti_entropy_interval = Duration::from_millis(200);
    config
}

/// Starts `n` nodes with static discovery, then tells each about all the others.
async fn start_cluster(n: usize, loss: f64, keyring: impl Fn(usize) -> Keyring) -> Vec<NodeHandle> {
    let mut nodes = Vec::new();
    for i in 0..n {
        let node = Node::builder()
            .discovery(StaticDiscovery::new([]))
            .keyring(keyring(i))
            .config(fast_config(loss))
            .rng_seed(1000 + i as u64)
            .start()
            .await
            .expect("node starts on 127.0.0.1");
        nodes.push(node);
    }
    for node in &nodes {
        for other in &nodes {
            if other.local_addr() != node.local_addr() {
                node.add_peer(other.local_addr()).await.unwrap();
            }
        }
    }
    nodes
}

/// Deliveries per (node index, message id), read until every node holds `expected` ids or the
/// deadline passes.
struct Deliveries {
    counts: Vec<BTreeMap<MessageId, u32>>,
}

impl Deliveries {
    async fn collect(
        receivers: &mut [Receiver<NodeEvent>],
        expected: usize,
        deadline: Duration,
    ) -> Self {
        let mut counts = vec![BTreeMap::new(); receivers.len()];
        let start = tokio::time::Instant::now();
        loop {
            for (i, rx) in receivers.iter_mut().enumerate() {
                loop {
                    match rx.try_recv() {
                        Ok(NodeEvent::Delivered(d)) => *counts[i].entry(d.id).or_insert(0) += 1,
                        Ok(_) => {}
                        Err(TryRecvError::Empty) => break,
                        Err(other) => panic!("subscriber failed: {other:?}"),
                    }
                }
            }
            let done = counts
                .iter()
                .all(|c: &BTreeMap<MessageId, u32>| c.len() >= expected);
            if done || start.elapsed() > deadline {
                // Let late duplicates surface before judging exactly-once.
                if done {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    for (i, rx) in receivers.iter_mut().enumerate() {
                        while let Ok(NodeEvent::Delivered(d)) = rx.try_recv() {
                            *counts[i].entry(d.id).or_insert(0) += 1;
                        }
                    }
                }
                return Deliveries { counts };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn broadcast_from_random(nodes: &[NodeHandle], messages: usize, seed: u64) -> Vec<MessageId> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ids = Vec::new();
    for i in 0..messages {
        let from = &nodes[rng.random_range(0..nodes.len())];
        ids.push(
            from.broadcast(format!("message {i}").into_bytes())
                .await
                .unwrap(),
        );
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    ids
}

fn assert_exactly_once(deliveries: &Deliveries, ids: &[MessageId]) {
    for (node, counts) in deliveries.counts.iter().enumerate() {
        for id in ids {
            assert_eq!(
                counts.get(id).copied().unwrap_or(0),
                1,
                "node {node} delivered {id:?} a wrong number of times ({} of {} ids held)",
                counts.len(),
                ids.len()
            );
        }
        assert_eq!(
            counts.len(),
            ids.len(),
            "node {node} delivered an unknown id"
        );
    }
}

#[actix::test]
async fn ten_nodes_deliver_two_hundred_broadcasts_exactly_once() {
    let nodes = start_cluster(10, 0.0, |_| Keyring::new(Key::from_bytes(KEY))).await;
    let mut receivers: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();
    let ids = broadcast_from_random(&nodes, 200, 7).await;
    let deliveries = Deliveries::collect(&mut receivers, ids.len(), Duration::from_secs(30)).await;
    assert_exactly_once(&deliveries, &ids);

    let mut sent = 0;
    for node in &nodes {
        let stats = node.stats().await.unwrap();
        assert_eq!(stats.delivered(), 200);
        assert_eq!(stats.transport.drops.total(), 0, "no datagram is rejected");
        sent += stats.transport.datagrams_sent;
        assert!(stats.transport.bytes_sent <= stats.transport.datagrams_sent * 1400);
    }
    assert!(sent > 0);
    for node in &nodes {
        node.shutdown().await.unwrap();
    }
}

#[actix::test]
async fn twenty_percent_loss_still_delivers_everything_through_pull_sync() {
    let nodes = start_cluster(10, 0.2, |_| Keyring::new(Key::from_bytes(KEY))).await;
    let mut receivers: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();
    let ids = broadcast_from_random(&nodes, 200, 11).await;
    let deliveries = Deliveries::collect(&mut receivers, ids.len(), Duration::from_secs(60)).await;
    assert_exactly_once(&deliveries, &ids);

    let mut injected = 0;
    let mut recovered = 0;
    for node in &nodes {
        let stats = node.stats().await.unwrap();
        injected += stats.transport.injected_loss;
        recovered += stats.dissemination.core.pulls_recovered;
    }
    let sent: u64 = {
        let mut total = 0;
        for node in &nodes {
            total += node.stats().await.unwrap().transport.datagrams_sent;
        }
        total
    };
    let loss = injected as f64 / (injected + sent) as f64;
    assert!((0.15..0.25).contains(&loss), "injected loss rate {loss}");
    assert!(
        recovered > 0,
        "some deliveries must have come through pull-sync"
    );
    for node in &nodes {
        node.shutdown().await.unwrap();
    }
}

#[actix::test]
async fn a_node_with_the_wrong_passphrase_delivers_nothing_and_is_counted_as_auth_drops() {
    let right = Keyring::from_passphrase("correct horse", "cluster-a").unwrap();
    let wrong = Keyring::from_passphrase("battery staple", "cluster-a").unwrap();
    let nodes = start_cluster(
        4,
        0.0,
        |i| if i == 3 { wrong.clone() } else { right.clone() },
    )
    .await;
    let mut receivers: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();

    let mut good_ids = Vec::new();
    for (i, node) in nodes[..3].iter().enumerate() {
        good_ids.push(
            node.broadcast(format!("good {i}").into_bytes())
                .await
                .unwrap(),
        );
    }
    let intruder_id = nodes[3].broadcast(&b"intruder"[..]).await.unwrap();
    let deliveries = Deliveries::collect(&mut receivers[..3], 3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let intruder = Deliveries::collect(&mut receivers[3..], 1, Duration::from_secs(1)).await;

    for counts in &deliveries.counts {
        assert_eq!(counts.keys().copied().collect::<Vec<_>>().len(), 3);
        for id in &good_ids {
            assert_eq!(counts.get(id), Some(&1));
        }
        assert!(
            !counts.contains_key(&intruder_id),
            "nobody accepts the intruder's broadcast"
        );
    }
    // The intruder only ever sees its own broadcast, which it delivers locally at hop 0.
    let seen: Vec<MessageId> = intruder.counts[0].keys().copied().collect();
    assert_eq!(
        seen,
        vec![intruder_id],
        "the intruder delivers nothing from the cluster"
    );
    let intruder_stats = nodes[3].stats().await.unwrap();
    assert_eq!(intruder_stats.delivered(), 1);
    assert!(
        intruder_stats.dropped_auth() > 0,
        "it cannot open the cluster's packets either"
    );

    let mut auth_drops = 0;
    for node in &nodes[..3] {
        let stats = node.stats().await.unwrap();
        assert_eq!(stats.dropped_malformed(), 0);
        auth_drops += stats.dropped_auth();
    }
    assert!(
        auth_drops >= 3,
        "the intruder's pushes are counted as auth drops: {auth_drops}"
    );
    for node in &nodes {
        node.shutdown().await.unwrap();
    }
}

#[actix::test]
async fn an_oversize_broadcast_is_refused_naming_both_sizes() {
    let node = Node::builder()
        .keyring(Keyring::new(Key::from_bytes(KEY)))
        .start()
        .await
        .unwrap();
    // 1400-byte datagram - 36 (label, nonce, tag) - 103 (envelope around the payload) = 1261.
    let max = 1_400
        - gossip_actors::net::PACKET_OVERHEAD
        - gossip_actors::core::message::wire_bound::GOSSIP_OVERHEAD;
    assert_eq!(max, 1_261);
    let err = node.broadcast(vec![0u8; 1_400]).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("1400") && text.contains(&max.to_string()),
        "{text}"
    );
    assert!(node.broadcast(vec![0u8; max + 1]).await.is_err());
    assert!(node.broadcast(vec![0u8; max]).await.is_ok());
    let stats = node.stats().await.unwrap();
    assert_eq!(
        stats.dissemination.core.broadcasts, 1,
        "refused broadcasts change nothing"
    );
    node.shutdown().await.unwrap();
}
