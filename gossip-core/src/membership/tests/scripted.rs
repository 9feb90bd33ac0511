//! One or two cores driven by hand: the shuffle, merge and ageing rules, the choice of the
//! oldest neighbour, the size limits, timeouts, dead peers, joining and peer selection.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::ConfigError;
use crate::id::NodeId;
use crate::membership::{
    Cyclon, CyclonConfig, CyclonEvent, CyclonMessage, CyclonTransmit, Descriptor, Shuffle,
    ShuffleReply,
};

/// The node that feeds entries into a view in [`fill`]; never offered itself.
const FEEDER: u16 = 999;
/// The local node of most tests.
const ME: u16 = 500;

pub(super) fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000))
}

pub(super) fn node(i: u16) -> NodeId {
    let mut bytes = [0xcc; 32];
    bytes[..2].copy_from_slice(&i.to_be_bytes());
    NodeId(bytes)
}

/// The node [`addr`] gives address `a`.
pub(super) fn node_at(a: SocketAddr) -> NodeId {
    match a {
        SocketAddr::V4(v4) => {
            let [_, _, hi, lo] = v4.ip().octets();
            node(u16::from_be_bytes([hi, lo]))
        }
        SocketAddr::V6(_) => panic!("test addresses are IPv4"),
    }
}

pub(super) fn desc(i: u16, age: u32) -> Descriptor {
    Descriptor {
        node: node(i),
        addr: addr(i),
        age,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn core_with(config: CyclonConfig, seed: u64, t0: Instant) -> Cyclon<StdRng> {
    Cyclon::new(node(ME), addr(ME), config, StdRng::seed_from_u64(seed), t0).unwrap()
}

pub(super) fn core(t0: Instant) -> Cyclon<StdRng> {
    core_with(CyclonConfig::default(), 1, t0)
}

pub(super) fn drain<R: rand::Rng>(c: &mut Cyclon<R>) -> (Vec<CyclonTransmit>, Vec<CyclonEvent>) {
    let mut transmits = Vec::new();
    while let Some(t) = c.poll_transmit() {
        transmits.push(t);
    }
    let mut events = Vec::new();
    while let Some(e) = c.poll_event() {
        events.push(e);
    }
    (transmits, events)
}

/// Puts `entries` (not held, at most the free slots) into `c`'s view through shuffles from
/// [`FEEDER`] that do not offer the feeder itself, and drains the outputs.
pub(super) fn fill<R: rand::Rng>(c: &mut Cyclon<R>, t: Instant, entries: &[Descriptor]) {
    let before = c.view().count();
    for chunk in entries.chunks(c.config().shuffle_length) {
        c.handle_shuffle(
            t,
            addr(FEEDER),
            node(FEEDER),
            Shuffle {
                entries: chunk.to_vec(),
            },
        );
    }
    drain(c);
    assert_eq!(c.view().count(), before + entries.len(), "fill");
}

fn ages<R: rand::Rng>(c: &Cyclon<R>) -> BTreeMap<NodeId, u32> {
    c.view().map(|d| (d.node, d.age)).collect()
}

fn nodes(entries: &[Descriptor]) -> Vec<NodeId> {
    entries.iter().map(|d| d.node).collect()
}

fn shuffle(t: &CyclonTransmit) -> &[Descriptor] {
    match &t.message {
        CyclonMessage::Shuffle(s) => &s.entries,
        CyclonMessage::Reply(_) => panic!("expected a shuffle, got {t:?}"),
    }
}

fn reply(t: &CyclonTransmit) -> &[Descriptor] {
    match &t.message {
        CyclonMessage::Reply(r) => &r.entries,
        CyclonMessage::Shuffle(_) => panic!("expected a reply, got {t:?}"),
    }
}

fn self_entry() -> Descriptor {
    desc(ME, 0)
}

/// Runs the first period of `c` (at its random phase) and returns its time and outputs.
fn first_period<R: rand::Rng>(
    c: &mut Cyclon<R>,
) -> (Instant, Vec<CyclonTransmit>, Vec<CyclonEvent>) {
    let t = c.poll_timeout().unwrap();
    c.handle_timeout(t);
    let (transmits, events) = drain(c);
    (t, transmits, events)
}

#[test]
fn new_validates_the_config_and_starts_at_a_random_phase() {
    let t0 = crate::test_util::epoch();
    let bad = CyclonConfig {
        shuffle_length: 0,
        ..CyclonConfig::default()
    };
    let err = Cyclon::new(node(ME), addr(ME), bad, StdRng::seed_from_u64(1), t0).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::TooSmall {
            field: "shuffle_length",
            ..
        }
    ));

    let phases: Vec<Duration> = (0..200)
        .map(|seed| {
            core_with(CyclonConfig::default(), seed, t0)
                .poll_timeout()
                .unwrap()
                - t0
        })
        .collect();
    assert!(phases.iter().all(|p| *p < Duration::from_secs(1)));
    let distinct: BTreeSet<_> = phases.iter().collect();
    assert_eq!(distinct.len(), 200, "no two nodes in lock-step");
    assert!(phases.iter().any(|p| *p < ms(100)));
    assert!(phases.iter().any(|p| *p > ms(900)));
    let c = core(t0);
    assert_eq!(c.view().count(), 0);
    assert!(!c.joined());
}

#[test]
fn a_period_ages_every_entry_then_shuffles_with_the_oldest() {
    let t0 = crate::test_util::epoch();
    let mut c = core(t0);
    let given = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];
    let entries: Vec<Descriptor> = (1..=10)
        .map(|i| desc(i, given[usize::from(i) - 1]))
        .collect();
    fill(&mut c, t0, &entries);
    let before = ages(&c);

    let (t, transmits, events) = first_period(&mut c);
    // Q is node 6 (age 9, now 10): it leaves the view and gets the shuffle.
    assert_eq!(transmits.len(), 1, "no seeds, so no join shuffle");
    assert_eq!(transmits[0].to, addr(6));
    assert_eq!(
        events,
        vec![CyclonEvent::NeighborDown {
            node: node(6),
            addr: addr(6)
        }]
    );
    let after = ages(&c);
    assert!(!c.contains(&node(6)));
    assert_eq!(after.len(), 9);
    for (n, age) in &after {
        assert_eq!(*age, before[n] + 1, "every entry aged by one");
    }
    // The shuffle: the fresh self-entry first, then l - 1 = 7 distinct other entries as held.
    let sent = shuffle(&transmits[0]);
    assert_eq!(sent.len(), 8);
    assert_eq!(sent[0], self_entry());
    let others: BTreeSet<NodeId> = nodes(&sent[1..]).into_iter().collect();
    assert_eq!(others.len(), 7);
    for d in &sent[1..] {
        assert_eq!(after.get(&d.node), Some(&d.age), "sent as held, aged");
    }
    assert_eq!(c.stats().periods, 1);
    assert_eq!(c.stats().shuffles_sent, 1);
    assert_eq!(c.occupancy().pending, 1);
    // The next period is one interval later; the reply deadline comes first.
    assert_eq!(c.poll_timeout(), Some(t + ms(500)));
}

#[test]
fn oldest_ties_are_broken_at_random_and_never_pick_a_younger_entry() {
    let t0 = crate::test_util::epoch();
    let mut counts: BTreeMap<SocketAddr, u32> = BTreeMap::new();
    for seed in 0..300 {
        let mut c = core_with(CyclonConfig::default(), seed, t0);
        let entries: Vec<Descriptor> = (1..=6)
            .map(|i| desc(i, if i <= 3 { 7 } else { 2 }))
            .collect();
        fill(&mut c, t0, &entries);
        let (_, transmits, _) = first_period(&mut c);
        *counts.entry(transmits[0].to).or_default() += 1;
    }
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        vec![addr(1), addr(2), addr(3)]
    );
    for (a, n) in &counts {
        assert!(*n >= 70, "{a} chosen {n} of 300 times");
    }
}

#[test]
fn a_shuffle_offers_l_minus_one_uniformly_drawn_entries() {
    let t0 = crate::test_util::epoch();
    let runs = 2_000u32;
    let mut counts: BTreeMap<NodeId, u32> = BTreeMap::new();
    for seed in 0..u64::from(runs) {
        let mut c = core_with(CyclonConfig::default(), seed, t0);
        let entries: Vec<Descriptor> = (1..=20)
            .map(|i| desc(i, if i == 20 { 50 } else { 0 }))
            .collect();
        fill(&mut c, t0, &entries);
        let (_, transmits, _) = first_period(&mut c);
        assert_eq!(transmits[0].to, addr(20));
        let sent = shuffle(&transmits[0]);
        assert_eq!(sent[0], self_entry());
        for d in &sent[1..] {
            *counts.entry(d.node).or_default() += 1;
        }
    }
    // 19 candidates, 7 drawn per run: 736.8 each in expectation.
    assert_eq!(counts.len(), 19);
    assert!(!counts.contains_key(&node(20)));
    let expected = f64::from(runs) * 7.0 / 19.0;
    for (n, k) in &counts {
        let dev = (f64::from(*k) - expected).abs() / expected;
        assert!(
            dev < 0.12,
            "{n:?} offered {k} times, expected {expected:.0}"
        );
    }
}

#[test]
fn the_partner_answers_with_held_offered_entries_first_never_the_initiator_then_swaps() {
    let t0 = crate::test_util::epoch();
    let mut q = core(t0);
    // Q holds P (node 5) and nodes 6 and 7, which P is about to offer; ages are the ids.
    let entries: Vec<Descriptor> = (1..=20).map(|i| desc(i, u32::from(i))).collect();
    fill(&mut q, t0, &entries);
    let offered = vec![
        desc(5, 0),
        desc(6, 3),
        desc(7, 4),
        desc(100, 1),
        desc(101, 2),
        desc(102, 3),
        desc(103, 4),
        desc(104, 5),
    ];
    let t = t0 + ms(10);
    q.handle_shuffle(t, addr(5), node(5), Shuffle { entries: offered });
    let (transmits, events) = drain(&mut q);
    assert_eq!(transmits.len(), 1);
    assert_eq!(transmits[0].to, addr(5));
    let answer = reply(&transmits[0]);
    assert_eq!(answer.len(), 8);
    // Held entries P offered come first, as Q holds them; then six drawn from the rest.
    assert_eq!(answer[..2], [desc(6, 6), desc(7, 7)]);
    let random: Vec<NodeId> = nodes(&answer[2..]);
    let distinct: BTreeSet<_> = random.iter().collect();
    assert_eq!(distinct.len(), 6);
    for n in &random {
        assert!(![node(5), node(6), node(7)].contains(n));
        assert!(entries.iter().any(|d| d.node == *n));
    }
    // Merge: P's entry refreshes the held one, 6 and 7 are held (and kept), 100..=104 replace
    // five of the six random reply entries, youngest first: the oldest of them is kept.
    let view = ages(&q);
    assert_eq!(view.len(), 20);
    assert_eq!(view[&node(5)], 0, "the initiator's entry is refreshed");
    assert_eq!(view[&node(6)], 6);
    assert_eq!(view[&node(7)], 7);
    for i in 100..=104 {
        assert!(view.contains_key(&node(i)));
    }
    let oldest_random = answer[2..].iter().max_by_key(|d| d.age).unwrap();
    for d in &answer[2..] {
        assert_eq!(view.contains_key(&d.node), d == oldest_random, "{d:?}");
    }
    let downs = events
        .iter()
        .filter(|e| matches!(e, CyclonEvent::NeighborDown { .. }))
        .count();
    let ups = events
        .iter()
        .filter(|e| matches!(e, CyclonEvent::NeighborUp { .. }))
        .count();
    assert_eq!((downs, ups), (5, 5));
    let s = q.stats();
    assert_eq!(s.shuffles_received, 3 + 1);
    assert_eq!(s.replies_sent, 3 + 1);
    assert_eq!(s.sender_refreshed, 1);
    assert_eq!(s.discarded_held, 2);
    assert_eq!(s.entries_replaced, 5);
}

#[test]
fn the_initiator_fills_the_free_slot_then_replaces_sent_entries_youngest_first() {
    let t0 = crate::test_util::epoch();
    let mut p = core(t0);
    // Full view; node 20 is the oldest, the others have distinct ages.
    let entries: Vec<Descriptor> = (1..=20)
        .map(|i| desc(i, if i == 20 { 99 } else { u32::from(i) }))
        .collect();
    fill(&mut p, t0, &entries);
    let (t, transmits, _) = first_period(&mut p);
    assert_eq!(transmits[0].to, addr(20));
    let sent = shuffle(&transmits[0])[1..].to_vec();
    let unsent = p
        .view()
        .find(|d| !sent.iter().any(|s| s.node == d.node))
        .copied()
        .unwrap();
    // Q echoes sent[0] (it held it), offers one entry P holds but did not send, P's own
    // entry, and five new ones.
    let answer = vec![
        sent[0],
        unsent,
        self_entry(),
        desc(100, 0),
        desc(101, 1),
        desc(102, 2),
        desc(103, 3),
        desc(104, 4),
    ];
    p.handle_shuffle_reply(
        t + ms(20),
        addr(20),
        node(20),
        ShuffleReply { entries: answer },
    );
    let view = ages(&p);
    assert_eq!(view.len(), 20);
    for i in 100..=104 {
        assert!(view.contains_key(&node(i)));
    }
    // One new entry took Q's slot, four replaced the four youngest sent entries other than
    // the echoed one; the echoed one and the two oldest others stay.
    let mut others: Vec<Descriptor> = sent[1..].to_vec();
    others.sort_by_key(|d| d.age);
    assert!(view.contains_key(&sent[0].node), "echoed entry kept");
    for (k, d) in others.iter().enumerate() {
        assert_eq!(view.contains_key(&d.node), k >= 4, "{d:?}");
    }
    assert!(!view.contains_key(&node(20)), "Q does not come back");
    let s = p.stats();
    assert_eq!(s.replies_merged, 1);
    assert_eq!(s.discarded_self, 1);
    assert_eq!(s.discarded_held, 2);
    assert_eq!(s.entries_replaced, 4);
    assert_eq!(p.occupancy().pending, 0);
}

#[test]
fn after_failures_the_initiator_keeps_its_youngest_sent_entries() {
    let t0 = crate::test_util::epoch();
    let mut p = core(t0);
    // 19 entries: one slot free besides the one Q's reply will take.
    let entries: Vec<Descriptor> = (1..=19)
        .map(|i| desc(i, if i == 19 { 99 } else { u32::from(i) }))
        .collect();
    fill(&mut p, t0, &entries);
    let (t, transmits, _) = first_period(&mut p);
    let sent = shuffle(&transmits[0])[1..].to_vec();
    let answer: Vec<Descriptor> = (100..108).map(|i| desc(i, 0)).collect();
    p.handle_shuffle_reply(
        t + ms(20),
        addr(19),
        node(19),
        ShuffleReply { entries: answer },
    );
    // Two new entries fill the free slots, six replace sent entries oldest first.
    let view = ages(&p);
    assert_eq!(view.len(), 20);
    let youngest = sent.iter().min_by_key(|d| d.age).unwrap();
    for d in &sent {
        assert_eq!(view.contains_key(&d.node), d == youngest, "{d:?}");
    }
}

#[test]
fn entries_that_do_not_fit_are_dropped_oldest_first() {
    let t0 = crate::test_util::epoch();
    let config = CyclonConfig {
        view_size: 8,
        ..CyclonConfig::default()
    };
    let mut q = core_with(config, 1, t0);
    let entries: Vec<Descriptor> = (1..=8).map(|i| desc(i, 1)).collect();
    fill(&mut q, t0, &entries);
    // Node 1 (held) offers eight new entries but not itself: the reply can only hold seven.
    let offered: Vec<Descriptor> = (100..108).map(|i| desc(i, u32::from(i))).collect();
    q.handle_shuffle(t0, addr(1), node(1), Shuffle { entries: offered });
    let (transmits, _) = drain(&mut q);
    assert_eq!(reply(&transmits[0]).len(), 7);
    let view = ages(&q);
    assert_eq!(view.len(), 8);
    assert!(view.contains_key(&node(1)));
    assert!(
        !view.contains_key(&node(107)),
        "the oldest offered entry is dropped"
    );
    assert_eq!(q.stats().discarded_no_room, 1);
}

#[test]
fn a_reply_is_merged_only_if_it_answers_a_pending_shuffle() {
    let t0 = crate::test_util::epoch();
    let mut p = core(t0);
    let entries: Vec<Descriptor> = (1..=10).map(|i| desc(i, u32::from(i))).collect();
    fill(&mut p, t0, &entries);
    let (t, transmits, _) = first_period(&mut p);
    assert_eq!(transmits[0].to, addr(10));
    let answer = || ShuffleReply {
        entries: vec![desc(100, 0)],
    };
    let view = ages(&p);
    p.handle_shuffle_reply(t, addr(11), node(10), answer());
    p.handle_shuffle_reply(t, addr(10), node(11), answer());
    p.handle_shuffle_reply(t, addr(10), node(ME), answer());
    assert_eq!(ages(&p), view, "nothing merged");
    assert_eq!(p.stats().unexpected_replies, 2);
    assert_eq!(p.stats().own_messages, 1);
    p.handle_shuffle_reply(t, addr(10), node(10), answer());
    assert!(p.contains(&node(100)));
    p.handle_shuffle_reply(t, addr(10), node(10), answer());
    let s = p.stats();
    assert_eq!(
        (s.replies_received, s.replies_merged, s.unexpected_replies),
        (5, 1, 3)
    );
}

#[test]
fn shuffles_and_replies_longer_than_l_are_rejected_whole() {
    let t0 = crate::test_util::epoch();
    let mut q = core(t0);
    let too_long: Vec<Descriptor> = (100..109).map(|i| desc(i, 0)).collect();
    q.handle_shuffle(
        t0,
        addr(1),
        node(1),
        Shuffle {
            entries: too_long.clone(),
        },
    );
    let (transmits, events) = drain(&mut q);
    assert!(transmits.is_empty() && events.is_empty());
    assert_eq!(q.view().count(), 0);
    assert_eq!(q.stats().oversized_shuffles, 1);
    // Exactly l is fine.
    q.handle_shuffle(
        t0,
        addr(1),
        node(1),
        Shuffle {
            entries: too_long[..8].to_vec(),
        },
    );
    let (transmits, _) = drain(&mut q);
    assert_eq!(transmits.len(), 1);
    assert_eq!(q.view().count(), 8);

    let mut p = core(t0);
    let entries: Vec<Descriptor> = (1..=10).map(|i| desc(i, u32::from(i))).collect();
    fill(&mut p, t0, &entries);
    let (t, _, _) = first_period(&mut p);
    let view = ages(&p);
    p.handle_shuffle_reply(
        t,
        addr(10),
        node(10),
        ShuffleReply {
            entries: too_long.clone(),
        },
    );
    assert_eq!(ages(&p), view);
    assert_eq!(p.stats().oversized_replies, 1);
    assert_eq!(p.occupancy().pending, 0, "the shuffle is closed");
    p.handle_shuffle_reply(
        t,
        addr(10),
        node(10),
        ShuffleReply {
            entries: too_long[..8].to_vec(),
        },
    );
    assert_eq!(p.stats().unexpected_replies, 1);
}

#[test]
fn an_unanswered_shuffle_drops_q_and_is_retried_once_per_period() {
    let t0 = crate::test_util::epoch();
    let mut p = core(t0);
    let entries: Vec<Descriptor> = (1..=20).map(|i| desc(i, u32::from(i))).collect();
    fill(&mut p, t0, &entries);
    let (t, transmits, _) = first_period(&mut p);
    assert_eq!(transmits[0].to, addr(20));
    assert_eq!(p.poll_timeout(), Some(t + ms(500)));
    // No reply: at the deadline Q stays out and the next oldest gets a retry.
    p.handle_timeout(t + ms(499));
    assert!(drain(&mut p).0.is_empty(), "not yet");
    p.handle_timeout(t + ms(500));
    let (transmits, events) = drain(&mut p);
    assert_eq!(p.stats().shuffles_unanswered, 1);
    assert_eq!(p.stats().retries, 1);
    assert_eq!(transmits.len(), 1);
    assert_eq!(transmits[0].to, addr(19));
    assert_eq!(
        events,
        vec![CyclonEvent::NeighborDown {
            node: node(19),
            addr: addr(19)
        }]
    );
    // The retry is unanswered too, but the period is due: no second retry, a new shuffle.
    assert_eq!(p.poll_timeout(), Some(t + ms(1_000)));
    p.handle_timeout(t + ms(1_000));
    let (transmits, _) = drain(&mut p);
    assert_eq!(transmits.len(), 1);
    assert_eq!(transmits[0].to, addr(18));
    let s = p.stats();
    assert_eq!((s.shuffles_unanswered, s.retries, s.periods), (2, 1, 2));
    assert_eq!(p.view().count(), 17);
    for i in [18, 19, 20] {
        assert!(!p.contains(&node(i)));
    }
    // A late reply from the first Q is ignored.
    p.handle_shuffle_reply(t + ms(1_001), addr(20), node(20), ShuffleReply::default());
    assert_eq!(p.stats().unexpected_replies, 1);
}

#[test]
fn a_dead_peer_leaves_at_once_and_stays_out_until_it_speaks_or_is_forgotten() {
    let t0 = crate::test_util::epoch();
    let config = CyclonConfig {
        max_dead: 2,
        ..CyclonConfig::default()
    };
    let mut c = core_with(config, 1, t0);
    let entries: Vec<Descriptor> = (1..=10).map(|i| desc(i, u32::from(i))).collect();
    fill(&mut c, t0, &entries);
    c.handle_peer_dead(t0, node(7));
    let (_, events) = drain(&mut c);
    assert_eq!(
        events,
        vec![CyclonEvent::NeighborDown {
            node: node(7),
            addr: addr(7)
        }]
    );
    assert!(!c.contains(&node(7)));
    // Offered by someone else: refused.
    c.handle_shuffle(
        t0,
        addr(9),
        node(9),
        Shuffle {
            entries: vec![desc(7, 0)],
        },
    );
    drain(&mut c);
    assert!(!c.contains(&node(7)));
    assert_eq!(c.stats().discarded_dead, 1);
    // It shuffles itself: alive after all.
    c.handle_shuffle(
        t0,
        addr(7),
        node(7),
        Shuffle {
            entries: vec![desc(7, 0)],
        },
    );
    drain(&mut c);
    assert!(c.contains(&node(7)));
    // Forgotten after dead_retention.
    c.handle_peer_dead(t0, node(8));
    let later = t0 + c.config().dead_retention;
    c.handle_timeout(later);
    drain(&mut c);
    assert_eq!(c.occupancy().dead, 0);
    c.handle_shuffle(
        later,
        addr(9),
        node(9),
        Shuffle {
            entries: vec![desc(8, 0)],
        },
    );
    drain(&mut c);
    assert!(c.contains(&node(8)));
    // At most max_dead remembered, earliest first forgotten.
    for i in [1, 2, 3] {
        c.handle_peer_dead(later, node(i));
    }
    assert_eq!(c.occupancy().dead, 2);
    assert_eq!(c.stats().dead_evictions, 1);
    assert_eq!(c.stats().peers_declared_dead, 5);
    // The local id is ignored.
    c.handle_peer_dead(later, node(ME));
    assert_eq!(c.occupancy().dead, 2);
}

#[test]
fn a_dead_partner_closes_the_pending_shuffle() {
    let t0 = crate::test_util::epoch();
    let mut p = core(t0);
    let entries: Vec<Descriptor> = (1..=10).map(|i| desc(i, u32::from(i))).collect();
    fill(&mut p, t0, &entries);
    let (t, _, _) = first_period(&mut p);
    p.handle_peer_dead(t, node(10));
    assert_eq!(p.occupancy().pending, 0);
    assert_eq!(p.stats().pending_cancelled, 1);
    assert_eq!(
        p.stats().dead_removed_from_view,
        0,
        "already out of the view"
    );
    p.handle_shuffle_reply(t, addr(10), node(10), ShuffleReply::default());
    assert_eq!(p.stats().unexpected_replies, 1);
}

#[test]
fn a_node_joins_through_a_seed_known_only_by_address() {
    let t0 = crate::test_util::epoch();
    let mut c = core(t0);
    c.add_seed(t0, None, addr(1));
    c.add_seed(t0, None, addr(2));
    c.add_seed(t0, None, addr(ME));
    c.add_seed(t0, Some(node(ME)), addr(3));
    assert_eq!(c.occupancy().seeds, 2);
    assert_eq!(c.stats().seeds_refused, 2);
    // Empty view: the period sends the self-entry alone to a seed.
    let (t, transmits, events) = first_period(&mut c);
    assert!(events.is_empty());
    assert_eq!(transmits.len(), 1);
    let first_seed = transmits[0].to;
    assert!([addr(1), addr(2)].contains(&first_seed));
    assert_eq!(shuffle(&transmits[0]), [self_entry()]);
    // Unanswered: nothing to retry with (empty view); the next period tries a seed again.
    c.handle_timeout(t + ms(500));
    assert!(drain(&mut c).0.is_empty());
    c.handle_timeout(t + ms(1_000));
    let (transmits, _) = drain(&mut c);
    assert_eq!(transmits.len(), 1);
    let seed = transmits[0].to;
    // The seed answers; its id comes from the envelope.
    let seed_id = node_at(seed);
    let answer = ShuffleReply {
        entries: vec![desc(30, 2), desc(31, 3), desc(32, 4)],
    };
    c.handle_shuffle_reply(t + ms(1_010), seed, seed_id, answer);
    assert!(c.joined());
    assert_eq!(c.view().count(), 3);
    assert!(
        !c.contains(&seed_id),
        "a seed does not enter the view by answering"
    );
    // From now on one shuffle a period, with the oldest neighbour.
    c.handle_timeout(t + ms(2_000));
    let (transmits, _) = drain(&mut c);
    assert_eq!(transmits.len(), 1);
    assert_eq!(transmits[0].to, addr(32));
    let s = c.stats();
    assert_eq!(
        (s.join_shuffles, s.shuffles_sent, s.idle_periods),
        (2, 3, 0)
    );
    // A view that empties makes the node join again.
    for i in [30, 31] {
        c.handle_peer_dead(t + ms(2_001), node(i));
    }
    c.handle_timeout(t + ms(2_500));
    c.handle_timeout(t + ms(3_000));
    let (transmits, _) = drain(&mut c);
    assert!(!c.joined());
    assert_eq!(transmits.len(), 1);
    assert!([addr(1), addr(2)].contains(&transmits[0].to));
}

#[test]
fn until_it_has_joined_a_node_with_neighbours_also_shuffles_with_a_seed() {
    let t0 = crate::test_util::epoch();
    let mut c = core(t0);
    c.add_seed(t0, None, addr(1));
    // Others found this node before its first period.
    let entries: Vec<Descriptor> = (10..=14).map(|i| desc(i, u32::from(i))).collect();
    fill(&mut c, t0, &entries);
    let (_, transmits, _) = first_period(&mut c);
    let to: Vec<SocketAddr> = transmits.iter().map(|t| t.to).collect();
    assert_eq!(to, vec![addr(14), addr(1)]);
    // The join shuffle offers the self-entry and the view like any other shuffle.
    assert_eq!(shuffle(&transmits[1])[0], self_entry());
    assert_eq!(shuffle(&transmits[1]).len(), 5);
    assert_eq!(c.stats().join_shuffles, 1);
}

#[test]
fn a_seed_with_a_known_id_enters_the_view() {
    let t0 = crate::test_util::epoch();
    let mut c = core(t0);
    c.add_seed(t0, Some(node(1)), addr(1));
    let (_, events) = drain(&mut c);
    assert_eq!(
        events,
        vec![CyclonEvent::NeighborUp {
            node: node(1),
            addr: addr(1)
        }]
    );
    assert_eq!(c.view().copied().collect::<Vec<_>>(), vec![desc(1, 0)]);
    // The same seed again changes nothing.
    c.add_seed(t0, Some(node(1)), addr(1));
    assert!(drain(&mut c).1.is_empty());
    assert_eq!(c.occupancy().seeds, 1);
}

#[test]
fn the_senders_own_entry_takes_the_datagram_source_address() {
    let t0 = crate::test_util::epoch();
    let mut c = core(t0);
    let advertised = Descriptor {
        node: node(9),
        addr: "0.0.0.0:7000".parse().unwrap(),
        age: 0,
    };
    c.handle_shuffle(
        t0,
        addr(9),
        node(9),
        Shuffle {
            entries: vec![advertised],
        },
    );
    assert_eq!(c.view().copied().collect::<Vec<_>>(), vec![desc(9, 0)]);
    // Entries for this node, by id or by address, are never taken.
    let me_elsewhere = Descriptor {
        node: node(ME),
        addr: addr(77),
        age: 1,
    };
    let my_addr = Descriptor {
        node: node(78),
        addr: addr(ME),
        age: 1,
    };
    c.handle_shuffle(
        t0,
        addr(9),
        node(9),
        Shuffle {
            entries: vec![me_elsewhere, my_addr],
        },
    );
    assert_eq!(c.view().count(), 1);
    assert_eq!(c.stats().discarded_self, 2);
    // Own messages are ignored.
    c.handle_shuffle(
        t0,
        addr(ME),
        node(ME),
        Shuffle {
            entries: vec![desc(50, 0)],
        },
    );
    assert_eq!(c.stats().own_messages, 1);
    assert_eq!(c.view().count(), 1);
}

#[test]
fn an_address_already_held_under_another_id_is_not_taken() {
    let t0 = crate::test_util::epoch();
    let mut c = core(t0);
    fill(&mut c, t0, &[desc(1, 0)]);
    let impostor = Descriptor {
        node: node(2),
        addr: addr(1),
        age: 0,
    };
    c.handle_shuffle(
        t0,
        addr(3),
        node(3),
        Shuffle {
            entries: vec![impostor],
        },
    );
    let held: Vec<SocketAddr> = c.view().map(|d| d.addr).collect();
    assert_eq!(held, vec![addr(1)]);
    assert_eq!(c.stats().discarded_held, 1);
}

#[test]
fn the_view_iterates_in_node_id_order() {
    let t0 = crate::test_util::epoch();
    let mut c = core(t0);
    fill(&mut c, t0, &[desc(9, 0), desc(2, 0), desc(5, 0)]);
    let order: Vec<NodeId> = c.view().map(|d| d.node).collect();
    assert_eq!(order, vec![node(2), node(5), node(9)]);
}

/// 10 entries, n = 3, 30,000 draws: each address 9,000 times in expectation, within ±5 %.
#[test]
fn select_draws_distinct_addresses_uniformly_from_the_view() {
    let t0 = crate::test_util::epoch();
    let mut c = core(t0);
    let entries: Vec<Descriptor> = (1..=10).map(|i| desc(i, 0)).collect();
    fill(&mut c, t0, &entries);
    let draws = 30_000u32;
    let mut counts: BTreeMap<SocketAddr, u32> = BTreeMap::new();
    for _ in 0..draws {
        let chosen = c.select(3, &[addr(11)]);
        let distinct: BTreeSet<_> = chosen.iter().collect();
        assert_eq!(distinct.len(), 3);
        for a in chosen {
            *counts.entry(a).or_default() += 1;
        }
    }
    let expected = f64::from(draws) * 3.0 / 10.0;
    assert_eq!(counts.len(), 10);
    for (a, k) in &counts {
        let dev = (f64::from(*k) - expected).abs() / expected;
        assert!(dev <= 0.05, "{a} chosen {k} times, expected {expected}");
    }
    let mut all = c.select(100, &[addr(1), addr(2)]);
    all.sort();
    assert_eq!(all, (3..=10).map(addr).collect::<Vec<_>>());
    assert!(c.select(0, &[]).is_empty());
}

#[test]
fn the_same_seed_gives_the_same_outputs() {
    let t0 = crate::test_util::epoch();
    let run = |seed| {
        let mut c = core_with(CyclonConfig::default(), seed, t0);
        let entries: Vec<Descriptor> = (1..=20).map(|i| desc(i, u32::from(i % 4))).collect();
        fill(&mut c, t0, &entries);
        let mut out = Vec::new();
        for k in 0..5u64 {
            let t = c.poll_timeout().unwrap();
            c.handle_timeout(t);
            let (transmits, events) = drain(&mut c);
            out.push((transmits, events, c.select(4, &[])));
            let answer: Vec<Descriptor> =
                (0..8u16).map(|i| desc(200 + 8 * k as u16 + i, 1)).collect();
            let q = out[out.len() - 1].0[0].to;
            c.handle_shuffle_reply(t, q, node_at(q), ShuffleReply { entries: answer });
            assert_eq!(c.stats().replies_merged, k + 1);
        }
        out
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}
