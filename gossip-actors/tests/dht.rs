//! `DhtDiscovery` over a local mainline testnet on 127.0.0.1, through the public API: nodes
//! that know only the DHT's bootstrap addresses find each other and spread a broadcast.
#![cfg(feature = "dht")]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::dht::cluster_info_hash;
use gossip_actors::dht::mainline::Testnet;
use gossip_actors::{
    DhtConfig, DhtDiscovery, DhtStats, Node, NodeConfig, NodeEvent, NodeHandle, StartError,
};
use tokio::sync::watch;

const KEY: [u8; 32] = [0x5a; 32];
const JOIN_DEADLINE: Duration = Duration::from_secs(20);
const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

/// A testnet of `n` DHT server nodes bound to 127.0.0.1, and its bootstrap addresses.
async fn local_testnet(n: usize) -> (Testnet, Vec<SocketAddr>) {
    let testnet = tokio::task::spawn_blocking(move || {
        Testnet::builder(n)
            .bind_address(Ipv4Addr::LOCALHOST)
            .build()
    })
    .await
    .expect("testnet thread")
    .expect("testnet binds 127.0.0.1");
    let bootstrap: Vec<SocketAddr> = testnet
        .bootstrap
        .iter()
        .map(|a| a.parse().expect("bootstrap address"))
        .collect();
    assert_eq!(bootstrap.len(), n);
    for addr in &bootstrap {
        assert_eq!(
            addr.ip(),
            Ipv4Addr::LOCALHOST,
            "testnet binds 127.0.0.1 only"
        );
    }
    (testnet, bootstrap)
}

/// DHT-only tables (no learning from traffic), so what a node knows came from the DHT.
fn dht_only() -> DhtConfig {
    DhtConfig {
        learn_from_traffic: false,
        ..DhtConfig::local()
    }
}

async fn start_node(
    cluster: &str,
    bootstrap: &[SocketAddr],
    seed: u64,
) -> (NodeHandle, watch::Receiver<DhtStats>) {
    let discovery = DhtDiscovery::new(cluster, bootstrap.to_vec()).with_config(dht_only());
    let stats = discovery.stats();
    let mut config = NodeConfig::default();
    config.dissemination.anti_entropy_interval = Duration::from_millis(200);
    let node = Node::builder()
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .keyring(Keyring::new(Key::from_bytes(KEY)))
        .config(config)
        .rng_seed(seed)
        .discovery(discovery)
        .start()
        .await
        .expect("node starts on 127.0.0.1");
    (node, stats)
}

async fn known(node: &NodeHandle) -> BTreeSet<SocketAddr> {
    node.known_peers()
        .await
        .expect("node running")
        .into_iter()
        .map(|p| p.addr)
        .collect()
}

#[actix::test]
async fn five_nodes_find_each_other_through_a_local_dht_and_spread_a_broadcast() {
    let started = std::time::Instant::now();
    let (_testnet, bootstrap) = local_testnet(5).await;

    let mut nodes = Vec::new();
    let mut stats = Vec::new();
    for i in 0..5 {
        let (node, s) = start_node("dht-test", &bootstrap, 500 + i).await;
        nodes.push(node);
        stats.push(s);
    }
    // A node of another cluster on the same DHT: nobody must find it, and it finds nobody.
    let (outsider, outsider_stats) = start_node("another-cluster", &bootstrap, 599).await;

    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.local_addr()).collect();
    let deadline = tokio::time::Instant::now() + JOIN_DEADLINE;
    loop {
        let mut complete = true;
        for (i, node) in nodes.iter().enumerate() {
            let others: BTreeSet<SocketAddr> = addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| *a)
                .collect();
            let table = known(node).await;
            assert!(
                table.is_subset(&others),
                "node {i} lists only gossip addresses of its own cluster: {table:?} vs {others:?}"
            );
            complete &= table == others;
        }
        if complete {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tables incomplete after {JOIN_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let join_time = started.elapsed();
    assert!(
        known(&outsider).await.is_empty(),
        "another cluster is not found"
    );

    for (i, s) in stats.iter().enumerate() {
        let s = *s.borrow();
        assert_eq!(s.info_hash, cluster_info_hash("dht-test"));
        let dht_addr = s.dht_addr.expect("the DHT node reported its address");
        assert_eq!(
            *dht_addr.ip(),
            Ipv4Addr::LOCALHOST,
            "node {i}'s DHT binds 127.0.0.1"
        );
        assert!(
            !addrs.iter().any(|a| a.port() == dht_addr.port()),
            "the DHT has a socket of its own"
        );
        assert!(s.lookups >= 1 && s.peers_found >= 4, "node {i}: {s:?}");
        assert_eq!(s.peers, 4, "node {i}: {s:?}");
    }
    assert_eq!(
        outsider_stats.borrow().peers,
        0,
        "{:?}",
        *outsider_stats.borrow()
    );

    let mut receivers: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();
    let id = nodes[2]
        .broadcast(&b"found through the DHT"[..])
        .await
        .expect("broadcast accepted");
    for (i, rx) in receivers.iter_mut().enumerate() {
        let delivered = tokio::time::timeout(DELIVERY_DEADLINE, async {
            loop {
                match rx.recv().await {
                    Ok(NodeEvent::Delivered(d)) if d.id == id => return d,
                    Ok(_) => {}
                    Err(err) => panic!("node {i}: subscriber failed: {err}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {i} did not deliver within {DELIVERY_DEADLINE:?}"));
        assert_eq!(&delivered.payload[..], b"found through the DHT");
    }
    eprintln!(
        "dht test: joined in {} ms, total {} ms",
        join_time.as_millis(),
        started.elapsed().as_millis()
    );

    for node in nodes.iter().chain([&outsider]) {
        node.shutdown().await.expect("shutdown");
    }
}

#[actix::test]
async fn an_empty_bootstrap_list_is_refused_at_start() {
    let result = Node::builder()
        .plaintext()
        .discovery(DhtDiscovery::new("dht-test", Vec::new()))
        .start()
        .await;
    match result {
        Err(StartError::Discovery(reason)) => {
            assert!(reason.contains("bootstrap"), "{reason}")
        }
        other => panic!("expected a discovery error, got {other:?}"),
    }
}

#[actix::test]
async fn an_ipv6_bootstrap_address_is_refused_at_start() {
    let result = Node::builder()
        .plaintext()
        .discovery(DhtDiscovery::new(
            "dht-test",
            vec!["[::1]:6881".parse().expect("address")],
        ))
        .start()
        .await;
    assert!(
        matches!(result, Err(StartError::Discovery(ref r)) if r.contains("[::1]:6881")),
        "{result:?}"
    );
}
