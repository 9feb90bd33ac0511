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

    // Crash node 7: it stops answering; every other node must declare it dead within the
    // documented bound, and nobody else, ever.
    let victim = 7;
    network.crash(addr(victim));
    nodes[victim].shutdown().await.unwrap();
    let crashed_at = tokio::time::Instant::now();
    // The documented bound for heartbeats relayed by gossip: threshold · ln 10 · mean +
    // check interval, with the mean of relayed advances at most 1.7 s (failure module docs).
    let config = FailureConfig::default();
    let bound = config.detection_bound(Duration::from_millis(1_700));
    tokio::time::sleep(bound).await;

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
    for (i, node) in nodes.iter().enumerate() {
        if i == victim {
            continue;
        }
        let stats = node.stats().await.unwrap();
        assert_eq!(stats.failure.core.convictions, 1, "seed {seed}: node {i}");
    }
    println!(
        "all {} survivors convicted the crash within {:?} (bound {bound:?})",
        survivors.len(),
        crashed_at.elapsed()
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

/// A [`MemoryStore`](gossip_actors::storage::MemoryStore) that outlives the node it is given
/// to, as a database file outlives a process: clones share it.
#[derive(Clone, Default)]
struct SharedMemory(Arc<std::sync::Mutex<gossip_actors::storage::MemoryStore>>);

mod shared_memory {
    use gossip_actors::core::NodeId;
    use gossip_actors::core::feed::{FeedId, FeedMessage, MessageHash};
    use gossip_actors::storage::{Entry, FeedLog, PeerClocks, Store, StoreError};

    use super::SharedMemory;

    impl SharedMemory {
        fn lock(&self) -> std::sync::MutexGuard<'_, gossip_actors::storage::MemoryStore> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    impl Store for SharedMemory {
        fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.lock().get(table, key)
        }
        fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.lock().put(table, key, value)
        }
        fn delete(&mut self, table: &str, key: &[u8]) -> Result<bool, StoreError> {
            Store::delete(&mut *self.lock(), table, key)
        }
        fn range(
            &self,
            table: &str,
            start: &[u8],
            end: &[u8],
            limit: usize,
        ) -> Result<Vec<Entry>, StoreError> {
            self.lock().range(table, start, end, limit)
        }
        fn len(&self, table: &str) -> Result<usize, StoreError> {
            self.lock().len(table)
        }
    }

    impl FeedLog for SharedMemory {
        fn append(&mut self, msg: &FeedMessage) -> Result<(), StoreError> {
            self.lock().append(msg)
        }
        fn message(&self, feed: FeedId, sequence: u64) -> Result<Option<FeedMessage>, StoreError> {
            self.lock().message(feed, sequence)
        }
        fn messages(
            &self,
            feed: FeedId,
            from_sequence: u64,
            limit: usize,
        ) -> Result<Vec<FeedMessage>, StoreError> {
            self.lock().messages(feed, from_sequence, limit)
        }
        fn latest(&self, feed: FeedId) -> Result<Option<(u64, MessageHash)>, StoreError> {
            self.lock().latest(feed)
        }
        fn feeds(&self) -> Result<Vec<(FeedId, u64)>, StoreError> {
            self.lock().feeds()
        }
        fn remove_feed(&mut self, feed: FeedId) -> Result<u64, StoreError> {
            self.lock().remove_feed(feed)
        }
    }

    impl PeerClocks for SharedMemory {
        fn put_clock(&mut self, peer: NodeId, clock: &[u8]) -> Result<(), StoreError> {
            self.lock().put_clock(peer, clock)
        }
        fn clock(&self, peer: NodeId) -> Result<Option<Vec<u8>>, StoreError> {
            self.lock().clock(peer)
        }
        fn remove_clock(&mut self, peer: NodeId) -> Result<bool, StoreError> {
            self.lock().remove_clock(peer)
        }
        fn clock_peers(&self) -> Result<Vec<NodeId>, StoreError> {
            self.lock().clock_peers()
        }
    }
}

/// A node restarted on its store (same identity) holds every write it acknowledged, in a
/// higher generation that replaces its old state at its peers: nothing is lost, and a key it
/// deleted does not come back.
#[actix::test]
async fn a_restarted_node_restores_its_acknowledged_state_in_a_new_generation() {
    tokio::time::pause();
    let network = SimNetwork::new(SimConfig {
        seed: 11,
        ..SimConfig::default()
    });
    let t0 = tokio::time::Instant::now();
    let clock = Arc::new(move || 1_700_000_000_000 + t0.elapsed().as_millis() as u64);
    let store = SharedMemory::default();
    let identity = || gossip_actors::crypto::Identity::from_bytes(&[9; 32]);
    let start = |i: usize, store: Option<SharedMemory>, id: bool| {
        let mut builder = Node::builder()
            .network(&network)
            .bind(addr(i))
            .keyring(Keyring::new(Key::from_bytes([6; 32])))
            .rng_seed(100 + i as u64)
            .wall_clock(clock.clone());
        if let Some(store) = store {
            builder = builder.store(store);
        }
        if id {
            builder = builder.identity(identity());
        }
        builder.start()
    };
    let observer = start(0, None, false).await.unwrap();
    let owner = start(1, Some(store.clone()), true).await.unwrap();
    owner.add_peer(addr(0)).await.unwrap();
    let id = owner.node_id();
    owner.set("a", &b"1"[..]).await.unwrap();
    owner.set("b", &b"2"[..]).await.unwrap();
    owner.set("a", &b"3"[..]).await.unwrap();
    assert_eq!(owner.delete("b").await.unwrap(), Some(4));
    owner.set("c", &b"4"[..]).await.unwrap();
    let first = owner.state(id).await.unwrap().unwrap().generation;
    // The observer learns the first generation.
    let mut learned = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if observer.get(id, "c").await.unwrap().is_some() {
            learned = true;
            break;
        }
    }
    assert!(learned, "the observer never learned the owner's state");
    owner.shutdown().await.unwrap();
    drop(owner);

    // Restart on the same store, elsewhere, at once (the clock has hardly moved).
    let again = start(2, Some(store.clone()), true).await.unwrap();
    assert_eq!(again.node_id(), id);
    again.add_peer(addr(0)).await.unwrap();
    let view = again.state(id).await.unwrap().unwrap();
    assert!(view.generation > first, "{} > {first}", view.generation);
    let values: Vec<(String, Vec<u8>)> = view
        .entries
        .iter()
        .map(|e| (e.key.clone(), e.value.to_vec()))
        .collect();
    assert_eq!(
        values,
        vec![("a".into(), b"3".to_vec()), ("c".into(), b"4".to_vec())]
    );
    // The observer replaces the old generation with the restored state.
    let mut replaced = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let held = observer.state(id).await.unwrap().unwrap();
        if held.generation == view.generation
            && observer.get(id, "a").await.unwrap().map(|v| v.0.to_vec()) == Some(b"3".to_vec())
        {
            replaced = true;
            break;
        }
    }
    assert!(replaced, "the observer never took the restored generation");
    assert_eq!(observer.get(id, "b").await.unwrap(), None);
    assert_eq!(
        observer.get(id, "c").await.unwrap().map(|v| v.0.to_vec()),
        Some(b"4".to_vec())
    );
    // A write after the restart is persisted in the new generation.
    again.set("d", &b"5"[..]).await.unwrap();
    let stored = gossip_actors::storage::Store::own_entries(&store, 100).unwrap();
    let keys: Vec<&str> = stored.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["a", "c", "d"]);
    assert_eq!(stored[2].generation, view.generation);
    again.shutdown().await.unwrap();
    observer.shutdown().await.unwrap();
}
