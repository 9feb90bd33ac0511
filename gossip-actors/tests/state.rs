//! Key/value state, failure detection and flow control with real nodes on the simulated
//! network (paused clock).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gossip_actors::core::NodeId;
use gossip_actors::core::failure::FailureConfig;
use gossip_actors::core::reconcile::StateError;
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::net::sim::{SimConfig, SimNetwork};
use gossip_actors::state::SetError;
use gossip_actors::{CyclonDiscovery, Node, NodeError, NodeEvent, NodeHandle};

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 2, (i / 250) as u8, (i % 250) as u8 + 1], 7000))
}

async fn start(network: &SimNetwork, n: usize, seed: u64) -> Vec<NodeHandle> {
    let seeds: Vec<SocketAddr> = (0..3).map(addr).collect();
    let t0 = tokio::time::Instant::now();
    let mut nodes = Vec::new();
    for i in 0..n {
        let node = Node::builder()
            .network(network)
            .bind(addr(i))
            .keyring(Keyring::new(Key::from_bytes([6; 32])))
            .discovery(CyclonDiscovery::new(seeds.clone()))
            .rng_seed(seed * 1000 + i as u64)
            .wall_clock(Arc::new(move || {
                1_700_000_000_000 + t0.elapsed().as_millis() as u64
            }))
            .start()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: node {i}: {e}"));
        for s in &seeds {
            if *s != addr(i) {
                node.add_peer(*s).await.unwrap();
            }
        }
        nodes.push(node);
    }
    nodes
}

#[actix::test]
async fn state_converges_and_a_crashed_node_is_declared_dead_by_everyone_and_nobody_else() {
    tokio::time::pause();
    let seed = 5;
    let n = 20;
    let network = SimNetwork::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let nodes = start(&network, n, seed).await;
    let ids: Vec<NodeId> = nodes.iter().map(|h| h.node_id()).collect();
    let mut events: Vec<_> = nodes.iter().map(|h| h.events()).collect();

    for (i, node) in nodes.iter().enumerate() {
        for k in 0..3 {
            node.set(format!("key{k}"), format!("{i}-{k}").into_bytes())
                .await
                .unwrap();
        }
    }
    nodes[0].set("key0", &b"changed"[..]).await.unwrap();
    nodes[1].delete("key2").await.unwrap();

    // Converge: every node holds every node's latest values.
    let mut converged_after = None;
    for second in 1..=60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut all = true;
        'check: for node in &nodes {
            for (j, owner) in ids.iter().enumerate() {
                let expected0 = if j == 0 {
                    b"changed".to_vec()
                } else {
                    format!("{j}-0").into_bytes()
                };
                let got0 = node
                    .get(*owner, "key0")
                    .await
                    .unwrap()
                    .map(|(v, _)| v.to_vec());
                let got2 = node.get(*owner, "key2").await.unwrap();
                let deleted_ok = if j == 1 {
                    got2.is_none()
                } else {
                    got2.is_some()
                };
                if got0 != Some(expected0) || !deleted_ok {
                    all = false;
                    break 'check;
                }
            }
        }
        if all {
            converged_after = Some(second);
            break;
        }
    }
    let converged_after =
        converged_after.unwrap_or_else(|| panic!("seed {seed}: state did not converge in 60 s"));
    println!("20 nodes converged within {converged_after} s of simulated time");

    // Crash node 7: it stops answering; every other node must declare it dead, each within
    // the documented bound of its own detector after the victim's last heartbeat reached it
    // (`FailureConfig::detection_bound` of that peer's window mean: heartbeats relayed by
    // gossip arrive some rounds after they were sent, and their mean interval differs per
    // survivor), and nobody else, ever.
    let victim = 7;
    network.crash(addr(victim));
    nodes[victim].shutdown().await.unwrap();
    let crashed_at = tokio::time::Instant::now();
    let config = FailureConfig::default();
    let step = Duration::from_millis(100);
    let cap = config.detection_bound(config.max_interval);
    // Per survivor: (last heartbeat arrival, window mean) while live, then the conviction time.
    let mut last_heard: Vec<Option<(tokio::time::Instant, Duration)>> = vec![None; n];
    let mut convicted: Vec<Option<tokio::time::Instant>> = vec![None; n];
    while crashed_at.elapsed() < cap {
        tokio::time::sleep(step).await;
        let now = tokio::time::Instant::now();
        for (i, node) in nodes.iter().enumerate() {
            if i == victim || convicted[i].is_some() {
                continue;
            }
            let peers = node.peer_phis().await.unwrap();
            let Some(peer) = peers.iter().find(|p| p.node == ids[victim]) else {
                continue;
            };
            match (peer.live, peer.phi, peer.mean_interval) {
                (false, ..) => convicted[i] = Some(now),
                (true, Some(phi), Some(mean)) => {
                    // phi = silence / (max(mean, min_mean) · ln 10): the detector's own
                    // measure of how long ago the last heartbeat arrived.
                    let floored = mean.max(config.min_mean).as_secs_f64();
                    let silence = Duration::from_secs_f64(phi * std::f64::consts::LN_10 * floored);
                    last_heard[i] = Some((now.checked_sub(silence).unwrap_or(now), mean));
                }
                _ => {}
            }
        }
        if (0..n).all(|i| i == victim || convicted[i].is_some()) {
            break;
        }
    }

    let mut detected = BTreeSet::new();
    let mut false_dead = Vec::new();
    for (i, rx) in events.iter_mut().enumerate() {
        while let Ok(event) = rx.try_recv() {
            if let NodeEvent::PeerDead { node } = event {
                if node == ids[victim] && i != victim {
                    detected.insert(i);
                } else {
                    false_dead.push((i, node));
                }
            }
        }
    }
    assert!(
        false_dead.is_empty(),
        "seed {seed}: live nodes declared dead: {false_dead:?}"
    );
    let survivors: BTreeSet<usize> = (0..n).filter(|i| *i != victim).collect();
    assert_eq!(
        detected, survivors,
        "seed {seed}: not every survivor convicted the crash"
    );
    let mut slowest = Duration::ZERO;
    let mut largest_mean = Duration::ZERO;
    for &i in &survivors {
        let at = convicted[i].unwrap_or_else(|| panic!("seed {seed}: node {i} never convicted"));
        let (last, mean) =
            last_heard[i].unwrap_or_else(|| panic!("seed {seed}: node {i} never tracked it"));
        let bound = config.detection_bound(mean);
        // One polling step of slack: the conviction is seen at the first poll after it.
        assert!(
            at.duration_since(last) <= bound + step,
            "seed {seed}: node {i} convicted {:?} after the last heartbeat, bound {bound:?} \
             (mean {mean:?})",
            at.duration_since(last)
        );
        slowest = slowest.max(at.duration_since(crashed_at));
        largest_mean = largest_mean.max(mean);
    }
    for (i, node) in nodes.iter().enumerate() {
        if i == victim {
            continue;
        }
        let stats = node.stats().await.unwrap();
        assert_eq!(stats.failure.core.convictions, 1, "seed {seed}: node {i}");
    }
    println!(
        "all {} survivors convicted the crash within {slowest:?} of it, each within its \
         detector's bound after the last heartbeat (largest window mean {largest_mean:?})",
        survivors.len()
    );
    for node in &nodes {
        let _ = node.shutdown().await;
    }
}

#[actix::test]
async fn try_set_refuses_above_the_rate_and_set_waits_for_it() {
    tokio::time::pause();
    let network = SimNetwork::new(SimConfig::default());
    let nodes = start(&network, 2, 1).await;
    let node = &nodes[1];
    let mut refused = 0;
    let mut accepted = 0;
    for i in 0..10_000 {
        match node.try_set(format!("k{}", i % 50), vec![1u8; 10]).await {
            Ok(_) => accepted += 1,
            Err(NodeError::Set(SetError::State(StateError::Backpressure(bp)))) => {
                assert!(bp.retry_after > Duration::ZERO);
                refused += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "accepted {accepted}, refused {refused}"
    );

    // The waiting form admits every update, in order, as the rate allows.
    let before = tokio::time::Instant::now();
    let mut last = 0;
    for i in 0..50 {
        let version = node
            .set("counter", format!("{i}").into_bytes())
            .await
            .unwrap();
        assert!(version > last, "versions increase in submission order");
        last = version;
    }
    let waited = before.elapsed();
    let stats = node.stats().await.unwrap();
    assert!(stats.flow.delayed > 0, "set had to wait for the rate");

    // While a write waits, a try_set would overtake it: it is refused, and the queued value
    // is the one that lands.
    while node.try_set("filler", &b"x"[..]).await.is_ok() {}
    let queued = {
        let node = node.clone();
        actix::spawn(async move { node.set("ordered", &b"old"[..]).await })
    };
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    match node.try_set("ordered", &b"new"[..]).await {
        Err(NodeError::Set(SetError::Waiting { queued })) => assert!(queued >= 1),
        other => panic!("a try_set behind a waiting set must be refused, got {other:?}"),
    }
    queued.await.unwrap().unwrap();
    let (value, _) = node.get(node.node_id(), "ordered").await.unwrap().unwrap();
    assert_eq!(&value[..], b"old");
    println!("50 waiting sets took {waited:?} of simulated time");
    for node in &nodes {
        let _ = node.shutdown().await;
    }
}
