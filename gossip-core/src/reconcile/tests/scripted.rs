//! A few cores driven by hand: digests, deltas, ordering, tombstones, resets, restarts,
//! forgetting, target choice and refusals, every message inspected.

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;

use super::{addr, bytes, config, core, drain, exchange, ms, node, secs};
use crate::flow::{Backpressure, FlowConfig};
use crate::id::NodeId;
use crate::reconcile::{
    DeltaEntry, DeltaOrder, Deltas, Digest, DigestEntry, NodeDelta, NodePrefix, Reconcile,
    ReconcileConfig, StateError, StateEvent, StateMessage,
};
use rand::rngs::StdRng;

fn prefix(i: u8) -> NodePrefix {
    NodePrefix::of(&node(i))
}

fn t0() -> Instant {
    crate::test_util::epoch()
}

fn reply_of(m: &StateMessage) -> &crate::reconcile::Reply {
    match m {
        StateMessage::Reply(r) => r,
        other => panic!("not a reply: {other:?}"),
    }
}

fn digest_of(m: &StateMessage) -> &Digest {
    match m {
        StateMessage::Digest(d) => d,
        other => panic!("not a digest: {other:?}"),
    }
}

fn deltas_of(m: &StateMessage) -> &Deltas {
    match m {
        StateMessage::Deltas(d) => d,
        other => panic!("not deltas: {other:?}"),
    }
}

/// A complete delta of a fake owner `i` (generation 1, heartbeat `hb`) carrying `keys`
/// entries `k0..` at versions 1.. with `value_len`-byte values.
fn owner_delta(i: u8, hb: u64, keys: u64, value_len: usize) -> NodeDelta {
    NodeDelta {
        node: node(i),
        generation: 1,
        heartbeat: hb,
        addr: addr(u16::from(i)),
        gc_version: 0,
        reset: false,
        from_version: 0,
        to_version: keys,
        complete: true,
        entries: (1..=keys)
            .map(|v| DeltaEntry {
                key: format!("k{}", v - 1),
                version: v,
                value: Some(Bytes::from(vec![i; value_len])),
            })
            .collect(),
    }
}

fn feed(core: &mut Reconcile<StdRng>, now: Instant, deltas: Vec<NodeDelta>) -> Vec<StateEvent> {
    core.handle_message(
        now,
        addr(200),
        node(200),
        StateMessage::Deltas(Deltas { deltas }),
    );
    drain(core).1
}

#[test]
fn set_get_delete_and_their_refusals() {
    let t = t0();
    let small = ReconcileConfig {
        max_keys_per_owner: 2,
        ..config()
    };
    let mut a = core(1, 1, vec![], small, t);
    assert_eq!(a.set(t, "x", bytes("1")), Ok(1));
    assert_eq!(a.set(t, "x", bytes("2")), Ok(2));
    assert_eq!(a.get(&node(1), "x"), Some((bytes("2"), 2)));
    assert_eq!(a.delete(t, "x"), Ok(Some(3)));
    assert_eq!(a.delete(t, "x"), Ok(None));
    assert_eq!(a.delete(t, "never"), Ok(None));
    assert_eq!(a.get(&node(1), "x"), None);
    assert_eq!(a.set(t, "y", bytes("y")), Ok(4));
    // "x" is a tombstone and still counts: a third key is refused.
    assert_eq!(
        a.set(t, "z", bytes("z")),
        Err(StateError::TooManyKeys { max: 2 })
    );
    assert_eq!(a.set(t, "x", bytes("back")), Ok(5));
    let e = a.set(t, &"k".repeat(129), bytes("v")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "key of 129 bytes exceeds the maximum of 128 bytes"
    );
    let e = a.set(t, "v", Bytes::from(vec![0; 1_025])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "value of 1025 bytes exceeds the maximum of 1024 bytes"
    );
    assert_eq!(a.digest_entry(&node(1)).unwrap().max_version, 5);
    assert_eq!(a.stats().local_updates, 5);
    let view = a.node_state(&node(1)).unwrap();
    assert_eq!(
        view.entries
            .iter()
            .map(|e| (e.key.as_str(), e.version))
            .collect::<Vec<_>>(),
        vec![("x", 5), ("y", 4)]
    );
    assert!(view.live);
}

#[test]
fn updates_above_the_rate_are_refused_with_backpressure_and_change_nothing() {
    let t = t0();
    let c = ReconcileConfig {
        flow: FlowConfig {
            initial_rate: 10,
            burst: 2,
            ..FlowConfig::default()
        },
        ..config()
    };
    let mut a = core(1, 1, vec![], c, t);
    a.set(t, "a", bytes("1")).unwrap();
    a.set(t, "b", bytes("1")).unwrap();
    let refused = a.set(t, "c", bytes("1")).unwrap_err();
    assert_eq!(
        refused,
        StateError::Backpressure(Backpressure {
            retry_after: ms(100)
        })
    );
    assert_eq!(a.delete(t, "a"), Err(refused.clone()));
    assert_eq!(a.digest_entry(&node(1)).unwrap().max_version, 2);
    assert_eq!(a.get(&node(1), "a"), Some((bytes("1"), 1)));
    assert_eq!(a.set(t + ms(100), "c", bytes("1")), Ok(3));
    assert_eq!(a.flow().stats().refused, 2);
}

#[test]
fn one_exchange_converges_both_sides() {
    let t = t0();
    let mut a = core(1, 1, vec![], config(), t);
    let mut b = core(2, 7, vec![], config(), t);
    a.set(t, "a1", bytes("x")).unwrap();
    a.set(t, "a2", bytes("y")).unwrap();
    b.set(t, "b1", bytes("z")).unwrap();
    let ex = exchange(&mut a, &mut b, t);
    // a knew only itself: its page is the whole ring.
    let d = digest_of(&ex.digest);
    assert_eq!(d.page.len(), 1);
    assert_eq!(d.range_end, prefix(1));
    assert_eq!(d.page[0].max_version, 2);
    // b sent itself (unknown to a, inside a's range) and asked for a.
    let r = reply_of(&ex.reply);
    assert_eq!(r.deltas.len(), 1);
    assert_eq!(r.deltas[0].node, node(2));
    assert_eq!(r.deltas[0].generation, 7);
    assert_eq!(
        r.digest,
        vec![DigestEntry {
            node: prefix(1),
            generation: 0,
            heartbeat: 0,
            max_version: 0,
            gc_version: 0,
        }]
    );
    let deltas = deltas_of(ex.deltas.as_ref().unwrap());
    assert_eq!(deltas.deltas.len(), 1);
    assert_eq!(deltas.deltas[0].entries.len(), 2);
    // Both sides now hold both states.
    for c in [&a, &b] {
        assert_eq!(c.get(&node(1), "a2"), Some((bytes("y"), 2)));
        assert_eq!(c.get(&node(2), "b1"), Some((bytes("z"), 1)));
    }
    assert!(matches!(
        ex.initiator_events.as_slice(),
        [StateEvent::NewNode { node: n, generation: 7, .. }, StateEvent::Update { key, .. }]
            if *n == node(2) && key == "b1"
    ));
    assert_eq!(ex.responder_events.len(), 3);
    // A second exchange finds nothing to send.
    let ex = exchange(&mut a, &mut b, t);
    assert!(reply_of(&ex.reply).deltas.is_empty());
    assert!(reply_of(&ex.reply).digest.is_empty());
    assert!(ex.deltas.is_none());
}

#[test]
fn digests_are_paged_over_the_ring_and_pages_cover_every_node() {
    let t = t0();
    let c = ReconcileConfig {
        rumor_share: 0,
        ..config()
    };
    let mut a = core(1, 1, vec![], c, t);
    let mut fakes = Vec::new();
    for i in 2..=250u8 {
        fakes.push(owner_delta(i, 1, 1, 4));
    }
    feed(&mut a, t, fakes);
    assert_eq!(a.node_count(), 250);
    let mut covered = BTreeSet::new();
    let mut pages = 0;
    while covered.len() < 250 {
        a.send_digest(t, addr(2), Some(node(2)));
        let (tr, _) = drain(&mut a);
        let d = digest_of(&tr[0].message).clone();
        assert!(d.encoded_len_bound() <= a.config().max_message_len());
        // The page is in ring order and ends right before range_end.
        for w in d.page.windows(2) {
            assert!(w[0].node < w[1].node || w[1].node < d.page[0].node);
        }
        covered.extend(d.page.iter().map(|e| e.node));
        covered.extend(d.extra.iter().map(|e| e.node));
        assert!(d.page.len() > 60, "{}", d.page.len());
        pages += 1;
        assert!(pages <= 6);
    }
    assert!(pages >= 2, "250 entries need several pages: {pages}");
}

#[test]
fn responder_sends_the_nodes_the_initiator_did_not_list_first() {
    let t = t0();
    let mut a = core(1, 1, vec![], config(), t);
    let mut b = core(2, 1, vec![], config(), t);
    // Both know node 3; a is behind on it. Only b knows 4 and 5.
    feed(&mut a, t, vec![owner_delta(3, 1, 2, 4)]);
    feed(
        &mut b,
        t,
        vec![
            owner_delta(3, 1, 6, 4),
            owner_delta(4, 1, 1, 4),
            owner_delta(5, 1, 3, 4),
        ],
    );
    let ex = exchange(&mut a, &mut b, t);
    let r = reply_of(&ex.reply);
    let order: Vec<NodeId> = r.deltas.iter().map(|d| d.node).collect();
    // Unknown nodes first (most entries first), then the known but outdated one; node 2
    // itself is unknown to a too.
    assert_eq!(order[..2], [node(5), node(4)][..]);
    assert!(order.contains(&node(2)));
    assert_eq!(order.last(), Some(&node(3)));
    let d3 = r.deltas.iter().find(|d| d.node == node(3)).unwrap();
    assert_eq!((d3.from_version, d3.to_version, d3.complete), (2, 6, true));
    assert_eq!(
        d3.entries.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![3, 4, 5, 6]
    );
    for n in [3, 4, 5] {
        assert_eq!(
            a.digest_entry(&node(n)).unwrap().max_version,
            b.digest_entry(&node(n)).unwrap().max_version
        );
    }
}

#[test]
fn truncated_deltas_are_a_prefix_and_the_receiver_continues_from_it() {
    let t = t0();
    let small = ReconcileConfig {
        max_envelope_len: 600,
        max_value_len: 100,
        ..config()
    };
    let mut a = core(1, 1, vec![], small.clone(), t);
    let mut b = core(2, 1, vec![], small, t);
    for k in 0..40 {
        b.set(t, &format!("key{k}"), Bytes::from(vec![7; 50]))
            .unwrap();
    }
    let mut rounds = 0;
    loop {
        let ex = exchange(&mut a, &mut b, t);
        rounds += 1;
        let r = reply_of(&ex.reply);
        for d in &r.deltas {
            if d.node == node(2) && !d.entries.is_empty() {
                let versions: Vec<u64> = d.entries.iter().map(|e| e.version).collect();
                let expected: Vec<u64> = (d.from_version + 1..=d.to_version).collect();
                assert_eq!(versions, expected, "no gap");
            }
        }
        let held = a.digest_entry(&node(2)).map_or(0, |e| e.max_version);
        if held == 40 {
            break;
        }
        assert!(rounds < 20);
    }
    assert!(
        rounds >= 4,
        "40 values of 50 bytes need several 600-byte replies"
    );
    assert!(b.stats().entries_left_out > 0);
    assert_eq!(a.node_state(&node(2)).unwrap().entries.len(), 40);
}

#[test]
fn scuttle_breadth_takes_one_entry_of_each_owner_in_turn() {
    let t = t0();
    let c = ReconcileConfig {
        max_envelope_len: 600,
        max_value_len: 100,
        delta_order: DeltaOrder::Breadth,
        ..config()
    };
    let mut a = core(1, 1, vec![], c.clone(), t);
    let mut b = core(2, 1, vec![], c, t);
    let owners: Vec<NodeDelta> = (3..=6).map(|i| owner_delta(i, 1, 10, 20)).collect();
    // Both know the owners' existence (version 1), b has all ten versions.
    let first: Vec<NodeDelta> = owners
        .iter()
        .map(|d| NodeDelta {
            to_version: 1,
            complete: false,
            entries: d.entries[..1].to_vec(),
            ..d.clone()
        })
        .collect();
    feed(&mut a, t, first);
    feed(&mut b, t, owners);
    // Make b known to a so only the four owners are pending.
    exchange(&mut b, &mut a, t);
    let ex = exchange(&mut a, &mut b, t);
    let r = reply_of(&ex.reply);
    let counts: Vec<usize> = r
        .deltas
        .iter()
        .filter(|d| d.node >= node(3))
        .map(|d| d.entries.len())
        .collect();
    assert_eq!(counts.len(), 4, "{counts:?}");
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 1, "breadth-first: {counts:?}");
    assert!(*max < 9, "the datagram cannot hold everything: {counts:?}");
}

#[test]
fn tombstones_are_collected_and_a_late_peer_gets_a_reset_not_a_resurrection() {
    let t = t0();
    let c = ReconcileConfig {
        tombstone_grace: secs(60),
        ..config()
    };
    let mut a = core(1, 1, vec![], c.clone(), t);
    let mut b = core(2, 1, vec![], c.clone(), t);
    let mut late = core(3, 1, vec![], c, t);
    a.set(t, "k1", bytes("one")).unwrap();
    a.set(t, "k2", bytes("two")).unwrap();
    a.set(t, "k3", bytes("three")).unwrap();
    exchange(&mut b, &mut a, t);
    exchange(&mut late, &mut a, t);
    assert_eq!(late.get(&node(1), "k1"), Some((bytes("one"), 1)));

    // a deletes k1; b learns the tombstone, `late` does not.
    assert_eq!(a.delete(t, "k1"), Ok(Some(4)));
    let ex = exchange(&mut b, &mut a, t);
    assert!(ex.initiator_events.iter().any(|e| matches!(e,
        StateEvent::Update { key, value: None, version: 4, .. } if key == "k1")));
    assert_eq!(b.occupancy().tombstones, 1);

    // After the grace period both collect the tombstone.
    let later = t + secs(61);
    for c in [&mut a, &mut b] {
        c.handle_timeout(later + secs(1));
        assert_eq!(c.stats().tombstones_collected, 1);
        assert_eq!(c.occupancy().tombstones, 0);
        assert_eq!(c.digest_entry(&node(1)).unwrap().gc_version, 4);
    }

    // `late` still holds k1 at version 1. Talking to b: b answers with a reset.
    let now = later + secs(2);
    let ex = exchange(&mut late, &mut b, now);
    let r = reply_of(&ex.reply);
    let d = r.deltas.iter().find(|d| d.node == node(1)).unwrap();
    assert!(d.reset);
    assert_eq!((d.from_version, d.gc_version, d.complete), (0, 4, true));
    assert_eq!(b.stats().resets_sent, 1);
    assert_eq!(late.stats().resets_received, 1);
    assert_eq!(late.get(&node(1), "k1"), None, "k1 dropped");
    assert!(ex.initiator_events.iter().any(|e| matches!(e,
        StateEvent::Update { key, value: None, .. } if key == "k1")));
    assert_eq!(late.get(&node(1), "k2"), Some((bytes("two"), 2)));
    let held = late.digest_entry(&node(1)).unwrap();
    assert_eq!((held.max_version, held.gc_version), (4, 4));

    // Nobody resurrects k1: exchanges in every direction leave it deleted everywhere.
    for _ in 0..2 {
        exchange(&mut a, &mut late, now);
        exchange(&mut late, &mut a, now);
        exchange(&mut b, &mut late, now);
    }
    for c in [&a, &b, &late] {
        assert_eq!(c.get(&node(1), "k1"), None);
    }
    assert_eq!(
        b.stats().resets_sent + a.stats().resets_sent,
        1,
        "one reset only"
    );
}

#[test]
fn a_reset_larger_than_a_datagram_is_rebuilt_over_several_exchanges_without_looping() {
    let t = t0();
    let c = ReconcileConfig {
        tombstone_grace: secs(10),
        max_envelope_len: 600,
        max_value_len: 100,
        ..config()
    };
    let mut a = core(1, 1, vec![], c.clone(), t);
    let mut late = core(3, 1, vec![], c, t);
    for k in 0..30 {
        a.set(t, &format!("key{k:02}"), Bytes::from(vec![1; 40]))
            .unwrap();
    }
    while late.digest_entry(&node(1)).map_or(0, |e| e.max_version) < 30 {
        exchange(&mut late, &mut a, t);
    }
    // key00 is deleted and collected; every other key is rewritten.
    a.delete(t, "key00").unwrap();
    for k in 1..30 {
        a.set(t, &format!("key{k:02}"), Bytes::from(vec![2; 40]))
            .unwrap();
    }
    a.handle_timeout(t + secs(20));
    assert_eq!(a.digest_entry(&node(1)).unwrap().gc_version, 31);
    let now = t + secs(21);
    let mut exchanges = 0;
    let mut saw_old_value_during_rebuild = false;
    while late.digest_entry(&node(1)).unwrap().max_version < 60 {
        exchange(&mut late, &mut a, now);
        exchanges += 1;
        assert!(exchanges < 20);
        // Until the rebuild completes, the old values (the deleted key00 too) stay readable:
        // the node knows no more than before the reset. They are never gossiped.
        if late.digest_entry(&node(1)).unwrap().max_version < 60 {
            saw_old_value_during_rebuild |=
                late.get(&node(1), "key29").is_some_and(|(v, _)| v[0] == 1);
            assert!(late.get(&node(1), "key00").is_some());
            let mut peer = core(4, 1, vec![], a.config().clone(), now);
            exchange(&mut peer, &mut late, now);
            assert_eq!(
                peer.get(&node(1), "key00"),
                None,
                "stale values are not gossiped"
            );
        }
    }
    assert!(exchanges >= 3, "{exchanges}");
    assert!(saw_old_value_during_rebuild, "old values stay readable");
    assert_eq!(
        a.stats().resets_sent,
        1,
        "the rebuild continues, it is not reset again"
    );
    assert_eq!(late.get(&node(1), "key00"), None);
    let view = late.node_state(&node(1)).unwrap();
    assert_eq!(view.entries.len(), 29);
    assert!(view.entries.iter().all(|e| e.value[0] == 2));
    assert_eq!(late.stats().stale_keys_dropped, 1);
}

#[test]
fn a_higher_generation_replaces_the_old_state() {
    let t = t0();
    let mut a = core(1, 1, vec![], config(), t);
    let mut b = core(2, 1, vec![], config(), t);
    a.set(t, "old", bytes("1")).unwrap();
    a.set(t, "kept", bytes("1")).unwrap();
    exchange(&mut b, &mut a, t);
    let old_delta = owner_delta(1, 1, 2, 3);
    // a restarts with a new generation and different keys.
    let mut a2 = core(1, 2, vec![], config(), t);
    a2.set(t, "new", bytes("2")).unwrap();
    let ex = exchange(&mut b, &mut a2, t);
    assert!(ex.initiator_events.iter().any(|e| matches!(e,
        StateEvent::NodeRestarted { node: n, generation: 2, .. } if *n == node(1))));
    assert_eq!(b.get(&node(1), "old"), None);
    assert_eq!(b.get(&node(1), "kept"), None);
    assert_eq!(b.get(&node(1), "new"), Some((bytes("2"), 1)));
    assert_eq!(b.stats().restarts_seen, 1);
    // A late delta of the old generation changes nothing.
    feed(&mut b, t, vec![old_delta]);
    assert_eq!(b.stats().old_generation_ignored, 1);
    assert_eq!(b.get(&node(1), "old"), None);
    // b holds the new generation: to a peer with the old one it sends the whole new state.
    let mut c = core(3, 1, vec![], config(), t);
    feed(&mut c, t, vec![owner_delta(1, 5, 2, 3)]);
    exchange(&mut c, &mut b, t);
    assert_eq!(c.digest_entry(&node(1)).unwrap().generation, 2);
    assert_eq!(c.get(&node(1), "k0"), None);
    assert_eq!(c.get(&node(1), "new"), Some((bytes("2"), 1)));
}

#[test]
fn other_nodes_state_is_bounded_in_bytes_and_refused_entries_are_asked_again() {
    let t = t0();
    let c = ReconcileConfig {
        // Room for 9 entries of a 2-byte key and a 1,000-byte value (1,130 bytes each).
        max_state_bytes: 10_500,
        ..config()
    };
    let mut core = core(0, 1, vec![], c, t);
    // Twenty strangers with one 1,000-byte value each: only nine fit.
    let deltas: Vec<NodeDelta> = (1..=20).map(|i| owner_delta(i, 1, 1, 1_000)).collect();
    feed(&mut core, t, deltas);
    let o = core.occupancy();
    assert_eq!(
        o.state_bytes,
        9 * (2 + 1_000 + super::super::ENTRY_OVERHEAD)
    );
    assert_eq!(core.stats().bytes_refused, 11);
    let held = (1..=20)
        .filter(|i| core.get(&node(*i), "k0").is_some())
        .count();
    assert_eq!(held, 9);
    // A refused owner's version stays below the entry, so it is asked for again...
    assert_eq!(core.digest_entry(&node(20)).unwrap().max_version, 0);
    // ... and an owner held here may still replace its value in place.
    let mut newer = owner_delta(1, 2, 1, 1_000);
    newer.from_version = 1;
    newer.to_version = 2;
    newer.entries[0].version = 2;
    feed(&mut core, t, vec![newer]);
    assert_eq!(core.get(&node(1), "k0").map(|v| v.1), Some(2));
    assert_eq!(core.stats().bytes_refused, 11);
    // The local node's own keys do not count.
    core.set(t, "own", Bytes::from(vec![0; 1_000])).unwrap();
    assert_eq!(core.occupancy().state_bytes, o.state_bytes);
}

#[test]
fn a_restored_restart_keeps_acknowledged_values_and_resurrects_no_delete() {
    let t = t0();
    let mut a = core(1, 1, vec![], config(), t);
    let mut b = core(2, 1, vec![], config(), t);
    a.set(t, "kept", bytes("1")).unwrap();
    a.set(t, "gone", bytes("1")).unwrap();
    a.set(t, "kept", bytes("2")).unwrap();
    exchange(&mut b, &mut a, t);
    assert_eq!(b.get(&node(1), "gone"), Some((bytes("1"), 2)));
    a.delete(t, "gone").unwrap();
    // a crashes before b learns of the delete. What a persisted (its live entries) is
    // restored in a higher generation, with a flow controller that would refuse a set.
    let strict = ReconcileConfig {
        flow: FlowConfig {
            burst: 1,
            ..FlowConfig::default()
        },
        ..config()
    };
    let mut a2 = core(1, 2, vec![], strict, t);
    assert_eq!(a2.restore(t, "kept", bytes("2")), Ok(1));
    assert_eq!(a2.restore(t, "other", bytes("3")), Ok(2));
    assert_eq!(a2.flow().stats().admitted, 0);
    assert!(matches!(
        a2.restore(t, &"k".repeat(129), bytes("x")),
        Err(StateError::KeyTooLong { len: 129, max: 128 })
    ));
    exchange(&mut b, &mut a2, t);
    assert_eq!(b.get(&node(1), "kept"), Some((bytes("2"), 1)));
    assert_eq!(b.get(&node(1), "other"), Some((bytes("3"), 2)));
    assert_eq!(b.get(&node(1), "gone"), None);
    // An old copy of the deleted value from the first generation changes nothing.
    let mut c = core(3, 1, vec![], config(), t);
    exchange(&mut c, &mut a, t);
    assert_eq!(c.get(&node(1), "gone"), None);
    let mut old = owner_delta(1, 9, 2, 1);
    old.entries[1].key = "gone".into();
    feed(&mut b, t, vec![old]);
    assert_eq!(b.get(&node(1), "gone"), None);
    assert_eq!(b.get(&node(1), "kept"), Some((bytes("2"), 1)));
    assert_eq!(b.digest_entry(&node(1)).unwrap().generation, 2);
}

#[test]
fn malformed_gapped_and_hostile_deltas_are_ignored_and_counted() {
    let t = t0();
    let c = ReconcileConfig {
        max_keys_per_owner: 3,
        ..config()
    };
    let mut a = core(1, 1, vec![], c, t);
    feed(&mut a, t, vec![owner_delta(3, 1, 2, 4)]);
    let base = owner_delta(3, 2, 5, 4);
    // Unsorted entries.
    let mut unsorted = base.clone();
    unsorted.entries.swap(0, 1);
    // An entry above to_version.
    let mut above = base.clone();
    above.to_version = 3;
    // A reset that does not start at 0.
    let mut bad_reset = base.clone();
    bad_reset.reset = true;
    bad_reset.from_version = 1;
    bad_reset.entries.remove(0);
    // from > to.
    let mut backwards = base.clone();
    backwards.from_version = 9;
    backwards.entries.clear();
    // Our own state.
    let own = owner_delta(1, 9, 3, 4);
    feed(&mut a, t, vec![unsorted, above, bad_reset, backwards, own]);
    let s = a.stats();
    assert_eq!(s.malformed_deltas, 4);
    assert_eq!(s.own_state_ignored, 1);
    assert_eq!(a.digest_entry(&node(3)).unwrap().max_version, 2);
    assert_eq!(a.digest_entry(&node(1)).unwrap().max_version, 0);

    // A gap: from 4 while a holds 2. The heartbeat is still taken, the entries are not.
    let gapped = NodeDelta {
        from_version: 4,
        entries: base.entries[4..].to_vec(),
        ..base.clone()
    };
    let events = feed(&mut a, t, vec![gapped]);
    assert_eq!(a.stats().gap_deltas, 1);
    assert_eq!(a.digest_entry(&node(3)).unwrap().max_version, 2);
    assert_eq!(a.digest_entry(&node(3)).unwrap().heartbeat, 2);
    assert!(matches!(
        events.as_slice(),
        [StateEvent::HeartbeatAdvanced { heartbeat: 2, .. }]
    ));

    // Too many keys: the delta stops before the fourth key; nothing is skipped.
    let events = feed(
        &mut a,
        t,
        vec![NodeDelta {
            heartbeat: 3,
            ..base.clone()
        }],
    );
    assert_eq!(a.stats().keys_refused, 1);
    assert_eq!(a.digest_entry(&node(3)).unwrap().max_version, 3);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, StateEvent::Update { .. }))
            .count(),
        1
    );

    // An oversized key from a peer with a larger limit stops the delta the same way.
    let mut big = owner_delta(4, 1, 2, 4);
    big.entries[1].key = "x".repeat(200);
    feed(&mut a, t, vec![big]);
    assert_eq!(a.stats().oversized_entries, 1);
    assert_eq!(a.digest_entry(&node(4)).unwrap().max_version, 1);
}

#[test]
fn nodes_beyond_max_nodes_are_refused() {
    let t = t0();
    let c = ReconcileConfig {
        max_nodes: 3,
        ..config()
    };
    let mut a = core(1, 1, vec![], c, t);
    feed(
        &mut a,
        t,
        (2..=6).map(|i| owner_delta(i, 1, 1, 1)).collect(),
    );
    assert_eq!(a.node_count(), 3);
    assert_eq!(a.stats().nodes_refused, 3);
    assert_eq!(a.stats().nodes_learned, 2);
}

#[test]
fn dead_nodes_are_forgotten_after_the_grace_and_stale_copies_do_not_bring_them_back() {
    let t = t0();
    let c = ReconcileConfig {
        dead_node_grace: secs(30),
        ..config()
    };
    let mut a = core(1, 1, vec![], c, t);
    feed(
        &mut a,
        t,
        vec![owner_delta(3, 5, 2, 4), owner_delta(4, 5, 1, 4)],
    );
    a.handle_peer_dead(t, node(3));
    a.handle_peer_dead(t, node(99));
    assert_eq!(a.stats().liveness_ignored, 1);
    assert_eq!(a.is_live(&node(3)), Some(false));
    a.handle_timeout(t + secs(29));
    assert!(a.node_state(&node(3)).is_some());
    a.handle_timeout(t + secs(31));
    let (_, events) = drain(&mut a);
    assert!(events.contains(&StateEvent::NodeForgotten { node: node(3) }));
    assert_eq!(a.node_state(&node(3)), None);
    assert!(a.node_state(&node(4)).is_some(), "live nodes are kept");
    // A copy no newer than when it was forgotten is ignored.
    feed(&mut a, t + secs(32), vec![owner_delta(3, 5, 2, 4)]);
    assert_eq!(a.stats().forgotten_ignored, 1);
    assert_eq!(a.node_state(&node(3)), None);
    // A newer heartbeat means it is back.
    let events = feed(&mut a, t + secs(33), vec![owner_delta(3, 6, 2, 4)]);
    assert!(matches!(events.first(), Some(StateEvent::NewNode { node: n, .. }) if *n == node(3)));
    assert_eq!(a.is_live(&node(3)), Some(true));
}

#[test]
fn targets_follow_gossipmonger_live_dead_and_seed_rules() {
    let t = t0();
    // No peers: a seed each round.
    let mut a = core(1, 1, vec![addr(50), addr(1), addr(50)], config(), t);
    assert_eq!(a.seeds(), &[addr(50)]);
    a.handle_timeout(t + secs(1));
    let (tr, _) = drain(&mut a);
    assert_eq!(tr.iter().map(|t| t.to).collect::<Vec<_>>(), vec![addr(50)]);
    assert_eq!(a.stats().seed_gossips, 1);

    // One live peer: it, and a seed with probability seeds / live = 1 (Cassandra).
    feed(&mut a, t, vec![owner_delta(3, 1, 0, 0)]);
    a.handle_timeout(t + secs(2));
    let (tr, _) = drain(&mut a);
    assert_eq!(
        tr.iter().map(|t| t.to).collect::<Vec<_>>(),
        vec![addr(3), addr(50)]
    );

    // Only dead peers: probability dead / (0 + 1) ≥ 1 → a dead peer, plus a seed.
    a.handle_peer_dead(t, node(3));
    a.handle_timeout(t + secs(3));
    let (tr, _) = drain(&mut a);
    assert_eq!(
        tr.iter().map(|t| t.to).collect::<Vec<_>>(),
        vec![addr(3), addr(50)]
    );

    // Three live, one dead: the dead peer about a quarter of the rounds (1 / (3 + 1)), a
    // seed too (1 / (3 + 1)).
    feed(
        &mut a,
        t,
        (4..=6).map(|i| owner_delta(i, 1, 0, 0)).collect(),
    );
    let (dead_before, seed_before) = (a.stats().dead_gossips, a.stats().seed_gossips);
    for r in 0..400u64 {
        a.handle_timeout(t + secs(4 + r));
        drain(&mut a);
    }
    let dead = a.stats().dead_gossips - dead_before;
    let seeds = a.stats().seed_gossips - seed_before;
    assert!((70..=130).contains(&dead), "{dead} of 400");
    assert!((70..=130).contains(&seeds), "{seeds} of 400");

    // Nothing at all: an idle round.
    let mut lonely = core(9, 1, vec![], config(), t);
    lonely.handle_timeout(t + secs(1));
    assert_eq!(lonely.stats().idle_rounds, 1);
    assert!(drain(&mut lonely).0.is_empty());
}

#[test]
fn rounds_increment_the_heartbeat_and_follow_the_interval() {
    let t = t0();
    let mut a = core(1, 1, vec![], config(), t);
    let first = a.poll_timeout().unwrap();
    assert!(first >= t && first <= t + secs(1));
    a.handle_timeout(first - ms(1));
    assert_eq!(a.stats().rounds, 0);
    a.handle_timeout(first);
    assert_eq!(a.stats().rounds, 1);
    assert_eq!(a.poll_timeout(), Some(first + secs(1)));
    assert_eq!(a.digest_entry(&node(1)).unwrap().heartbeat, 1);
    // A late call runs one round, not the missed ones.
    a.handle_timeout(first + secs(10));
    assert_eq!(a.stats().rounds, 2);
    assert_eq!(a.digest_entry(&node(1)).unwrap().heartbeat, 2);
}

#[test]
fn rumours_are_advertised_until_peers_already_have_them() {
    let t = t0();
    let mut a = core(1, 1, vec![], config(), t);
    let mut b = core(2, 1, vec![], config(), t);
    exchange(&mut a, &mut b, t);
    feed(&mut a, t, vec![owner_delta(3, 1, 1, 1)]);
    assert_eq!(a.occupancy().rumors, 2, "b and node 3 are news");
    assert!(a.rumors.contains_key(&node(3)));
    // The first exchange carries node 3 to b (b asks for it).
    let ex = exchange(&mut a, &mut b, t);
    assert!(
        digest_of(&ex.digest)
            .extra
            .iter()
            .any(|e| e.node == prefix(3))
    );
    assert!(b.node_state(&node(3)).is_some());
    // Then b already has it: after rumor_counter (3) such exchanges it is no rumour any more.
    for _ in 0..3 {
        exchange(&mut a, &mut b, t);
    }
    assert!(!a.rumors.contains_key(&node(3)));
    // b itself is still news, but never advertised to b (it is the target, listed anyway).
    assert!(a.rumors.contains_key(&node(2)));
    let ex = exchange(&mut a, &mut b, t);
    assert!(
        digest_of(&ex.digest)
            .extra
            .iter()
            .all(|e| e.node != prefix(3))
    );
}

#[test]
fn unanswered_digests_time_out_and_outstanding_exchanges_are_bounded() {
    let t = t0();
    let c = ReconcileConfig {
        max_outstanding_exchanges: 2,
        ..config()
    };
    let mut a = core(1, 1, vec![], c, t);
    for i in 10..15 {
        a.send_digest(t, addr(i), None);
    }
    assert_eq!(a.occupancy().outstanding, 2);
    assert_eq!(a.stats().exchanges_evicted, 3);
    a.handle_timeout(t + secs(5));
    assert_eq!(a.occupancy().outstanding, 0);
    assert_eq!(a.stats().exchanges_timed_out, 2);
    // A reply nobody asked for is applied, its rate ignored.
    let rate = a.flow().rate();
    a.handle_message(
        t,
        addr(30),
        node(30),
        StateMessage::Reply(crate::reconcile::Reply {
            deltas: vec![owner_delta(30, 1, 1, 1)],
            digest: vec![],
            flow: Default::default(),
            assigned_rate: 1,
        }),
    );
    assert_eq!(a.stats().unsolicited_replies, 1);
    assert_eq!(a.flow().rate(), rate);
    assert!(a.node_state(&node(30)).is_some());
    // Our own messages looped back are ignored.
    a.handle_message(
        t,
        addr(1),
        node(1),
        StateMessage::Deltas(Deltas { deltas: vec![] }),
    );
    assert_eq!(a.stats().own_messages_ignored, 1);
}

#[test]
fn rates_are_re_split_on_every_exchange() {
    let t = t0();
    let flow = |rate| FlowConfig {
        initial_rate: rate,
        ..FlowConfig::default()
    };
    let mut a = core(
        1,
        1,
        vec![],
        ReconcileConfig {
            flow: flow(10),
            ..config()
        },
        t,
    );
    let mut b = core(
        2,
        1,
        vec![],
        ReconcileConfig {
            flow: flow(30),
            ..config()
        },
        t,
    );
    // Both idle (desire 1 = min_rate): each keeps its desire plus half the surplus of 38.
    let ex = exchange(&mut a, &mut b, t);
    let r = reply_of(&ex.reply);
    assert_eq!(r.assigned_rate, 20_000);
    assert_eq!(r.flow.rate, 20_000);
    assert_eq!(a.flow().rate(), 20.0);
    assert_eq!(b.flow().rate(), 20.0);
    assert_eq!(b.flow().stats().splits, 1);
    assert_eq!(a.flow().stats().assignments, 1);
}

#[test]
fn add_seed_skips_self_and_duplicates_and_is_bounded() {
    use crate::reconcile::MAX_SEEDS;
    use rand::SeedableRng;
    let local: std::net::SocketAddr = "10.0.0.1:7000".parse().unwrap();
    let mut core = Reconcile::new(
        NodeId([1; 32]),
        local,
        1,
        vec![],
        ReconcileConfig::default(),
        StdRng::seed_from_u64(1),
        t0(),
    )
    .unwrap();
    assert!(!core.add_seed(local));
    let seed: std::net::SocketAddr = "10.0.0.2:7000".parse().unwrap();
    assert!(core.add_seed(seed));
    assert!(!core.add_seed(seed));
    for port in 0..(MAX_SEEDS as u16 + 10) {
        core.add_seed(std::net::SocketAddr::from(([10, 0, 1, 1], port)));
    }
    assert_eq!(core.seeds().len(), MAX_SEEDS);
    assert_eq!(core.stats().seeds_refused, 11);
    assert!(core.seeds().windows(2).all(|w| w[0] < w[1]), "kept sorted");
}

#[test]
fn repeated_resets_keep_the_old_entries_within_max_keys() {
    let t = t0();
    let c = ReconcileConfig {
        max_keys_per_owner: 3,
        ..config()
    };
    let mut r = core(1, 1, vec![], c, t);
    feed(&mut r, t, vec![owner_delta(3, 1, 3, 4)]);
    let entry = |key: &str, version| DeltaEntry {
        key: key.to_owned(),
        version,
        value: Some(bytes("new")),
    };
    let reset = |heartbeat, to, entries: Vec<DeltaEntry>| NodeDelta {
        node: node(3),
        generation: 1,
        heartbeat,
        addr: addr(3),
        gc_version: 10,
        reset: true,
        from_version: 0,
        to_version: to,
        complete: false,
        entries,
    };
    feed(
        &mut r,
        t,
        vec![reset(2, 12, vec![entry("d", 11), entry("e", 12)])],
    );
    assert_eq!(r.nodes[&node(3)].stale.len(), 3);
    assert_eq!(r.get(&node(3), "k0"), Some((Bytes::from(vec![3; 4]), 1)));
    // A second reset before the rebuild completed: five old keys, the three newest kept.
    let events = feed(&mut r, t, vec![reset(3, 21, vec![entry("f", 21)])]);
    let st = &r.nodes[&node(3)];
    assert_eq!(st.stale.len(), 3);
    assert!(r.occupancy().largest_owner <= 6);
    assert_eq!(r.stats().stale_keys_dropped, 2);
    assert_eq!(r.get(&node(3), "k0"), None);
    assert_eq!(r.get(&node(3), "k1"), None);
    assert!(r.get(&node(3), "k2").is_some());
    assert!(r.get(&node(3), "e").is_some());
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, StateEvent::Update { value: None, .. }))
            .count(),
        2
    );
    // Completion drops the old keys the rebuilt state did not bring.
    feed(
        &mut r,
        t,
        vec![NodeDelta {
            reset: false,
            from_version: 21,
            to_version: 22,
            complete: true,
            entries: vec![entry("g", 22)],
            ..reset(4, 0, vec![])
        }],
    );
    let view = r.node_state(&node(3)).unwrap();
    assert_eq!(
        view.entries
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        vec!["f", "g"]
    );
    assert!(r.nodes[&node(3)].stale.is_empty());
}
