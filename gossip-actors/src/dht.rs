//! Discovery through a BitTorrent mainline DHT (BEP 5), behind the cargo feature `dht`.
//!
//! # Model
//!
//! Every node of a cluster runs a small DHT node of its own (the [`mainline`] crate, which
//! owns one UDP socket and one thread) next to its gossip socket. The cluster is one
//! *info-hash* in the DHT, derived from the cluster name ([`cluster_info_hash`]):
//!
//! ```text
//!   gossip node A (udp 127.0.0.1:7000)            gossip node B (udp 127.0.0.1:7001)
//!     DhtDiscovery ── announce_peer(h, 7000) ──┐   ┌── get_peers(h) ── DhtDiscovery
//!     (DHT node, own udp port)                 v   v        (DHT node, own udp port)
//!                                      DHT nodes closest to h
//!                                      store {127.0.0.1:7000, ...}
//! ```
//!
//! - **announce**: the node announces the *gossip* port (from
//!   [`DiscoveryContext::local_addr`]), never its DHT port, with an explicit port
//!   (`announce_peer(h, Some(port))`); the storing DHT nodes pair it with the IP the
//!   announce came from. Repeated every [`DhtConfig::announce_interval`]; a failed announce
//!   is retried sooner, backing off from [`DhtConfig::initial_lookup_interval`].
//! - **lookup**: `get_peers(h)` answers the gossip addresses announced under `h`. They enter
//!   a bounded [`PeerTable`] (never this node's own address). Lookups back off from
//!   [`DhtConfig::initial_lookup_interval`], doubling up to [`DhtConfig::lookup_interval`];
//!   a lookup that finds a new peer starts the backoff again.
//! - **ageing**: a peer neither returned by a lookup nor heard from (an authenticated
//!   packet, [`PeerStatus::Seen`]) for [`DhtConfig::peer_ttl`] is dropped, but only after a
//!   lookup that some DHT node answered with peers, so a DHT outage never empties the table.
//! - **selection** is uniform over the table minus the peers the failure detector declared
//!   dead ([`Liveness`]), as in [`StaticDiscovery`](crate::StaticDiscovery).
//!
//! DHT calls never run on the actix event loop: each lookup or announce is a tokio task
//! (mainline's `async` API, whose futures wait on a channel from the DHT thread), bounded by
//! [`DhtConfig::query_timeout`], at most one of each kind in flight, aborted when the actor
//! stops. A panic inside mainline ends only that task and is counted as a failure.
//!
//! # Bootstrap
//!
//! The DHT is joined only through the addresses given to [`DhtDiscovery::new`]; mainline's
//! public default bootstrap nodes are never used. The mainline configuration is built with
//! `bootstrap: Some(list)`, and mainline falls back to its defaults only for `None`; an empty
//! list (which mainline would accept, as "first node of a new network") is refused with
//! [`DhtError::NoBootstrap`], so a node never starts a DHT that knows nobody. Addresses are
//! [`SocketAddr`]s, never host names, so no name is resolved either.
//!
//! The DHT node binds the gossip node's IPv4 address (or [`DhtConfig::bind_ip`]) on
//! [`DhtConfig::port`] (0: any free port), so a node bound to 127.0.0.1 keeps its DHT
//! traffic on 127.0.0.1 too. mainline speaks IPv4 only: an IPv6 gossip address or bootstrap
//! address is refused.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gossip_actors::{DhtConfig, DhtDiscovery, Node};
//! use gossip_actors::crypto::Keyring;
//!
//! // The DHT nodes of your own network (here, a local testnet).
//! let bootstrap = vec!["127.0.0.1:6881".parse()?, "127.0.0.1:6882".parse()?];
//! let discovery = DhtDiscovery::new("cluster-a", bootstrap).with_config(DhtConfig::default());
//! let stats = discovery.stats();
//! let node = Node::builder()
//!     .bind("127.0.0.1:0".parse()?)
//!     .keyring(Keyring::from_passphrase("correct horse", "cluster-a")?)
//!     .discovery(discovery)
//!     .start()
//!     .await?;
//! println!("{:?}, {:?}", node.known_peers().await?, *stats.borrow());
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::StreamExt;
use gossip_core::NodeId;
use gossip_core::peers::{InsertOutcome, PeerTable};
use mainline::async_dht::AsyncDht;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinError};

/// The [`mainline`] crate this module is built on (version 8), re-exported so that tests and
/// examples can run a local [`mainline::Testnet`] without depending on it themselves.
pub use mainline;

use crate::discovery::{
    Discovery, DiscoveryContext, StartedDiscovery, apply_liveness, known_peers,
};
use crate::failure::Liveness;
use crate::messages::Shutdown;
use crate::messages::{DiscoveryRecipients, KnownPeers, PeerStatus, SelectPeers};
use crate::shell::now;

/// Length of a DHT info-hash, in bytes (a SHA-1-sized id, BEP 5).
pub const INFO_HASH_LEN: usize = 20;

/// Domain-separation prefix of [`cluster_info_hash`].
pub const INFO_HASH_DOMAIN: &[u8] = b"gossip/v1/dht:";

/// Most addresses taken from one response batch of a lookup is bounded by mainline (a DHT
/// node answers at most a few dozen); this bounds what one whole lookup may collect, as a
/// multiple of the table's capacity.
const LOOKUP_COLLECT_FACTOR: usize = 2;

/// Addresses remembered as this node's own (seen in a packet signed by this node's id), at
/// most.
const MAX_SELF_ALIASES: usize = 16;

/// The info-hash under which the nodes of `cluster` announce themselves: the first 20 bytes
/// of SHA-256(`b"gossip/v1/dht:"` ‖ the UTF-8 bytes of `cluster`).
///
/// ```
/// let h = gossip_actors::dht::cluster_info_hash("cluster-a");
/// assert_eq!(h.len(), 20);
/// assert_ne!(h, gossip_actors::dht::cluster_info_hash("cluster-b"));
/// ```
pub fn cluster_info_hash(cluster: &str) -> [u8; INFO_HASH_LEN] {
    let mut input = Vec::with_capacity(INFO_HASH_DOMAIN.len() + cluster.len());
    input.extend_from_slice(INFO_HASH_DOMAIN);
    input.extend_from_slice(cluster.as_bytes());
    let digest = gossip_crypto::sha256(&input);
    let mut hash = [0u8; INFO_HASH_LEN];
    hash.copy_from_slice(&digest[..INFO_HASH_LEN]);
    hash
}

/// Timing and bounds of [`DhtDiscovery`]. Checked by [`DhtConfig::validate`] when the node
/// starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtConfig {
    /// Time between two announces of this node: 60 s. BitTorrent clients re-announce every
    /// 15 to 30 minutes; a gossip cluster wants a newcomer findable within a minute, and an
    /// announce costs one DHT query. Must be > 0.
    pub announce_interval: Duration,
    /// Longest time between two lookups once the table is steady: 30 s. Must be
    /// ≥ `initial_lookup_interval`.
    pub lookup_interval: Duration,
    /// First delay of the lookup backoff, and of the retry of a failed announce: 1 s. The
    /// delay doubles after each lookup that finds nothing new, up to `lookup_interval`, and
    /// starts again here when a lookup finds a new peer. Must be > 0.
    pub initial_lookup_interval: Duration,
    /// A peer neither returned by a lookup nor heard from for this long is dropped: 180 s
    /// (six steady lookups; a DHT node returns a random subset of at most 10 peers, so one
    /// lookup need not return every peer). Must be > `lookup_interval`.
    pub peer_ttl: Duration,
    /// Longest wait for one lookup or announce, after which what was collected is used: 30 s.
    /// Must be ≥ `request_timeout`.
    pub query_timeout: Duration,
    /// Timeout of one DHT request (mainline's `request_timeout`): 2 s, mainline's default. A
    /// query ends this long after its last unanswered request. Must be > 0.
    pub request_timeout: Duration,
    /// Most peers held in the table: 1,024. New peers beyond it are refused (counted in
    /// [`DhtStats::refused`]), never evicted. Must be ≥ 1.
    pub capacity: usize,
    /// IPv4 address the DHT node binds: `None` (the default) binds the gossip node's own IP,
    /// so a node on 127.0.0.1 keeps its DHT traffic on 127.0.0.1.
    pub bind_ip: Option<Ipv4Addr>,
    /// UDP port of the DHT node: 0 (the default) picks a free one.
    pub port: u16,
    /// Start the DHT node in server mode (answer other DHT nodes and store announces) rather
    /// than mainline's adaptive mode: `false`. Turn it on only for a node reachable from its
    /// whole network that lives long; bootstrap nodes are usually the servers.
    pub server_mode: bool,
    /// Also add every node whose authenticated packet arrives, as
    /// [`StaticDiscovery`](crate::StaticDiscovery) does: `true`. A late joiner is then known
    /// to the nodes it talks to before their next lookup. With `false` the table holds only
    /// what the DHT (or [`PeerStatus::Add`]) supplied.
    pub learn_from_traffic: bool,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            announce_interval: Duration::from_secs(60),
            lookup_interval: Duration::from_secs(30),
            initial_lookup_interval: Duration::from_secs(1),
            peer_ttl: Duration::from_secs(180),
            query_timeout: Duration::from_secs(30),
            request_timeout: mainline::DEFAULT_REQUEST_TIMEOUT,
            capacity: 1_024,
            bind_ip: None,
            port: 0,
            server_mode: false,
            learn_from_traffic: true,
        }
    }
}

impl DhtConfig {
    /// Quick timing for a DHT on one machine (tests, demonstrations): announce every 5 s,
    /// lookups from 200 ms backing off to 2 s, peers kept 30 s, requests time out after
    /// 500 ms and queries after 5 s.
    pub fn local() -> Self {
        DhtConfig {
            announce_interval: Duration::from_secs(5),
            lookup_interval: Duration::from_secs(2),
            initial_lookup_interval: Duration::from_millis(200),
            peer_ttl: Duration::from_secs(30),
            query_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_millis(500),
            ..DhtConfig::default()
        }
    }

    /// Checks every bound stated on the fields.
    ///
    /// # Errors
    /// [`DhtError::Config`] naming the first field out of bounds.
    pub fn validate(&self) -> Result<(), DhtError> {
        let check = |ok: bool, what: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(DhtError::Config(what))
            }
        };
        check(
            !self.announce_interval.is_zero(),
            "announce_interval must be > 0",
        )?;
        check(
            !self.initial_lookup_interval.is_zero(),
            "initial_lookup_interval must be > 0",
        )?;
        check(
            self.lookup_interval >= self.initial_lookup_interval,
            "lookup_interval must be >= initial_lookup_interval",
        )?;
        check(
            self.peer_ttl > self.lookup_interval,
            "peer_ttl must be > lookup_interval",
        )?;
        check(
            !self.request_timeout.is_zero(),
            "request_timeout must be > 0",
        )?;
        check(
            self.query_timeout >= self.request_timeout,
            "query_timeout must be >= request_timeout",
        )?;
        check(self.capacity >= 1, "capacity must be >= 1")
    }
}

/// Why a [`DhtDiscovery`] refused to start. The node then fails to start
/// ([`StartError::Discovery`](crate::StartError::Discovery)); nothing is left running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DhtError {
    /// The bootstrap list is empty. The public bootstrap nodes are never used in its place.
    #[error(
        "DHT discovery needs at least one bootstrap address (public bootstrap nodes are never used)"
    )]
    NoBootstrap,
    /// A bootstrap address is IPv6 (mainline is IPv4 only), unspecified, or has port 0.
    #[error("bootstrap address {0} is not a usable IPv4 address")]
    InvalidBootstrap(SocketAddr),
    /// The gossip node's address is IPv6 and no [`DhtConfig::bind_ip`] was given: peers could
    /// not reach the gossip port at the IPv4 address the DHT would announce.
    #[error("the node's address {0} is IPv6; the mainline DHT announces IPv4 addresses only")]
    Ipv6Node(SocketAddr),
    /// A [`DhtConfig`] value is out of its bounds.
    #[error("invalid DHT configuration: {0}")]
    Config(&'static str),
    /// The DHT node's UDP socket could not be bound (or its thread not started).
    #[error("cannot start the DHT node on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddrV4,
        /// The OS error.
        source: std::io::Error,
    },
    /// mainline panicked while starting its DHT node.
    #[error("the DHT node panicked while starting on {0}")]
    Panicked(SocketAddrV4),
}

/// Counters of a [`DhtDiscovery`], published through [`DhtDiscovery::stats`]. Every count is
/// a running total since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// The DHT node's own UDP address, once it answered (not the gossip address).
    pub dht_addr: Option<SocketAddrV4>,
    /// The cluster's info-hash ([`cluster_info_hash`]).
    pub info_hash: [u8; INFO_HASH_LEN],
    /// Lookups finished (including empty and timed-out ones).
    pub lookups: u64,
    /// Lookups in which no DHT node answered with peers.
    pub lookups_empty: u64,
    /// Lookups that hit [`DhtConfig::query_timeout`] (what they had collected was used).
    pub lookups_timed_out: u64,
    /// Announces the DHT confirmed stored.
    pub announces: u64,
    /// Announces that failed (no DHT node reached, refused, timed out, or mainline failed).
    pub announce_failures: u64,
    /// Peers added to the table from lookups.
    pub peers_found: u64,
    /// Peers dropped after [`DhtConfig::peer_ttl`] without news.
    pub peers_expired: u64,
    /// New peers refused because the table was full.
    pub refused: u64,
    /// Addresses from the DHT ignored: this node's own, port 0, unspecified, multicast or
    /// broadcast.
    pub ignored: u64,
    /// Peers in the table now.
    pub peers: usize,
}

/// Discovery through a BitTorrent mainline DHT: announces this node under the cluster's
/// info-hash and fills a bounded table from `get_peers`. See the [module docs](self) for the
/// model, the timing and the bootstrap guarantee.
pub struct DhtDiscovery {
    cluster: String,
    info_hash: [u8; INFO_HASH_LEN],
    bootstrap: Vec<SocketAddr>,
    config: DhtConfig,
    stats: DhtStats,
    stats_tx: watch::Sender<DhtStats>,
    // Set by `start`.
    dht: Option<AsyncDht>,
    node_id: Option<NodeId>,
    local_addr: Option<SocketAddr>,
    table: PeerTable,
    /// When each peer in the table was last returned by a lookup or heard from.
    fresh: BTreeMap<SocketAddr, Instant>,
    self_aliases: BTreeSet<SocketAddr>,
    rng: StdRng,
    lookup: Backoff,
    announce: Backoff,
    lookup_task: Option<AbortHandle>,
    announce_task: Option<AbortHandle>,
    info_task: Option<AbortHandle>,
}

impl std::fmt::Debug for DhtDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhtDiscovery")
            .field("cluster", &self.cluster)
            .field("bootstrap", &self.bootstrap)
            .field("config", &self.config)
            .field("peers", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl DhtDiscovery {
    /// Discovery for the nodes of `cluster`, joining the DHT only through `bootstrap`, with
    /// the default [`DhtConfig`]. Nothing is checked or started here: an empty or IPv6
    /// bootstrap list is refused when the node starts ([`DhtError`]).
    pub fn new(cluster: &str, bootstrap: Vec<SocketAddr>) -> Self {
        let config = DhtConfig::default();
        let info_hash = cluster_info_hash(cluster);
        let stats = DhtStats {
            info_hash,
            ..DhtStats::default()
        };
        let (stats_tx, _) = watch::channel(stats);
        DhtDiscovery {
            cluster: cluster.to_owned(),
            info_hash,
            bootstrap,
            lookup: Backoff::new(config.initial_lookup_interval, config.lookup_interval),
            announce: Backoff::new(config.initial_lookup_interval, config.announce_interval),
            table: PeerTable::new(config.capacity),
            config,
            stats,
            stats_tx,
            dht: None,
            node_id: None,
            local_addr: None,
            fresh: BTreeMap::new(),
            self_aliases: BTreeSet::new(),
            rng: StdRng::seed_from_u64(0),
            lookup_task: None,
            announce_task: None,
            info_task: None,
        }
    }

    /// Replaces the configuration (checked when the node starts).
    pub fn with_config(mut self, config: DhtConfig) -> Self {
        self.lookup = Backoff::new(config.initial_lookup_interval, config.lookup_interval);
        self.announce = Backoff::new(config.initial_lookup_interval, config.announce_interval);
        self.table = PeerTable::new(config.capacity);
        self.config = config;
        self
    }

    /// The cluster's info-hash ([`cluster_info_hash`] of the cluster name).
    pub fn info_hash(&self) -> [u8; INFO_HASH_LEN] {
        self.info_hash
    }

    /// A receiver of the counters, updated after every lookup, announce and table change.
    /// Take it before handing the discovery to [`NodeBuilder::discovery`](crate::NodeBuilder::discovery);
    /// it keeps the last value after the node stops.
    pub fn stats(&self) -> watch::Receiver<DhtStats> {
        self.stats_tx.subscribe()
    }

    /// The mainline configuration for a node whose gossip address is `local_addr`: the
    /// bootstrap list exactly as given (never mainline's defaults), the bind address and
    /// port, timeouts and mode.
    ///
    /// # Errors
    /// [`DhtError::NoBootstrap`], [`DhtError::InvalidBootstrap`], [`DhtError::Ipv6Node`],
    /// [`DhtError::Config`].
    fn mainline_config(&self, local_addr: SocketAddr) -> Result<mainline::Config, DhtError> {
        self.config.validate()?;
        if self.bootstrap.is_empty() {
            return Err(DhtError::NoBootstrap);
        }
        let mut bootstrap = Vec::with_capacity(self.bootstrap.len());
        for addr in &self.bootstrap {
            match addr {
                SocketAddr::V4(v4) if !v4.ip().is_unspecified() && v4.port() != 0 => {
                    bootstrap.push(*v4)
                }
                other => return Err(DhtError::InvalidBootstrap(*other)),
            }
        }
        let bind_ip = match (self.config.bind_ip, local_addr) {
            (Some(ip), _) => ip,
            (None, SocketAddr::V4(v4)) => *v4.ip(),
            (None, v6 @ SocketAddr::V6(_)) => return Err(DhtError::Ipv6Node(v6)),
        };
        let mut config = mainline::Config {
            bootstrap: Some(bootstrap),
            request_timeout: self.config.request_timeout,
            server_mode: self.config.server_mode,
            bind_address: Some(bind_ip),
            ..mainline::Config::default()
        };
        if self.config.port != 0 {
            config.port = Some(self.config.port);
        }
        Ok(config)
    }

    fn publish(&mut self) {
        self.stats.peers = self.table.len();
        self.stats_tx.send_replace(self.stats);
    }

    /// Whether `addr` may enter the table: not this node, and a unicast address with a port.
    fn acceptable(&self, addr: &SocketAddr) -> bool {
        if Some(*addr) == self.local_addr || self.self_aliases.contains(addr) || addr.port() == 0 {
            return false;
        }
        match addr {
            SocketAddr::V4(v4) => {
                let ip = v4.ip();
                !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast())
            }
            SocketAddr::V6(v6) => !(v6.ip().is_unspecified() || v6.ip().is_multicast()),
        }
    }

    /// Adds or refreshes `addr`; `true` if it is new.
    fn add(&mut self, now: Instant, addr: SocketAddr, node_id: Option<NodeId>) -> bool {
        if !self.acceptable(&addr) {
            self.stats.ignored += 1;
            return false;
        }
        match self.table.insert(now, addr, node_id) {
            InsertOutcome::Added => {
                self.fresh.insert(addr, now);
                true
            }
            InsertOutcome::Updated => {
                self.fresh.insert(addr, now);
                false
            }
            InsertOutcome::Full => {
                self.stats.refused += 1;
                false
            }
        }
    }

    fn forget(&mut self, addr: &SocketAddr) {
        if self.table.remove(addr) {
            self.fresh.remove(addr);
        }
    }

    /// Drops peers without news for `peer_ttl`.
    fn expire(&mut self, now: Instant) {
        let ttl = self.config.peer_ttl;
        let stale: Vec<SocketAddr> = self
            .fresh
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) > ttl)
            .map(|(addr, _)| *addr)
            .collect();
        for addr in stale {
            self.forget(&addr);
            self.stats.peers_expired += 1;
        }
    }

    fn start_lookup(&mut self, ctx: &mut Context<Self>) {
        let Some(dht) = self.dht.clone() else { return };
        if self.lookup_task.is_some() {
            return;
        }
        let info_hash = mainline::Id::from(self.info_hash);
        let limit = self.config.capacity.saturating_mul(LOOKUP_COLLECT_FACTOR);
        let deadline = tokio::time::Instant::now() + self.config.query_timeout;
        let task = tokio::spawn(async move {
            let mut stream = dht.get_peers(info_hash);
            let mut found = BTreeSet::new();
            let mut outcome = LookupOutcome::default();
            loop {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(batch)) => {
                        outcome.responses += 1;
                        for addr in batch {
                            if found.len() >= limit {
                                break;
                            }
                            found.insert(addr);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        outcome.timed_out = true;
                        break;
                    }
                }
            }
            outcome.peers = found.into_iter().collect();
            outcome
        });
        self.lookup_task = Some(task.abort_handle());
        ctx.spawn(task.into_actor(self).map(|result, act, ctx| {
            act.lookup_task = None;
            act.finish_lookup(result, ctx);
        }));
    }

    fn finish_lookup(&mut self, result: Result<LookupOutcome, JoinError>, ctx: &mut Context<Self>) {
        let now = now();
        self.stats.lookups += 1;
        let outcome = result.unwrap_or_else(|err| {
            tracing::debug!(%err, "DHT lookup task failed");
            LookupOutcome {
                timed_out: true,
                ..LookupOutcome::default()
            }
        });
        if outcome.timed_out {
            self.stats.lookups_timed_out += 1;
        }
        let mut new = 0u64;
        for addr in outcome.peers {
            if self.add(now, SocketAddr::V4(addr), None) {
                new += 1;
            }
        }
        self.stats.peers_found += new;
        if outcome.responses == 0 {
            self.stats.lookups_empty += 1;
        } else {
            self.expire(now);
        }
        tracing::debug!(
            new,
            responses = outcome.responses,
            peers = self.table.len(),
            "DHT lookup done"
        );
        self.publish();
        let delay = if new > 0 {
            self.lookup.reset()
        } else {
            self.lookup.next()
        };
        ctx.run_later(delay, |act, ctx| act.start_lookup(ctx));
    }

    fn start_announce(&mut self, ctx: &mut Context<Self>) {
        let (Some(dht), Some(local_addr)) = (self.dht.clone(), self.local_addr) else {
            return;
        };
        if self.announce_task.is_some() {
            return;
        }
        let info_hash = mainline::Id::from(self.info_hash);
        let timeout = self.config.query_timeout;
        let port = local_addr.port();
        let task = tokio::spawn(async move {
            match tokio::time::timeout(timeout, dht.announce_peer(info_hash, Some(port))).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            }
        });
        self.announce_task = Some(task.abort_handle());
        ctx.spawn(task.into_actor(self).map(|result, act, ctx| {
            act.announce_task = None;
            let result = result.unwrap_or_else(|err| Err(err.to_string()));
            let delay = match result {
                Ok(()) => {
                    act.stats.announces += 1;
                    act.announce.reset();
                    act.config.announce_interval
                }
                Err(err) => {
                    tracing::debug!(%err, "DHT announce failed");
                    act.stats.announce_failures += 1;
                    act.announce.next_after_failure()
                }
            };
            act.publish();
            ctx.run_later(delay, |act, ctx| act.start_announce(ctx));
        }));
    }

    fn start_info(&mut self, ctx: &mut Context<Self>) {
        let Some(dht) = self.dht.clone() else { return };
        let timeout = self.config.query_timeout;
        let task = tokio::spawn(async move {
            tokio::time::timeout(timeout, dht.info())
                .await
                .ok()
                .map(|info| info.local_addr())
        });
        self.info_task = Some(task.abort_handle());
        ctx.spawn(task.into_actor(self).map(|result, act, _| {
            act.info_task = None;
            if let Ok(Some(addr)) = result {
                tracing::debug!(dht = %addr, "DHT node listening");
                act.stats.dht_addr = Some(addr);
                act.publish();
            }
        }));
    }
}

/// What one lookup collected.
#[derive(Debug, Default)]
struct LookupOutcome {
    /// Distinct addresses returned, in address order.
    peers: Vec<SocketAddrV4>,
    /// DHT nodes that answered with peers.
    responses: u64,
    /// The query hit `query_timeout` (or its task failed).
    timed_out: bool,
}

/// A delay that doubles from `initial` up to `max`.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// Starts again: returns `initial`, and the delay after it doubles.
    fn reset(&mut self) -> Duration {
        self.current = self.initial;
        self.next()
    }

    /// The current delay; the next one doubles, capped at `max`.
    fn next(&mut self) -> Duration {
        let delay = self.current.min(self.max);
        self.current = self.current.saturating_mul(2).min(self.max);
        delay
    }

    /// Same as [`next`](Self::next); named for the retry of a failed operation.
    fn next_after_failure(&mut self) -> Duration {
        self.next()
    }
}

impl Discovery for DhtDiscovery {
    fn start(mut self: Box<Self>, ctx: DiscoveryContext) -> Result<StartedDiscovery, String> {
        let config = self
            .mainline_config(ctx.local_addr)
            .map_err(|e| e.to_string())?;
        let bind = SocketAddrV4::new(
            config.bind_address.unwrap_or(Ipv4Addr::LOCALHOST),
            config.port.unwrap_or(0),
        );
        // Binds one UDP socket and spawns mainline's thread: no network round trip. mainline
        // panics (rather than erring) if its thread dies while starting; that is turned into
        // an error here.
        let dht =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mainline::Dht::new(config)))
                .map_err(|_| DhtError::Panicked(bind).to_string())?
                .map_err(|source| DhtError::Bind { addr: bind, source }.to_string())?;
        self.dht = Some(dht.as_async());
        self.node_id = Some(ctx.node_id);
        self.local_addr = Some(ctx.local_addr);
        self.rng = StdRng::seed_from_u64(ctx.rng_seed);
        let addr = Actor::start(*self);
        Ok(StartedDiscovery {
            recipients: DiscoveryRecipients::of(&addr),
            routes: Vec::new(),
        })
    }
}

impl Actor for DhtDiscovery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.publish();
        self.start_info(ctx);
        self.start_lookup(ctx);
        self.start_announce(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for task in [
            self.lookup_task.take(),
            self.announce_task.take(),
            self.info_task.take(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
        // Dropping the last handle ends mainline's thread (within its 50 ms read timeout).
        self.dht = None;
    }
}

impl Handler<SelectPeers> for DhtDiscovery {
    type Result = MessageResult<SelectPeers>;

    fn handle(&mut self, msg: SelectPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.table.select(&mut self.rng, msg.count, &msg.exclude))
    }
}

impl Handler<PeerStatus> for DhtDiscovery {
    type Result = ();

    fn handle(&mut self, msg: PeerStatus, _: &mut Context<Self>) {
        match msg {
            PeerStatus::Seen { addr, node_id, at } => {
                if Some(node_id) == self.node_id {
                    // This node's own packet, from an address the DHT listed: never select it.
                    self.forget(&addr);
                    if self.self_aliases.len() < MAX_SELF_ALIASES {
                        self.self_aliases.insert(addr);
                    }
                } else if self.table.contains(&addr) {
                    self.table.mark_seen(at, &addr, Some(node_id));
                    self.fresh.insert(addr, at);
                    return;
                } else if self.config.learn_from_traffic {
                    self.add(at, addr, Some(node_id));
                } else {
                    return;
                }
            }
            PeerStatus::Add { addr } => {
                self.add(now(), addr, None);
            }
            PeerStatus::Remove { addr } => self.forget(&addr),
        }
        self.publish();
    }
}

impl Handler<Liveness> for DhtDiscovery {
    type Result = ();

    fn handle(&mut self, msg: Liveness, _: &mut Context<Self>) {
        apply_liveness(&mut self.table, msg);
    }
}

impl Handler<KnownPeers> for DhtDiscovery {
    type Result = MessageResult<KnownPeers>;

    fn handle(&mut self, _: KnownPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(known_peers(&self.table))
    }
}

impl Handler<Shutdown> for DhtDiscovery {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:7000".parse().unwrap()
    }

    #[test]
    fn info_hash_is_truncated_domain_separated_sha256() {
        let digest = gossip_crypto::sha256(b"gossip/v1/dht:cluster-a");
        assert_eq!(cluster_info_hash("cluster-a")[..], digest[..20]);
        assert_ne!(
            cluster_info_hash("cluster-a"),
            cluster_info_hash("cluster-b")
        );
        assert_ne!(
            cluster_info_hash("")[..],
            gossip_crypto::sha256(b"")[..20],
            "the domain prefix is part of the hash"
        );
    }

    #[test]
    fn the_mainline_config_uses_exactly_the_given_bootstrap_list() {
        let list: Vec<SocketAddr> = vec![
            "127.0.0.1:6881".parse().unwrap(),
            "127.0.0.1:6882".parse().unwrap(),
        ];
        let config = DhtDiscovery::new("c", list)
            .mainline_config(local())
            .unwrap();
        let bootstrap = config
            .bootstrap
            .expect("an explicit list, never mainline's default");
        assert_eq!(
            bootstrap,
            vec![
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6881),
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6882)
            ]
        );
        for public in mainline::DEFAULT_BOOTSTRAP_NODES {
            assert!(!bootstrap.iter().any(|a| a.to_string() == public));
        }
        assert_eq!(
            config.bind_address,
            Some(Ipv4Addr::LOCALHOST),
            "binds the gossip node's IP"
        );
        assert_eq!(config.port, None, "any free port");
    }

    #[test]
    fn an_empty_or_unusable_bootstrap_list_is_refused() {
        assert!(matches!(
            DhtDiscovery::new("c", vec![]).mainline_config(local()),
            Err(DhtError::NoBootstrap)
        ));
        for bad in ["[::1]:6881", "0.0.0.0:6881", "127.0.0.1:0"] {
            let addr: SocketAddr = bad.parse().unwrap();
            assert!(
                matches!(
                    DhtDiscovery::new("c", vec![addr]).mainline_config(local()),
                    Err(DhtError::InvalidBootstrap(a)) if a == addr
                ),
                "{bad}"
            );
        }
        let v6: SocketAddr = "[::1]:7000".parse().unwrap();
        assert!(matches!(
            DhtDiscovery::new("c", vec!["127.0.0.1:6881".parse().unwrap()]).mainline_config(v6),
            Err(DhtError::Ipv6Node(_))
        ));
    }

    #[test]
    fn config_bounds_are_checked() {
        assert!(DhtConfig::default().validate().is_ok());
        assert!(DhtConfig::local().validate().is_ok());
        let bad = [
            DhtConfig {
                announce_interval: Duration::ZERO,
                ..DhtConfig::default()
            },
            DhtConfig {
                initial_lookup_interval: Duration::ZERO,
                ..DhtConfig::default()
            },
            DhtConfig {
                lookup_interval: Duration::from_millis(10),
                ..DhtConfig::default()
            },
            DhtConfig {
                peer_ttl: Duration::from_secs(30),
                ..DhtConfig::default()
            },
            DhtConfig {
                query_timeout: Duration::from_millis(1),
                ..DhtConfig::default()
            },
            DhtConfig {
                request_timeout: Duration::ZERO,
                ..DhtConfig::default()
            },
            DhtConfig {
                capacity: 0,
                ..DhtConfig::default()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(DhtError::Config(_))),
                "{config:?}"
            );
            let discovery = DhtDiscovery::new("c", vec!["127.0.0.1:6881".parse().unwrap()]);
            assert!(
                discovery
                    .with_config(config)
                    .mainline_config(local())
                    .is_err()
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..5).map(|_| b.next().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350, 350]);
        assert_eq!(b.reset().as_millis(), 100);
        assert_eq!(b.next().as_millis(), 200);
    }

    #[test]
    fn own_and_malformed_addresses_never_enter_the_table() {
        let mut d = DhtDiscovery::new("c", vec![]);
        d.local_addr = Some(local());
        let now = Instant::now();
        for addr in [
            "127.0.0.1:7000",
            "0.0.0.0:7001",
            "127.0.0.1:0",
            "224.0.0.1:7001",
            "255.255.255.255:7001",
        ] {
            assert!(!d.add(now, addr.parse().unwrap(), None), "{addr}");
        }
        assert!(d.add(now, "127.0.0.1:7001".parse().unwrap(), None));
        assert!(
            !d.add(now, "127.0.0.1:7001".parse().unwrap(), None),
            "known already"
        );
        assert_eq!(d.table.len(), 1);
        assert_eq!(d.stats.ignored, 5);
    }

    #[test]
    fn peers_without_news_expire() {
        let mut d = DhtDiscovery::new("c", vec![]).with_config(DhtConfig::local());
        d.local_addr = Some(local());
        let t0 = Instant::now();
        d.add(t0, "127.0.0.1:7001".parse().unwrap(), None);
        d.add(
            t0 + Duration::from_secs(20),
            "127.0.0.1:7002".parse().unwrap(),
            None,
        );
        d.expire(t0 + Duration::from_secs(31));
        let left: Vec<SocketAddr> = d.table.iter().map(|(a, _)| *a).collect();
        assert_eq!(left, vec!["127.0.0.1:7002".parse::<SocketAddr>().unwrap()]);
        assert_eq!(d.stats.peers_expired, 1);
        assert_eq!(d.fresh.len(), 1);
    }
}
