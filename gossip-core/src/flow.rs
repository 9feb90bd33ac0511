//! AIMD flow control of local update rates, after van Renesse, Dumitriu, Gough and Thomas,
//! "Efficient Reconciliation and Flow Control for Anti-Entropy Protocols" (LADIS 2008),
//! section 4.
//!
//! # Why gossip needs flow control
//!
//! An anti-entropy protocol has a fixed capacity: every gossip interval each node sends a
//! bounded number of datagrams of bounded size, so only so many updates per second can reach
//! every node. Updates submitted faster than that pile up as a backlog that no reconciliation
//! order can drain, and the staleness of every replica grows without bound. The paper's answer
//! is to give each participant a *maximum update rate* ρ and to adapt it, like TCP's
//! congestion window, from what gossip itself observes.
//!
//! # The rules implemented by [`FlowControl`]
//!
//! 1. **Admission** ([`FlowControl::try_admit`]): local updates pass a token bucket that
//!    refills at ρ updates per second and holds at most [`FlowConfig::burst`] tokens. An update
//!    that finds no token is refused with [`Backpressure`] and the time until the next token;
//!    the caller either queues it and retries then (the node's waiting `set`), or reports the
//!    refusal (`try_set`).
//! 2. **Local adaptation, AIMD** ([`FlowControl::handle_exchange`]): every time the node
//!    builds a gossip message of deltas it reports how many entries the peer was missing
//!    (`pending`) and how many fit the datagram (`sent`). After
//!    [`FlowConfig::increase_after`] consecutive messages that carried everything pending, ρ
//!    grows by [`FlowConfig::increase_step`]. After [`FlowConfig::trend_window`] consecutive
//!    messages that overflowed, with the last overflow at least as large as the first of the
//!    window (the backlog is not draining: a worsening or stuck trend), ρ is multiplied by
//!    [`FlowConfig::decrease_percent`] / 100. ρ stays within
//!    [`min_rate`](FlowConfig::min_rate)..=[`max_rate`](FlowConfig::max_rate). Overflow is a
//!    shared congestion signal: a backlog of *anyone's* updates overflows the messages of
//!    every node that relays them, so all participants see it at about the same time.
//! 3. **Fair sharing by piggybacked rates** ([`FlowControl::split`],
//!    [`FlowControl::handle_assigned`]): every digest carries the initiator's ρ and its
//!    *desired* rate δ (its recent demand; the maximum rate while its updates are being
//!    refused, since its true demand is then unknown). The responder pools the two maxima
//!    S = ρ_p + ρ_q and re-splits S between the pair, as in the paper:
//!    - if δ_p + δ_q ≤ S, each gets its desire plus half of the surplus;
//!    - else if both desire at least S/2, each gets S/2;
//!    - else the one that desires less than S/2 gets its desire and the other the rest.
//!
//!    The responder adopts its share and returns the initiator's in the reply. The total
//!    capacity of the pair is conserved, capacity flows from idle nodes to busy ones, and two
//!    busy nodes that meet leave with equal rates. Repeated over random pairs this is a
//!    gossip averaging process that converges to max-min fair shares, while rule 2 moves the
//!    total up or down to what gossip can carry. Additive increase with multiplicative
//!    decrease is what makes the shares converge even between producers that never meet
//!    (Chiu and Jain, 1989): a decrease shrinks the gap between two rates, an increase keeps it.
//!
//! Every node's rate is kept at least `min_rate` also by the split (a node's desire counts as
//! at least `min_rate`), so no node is ever starved. If the replies of a split are lost the
//! pooled total drifts a little; rule 2 corrects that like any other error.
//!
//! Rates travel as integers in thousandths of an update per second ([`FlowAdvert`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{self, ConfigError};

/// Largest configurable rate, in updates per second. Rates travel in thousandths of an update
/// per second in a `u32`, which holds up to about 4.29 million updates per second.
pub const MAX_RATE: u32 = 1_000_000;

/// Configuration of [`FlowControl`]. [`Default`] gives the values in each field's doc;
/// [`validate`](Self::validate) checks the bounds.
///
/// The paper gives the algorithm but no constants; the defaults are chosen so that a 1 s
/// gossip interval with 1,400-byte datagrams (a few dozen updates per second reach every node)
/// settles within a minute: start low and probe upwards like TCP, halve like TCP.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// Rate a node starts with, in updates per second. Default 10. Bound:
    /// `min_rate..=max_rate`.
    pub initial_rate: u32,
    /// Floor of the rate, in updates per second: no node is throttled below it. Default 1.
    /// Bound: ≥ 1. The floors of all nodes that write at once should stay below what gossip
    /// can carry, or the backlog cannot drain.
    pub min_rate: u32,
    /// Ceiling of the rate, in updates per second. Default 1,000. Bound:
    /// `min_rate..=MAX_RATE`.
    pub max_rate: u32,
    /// Additive increase, in updates per second, applied after `increase_after` messages in a
    /// row carried everything pending. Default 1. Bound: ≥ 1.
    pub increase_step: u32,
    /// Multiplicative decrease, in percent of the current rate kept. Default 50 (TCP's
    /// halving). Bound: `1..=99`.
    pub decrease_percent: u32,
    /// Overflowing messages in a row, with a non-decreasing overflow, that make a worsening
    /// trend and trigger a decrease. Default 3. Bound: `1..=64`.
    pub trend_window: usize,
    /// Messages in a row that carried everything pending before an increase. Default 3.
    /// Bound: `1..=64`.
    pub increase_after: usize,
    /// Token bucket capacity: updates admitted at once after a quiet period. Default 10.
    /// Bound: ≥ 1.
    pub burst: u32,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            initial_rate: 10,
            min_rate: 1,
            max_rate: 1_000,
            increase_step: 1,
            decrease_percent: 50,
            trend_window: 3,
            increase_after: 3,
            burst: 10,
        }
    }
}

impl FlowConfig {
    /// Checks every field against the bound in its doc.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the field and the bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::at_least("min_rate", self.min_rate as usize, 1)?;
        config::in_range(
            "max_rate",
            self.max_rate as usize,
            self.min_rate as usize,
            MAX_RATE as usize,
        )?;
        config::in_range(
            "initial_rate",
            self.initial_rate as usize,
            self.min_rate as usize,
            self.max_rate as usize,
        )?;
        config::at_least("increase_step", self.increase_step as usize, 1)?;
        config::in_range("decrease_percent", self.decrease_percent as usize, 1, 99)?;
        config::in_range("trend_window", self.trend_window, 1, 64)?;
        config::in_range("increase_after", self.increase_after, 1, 64)?;
        config::at_least("burst", self.burst as usize, 1)?;
        Ok(())
    }
}

/// The flow-control piggyback of a gossip message: the sender's current maximum rate and its
/// desired rate, both in thousandths of an update per second.
///
/// Encoded as two varints (at most 5 bytes each, see [`FlowAdvert::encoded_len_bound`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowAdvert {
    /// The sender's maximum update rate ρ, in thousandths of an update per second.
    pub rate: u32,
    /// The sender's desired update rate δ, in thousandths of an update per second.
    pub desired: u32,
}

impl FlowAdvert {
    /// Upper bound of the encoding, in bytes: two `u32` varints.
    pub fn encoded_len_bound(&self) -> usize {
        crate::reconcile::wire::varint_len(u64::from(self.rate))
            + crate::reconcile::wire::varint_len(u64::from(self.desired))
    }

    /// The largest [`encoded_len_bound`](Self::encoded_len_bound) of any advert: 10 bytes.
    pub const MAX_LEN: usize = 10;
}

/// A local update was refused because the node is at its current rate.
///
/// Nothing changed; the same update is admitted if tried again after `retry_after` (unless
/// other updates take the token first, or the rate drops meanwhile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("update rate limit reached; retry after {retry_after:?}")]
pub struct Backpressure {
    /// Time until the token bucket holds a whole token at the current rate.
    pub retry_after: Duration,
}

/// Counters of a [`FlowControl`], running totals since construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Updates admitted by [`FlowControl::try_admit`].
    pub admitted: u64,
    /// Updates refused with [`Backpressure`].
    pub refused: u64,
    /// Additive increases that raised the rate (not counted at the ceiling).
    pub increases: u64,
    /// Multiplicative decreases that lowered the rate (not counted at the floor).
    pub decreases: u64,
    /// Messages reported to [`FlowControl::handle_exchange`] that overflowed.
    pub overflowing_messages: u64,
    /// Entries pending but left out of messages, summed over all messages.
    pub overflowed_entries: u64,
    /// Rate splits computed as a responder ([`FlowControl::split`]).
    pub splits: u64,
    /// Rates adopted from a responder ([`FlowControl::handle_assigned`]).
    pub assignments: u64,
}

/// Converts a rate in updates per second to the wire's thousandths, saturating.
pub fn to_milli(rate: f64) -> u32 {
    let milli = (rate * 1_000.0).round();
    if milli.is_nan() || milli <= 0.0 {
        0
    } else if milli >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        milli as u32
    }
}

/// Converts the wire's thousandths of an update per second to updates per second.
pub fn from_milli(milli: u32) -> f64 {
    f64::from(milli) / 1_000.0
}

/// One node's update-rate controller: a token bucket at rate ρ, AIMD adaptation of ρ from the
/// overflow of gossip messages, and the paper's pairwise re-split of ρ for fairness. The rules
/// are in the [module doc](self).
///
/// # Call order
///
/// Sans-IO like every core in this crate; the owner (the reconciliation core, or a shell)
/// calls:
///
/// - [`try_admit`](Self::try_admit) before each local update;
/// - [`handle_tick`](Self::handle_tick) once per gossip interval (re-estimates the desired
///   rate);
/// - [`handle_exchange`](Self::handle_exchange) after building each message of deltas;
/// - as a gossip initiator, puts [`advert`](Self::advert) in the digest and calls
///   [`handle_assigned`](Self::handle_assigned) with the rate returned in the reply; as a
///   responder, calls [`split`](Self::split) with the digest's advert and returns its result
///   in the reply.
///
/// # Example
///
/// ```
/// use std::time::{Duration, Instant};
/// use gossip_core::flow::{FlowConfig, FlowControl};
///
/// let now = Instant::now();
/// let config = FlowConfig { initial_rate: 2, burst: 1, ..FlowConfig::default() };
/// let mut flow = FlowControl::new(config, now)?;
/// assert!(flow.try_admit(now).is_ok());
/// let refused = flow.try_admit(now).unwrap_err();
/// assert_eq!(refused.retry_after, Duration::from_millis(500));
/// assert!(flow.try_admit(now + refused.retry_after).is_ok());
///
/// // Three messages in a row overflow, the last no better than the first: ρ halves.
/// for _ in 0..3 {
///     flow.handle_exchange(now, 100, 20);
/// }
/// assert_eq!(flow.rate(), 1.0);
/// # Ok::<(), gossip_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct FlowControl {
    config: FlowConfig,
    /// ρ, updates per second.
    rate: f64,
    /// δ, updates per second.
    desired: f64,
    tokens: f64,
    last_refill: Instant,
    /// Overflow amounts of the current run of overflowing messages (≤ `trend_window`).
    overflow_run: VecDeque<u64>,
    /// Messages in a row that carried everything pending.
    clean_run: usize,
    admitted_since_tick: u64,
    throttled_since_tick: bool,
    last_tick: Instant,
    /// Exponentially weighted demand, updates per second.
    demand: f64,
    stats: FlowStats,
}

impl FlowControl {
    /// A controller at `initial_rate` with a full token bucket, started at `now`.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` fails [`FlowConfig::validate`].
    pub fn new(config: FlowConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(FlowControl {
            rate: f64::from(config.initial_rate),
            desired: f64::from(config.min_rate),
            tokens: f64::from(config.burst),
            last_refill: now,
            overflow_run: VecDeque::new(),
            clean_run: 0,
            admitted_since_tick: 0,
            throttled_since_tick: false,
            last_tick: now,
            demand: 0.0,
            stats: FlowStats::default(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// The current maximum update rate ρ, in updates per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The current desired rate δ, in updates per second (see the [module doc](self)).
    pub fn desired_rate(&self) -> f64 {
        self.desired
    }

    /// Counters since construction.
    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// What this node piggybacks on its digests: ρ and δ in thousandths.
    pub fn advert(&self) -> FlowAdvert {
        FlowAdvert {
            rate: to_milli(self.rate),
            desired: to_milli(self.desired),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(f64::from(self.config.burst));
        self.last_refill = self.last_refill.max(now);
    }

    fn clamp(&self, rate: f64) -> f64 {
        if rate.is_nan() {
            return f64::from(self.config.min_rate);
        }
        rate.clamp(
            f64::from(self.config.min_rate),
            f64::from(self.config.max_rate),
        )
    }

    fn set_rate(&mut self, now: Instant, rate: f64) {
        self.refill(now);
        self.rate = self.clamp(rate);
    }

    /// Admits one local update at `now`, taking a token.
    ///
    /// # Errors
    /// [`Backpressure`] with the time until the next token if the bucket is empty; nothing was
    /// taken, and the refusal marks this node as throttled (its desired rate becomes
    /// `max_rate` at the next [`handle_tick`](Self::handle_tick)).
    pub fn try_admit(&mut self, now: Instant) -> Result<(), Backpressure> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.admitted_since_tick += 1;
            self.stats.admitted += 1;
            return Ok(());
        }
        self.throttled_since_tick = true;
        self.stats.refused += 1;
        let missing = (1.0 - self.tokens).max(0.0);
        let micros = (missing / self.rate * 1_000_000.0).ceil();
        let micros = if micros.is_finite() && micros >= 1.0 {
            micros.min(3_600_000_000.0) as u64
        } else {
            1
        };
        Err(Backpressure {
            retry_after: Duration::from_micros(micros),
        })
    }

    /// Input: a gossip interval elapsed at `now`. Re-estimates the desired rate δ: the demand
    /// admitted since the last tick, smoothed (weight ½ on the newest interval), or `max_rate`
    /// if an update was refused since the last tick.
    pub fn handle_tick(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_tick).as_secs_f64();
        if elapsed > 0.0 {
            let measured = self.admitted_since_tick as f64 / elapsed;
            self.demand = 0.5 * self.demand + 0.5 * measured;
        }
        self.desired = if self.throttled_since_tick {
            f64::from(self.config.max_rate)
        } else {
            self.clamp(self.demand)
        };
        self.admitted_since_tick = 0;
        self.throttled_since_tick = false;
        self.last_tick = now;
    }

    /// Input: a message of deltas was built at `now` for a peer that lacked `pending` entries,
    /// of which `sent` fit the datagram. Applies the AIMD rule (module doc, rule 2) and returns
    /// the new rate if it changed.
    pub fn handle_exchange(&mut self, now: Instant, pending: u64, sent: u64) -> Option<f64> {
        let overflow = pending.saturating_sub(sent);
        let before = self.rate;
        if overflow == 0 {
            self.overflow_run.clear();
            self.clean_run += 1;
            if self.clean_run >= self.config.increase_after {
                self.clean_run = 0;
                self.set_rate(now, self.rate + f64::from(self.config.increase_step));
                if self.rate > before {
                    self.stats.increases += 1;
                }
            }
        } else {
            self.stats.overflowing_messages += 1;
            self.stats.overflowed_entries += overflow;
            self.clean_run = 0;
            self.overflow_run.push_back(overflow);
            while self.overflow_run.len() > self.config.trend_window {
                self.overflow_run.pop_front();
            }
            let worsening = self.overflow_run.len() == self.config.trend_window
                && self.overflow_run.back() >= self.overflow_run.front();
            if worsening {
                self.overflow_run.clear();
                let factor = f64::from(self.config.decrease_percent) / 100.0;
                self.set_rate(now, self.rate * factor);
                if self.rate < before {
                    self.stats.decreases += 1;
                }
            }
        }
        (self.rate != before).then_some(self.rate)
    }

    /// Responder side of the fair re-split (module doc, rule 3): pools this node's rate with
    /// the initiator's `peer` advert, adopts this node's share at `now` and returns the
    /// initiator's share in thousandths, for the reply.
    pub fn split(&mut self, now: Instant, peer: FlowAdvert) -> u32 {
        self.stats.splits += 1;
        let (mine, theirs) = self.shares(from_milli(peer.rate), from_milli(peer.desired));
        self.set_rate(now, mine);
        to_milli(self.clamp(theirs))
    }

    /// The paper's split of ρ_self + ρ_peer by desires, each desire at least `min_rate`.
    fn shares(&self, peer_rate: f64, peer_desired: f64) -> (f64, f64) {
        let rp = self.rate;
        let rq = self.clamp(peer_rate);
        let dp = self.clamp(self.desired);
        let dq = self.clamp(peer_desired);
        let total = rp + rq;
        let half = total / 2.0;
        if dp + dq <= total {
            let surplus = (total - dp - dq) / 2.0;
            (dp + surplus, dq + surplus)
        } else if dp >= half && dq >= half {
            (half, half)
        } else if dp < half {
            (dp, total - dp)
        } else {
            (total - dq, dq)
        }
    }

    /// Initiator side of the re-split: adopts the rate (thousandths of an update per second)
    /// the responder assigned in its reply, clamped to `min_rate..=max_rate`.
    pub fn handle_assigned(&mut self, now: Instant, assigned: u32) {
        self.stats.assignments += 1;
        self.set_rate(now, from_milli(assigned));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn flow(config: FlowConfig) -> (FlowControl, Instant) {
        let t0 = crate::test_util::epoch();
        (FlowControl::new(config, t0).unwrap(), t0)
    }

    #[test]
    fn defaults_are_valid_and_each_bound_is_checked() {
        let ok = FlowConfig::default();
        ok.validate().unwrap();
        let cases: Vec<(FlowConfig, &str)> = vec![
            (
                FlowConfig {
                    min_rate: 0,
                    ..ok.clone()
                },
                "min_rate is 0 but must be at least 1",
            ),
            (
                FlowConfig {
                    max_rate: MAX_RATE + 1,
                    ..ok.clone()
                },
                "max_rate is 1000001 but must be in 1..=1000000",
            ),
            (
                FlowConfig {
                    min_rate: 20,
                    ..ok.clone()
                },
                "initial_rate is 10 but must be in 20..=1000",
            ),
            (
                FlowConfig {
                    max_rate: 5,
                    ..ok.clone()
                },
                "initial_rate is 10 but must be in 1..=5",
            ),
            (
                FlowConfig {
                    increase_step: 0,
                    ..ok.clone()
                },
                "increase_step is 0 but must be at least 1",
            ),
            (
                FlowConfig {
                    decrease_percent: 100,
                    ..ok.clone()
                },
                "decrease_percent is 100 but must be in 1..=99",
            ),
            (
                FlowConfig {
                    trend_window: 0,
                    ..ok.clone()
                },
                "trend_window is 0 but must be in 1..=64",
            ),
            (
                FlowConfig {
                    increase_after: 65,
                    ..ok.clone()
                },
                "increase_after is 65 but must be in 1..=64",
            ),
            (
                FlowConfig {
                    burst: 0,
                    ..ok.clone()
                },
                "burst is 0 but must be at least 1",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn token_bucket_admits_burst_then_paces_at_the_rate() {
        let (mut f, t0) = flow(FlowConfig {
            initial_rate: 10,
            burst: 3,
            ..FlowConfig::default()
        });
        for _ in 0..3 {
            f.try_admit(t0).unwrap();
        }
        let e = f.try_admit(t0).unwrap_err();
        assert_eq!(e.retry_after, ms(100));
        assert_eq!(
            e.to_string(),
            "update rate limit reached; retry after 100ms"
        );
        assert!(f.try_admit(t0 + ms(99)).is_err());
        f.try_admit(t0 + ms(100)).unwrap();
        // Over 10 s of constant demand, about rate × 10 updates pass.
        let mut admitted = 0;
        let mut t = t0 + ms(100);
        while t < t0 + Duration::from_secs(10) {
            t += ms(1);
            if f.try_admit(t).is_ok() {
                admitted += 1;
            }
        }
        assert!((98..=100).contains(&admitted), "{admitted}");
        assert_eq!(f.stats().admitted, 4 + admitted);
    }

    /// AIMD trajectory: sustained overflow that does not drain halves the rate once per
    /// `trend_window` messages down to the floor; clean messages add `increase_step` once per
    /// `increase_after` messages up to the ceiling.
    #[test]
    fn aimd_trajectory_halves_on_a_worsening_trend_and_climbs_additively() {
        let (mut f, t0) = flow(FlowConfig {
            initial_rate: 64,
            min_rate: 1,
            max_rate: 70,
            ..FlowConfig::default()
        });
        let mut trajectory = vec![f.rate()];
        // A growing backlog: 3 messages per halving.
        for i in 0..21u64 {
            f.handle_exchange(t0, 100 + 10 * i, 30);
            trajectory.push(f.rate());
        }
        let halvings: Vec<f64> = trajectory.iter().step_by(3).copied().collect();
        assert_eq!(halvings, vec![64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0, 1.0]);
        assert_eq!(f.stats().decreases, 6, "the last one hit the floor");
        // Clean messages: +1 per 3 messages, capped at max_rate.
        for _ in 0..300 {
            f.handle_exchange(t0, 5, 5);
        }
        assert_eq!(f.rate(), 70.0);
        assert_eq!(f.stats().increases, 69);
    }

    #[test]
    fn a_draining_backlog_is_not_a_worsening_trend() {
        let (mut f, t0) = flow(FlowConfig::default());
        // Overflow every time but shrinking: no decrease.
        for overflow in (1..=30).rev() {
            f.handle_exchange(t0, 10 + overflow, 10);
        }
        assert_eq!(f.rate(), 10.0);
        assert_eq!(f.stats().decreases, 0);
        f.handle_exchange(t0, 10, 10);
        // One clean message interrupts a run: two overflows, a clean one, two more: no decrease.
        f.handle_exchange(t0, 50, 10);
        f.handle_exchange(t0, 60, 10);
        f.handle_exchange(t0, 10, 10);
        f.handle_exchange(t0, 50, 10);
        f.handle_exchange(t0, 60, 10);
        assert_eq!(f.stats().decreases, 0);
        f.handle_exchange(t0, 70, 10);
        assert_eq!(f.stats().decreases, 1);
        assert_eq!(f.rate(), 5.0);
    }

    #[test]
    fn desired_rate_is_the_smoothed_demand_or_the_ceiling_when_throttled() {
        let (mut f, t0) = flow(FlowConfig {
            initial_rate: 100,
            burst: 100,
            ..FlowConfig::default()
        });
        assert_eq!(f.desired_rate(), 1.0);
        for i in 0..20 {
            f.try_admit(t0 + ms(i * 50)).unwrap();
        }
        f.handle_tick(t0 + Duration::from_secs(1));
        assert_eq!(f.desired_rate(), 10.0);
        f.handle_tick(t0 + Duration::from_secs(2));
        assert_eq!(f.desired_rate(), 5.0);
        // Refusals mean the demand is unknown and at least the rate: claim the ceiling.
        let t = t0 + Duration::from_secs(2);
        while f.try_admit(t).is_ok() {}
        f.handle_tick(t0 + Duration::from_secs(3));
        assert_eq!(f.desired_rate(), 1_000.0);
    }

    fn with(rate: u32, desired: f64) -> FlowControl {
        let (mut f, _) = flow(FlowConfig {
            initial_rate: rate,
            ..FlowConfig::default()
        });
        f.desired = desired;
        f
    }

    #[test]
    fn split_follows_the_paper_and_conserves_the_pair_total() {
        let t = crate::test_util::epoch();
        // Both satisfied: each gets its desire plus half the surplus.
        let mut p = with(50, 10.0);
        let q = with(30, 20.0).advert();
        let q_share = p.split(t, q);
        assert_eq!((p.rate(), from_milli(q_share)), (35.0, 45.0));
        // Both want more than half: equal halves.
        let mut p = with(70, 1_000.0);
        let q_share = p.split(t, with(30, 1_000.0).advert());
        assert_eq!((p.rate(), from_milli(q_share)), (50.0, 50.0));
        // The modest one gets its desire, the busy one the rest.
        let mut p = with(40, 1_000.0);
        let q_share = p.split(t, with(40, 5.0).advert());
        assert_eq!((p.rate(), from_milli(q_share)), (75.0, 5.0));
        let mut p = with(40, 5.0);
        let q_share = p.split(t, with(40, 1_000.0).advert());
        assert_eq!((p.rate(), from_milli(q_share)), (5.0, 75.0));
        // An idle node (desire 0, counted as min_rate) keeps the floor.
        let mut p = with(20, 0.0);
        let q_share = p.split(t, with(20, 1_000.0).advert());
        assert_eq!((p.rate(), from_milli(q_share)), (1.0, 39.0));
        assert_eq!(p.stats().splits, 1);
    }

    #[test]
    fn assigned_rates_are_clamped() {
        let (mut f, t0) = flow(FlowConfig::default());
        f.handle_assigned(t0, 0);
        assert_eq!(f.rate(), 1.0);
        f.handle_assigned(t0, u32::MAX);
        assert_eq!(f.rate(), 1_000.0);
        f.handle_assigned(t0, 12_500);
        assert_eq!(f.rate(), 12.5);
        assert_eq!(f.stats().assignments, 3);
        // A hostile advert cannot push the responder outside its bounds either.
        let share = f.split(
            t0,
            FlowAdvert {
                rate: u32::MAX,
                desired: u32::MAX,
            },
        );
        assert!(f.rate() >= 1.0 && f.rate() <= 1_000.0);
        assert!(from_milli(share) <= 1_000.0);
    }

    /// Two busy nodes that re-split whenever they meet and see the same congestion signal end
    /// with equal rates, from very unequal starts (AIMD fairness, Chiu and Jain).
    #[test]
    fn two_busy_nodes_converge_to_equal_rates() {
        let t0 = crate::test_util::epoch();
        let config = FlowConfig::default();
        let mut a = FlowControl::new(
            FlowConfig {
                initial_rate: 200,
                ..config.clone()
            },
            t0,
        )
        .unwrap();
        let mut b = FlowControl::new(
            FlowConfig {
                initial_rate: 2,
                ..config
            },
            t0,
        )
        .unwrap();
        a.desired = 1_000.0;
        b.desired = 1_000.0;
        // Shared capacity of 60 updates per second: each message overflows when the sum of
        // rates exceeds it. Every 10th message the two meet.
        let capacity = 60.0;
        for i in 0..600u64 {
            let load = a.rate() + b.rate();
            let (pending, sent) = if load > capacity {
                ((load * 2.0) as u64 + i % 3, load as u64)
            } else {
                (10, 10)
            };
            a.handle_exchange(t0, pending, sent);
            b.handle_exchange(t0, pending, sent);
            if i % 10 == 9 {
                let share = b.split(t0, a.advert());
                a.handle_assigned(t0, share);
            }
        }
        let (ra, rb) = (a.rate(), b.rate());
        assert!((ra - rb).abs() <= 0.2 * ra.max(rb), "{ra} vs {rb}");
        assert!(ra + rb <= 2.0 * capacity, "{ra} + {rb}");
    }
}
