//! The `gossip-node` configuration file: every field of a node in one TOML file.
//!
//! The file holds the node-level options ([`NodeOptions`]: bind address, seeds, key,
//! store, identity, discovery) at its top level next to the fields of
//! [`NodeConfig`], one table per protocol (`[dissemination]`,
//! `[tree]`, `[state]`, `[state.flow]`, `[failure]`, `[protocols]`, `[fault]`), plus
//! `[cyclon]` for CYCLON membership. Every field is optional (a missing one takes its
//! default), an unknown one is refused with its full path, durations are integer
//! milliseconds, sizes are bytes.
//!
//! Precedence, lowest first: the defaults, the file (`--config PATH`), `--set PATH=VALUE`
//! (any field, the value in TOML syntax), then the dedicated flags (`--bind`, `--seed`,
//! `--passphrase`, `--key-file`, `--cluster`, `--loss`, `--max-datagram`, `--seed-rng`,
//! `--store`, `--identity-file`) when given on the command line. The result is validated
//! as a whole ([`NodeConfig::validate`]); an invalid
//! value is refused before the node starts, named by its full path with the allowed range.
//!
//! [`default_config_text`] prints the complete file with every field commented (unit,
//! default, range, source) from [`FIELD_DOCS`]; the tests check that the text parses back to
//! exactly the defaults and that every field of the structs has its entry.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gossip_actors::core::membership::CyclonConfig;
use gossip_actors::discovery::DEFAULT_STATIC_CAPACITY;
use gossip_actors::{NodeConfig, NodeConfigError};
use serde::{Deserialize, Serialize};

/// The default bind address: loopback, any free port.
pub const DEFAULT_BIND: &str = "127.0.0.1:0";
/// The default cluster name (the salt of the passphrase's key derivation).
pub const DEFAULT_CLUSTER: &str = "gossip";

/// Which discovery a `gossip-node` runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryKind {
    /// A static table of the seeds plus every node whose authenticated packet arrives.
    #[default]
    Static,
    /// CYCLON partial views (Voulgaris et al. 2005) joined through the seeds; tuned by the
    /// `[cyclon]` table.
    Cyclon,
}

/// The node-level options of the file (the top-level keys that are not [`NodeConfig`]
/// fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeOptions {
    /// UDP address to bind (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Peers to start with.
    pub seeds: Vec<SocketAddr>,
    /// Cluster name, the salt of the passphrase's key derivation.
    pub cluster: String,
    /// Passphrase of the cluster (Argon2id); exclusive with `key_file`.
    pub passphrase: Option<String>,
    /// File holding the cluster key as 64 hex digits.
    pub key_file: Option<PathBuf>,
    /// redb file of the feed logs, peer clocks and follows (memory if absent).
    pub store: Option<PathBuf>,
    /// File holding the node's ed25519 secret seed (created if missing).
    pub identity_file: Option<PathBuf>,
    /// Seed of the node's random choices.
    pub seed_rng: Option<u64>,
    /// HTTP address serving Prometheus metrics and the live web view (off if absent).
    pub http: Option<SocketAddr>,
    /// Discovery: `static` or `cyclon`.
    pub discovery: DiscoveryKind,
    /// Peers the static table holds at most (further ones are refused, never evicted), when
    /// `discovery = "static"`.
    pub static_capacity: usize,
    /// CYCLON parameters, used when `discovery = "cyclon"`. Its `max_envelope_len` is derived
    /// from `max_datagram`.
    pub cyclon: CyclonConfig,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            seeds: Vec::new(),
            cluster: DEFAULT_CLUSTER.to_owned(),
            passphrase: None,
            key_file: None,
            store: None,
            identity_file: None,
            seed_rng: None,
            http: None,
            discovery: DiscoveryKind::Static,
            static_capacity: DEFAULT_STATIC_CAPACITY,
            cyclon: CyclonConfig::default(),
        }
    }
}

/// Top-level keys of the file that belong to [`NodeOptions`] (every other key is a
/// [`NodeConfig`] field). A test checks this against the struct.
pub const NODE_OPTION_KEYS: &[&str] = &[
    "bind",
    "seeds",
    "cluster",
    "passphrase",
    "key_file",
    "store",
    "identity_file",
    "seed_rng",
    "http",
    "discovery",
    "static_capacity",
    "cyclon",
];

/// A whole configuration: the node-level options and the node's protocol configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileConfig {
    /// Bind address, seeds, key, store, identity, discovery.
    pub options: NodeOptions,
    /// Everything the node builder takes.
    pub node: NodeConfig,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field is unknown or has a value of the wrong type; `field` is its full path.
    #[error("{origin}: {field}: {message}")]
    Field {
        /// Where the value came from: the file's path or `--set`.
        origin: String,
        /// The field's full path, for example `dissemination.fanot`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `--set` argument is not `PATH=VALUE`, or its path crosses a non-table value.
    #[error("--set {arg}: {reason}")]
    Set {
        /// The argument.
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value is outside its allowed range.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] NodeConfigError),
}

impl ConfigFileError {
    /// The full path of the offending field, when the error is about one.
    pub fn field(&self) -> Option<String> {
        match self {
            ConfigFileError::Field { field, .. } => Some(field.clone()),
            ConfigFileError::Invalid(err) => Some(err.field()),
            _ => None,
        }
    }
}

impl FileConfig {
    /// Reads and parses the file at `path`, then applies the `--set` overrides. Not yet
    /// validated (flags still apply): see [`FileConfig::validate`].
    ///
    /// # Errors
    /// An unreadable file, bad TOML, an unknown field or a value of the wrong type.
    pub fn load(path: Option<&Path>, sets: &[String]) -> Result<FileConfig, ConfigFileError> {
        let (mut table, origin) = match path {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
                        path: path.to_path_buf(),
                        source,
                    })?;
                let origin = path.display().to_string();
                (parse_table(&text, &origin)?, origin)
            }
            None => (toml::Table::new(), "defaults".to_owned()),
        };
        for arg in sets {
            apply_set(&mut table, arg)?;
        }
        let origin = if sets.is_empty() {
            origin
        } else {
            format!("{origin} with --set")
        };
        FileConfig::from_table(table, &origin)
    }

    /// Parses a configuration from TOML text (`origin` names it in errors).
    ///
    /// # Errors
    /// Bad TOML, an unknown field or a value of the wrong type.
    pub fn from_toml(text: &str, origin: &str) -> Result<FileConfig, ConfigFileError> {
        FileConfig::from_table(parse_table(text, origin)?, origin)
    }

    fn from_table(mut table: toml::Table, origin: &str) -> Result<FileConfig, ConfigFileError> {
        let mut options = toml::Table::new();
        for key in NODE_OPTION_KEYS {
            if let Some(value) = table.remove(*key) {
                options.insert((*key).to_owned(), value);
            }
        }
        let options: NodeOptions = deserialize(options, origin)?;
        let node: NodeConfig = deserialize(table, origin)?;
        Ok(FileConfig { options, node })
    }

    /// Checks every value: [`NodeConfig::validate`], and the `[cyclon]` table when
    /// `discovery = "cyclon"`.
    ///
    /// # Errors
    /// The first field out of range, named by its full path.
    pub fn validate(&self) -> Result<(), ConfigFileError> {
        self.node.validate()?;
        if self.options.static_capacity == 0 {
            return Err(NodeConfigError::ZeroCapacity {
                field: "static_capacity",
            }
            .into());
        }
        if self.options.discovery == DiscoveryKind::Cyclon {
            self.cyclon_config()
                .validate()
                .map_err(NodeConfigError::section("cyclon"))?;
        }
        Ok(())
    }

    /// The `[cyclon]` table with `max_envelope_len` derived from `max_datagram`.
    pub fn cyclon_config(&self) -> CyclonConfig {
        CyclonConfig {
            max_envelope_len: self
                .node
                .max_datagram
                .saturating_sub(gossip_actors::net::PACKET_OVERHEAD),
            ..self.options.cyclon.clone()
        }
    }

    /// The configuration as a TOML table, every field present except options that are not
    /// set.
    pub fn to_table(&self) -> toml::Table {
        let mut table = toml::Table::try_from(&self.node).unwrap_or_default();
        if let Ok(options) = toml::Table::try_from(&self.options) {
            table.extend(options);
        }
        table
    }
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigFileError> {
    text.parse::<toml::Table>()
        .map_err(|err| ConfigFileError::Syntax {
            path: origin.to_owned(),
            message: err.to_string().trim_end().to_owned(),
        })
}

/// Deserializes `table`, naming the full path of a bad field.
fn deserialize<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    origin: &str,
) -> Result<T, ConfigFileError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().trim_end().to_owned();
        // For an unknown field the path ends at its table: add the field's own name.
        let field = match unknown_field_name(&message) {
            Some(name) if path == "." => name.to_owned(),
            Some(name) if path != name && !path.ends_with(&format!(".{name}")) => {
                format!("{path}.{name}")
            }
            _ => path,
        };
        ConfigFileError::Field {
            origin: origin.to_owned(),
            field,
            message,
        }
    })
}

/// The name in serde's "unknown field `name`, expected ..." message.
fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Applies one `--set PATH=VALUE`: the value is read as TOML (`5`, `true`, `"text"`,
/// `["127.0.0.1:7000"]`), or taken as a string if it is not TOML.
fn apply_set(table: &mut toml::Table, arg: &str) -> Result<(), ConfigFileError> {
    let fail = |reason: &str| ConfigFileError::Set {
        arg: arg.to_owned(),
        reason: reason.to_owned(),
    };
    let (path, value) = arg
        .split_once('=')
        .ok_or_else(|| fail("expected PATH=VALUE, for example dissemination.fanout=4"))?;
    let path = path.trim();
    let value = value.trim();
    let value = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys
        .pop()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| fail("empty path"))?;
    let mut current = table;
    for key in keys {
        let entry = current
            .entry(key.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| fail(&format!("{key} is not a table")))?;
    }
    current.insert(last.to_owned(), value);
    Ok(())
}

/// Documentation of one field of the file: `(path, unit, range, description and source)`.
/// The default is the value printed on the line below the comment.
pub type FieldDoc = (&'static str, &'static str, &'static str, &'static str);

/// Every field of the file, in the order [`default_config_text`] prints them (a table's
/// fields together, a table before its sub-tables). Tests check that this lists exactly the
/// fields of [`NodeOptions`] and [`NodeConfig`].
#[rustfmt::skip]
pub const FIELD_DOCS: &[FieldDoc] = &[
    // Node-level options.
    ("bind", "IP:port", "a local address; port 0 picks a free port", "UDP address to bind."),
    ("seeds", "list of IP:port", "any", "Peers to start with (discovery learns the rest)."),
    ("cluster", "text", "non-empty", "Cluster name: the salt of the passphrase's Argon2id key derivation (docs/wire.md)."),
    ("passphrase", "text", "non-empty; exclusive with key_file", "Passphrase of the cluster; the AES-256-GCM key is derived with Argon2id. One of passphrase or key_file is required."),
    ("key_file", "path", "a file of 64 hex digits", "File holding the cluster key (32 bytes as hex)."),
    ("store", "path", "its directory must exist", "redb file keeping feed logs, peer clocks and follows (created if missing). Absent: kept in memory, lost at exit."),
    ("identity_file", "path", "a file of 64 hex digits, or missing", "The node's ed25519 secret seed; created with a fresh identity if missing (mode 0600), so a restarted node keeps its node id and feed."),
    ("http", "IP:port", "a local address; port 0 picks a free port", "Serve Prometheus metrics (/metrics) and the live web view (/) over HTTP on this address. Absent: off. Bind it to a trusted interface only: the server has no authentication."),
    ("seed_rng", "integer", "0..=2^64-1", "Seeds every random choice of the node (node id, message ids, peer selection, injected loss); give each node a different seed. Absent: drawn from the OS."),
    ("discovery", "name", "\"static\" or \"cyclon\"", "How peers are found: a static table of the seeds plus every authenticated sender, or CYCLON partial views (tuned in [cyclon])."),
    ("static_capacity", "peers", ">= 1", "Most peers the static table holds (discovery = \"static\"); further ones are refused, never evicted."),
    // NodeConfig, top level.
    ("max_datagram", "bytes", "128..=65507", "Largest datagram sent or accepted; every protocol's envelope is this minus 36 bytes of label, nonce and tag. Source: memberlist's safe Ethernet payload."),
    ("event_capacity", "events", ">= 1", "Events buffered per subscriber before a slow one starts skipping."),
    ("tree_target_peers", "peers", ">= 0", "Feed tree peers drawn from discovery's known peers (ssb-ebt replicates over a handful of connections); peers that link to this node come on top."),
    ("set_queue_capacity", "updates", ">= 1", "Key/value writes queued while the update rate refuses them."),
    ("fetch_blobs_for_feeds", "bytes", ">= 0 (0: none)", "Blobs referenced (blob:<hex>) by messages of followed feeds are fetched when at most this large; 0 fetches only the blobs asked for."),
    ("blob_store_limit", "bytes", ">= 0", "The store's limit on blob bytes; past it, blobs no followed feed references and not added locally are evicted. Absent: the store's own (1 GiB)."),
    ("protocols.dissemination", "bool", "true or false", "Run push / ack / pull-sync broadcast (go-gossip)."),
    ("protocols.state", "bool", "true or false", "Run Scuttlebutt key/value state with flow control and the phi-accrual failure detector."),
    ("protocols.feeds", "bool", "true or false", "Run signed feeds over per-feed broadcast trees (Secure Scuttlebutt)."),
    ("inbound_limit.rate", "datagrams/s", ">= 0 (0: no limit)", "Authenticated datagrams admitted per second from one source address (token bucket); the rest are dropped before any protocol sees them and counted as rate_limited."),
    ("inbound_limit.burst", "datagrams", ">= 1 when rate > 0", "Datagrams one source may send at once after a quiet period (the bucket's size)."),
    ("inbound_limit.bulk_rate", "datagrams/s", ">= 0 (0: no limit)", "Blob messages (want, have, request, piece) admitted per second from one source address, in a bucket of their own (a source sends a piece per chunk; the blob core bounds what they can make a node do)."),
    ("inbound_limit.bulk_burst", "datagrams", ">= 1 when bulk_rate > 0", "Blob messages one source may send at once after a quiet period."),
    ("inbound_limit.max_sources", "addresses", ">= 1", "Source addresses tracked, least recently heard evicted first."),
    ("replay.window", "packet counters", "64..=65536, a multiple of 64", "Anti-replay: how far below a sender's highest packet counter an unseen counter is still accepted (once). Source: RFC 6479; WireGuard keeps 8,192 - 64."),
    ("replay.max_senders", "senders", "1..=1048576", "Anti-replay: senders whose window is kept; the least recently seen is evicted beyond it."),
    ("fault.loss", "probability", "0..=1", "For tests only: share of outbound datagrams silently dropped."),
    ("fault.delay", "ms", "[min, max] with min <= max <= 10000", "For tests only: delay of each outbound datagram that is not lost, uniform in min..=max. Absent: no delay."),
    ("fault.max_delayed", "datagrams", ">= 1 when delay is set", "For tests only: datagrams held back by the delay at once; more are dropped and counted."),
    // DisseminationConfig.
    ("dissemination.fanout", "peers", ">= 1", "Peers each new broadcast is pushed to, by its origin and by every first receiver. Source: go-gossip GossipNumber."),
    ("dissemination.ack_timeout", "ms", "> 0", "Wait for acks_needed PushAcks before falling back to a PullSync. Source: go-gossip AckTimeout."),
    ("dissemination.acks_needed", "peers", "1..=fanout", "Distinct peers that must ack a push within ack_timeout. Source: go-gossip (majority of fanout)."),
    ("dissemination.pull_sync_peers", "peers", ">= 1", "Peers a PullSync goes to when a push misses its ack majority. Source: go-gossip 2022 code (2 x fanout)."),
    ("dissemination.cache_capacity", "entries", ">= 1", "Broadcast payloads kept (LRU) to answer PullRequests; also bounds outstanding ack timers. Source: go-gossip MessageCacheSize."),
    ("dissemination.cache_ttl", "ms", "> 0", "Age after which a cached payload is dropped."),
    ("dissemination.seen_capacity", "ids", ">= cache_capacity", "Message ids remembered for duplicate suppression."),
    ("dissemination.seen_ttl", "ms", ">= cache_ttl", "How long a message id is remembered. Source: iroh-gossip message_id_retention (ids outlive payloads)."),
    ("dissemination.anti_entropy_interval", "ms", "> 0", "Period of the anti-entropy PullSync round. Source: gossipmonger GOSSIP_INTERVAL."),
    ("dissemination.anti_entropy_peers", "peers", ">= 0 (0 disables anti-entropy)", "Peers each anti-entropy round announces recent ids to."),
    ("dissemination.anti_entropy_window", "ms", "any (ids older than cache_ttl are never announced)", "Age of the cached ids an anti-entropy round announces."),
    ("dissemination.pending_pull_capacity", "ids", ">= 1", "Ids requested by PullRequest and not yet received."),
    ("dissemination.pull_retry", "ms", "> 0", "After this long without a PullResponse an id may be requested from another peer."),
    ("dissemination.output_queue_capacity", "outputs", ">= cache_capacity + ceil(cache_capacity / ids per message) (519 by default)", "Transmits plus events queued by the core before new ones are dropped and counted."),
    // TreeConfig.
    ("tree.notes_interval", "ms", "> 0", "Period of the feed note round (0.9-1.1 x at random). Source: gossipmonger GOSSIP_INTERVAL."),
    ("tree.source_timeout", "ms", ">= notes_interval", "A feed's eager source making no progress this long is replaced. Source: ssb-ebt timeout."),
    ("tree.max_content_len", "bytes", "1..=the content that fits a datagram (1162 at 1400 bytes)", "Largest feed message content; every node of a network must use the same value."),
    ("tree.max_feeds", "feeds", "1..=1000000", "Feeds followed at once, the node's own included."),
    ("tree.max_peers", "peers", ">= 1", "Tree peers connected at once."),
    ("tree.peer_budget_bytes", "bytes per notes_interval", ">= the envelope (max_datagram - 36)", "Backpressure: feed message bytes sent to one peer per round."),
    ("tree.fetch_limit", "messages", ">= 1", "Messages asked for by one store fetch."),
    ("tree.max_pending_fetches", "fetches", ">= 1", "Store fetches outstanding at once."),
    ("tree.fetch_timeout", "ms", "> 0", "A fetch not answered within this is forgotten."),
    ("tree.recent_capacity", "messages", ">= 1", "Recently appended messages kept to push without a store read."),
    ("tree.max_buffered", "messages", ">= 0 (0 disables the buffer)", "Received messages ahead of a gap kept until it is filled."),
    ("tree.max_unappended", "messages", ">= 1", "Validated messages handed to the store and not yet appended."),
    ("tree.output_queue_capacity", "outputs", ">= 64", "Transmits, events and store requests queued by the core."),
    // ReconcileConfig.
    ("state.gossip_interval", "ms", "> 0", "Period of the Scuttlebutt gossip round. Source: gossipmonger GOSSIP_INTERVAL."),
    ("state.minimum_live_peers", "peers", ">= 0", "Below this many live peers each round also gossips with a seed. Source: gossipmonger MINIMUM_LIVE_PEERS."),
    ("state.max_nodes", "nodes", ">= 1", "Nodes whose state is kept, this one included."),
    ("state.max_state_bytes", "bytes", ">= one entry of the longest key and largest value", "Bytes of other nodes' state held (key + value + 128 per entry); an entry beyond it is refused, counted and asked for again later."),
    ("state.max_keys_per_owner", "keys", ">= 1", "Keys per owner, tombstones included."),
    ("state.max_key_len", "bytes", "1..=envelope - 33", "Longest key (UTF-8)."),
    ("state.max_value_len", "bytes", "a delta of one entry must fit a datagram (1050 with the defaults)", "Largest value."),
    ("state.tombstone_grace", "ms", "> 0", "How long a tombstone is kept before it is collected."),
    ("state.dead_node_grace", "ms", "> 0", "How long the state of a dead node is kept after its heartbeat last advanced."),
    ("state.delta_order", "name", "\"depth\" or \"breadth\"", "Order of deltas in a datagram: scuttle-depth or scuttle-breadth. Source: van Renesse et al. 2008, section 3.2."),
    ("state.rumor_share", "percent", "0..=90 (0 turns rumours off)", "Share of a digest that may list recently changed nodes before the page."),
    ("state.rumor_counter", "exchanges", ">= 1", "Exchanges after which a rumour stops being advertised. Source: Demers et al. rumour mongering with counter."),
    ("state.reply_digest_share", "percent", "1..=90", "Most of a reply's datagram its digest part may take."),
    ("state.exchange_timeout", "ms", "> 0", "Wait for the reply to a digest."),
    ("state.max_outstanding_exchanges", "exchanges", ">= 1", "Exchanges awaiting a reply."),
    ("state.output_queue_capacity", "outputs", ">= 64", "Transmits plus events queued by the core."),
    // FlowConfig.
    ("state.flow.initial_rate", "updates/s", "min_rate..=max_rate", "Rate a node starts with (AIMD, van Renesse et al. 2008 section 4)."),
    ("state.flow.min_rate", "updates/s", ">= 1", "Floor of the rate: no node is throttled below it."),
    ("state.flow.max_rate", "updates/s", "min_rate..=1000000", "Ceiling of the rate."),
    ("state.flow.increase_step", "updates/s", ">= 1", "Additive increase after increase_after messages in a row carried everything."),
    ("state.flow.decrease_percent", "percent", "1..=99", "Multiplicative decrease: share of the rate kept. Source: TCP's halving."),
    ("state.flow.trend_window", "messages", "1..=64", "Overflowing messages in a row (non-decreasing overflow) that trigger a decrease."),
    ("state.flow.increase_after", "messages", "1..=64", "Messages in a row that carried everything before an increase."),
    ("state.flow.burst", "updates", ">= 1", "Token bucket capacity: updates admitted at once after a quiet period."),
    // FailureConfig.
    ("failure.phi_threshold", "phi", "finite, > 0", "phi above which a peer is declared dead. Source: gossipmonger DEAD_PEER_PHI, Cassandra phi_convict_threshold."),
    ("failure.window", "samples", "1..=10000", "Inter-arrival samples kept per peer. Source: gossipmonger MAX_INTERVALS."),
    ("failure.first_interval", "ms", "> 0", "The sample a new peer's window starts with. Source: gossipmonger intervals: [750]."),
    ("failure.min_mean", "ms", "> 0", "Floor of the mean inter-arrival time."),
    ("failure.max_interval", "ms", ">= first_interval and >= min_mean", "Longest inter-arrival sample recorded."),
    ("failure.acceptable_pause", "ms", ">= 2 x check_interval and <= phi_threshold x ln 10 x min_mean", "A local stall longer than this suspends convictions (pause guard)."),
    ("failure.check_interval", "ms", "> 0", "Period of the phi check."),
    ("failure.max_peers", "peers", ">= 1", "Peers tracked at once."),
    ("failure.dead_forget_after", "ms", "> 0", "A dead peer is forgotten after this long."),
    ("failure.event_queue_capacity", "events", ">= max_peers", "Verdicts queued by the core."),
    // CyclonConfig.
    ("cyclon.view_size", "peers", ">= shuffle_length", "Size of the partial view. Source: CYCLON paper (20)."),
    ("cyclon.shuffle_length", "peers", "1..=entries that fit a datagram", "Entries exchanged per shuffle. Source: CYCLON paper (8)."),
    ("cyclon.shuffle_interval", "ms", "> 0", "Period of the shuffle."),
    ("cyclon.shuffle_timeout", "ms", "> 0", "Wait for a shuffle reply."),
    ("cyclon.max_pending", "shuffles", ">= 1", "Shuffles awaiting a reply."),
    ("cyclon.max_seeds", "peers", ">= 0", "Seeds remembered to rejoin through."),
    ("cyclon.dead_retention", "ms", "> 0", "How long a dead peer is kept out of the view."),
    ("cyclon.max_dead", "peers", ">= 0", "Dead peers remembered."),
    ("cyclon.output_queue_capacity", "outputs", ">= most outputs of one input", "Transmits plus events queued by the core."),
    // BlobConfig.
    ("blobs.max_blob_size", "bytes", "1..=1073741824", "Largest blob this node fetches; a holder announcing a larger one is ignored."),
    ("blobs.max_fetches", "fetches", ">= 1", "Fetches running at once; more are refused."),
    ("blobs.initial_window", "pieces", "min_window..=max_window", "Window a new source starts with. Source: TCP Reno (Jacobson 1988)."),
    ("blobs.min_window", "pieces", ">= 1", "Smallest window per source."),
    ("blobs.max_window", "pieces", "min_window..=max_held_pieces", "Requested pieces outstanding per source at most."),
    ("blobs.max_held_pieces", "pieces", ">= 1", "Pieces held at once across all fetches (requested, or verified and not yet stored): the bound on unverified blob data in memory."),
    ("blobs.max_sources", "peers", ">= 1", "Holders used at once per fetch."),
    ("blobs.want_interval", "ms", "> 0", "Period of the want rounds while a fetch lacks sources. Source: gossipmonger GOSSIP_INTERVAL."),
    ("blobs.want_fanout", "peers", ">= 1", "Peers asked per want round."),
    ("blobs.initial_rto", "ms", "min_rto..=max_rto", "Retransmission timeout before the first round-trip sample. Source: RFC 6298 (smaller floor for datagram LANs)."),
    ("blobs.min_rto", "ms", "> 0", "Floor of the retransmission timeout."),
    ("blobs.max_rto", "ms", ">= initial_rto", "Ceiling of the retransmission timeout."),
    ("blobs.max_source_timeouts", "windows", ">= 1", "Windows timed out in a row without a verified piece before a source is dropped."),
    ("blobs.max_corrupt", "pieces", ">= 1", "Corrupt pieces after which a peer is no longer used as a source for any blob."),
    ("blobs.stall_timeout", "ms", ">= want_interval", "A fetch that verifies no piece for this long fails."),
    ("blobs.serve_queue_per_peer", "pieces", ">= 1", "Pieces of one peer's requests served at once; more are dropped and counted."),
    ("blobs.max_pending_reads", "reads", ">= 1", "Store reads outstanding at once for serving; more are dropped and counted."),
    ("blobs.max_peers", "peers", ">= 1", "Peers whose address the blob core keeps; messages from further unknown peers are dropped and counted."),
    ("blobs.progress_interval", "ms", ">= 0", "Least time between two progress events of one fetch."),
    ("blobs.output_queue_capacity", "outputs", ">= 64", "Transmits, events and store requests queued before new ones are dropped and counted."),
];

/// Example values printed (commented out) for options that are absent by default.
const OPTION_EXAMPLES: &[(&str, &str)] = &[
    ("passphrase", "\"correct horse battery staple\""),
    ("key_file", "\"cluster.key\""),
    ("store", "\"node.redb\""),
    ("identity_file", "\"node.identity\""),
    ("http", "\"127.0.0.1:9100\""),
    ("seed_rng", "42"),
    ("fault.delay", "[20, 80]"),
    ("blob_store_limit", "1073741824"),
];

/// Looks `path` (dotted) up in `table`.
fn lookup<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut keys = path.split('.');
    let mut value = table.get(keys.next()?)?;
    for key in keys {
        value = value.as_table()?.get(key)?;
    }
    Some(value)
}

/// The complete default configuration file, every field with a comment giving its unit,
/// default, range and source (`gossip-node --print-default-config`).
pub fn default_config_text() -> String {
    let defaults = FileConfig::default().to_table();
    let mut out = String::from(
        "# gossip-node configuration (gossip-node --config FILE).\n\
         # Every field is optional: a missing one takes the default shown here. Unknown fields\n\
         # are refused. Durations are integer milliseconds (unit: ms), sizes are bytes.\n\
         # Command-line flags override this file; --set PATH=VALUE overrides any field,\n\
         # for example --set dissemination.fanout=4.\n",
    );
    let mut section = String::new();
    for (path, unit, range, doc) in FIELD_DOCS {
        let (table, key) = path.rsplit_once('.').unwrap_or(("", path));
        if table != section {
            out.push_str(&format!("\n[{table}]\n"));
            section = table.to_owned();
        }
        out.push('\n');
        out.push_str(&format!("# {doc}\n"));
        match lookup(&defaults, path) {
            Some(value) => {
                out.push_str(&format!(
                    "# Unit: {unit}. Default: {value}. Range: {range}.\n{key} = {value}\n"
                ));
            }
            None => {
                let example = OPTION_EXAMPLES
                    .iter()
                    .find(|(p, _)| p == path)
                    .map_or("\"\"", |(_, e)| e);
                out.push_str(&format!(
                    "# Unit: {unit}. Default: not set. Range: {range}.\n# {key} = {example}\n"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Dotted paths of every leaf value in `table`.
    fn leaves(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
        for (key, value) in table {
            let path = format!("{prefix}{key}");
            match value {
                toml::Value::Table(t) => leaves(t, &format!("{path}."), out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }

    /// A configuration with every option set, so that every field serializes.
    fn full() -> FileConfig {
        let mut config = FileConfig::default();
        config.options.passphrase = Some("p".into());
        config.options.key_file = Some("k".into());
        config.options.store = Some("s".into());
        config.options.identity_file = Some("i".into());
        config.options.seed_rng = Some(1);
        config.options.http = Some(SocketAddr::from(([127, 0, 0, 1], 9100)));
        config.node.fault.delay = Some(gossip_actors::DelayRange::from_millis(20, 80));
        config.node.blob_store_limit = Some(1 << 30);
        config
    }

    #[test]
    fn printed_default_file_parses_back_to_exactly_the_defaults() {
        let text = default_config_text();
        let parsed = FileConfig::from_toml(&text, "default").unwrap();
        assert_eq!(parsed, FileConfig::default());
        parsed.validate().unwrap();
    }

    #[test]
    fn every_field_is_documented_and_printed() {
        let mut fields = BTreeSet::new();
        leaves(&full().to_table(), "", &mut fields);
        let documented: BTreeSet<String> =
            FIELD_DOCS.iter().map(|(p, ..)| (*p).to_owned()).collect();
        assert_eq!(
            documented.len(),
            FIELD_DOCS.len(),
            "a field is documented twice"
        );
        assert_eq!(fields, documented, "FIELD_DOCS and the structs disagree");
        let text = default_config_text();
        for (path, unit, range, _) in FIELD_DOCS {
            let key = path.rsplit(['.']).next().unwrap_or(path);
            assert!(
                text.contains(&format!("\n{key} = ")) || text.contains(&format!("\n# {key} = ")),
                "{path} not printed"
            );
            assert!(
                text.contains(&format!("Unit: {unit}. Default: ")) && text.contains(range),
                "{path}"
            );
        }
        // Optional fields are printed commented out, with an example value that parses.
        for (path, example) in OPTION_EXAMPLES {
            let (table, key) = path.rsplit_once('.').unwrap_or(("", path));
            assert!(text.contains(&format!("\n# {key} = {example}\n")), "{path}");
            let line = format!("{key} = {example}");
            let toml = if table.is_empty() {
                line
            } else {
                format!("[{table}]\n{line}")
            };
            FileConfig::from_toml(&toml, "example").unwrap();
        }
    }

    #[test]
    fn node_option_keys_are_the_options_fields() {
        let table = toml::Table::try_from(&full().options).unwrap();
        let keys: BTreeSet<&str> = table.keys().map(String::as_str).collect();
        let listed: BTreeSet<&str> = NODE_OPTION_KEYS.iter().copied().collect();
        assert_eq!(keys, listed);
        // No option shares a name with a NodeConfig field.
        let node = toml::Table::try_from(NodeConfig::default()).unwrap();
        assert!(node.keys().all(|k| !listed.contains(k.as_str())));
    }

    #[test]
    fn a_file_sets_fields_and_keeps_the_rest_at_default() {
        let text = r#"
            bind = "127.0.0.1:7000"
            seeds = ["127.0.0.1:7001"]
            passphrase = "secret"
            discovery = "cyclon"
            max_datagram = 2000
            [dissemination]
            fanout = 4
            ack_timeout = 250
            [state]
            delta_order = "breadth"
            [state.flow]
            burst = 20
            [cyclon]
            view_size = 10
        "#;
        let config = FileConfig::from_toml(text, "test").unwrap();
        config.validate().unwrap();
        assert_eq!(config.options.bind, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(config.options.seeds.len(), 1);
        assert_eq!(config.options.passphrase.as_deref(), Some("secret"));
        assert_eq!(config.options.discovery, DiscoveryKind::Cyclon);
        assert_eq!(config.options.cyclon.view_size, 10);
        assert_eq!(config.node.max_datagram, 2000);
        assert_eq!(config.node.dissemination.fanout, 4);
        assert_eq!(
            config.node.dissemination.ack_timeout,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(config.node.dissemination.acks_needed, 2);
        assert_eq!(config.node.state.flow.burst, 20);
        assert_eq!(config.cyclon_config().max_envelope_len, 2000 - 36);
    }

    fn field_error(text: &str) -> (Option<String>, String) {
        let err = FileConfig::from_toml(text, "bad.toml")
            .and_then(|c| c.validate().map(|()| c))
            .unwrap_err();
        (err.field(), err.to_string())
    }

    #[test]
    fn unknown_fields_are_refused_with_their_full_path() {
        let (field, message) = field_error("[dissemination]\nfanot = 3\n");
        assert_eq!(field.as_deref(), Some("dissemination.fanot"));
        assert!(
            message.starts_with("bad.toml: dissemination.fanot: unknown field `fanot`"),
            "{message}"
        );
        let (field, _) = field_error("[state.flow]\nburts = 3\n");
        assert_eq!(field.as_deref(), Some("state.flow.burts"));
        let (field, _) = field_error("colour = \"blue\"\n");
        assert_eq!(field.as_deref(), Some("colour"));
        let (field, _) = field_error("[cyclon]\nview = 3\n");
        assert_eq!(field.as_deref(), Some("cyclon.view"));
        let (field, _) = field_error("[protocols]\ngossip = true\n");
        assert_eq!(field.as_deref(), Some("protocols.gossip"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let (field, message) = field_error("[dissemination]\nfanout = -1\n");
        assert_eq!(field.as_deref(), Some("dissemination.fanout"), "{message}");
        let (field, _) = field_error("[tree]\nrecent_capacity = 0\n");
        assert_eq!(field.as_deref(), Some("tree.recent_capacity"));
        let (field, _) = field_error("bind = \"nowhere\"\n");
        assert_eq!(field.as_deref(), Some("bind"));
        let (field, _) = field_error("[state]\ndelta_order = \"sideways\"\n");
        assert_eq!(field.as_deref(), Some("state.delta_order"));
        let (field, _) = field_error("discovery = \"dht\"\n");
        assert_eq!(field.as_deref(), Some("discovery"));
    }

    /// One invalid value per config struct: the message names the full path and the range.
    #[test]
    fn invalid_values_name_the_field_and_range() {
        let cases = [
            (
                "[dissemination]\nfanout = 0\nacks_needed = 0\n",
                "dissemination.fanout",
                "invalid configuration: dissemination.fanout is 0 but must be at least 1",
            ),
            (
                "[tree]\nmax_feeds = 0\n",
                "tree.max_feeds",
                "invalid configuration: tree.max_feeds is 0 but must be in 1..=1000000",
            ),
            (
                "[state]\nreply_digest_share = 95\n",
                "state.reply_digest_share",
                "invalid configuration: state.reply_digest_share is 95 but must be in 1..=90",
            ),
            (
                "[state.flow]\ntrend_window = 65\n",
                "state.flow.trend_window",
                "invalid configuration: state.flow.trend_window is 65 but must be in 1..=64",
            ),
            (
                "[failure]\nwindow = 0\n",
                "failure.window",
                "invalid configuration: failure.window is 0 but must be in 1..=10000",
            ),
            (
                "discovery = \"cyclon\"\n[cyclon]\nshuffle_length = 0\n",
                "cyclon.shuffle_length",
                "invalid configuration: cyclon.shuffle_length is 0 but must be at least 1",
            ),
            (
                "static_capacity = 0\n",
                "static_capacity",
                "invalid configuration: static_capacity is 0 but must be at least 1",
            ),
            (
                "max_datagram = 70000\n",
                "max_datagram",
                "invalid configuration: max_datagram is 70000 but must be in 128..=65507",
            ),
            (
                "[fault]\nloss = 2.0\n",
                "fault.loss",
                "invalid configuration: fault.loss is 2 but must be in 0..=1",
            ),
        ];
        for (text, field, message) in cases {
            assert_eq!(
                field_error(text),
                (Some(field.to_owned()), message.to_owned()),
                "{text}"
            );
        }
        // The cyclon table is only checked when CYCLON runs.
        FileConfig::from_toml("[cyclon]\nshuffle_length = 0\n", "t")
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn set_overrides_any_field() {
        let dir = std::env::temp_dir().join(format!("gossip-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(&path, "[dissemination]\nfanout = 5\n").unwrap();
        let sets = [
            "dissemination.acks_needed=3".to_owned(),
            "state.flow.burst = 7".to_owned(),
            "cluster=blue".to_owned(),
            "seeds=[\"127.0.0.1:9\"]".to_owned(),
        ];
        let config = FileConfig::load(Some(&path), &sets).unwrap();
        assert_eq!(config.node.dissemination.fanout, 5);
        assert_eq!(config.node.dissemination.acks_needed, 3);
        assert_eq!(config.node.state.flow.burst, 7);
        assert_eq!(config.options.cluster, "blue");
        assert_eq!(config.options.seeds, vec!["127.0.0.1:9".parse().unwrap()]);
        let err = FileConfig::load(Some(&path), &["dissemination.fanot=1".to_owned()]).unwrap_err();
        assert_eq!(err.field().as_deref(), Some("dissemination.fanot"));
        assert!(FileConfig::load(Some(&path), &["fanout".to_owned()]).is_err());
        assert!(matches!(
            FileConfig::load(Some(&dir.join("missing.toml")), &[]),
            Err(ConfigFileError::Read { .. })
        ));
        std::fs::write(&path, "[dissemination\n").unwrap();
        assert!(matches!(
            FileConfig::load(Some(&path), &[]),
            Err(ConfigFileError::Syntax { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
