//! One gossip node driven over stdin/stdout: the logic of the `gossip-node` binary, also run by
//! the `cluster` binary (as its hidden `node` subcommand) for each of its child processes.
//!
//! # Protocol
//!
//! stdout carries one JSON object per line, flushed per line; logs go to stderr only.
//!
//! - `{"event":"ready","addr":"127.0.0.1:PORT","node_id":"<hex>"}`, always first;
//! - `{"event":"delivered","id":"<hex>","origin":"<hex>","hop":N,"payload":"<utf-8, lossy>","at_us":T}`
//!   for every broadcast this node delivers (its own included, at hop 0);
//! - `{"event":"broadcast","id":"<hex>","payload":"...","at_us":T}` when a `broadcast` command
//!   was accepted; `at_us` is read just before the node is asked to broadcast, so no delivery
//!   of that message anywhere can carry an earlier time;
//! - `{"event":"stats",...}` answering `stats`; `{"event":"peers","peers":[...]}` answering
//!   `peers`; `{"event":"peer_added","addr":"..."}` answering `peer <addr>`;
//! - `{"event":"error","command":"...","error":"..."}` for a refused or unknown command, and
//!   with `"command":null` when the event subscription lagged (`"skipped":N`);
//! - `{"event":"bye"}` last, after `quit` or the end of stdin.
//!
//! Times (`at_us`) are microseconds since the Unix epoch, read when the line is written.
//!
//! Commands on stdin, one per line: `broadcast <text>`, `stats`, `peer <addr>`, `peers`,
//! `quit`. End of stdin means `quit`.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Parser};
use gossip_actors::crypto::{Key, KeyError, Keyring};
use gossip_actors::{
    FaultInjection, Node, NodeConfig, NodeEvent, NodeHandle, NodeStats, StartError,
};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

/// Lines of stdin buffered between the reading thread and the node's event loop.
const STDIN_QUEUE: usize = 256;

/// Command-line options of one node.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "gossip-node",
    about = "Run one gossip node, driven by commands on stdin, reporting JSON lines on stdout.",
    group(ArgGroup::new("key").required(true).args(["passphrase", "key_file"]))
)]
pub struct NodeArgs {
    /// UDP address to bind (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,

    /// Address of a peer to start with (repeatable).
    #[arg(long = "seed", value_name = "ADDR")]
    pub seeds: Vec<SocketAddr>,

    /// Passphrase of the cluster; the key is derived with Argon2id, salted with --cluster.
    #[arg(long, value_name = "TEXT")]
    pub passphrase: Option<String>,

    /// File holding the cluster key as 64 hexadecimal digits.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Cluster name, used as the salt of the passphrase's key derivation.
    #[arg(long, default_value = "gossip")]
    pub cluster: String,

    /// For testing only: probability (0..=1) of dropping each outbound datagram (fault
    /// injection).
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = parse_probability)]
    pub loss: f64,

    /// Largest datagram sent or accepted, in bytes (128..=65507).
    #[arg(long, default_value_t = 1400, value_name = "BYTES")]
    pub max_datagram: usize,

    /// Seeds the node's random choices (node id, message ids, peer selection, injected loss).
    /// Give each node of a cluster a different seed: equal seeds draw equal message ids.
    #[arg(long, value_name = "N")]
    pub seed_rng: Option<u64>,
}

/// Parses a probability in `0.0..=1.0`.
pub fn parse_probability(text: &str) -> Result<f64, String> {
    let p: f64 = text
        .trim()
        .parse()
        .map_err(|e| format!("not a number: {e}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability in 0..=1"))
    }
}

/// Why [`run_node`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunNodeError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The key (file contents or passphrase) was refused.
    #[error("invalid key: {0}")]
    Key(#[from] KeyError),
    /// Neither `--passphrase` nor `--key-file` was given (clap enforces this for the
    /// binaries; a library caller can still build such arguments).
    #[error("one of --passphrase or --key-file is required")]
    NoKey,
    /// The node could not start.
    #[error("node failed to start: {0}")]
    Start(#[from] StartError),
    /// Writing to stdout failed (for example the reader went away).
    #[error("cannot write to stdout: {0}")]
    Stdout(io::Error),
    /// The node's actors stopped while it was running.
    #[error("the node stopped unexpectedly")]
    Stopped,
}

/// Builds the keyring the arguments ask for.
///
/// # Errors
/// A key file that cannot be read or does not hold 64 hex digits, an empty passphrase or
/// cluster name.
pub fn keyring_from_args(args: &NodeArgs) -> Result<Keyring, RunNodeError> {
    match (&args.passphrase, &args.key_file) {
        (Some(passphrase), _) => Ok(Keyring::from_passphrase(passphrase, &args.cluster)?),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| RunNodeError::KeyFile {
                path: path.clone(),
                source,
            })?;
            Ok(Keyring::new(Key::from_hex(&text)?))
        }
        (None, None) => Err(RunNodeError::NoKey),
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One line of stdout. Serialised with the `event` tag first.
#[derive(Serialize, Debug)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Output {
    /// The node is up; always the first line.
    Ready {
        /// The bound UDP address.
        addr: String,
        /// The node id, 64 hex digits.
        node_id: String,
    },
    /// A broadcast delivered by this node.
    Delivered {
        /// Message id, 32 hex digits.
        id: String,
        /// Origin's node id.
        origin: String,
        /// Links travelled (0 for the node's own broadcasts).
        hop: u16,
        /// The payload as UTF-8 (invalid sequences replaced).
        payload: String,
        /// Microseconds since the Unix epoch.
        at_us: u64,
    },
    /// A `broadcast` command was accepted.
    Broadcast {
        /// The new message's id.
        id: String,
        /// The payload.
        payload: String,
        /// Microseconds since the Unix epoch, read just before the node broadcast it.
        at_us: u64,
    },
    /// A command was refused, or (with `command` null) the event subscription lagged.
    Error {
        /// The command line, or null.
        command: Option<String>,
        /// Why.
        error: String,
        /// Events skipped, when the subscription lagged.
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u64>,
    },
    /// The node's counters.
    Stats(StatsEvent),
    /// The peers discovery knows.
    Peers {
        /// In address order.
        peers: Vec<PeerJson>,
    },
    /// A `peer` command was applied.
    PeerAdded {
        /// The address added.
        addr: String,
    },
    /// The node stopped; always the last line.
    Bye,
}

/// A known peer in the `peers` event.
#[derive(Serialize, Debug)]
pub struct PeerJson {
    /// Its address.
    pub addr: String,
    /// Its node id, once a packet from it has been authenticated.
    pub node_id: Option<String>,
}

/// Writes one JSON value as a line on stdout and flushes it.
fn emit(value: &Output) -> Result<(), RunNodeError> {
    let line = serde_json::to_string(value)
        .map_err(|e| RunNodeError::Stdout(io::Error::other(e.to_string())))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{line}").map_err(RunNodeError::Stdout)?;
    out.flush().map_err(RunNodeError::Stdout)
}

fn emit_error(command: Option<&str>, error: impl std::fmt::Display) -> Result<(), RunNodeError> {
    emit(&Output::Error {
        command: command.map(str::to_owned),
        error: error.to_string(),
        skipped: None,
    })
}

/// The counters of the `stats` event (see [`NodeStats`] for their meaning).
#[derive(Serialize, Debug)]
#[allow(missing_docs)]
pub struct StatsEvent {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub delivered: u64,
    pub duplicates_suppressed: u64,
    pub dropped_auth: u64,
    pub dropped_malformed: u64,
    /// Dropped inbound datagrams by reason name.
    pub drops: BTreeMap<&'static str, u64>,
    pub pulls_recovered: u64,
    pub ack_timeouts: u64,
    pub injected_loss: u64,
    pub broadcasts: u64,
    pub send_would_block: u64,
    pub send_errors: u64,
    pub mailbox_full: u64,
    /// Datagrams the dissemination actor could not hand to the full transport mailbox.
    pub transport_full: u64,
}

impl StatsEvent {
    /// The event's counters from a node's stats.
    pub fn of(stats: &NodeStats) -> Self {
        let t = &stats.transport;
        let core = &stats.dissemination.core;
        StatsEvent {
            datagrams_sent: t.datagrams_sent,
            bytes_sent: t.bytes_sent,
            datagrams_received: t.datagrams_received,
            bytes_received: t.bytes_received,
            delivered: stats.delivered(),
            duplicates_suppressed: stats.duplicates_suppressed(),
            dropped_auth: stats.dropped_auth(),
            dropped_malformed: stats.dropped_malformed(),
            drops: t.drops.iter().map(|(r, n)| (r.name(), n)).collect(),
            pulls_recovered: core.pulls_recovered,
            ack_timeouts: core.ack_timeouts,
            injected_loss: t.injected_loss,
            broadcasts: core.broadcasts,
            send_would_block: t.send_would_block,
            send_errors: t.send_errors,
            mailbox_full: t.mailbox_full,
            transport_full: stats.dissemination.transport_full,
        }
    }
}

/// Reads stdin on a plain thread (tokio's stdin read cannot be cancelled and could hold the
/// runtime open at exit; a detached thread cannot). The channel closes at end of input.
fn spawn_stdin_reader() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(STDIN_QUEUE);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(err) = spawned {
        tracing::error!(error = %err, "cannot start the stdin thread; treating stdin as closed");
    }
    rx
}

/// What the loop does after a command.
enum Flow {
    Continue,
    Quit,
}

async fn handle_command(node: &NodeHandle, line: &str) -> Result<Flow, RunNodeError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (verb, rest) = match line.trim_start().split_once(' ') {
        Some((verb, rest)) => (verb, rest),
        None => (line.trim(), ""),
    };
    match verb {
        "broadcast" => {
            let at_us = unix_micros();
            match node.broadcast(rest.as_bytes().to_vec()).await {
                Ok(id) => emit(&Output::Broadcast {
                    id: id.to_string(),
                    payload: rest.to_owned(),
                    at_us,
                })?,
                Err(gossip_actors::NodeError::Stopped) => return Err(RunNodeError::Stopped),
                Err(err) => emit_error(Some(line), err)?,
            }
        }
        "stats" => {
            let stats = node.stats().await.map_err(|_| RunNodeError::Stopped)?;
            emit(&Output::Stats(StatsEvent::of(&stats)))?;
        }
        "peer" => match rest.trim().parse::<SocketAddr>() {
            Ok(addr) => {
                node.add_peer(addr)
                    .await
                    .map_err(|_| RunNodeError::Stopped)?;
                emit(&Output::PeerAdded {
                    addr: addr.to_string(),
                })?;
            }
            Err(err) => emit_error(Some(line), format!("bad address {:?}: {err}", rest.trim()))?,
        },
        "peers" => {
            let peers = node
                .known_peers()
                .await
                .map_err(|_| RunNodeError::Stopped)?;
            let peers = peers
                .iter()
                .map(|p| PeerJson {
                    addr: p.addr.to_string(),
                    node_id: p.node_id.map(|id| id.to_string()),
                })
                .collect();
            emit(&Output::Peers { peers })?;
        }
        "quit" => return Ok(Flow::Quit),
        "" => emit_error(Some(line), "empty command")?,
        other => emit_error(
            Some(line),
            format!(
                "unknown command {other:?} (expected broadcast <text>, stats, peer <addr>, \
                 peers or quit)"
            ),
        )?,
    }
    Ok(Flow::Continue)
}

fn emit_delivery(event: NodeEvent) -> Result<(), RunNodeError> {
    match event {
        NodeEvent::Delivered(d) => emit(&Output::Delivered {
            id: d.id.to_string(),
            origin: d.origin.to_string(),
            hop: d.hop,
            payload: String::from_utf8_lossy(&d.payload).into_owned(),
            at_us: unix_micros(),
        }),
        other => {
            tracing::debug!(?other, "event not reported");
            Ok(())
        }
    }
}

/// Runs one node until `quit` or the end of stdin. Must be called inside a running actix
/// system (the node's actors run on the current arbiter).
///
/// # Errors
/// A bad key, a node that cannot start (address in use, bad `--max-datagram`), stdout
/// closed, or the node stopping by itself. On success `{"event":"bye"}` was the last line.
pub async fn run_node(args: NodeArgs) -> Result<(), RunNodeError> {
    let keyring = keyring_from_args(&args)?;
    let config = NodeConfig {
        max_datagram: args.max_datagram,
        fault: FaultInjection { loss: args.loss },
        ..NodeConfig::default()
    };
    let mut builder = Node::builder()
        .bind(args.bind)
        .keyring(keyring)
        .seeds(args.seeds.iter().copied())
        .config(config);
    if let Some(seed) = args.seed_rng {
        builder = builder.rng_seed(seed);
    }
    let node = builder.start().await?;
    let result = serve(&node).await;
    let _ = node.shutdown().await;
    result?;
    emit(&Output::Bye)
}

async fn serve(node: &NodeHandle) -> Result<(), RunNodeError> {
    // Subscribe before announcing readiness, so that no delivery is missed.
    let mut events = node.subscribe();
    emit(&Output::Ready {
        addr: node.local_addr().to_string(),
        node_id: node.node_id().to_string(),
    })?;
    let mut commands = spawn_stdin_reader();
    loop {
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Ok(event) => emit_delivery(event)?,
                Err(RecvError::Lagged(n)) => emit(&Output::Error {
                    command: None,
                    error: format!("event subscriber lagged: {n} events skipped"),
                    skipped: Some(n),
                })?,
                Err(RecvError::Closed) => return Err(RunNodeError::Stopped),
            },
            line = commands.recv() => match line {
                None => return Ok(()),
                Some(line) => {
                    if let Flow::Quit = handle_command(node, &line).await? {
                        return Ok(());
                    }
                }
            },
        }
    }
}

/// Installs the stderr logger (`RUST_LOG`, default `warn`). Harmless if one is installed.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}

/// The whole `gossip-node` program after argument parsing: starts an actix system, runs the
/// node, and returns the process exit code (0 after `quit`, 1 on failure with a message on
/// stderr).
pub fn main_with(args: NodeArgs) -> std::process::ExitCode {
    init_logging();
    let system = actix::System::new();
    let result = system.block_on(async {
        let result = run_node(args).await;
        actix::System::current().stop();
        result
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gossip-node: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
