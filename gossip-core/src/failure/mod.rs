//! Phi accrual failure detection (Hayashibara, Défago, Yared and Katayama, "The φ Accrual
//! Failure Detector", SRDS 2004) with gossipmonger's defaults, as a sans-IO state machine.
//!
//! [`FailureDetector`] keeps, for every peer it hears from, a window of the times between
//! consecutive heartbeats, and turns the silence since the last one into a suspicion level phi.
//! A live peer whose phi rises above [`FailureConfig::phi_threshold`] is declared dead
//! ([`FailureEvent::PeerDead`]); a dead peer heard again is live
//! ([`FailureEvent::PeerLive`]). The model, the numbers and the pause guard are on
//! [`FailureDetector`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::f64::consts::LN_10;
use std::time::{Duration, Instant};

use crate::config::ConfigError;
use crate::id::NodeId;

mod config;

pub use config::{FailureConfig, MAX_WINDOW};

#[cfg(test)]
mod tests;

/// Something to tell discovery and the application, produced by
/// [`FailureDetector::poll_event`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FailureEvent {
    /// A live peer's phi rose above the threshold at a check: it is now dead (gossipmonger's
    /// `peer dead`). Emitted once per conviction.
    PeerDead {
        /// The convicted peer.
        node: NodeId,
        /// Its phi at the check that convicted it (above `phi_threshold`, finite).
        phi: f64,
    },
    /// A peer previously declared dead was heard again (gossipmonger's `peer live`). A newly
    /// tracked peer is not announced here; it starts live silently.
    PeerLive {
        /// The revived peer.
        node: NodeId,
    },
    /// A dead peer stopped being tracked: dead for
    /// [`dead_forget_after`](FailureConfig::dead_forget_after), or evicted to make room for a
    /// new peer at [`max_peers`](FailureConfig::max_peers). If heard again it is tracked as a
    /// new peer, live, without [`FailureEvent::PeerLive`]. Not emitted for
    /// [`FailureDetector::remove`].
    PeerForgotten {
        /// The forgotten peer.
        node: NodeId,
    },
}

/// Counters of a [`FailureDetector`], running totals since construction, plus two gauges
/// (`peers_tracked`, `peers_dead`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureStats {
    /// Peers tracked now, live and dead (≤ `max_peers`).
    pub peers_tracked: usize,
    /// Of those, peers currently dead.
    pub peers_dead: usize,
    /// Heartbeats accepted for a tracked (or newly tracked) peer.
    pub heartbeats: u64,
    /// Nodes that started being tracked (including ones forgotten and heard again).
    pub peers_added: u64,
    /// Heartbeats from an untracked node refused because `max_peers` peers were tracked and
    /// none of them was dead.
    pub refused: u64,
    /// Inter-arrival samples recorded in a window.
    pub samples: u64,
    /// Samples longer than `max_interval`, not recorded.
    pub samples_over_max_interval: u64,
    /// Samples that spanned a local stall, not recorded (the pause guard).
    pub samples_discarded_by_pause_guard: u64,
    /// Heartbeats stamped earlier than the peer's last arrival (the shell passed times out of
    /// order): the peer counts as heard, but no sample is recorded.
    pub out_of_order: u64,
    /// Live peers declared dead ([`FailureEvent::PeerDead`]).
    pub convictions: u64,
    /// Dead peers heard again ([`FailureEvent::PeerLive`]).
    pub revivals: u64,
    /// Dead peers forgotten after `dead_forget_after`.
    pub forgotten: u64,
    /// Dead peers forgotten early to make room for a new peer at `max_peers`.
    pub dead_evicted: u64,
    /// Peers dropped by [`FailureDetector::remove`].
    pub removed: u64,
    /// Local stalls detected by the pause guard.
    pub stalls_detected: u64,
    /// Total length of the detected stalls, not counted as silence of any peer.
    pub stalled_time: Duration,
    /// Events dropped because `event_queue_capacity` were queued (the caller did not drain).
    pub events_dropped: u64,
}

/// Liveness of a tracked peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Liveness {
    Live,
    /// Declared dead at `since` (shifted forward by detected stalls).
    Dead {
        since: Instant,
    },
}

/// What the detector knows about one peer.
#[derive(Clone, Debug)]
struct PeerWindow {
    /// Inter-arrival samples in nanoseconds, oldest first. Never empty: it starts with
    /// `first_interval`, and a sample is only removed when one more than `window` are held.
    samples: VecDeque<u64>,
    /// Exact sum of `samples`.
    sum: u128,
    /// When the peer was last heard (shifted forward by detected stalls).
    last_arrival: Instant,
    /// The next heartbeat's sample spans a local stall and is dropped.
    skip_next_sample: bool,
    liveness: Liveness,
}

impl PeerWindow {
    fn new(now: Instant, first_interval: Duration) -> Self {
        let first = nanos(first_interval);
        PeerWindow {
            samples: VecDeque::from([first]),
            sum: u128::from(first),
            last_arrival: now,
            skip_next_sample: false,
            liveness: Liveness::Live,
        }
    }

    fn push(&mut self, sample: u64, window: usize) {
        self.samples.push_back(sample);
        self.sum += u128::from(sample);
        while self.samples.len() > window.max(1) {
            if let Some(old) = self.samples.pop_front() {
                self.sum -= u128::from(old);
            }
        }
    }

    /// The window mean, in seconds (> 0 whenever a sample is, never NaN).
    fn mean_secs(&self) -> f64 {
        let len = self.samples.len().max(1) as f64;
        self.sum as f64 / len / 1e9
    }

    fn mean(&self) -> Duration {
        let len = self.samples.len().max(1) as u128;
        Duration::from_nanos(u64::try_from(self.sum / len).unwrap_or(u64::MAX))
    }

    fn is_live(&self) -> bool {
        self.liveness == Liveness::Live
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// phi accrual over a window of heartbeat inter-arrival times, one window per peer, as a
/// sans-IO state machine.
///
/// # Call order
///
/// The detector never does IO and never reads a clock; the shell (an actor, the simulator, a
/// test) drives it like a quinn `Connection`:
///
/// 1. **Construction**: [`new`](Self::new) with a validated config and the current time.
/// 2. **Inputs**: [`handle_heartbeat`](Self::handle_heartbeat) for every sign of life of a
///    peer (never of the local node), [`handle_timeout`](Self::handle_timeout) when the timer
///    fires. Command: [`remove`](Self::remove) when a peer leaves the cluster.
/// 3. **Outputs**: after *every* input, drain [`poll_event`](Self::poll_event) until `None`,
///    then re-arm the one timer at [`poll_timeout`](Self::poll_timeout) (cancel it if
///    `None`). While any peer is live that is every
///    [`check_interval`](FailureConfig::check_interval); the shell MUST honour it, because
///    the pause guard reads a gap of more than
///    [`acceptable_pause`](FailureConfig::acceptable_pause) between inputs as a stall of the
///    local process and convicts nobody across it. Calling `handle_timeout` early is
///    harmless.
///
/// Getters: [`phi`](Self::phi), [`is_live`](Self::is_live),
/// [`live_peers`](Self::live_peers), [`dead_peers`](Self::dead_peers),
/// [`mean_interval`](Self::mean_interval), [`window_len`](Self::window_len),
/// [`stats`](Self::stats), [`config`](Self::config).
///
/// # Model: the exponential phi
///
/// Hayashibara et al. define φ(t) = −log₁₀ P_later(t), where t is the time since the peer was
/// last heard and P_later(t) the probability that a live peer's next heartbeat comes later
/// than that, estimated from a window of past inter-arrival times. This detector models the
/// inter-arrival time X as exponential with the window's mean μ (as gossipmonger and Cassandra
/// do):
///
/// ```text
/// P_later(t) = P(X > t) = e^(−t/μ)
/// φ(t)       = −log₁₀ e^(−t/μ) = t / (μ · ln 10) ≈ 0.4343 · t/μ     with μ := max(μ, min_mean)
/// φ(t) > Φ   ⇔   t > Φ · ln 10 · μ
/// ```
///
/// So the threshold Φ = 8 means "the chance that a live peer stays this quiet is below 10⁻⁸",
/// reached after 8 · ln 10 ≈ 18.42 mean intervals of silence: **18.42 s at a 1 s interval**.
/// Conviction happens at the first check after the crossing, so with the default 100 ms
/// [`check_interval`](FailureConfig::check_interval) the **detection bound** is
///
/// ```text
/// bound(μ) = Φ · ln 10 · max(μ, min_mean) + check_interval     (FailureConfig::detection_bound)
/// ```
///
/// | heartbeat pattern (defaults) | μ | silence before conviction | bound |
/// |---|---|---|---|
/// | peer heard once (window = `[first_interval]`) | 0.75 s | 13.82 s | 13.92 s |
/// | gossipmonger: a heartbeat every 1 s | 1 s | 18.42 s | 18.52 s |
/// | Scuttlebutt relay: 1 s advances, 1–4 rounds late, overtaken ones skipped | 1.4–1.7 s | 26–31 s | 18.42 μ + 0.1 s |
/// | bursty direct traffic (μ ≪ 0.5 s) | floored at `min_mean` 0.5 s | 9.21 s | 9.31 s |
/// | longest learnable rhythm (every sample at `max_interval`) | 10 s | 184.2 s | 184.3 s |
///
/// For the framework's own pattern — every node gossips once a second and its heartbeat
/// counter's advance reaches a given peer directly or relayed within a few rounds — what the
/// shell reports is each *newer* counter. An advance that arrives after a later one has
/// overtaken it is no heartbeat, so the reports come a little less often than once a second:
/// with delays of 1–4 rounds plus a random phase, the window mean settles at 1.4–1.7 s
/// (test `relayed_scuttlebutt_heartbeats_detection_bound`), the largest phi of a live peer
/// over ten minutes stays near 3.5, and a crashed peer is declared dead about 27 s after its
/// last heartbeat reached us, within [`FailureConfig::detection_bound`] of its mean then.
/// Direct packets from the peer count too and pull the mean toward 1 s (18.5 s); bursts of
/// them cannot pull it below `min_mean` (9.3 s).
///
/// **Why the exponential and not the normal distribution of the paper.** The paper (and Akka,
/// with a logistic approximation of the normal CDF, `1 / (1 + e^(−y(1.5976 + 0.070566 y²)))`)
/// fits a normal distribution with the window's mean and standard deviation. We do not:
///
/// 1. gossipmonger, whose defaults we take, computes exactly the exponential φ
///    (`-log10(e^(-t / intervalsMean))` in gossipmonger-peer's `phi`), as does Cassandra
///    (`PHI_FACTOR · t / mean` in `ArrivalWindow`, `PHI_FACTOR = 1 / ln 10`); the threshold 8
///    keeps their meaning. (chitchat's `phi` is `t / mean`, without the `1 / ln 10`, so its
///    threshold 8 means 8 mean intervals, not 18.4.)
/// 2. Our arrivals are not a period plus Gaussian noise. A heartbeat is any authenticated
///    packet (a push, its ack and a pull arrive milliseconds apart) or a Scuttlebutt heartbeat
///    advance relayed over a random number of rounds: the gaps are skewed, with a long right
///    tail. A normal fit learns a small σ from the regular part and then treats one relay
///    delay as impossible: with μ = 1 s and Akka's 100 ms minimum σ, a 2 s gap is 10σ,
///    φ ≈ 23 with the exact normal tail (≈ 38 with the logistic approximation). The exponential has σ = μ built in and depends only on the mean, which a window
///    mixing bursts and gaps estimates stably.
/// 3. It needs a running sum only (no variance, no erfc approximation), and with the mean
///    floored at [`min_mean`](FailureConfig::min_mean) > 0 nothing can divide by zero or yield
///    NaN: t ≥ 0 is finite and μ > 0, so φ is finite and ≥ 0.
///
/// # Rules
///
/// 1. **Heartbeat** from `node` at `now`. Untracked: it starts being tracked, live, with the
///    window `[first_interval]` and no event (refused and counted at `max_peers`, unless a
///    dead peer can be evicted). Live: the sample `now − last_arrival` is pushed into the
///    window (the oldest dropped beyond `window`) unless it is longer than `max_interval` or
///    spans a local stall; `last_arrival = now`. Dead: it becomes live, emits
///    [`FailureEvent::PeerLive`], and `last_arrival = now`; the silence that got it convicted
///    is not a sample, the rest of its window is kept.
/// 2. **Check** (`handle_timeout(now)`): dead peers dead for `dead_forget_after` are forgotten
///    ([`FailureEvent::PeerForgotten`]); then every live peer whose φ(now) exceeds
///    `phi_threshold` is declared dead ([`FailureEvent::PeerDead`]), in node id order.
/// 3. **Pause guard**. Any input first compares `now` with the previous input. If the gap
///    exceeds [`acceptable_pause`](FailureConfig::acceptable_pause) (default 5 s, Cassandra's
///    `max_local_pause_in_ms`) while a peer is live, the detector itself was not running (the
///    shell is asked for a check every 100 ms): a stall of the local process, during which no
///    peer *could* have been heard. Then:
///    - every peer's `last_arrival` (and a dead peer's conviction time) moves forward by the
///      gap, so the stall does not count as anyone's silence: each peer resumes with the φ it
///      had when the stall began;
///    - each peer's next sample, which would span the stall, is dropped
///      (`samples_discarded_by_pause_guard`): the one late packet that comes in after the
///      stall neither convicts nor poisons the window with a 30 s interval;
///    - a check that detects the stall convicts nobody and forgets nobody.
///
///    A stall shorter than `acceptable_pause` is counted as silence, but validation keeps
///    `acceptable_pause` ≤ Φ · ln 10 · `min_mean`, so such a stall alone never convicts a peer
///    that was heard just before it. The guard is Cassandra's idea (`FailureDetector.interpret`
///    skips a round after a local pause); shifting the clocks instead of only skipping one
///    round also keeps the stall out of the following checks.
///
/// # Bounds
///
/// At most [`max_peers`](FailureConfig::max_peers) peers with at most
/// [`window`](FailureConfig::window) samples each (8 bytes per sample), at most
/// [`event_queue_capacity`](FailureConfig::event_queue_capacity) queued events; everything
/// refused or dropped is counted in [`FailureStats`]. No sequence of inputs can panic the
/// detector, and every φ it reports is finite.
///
/// # Determinism
///
/// Peers are kept in a `BTreeMap` by node id, so events of one check come out in id order and
/// the same inputs give the same outputs.
///
/// # Example
///
/// ```
/// use std::time::{Duration, Instant};
/// use gossip_core::NodeId;
/// use gossip_core::failure::{FailureConfig, FailureDetector, FailureEvent};
///
/// let start = Instant::now();
/// let peer = NodeId([7; 32]);
/// let mut fd = FailureDetector::new(FailureConfig::default(), start)?;
///
/// // The peer is heard every second for two minutes; the shell checks every 100 ms.
/// let mut now = start;
/// for ms in (0..120_000u64).step_by(100) {
///     now = start + Duration::from_millis(ms);
///     if ms % 1_000 == 0 {
///         fd.handle_heartbeat(now, peer);
///     }
///     fd.handle_timeout(now);
///     assert_eq!(fd.poll_event(), None);
/// }
/// assert_eq!(fd.is_live(&peer), Some(true));
///
/// // Then it falls silent: it is declared dead within the documented bound.
/// let last = start + Duration::from_millis(119_000);
/// let bound = fd.config().detection_bound(fd.mean_interval(&peer).unwrap());
/// loop {
///     now = fd.poll_timeout().unwrap();
///     fd.handle_timeout(now);
///     if let Some(FailureEvent::PeerDead { node, phi }) = fd.poll_event() {
///         assert_eq!(node, peer);
///         assert!(phi > 8.0);
///         break;
///     }
/// }
/// assert!(now - last <= bound); // 18.42 s of silence + at most one 100 ms check
/// assert_eq!(fd.is_live(&peer), Some(false));
/// # Ok::<(), gossip_core::ConfigError>(())
/// ```
pub struct FailureDetector {
    config: FailureConfig,
    peers: BTreeMap<NodeId, PeerWindow>,
    /// `(declared dead at, node)` of every dead peer, longest dead first.
    dead_order: BTreeSet<(Instant, NodeId)>,
    events: VecDeque<FailureEvent>,
    /// The latest time passed to any input (never moves backwards).
    last_input: Instant,
    /// When `handle_timeout` last ran (or construction).
    last_check: Instant,
    stats: FailureStats,
}

impl std::fmt::Debug for FailureDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureDetector")
            .field("stats", &self.stats())
            .field("queued_events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl FailureDetector {
    // ----- construction -----

    /// A detector tracking nobody, started at `now`.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` fails [`FailureConfig::validate`]; nothing is built.
    pub fn new(config: FailureConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(FailureDetector {
            config,
            peers: BTreeMap::new(),
            dead_order: BTreeSet::new(),
            events: VecDeque::new(),
            last_input: now,
            last_check: now,
            stats: FailureStats::default(),
        })
    }

    // ----- getters -----

    /// The configuration this detector was built with.
    pub fn config(&self) -> &FailureConfig {
        &self.config
    }

    /// Counters since construction, and the current number of tracked and dead peers.
    pub fn stats(&self) -> FailureStats {
        FailureStats {
            peers_tracked: self.peers.len(),
            peers_dead: self.dead_order.len(),
            ..self.stats
        }
    }

    /// The suspicion level of `node` at `now`: `t / (max(mean, min_mean) · ln 10)`, with `t`
    /// the time since it was last heard (0 if `now` is earlier) and `mean` its window mean.
    /// Finite and ≥ 0; keeps growing for a dead peer. `None` if `node` is not tracked.
    pub fn phi(&self, now: Instant, node: &NodeId) -> Option<f64> {
        self.peers.get(node).map(|peer| self.phi_of(now, peer))
    }

    /// Whether `node` is live (`Some(true)`), declared dead (`Some(false)`) or not tracked
    /// (`None`).
    pub fn is_live(&self, node: &NodeId) -> Option<bool> {
        self.peers.get(node).map(PeerWindow::is_live)
    }

    /// The live peers, in node id order.
    pub fn live_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.is_live())
            .map(|(node, _)| *node)
    }

    /// The peers declared dead and not yet forgotten, in node id order.
    pub fn dead_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| !p.is_live())
            .map(|(node, _)| *node)
    }

    /// The mean of `node`'s window (before the `min_mean` floor), to the nanosecond; `None`
    /// if not tracked.
    pub fn mean_interval(&self, node: &NodeId) -> Option<Duration> {
        self.peers.get(node).map(PeerWindow::mean)
    }

    /// Samples in `node`'s window (1 ..= `window`, counting the initial `first_interval`);
    /// `None` if not tracked.
    pub fn window_len(&self, node: &NodeId) -> Option<usize> {
        self.peers.get(node).map(|p| p.samples.len())
    }

    // ----- inputs -----

    /// Input: a sign of life of `node` at `now`: any authenticated packet it sealed, or news
    /// that its Scuttlebutt heartbeat counter advanced (relayed by gossip). The shell MUST NOT
    /// pass the local node's own id.
    ///
    /// Applies rule 1 of the [type doc](Self) after the pause guard (rule 3). An untracked
    /// node starts being tracked, live and silently, if there is room.
    pub fn handle_heartbeat(&mut self, now: Instant, node: NodeId) {
        self.pause_guard(now);
        let window = self.config.window;
        let max_interval = nanos(self.config.max_interval);
        let Some(peer) = self.peers.get_mut(&node) else {
            self.start_tracking(now, node);
            return;
        };
        self.stats.heartbeats += 1;
        if let Liveness::Dead { since } = peer.liveness {
            peer.liveness = Liveness::Live;
            peer.skip_next_sample = false;
            peer.last_arrival = peer.last_arrival.max(now);
            self.dead_order.remove(&(since, node));
            self.stats.revivals += 1;
            self.queue_event(FailureEvent::PeerLive { node });
            return;
        }
        if now < peer.last_arrival {
            self.stats.out_of_order += 1;
            return;
        }
        let sample = nanos(now.saturating_duration_since(peer.last_arrival));
        peer.last_arrival = now;
        if std::mem::take(&mut peer.skip_next_sample) {
            self.stats.samples_discarded_by_pause_guard += 1;
        } else if sample > max_interval {
            self.stats.samples_over_max_interval += 1;
        } else {
            peer.push(sample, window);
            self.stats.samples += 1;
        }
    }

    /// Input: the timer armed at [`poll_timeout`](Self::poll_timeout) fired at `now`.
    ///
    /// Runs the pause guard (rule 3), and unless it detected a stall, forgets the peers dead
    /// for `dead_forget_after` and convicts every live peer whose phi exceeds the threshold
    /// (rule 2).
    pub fn handle_timeout(&mut self, now: Instant) {
        let stalled = self.pause_guard(now);
        self.last_check = self.last_check.max(now);
        if stalled {
            return;
        }
        self.forget_expired(now);
        let threshold = self.config.phi_threshold;
        let convicted: Vec<(NodeId, f64)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.is_live())
            .map(|(node, p)| (*node, self.phi_of(now, p)))
            .filter(|(_, phi)| *phi > threshold)
            .collect();
        for (node, phi) in convicted {
            if let Some(peer) = self.peers.get_mut(&node) {
                peer.liveness = Liveness::Dead { since: now };
                peer.skip_next_sample = false;
                self.dead_order.insert((now, node));
                self.stats.convictions += 1;
                self.queue_event(FailureEvent::PeerDead { node, phi });
            }
        }
    }

    // ----- commands -----

    /// Command: stop tracking `node` (it left the cluster). No event; a later heartbeat tracks
    /// it again as a new peer. Nothing happens if it is not tracked.
    pub fn remove(&mut self, node: &NodeId) {
        if let Some(peer) = self.peers.remove(node) {
            if let Liveness::Dead { since } = peer.liveness {
                self.dead_order.remove(&(since, *node));
            }
            self.stats.removed += 1;
        }
    }

    // ----- outputs -----

    /// Output: the next event, oldest first; `None` when the queue is empty.
    pub fn poll_event(&mut self) -> Option<FailureEvent> {
        self.events.pop_front()
    }

    /// Output: when to call [`handle_timeout`](Self::handle_timeout) next. While any peer is
    /// live: `check_interval` after the last check (in the past if no check ran for a while:
    /// fire at once). Otherwise the moment the longest-dead peer is due to be forgotten, or
    /// `None` when nobody is tracked.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let forget = self.dead_order.first().map(|(since, _)| {
            since
                .checked_add(self.config.dead_forget_after)
                .unwrap_or(*since)
        });
        let check = (self.peers.len() > self.dead_order.len()).then(|| {
            self.last_check
                .checked_add(self.config.check_interval)
                .unwrap_or(self.last_check)
        });
        [check, forget].into_iter().flatten().min()
    }

    // ----- internals -----

    fn phi_of(&self, now: Instant, peer: &PeerWindow) -> f64 {
        let elapsed = now
            .saturating_duration_since(peer.last_arrival)
            .as_secs_f64();
        let mean = peer.mean_secs().max(self.config.min_mean.as_secs_f64());
        // mean ≥ min_mean > 0 (validated) and elapsed is finite and ≥ 0: finite, never NaN.
        elapsed / (mean * LN_10)
    }

    /// Rule 3. Returns `true` if a stall was detected at this input.
    fn pause_guard(&mut self, now: Instant) -> bool {
        let gap = now.saturating_duration_since(self.last_input);
        self.last_input = self.last_input.max(now);
        if gap <= self.config.acceptable_pause || self.peers.len() == self.dead_order.len() {
            return false;
        }
        self.stats.stalls_detected += 1;
        self.stats.stalled_time = self.stats.stalled_time.saturating_add(gap);
        let shift = |t: Instant| t.checked_add(gap).map_or(now, |s| s.min(now));
        self.dead_order.clear();
        for (node, peer) in &mut self.peers {
            peer.last_arrival = shift(peer.last_arrival);
            peer.skip_next_sample = true;
            if let Liveness::Dead { since } = peer.liveness {
                let since = shift(since);
                peer.liveness = Liveness::Dead { since };
                self.dead_order.insert((since, *node));
            }
        }
        true
    }

    fn start_tracking(&mut self, now: Instant, node: NodeId) {
        if self.peers.len() >= self.config.max_peers {
            let Some((_, evicted)) = self.dead_order.pop_first() else {
                self.stats.refused += 1;
                return;
            };
            self.peers.remove(&evicted);
            self.stats.dead_evicted += 1;
            self.queue_event(FailureEvent::PeerForgotten { node: evicted });
        }
        self.peers
            .insert(node, PeerWindow::new(now, self.config.first_interval));
        self.stats.peers_added += 1;
        self.stats.heartbeats += 1;
    }

    fn forget_expired(&mut self, now: Instant) {
        while let Some(&(since, node)) = self.dead_order.first() {
            if now.saturating_duration_since(since) < self.config.dead_forget_after {
                break;
            }
            self.dead_order.pop_first();
            self.peers.remove(&node);
            self.stats.forgotten += 1;
            self.queue_event(FailureEvent::PeerForgotten { node });
        }
    }

    fn queue_event(&mut self, event: FailureEvent) {
        if self.events.len() >= self.config.event_queue_capacity {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }
}
