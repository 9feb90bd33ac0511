//! The simulation harness: N real nodes on one [`SimNetwork`], in one actix system, on tokio's
//! paused clock, driven by one seed, summarised as a [`SimReport`].
//!
//! # Model
//!
//! [`run`] starts `nodes` nodes at deterministic addresses (`10.a.b.c:7000`) on a simulated
//! network whose links have a latency drawn from `latency_min..=latency_max` and a loss
//! probability. Every random choice comes from the scenario's one seed: the network's
//! generator, each node's seed (`seed` mixed with the node's index and incarnation), the join
//! seeds, the senders, and which nodes crash. Collections whose order reaches the report are
//! `BTreeMap`s or vectors indexed by node, so the same seed gives the same report, apart from
//! [`SimReport::wall_s`] and [`SimReport::peak_rss_mb`] (compare [`SimReport::deterministic`]).
//!
//! ```text
//!  warm-up (CYCLON joins, trees form) | crash X% | message 1 | message 2 | ... | settle
//!                                               <- one cycle -> (churn at each cycle start)
//! ```
//!
//! Each message gets a window of `message_interval` (one gossip cycle by default). The
//! traffic of a window is attributed to the messages sent in it: payload copies received
//! (`PushMessage` + `PullResponse` datagrams for broadcasts, feed messages in received
//! batches for trees) give the RMR of that window, control datagrams (`PushAck`, `PullSync`,
//! `PullRequest`; or tree `Notes`) give the control cost per broadcast.
//!
//! # Clock
//!
//! The caller runs [`run`] inside an actix system on a current-thread tokio runtime whose
//! clock is paused (`tokio::time::pause()` in an `#[actix::test]`, or a runtime built with
//! `start_paused(true)`): simulated time then advances only when every actor is idle. [`run`]
//! checks this first and refuses with [`SimError::ClockNotPaused`] otherwise.
//!
//! # Measures
//!
//! See the fields of [`SimReport`]; each says what it counts. Hops: a broadcast carries its
//! hop count, so `ldh_max` is exact in broadcast mode; feed messages carry none (and the tree
//! shell does not expose which peer pushed a message), so in tree mode `ldh_max` is `None`:
//! delivery times cannot bound it either, since notes rounds and source timeouts add delays
//! that are not link latencies.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use gossip_core::feed::FeedId;
use gossip_core::{MessageId, NodeId, PacketType};
use gossip_crypto::{Key, Keyring};
use gossip_net::sim::{PacketTypeKey, SimConfig, SimNetwork};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::discovery::CyclonDiscovery;
use crate::dissemination::NodeEvent;
use crate::node::{Node, NodeConfig, NodeHandle, Protocols};

/// How messages spread in a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SimMode {
    /// Push / ack / pull-sync broadcast ([`NodeHandle::broadcast`]).
    Broadcast,
    /// Signed feeds over per-feed broadcast trees ([`NodeHandle::publish`]); every node
    /// follows the senders' feeds.
    Tree,
    /// No messages: CYCLON membership (and failure detection when `detect` is set) only.
    Membership,
}

/// Who sends the messages of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SimSenders {
    /// Node 0 sends every message.
    Single,
    /// Each message from a node drawn at random (drawn before the run among nodes that never
    /// crash).
    Random,
    /// Every live node sends one message per round (`messages` rounds).
    All,
}

/// One simulation: the network, the nodes, the faults and the traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct SimScenario {
    /// Number of nodes at the start (at least 2).
    pub nodes: usize,
    /// The one seed behind every random choice.
    pub seed: u64,
    /// How messages spread.
    pub mode: SimMode,
    /// Who sends.
    pub senders: SimSenders,
    /// Message rounds (for [`SimSenders::All`], each round is one message per live node).
    pub messages: usize,
    /// Time between rounds, the window each round is measured in: one gossip cycle (1 s).
    pub message_interval: Duration,
    /// Simulated time before the first message, for membership and trees to form.
    pub warmup: Duration,
    /// Simulated time after the last round before counting (repair of late losses).
    pub settle: Duration,
    /// Smallest one-way link latency.
    pub latency_min: Duration,
    /// Largest one-way link latency.
    pub latency_max: Duration,
    /// Probability that a datagram is lost, `0.0..=1.0`.
    pub loss: f64,
    /// Fraction of nodes (never a sender) that crash at once just before the first message.
    pub crash_fraction: f64,
    /// Nodes that crash at the start of each round; the ones crashed a round earlier restart
    /// (a fresh identity at the same address) at the same time.
    pub churn_per_cycle: usize,
    /// Push fanout (broadcast mode).
    pub fanout: usize,
    /// Recovery by pull-sync (ack timeouts and anti-entropy) in broadcast mode. `false`
    /// leaves pure push, to measure what the push phase alone reaches.
    pub pull: bool,
    /// Run the state protocol and failure detector, and measure detection.
    pub detect: bool,
    /// Seal datagrams with AES-256-GCM (`false`: plaintext, which is faster).
    pub encrypted: bool,
    /// Bytes of each message's payload.
    pub payload_len: usize,
    /// CYCLON seeds each joining node is given (drawn from the nodes before it).
    pub join_seeds: usize,
    /// Events buffered per node for the harness (a lagging collector counts in
    /// [`SimReport::events_lagged`]).
    pub event_capacity: usize,
}

impl Default for SimScenario {
    fn default() -> Self {
        SimScenario {
            nodes: 100,
            seed: 1,
            mode: SimMode::Tree,
            senders: SimSenders::Single,
            messages: 10,
            message_interval: Duration::from_secs(1),
            warmup: Duration::from_secs(15),
            settle: Duration::from_secs(10),
            latency_min: Duration::from_millis(10),
            latency_max: Duration::from_millis(50),
            loss: 0.0,
            crash_fraction: 0.0,
            churn_per_cycle: 0,
            fanout: 3,
            pull: true,
            detect: false,
            encrypted: false,
            payload_len: 64,
            join_seeds: 3,
            event_capacity: 256,
        }
    }
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The tokio clock is not paused, so simulated time would be real time.
    #[error(
        "the tokio clock is not paused: call tokio::time::pause() or build the runtime with start_paused(true)"
    )]
    ClockNotPaused,
    /// The scenario is out of bounds.
    #[error("invalid scenario (seed {seed}): {reason}")]
    Scenario {
        /// The seed of the run.
        seed: u64,
        /// What is wrong.
        reason: String,
    },
    /// A node failed to start or answer.
    #[error("seed {seed}: node {node}: {reason}")]
    Node {
        /// The seed of the run.
        seed: u64,
        /// The node's index.
        node: usize,
        /// The error.
        reason: String,
    },
}

/// What a run measured. Every field but `wall_s` and `peak_rss_mb` is a function of the
/// scenario (its seed included). Fractions are in `0.0..=1.0`, times in simulated
/// milliseconds unless named otherwise; `None` (JSON `null`) where a measure does not apply.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimReport {
    /// Nodes at the start.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Dissemination mode.
    pub mode: SimMode,
    /// Who sent.
    pub senders: SimSenders,
    /// Messages sent in all.
    pub messages: usize,
    /// Push fanout (broadcast mode).
    pub fanout: usize,
    /// Link latency range `[min, max]`, ms.
    pub latency_ms: [u64; 2],
    /// Loss probability of every link.
    pub loss: f64,
    /// Fraction of nodes crashed at once before the first message.
    pub crash_fraction: f64,
    /// Nodes crashed (and as many restarted) per cycle.
    pub churn_per_cycle: usize,
    /// Whether pull-sync repair ran (broadcast mode).
    pub pull: bool,
    /// Whether datagrams were sealed with AES-256-GCM (`false`: plaintext).
    pub encrypted: bool,
    /// Min over messages of the fraction of nodes live from the message's send to the end of
    /// the run (the incarnation up before the send) that delivered it.
    pub reliability: Option<f64>,
    /// Mean over messages of the same fraction.
    pub reliability_mean: Option<f64>,
    /// RMR of the first round: payload copies received / (live nodes − 1) − 1, per message.
    pub rmr_first: Option<f64>,
    /// RMR over rounds 3 onwards together (or the last round when fewer than 3).
    pub rmr_steady: Option<f64>,
    /// RMR of each round.
    pub rmr_per_round: Vec<f64>,
    /// Control datagrams sent per message, mean over rounds: `PushAck` + `PullSync` +
    /// `PullRequest` (broadcast), `Notes` (tree).
    pub control_per_broadcast: Option<f64>,
    /// Last delivery hop: largest hop of any delivery (broadcast mode only).
    pub ldh_max: Option<u32>,
    /// Median over messages of the time from send to the last delivery.
    pub last_delivery_ms_p50: Option<u64>,
    /// 99th percentile of the same.
    pub last_delivery_ms_p99: Option<u64>,
    /// Maximum of the same.
    pub last_delivery_ms_max: Option<u64>,
    /// For the first message: fraction of its live set delivered within 300 ms (the ack
    /// timeout, before ack-driven pull-sync can act).
    pub first_reach_300ms: Option<f64>,
    /// For the first message: fraction delivered within one gossip cycle (1,000 ms).
    pub first_reach_1s: Option<f64>,
    /// For the first message: fraction delivered by the end of the run.
    pub first_reach_final: Option<f64>,
    /// Bytes sent per live node per simulated second, from the first message to the end
    /// (from the start of the run in membership mode), all packet types.
    pub bytes_per_node_per_s: f64,
    /// Largest time from a crash to a survivor's `PeerDead` about the crashed node.
    pub detection_ms_max: Option<u64>,
    /// `PeerDead` events about crashed nodes.
    pub detections: u64,
    /// `PeerDead` events about nodes that were live at the time.
    pub false_dead: u64,
    /// Standard deviation of the in-degree of live nodes in the CYCLON views at the end.
    pub in_degree_stddev: f64,
    /// Mean of the same in-degree.
    pub in_degree_mean: f64,
    /// Nodes crashed in all (at once and by churn).
    pub crashed: usize,
    /// Nodes restarted by churn.
    pub restarted: usize,
    /// Nodes live at the end.
    pub live_at_end: usize,
    /// Events the harness missed because a collector lagged (should be 0).
    pub events_lagged: u64,
    /// Fraction of the live set that has delivered, by time since send, averaged over
    /// messages: `[ms, fraction]` every 10 ms up to the latest last delivery.
    pub delivery_curve: Vec<[f64; 2]>,
    /// Simulated seconds of the whole run.
    pub sim_s: f64,
    /// Wall-clock seconds of the run (not reproducible).
    pub wall_s: f64,
    /// Peak resident memory of the process so far, MiB (`VmHWM`; not reproducible).
    pub peak_rss_mb: f64,
}

impl SimReport {
    /// The report with the two non-reproducible fields (`wall_s`, `peak_rss_mb`) zeroed: equal
    /// for two runs of one scenario.
    pub fn deterministic(&self) -> SimReport {
        SimReport {
            wall_s: 0.0,
            peak_rss_mb: 0.0,
            ..self.clone()
        }
    }
}

/// Where a run is, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimProgress {
    /// `"start"`, `"warmup"`, `"messages"`, `"settle"`, `"collect"` or `"done"`.
    pub phase: &'static str,
    /// Steps of the phase done.
    pub done: usize,
    /// Steps of the phase in all.
    pub total: usize,
    /// Simulated milliseconds since the start.
    pub sim_ms: u64,
}

/// The simulated address of node `i`: `10.a.b.c:7000`.
pub fn sim_addr(i: usize) -> SocketAddr {
    let i = i as u32;
    let c = (i % 250) as u8 + 1;
    let b = ((i / 250) % 250) as u8;
    let a = (i / 62_500) as u8 + 1;
    SocketAddr::from(([10, a, b, c], 7000))
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A message's identity as a node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MsgKey {
    Broadcast(MessageId),
    Feed(FeedId, u64),
}

#[derive(Default)]
struct NodeLog {
    /// (message, ms since start, hop) in delivery order.
    deliveries: Vec<(MsgKey, u64, Option<u16>)>,
    /// (subject, ms since start) of each `PeerDead`.
    dead: Vec<(NodeId, u64)>,
    lagged: u64,
}

struct SimNode {
    handle: Option<NodeHandle>,
    /// Incarnation (0 at start, +1 per restart).
    incarnation: u64,
    up_since_ms: u64,
    down_at_ms: Option<u64>,
    log: Rc<RefCell<NodeLog>>,
    collectors: Vec<tokio::task::JoinHandle<()>>,
}

struct Sent {
    key: MsgKey,
    at_ms: u64,
}

/// Counters summed over the network at one instant.
#[derive(Clone, Copy, Default)]
struct Totals {
    copies: u64,
    control: u64,
    bytes_sent: u64,
}

struct Sim<'a> {
    scenario: &'a SimScenario,
    network: SimNetwork,
    keyring: Keyring,
    start: Instant,
    nodes: Vec<SimNode>,
    /// node id → (index, incarnation)
    ids: BTreeMap<NodeId, (usize, u64)>,
    follow: Vec<FeedId>,
    rng: StdRng,
}

fn elapsed_ms(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

impl Sim<'_> {
    fn now_ms(&self) -> u64 {
        elapsed_ms(self.start)
    }

    fn node_config(&self) -> NodeConfig {
        let s = self.scenario;
        let mut config = NodeConfig {
            protocols: Protocols {
                dissemination: s.mode == SimMode::Broadcast,
                state: s.detect,
                feeds: s.mode == SimMode::Tree,
            },
            event_capacity: s.event_capacity.max(16),
            ..NodeConfig::default()
        };
        config.dissemination.fanout = s.fanout;
        config.dissemination.acks_needed = s.fanout / 2 + 1;
        config.dissemination.pull_sync_peers = 2 * s.fanout;
        if !s.pull {
            // Pure push: no ack-driven pull-sync within the run, no anti-entropy.
            config.dissemination.ack_timeout = Duration::from_secs(3_600);
            config.dissemination.anti_entropy_interval = Duration::from_secs(3_600);
        }
        config
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].handle.is_some())
            .collect()
    }

    async fn start_node(&mut self, i: usize, seeds: Vec<SocketAddr>) -> Result<(), SimError> {
        let s = self.scenario;
        let incarnation = self.nodes.get(i).map_or(0, |n| n.incarnation + 1);
        let node_seed = s
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add((i as u64) << 20)
            .wrapping_add(incarnation);
        let start = self.start;
        let builder = Node::builder()
            .network(&self.network)
            .bind(sim_addr(i))
            .discovery(CyclonDiscovery::new(seeds))
            .rng_seed(node_seed)
            .wall_clock(Arc::new(move || {
                1_700_000_000_000 + start.elapsed().as_millis() as u64
            }))
            .config(self.node_config());
        let builder = if s.encrypted {
            builder.keyring(self.keyring.clone())
        } else {
            builder.plaintext()
        };
        let handle = builder.start().await.map_err(|e| SimError::Node {
            seed: s.seed,
            node: i,
            reason: e.to_string(),
        })?;
        for feed in &self.follow {
            if *feed != handle.feed_id() {
                handle.follow(*feed).await.map_err(|e| SimError::Node {
                    seed: s.seed,
                    node: i,
                    reason: e.to_string(),
                })?;
            }
        }
        self.ids.insert(handle.node_id(), (i, incarnation));
        let now = self.now_ms();
        if i == self.nodes.len() {
            self.nodes.push(SimNode {
                handle: None,
                incarnation,
                up_since_ms: now,
                down_at_ms: None,
                log: Rc::new(RefCell::new(NodeLog::default())),
                collectors: Vec::new(),
            });
        }
        let node = &mut self.nodes[i];
        node.incarnation = incarnation;
        node.up_since_ms = now;
        node.down_at_ms = None;
        let mut events = handle.subscribe();
        let log = Rc::clone(&node.log);
        node.collectors.push(actix::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::Delivered(d)) => {
                        let at = elapsed_ms(start);
                        log.borrow_mut().deliveries.push((
                            MsgKey::Broadcast(d.id),
                            at,
                            Some(d.hop),
                        ));
                    }
                    Ok(NodeEvent::FeedMessage(m)) => {
                        let at = elapsed_ms(start);
                        log.borrow_mut().deliveries.push((
                            MsgKey::Feed(m.author, m.sequence),
                            at,
                            None,
                        ));
                    }
                    Ok(NodeEvent::PeerDead { node }) => {
                        let at = elapsed_ms(start);
                        log.borrow_mut().dead.push((node, at));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => log.borrow_mut().lagged += n,
                    Err(RecvError::Closed) => break,
                }
            }
        }));
        node.handle = Some(handle);
        Ok(())
    }

    async fn crash(&mut self, i: usize) {
        self.network.crash(sim_addr(i));
        let now = self.now_ms();
        let node = &mut self.nodes[i];
        if let Some(handle) = node.handle.take() {
            let _ = handle.shutdown().await;
        }
        node.down_at_ms = Some(now);
        for c in node.collectors.drain(..) {
            c.abort();
        }
    }

    /// Payload copies received, control datagrams sent, bytes sent, over every address.
    async fn totals(&self) -> Totals {
        let mut t = Totals::default();
        let known = |k: PacketType| PacketTypeKey::Known(k);
        for (i, node) in self.nodes.iter().enumerate() {
            let c = self.network.counters(&sim_addr(i));
            t.bytes_sent += c.bytes_sent();
            let sent = |k| c.sent.get(&known(k)).copied().unwrap_or(0);
            let received = |k| c.received.get(&known(k)).copied().unwrap_or(0);
            match self.scenario.mode {
                SimMode::Broadcast => {
                    t.copies +=
                        received(PacketType::PushMessage) + received(PacketType::PullResponse);
                    t.control += sent(PacketType::PushAck)
                        + sent(PacketType::PullSync)
                        + sent(PacketType::PullRequest);
                }
                SimMode::Tree => {
                    t.control += sent(PacketType::TreeNotes);
                    if let Some(handle) = &node.handle
                        && let Ok(stats) = handle.stats().await
                    {
                        t.copies += stats.feeds.core.messages_received;
                    }
                }
                SimMode::Membership => {}
            }
        }
        // Copies received by nodes that crashed since are lost from the per-node stats;
        // the network counters above keep theirs. Tree copies are counted by live nodes
        // only, and windows are deltas, so a crash inside a window can only lower a window.
        t
    }
}

/// Runs `scenario` on the current actix system, whose tokio clock must be paused (see the
/// module docs), calling `progress` as it goes.
///
/// # Errors
/// [`SimError::ClockNotPaused`] when the clock runs in real time; [`SimError::Scenario`] for a
/// scenario out of bounds; [`SimError::Node`] when a node fails to start. Each names the seed.
pub async fn run(
    scenario: &SimScenario,
    mut progress: impl FnMut(SimProgress),
) -> Result<SimReport, SimError> {
    let wall = std::time::Instant::now();
    // A paused clock jumps over this sleep at once; a running one takes a wall second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if wall.elapsed() >= Duration::from_millis(900) {
        return Err(SimError::ClockNotPaused);
    }
    let s = scenario;
    let bad = |reason: &str| SimError::Scenario {
        seed: s.seed,
        reason: reason.to_owned(),
    };
    if s.nodes < 2 || s.nodes > 250 * 250 * 4 {
        return Err(bad("nodes must be in 2..=250,000"));
    }
    if !(0.0..=1.0).contains(&s.loss) || !(0.0..1.0).contains(&s.crash_fraction) {
        return Err(bad("loss must be in 0..=1 and crash_fraction in 0..1"));
    }
    if s.latency_min > s.latency_max || s.latency_max.is_zero() {
        return Err(bad(
            "latency_min must be at most latency_max, which must be positive",
        ));
    }
    if s.fanout == 0 {
        return Err(bad("fanout must be positive"));
    }
    if s.mode == SimMode::Tree && s.senders == SimSenders::All && s.nodes > 1_000 {
        return Err(bad(
            "tree mode with all senders follows every feed: at most 1,000 nodes",
        ));
    }

    let mut rng = StdRng::seed_from_u64(s.seed ^ 0x5EED_F511_u64);
    let network = SimNetwork::new(SimConfig {
        latency_min: s.latency_min,
        latency_max: s.latency_max,
        loss: s.loss,
        seed: s.seed,
        ..SimConfig::default()
    });
    let messages = if s.mode == SimMode::Membership {
        0
    } else {
        s.messages
    };

    // Who sends what, decided before anything runs.
    let plan: Vec<Vec<usize>> = (0..messages)
        .map(|_| match s.senders {
            SimSenders::Single => vec![0],
            SimSenders::Random => vec![rng.random_range(0..s.nodes)],
            SimSenders::All => (0..s.nodes).collect(),
        })
        .collect();
    let mut protected: BTreeSet<usize> = plan.iter().flatten().copied().collect();
    if s.senders == SimSenders::All {
        protected = BTreeSet::from([0]);
    }
    let candidates: Vec<usize> = (0..s.nodes).filter(|i| !protected.contains(i)).collect();
    let crash_count = ((s.nodes as f64 * s.crash_fraction).round() as usize).min(candidates.len());
    if s.churn_per_cycle * 2 + crash_count > candidates.len() {
        return Err(bad(
            "not enough non-sender nodes for the crashes and churn asked",
        ));
    }

    let mut sim = Sim {
        scenario: s,
        network,
        keyring: Keyring::new(Key::from_bytes([7; 32])),
        start: Instant::now(),
        nodes: Vec::with_capacity(s.nodes),
        ids: BTreeMap::new(),
        follow: Vec::new(),
        rng,
    };

    // Start the nodes; each joins through up to `join_seeds` random earlier nodes.
    for i in 0..s.nodes {
        let mut seeds: Vec<SocketAddr> = Vec::new();
        if i > 0 {
            for _ in 0..s.join_seeds.max(1) {
                let j = sim.rng.random_range(0..i);
                if !seeds.contains(&sim_addr(j)) {
                    seeds.push(sim_addr(j));
                }
            }
        }
        sim.start_node(i, seeds).await?;
        if i % 500 == 0 || i + 1 == s.nodes {
            progress(SimProgress {
                phase: "start",
                done: i + 1,
                total: s.nodes,
                sim_ms: sim.now_ms(),
            });
        }
    }
    // Tree mode: every node follows the senders' feeds (their ids are known only now).
    if s.mode == SimMode::Tree {
        let senders: BTreeSet<usize> = plan.iter().flatten().copied().collect();
        sim.follow = senders
            .iter()
            .filter_map(|&i| sim.nodes[i].handle.as_ref().map(|h| h.feed_id()))
            .collect();
        for i in 0..s.nodes {
            let Some(handle) = sim.nodes[i].handle.clone() else {
                continue;
            };
            for feed in &sim.follow {
                if *feed != handle.feed_id() {
                    handle.follow(*feed).await.map_err(|e| SimError::Node {
                        seed: s.seed,
                        node: i,
                        reason: e.to_string(),
                    })?;
                }
            }
        }
    }

    let warm_steps = s.warmup.as_secs().max(1);
    for step in 0..warm_steps {
        tokio::time::sleep(s.warmup / warm_steps as u32).await;
        progress(SimProgress {
            phase: "warmup",
            done: step as usize + 1,
            total: warm_steps as usize,
            sim_ms: sim.now_ms(),
        });
    }

    // X% crash at once.
    let mut crash_times: BTreeMap<(usize, u64), u64> = BTreeMap::new();
    let mut pool = candidates.clone();
    pool.shuffle(&mut sim.rng);
    let victims: Vec<usize> = pool.drain(..crash_count).collect();
    let mut crashed = 0;
    for &v in &victims {
        crash_times.insert((v, sim.nodes[v].incarnation), sim.now_ms());
        sim.crash(v).await;
        crashed += 1;
    }

    let measure_from = sim.now_ms();
    let totals_start = sim.totals().await;
    let mut sent: Vec<Sent> = Vec::new();
    let mut windows: Vec<(Totals, Totals, usize, usize)> = Vec::new(); // (before, after, messages, live)
    let mut churned_last: Vec<usize> = Vec::new();
    let mut restarted = 0;
    let payload = vec![0x5A_u8; s.payload_len];
    let rounds = if s.mode == SimMode::Membership {
        0
    } else {
        messages
    };
    for (round, round_plan) in plan.iter().enumerate().take(rounds) {
        // Churn: the ones crashed a cycle ago restart, `churn_per_cycle` others crash.
        if s.churn_per_cycle > 0 {
            let mut live_pool: Vec<usize> = pool
                .iter()
                .copied()
                .filter(|&i| sim.nodes[i].handle.is_some())
                .collect();
            live_pool.shuffle(&mut sim.rng);
            let now_crash: Vec<usize> = live_pool.into_iter().take(s.churn_per_cycle).collect();
            for &v in &now_crash {
                crash_times.insert((v, sim.nodes[v].incarnation), sim.now_ms());
                sim.crash(v).await;
                crashed += 1;
            }
            for &r in &churned_last {
                let live = sim.live();
                let mut seeds = Vec::new();
                for _ in 0..s.join_seeds.max(1) {
                    seeds.push(sim_addr(live[sim.rng.random_range(0..live.len())]));
                }
                sim.start_node(r, seeds).await?;
                restarted += 1;
            }
            churned_last = now_crash;
        }
        let before = sim.totals().await;
        let senders: Vec<usize> = round_plan
            .iter()
            .copied()
            .filter(|&i| sim.nodes[i].handle.is_some())
            .collect();
        let live_now = sim.live().len();
        for &i in &senders {
            let Some(handle) = sim.nodes[i].handle.clone() else {
                continue;
            };
            let at_ms = sim.now_ms();
            let key = match s.mode {
                SimMode::Broadcast => {
                    let id =
                        handle
                            .broadcast(payload.clone())
                            .await
                            .map_err(|e| SimError::Node {
                                seed: s.seed,
                                node: i,
                                reason: e.to_string(),
                            })?;
                    MsgKey::Broadcast(id)
                }
                _ => {
                    let p = handle
                        .publish(payload.clone())
                        .await
                        .map_err(|e| SimError::Node {
                            seed: s.seed,
                            node: i,
                            reason: e.to_string(),
                        })?;
                    MsgKey::Feed(handle.feed_id(), p.sequence)
                }
            };
            sent.push(Sent { key, at_ms });
        }
        tokio::time::sleep(s.message_interval).await;
        let after = sim.totals().await;
        windows.push((before, after, senders.len(), live_now));
        progress(SimProgress {
            phase: "messages",
            done: round + 1,
            total: rounds,
            sim_ms: sim.now_ms(),
        });
    }
    let settle_steps = s.settle.as_secs().max(1);
    for step in 0..settle_steps {
        tokio::time::sleep(s.settle / settle_steps as u32).await;
        progress(SimProgress {
            phase: "settle",
            done: step as usize + 1,
            total: settle_steps as usize,
            sim_ms: sim.now_ms(),
        });
    }
    let end_ms = sim.now_ms();
    let totals_end = sim.totals().await;

    // Deliveries: per message, the first delivery time and hop at each node.
    let index: BTreeMap<MsgKey, usize> = sent.iter().enumerate().map(|(k, m)| (m.key, k)).collect();
    let mut first: Vec<BTreeMap<usize, (u64, Option<u16>)>> = vec![BTreeMap::new(); sent.len()];
    let mut lagged = 0;
    for (i, node) in sim.nodes.iter().enumerate() {
        let log = node.log.borrow();
        lagged += log.lagged;
        for (key, at, hop) in &log.deliveries {
            if let Some(&k) = index.get(key) {
                first[k].entry(i).or_insert((*at, *hop));
            }
        }
    }
    let mut reliabilities = Vec::new();
    let mut last_delivery = Vec::new();
    let mut ldh: Option<u32> = None;
    let mut per_message_times: Vec<(Vec<u64>, f64)> = Vec::new();
    let mut first_reach = (None, None, None);
    for (k, m) in sent.iter().enumerate() {
        // The live set: incarnations up before the send and still up at the end.
        let live_set: Vec<usize> = (0..sim.nodes.len())
            .filter(|&i| {
                let n = &sim.nodes[i];
                n.handle.is_some() && n.up_since_ms <= m.at_ms
            })
            .collect();
        if live_set.is_empty() {
            continue;
        }
        let mut times = Vec::new();
        let mut last = 0;
        for &i in &live_set {
            if let Some(&(at, hop)) = first[k].get(&i) {
                let dt = at.saturating_sub(m.at_ms);
                times.push(dt);
                last = last.max(dt);
                if let Some(h) = hop {
                    ldh = Some(ldh.unwrap_or(0).max(u32::from(h)));
                }
            }
        }
        let total = live_set.len() as f64;
        reliabilities.push(times.len() as f64 / total);
        last_delivery.push(last);
        if k == 0 {
            let within = |ms: u64| times.iter().filter(|&&t| t <= ms).count() as f64 / total;
            first_reach = (
                Some(within(300)),
                Some(within(1_000)),
                Some(times.len() as f64 / total),
            );
        }
        per_message_times.push((times, total));
    }
    let n_msgs = reliabilities.len().max(1) as f64;
    // At most 101 points, on a step that is a multiple of 10 ms.
    let latest = last_delivery.iter().copied().max().unwrap_or(0);
    let step = latest.div_ceil(100).div_ceil(10).max(1) * 10;
    let delivery_curve: Vec<[f64; 2]> = (0..=latest.div_ceil(step))
        .map(|b| {
            let at = b * step;
            let sum: f64 = per_message_times
                .iter()
                .map(|(times, total)| times.iter().filter(|&&t| t <= at).count() as f64 / total)
                .sum();
            [at as f64, round4(sum / n_msgs)]
        })
        .collect();

    // RMR and control per window.
    let rmr_of = |copies: u64, msgs: usize, live: usize| -> f64 {
        let needed = (msgs * live.saturating_sub(1)) as f64;
        if needed == 0.0 {
            0.0
        } else {
            copies as f64 / needed - 1.0
        }
    };
    let rmr_per_round: Vec<f64> = windows
        .iter()
        .map(|(b, a, msgs, live)| round4(rmr_of(a.copies - b.copies, *msgs, *live)))
        .collect();
    let rmr_steady = if windows.is_empty() {
        None
    } else {
        let from = if windows.len() >= 3 {
            2
        } else {
            windows.len() - 1
        };
        let (mut copies, mut needed) = (0u64, 0usize);
        for (b, a, msgs, live) in &windows[from..] {
            copies += a.copies - b.copies;
            needed += msgs * live.saturating_sub(1);
        }
        Some(round4(if needed == 0 {
            0.0
        } else {
            copies as f64 / needed as f64 - 1.0
        }))
    };
    let control_per_broadcast = if windows.is_empty() {
        None
    } else {
        let control: u64 = windows
            .iter()
            .map(|(b, a, _, _)| a.control - b.control)
            .sum();
        let msgs: usize = windows.iter().map(|w| w.2).sum();
        Some(round4(control as f64 / msgs.max(1) as f64))
    };

    // Failure detection: PeerDead events against crash times.
    let mut detection_ms_max: Option<u64> = None;
    let (mut detections, mut false_dead) = (0, 0);
    for (i, node) in sim.nodes.iter().enumerate() {
        for (subject, at) in &node.log.borrow().dead {
            let Some(&(j, inc)) = sim.ids.get(subject) else {
                continue;
            };
            if j == i {
                continue;
            }
            match crash_times.get(&(j, inc)) {
                Some(&crash_at) if crash_at <= *at => {
                    detections += 1;
                    let d = at - crash_at;
                    detection_ms_max = Some(detection_ms_max.map_or(d, |m: u64| m.max(d)));
                }
                _ => false_dead += 1,
            }
        }
    }

    // In-degree of live nodes in the CYCLON views.
    progress(SimProgress {
        phase: "collect",
        done: 0,
        total: 1,
        sim_ms: sim.now_ms(),
    });
    let live = sim.live();
    let addr_index: BTreeMap<SocketAddr, usize> = live.iter().map(|&i| (sim_addr(i), i)).collect();
    let mut in_degree: BTreeMap<usize, u64> = live.iter().map(|&i| (i, 0)).collect();
    for &i in &live {
        if let Some(handle) = &sim.nodes[i].handle
            && let Ok(peers) = handle.known_peers().await
        {
            for p in peers {
                if let Some(j) = addr_index.get(&p.addr)
                    && let Some(d) = in_degree.get_mut(j)
                {
                    *d += 1;
                }
            }
        }
    }
    let degrees: Vec<f64> = in_degree.values().map(|&d| d as f64).collect();
    let mean = degrees.iter().sum::<f64>() / degrees.len().max(1) as f64;
    let var = degrees.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / degrees.len().max(1) as f64;

    let span_ms = if rounds == 0 {
        end_ms
    } else {
        end_ms - measure_from
    };
    let base_bytes = if rounds == 0 {
        0
    } else {
        totals_start.bytes_sent
    };
    let bytes_per_node_per_s = (totals_end.bytes_sent - base_bytes) as f64
        / live.len().max(1) as f64
        / (span_ms.max(1) as f64 / 1000.0);

    let mut sorted = last_delivery.clone();
    sorted.sort_unstable();
    let pct = |p: f64| -> Option<u64> {
        if sorted.is_empty() {
            None
        } else {
            let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            Some(sorted[rank - 1])
        }
    };

    let report = SimReport {
        nodes: s.nodes,
        seed: s.seed,
        mode: s.mode,
        senders: s.senders,
        messages: sent.len(),
        fanout: s.fanout,
        latency_ms: [
            s.latency_min.as_millis() as u64,
            s.latency_max.as_millis() as u64,
        ],
        loss: s.loss,
        crash_fraction: s.crash_fraction,
        churn_per_cycle: s.churn_per_cycle,
        pull: s.pull,
        encrypted: s.encrypted,
        reliability: reliabilities.iter().copied().reduce(f64::min).map(round4),
        reliability_mean: (!reliabilities.is_empty())
            .then(|| round4(reliabilities.iter().sum::<f64>() / n_msgs)),
        rmr_first: rmr_per_round.first().copied(),
        rmr_steady,
        rmr_per_round,
        control_per_broadcast,
        ldh_max: ldh,
        last_delivery_ms_p50: pct(0.5),
        last_delivery_ms_p99: pct(0.99),
        last_delivery_ms_max: sorted.last().copied(),
        first_reach_300ms: first_reach.0.map(round4),
        first_reach_1s: first_reach.1.map(round4),
        first_reach_final: first_reach.2.map(round4),
        bytes_per_node_per_s: round4(bytes_per_node_per_s),
        detection_ms_max,
        detections,
        false_dead,
        in_degree_stddev: round4(var.sqrt()),
        in_degree_mean: round4(mean),
        crashed,
        restarted,
        live_at_end: live.len(),
        events_lagged: lagged,
        delivery_curve,
        sim_s: end_ms as f64 / 1000.0,
        wall_s: 0.0,
        peak_rss_mb: 0.0,
    };

    for node in &mut sim.nodes {
        if let Some(handle) = node.handle.take() {
            let _ = handle.shutdown().await;
        }
        for c in node.collectors.drain(..) {
            c.abort();
        }
    }
    progress(SimProgress {
        phase: "done",
        done: 1,
        total: 1,
        sim_ms: end_ms,
    });
    Ok(SimReport {
        wall_s: round4(wall.elapsed().as_secs_f64()),
        peak_rss_mb: round4(peak_rss_mb()),
        ..report
    })
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
