//! [`BlobConfig`]: every tunable of blob transfer, with its source.

use std::time::Duration;

use super::wire::{MIN_CHUNK_SIZE, chunk_size_for, pieces_per_request};
use crate::config::{self, ConfigError};
use crate::dissemination::{DATAGRAM_OVERHEAD, DEFAULT_MAX_ENVELOPE_LEN, MAX_UDP_PAYLOAD};

/// Largest accepted [`BlobConfig::max_blob_size`]: 1 GiB.
pub const MAX_FETCH_SIZE: u64 = 1 << 30;

/// Configuration of [`super::Blobs`].
///
/// Every field is public; [`Default`] gives the values in each field's doc.
/// [`validate`](Self::validate) checks the bounds; [`super::Blobs::new`] calls it.
///
/// The per-peer window is TCP Reno's congestion window counted in pieces (Jacobson 1988;
/// the same additive-increase / multiplicative-decrease rule as the update rate of
/// [`crate::flow`], after van Renesse et al. 2008): it starts at `initial_window`, grows by
/// one piece per verified piece up to the slow-start threshold and by one piece per window
/// after it, and halves (at most once per retransmission timeout) when a request times out.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobConfig {
    /// Largest encoded envelope, in bytes, as in
    /// [`DisseminationConfig::max_envelope_len`](crate::dissemination::DisseminationConfig::max_envelope_len).
    /// Chunks of local blobs are [`chunk_size_for`]`(max_envelope_len)` bytes (1,248 by
    /// default) and requests name at most [`pieces_per_request`] pieces. Default 1,364 (a
    /// 1,400-byte datagram, memberlist). Bound: `154..=65,471` (room for a 64-byte chunk).
    #[serde(skip)]
    pub max_envelope_len: usize,
    /// Largest blob this node fetches, in bytes; a holder announcing a larger one is ignored.
    /// Default 64 MiB. Bound: `1..=`[`MAX_FETCH_SIZE`] (1 GiB). The fetcher keeps the hash
    /// and state of every piece in memory while fetching: about 2.6 % of this (1.7 MiB at
    /// 64 MiB, 27 MiB at the bound), per fetch.
    pub max_blob_size: u64,
    /// Fetches running at once; more are refused. Default 8. Bound: ≥ 1.
    pub max_fetches: usize,
    /// Window a new source starts with, in pieces. Default 4. Bound:
    /// `min_window..=max_window`.
    pub initial_window: u32,
    /// Smallest window, in pieces. Default 1. Bound: ≥ 1.
    pub min_window: u32,
    /// Largest window per source, in pieces: at most this many requested pieces of one peer
    /// are outstanding. Default 64 (78 KiB of 1,248-byte chunks; on a 1 ms loopback round
    /// trip that is about 80 MB/s per source). Bound: ≥ `min_window`, ≤
    /// `max_held_pieces`.
    pub max_window: u32,
    /// Pieces the node holds at once across all fetches: requested and not yet arrived, or
    /// arrived and verified but not yet reported stored by the shell. No piece is requested
    /// while the count is at this bound, so a fetching node never holds more than this many
    /// pieces of blob data in memory whatever the blob's size (`max_held_pieces ×
    /// chunk_size` bytes: 320 KiB by default). Default 256. Bound: ≥ 1.
    pub max_held_pieces: usize,
    /// Sources (holders) used at once per fetch. Default 8. Bound: ≥ 1.
    pub max_sources: usize,
    /// Period of the want rounds: while a fetch has fewer than `max_sources` sources it
    /// sends [`BlobWant`](super::BlobWant) to up to `want_fanout` peers that are not yet
    /// sources. Default 1,000 ms (gossipmonger's `GOSSIP_INTERVAL`). Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub want_interval: Duration,
    /// Peers asked per want round. Default 8. Bound: ≥ 1.
    pub want_fanout: usize,
    /// Retransmission timeout before the first round-trip sample, and its floor and
    /// ceiling: a request unanswered for `clamp(2 × smoothed RTT + 4 × RTT variation,
    /// min_rto, max_rto)` (RFC 6298's formula with a smaller floor, for datagram LANs) is
    /// retried, preferably from another source. Defaults 250 ms / 50 ms / 2,000 ms. Bound:
    /// `0 < min_rto <= initial_rto <= max_rto`.
    #[serde(with = "crate::config::duration_ms")]
    pub initial_rto: Duration,
    /// Floor of the retransmission timeout (see `initial_rto`). Default 50 ms.
    #[serde(with = "crate::config::duration_ms")]
    pub min_rto: Duration,
    /// Ceiling of the retransmission timeout (see `initial_rto`). Default 2,000 ms.
    #[serde(with = "crate::config::duration_ms")]
    pub max_rto: Duration,
    /// A source whose requests time out this many windows in a row without a verified piece
    /// is dropped (it may come back through a later want round). Default 8. Bound: ≥ 1.
    pub max_source_timeouts: u32,
    /// Corrupt pieces (wrong hash or length) after which a peer is no longer used as a
    /// source for any blob. Default 1 (a hash mismatch is never an accident on an
    /// authenticated channel). Bound: ≥ 1.
    pub max_corrupt: u32,
    /// A fetch that verifies no piece for this long fails ([`BlobEvent::Failed`](super::BlobEvent::Failed)
    /// with [`FailReason::Stalled`](super::FailReason::Stalled)). Default 60 s. Bound: ≥
    /// `want_interval`.
    #[serde(with = "crate::config::duration_ms")]
    pub stall_timeout: Duration,
    /// Pieces of one peer's requests being served at once (read from the store or queued to
    /// send); requested pieces beyond it are dropped and counted, and the requester retries
    /// them. Default 128 (twice the default window). Bound: ≥ 1.
    pub serve_queue_per_peer: usize,
    /// Store reads outstanding at once for serving (piece reads and lookups together);
    /// more are dropped and counted. Default 256. Bound: ≥ 1.
    pub max_pending_reads: usize,
    /// Peers whose address the core keeps (sources, requesters). Messages from further
    /// unknown peers are dropped and counted. Default 256. Bound: ≥ 1.
    pub max_peers: usize,
    /// Least time between two [`BlobEvent::Progress`](super::BlobEvent::Progress) events of
    /// one fetch. Default 100 ms. Bound: any.
    #[serde(with = "crate::config::duration_ms")]
    pub progress_interval: Duration,
    /// Outputs (transmits, events and store requests) queued before new ones are dropped and
    /// counted; the shell drains all three after every input. Default 4,096. Bound: ≥ 64.
    pub output_queue_capacity: usize,
}

impl Default for BlobConfig {
    fn default() -> Self {
        BlobConfig {
            max_envelope_len: DEFAULT_MAX_ENVELOPE_LEN,
            max_blob_size: 64 << 20,
            max_fetches: 8,
            initial_window: 4,
            min_window: 1,
            max_window: 64,
            max_held_pieces: 256,
            max_sources: 8,
            want_interval: Duration::from_millis(1_000),
            want_fanout: 8,
            initial_rto: Duration::from_millis(250),
            min_rto: Duration::from_millis(50),
            max_rto: Duration::from_millis(2_000),
            max_source_timeouts: 8,
            max_corrupt: 1,
            stall_timeout: Duration::from_secs(60),
            serve_queue_per_peer: 128,
            max_pending_reads: 256,
            max_peers: 256,
            progress_interval: Duration::from_millis(100),
            output_queue_capacity: 4_096,
        }
    }
}

impl BlobConfig {
    /// Checks every field against the bound in its doc.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the field and the bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::at_most(
            "max_envelope_len",
            self.max_envelope_len,
            MAX_UDP_PAYLOAD - DATAGRAM_OVERHEAD,
        )?;
        config::at_least(
            "max_envelope_len",
            self.max_envelope_len,
            MIN_CHUNK_SIZE + super::wire::PIECE_OVERHEAD,
        )?;
        let max_blob_size = usize::try_from(self.max_blob_size).unwrap_or(usize::MAX);
        config::at_least("max_blob_size", max_blob_size, 1)?;
        config::at_most("max_blob_size", max_blob_size, MAX_FETCH_SIZE as usize)?;
        config::at_least("max_fetches", self.max_fetches, 1)?;
        config::at_least("min_window", self.min_window as usize, 1)?;
        config::at_least(
            "max_window",
            self.max_window as usize,
            self.min_window as usize,
        )?;
        config::at_most("max_window", self.max_window as usize, self.max_held_pieces)?;
        config::at_least(
            "initial_window",
            self.initial_window as usize,
            self.min_window as usize,
        )?;
        config::at_most(
            "initial_window",
            self.initial_window as usize,
            self.max_window as usize,
        )?;
        config::at_least("max_held_pieces", self.max_held_pieces, 1)?;
        config::at_least("max_sources", self.max_sources, 1)?;
        config::positive("want_interval", self.want_interval)?;
        config::at_least("want_fanout", self.want_fanout, 1)?;
        config::positive("min_rto", self.min_rto)?;
        config::duration_at_least("initial_rto", self.initial_rto, "min_rto", self.min_rto)?;
        config::duration_at_least("max_rto", self.max_rto, "initial_rto", self.initial_rto)?;
        config::at_least("max_source_timeouts", self.max_source_timeouts as usize, 1)?;
        config::at_least("max_corrupt", self.max_corrupt as usize, 1)?;
        config::duration_at_least(
            "stall_timeout",
            self.stall_timeout,
            "want_interval",
            self.want_interval,
        )?;
        config::at_least("serve_queue_per_peer", self.serve_queue_per_peer, 1)?;
        config::at_least("max_pending_reads", self.max_pending_reads, 1)?;
        config::at_least("max_peers", self.max_peers, 1)?;
        config::at_least("output_queue_capacity", self.output_queue_capacity, 64)?;
        Ok(())
    }

    /// Chunk size of local blobs, in bytes: [`chunk_size_for`]`(max_envelope_len)`.
    pub fn chunk_size(&self) -> u32 {
        u32::try_from(chunk_size_for(self.max_envelope_len)).unwrap_or(0)
    }

    /// Most pieces named by one request: [`pieces_per_request`]`(max_envelope_len)`, at most
    /// `max_window`.
    pub fn pieces_per_request(&self) -> usize {
        pieces_per_request(self.max_envelope_len).min(self.max_window as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fit_a_datagram() {
        let c = BlobConfig::default();
        c.validate().unwrap();
        assert_eq!(c.chunk_size(), 1_248);
        // A full chunk's piece fits the envelope.
        assert!(1_248 + super::super::wire::PIECE_OVERHEAD <= c.max_envelope_len);
        assert_eq!(pieces_per_request(c.max_envelope_len), 213);
    }

    #[test]
    fn each_bound_is_checked() {
        let ok = BlobConfig::default();
        let cases: Vec<(BlobConfig, &str)> = vec![
            (
                BlobConfig {
                    max_envelope_len: 100,
                    ..ok.clone()
                },
                "max_envelope_len is 100 but must be at least 154",
            ),
            (
                BlobConfig {
                    max_window: 300,
                    ..ok.clone()
                },
                "max_window is 300 but must be at most 256",
            ),
            (
                BlobConfig {
                    initial_window: 0,
                    ..ok.clone()
                },
                "initial_window is 0 but must be at least 1",
            ),
            (
                BlobConfig {
                    min_rto: Duration::ZERO,
                    ..ok.clone()
                },
                "min_rto must be greater than zero",
            ),
            (
                BlobConfig {
                    max_held_pieces: 0,
                    max_window: 1,
                    initial_window: 1,
                    ..ok.clone()
                },
                "max_window is 1 but must be at most 0",
            ),
            (
                BlobConfig {
                    max_blob_size: (1 << 30) + 1,
                    ..ok.clone()
                },
                "max_blob_size is 1073741825 but must be at most 1073741824",
            ),
            (
                BlobConfig {
                    output_queue_capacity: 10,
                    ..ok.clone()
                },
                "output_queue_capacity is 10 but must be at least 64",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
    }
}
