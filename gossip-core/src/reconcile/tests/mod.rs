//! Tests of the reconciliation core: scripted exchanges between a few cores, property tests of
//! the wire bounds and of delta fitting, and multi-node scenarios (convergence, partitions,
//! 2,000 nodes, flow control) on a virtual clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{Reconcile, ReconcileConfig, StateEvent, StateMessage, StateTransmit};
use crate::flow::FlowConfig;
use crate::id::NodeId;

mod bounds;
mod flow_scenarios;
mod scenarios;
mod scripted;
mod sim;

pub(super) fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000))
}

pub(super) fn node(i: u8) -> NodeId {
    NodeId([i; 32])
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Flow control that never refuses in a unit test.
pub(super) fn unthrottled() -> FlowConfig {
    FlowConfig {
        initial_rate: 1_000,
        max_rate: 1_000,
        burst: 1_000_000,
        ..FlowConfig::default()
    }
}

/// The default configuration without flow-control refusals.
pub(super) fn config() -> ReconcileConfig {
    ReconcileConfig {
        flow: unthrottled(),
        ..ReconcileConfig::default()
    }
}

/// A core for `node(i)` at `addr(i)`.
pub(super) fn core(
    i: u8,
    generation: u64,
    seeds: Vec<SocketAddr>,
    config: ReconcileConfig,
    t0: Instant,
) -> Reconcile<StdRng> {
    Reconcile::new(
        node(i),
        addr(u16::from(i)),
        generation,
        seeds,
        config,
        StdRng::seed_from_u64(u64::from(i)),
        t0,
    )
    .unwrap()
}

pub(super) fn drain<R: rand::Rng>(
    core: &mut Reconcile<R>,
) -> (Vec<StateTransmit>, Vec<StateEvent>) {
    let mut transmits = Vec::new();
    while let Some(t) = core.poll_transmit() {
        assert!(
            t.message.encoded_len_bound() + super::ENVELOPE_OVERHEAD
                <= core.config().max_envelope_len
        );
        transmits.push(t);
    }
    let mut events = Vec::new();
    while let Some(e) = core.poll_event() {
        events.push(e);
    }
    (transmits, events)
}

/// The three messages of one exchange and the events each side produced.
#[derive(Debug)]
pub(super) struct Exchange {
    pub digest: StateMessage,
    pub reply: StateMessage,
    pub deltas: Option<StateMessage>,
    pub initiator_events: Vec<StateEvent>,
    pub responder_events: Vec<StateEvent>,
}

/// One complete exchange initiated by `a` with `b` at `now`, messages delivered instantly.
pub(super) fn exchange<R: rand::Rng>(
    a: &mut Reconcile<R>,
    b: &mut Reconcile<R>,
    now: Instant,
) -> Exchange {
    drain(a);
    drain(b);
    let (a_id, a_addr, b_id, b_addr) = (a.local_id(), a.local_addr(), b.local_id(), b.local_addr());
    a.send_digest(now, b_addr, Some(b_id));
    let (mut t, _) = drain(a);
    assert_eq!(t.len(), 1);
    let digest = t.remove(0).message;
    b.handle_message(now, a_addr, a_id, digest.clone());
    let (mut t, mut responder_events) = drain(b);
    assert_eq!(t.len(), 1);
    let reply = t.remove(0);
    assert_eq!(reply.to, a_addr);
    a.handle_message(now, b_addr, b_id, reply.message.clone());
    let (mut t, initiator_events) = drain(a);
    let deltas = t.pop().map(|t| t.message);
    if let Some(d) = &deltas {
        b.handle_message(now, a_addr, a_id, d.clone());
        responder_events.extend(drain(b).1);
    }
    Exchange {
        digest,
        reply: reply.message,
        deltas,
        initiator_events,
        responder_events,
    }
}

pub(super) fn bytes(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}
