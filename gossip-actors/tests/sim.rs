//! Real nodes on the in-process simulated network, on tokio's paused clock: time advances only
//! when every actor is idle, so a run is fast and reproducible from its seed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_actors::core::MessageId;
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::net::sim::{SimConfig, SimNetwork};
use gossip_actors::{Node, NodeEvent, NodeHandle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, PartialEq)]
struct Outcome {
    /// Per node: (message id, hop) in delivery order.
    deliveries: Vec<Vec<(MessageId, u16)>>,
    datagrams: u64,
    pulls_recovered: u64,
}

async fn run(nodes: usize, messages: usize, loss: f64, seed: u64) -> Outcome {
    let network = SimNetwork::new(SimConfig {
        latency_min: Duration::from_millis(10),
        latency_max: Duration::from_millis(50),
        loss,
        seed,
        ..SimConfig::default()
    });
    let keyring = Keyring::new(Key::from_bytes([9; 32]));
    let addrs: Vec<SocketAddr> = (0..nodes)
        .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 7000)))
        .collect();
    let mut handles: Vec<NodeHandle> = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let node = Node::builder()
            .network(&network)
            .bind(*addr)
            .keyring(keyring.clone())
            .seeds(addrs.iter().copied().filter(|a| a != addr))
            .rng_seed(seed * 1_000 + i as u64)
            .start()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: node {i} failed to start: {e}"));
        handles.push(node);
    }
    let mut receivers: Vec<_> = handles.iter().map(|h| h.subscribe()).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..messages {
        let from = &handles[rng.random_range(0..nodes)];
        from.broadcast(format!("m{i}").into_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Simulated time: long enough for anti-entropy to repair every loss.
    tokio::time::sleep(Duration::from_secs(30)).await;

    let mut deliveries = vec![Vec::new(); nodes];
    for (i, rx) in receivers.iter_mut().enumerate() {
        while let Ok(event) = rx.try_recv() {
            if let NodeEvent::Delivered(d) = event {
                deliveries[i].push((d.id, d.hop));
            }
        }
    }
    let mut datagrams = 0;
    let mut pulls_recovered = 0;
    for handle in &handles {
        let stats = handle.stats().await.unwrap();
        datagrams += stats.transport.datagrams_sent;
        pulls_recovered += stats.dissemination.core.pulls_recovered;
        handle.shutdown().await.unwrap();
    }
    Outcome {
        deliveries,
        datagrams,
        pulls_recovered,
    }
}

fn assert_every_node_delivered_every_message_once(outcome: &Outcome, messages: usize, seed: u64) {
    let all: BTreeMap<MessageId, ()> = outcome
        .deliveries
        .iter()
        .flatten()
        .map(|(id, _)| (*id, ()))
        .collect();
    assert_eq!(all.len(), messages, "seed {seed}");
    for (node, delivered) in outcome.deliveries.iter().enumerate() {
        let mut ids: Vec<MessageId> = delivered.iter().map(|(id, _)| *id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            delivered.len(),
            "seed {seed}: node {node} delivered a duplicate"
        );
        assert_eq!(
            ids.len(),
            messages,
            "seed {seed}: node {node} missed messages"
        );
    }
}

#[actix::test]
async fn fifty_simulated_nodes_with_loss_deliver_everything_exactly_once_reproducibly() {
    let seed = std::env::var("GOSSIP_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    tokio::time::pause();
    let first = run(50, 40, 0.1, seed).await;
    assert_every_node_delivered_every_message_once(&first, 40, seed);
    assert!(
        first.pulls_recovered > 0,
        "seed {seed}: loss is repaired by pull-sync"
    );
    let second = run(50, 40, 0.1, seed).await;
    assert_eq!(
        first, second,
        "seed {seed}: the same seed must reproduce the run"
    );
}
