//! [`DisseminationConfig`]: every tunable of push / ack / pull-sync, with its source.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::config::{self, ConfigError};
use crate::message::wire_bound;

/// Largest UDP payload over IPv4, in bytes (65,535 − 8 UDP header − 20 IP header).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Bytes a datagram spends outside the encoded envelope: the 8-byte label, the 12-byte nonce
/// and the 16-byte AES-GCM tag (`DESIGN.md` section 5).
pub const DATAGRAM_OVERHEAD: usize = 8 + 12 + 16;

/// Default largest encoded envelope, in bytes: a 1,400-byte datagram (memberlist's safe
/// Ethernet payload) minus [`DATAGRAM_OVERHEAD`].
pub const DEFAULT_MAX_ENVELOPE_LEN: usize = 1_400 - DATAGRAM_OVERHEAD;

/// Configuration of [`super::Dissemination`].
///
/// Every field is public; [`Default`] gives the values in each field's doc, taken from
/// go-gossip (protocol-diver/go-gossip, 2022), gossipmonger and iroh-gossip as noted.
/// [`validate`](Self::validate) is the one place the bounds are checked;
/// [`super::Dissemination::new`] calls it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisseminationConfig {
    /// Peers each new broadcast is pushed to, by its origin and again by every node that
    /// receives it for the first time. Default 3 (go-gossip `GossipNumber`). Bound: ≥ 1.
    pub fanout: usize,
    /// How long a pusher waits for [`acks_needed`](Self::acks_needed) `PushAck`s before it
    /// falls back to a `PullSync`. Default 300 ms (go-gossip `AckTimeout`). Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub ack_timeout: Duration,
    /// Distinct peers that must acknowledge a push within `ack_timeout`. Default 2, the
    /// majority of the default fanout (go-gossip). Bound: `1..=fanout`.
    pub acks_needed: usize,
    /// Peers a `PullSync` is sent to when a push misses its ack majority. Default 6 = 2 ×
    /// fanout (go-gossip 2022 code). Bound: ≥ 1.
    pub pull_sync_peers: usize,
    /// Broadcasts whose payload is kept to answer `PullRequest`s, least recently received
    /// evicted first. Default 512 entries (go-gossip `MessageCacheSize`). Bound: ≥ 1 (the type).
    /// Also bounds the outstanding ack timers.
    pub cache_capacity: NonZeroUsize,
    /// Age after which a cached payload is no longer served or announced and is dropped.
    /// Default 30 s. Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub cache_ttl: Duration,
    /// Message ids remembered for duplicate suppression, first received forgotten first.
    /// Default 16,384 ids (roughly 80 bytes each with the LRU links, about 1.3 MiB when full).
    /// Bound: ≥ `cache_capacity`, so that a cached payload is always also a seen id.
    pub seen_capacity: usize,
    /// How long a message id is remembered after it was first received. Default 90 s
    /// (iroh-gossip's `message_id_retention` idea: remember ids longer than payloads, so an
    /// evicted payload that still circulates is never delivered twice). Bound: ≥ `cache_ttl`.
    #[serde(with = "crate::config::duration_ms")]
    pub seen_ttl: Duration,
    /// Period of the anti-entropy round (see [`super::Dissemination`], rule 7). Default
    /// 1,000 ms (gossipmonger `GOSSIP_INTERVAL`). Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub anti_entropy_interval: Duration,
    /// Peers each anti-entropy round announces to. Default 2. 0 disables anti-entropy (pure
    /// go-gossip behaviour).
    ///
    /// A node that missed a broadcast is announced to about `anti_entropy_peers` times per
    /// round (every holder picks that many of the other nodes at random), and each
    /// announcement recovers the broadcast with probability (1 − loss)³ (`PullSync`,
    /// `PullRequest`, `PullResponse`). It therefore stays behind with probability about
    /// exp(−(1 − loss)³ · anti_entropy_peers · window / interval): with the defaults and 20 %
    /// loss exp(−20.5) ≈ 10⁻⁹, against exp(−5.1) ≈ 0.6 % with one peer and a 10 s window,
    /// which the 50-node simulation shows as a few undelivered pairs per run.
    pub anti_entropy_peers: usize,
    /// Age of the cached ids an anti-entropy round announces: ids received within this window,
    /// most recent first. Default 20 s (kept below `cache_ttl` so an announced id can still be
    /// served when the request arrives). Ids older than `cache_ttl` are never announced.
    #[serde(with = "crate::config::duration_ms")]
    pub anti_entropy_window: Duration,
    /// Message ids requested by `PullRequest` and not yet received, remembered so the same id
    /// is not requested from every peer that announces it. Default 4,096. Bound: ≥ 1. An id
    /// that does not fit is not requested (counted in `pending_pull_full_drops`); a later
    /// announcement asks for it again.
    pub pending_pull_capacity: usize,
    /// After this long without a `PullResponse`, an id requested from one peer may be
    /// requested from another. Default 300 ms (= `ack_timeout`). Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub pull_retry: Duration,
    /// Largest encoded [`Envelope`](crate::message::Envelope), in bytes, as bounded by
    /// [`Envelope::encoded_len_bound`](crate::message::Envelope::encoded_len_bound). Default
    /// 1,364 = a 1,400-byte datagram minus 8 label, 12 nonce, 16 tag bytes. Bound:
    /// `GOSSIP_OVERHEAD + 1 ..= 65,507 − 36`. It fixes the largest payload
    /// ([`max_payload_len`](Self::max_payload_len)) and the ids per `PullSync`/`PullRequest`
    /// ([`ids_per_message`](Self::ids_per_message)).
    ///
    /// Not part of the serialized form (a node derives it from its datagram size and cipher;
    /// see [`crate::config`]).
    #[serde(skip)]
    pub max_envelope_len: usize,
    /// Outputs (transmits plus events) the core queues before it drops new ones, counted in
    /// `transmits_dropped` / `events_dropped`. The caller drains both queues after every input,
    /// so this is only reached when it does not. Default 4,096. Bound: ≥
    /// [`max_outputs_per_input`](Self::max_outputs_per_input), so that a caller that drains
    /// as documented never loses an output.
    pub output_queue_capacity: usize,
}

impl Default for DisseminationConfig {
    fn default() -> Self {
        DisseminationConfig {
            fanout: 3,
            ack_timeout: Duration::from_millis(300),
            acks_needed: 2,
            pull_sync_peers: 6,
            cache_capacity: NonZeroUsize::new(512).unwrap_or(NonZeroUsize::MIN),
            cache_ttl: Duration::from_secs(30),
            seen_capacity: 16_384,
            seen_ttl: Duration::from_secs(90),
            anti_entropy_interval: Duration::from_millis(1_000),
            anti_entropy_peers: 2,
            anti_entropy_window: Duration::from_secs(20),
            pending_pull_capacity: 4_096,
            pull_retry: Duration::from_millis(300),
            max_envelope_len: DEFAULT_MAX_ENVELOPE_LEN,
            output_queue_capacity: 4_096,
        }
    }
}

impl DisseminationConfig {
    /// Checks every field against the bound in its doc.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the field and the bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::at_least("fanout", self.fanout, 1)?;
        config::positive("ack_timeout", self.ack_timeout)?;
        config::in_range("acks_needed", self.acks_needed, 1, self.fanout)?;
        config::at_least("pull_sync_peers", self.pull_sync_peers, 1)?;
        config::positive("cache_ttl", self.cache_ttl)?;
        config::at_least(
            "seen_capacity",
            self.seen_capacity,
            self.cache_capacity.get(),
        )?;
        config::duration_at_least("seen_ttl", self.seen_ttl, "cache_ttl", self.cache_ttl)?;
        config::positive("anti_entropy_interval", self.anti_entropy_interval)?;
        config::at_least("pending_pull_capacity", self.pending_pull_capacity, 1)?;
        config::positive("pull_retry", self.pull_retry)?;
        config::in_range(
            "max_envelope_len",
            self.max_envelope_len,
            wire_bound::GOSSIP_OVERHEAD + 1,
            MAX_UDP_PAYLOAD - DATAGRAM_OVERHEAD,
        )?;
        config::at_least(
            "output_queue_capacity",
            self.output_queue_capacity,
            self.max_outputs_per_input(),
        )?;
        Ok(())
    }

    /// Largest payload [`broadcast`](super::Dissemination::broadcast) accepts, in bytes:
    /// `max_envelope_len − GOSSIP_OVERHEAD` (1,261 by default). 0 if `max_envelope_len` is
    /// below the overhead (which [`validate`](Self::validate) rejects).
    pub fn max_payload_len(&self) -> usize {
        self.max_envelope_len
            .saturating_sub(wire_bound::GOSSIP_OVERHEAD)
    }

    /// Most message ids one `PullSync` or `PullRequest` carries within `max_envelope_len`
    /// (83 by default); also how many ids of one received message are looked at.
    pub fn ids_per_message(&self) -> usize {
        wire_bound::ids_per_message(self.max_envelope_len)
    }

    /// Most outputs (transmits plus events) one input call can queue: a `handle_timeout` in
    /// which every outstanding ack timer (at most `cache_capacity`) fires, plus one
    /// anti-entropy round announcing the whole cache. Every other input queues at most
    /// `max(3, ids_per_message)`.
    pub fn max_outputs_per_input(&self) -> usize {
        let per_message = self.ids_per_message().max(1);
        let cache = self.cache_capacity.get();
        let timeout = cache + cache.div_ceil(per_message);
        timeout.max(per_message).max(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = DisseminationConfig::default();
        c.validate().unwrap();
        assert_eq!(c.max_envelope_len, 1_364);
        assert_eq!(c.max_payload_len(), 1_364 - wire_bound::GOSSIP_OVERHEAD);
        assert_eq!(c.max_payload_len(), 1_261);
        assert_eq!(c.ids_per_message(), 82);
        assert_eq!(c.cache_capacity.get(), 512);
        assert_eq!(c.max_outputs_per_input(), 512 + 7);
    }

    #[test]
    fn each_bound_is_checked() {
        let ok = DisseminationConfig::default();
        let cases: Vec<(DisseminationConfig, &str)> = vec![
            (
                DisseminationConfig {
                    fanout: 0,
                    acks_needed: 0,
                    ..ok.clone()
                },
                "fanout is 0 but must be at least 1",
            ),
            (
                DisseminationConfig {
                    acks_needed: 0,
                    ..ok.clone()
                },
                "acks_needed is 0 but must be in 1..=3",
            ),
            (
                DisseminationConfig {
                    acks_needed: 4,
                    ..ok.clone()
                },
                "acks_needed is 4 but must be in 1..=3",
            ),
            (
                DisseminationConfig {
                    ack_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "ack_timeout must be greater than zero",
            ),
            (
                DisseminationConfig {
                    pull_sync_peers: 0,
                    ..ok.clone()
                },
                "pull_sync_peers is 0 but must be at least 1",
            ),
            (
                DisseminationConfig {
                    seen_capacity: 511,
                    ..ok.clone()
                },
                "seen_capacity is 511 but must be at least 512",
            ),
            (
                DisseminationConfig {
                    seen_ttl: Duration::from_secs(29),
                    ..ok.clone()
                },
                "seen_ttl (29s) must be at least cache_ttl (30s)",
            ),
            (
                DisseminationConfig {
                    cache_ttl: Duration::ZERO,
                    ..ok.clone()
                },
                "cache_ttl must be greater than zero",
            ),
            (
                DisseminationConfig {
                    anti_entropy_interval: Duration::ZERO,
                    ..ok.clone()
                },
                "anti_entropy_interval must be greater than zero",
            ),
            (
                DisseminationConfig {
                    pending_pull_capacity: 0,
                    ..ok.clone()
                },
                "pending_pull_capacity is 0 but must be at least 1",
            ),
            (
                DisseminationConfig {
                    pull_retry: Duration::ZERO,
                    ..ok.clone()
                },
                "pull_retry must be greater than zero",
            ),
            (
                DisseminationConfig {
                    max_envelope_len: 87,
                    ..ok.clone()
                },
                "max_envelope_len is 87 but must be in 104..=65471",
            ),
            (
                DisseminationConfig {
                    max_envelope_len: 65_472,
                    ..ok.clone()
                },
                "max_envelope_len is 65472 but must be in 104..=65471",
            ),
            (
                DisseminationConfig {
                    output_queue_capacity: 518,
                    ..ok.clone()
                },
                "output_queue_capacity is 518 but must be at least 519",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
        // The extremes of the bounds are accepted.
        DisseminationConfig {
            acks_needed: 3,
            anti_entropy_peers: 0,
            seen_capacity: 512,
            seen_ttl: Duration::from_secs(30),
            max_envelope_len: 104,
            ..ok.clone()
        }
        .validate()
        .unwrap();
        DisseminationConfig {
            max_envelope_len: 65_471,
            ..ok
        }
        .validate()
        .unwrap();
    }
}
