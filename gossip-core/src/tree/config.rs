//! [`TreeConfig`]: every tunable of the per-feed epidemic broadcast trees, with its source.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::wire::{max_content_fit, max_struct_len};
use crate::config::{self, ConfigError};
use crate::dissemination::{DATAGRAM_OVERHEAD, DEFAULT_MAX_ENVELOPE_LEN, MAX_UDP_PAYLOAD};
use crate::feed::{DEFAULT_MAX_CONTENT_LEN, DEFAULT_MAX_FEEDS, MAX_CONTENT_LIMIT, MAX_FEEDS_LIMIT};

/// Configuration of [`super::Tree`].
///
/// Every field is public; [`Default`] gives the values in each field's doc.
/// [`validate`](Self::validate) is the one place the bounds are checked;
/// [`super::Tree::new`] calls it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TreeConfig {
    /// Period of the note round (each spaced 0.9–1.1 × this at random, so that nodes do not
    /// fall into step): every round each peer is sent the notes of the
    /// feeds whose value changed since the last note to it (the handshake, repeated), plus
    /// retransmissions of notes that are still unsettled and at least this old. Also the
    /// wait before a stalled eager source is asked again. Default 1,000 ms (gossipmonger's
    /// `GOSSIP_INTERVAL`). Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub notes_interval: Duration,
    /// How long the eager source of a feed may make no progress while another peer announces
    /// a newer sequence before it is replaced by the next peer in rotation. Default 3,000 ms
    /// (ssb-ebt `timeout`). Bound: ≥ `notes_interval` (a stalled source is first asked
    /// again, then replaced). Checked at each note round, so a switch happens between
    /// `source_timeout` and `source_timeout + 1.1 × notes_interval` after the wait began.
    #[serde(with = "crate::config::duration_ms")]
    pub source_timeout: Duration,
    /// Largest encoded envelope, in bytes, as in
    /// [`DisseminationConfig::max_envelope_len`](crate::dissemination::DisseminationConfig::max_envelope_len):
    /// every [`Notes`](super::Notes) and [`FeedBatch`](super::FeedBatch) the core builds has
    /// an `encoded_len_bound` of at most `max_envelope_len − 49`. Default 1,364 (a 1,400-byte
    /// datagram, memberlist). Bound: `..= 65,507 − 36`, and large enough that a batch of
    /// one message with `max_content_len` bytes of content fits.
    ///
    /// Not part of the serialized form (a node derives it from its datagram size and cipher;
    /// see [`crate::config`]).
    #[serde(skip)]
    pub max_envelope_len: usize,
    /// Largest content of a feed message, in bytes: larger ones are refused by
    /// [`publish`](super::Tree::publish) and rejected when received. Default 1,024
    /// ([`DEFAULT_MAX_CONTENT_LEN`]). Bound: `1..=`[`max_content_fit`]`(max_envelope_len)`
    /// (1,162 with the default envelope) and ≤ [`MAX_CONTENT_LIMIT`]. Every node of a
    /// network must use the same value.
    pub max_content_len: usize,
    /// Feeds followed at once, the node's own included. Default 10,000
    /// ([`DEFAULT_MAX_FEEDS`]). Bound: `1..=`[`MAX_FEEDS_LIMIT`]. Memory is about
    /// 150 bytes per feed, plus about 120 bytes per feed and connected peer (ssb-ebt's
    /// per-peer replication state and the peer's clock): 1.2 MB per peer at 10,000 feeds.
    pub max_feeds: usize,
    /// Peers connected at once; [`handle_peer_up`](super::Tree::handle_peer_up) refuses more.
    /// Default 32 (a CYCLON partial view of 20 with room to spare; worst case with 10,000
    /// feeds about 40 MB of link state). Bound: ≥ 1.
    pub max_peers: usize,
    /// Backpressure: bytes of feed messages (by `encoded_len_bound`) sent to one peer per
    /// `notes_interval`. The budget is refilled at each note round; a push that finds it
    /// spent waits (the link stays in the backlog and is served at the next round), so a
    /// peer catching up on a long feed cannot monopolise the link or the node. A push may
    /// overdraw it by at most one fetch. Default 262,144 (256 KiB/s per peer, about 190
    /// full datagrams). Bound: ≥ `max_envelope_len`.
    pub peer_budget_bytes: usize,
    /// Messages asked for by one [`StoreRequest::Fetch`](super::StoreRequest::Fetch).
    /// Default 64. Bound: ≥ 1.
    pub fetch_limit: usize,
    /// Fetches outstanding at once (one per peer and feed at most); more wait in the backlog.
    /// Also bounds the outstanding fork checks. Default 64. Bound: ≥ 1.
    pub max_pending_fetches: usize,
    /// A fetch or fork check not answered within this is forgotten, and may be asked again.
    /// Default 5 s. Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub fetch_timeout: Duration,
    /// Recently appended messages kept to push without a store read (to eager peers that are
    /// a little behind, and to a peer that grafts just after a new message). Default 512
    /// messages (at most about 600 KiB with the default content limit). Bound: ≥ 1 (the
    /// type).
    pub recent_capacity: NonZeroUsize,
    /// Received messages ahead of the next expected sequence (datagrams reordered by the
    /// network) kept until the gap is filled; more are dropped and counted, to be pushed
    /// again on request. Default 256. Bound: any (0 disables the buffer).
    pub max_buffered: usize,
    /// Validated messages handed to the shell ([`TreeEvent::Received`](super::TreeEvent::Received),
    /// and own messages from [`publish`](super::Tree::publish)) and not yet reported
    /// appended; past it received messages are dropped (counted) until the shell catches up.
    /// Default 1,024. Bound: ≥ 1.
    pub max_unappended: usize,
    /// Outputs (transmits, events and store requests) queued before new ones are dropped and
    /// counted. The shell drains all three after every input. Notes that do not fit are not
    /// dropped but left for the next round. Default 8,192 (the first handshake of 10,000
    /// feeds is 313 datagrams per peer). Bound: ≥ 64.
    pub output_queue_capacity: usize,
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig {
            notes_interval: Duration::from_millis(1_000),
            source_timeout: Duration::from_millis(3_000),
            max_envelope_len: DEFAULT_MAX_ENVELOPE_LEN,
            max_content_len: DEFAULT_MAX_CONTENT_LEN,
            max_feeds: DEFAULT_MAX_FEEDS,
            max_peers: 32,
            peer_budget_bytes: 256 * 1024,
            fetch_limit: 64,
            max_pending_fetches: 64,
            fetch_timeout: Duration::from_secs(5),
            recent_capacity: NonZeroUsize::new(512).unwrap_or(NonZeroUsize::MIN),
            max_buffered: 256,
            max_unappended: 1_024,
            output_queue_capacity: 8_192,
        }
    }
}

impl TreeConfig {
    /// Checks every field against the bound in its doc.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the field and the bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::positive("notes_interval", self.notes_interval)?;
        config::duration_at_least(
            "source_timeout",
            self.source_timeout,
            "notes_interval",
            self.notes_interval,
        )?;
        config::at_most(
            "max_envelope_len",
            self.max_envelope_len,
            MAX_UDP_PAYLOAD - DATAGRAM_OVERHEAD,
        )?;
        let fit = match max_content_fit(self.max_envelope_len) {
            Some(fit) => fit,
            None => {
                // The smallest envelope that carries a batch of one message with 1 byte.
                let mut min = self.max_envelope_len;
                while max_content_fit(min).is_none_or(|f| f < 1) {
                    min += 1;
                }
                return Err(ConfigError::TooSmall {
                    field: "max_envelope_len",
                    value: self.max_envelope_len,
                    min,
                });
            }
        };
        config::in_range(
            "max_content_len",
            self.max_content_len,
            1,
            fit.min(MAX_CONTENT_LIMIT),
        )?;
        config::in_range("max_feeds", self.max_feeds, 1, MAX_FEEDS_LIMIT)?;
        config::at_least("max_peers", self.max_peers, 1)?;
        config::at_least(
            "peer_budget_bytes",
            self.peer_budget_bytes,
            self.max_envelope_len,
        )?;
        config::at_least("fetch_limit", self.fetch_limit, 1)?;
        config::at_least("max_pending_fetches", self.max_pending_fetches, 1)?;
        config::positive("fetch_timeout", self.fetch_timeout)?;
        config::at_least("max_unappended", self.max_unappended, 1)?;
        config::at_least("output_queue_capacity", self.output_queue_capacity, 64)?;
        Ok(())
    }

    /// Largest [`Notes`](super::Notes) / [`FeedBatch`](super::FeedBatch) bound the core
    /// produces: `max_envelope_len − 49` (1,315 by default).
    pub fn max_struct_len(&self) -> usize {
        max_struct_len(self.max_envelope_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = TreeConfig::default();
        c.validate().unwrap();
        assert_eq!(c.max_envelope_len, 1_364);
        assert_eq!(c.max_struct_len(), 1_315);
        assert_eq!(c.notes_interval, Duration::from_millis(1_000));
        assert_eq!(c.source_timeout, Duration::from_millis(3_000));
    }

    #[test]
    fn each_bound_is_checked() {
        let ok = TreeConfig::default();
        let cases: Vec<(TreeConfig, &str)> = vec![
            (
                TreeConfig {
                    notes_interval: Duration::ZERO,
                    ..ok.clone()
                },
                "notes_interval must be greater than zero",
            ),
            (
                TreeConfig {
                    source_timeout: Duration::from_millis(999),
                    ..ok.clone()
                },
                "source_timeout (999ms) must be at least notes_interval (1s)",
            ),
            (
                TreeConfig {
                    max_envelope_len: 65_472,
                    ..ok.clone()
                },
                "max_envelope_len is 65472 but must be at most 65471",
            ),
            (
                TreeConfig {
                    max_envelope_len: 100,
                    ..ok.clone()
                },
                "max_envelope_len is 100 but must be at least 201",
            ),
            (
                TreeConfig {
                    max_envelope_len: 1_000,
                    ..ok.clone()
                },
                "max_content_len is 1024 but must be in 1..=798",
            ),
            (
                TreeConfig {
                    max_content_len: 0,
                    ..ok.clone()
                },
                "max_content_len is 0 but must be in 1..=1162",
            ),
            (
                TreeConfig {
                    max_feeds: 0,
                    ..ok.clone()
                },
                "max_feeds is 0 but must be in 1..=1000000",
            ),
            (
                TreeConfig {
                    max_peers: 0,
                    ..ok.clone()
                },
                "max_peers is 0 but must be at least 1",
            ),
            (
                TreeConfig {
                    peer_budget_bytes: 1_000,
                    ..ok.clone()
                },
                "peer_budget_bytes is 1000 but must be at least 1364",
            ),
            (
                TreeConfig {
                    fetch_limit: 0,
                    ..ok.clone()
                },
                "fetch_limit is 0 but must be at least 1",
            ),
            (
                TreeConfig {
                    max_pending_fetches: 0,
                    ..ok.clone()
                },
                "max_pending_fetches is 0 but must be at least 1",
            ),
            (
                TreeConfig {
                    fetch_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "fetch_timeout must be greater than zero",
            ),
            (
                TreeConfig {
                    max_unappended: 0,
                    ..ok.clone()
                },
                "max_unappended is 0 but must be at least 1",
            ),
            (
                TreeConfig {
                    output_queue_capacity: 63,
                    ..ok.clone()
                },
                "output_queue_capacity is 63 but must be at least 64",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
        TreeConfig {
            max_envelope_len: 201,
            max_content_len: 1,
            peer_budget_bytes: 201,
            max_buffered: 0,
            ..ok
        }
        .validate()
        .unwrap();
    }
}
