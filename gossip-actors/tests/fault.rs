//! Fault injection in the transport: injected loss and delay, measured on the simulated network
//! with zero latency and tokio's paused clock, so every observed delay is exactly the injected
//! one (up to tokio's 1 ms timer granularity) and the test does not depend on the machine's
//! speed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use gossip_actors::core::{Message, MessageId, NodeId, PacketType};
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::messages::{GetTransportStats, InboundMessage, RegisterRoute, SendMessage};
use gossip_actors::net::sim::{SimConfig, SimNetwork};
use gossip_actors::net::{PacketCodec, Security};
use gossip_actors::{
    DelayRange, FaultConfigError, FaultInjection, Node, NodeConfig, StartError, TransportActor,
    TransportStats,
};

/// Records every inbound message.
struct Recorder {
    seen: Arc<Mutex<Vec<InboundMessage>>>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<InboundMessage> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: InboundMessage, _: &mut Context<Self>) {
        self.seen.lock().unwrap().push(msg);
    }
}

/// Tokio's timers round a deadline up to the next millisecond.
const TIMER_SLACK: Duration = Duration::from_millis(1);

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 7000))
}

fn security() -> Security {
    Security::Encrypted(Arc::new(Keyring::new(Key::from_bytes([7; 32]))))
}

/// A transport on `net` at `at` with the given faults.
fn transport(net: &SimNetwork, at: SocketAddr, id: u8, fault: FaultInjection) -> TransportActor {
    TransportActor::new(
        NodeId([id; 32]),
        net.bind(at).unwrap(),
        PacketCodec::new(security(), 1400).unwrap(),
        PacketCodec::new(security(), 1400).unwrap(),
        fault,
        u64::from(id),
    )
    .unwrap()
}

struct Pair {
    sender: Addr<TransportActor>,
    receiver: Addr<TransportActor>,
    received: Arc<Mutex<Vec<InboundMessage>>>,
}

/// A sender with `fault` and a receiver whose `PushAck`s are recorded, on a network without
/// latency or loss of its own.
async fn pair(fault: FaultInjection) -> Pair {
    let net = SimNetwork::new(SimConfig {
        latency_min: Duration::ZERO,
        latency_max: Duration::ZERO,
        ..SimConfig::default()
    });
    let sender = transport(&net, addr(1), 1, fault).start();
    let receiver = transport(&net, addr(2), 2, FaultInjection::default()).start();
    let received = Arc::new(Mutex::new(Vec::new()));
    receiver
        .send(RegisterRoute {
            kinds: vec![PacketType::PushAck],
            recipient: Recorder {
                seen: received.clone(),
            }
            .start()
            .recipient(),
        })
        .await
        .unwrap();
    Pair {
        sender,
        receiver,
        received,
    }
}

/// Queues `count` acks (ids 0..count) to the receiver without yielding, so all leave the
/// sender at the same instant of the paused clock.
fn send_acks(pair: &Pair, count: u32) {
    for i in 0..count {
        let mut id = [0; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        pair.sender
            .try_send(SendMessage {
                to: addr(2),
                message: Message::PushAck { id: MessageId(id) },
            })
            .unwrap();
    }
}

/// Lets every timer due within `span` fire.
async fn run_for(span: Duration) {
    tokio::time::sleep(span).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

async fn stats(transport: &Addr<TransportActor>) -> TransportStats {
    transport.send(GetTransportStats).await.unwrap()
}

#[actix::test]
async fn injected_delay_is_within_its_range_and_loss_is_counted() {
    tokio::time::pause();
    const SENT: u32 = 1_000;
    let range = DelayRange::from_millis(20, 80);
    let pair = pair(FaultInjection {
        loss: 0.1,
        delay: Some(range),
        ..FaultInjection::default()
    })
    .await;
    let sent_at: Instant = tokio::time::Instant::now().into_std();
    send_acks(&pair, SENT);
    run_for(range.max + Duration::from_millis(20)).await;

    let received = pair.received.lock().unwrap().clone();
    let sender = stats(&pair.sender).await;
    assert_eq!(
        received.len() as u64 + sender.injected_loss,
        u64::from(SENT),
        "every datagram is either delivered or counted as injected loss"
    );
    assert_eq!(sender.injected_delay, received.len() as u64);
    assert_eq!(sender.datagrams_sent, received.len() as u64);
    assert_eq!(sender.injected_delay_overflow, 0);
    // 10% of 1,000: the binomial's standard deviation is 9.5, so 50..=150 is over 5 sigma.
    assert!(
        (50..=150).contains(&sender.injected_loss),
        "injected loss {} of {SENT} at p = 0.1",
        sender.injected_loss
    );
    assert_eq!(
        stats(&pair.receiver).await.datagrams_received,
        received.len() as u64
    );

    let mut delays: Vec<Duration> = received
        .iter()
        .map(|m| m.received_at.duration_since(sent_at))
        .collect();
    delays.sort_unstable();
    let (first, last) = (delays[0], delays[delays.len() - 1]);
    assert!(
        first >= range.min && last <= range.max + TIMER_SLACK,
        "observed delays {first:?}..={last:?} outside {:?}..={:?}",
        range.min,
        range.max
    );
    // Uniform over 61 ms: ~900 draws cover the range, not one point of it.
    assert!(
        first <= range.min + Duration::from_millis(5)
            && last + Duration::from_millis(5) >= range.max,
        "observed delays {first:?}..={last:?} do not spread over the range"
    );
    let median = delays[delays.len() / 2];
    assert!(
        (Duration::from_millis(40)..=Duration::from_millis(60)).contains(&median),
        "median delay {median:?} is not near the middle of the range"
    );
    // Different delays reorder datagrams, as a real network may.
    let ids: Vec<MessageId> = received
        .iter()
        .map(|m| match m.message {
            Message::PushAck { id } => id,
            ref other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert!(ids.windows(2).any(|w| w[0] > w[1]), "no datagram overtook");
}

#[actix::test]
async fn a_fixed_delay_is_exact() {
    tokio::time::pause();
    let delay = Duration::from_millis(35);
    let pair = pair(FaultInjection {
        delay: Some(DelayRange {
            min: delay,
            max: delay,
        }),
        ..FaultInjection::default()
    })
    .await;
    let sent_at = tokio::time::Instant::now().into_std();
    send_acks(&pair, 10);
    run_for(delay - Duration::from_millis(2)).await;
    assert!(
        pair.received.lock().unwrap().is_empty(),
        "nothing arrives before the delay"
    );
    run_for(Duration::from_millis(10)).await;
    let received = pair.received.lock().unwrap().clone();
    assert_eq!(received.len(), 10);
    let ids: Vec<MessageId> = received
        .iter()
        .map(|m| match m.message {
            Message::PushAck { id } => id,
            ref other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "datagrams due at the same time leave in the order they were sent"
    );
    for m in &received {
        let observed = m.received_at.duration_since(sent_at);
        assert!(
            observed >= delay && observed <= delay + TIMER_SLACK,
            "observed {observed:?} for a fixed delay of {delay:?}"
        );
    }
}

#[actix::test]
async fn a_full_delay_queue_drops_and_counts() {
    tokio::time::pause();
    let pair = pair(FaultInjection {
        delay: Some(DelayRange::from_millis(50, 50)),
        max_delayed: 8,
        ..FaultInjection::default()
    })
    .await;
    send_acks(&pair, 100);
    run_for(Duration::from_millis(60)).await;
    let sender = stats(&pair.sender).await;
    assert_eq!(sender.injected_delay, 8);
    assert_eq!(sender.injected_delay_overflow, 92);
    assert_eq!(pair.received.lock().unwrap().len(), 8);

    // The queue drained: the next datagrams are held back and sent again.
    send_acks(&pair, 5);
    run_for(Duration::from_millis(60)).await;
    let sender = stats(&pair.sender).await;
    assert_eq!(sender.injected_delay, 13);
    assert_eq!(sender.injected_delay_overflow, 92);
    assert_eq!(pair.received.lock().unwrap().len(), 13);
}

#[actix::test]
async fn invalid_fault_settings_are_refused_at_start() {
    let cases = [
        (
            FaultInjection {
                loss: 1.5,
                ..FaultInjection::default()
            },
            FaultConfigError::Loss(1.5),
        ),
        (
            FaultInjection {
                delay: Some(DelayRange::from_millis(80, 20)),
                ..FaultInjection::default()
            },
            FaultConfigError::DelayReversed {
                min: Duration::from_millis(80),
                max: Duration::from_millis(20),
            },
        ),
        (
            FaultInjection {
                delay: Some(DelayRange::from_millis(0, 10_001)),
                ..FaultInjection::default()
            },
            FaultConfigError::DelayTooLong(Duration::from_millis(10_001)),
        ),
        (
            FaultInjection {
                delay: Some(DelayRange::from_millis(1, 2)),
                max_delayed: 0,
                ..FaultInjection::default()
            },
            FaultConfigError::NoDelayQueue,
        ),
    ];
    assert_eq!(FaultInjection::default().validate(), Ok(()));
    for (fault, expected) in cases {
        assert_eq!(fault.validate(), Err(expected.clone()));
        let result = Node::builder()
            .bind("127.0.0.1:0".parse().unwrap())
            .keyring(Keyring::new(Key::from_bytes([7; 32])))
            .config(NodeConfig {
                fault,
                ..NodeConfig::default()
            })
            .start()
            .await;
        match result {
            Err(StartError::Fault(err)) => assert_eq!(err, expected),
            Err(other) => panic!("expected a fault error, got {other}"),
            Ok(_) => panic!("a node started with {fault:?}"),
        }
    }
}
