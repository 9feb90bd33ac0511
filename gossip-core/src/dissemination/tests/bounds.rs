//! Flooding and arbitrary input: no panic, and every collection stays within its bound.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use rand::rngs::StdRng;

use super::scripted::{addr, core, drain, ms, node};
use crate::dissemination::{Dissemination, DisseminationConfig};
use crate::id::{MessageId, NodeId};
use crate::message::{Gossip, Message};

/// A distinct id per counter value.
fn nth_id(n: u64) -> MessageId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    bytes[8] = 0xaa;
    MessageId(bytes)
}

fn assert_within_bounds<R: rand::Rng>(core: &Dissemination<R>) {
    let o = core.occupancy();
    let c = core.config();
    assert!(o.cached <= c.cache_capacity.get(), "{o:?}");
    assert!(o.seen <= c.seen_capacity, "{o:?}");
    assert!(o.pending_acks <= c.cache_capacity.get(), "{o:?}");
    assert!(o.pending_pulls <= c.pending_pull_capacity, "{o:?}");
    assert!(
        o.queued_transmits + o.queued_events <= c.output_queue_capacity,
        "{o:?}"
    );
}

#[test]
fn flood_of_pull_sync_ids_keeps_pending_pulls_bounded() {
    let t0 = crate::test_util::epoch();
    let mut b = core(2, DisseminationConfig::default(), t0);
    let per_message = b.config().ids_per_message() as u64;
    let total = 100_000u64;
    let mut next = 0u64;
    let mut requested = 0usize;
    while next < total {
        let end = (next + per_message).min(total);
        let ids = (next..end).map(nth_id).collect();
        next = end;
        let from = addr((next % 200) as u8 + 1);
        b.handle_message(t0, from, node(9), Message::PullSync { ids });
        let (transmits, _) = drain(&mut b);
        for t in transmits {
            if let Message::PullRequest { ids } = t.message {
                assert!(ids.len() as u64 <= per_message);
                requested += ids.len();
            }
        }
        assert_within_bounds(&b);
    }
    let cap = b.config().pending_pull_capacity;
    assert_eq!(b.occupancy().pending_pulls, cap);
    assert_eq!(requested, cap, "only ids that fit were requested");
    assert_eq!(b.stats().pending_pull_full_drops, total - cap as u64);

    // One PullSync carrying all 100,000 ids: only the first ids_per_message are looked at.
    let ids: Vec<MessageId> = (total..2 * total).map(nth_id).collect();
    b.handle_message(t0, addr(1), node(9), Message::PullSync { ids });
    assert_eq!(b.stats().ids_truncated, total - per_message);
    drain(&mut b);
    assert_within_bounds(&b);

    // After pull_retry stale requests make room again.
    let later = t0 + b.config().pull_retry;
    b.handle_message(
        later,
        addr(1),
        node(9),
        Message::PullSync {
            ids: vec![nth_id(3 * total)],
        },
    );
    let (transmits, _) = drain(&mut b);
    assert_eq!(transmits.len(), 1);
    b.handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(b.occupancy().pending_pulls, 0, "all swept");
}

#[test]
fn flood_of_distinct_pushes_keeps_cache_seen_and_ack_timers_bounded() {
    let t0 = crate::test_util::epoch();
    let mut b = core(2, DisseminationConfig::default(), t0);
    let total = 100_000u64;
    let mut now = t0;
    for n in 0..total {
        // 100,000 pushes over 10 s of virtual time, timers fired as they come due.
        now += Duration::from_micros(100);
        let gossip = Gossip {
            id: nth_id(n),
            origin: node(1),
            hop: 0,
            payload: Bytes::from_static(b"flood"),
        };
        let from = addr((n % 250) as u8 + 1);
        b.handle_message(now, from, node(1), Message::PushMessage(gossip));
        drain(&mut b);
        if b.poll_timeout().is_some_and(|t| t <= now) {
            b.handle_timeout(now);
            drain(&mut b);
        }
        if n % 1_000 == 0 {
            assert_within_bounds(&b);
        }
    }
    assert_within_bounds(&b);
    let s = b.stats();
    let cache = b.config().cache_capacity.get() as u64;
    let seen = b.config().seen_capacity as u64;
    assert_eq!(s.delivered, total);
    assert_eq!(s.cache_evictions, total - cache);
    assert_eq!(s.seen_evictions, total - seen);
    assert!(s.ack_timers_dropped > 0);
    assert_eq!(b.occupancy().cached as u64, cache);
    assert_eq!(b.occupancy().seen as u64, seen);
    // Every ack timer either fired, was dropped at the bound, or is still pending.
    assert_eq!(
        s.ack_timeouts + s.ack_timers_dropped + b.occupancy().pending_acks as u64,
        total
    );
}

/// A small configuration, so that arbitrary input reaches every bound quickly.
fn tiny_config() -> DisseminationConfig {
    DisseminationConfig {
        fanout: 3,
        acks_needed: 2,
        cache_capacity: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
        cache_ttl: Duration::from_secs(3),
        seen_capacity: 6,
        seen_ttl: Duration::from_secs(5),
        anti_entropy_interval: Duration::from_millis(500),
        anti_entropy_peers: 1,
        anti_entropy_window: Duration::from_secs(2),
        pending_pull_capacity: 5,
        pull_retry: Duration::from_millis(300),
        // ids_per_message 5, payloads up to 33 bytes.
        max_envelope_len: 136,
        output_queue_capacity: 8,
        ..DisseminationConfig::default()
    }
}

#[derive(Clone, Debug)]
enum Input {
    Message {
        from: u8,
        sender: u8,
        message: Message,
    },
    Broadcast(usize),
    Timeout,
    Advance(u64),
    /// Stop draining the output queues until the next `Drain`.
    Hold,
    Drain,
}

fn arb_id() -> impl Strategy<Value = MessageId> {
    prop_oneof![
        3 => (0u8..10).prop_map(|b| MessageId([b; 16])),
        1 => any::<[u8; 16]>().prop_map(MessageId),
    ]
}

fn arb_gossip() -> impl Strategy<Value = Gossip> {
    (arb_id(), 0u8..4, any::<u16>(), 0usize..40).prop_map(|(id, origin, hop, len)| Gossip {
        id,
        origin: NodeId([origin; 32]),
        hop,
        payload: Bytes::from(vec![7u8; len]),
    })
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        arb_gossip().prop_map(Message::PushMessage),
        arb_id().prop_map(|id| Message::PushAck { id }),
        prop::collection::vec(arb_id(), 0..12).prop_map(|ids| Message::PullSync { ids }),
        prop::collection::vec(arb_id(), 0..12).prop_map(|ids| Message::PullRequest { ids }),
        arb_gossip().prop_map(Message::PullResponse),
    ]
}

fn arb_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        8 => (1u8..6, 0u8..4, arb_message())
            .prop_map(|(from, sender, message)| Input::Message { from, sender, message }),
        2 => (0usize..40).prop_map(Input::Broadcast),
        2 => Just(Input::Timeout),
        3 => (0u64..2_000).prop_map(Input::Advance),
        1 => Just(Input::Hold),
        1 => Just(Input::Drain),
    ]
}

fn run_inputs(inputs: Vec<Input>) {
    let t0: Instant = crate::test_util::epoch();
    // Node 1 is local, so senders and origins include ourselves.
    let mut a: Dissemination<StdRng> = core(1, tiny_config(), t0);
    let mut now = t0;
    let mut hold = false;
    for input in inputs {
        match input {
            Input::Message {
                from,
                sender,
                message,
            } => {
                let from: SocketAddr = addr(from);
                a.handle_message(now, from, NodeId([sender; 32]), message);
            }
            Input::Broadcast(len) => {
                let result = a.broadcast(now, Bytes::from(vec![1u8; len]));
                assert_eq!(result.is_ok(), len <= a.config().max_payload_len());
            }
            Input::Timeout => a.handle_timeout(now),
            Input::Advance(millis) => {
                now += ms(millis);
                if a.poll_timeout().is_some_and(|t| t <= now) {
                    a.handle_timeout(now);
                }
            }
            Input::Hold => hold = true,
            Input::Drain => hold = false,
        }
        if !hold {
            let (transmits, _) = drain(&mut a);
            for t in transmits {
                let envelope = crate::message::Envelope {
                    sender: a.local_id(),
                    epoch: u64::MAX,
                    counter: u64::MAX,
                    message: t.message,
                };
                assert!(envelope.encoded_len_bound() <= a.config().max_envelope_len);
            }
        }
        assert_within_bounds(&a);
        if let Some(t) = a.poll_timeout() {
            // A deadline is never further away than the longest timer.
            assert!(t <= now + Duration::from_secs(5));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any sequence of inputs, from any senders, with time moving forward: no panic, bounds
    /// hold after every step, and every transmit fits a datagram.
    #[test]
    fn arbitrary_inputs_never_panic_and_stay_bounded(
        inputs in prop::collection::vec(arb_input(), 0..200)
    ) {
        run_inputs(inputs);
    }
}
