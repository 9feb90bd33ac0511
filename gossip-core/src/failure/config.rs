//! [`FailureConfig`]: every tunable of the phi accrual failure detector, with its source.

use std::f64::consts::LN_10;
use std::time::Duration;

use crate::config::{self, ConfigError};

/// Largest accepted [`FailureConfig::window`]: ten times Cassandra's 1,000-sample window. A
/// tracked peer costs about `8 · window` bytes of samples.
pub const MAX_WINDOW: usize = 10_000;

/// Configuration of [`super::FailureDetector`].
///
/// Every field is public; [`Default`] gives the values in each field's doc, taken from
/// gossipmonger (tristanls/gossipmonger and gossipmonger-peer), Cassandra's `FailureDetector`
/// and chitchat as noted. [`validate`](Self::validate) is the one place the bounds are checked;
/// [`super::FailureDetector::new`] calls it.
///
/// With the defaults a peer heard every second is declared dead after
/// [`detection_time`](Self::detection_time)`(1 s)` = 8 · ln 10 · 1 s ≈ 18.42 s of silence, and
/// at the latest one [`check_interval`](Self::check_interval) later:
/// [`detection_bound`](Self::detection_bound)`(1 s)` ≈ 18.52 s. The [type
/// doc](super::FailureDetector) derives these numbers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailureConfig {
    /// The phi above which a live peer is declared dead (convicted). Default 8.0 (gossipmonger
    /// `DEAD_PEER_PHI`, Cassandra `phi_convict_threshold`). Bound: finite and > 0.
    ///
    /// phi is −log₁₀ of the probability that a live peer stays silent this long, so 8 means a
    /// one-in-10⁸ chance under the model; with the exponential model used here that is
    /// `8 · ln 10 ≈ 18.42` mean inter-arrival times of silence (18.42 s at a 1 s interval).
    pub phi_threshold: f64,
    /// Inter-arrival samples kept per peer, oldest dropped first; the mean of this window is
    /// the model's mean. Default 100 (gossipmonger `MAX_INTERVALS`). Bound:
    /// `1..=`[`MAX_WINDOW`].
    pub window: usize,
    /// The one sample a peer's window starts with when it is first heard, standing in for its
    /// unknown rhythm until real samples arrive; it ages out like any other sample after
    /// `window` real ones. Default 750 ms (gossipmonger's `intervals: [750]`). Bound: > 0.
    ///
    /// A peer heard once and then silent is declared dead after
    /// `phi_threshold · ln 10 · max(first_interval, min_mean)` = 13.82 s with the defaults.
    #[serde(with = "crate::config::duration_ms")]
    pub first_interval: Duration,
    /// Floor under the window mean used in phi: phi = t / (max(mean, min_mean) · ln 10).
    /// Default 500 ms, half the 1 s gossip interval (gossipmonger `GOSSIP_INTERVAL`). Bound:
    /// > 0.
    ///
    /// This is the exponential model's counterpart of Akka's `min-std-deviation` (which only a
    /// normal model needs). Every authenticated packet is a heartbeat, so a peer that pushes a
    /// burst of broadcasts, acks and pulls produces inter-arrivals of a few milliseconds; the
    /// only traffic a live peer is guaranteed to keep up is its once-a-second gossip. Without a
    /// floor, a window of bursts would make the detector convict that peer after a fraction of
    /// a second of quiet. With it, no peer is ever convicted before
    /// [`min_detection_time`](Self::min_detection_time) = 8 · ln 10 · 0.5 s ≈ 9.21 s of silence:
    /// about nine consecutive missed gossip rounds.
    #[serde(with = "crate::config::duration_ms")]
    pub min_mean: Duration,
    /// Longest inter-arrival kept as a sample; a longer one is dropped (counted in
    /// `samples_over_max_interval`) and only moves the last-arrival time. Default 10 s
    /// (chitchat `max_interval`). Bound: ≥ `first_interval` and ≥ `min_mean`.
    ///
    /// A gap of ten missed rounds from a peer whose guaranteed rhythm is 1 s is an outage, not
    /// its rhythm; learning it would lengthen detection for the next `window` samples.
    /// Cassandra drops samples above 2 s for the same reason; our heartbeats arrive relayed
    /// over a few gossip rounds, with more jitter, hence the looser bound.
    #[serde(with = "crate::config::duration_ms")]
    pub max_interval: Duration,
    /// The pause guard: a gap longer than this between two consecutive inputs
    /// ([`handle_timeout`](super::FailureDetector::handle_timeout) or
    /// [`handle_heartbeat`](super::FailureDetector::handle_heartbeat)) while live peers are
    /// watched means this process itself was stalled (a long garbage-collection-like pause, a
    /// suspended VM, an overloaded host), not that every peer went quiet. Default 5 s
    /// (Cassandra `max_local_pause_in_ms`).
    ///
    /// Bound: ≥ 2 × `check_interval` (an on-time tick is never a stall) and ≤
    /// [`min_detection_time`](Self::min_detection_time), so a stall too short to trip the guard
    /// can never by itself push a peer heard just before it over the threshold.
    ///
    /// Unlike Akka's `acceptable-heartbeat-pause` (a pause of the *remote* peer added to its
    /// mean), this is about the *local* process.
    #[serde(with = "crate::config::duration_ms")]
    pub acceptable_pause: Duration,
    /// How often the shell calls [`handle_timeout`](super::FailureDetector::handle_timeout)
    /// while any peer is live ([`poll_timeout`](super::FailureDetector::poll_timeout) asks for
    /// it). Default 100 ms. Bound: > 0.
    ///
    /// A dead peer is convicted at the first check after its phi crosses the threshold, so this
    /// adds at most one `check_interval` to the detection time; regular checks are also what
    /// lets the pause guard tell a local stall from quiet.
    #[serde(with = "crate::config::duration_ms")]
    pub check_interval: Duration,
    /// Peers tracked at most. Default 4,096 (the static discovery table's capacity). Bound:
    /// ≥ 1. A heartbeat from a new node when full evicts the longest-dead peer (counted in
    /// `dead_evicted`, announced as `PeerForgotten`); with no dead peer it is refused (counted
    /// in `refused`) and the node stays untracked.
    pub max_peers: usize,
    /// A peer dead this long is forgotten: it stops being tracked, and `PeerForgotten` is
    /// emitted. If it is heard again it starts afresh as a new peer (no `PeerLive`). Default
    /// 1 h: long enough for a restart, a reboot or a short partition to come back as
    /// `PeerLive` (chitchat keeps dead nodes 24 h for its state tombstones; this detector keeps
    /// no state beyond the window). Bound: > 0.
    #[serde(with = "crate::config::duration_ms")]
    pub dead_forget_after: Duration,
    /// Events queued before new ones are dropped (counted in `events_dropped`). The caller
    /// drains after every input, and one input emits at most `max_peers` events, so this is only
    /// reached when it does not. Default 4,096. Bound: ≥ `max_peers`.
    pub event_queue_capacity: usize,
}

impl Default for FailureConfig {
    fn default() -> Self {
        FailureConfig {
            phi_threshold: 8.0,
            window: 100,
            first_interval: Duration::from_millis(750),
            min_mean: Duration::from_millis(500),
            max_interval: Duration::from_secs(10),
            acceptable_pause: Duration::from_secs(5),
            check_interval: Duration::from_millis(100),
            max_peers: 4_096,
            dead_forget_after: Duration::from_secs(60 * 60),
            event_queue_capacity: 4_096,
        }
    }
}

impl FailureConfig {
    /// Checks every field against the bound in its doc.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the field and the bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::positive_finite("phi_threshold", self.phi_threshold)?;
        config::in_range("window", self.window, 1, MAX_WINDOW)?;
        config::positive("first_interval", self.first_interval)?;
        config::positive("min_mean", self.min_mean)?;
        config::duration_at_least(
            "max_interval",
            self.max_interval,
            "first_interval",
            self.first_interval,
        )?;
        config::duration_at_least("max_interval", self.max_interval, "min_mean", self.min_mean)?;
        config::positive("check_interval", self.check_interval)?;
        config::duration_at_least(
            "acceptable_pause",
            self.acceptable_pause,
            "2 × check_interval",
            self.check_interval.saturating_mul(2),
        )?;
        config::duration_at_least(
            "phi_threshold · ln 10 · min_mean",
            self.min_detection_time(),
            "acceptable_pause",
            self.acceptable_pause,
        )?;
        config::at_least("max_peers", self.max_peers, 1)?;
        config::positive("dead_forget_after", self.dead_forget_after)?;
        config::at_least(
            "event_queue_capacity",
            self.event_queue_capacity,
            self.max_peers,
        )?;
        Ok(())
    }

    /// Silence after which a peer whose window mean is `mean` has phi above the threshold:
    /// `phi_threshold · ln 10 · max(mean, min_mean)`. 18.42 s for a 1 s mean with the defaults.
    /// Saturates at `Duration::MAX`.
    pub fn detection_time(&self, mean: Duration) -> Duration {
        let mean = mean.max(self.min_mean).as_secs_f64();
        Duration::try_from_secs_f64(self.phi_threshold * LN_10 * mean).unwrap_or(Duration::MAX)
    }

    /// Longest silence before a dead peer with window mean `mean` is declared dead, when the
    /// shell calls `handle_timeout` as [`poll_timeout`](super::FailureDetector::poll_timeout)
    /// asks: `phi_threshold · ln 10 · max(mean, min_mean) + check_interval`. 18.52 s for a 1 s
    /// mean with the defaults.
    pub fn detection_bound(&self, mean: Duration) -> Duration {
        self.detection_time(mean)
            .saturating_add(self.check_interval)
    }

    /// Shortest silence that can convict any peer: `phi_threshold · ln 10 · min_mean`, 9.21 s
    /// with the defaults.
    pub fn min_detection_time(&self) -> Duration {
        self.detection_time(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = FailureConfig::default();
        c.validate().unwrap();
        // 8 · ln 10 = 18.420680743952367.
        let t = c.detection_time(Duration::from_secs(1)).as_secs_f64();
        assert!((t - 18.420_680_743_952_367).abs() < 1e-6, "{t}");
        let b = c.detection_bound(Duration::from_secs(1)).as_secs_f64();
        assert!((b - 18.520_680_743_952_37).abs() < 1e-6, "{b}");
        // Floor: 8 · ln 10 · 0.5 = 9.2103403719761835.
        let m = c.min_detection_time().as_secs_f64();
        assert!((m - 9.210_340_371_976_183).abs() < 1e-6, "{m}");
        assert_eq!(
            c.detection_time(Duration::from_millis(10)),
            c.min_detection_time()
        );
        // A peer heard once: 8 · ln 10 · 0.75 = 13.815510557964274.
        let f = c.detection_time(c.first_interval).as_secs_f64();
        assert!((f - 13.815_510_557_964_274).abs() < 1e-6, "{f}");
    }

    #[test]
    fn huge_threshold_saturates() {
        let c = FailureConfig {
            phi_threshold: 1e300,
            ..FailureConfig::default()
        };
        assert_eq!(c.detection_time(Duration::from_secs(1)), Duration::MAX);
        assert_eq!(c.detection_bound(Duration::from_secs(1)), Duration::MAX);
        c.validate().unwrap();
    }

    #[test]
    fn each_bound_is_checked() {
        let ok = FailureConfig::default();
        let cases: Vec<(FailureConfig, &str)> = vec![
            (
                FailureConfig {
                    phi_threshold: f64::NAN,
                    ..ok.clone()
                },
                "phi_threshold must be a finite number greater than zero",
            ),
            (
                FailureConfig {
                    phi_threshold: 0.0,
                    ..ok.clone()
                },
                "phi_threshold must be a finite number greater than zero",
            ),
            (
                FailureConfig {
                    window: 0,
                    ..ok.clone()
                },
                "window is 0 but must be in 1..=10000",
            ),
            (
                FailureConfig {
                    window: MAX_WINDOW + 1,
                    ..ok.clone()
                },
                "window is 10001 but must be in 1..=10000",
            ),
            (
                FailureConfig {
                    first_interval: Duration::ZERO,
                    ..ok.clone()
                },
                "first_interval must be greater than zero",
            ),
            (
                FailureConfig {
                    min_mean: Duration::ZERO,
                    ..ok.clone()
                },
                "min_mean must be greater than zero",
            ),
            (
                FailureConfig {
                    max_interval: Duration::from_millis(700),
                    ..ok.clone()
                },
                "max_interval (700ms) must be at least first_interval (750ms)",
            ),
            (
                FailureConfig {
                    max_interval: Duration::from_millis(800),
                    min_mean: Duration::from_secs(1),
                    ..ok.clone()
                },
                "max_interval (800ms) must be at least min_mean (1s)",
            ),
            (
                FailureConfig {
                    check_interval: Duration::ZERO,
                    ..ok.clone()
                },
                "check_interval must be greater than zero",
            ),
            (
                FailureConfig {
                    acceptable_pause: Duration::from_millis(199),
                    ..ok.clone()
                },
                "acceptable_pause (199ms) must be at least 2 × check_interval (200ms)",
            ),
            (
                FailureConfig {
                    acceptable_pause: Duration::from_secs(10),
                    ..ok.clone()
                },
                "phi_threshold · ln 10 · min_mean (9.210340372s) must be at least \
                 acceptable_pause (10s)",
            ),
            (
                FailureConfig {
                    max_peers: 0,
                    ..ok.clone()
                },
                "max_peers is 0 but must be at least 1",
            ),
            (
                FailureConfig {
                    dead_forget_after: Duration::ZERO,
                    ..ok.clone()
                },
                "dead_forget_after must be greater than zero",
            ),
            (
                FailureConfig {
                    event_queue_capacity: 4_095,
                    ..ok.clone()
                },
                "event_queue_capacity is 4095 but must be at least 4096",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
        // The extremes of the bounds are accepted.
        FailureConfig {
            window: 1,
            max_interval: Duration::from_millis(750),
            acceptable_pause: Duration::from_millis(200),
            max_peers: 1,
            event_queue_capacity: 1,
            ..ok.clone()
        }
        .validate()
        .unwrap();
        FailureConfig {
            window: MAX_WINDOW,
            acceptable_pause: ok.min_detection_time(),
            ..ok
        }
        .validate()
        .unwrap();
    }
}
