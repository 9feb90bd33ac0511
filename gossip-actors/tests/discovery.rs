//! The same 6-node loopback cluster built with each of the three discovery actors (static
//! table, CYCLON, mainline DHT on a local testnet) and with a user-written one: a broadcast
//! reaches every node each time. Needs the `dht` feature (CI runs it).
#![cfg(feature = "dht")]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use actix::prelude::*;
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::dht::mainline::Testnet;
use gossip_actors::messages::{
    DiscoveryRecipients, KnownPeers, PeerStatus, PeerSummary, SelectPeers, Shutdown,
};
use gossip_actors::{
    CyclonDiscovery, DhtConfig, DhtDiscovery, Discovery, DiscoveryContext, Liveness, Node,
    NodeEvent, NodeHandle, StartedDiscovery, StaticDiscovery,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

const NODES: usize = 6;

/// A user's own discovery: a fixed list handed out at random, written against the documented
/// contract only (it proves the seam is open to code outside the crate).
#[derive(Debug)]
struct ListDiscovery {
    peers: Vec<SocketAddr>,
    local: Option<SocketAddr>,
    dead: BTreeSet<gossip_actors::core::NodeId>,
    rng: StdRng,
}

impl Actor for ListDiscovery {
    type Context = Context<Self>;
}

impl Discovery for ListDiscovery {
    fn start(mut self: Box<Self>, ctx: DiscoveryContext) -> Result<StartedDiscovery, String> {
        self.local = Some(ctx.local_addr);
        self.rng = StdRng::seed_from_u64(ctx.rng_seed);
        let addr = Actor::start(*self);
        Ok(StartedDiscovery {
            recipients: DiscoveryRecipients::of(&addr),
            routes: Vec::new(),
        })
    }
}

impl Handler<SelectPeers> for ListDiscovery {
    type Result = MessageResult<SelectPeers>;
    fn handle(&mut self, msg: SelectPeers, _: &mut Context<Self>) -> Self::Result {
        let eligible: Vec<SocketAddr> = self
            .peers
            .iter()
            .filter(|p| Some(**p) != self.local && !msg.exclude.contains(p))
            .copied()
            .collect();
        MessageResult(
            eligible
                .choose_multiple(&mut self.rng, msg.count)
                .copied()
                .collect(),
        )
    }
}

impl Handler<PeerStatus> for ListDiscovery {
    type Result = ();
    fn handle(&mut self, msg: PeerStatus, _: &mut Context<Self>) {
        if let PeerStatus::Add { addr } = msg
            && !self.peers.contains(&addr)
            && self.peers.len() < 64
        {
            self.peers.push(addr);
        }
    }
}

impl Handler<KnownPeers> for ListDiscovery {
    type Result = MessageResult<KnownPeers>;
    fn handle(&mut self, _: KnownPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.peers
                .iter()
                .map(|addr| PeerSummary {
                    addr: *addr,
                    node_id: None,
                })
                .collect(),
        )
    }
}

impl Handler<Liveness> for ListDiscovery {
    type Result = ();
    fn handle(&mut self, msg: Liveness, _: &mut Context<Self>) {
        match msg {
            Liveness::Dead { node } => {
                self.dead.insert(node);
            }
            Liveness::Live { node } => {
                self.dead.remove(&node);
            }
            _ => {}
        }
    }
}

impl Handler<Shutdown> for ListDiscovery {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

fn free_ports(n: usize) -> Vec<SocketAddr> {
    // Bind, read the port, release: the nodes bind them right after (loopback only).
    let sockets: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1"))
        .collect();
    sockets.iter().map(|s| s.local_addr().unwrap()).collect()
}

async fn broadcast_reaches_everyone(nodes: &[NodeHandle], label: &str) {
    let mut receivers: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();
    let id = nodes[0]
        .broadcast(format!("hello via {label}").into_bytes())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut reached = BTreeSet::new();
    while reached.len() < nodes.len() && tokio::time::Instant::now() < deadline {
        for (i, rx) in receivers.iter_mut().enumerate() {
            while let Ok(event) = rx.try_recv() {
                if let NodeEvent::Delivered(d) = event
                    && d.id == id
                {
                    reached.insert(i);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        reached.len(),
        nodes.len(),
        "{label}: broadcast reached {reached:?}"
    );
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

async fn cluster(
    label: &str,
    discovery: impl Fn(
        usize,
        &[SocketAddr],
    ) -> Box<dyn FnOnce(gossip_actors::NodeBuilder) -> gossip_actors::NodeBuilder>,
) -> Vec<NodeHandle> {
    let addrs = free_ports(NODES);
    let mut nodes = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let builder = Node::builder()
            .bind(*addr)
            .keyring(Keyring::new(Key::from_bytes([8; 32])))
            .rng_seed(100 + i as u64);
        let node = discovery(i, &addrs)(builder)
            .start()
            .await
            .unwrap_or_else(|e| panic!("{label}: node {i}: {e}"));
        nodes.push(node);
    }
    nodes
}

#[actix::test]
async fn a_broadcast_reaches_every_node_with_each_discovery_actor() {
    // Static: every node is given the whole table.
    let nodes = cluster("static", |_, addrs| {
        let addrs = addrs.to_vec();
        Box::new(move |b| b.discovery(StaticDiscovery::new(addrs)))
    })
    .await;
    broadcast_reaches_everyone(&nodes, "static").await;

    // CYCLON: every node knows one seed; shuffles fill the partial views.
    let nodes = cluster("cyclon", |_, addrs| {
        let seed = addrs[0];
        Box::new(move |b| b.discovery(CyclonDiscovery::new([seed])))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    broadcast_reaches_everyone(&nodes, "cyclon").await;

    // DHT: nodes know only the bootstrap list of a local testnet on 127.0.0.1.
    let testnet = tokio::task::spawn_blocking(|| {
        Testnet::builder(3)
            .bind_address(Ipv4Addr::LOCALHOST)
            .build()
    })
    .await
    .unwrap()
    .expect("testnet binds 127.0.0.1");
    let bootstrap: Vec<SocketAddr> = testnet
        .bootstrap
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert!(bootstrap.iter().all(|a| a.ip() == Ipv4Addr::LOCALHOST));
    let nodes = cluster("dht", |_, _| {
        let bootstrap = bootstrap.clone();
        Box::new(move |b| {
            b.discovery(DhtDiscovery::new("three-ways", bootstrap).with_config(DhtConfig::local()))
        })
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut joined = 0;
        for node in &nodes {
            if node.known_peers().await.unwrap().len() == NODES - 1 {
                joined += 1;
            }
        }
        if joined == NODES || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broadcast_reaches_everyone(&nodes, "dht").await;
    drop(testnet);

    // A user's own actor, through the same seam.
    let nodes = cluster("custom", |_, addrs| {
        let addrs = addrs.to_vec();
        Box::new(move |b| {
            b.discovery(ListDiscovery {
                peers: addrs,
                local: None,
                dead: BTreeSet::new(),
                rng: StdRng::seed_from_u64(0),
            })
        })
    })
    .await;
    broadcast_reaches_everyone(&nodes, "custom").await;
}
