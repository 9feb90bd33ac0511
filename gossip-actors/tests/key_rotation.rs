//! Key rotation on a running cluster (`docs/wire.md` section 4.4): while broadcasts flow, every
//! node adds key B, then every node makes B primary, then every node removes key A, one node
//! at a time. No broadcast is lost or delivered twice, no datagram fails authentication on
//! the way, and at the end a datagram sealed with A is dropped as `unknown_key_id`. Over
//! loopback UDP and over the simulated network.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use gossip_actors::core::{Envelope, Message, MessageId, NodeId};
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::net::sim::{SimConfig, SimNetwork};
use gossip_actors::net::{DropReason, PacketCodec, Security};
use gossip_actors::node::Protocols;
use gossip_actors::{
    KeyringError, KeyringView, Node, NodeBuilder, NodeConfig, NodeEvent, NodeHandle,
};

const NODES: usize = 5;
/// One broadcast per tick, from node `tick % NODES`.
const TICKS: usize = 100;
const TICK: Duration = Duration::from_millis(25);
/// Node `i` adds B at tick `ADD + 3i`, makes it primary at `PRIMARY + 3i`, removes A at
/// `REMOVE + 3i`: a rolling rotation, with at least 300 ms between the last node of one step
/// and the first node of the next (more than any link's latency).
const ADD: usize = 10;
const PRIMARY: usize = 40;
const REMOVE: usize = 70;

fn key_a() -> Key {
    Key::from_bytes([0xa0; 32])
}

fn key_b() -> Key {
    Key::from_bytes([0xb0; 32])
}

fn sealed_with(key: Key, counter: u64) -> BytesMut {
    let mut codec = PacketCodec::new(Security::Encrypted(Arc::new(Keyring::new(key))), 1400)
        .expect("valid codec");
    let mut datagram = BytesMut::new();
    codec
        .encode_datagram(
            &Envelope {
                sender: NodeId([0xee; 32]),
                epoch: 1,
                counter,
                message: Message::PushAck {
                    id: MessageId([0xee; 16]),
                },
            },
            &mut datagram,
        )
        .expect("fits");
    datagram
}

async fn start(place: &impl Fn(NodeBuilder, usize) -> NodeBuilder) -> Vec<NodeHandle> {
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for i in 0..NODES {
        let builder = place(Node::builder(), i)
            .keyring(Keyring::new(key_a()))
            .config(NodeConfig {
                protocols: Protocols {
                    dissemination: true,
                    state: false,
                    feeds: false,
                },
                ..NodeConfig::default()
            })
            .seeds(nodes.iter().map(NodeHandle::local_addr))
            .rng_seed(40 + i as u64);
        nodes.push(builder.start().await.expect("node starts"));
    }
    // Every node learns every earlier one from its first datagram; introduce them both ways.
    for a in &nodes {
        for b in &nodes {
            if a.local_addr() != b.local_addr() {
                a.add_peer(b.local_addr()).await.unwrap();
            }
        }
    }
    nodes
}

/// Runs the rotation; `send_raw` sends one datagram to an address from outside the cluster.
async fn rotation(
    place: impl Fn(NodeBuilder, usize) -> NodeBuilder,
    send_raw: impl AsyncFn(&[u8], SocketAddr),
) {
    let (a, b) = (key_a(), key_b());
    assert_ne!(a.id(), b.id(), "distinct key ids");
    let nodes = start(&place).await;
    let mut events: Vec<_> = nodes.iter().map(NodeHandle::subscribe).collect();

    let mut sent: Vec<MessageId> = Vec::new();
    for tick in 0..TICKS {
        for (i, node) in nodes.iter().enumerate() {
            if tick == ADD + 3 * i {
                let view = node.add_key(b.clone()).await.unwrap();
                assert_eq!(
                    view,
                    KeyringView {
                        primary: a.id(),
                        accepted: vec![b.id()]
                    }
                );
            }
            if tick == PRIMARY + 3 * i {
                let view = node.set_primary_key(b.id()).await.unwrap();
                assert_eq!(
                    view,
                    KeyringView {
                        primary: b.id(),
                        accepted: vec![a.id()]
                    }
                );
                // The primary cannot be removed.
                assert_eq!(
                    node.remove_key(b.id()).await,
                    Err(KeyringError::RemovePrimary { key_id: b.id() })
                );
            }
            if tick == REMOVE + 3 * i {
                let view = node.remove_key(a.id()).await.unwrap();
                assert_eq!(
                    view,
                    KeyringView {
                        primary: b.id(),
                        accepted: vec![]
                    }
                );
                assert_eq!(
                    node.set_primary_key(a.id()).await,
                    Err(KeyringError::UnknownKeyId { key_id: a.id() })
                );
            }
        }
        let from = &nodes[tick % NODES];
        sent.push(
            from.broadcast(format!("m{tick}").into_bytes())
                .await
                .unwrap(),
        );
        tokio::time::sleep(TICK).await;
    }
    // Long enough for anti-entropy (every 1 s) to repair any push that went missing.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Every broadcast delivered at every node exactly once.
    let mut lost = 0;
    let mut duplicates = 0;
    let mut deliveries = 0;
    for (i, rx) in events.iter_mut().enumerate() {
        let mut count: BTreeMap<MessageId, usize> = BTreeMap::new();
        while let Ok(event) = rx.try_recv() {
            if let NodeEvent::Delivered(d) = event {
                *count.entry(d.id).or_default() += 1;
                deliveries += 1;
            }
        }
        for id in &sent {
            match count.get(id) {
                None => lost += 1,
                Some(1) => {}
                Some(n) => duplicates += n - 1,
            }
        }
        assert_eq!(
            count.len(),
            sent.len(),
            "node {i}: nothing but what was sent"
        );
    }
    let mut auth_drops = 0;
    let mut replay_drops = 0;
    for node in &nodes {
        let stats = node.stats().await.unwrap();
        auth_drops += stats.dropped_auth();
        replay_drops += stats.dropped_replay();
    }
    println!(
        "rotation A {:#04x} -> B {:#04x} on {NODES} nodes: {} broadcasts, {deliveries} deliveries \
         (expected {}), lost {lost}, duplicates {duplicates}, auth drops {auth_drops}, replay drops {replay_drops}",
        a.id(),
        b.id(),
        sent.len(),
        sent.len() * NODES
    );
    assert_eq!((lost, duplicates), (0, 0));
    assert_eq!(deliveries, sent.len() * NODES);
    assert_eq!(
        auth_drops, 0,
        "no datagram failed authentication during the rotation"
    );
    assert_eq!(replay_drops, 0);

    // At the end the old key is rejected, the new one accepted.
    let target = nodes[0].local_addr();
    send_raw(&sealed_with(a.clone(), 0), target).await;
    send_raw(&sealed_with(b.clone(), 1), target).await;
    let mut stats = nodes[0].stats().await.unwrap();
    for _ in 0..500 {
        if stats.transport.drops.get(DropReason::UnknownKeyId) == 1
            && stats.transport.replay.accepted > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        stats = nodes[0].stats().await.unwrap();
    }
    let unknown = stats.transport.drops.get(DropReason::UnknownKeyId);
    println!("after rotation: a datagram sealed with A dropped as unknown_key_id ({unknown})");
    assert_eq!(unknown, 1);
    assert_eq!(stats.dropped_auth(), 1, "the one sealed with B opened");
    for node in &nodes {
        node.shutdown().await.unwrap();
    }
}

#[actix::test]
async fn loopback_cluster_rotates_its_key_while_broadcasting_without_loss() {
    let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    rotation(
        |builder, _| builder,
        async |datagram: &[u8], to| {
            raw.send_to(datagram, to).await.unwrap();
        },
    )
    .await;
}

#[actix::test]
async fn simulated_cluster_rotates_its_key_while_broadcasting_without_loss() {
    tokio::time::pause();
    let network = SimNetwork::new(SimConfig {
        latency_min: Duration::from_millis(10),
        latency_max: Duration::from_millis(50),
        seed: 7,
        ..SimConfig::default()
    });
    let tap = network.bind("10.0.1.1:7000".parse().unwrap()).unwrap();
    let place = |builder: NodeBuilder, i: usize| {
        builder
            .network(&network)
            .bind(SocketAddr::from(([10, 0, 0, i as u8 + 1], 7000)))
    };
    rotation(place, async |datagram: &[u8], to| {
        tap.try_send_to(datagram, to).unwrap();
    })
    .await;
}
