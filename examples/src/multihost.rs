//! Gossip across separate hosts: the logic of the `multihost` binary, which
//! `scripts/multihost.sh` runs against one `gossip-node` per Linux network namespace.
//!
//! Each `--host [NETNS@]IP` names one host: its node binds `IP:--port` and, when `NETNS` is
//! given, runs inside that network namespace (`ip netns exec NETNS gossip-node ...`, which
//! needs root); without it the node runs here (for example `--host 127.0.0.1` four times,
//! with `--port 0`, for a local run). Node 0 starts first; every other node starts with
//! node 0's address as its only `--seed`. Every node runs with the same `--loss` and
//! `--delay-ms` fault injection (`gossip-node`'s testing options). The driver talks to the
//! nodes over the JSON-lines protocol of [`crate::node`] and runs these phases, each bounded
//! by `--phase-timeout-secs`:
//!
//! 1. **ready**: every node's `ready` line; its address must be the host's `IP` (so with
//!    namespaces every datagram crosses the veth links, not loopback);
//! 2. **membership**: every node reports a `new_peer` for every other node (the key/value
//!    state's membership, learned through the seed), and `peers` lists every other node;
//! 3. **broadcasts**: every node broadcasts `--broadcasts` messages; done when every node has
//!    delivered every message (its own included);
//! 4. **key/value**: every node sets `--keys` keys twice (`v1-...`, then `v2-...`); done when
//!    every node has an `update` for every other node's every key at the version of the
//!    second `set`; then `get` on every node for every other node's every key must answer the
//!    latest value (`v2-...`) at that version;
//! 5. **feeds**: every node follows every other node's feed and publishes `--feed-messages`
//!    messages; done when every node has reported every message of every feed (its own
//!    included); then `verify-log` on every node for every feed must verify the whole chain
//!    with the expected head;
//! 6. **stats** of every node (fault injection and traffic counters), then `quit`.
//!
//! A phase that times out is reported (stderr) and the run goes on, so the summary counts
//! everything that did complete. The last stdout line is one JSON object ([`Summary`]).
//!
//! Exit codes: 0 when every phase completed (and the injected faults were observed in the
//! nodes' counters: with `--loss` above 0, some loss was injected, and with `--delay-ms`,
//! some datagrams were delayed); 1 when something is incomplete; 2 when the nodes could not
//! be started or one died.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};

use crate::node::{parse_delay_range, parse_probability};
use crate::process::send_line;
use gossip_actors::DelayRange;

/// How long one write to a node's stdin may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node may take to exit after `quit` before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between two `peers` polls while waiting for membership.
const PEERS_POLL: Duration = Duration::from_millis(500);
/// Lines buffered between the nodes' reader tasks and the driver.
const EVENT_QUEUE: usize = 8_192;
/// Most lines listing what a timed-out phase misses.
const MISSING_LINES: usize = 12;

/// One host: the network namespace its node runs in (none: this one) and its IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// Network namespace (`ip netns exec NETNS`), or `None` to run the node here.
    pub netns: Option<String>,
    /// The address the node binds.
    pub ip: IpAddr,
}

impl FromStr for HostSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (netns, ip) = match text.split_once('@') {
            Some((netns, ip)) => {
                let valid = !netns.is_empty()
                    && netns
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
                if !valid {
                    return Err(format!(
                        "namespace {netns:?} must be non-empty letters, digits, '-', '_' or '.'"
                    ));
                }
                (Some(netns.to_owned()), ip)
            }
            None => (None, text),
        };
        let ip = ip
            .parse()
            .map_err(|e| format!("{ip:?} is not an IP address: {e}"))?;
        Ok(HostSpec { netns, ip })
    }
}

/// Command line of the `multihost` binary.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "multihost",
    about = "Drive one gossip-node per host (optionally per Linux network namespace) and check \
             that broadcasts, key/value state and feeds all complete; the last stdout line is \
             a JSON summary."
)]
pub struct MultihostArgs {
    /// A host as `[NETNS@]IP` (repeatable, 2 to 64): its node binds IP and, with NETNS, runs
    /// inside that network namespace through `ip netns exec` (root only).
    #[arg(
        long = "host",
        value_name = "[NETNS@]IP",
        required = true,
        num_args = 1
    )]
    pub hosts: Vec<HostSpec>,
    /// UDP port every node binds (0: a free port, needed when hosts share an IP).
    #[arg(long, default_value_t = 7946)]
    pub port: u16,
    /// The `gossip-node` program (default: `gossip-node` beside this program).
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Fault injection of every node: probability (0..=1) of dropping each outbound
    /// datagram.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = parse_probability)]
    pub loss: f64,
    /// Fault injection of every node: delay of each outbound datagram, uniform in MIN..=MAX
    /// milliseconds.
    #[arg(long, value_name = "MIN-MAX", value_parser = parse_delay_range)]
    pub delay_ms: Option<DelayRange>,
    /// Messages each node broadcasts.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1_000))]
    pub broadcasts: u32,
    /// Keys each node sets (each twice, so the latest value must win).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub keys: u32,
    /// Messages each node publishes to its feed.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1_000))]
    pub feed_messages: u32,
    /// Node `i` (from 0) runs with `--seed-rng` this plus `i`: its node id, message ids, peer
    /// choices and injected faults. The summary repeats it, so a run can be reproduced as far
    /// as the nodes' own choices go (the network's timing is not seeded).
    #[arg(long, default_value_t = 1)]
    pub rng_seed: u64,
    /// Longest time each phase may take, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub phase_timeout_secs: u64,
    /// Passphrase of the cluster, handed to every node (visible in the process list, as the
    /// nodes' own `--passphrase` is: use a throwaway one).
    #[arg(long)]
    pub passphrase: String,
    /// Cluster name (the salt of the key derivation).
    #[arg(long, default_value = "multihost")]
    pub cluster: String,
}

/// The JSON object on the last stdout line.
#[derive(Serialize, Debug, Default)]
pub struct Summary {
    /// Number of hosts (nodes).
    pub hosts: usize,
    /// Each node's bound address, from its `ready` line.
    pub addrs: Vec<String>,
    /// Namespaces the nodes ran in (empty when they ran here).
    pub netns: Vec<String>,
    /// Base of the nodes' `--seed-rng` (node `i` ran with this plus `i`).
    pub rng_seed: u64,
    /// Injected loss probability of every node.
    pub loss: f64,
    /// Injected delay range of every node, in milliseconds (`[min, max]`), if any.
    pub delay_ms: Option<[u64; 2]>,
    /// Every node reported every other node as a state peer and listed it in `peers`.
    pub membership_complete: bool,
    /// (node, message) pairs delivered, first copies only.
    pub broadcasts_delivered: u64,
    /// Nodes × messages broadcast.
    pub broadcasts_expected: u64,
    /// Deliveries of a message a node had already delivered (must be 0).
    pub duplicate_deliveries: u64,
    /// Every node reported every other node's every key at its latest version, and `get`
    /// answered the latest value everywhere.
    pub kv_converged: bool,
    /// (receiver, owner, key) triples whose `get` answered the latest value.
    pub kv_values_latest: u64,
    /// (receiver, owner, key) triples checked: nodes × (nodes − 1) × keys.
    pub kv_values_expected: u64,
    /// Every node followed every feed, reported every message of every feed, and verified
    /// every feed's whole chain.
    pub feeds_complete: bool,
    /// (receiver, feed, sequence) triples reported in `feed_message` lines.
    pub feed_messages_delivered: u64,
    /// Nodes × nodes × messages per feed.
    pub feed_messages_expected: u64,
    /// (receiver, feed) pairs whose `verify-log` was ok with the expected head.
    pub feed_logs_verified: u64,
    /// Time of each phase, in milliseconds (absent when it did not complete).
    pub membership_ms: Option<u64>,
    /// See `membership_ms`.
    pub broadcasts_ms: Option<u64>,
    /// See `membership_ms`.
    pub kv_ms: Option<u64>,
    /// See `membership_ms`.
    pub feeds_ms: Option<u64>,
    /// Whole run, in milliseconds.
    pub elapsed_ms: u64,
    /// Sums over every node's final `stats`.
    pub datagrams_sent: u64,
    /// See `datagrams_sent`.
    pub datagrams_received: u64,
    /// Outbound datagrams dropped by the injected loss.
    pub injected_loss: u64,
    /// Outbound datagrams held back by the injected delay.
    pub injected_delay: u64,
    /// Outbound datagrams dropped because a delay queue was full.
    pub injected_delay_overflow: u64,
    /// Inbound datagrams that failed authentication (must be 0: one cluster key).
    pub dropped_auth: u64,
    /// Nodes whose final `stats` were collected.
    pub stats_nodes: usize,
    /// Refused commands and other errors the nodes reported.
    pub node_errors: u64,
    /// Everything completed.
    pub complete: bool,
    /// Why the run could not be set up, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One stdout line of a node, as far as the driver cares.
#[derive(Deserialize, Debug, Clone)]
#[serde(tag = "event", rename_all = "snake_case")]
enum NodeLine {
    Ready {
        addr: SocketAddr,
        node_id: String,
        feed: String,
    },
    Delivered {
        payload: String,
    },
    Set {
        key: String,
        version: u64,
    },
    Update {
        node: String,
        key: String,
        version: u64,
    },
    Value {
        node: String,
        key: String,
        value: Option<String>,
        version: Option<u64>,
    },
    NewPeer {
        node: String,
    },
    Peers {
        peers: Vec<PeerLine>,
    },
    Followed {
        feed: String,
    },
    Published {},
    FeedMessage {
        feed: String,
        sequence: u64,
        content: String,
    },
    LogVerified {
        feed: String,
        messages: u64,
        head: u64,
        ok: bool,
        error: Option<String>,
    },
    Stats(NodeStatsLine),
    Error {
        command: Option<String>,
        error: String,
    },
    Bye,
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Debug, Clone)]
struct PeerLine {
    addr: SocketAddr,
}

/// The counters of a node's `stats` line that the summary adds up.
#[derive(Deserialize, Debug, Clone, Copy, Default)]
struct NodeStatsLine {
    datagrams_sent: u64,
    datagrams_received: u64,
    dropped_auth: u64,
    injected_loss: u64,
    #[serde(default)]
    injected_delay: u64,
    #[serde(default)]
    injected_delay_overflow: u64,
}

/// What a reader task reports about its node.
enum Report {
    Line(Box<NodeLine>),
    Unparsable(String),
    Closed,
}

/// A running node.
struct NodeProc {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: Option<SocketAddr>,
    node_id: String,
    feed: String,
}

impl NodeProc {
    async fn send(&mut self, line: &str) -> Result<(), String> {
        send_line(&mut self.stdin, line, WRITE_TIMEOUT).await
    }
}

/// A `get` answer: the value and its version (`None` when the key is not held).
#[derive(Debug)]
struct ValueAnswer {
    value: Option<String>,
    version: Option<u64>,
}

/// A `verify-log` answer.
#[derive(Debug)]
struct Verified {
    ok: bool,
    messages: u64,
    head: u64,
    #[allow(dead_code)] // Printed (Debug) when a feed fails to verify.
    error: Option<String>,
}

/// Everything the nodes reported, indexed by node number.
#[derive(Default)]
struct Tally {
    nodes: usize,
    /// Node number by node id (hex), also the feed id.
    index_of: HashMap<String, usize>,
    state_peers: BTreeSet<(usize, usize)>,
    /// Latest `peers` answer of each node: the addresses it knows.
    known_addrs: BTreeMap<usize, BTreeSet<SocketAddr>>,
    peers_answers: usize,
    delivered: BTreeSet<(usize, String)>,
    duplicate_deliveries: u64,
    /// Version each `set` returned, by (owner, key), the latest one kept.
    set_versions: BTreeMap<(usize, String), u64>,
    sets_acked: usize,
    /// Highest version reported in an `update`, by (receiver, owner, key).
    updates: BTreeMap<(usize, usize, String), u64>,
    /// `get` answers by (receiver, owner, key): (value, version).
    values: BTreeMap<(usize, usize, String), ValueAnswer>,
    followed: BTreeSet<(usize, usize)>,
    published: usize,
    /// (receiver, author, sequence) → content.
    feed_messages: BTreeMap<(usize, usize, u64), String>,
    /// `verify-log` answers by (receiver, author).
    verified: BTreeMap<(usize, usize), Verified>,
    stats: BTreeMap<usize, NodeStatsLine>,
    byes: BTreeSet<usize>,
    errors: Vec<String>,
}

impl Tally {
    fn record(&mut self, node: usize, line: NodeLine) {
        match line {
            NodeLine::Ready { node_id, .. } => {
                self.index_of.insert(node_id, node);
            }
            NodeLine::NewPeer { node: about } => {
                if let Some(&other) = self.index_of.get(&about) {
                    self.state_peers.insert((node, other));
                }
            }
            NodeLine::Peers { peers } => {
                self.known_addrs
                    .insert(node, peers.into_iter().map(|p| p.addr).collect());
                self.peers_answers += 1;
            }
            NodeLine::Delivered { payload } => {
                if !self.delivered.insert((node, payload)) {
                    self.duplicate_deliveries += 1;
                }
            }
            NodeLine::Set { key, version } => {
                let slot = self.set_versions.entry((node, key)).or_default();
                *slot = (*slot).max(version);
                self.sets_acked += 1;
            }
            NodeLine::Update {
                node: owner,
                key,
                version,
            } => {
                if let Some(&owner) = self.index_of.get(&owner) {
                    let slot = self.updates.entry((node, owner, key)).or_default();
                    *slot = (*slot).max(version);
                }
            }
            NodeLine::Value {
                node: owner,
                key,
                value,
                version,
            } => {
                if let Some(&owner) = self.index_of.get(&owner) {
                    self.values
                        .insert((node, owner, key), ValueAnswer { value, version });
                }
            }
            NodeLine::Followed { feed } => {
                if let Some(&author) = self.index_of.get(&feed) {
                    self.followed.insert((node, author));
                }
            }
            NodeLine::Published {} => self.published += 1,
            NodeLine::FeedMessage {
                feed,
                sequence,
                content,
            } => {
                if let Some(&author) = self.index_of.get(&feed) {
                    self.feed_messages.insert((node, author, sequence), content);
                }
            }
            NodeLine::LogVerified {
                feed,
                messages,
                head,
                ok,
                error,
            } => {
                if let Some(&author) = self.index_of.get(&feed) {
                    self.verified.insert(
                        (node, author),
                        Verified {
                            ok,
                            messages,
                            head,
                            error,
                        },
                    );
                }
            }
            NodeLine::Stats(stats) => {
                self.stats.insert(node, stats);
            }
            NodeLine::Error { command, error } => {
                let text = format!("node {node}: {:?}: {error}", command.unwrap_or_default());
                eprintln!("multihost: {text}");
                self.errors.push(text);
            }
            NodeLine::Bye => {
                self.byes.insert(node);
            }
            NodeLine::Other => {}
        }
    }

    fn pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.nodes).flat_map(move |a| {
            (0..self.nodes)
                .filter(move |&b| b != a)
                .map(move |b| (a, b))
        })
    }
}

/// The payload of broadcast `i` of node `origin`.
fn broadcast_payload(origin: usize, i: u32) -> String {
    format!("b{origin}-{i}")
}

/// The value of the `round`-th `set` (1 or 2) of node `owner`'s key `k`.
fn kv_value(round: u32, owner: usize, k: u32) -> String {
    format!("v{round}-n{owner}-k{k}")
}

/// The content of message `sequence` of node `author`'s feed.
fn feed_content(author: usize, sequence: u64) -> String {
    format!("f{author}-{sequence}")
}

/// Why the run cannot go on (exit code 2).
struct Fatal(String);

impl<T: std::fmt::Display> From<T> for Fatal {
    fn from(value: T) -> Self {
        Fatal(value.to_string())
    }
}

/// The nodes, their reports and the tally.
struct Driver {
    args: MultihostArgs,
    nodes: Vec<NodeProc>,
    tx: mpsc::Sender<(usize, Report)>,
    rx: mpsc::Receiver<(usize, Report)>,
    tally: Tally,
    quitting: bool,
}

impl Driver {
    fn phase_timeout(&self) -> Duration {
        Duration::from_secs(self.args.phase_timeout_secs)
    }

    fn node_bin(&self) -> Result<PathBuf, Fatal> {
        if let Some(path) = &self.args.node_bin {
            return Ok(path.clone());
        }
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program's own path: {e}"))?;
        Ok(exe.with_file_name("gossip-node"))
    }

    /// Starts node `index` (seeded with `seed`) and its reader task.
    fn spawn(&mut self, index: usize, seed: Option<SocketAddr>) -> Result<(), Fatal> {
        let host = &self.args.hosts[index];
        let bin = self.node_bin()?;
        let mut command = match &host.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(&bin);
                command
            }
            None => Command::new(&bin),
        };
        command
            .args([
                "--bind",
                &SocketAddr::new(host.ip, self.args.port).to_string(),
            ])
            .args(["--passphrase", &self.args.passphrase])
            .args(["--cluster", &self.args.cluster])
            .args(["--loss", &self.args.loss.to_string()])
            .args([
                "--seed-rng",
                &self.args.rng_seed.wrapping_add(index as u64).to_string(),
            ]);
        if let Some(range) = self.args.delay_ms {
            command.args([
                "--delay-ms",
                &format!("{}-{}", range.min.as_millis(), range.max.as_millis()),
            ]);
        }
        if let Some(seed) = seed {
            command.args(["--seed", &seed.to_string()]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start node {index} ({}): {e}", bin.display()))?;
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
                    Ok(Some(line)) => match serde_json::from_str::<NodeLine>(&line) {
                        Ok(line) => Report::Line(Box::new(line)),
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
        self.nodes.push(NodeProc {
            child,
            stdin,
            addr: None,
            node_id: String::new(),
            feed: String::new(),
        });
        Ok(())
    }

    /// Handles one report; a node that closed its output before `quit` is fatal.
    fn handle(&mut self, node: usize, report: Report) -> Result<(), Fatal> {
        match report {
            Report::Line(line) => {
                if let NodeLine::Ready {
                    addr,
                    node_id,
                    feed,
                } = &*line
                {
                    let proc = &mut self.nodes[node];
                    proc.addr = Some(*addr);
                    proc.node_id.clone_from(node_id);
                    proc.feed.clone_from(feed);
                }
                self.tally.record(node, *line);
                Ok(())
            }
            Report::Unparsable(line) => {
                eprintln!("multihost: node {node} printed a non-JSON line: {line}");
                Ok(())
            }
            Report::Closed if self.quitting => Ok(()),
            Report::Closed => Err(Fatal(format!("node {node} exited early"))),
        }
    }

    /// Handles reports until `done` holds (true) or `limit` passes (false).
    async fn wait(
        &mut self,
        limit: Duration,
        done: impl Fn(&Tally) -> bool,
    ) -> Result<bool, Fatal> {
        let deadline = Instant::now() + limit;
        while !done(&self.tally) {
            match timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((node, report))) => self.handle(node, report)?,
                Ok(None) => return Err("every node's output closed".into()),
                Err(_) => return Ok(false),
            }
        }
        Ok(true)
    }

    async fn send(&mut self, node: usize, line: &str) -> Result<(), Fatal> {
        self.nodes[node]
            .send(line)
            .await
            .map_err(|e| Fatal(format!("node {node}: {e}")))
    }

    async fn send_all(&mut self, lines: &[(usize, String)]) -> Result<(), Fatal> {
        for (node, line) in lines {
            self.send(*node, line).await?;
        }
        Ok(())
    }

    /// Starts node 0, then every other node seeded with node 0's address; checks every
    /// node's address is its host's.
    async fn start(&mut self) -> Result<(), Fatal> {
        self.spawn(0, None)?;
        let limit = self.phase_timeout();
        if !self.wait(limit, |t| !t.index_of.is_empty()).await? {
            return Err("node 0 not ready in time".into());
        }
        let seed = self.nodes[0].addr.ok_or("node 0 has no address")?;
        for index in 1..self.args.hosts.len() {
            self.spawn(index, Some(seed))?;
        }
        let n = self.tally.nodes;
        if !self.wait(limit, |t| t.index_of.len() == n).await? {
            return Err("not every node became ready in time".into());
        }
        for (index, proc) in self.nodes.iter().enumerate() {
            let host = &self.args.hosts[index];
            let addr = proc.addr.ok_or("a node has no address")?;
            if addr.ip() != host.ip {
                return Err(format!(
                    "node {index} bound {addr}, not its host's address {}",
                    host.ip
                )
                .into());
            }
        }
        Ok(())
    }

    /// Membership: state peers through the seed, then every node's `peers` lists all others.
    async fn membership(&mut self) -> Result<bool, Fatal> {
        let deadline = Instant::now() + self.phase_timeout();
        let needed = self.tally.nodes * (self.tally.nodes - 1);
        let state = self
            .wait(deadline - Instant::now(), |t| t.state_peers.len() == needed)
            .await?;
        if !state {
            let missing: Vec<(usize, usize)> = self
                .tally
                .pairs()
                .filter(|p| !self.tally.state_peers.contains(p))
                .take(MISSING_LINES)
                .collect();
            eprintln!("multihost: state membership incomplete; (node, lacks) {missing:?}");
            return Ok(false);
        }
        let addrs: Vec<SocketAddr> = self.nodes.iter().filter_map(|p| p.addr).collect();
        loop {
            let answers = self.tally.peers_answers + self.tally.nodes;
            let polls: Vec<(usize, String)> = (0..self.tally.nodes)
                .map(|n| (n, "peers".to_owned()))
                .collect();
            self.send_all(&polls).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.wait(left, |t| t.peers_answers >= answers).await? {
                break;
            }
            let complete = self.tally.pairs().all(|(a, b)| {
                self.tally
                    .known_addrs
                    .get(&a)
                    .is_some_and(|known| known.contains(&addrs[b]))
            });
            if complete {
                return Ok(true);
            }
            if Instant::now() + PEERS_POLL >= deadline {
                break;
            }
            // Keep handling reports while pausing between polls.
            let _ = self.wait(PEERS_POLL, |_| false).await?;
        }
        eprintln!(
            "multihost: discovery membership incomplete: known {:?}",
            self.tally.known_addrs
        );
        Ok(false)
    }

    async fn broadcasts(&mut self) -> Result<bool, Fatal> {
        let n = self.tally.nodes;
        let per_node = self.args.broadcasts;
        let mut commands = Vec::new();
        for i in 0..per_node {
            for origin in 0..n {
                commands.push((
                    origin,
                    format!("broadcast {}", broadcast_payload(origin, i)),
                ));
            }
        }
        self.send_all(&commands).await?;
        let expected: Vec<String> = (0..n)
            .flat_map(|o| (0..per_node).map(move |i| broadcast_payload(o, i)))
            .collect();
        let done = self
            .wait(self.phase_timeout(), |t| {
                (0..n).all(|node| {
                    expected
                        .iter()
                        .all(|p| t.delivered.contains(&(node, p.clone())))
                })
            })
            .await?;
        if !done {
            let missing: Vec<(usize, &String)> = (0..n)
                .flat_map(|node| expected.iter().map(move |p| (node, p)))
                .filter(|(node, p)| !self.tally.delivered.contains(&(*node, (*p).clone())))
                .take(MISSING_LINES)
                .collect();
            eprintln!("multihost: broadcasts incomplete; (node, missing) {missing:?}");
        }
        Ok(done)
    }

    /// The latest value and version every other node must hold of `owner`'s key `k`.
    fn kv_expected(&self, owner: usize, k: u32) -> Option<u64> {
        self.tally
            .set_versions
            .get(&(owner, format!("k{k}")))
            .copied()
    }

    async fn key_value(&mut self) -> Result<bool, Fatal> {
        let n = self.tally.nodes;
        let keys = self.args.keys;
        let mut commands = Vec::new();
        for round in 1..=2 {
            for k in 0..keys {
                for owner in 0..n {
                    commands.push((owner, format!("set k{k} {}", kv_value(round, owner, k))));
                }
            }
        }
        self.send_all(&commands).await?;
        let limit = self.phase_timeout();
        let sets = commands.len();
        let converged = self
            .wait(limit, |t| {
                t.sets_acked == sets
                    && t.pairs().all(|(receiver, owner)| {
                        (0..keys).all(|k| {
                            let key = format!("k{k}");
                            let need = t.set_versions.get(&(owner, key.clone()));
                            let have = t.updates.get(&(receiver, owner, key));
                            matches!((need, have), (Some(need), Some(have)) if have >= need)
                        })
                    })
            })
            .await?;
        if !converged {
            eprintln!(
                "multihost: key/value state not converged: {} of {sets} sets acknowledged, {} \
                 updates seen",
                self.tally.sets_acked,
                self.tally.updates.len()
            );
            return Ok(false);
        }
        let mut gets = Vec::new();
        for (receiver, owner) in self.tally.pairs().collect::<Vec<_>>() {
            for k in 0..keys {
                gets.push((receiver, format!("get {} k{k}", self.nodes[owner].node_id)));
            }
        }
        self.tally.values.clear();
        self.send_all(&gets).await?;
        let expected = gets.len();
        self.wait(limit, |t| t.values.len() == expected).await?;
        let latest = self.kv_values_latest();
        if latest != expected as u64 {
            eprintln!(
                "multihost: only {latest} of {expected} gets answered the latest value: {:?}",
                self.tally
                    .values
                    .iter()
                    .take(MISSING_LINES)
                    .collect::<Vec<_>>()
            );
        }
        Ok(latest == expected as u64)
    }

    /// `get` answers that hold the owner's latest value at its latest version.
    fn kv_values_latest(&self) -> u64 {
        let mut count = 0;
        for ((_, owner, key), ValueAnswer { value, version }) in &self.tally.values {
            let Some(k) = key.strip_prefix('k').and_then(|k| k.parse::<u32>().ok()) else {
                continue;
            };
            let latest = kv_value(2, *owner, k);
            if value.as_deref() == Some(latest.as_str())
                && version.is_some()
                && *version == self.kv_expected(*owner, k)
            {
                count += 1;
            }
        }
        count
    }

    async fn feeds(&mut self) -> Result<bool, Fatal> {
        let n = self.tally.nodes;
        let per_feed = u64::from(self.args.feed_messages);
        let limit = self.phase_timeout();
        let follows: Vec<(usize, String)> = self
            .tally
            .pairs()
            .map(|(a, b)| (a, format!("follow {}", self.nodes[b].feed)))
            .collect();
        self.send_all(&follows).await?;
        let needed = follows.len();
        if !self.wait(limit, |t| t.followed.len() == needed).await? {
            eprintln!("multihost: not every follow was acknowledged");
            return Ok(false);
        }
        let mut publishes = Vec::new();
        for sequence in 1..=per_feed {
            for author in 0..n {
                publishes.push((
                    author,
                    format!("publish {}", feed_content(author, sequence)),
                ));
            }
        }
        self.send_all(&publishes).await?;
        let complete = self
            .wait(limit, |t| {
                (0..n).all(|receiver| {
                    (0..n).all(|author| {
                        (1..=per_feed).all(|s| {
                            t.feed_messages.get(&(receiver, author, s))
                                == Some(&feed_content(author, s))
                        })
                    })
                })
            })
            .await?;
        if !complete {
            let missing: Vec<(usize, usize, u64)> = (0..n)
                .flat_map(|r| (0..n).flat_map(move |a| (1..=per_feed).map(move |s| (r, a, s))))
                .filter(|key| !self.tally.feed_messages.contains_key(key))
                .take(MISSING_LINES)
                .collect();
            eprintln!("multihost: feeds incomplete; (receiver, author, sequence) {missing:?}");
            return Ok(false);
        }
        let verifies: Vec<(usize, String)> = (0..n)
            .flat_map(|r| (0..n).map(move |a| (r, a)))
            .map(|(r, a)| (r, format!("verify-log {}", self.nodes[a].feed)))
            .collect();
        self.send_all(&verifies).await?;
        let expected = verifies.len();
        self.wait(limit, |t| t.verified.len() == expected).await?;
        let verified = self.feed_logs_verified();
        if verified != expected as u64 {
            eprintln!(
                "multihost: only {verified} of {expected} feed logs verified: {:?}",
                self.tally.verified
            );
        }
        Ok(verified == expected as u64)
    }

    fn feed_logs_verified(&self) -> u64 {
        let per_feed = u64::from(self.args.feed_messages);
        self.tally
            .verified
            .values()
            .filter(|v| v.ok && v.messages == per_feed && v.head == per_feed)
            .count() as u64
    }

    /// Collects every node's `stats`, then quits them all.
    async fn finish(&mut self) {
        let n = self.nodes.len();
        for node in 0..n {
            let _ = self.nodes[node].send("stats").await;
        }
        let _ = self
            .wait(self.phase_timeout(), |t| t.stats.len() == n)
            .await;
        self.quitting = true;
        for node in 0..n {
            let _ = self.nodes[node].send("quit").await;
            self.nodes[node].stdin = None;
        }
        let _ = self.wait(EXIT_TIMEOUT, |t| t.byes.len() == n).await;
        for (index, proc) in self.nodes.iter_mut().enumerate() {
            match timeout(EXIT_TIMEOUT, proc.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => eprintln!("multihost: node {index} exited with {status}"),
                _ => {
                    eprintln!("multihost: node {index} did not exit; killing it");
                    let _ = proc.child.kill().await;
                }
            }
        }
    }
}

/// Runs the whole check and returns the summary and the exit code.
pub async fn run(args: MultihostArgs) -> (Summary, u8) {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let hosts = args.hosts.len();
    let mut driver = Driver {
        tally: Tally {
            nodes: hosts,
            ..Tally::default()
        },
        args,
        nodes: Vec::new(),
        tx,
        rx,
        quitting: false,
    };
    let mut summary = Summary {
        hosts,
        netns: driver
            .args
            .hosts
            .iter()
            .filter_map(|h| h.netns.clone())
            .collect(),
        rng_seed: driver.args.rng_seed,
        loss: driver.args.loss,
        delay_ms: driver.args.delay_ms.map(|r| {
            [
                u64::try_from(r.min.as_millis()).unwrap_or(u64::MAX),
                u64::try_from(r.max.as_millis()).unwrap_or(u64::MAX),
            ]
        }),
        broadcasts_expected: (hosts * hosts) as u64 * u64::from(driver.args.broadcasts),
        kv_values_expected: (hosts * hosts.saturating_sub(1)) as u64 * u64::from(driver.args.keys),
        feed_messages_expected: (hosts * hosts) as u64 * u64::from(driver.args.feed_messages),
        ..Summary::default()
    };
    let result = phases(&mut driver, &mut summary).await;
    driver.finish().await;
    let t = &driver.tally;
    summary.addrs = driver
        .nodes
        .iter()
        .map(|p| p.addr.map_or_else(String::new, |a| a.to_string()))
        .collect();
    summary.broadcasts_delivered = t.delivered.len() as u64;
    summary.duplicate_deliveries = t.duplicate_deliveries;
    summary.kv_values_latest = driver.kv_values_latest();
    summary.feed_messages_delivered = t
        .feed_messages
        .iter()
        .filter(|((_, author, s), content)| **content == feed_content(*author, *s))
        .count() as u64;
    summary.feed_logs_verified = driver.feed_logs_verified();
    for stats in t.stats.values() {
        summary.datagrams_sent += stats.datagrams_sent;
        summary.datagrams_received += stats.datagrams_received;
        summary.injected_loss += stats.injected_loss;
        summary.injected_delay += stats.injected_delay;
        summary.injected_delay_overflow += stats.injected_delay_overflow;
        summary.dropped_auth += stats.dropped_auth;
    }
    summary.stats_nodes = t.stats.len();
    summary.node_errors = t.errors.len() as u64;
    summary.elapsed_ms = millis(started.elapsed());
    let code = match result {
        Err(Fatal(error)) => {
            summary.error = Some(error);
            2
        }
        Ok(()) => {
            let faults_seen = (driver.args.loss == 0.0 || summary.injected_loss > 0)
                && (driver.args.delay_ms.is_none()
                    || summary.injected_delay > 0
                    || summary.datagrams_sent == 0);
            if !faults_seen {
                eprintln!("multihost: the configured fault injection left no trace in the stats");
            }
            summary.complete = summary.membership_complete
                && summary.broadcasts_delivered == summary.broadcasts_expected
                && summary.duplicate_deliveries == 0
                && summary.kv_converged
                && summary.feeds_complete
                && summary.stats_nodes == hosts
                && summary.dropped_auth == 0
                && faults_seen;
            if summary.complete { 0 } else { 1 }
        }
    };
    (summary, code)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn phases(driver: &mut Driver, summary: &mut Summary) -> Result<(), Fatal> {
    driver.start().await?;
    eprintln!(
        "multihost: {} nodes ready at {:?}",
        driver.nodes.len(),
        driver
            .nodes
            .iter()
            .filter_map(|p| p.addr)
            .collect::<Vec<_>>()
    );
    let timed = |start: Instant, done: bool| done.then(|| millis(start.elapsed()));

    let start = Instant::now();
    summary.membership_complete = driver.membership().await?;
    summary.membership_ms = timed(start, summary.membership_complete);
    eprintln!(
        "multihost: membership complete: {}",
        summary.membership_complete
    );

    let start = Instant::now();
    let done = driver.broadcasts().await?;
    summary.broadcasts_ms = timed(start, done);
    eprintln!("multihost: broadcasts complete: {done}");

    let start = Instant::now();
    summary.kv_converged = driver.key_value().await?;
    summary.kv_ms = timed(start, summary.kv_converged);
    eprintln!("multihost: key/value converged: {}", summary.kv_converged);

    let start = Instant::now();
    summary.feeds_complete = driver.feeds().await?;
    summary.feeds_ms = timed(start, summary.feeds_complete);
    eprintln!("multihost: feeds complete: {}", summary.feeds_complete);
    Ok(())
}

/// Entry point of the `multihost` binary after argument parsing: prints the summary as the
/// last stdout line and returns the exit code.
pub fn main_with(args: MultihostArgs) -> ExitCode {
    crate::node::init_logging();
    if !(2..=64).contains(&args.hosts.len()) {
        eprintln!("multihost: give 2 to 64 --host options");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("multihost: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let (summary, code) = runtime.block_on(run(args));
    match serde_json::to_string(&summary) {
        Ok(line) => println!("{line}"),
        Err(err) => {
            eprintln!("multihost: cannot encode the summary: {err}");
            return ExitCode::from(2);
        }
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_specs_parse() {
        assert_eq!(
            "gmh-1-h1@10.77.0.1".parse::<HostSpec>(),
            Ok(HostSpec {
                netns: Some("gmh-1-h1".into()),
                ip: "10.77.0.1".parse().unwrap()
            })
        );
        assert_eq!(
            "127.0.0.1".parse::<HostSpec>(),
            Ok(HostSpec {
                netns: None,
                ip: "127.0.0.1".parse().unwrap()
            })
        );
        assert!("@10.0.0.1".parse::<HostSpec>().is_err());
        assert!("a b@10.0.0.1".parse::<HostSpec>().is_err());
        assert!("ns@not-an-ip".parse::<HostSpec>().is_err());
    }
}
