//! Chat over signed feeds, with a crash: the logic of the `chat` binary.
//!
//! `chat` starts `--nodes` child processes by re-executing its own binary with the hidden
//! `node` subcommand (the [`crate::node`] protocol), each bound to `127.0.0.1:0`, each with a
//! redb store and an identity file in a fresh temporary folder (under
//! [`std::env::temp_dir`], removed at the end). Then:
//!
//! 1. **membership**: every node learns every other one's address (`peer <addr>`, static
//!    discovery) and follows every other node's feed (`follow <feed>`);
//! 2. **links**: every node broadcasts a `hello` until each reports (`stats`) its feed tree
//!    peers up. A node's feed actor takes as tree peers the nodes it has received an
//!    authenticated datagram from, and static discovery sends nothing by itself, so without
//!    some traffic no feed would ever replicate;
//! 3. **posts**: every node publishes `--posts` messages to its own feed, in rounds (one
//!    message per node per round, [`POST_PACING`] apart), until every node holds every
//!    other node's posts or `--deadline-secs` pass;
//! 4. **crash**: the survivors post `--extra-posts` more messages each; after the first of
//!    those rounds the *victim* (node `nodes / 2`, never the first) is killed with SIGKILL,
//!    while the rest are still posted;
//! 5. **restart**: once every extra post is acknowledged, the victim is started again on the
//!    same redb file and identity file (so with the same feed id). Before it meets anyone it
//!    is asked for its stored logs (`log <feed> 1` for every feed); then the survivors are
//!    told its address and it is told theirs (`peer`), it says `hello`, and the run waits
//!    until it holds every post of every feed (the ones it kept in its store plus those it
//!    fetches), and checks every stored feed end to end (`verify-log`).
//!
//! The victim comes back on its old address (UDP ports are free again as soon as the
//! process dies). With `--restart-on-new-port` it binds a new port instead, and does not
//! catch up: a survivor's feed actor keeps the address it first saw for a node id until the
//! node is reported dead, and the node runs no failure detector that would report it, so
//! the survivors keep sending the victim's feeds to its old port.
//!
//! Counted from the children's `feed_message` events (each is a durable append):
//!
//! - `delivered`: distinct (node, feed, sequence) for the `--posts` main posts of the *other*
//!   nodes' feeds; `expected` = nodes × (nodes − 1) × posts;
//! - `out_of_order`: `feed_message` events whose sequence is not the previous one of that
//!   (node, feed) plus one (after the restart, "previous" is the stored head it reported);
//! - `restart_resent`: `feed_message` events of the restarted victim for a (feed, sequence)
//!   it held before: one it reported before the kill, or found in its store at restart.
//!   A message is only reported once it is appended, and the store refuses a second append,
//!   so this counts messages the victim lost and had to receive again over the network;
//! - `restart_lost`: messages the victim reported before the kill (durable appends) that
//!   its store no longer held after the restart (should be 0: redb commits are durable);
//! - `rejected`: the children's `stats`, refused feed messages summed over every reason.
//!
//! `restart_caught_up` is true when the victim, after the restart, holds every post of
//! every feed (main and extra, its own feed included), its feed id survived, and every feed
//! verified end to end.
//!
//! With `--attach FILE`, a last phase follows: node 0 adds the file as a blob (`add-blob`,
//! [`crate::node`]) and publishes a feed message referencing it (`attachment <name>
//! blob:<hex>`); every other node, as soon as it reports that message, is asked for the blob
//! (`get-blob`), fetches it from whoever holds it, and reports the SHA-256 of the bytes it
//! received. The summary's `attachment` says how many nodes saw the reference, fetched the
//! blob and hold a copy whose hash equals the file's (`hashes_match`, of `expected`).
//!
//! Exit codes: 0 when `delivered == expected`, `out_of_order == 0`, `restart_caught_up` and,
//! with `--attach`, every other node's copy hashes equal; 1 otherwise; 2 when the run could not be set up or a child died unexpectedly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at};

use gossip_actors::core::blob::{BlobId, references};

use crate::node::NodeArgs;
use crate::process::{SetupError, TempDir, send_line};

/// How long a child may take to print its `ready` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the membership and follow commands may take to be answered.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between two `publish` commands.
pub const POST_PACING: Duration = Duration::from_millis(5);
/// How long a killed child may take to close its output.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the `log` and `verify-log` answers may take.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(20);
/// How long collecting the `stats` of every child may take.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a child may take to exit after `quit` before it is killed.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one write to a child's stdin may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between a round of `hello` broadcasts and asking whether the tree links are up.
const LINK_POLL: Duration = Duration::from_millis(300);
/// Tree peers a node takes from the nodes it hears from (`NodeConfig::tree_target_peers`).
const TREE_TARGET_PEERS: usize = 8;
/// Reports buffered between the children's reader tasks and the main loop.
const EVENT_QUEUE: usize = 16_384;

/// Command line of the `chat` binary.
#[derive(Parser, Debug)]
#[command(
    name = "chat",
    about = "Chat over signed feeds between local node processes on 127.0.0.1: every node \
             posts to its own feed and follows all others; one node is killed with SIGKILL \
             and restarted on its redb file.",
    args_conflicts_with_subcommands = true
)]
pub struct ChatCli {
    /// Internal: run one node (used by the chat for its children).
    #[command(subcommand)]
    pub command: Option<ChatCommand>,
    /// Options of a chat run.
    #[command(flatten)]
    pub run: ChatArgs,
}

/// Subcommands of the `chat` binary.
#[derive(Subcommand, Debug)]
pub enum ChatCommand {
    /// Run one node over stdin/stdout, exactly as `gossip-node` does (internal).
    #[command(hide = true)]
    Node(NodeArgs),
}

/// Options of a chat run.
#[derive(Args, Debug, Clone)]
pub struct ChatArgs {
    /// Number of node processes (at least 2: one of them is killed and restarted).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=64))]
    pub nodes: u32,
    /// Messages each node posts to its own feed.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub posts: u64,
    /// Messages each surviving node posts around the crash of the victim.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub extra_posts: u64,
    /// Seconds each phase (posts; catching up after the restart) may take.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub deadline_secs: u64,
    /// Restart the killed node on a new port instead of its old address (see the module
    /// docs: the survivors' feed trees keep its old address, so it does not catch up).
    #[arg(long)]
    pub restart_on_new_port: bool,
    /// Print one JSON object (on the last stdout line) instead of the readable summary.
    #[arg(long)]
    pub json: bool,
    /// A file that node 0 adds as a blob and references from its feed; the other nodes fetch
    /// it and verify its hash (see the module docs).
    #[arg(long, value_name = "FILE")]
    pub attach: Option<PathBuf>,
    /// Passphrase of the cluster (a demonstration default; it is visible in the process list).
    #[arg(long, default_value = "gossip demo passphrase")]
    pub passphrase: String,
    /// Cluster name (the salt of the key derivation).
    #[arg(long, default_value = "gossip")]
    pub cluster: String,
}

/// Entry point of the `chat` binary after argument parsing.
pub fn main_with(cli: ChatCli) -> ExitCode {
    match cli.command {
        Some(ChatCommand::Node(args)) => crate::node::main_with(args),
        None => {
            crate::node::init_logging();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("chat: cannot start the runtime: {err}");
                    return ExitCode::from(2);
                }
            };
            ExitCode::from(runtime.block_on(run_chat(cli.run)))
        }
    }
}

/// One line of a child, as far as the chat cares.
#[derive(Deserialize, Debug, Clone)]
#[serde(tag = "event", rename_all = "snake_case")]
enum ChildEvent {
    Ready {
        addr: SocketAddr,
        feed: String,
    },
    Published {
        sequence: u64,
    },
    FeedMessage {
        feed: String,
        sequence: u64,
        #[serde(default)]
        content: String,
    },
    BlobAdded {
        blob: String,
    },
    Blob {
        blob: String,
        size: u64,
        sha256: String,
        matches: bool,
    },
    Followed {
        feed: String,
    },
    Log {
        feed: String,
        head: u64,
        messages: Vec<LogLine>,
    },
    LogVerified {
        feed: String,
        ok: bool,
        messages: u64,
        error: Option<String>,
    },
    Peers {
        peers: Vec<serde_json::Value>,
    },
    Stats {
        feeds: ChildFeedStats,
    },
    Error {
        command: Option<String>,
        error: String,
        skipped: Option<u64>,
    },
    #[serde(other)]
    Other,
}

/// One message of a `log` answer.
#[derive(Deserialize, Debug, Clone)]
struct LogLine {
    sequence: u64,
}

/// The feed counters of a child's `stats` that the summary adds up.
#[derive(Deserialize, Debug, Clone, Default)]
struct ChildFeedStats {
    #[serde(default)]
    peers_up: usize,
    appended: u64,
    append_errors: u64,
    duplicates: u64,
    messages_sent: u64,
    messages_received: u64,
    rejected: BTreeMap<String, u64>,
}

impl ChildFeedStats {
    fn add(&mut self, other: &ChildFeedStats) {
        self.appended += other.appended;
        self.append_errors += other.append_errors;
        self.duplicates += other.duplicates;
        self.messages_sent += other.messages_sent;
        self.messages_received += other.messages_received;
        for (reason, n) in &other.rejected {
            *self.rejected.entry(reason.clone()).or_default() += n;
        }
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

/// A report from child `node`'s process number `generation` (0, then 1 after a restart).
type Tagged = (usize, u32, Report);

/// A running child and the write end of its stdin.
struct ChildNode {
    child: Child,
    stdin: Option<ChildStdin>,
    generation: u32,
    addr: Option<SocketAddr>,
    feed: Option<String>,
    /// Its output closed (it exited, or was killed).
    exited: bool,
}

impl ChildNode {
    async fn send(&mut self, line: &str) -> Result<(), String> {
        send_line(&mut self.stdin, line, WRITE_TIMEOUT).await
    }
}

/// Everything the run counted.
struct Tally {
    nodes: usize,
    posts: u64,
    /// Feed id (hex) → node index.
    feed_index: HashMap<String, usize>,
    /// Highest acknowledged (`published`) sequence of each node's feed.
    published: Vec<u64>,
    /// `publish` commands sent to each node and not answered yet.
    pending: Vec<u64>,
    /// `[node][feed]`: sequences the node holds (reported appended, or found in its store).
    held: Vec<Vec<BTreeSet<u64>>>,
    /// `[node][feed]`: the last sequence reported.
    last: Vec<Vec<u64>>,
    delivered: u64,
    out_of_order: u64,
    /// `feed_message` events of feeds that belong to no node.
    unexpected: u64,
    /// Events the children's subscriptions skipped.
    lagged: u64,
    /// The restarted victim, once it runs again.
    restarted: Option<usize>,
    /// (feed, sequence) the victim held before the restart.
    held_before_restart: BTreeSet<(usize, u64)>,
    restart_resent: u64,
    errors: Vec<String>,
}

impl Tally {
    fn new(nodes: usize, posts: u64) -> Self {
        Tally {
            nodes,
            posts,
            feed_index: HashMap::new(),
            published: vec![0; nodes],
            pending: vec![0; nodes],
            held: vec![vec![BTreeSet::new(); nodes]; nodes],
            last: vec![vec![0; nodes]; nodes],
            delivered: 0,
            out_of_order: 0,
            unexpected: 0,
            lagged: 0,
            restarted: None,
            held_before_restart: BTreeSet::new(),
            restart_resent: 0,
            errors: Vec::new(),
        }
    }

    fn expected(&self) -> u64 {
        let n = self.nodes as u64;
        n * (n - 1) * self.posts
    }

    /// Notes that `node` holds `seq` of `feed`; counts a new delivery of a main post.
    fn hold(&mut self, node: usize, feed: usize, seq: u64, progress: &ProgressBar) {
        if self.held[node][feed].insert(seq) && feed != node && seq <= self.posts {
            self.delivered += 1;
            progress.inc(1);
        }
    }

    /// How many of the acknowledged posts of `feed` `node` holds.
    fn held_of(&self, node: usize, feed: usize) -> u64 {
        let want = self.published[feed];
        if want == 0 {
            return 0;
        }
        self.held[node][feed].range(1..=want).count() as u64
    }

    /// Whether `node` holds every acknowledged post of every feed.
    fn holds_everything(&self, node: usize) -> bool {
        (0..self.nodes).all(|feed| self.held_of(node, feed) == self.published[feed])
    }

    fn all_acknowledged(&self) -> bool {
        self.pending.iter().all(|&p| p == 0)
    }

    fn error(&mut self, text: String, progress: &ProgressBar) {
        progress.suspend(|| eprintln!("chat: {text}"));
        self.errors.push(text);
    }

    /// Records an event of child `node`.
    fn record(&mut self, node: usize, event: &ChildEvent, progress: &ProgressBar) {
        match event {
            ChildEvent::FeedMessage { feed, sequence, .. } => {
                let Some(&f) = self.feed_index.get(feed) else {
                    self.unexpected += 1;
                    return;
                };
                let seq = *sequence;
                if seq != self.last[node][f] + 1 {
                    self.out_of_order += 1;
                    let text = format!(
                        "node {node}: feed of node {f}: sequence {seq} after {}",
                        self.last[node][f]
                    );
                    self.error(text, progress);
                }
                self.last[node][f] = self.last[node][f].max(seq);
                if self.restarted == Some(node) && self.held_before_restart.contains(&(f, seq)) {
                    self.restart_resent += 1;
                }
                self.hold(node, f, seq, progress);
            }
            ChildEvent::Published { sequence } => {
                self.published[node] = self.published[node].max(*sequence);
                self.pending[node] = self.pending[node].saturating_sub(1);
            }
            ChildEvent::Error {
                command,
                error,
                skipped,
            } => {
                if let Some(n) = skipped {
                    self.lagged += n;
                }
                if command
                    .as_deref()
                    .is_some_and(|c| c.starts_with("publish "))
                {
                    self.pending[node] = self.pending[node].saturating_sub(1);
                }
                let text = format!("node {node}: {command:?}: {error}");
                self.error(text, progress);
            }
            _ => {}
        }
    }
}

/// The `--json` summary.
#[derive(Serialize, Debug)]
struct Summary {
    nodes: usize,
    posts_per_node: u64,
    extra_posts_per_survivor: u64,
    expected: u64,
    delivered: u64,
    out_of_order: u64,
    rejected: u64,
    /// Refused feed messages by reason, summed over the nodes.
    rejected_by_reason: BTreeMap<String, u64>,
    restart_caught_up: bool,
    restart_resent: u64,
    restart_lost: u64,
    /// The node that was killed and restarted.
    restarted_node: usize,
    /// Its feed id was the same after the restart.
    identity_kept: bool,
    /// Feeds of the restarted node that verified end to end (of `nodes`).
    logs_verified: usize,
    unexpected: u64,
    lagged: u64,
    errors: usize,
    /// Feed messages appended, and copies sent and received, summed over the nodes.
    appended: u64,
    append_errors: u64,
    messages_sent: u64,
    messages_received: u64,
    duplicates: u64,
    /// Children whose `stats` answered.
    stats_nodes: usize,
    /// From the first post until every node held every main post.
    posts_ms: Option<u64>,
    /// From the restarted node's connection to the others until it held everything.
    restart_catch_up_ms: Option<u64>,
    /// The `--attach` phase, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    attachment: Option<AttachmentSummary>,
    elapsed_ms: u64,
}

/// What the `--attach` phase found.
#[derive(Serialize, Debug, Clone, Default)]
struct AttachmentSummary {
    /// The file's name.
    file: String,
    /// Its size, in bytes.
    size: u64,
    /// Its blob id (SHA-256), 64 hex digits, as computed by the chat from the file.
    blob: String,
    /// The blob id node 0 reported for it.
    added_as: String,
    /// Other nodes that reported the feed message referencing it.
    reference_seen: usize,
    /// Other nodes that answered `get-blob`.
    fetched: usize,
    /// Other nodes whose copy hashes to the file's SHA-256 (`sha256` equal and `matches`).
    hashes_match: usize,
    /// Other nodes: `nodes − 1`.
    expected: usize,
    /// From the publish of the reference until the last copy was verified.
    fetch_ms: Option<u64>,
}

/// Runs a chat and returns the process exit code (0, 1 or 2, see the module docs).
pub async fn run_chat(args: ChatArgs) -> u8 {
    let started = Instant::now();
    let dir = match TempDir::create("chat") {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("chat: cannot create a temporary folder: {err}");
            return 2;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!("chat: cannot find this program's own path: {err}");
            return 2;
        }
    };
    let nodes = args.nodes as usize;
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let progress = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} deliveries {msg}")
    {
        progress.set_style(style.progress_chars("=> "));
    }
    let mut run = Run {
        tally: Tally::new(nodes, args.posts),
        args,
        exe,
        dir: dir.path().to_path_buf(),
        children: Vec::with_capacity(nodes),
        tx,
        rx,
        progress,
        victim: nodes / 2,
        timings: Timings::default(),
        restart: RestartCheck::default(),
        attachment: None,
    };
    run.progress.set_length(run.tally.expected());
    let outcome = run.drive().await;
    run.progress.finish_and_clear();
    let (stats, stats_nodes) = match &outcome {
        Ok(()) => run.collect_stats().await,
        Err(_) => (ChildFeedStats::default(), 0),
    };
    run.stop_children().await;
    if let Err(SetupError(err)) = outcome {
        eprintln!("chat: {err}");
        return 2;
    }
    let summary = run.summary(stats, stats_nodes, started);
    if run.args.json {
        match serde_json::to_string(&summary) {
            Ok(line) => println!("{line}"),
            Err(err) => eprintln!("chat: cannot encode the summary: {err}"),
        }
    } else {
        print!("{}", render(&summary));
    }
    drop(run);
    drop(dir);
    let ok = summary.delivered == summary.expected
        && summary.out_of_order == 0
        && summary.restart_caught_up
        && summary
            .attachment
            .as_ref()
            .is_none_or(|a| a.hashes_match == a.expected);
    if ok { 0 } else { 1 }
}

/// How long the phases took.
#[derive(Default)]
struct Timings {
    posts: Option<Duration>,
    restart_catch_up: Option<Duration>,
}

/// What the restart phase found.
#[derive(Default)]
struct RestartCheck {
    identity_kept: bool,
    caught_up: bool,
    lost: u64,
    logs_verified: usize,
}

/// One run: the children, their reports and the tally.
struct Run {
    args: ChatArgs,
    exe: PathBuf,
    dir: PathBuf,
    children: Vec<ChildNode>,
    tx: mpsc::Sender<Tagged>,
    rx: mpsc::Receiver<Tagged>,
    tally: Tally,
    progress: ProgressBar,
    victim: usize,
    timings: Timings,
    restart: RestartCheck,
    attachment: Option<AttachmentSummary>,
}

impl Run {
    fn say(&self, text: &str) {
        self.progress.suspend(|| eprintln!("chat: {text}"));
    }

    /// All phases, in order.
    async fn drive(&mut self) -> Result<(), SetupError> {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        for index in 0..self.args.nodes as usize {
            let child = self.spawn(index, 0, any_port)?;
            self.children.push(child);
        }
        self.wait_ready(None).await?;
        self.connect().await?;
        self.follow_all().await?;
        let everyone: Vec<usize> = (0..self.children.len()).collect();
        self.link_up(&everyone).await?;
        self.post_main().await?;
        self.crash().await?;
        self.restart().await?;
        if let Some(path) = self.args.attach.clone() {
            self.attach(&path).await?;
        }
        Ok(())
    }

    /// The `--attach` phase (see the module docs).
    async fn attach(&mut self, path: &Path) -> Result<(), SetupError> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the attachment {}: {e}", path.display()))?;
        let id = BlobId::of(&bytes).to_string();
        let name = path
            .file_name()
            .map_or_else(|| "attachment".into(), |n| n.to_string_lossy().into_owned());
        let mut report = AttachmentSummary {
            file: name.clone(),
            size: bytes.len() as u64,
            blob: id.clone(),
            expected: self.children.len() - 1,
            ..AttachmentSummary::default()
        };
        drop(bytes);
        let absolute = std::fs::canonicalize(path)
            .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
        self.say(&format!("node 0 adds {name} as blob {}", &id[..16]));
        self.send(0, &format!("add-blob {}", absolute.display()))
            .await?;
        let deadline = tokio::time::Instant::now() + LOG_TIMEOUT;
        report.added_as = loop {
            match self.next(deadline).await? {
                Some((0, ChildEvent::BlobAdded { blob })) => break blob,
                Some((0, ChildEvent::Error { command, error, .. }))
                    if command
                        .as_deref()
                        .is_some_and(|c| c.starts_with("add-blob")) =>
                {
                    return Err(format!("node 0 could not add the attachment: {error}").into());
                }
                Some(_) => {}
                None => return Err("node 0 did not answer add-blob".into()),
            }
        };
        let feed0 = self.children[0].feed.clone().unwrap_or_default();
        self.tally.pending[0] += 1;
        let published = Instant::now();
        self.send(
            0,
            &format!("publish attachment {name} blob:{}", report.added_as),
        )
        .await?;
        let wanted: BlobId = id.parse().map_err(|_| "bad blob id")?;
        let mut seen: BTreeSet<usize> = BTreeSet::new();
        let mut answered: BTreeSet<usize> = BTreeSet::new();
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.args.deadline_secs.max(60));
        while answered.len() < report.expected {
            let Some((node, event)) = self.next(deadline).await? else {
                self.say("the attachment phase ran out of time");
                break;
            };
            match event {
                ChildEvent::FeedMessage { feed, content, .. }
                    if node != 0
                        && feed == feed0
                        && references(content.as_bytes()).contains(&wanted)
                        && seen.insert(node) =>
                {
                    self.send(node, &format!("get-blob {id}")).await?;
                }
                ChildEvent::Blob {
                    blob,
                    sha256,
                    matches,
                    size,
                } if blob == id && answered.insert(node) => {
                    if matches && sha256 == id && size == report.size {
                        report.hashes_match += 1;
                    } else {
                        self.say(&format!("node {node}: blob copy hashes to {sha256}"));
                    }
                }
                ChildEvent::Error { command, error, .. }
                    if command
                        .as_deref()
                        .is_some_and(|c| c.starts_with("get-blob")) =>
                {
                    self.say(&format!("node {node}: get-blob failed: {error}"));
                    answered.insert(node);
                }
                _ => {}
            }
        }
        report.reference_seen = seen.len();
        report.fetched = answered.len();
        let ms = u64::try_from(published.elapsed().as_millis()).unwrap_or(u64::MAX);
        report.fetch_ms = (report.hashes_match == report.expected).then_some(ms);
        self.attachment = Some(report);
        Ok(())
    }

    /// Starts process `generation` of node `index` on its store and identity files.
    fn spawn(
        &self,
        index: usize,
        generation: u32,
        bind: SocketAddr,
    ) -> Result<ChildNode, SetupError> {
        let store = self.dir.join(format!("node-{index}.redb"));
        let identity = self.dir.join(format!("node-{index}.identity"));
        let mut child = Command::new(&self.exe)
            .arg("node")
            .args(["--bind", &bind.to_string()])
            .args(["--passphrase", &self.args.passphrase])
            .args(["--cluster", &self.args.cluster])
            .arg("--store")
            .arg(&store)
            .arg("--identity-file")
            .arg(&identity)
            .env("RUST_LOG", crate::node::child_log_filter())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start node {index} ({}): {e}", self.exe.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| format!("node {index} has no stdout"))?;
        let stdin = child.stdin.take();
        let tx = self.tx.clone();
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
                if tx.send((index, generation, report)).await.is_err() || closed {
                    break;
                }
            }
        });
        Ok(ChildNode {
            child,
            stdin,
            generation,
            addr: None,
            feed: None,
            exited: false,
        })
    }

    async fn send(&mut self, node: usize, line: &str) -> Result<(), SetupError> {
        let child = &mut self.children[node];
        child
            .send(line)
            .await
            .map_err(|e| SetupError(format!("node {node}: {e}")))
    }

    /// The next event of a current child, recorded in the tally; `None` at `deadline`. The
    /// closed output of an old (killed) process is noted and skipped; that of a current one
    /// is an error.
    async fn next(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<Option<(usize, ChildEvent)>, SetupError> {
        loop {
            let Ok(item) = timeout_at(deadline, self.rx.recv()).await else {
                return Ok(None);
            };
            let Some((node, generation, report)) = item else {
                return Err("every child's output closed".into());
            };
            match report {
                Report::Event(event) => {
                    self.tally.record(node, &event, &self.progress);
                    if generation == self.children[node].generation {
                        return Ok(Some((node, event)));
                    }
                }
                Report::Unparsable(line) => {
                    self.say(&format!("node {node} printed a non-JSON line: {line}"));
                }
                Report::Closed if generation == self.children[node].generation => {
                    let child = &mut self.children[node];
                    child.exited = true;
                    let status = match timeout(Duration::from_millis(500), child.child.wait()).await
                    {
                        Ok(Ok(status)) => status.to_string(),
                        _ => "status unknown".into(),
                    };
                    return Err(format!("node {node} exited early ({status})").into());
                }
                Report::Closed => {}
            }
        }
    }

    /// Processes events until `done` holds or `limit` passes; returns whether `done` held.
    async fn wait_until(
        &mut self,
        limit: Duration,
        done: impl Fn(&Tally) -> bool,
    ) -> Result<bool, SetupError> {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(&self.tally) {
            if self.next(deadline).await?.is_none() {
                return Ok(done(&self.tally));
            }
        }
        Ok(true)
    }

    /// Waits for the `ready` line of every child (or only of `only`).
    async fn wait_ready(&mut self, only: Option<usize>) -> Result<(), SetupError> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let waiting = |children: &[ChildNode]| -> Vec<usize> {
            (0..children.len())
                .filter(|&i| only.is_none_or(|o| o == i) && children[i].addr.is_none())
                .collect()
        };
        while !waiting(&self.children).is_empty() {
            match self.next(deadline).await? {
                Some((node, ChildEvent::Ready { addr, feed })) => {
                    self.children[node].addr = Some(addr);
                    self.children[node].feed = Some(feed);
                }
                Some(_) => {}
                None => {
                    return Err(format!(
                        "nodes {:?} not ready within {} s",
                        waiting(&self.children),
                        READY_TIMEOUT.as_secs()
                    )
                    .into());
                }
            }
        }
        if only.is_none() {
            for (i, child) in self.children.iter().enumerate() {
                let feed = child.feed.clone().unwrap_or_default();
                if self.tally.feed_index.insert(feed, i).is_some() {
                    return Err(format!("node {i} has the feed id of another node").into());
                }
            }
        }
        Ok(())
    }

    fn addr(&self, node: usize) -> Result<SocketAddr, SetupError> {
        self.children[node]
            .addr
            .ok_or_else(|| SetupError(format!("node {node} has no address")))
    }

    /// Full static membership (`peer <addr>` both ways), checked with `peers`.
    async fn connect(&mut self) -> Result<(), SetupError> {
        let n = self.children.len();
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let addr = self.addr(j)?;
                    self.send(i, &format!("peer {addr}")).await?;
                }
            }
            self.send(i, "peers").await?;
        }
        let mut answered = vec![false; n];
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        while answered.iter().any(|a| !a) {
            match self.next(deadline).await? {
                Some((node, ChildEvent::Peers { peers })) => {
                    if peers.len() < n - 1 {
                        return Err(format!(
                            "node {node} knows {} peers, expected {}",
                            peers.len(),
                            n - 1
                        )
                        .into());
                    }
                    answered[node] = true;
                }
                Some(_) => {}
                None => return Err("membership not confirmed in time".into()),
            }
        }
        Ok(())
    }

    /// Every node follows every other node's feed.
    async fn follow_all(&mut self) -> Result<(), SetupError> {
        let n = self.children.len();
        let feeds: Vec<String> = self
            .children
            .iter()
            .map(|c| c.feed.clone().unwrap_or_default())
            .collect();
        for (i, _) in feeds.iter().enumerate() {
            for (j, feed) in feeds.iter().enumerate() {
                if i != j {
                    self.send(i, &format!("follow {feed}")).await?;
                }
            }
        }
        let mut followed = 0;
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        while followed < n * (n - 1) {
            match self.next(deadline).await? {
                Some((node, ChildEvent::Followed { feed })) => {
                    if !self.tally.feed_index.contains_key(&feed) {
                        return Err(format!("node {node} followed an unknown feed {feed}").into());
                    }
                    followed += 1;
                }
                Some((node, ChildEvent::Error { command, error, .. }))
                    if command.as_deref().is_some_and(|c| c.starts_with("follow ")) =>
                {
                    return Err(format!("node {node} cannot follow: {error}").into());
                }
                Some(_) => {}
                None => return Err("follows not confirmed in time".into()),
            }
        }
        Ok(())
    }

    /// Brings the feed trees' links up. A node's feed actor takes as tree peers the nodes it
    /// has received an authenticated datagram from; static discovery sends nothing by itself,
    /// so each of `nodes` broadcasts a `hello` (push, acks and anti-entropy then reach its
    /// peers) until each reports (`stats`) as many tree peers as it can have, within
    /// [`SETUP_TIMEOUT`]. A node that falls short only slows replication down, so this
    /// reports and goes on.
    async fn link_up(&mut self, nodes: &[usize]) -> Result<(), SetupError> {
        let want = (self.children.len() - 1).min(TREE_TARGET_PEERS);
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        let mut short: Vec<usize> = nodes.to_vec();
        let mut round = 0u32;
        while !short.is_empty() {
            round += 1;
            for &node in nodes {
                self.send(node, &format!("broadcast hello {round} from node {node}"))
                    .await?;
            }
            let pause = (tokio::time::Instant::now() + LINK_POLL).min(deadline);
            while self.next(pause).await?.is_some() {}
            for &node in &short.clone() {
                self.send(node, "stats").await?;
            }
            let mut answered = BTreeMap::new();
            while answered.len() < short.len() {
                match self.next(deadline).await? {
                    Some((node, ChildEvent::Stats { feeds })) if short.contains(&node) => {
                        answered.insert(node, feeds.peers_up);
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            short.retain(|node| answered.get(node).is_none_or(|&up| up < want));
            if tokio::time::Instant::now() >= deadline {
                self.say(&format!(
                    "nodes {short:?} have fewer than {want} feed tree peers after {} s",
                    SETUP_TIMEOUT.as_secs()
                ));
                break;
            }
        }
        Ok(())
    }

    /// Sends `publish` commands in rounds: in each of `rounds`, one to each of `posters`,
    /// [`POST_PACING`] apart, processing events meanwhile.
    async fn post_rounds(
        &mut self,
        posters: &[usize],
        rounds: std::ops::RangeInclusive<u64>,
    ) -> Result<(), SetupError> {
        let mut next_at = tokio::time::Instant::now();
        for round in rounds {
            for &node in posters {
                while tokio::time::Instant::now() < next_at {
                    if self.next(next_at).await?.is_none() {
                        break;
                    }
                }
                self.tally.pending[node] += 1;
                self.send(node, &format!("publish hello {round} from node {node}"))
                    .await?;
                next_at += POST_PACING;
            }
        }
        Ok(())
    }

    /// Phase 2: every node posts `--posts` messages; wait until all are delivered.
    async fn post_main(&mut self) -> Result<(), SetupError> {
        let everyone: Vec<usize> = (0..self.children.len()).collect();
        self.progress
            .set_message(format!("{} posts per node", self.args.posts));
        let start = Instant::now();
        self.post_rounds(&everyone, 1..=self.args.posts).await?;
        let limit = Duration::from_secs(self.args.deadline_secs);
        let done = self
            .wait_until(limit, |t| {
                t.delivered == t.expected() && t.all_acknowledged()
            })
            .await?;
        if done {
            self.timings.posts = Some(start.elapsed());
        } else {
            self.say(&format!(
                "posts: {} of {} delivered within {} s",
                self.tally.delivered,
                self.tally.expected(),
                self.args.deadline_secs
            ));
        }
        Ok(())
    }

    /// Phase 3: the survivors post `--extra-posts` more each; the victim is killed with
    /// SIGKILL after the first round. Waits for the survivors' acknowledgements.
    async fn crash(&mut self) -> Result<(), SetupError> {
        let victim = self.victim;
        let survivors: Vec<usize> = (0..self.children.len()).filter(|&i| i != victim).collect();
        self.progress
            .set_message(format!("node {victim} killed; survivors post"));
        let extra = self.args.extra_posts;
        let first = self.args.posts + 1;
        if extra > 0 {
            // Post round one, then kill, then the rest.
            self.post_rounds(&survivors, first..=first).await?;
        }
        self.kill(victim).await?;
        if extra > 1 {
            self.post_rounds(&survivors, first + 1..=first + extra - 1)
                .await?;
        }
        let limit = Duration::from_secs(self.args.deadline_secs);
        if !self.wait_until(limit, Tally::all_acknowledged).await? {
            return Err("the survivors' posts were not acknowledged in time".into());
        }
        Ok(())
    }

    /// Kills node `node` with SIGKILL and waits until its output closed (every line it
    /// printed before dying is recorded) and it exited.
    async fn kill(&mut self, node: usize) -> Result<(), SetupError> {
        let generation = self.children[node].generation;
        let child = &mut self.children[node];
        child
            .child
            .start_kill()
            .map_err(|e| format!("cannot kill node {node}: {e}"))?;
        child.stdin = None;
        // From now on its output closing is expected.
        child.generation = generation + 1;
        let deadline = tokio::time::Instant::now() + KILL_TIMEOUT;
        loop {
            let Ok(item) = timeout_at(deadline, self.rx.recv()).await else {
                return Err(format!("node {node} still printing after SIGKILL").into());
            };
            let Some((from, from_generation, report)) = item else {
                return Err("every child's output closed".into());
            };
            let killed = from == node && from_generation == generation;
            match report {
                Report::Event(event) => self.tally.record(from, &event, &self.progress),
                Report::Closed if killed => break,
                Report::Closed if from_generation == self.children[from].generation => {
                    return Err(format!("node {from} exited early").into());
                }
                Report::Unparsable(_) | Report::Closed => {}
            }
        }
        let child = &mut self.children[node];
        match timeout(KILL_TIMEOUT, child.child.wait()).await {
            Ok(Ok(status)) => {
                self.say(&format!("node {node} killed ({status})"));
                Ok(())
            }
            Ok(Err(err)) => Err(format!("cannot wait for node {node}: {err}").into()),
            Err(_) => Err(format!("node {node} did not die after SIGKILL").into()),
        }
    }

    /// Phase 4: restart the victim on its files, read its stored logs, reconnect it and wait
    /// until it holds everything; then verify its logs.
    async fn restart(&mut self) -> Result<(), SetupError> {
        let victim = self.victim;
        let old_feed = self.children[victim].feed.clone();
        for (feed, seqs) in self.tally.held[victim].iter().enumerate() {
            for &seq in seqs {
                self.tally.held_before_restart.insert((feed, seq));
            }
        }
        let generation = self.children[victim].generation;
        let bind = if self.args.restart_on_new_port {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            self.addr(victim)?
        };
        self.children[victim] = self.spawn(victim, generation, bind)?;
        self.tally.restarted = Some(victim);
        self.wait_ready(Some(victim)).await?;
        self.restart.identity_kept = self.children[victim].feed == old_feed;
        if !self.restart.identity_kept {
            self.say(&format!("node {victim} came back with another feed id"));
        }
        self.say(&format!(
            "node {victim} restarted on {}",
            self.addr(victim)?
        ));

        // Its store, before it meets anyone: what survived the kill.
        let stored = self.read_logs(victim).await?;
        let mut lost = 0;
        for &(feed, seq) in &self.tally.held_before_restart {
            if !stored.contains(&(feed, seq)) {
                lost += 1;
            }
        }
        self.restart.lost = lost;
        let mut heads = vec![0u64; self.children.len()];
        for &(feed, seq) in &stored {
            heads[feed] = heads[feed].max(seq);
            self.tally.held_before_restart.insert((feed, seq));
            self.tally.hold(victim, feed, seq, &self.progress);
        }
        self.tally.last[victim] = heads;

        // Reconnect: it learns the survivors, they learn its new address.
        let start = Instant::now();
        let new_addr = self.addr(victim)?;
        for other in 0..self.children.len() {
            if other != victim {
                let addr = self.addr(other)?;
                self.send(victim, &format!("peer {addr}")).await?;
                self.send(other, &format!("peer {new_addr}")).await?;
            }
        }
        self.progress
            .set_message(format!("node {victim} restarted; catching up"));
        self.link_up(&[victim]).await?;
        let limit = Duration::from_secs(self.args.deadline_secs);
        let caught_up = self
            .wait_until(limit, |t| t.holds_everything(victim))
            .await?;
        if caught_up {
            self.timings.restart_catch_up = Some(start.elapsed());
        } else {
            let missing: Vec<String> = (0..self.children.len())
                .map(|f| {
                    let (have, want) = (self.tally.held_of(victim, f), self.tally.published[f]);
                    format!("feed {f}: {have}/{want}")
                })
                .collect();
            self.say(&format!(
                "node {victim} did not catch up within {} s ({})",
                self.args.deadline_secs,
                missing.join(", ")
            ));
        }
        self.restart.logs_verified = self.verify_logs(victim).await?;
        self.restart.caught_up = caught_up
            && self.restart.identity_kept
            && self.restart.logs_verified == self.children.len();
        Ok(())
    }

    /// Asks `node` for every feed's log from sequence 1; returns the (feed, sequence) pairs
    /// it holds, checking that each log is 1..=head without a gap.
    async fn read_logs(&mut self, node: usize) -> Result<BTreeSet<(usize, u64)>, SetupError> {
        let feeds: Vec<String> = self
            .children
            .iter()
            .map(|c| c.feed.clone().unwrap_or_default())
            .collect();
        for feed in &feeds {
            self.send(node, &format!("log {feed} 1")).await?;
        }
        let mut stored = BTreeSet::new();
        let mut answered = 0;
        let deadline = tokio::time::Instant::now() + LOG_TIMEOUT;
        while answered < feeds.len() {
            match self.next(deadline).await? {
                Some((
                    from,
                    ChildEvent::Log {
                        feed,
                        head,
                        messages,
                    },
                )) if from == node => {
                    answered += 1;
                    let Some(&f) = self.tally.feed_index.get(&feed) else {
                        continue;
                    };
                    let contiguous = messages.len() as u64 == head
                        && (1u64..).zip(&messages).all(|(s, m)| m.sequence == s);
                    if !contiguous {
                        let text = format!("node {node}: stored log of feed {f} has gaps");
                        self.tally.error(text, &self.progress);
                    }
                    stored.extend(messages.iter().map(|m| (f, m.sequence)));
                }
                Some((from, ChildEvent::Error { command, error, .. }))
                    if from == node
                        && command.as_deref().is_some_and(|c| c.starts_with("log ")) =>
                {
                    return Err(format!("node {node} cannot read its log: {error}").into());
                }
                Some(_) => {}
                None => return Err(format!("node {node}: logs not answered in time").into()),
            }
        }
        Ok(stored)
    }

    /// Asks `node` to verify every feed end to end; returns how many verified.
    async fn verify_logs(&mut self, node: usize) -> Result<usize, SetupError> {
        let feeds: Vec<String> = self
            .children
            .iter()
            .map(|c| c.feed.clone().unwrap_or_default())
            .collect();
        for feed in &feeds {
            self.send(node, &format!("verify-log {feed}")).await?;
        }
        let mut answered = 0;
        let mut verified = 0;
        let deadline = tokio::time::Instant::now() + LOG_TIMEOUT;
        while answered < feeds.len() {
            match self.next(deadline).await? {
                Some((
                    from,
                    ChildEvent::LogVerified {
                        feed,
                        ok,
                        messages,
                        error,
                    },
                )) if from == node => {
                    answered += 1;
                    let f = self.tally.feed_index.get(&feed).copied();
                    let complete = f.is_some_and(|f| messages >= self.tally.published[f]);
                    if ok && complete {
                        verified += 1;
                    } else {
                        let text = format!(
                            "node {node}: feed {f:?} did not verify ({messages} messages): {}",
                            error.unwrap_or_else(|| "incomplete".into())
                        );
                        self.tally.error(text, &self.progress);
                    }
                }
                Some((from, ChildEvent::Error { command, error, .. }))
                    if from == node
                        && command
                            .as_deref()
                            .is_some_and(|c| c.starts_with("verify-log ")) =>
                {
                    answered += 1;
                    let text = format!("node {node}: verify-log failed: {error}");
                    self.tally.error(text, &self.progress);
                }
                Some(_) => {}
                None => return Err(format!("node {node}: verify-log not answered in time").into()),
            }
        }
        Ok(verified)
    }

    /// Asks every running child for its stats and adds up the feed counters.
    async fn collect_stats(&mut self) -> (ChildFeedStats, usize) {
        let mut pending = vec![false; self.children.len()];
        for (i, child) in self.children.iter_mut().enumerate() {
            if child.exited {
                continue;
            }
            match child.send("stats").await {
                Ok(()) => pending[i] = true,
                Err(err) => eprintln!("chat: node {i}: cannot ask for stats: {err}"),
            }
        }
        let mut sum = ChildFeedStats::default();
        let mut answered = 0;
        let deadline = tokio::time::Instant::now() + STATS_TIMEOUT;
        while pending.iter().any(|p| *p) {
            match self.next(deadline).await {
                Ok(Some((node, ChildEvent::Stats { feeds }))) => {
                    if pending[node] {
                        pending[node] = false;
                        answered += 1;
                        sum.add(&feeds);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    eprintln!("chat: stats of some nodes did not arrive in time");
                    break;
                }
                Err(SetupError(err)) => {
                    eprintln!("chat: while collecting stats: {err}");
                    break;
                }
            }
        }
        (sum, answered)
    }

    /// Sends `quit` to every child, closes their stdin, waits for them to exit, kills the
    /// rest.
    async fn stop_children(&mut self) {
        for child in self.children.iter_mut() {
            if !child.exited && child.stdin.is_some() {
                let _ = child.send("quit").await;
            }
            child.stdin = None;
        }
        let deadline = tokio::time::Instant::now() + EXIT_TIMEOUT;
        for (i, child) in self.children.iter_mut().enumerate() {
            match timeout_at(deadline, child.child.wait()).await {
                Ok(Ok(status)) if status.success() || child.exited => {}
                Ok(Ok(status)) => eprintln!("chat: node {i} exited with {status}"),
                Ok(Err(err)) => eprintln!("chat: node {i}: cannot wait for it: {err}"),
                Err(_) => {
                    eprintln!("chat: node {i} did not exit in time; killing it");
                    let _ = child.child.kill().await;
                }
            }
        }
    }

    fn summary(&self, stats: ChildFeedStats, stats_nodes: usize, started: Instant) -> Summary {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Summary {
            nodes: self.tally.nodes,
            posts_per_node: self.args.posts,
            extra_posts_per_survivor: self.args.extra_posts,
            expected: self.tally.expected(),
            delivered: self.tally.delivered,
            out_of_order: self.tally.out_of_order,
            rejected: stats.rejected.values().sum(),
            rejected_by_reason: stats.rejected.clone(),
            restart_caught_up: self.restart.caught_up,
            restart_resent: self.tally.restart_resent,
            restart_lost: self.restart.lost,
            restarted_node: self.victim,
            identity_kept: self.restart.identity_kept,
            logs_verified: self.restart.logs_verified,
            unexpected: self.tally.unexpected,
            lagged: self.tally.lagged,
            errors: self.tally.errors.len(),
            appended: stats.appended,
            append_errors: stats.append_errors,
            messages_sent: stats.messages_sent,
            messages_received: stats.messages_received,
            duplicates: stats.duplicates,
            stats_nodes,
            posts_ms: self.timings.posts.map(ms),
            restart_catch_up_ms: self.timings.restart_catch_up.map(ms),
            attachment: self.attachment.clone(),
            elapsed_ms: ms(started.elapsed()),
        }
    }
}

/// The readable summary.
fn render(s: &Summary) -> String {
    let ms = |v: Option<u64>| v.map_or("n/a".into(), |v| format!("{:.1} s", v as f64 / 1000.0));
    let mut out = String::new();
    let _ = writeln!(out, "chat over feeds on 127.0.0.1");
    let _ = writeln!(
        out,
        "  nodes               {} ({} posts each, then {} more per survivor)",
        s.nodes, s.posts_per_node, s.extra_posts_per_survivor
    );
    let _ = writeln!(
        out,
        "  delivered           {} of {} expected ({} out of order)",
        s.delivered, s.expected, s.out_of_order
    );
    let _ = writeln!(
        out,
        "  rejected            {} {:?}",
        s.rejected, s.rejected_by_reason
    );
    let _ = writeln!(
        out,
        "  feed traffic        {} appended, {} copies sent, {} received, {} duplicates \
         (stats from {} nodes)",
        s.appended, s.messages_sent, s.messages_received, s.duplicates, s.stats_nodes
    );
    let _ = writeln!(
        out,
        "  restart of node {}   caught up: {} (identity kept: {}, logs verified: {}/{}, \
         resent: {}, lost: {})",
        s.restarted_node,
        s.restart_caught_up,
        s.identity_kept,
        s.logs_verified,
        s.nodes,
        s.restart_resent,
        s.restart_lost
    );
    let _ = writeln!(
        out,
        "  elapsed             {:.1} s (posts delivered in {}, restart caught up in {})",
        s.elapsed_ms as f64 / 1000.0,
        ms(s.posts_ms),
        ms(s.restart_catch_up_ms)
    );
    if let Some(a) = &s.attachment {
        let _ = writeln!(
            out,
            "  attachment          {} ({} bytes, blob {}): reference seen by {}, fetched by {}, \
             hash matches at {} of {} (in {})",
            a.file,
            a.size,
            &a.blob[..16.min(a.blob.len())],
            a.reference_seen,
            a.fetched,
            a.hashes_match,
            a.expected,
            ms(a.fetch_ms)
        );
    }
    let ok = s.delivered == s.expected
        && s.out_of_order == 0
        && s.restart_caught_up
        && s.attachment
            .as_ref()
            .is_none_or(|a| a.hashes_match == a.expected);
    let _ = writeln!(
        out,
        "{}",
        if ok {
            "every node holds every post, in order; the restarted node caught up"
        } else {
            "NOT complete"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_lines_parse() {
        let e: ChildEvent = serde_json::from_str(
            r#"{"event":"feed_message","feed":"ab","sequence":3,"id":"cd","content":"x","at_us":5}"#,
        )
        .unwrap();
        assert!(matches!(e, ChildEvent::FeedMessage { sequence: 3, .. }));
        let e: ChildEvent = serde_json::from_str(r#"{"event":"peer_added","addr":"x"}"#).unwrap();
        assert!(matches!(e, ChildEvent::Other));
        let e: ChildEvent = serde_json::from_str(
            r#"{"event":"stats","delivered":1,"feeds":{"appended":2,"append_errors":0,
                "duplicates":1,"messages_sent":3,"messages_received":4,"peers_up":1,
                "rejected":{"bad_signature":1,"fork":0}}}"#,
        )
        .unwrap();
        let ChildEvent::Stats { feeds } = e else {
            panic!("not stats")
        };
        assert_eq!(feeds.rejected.values().sum::<u64>(), 1);
    }

    #[test]
    fn tally_counts_deliveries_order_and_resends() {
        let progress = ProgressBar::hidden();
        let mut t = Tally::new(3, 2);
        for (i, f) in ["a", "b", "c"].into_iter().enumerate() {
            t.feed_index.insert(f.into(), i);
        }
        assert_eq!(t.expected(), 12);
        let msg = |feed: &str, sequence| ChildEvent::FeedMessage {
            feed: feed.into(),
            sequence,
            content: String::new(),
        };
        t.record(0, &msg("a", 1), &progress); // own feed: not a delivery
        t.record(0, &msg("b", 1), &progress);
        t.record(0, &msg("b", 2), &progress);
        t.record(0, &msg("c", 2), &progress); // gap: out of order
        assert_eq!(t.delivered, 3);
        assert_eq!(t.out_of_order, 1);
        t.record(0, &msg("b", 3), &progress); // an extra post: held, not counted
        assert_eq!(t.delivered, 3);
        t.restarted = Some(0);
        t.held_before_restart.insert((1, 3));
        t.record(0, &msg("b", 3), &progress); // again after a restart: resent (and a gap)
        assert_eq!(t.restart_resent, 1);
        assert_eq!(t.delivered, 3);
        t.published = vec![0, 3, 0];
        assert!(t.holds_everything(0));
        t.published = vec![0, 3, 1];
        assert!(!t.holds_everything(0));
    }
}
