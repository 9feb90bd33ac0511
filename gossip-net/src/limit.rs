//! [`InboundLimiter`]: a token bucket per source address, so that one sender, however fast,
//! gets at most a bounded share of a node's work.
//!
//! A holder of the cluster key can send authenticated datagrams as fast as its link allows
//! (the flood of `examples/tests/flood.rs`). Every one of them costs the receiver protocol
//! work (a push is delivered and forwarded, a digest answered), and while the node is busy
//! the kernel drops datagrams of every sender alike, honest ones included. The transport
//! therefore admits at most [`InboundLimit::rate`] authenticated datagrams per second from
//! each source address (with bursts up to [`InboundLimit::burst`]) and drops the rest before
//! any protocol sees them, counted as rate-limited. The dropped ones cost only their
//! decryption. This is the per-source token bucket of packet filters and of QUIC servers'
//! stateless-retry thresholds, applied to authenticated traffic: it bounds what one peer can
//! make a node do, not what the network delivers.
//!
//! Bulk traffic has its own bucket per source ([`InboundLimit::bulk_rate`], fed through
//! [`InboundLimiter::admit_bulk`]): the transport sends the blob messages there. A blob source
//! sends one datagram per chunk and a fetcher a request per few pieces, so the control rate
//! would cap a transfer at about rate × chunk size (1.2 MB/s at 1,000/s, measured with
//! `scripts/bench-blobs.sh`). The blob core bounds what these messages can make a node do: a
//! piece nobody requested is dropped on arrival, requests are served from a bounded queue per
//! peer, and none of them is delivered, forwarded or remembered as a broadcast, so a faster
//! bulk rate does not let a sender push the other protocols (or the dissemination's seen-id
//! memory) any harder.
//!
//! The tables of sources are LRUs of [`InboundLimit::max_sources`] addresses; a source
//! evicted from it starts again with a full bucket, so the table's memory is bounded and an
//! attacker cycling through addresses gains at most one burst per address it can send from.
//!
//! Time is injected ([`InboundLimiter::admit`] takes `now`), as in the protocol cores.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Instant;

use lru::LruCache;

/// Bounds of the inbound rate per source address. Every field is public; [`Default`] gives
/// the values in each field's doc. In a configuration file it is the `[inbound_limit]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundLimit {
    /// Authenticated datagrams admitted per second from one source address. Default 1,000:
    /// with the default configuration a peer sends one node a few datagrams per gossip
    /// round for state, membership and the failure detector, at most `peer_budget_bytes`
    /// (256 KiB/s, about 190 datagrams) of feed batches, and one push per broadcast; so 1,000
    /// leaves room for about 800 broadcasts per second through one peer. 0 disables the
    /// limit.
    pub rate: u32,
    /// Datagrams a source may send at once after a quiet period (the bucket's size). Default
    /// 2,000 (two seconds at the default rate). Bound: ≥ 1 when `rate` > 0.
    pub burst: u32,
    /// Blob messages (want, have, request, piece) admitted per second from one source
    /// address, in a bucket of their own (see the module docs). Default 20,000: one source's
    /// blob transfer up to about 25 MB/s with 1,248-byte chunks. 0 disables the bulk limit.
    pub bulk_rate: u32,
    /// Blob messages a source may send at once after a quiet period. Default 40,000 (two
    /// seconds at the default bulk rate). Bound: ≥ 1 when `bulk_rate` > 0.
    pub bulk_burst: u32,
    /// Source addresses tracked (per table: control and bulk), least recently heard evicted
    /// first. Default 4,096 (the
    /// static discovery table's capacity; about 100 bytes each). Bound: ≥ 1 (the type).
    pub max_sources: NonZeroUsize,
}

impl Default for InboundLimit {
    fn default() -> Self {
        InboundLimit {
            rate: 1_000,
            burst: 2_000,
            bulk_rate: 20_000,
            bulk_burst: 40_000,
            max_sources: NonZeroUsize::new(4_096).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

impl InboundLimit {
    /// No limit: every authenticated datagram is admitted.
    pub fn unlimited() -> Self {
        InboundLimit {
            rate: 0,
            bulk_rate: 0,
            ..InboundLimit::default()
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-source token buckets (see the module docs).
#[derive(Debug)]
pub struct InboundLimiter {
    limit: InboundLimit,
    sources: LruCache<SocketAddr, Bucket>,
    bulk: LruCache<SocketAddr, Bucket>,
}

impl InboundLimiter {
    /// A limiter with every bucket full. A `burst` of 0 is taken as 1.
    pub fn new(limit: InboundLimit) -> Self {
        InboundLimiter {
            limit,
            sources: LruCache::new(limit.max_sources),
            bulk: LruCache::new(limit.max_sources),
        }
    }

    /// The configuration.
    pub fn limit(&self) -> InboundLimit {
        self.limit
    }

    /// Source addresses tracked now in the control table (≤ `max_sources`).
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Whether a datagram from `from` received at `now` is admitted; takes a token if so.
    /// Always `true` when the limit is disabled (`rate` 0).
    pub fn admit(&mut self, now: Instant, from: SocketAddr) -> bool {
        take(
            &mut self.sources,
            self.limit.rate,
            self.limit.burst,
            now,
            from,
        )
    }

    /// [`admit`](Self::admit) for bulk traffic (blob messages), against the source's bulk
    /// bucket ([`InboundLimit::bulk_rate`], [`InboundLimit::bulk_burst`]). Always `true` when
    /// `bulk_rate` is 0.
    pub fn admit_bulk(&mut self, now: Instant, from: SocketAddr) -> bool {
        take(
            &mut self.bulk,
            self.limit.bulk_rate,
            self.limit.bulk_burst,
            now,
            from,
        )
    }
}

/// Refills `from`'s bucket in `table` for the time since it was last used and takes a token
/// if one is there; `true` without a bucket when `rate` is 0 (no limit).
fn take(
    table: &mut LruCache<SocketAddr, Bucket>,
    rate: u32,
    burst: u32,
    now: Instant,
    from: SocketAddr,
) -> bool {
    if rate == 0 {
        return true;
    }
    let burst = f64::from(burst.max(1));
    let rate = f64::from(rate);
    let bucket = table.get_or_insert_mut(from, || Bucket {
        tokens: burst,
        at: now,
    });
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
    bucket.at = now.max(bucket.at);
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn limiter(rate: u32, burst: u32, sources: usize) -> InboundLimiter {
        InboundLimiter::new(InboundLimit {
            rate,
            burst,
            max_sources: NonZeroUsize::new(sources).unwrap(),
            ..InboundLimit::default()
        })
    }

    #[test]
    fn bulk_traffic_has_its_own_bucket() {
        let t0 = Instant::now();
        let mut l = InboundLimiter::new(InboundLimit {
            rate: 100,
            burst: 10,
            bulk_rate: 1_000,
            bulk_burst: 50,
            max_sources: NonZeroUsize::new(8).unwrap(),
        });
        // The control bucket empties after its burst ...
        assert_eq!((0..100).filter(|_| l.admit(t0, addr(1))).count(), 10);
        // ... while the same source's bulk bucket still holds its own burst, and the other
        // way round.
        assert_eq!((0..100).filter(|_| l.admit_bulk(t0, addr(1))).count(), 50);
        assert!(!l.admit(t0, addr(1)));
        // 100 ms later each refilled at its own rate.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..1_000).filter(|_| l.admit(t1, addr(1))).count(), 10);
        assert_eq!((0..1_000).filter(|_| l.admit_bulk(t1, addr(1))).count(), 50);
        // A bulk rate of 0 admits everything.
        let mut off = InboundLimiter::new(InboundLimit {
            bulk_rate: 0,
            ..InboundLimit::default()
        });
        assert!((0..100_000).all(|_| off.admit_bulk(t0, addr(1))));
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut l = limiter(100, 10, 8);
        let admitted = (0..50).filter(|_| l.admit(t0, addr(1))).count();
        assert_eq!(admitted, 10);
        // Another source is not affected.
        assert!(l.admit(t0, addr(2)));
        // 100 ms later: 10 more tokens.
        let t1 = t0 + Duration::from_millis(100);
        let admitted = (0..50).filter(|_| l.admit(t1, addr(1))).count();
        assert_eq!(admitted, 10);
        // Over 10 s of steady sending at 1,000/s, about rate × 10 s are admitted.
        let mut admitted = 0;
        for ms in 0..10_000u64 {
            let now = t1 + Duration::from_millis(ms);
            admitted += usize::from(l.admit(now, addr(1)));
        }
        assert!((995..=1_001).contains(&admitted), "{admitted}");
    }

    #[test]
    fn the_table_is_bounded_and_disabled_means_unlimited() {
        let t0 = Instant::now();
        let mut l = limiter(1, 1, 4);
        for port in 0..100 {
            assert!(l.admit(t0, addr(port)));
        }
        assert_eq!(l.tracked(), 4);
        let mut off = InboundLimiter::new(InboundLimit::unlimited());
        assert!((0..10_000).all(|_| off.admit(t0, addr(1))));
        assert_eq!(off.tracked(), 0);
    }

    #[test]
    fn time_going_backwards_grants_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut l = limiter(10, 1, 4);
        assert!(l.admit(t0, addr(1)));
        assert!(!l.admit(t0 - Duration::from_secs(5), addr(1)));
        assert!(!l.admit(t0, addr(1)));
        assert!(l.admit(t0 + Duration::from_millis(100), addr(1)));
    }
}
