//! Anti-replay at the transport: a genuine datagram captured on the wire and re-sent is
//! dropped and counted, a restarted sender (new epoch) is accepted and its old datagrams are
//! stale, a counter below the window is too old. Over loopback UDP and, identically, over the
//! simulated network.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::BytesMut;
use gossip_actors::core::{AppMessage, Envelope, Message, NodeId};
use gossip_actors::crypto::{Identity, Key, Keyring};
use gossip_actors::messages::InboundMessage;
use gossip_actors::net::sim::{SimConfig, SimNetwork};
use gossip_actors::net::{DropReason, PacketCodec, Security};
use gossip_actors::node::Protocols;
use gossip_actors::{Node, NodeBuilder, NodeConfig, NodeHandle, NodeStats};

const KIND: u16 = 0x7e57;

/// Counts the application messages a node delivers.
struct Inbox(Arc<Mutex<Vec<InboundMessage>>>);

impl Actor for Inbox {
    type Context = Context<Self>;
}

impl Handler<InboundMessage> for Inbox {
    type Result = ();
    fn handle(&mut self, msg: InboundMessage, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(msg);
    }
}

fn keyring() -> Keyring {
    Keyring::new(Key::from_bytes([0x42; 32]))
}

/// A node running no protocol: only the transport and a silent static discovery, so every
/// datagram it receives is one the test sent.
fn quiet(builder: NodeBuilder) -> NodeBuilder {
    builder.keyring(keyring()).seeds([]).config(NodeConfig {
        protocols: Protocols {
            dissemination: false,
            state: false,
            feeds: false,
        },
        ..NodeConfig::default()
    })
}

async fn inbox(node: &NodeHandle) -> Arc<Mutex<Vec<InboundMessage>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    node.register_app(KIND, Inbox(seen.clone()).start().recipient())
        .await
        .unwrap();
    seen
}

/// Polls `node`'s stats until `done` holds (at most 10 s of the runtime's clock).
async fn wait_for(node: &NodeHandle, done: impl Fn(&NodeStats) -> bool) -> NodeStats {
    for _ in 0..1_000 {
        let stats = node.stats().await.unwrap();
        if done(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out: {:?}", node.stats().await.unwrap().transport);
}

/// Seals `envelope` as a holder of the cluster key would.
fn forge(envelope: &Envelope) -> BytesMut {
    let mut codec = PacketCodec::new(Security::Encrypted(Arc::new(keyring())), 1400).unwrap();
    let mut datagram = BytesMut::new();
    codec.encode_datagram(envelope, &mut datagram).unwrap();
    datagram
}

fn app(sender: NodeId, epoch: u64, counter: u64) -> Envelope {
    Envelope {
        sender,
        epoch,
        counter,
        message: Message::Application(AppMessage {
            kind: KIND,
            payload: bytes::Bytes::from(format!("counter {counter}")),
        }),
    }
}

/// Where the test's raw socket is: real loopback UDP or the simulated network.
enum Tap {
    Udp(tokio::net::UdpSocket),
    Sim(gossip_actors::net::sim::SimSocket),
}

impl Tap {
    fn addr(&self) -> SocketAddr {
        match self {
            Tap::Udp(s) => s.local_addr().unwrap(),
            Tap::Sim(s) => s.local_addr(),
        }
    }

    async fn recv(&mut self) -> BytesMut {
        let received = tokio::time::timeout(Duration::from_secs(10), async {
            match self {
                Tap::Udp(s) => {
                    let mut buf = vec![0u8; 65_536];
                    let (len, _) = s.recv_from(&mut buf).await.unwrap();
                    BytesMut::from(&buf[..len])
                }
                Tap::Sim(s) => {
                    futures::future::poll_fn(|cx| s.poll_recv(cx))
                        .await
                        .unwrap()
                        .0
                }
            }
        })
        .await;
        received.expect("the node's datagram reaches the tap")
    }

    async fn send(&self, datagram: &[u8], to: SocketAddr) {
        match self {
            Tap::Udp(s) => {
                s.send_to(datagram, to).await.unwrap();
            }
            Tap::Sim(s) => {
                s.try_send_to(datagram, to).unwrap();
            }
        }
    }
}

/// The whole scenario, on whichever network `place` puts nodes and the tap.
///
/// 1. `a` sends one application message to the tap, which captures the genuine datagram and
///    forwards it to `b` once and then `replays` times more: `b` delivers it once and counts
///    `replays` replays.
/// 2. `a` restarts with the same identity (new epoch) and sends again: accepted; the captured
///    datagram of its first boot is now a stale epoch.
/// 3. A key holder's counter a whole window below the highest is too old; one just inside is
///    accepted once.
async fn scenario(
    place: impl Fn(NodeBuilder, u8) -> NodeBuilder,
    mut tap: Tap,
    replays: u64,
) -> NodeStats {
    let identity_seed = [0x11; 32];
    let a = quiet(place(Node::builder(), 1))
        .identity(Identity::from_bytes(&identity_seed))
        .start()
        .await
        .unwrap();
    let b = quiet(place(Node::builder(), 2)).start().await.unwrap();
    let delivered = inbox(&b).await;
    let b_addr = b.local_addr();

    // 1. Capture and replay.
    a.send_app(tap.addr(), KIND, &b"transfer 100 to mallory"[..])
        .await
        .unwrap();
    let captured = tap.recv().await;
    for _ in 0..=replays {
        tap.send(&captured, b_addr).await;
    }
    let stats = wait_for(&b, |s| s.transport.datagrams_received == replays + 1).await;
    assert_eq!(delivered.lock().unwrap().len(), 1, "delivered exactly once");
    assert_eq!(stats.transport.drops.get(DropReason::Replayed), replays);
    assert_eq!(stats.dropped_replay(), replays);
    assert_eq!(stats.transport.drops.total(), replays);
    // Dropped before routing and before observers: only the genuine copy counts as received
    // (and so as a heartbeat).
    assert_eq!(
        stats
            .transport
            .received_by_type
            .get(gossip_actors::core::PacketType::Application),
        1
    );
    println!(
        "capture: 1 genuine datagram sent {} times, delivered {}, replays dropped {}",
        replays + 1,
        delivered.lock().unwrap().len(),
        stats.transport.drops.get(DropReason::Replayed)
    );

    // 2. Restart with the same identity: a larger epoch resets b's window for it.
    let first_epoch = a.stats().await.unwrap().transport.epoch;
    a.shutdown().await.unwrap();
    let a = quiet(place(Node::builder(), 3))
        .identity(Identity::from_bytes(&identity_seed))
        .start()
        .await
        .unwrap();
    let second_epoch = a.stats().await.unwrap().transport.epoch;
    assert!(second_epoch > first_epoch, "{second_epoch} > {first_epoch}");
    a.send_app(b_addr, KIND, &b"after restart"[..])
        .await
        .unwrap();
    wait_for(&b, |s| s.transport.replay.epoch_resets == 1).await;
    tap.send(&captured, b_addr).await;
    let stats = wait_for(&b, |s| s.transport.drops.get(DropReason::StaleEpoch) == 1).await;
    assert_eq!(
        delivered.lock().unwrap().len(),
        2,
        "the restarted sender is heard"
    );
    println!(
        "restart: epoch {first_epoch} -> {second_epoch}, accepted, old-boot datagram dropped as stale_epoch ({})",
        stats.transport.drops.get(DropReason::StaleEpoch)
    );

    // 3. A key holder's counters at and below the window's edge (window 2,048).
    let holder = NodeId([0x77; 32]);
    let epoch = 1_700_000_000_000_000;
    for counter in [5_000, 5_000 - 2_048, 5_000 - 2_047, 5_000 - 2_047] {
        tap.send(&forge(&app(holder, epoch, counter)), b_addr).await;
    }
    // Received so far: replays + 1, the restarted sender's message, the stale one.
    let stats = wait_for(&b, |s| s.transport.datagrams_received == replays + 7).await;
    assert_eq!(
        stats.transport.drops.get(DropReason::Replayed),
        replays + 1,
        "the second copy of 2,953"
    );
    assert_eq!(
        delivered.lock().unwrap().len(),
        4,
        "5,000 and 2,953 once each"
    );
    assert_eq!(stats.transport.drops.get(DropReason::TooOld), 1);
    assert_eq!(stats.transport.drops.get(DropReason::StaleEpoch), 1);
    assert_eq!(stats.transport.replay.accepted, 4);
    assert_eq!(stats.transport.replay_senders, 2);
    println!(
        "window: counter 2,952 below highest 5,000 dropped as too_old ({}), 2,953 accepted once",
        stats.transport.drops.get(DropReason::TooOld)
    );
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
    stats
}

#[actix::test]
async fn loopback_replays_of_a_captured_datagram_are_dropped_and_counted() {
    let tap = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stats = scenario(|b, _| b, Tap::Udp(tap), 100).await;
    println!(
        "loopback: received {}, drops {:?}",
        stats.transport.datagrams_received,
        stats
            .transport
            .drops
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.name(), n))
            .collect::<Vec<_>>()
    );
}

#[actix::test]
async fn the_simulated_network_drops_replays_identically() {
    tokio::time::pause();
    let network = SimNetwork::new(SimConfig {
        latency_min: Duration::from_millis(1),
        latency_max: Duration::from_millis(1),
        ..SimConfig::default()
    });
    let tap = network.bind("10.0.0.100:7000".parse().unwrap()).unwrap();
    // Epochs come from each node's wall clock: the virtual time at start, as the simulator
    // harness does, so a run is reproducible.
    let start = tokio::time::Instant::now();
    let place = |builder: NodeBuilder, i: u8| {
        builder
            .network(&network)
            .bind(SocketAddr::from(([10, 0, 0, i], 7000)))
            .wall_clock(Arc::new(move || {
                1_700_000_000_000 + start.elapsed().as_millis() as u64
            }))
    };
    let stats = scenario(place, Tap::Sim(tap), 100).await;
    assert_eq!(stats.transport.drops.get(DropReason::Replayed), 101);
    assert_eq!(stats.transport.drops.get(DropReason::TooOld), 1);
    assert_eq!(stats.transport.drops.get(DropReason::StaleEpoch), 1);
}
