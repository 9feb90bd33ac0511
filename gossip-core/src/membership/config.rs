//! [`CyclonConfig`]: every tunable of CYCLON membership, with its source.

use std::time::Duration;

use crate::config::{self, ConfigError};
use crate::dissemination::{DATAGRAM_OVERHEAD, DEFAULT_MAX_ENVELOPE_LEN, MAX_UDP_PAYLOAD};

use super::wire_bound;

/// Configuration of [`super::Cyclon`].
///
/// Every field is public; [`Default`] gives the values in each field's doc: view size and
/// shuffle length from the CYCLON paper (Voulgaris, Gavidia, van Steen, 2005), the period from
/// gossipmonger, the rest ours and justified in place. [`validate`](Self::validate) is the one
/// place the bounds are checked; [`super::Cyclon::new`] calls it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CyclonConfig {
    /// `c`: the most entries the partial view (the paper's "cache") holds. Default 20, the
    /// paper's usual setting (`DESIGN.md` section 6). Bound: ≥ `shuffle_length`.
    ///
    /// With every view full the mean in-degree is exactly `c`; the 1,000-node scenario
    /// measures the spread around it.
    pub view_size: usize,
    /// `l`: entries exchanged per shuffle, the initiator's fresh self-entry included. The
    /// initiator sends at most `l` (its own entry and `l − 1` others), the partner answers at
    /// most `l`; a received shuffle or reply with more is rejected whole. Default 8, the
    /// paper's usual setting. Bound: `1..=view_size`, and a shuffle of `l` entries must fit
    /// `max_envelope_len` ([`max_shuffle_length`](Self::max_shuffle_length), 23 by default).
    pub shuffle_length: usize,
    /// The period `Δt` of the paper's cycle: every `shuffle_interval` the view ages by one and
    /// one shuffle starts. Default 1,000 ms (gossipmonger `GOSSIP_INTERVAL`, the framework's
    /// gossip interval). Bound: > 0. Each node starts at a random phase in the first interval,
    /// so nodes do not shuffle in lock-step.
    #[serde(with = "crate::config::duration_ms")]
    pub shuffle_interval: Duration,
    /// How long the initiator waits for the partner's reply before the shuffle counts as
    /// unanswered (the partner stays out of the view, and a late reply is ignored).
    ///
    /// Default 500 ms: a reply costs the partner one decryption and a merge of at most `l`
    /// entries, the same work as go-gossip's `PushAck` for which it allows 300 ms
    /// (`AckTimeout`), plus margin for a wide-area round trip (typically under 300 ms);
    /// and at half the period an unanswered shuffle is settled before the next one starts,
    /// so with the defaults at most one shuffle is outstanding. Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub shuffle_timeout: Duration,
    /// Shuffles this node started and still waits on. A shuffle that would exceed it is not
    /// started (counted in `shuffles_skipped`; the view still ages).
    ///
    /// Default 4. With `shuffle_timeout < shuffle_interval` at most two are outstanding (the
    /// period's shuffle, or its retry, and a join shuffle while joining); the margin lets
    /// `shuffle_timeout` be raised to a period or two for slow links. Bound: ≥ 1.
    pub max_pending: usize,
    /// Seed addresses remembered by [`add_seed`](super::Cyclon::add_seed). A node shuffles
    /// with a random seed whenever its view is empty: at bootstrap, and again if it ever
    /// loses every neighbour. Default 64. 0 refuses every seed (a seed with a known node id
    /// still enters the view).
    pub max_seeds: usize,
    /// Nodes declared dead by [`handle_peer_dead`](super::Cyclon::handle_peer_dead) are
    /// remembered this long, and entries for them arriving in shuffles are discarded, so a
    /// dead node is not taken back from a neighbour whose failure detector has not noticed.
    /// A shuffle or reply sent by the node itself clears it at once (it is alive).
    ///
    /// Default 60 s: when half of 1,000 nodes crash, the last dead entry leaves the last live
    /// view 22 to 32 periods later (22 runs, with or without a failure detector), so 60
    /// periods after a node is declared dead no copy of its entry is left to refuse.
    /// Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub dead_retention: Duration,
    /// The most nodes remembered as dead; at the bound the earliest declared is forgotten
    /// (counted in `dead_evictions`). Default 1,024 (about 100 KiB with the ordering index).
    /// 0 remembers none: a dead node only leaves the view.
    pub max_dead: usize,
    /// Largest encoded [`Envelope`](crate::message::Envelope), in bytes, for the bound of
    /// [`Shuffle::encoded_len_bound`](super::Shuffle::encoded_len_bound) plus
    /// [`wire_bound::ENVELOPE_OVERHEAD`]. Default 1,364, the same as
    /// [`DisseminationConfig`](crate::dissemination::DisseminationConfig) (a 1,400-byte
    /// datagram minus 36). Bound: at most 65,507 − 36, and a shuffle of `shuffle_length`
    /// entries must fit.
    ///
    /// Not part of the serialized form (a node derives it from its datagram size and cipher;
    /// see [`crate::config`]).
    #[serde(skip)]
    pub max_envelope_len: usize,
    /// Outputs (transmits plus events) queued before new ones are dropped and counted
    /// (`transmits_dropped`, `events_dropped`). A caller that drains after every input never
    /// reaches it. Default 256. Bound: ≥
    /// [`max_outputs_per_input`](Self::max_outputs_per_input).
    pub output_queue_capacity: usize,
}

impl Default for CyclonConfig {
    fn default() -> Self {
        CyclonConfig {
            view_size: 20,
            shuffle_length: 8,
            shuffle_interval: Duration::from_millis(1_000),
            shuffle_timeout: Duration::from_millis(500),
            max_pending: 4,
            max_seeds: 64,
            dead_retention: Duration::from_secs(60),
            max_dead: 1_024,
            max_envelope_len: DEFAULT_MAX_ENVELOPE_LEN,
            output_queue_capacity: 256,
        }
    }
}

impl CyclonConfig {
    /// Checks every field against the bound in its doc.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the field and the bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::at_least("shuffle_length", self.shuffle_length, 1)?;
        config::at_least("view_size", self.view_size, self.shuffle_length)?;
        config::at_most(
            "max_envelope_len",
            self.max_envelope_len,
            MAX_UDP_PAYLOAD - DATAGRAM_OVERHEAD,
        )?;
        config::at_most(
            "shuffle_length",
            self.shuffle_length,
            self.max_shuffle_length(),
        )?;
        config::positive("shuffle_interval", self.shuffle_interval)?;
        config::positive("shuffle_timeout", self.shuffle_timeout)?;
        config::at_least("max_pending", self.max_pending, 1)?;
        config::positive("dead_retention", self.dead_retention)?;
        config::at_least(
            "output_queue_capacity",
            self.output_queue_capacity,
            self.max_outputs_per_input(),
        )?;
        Ok(())
    }

    /// Most entries one shuffle or reply may carry within `max_envelope_len`
    /// (see [`wire_bound::entries_per_message`]): 23 by default.
    pub fn max_shuffle_length(&self) -> usize {
        wire_bound::entries_per_message(self.max_envelope_len)
    }

    /// Most outputs one input can queue: `2 · shuffle_length + 1`, for a received shuffle
    /// (the reply, and for each of up to `l` merged entries one `NeighborUp` and one
    /// `NeighborDown` for the entry it replaced). A reply queues at most `2 · l`, a timeout
    /// three (a shuffle, its partner's `NeighborDown` and a join shuffle), the other inputs
    /// one.
    pub fn max_outputs_per_input(&self) -> usize {
        self.shuffle_length.saturating_mul(2).saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = CyclonConfig::default();
        c.validate().unwrap();
        assert_eq!((c.view_size, c.shuffle_length), (20, 8));
        assert_eq!(c.shuffle_interval, Duration::from_secs(1));
        assert_eq!(c.shuffle_timeout, Duration::from_millis(500));
        assert_eq!(c.max_envelope_len, 1_364);
        assert_eq!(c.max_shuffle_length(), 23);
        assert_eq!(c.max_outputs_per_input(), 17);
    }

    #[test]
    fn each_bound_is_checked() {
        let ok = CyclonConfig::default();
        let cases: Vec<(CyclonConfig, &str)> = vec![
            (
                CyclonConfig {
                    shuffle_length: 0,
                    ..ok.clone()
                },
                "shuffle_length is 0 but must be at least 1",
            ),
            (
                CyclonConfig {
                    view_size: 7,
                    ..ok.clone()
                },
                "view_size is 7 but must be at least 8",
            ),
            (
                CyclonConfig {
                    max_envelope_len: 65_472,
                    ..ok.clone()
                },
                "max_envelope_len is 65472 but must be at most 65471",
            ),
            (
                CyclonConfig {
                    view_size: 30,
                    shuffle_length: 24,
                    output_queue_capacity: 1_000,
                    ..ok.clone()
                },
                "shuffle_length is 24 but must be at most 23",
            ),
            (
                CyclonConfig {
                    max_envelope_len: 400,
                    ..ok.clone()
                },
                "shuffle_length is 8 but must be at most 6",
            ),
            (
                CyclonConfig {
                    shuffle_interval: Duration::ZERO,
                    ..ok.clone()
                },
                "shuffle_interval must be greater than zero",
            ),
            (
                CyclonConfig {
                    shuffle_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "shuffle_timeout must be greater than zero",
            ),
            (
                CyclonConfig {
                    max_pending: 0,
                    ..ok.clone()
                },
                "max_pending is 0 but must be at least 1",
            ),
            (
                CyclonConfig {
                    dead_retention: Duration::ZERO,
                    ..ok.clone()
                },
                "dead_retention must be greater than zero",
            ),
            (
                CyclonConfig {
                    output_queue_capacity: 16,
                    ..ok.clone()
                },
                "output_queue_capacity is 16 but must be at least 17",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
        // The extremes of the bounds are accepted.
        CyclonConfig {
            view_size: 8,
            max_seeds: 0,
            max_dead: 0,
            output_queue_capacity: 17,
            ..ok.clone()
        }
        .validate()
        .unwrap();
        CyclonConfig {
            view_size: 1,
            shuffle_length: 1,
            output_queue_capacity: 3,
            ..ok.clone()
        }
        .validate()
        .unwrap();
        CyclonConfig {
            view_size: 23,
            shuffle_length: 23,
            output_queue_capacity: 47,
            ..ok
        }
        .validate()
        .unwrap();
    }
}
