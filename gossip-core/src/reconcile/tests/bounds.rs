//! Property tests: the size bounds are the real bincode sizes, deltas always fit their budget
//! and never leave a version gap, and arbitrary input never panics or breaks a bound.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use bytes::Bytes;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{addr, config, drain};
use crate::flow::FlowAdvert;
use crate::id::NodeId;
use crate::reconcile::{
    DeltaEntry, DeltaOrder, Deltas, Digest, DigestEntry, ENVELOPE_OVERHEAD, NodeDelta, NodePrefix,
    Reconcile, ReconcileConfig, Reply, StateMessage,
};

fn encoded<T: serde::Serialize>(value: &T) -> usize {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("encodes")
        .len()
}

/// Integers spread over every varint width.
fn int() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..251,
        251u64..=0xffff,
        0x1_0000u64..=0xffff_ffff,
        0x1_0000_0000u64..=u64::MAX,
    ]
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| {
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
        }),
    ]
}

fn digest_entry() -> impl Strategy<Value = DigestEntry> {
    (any::<[u8; 8]>(), int(), int(), int(), int()).prop_map(|(p, g, h, m, c)| DigestEntry {
        node: NodePrefix(p),
        generation: g,
        heartbeat: h,
        max_version: m,
        gc_version: c,
    })
}

fn delta_entry() -> impl Strategy<Value = DeltaEntry> {
    (
        "[a-z0-9]{0,300}",
        int(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
    )
        .prop_map(|(key, version, value)| DeltaEntry {
            key,
            version,
            value: value.map(Bytes::from),
        })
}

fn node_delta() -> impl Strategy<Value = NodeDelta> {
    (
        any::<[u8; 32]>(),
        (int(), int(), int()),
        socket_addr(),
        (any::<bool>(), int(), int(), any::<bool>()),
        proptest::collection::vec(delta_entry(), 0..4),
    )
        .prop_map(
            |(
                id,
                (generation, heartbeat, gc_version),
                addr,
                (reset, from, to, complete),
                entries,
            )| {
                NodeDelta {
                    node: NodeId(id),
                    generation,
                    heartbeat,
                    addr,
                    gc_version,
                    reset,
                    from_version: from,
                    to_version: to,
                    complete,
                    entries,
                }
            },
        )
}

fn advert() -> impl Strategy<Value = FlowAdvert> {
    (any::<u32>(), any::<u32>()).prop_map(|(rate, desired)| FlowAdvert { rate, desired })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `encoded_len_bound` is exactly what bincode 2 (standard config, as in gossip-net)
    /// writes, for every message and every integer width.
    #[test]
    fn size_bounds_are_the_bincode_sizes(
        page in proptest::collection::vec(digest_entry(), 0..5),
        extra in proptest::collection::vec(digest_entry(), 0..3),
        end in any::<[u8; 8]>(),
        deltas in proptest::collection::vec(node_delta(), 0..4),
        flow in advert(),
        assigned in any::<u32>(),
    ) {
        for e in page.iter().chain(&extra) {
            prop_assert_eq!(encoded(e), e.encoded_len_bound());
        }
        for d in &deltas {
            prop_assert_eq!(encoded(&d.addr), crate::reconcile::wire::socket_addr_len(&d.addr));
            prop_assert_eq!(encoded(d), d.encoded_len_bound());
            prop_assert!(d.encoded_len_bound() - d.entries.iter().map(DeltaEntry::encoded_len_bound).sum::<usize>() <= NodeDelta::MAX_HEADER_LEN);
        }
        let digest = Digest { range_end: NodePrefix(end), page: page.clone(), extra, flow };
        prop_assert_eq!(encoded(&digest), digest.encoded_len_bound());
        let reply = Reply { deltas: deltas.clone(), digest: page, flow, assigned_rate: assigned };
        prop_assert_eq!(encoded(&reply), reply.encoded_len_bound());
        let d = Deltas { deltas };
        prop_assert_eq!(encoded(&d), d.encoded_len_bound());
        prop_assert_eq!(encoded(&flow), flow.encoded_len_bound());
        // The envelope adds the sender id, epoch, counter and one variant byte for types 16..=18.
        prop_assert_eq!(encoded(&(NodeId([0; 32]), [0u8; 16], 18u32)), ENVELOPE_OVERHEAD);
    }
}

/// One owner's state for the property below: `(key index, value length or tombstone)` per
/// write, applied in order, so later writes overwrite earlier ones.
type Writes = Vec<(u8, Option<usize>)>;

/// The state of owner `i` after `writes`: the latest entry per key, with versions 1.. in
/// write order (overwritten versions are gone, as at a real owner).
fn owner_state(i: u8, writes: &Writes) -> (NodeDelta, Vec<DeltaEntry>) {
    let mut latest: std::collections::BTreeMap<u8, DeltaEntry> = Default::default();
    for (v, (k, value)) in writes.iter().enumerate() {
        latest.insert(
            *k,
            DeltaEntry {
                key: format!("key-{k}"),
                version: v as u64 + 1,
                value: value.map(|len| Bytes::from(vec![i; len])),
            },
        );
    }
    let mut entries: Vec<DeltaEntry> = latest.into_values().collect();
    entries.sort_by_key(|e| e.version);
    let delta = NodeDelta {
        node: NodeId([i; 32]),
        generation: 1,
        heartbeat: 5,
        addr: addr(u16::from(i)),
        gc_version: 0,
        reset: false,
        from_version: 0,
        to_version: writes.len() as u64,
        complete: true,
        entries: entries.clone(),
    };
    (delta, entries)
}

/// Checks one message of deltas against the sender's states: it fits, and each owner's
/// entries are exactly the sender's entries in `(from, to]`, ascending.
fn check_deltas(
    deltas: &[NodeDelta],
    states: &[(NodeId, Vec<DeltaEntry>, u64)],
) -> Result<(), TestCaseError> {
    for d in deltas {
        let Some((_, entries, max)) = states.iter().find(|(id, _, _)| *id == d.node) else {
            continue;
        };
        let expected: Vec<&DeltaEntry> = entries
            .iter()
            .filter(|e| e.version > d.from_version && e.version <= d.to_version)
            .collect();
        prop_assert_eq!(
            d.entries.iter().collect::<Vec<_>>(),
            expected,
            "no gap, ascending"
        );
        if d.complete {
            prop_assert_eq!(d.to_version, *max);
        } else {
            prop_assert!(!d.entries.is_empty());
            prop_assert_eq!(d.to_version, d.entries.last().map_or(0, |e| e.version));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Deltas never exceed the datagram budget and never leave a version gap, in both
    /// orders, in replies (step 2) and in deltas messages (step 3); a receiver applying them
    /// holds exactly the sender's entries up to the version it reached.
    #[test]
    fn deltas_fit_the_budget_and_never_leave_a_gap(
        owners in proptest::collection::vec(
            proptest::collection::vec((0u8..12, proptest::option::of(0usize..120)), 1..30),
            1..6,
        ),
        held in proptest::collection::vec(proptest::option::of(0u64..40), 6),
        envelope in 300usize..1_400,
        breadth in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let t = crate::test_util::epoch();
        let c = ReconcileConfig {
            max_envelope_len: envelope,
            max_key_len: 16,
            max_value_len: 120,
            delta_order: if breadth { DeltaOrder::Breadth } else { DeltaOrder::Depth },
            ..config()
        };
        prop_assume!(c.validate().is_ok());
        let mut sender = Reconcile::new(
            NodeId([200; 32]), addr(200), 1, vec![], c.clone(), StdRng::seed_from_u64(seed), t,
        ).unwrap();
        let mut states = Vec::new();
        let mut feed = Vec::new();
        for (i, writes) in owners.iter().enumerate() {
            let (delta, entries) = owner_state(i as u8 + 1, writes);
            states.push((delta.node, entries, writes.len() as u64));
            feed.push(delta);
        }
        sender.handle_message(t, addr(250), NodeId([250; 32]), StateMessage::Deltas(Deltas { deltas: feed }));
        drain(&mut sender);

        // The peer (node 100) holds a prefix of each owner (or nothing); its digest lists
        // itself and the owners it holds, as one complete page.
        let peer = NodeId([100; 32]);
        let mut peer_core = Reconcile::new(
            peer, addr(100), 1, vec![], c.clone(), StdRng::seed_from_u64(seed ^ 1), t,
        ).unwrap();
        let mut prefix_feed = Vec::new();
        for ((id, entries, max), h) in states.iter().zip(&held) {
            let Some(h) = h else { continue };
            let v = (*h).min(*max);
            prefix_feed.push(NodeDelta {
                node: *id,
                generation: 1,
                heartbeat: 5,
                addr: addr(u16::from(id.0[0])),
                gc_version: 0,
                reset: false,
                from_version: 0,
                to_version: v,
                complete: v == *max,
                entries: entries.iter().filter(|e| e.version <= v).cloned().collect(),
            });
        }
        peer_core.handle_message(t, addr(250), NodeId([250; 32]), StateMessage::Deltas(Deltas { deltas: prefix_feed }));
        drain(&mut peer_core);
        let mut page: Vec<DigestEntry> = peer_core.nodes().filter_map(|n| peer_core.digest_entry(&n)).collect();
        page.sort_by_key(|e| e.node);
        let digest = Digest { range_end: page[0].node, page: page.clone(), extra: vec![], flow: FlowAdvert::default() };
        sender.handle_message(t, addr(100), peer, StateMessage::Digest(digest));
        let (transmits, _) = drain(&mut sender);
        prop_assert_eq!(transmits.len(), 1);
        let StateMessage::Reply(reply) = &transmits[0].message else {
            return Err(TestCaseError::fail("not a reply"));
        };
        prop_assert!(reply.encoded_len_bound() + ENVELOPE_OVERHEAD <= envelope);
        check_deltas(&reply.deltas, &states)?;
        // Progress: while the peer lacks entries, each reply carries some, or introduces a
        // node the peer did not know (unknown nodes go first).
        let lacking = states.iter().zip(&held).any(|((_, _, max), h)| h.is_none_or(|h| h < *max) && *max > 0);
        if lacking {
            prop_assert!(reply.deltas.iter().any(|d| !d.entries.is_empty() || d.node == NodeId([200; 32])));
        }

        // The peer applies the reply: for each owner it holds exactly the sender's entries up
        // to the version it reached.
        peer_core.handle_message(t, addr(200), NodeId([200; 32]), transmits[0].message.clone());
        drain(&mut peer_core);
        for (id, entries, _) in &states {
            let Some(held) = peer_core.digest_entry(id) else { continue };
            let view = peer_core.node_state(id).unwrap();
            let expected: Vec<(String, u64)> = {
                let mut v: Vec<(String, u64)> = entries
                    .iter()
                    .filter(|e| e.version <= held.max_version && e.value.is_some())
                    .map(|e| (e.key.clone(), e.version))
                    .collect();
                v.sort();
                v
            };
            let got: Vec<(String, u64)> = view.entries.iter().map(|e| (e.key.clone(), e.version)).collect();
            prop_assert_eq!(got, expected);
        }

        // Step 3: the sender as an initiator answers a reply whose digest asks for every owner
        // at the peer's original versions.
        let wants: Vec<DigestEntry> = states
            .iter()
            .zip(&held)
            .map(|((id, _, max), h)| DigestEntry {
                node: NodePrefix::of(id),
                generation: u64::from(h.is_some()),
                heartbeat: 0,
                max_version: h.map_or(0, |h| h.min(*max)),
                gc_version: 0,
            })
            .collect();
        sender.handle_message(t, addr(100), peer, StateMessage::Reply(Reply {
            deltas: vec![], digest: wants, flow: FlowAdvert::default(), assigned_rate: 10_000,
        }));
        let (transmits, _) = drain(&mut sender);
        for t in &transmits {
            let StateMessage::Deltas(d) = &t.message else {
                return Err(TestCaseError::fail("not deltas"));
            };
            prop_assert!(d.encoded_len_bound() + ENVELOPE_OVERHEAD <= envelope);
            check_deltas(&d.deltas, &states)?;
        }
    }
}

fn hostile_message() -> impl Strategy<Value = StateMessage> {
    let deltas = proptest::collection::vec(
        (
            0u8..6,
            (0u64..4, 0u64..6, 0u64..4),
            any::<bool>(),
            (0u64..8, 0u64..10, any::<bool>()),
            proptest::collection::vec((0u8..6, 0u64..10, proptest::option::of(0usize..40)), 0..8),
        )
            .prop_map(
                |(n, (g, h, gc), reset, (from, to, complete), entries)| NodeDelta {
                    node: NodeId([n; 32]),
                    generation: g,
                    heartbeat: h,
                    addr: addr(u16::from(n)),
                    gc_version: gc,
                    reset,
                    from_version: from,
                    to_version: to,
                    complete,
                    entries: entries
                        .into_iter()
                        .map(|(k, v, val)| DeltaEntry {
                            key: format!("k{k}"),
                            version: v,
                            value: val.map(|l| Bytes::from(vec![k; l])),
                        })
                        .collect(),
                },
            ),
        0..6,
    );
    let entries = proptest::collection::vec(
        (0u8..6, 0u64..4, 0u64..6, 0u64..10, 0u64..4).prop_map(|(n, g, h, m, c)| DigestEntry {
            node: NodePrefix::of(&NodeId([n; 32])),
            generation: g,
            heartbeat: h,
            max_version: m,
            gc_version: c,
        }),
        0..8,
    );
    prop_oneof![
        deltas
            .clone()
            .prop_map(|deltas| StateMessage::Deltas(Deltas { deltas })),
        (deltas, entries.clone(), advert(), any::<u32>()).prop_map(|(deltas, digest, flow, a)| {
            StateMessage::Reply(Reply {
                deltas,
                digest,
                flow,
                assigned_rate: a,
            })
        }),
        (entries.clone(), entries, 0u8..6, advert()).prop_map(|(page, extra, end, flow)| {
            StateMessage::Digest(Digest {
                range_end: NodePrefix::of(&NodeId([end; 32])),
                page,
                extra,
                flow,
            })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary (even inconsistent) messages, deaths, rounds and writes never panic, keep
    /// every collection within its bound and keep the held-version invariant.
    #[test]
    fn arbitrary_input_never_panics_and_keeps_the_bounds(
        steps in proptest::collection::vec(
            (hostile_message(), 0u8..8, 0u64..3_000, any::<bool>()),
            1..40,
        ),
    ) {
        let t0 = crate::test_util::epoch();
        let c = ReconcileConfig {
            max_nodes: 4,
            max_keys_per_owner: 3,
            max_state_bytes: 1_500,
            max_outstanding_exchanges: 2,
            tombstone_grace: std::time::Duration::from_secs(2),
            dead_node_grace: std::time::Duration::from_secs(3),
            ..config()
        };
        let mut core = Reconcile::new(
            NodeId([0; 32]), addr(0), 1, vec![addr(9)], c.clone(), StdRng::seed_from_u64(7), t0,
        ).unwrap();
        let mut now = t0;
        for (message, from, advance, flip) in steps {
            now += std::time::Duration::from_millis(advance);
            core.handle_message(now, addr(u16::from(from)), NodeId([from; 32]), message);
            if flip {
                core.handle_peer_dead(now, NodeId([from; 32]));
                let _ = core.set(now, &format!("own{from}"), Bytes::from_static(b"v"));
                let _ = core.delete(now, "own1");
            } else {
                core.handle_peer_live(now, NodeId([from % 3; 32]));
            }
            core.handle_timeout(now);
            drain(&mut core);
            let o = core.occupancy();
            prop_assert!(o.nodes <= c.max_nodes);
            prop_assert!(o.forgotten <= c.max_nodes);
            prop_assert!(o.largest_owner <= 2 * c.max_keys_per_owner);
            prop_assert!(o.outstanding <= c.max_outstanding_exchanges);
            prop_assert!(o.state_bytes <= c.max_state_bytes);
            let held: usize = core
                .nodes
                .iter()
                .filter(|(id, _)| **id != core.local)
                .map(|(_, st)| st.held_bytes())
                .sum();
            prop_assert_eq!(o.state_bytes, held, "the byte total is exact");
            for n in core.nodes().collect::<Vec<_>>() {
                let st = &core.nodes[&n];
                prop_assert!(st.entries.iter().all(|e| e.version <= st.max_version));
                prop_assert!(st.entries.windows(2).all(|w| w[0].key < w[1].key));
            }
        }
    }
}
