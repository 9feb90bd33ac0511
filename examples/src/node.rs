//! One gossip node driven over stdin/stdout: the logic of the `gossip-node` binary, also run by
//! the `cluster` and `chat` binaries (as their hidden `node` subcommand) for each of their
//! child processes.
//!
//! # Storage and identity
//!
//! `--store PATH` keeps the node's feed logs, peer clocks, follows and its own key/value
//! entries in a redb file (created if missing); without it they live in memory and are lost
//! at exit. A node restarted on its store republishes its own entries in a new generation, so
//! every `set` it acknowledged survives a crash. `--identity-file PATH`
//! holds the node's ed25519 secret seed as 64 hex digits; a missing file is created with a
//! fresh random identity (mode 0600 on unix), so a node restarted with the same file keeps
//! its node id and feed id. Without it the identity is random (drawn from `--seed-rng` when
//! given).
//!
//! # Protocol
//!
//! stdout carries one JSON object per line, flushed per line; logs go to stderr only.
//!
//! - `{"event":"ready","addr":"127.0.0.1:PORT","node_id":"<hex>","feed":"<hex>"}`, always
//!   first (the feed id is the node id: both are the public key), with `"http":"IP:PORT"`
//!   when `--http` serves `/metrics` and the web view there;
//! - `{"event":"snapshot","snapshot":{...}}` every `--snapshot-ms` (only with that option): the
//!   node's view, failure-detector peers, feed tree links, recent deliveries and counters, as
//!   `gossip_actors::ops::NodeSnapshot`;
//! - `{"event":"delivered","id":"<hex>","origin":"<hex>","hop":N,"payload":"<utf-8, lossy>","at_us":T}`
//!   for every broadcast this node delivers (its own included, at hop 0);
//! - `{"event":"broadcast","id":"<hex>","payload":"...","at_us":T}` when a `broadcast` command
//!   was accepted; `at_us` is read just before the node is asked to broadcast, so no delivery
//!   of that message anywhere can carry an earlier time;
//! - `{"event":"published","feed":"<hex>","sequence":N,"id":"<hex>","at_us":T}` once a
//!   `publish` is durable in the store (`at_us` read after the append returned);
//! - `{"event":"feed_message","feed":"<hex>","sequence":N,"id":"<hex>","content":"<utf-8,
//!   lossy>","at_us":T}` for every message appended to any feed in this node's store (its
//!   own published ones included), each once and, per feed, in sequence order; messages
//!   already stored when the node started are not repeated;
//! - `{"event":"followed","feed":"<hex>","added":B}` and
//!   `{"event":"unfollowed","feed":"<hex>","was_followed":B}`;
//! - `{"event":"log","feed":"<hex>","head":H,"messages":[{"sequence":N,"id":"<hex>",
//!   "previous":"<hex>"|null,"timestamp_ms":T,"content":"..."},...]}` answering `log` (`head`
//!   is the feed's latest stored sequence, 0 if none);
//! - `{"event":"log_verified","feed":"<hex>","messages":N,"head":H,"ok":B,"error":"..."}`
//!   answering `verify-log` (`error` only when `ok` is false);
//! - `{"event":"feed_forked","feed":"<hex>"}` when a followed feed is found forked;
//! - `{"event":"set","key":"...","version":N,"at_us":T}` once a `set` or `try_set` is applied
//!   to the local state and durable in the store (`at_us` read after it returned; `version`
//!   is this node's version of the write within its current generation), and `{"event":"deleted","key":"...","version":N|null,"at_us":T}` for a
//!   `delete` (`version` null when the key held no value);
//! - `{"event":"value","node":"<hex>","key":"...","value":"<utf-8, lossy>"|null,
//!   "version":N|null}` answering `get` (nulls when the key is not held);
//!   `{"event":"nodes","nodes":["<hex>",...]}` answering `nodes`;
//! - `{"event":"new_peer","node":"<hex>","addr":"IP:PORT","at_us":T}` when a node joins this
//!   node's view of the cluster state;
//!   `{"event":"update","node":"<hex>","key":"...","value":"<utf-8, lossy>"|null,"version":N,
//!   "at_us":T}` when another node's key changes here (`value` null for a delete; local
//!   writes produce none);
//! - `{"event":"peer_dead","node":"<hex>","at_us":T}` when the failure detector convicts a
//!   node, `{"event":"peer_live","node":"<hex>","at_us":T}` when a node declared dead is heard
//!   again;
//! - `{"event":"stats",...}` answering `stats` (feed counters under `"feeds"`, key/value state
//!   under `"state"`, the update queue under `"flow"`, the failure detector under
//!   `"failure"`);
//!   `{"event":"peers","peers":[...]}` answering `peers`; `{"event":"peer_added","addr":"..."}`
//!   answering `peer <addr>`;
//! - `{"event":"error","command":"...","error":"..."}` for a refused or unknown command, and
//!   with `"command":null` when the event subscription lagged (`"skipped":N`);
//! - `{"event":"keyring","primary":"<2 hex>","accepted":["<2 hex>",...]}` answering `add-key`,
//!   `add-passphrase`, `primary-key`, `remove-key` and `keys`: the key ids held afterwards;
//! - `{"event":"blob_added","blob":"<hex>","size":N,"reference":"blob:<hex>"}` answering
//!   `add-blob <path>` (the file is stored as a blob, pinned; put `reference` in a feed
//!   message to point at it);
//!   `{"event":"blob","blob":"<hex>","size":N,"sha256":"<hex>","matches":B,"path":"..."|null}`
//!   answering `get-blob <blob> [path]` once the blob is held (fetched from the peers that
//!   hold it if needed; `sha256` is computed over the bytes received, `matches` says whether
//!   it is the blob id; the bytes are written to `path` when given);
//!   `{"event":"has_blob","blob":"<hex>","held":B}` answering `has-blob <blob>`;
//! - `{"event":"blob_progress","blob":"<hex>","bytes":N,"size":N,"at_us":T}` while a blob is
//!   fetched (at most every 100 ms), `{"event":"blob_complete","blob":"<hex>","size":N,
//!   "at_us":T}` when a fetched blob is whole and verified, `{"event":"blob_failed",
//!   "blob":"<hex>","reason":"..."}` when a fetch gives up;
//! - `{"event":"bye"}` last, after `quit` or the end of stdin.
//!
//! Times (`at_us`) are microseconds since the Unix epoch, read when the line is written.
//!
//! Commands on stdin, one per line: `broadcast <text>`, `publish <text>`, `follow <feed>`,
//! `unfollow <feed>`, `log <feed> <from_seq> [limit]`, `verify-log <feed>`,
//! `set <key> <value>`, `try_set <key> <value>`, `delete <key>`, `get <node> <key>`, `nodes`,
//! `stats`, `peer <addr>`, `peers`, `add-blob <path>`, `get-blob <blob> [path]`,
//! `has-blob <blob>`, `quit` (a feed, node or blob is 64 hex digits; a key is one
//! word, the value is the rest of the line). End of stdin means `quit`. `get-blob` may take
//! long (events keep being reported meanwhile); it gives up after the node's stall timeout
//! without progress (60 s).
//!
//! Key rotation while the node runs (`docs/wire.md` section 4.4; run each step on every node
//! before the next): `add-key <64 hex digits>` or `add-passphrase <cluster> <passphrase>` adds
//! an accepted key (opens, never seals); `primary-key <id>` makes the accepted key with that
//! id (two hex digits, as `keys` prints them) the sealing key, the old primary staying
//! accepted; `remove-key <id>` drops an accepted key (refused for the primary: make another
//! key primary first); `keys` lists the ids. A refused step is an `error` event and changes
//! nothing; a plaintext node has no keyring and refuses them all.
//! Commands are handled one at a time, in order: a `publish` is answered before the next
//! command is read. `set` and `delete` wait while the node's update rate refuses the write
//! (events keep being reported meanwhile); `try_set` does not wait: above the rate it is an
//! `error` event saying when to retry.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Parser};
use futures::StreamExt;
use gossip_actors::core::NodeId;
use gossip_actors::core::blob::BlobId;
use gossip_actors::core::feed::{FeedId, FeedMessage};
use gossip_actors::crypto::{Identity, Key, KeyError, Keyring};
use gossip_actors::failure::FailureActorStats;
use gossip_actors::feeds::FeedActorStats;
use gossip_actors::ops::{NodeSnapshot, Ops, OpsConfig};
use gossip_actors::state::{FlowActorStats, StateActorStats};
use gossip_actors::storage::{FeedLog, MemoryStore, NodeStore, RedbStore, StoreError};
use gossip_actors::{
    CyclonDiscovery, DelayRange, FaultInjection, Node, NodeConfig, NodeError, NodeEvent,
    NodeHandle, NodeStats, StartError, StaticDiscovery,
};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};

use crate::config::{ConfigFileError, DiscoveryKind, FileConfig};
use gossip_actors::storage::SharedStore;

/// Lines of stdin buffered between the reading thread and the node's event loop.
const STDIN_QUEUE: usize = 256;
/// Most messages one `log` answer lists (ask again from the next sequence for more).
pub const MAX_LOG_MESSAGES: u64 = 10_000;
/// How long reading a feed for `log` or `verify-log` may take.
const LOG_TIMEOUT: Duration = Duration::from_secs(20);

/// Command-line options of one node.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "gossip-node",
    about = "Run one gossip node, driven by commands on stdin, reporting JSON lines on stdout.",
    long_about = "Run one gossip node, driven by commands on stdin, reporting JSON lines on \
                  stdout. Logs go to stderr (RUST_LOG, default info).\n\n\
                  Every setting can also come from a TOML file (--config; \
                  --print-default-config prints one with every field, its unit, default and \
                  range). Precedence: defaults < file < --set < the flags below. One of \
                  --passphrase or --key-file (or `passphrase` / `key_file` in the file) is \
                  required.",
    group(ArgGroup::new("key").args(["passphrase", "key_file"]))
)]
pub struct NodeArgs {
    /// TOML configuration file holding any of the node's settings (see
    /// --print-default-config); the flags given on the command line override it.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Overrides one field of the configuration, by its path in the file, with a TOML value
    /// (repeatable), for example `--set dissemination.fanout=4`. Applied after --config and
    /// before the flags below.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,

    /// Prints the complete default configuration file (every field with its unit, default,
    /// range and source) and exits.
    #[arg(long)]
    pub print_default_config: bool,

    /// UDP address to bind (port 0 picks a free port). File: `bind`.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "IP:PORT")]
    pub bind: SocketAddr,

    /// Address of a peer to start with (repeatable; replaces the file's `seeds`): a peer of
    /// discovery and a seed of the key/value state protocol, as the `peer` command makes it.
    /// Default: none.
    #[arg(long = "seed", value_name = "IP:PORT")]
    pub seeds: Vec<SocketAddr>,

    /// Passphrase of the cluster; the key is derived with Argon2id, salted with --cluster.
    /// File: `passphrase`. Default: none.
    #[arg(long, value_name = "TEXT")]
    pub passphrase: Option<String>,

    /// File holding the cluster key as 64 hexadecimal digits. File: `key_file`. Default:
    /// none.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Cluster name, used as the salt of the passphrase's key derivation. File: `cluster`.
    #[arg(long, default_value = "gossip", value_name = "NAME")]
    pub cluster: String,

    /// For testing only: probability (0..=1) of dropping each outbound datagram (fault
    /// injection). File: `fault.loss`.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = parse_probability)]
    pub loss: f64,

    /// For testing only: delay each outbound datagram that is not lost by a time drawn
    /// uniformly from MIN..=MAX milliseconds (fault injection; at most 10,000 ms; at most
    /// 4,096 datagrams wait at once, more are dropped and counted). File: `fault.delay`.
    /// Default: off.
    #[arg(long, value_name = "MIN-MAX", value_parser = parse_delay_range)]
    pub delay_ms: Option<DelayRange>,

    /// Largest datagram sent or accepted, in bytes (128..=65507). File: `max_datagram`.
    #[arg(long, default_value_t = 1400, value_name = "BYTES")]
    pub max_datagram: usize,

    /// Seeds the node's random choices (node id, message ids, peer selection, injected loss
    /// and delay).
    /// Give each node of a cluster a different seed: equal seeds draw equal message ids.
    /// File: `seed_rng`. Default: drawn from the OS.
    #[arg(long, value_name = "N")]
    pub seed_rng: Option<u64>,

    /// redb file keeping the feed logs, peer clocks and follows (created if missing; its
    /// directory must exist). Without it they are kept in memory and lost at exit. File:
    /// `store`. Default: none.
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,

    /// File holding the node's ed25519 secret seed as 64 hex digits; created with a fresh
    /// random identity if missing (mode 0600 on unix), so a restarted node keeps its feed.
    /// File: `identity_file`. Default: none (a random identity).
    #[arg(long, value_name = "PATH")]
    pub identity_file: Option<PathBuf>,

    /// Serve Prometheus metrics (`/metrics`) and the live web view (`/`) on this HTTP address
    /// (port 0 picks a free one; the `ready` line names it). File: `http`. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,

    /// Print a `snapshot` line (the web view's JSON of this node) every this many
    /// milliseconds (10..=60000); the `cluster` example's web view merges them. Off by default.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub snapshot_ms: Option<u64>,

    /// Authenticated datagrams admitted per second from one source address (a token bucket;
    /// beyond it they are dropped and counted as `rate_limited`); 0 turns the limit off. File:
    /// `inbound_limit.rate`. Default: 1000.
    #[arg(long, value_name = "N")]
    pub inbound_rate: Option<u32>,

    /// Datagrams one source may send at once after a quiet period (the bucket's size; >= 1
    /// when the rate is not 0). File: `inbound_limit.burst`. Default: 2000.
    #[arg(long, value_name = "N")]
    pub inbound_burst: Option<u32>,

    /// The ids of the flags given on the command line (recorded by
    /// [`NodeArgs::parse_args`]), which override `--config`. `None` (arguments built another
    /// way) means every flag overrides the file.
    #[arg(skip)]
    pub given: Option<Vec<String>>,
}

/// The flags that have a field in the configuration file.
const FILE_FLAGS: &[&str] = &[
    "bind",
    "seeds",
    "passphrase",
    "key_file",
    "cluster",
    "loss",
    "delay_ms",
    "max_datagram",
    "seed_rng",
    "store",
    "identity_file",
    "http",
];

impl NodeArgs {
    /// Parses the process's arguments (exiting with clap's message on a bad one), recording
    /// which flags were given on the command line so that they override `--config`.
    pub fn parse_args() -> NodeArgs {
        Self::parse_from_iter(std::env::args_os())
    }

    /// [`parse_args`](Self::parse_args) from `args` (the program name first).
    pub fn parse_from_iter<I, T>(args: I) -> NodeArgs
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = NodeArgs::command().get_matches_from(args);
        let mut parsed = NodeArgs::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
        parsed.given = Some(
            FILE_FLAGS
                .iter()
                .filter(|id| {
                    matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
                })
                .map(|id| (*id).to_owned())
                .collect(),
        );
        parsed
    }

    /// Whether the flag `id` overrides the file: there is no file, the flag was given on the
    /// command line, or what was given is not recorded (arguments not from
    /// [`parse_args`](Self::parse_args)).
    fn overrides(&self, id: &str) -> bool {
        self.config.is_none()
            || self
                .given
                .as_ref()
                .is_none_or(|given| given.iter().any(|g| g == id))
    }

    /// Resolves the whole configuration: the defaults, `--config`, `--set`, then the flags
    /// (see [`crate::config`]), validated. Returns the arguments with every node-level option
    /// taken from the result (so [`keyring_from_args`] and [`store_from_args`] see the
    /// file's key and store) and the resolved configuration.
    ///
    /// # Errors
    /// An unreadable or invalid file, an unknown field, or a value out of range (named by its
    /// full path, with the allowed range).
    pub fn resolve(&self) -> Result<(NodeArgs, FileConfig), ConfigFileError> {
        let mut config = FileConfig::load(self.config.as_deref(), &self.set)?;
        let options = &mut config.options;
        if self.overrides("bind") {
            options.bind = self.bind;
        }
        if self.overrides("seeds") && (self.config.is_none() || !self.seeds.is_empty()) {
            options.seeds = self.seeds.clone();
        }
        if self.overrides("cluster") {
            options.cluster = self.cluster.clone();
        }
        // A key given on the command line replaces the file's, whichever kind it is.
        if self.passphrase.is_some() || self.key_file.is_some() {
            options.passphrase = self.passphrase.clone();
            options.key_file = self.key_file.clone();
        }
        if self.seed_rng.is_some() {
            options.seed_rng = self.seed_rng;
        }
        if self.store.is_some() {
            options.store = self.store.clone();
        }
        if self.identity_file.is_some() {
            options.identity_file = self.identity_file.clone();
        }
        if self.http.is_some() {
            options.http = self.http;
        }
        if self.overrides("loss") {
            config.node.fault.loss = self.loss;
        }
        if self.delay_ms.is_some() {
            config.node.fault.delay = self.delay_ms;
        }
        if self.overrides("max_datagram") {
            config.node.max_datagram = self.max_datagram;
        }
        if let Some(rate) = self.inbound_rate {
            config.node.inbound_limit.rate = rate;
        }
        if let Some(burst) = self.inbound_burst {
            config.node.inbound_limit.burst = burst;
        }
        config.validate()?;
        let options = &config.options;
        let resolved = NodeArgs {
            bind: options.bind,
            seeds: options.seeds.clone(),
            passphrase: options.passphrase.clone(),
            key_file: options.key_file.clone(),
            cluster: options.cluster.clone(),
            loss: config.node.fault.loss,
            delay_ms: config.node.fault.delay,
            max_datagram: config.node.max_datagram,
            seed_rng: options.seed_rng,
            store: options.store.clone(),
            identity_file: options.identity_file.clone(),
            http: options.http,
            ..self.clone()
        };
        Ok((resolved, config))
    }
}

/// Parses a delay range `MIN-MAX` in milliseconds (or a single `MS` for a fixed delay), with
/// `MIN <= MAX <= 10,000`.
pub fn parse_delay_range(text: &str) -> Result<DelayRange, String> {
    let text = text.trim();
    let (min, max) = text.split_once('-').unwrap_or((text, text));
    let ms = |part: &str| -> Result<u64, String> {
        part.trim()
            .parse()
            .map_err(|e| format!("{part:?} is not a whole number of milliseconds: {e}"))
    };
    let range = DelayRange::from_millis(ms(min)?, ms(max)?);
    FaultInjection {
        delay: Some(range),
        ..FaultInjection::default()
    }
    .validate()
    .map_err(|e| e.to_string())?;
    Ok(range)
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
    #[error(
        "one of --passphrase or --key-file (or `passphrase` / `key_file` in the --config file) is required"
    )]
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
    /// The `--store` file could not be opened.
    #[error("cannot open store {path}: {source}")]
    Store {
        /// The file.
        path: PathBuf,
        /// The store's error.
        source: StoreError,
    },
    /// The configuration (file, `--set` or flags) was refused; the message names the field
    /// by its full path.
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    /// The `--http` address could not be bound.
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The `--identity-file` could not be read, parsed or created.
    #[error("identity file {path}: {reason}")]
    IdentityFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
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

/// Length of an identity file's contents: the 32-byte seed as hex digits.
const IDENTITY_HEX_LEN: usize = 64;

/// Reads the identity in `path` (64 hex digits, surrounding whitespace allowed), or creates
/// the file with a fresh random identity if it does not exist.
///
/// A new file is written under a temporary name (mode 0600 on unix, synced) and then linked
/// into place, so a crash never leaves a half-written identity, and two processes racing to
/// create it agree on one identity (the loser reads the winner's).
///
/// # Errors
/// A file that cannot be read or written, or does not hold exactly 64 hex digits.
pub fn load_or_create_identity(path: &Path) -> Result<Identity, RunNodeError> {
    let fail = |reason: String| RunNodeError::IdentityFile {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return parse_identity(&text).map_err(fail),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(fail(format!("cannot read it: {err}"))),
    }
    let identity = Identity::generate();
    let text = format!("{}\n", hex::encode(identity.to_bytes().as_slice()));
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let written = write_private(&tmp, text.as_bytes());
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_parent(path);
            Ok(identity)
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .map_err(|err| fail(format!("cannot read it: {err}")))?;
            parse_identity(&text).map_err(fail)
        }
        Err(err) => Err(fail(format!("cannot create it: {err}"))),
    }
}

/// Parses an identity file's contents.
fn parse_identity(text: &str) -> Result<Identity, String> {
    let text = text.trim();
    if text.len() != IDENTITY_HEX_LEN {
        return Err(format!(
            "expected {IDENTITY_HEX_LEN} hex digits, found {} characters",
            text.len()
        ));
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text, &mut seed).map_err(|err| format!("not hexadecimal: {err}"))?;
    let identity = Identity::from_bytes(&seed);
    seed.fill(0);
    Ok(identity)
}

/// Creates `path` (which must not exist) readable by its owner only, writes `bytes` and syncs.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Syncs the directory holding `path`, so a newly linked file survives a crash (best effort).
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Opens the store the arguments ask for: the `--store` redb file, or memory.
///
/// # Errors
/// A file that cannot be created or opened (not redb, or open in another process).
pub fn store_from_args(args: &NodeArgs) -> Result<SharedStore, RunNodeError> {
    let store: Box<dyn NodeStore> = match &args.store {
        Some(path) => Box::new(RedbStore::open(path).map_err(|source| RunNodeError::Store {
            path: path.clone(),
            source,
        })?),
        None => Box::new(MemoryStore::new()),
    };
    Ok(SharedStore::new(store))
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
        /// The node's feed id (the same 32 bytes as the node id), 64 hex digits.
        feed: String,
        /// The HTTP address of `/metrics` and the web view, with `--http`.
        #[serde(skip_serializing_if = "Option::is_none")]
        http: Option<String>,
    },
    /// The node's state for the web view, every `--snapshot-ms`.
    Snapshot {
        /// Its view, peers, feed trees, recent deliveries and counters.
        snapshot: Box<NodeSnapshot>,
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
    Stats(Box<StatsEvent>),
    /// The peers discovery knows.
    Peers {
        /// In address order.
        peers: Vec<PeerJson>,
    },
    /// A keyring command (`add-key`, `add-passphrase`, `primary-key`, `remove-key`, `keys`) was
    /// applied: the key ids held now, two hex digits each.
    Keyring {
        /// Id of the primary (sealing) key.
        primary: String,
        /// Ids of the accepted (open-only) keys, in insertion order.
        accepted: Vec<String>,
    },
    /// A `peer` command was applied.
    PeerAdded {
        /// The address added.
        addr: String,
    },
    /// A `publish` command's message is durable in the store.
    Published {
        /// The local feed.
        feed: String,
        /// The message's sequence.
        sequence: u64,
        /// The message's id (SHA-256 of its signed encoding), 64 hex digits.
        id: String,
        /// Microseconds since the Unix epoch, read after the append returned.
        at_us: u64,
    },
    /// A message was appended to a feed in the store (received, or published here).
    FeedMessage {
        /// The feed (the author's public key).
        feed: String,
        /// The message's sequence.
        sequence: u64,
        /// The message's id.
        id: String,
        /// The content as UTF-8 (invalid sequences replaced).
        content: String,
        /// Microseconds since the Unix epoch.
        at_us: u64,
    },
    /// A `follow` command was applied.
    Followed {
        /// The feed.
        feed: String,
        /// Whether it was not followed before.
        added: bool,
    },
    /// An `unfollow` command was applied.
    Unfollowed {
        /// The feed.
        feed: String,
        /// Whether it was followed.
        was_followed: bool,
    },
    /// The answer to `log`.
    Log {
        /// The feed.
        feed: String,
        /// The feed's latest stored sequence (0 if none).
        head: u64,
        /// The messages from the asked sequence, in order.
        messages: Vec<LogEntry>,
    },
    /// The answer to `verify-log`.
    LogVerified {
        /// The feed.
        feed: String,
        /// Messages checked (from sequence 1).
        messages: u64,
        /// The feed's latest stored sequence (0 if none).
        head: u64,
        /// Whether every message verified and the chain is complete.
        ok: bool,
        /// The first problem found, when `ok` is false.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A followed feed was found forked and is no longer replicated.
    FeedForked {
        /// The feed.
        feed: String,
    },
    /// A `set` or `try_set` command was applied to the local state.
    Set {
        /// The key.
        key: String,
        /// This node's version of the write.
        version: u64,
        /// Microseconds since the Unix epoch, read after the write returned.
        at_us: u64,
    },
    /// A `delete` command was applied to the local state.
    Deleted {
        /// The key.
        key: String,
        /// The version the tombstone took, or null if the key held no value.
        version: Option<u64>,
        /// Microseconds since the Unix epoch, read after the delete returned.
        at_us: u64,
    },
    /// The answer to `get`.
    Value {
        /// The owner, 64 hex digits.
        node: String,
        /// The key.
        key: String,
        /// The value as UTF-8 (invalid sequences replaced), or null if not held.
        value: Option<String>,
        /// The owner's version of the value, or null if not held.
        version: Option<u64>,
    },
    /// The answer to `nodes`: every node whose state is held here, this one included.
    Nodes {
        /// Node ids, sorted.
        nodes: Vec<String>,
    },
    /// A node joined this node's view of the cluster state.
    NewPeer {
        /// The node id.
        node: String,
        /// The address it advertises.
        addr: String,
        /// Microseconds since the Unix epoch.
        at_us: u64,
    },
    /// The failure detector declared a node dead.
    PeerDead {
        /// The node id.
        node: String,
        /// Microseconds since the Unix epoch.
        at_us: u64,
    },
    /// A node declared dead was heard from again.
    PeerLive {
        /// The node id.
        node: String,
        /// Microseconds since the Unix epoch.
        at_us: u64,
    },
    /// Another node's key changed here.
    Update {
        /// The owner, 64 hex digits.
        node: String,
        /// The key.
        key: String,
        /// The new value as UTF-8 (invalid sequences replaced), or null when deleted.
        value: Option<String>,
        /// The owner's version of this change.
        version: u64,
        /// Microseconds since the Unix epoch.
        at_us: u64,
    },
    /// The answer to `add-blob`.
    BlobAdded {
        /// The blob id, 64 hex digits.
        blob: String,
        /// Its size, in bytes.
        size: u64,
        /// What a feed message writes to reference it: `blob:<hex>`.
        reference: String,
    },
    /// The answer to `get-blob`.
    Blob {
        /// The blob id, 64 hex digits.
        blob: String,
        /// Its size, in bytes.
        size: u64,
        /// SHA-256 of the bytes received, 64 hex digits.
        sha256: String,
        /// Whether `sha256` is the blob id.
        matches: bool,
        /// Where the bytes were written, if asked.
        path: Option<String>,
    },
    /// The answer to `has-blob`.
    HasBlob {
        /// The blob id.
        blob: String,
        /// Whether this node holds it whole.
        held: bool,
    },
    /// A blob fetch advanced.
    BlobProgress {
        /// The blob id.
        blob: String,
        /// Bytes of data stored so far.
        bytes: u64,
        /// The blob's size.
        size: u64,
        /// Microseconds since the Unix epoch.
        at_us: u64,
    },
    /// A fetched blob is whole and verified.
    BlobComplete {
        /// The blob id.
        blob: String,
        /// Its size.
        size: u64,
        /// Microseconds since the Unix epoch.
        at_us: u64,
    },
    /// A blob fetch gave up.
    BlobFailed {
        /// The blob id.
        blob: String,
        /// Why, as the core names it.
        reason: String,
    },
    /// The node stopped; always the last line.
    Bye,
}

/// One message of a `log` answer.
#[derive(Serialize, Debug)]
pub struct LogEntry {
    /// Its sequence.
    pub sequence: u64,
    /// Its id, 64 hex digits.
    pub id: String,
    /// The id of the message before it (null for sequence 1).
    pub previous: Option<String>,
    /// The author's timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The content as UTF-8 (invalid sequences replaced).
    pub content: String,
}

impl LogEntry {
    fn of(message: &FeedMessage) -> LogEntry {
        LogEntry {
            sequence: message.sequence,
            id: message.id().to_string(),
            previous: message.previous.map(|p| p.to_string()),
            timestamp_ms: message.timestamp_ms,
            content: String::from_utf8_lossy(&message.content).into_owned(),
        }
    }
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
    /// Authenticated datagrams dropped by the anti-replay check (replayed, too old, stale
    /// epoch; by reason under `drops`).
    pub dropped_replay: u64,
    /// Senders whose newer boot epoch reset their anti-replay window (restarts seen).
    pub replay_epoch_resets: u64,
    /// Dropped inbound datagrams by reason name.
    pub drops: BTreeMap<&'static str, u64>,
    pub pulls_recovered: u64,
    pub ack_timeouts: u64,
    pub injected_loss: u64,
    /// Outbound datagrams held back by `--delay-ms`.
    pub injected_delay: u64,
    /// Outbound datagrams dropped because the delay queue was full.
    pub injected_delay_overflow: u64,
    pub broadcasts: u64,
    pub send_would_block: u64,
    pub send_errors: u64,
    pub mailbox_full: u64,
    /// The same by packet type name (types with none left out).
    pub mailbox_full_by_type: BTreeMap<&'static str, u64>,
    /// Authenticated datagrams dropped because their source exceeded its rate.
    pub rate_limited: u64,
    /// Authenticated messages of a kind no actor is registered for.
    pub unrouted: u64,
    /// Datagrams the dissemination actor could not hand to the full transport mailbox.
    pub transport_full: u64,
    /// Feed replication.
    pub feeds: FeedStatsEvent,
    /// Key/value reconciliation and the update rate.
    pub state: StateStatsEvent,
    /// Local writes waiting for the update rate.
    pub flow: FlowStatsEvent,
    /// The failure detector.
    pub failure: FailureStatsEvent,
}

/// The key/value counters of the `stats` event (see [`StateActorStats`] and
/// [`gossip_actors::core::reconcile::ReconcileStats`] for their meaning).
#[derive(Serialize, Debug)]
#[allow(missing_docs)]
pub struct StateStatsEvent {
    /// Gossip rounds run.
    pub rounds: u64,
    /// The current maximum update rate, in thousandths of an update per second.
    pub rate_milli: u32,
    /// The same in updates per second.
    pub rate_per_sec: f64,
    /// Local writes (`set` and `delete`) applied.
    pub local_updates: u64,
    pub digests_sent: u64,
    pub digests_received: u64,
    pub entries_applied: u64,
    pub entries_sent: u64,
    /// Entries a peer lacked that did not fit the datagram (the flow-control overflow).
    pub entries_left_out: u64,
    pub nodes_learned: u64,
    /// Nodes not learned because `max_nodes` were known.
    pub nodes_refused: u64,
    /// Entries refused because other nodes' state held had reached `max_state_bytes`.
    pub bytes_refused: u64,
    pub exchanges_timed_out: u64,
    /// Datagrams not handed to the full transport mailbox.
    pub transport_full: u64,
    /// Heartbeats or peer news lost to a full mailbox.
    pub notifications_dropped: u64,
}

impl StateStatsEvent {
    /// The event's counters from the state actor's stats.
    pub fn of(stats: &StateActorStats) -> Self {
        let core = &stats.core;
        StateStatsEvent {
            rounds: core.rounds,
            rate_milli: stats.rate_milli,
            rate_per_sec: f64::from(stats.rate_milli) / 1000.0,
            local_updates: core.local_updates,
            digests_sent: core.digests_sent,
            digests_received: core.digests_received,
            entries_applied: core.entries_applied,
            entries_sent: core.entries_sent,
            entries_left_out: core.entries_left_out,
            nodes_learned: core.nodes_learned,
            nodes_refused: core.nodes_refused,
            bytes_refused: core.bytes_refused,
            exchanges_timed_out: core.exchanges_timed_out,
            transport_full: stats.transport_full,
            notifications_dropped: stats.notifications_dropped,
        }
    }
}

/// The update queue's counters of the `stats` event (see [`FlowActorStats`]).
#[derive(Serialize, Debug)]
pub struct FlowStatsEvent {
    /// Writes waiting for the rate now.
    pub queued: usize,
    /// Writes that waited at least once for the rate.
    pub delayed: u64,
    /// Writes refused because the queue was full.
    pub refused_full: u64,
}

impl FlowStatsEvent {
    /// The event's counters from the flow control actor's stats.
    pub fn of(stats: &FlowActorStats) -> Self {
        FlowStatsEvent {
            queued: stats.queued,
            delayed: stats.delayed,
            refused_full: stats.refused_full,
        }
    }
}

/// The failure detector's counters of the `stats` event (see [`FailureActorStats`] and
/// [`gossip_actors::core::failure::FailureStats`] for their meaning).
#[derive(Serialize, Debug)]
#[allow(missing_docs)]
pub struct FailureStatsEvent {
    /// Peers tracked now, live and dead.
    pub peers_tracked: usize,
    /// Of those, peers dead now.
    pub peers_dead: usize,
    pub heartbeats: u64,
    /// Live peers declared dead (`peer_dead` events).
    pub convictions: u64,
    /// Dead peers heard again (`peer_live` events).
    pub revivals: u64,
    pub forgotten: u64,
    /// Local stalls detected by the pause guard.
    pub stalls_detected: u64,
    /// Verdicts lost to a full mailbox.
    pub verdicts_dropped: u64,
}

impl FailureStatsEvent {
    /// The event's counters from the failure detector actor's stats.
    pub fn of(stats: &FailureActorStats) -> Self {
        let core = &stats.core;
        FailureStatsEvent {
            peers_tracked: core.peers_tracked,
            peers_dead: core.peers_dead,
            heartbeats: core.heartbeats,
            convictions: core.convictions,
            revivals: core.revivals,
            forgotten: core.forgotten,
            stalls_detected: core.stalls_detected,
            verdicts_dropped: stats.verdicts_dropped,
        }
    }
}

/// The feed counters of the `stats` event (see [`FeedActorStats`] and
/// [`gossip_actors::core::tree::TreeStats`] for their meaning).
#[derive(Serialize, Debug)]
#[allow(missing_docs)]
pub struct FeedStatsEvent {
    /// Messages appended durably (received and published).
    pub appended: u64,
    /// Appends the store refused.
    pub append_errors: u64,
    /// Store reads that failed.
    pub store_errors: u64,
    /// Tree datagrams not handed to the full transport mailbox.
    pub transport_full: u64,
    /// Tree peers up.
    pub peers_up: usize,
    pub accepted: u64,
    pub duplicates: u64,
    pub buffered: u64,
    pub buffer_dropped: u64,
    pub unappended_full: u64,
    pub notes_sent: u64,
    pub notes_received: u64,
    pub batches_sent: u64,
    pub batches_received: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub grafts: u64,
    pub prunes: u64,
    pub stall_switches: u64,
    pub rewinds: u64,
    pub fetches: u64,
    /// Received messages refused, by reason: `bad_signature`, `wrong_previous`,
    /// `content_too_large`, `not_followed`, `forked_feed` (a message of a feed known to be
    /// forked) and `fork` (a second message at a sequence: the feed is forked). Duplicates
    /// and messages ahead of a gap are not refusals (see `duplicates`, `buffered`).
    pub rejected: BTreeMap<&'static str, u64>,
}

impl FeedStatsEvent {
    /// The event's counters from the feed actor's stats.
    pub fn of(stats: &FeedActorStats) -> Self {
        let core = &stats.core;
        FeedStatsEvent {
            appended: stats.appended,
            append_errors: stats.append_errors,
            store_errors: stats.store_errors,
            transport_full: stats.transport_full,
            peers_up: stats.peers_up,
            accepted: core.accepted,
            duplicates: core.duplicates,
            buffered: core.buffered,
            buffer_dropped: core.buffer_dropped,
            unappended_full: core.unappended_full,
            notes_sent: core.notes_sent,
            notes_received: core.notes_received,
            batches_sent: core.batches_sent,
            batches_received: core.batches_received,
            messages_sent: core.messages_sent,
            messages_received: core.messages_received,
            grafts: core.grafts,
            prunes: core.prunes,
            stall_switches: core.stall_switches,
            rewinds: core.rewinds,
            fetches: core.fetches,
            rejected: BTreeMap::from([
                ("bad_signature", core.bad_signature),
                ("wrong_previous", core.wrong_previous),
                ("content_too_large", core.content_too_large),
                ("not_followed", core.not_followed),
                ("forked_feed", core.forked_dropped),
                ("fork", core.forks),
            ]),
        }
    }
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
            dropped_replay: stats.dropped_replay(),
            replay_epoch_resets: t.replay.epoch_resets,
            drops: t.drops.iter().map(|(r, n)| (r.name(), n)).collect(),
            pulls_recovered: core.pulls_recovered,
            ack_timeouts: core.ack_timeouts,
            injected_loss: t.injected_loss,
            injected_delay: t.injected_delay,
            injected_delay_overflow: t.injected_delay_overflow,
            broadcasts: core.broadcasts,
            send_would_block: t.send_would_block,
            send_errors: t.send_errors,
            mailbox_full: t.mailbox_full,
            mailbox_full_by_type: t
                .mailbox_full_by_type
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(kind, n)| (kind.name(), n))
                .collect(),
            unrouted: t.unrouted,
            rate_limited: t.rate_limited,
            transport_full: stats.dissemination.transport_full,
            feeds: FeedStatsEvent::of(&stats.feeds),
            state: StateStatsEvent::of(&stats.state),
            flow: FlowStatsEvent::of(&stats.flow),
            failure: FailureStatsEvent::of(&stats.failure),
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

/// Parses a feed id: 64 hex digits.
fn parse_feed(text: &str) -> Result<FeedId, String> {
    let text = text.trim();
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|err| format!("bad feed id {text:?} (expected 64 hex digits): {err}"))?;
    Ok(FeedId(bytes))
}

/// Parses a node id: 64 hex digits.
fn parse_node(text: &str) -> Result<NodeId, String> {
    let text = text.trim();
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|err| format!("bad node id {text:?} (expected 64 hex digits): {err}"))?;
    Ok(NodeId(bytes))
}

/// Splits `<key> <value>`: the key is the first word, the value the rest of the line (empty
/// if none).
fn parse_key_value(rest: &str) -> Result<(&str, &str), String> {
    let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
    if key.is_empty() {
        return Err("expected <key> <value>".to_owned());
    }
    Ok((key, value))
}

/// Whether the command `line` may wait for long (for the update rate), so the node's events
/// are reported while it runs.
fn may_wait(line: &str) -> bool {
    matches!(
        line.split_whitespace().next(),
        Some("set" | "delete" | "get-blob")
    )
}

fn parse_blob(text: &str) -> Result<BlobId, String> {
    text.trim()
        .parse::<BlobId>()
        .map_err(|_| format!("bad blob id {:?}: expected 64 hex digits", text.trim()))
}

/// Parses a sequence number.
fn parse_seq(text: &str, what: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|err| format!("bad {what} {text:?}: {err}"))
}

/// The latest stored sequence of `feed` (0 if none), and its id.
fn head_of(store: &SharedStore, feed: FeedId) -> Result<(u64, Option<String>), String> {
    match store.latest(feed) {
        Ok(Some((sequence, id))) => Ok((sequence, Some(id.to_string()))),
        Ok(None) => Ok((0, None)),
        Err(err) => Err(format!("cannot read the head of the feed: {err}")),
    }
}

/// Messages `from..=to` of `feed`, read with the node's feed stream (from its store), within
/// [`LOG_TIMEOUT`].
async fn read_feed(
    node: &NodeHandle,
    feed: FeedId,
    from: u64,
    to: u64,
) -> Result<Vec<FeedMessage>, String> {
    if to < from {
        return Ok(Vec::new());
    }
    let want = to - from + 1;
    let take = usize::try_from(want).map_err(|_| "too many messages".to_owned())?;
    let read = node.feed(feed, from).take(take).collect::<Vec<_>>();
    let messages = tokio::time::timeout(LOG_TIMEOUT, read)
        .await
        .map_err(|_| format!("reading the feed took over {} s", LOG_TIMEOUT.as_secs()))?;
    if messages.len() as u64 != want {
        return Err(format!(
            "the feed stream ended after {} of {want} messages",
            messages.len()
        ));
    }
    Ok(messages)
}

/// Checks `feed` from sequence 1 to its stored head: each message is by the feed's author,
/// has the next sequence, names the previous message's id and carries a valid signature, and
/// the last one's id is the stored head's. Returns the head and, if it failed, why.
async fn verify_feed(
    node: &NodeHandle,
    store: &SharedStore,
    feed: FeedId,
) -> Result<(u64, u64, Option<String>), String> {
    let (head, head_id) = head_of(store, feed)?;
    let messages = read_feed(node, feed, 1, head).await?;
    let mut previous = None;
    let mut checked = 0u64;
    for (expected, message) in (1u64..).zip(&messages) {
        let problem = if message.author != feed {
            Some(format!("message {expected} is by {}", message.author))
        } else if message.sequence != expected {
            Some(format!(
                "expected sequence {expected}, found {}",
                message.sequence
            ))
        } else if message.previous != previous {
            Some(format!(
                "message {expected} does not name the previous message's id"
            ))
        } else if let Err(err) = message.verify_signature() {
            Some(format!("message {expected}: bad signature: {err}"))
        } else {
            None
        };
        if problem.is_some() {
            return Ok((checked, head, problem));
        }
        previous = Some(message.id());
        checked += 1;
    }
    if previous.map(|id| id.to_string()) != head_id {
        return Ok((
            checked,
            head,
            Some("the last message is not the stored head".into()),
        ));
    }
    Ok((checked, head, None))
}

async fn handle_command(
    node: &NodeHandle,
    store: &SharedStore,
    line: &str,
) -> Result<Flow, RunNodeError> {
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
                Err(NodeError::Stopped) => return Err(RunNodeError::Stopped),
                Err(err) => emit_error(Some(line), err)?,
            }
        }
        "publish" => match node.publish(rest.as_bytes().to_vec()).await {
            Ok(published) => emit(&Output::Published {
                feed: node.feed_id().to_string(),
                sequence: published.sequence,
                id: published.id.to_string(),
                at_us: unix_micros(),
            })?,
            Err(NodeError::Stopped) => return Err(RunNodeError::Stopped),
            Err(err) => emit_error(Some(line), err)?,
        },
        "follow" | "unfollow" => {
            let feed = match parse_feed(rest) {
                Ok(feed) => feed,
                Err(err) => return emit_error(Some(line), err).map(|()| Flow::Continue),
            };
            let result = if verb == "follow" {
                node.follow(feed).await
            } else {
                node.unfollow(feed).await
            };
            match result {
                Ok(changed) if verb == "follow" => emit(&Output::Followed {
                    feed: feed.to_string(),
                    added: changed,
                })?,
                Ok(changed) => emit(&Output::Unfollowed {
                    feed: feed.to_string(),
                    was_followed: changed,
                })?,
                Err(NodeError::Stopped) => return Err(RunNodeError::Stopped),
                Err(err) => emit_error(Some(line), err)?,
            }
        }
        "log" => {
            let answer = async {
                let mut words = rest.split_whitespace();
                let feed = parse_feed(words.next().unwrap_or_default())?;
                let from = parse_seq(words.next().unwrap_or("1"), "sequence")?.max(1);
                let limit = match words.next() {
                    Some(word) => parse_seq(word, "limit")?.min(MAX_LOG_MESSAGES),
                    None => MAX_LOG_MESSAGES,
                };
                if words.next().is_some() {
                    return Err("expected log <feed> [from_seq] [limit]".to_owned());
                }
                let (head, _) = head_of(store, feed)?;
                let to = head.min(from.saturating_add(limit).saturating_sub(1));
                let messages = read_feed(node, feed, from, to).await?;
                Ok(Output::Log {
                    feed: feed.to_string(),
                    head,
                    messages: messages.iter().map(LogEntry::of).collect(),
                })
            };
            match answer.await {
                Ok(output) => emit(&output)?,
                Err(err) => emit_error(Some(line), err)?,
            }
        }
        "verify-log" => {
            let answer = async {
                let feed = parse_feed(rest)?;
                let (messages, head, error) = verify_feed(node, store, feed).await?;
                Ok::<_, String>(Output::LogVerified {
                    feed: feed.to_string(),
                    messages,
                    head,
                    ok: error.is_none(),
                    error,
                })
            };
            match answer.await {
                Ok(output) => emit(&output)?,
                Err(err) => emit_error(Some(line), err)?,
            }
        }
        "set" | "try_set" => {
            let (key, value) = match parse_key_value(rest) {
                Ok(kv) => kv,
                Err(err) => return emit_error(Some(line), err).map(|()| Flow::Continue),
            };
            let value = value.as_bytes().to_vec();
            let result = if verb == "set" {
                node.set(key, value).await
            } else {
                node.try_set(key, value).await
            };
            match result {
                Ok(version) => emit(&Output::Set {
                    key: key.to_owned(),
                    version,
                    at_us: unix_micros(),
                })?,
                Err(NodeError::Stopped) => return Err(RunNodeError::Stopped),
                Err(err) => emit_error(Some(line), err)?,
            }
        }
        "delete" => {
            let key = rest.trim();
            if key.is_empty() || key.contains(' ') {
                return emit_error(Some(line), "expected delete <key>").map(|()| Flow::Continue);
            }
            match node.delete(key).await {
                Ok(version) => emit(&Output::Deleted {
                    key: key.to_owned(),
                    version,
                    at_us: unix_micros(),
                })?,
                Err(NodeError::Stopped) => return Err(RunNodeError::Stopped),
                Err(err) => emit_error(Some(line), err)?,
            }
        }
        "get" => {
            let mut words = rest.split_whitespace();
            let (owner, key) = match (words.next(), words.next(), words.next()) {
                (Some(owner), Some(key), None) => match parse_node(owner) {
                    Ok(owner) => (owner, key),
                    Err(err) => return emit_error(Some(line), err).map(|()| Flow::Continue),
                },
                _ => {
                    return emit_error(Some(line), "expected get <node> <key>")
                        .map(|()| Flow::Continue);
                }
            };
            match node.get(owner, key).await {
                Ok(held) => emit(&Output::Value {
                    node: owner.to_string(),
                    key: key.to_owned(),
                    value: held
                        .as_ref()
                        .map(|(value, _)| String::from_utf8_lossy(value).into_owned()),
                    version: held.map(|(_, version)| version),
                })?,
                Err(NodeError::Stopped) => return Err(RunNodeError::Stopped),
                Err(err) => emit_error(Some(line), err)?,
            }
        }
        "nodes" => match node.nodes().await {
            Ok(nodes) => emit(&Output::Nodes {
                nodes: nodes.iter().map(ToString::to_string).collect(),
            })?,
            Err(NodeError::Stopped) => return Err(RunNodeError::Stopped),
            Err(err) => emit_error(Some(line), err)?,
        },
        "stats" => {
            let stats = node.stats().await.map_err(|_| RunNodeError::Stopped)?;
            emit(&Output::Stats(Box::new(StatsEvent::of(&stats))))?;
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
        "add-key" | "add-passphrase" | "primary-key" | "remove-key" | "keys" => {
            let result = match verb {
                "add-key" => match Key::from_hex(rest.trim()) {
                    Ok(key) => node.add_key(key).await.map_err(|e| e.to_string()),
                    Err(err) => Err(format!("expected add-key <64 hex digits>: {err}")),
                },
                "add-passphrase" => match rest.trim().split_once(' ') {
                    Some((cluster, passphrase)) => {
                        match Key::from_passphrase(passphrase, cluster) {
                            Ok(key) => node.add_key(key).await.map_err(|e| e.to_string()),
                            Err(err) => Err(err.to_string()),
                        }
                    }
                    None => Err("expected add-passphrase <cluster> <passphrase>".to_owned()),
                },
                "keys" => match node.keyring().await {
                    Ok(Some(view)) => Ok(view),
                    Ok(None) => Err("the node runs in plaintext mode and has no keyring".into()),
                    Err(_) => return Err(RunNodeError::Stopped),
                },
                _ => match u8::from_str_radix(rest.trim(), 16) {
                    Ok(id) if verb == "primary-key" => {
                        node.set_primary_key(id).await.map_err(|e| e.to_string())
                    }
                    Ok(id) => node.remove_key(id).await.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("expected {verb} <key id: two hex digits>")),
                },
            };
            match result {
                Ok(view) => emit(&Output::Keyring {
                    primary: format!("{:02x}", view.primary),
                    accepted: view.accepted.iter().map(|id| format!("{id:02x}")).collect(),
                })?,
                Err(err) => emit_error(Some(line), err)?,
            }
        }
        "add-blob" => match std::fs::read(rest.trim()) {
            Ok(bytes) => {
                let size = bytes.len() as u64;
                match node.add_blob(bytes).await {
                    Ok(blob) => emit(&Output::BlobAdded {
                        blob: blob.to_string(),
                        size,
                        reference: gossip_actors::core::blob::reference(blob),
                    })?,
                    Err(NodeError::Stopped) => return Err(RunNodeError::Stopped),
                    Err(err) => emit_error(Some(line), err)?,
                }
            }
            Err(err) => emit_error(Some(line), format!("cannot read {:?}: {err}", rest.trim()))?,
        },
        "get-blob" => {
            let mut words = rest.split_whitespace();
            match parse_blob(words.next().unwrap_or("")) {
                Ok(blob) => match node.get_blob(blob).await {
                    Ok(bytes) => {
                        let sha256 = gossip_actors::crypto::sha256(&bytes);
                        let path = words.next().map(str::to_owned);
                        if let Some(path) = &path {
                            if let Err(err) = std::fs::write(path, &bytes) {
                                emit_error(Some(line), format!("cannot write {path:?}: {err}"))?;
                            }
                        }
                        emit(&Output::Blob {
                            blob: blob.to_string(),
                            size: bytes.len() as u64,
                            sha256: BlobId(sha256).to_string(),
                            matches: sha256 == blob.0,
                            path,
                        })?;
                    }
                    Err(NodeError::Stopped) => return Err(RunNodeError::Stopped),
                    Err(err) => emit_error(Some(line), err)?,
                },
                Err(err) => emit_error(Some(line), err)?,
            }
        }
        "has-blob" => match parse_blob(rest) {
            Ok(blob) => match node.has_blob(blob).await {
                Ok(held) => emit(&Output::HasBlob {
                    blob: blob.to_string(),
                    held,
                })?,
                Err(NodeError::Stopped) => return Err(RunNodeError::Stopped),
                Err(err) => emit_error(Some(line), err)?,
            },
            Err(err) => emit_error(Some(line), err)?,
        },
        "quit" => return Ok(Flow::Quit),
        "" => emit_error(Some(line), "empty command")?,
        other => emit_error(
            Some(line),
            format!(
                "unknown command {other:?} (expected broadcast <text>, publish <text>, \
                 follow <feed>, unfollow <feed>, log <feed> [from_seq] [limit], \
                 verify-log <feed>, set <key> <value>, try_set <key> <value>, \
                 delete <key>, get <node> <key>, nodes, stats, peer <addr>, peers, \
                 add-key <hex>, add-passphrase <cluster> <passphrase>, primary-key <id>, \
                 remove-key <id>, keys, add-blob <path>, get-blob <blob> [path], has-blob <blob> \
                 or quit)"
            ),
        )?,
    }
    Ok(Flow::Continue)
}

fn emit_event(event: NodeEvent) -> Result<(), RunNodeError> {
    match event {
        NodeEvent::FeedMessage(m) => emit(&Output::FeedMessage {
            feed: m.author.to_string(),
            sequence: m.sequence,
            id: m.id().to_string(),
            content: String::from_utf8_lossy(&m.content).into_owned(),
            at_us: unix_micros(),
        }),
        NodeEvent::FeedForked { feed } => emit(&Output::FeedForked {
            feed: feed.to_string(),
        }),
        NodeEvent::Delivered(d) => emit(&Output::Delivered {
            id: d.id.to_string(),
            origin: d.origin.to_string(),
            hop: d.hop,
            payload: String::from_utf8_lossy(&d.payload).into_owned(),
            at_us: unix_micros(),
        }),
        NodeEvent::NewPeer { node, addr } => emit(&Output::NewPeer {
            node: node.to_string(),
            addr: addr.to_string(),
            at_us: unix_micros(),
        }),
        NodeEvent::PeerDead { node } => emit(&Output::PeerDead {
            node: node.to_string(),
            at_us: unix_micros(),
        }),
        NodeEvent::PeerLive { node } => emit(&Output::PeerLive {
            node: node.to_string(),
            at_us: unix_micros(),
        }),
        NodeEvent::Update {
            node,
            key,
            value,
            version,
        } => emit(&Output::Update {
            node: node.to_string(),
            key,
            value: value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            version,
            at_us: unix_micros(),
        }),
        NodeEvent::BlobProgress { blob, bytes, size } => emit(&Output::BlobProgress {
            blob: blob.to_string(),
            bytes,
            size,
            at_us: unix_micros(),
        }),
        NodeEvent::BlobComplete { blob, size } => emit(&Output::BlobComplete {
            blob: blob.to_string(),
            size,
            at_us: unix_micros(),
        }),
        NodeEvent::BlobFailed { blob, reason } => emit(&Output::BlobFailed {
            blob: blob.to_string(),
            reason: format!("{reason:?}"),
        }),
        other => {
            tracing::debug!(?other, "event not reported");
            Ok(())
        }
    }
}

/// Reports one result of the event subscription.
fn forward_event(event: Result<NodeEvent, RecvError>) -> Result<(), RunNodeError> {
    match event {
        Ok(event) => emit_event(event),
        Err(RecvError::Lagged(n)) => emit(&Output::Error {
            command: None,
            error: format!("event subscriber lagged: {n} events skipped"),
            skipped: Some(n),
        }),
        Err(RecvError::Closed) => Err(RunNodeError::Stopped),
    }
}

/// Runs one node until `quit` or the end of stdin. Must be called inside a running actix
/// system (the node's actors run on the current arbiter).
///
/// # Errors
/// A bad key, a node that cannot start (address in use, bad `--max-datagram`), stdout
/// closed, or the node stopping by itself. On success `{"event":"bye"}` was the last line.
pub async fn run_node(args: NodeArgs) -> Result<(), RunNodeError> {
    let (args, file) = args.resolve()?;
    let keyring = keyring_from_args(&args)?;
    let config = NodeConfig {
        max_datagram: args.max_datagram,
        fault: FaultInjection {
            loss: args.loss,
            delay: args.delay_ms,
            ..file.node.fault
        },
        ..file.node.clone()
    };
    let store = store_from_args(&args)?;
    let builder = Node::builder()
        .bind(args.bind)
        .keyring(keyring)
        .store(store.clone())
        .config(config);
    let mut builder = match file.options.discovery {
        DiscoveryKind::Static => builder.discovery(
            StaticDiscovery::new(args.seeds.iter().copied())
                .with_capacity(file.options.static_capacity),
        ),
        DiscoveryKind::Cyclon => builder.discovery(
            CyclonDiscovery::new(args.seeds.iter().copied()).with_config(file.cyclon_config()),
        ),
    };
    if let Some(path) = &args.identity_file {
        builder = builder.identity(load_or_create_identity(path)?);
    }
    if let Some(seed) = args.seed_rng {
        builder = builder.rng_seed(seed);
    }
    let node = builder.start().await?;
    // Seed the key/value state protocol too (the builder's seeds reach discovery only), so
    // that nodes started with seeds alone form one cluster state without any traffic.
    for seed in &args.seeds {
        if node.add_peer(*seed).await.is_err() {
            let _ = node.shutdown().await;
            return Err(RunNodeError::Stopped);
        }
    }
    let ops = (args.http.is_some() || args.snapshot_ms.is_some()).then(|| {
        let mut config = OpsConfig::default();
        if let Some(ms) = args.snapshot_ms {
            config.interval = Duration::from_millis(ms);
        }
        Ops::start(node.clone(), config)
    });
    let http = match (&ops, args.http) {
        (Some(ops), Some(addr)) => match ops.serve(addr).await {
            Ok(bound) => Some(bound),
            Err(source) => {
                let _ = node.shutdown().await;
                return Err(RunNodeError::Http { addr, source });
            }
        },
        _ => None,
    };
    let snapshots = ops
        .as_ref()
        .filter(|_| args.snapshot_ms.is_some())
        .map(Ops::snapshots);
    let result = serve(&node, &store, http, snapshots).await;
    drop(ops);
    let _ = node.shutdown().await;
    result?;
    emit(&Output::Bye)
}

async fn serve(
    node: &NodeHandle,
    store: &SharedStore,
    http: Option<SocketAddr>,
    snapshots: Option<watch::Receiver<Option<Arc<NodeSnapshot>>>>,
) -> Result<(), RunNodeError> {
    // Subscribe before announcing readiness, so that no delivery is missed.
    let mut events = node.subscribe();
    emit(&Output::Ready {
        addr: node.local_addr().to_string(),
        node_id: node.node_id().to_string(),
        feed: node.feed_id().to_string(),
        http: http.map(|a| a.to_string()),
    })?;
    let report_snapshots = snapshots.is_some();
    let (_unused, idle) = watch::channel(None);
    let mut snapshots = snapshots.unwrap_or(idle);
    let mut commands = spawn_stdin_reader();
    loop {
        tokio::select! {
            biased;
            event = events.recv() => forward_event(event)?,
            changed = snapshots.changed(), if report_snapshots => {
                if changed.is_err() {
                    return Err(RunNodeError::Stopped);
                }
                let snapshot = snapshots.borrow_and_update().clone();
                if let Some(snapshot) = snapshot {
                    emit(&Output::Snapshot { snapshot: Box::new((*snapshot).clone()) })?;
                }
            }
            line = commands.recv() => match line {
                None => return Ok(()),
                Some(line) => {
                    // A command that may wait for the update rate runs while events keep
                    // being reported; any other is answered before the next event.
                    let report_events = may_wait(&line);
                    let command = handle_command(node, store, &line);
                    tokio::pin!(command);
                    let flow = loop {
                        tokio::select! {
                            biased;
                            flow = &mut command => break flow?,
                            event = events.recv(), if report_events => forward_event(event)?,
                        }
                    };
                    if let Flow::Quit = flow {
                        return Ok(());
                    }
                }
            },
        }
    }
}

/// The log filter when `RUST_LOG` is not set: `info`. Nothing is logged per datagram at
/// `info` (per-datagram events are `trace`, per-message spans `debug`); a node logs its start
/// and stop, each new peer, and each failure verdict.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Installs the stderr logger, filtered by `RUST_LOG` (tracing-subscriber's `EnvFilter`
/// syntax, for example `RUST_LOG=gossip_actors=debug`), [`DEFAULT_LOG_FILTER`] when unset or
/// invalid. Harmless if one is installed.
pub fn init_logging() {
    init_logging_with(DEFAULT_LOG_FILTER);
}

/// [`init_logging`] with another filter for when `RUST_LOG` is unset: programs that run many
/// nodes in one process (`sim`, `custom_node`, `dht_cluster`) use `warn`, since `info` logs
/// each node's start and each peer it learns.
pub fn init_logging_with(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(io::stderr)
        .try_init();
}

/// The `RUST_LOG` value for node processes started by `cluster` and `chat`: the parent's own
/// `RUST_LOG` if set, else `warn`, so that the children (whose stderr the parent shares) stay
/// quiet unless asked.
pub fn child_log_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned())
}

/// Writes [`crate::config::default_config_text`] to stdout (`--print-default-config`).
pub fn print_default_config() -> std::process::ExitCode {
    let mut out = io::stdout().lock();
    match out
        .write_all(crate::config::default_config_text().as_bytes())
        .and_then(|()| out.flush())
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gossip-node: cannot write to stdout: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The whole `gossip-node` program after argument parsing: starts an actix system, runs the
/// node, and returns the process exit code (0 after `quit`, 1 on failure with a message on
/// stderr).
pub fn main_with(args: NodeArgs) -> std::process::ExitCode {
    if args.print_default_config {
        return print_default_config();
    }
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
