//! A local multi-process cluster: the logic of the `cluster` binary.
//!
//! The cluster starts `--nodes` child processes by re-executing its own binary with the hidden
//! `node` subcommand (so `cargo run --bin cluster` needs no other binary), each bound to
//! `127.0.0.1:0`, and drives them over the JSON-lines protocol of [`crate::node`]:
//!
//! 1. read every child's `ready` line (its address), within [`READY_TIMEOUT`];
//! 2. tell every child about every other one (`peer <addr>`: full static membership) and
//!    check with `peers` that each knows all the others;
//! 3. broadcast `--messages` messages `m0`, `m1`, ... each from a node chosen with a seeded
//!    generator, [`BROADCAST_PACING`] apart, while collecting every child's deliveries;
//! 4. stop when every node delivered every message, or at `--deadline-secs` after the first
//!    broadcast; then collect each child's `stats`, send `quit`, and wait for the children to
//!    exit (killing those that do not).
//!
//! Latency of a delivery = its `at_us` minus the origin's `broadcast` `at_us` (both read from
//! the same machine's clock). The origin's own delivery (hop 0, about zero latency) is counted
//! as a delivery but excluded from the latency figures.
//!
//! Exit codes: 0 when every node delivered every message, 1 when the deadline passed with
//! deliveries missing, 2 when the cluster could not be set up or a child died.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, timeout};

use crate::node::{NodeArgs, parse_probability};

/// How long a child may take to print its `ready` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
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
/// How long one write to a child's stdin may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Events buffered between the children's reader tasks and the main loop.
const EVENT_QUEUE: usize = 8_192;
/// Lines listing missing deliveries, at most.
const MISSING_LINES: usize = 10;

/// Command line of the `cluster` binary.
#[derive(Parser, Debug)]
#[command(
    name = "cluster",
    about = "Start a local gossip cluster of child processes on 127.0.0.1, broadcast messages \
             through it and report delivery, latency and traffic.",
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
    /// Seconds after the first broadcast before giving up on missing deliveries.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub deadline_secs: u64,
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
    exited: bool,
}

impl ChildNode {
    async fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin already closed")?;
        let write = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        match timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("write failed: {err}")),
            Err(_) => Err("write timed out".into()),
        }
    }
}

/// Why the cluster could not run (exit code 2).
struct SetupError(String);

impl<T: std::fmt::Display> From<T> for SetupError {
    fn from(value: T) -> Self {
        SetupError(value.to_string())
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
}

impl Tally {
    fn new(nodes: usize, messages: usize) -> Self {
        Tally {
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

    /// Records an event of child `node`.
    fn record(&mut self, node: usize, event: ChildEvent, progress: &ProgressBar) {
        match event {
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

/// Nearest-rank percentile of sorted values, in milliseconds with one decimal.
fn percentile_ms(sorted_us: &[u64], q: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let us = sorted_us[rank.clamp(1, sorted_us.len()) - 1];
    Some((us as f64 / 100.0).round() / 10.0)
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
}

/// Runs a cluster and returns the process exit code (0, 1 or 2, see the module docs).
pub async fn run_cluster(args: ClusterArgs) -> u8 {
    let started = Instant::now();
    let nodes = args.nodes as usize;
    let messages = args.messages as usize;
    let (tx, mut rx) = mpsc::channel::<(usize, Report)>(EVENT_QUEUE);
    let mut children = Vec::with_capacity(nodes);

    if let Err(SetupError(err)) = spawn_children(&args, &tx, &mut children).await {
        eprintln!("cluster: setup failed: {err}");
        return 2;
    }
    drop(tx);

    let progress = ProgressBar::with_draw_target(
        Some(nodes as u64 * messages as u64),
        ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} deliveries {msg}")
    {
        progress.set_style(style.progress_chars("=> "));
    }
    let mut tally = Tally::new(nodes, messages);

    let setup = async {
        wait_ready(&mut children, &mut rx, &mut tally, &progress).await?;
        connect(&mut children, &mut rx, &mut tally, &progress).await
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
    stop_children(&mut children).await;

    let complete = tally.deliveries == tally.expected();
    let latencies = tally.latencies_us();
    let (missing, incomplete) = tally.missing(MISSING_LINES);
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
    };
    if args.json {
        match serde_json::to_string(&summary) {
            Ok(line) => println!("{line}"),
            Err(err) => eprintln!("cluster: cannot encode the summary: {err}"),
        }
    } else {
        print!("{}", render(&summary, incomplete));
    }
    if complete { 0 } else { 1 }
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
    out
}

/// Starts the children and a reader task for each.
async fn spawn_children(
    args: &ClusterArgs,
    tx: &mpsc::Sender<(usize, Report)>,
    children: &mut Vec<ChildNode>,
) -> Result<(), SetupError> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's own path: {e}"))?;
    for index in 0..args.nodes as usize {
        let mut child = Command::new(&exe)
            .arg("node")
            .args(["--bind", "127.0.0.1:0"])
            .args(["--passphrase", &args.passphrase])
            .args(["--cluster", &args.cluster])
            .args(["--loss", &args.loss.to_string()])
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
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                let report = match lines.next_line().await {
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
            exited: false,
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
        if let Some(ChildEvent::Ready { addr }) =
            handle_report(children, tally, progress, node, report).await?
        {
            children[node].addr = Some(addr);
        }
    }
    Ok(())
}

/// Full static membership: every child learns every other child's address; then checks that
/// every child lists them all.
async fn connect(
    children: &mut [ChildNode],
    rx: &mut mpsc::Receiver<(usize, Report)>,
    tally: &mut Tally,
    progress: &ProgressBar,
) -> Result<(), SetupError> {
    let addrs: Vec<SocketAddr> = children.iter().filter_map(|c| c.addr).collect();
    for (i, child) in children.iter_mut().enumerate() {
        for (j, addr) in addrs.iter().enumerate() {
            if i != j {
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

/// Asks every child for its stats and adds them up. Deliveries arriving meanwhile still count.
async fn collect_stats(
    children: &mut [ChildNode],
    rx: &mut mpsc::Receiver<(usize, Report)>,
    tally: &mut Tally,
    progress: &ProgressBar,
) -> (ChildStats, usize) {
    let mut pending = vec![false; children.len()];
    for (i, child) in children.iter_mut().enumerate() {
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
            Ok(Ok(status)) if status.success() || child.exited => {}
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
    fn child_lines_parse() {
        let e: ChildEvent = serde_json::from_str(
            r#"{"event":"delivered","id":"ab","origin":"cd","hop":1,"payload":"m3","at_us":5}"#,
        )
        .unwrap();
        assert!(matches!(e, ChildEvent::Delivered { at_us: 5, .. }));
        let e: ChildEvent = serde_json::from_str(r#"{"event":"peer_added","addr":"x"}"#).unwrap();
        assert!(matches!(e, ChildEvent::Other));
    }
}
