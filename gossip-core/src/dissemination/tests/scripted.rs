//! One, two or three cores driven by hand: every transmit, event and deadline asserted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::ConfigError;
use crate::dissemination::{
    BroadcastError, Delivery, Destination, Dissemination, DisseminationConfig, DisseminationStats,
    Event, Occupancy, Transmit,
};
use crate::id::{MessageId, NodeId};
use crate::message::{Gossip, Message};

pub(super) fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 7000))
}

pub(super) fn node(i: u8) -> NodeId {
    NodeId([i; 32])
}

pub(super) fn mid(i: u8) -> MessageId {
    MessageId([i; 16])
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The default configuration without anti-entropy, so only the go-gossip rules act.
pub(super) fn quiet() -> DisseminationConfig {
    DisseminationConfig {
        anti_entropy_peers: 0,
        ..DisseminationConfig::default()
    }
}

pub(super) fn core(local: u8, config: DisseminationConfig, t0: Instant) -> Dissemination<StdRng> {
    Dissemination::new(
        node(local),
        config,
        StdRng::seed_from_u64(u64::from(local)),
        t0,
    )
    .unwrap()
}

pub(super) fn drain<R: rand::Rng>(core: &mut Dissemination<R>) -> (Vec<Transmit>, Vec<Event>) {
    let mut transmits = Vec::new();
    while let Some(t) = core.poll_transmit() {
        transmits.push(t);
    }
    let mut events = Vec::new();
    while let Some(e) = core.poll_event() {
        events.push(e);
    }
    (transmits, events)
}

fn gossip(id: MessageId, origin: NodeId, hop: u16, payload: &'static [u8]) -> Gossip {
    Gossip {
        id,
        origin,
        hop,
        payload: Bytes::from_static(payload),
    }
}

fn to_peer(to: SocketAddr, message: Message) -> Transmit {
    Transmit {
        destination: Destination::Peer(to),
        message,
    }
}

fn to_random(count: usize, exclude: Vec<SocketAddr>, message: Message) -> Transmit {
    Transmit {
        destination: Destination::Random { count, exclude },
        message,
    }
}

fn delivered(id: MessageId, origin: NodeId, hop: u16, payload: &'static [u8]) -> Event {
    Event::Delivered(Delivery {
        id,
        origin,
        hop,
        payload: Bytes::from_static(payload),
    })
}

#[test]
fn new_rejects_an_invalid_config() {
    let t0 = crate::test_util::epoch();
    let config = DisseminationConfig {
        acks_needed: 4,
        ..DisseminationConfig::default()
    };
    let err = Dissemination::new(node(1), config, StdRng::seed_from_u64(1), t0).unwrap_err();
    assert_eq!(
        err,
        ConfigError::OutOfRange {
            field: "acks_needed",
            value: 4,
            min: 1,
            max: 3
        }
    );
}

#[test]
fn broadcast_delivers_locally_caches_and_pushes_to_fanout() {
    let t0 = crate::test_util::epoch();
    let mut a = core(1, quiet(), t0);
    assert_eq!(a.poll_timeout(), None, "nothing scheduled yet");
    let id = a.broadcast(t0, Bytes::from_static(b"hi")).unwrap();
    let (transmits, events) = drain(&mut a);
    assert_eq!(events, vec![delivered(id, node(1), 0, b"hi")]);
    assert_eq!(
        transmits,
        vec![to_random(
            3,
            vec![],
            Message::PushMessage(gossip(id, node(1), 0, b"hi"))
        )]
    );
    assert_eq!(a.poll_timeout(), Some(t0 + ms(300)), "ack timer");
    assert!(a.has_seen(&id));
    assert_eq!(
        a.occupancy(),
        Occupancy {
            cached: 1,
            seen: 1,
            pending_acks: 1,
            ..Occupancy::default()
        }
    );
    let s = a.stats();
    assert_eq!((s.broadcasts, s.delivered, s.pushes_sent), (1, 1, 1));
}

#[test]
fn acks_count_distinct_peers_and_a_majority_clears_the_timer() {
    let t0 = crate::test_util::epoch();
    let mut a = core(1, quiet(), t0);
    let id = a.broadcast(t0, Bytes::from_static(b"x")).unwrap();
    drain(&mut a);
    // The same peer twice counts once.
    a.handle_message(t0 + ms(10), addr(2), node(2), Message::PushAck { id });
    a.handle_message(t0 + ms(11), addr(2), node(2), Message::PushAck { id });
    assert_eq!(a.occupancy().pending_acks, 1);
    assert_eq!(a.stats().duplicate_acks, 1);
    // An ack for an unknown id is stray.
    a.handle_message(
        t0 + ms(12),
        addr(3),
        node(3),
        Message::PushAck { id: mid(9) },
    );
    assert_eq!(a.stats().stray_acks, 1);
    assert_eq!(a.occupancy().pending_acks, 1);
    // A second distinct peer reaches acks_needed = 2.
    a.handle_message(t0 + ms(13), addr(3), node(3), Message::PushAck { id });
    assert_eq!(a.occupancy().pending_acks, 0);
    assert_eq!(a.stats().ack_majorities, 1);
    // The third ack arrives after the timer is gone: stray.
    a.handle_message(t0 + ms(14), addr(4), node(4), Message::PushAck { id });
    assert_eq!(a.stats().stray_acks, 2);
    assert_eq!(a.stats().acks_received, 5);
    assert!(drain(&mut a).0.is_empty(), "acks are never answered");
    // No ack deadline is left: the next wake-up is the cache expiry sweep.
    assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    a.handle_timeout(t0 + ms(300));
    assert!(drain(&mut a).0.is_empty());
    assert_eq!(a.stats().ack_timeouts, 0);
}

#[test]
fn push_is_acked_delivered_one_hop_further_and_repropagated() {
    let t0 = crate::test_util::epoch();
    let mut b = core(2, quiet(), t0);
    let g = gossip(mid(1), node(1), 0, b"p");
    b.handle_message(t0, addr(1), node(1), Message::PushMessage(g));
    let (transmits, events) = drain(&mut b);
    assert_eq!(events, vec![delivered(mid(1), node(1), 1, b"p")]);
    assert_eq!(
        transmits,
        vec![
            to_peer(addr(1), Message::PushAck { id: mid(1) }),
            to_random(
                3,
                vec![addr(1)],
                Message::PushMessage(gossip(mid(1), node(1), 1, b"p"))
            ),
        ]
    );
    assert_eq!(b.poll_timeout(), Some(t0 + ms(300)));

    // A duplicate from another peer is acked but neither delivered nor forwarded.
    let dup = gossip(mid(1), node(1), 4, b"p");
    b.handle_message(t0 + ms(5), addr(3), node(3), Message::PushMessage(dup));
    let (transmits, events) = drain(&mut b);
    assert!(events.is_empty());
    assert_eq!(
        transmits,
        vec![to_peer(addr(3), Message::PushAck { id: mid(1) })]
    );
    let s = b.stats();
    assert_eq!(
        (s.delivered, s.duplicates_suppressed, s.push_acks_sent),
        (1, 1, 2)
    );

    // Our own broadcast coming back is a duplicate even if we no longer remember its id.
    let own = gossip(mid(7), node(2), 3, b"mine");
    b.handle_message(t0 + ms(6), addr(3), node(3), Message::PushMessage(own));
    let (transmits, events) = drain(&mut b);
    assert!(events.is_empty());
    assert_eq!(
        transmits,
        vec![to_peer(addr(3), Message::PushAck { id: mid(7) })]
    );
    assert_eq!(b.stats().duplicates_suppressed, 2);
    assert!(b.has_seen(&mid(7)));

    // The hop count saturates instead of overflowing.
    let far = gossip(mid(8), node(1), u16::MAX, b"far");
    b.handle_message(t0 + ms(7), addr(3), node(3), Message::PushMessage(far));
    let (_, events) = drain(&mut b);
    assert_eq!(events, vec![delivered(mid(8), node(1), u16::MAX, b"far")]);
}

#[test]
fn ack_timeout_sends_pull_sync_excluding_ackers_and_the_source() {
    let t0 = crate::test_util::epoch();
    let mut b = core(2, quiet(), t0);
    let g = gossip(mid(1), node(1), 0, b"p");
    b.handle_message(t0, addr(1), node(1), Message::PushMessage(g));
    drain(&mut b);
    // One ack of the two needed.
    b.handle_message(
        t0 + ms(20),
        addr(5),
        node(5),
        Message::PushAck { id: mid(1) },
    );
    b.handle_timeout(t0 + ms(299));
    assert!(drain(&mut b).0.is_empty(), "not due yet");
    b.handle_timeout(t0 + ms(300));
    let (transmits, _) = drain(&mut b);
    assert_eq!(
        transmits,
        vec![to_random(
            6,
            vec![addr(1), addr(5)],
            Message::PullSync { ids: vec![mid(1)] }
        )]
    );
    assert_eq!(b.stats().ack_timeouts, 1);
    assert_eq!(b.stats().pull_syncs_sent, 1);
    assert_eq!(b.occupancy().pending_acks, 0);
    // Once only: the timer is gone.
    b.handle_timeout(t0 + ms(900));
    assert!(drain(&mut b).0.is_empty());
    // Late acks are stray.
    b.handle_message(
        t0 + ms(901),
        addr(6),
        node(6),
        Message::PushAck { id: mid(1) },
    );
    assert_eq!(b.stats().stray_acks, 1);
}

#[test]
fn pull_sync_requests_only_missing_ids_once_per_retry_period() {
    let t0 = crate::test_util::epoch();
    let mut b = core(2, quiet(), t0);
    b.handle_message(
        t0,
        addr(1),
        node(1),
        Message::PushMessage(gossip(mid(1), node(1), 0, b"have")),
    );
    drain(&mut b);
    let ids = vec![mid(1), mid(2), mid(3), mid(2)];
    b.handle_message(t0 + ms(1), addr(3), node(3), Message::PullSync { ids });
    let (transmits, _) = drain(&mut b);
    assert_eq!(
        transmits,
        vec![to_peer(
            addr(3),
            Message::PullRequest {
                ids: vec![mid(2), mid(3)]
            }
        )]
    );
    assert_eq!(b.occupancy().pending_pulls, 2);
    // Another peer announces mid(2) within pull_retry: already pending, not requested.
    b.handle_message(
        t0 + ms(200),
        addr(4),
        node(4),
        Message::PullSync { ids: vec![mid(2)] },
    );
    assert!(drain(&mut b).0.is_empty());
    // After pull_retry it may be requested from that other peer.
    b.handle_message(
        t0 + ms(301),
        addr(4),
        node(4),
        Message::PullSync { ids: vec![mid(2)] },
    );
    let (transmits, _) = drain(&mut b);
    assert_eq!(
        transmits,
        vec![to_peer(addr(4), Message::PullRequest { ids: vec![mid(2)] })]
    );
    // Everything known: no request at all.
    b.handle_message(
        t0 + ms(302),
        addr(4),
        node(4),
        Message::PullSync { ids: vec![mid(1)] },
    );
    assert!(drain(&mut b).0.is_empty());
    assert_eq!(b.stats().pull_requests_sent, 2);
    assert_eq!(b.stats().pull_syncs_received, 4);
}

#[test]
fn pull_request_is_served_from_the_cache_until_cache_ttl() {
    let t0 = crate::test_util::epoch();
    let mut a = core(1, quiet(), t0);
    let id = a.broadcast(t0, Bytes::from_static(b"cached")).unwrap();
    drain(&mut a);
    let ids = vec![id, mid(9), id];
    a.handle_message(t0 + ms(50), addr(2), node(2), Message::PullRequest { ids });
    let (transmits, events) = drain(&mut a);
    assert!(events.is_empty());
    assert_eq!(
        transmits,
        vec![to_peer(
            addr(2),
            Message::PullResponse(gossip(id, node(1), 0, b"cached"))
        )]
    );
    assert_eq!(a.stats().pull_misses, 1);
    assert_eq!(a.stats().pull_responses_sent, 1);

    // Just before cache_ttl it is still served; at cache_ttl it is not, swept or not.
    let ttl = Duration::from_secs(30);
    a.handle_message(
        t0 + ttl - ms(1),
        addr(2),
        node(2),
        Message::PullRequest { ids: vec![id] },
    );
    assert_eq!(drain(&mut a).0.len(), 1);
    a.handle_message(
        t0 + ttl,
        addr(2),
        node(2),
        Message::PullRequest { ids: vec![id] },
    );
    assert!(drain(&mut a).0.is_empty(), "expired entry served");
    assert_eq!(a.occupancy().cached, 1, "not swept yet");
    a.handle_timeout(t0 + ttl);
    assert_eq!(a.occupancy().cached, 0);
    assert_eq!(a.stats().cache_expirations, 1);
    // The id is still remembered as seen until seen_ttl: a late copy is a duplicate.
    assert!(a.has_seen(&id));
    let late = gossip(id, node(9), 0, b"cached");
    a.handle_message(
        t0 + ttl + ms(1),
        addr(3),
        node(3),
        Message::PullResponse(late),
    );
    assert!(drain(&mut a).1.is_empty());
    assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(90)));
    a.handle_timeout(t0 + Duration::from_secs(90));
    assert!(!a.has_seen(&id));
    assert_eq!(a.stats().seen_expirations, 1);
    assert_eq!(a.poll_timeout(), None, "nothing left to expire");
}

#[test]
fn pull_response_delivers_without_ack_and_repropagates() {
    let t0 = crate::test_util::epoch();
    let mut c = core(3, quiet(), t0);
    c.handle_message(
        t0,
        addr(1),
        node(1),
        Message::PullSync { ids: vec![mid(1)] },
    );
    drain(&mut c);
    assert_eq!(c.occupancy().pending_pulls, 1);
    let g = gossip(mid(1), node(9), 2, b"r");
    c.handle_message(
        t0 + ms(30),
        addr(1),
        node(1),
        Message::PullResponse(g.clone()),
    );
    let (transmits, events) = drain(&mut c);
    assert_eq!(events, vec![delivered(mid(1), node(9), 3, b"r")]);
    assert_eq!(
        transmits,
        vec![to_random(
            3,
            vec![addr(1)],
            Message::PushMessage(gossip(mid(1), node(9), 3, b"r"))
        )]
    );
    assert_eq!(c.occupancy().pending_pulls, 0);
    assert_eq!(c.stats().pulls_recovered, 1);
    // A second response is a duplicate.
    c.handle_message(t0 + ms(31), addr(1), node(1), Message::PullResponse(g));
    let (transmits, events) = drain(&mut c);
    assert!(transmits.is_empty() && events.is_empty());
    assert_eq!(c.stats().duplicates_suppressed, 1);
}

/// Three cores wired by hand: A's push reaches only B, so A misses its ack majority and
/// C recovers the broadcast through PullSync → PullRequest → PullResponse.
#[test]
fn three_nodes_recover_a_lost_push_through_pull_sync() {
    let t0 = crate::test_util::epoch();
    let (mut a, mut b, mut c) = (
        core(1, quiet(), t0),
        core(2, quiet(), t0),
        core(3, quiet(), t0),
    );
    let id = a.broadcast(t0, Bytes::from_static(b"m")).unwrap();
    let (push, _) = drain(&mut a);
    let push = push.into_iter().next().unwrap().message;

    // Only B gets it; B's ack returns to A.
    b.handle_message(t0 + ms(5), addr(1), node(1), push);
    let (b_out, b_events) = drain(&mut b);
    assert_eq!(b_events.len(), 1);
    let ack = b_out[0].clone();
    assert_eq!(ack, to_peer(addr(1), Message::PushAck { id }));
    a.handle_message(t0 + ms(10), addr(2), node(2), ack.message);

    // A's timer fires with one ack of two: PullSync to six peers, B excluded.
    a.handle_timeout(t0 + ms(300));
    let (a_out, _) = drain(&mut a);
    assert_eq!(
        a_out,
        vec![to_random(
            6,
            vec![addr(2)],
            Message::PullSync { ids: vec![id] }
        )]
    );

    // C gets it and asks A for the id.
    c.handle_message(t0 + ms(305), addr(1), node(1), a_out[0].message.clone());
    let (c_out, _) = drain(&mut c);
    assert_eq!(
        c_out,
        vec![to_peer(addr(1), Message::PullRequest { ids: vec![id] })]
    );
    a.handle_message(t0 + ms(310), addr(3), node(3), c_out[0].message.clone());
    let (a_out, _) = drain(&mut a);
    assert_eq!(
        a_out,
        vec![to_peer(
            addr(3),
            Message::PullResponse(gossip(id, node(1), 0, b"m"))
        )]
    );
    c.handle_message(t0 + ms(315), addr(1), node(1), a_out[0].message.clone());
    let (c_out, c_events) = drain(&mut c);
    assert_eq!(c_events, vec![delivered(id, node(1), 1, b"m")]);
    assert_eq!(
        c_out,
        vec![to_random(
            3,
            vec![addr(1)],
            Message::PushMessage(gossip(id, node(1), 1, b"m"))
        )]
    );
    assert_eq!(c.stats().pulls_recovered, 1);
    assert_eq!(a.stats().pull_responses_sent, 1);
}

#[test]
fn anti_entropy_announces_recent_ids_most_recent_first_to_one_group() {
    let t0 = crate::test_util::epoch();
    let config = DisseminationConfig {
        // ids_per_message = (136 − 52) / 16 = 5
        max_envelope_len: 136,
        anti_entropy_peers: 2,
        anti_entropy_window: Duration::from_secs(10),
        anti_entropy_interval: Duration::from_secs(1),
        ..DisseminationConfig::default()
    };
    assert_eq!(config.ids_per_message(), 5);
    let mut a = core(1, config, t0);
    // One old broadcast, then seven recent ones.
    let old = a.broadcast(t0, Bytes::from_static(b"old")).unwrap();
    let start = t0 + Duration::from_secs(5);
    let mut recent = Vec::new();
    for k in 0..7 {
        recent.push(a.broadcast(start + ms(k), Bytes::new()).unwrap());
    }
    drain(&mut a);
    // Acks so that no ack timer interferes.
    for id in recent.iter().chain([&old]) {
        a.handle_message(start, addr(2), node(2), Message::PushAck { id: *id });
        a.handle_message(start, addr(3), node(3), Message::PushAck { id: *id });
    }
    assert_eq!(a.occupancy().pending_acks, 0);
    let round_at = t0 + Duration::from_secs(12);
    a.handle_timeout(round_at);
    let (transmits, _) = drain(&mut a);
    recent.reverse();
    let group = |g: u64, ids: &[MessageId]| Transmit {
        destination: Destination::RandomGroup {
            group: g,
            count: 2,
            exclude: vec![],
        },
        message: Message::PullSync { ids: ids.to_vec() },
    };
    // `old` is 12 s old, outside the 10 s window; the rest, newest first, in chunks of 5,
    // all in one group.
    assert_eq!(
        transmits,
        vec![group(0, &recent[..5]), group(0, &recent[5..])]
    );
    let next = a.poll_timeout().unwrap();
    assert_eq!(next, round_at + Duration::from_secs(1));
    a.handle_timeout(next);
    let (transmits, _) = drain(&mut a);
    assert_eq!(
        transmits,
        vec![group(1, &recent[..5]), group(1, &recent[5..])]
    );
    assert_eq!(a.stats().anti_entropy_rounds, 2);
    assert_eq!(a.stats().pull_syncs_sent, 4);
    // Past the window nothing is announced, but the rounds keep being scheduled.
    a.handle_timeout(start + Duration::from_secs(11));
    assert!(drain(&mut a).0.is_empty());
    assert!(a.poll_timeout().is_some());
}

#[test]
fn anti_entropy_first_round_is_within_one_interval() {
    let t0 = crate::test_util::epoch();
    for seed in 0..20 {
        let a = Dissemination::new(
            node(1),
            DisseminationConfig::default(),
            StdRng::seed_from_u64(seed),
            t0,
        )
        .unwrap();
        let first = a.poll_timeout().unwrap();
        assert!(first >= t0 && first <= t0 + Duration::from_secs(1));
    }
}

#[test]
fn payload_too_large_is_refused_with_both_sizes_and_no_state_change() {
    let t0 = crate::test_util::epoch();
    let mut a = core(1, quiet(), t0);
    let max = a.config().max_payload_len();
    assert_eq!(max, 1_261);
    let err = a
        .broadcast(t0, Bytes::from(vec![0u8; max + 1]))
        .unwrap_err();
    assert_eq!(err, BroadcastError::PayloadTooLarge { len: max + 1, max });
    assert_eq!(
        err.to_string(),
        "payload of 1262 bytes exceeds the maximum of 1261 bytes"
    );
    assert_eq!(a.stats(), DisseminationStats::default());
    assert_eq!(a.occupancy(), Occupancy::default());
    assert_eq!(a.poll_timeout(), None);
    assert!(drain(&mut a) == (vec![], vec![]));

    // Exactly max_payload_len is accepted, and the refused call drew no randomness: the id is
    // the one a fresh core with the same seed draws first.
    let id = a.broadcast(t0, Bytes::from(vec![0u8; max])).unwrap();
    let mut fresh = core(1, quiet(), t0);
    assert_eq!(fresh.broadcast(t0, Bytes::new()).unwrap(), id);
    let (transmits, _) = drain(&mut a);
    let envelope = crate::message::Envelope {
        sender: node(1),
        epoch: u64::MAX,
        counter: u64::MAX,
        message: transmits[0].message.clone(),
    };
    assert_eq!(envelope.encoded_len_bound(), a.config().max_envelope_len);
}

#[test]
fn received_oversized_payload_is_acked_not_delivered() {
    let t0 = crate::test_util::epoch();
    let mut b = core(2, quiet(), t0);
    let too_big = Gossip {
        id: mid(1),
        origin: node(1),
        hop: 0,
        payload: Bytes::from(vec![0u8; 1_278]),
    };
    b.handle_message(t0, addr(1), node(1), Message::PushMessage(too_big));
    let (transmits, events) = drain(&mut b);
    assert!(events.is_empty());
    assert_eq!(
        transmits,
        vec![to_peer(addr(1), Message::PushAck { id: mid(1) })]
    );
    assert_eq!(b.stats().oversized_dropped, 1);
    assert!(b.has_seen(&mid(1)), "not requested again by pull-sync");
}

#[test]
fn outputs_beyond_the_queue_capacity_are_dropped_and_counted() {
    let t0 = crate::test_util::epoch();
    let config = DisseminationConfig {
        cache_capacity: std::num::NonZeroUsize::new(4).unwrap(),
        seen_capacity: 4,
        output_queue_capacity: 83,
        ..quiet()
    };
    let mut a = core(1, config, t0);
    // Never drained: every broadcast queues an event and a push.
    for _ in 0..100 {
        a.broadcast(t0, Bytes::new()).unwrap();
    }
    let o = a.occupancy();
    assert_eq!(o.queued_events + o.queued_transmits, 83);
    let s = a.stats();
    assert_eq!(s.events_dropped + s.transmits_dropped, 200 - 83);
    assert_eq!(s.delivered, 100, "delivered counts what was accepted");
}
