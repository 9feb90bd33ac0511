//! Actors in isolation: each collaborator replaced by a recording actor, assertions on the
//! exact messages received. Time is tokio's paused clock, so timeouts fire deterministically.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use gossip_actors::core::dissemination::{Dissemination, DisseminationConfig};
use gossip_actors::core::{Envelope, Gossip, Message, MessageId, NodeId, PacketType};
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::dissemination::{Broadcast, DisseminationActor, GetDisseminationStats};
use gossip_actors::messages::{
    DiscoveryRecipients, GetTransportStats, InboundMessage, KnownPeers, PeerStatus, PeerSummary,
    RegisterRoute, SelectPeers, SendMessage, Shutdown,
};
use gossip_actors::net::{DropReason, PacketCodec, Security};
use gossip_actors::{FaultInjection, NodeEvent, SendError, TransportActor};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Records every message it handles.
struct Recorder<M> {
    seen: Arc<Mutex<Vec<M>>>,
}

impl<M: 'static + Unpin> Actor for Recorder<M> {
    type Context = Context<Self>;
}

impl Handler<SendMessage> for Recorder<SendMessage> {
    type Result = Result<(), SendError>;
    fn handle(&mut self, msg: SendMessage, _: &mut Context<Self>) -> Self::Result {
        self.seen.lock().unwrap().push(msg);
        Ok(())
    }
}

impl Handler<InboundMessage> for Recorder<InboundMessage> {
    type Result = ();
    fn handle(&mut self, msg: InboundMessage, _: &mut Context<Self>) {
        self.seen.lock().unwrap().push(msg);
    }
}

fn recorder<M: 'static + Unpin>() -> (Arc<Mutex<Vec<M>>>, Recorder<M>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    (seen.clone(), Recorder { seen })
}

/// Discovery double: answers every selection with the fixed peers minus the excluded, and
/// records the requests.
struct FixedDiscovery {
    peers: Vec<SocketAddr>,
    requests: Arc<Mutex<Vec<SelectPeers>>>,
}

impl Actor for FixedDiscovery {
    type Context = Context<Self>;
}

impl Handler<SelectPeers> for FixedDiscovery {
    type Result = MessageResult<SelectPeers>;
    fn handle(&mut self, msg: SelectPeers, _: &mut Context<Self>) -> Self::Result {
        let chosen = self
            .peers
            .iter()
            .filter(|p| !msg.exclude.contains(p))
            .take(msg.count)
            .copied()
            .collect();
        self.requests.lock().unwrap().push(msg);
        MessageResult(chosen)
    }
}

impl Handler<PeerStatus> for FixedDiscovery {
    type Result = ();
    fn handle(&mut self, _: PeerStatus, _: &mut Context<Self>) {}
}

impl Handler<gossip_actors::Liveness> for FixedDiscovery {
    type Result = ();
    fn handle(&mut self, _: gossip_actors::Liveness, _: &mut Context<Self>) {}
}

impl Handler<KnownPeers> for FixedDiscovery {
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

impl Handler<Shutdown> for FixedDiscovery {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Harness {
    actor: Addr<DisseminationActor>,
    sent: Arc<Mutex<Vec<SendMessage>>>,
    selections: Arc<Mutex<Vec<SelectPeers>>>,
    events: tokio::sync::broadcast::Receiver<NodeEvent>,
}

fn harness() -> Harness {
    let now = tokio::time::Instant::now().into_std();
    let core = Dissemination::new(
        NodeId([1; 32]),
        DisseminationConfig::default(),
        StdRng::seed_from_u64(5),
        now,
    )
    .unwrap();
    let (sent, transport) = recorder::<SendMessage>();
    let selections = Arc::new(Mutex::new(Vec::new()));
    let discovery = FixedDiscovery {
        peers: vec![
            peer(2),
            peer(3),
            peer(4),
            peer(5),
            peer(6),
            peer(7),
            peer(8),
        ],
        requests: selections.clone(),
    }
    .start();
    let (events_tx, events) = tokio::sync::broadcast::channel(64);
    let actor = DisseminationActor::new(
        core,
        transport.start().recipient(),
        DiscoveryRecipients::of(&discovery),
        events_tx,
    )
    .start();
    Harness {
        actor,
        sent,
        selections,
        events,
    }
}

async fn settle() {
    // Let the actors run; the paused clock does not move during a yield.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[actix::test]
async fn a_broadcast_is_delivered_locally_and_pushed_to_fanout_peers_from_discovery() {
    tokio::time::pause();
    let mut h = harness();
    let id = h
        .actor
        .send(Broadcast {
            payload: Bytes::from_static(b"hello"),
        })
        .await
        .unwrap()
        .unwrap();
    settle().await;

    match h.events.try_recv().unwrap() {
        NodeEvent::Delivered(d) => {
            assert_eq!((d.id, d.hop, d.origin), (id, 0, NodeId([1; 32])));
            assert_eq!(&d.payload[..], b"hello");
        }
        other => panic!("unexpected {other:?}"),
    }
    let selections = h.selections.lock().unwrap().clone();
    assert_eq!(selections.len(), 1);
    assert_eq!(
        (selections[0].count, selections[0].exclude.clone()),
        (3, vec![])
    );

    let sent = h.sent.lock().unwrap().clone();
    let targets: Vec<SocketAddr> = sent.iter().map(|s| s.to).collect();
    assert_eq!(targets, vec![peer(2), peer(3), peer(4)]);
    for s in &sent {
        match &s.message {
            Message::PushMessage(g) => assert_eq!((g.id, g.hop), (id, 0)),
            other => panic!("expected a push, got {other:?}"),
        }
    }
}

#[actix::test]
async fn without_a_majority_of_acks_the_actor_sends_pull_sync_after_the_ack_timeout() {
    tokio::time::pause();
    let h = harness();
    let id = h
        .actor
        .send(Broadcast {
            payload: Bytes::from_static(b"x"),
        })
        .await
        .unwrap()
        .unwrap();
    settle().await;
    // One ack of the two needed.
    h.actor
        .send(InboundMessage {
            from: peer(2),
            sender: NodeId([2; 32]),
            message: Message::PushAck { id },
            received_at: tokio::time::Instant::now().into_std(),
        })
        .await
        .unwrap();
    h.sent.lock().unwrap().clear();

    tokio::time::sleep(Duration::from_millis(299)).await;
    settle().await;
    assert!(
        h.sent.lock().unwrap().is_empty(),
        "nothing before the 300 ms ack timeout"
    );

    tokio::time::sleep(Duration::from_millis(2)).await;
    settle().await;
    let sent = h.sent.lock().unwrap().clone();
    let last_selection = h.selections.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        last_selection.count, 6,
        "pull-sync goes to 2 x fanout peers"
    );
    assert!(
        last_selection.exclude.contains(&peer(2)),
        "the peer that acked is excluded"
    );
    assert_eq!(sent.len(), 6);
    for s in &sent {
        assert_eq!(s.message, Message::PullSync { ids: vec![id] });
        assert_ne!(s.to, peer(2));
    }
    let stats = h.actor.send(GetDisseminationStats).await.unwrap();
    assert_eq!(stats.core.ack_timeouts, 1);
}

#[actix::test]
async fn an_inbound_push_is_acked_delivered_once_and_forwarded() {
    tokio::time::pause();
    let mut h = harness();
    let gossip = Gossip {
        id: MessageId([9; 16]),
        origin: NodeId([7; 32]),
        hop: 2,
        payload: Bytes::from_static(b"news"),
    };
    for _ in 0..2 {
        h.actor
            .send(InboundMessage {
                from: peer(3),
                sender: NodeId([3; 32]),
                message: Message::PushMessage(gossip.clone()),
                received_at: tokio::time::Instant::now().into_std(),
            })
            .await
            .unwrap();
    }
    settle().await;
    let sent = h.sent.lock().unwrap().clone();
    let acks = sent
        .iter()
        .filter(|s| s.to == peer(3) && s.message == Message::PushAck { id: gossip.id })
        .count();
    assert_eq!(acks, 2, "every copy is acknowledged, duplicates included");
    let forwards: Vec<&SendMessage> = sent
        .iter()
        .filter(|s| matches!(&s.message, Message::PushMessage(g) if g.hop == 3))
        .collect();
    assert_eq!(forwards.len(), 3, "forwarded once, to fanout peers");
    assert!(
        forwards.iter().all(|s| s.to != peer(3)),
        "never back to the sender"
    );

    match h.events.try_recv().unwrap() {
        NodeEvent::Delivered(d) => assert_eq!((d.id, d.hop), (gossip.id, 3)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(h.events.try_recv().is_err(), "delivered exactly once");
    let stats = h.actor.send(GetDisseminationStats).await.unwrap();
    assert_eq!(stats.core.duplicates_suppressed, 1);
}

#[actix::test]
async fn the_transport_routes_authenticated_messages_and_counts_bad_datagrams() {
    let keyring = Arc::new(Keyring::new(Key::from_bytes([3; 32])));
    let security = Security::Encrypted(keyring);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let transport = TransportActor::new(
        NodeId([1; 32]),
        socket,
        PacketCodec::new(security.clone(), 1400).unwrap(),
        PacketCodec::new(security.clone(), 1400).unwrap(),
        FaultInjection::default(),
        1,
    )
    .unwrap();
    let addr = transport.local_addr();
    let transport = transport.start();
    let (routed, route) = recorder::<InboundMessage>();
    transport
        .send(RegisterRoute {
            kinds: vec![PacketType::PushAck],
            recipient: route.start().recipient(),
        })
        .await
        .unwrap();

    let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut codec = PacketCodec::new(security, 1400).unwrap();
    let ack = Envelope {
        sender: NodeId([2; 32]),
        epoch: 1,
        counter: 0,
        message: Message::PushAck {
            id: MessageId([4; 16]),
        },
    };
    let sync = Envelope {
        sender: NodeId([2; 32]),
        epoch: 1,
        counter: 1,
        message: Message::PullSync { ids: vec![] },
    };
    for envelope in [&ack, &sync] {
        let mut datagram = BytesMut::new();
        codec.encode_datagram(envelope, &mut datagram).unwrap();
        raw.send_to(&datagram, addr).await.unwrap();
    }
    raw.send_to(b"not a gossip datagram", addr).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stats = transport.send(GetTransportStats).await.unwrap();
        if stats.datagrams_received == 3 {
            assert_eq!(stats.drops.total(), 1);
            assert_eq!(
                stats.drops.get(DropReason::UnsupportedVersion),
                1,
                "byte 0 is b'n'"
            );
            assert_eq!(stats.unrouted, 1, "no route for PullSync");
            assert_eq!(stats.received_by_type.get(PacketType::PushAck), 1);
            assert_eq!(stats.received_by_type.get(PacketType::PullSync), 1);
            assert_eq!(
                stats.received_by_type.iter().map(|(_, n)| n).sum::<u64>(),
                2
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "datagrams arrive on loopback"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let routed = routed.lock().unwrap().clone();
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0].sender, NodeId([2; 32]));
    assert_eq!(routed[0].message, ack.message);
    assert_eq!(routed[0].from, raw.local_addr().unwrap());
}

/// One source beyond its token bucket is dropped before routing and counted; another source
/// is not affected.
#[actix::test]
async fn the_transport_rate_limits_each_source_and_counts_the_drops() {
    let keyring = Arc::new(Keyring::new(Key::from_bytes([3; 32])));
    let security = Security::Encrypted(keyring);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let transport = TransportActor::new(
        NodeId([1; 32]),
        socket,
        PacketCodec::new(security.clone(), 1400).unwrap(),
        PacketCodec::new(security.clone(), 1400).unwrap(),
        FaultInjection::default(),
        1,
    )
    .unwrap()
    .with_inbound_limit(gossip_actors::net::InboundLimit {
        rate: 1,
        burst: 5,
        ..gossip_actors::net::InboundLimit::default()
    });
    let addr = transport.local_addr();
    let transport = transport.start();
    let (routed, route) = recorder::<InboundMessage>();
    transport
        .send(RegisterRoute {
            kinds: vec![PacketType::PushAck],
            recipient: route.start().recipient(),
        })
        .await
        .unwrap();

    let mut codec = PacketCodec::new(security, 1400).unwrap();
    let flooder = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let honest = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut send = async |socket: &tokio::net::UdpSocket, n: u8| {
        let ack = Envelope {
            sender: NodeId([2; 32]),
            // A fresh packet counter per datagram, so none is dropped as a replay.
            epoch: 1,
            counter: u64::from(n),
            message: Message::PushAck {
                id: MessageId([n; 16]),
            },
        };
        let mut datagram = BytesMut::new();
        codec.encode_datagram(&ack, &mut datagram).unwrap();
        socket.send_to(&datagram, addr).await.unwrap();
    };
    for n in 0..20 {
        send(&flooder, n).await;
    }
    for n in 0..3 {
        send(&honest, 100 + n).await;
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stats = transport.send(GetTransportStats).await.unwrap();
        if stats.datagrams_received == 23 {
            // Well within a second of real time: the flooder's burst of 5 and at most one
            // refilled token pass, the honest source's 3 all pass.
            assert!(
                (14..=15).contains(&stats.rate_limited),
                "{}",
                stats.rate_limited
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "datagrams arrive on loopback"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    settle().await;
    let routed = routed.lock().unwrap().clone();
    let from_honest = routed
        .iter()
        .filter(|m| m.from == honest.local_addr().unwrap())
        .count();
    assert_eq!(from_honest, 3);
    let from_flooder = routed.len() - from_honest;
    assert!((5..=6).contains(&from_flooder), "{from_flooder}");
}
