//! Flooding and arbitrary input: no panic, every collection within its bound, and the view's
//! invariants (no self, no address twice, at most `view_size`) after every step.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::StdRng;

use super::scripted::{addr, core_with, desc, drain, node};
use crate::id::NodeId;
use crate::membership::wire_bound::ENVELOPE_OVERHEAD;
use crate::membership::{Cyclon, CyclonConfig, CyclonMessage, Descriptor, Shuffle, ShuffleReply};

/// The local node of [`core_with`].
const ME: u16 = 500;

fn assert_invariants<R: rand::Rng>(c: &Cyclon<R>) {
    let o = c.occupancy();
    let k = c.config();
    assert!(o.view <= k.view_size, "{o:?}");
    assert!(o.seeds <= k.max_seeds, "{o:?}");
    assert!(o.pending <= k.max_pending, "{o:?}");
    assert!(o.dead <= k.max_dead, "{o:?}");
    assert!(
        o.queued_transmits + o.queued_events <= k.output_queue_capacity,
        "{o:?}"
    );
    let addrs: BTreeSet<SocketAddr> = c.view().map(|d| d.addr).collect();
    assert_eq!(addrs.len(), o.view, "an address held twice");
    assert!(!c.contains(&c.local_id()));
    assert!(!addrs.contains(&c.local_addr()));
}

#[test]
fn a_flood_of_shuffles_without_draining_stays_bounded_and_counts_drops() {
    let t0 = crate::test_util::epoch();
    let mut c = core_with(CyclonConfig::default(), 1, t0);
    let mut now = t0;
    let total = 20_000u32;
    for n in 0..total {
        now += Duration::from_micros(500);
        let sender = u16::try_from(n % 4_000).unwrap_or(0) + 1;
        let entries = (0..8u16)
            .map(|k| desc(sender.wrapping_mul(7).wrapping_add(k) % 4_000 + 1, n % 300))
            .collect();
        c.handle_shuffle(now, addr(sender), node(sender), Shuffle { entries });
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        assert_invariants(&c);
    }
    let s = c.stats();
    let o = c.occupancy();
    assert_eq!(
        o.queued_transmits + o.queued_events,
        c.config().output_queue_capacity
    );
    assert!(s.transmits_dropped > 0 && s.events_dropped > 0);
    assert_eq!(s.shuffles_received, u64::from(total));
    // Nothing is lost silently: every shuffle got a reply, queued or dropped and counted.
    assert!(s.replies_sent < u64::from(total));
    assert!(s.replies_sent + s.transmits_dropped >= u64::from(total));
    // Draining empties the queue; the core carries on.
    drain(&mut c);
    c.handle_shuffle(now, addr(1), node(1), Shuffle::default());
    assert_eq!(drain(&mut c).0.len(), 1);
}

#[test]
fn a_flood_of_dead_reports_and_seeds_stays_bounded() {
    let t0 = crate::test_util::epoch();
    let config = CyclonConfig {
        max_dead: 100,
        max_seeds: 10,
        ..CyclonConfig::default()
    };
    let mut c = core_with(config, 1, t0);
    for n in 0..10_000u16 {
        c.handle_peer_dead(t0, node(n));
        c.add_seed(t0, None, addr(n));
        drain(&mut c);
    }
    assert_invariants(&c);
    assert_eq!(c.occupancy().dead, 100);
    assert_eq!(c.occupancy().seeds, 10);
    let s = c.stats();
    assert_eq!(s.dead_evictions, 10_000 - 1 - 100);
    assert_eq!(s.seeds_added + s.seeds_refused, 10_000);
}

/// A small configuration, so that arbitrary input reaches every bound quickly.
fn tiny_config() -> CyclonConfig {
    CyclonConfig {
        view_size: 5,
        shuffle_length: 3,
        shuffle_interval: Duration::from_millis(300),
        shuffle_timeout: Duration::from_millis(700),
        max_pending: 2,
        max_seeds: 3,
        dead_retention: Duration::from_secs(2),
        max_dead: 3,
        output_queue_capacity: 7,
        ..CyclonConfig::default()
    }
}

#[derive(Clone, Debug)]
enum Input {
    Shuffle {
        from: u16,
        sender: u16,
        entries: Vec<Descriptor>,
    },
    Reply {
        from: u16,
        sender: u16,
        entries: Vec<Descriptor>,
    },
    Dead(u16),
    Seed(Option<u16>, u16),
    Select(usize),
    Timeout,
    Advance(u64),
    /// Stop draining the outputs until the next `Drain`.
    Hold,
    Drain,
}

/// Small ids, so that entries collide with each other, with the view and with ourselves
/// (`ME`); odd addresses, so that an id can come with another node's address.
fn arb_descriptor() -> impl Strategy<Value = Descriptor> {
    let id = prop_oneof![5 => 1u16..12, 1 => Just(ME)];
    let at = prop_oneof![5 => 1u16..12, 1 => Just(ME)];
    (id, at, any::<bool>(), any::<u32>()).prop_map(|(id, at, own, age)| Descriptor {
        node: node(id),
        addr: addr(if own { id } else { at }),
        age: age % 4 + if age % 17 == 0 { u32::MAX - 3 } else { 0 },
    })
}

fn arb_input() -> impl Strategy<Value = Input> {
    let peer = || prop_oneof![6 => 1u16..12, 1 => Just(ME)];
    let entries = || prop::collection::vec(arb_descriptor(), 0..6);
    prop_oneof![
        6 => (peer(), peer(), entries())
            .prop_map(|(from, sender, entries)| Input::Shuffle { from, sender, entries }),
        6 => (peer(), peer(), entries())
            .prop_map(|(from, sender, entries)| Input::Reply { from, sender, entries }),
        1 => peer().prop_map(Input::Dead),
        1 => (prop::option::of(peer()), peer()).prop_map(|(id, at)| Input::Seed(id, at)),
        1 => (0usize..8).prop_map(Input::Select),
        2 => Just(Input::Timeout),
        4 => (0u64..1_000).prop_map(Input::Advance),
        1 => Just(Input::Hold),
        1 => Just(Input::Drain),
    ]
}

fn run_inputs(inputs: Vec<Input>) {
    let t0: Instant = crate::test_util::epoch();
    let mut c: Cyclon<StdRng> = core_with(tiny_config(), 3, t0);
    let l = c.config().shuffle_length;
    let mut now = t0;
    let mut hold = false;
    for input in inputs {
        match input {
            Input::Shuffle {
                from,
                sender,
                entries,
            } => c.handle_shuffle(now, addr(from), node(sender), Shuffle { entries }),
            Input::Reply {
                from,
                sender,
                entries,
            } => c.handle_shuffle_reply(now, addr(from), node(sender), ShuffleReply { entries }),
            Input::Dead(n) => c.handle_peer_dead(now, node(n)),
            Input::Seed(id, at) => c.add_seed(now, id.map(node), addr(at)),
            Input::Select(n) => {
                let chosen = c.select(n, &[addr(1)]);
                let distinct: BTreeSet<_> = chosen.iter().collect();
                assert_eq!(distinct.len(), chosen.len());
                assert_eq!(
                    chosen.len(),
                    n.min(c.view().filter(|d| d.addr != addr(1)).count())
                );
            }
            Input::Timeout => c.handle_timeout(now),
            Input::Advance(millis) => {
                now += Duration::from_millis(millis);
                if c.poll_timeout().is_some_and(|t| t <= now) {
                    c.handle_timeout(now);
                }
            }
            Input::Hold => hold = true,
            Input::Drain => hold = false,
        }
        if !hold {
            let (transmits, _) = drain(&mut c);
            for t in transmits {
                let entries: &[Descriptor] = match &t.message {
                    CyclonMessage::Shuffle(s) => &s.entries,
                    CyclonMessage::Reply(r) => &r.entries,
                };
                assert!(entries.len() <= l);
                assert!(
                    ENVELOPE_OVERHEAD + t.message.encoded_len_bound()
                        <= c.config().max_envelope_len
                );
                let ids: BTreeSet<NodeId> = entries.iter().map(|d| d.node).collect();
                assert_eq!(ids.len(), entries.len(), "an entry sent twice");
                assert_ne!(t.to, c.local_addr());
            }
        }
        assert_invariants(&c);
        if let Some(t) = c.poll_timeout() {
            // A deadline is never further away than the longest timer.
            assert!(t <= now + Duration::from_millis(700));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any sequence of inputs from any senders (ourselves included), with time moving
    /// forward: no panic, and the bounds and view invariants hold after every step.
    #[test]
    fn arbitrary_inputs_never_panic_and_keep_the_view_sound(
        inputs in prop::collection::vec(arb_input(), 0..200)
    ) {
        run_inputs(inputs);
    }
}
