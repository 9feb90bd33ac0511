//! A local multi-process cluster: the logic of the `cluster` binary.
//!
//! The cluster starts `--nodes` child processes by re-executing its own binary with the hidden
//! `node` subcommand (so `cargo run --bin cluster` needs no other binary), each bound to
//! `127.0.0.1:0`, and drives them over the JSON-lines protocol of [`crate::node`]:
//!
//! 1. read every child's `ready` line (its address), within [`READY_TIMEOUT`];
//! 2. tell every child but node 0 about node 0 (`peer <addr>`) and wait, at most
//!    [`STATE_MEMBERSHIP_TIMEOUT`], until every child reports a `new_peer` for every other
//!    (the key/value state's membership, learned through node 0); then tell every child about
//!    every other one (full static membership) and check with `peers` that each knows all the
//!    others (two steps: with every peer a seed of the state protocol from the start, two
//!    nodes that find each other first can stay a separate group; see `connect`);
//! 3. broadcast `--messages` messages `m0`, `m1`, ... each from a node chosen with a seeded
//!    generator, [`BROADCAST_PACING`] apart, while collecting every child's deliveries;
//! 4. stop when every node delivered every message, or at `--deadline-secs` after the first
//!    broadcast; then collect each child's `stats`;
//! 5. key/value state: every node sets `--keys` keys `k0`, `k1`, ... (`set`, which waits for
//!    the node's update rate), and the cluster waits until every node has reported an
//!    `update` for every other node's version of every key (the version each `set`
//!    returned), or `--deadline-secs` after the sets;
//! 6. failure detection (skipped with `--no-kill` or a single node): one node other than
//!    node 0, chosen with the seeded generator, is killed with SIGKILL, and the cluster waits
//!    until every survivor reports `peer_dead` for it, at most [`detection_bound`] plus
//!    [`DETECTION_MARGIN`] after the kill, then keeps listening [`FALSE_DEAD_GRACE`] longer;
//! 7. collect the survivors' `stats` again (failure detector counters), send `quit`, and wait
//!    for the children to exit (killing those that do not).
//!
//! Latency of a delivery = its `at_us` minus the origin's `broadcast` `at_us` (both read from
//! the same machine's clock). The origin's own delivery (hop 0, about zero latency) is counted
//! as a delivery but excluded from the latency figures.
//!
//! `kv_convergence_ms` runs from the last `set` acknowledgement (its `at_us`) to the `at_us`
//! of the last `update` needed for convergence. `detection_ms` of a survivor runs from the
//! kill (read just before the signal is sent) to its `peer_dead` line's `at_us`. `false_dead`
//! counts every `peer_dead` about a node that was alive: any node but the victim, and the
//! victim before it was killed, over the whole run.
//!
//! Exit codes: 0 when every node delivered every message, the key/value state converged,
//! every survivor detected the kill within [`detection_bound`] and no live node was declared
//! dead; 1 when any of these failed; 2 when the cluster could not be set up or a child died
//! unexpectedly.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, timeout};

use gossip_actors::core::failure::FailureConfig;

use crate::cluster_web::{CHILD_SNAPSHOT_MS, Snapshots};
use crate::node::{NodeArgs, parse_probability, unix_micros};
use crate::process::{SetupError, send_line};

/// How long a child may take to print its `ready` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the key/value state's membership (every child's `new_peer` for every other) may
/// take to complete.
pub const STATE_MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the membership check (`peers`) may take.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after membership is complete, before the first broadcast.
pub const SETTLE: Duration = Duration::from_millis(200);
/// Time between two broadcasts.
pub const BROADCAST_PACING: Duration = Duration::from_millis(5);
/// Extra time after the last expected delivery, to catch late duplicates.
pub const DUPLICATE_GRACE: Duration = Duration::from_millis(250);
/// How long collecting the `stats` of every child may take.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a child may take to exit after `quit` before it is killed.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The window mean of relayed Scuttlebutt heartbeats that the failure detector's documented
/// bound is taken at: the top of the 1.4-1.7 s range derived in
/// `gossip_core::failure::FailureDetector` (direct packets only pull the mean lower).
pub const RELAYED_HEARTBEAT_MEAN: Duration = Duration::from_millis(1_700);
/// How long past [`detection_bound`] the cluster waits for the survivors' `peer_dead`.
pub const DETECTION_MARGIN: Duration = Duration::from_secs(5);
/// How long the cluster keeps listening for false `peer_dead` after the last detection.
pub const FALSE_DEAD_GRACE: Duration = Duration::from_secs(2);
/// Most keys each node sets (`--keys`).
pub const MAX_KEYS: u32 = 64;
/// With `--web`, time between two rounds of traffic while the cluster lingers after the run.
pub const LINGER_PACING: Duration = Duration::from_secs(1);
/// How long one write to a child's stdin may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Events buffered between the children's reader tasks and the main loop.
const EVENT_QUEUE: usize = 8_192;
/// Lines listing missing deliveries, at most.
const MISSING_LINES: usize = 10;
/// Lines describing false `peer_dead` events, at most.
const FALSE_DEAD_LINES: usize = 10;

/// Longest time from a SIGKILL to every survivor's `peer_dead` that the failure detector
/// documents for the default configuration (the children's):
/// `FailureConfig::detection_bound` at [`RELAYED_HEARTBEAT_MEAN`], 8 · ln 10 · 1.7 s + 0.1 s
/// ≈ 31.4 s. It holds while a survivor's window mean of the victim's heartbeats is at most
/// 1.7 s (relayed heartbeats alone settle at 1.4-1.7 s; direct packets, such as the broadcast
/// phase's, pull it lower, down to the 0.5 s floor: 9.3 s). The silence before a conviction
/// starts at the last heartbeat heard, no later than the kill, so the time from the kill is
/// within it too.
pub fn detection_bound() -> Duration {
    FailureConfig::default().detection_bound(RELAYED_HEARTBEAT_MEAN)
}

/// Command line of the `cluster` binary.
#[derive(Parser, Debug)]
#[command(
    name = "cluster",
    about = "Start a local gossip cluster of child processes on 127.0.0.1, broadcast messages \
             through it, set keys on every node, kill one node, and report delivery, latency, \
             traffic, key/value convergence and failure detection.",
    args_conflicts_with_subcommands = true
)]
pub struct ClusterCli {
    /// Internal: run one node (used by the cluster for its children).
    #[command(subcommand)]
    pub command: Option<ClusterCommand>,
    /// Options of a cluster run.
    #[command(flatten)]
    pub run: ClusterArgs,
}

/// Subcommands of the `cluster` binary.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Run one node over stdin/stdout, exactly as `gossip-node` does (internal).
    #[command(hide = true)]
    Node(NodeArgs),
}

/// Options of a cluster run.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Number of node processes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub nodes: u32,
    /// Number of messages to broadcast.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub messages: u32,
    /// For testing: probability (0..=1) that each node drops each outbound datagram.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = parse_probability)]
    pub loss: f64,
    /// Seconds after the first broadcast before giving up on missing deliveries, and after
    /// the first `set` before giving up on key/value convergence.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub deadline_secs: u64,
    /// Keys each node sets after the broadcast phase (`k0`, `k1`, ...).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_KEYS)))]
    pub keys: u32,
    /// Skip the failure detection phase (killing one node).
    #[arg(long)]
    pub no_kill: bool,
    /// Print one JSON object (on the last stdout line) instead of the readable summary.
    #[arg(long)]
    pub json: bool,
    /// Seed of the choice of the broadcasting node for each message.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Passphrase of the cluster (a demonstration default; it is visible in the process list).
    #[arg(long, default_value = "gossip demo passphrase")]
    pub passphrase: String,
    /// Cluster name (the salt of the key derivation).
    #[arg(long, default_value = "gossip")]
    pub cluster: String,
    /// Serve one live web view of the whole cluster on this HTTP address (for example
    /// 127.0.0.1:8080): membership graph, feed trees, phi per peer, recent deliveries. Every
    /// node also follows every other node's feed, and each serves its own `/metrics`. After
    /// the run the survivors keep running with light traffic for `--web-linger-secs`.
    #[arg(long, value_name = "ADDR")]
    pub web: Option<SocketAddr>,
    /// With `--web`: seconds to keep the cluster and the page up after the run (one broadcast
    /// and one feed post per second meanwhile); SIGINT or SIGTERM ends it earlier.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub web_linger_secs: u64,
}

/// Entry point of the `cluster` binary after argument parsing.
pub fn main_with(cli: ClusterCli) -> ExitCode {
    match cli.command {
        Some(ClusterCommand::Node(args)) => crate::node::main_with(args),
        None => {
            crate::node::init_logging();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("cluster: cannot start the runtime: {err}");
                    return ExitCode::from(2);
                }
            };
            let code = runtime.block_on(run_cluster(cli.run));
            ExitCode::from(code)
        }
    }
}

/// One line of a child, as far as the cluster cares.
#[derive(Deserialize, Debug, Clone)]
#[serde(tag = "event", rename_all = "snake_case")]
enum ChildEvent {
    Ready {
        addr: SocketAddr,
        node_id: String,
    },
    Delivered {
        payload: String,
        at_us: u64,
    },
    Broadcast {
        payload: String,
        at_us: u64,
    },
    Error {
        command: Option<String>,
        error: String,
    },
    Set {
        key: String,
        version: u64,
        at_us: u64,
    },
    Update {
        node: String,
        key: String,
        version: u64,
        at_us: u64,
    },
    PeerDead {
        node: String,
        at_us: u64,
    },
    PeerLive {
        node: String,
    },
    NewPeer {
        node: String,
    },
    Stats(ChildStats),
    Peers {
        peers: Vec<serde_json::Value>,
    },
    Bye,
    #[serde(other)]
    Other,
}

/// The counters of one child's `stats` event that the summary adds up.
#[derive(Deserialize, Debug, Clone, Copy, Default)]
struct ChildStats {
    datagrams_sent: u64,
    bytes_sent: u64,
    datagrams_received: u64,
    bytes_received: u64,
    dropped_auth: u64,
    dropped_malformed: u64,
    pulls_recovered: u64,
    ack_timeouts: u64,
    injected_loss: u64,
    duplicates_suppressed: u64,
    #[serde(default)]
    failure: ChildFailureStats,
}

/// The failure detector counters of one child's `stats` event.
#[derive(Deserialize, Debug, Clone, Copy, Default)]
struct ChildFailureStats {
    convictions: u64,
    revivals: u64,
}

impl ChildStats {
    fn add(&mut self, o: &ChildStats) {
        self.datagrams_sent += o.datagrams_sent;
        self.bytes_sent += o.bytes_sent;
        self.datagrams_received += o.datagrams_received;
        self.bytes_received += o.bytes_received;
        self.dropped_auth += o.dropped_auth;
        self.dropped_malformed += o.dropped_malformed;
        self.pulls_recovered += o.pulls_recovered;
        self.ack_timeouts += o.ack_timeouts;
        self.injected_loss += o.injected_loss;
        self.duplicates_suppressed += o.duplicates_suppressed;
        self.failure.convictions += o.failure.convictions;
        self.failure.revivals += o.failure.revivals;
    }
}

/// What a reader task reports about its child.
#[derive(Debug)]
enum Report {
    Event(ChildEvent),
    Unparsable(String),
    /// stdout closed: the child exited (or closed it).
    Closed,
}

/// A running child and the write end of its stdin.
struct ChildNode {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: Option<SocketAddr>,
    /// Its node id (and feed id), from its `ready` line.
    node_id: Option<String>,
    exited: bool,
    /// Killed on purpose (the failure detection phase): its end is no error.
    killed: bool,
}

impl ChildNode {
    async fn send(&mut self, line: &str) -> Result<(), String> {
        send_line(&mut self.stdin, line, WRITE_TIMEOUT).await
    }
}

/// Per-message bookkeeping.
#[derive(Clone, Default)]
struct MessageState {
    origin: Option<usize>,
    broadcast_at_us: Option<u64>,
    /// Delivery time at each node.
    delivered_at_us: Vec<Option<u64>>,
    refused: Option<String>,
}

/// Key/value bookkeeping: which `set` returned which version, and which `update` each node
/// reported. Triples (receiver, owner, key) are stored flat, `(receiver · nodes + owner) ·
/// keys + key`.
struct KvTally {
    nodes: usize,
    keys: usize,
    /// Version each `set` returned, by `owner · keys + key` (0: not acknowledged yet; versions
    /// start at 1).
    set_version: Vec<u64>,
    /// `set`s acknowledged and refused.
    sets_acked: usize,
    sets_refused: usize,
    /// The latest `set` acknowledgement's `at_us`.
    last_set_ack_us: Option<u64>,
    /// Highest version of each triple reported in an `update`, and that update's `at_us`.
    received: Vec<(u64, u64)>,
    /// Triples (receiver ≠ owner) whose `update` reached the acknowledged version.
    satisfied: u64,
    /// The `at_us` of the last update that satisfied a triple.
    last_needed_us: Option<u64>,
    updates: u64,
    /// Updates about an unknown node or key, or a node's own key.
    unexpected_updates: u64,
}

impl KvTally {
    fn new(nodes: usize, keys: usize) -> Self {
        KvTally {
            nodes,
            keys,
            set_version: vec![0; nodes * keys],
            sets_acked: 0,
            sets_refused: 0,
            last_set_ack_us: None,
            received: vec![(0, 0); nodes * nodes * keys],
            satisfied: 0,
            last_needed_us: None,
            updates: 0,
            unexpected_updates: 0,
        }
    }

    /// Triples that must be satisfied: every node hears every other node's every key.
    fn needed(&self) -> u64 {
        (self.nodes * self.nodes.saturating_sub(1) * self.keys) as u64
    }

    fn converged(&self) -> bool {
        self.sets_acked == self.nodes * self.keys && self.satisfied == self.needed()
    }

    /// Every `set` was answered, and at least one refused: convergence cannot happen.
    fn failed(&self) -> bool {
        self.sets_refused > 0 && self.sets_acked + self.sets_refused == self.nodes * self.keys
    }

    /// The key index of `k<index>`.
    fn key_index(&self, key: &str) -> Option<usize> {
        let index: usize = key.strip_prefix('k')?.parse().ok()?;
        (index < self.keys && key == format!("k{index}")).then_some(index)
    }

    fn satisfy(&mut self, at_us: u64) {
        self.satisfied += 1;
        self.last_needed_us = Some(self.last_needed_us.map_or(at_us, |t| t.max(at_us)));
    }

    /// `owner`'s `set` of `key` returned `version`.
    fn set_acked(&mut self, owner: usize, key: &str, version: u64, at_us: u64) {
        let Some(k) = self.key_index(key) else {
            return;
        };
        let version = version.max(1);
        let slot = owner * self.keys + k;
        if self.set_version[slot] != 0 {
            return;
        }
        self.set_version[slot] = version;
        self.sets_acked += 1;
        self.last_set_ack_us = Some(self.last_set_ack_us.map_or(at_us, |t| t.max(at_us)));
        for receiver in (0..self.nodes).filter(|&r| r != owner) {
            let (have, at) = self.received[(receiver * self.nodes + owner) * self.keys + k];
            if have >= version {
                self.satisfy(at);
            }
        }
    }

    /// `receiver` reported an update of `owner`'s `key` to `version`.
    fn update(&mut self, receiver: usize, owner: Option<usize>, key: &str, version: u64, at: u64) {
        self.updates += 1;
        let (Some(owner), Some(k)) = (owner, self.key_index(key)) else {
            self.unexpected_updates += 1;
            return;
        };
        if owner == receiver {
            self.unexpected_updates += 1;
            return;
        }
        let slot = &mut self.received[(receiver * self.nodes + owner) * self.keys + k];
        if version <= slot.0 {
            return;
        }
        let before = slot.0;
        *slot = (version, at);
        let need = self.set_version[owner * self.keys + k];
        if need != 0 && before < need && version >= need {
            self.satisfy(at);
        }
    }

    /// Milliseconds from the last `set` acknowledgement to the last needed `update`, once
    /// converged (`None` before, or if no update was needed).
    fn convergence_ms(&self) -> Option<f64> {
        if !self.converged() {
            return None;
        }
        let (set, needed) = self.last_set_ack_us.zip(self.last_needed_us)?;
        Some(us_to_ms(needed.saturating_sub(set)))
    }
}

/// Failure detection bookkeeping.
struct DetectionTally {
    /// The killed node and the kill's time (microseconds since the Unix epoch).
    victim: Option<usize>,
    kill_at_us: Option<u64>,
    /// Each survivor's `peer_dead` about the victim.
    detected_at_us: Vec<Option<u64>>,
    /// `peer_dead` about a node that was alive.
    false_dead: u64,
    false_dead_lines: Vec<String>,
    /// `peer_live` events.
    peer_live: u64,
}

impl DetectionTally {
    /// Survivors that have not reported the victim dead.
    fn undetected(&self) -> usize {
        match self.victim {
            None => 0,
            Some(victim) => (0..self.detected_at_us.len())
                .filter(|&n| n != victim && self.detected_at_us[n].is_none())
                .count(),
        }
    }

    /// Detection times of the survivors that reported the victim dead, in microseconds, sorted.
    fn detections_us(&self) -> Vec<u64> {
        let Some(kill) = self.kill_at_us else {
            return Vec::new();
        };
        let mut out: Vec<u64> = self
            .detected_at_us
            .iter()
            .flatten()
            .map(|at| at.saturating_sub(kill))
            .collect();
        out.sort_unstable();
        out
    }
}

/// Everything the run measured.
struct Tally {
    nodes: usize,
    messages: Vec<MessageState>,
    deliveries: u64,
    duplicate_deliveries: u64,
    unexpected_deliveries: u64,
    errors: Vec<String>,
    first_broadcast: Option<Instant>,
    last_delivery: Option<Instant>,
    /// Each node's index by its id (hex), from its `ready` line.
    index_of: HashMap<String, usize>,
    /// `new_peer` seen, by reporter · nodes + node, and how many distinct ones.
    state_peers: Vec<bool>,
    state_peers_seen: usize,
    kv: KvTally,
    detection: DetectionTally,
}

impl Tally {
    fn new(nodes: usize, messages: usize, keys: usize) -> Self {
        Tally {
            index_of: HashMap::new(),
            state_peers: vec![false; nodes * nodes],
            state_peers_seen: 0,
            kv: KvTally::new(nodes, keys),
            detection: DetectionTally {
                victim: None,
                kill_at_us: None,
                detected_at_us: vec![None; nodes],
                false_dead: 0,
                false_dead_lines: Vec::new(),
                peer_live: 0,
            },
            nodes,
            messages: vec![
                MessageState {
                    delivered_at_us: vec![None; nodes],
                    ..MessageState::default()
                };
                messages
            ],
            deliveries: 0,
            duplicate_deliveries: 0,
            unexpected_deliveries: 0,
            errors: Vec::new(),
            first_broadcast: None,
            last_delivery: None,
        }
    }

    fn expected(&self) -> u64 {
        self.nodes as u64 * self.messages.len() as u64
    }

    fn message_index(&self, payload: &str) -> Option<usize> {
        let index: usize = payload.strip_prefix('m')?.parse().ok()?;
        (index < self.messages.len()).then_some(index)
    }

    /// Every node reported a `new_peer` for every other node.
    fn state_membership_complete(&self) -> bool {
        self.state_peers_seen == self.nodes * self.nodes.saturating_sub(1)
    }

    /// The nodes missing some `new_peer`, for a message.
    fn state_membership_missing(&self) -> String {
        let mut out = String::new();
        for reporter in 0..self.nodes {
            let missing: Vec<usize> = (0..self.nodes)
                .filter(|&n| n != reporter && !self.state_peers[reporter * self.nodes + n])
                .collect();
            if !missing.is_empty() {
                let _ = write!(out, "node {reporter} lacks {missing:?}; ");
            }
        }
        out.trim_end_matches("; ").to_owned()
    }

    /// A node id's index, with its short form for messages.
    fn describe(&self, id: &str) -> (Option<usize>, String) {
        match self.index_of.get(id) {
            Some(&n) => (Some(n), format!("node {n}")),
            None => (None, format!("unknown node {}", id.get(..8).unwrap_or(id))),
        }
    }

    /// Records a `peer_dead` from `reporter` about `about`.
    fn peer_dead(&mut self, reporter: usize, about: &str, at_us: u64, progress: &ProgressBar) {
        let (index, name) = self.describe(about);
        let d = &mut self.detection;
        if let (Some(victim), Some(kill)) = (d.victim, d.kill_at_us)
            && index == Some(victim)
            && at_us >= kill
        {
            let slot = &mut d.detected_at_us[reporter];
            if slot.is_none() {
                *slot = Some(at_us);
            }
            return;
        }
        d.false_dead += 1;
        let text = format!("node {reporter} declared {name} dead while it was alive");
        progress.suspend(|| eprintln!("cluster: {text}"));
        if d.false_dead_lines.len() < FALSE_DEAD_LINES {
            d.false_dead_lines.push(text);
        }
    }

    /// Records an event of child `node`.
    fn record(&mut self, node: usize, event: ChildEvent, progress: &ProgressBar) {
        match event {
            ChildEvent::Ready { node_id, .. } => {
                self.index_of.insert(node_id, node);
            }
            ChildEvent::Set {
                key,
                version,
                at_us,
            } => self.kv.set_acked(node, &key, version, at_us),
            ChildEvent::Update {
                node: owner,
                key,
                version,
                at_us,
            } => {
                let owner = self.index_of.get(&owner).copied();
                self.kv.update(node, owner, &key, version, at_us);
            }
            ChildEvent::PeerDead { node: about, at_us } => {
                self.peer_dead(node, &about, at_us, progress);
            }
            ChildEvent::NewPeer { node: about } => {
                if let Some(&n) = self.index_of.get(&about)
                    && n != node
                {
                    let slot = &mut self.state_peers[node * self.nodes + n];
                    if !*slot {
                        *slot = true;
                        self.state_peers_seen += 1;
                    }
                }
            }
            ChildEvent::PeerLive { node: about } => {
                self.detection.peer_live += 1;
                let (_, name) = self.describe(&about);
                progress.suspend(|| eprintln!("cluster: node {node} hears {name} again"));
            }
            ChildEvent::Delivered { payload, at_us } => {
                let Some(m) = self.message_index(&payload) else {
                    self.unexpected_deliveries += 1;
                    return;
                };
                let slot = &mut self.messages[m].delivered_at_us[node];
                if slot.is_some() {
                    self.duplicate_deliveries += 1;
                } else {
                    *slot = Some(at_us);
                    self.deliveries += 1;
                    self.last_delivery = Some(Instant::now());
                    progress.inc(1);
                }
            }
            ChildEvent::Broadcast { payload, at_us } => {
                if let Some(m) = self.message_index(&payload) {
                    self.messages[m].broadcast_at_us = Some(at_us);
                }
            }
            ChildEvent::Error { command, error } => {
                let command = command.unwrap_or_default();
                if let Some(m) = command
                    .strip_prefix("broadcast ")
                    .and_then(|p| self.message_index(p))
                {
                    self.messages[m].refused = Some(error.clone());
                }
                if command.starts_with("set ") {
                    self.kv.sets_refused += 1;
                }
                let text = format!("node {node}: {command:?}: {error}");
                progress.suspend(|| eprintln!("cluster: {text}"));
                self.errors.push(text);
            }
            _ => {}
        }
    }

    /// Latencies in microseconds of every delivery but the origin's own, sorted.
    fn latencies_us(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for m in &self.messages {
            let Some(sent) = m.broadcast_at_us else {
                continue;
            };
            for (node, at) in m.delivered_at_us.iter().enumerate() {
                if let Some(at) = at
                    && Some(node) != m.origin
                {
                    out.push(at.saturating_sub(sent));
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Up to `limit` lines naming missing deliveries, plus the number of messages missing any.
    fn missing(&self, limit: usize) -> (Vec<String>, usize) {
        let mut lines = Vec::new();
        let mut incomplete = 0;
        for (i, m) in self.messages.iter().enumerate() {
            let absent: Vec<usize> = (0..self.nodes)
                .filter(|&n| m.delivered_at_us[n].is_none())
                .collect();
            if absent.is_empty() {
                continue;
            }
            incomplete += 1;
            if lines.len() < limit {
                let mut line = format!(
                    "m{i} (from node {}) missing at {} node(s): {:?}",
                    m.origin.map_or("?".into(), |o| o.to_string()),
                    absent.len(),
                    absent
                );
                if let Some(reason) = &m.refused {
                    let _ = write!(line, " (broadcast refused: {reason})");
                }
                lines.push(line);
            }
        }
        (lines, incomplete)
    }
}

/// Microseconds as milliseconds with one decimal.
fn us_to_ms(us: u64) -> f64 {
    (us as f64 / 100.0).round() / 10.0
}

/// Nearest-rank percentile of sorted values, in milliseconds with one decimal.
fn percentile_ms(sorted_us: &[u64], q: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let us = sorted_us[rank.clamp(1, sorted_us.len()) - 1];
    Some(us_to_ms(us))
}

/// The `--json` summary.
#[derive(Serialize, Debug)]
struct Summary {
    nodes: usize,
    messages: usize,
    expected_deliveries: u64,
    deliveries: u64,
    duplicate_deliveries: u64,
    unexpected_deliveries: u64,
    /// Latency of deliveries other than the origin's own.
    latency_samples: usize,
    latency_ms_p50: Option<f64>,
    latency_ms_p99: Option<f64>,
    latency_ms_max: Option<f64>,
    datagrams_sent: u64,
    bytes_sent: u64,
    datagrams_received: u64,
    bytes_received: u64,
    dropped_auth: u64,
    dropped_malformed: u64,
    duplicates_suppressed: u64,
    pulls_recovered: u64,
    ack_timeouts: u64,
    injected_loss: u64,
    /// Children whose `stats` answered (the sums above are over these).
    stats_nodes: usize,
    complete: bool,
    /// Whole run, from starting the children to the summary.
    elapsed_ms: u64,
    /// From the first broadcast to the last first-time delivery.
    dissemination_ms: Option<u64>,
    loss: f64,
    seed: u64,
    refused_broadcasts: usize,
    missing: Vec<String>,
    /// Keys each node set.
    keys: usize,
    /// `set`s acknowledged and refused.
    sets: usize,
    refused_sets: usize,
    /// `update` events reported, and those about an unknown node or key.
    kv_updates: u64,
    unexpected_updates: u64,
    /// Every node reported every other node's latest version of every key.
    kv_converged: bool,
    /// From the last `set` acknowledgement to the last needed `update`.
    kv_convergence_ms: Option<f64>,
    /// The node killed with SIGKILL (null with `--no-kill` or a single node).
    killed_node: Option<usize>,
    /// Survivors of the kill, and those that reported the victim dead.
    survivors: usize,
    detected: usize,
    /// From the kill to each survivor's `peer_dead` about the victim.
    detection_ms_p50: Option<f64>,
    detection_ms_max: Option<f64>,
    /// The failure detector's documented bound (see [`detection_bound`]).
    detection_bound_ms: f64,
    /// Every survivor declared the killed node dead within the bound (true if none was killed).
    detection_within_bound: bool,
    /// `peer_dead` events about live nodes, over the whole run.
    false_dead: u64,
    false_dead_events: Vec<String>,
    /// `peer_live` events, over the whole run.
    peer_live: u64,
    /// Failure detector counters summed over the survivors, at the end of the run.
    convictions: u64,
    revivals: u64,
    /// Survivors whose final `stats` answered (the two sums above are over these).
    final_stats_nodes: usize,
}

/// Runs a cluster and returns the process exit code (0, 1 or 2, see the module docs).
pub async fn run_cluster(args: ClusterArgs) -> u8 {
    let started = Instant::now();
    let nodes = args.nodes as usize;
    let messages = args.messages as usize;
    let (tx, mut rx) = mpsc::channel::<(usize, Report)>(EVENT_QUEUE);
    let mut children = Vec::with_capacity(nodes);

    let web = args.web.map(|addr| (addr, Snapshots::new(nodes)));
    if let Some((addr, snapshots)) = &web {
        match crate::cluster_web::serve(*addr, snapshots.clone()).await {
            Ok(bound) => eprintln!("cluster: web view at http://{bound}/"),
            Err(err) => {
                eprintln!("cluster: cannot serve the web view on {addr}: {err}");
                return 2;
            }
        }
    }
    let snapshots = web.as_ref().map(|(_, s)| s.clone());
    if let Err(SetupError(err)) = spawn_children(&args, &tx, &mut children, snapshots).await {
        eprintln!("cluster: setup failed: {err}");
        return 2;
    }
    drop(tx);

    let progress = phase_bar(
        nodes as u64 * messages as u64,
        "{elapsed_precise} [{bar:30}] {pos}/{len} deliveries {msg}",
    );
    let mut tally = Tally::new(nodes, messages, args.keys as usize);

    let setup = async {
        wait_ready(&mut children, &mut rx, &mut tally, &progress).await?;
        connect(&mut children, &mut rx, &mut tally, &progress).await?;
        if web.is_some() {
            follow_all(&mut children).await?;
        }
        Ok::<(), SetupError>(())
    };
    if let Err(SetupError(err)) = setup.await {
        progress.finish_and_clear();
        eprintln!("cluster: setup failed: {err}");
        stop_children(&mut children).await;
        return 2;
    }
    sleep(SETTLE).await;

    if let Err(SetupError(err)) =
        disseminate(&args, &mut children, &mut rx, &mut tally, &progress).await
    {
        progress.finish_and_clear();
        eprintln!("cluster: {err}");
        stop_children(&mut children).await;
        return 2;
    }
    progress.finish_and_clear();

    let (stats, stats_nodes) = collect_stats(&mut children, &mut rx, &mut tally, &progress).await;

    let later = async {
        let progress = phase_bar(
            tally.kv.needed(),
            "{elapsed_precise} [{bar:30}] {pos}/{len} key/value updates {msg}",
        );
        let kv = converge_kv(&args, &mut children, &mut rx, &mut tally, &progress).await;
        progress.finish_and_clear();
        kv?;
        let progress = phase_bar(
            nodes.saturating_sub(1) as u64,
            "{elapsed_precise} [{bar:30}] {pos}/{len} survivors detected the kill {msg}",
        );
        let detect = detect_kill(&args, &mut children, &mut rx, &mut tally, &progress).await;
        progress.finish_and_clear();
        detect
    };
    if let Err(SetupError(err)) = later.await {
        eprintln!("cluster: {err}");
        stop_children(&mut children).await;
        return 2;
    }

    let (final_stats, final_stats_nodes) =
        collect_stats(&mut children, &mut rx, &mut tally, &ProgressBar::hidden()).await;

    let complete = tally.deliveries == tally.expected();
    let latencies = tally.latencies_us();
    let (missing, incomplete) = tally.missing(MISSING_LINES);
    let bound = detection_bound();
    let detections = tally.detection.detections_us();
    let killed_node = tally.detection.victim;
    let survivors = killed_node.map_or(0, |_| nodes - 1);
    let bound_us = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
    let detection_ok = killed_node.is_none()
        || (tally.detection.undetected() == 0 && detections.iter().all(|&us| us <= bound_us));
    let kv_converged = tally.kv.converged();
    let false_dead = tally.detection.false_dead;
    let summary = Summary {
        nodes,
        messages,
        expected_deliveries: tally.expected(),
        deliveries: tally.deliveries,
        duplicate_deliveries: tally.duplicate_deliveries,
        unexpected_deliveries: tally.unexpected_deliveries,
        latency_samples: latencies.len(),
        latency_ms_p50: percentile_ms(&latencies, 0.50),
        latency_ms_p99: percentile_ms(&latencies, 0.99),
        latency_ms_max: percentile_ms(&latencies, 1.0),
        datagrams_sent: stats.datagrams_sent,
        bytes_sent: stats.bytes_sent,
        datagrams_received: stats.datagrams_received,
        bytes_received: stats.bytes_received,
        dropped_auth: stats.dropped_auth,
        dropped_malformed: stats.dropped_malformed,
        duplicates_suppressed: stats.duplicates_suppressed,
        pulls_recovered: stats.pulls_recovered,
        ack_timeouts: stats.ack_timeouts,
        injected_loss: stats.injected_loss,
        stats_nodes,
        complete,
        elapsed_ms: started.elapsed().as_millis() as u64,
        dissemination_ms: tally
            .first_broadcast
            .zip(tally.last_delivery)
            .map(|(a, b)| b.saturating_duration_since(a).as_millis() as u64),
        loss: args.loss,
        seed: args.seed,
        refused_broadcasts: tally
            .messages
            .iter()
            .filter(|m| m.refused.is_some())
            .count(),
        missing,
        keys: args.keys as usize,
        sets: tally.kv.sets_acked,
        refused_sets: tally.kv.sets_refused,
        kv_updates: tally.kv.updates,
        unexpected_updates: tally.kv.unexpected_updates,
        kv_converged,
        kv_convergence_ms: tally.kv.convergence_ms(),
        killed_node,
        survivors,
        detected: detections.len(),
        detection_ms_p50: percentile_ms(&detections, 0.50),
        detection_ms_max: percentile_ms(&detections, 1.0),
        detection_bound_ms: us_to_ms(bound_us),
        detection_within_bound: detection_ok,
        false_dead,
        false_dead_events: std::mem::take(&mut tally.detection.false_dead_lines),
        peer_live: tally.detection.peer_live,
        convictions: final_stats.failure.convictions,
        revivals: final_stats.failure.revivals,
        final_stats_nodes,
    };
    if args.json {
        match serde_json::to_string(&summary) {
            Ok(line) => println!("{line}"),
            Err(err) => eprintln!("cluster: cannot encode the summary: {err}"),
        }
    } else {
        print!("{}", render(&summary, incomplete));
    }
    if web.is_some() {
        linger(&args, &mut children, &mut rx).await;
    }
    stop_children(&mut children).await;
    if complete && kv_converged && detection_ok && false_dead == 0 {
        0
    } else {
        1
    }
}

/// A progress bar on stderr (drawn only on a terminal) of `len` steps.
fn phase_bar(len: u64, template: &str) -> ProgressBar {
    let progress = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        progress.set_style(style.progress_chars("=> "));
    }
    progress
}

fn ms(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |v| format!("{v:.1} ms"))
}

/// The readable summary.
fn render(s: &Summary, incomplete: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "gossip cluster on 127.0.0.1");
    let _ = writeln!(
        out,
        "  nodes                 {} (injected loss {})",
        s.nodes, s.loss
    );
    let _ = writeln!(out, "  messages              {}", s.messages);
    let _ = writeln!(out, "  expected deliveries   {}", s.expected_deliveries);
    let _ = writeln!(out, "  deliveries            {}", s.deliveries);
    let _ = writeln!(out, "  duplicate deliveries  {}", s.duplicate_deliveries);
    let _ = writeln!(
        out,
        "  latency               p50 {}, p99 {}, max {} ({} deliveries; origin's own excluded)",
        ms(s.latency_ms_p50),
        ms(s.latency_ms_p99),
        ms(s.latency_ms_max),
        s.latency_samples
    );
    let _ = writeln!(
        out,
        "  sent                  {} datagrams, {} bytes (stats from {} of {} nodes)",
        s.datagrams_sent, s.bytes_sent, s.stats_nodes, s.nodes
    );
    let _ = writeln!(
        out,
        "  dropped               auth {}, malformed {}; injected loss {}; pulls recovered {}",
        s.dropped_auth, s.dropped_malformed, s.injected_loss, s.pulls_recovered
    );
    if s.keys > 0 {
        let _ = writeln!(
            out,
            "  key/value             {} keys per node: {} sets ({} refused), {} updates, {}",
            s.keys,
            s.sets,
            s.refused_sets,
            s.kv_updates,
            if s.kv_converged {
                format!("converged {} after the last set", ms(s.kv_convergence_ms))
            } else {
                "not converged".to_owned()
            }
        );
    }
    match s.killed_node {
        Some(victim) => {
            let _ = writeln!(
                out,
                "  failure detection     node {victim} killed; {}/{} survivors declared it dead, \
                 p50 {}, max {} (bound {:.1} ms)",
                s.detected,
                s.survivors,
                ms(s.detection_ms_p50),
                ms(s.detection_ms_max),
                s.detection_bound_ms
            );
        }
        None => {
            let _ = writeln!(out, "  failure detection     skipped (no node killed)");
        }
    }
    let _ = writeln!(
        out,
        "  false dead            {} (peer_live {}; detector convictions {}, revivals {} over \
         {} nodes)",
        s.false_dead, s.peer_live, s.convictions, s.revivals, s.final_stats_nodes
    );
    let _ = writeln!(
        out,
        "  elapsed               {:.1} s (dissemination {})",
        s.elapsed_ms as f64 / 1000.0,
        s.dissemination_ms
            .map_or("n/a".into(), |d| format!("{:.1} s", d as f64 / 1000.0))
    );
    if s.complete {
        let _ = writeln!(out, "every node delivered every message");
    } else {
        let _ = writeln!(
            out,
            "NOT complete: {} message(s) missing at some node",
            incomplete
        );
        for line in &s.missing {
            let _ = writeln!(out, "  {line}");
        }
        if incomplete > s.missing.len() {
            let _ = writeln!(out, "  ... and {} more", incomplete - s.missing.len());
        }
    }
    if s.keys > 0 {
        if s.kv_converged {
            let _ = writeln!(out, "every node holds every other node's latest keys");
        } else {
            let _ = writeln!(
                out,
                "NOT converged: some node lacks another node's latest keys"
            );
        }
    }
    if s.killed_node.is_some() {
        if s.detection_within_bound {
            let _ = writeln!(
                out,
                "every survivor declared the killed node dead within the bound"
            );
        } else {
            let _ = writeln!(
                out,
                "NOT detected: {} of {} survivors declared the killed node dead (max {}, bound \
                 {:.1} ms)",
                s.detected,
                s.survivors,
                ms(s.detection_ms_max),
                s.detection_bound_ms
            );
        }
    }
    if s.false_dead == 0 {
        let _ = writeln!(out, "no live node was declared dead");
    } else {
        let _ = writeln!(
            out,
            "FALSE DEAD: {} live node(s) declared dead",
            s.false_dead
        );
        for line in &s.false_dead_events {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Starts the children and a reader task for each.
async fn spawn_children(
    args: &ClusterArgs,
    tx: &mpsc::Sender<(usize, Report)>,
    children: &mut Vec<ChildNode>,
    snapshots: Option<Snapshots>,
) -> Result<(), SetupError> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's own path: {e}"))?;
    for index in 0..args.nodes as usize {
        let mut command = Command::new(&exe);
        command
            .arg("node")
            .args(["--bind", "127.0.0.1:0"])
            .args(["--passphrase", &args.passphrase])
            .args(["--cluster", &args.cluster])
            .args(["--loss", &args.loss.to_string()])
            .env("RUST_LOG", crate::node::child_log_filter());
        if snapshots.is_some() {
            command
                .args(["--http", "127.0.0.1:0"])
                .args(["--snapshot-ms", &CHILD_SNAPSHOT_MS.to_string()]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start node {index} ({}): {e}", exe.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| format!("node {index} has no stdout"))?;
        let stdin = child.stdin.take();
        let tx = tx.clone();
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                let line = lines.next_line().await;
                if let (Ok(Some(line)), Some(snapshots)) = (&line, &snapshots)
                    && snapshots.take_line(index, line)
                {
                    continue;
                }
                let report = match line {
                    Ok(Some(line)) => match serde_json::from_str::<ChildEvent>(&line) {
                        Ok(event) => Report::Event(event),
                        Err(_) => Report::Unparsable(line),
                    },
                    Ok(None) | Err(_) => Report::Closed,
                };
                let closed = matches!(report, Report::Closed);
                if tx.send((index, report)).await.is_err() || closed {
                    break;
                }
            }
        });
        children.push(ChildNode {
            child,
            stdin,
            addr: None,
            node_id: None,
            exited: false,
            killed: false,
        });
    }
    Ok(())
}

/// A child that closed its stdout before `quit`: describe it (with its exit status, if known).
async fn died(children: &mut [ChildNode], node: usize) -> SetupError {
    let child = &mut children[node];
    child.exited = true;
    let status = match timeout(Duration::from_millis(500), child.child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        _ => "status unknown".into(),
    };
    SetupError(format!("node {node} exited early ({status})"))
}

/// Handles one report outside the `quit` phase: a closed child is an error.
async fn handle_report(
    children: &mut [ChildNode],
    tally: &mut Tally,
    progress: &ProgressBar,
    node: usize,
    report: Report,
) -> Result<Option<ChildEvent>, SetupError> {
    match report {
        Report::Event(event) => {
            tally.record(node, event.clone(), progress);
            Ok(Some(event))
        }
        Report::Unparsable(line) => {
            progress.suspend(|| eprintln!("cluster: node {node} printed a non-JSON line: {line}"));
            Ok(None)
        }
        Report::Closed if children[node].killed => {
            children[node].exited = true;
            Ok(None)
        }
        Report::Closed => Err(died(children, node).await),
    }
}

/// Waits for every child's `ready` line.
async fn wait_ready(
    children: &mut [ChildNode],
    rx: &mut mpsc::Receiver<(usize, Report)>,
    tally: &mut Tally,
    progress: &ProgressBar,
) -> Result<(), SetupError> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    while children.iter().any(|c| c.addr.is_none()) {
        let (node, report) = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) => return Err("every child's output closed".into()),
            Err(_) => {
                let waiting: Vec<usize> = (0..children.len())
                    .filter(|&i| children[i].addr.is_none())
                    .collect();
                return Err(format!(
                    "nodes {waiting:?} not ready within {} s",
                    READY_TIMEOUT.as_secs()
                )
                .into());
            }
        };
        if let Some(ChildEvent::Ready { addr, node_id }) =
            handle_report(children, tally, progress, node, report).await?
        {
            children[node].addr = Some(addr);
            children[node].node_id = Some(node_id);
        }
    }
    Ok(())
}

/// Membership in two steps. First every child but node 0 learns node 0's address only, and
/// the cluster waits until every child reports a `new_peer` for every other one: the
/// key/value state's membership, learned through node 0, is complete. Then full static
/// membership: every child learns every other child's address, and the cluster checks that
/// every child lists them all.
///
/// Why not all addresses at once: every address given with `peer` is a seed of the state
/// protocol, and its round gossips with a seed besides its live peer only when it knows no
/// live peer or when that peer is not a seed (`gossip_core::reconcile`). With every peer a
/// seed, two nodes whose first rounds picked each other would know only each other forever:
/// the state (and the heartbeats the failure detector relies on) would stay split in groups.
async fn connect(
    children: &mut [ChildNode],
    rx: &mut mpsc::Receiver<(usize, Report)>,
    tally: &mut Tally,
    progress: &ProgressBar,
) -> Result<(), SetupError> {
    let addrs: Vec<SocketAddr> = children.iter().filter_map(|c| c.addr).collect();
    if addrs.len() != children.len() {
        return Err("a child has no address".into());
    }
    for (i, child) in children.iter_mut().enumerate().skip(1) {
        child
            .send(&format!("peer {}", addrs[0]))
            .await
            .map_err(|e| format!("node {i}: {e}"))?;
    }
    let deadline = tokio::time::Instant::now() + STATE_MEMBERSHIP_TIMEOUT;
    while !tally.state_membership_complete() {
        let (node, report) = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) => return Err("every child's output closed".into()),
            Err(_) => {
                return Err(format!(
                    "the key/value state's membership is not complete after {} s: {}",
                    STATE_MEMBERSHIP_TIMEOUT.as_secs(),
                    tally.state_membership_missing()
                )
                .into());
            }
        };
        handle_report(children, tally, progress, node, report).await?;
    }
    for (i, child) in children.iter_mut().enumerate() {
        for (j, addr) in addrs.iter().enumerate() {
            if i != j && !(i != 0 && j == 0) {
                child
                    .send(&format!("peer {addr}"))
                    .await
                    .map_err(|e| format!("node {i}: {e}"))?;
            }
        }
        child
            .send("peers")
            .await
            .map_err(|e| format!("node {i}: {e}"))?;
    }
    let want = children.len().saturating_sub(1);
    let mut answered = vec![false; children.len()];
    let deadline = tokio::time::Instant::now() + MEMBERSHIP_TIMEOUT;
    while answered.iter().any(|a| !a) {
        let (node, report) = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) => return Err("every child's output closed".into()),
            Err(_) => return Err("membership not confirmed in time".into()),
        };
        if let Some(ChildEvent::Peers { peers }) =
            handle_report(children, tally, progress, node, report).await?
        {
            if peers.len() < want {
                return Err(
                    format!("node {node} knows {} peers, expected {want}", peers.len()).into(),
                );
            }
            answered[node] = true;
        }
    }
    Ok(())
}

/// Broadcasts the messages and collects deliveries until complete or the deadline.
async fn disseminate(
    args: &ClusterArgs,
    children: &mut [ChildNode],
    rx: &mut mpsc::Receiver<(usize, Report)>,
    tally: &mut Tally,
    progress: &ProgressBar,
) -> Result<(), SetupError> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let start = tokio::time::Instant::now();
    tally.first_broadcast = Some(Instant::now());
    let deadline = start + Duration::from_secs(args.deadline_secs);
    let total = tally.messages.len();
    let mut next = 0usize;
    let mut next_at = start;
    let mut done_at: Option<tokio::time::Instant> = None;
    loop {
        if tally.deliveries == tally.expected() && next == total && done_at.is_none() {
            done_at = Some(tokio::time::Instant::now() + DUPLICATE_GRACE);
        }
        if let Some(at) = done_at
            && tokio::time::Instant::now() >= at
        {
            return Ok(());
        }
        tokio::select! {
            biased;
            item = rx.recv() => {
                let Some((node, report)) = item else {
                    return Err("every child's output closed".into());
                };
                handle_report(children, tally, progress, node, report).await?;
            }
            () = sleep_until(next_at), if next < total => {
                let node = rng.random_range(0..children.len());
                tally.messages[next].origin = Some(node);
                children[node]
                    .send(&format!("broadcast m{next}"))
                    .await
                    .map_err(|e| format!("node {node}: {e}"))?;
                next += 1;
                progress.set_message(format!("{next}/{total} sent"));
                next_at += BROADCAST_PACING;
            }
            () = sleep_until(done_at.unwrap_or(deadline)) => {
                if done_at.is_none() {
                    progress.suspend(|| {
                        eprintln!("cluster: deadline of {} s passed", args.deadline_secs);
                    });
                }
                return Ok(());
            }
        }
    }
}

/// Every node sets `--keys` keys, then waits until each node reported every other node's
/// version of every key, every `set` was answered with one refused, or `--deadline-secs`.
async fn converge_kv(
    args: &ClusterArgs,
    children: &mut [ChildNode],
    rx: &mut mpsc::Receiver<(usize, Report)>,
    tally: &mut Tally,
    progress: &ProgressBar,
) -> Result<(), SetupError> {
    if args.keys == 0 {
        return Ok(());
    }
    for (i, child) in children.iter_mut().enumerate() {
        for k in 0..args.keys {
            child
                .send(&format!("set k{k} n{i}.k{k}"))
                .await
                .map_err(|e| format!("node {i}: {e}"))?;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.deadline_secs);
    while !tally.kv.converged() && !tally.kv.failed() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((node, report))) => {
                handle_report(children, tally, progress, node, report).await?;
                progress.set_position(tally.kv.satisfied);
                progress.set_message(format!(
                    "({}/{} sets acknowledged)",
                    tally.kv.sets_acked,
                    children.len() * args.keys as usize
                ));
            }
            Ok(None) => return Err("every child's output closed".into()),
            Err(_) => {
                progress.suspend(|| {
                    eprintln!(
                        "cluster: key/value state not converged within {} s",
                        args.deadline_secs
                    );
                });
                break;
            }
        }
    }
    Ok(())
}

/// Kills one node other than node 0 with SIGKILL and waits until every survivor reports it
/// dead (at most [`detection_bound`] plus [`DETECTION_MARGIN`]), then listens
/// [`FALSE_DEAD_GRACE`] longer for false convictions. Skipped with `--no-kill` or one node.
async fn detect_kill(
    args: &ClusterArgs,
    children: &mut [ChildNode],
    rx: &mut mpsc::Receiver<(usize, Report)>,
    tally: &mut Tally,
    progress: &ProgressBar,
) -> Result<(), SetupError> {
    if args.no_kill || children.len() < 2 {
        return Ok(());
    }
    // A generator of its own, so the broadcasting nodes do not depend on the kill phase.
    let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(0x6b69_6c6c));
    let victim = rng.random_range(1..children.len());
    let limit = detection_bound().saturating_add(DETECTION_MARGIN);
    let kill_at_us = unix_micros();
    let kill_at = tokio::time::Instant::now();
    children[victim]
        .child
        .start_kill()
        .map_err(|e| format!("cannot kill node {victim}: {e}"))?;
    children[victim].killed = true;
    children[victim].stdin = None;
    tally.detection.victim = Some(victim);
    tally.detection.kill_at_us = Some(kill_at_us);
    progress.set_message(format!("(node {victim} killed)"));
    let deadline = kill_at + limit;
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        if quiet_until.is_none() && tally.detection.undetected() == 0 {
            quiet_until = Some(tokio::time::Instant::now() + FALSE_DEAD_GRACE);
        }
        match tokio::time::timeout_at(quiet_until.unwrap_or(deadline), rx.recv()).await {
            Ok(Some((node, report))) => {
                handle_report(children, tally, progress, node, report).await?;
                let survivors = children.len() - 1;
                progress.set_position((survivors - tally.detection.undetected()) as u64);
            }
            Ok(None) => return Err("every child's output closed".into()),
            Err(_) => {
                if quiet_until.is_none() {
                    progress.suspend(|| {
                        eprintln!(
                            "cluster: {} survivor(s) did not declare node {victim} dead within \
                             {:.1} s",
                            tally.detection.undetected(),
                            limit.as_secs_f64()
                        );
                    });
                }
                return Ok(());
            }
        }
    }
}

/// Asks every child for its stats and adds them up. Deliveries arriving meanwhile still count.
async fn collect_stats(
    children: &mut [ChildNode],
    rx: &mut mpsc::Receiver<(usize, Report)>,
    tally: &mut Tally,
    progress: &ProgressBar,
) -> (ChildStats, usize) {
    let mut pending = vec![false; children.len()];
    for (i, child) in children.iter_mut().enumerate() {
        if child.exited || child.killed {
            continue;
        }
        match child.send("stats").await {
            Ok(()) => pending[i] = true,
            Err(err) => eprintln!("cluster: node {i}: cannot ask for stats: {err}"),
        }
    }
    let mut sum = ChildStats::default();
    let mut answered = 0;
    let deadline = tokio::time::Instant::now() + STATS_TIMEOUT;
    while pending.iter().any(|p| *p) {
        let (node, report) = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => {
                eprintln!("cluster: stats of some nodes did not arrive in time");
                break;
            }
        };
        match report {
            Report::Event(ChildEvent::Stats(stats)) => {
                if pending[node] {
                    pending[node] = false;
                    answered += 1;
                    sum.add(&stats);
                }
            }
            Report::Event(event) => tally.record(node, event, progress),
            Report::Unparsable(_) => {}
            Report::Closed => {
                children[node].exited = true;
                if pending[node] {
                    pending[node] = false;
                    eprintln!("cluster: node {node} exited before answering stats");
                }
            }
        }
    }
    (sum, answered)
}

/// With `--web`: every node follows every other node's feed, so the page has feed trees.
async fn follow_all(children: &mut [ChildNode]) -> Result<(), SetupError> {
    let feeds: Vec<String> = children.iter().filter_map(|c| c.node_id.clone()).collect();
    for (i, child) in children.iter_mut().enumerate() {
        for feed in &feeds {
            if Some(feed) != child.node_id.as_ref() {
                child
                    .send(&format!("follow {feed}"))
                    .await
                    .map_err(|e| format!("node {i}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// With `--web`, after the run: keeps the survivors up for `--web-linger-secs` (or until
/// SIGINT / SIGTERM), one node in turn broadcasting and posting to its feed every
/// [`LINGER_PACING`], so the page keeps moving. Children's lines are read and dropped.
async fn linger(
    args: &ClusterArgs,
    children: &mut [ChildNode],
    rx: &mut mpsc::Receiver<(usize, Report)>,
) {
    let secs = args.web_linger_secs;
    eprintln!("cluster: keeping the web view up for {secs} s (Ctrl-C ends it)");
    let deadline = sleep(Duration::from_secs(secs));
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval(LINGER_PACING);
    let mut turn = 0usize;
    let interrupted = interrupted();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            () = &mut deadline => return,
            () = &mut interrupted => {
                eprintln!("cluster: interrupted; stopping the nodes");
                return;
            }
            item = rx.recv() => match item {
                Some((node, Report::Closed)) if !children[node].killed => {
                    children[node].exited = true;
                    eprintln!("cluster: node {node} exited while lingering");
                }
                Some(_) => {}
                None => return,
            },
            _ = ticks.tick() => {
                let live: Vec<usize> =
                    (0..children.len()).filter(|&i| !children[i].exited).collect();
                if live.is_empty() {
                    return;
                }
                let node = live[turn % live.len()];
                let _ = children[node].send(&format!("broadcast live-{turn}")).await;
                let _ = children[node].send(&format!("publish post {turn}")).await;
                turn += 1;
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM (never if they cannot be watched).
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Sends `quit` to every child, closes their stdin, waits for them to exit, kills the rest.
async fn stop_children(children: &mut [ChildNode]) {
    for child in children.iter_mut() {
        if !child.exited {
            let _ = child.send("quit").await;
        }
        child.stdin = None;
    }
    let deadline = tokio::time::Instant::now() + EXIT_TIMEOUT;
    for (i, child) in children.iter_mut().enumerate() {
        match tokio::time::timeout_at(deadline, child.child.wait()).await {
            Ok(Ok(status)) if status.success() || child.exited || child.killed => {}
            Ok(Ok(status)) => eprintln!("cluster: node {i} exited with {status}"),
            Ok(Err(err)) => eprintln!("cluster: node {i}: cannot wait for it: {err}"),
            Err(_) => {
                eprintln!("cluster: node {i} did not exit in time; killing it");
                let _ = child.child.kill().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.5), Some(50.0));
        assert_eq!(percentile_ms(&v, 0.99), Some(99.0));
        assert_eq!(percentile_ms(&v, 1.0), Some(100.0));
        assert_eq!(percentile_ms(&[1_234], 0.5), Some(1.2));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }

    #[test]
    fn kv_converges_whether_the_update_or_the_acknowledgement_comes_first() {
        let mut kv = KvTally::new(2, 1);
        assert_eq!(kv.needed(), 2);
        // Node 1 hears node 0's k0 before node 0's `set` line reached the cluster.
        kv.update(1, Some(0), "k0", 4, 1_500);
        kv.set_acked(0, "k0", 4, 1_000);
        assert!(!kv.converged());
        kv.set_acked(1, "k0", 1, 2_000);
        kv.update(0, Some(1), "k0", 1, 3_000);
        assert!(kv.converged());
        assert_eq!(kv.convergence_ms(), Some(1.0));
        // Duplicates, own keys and unknown keys change nothing.
        kv.update(0, Some(1), "k0", 1, 9_000);
        kv.update(0, Some(0), "k0", 1, 9_000);
        kv.update(0, Some(1), "k9", 1, 9_000);
        kv.update(0, None, "k0", 1, 9_000);
        assert_eq!(kv.satisfied, 2);
        assert_eq!(kv.unexpected_updates, 3);
        assert_eq!(kv.convergence_ms(), Some(1.0));
    }

    #[test]
    fn kv_waits_for_the_acknowledged_version() {
        let mut kv = KvTally::new(2, 1);
        kv.set_acked(0, "k0", 3, 1_000);
        kv.set_acked(1, "k0", 1, 1_000);
        kv.update(0, Some(1), "k0", 1, 1_100);
        kv.update(1, Some(0), "k0", 2, 1_200);
        assert!(!kv.converged());
        assert_eq!(kv.convergence_ms(), None);
        kv.update(1, Some(0), "k0", 3, 1_300);
        assert!(kv.converged());
        assert_eq!(kv.key_index("k00"), None);
        assert_eq!(kv.key_index("k1"), None);
    }

    #[test]
    fn peer_dead_counts_as_detection_only_for_the_victim_after_the_kill() {
        let progress = ProgressBar::hidden();
        let mut tally = Tally::new(3, 0, 0);
        for (n, id) in ["aa", "bb", "cc"].into_iter().enumerate() {
            tally.index_of.insert(id.to_owned(), n);
        }
        tally.peer_dead(0, "cc", 50, &progress);
        assert_eq!(
            tally.detection.false_dead, 1,
            "before the kill the victim is alive"
        );
        tally.detection.victim = Some(2);
        tally.detection.kill_at_us = Some(100);
        tally.peer_dead(0, "cc", 2_100, &progress);
        tally.peer_dead(0, "cc", 9_100, &progress);
        assert_eq!(tally.detection.undetected(), 1);
        tally.peer_dead(1, "aa", 3_000, &progress);
        tally.peer_dead(1, "dd", 3_000, &progress);
        assert_eq!(tally.detection.false_dead, 3);
        tally.peer_dead(1, "cc", 4_100, &progress);
        assert_eq!(tally.detection.undetected(), 0);
        assert_eq!(tally.detection.detections_us(), vec![2_000, 4_000]);
    }

    #[test]
    fn the_detection_bound_is_the_documented_one() {
        let bound = detection_bound().as_secs_f64();
        assert!((bound - (8.0 * std::f64::consts::LN_10 * 1.7 + 0.1)).abs() < 1e-6);
    }

    #[test]
    fn child_lines_parse() {
        let e: ChildEvent = serde_json::from_str(
            r#"{"event":"delivered","id":"ab","origin":"cd","hop":1,"payload":"m3","at_us":5}"#,
        )
        .unwrap();
        assert!(matches!(e, ChildEvent::Delivered { at_us: 5, .. }));
        let e: ChildEvent = serde_json::from_str(r#"{"event":"peer_added","addr":"x"}"#).unwrap();
        assert!(matches!(e, ChildEvent::Other));
        let e: ChildEvent = serde_json::from_str(
            r#"{"event":"update","node":"ab","key":"k1","value":null,"version":7,"at_us":9}"#,
        )
        .unwrap();
        assert!(matches!(
            e,
            ChildEvent::Update {
                version: 7,
                at_us: 9,
                ..
            }
        ));
        let e: ChildEvent =
            serde_json::from_str(r#"{"event":"set","key":"k0","version":1,"at_us":3}"#).unwrap();
        assert!(matches!(e, ChildEvent::Set { version: 1, .. }));
        let e: ChildEvent =
            serde_json::from_str(r#"{"event":"peer_dead","node":"ab","at_us":4}"#).unwrap();
        assert!(matches!(e, ChildEvent::PeerDead { at_us: 4, .. }));
        let e: ChildEvent = serde_json::from_str(
            r#"{"event":"new_peer","node":"ab","addr":"127.0.0.1:9","at_us":4}"#,
        )
        .unwrap();
        assert!(matches!(e, ChildEvent::NewPeer { .. }));
    }
}
