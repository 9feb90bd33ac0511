//! [`ReconcileConfig`]: every tunable of Scuttlebutt reconciliation, with its source.

use std::time::Duration;

use crate::config::{self, ConfigError};
use crate::dissemination::{DATAGRAM_OVERHEAD, DEFAULT_MAX_ENVELOPE_LEN, MAX_UDP_PAYLOAD};
use crate::flow::FlowConfig;

use super::wire::{
    DeltaEntry, Digest, DigestEntry, ENVELOPE_OVERHEAD, NodeDelta, Reply, varint_len,
};

/// Smallest accepted [`ReconcileConfig::max_envelope_len`]: room for a digest with three
/// entries of the largest size (the initiator, the peer and one page entry): 205 bytes.
pub const MIN_ENVELOPE_LEN: usize =
    ENVELOPE_OVERHEAD + Digest::FIXED_LEN + 3 * DigestEntry::MAX_LEN;

/// In which order deltas are fitted into a datagram (the paper's section 3.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaOrder {
    /// Scuttle-depth: owners the peer does not know at all first, then the owner with the most
    /// entries the peer lacks, each owner's entries in ascending version order; ties in random
    /// order. The paper found it fairer to the most out-of-date owners.
    #[default]
    Depth,
    /// Scuttle-breadth: owners in random order, one entry of each in turn (all first entries,
    /// then all second entries, ...), each owner's entries still in ascending version order
    /// without a gap.
    Breadth,
}

/// Configuration of [`super::Reconcile`].
///
/// Every field is public; [`Default`] gives the values in each field's doc.
/// [`validate`](Self::validate) is the one place the bounds are checked;
/// [`super::Reconcile::new`] calls it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Period of the gossip round: heartbeat increment, one exchange with a random live peer,
    /// maybe one with a dead peer or a seed, tombstone and dead-node collection. Default
    /// 1,000 ms (gossipmonger `GOSSIP_INTERVAL`). Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub gossip_interval: Duration,
    /// Below this many live peers, each round also gossips with a random seed. Default 1
    /// (gossipmonger `MINIMUM_LIVE_PEERS`).
    pub minimum_live_peers: usize,
    /// Largest encoded envelope, in bytes, as for dissemination. Default 1,364 = a 1,400-byte
    /// datagram minus 36 bytes of label, nonce and tag. Bound: `MIN_ENVELOPE_LEN ..= 65,471`,
    /// and large enough for one entry of the largest key and value (see
    /// [`max_value_len`](Self::max_value_len)).
    ///
    /// Not part of the serialized form (a node derives it from its datagram size and cipher;
    /// see [`crate::config`]).
    #[serde(skip)]
    pub max_envelope_len: usize,
    /// Nodes whose state is kept, the local node included. A node learned beyond it is refused
    /// and counted (`nodes_refused`). Default 10,000 (a digest of them is paged over about 500
    /// rounds at the default datagram size; the state of each is a few hundred bytes plus its
    /// keys). Bound: ≥ 1.
    pub max_nodes: usize,
    /// Bytes of other nodes' state held, counted as key plus value plus
    /// [`ENTRY_OVERHEAD`](super::ENTRY_OVERHEAD) per entry (tombstones and the old entries
    /// kept during a rebuild included). An entry that would take the total above it is
    /// refused and counted (`bytes_refused`), stopping its delta there as for
    /// `max_keys_per_owner` (the owner's version held stays below it, so the entry is asked
    /// for again once room is freed). Without it the bound is `max_nodes ×
    /// max_keys_per_owner` entries, about 12 GiB at the defaults, which any holder of the
    /// cluster key could fill. Default 64 MiB (about 50,000 entries of the largest size, or
    /// 10,000 nodes with 6 KiB each). Bound: ≥ one entry of the longest key and the largest
    /// value. The local node's own keys are not counted (`max_keys_per_owner` bounds them).
    pub max_state_bytes: usize,
    /// Keys per owner, tombstones included (they count until collected). `set` of a new key
    /// beyond it fails with `TooManyKeys`; received keys beyond it are refused and counted.
    /// Default 1,024. Bound: ≥ 1.
    pub max_keys_per_owner: usize,
    /// Longest key, in bytes of UTF-8. Default 128. Bound: ≥ 1.
    pub max_key_len: usize,
    /// Largest value, in bytes. Default 1,024. Bound: a delta with one entry of the longest key
    /// and the largest value always fits a datagram beside a reply's fixed fields
    /// ([`largest_value_len`](Self::largest_value_len), 1,050 bytes with the defaults), so
    /// reconciliation always makes progress.
    pub max_value_len: usize,
    /// How long a tombstone is kept after this node learned it before it is garbage-collected.
    /// Default 1 h. Bound: > 0. A peer whose state of the owner is older than a collected
    /// tombstone gets a reset instead of deltas, so a short grace costs resets, never
    /// resurrected keys.
    #[serde(with = "crate::config::duration_ms")]
    pub tombstone_grace: Duration,
    /// How long the state of a node reported dead is kept after its heartbeat last advanced;
    /// then it is forgotten, and remembered for as long again so copies still gossiped by
    /// others do not bring it back (a newer heartbeat or generation does). Default 1 h.
    /// Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub dead_node_grace: Duration,
    /// Order of deltas in a datagram. Default [`DeltaOrder::Depth`] (scuttle-depth).
    pub delta_order: DeltaOrder,
    /// Share of a digest, in percent of the datagram, that may list recently changed nodes
    /// (rumours) before the page. Default 50. Bound: `0..=90`; 0 turns rumours off, leaving
    /// only the rotating pages.
    pub rumor_share: usize,
    /// A recently changed node stops being advertised as a rumour after this many exchanges in
    /// which the peer already had it (or did not answer): Demers et al.'s rumour mongering
    /// with feedback and counter. Default 3. Bound: ≥ 1.
    pub rumor_counter: u32,
    /// Most of a reply's datagram, in percent, that its digest part (what the responder wants
    /// in step 3) may take when deltas also want the room. Default 30. Bound: `1..=90`.
    pub reply_digest_share: usize,
    /// How long an initiator waits for the reply to its digest before it gives up on the
    /// exchange (for rate assignment and rumour feedback). Default 1,000 ms. Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub exchange_timeout: Duration,
    /// Exchanges awaiting a reply; the oldest is given up beyond it. Default 16. Bound: ≥ 1.
    pub max_outstanding_exchanges: usize,
    /// Outputs (transmits plus events) the core queues before it drops new ones, counted in
    /// `transmits_dropped` / `events_dropped`. The caller drains both queues after every input.
    /// Default 4,096. Bound: ≥ 64.
    pub output_queue_capacity: usize,
    /// Flow control of local updates.
    pub flow: FlowConfig,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            gossip_interval: Duration::from_millis(1_000),
            minimum_live_peers: 1,
            max_envelope_len: DEFAULT_MAX_ENVELOPE_LEN,
            max_nodes: 10_000,
            max_state_bytes: 64 << 20,
            max_keys_per_owner: 1_024,
            max_key_len: 128,
            max_value_len: 1_024,
            tombstone_grace: Duration::from_secs(3_600),
            dead_node_grace: Duration::from_secs(3_600),
            delta_order: DeltaOrder::Depth,
            rumor_share: 50,
            rumor_counter: 3,
            reply_digest_share: 30,
            exchange_timeout: Duration::from_millis(1_000),
            max_outstanding_exchanges: 16,
            output_queue_capacity: 4_096,
            flow: FlowConfig::default(),
        }
    }
}

impl ReconcileConfig {
    /// Checks every field against the bound in its doc.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the field and the bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::positive("gossip_interval", self.gossip_interval)?;
        config::in_range(
            "max_envelope_len",
            self.max_envelope_len,
            MIN_ENVELOPE_LEN,
            MAX_UDP_PAYLOAD - DATAGRAM_OVERHEAD,
        )?;
        config::at_least("max_nodes", self.max_nodes, 1)?;
        config::at_least(
            "max_state_bytes",
            self.max_state_bytes,
            self.max_key_len + self.max_value_len + super::ENTRY_OVERHEAD,
        )?;
        config::at_least("max_keys_per_owner", self.max_keys_per_owner, 1)?;
        config::in_range("max_key_len", self.max_key_len, 1, self.max_message_len())?;
        config::at_most(
            "max_value_len",
            self.max_value_len,
            self.largest_value_len(),
        )?;
        config::positive("tombstone_grace", self.tombstone_grace)?;
        config::positive("dead_node_grace", self.dead_node_grace)?;
        config::at_most("rumor_share", self.rumor_share, 90)?;
        config::at_least("rumor_counter", self.rumor_counter as usize, 1)?;
        config::in_range("reply_digest_share", self.reply_digest_share, 1, 90)?;
        config::positive("exchange_timeout", self.exchange_timeout)?;
        config::at_least(
            "max_outstanding_exchanges",
            self.max_outstanding_exchanges,
            1,
        )?;
        config::at_least("output_queue_capacity", self.output_queue_capacity, 64)?;
        self.flow.validate()
    }

    /// Largest encoded state message (`Digest`, `Reply` or `Deltas`), in bytes:
    /// `max_envelope_len − 49` (1,315 by default).
    pub fn max_message_len(&self) -> usize {
        self.max_envelope_len.saturating_sub(ENVELOPE_OVERHEAD)
    }

    /// Encoded size of the largest delta with a single entry: the largest header plus an entry
    /// of the longest key and the largest value at the largest version.
    pub fn max_single_delta_len(&self) -> usize {
        NodeDelta::MAX_HEADER_LEN
            + DeltaEntry::len_of(self.max_key_len, u64::MAX, Some(self.max_value_len))
    }

    /// The largest `max_value_len` this configuration allows: a reply's fixed fields, the
    /// largest delta header and one entry of the longest key and this value fit
    /// [`max_message_len`](Self::max_message_len). 1,050 bytes with the defaults.
    pub fn largest_value_len(&self) -> usize {
        let fixed = Reply::FIXED_LEN
            + NodeDelta::MAX_HEADER_LEN
            + DeltaEntry::len_of(self.max_key_len, u64::MAX, None);
        let room = self.max_message_len().saturating_sub(fixed);
        // The value costs its length plus its length's varint.
        for prefix in [1, 3, 5, 9] {
            if let Some(len) = room.checked_sub(prefix)
                && varint_len(len as u64) == prefix
            {
                return len;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = ReconcileConfig::default();
        c.validate().unwrap();
        assert_eq!(c.max_message_len(), 1_315);
        assert_eq!(c.largest_value_len(), 1_050);
        assert_eq!(MIN_ENVELOPE_LEN, 205);
        assert!(Reply::FIXED_LEN + c.max_single_delta_len() <= c.max_message_len());
        let at_limit = ReconcileConfig {
            max_value_len: 1_050,
            ..c.clone()
        };
        at_limit.validate().unwrap();
        assert!(Reply::FIXED_LEN + at_limit.max_single_delta_len() == at_limit.max_message_len());
    }

    #[test]
    fn each_bound_is_checked() {
        let ok = ReconcileConfig::default();
        let cases: Vec<(ReconcileConfig, &str)> = vec![
            (
                ReconcileConfig {
                    gossip_interval: Duration::ZERO,
                    ..ok.clone()
                },
                "gossip_interval must be greater than zero",
            ),
            (
                ReconcileConfig {
                    max_envelope_len: 188,
                    ..ok.clone()
                },
                "max_envelope_len is 188 but must be in 205..=65471",
            ),
            (
                ReconcileConfig {
                    max_envelope_len: 65_472,
                    ..ok.clone()
                },
                "max_envelope_len is 65472 but must be in 205..=65471",
            ),
            (
                ReconcileConfig {
                    max_nodes: 0,
                    ..ok.clone()
                },
                "max_nodes is 0 but must be at least 1",
            ),
            (
                ReconcileConfig {
                    max_keys_per_owner: 0,
                    ..ok.clone()
                },
                "max_keys_per_owner is 0 but must be at least 1",
            ),
            (
                ReconcileConfig {
                    max_key_len: 0,
                    ..ok.clone()
                },
                "max_key_len is 0 but must be in 1..=1315",
            ),
            (
                ReconcileConfig {
                    max_value_len: 1_051,
                    ..ok.clone()
                },
                "max_value_len is 1051 but must be at most 1050",
            ),
            (
                ReconcileConfig {
                    max_envelope_len: 400,
                    ..ok.clone()
                },
                "max_value_len is 1024 but must be at most 88",
            ),
            (
                ReconcileConfig {
                    tombstone_grace: Duration::ZERO,
                    ..ok.clone()
                },
                "tombstone_grace must be greater than zero",
            ),
            (
                ReconcileConfig {
                    dead_node_grace: Duration::ZERO,
                    ..ok.clone()
                },
                "dead_node_grace must be greater than zero",
            ),
            (
                ReconcileConfig {
                    rumor_share: 91,
                    ..ok.clone()
                },
                "rumor_share is 91 but must be at most 90",
            ),
            (
                ReconcileConfig {
                    rumor_counter: 0,
                    ..ok.clone()
                },
                "rumor_counter is 0 but must be at least 1",
            ),
            (
                ReconcileConfig {
                    reply_digest_share: 0,
                    ..ok.clone()
                },
                "reply_digest_share is 0 but must be in 1..=90",
            ),
            (
                ReconcileConfig {
                    exchange_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "exchange_timeout must be greater than zero",
            ),
            (
                ReconcileConfig {
                    max_outstanding_exchanges: 0,
                    ..ok.clone()
                },
                "max_outstanding_exchanges is 0 but must be at least 1",
            ),
            (
                ReconcileConfig {
                    output_queue_capacity: 63,
                    ..ok.clone()
                },
                "output_queue_capacity is 63 but must be at least 64",
            ),
            (
                ReconcileConfig {
                    flow: FlowConfig {
                        burst: 0,
                        ..FlowConfig::default()
                    },
                    ..ok.clone()
                },
                "burst is 0 but must be at least 1",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
    }
}
