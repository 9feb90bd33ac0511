//! [`Node::builder`]: compose the actors of one node; [`NodeHandle`]: use it.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use gossip_core::blob::{BlobConfig, BlobId, Blobs};
use gossip_core::dissemination::{Dissemination, DisseminationConfig};
use gossip_core::feed::{FeedId, FeedMessage, MessageHash};
use gossip_core::tree::{FeedLinks, Tree, TreeConfig};
use gossip_core::{MessageId, NodeId};
use gossip_crypto::{Identity, Keyring};
use gossip_net::sim::SimNetwork;
use gossip_net::{DEFAULT_MAX_DATAGRAM, InboundLimit, PacketCodec, Security};
use gossip_store::NodeStore;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::broadcast;

use crate::blobs::{
    AddLocalBlob, BlobActor, BlobActorStats, GetBlob, GetBlobStats, GetCorruptPeers, HasBlob,
};
use crate::discovery::{CyclonDiscovery, Discovery, DiscoveryContext, StaticDiscovery};
use crate::dissemination::{
    Broadcast, DisseminationActor, DisseminationActorStats, GetDisseminationStats, NodeEvent,
};
use crate::error::{NodeError, StartError};
use crate::failure::{
    FailureActorStats, FailureDetectorActor, GetFailureStats, GetPeerPhis, Liveness, PeerPhi,
    RegisterLiveness,
};
use crate::feeds::{
    FOLLOWS_TABLE, FeedActorStats, FeedTreeActor, Follow, GetFeedLinks, GetFeedStats, Publish,
    Published, Unfollow, WallClock, system_clock,
};
use crate::messages::{
    DiscoveryRecipients, GetTransportStats, KnownPeers, PeerStatus, PeerSummary, RegisterObserver,
    RegisterRoute, Shutdown,
};
use crate::messages::{InboundMessage, RegisterApp, SendMessage};
use crate::state::{
    DeleteKey, FlowActorStats, FlowControlActor, GetFlowStats, GetNodeState, GetStateStats,
    GetValue, ListNodes, Set, StateActor, StateActorStats, TrySet, TryWrite,
};
use crate::store::{Fetch, Latest, LoadOwnState, PutOwnGeneration, Scan, StoreAddr};
use crate::transport::{FaultInjection, Socket, TransportActor, TransportStats};
use gossip_core::PacketType;
use gossip_core::failure::{FailureConfig, FailureDetector};
use gossip_core::reconcile::{NodeStateView, Reconcile, ReconcileConfig};
use gossip_core::replay::ReplayConfig;
use gossip_crypto::Key;

use crate::error::KeyringError;
use crate::messages::{AddKey, GetKeyring, KeyringView, RemoveKey, SetPrimaryKey};

/// Everything tunable about a node. Each protocol's fields are documented (unit, bound,
/// source) on its own config struct; [`NodeConfig::validate`] checks them all and names a
/// bad field by its full path (`dissemination.fanout`).
///
/// Serializable (serde) in the shape of a TOML file with one table per protocol: missing
/// fields take their defaults, unknown ones are refused, durations are milliseconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Push / ack / pull-sync parameters. Its `max_envelope_len` is set by the node from
    /// `max_datagram` and the cipher; the value given here is ignored.
    pub dissemination: DisseminationConfig,
    /// Largest datagram sent or accepted, in bytes: 1,400 by default (the safe Ethernet
    /// payload, as in memberlist), at most 65,507.
    pub max_datagram: usize,
    /// Deliberate faults for tests. Off by default.
    pub fault: FaultInjection,
    /// Authenticated datagrams admitted per source address (a token bucket; see
    /// [`gossip_net::limit`]): 1,000 per second with bursts of 2,000, and blob messages in a
    /// bucket of their own (20,000 per second, bursts of 40,000); 4,096 sources tracked.
    /// Beyond it datagrams are dropped before any protocol sees them and counted in
    /// [`TransportStats::rate_limited`]. [`InboundLimit::unlimited`] turns it off.
    pub inbound_limit: InboundLimit,
    /// Events buffered per subscriber before a slow one starts skipping: 4,096. Bound: ≥ 1.
    pub event_capacity: usize,
    /// Per-feed broadcast tree parameters. Its `max_envelope_len` is set by the node from
    /// `max_datagram` and the cipher.
    pub tree: TreeConfig,
    /// Tree peers drawn at random from discovery's known peers: 8 (ssb-ebt replicates over a
    /// handful of connections); peers that open a tree link to this node come on top.
    pub tree_target_peers: usize,
    /// Scuttlebutt key/value reconciliation and AIMD flow control. Its `max_envelope_len` is
    /// set by the node from `max_datagram` and the cipher.
    pub state: ReconcileConfig,
    /// Phi-accrual failure detection (runs with the state protocol, whose gossip keeps every
    /// node's heartbeat moving).
    pub failure: FailureConfig,
    /// Updates that [`NodeHandle::set`] queues while the update rate refuses them: 1,024.
    /// Bound: ≥ 1.
    pub set_queue_capacity: usize,
    /// Which protocols the node runs.
    pub protocols: Protocols,
    /// Anti-replay: window of 2,048 packet counters per sender, at most 4,096 senders
    /// (`gossip_core::replay`, after WireGuard and RFC 6479).
    pub replay: ReplayConfig,
    /// Blob transfer ([`NodeHandle::add_blob`], [`NodeHandle::get_blob`]; always running).
    /// Its `max_envelope_len` is set by the node from `max_datagram` and the cipher, so the
    /// chunk size follows the datagram (1,248 bytes at 1,400).
    pub blobs: BlobConfig,
    /// Blobs referenced (`blob:<hex>`) by messages of followed feeds are fetched when at most
    /// this many bytes; 0 (the default) fetches none of them: a node fetches only the blobs
    /// it is asked for.
    pub fetch_blobs_for_feeds: u64,
    /// The store's limit on blob bytes (`BlobStore::set_blob_limit`); `None` keeps the
    /// store's own (1 GiB by default). Past it, blobs no followed feed references and not
    /// added locally are evicted to make room.
    pub blob_store_limit: Option<u64>,
}

/// Which protocol actors a node starts. The transport and discovery always run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Protocols {
    /// Push / ack / pull-sync broadcast ([`NodeHandle::broadcast`]).
    pub dissemination: bool,
    /// Scuttlebutt key/value state with flow control, and the failure detector
    /// ([`NodeHandle::set`], `PeerDead` / `PeerLive` events).
    pub state: bool,
    /// Signed feeds over per-feed broadcast trees ([`NodeHandle::publish`]).
    pub feeds: bool,
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols {
            dissemination: true,
            state: true,
            feeds: true,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            dissemination: DisseminationConfig::default(),
            max_datagram: DEFAULT_MAX_DATAGRAM,
            fault: FaultInjection::default(),
            inbound_limit: InboundLimit::default(),
            event_capacity: 4_096,
            tree: TreeConfig::default(),
            tree_target_peers: 8,
            state: ReconcileConfig::default(),
            failure: FailureConfig::default(),
            set_queue_capacity: 1_024,
            protocols: Protocols::default(),
            replay: ReplayConfig::default(),
            blobs: BlobConfig::default(),
            fetch_blobs_for_feeds: 0,
            blob_store_limit: None,
        }
    }
}

/// Entry point: `Node::builder()`.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// A builder with the defaults: bind `127.0.0.1:0`, no seeds, static discovery, a random
    /// node id, no keyring (one must be given, or plaintext asked for).
    pub fn builder() -> NodeBuilder {
        NodeBuilder {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            security: None,
            identity: None,
            store: None,
            clock: None,
            discovery: None,
            config: NodeConfig::default(),
            rng_seed: None,
            network: None,
            epoch: None,
        }
    }
}

/// Configures and starts a node. See [`Node::builder`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use gossip_actors::{Node, StaticDiscovery};
/// use gossip_crypto::Keyring;
///
/// let node = Node::builder()
///     .bind("127.0.0.1:7000".parse()?)
///     .keyring(Keyring::from_passphrase("correct horse", "cluster-a")?)
///     .discovery(StaticDiscovery::new(["127.0.0.1:7001".parse()?]))
///     .start()
///     .await?;
/// let mut events = node.subscribe();
/// node.broadcast(&b"hi"[..]).await?;
/// println!("{:?}", events.recv().await?);
/// node.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct NodeBuilder {
    bind: SocketAddr,
    security: Option<Security>,
    identity: Option<Identity>,
    store: Option<Box<dyn NodeStore>>,
    clock: Option<WallClock>,
    discovery: Option<Box<dyn Discovery>>,
    config: NodeConfig,
    rng_seed: Option<u64>,
    network: Option<SimNetwork>,
    epoch: Option<u64>,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("bind", &self.bind)
            .field("security", &self.security)
            .field("identity", &self.identity)
            .field("store", &self.store.as_ref().map(|_| "custom"))
            .field("discovery", &self.discovery)
            .field("config", &self.config)
            .field("rng_seed", &self.rng_seed)
            .field("network", &self.network.is_some())
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// Run on the in-process simulated `network` instead of UDP: [`bind`](Self::bind) then
    /// names an address of that network (port 0 picks a free one). Used by the simulator and
    /// by tests on tokio's paused clock.
    pub fn network(mut self, network: &SimNetwork) -> Self {
        self.network = Some(network.clone());
        self
    }

    /// The UDP address to bind (port 0 picks a free port; see [`NodeHandle::local_addr`]).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Seal with the keyring's primary key and open with any of its keys (AES-256-GCM).
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.security = Some(Security::Encrypted(Arc::new(keyring)));
        self
    }

    /// Send and accept only plaintext datagrams. For closed test networks: anyone who can
    /// reach the port can inject messages.
    pub fn plaintext(mut self) -> Self {
        self.security = Some(Security::Plaintext);
        self
    }

    /// The node's ed25519 identity: its public key is the node id and its feed id (default: a
    /// new identity, drawn from the node's seed when [`rng_seed`](Self::rng_seed) is set).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Where the node keeps its feed logs, peer clocks, follows and its own key/value entries
    /// and generation ([`gossip_store::own_state`]), served on a thread of its own (default: a
    /// [`gossip_store::MemoryStore`] on the node's arbiter, lost at exit; use
    /// `RedbStore::open(path)` to keep them). A node started on a store that holds its own
    /// entries (same identity) runs with a higher generation and republishes them, so no
    /// acknowledged `set` or `delete` is lost across a crash.
    pub fn store(mut self, store: impl NodeStore) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// The wall clock stamped on published feed messages (default: the system clock). The
    /// simulator passes a clock derived from its virtual time so a seed reproduces ids. It
    /// also gives the node's boot epoch (its reading at start, in microseconds: the clock's
    /// milliseconds × 1,000) unless [`epoch`](Self::epoch) is set.
    pub fn wall_clock(mut self, clock: WallClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Static discovery with these seed addresses (shorthand for
    /// `.discovery(StaticDiscovery::new(seeds))`): every seed is a peer, plus every node
    /// whose authenticated packet arrives.
    pub fn seeds(self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.discovery(StaticDiscovery::new(seeds))
    }

    /// The discovery actor to use: [`StaticDiscovery`], [`CyclonDiscovery`] (the default,
    /// with no seeds: add them with [`NodeHandle::add_peer`]), or any [`Discovery`] of your
    /// own (see [`crate::discovery`] for the contract).
    pub fn discovery(mut self, discovery: impl Discovery) -> Self {
        self.discovery = Some(Box::new(discovery));
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    /// The boot epoch stamped on every datagram, in microseconds since the Unix epoch
    /// (default: the system clock at start in microseconds, or the
    /// [`wall_clock`](Self::wall_clock)'s reading × 1,000). Receivers accept a sender's
    /// larger epoch as a restart and drop datagrams of a smaller one as stale
    /// (`gossip_core::replay`), so a restarted node MUST get a larger epoch than its last run.
    pub fn epoch(mut self, epoch_us: u64) -> Self {
        self.epoch = Some(epoch_us);
        self
    }

    /// Deliberate faults (tests only).
    pub fn fault_injection(mut self, fault: FaultInjection) -> Self {
        self.config.fault = fault;
        self
    }

    /// Seeds every random choice of the node (peer selection, message ids, injected loss), so
    /// a run can be reproduced. Nonces are always drawn from the OS.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Binds the socket and starts the transport, discovery and dissemination actors on the
    /// current actix arbiter.
    ///
    /// # Errors
    /// [`StartError::NoKeyring`] without `.keyring(..)` or `.plaintext()`;
    /// [`StartError::Codec`] for a `max_datagram` outside 128..=65,507;
    /// [`StartError::Fault`] for invalid fault injection settings;
    /// [`StartError::InvalidConfig`] for a value out of bounds (named by its path, see
    /// [`NodeConfig::validate`]);
    /// [`StartError::Bind`] when the socket cannot be bound; [`StartError::SimBind`] when the
    /// simulated address is taken. Nothing is left running.
    pub async fn start(self) -> Result<NodeHandle, StartError> {
        let security = self.security.ok_or(StartError::NoKeyring)?;
        self.config.fault.validate()?;
        let encoder = PacketCodec::new(security.clone(), self.config.max_datagram)?;
        let decoder = PacketCodec::new(security, self.config.max_datagram)?;
        let mut dissemination_config = self.config.dissemination.clone();
        let encoder_envelope_len = encoder.max_envelope_len();
        dissemination_config.max_envelope_len = encoder_envelope_len;
        self.config
            .validate_with_envelope(encoder_envelope_len)
            .map_err(StartError::InvalidConfig)?;
        dissemination_config.validate()?;

        let mut master = match self.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let identity = Arc::new(self.identity.unwrap_or_else(|| {
            let mut seed = [0u8; 32];
            master.fill_bytes(&mut seed);
            Identity::from_bytes(&seed)
        }));
        let node_id = NodeId(identity.public_key());
        let now = tokio::time::Instant::now().into_std();
        let core = Dissemination::new(
            node_id,
            dissemination_config,
            StdRng::seed_from_u64(master.random()),
            now,
        )?;

        let socket: Socket = match &self.network {
            Some(network) => network.bind(self.bind)?.into(),
            None => UdpSocket::bind(self.bind)
                .await
                .map_err(|source| StartError::Bind {
                    addr: self.bind,
                    source,
                })?
                .into(),
        };
        let epoch = match (self.epoch, &self.clock) {
            (Some(epoch), _) => epoch,
            (None, Some(clock)) => clock().saturating_mul(1_000),
            (None, None) => crate::transport::system_epoch(),
        };
        let transport = TransportActor::new(
            node_id,
            socket,
            encoder,
            decoder,
            self.config.fault,
            master.random(),
        )
        .map_err(|source| StartError::Bind {
            addr: self.bind,
            source,
        })?
        .with_inbound_limit(self.config.inbound_limit)
        .with_epoch(epoch)
        .with_replay(self.config.replay.clone())?;
        let local_addr = transport.local_addr();
        // Every actor of the node logs inside this span, so each line names the node.
        let span = tracing::info_span!("node", id = %node_id.short(), addr = %local_addr);
        let transport = transport.with_span(span.clone()).start();

        let discovery: Box<dyn Discovery> = self
            .discovery
            .unwrap_or_else(|| Box::new(CyclonDiscovery::new([])));
        let started = discovery
            .start(DiscoveryContext {
                node_id,
                local_addr,
                transport: transport.clone().recipient(),
                rng_seed: master.random(),
                now,
                span: span.clone(),
            })
            .map_err(StartError::Discovery);
        let started = match started {
            Ok(started) => started,
            Err(err) => {
                transport.do_send(Shutdown);
                return Err(err);
            }
        };
        let discovery = started.recipients;

        let mut blob_config = self.config.blobs.clone();
        blob_config.max_envelope_len = encoder_envelope_len;
        if let Err(err) = blob_config.validate() {
            transport.do_send(Shutdown);
            discovery.shutdown.do_send(Shutdown);
            return Err(err.into());
        }
        let store = match self.store {
            Some(mut store) => {
                if let Some(limit) = self.config.blob_store_limit {
                    store.set_blob_limit(limit);
                }
                StoreAddr::threaded(store)
            }
            None => {
                let mut store = gossip_store::MemoryStore::new();
                if let Some(limit) = self.config.blob_store_limit {
                    gossip_store::BlobStore::set_blob_limit(&mut store, limit);
                }
                StoreAddr::inline(Box::new(store))
            }
        };
        let mut tree_config = self.config.tree.clone();
        tree_config.max_envelope_len = encoder_envelope_len;
        let (tree_core, follows) =
            match load_tree(&store, node_id, tree_config, master.random(), now).await {
                Ok(loaded) => loaded,
                Err(err) => {
                    transport.do_send(Shutdown);
                    discovery.shutdown.do_send(Shutdown);
                    return Err(err);
                }
            };
        tracing::debug!(feeds = follows, "feeds restored");

        let (events, _) = broadcast::channel(self.config.event_capacity.max(1));
        let protocols = self.config.protocols;
        let clock = self.clock.unwrap_or_else(system_clock);
        let mut handle = NodeHandle {
            node_id,
            local_addr,
            transport: transport.clone(),
            dissemination: None,
            discovery: discovery.clone(),
            feeds: None,
            state: None,
            flow: None,
            failure: None,
            store: store.clone(),
            events: events.clone(),
            blobs: None,
        };

        if protocols.dissemination {
            handle.dissemination = Some(
                DisseminationActor::new(
                    core,
                    transport.clone().recipient(),
                    discovery.clone(),
                    events.clone(),
                )
                .with_span(span.clone())
                .start(),
            );
        }

        if protocols.state {
            let mut state_config = self.config.state.clone();
            state_config.max_envelope_len = encoder_envelope_len;
            let restored = match load_own_state(&store, &state_config, clock()).await {
                Ok(restored) => restored,
                Err(err) => {
                    let _ = handle.shutdown().await;
                    return Err(err);
                }
            };
            let generation = restored.generation;
            let built = Reconcile::new(
                node_id,
                local_addr,
                generation,
                Vec::new(),
                state_config,
                StdRng::seed_from_u64(master.random()),
                now,
            )
            .and_then(|reconcile| {
                FailureDetector::new(self.config.failure.clone(), now).map(|fd| (reconcile, fd))
            });
            let (mut reconcile, detector) = match built {
                Ok(built) => built,
                Err(err) => {
                    let _ = handle.shutdown().await;
                    return Err(err.into());
                }
            };
            for entry in restored.entries {
                let key = entry.key;
                if let Err(err) = reconcile.restore(now, &key, Bytes::from(entry.value)) {
                    // Only a configuration tightened since the write refuses it.
                    tracing::warn!(%key, %err, "stored key/value entry not restored");
                }
            }
            let failure = FailureDetectorActor::new(detector, node_id, events.clone())
                .with_span(span.clone())
                .start();
            let state = StateActor::new(
                reconcile,
                transport.clone().recipient(),
                Some(failure.clone().recipient()),
                Some(discovery.peer_status.clone()),
                events.clone(),
            )
            .with_span(span.clone())
            .persist_to(store.clone())
            .start();
            let flow = FlowControlActor::new(
                state.clone().recipient(),
                state.clone().recipient(),
                self.config.set_queue_capacity,
            )
            .start();
            handle.failure = Some(failure);
            handle.state = Some(state);
            handle.flow = Some(flow);
        }

        if protocols.feeds {
            handle.feeds = Some(
                FeedTreeActor::new(
                    tree_core,
                    Arc::clone(&identity),
                    transport.clone().recipient(),
                    store.clone(),
                    events.clone(),
                    clock,
                    discovery.known_peers.clone(),
                    master.random(),
                    self.config.tree_target_peers,
                )
                .with_span(span.clone())
                .start(),
            );
        }

        // Drawn last, so that adding blobs left every earlier seed of a node as it was.
        let blob_core = match Blobs::new(
            node_id,
            blob_config,
            StdRng::seed_from_u64(master.random()),
            now,
        ) {
            Ok(core) => core,
            Err(err) => {
                let _ = handle.shutdown().await;
                return Err(err.into());
            }
        };
        handle.blobs = Some(
            BlobActor::new(
                blob_core,
                FeedId(node_id.0),
                transport.clone().recipient(),
                store.clone(),
                events.clone(),
                discovery.known_peers.clone(),
                self.config.fetch_blobs_for_feeds,
            )
            .start(),
        );

        if handle.register(started.routes).await.is_err() {
            let _ = handle.shutdown().await;
            return Err(StartError::Bind {
                addr: local_addr,
                source: std::io::Error::other("transport stopped while starting"),
            });
        }
        span.in_scope(|| {
            tracing::info!(
                dissemination = protocols.dissemination,
                state = protocols.state,
                feeds = protocols.feeds,
                "node started"
            )
        });
        Ok(handle)
    }
}

/// Counters of a whole node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Datagrams and bytes sent and received, drops by reason.
    pub transport: TransportStats,
    /// Broadcasts, deliveries, duplicates suppressed, acks, pulls.
    pub dissemination: DisseminationActorStats,
    /// Feed replication: appends, notes, pushes, rejections.
    pub feeds: FeedActorStats,
    /// Key/value reconciliation and the update rate.
    pub state: StateActorStats,
    /// Updates waiting for the rate.
    pub flow: FlowActorStats,
    /// Failure detection: convictions, revivals, stalls.
    pub failure: FailureActorStats,
    /// Blob transfer: pieces requested, verified, corrupt, served; the held-piece peak.
    pub blobs: BlobActorStats,
}

impl NodeStats {
    /// Broadcasts delivered to the application (own ones included).
    pub fn delivered(&self) -> u64 {
        self.dissemination.core.delivered
    }

    /// Copies of already delivered broadcasts that were suppressed.
    pub fn duplicates_suppressed(&self) -> u64 {
        self.dissemination.core.duplicates_suppressed
    }

    /// Datagrams dropped as not from a holder of our key (cipher mismatch, unknown key id,
    /// failed tag).
    pub fn dropped_auth(&self) -> u64 {
        self.transport.drops.auth()
    }

    /// Datagrams dropped as broken (truncated, oversize, bad label, bad envelope).
    pub fn dropped_malformed(&self) -> u64 {
        self.transport.drops.malformed()
    }

    /// Authenticated datagrams dropped by the anti-replay check (replayed, too old, stale
    /// epoch).
    pub fn dropped_replay(&self) -> u64 {
        self.transport.drops.replay()
    }
}

/// A running node. Cheap to clone and `Send`; every clone controls the same node.
///
/// Calls are answered by the node's actors, so they need the actix system the node was
/// started in to be running.
#[derive(Clone)]
pub struct NodeHandle {
    node_id: NodeId,
    local_addr: SocketAddr,
    transport: Addr<TransportActor>,
    dissemination: Option<Addr<DisseminationActor>>,
    discovery: DiscoveryRecipients,
    feeds: Option<Addr<FeedTreeActor>>,
    state: Option<Addr<StateActor>>,
    flow: Option<Addr<FlowControlActor>>,
    failure: Option<Addr<FailureDetectorActor>>,
    store: StoreAddr,
    events: broadcast::Sender<NodeEvent>,
    blobs: Option<Addr<BlobActor>>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("node_id", &self.node_id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl NodeHandle {
    async fn register(
        &self,
        discovery_routes: Vec<(PacketType, Recipient<InboundMessage>)>,
    ) -> Result<(), MailboxError> {
        let route = |kinds: Vec<PacketType>, recipient: Recipient<InboundMessage>| {
            self.transport.send(RegisterRoute { kinds, recipient })
        };
        let observe =
            |recipient: Recipient<PeerStatus>| self.transport.send(RegisterObserver { recipient });
        if let Some(dissemination) = &self.dissemination {
            let kinds = vec![
                PacketType::PushMessage,
                PacketType::PushAck,
                PacketType::PullSync,
                PacketType::PullRequest,
                PacketType::PullResponse,
            ];
            route(kinds, dissemination.clone().recipient()).await?;
        }
        if let Some(feeds) = &self.feeds {
            let kinds = vec![PacketType::TreeNotes, PacketType::TreeBatch];
            route(kinds, feeds.clone().recipient()).await?;
        }
        if let Some(blobs) = &self.blobs {
            let kinds = vec![
                PacketType::BlobWant,
                PacketType::BlobHave,
                PacketType::BlobRequest,
                PacketType::BlobPiece,
            ];
            route(kinds, blobs.clone().recipient()).await?;
        }
        if let Some(state) = &self.state {
            let kinds = vec![
                PacketType::StateDigest,
                PacketType::StateReply,
                PacketType::StateDeltas,
            ];
            route(kinds, state.clone().recipient()).await?;
            observe(state.clone().recipient()).await?;
        }
        for (kind, recipient) in discovery_routes {
            route(vec![kind], recipient).await?;
        }
        observe(self.discovery.peer_status.clone()).await?;
        if let Some(failure) = &self.failure {
            observe(failure.clone().recipient()).await?;
            let mut liveness: Vec<Recipient<Liveness>> = vec![self.discovery.liveness.clone()];
            if let Some(state) = &self.state {
                liveness.push(state.clone().recipient());
            }
            if let Some(feeds) = &self.feeds {
                liveness.push(feeds.clone().recipient());
            }
            if let Some(blobs) = &self.blobs {
                liveness.push(blobs.clone().recipient());
            }
            for recipient in liveness {
                failure.send(RegisterLiveness { recipient }).await?;
            }
        }
        Ok(())
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Broadcasts `payload` to every node (push / ack / pull-sync). The node delivers it to its
    /// own subscribers too, at hop 0.
    ///
    /// # Errors
    /// [`NodeError::Broadcast`] when the payload exceeds the largest that fits one datagram
    /// (the error names both sizes; nothing is sent); [`NodeError::Stopped`] after shutdown.
    pub async fn broadcast(&self, payload: impl Into<Bytes>) -> Result<MessageId, NodeError> {
        let payload = payload.into();
        let dissemination = running(&self.dissemination, "dissemination")?;
        Ok(dissemination.send(Broadcast { payload }).await??)
    }

    /// A receiver of every event from now on. It buffers `event_capacity` events; a receiver
    /// that falls further behind gets `RecvError::Lagged(n)` once and skips `n` events.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// The node's counters.
    ///
    /// # Errors
    /// [`NodeError::Stopped`] after shutdown.
    pub async fn stats(&self) -> Result<NodeStats, NodeError> {
        let transport = self.transport.send(GetTransportStats).await?;
        let mut stats = NodeStats {
            transport,
            ..NodeStats::default()
        };
        if let Some(dissemination) = &self.dissemination {
            stats.dissemination = dissemination.send(GetDisseminationStats).await?;
        }
        if let Some(feeds) = &self.feeds {
            stats.feeds = feeds.send(GetFeedStats).await?;
        }
        if let Some(state) = &self.state {
            stats.state = state.send(GetStateStats).await?;
        }
        if let Some(flow) = &self.flow {
            stats.flow = flow.send(GetFlowStats).await?;
        }
        if let Some(failure) = &self.failure {
            stats.failure = failure.send(GetFailureStats).await?;
        }
        if let Some(blobs) = &self.blobs {
            stats.blobs = blobs.send(GetBlobStats).await?;
        }
        Ok(stats)
    }

    /// Adds `key` to the transport's keyring as an accepted key: it opens datagrams from now
    /// on, and the primary still seals. Step 1 of a key rotation without downtime (do it on
    /// every node, then [`set_primary_key`](Self::set_primary_key) everywhere, then
    /// [`remove_key`](Self::remove_key) the old key everywhere; `docs/wire.md` section 4.4).
    /// Adding a key already held changes nothing. Returns the key ids held afterwards.
    ///
    /// # Errors
    /// [`KeyringError::Plaintext`] for a plaintext node; [`KeyringError::Stopped`] after
    /// shutdown.
    pub async fn add_key(&self, key: Key) -> Result<KeyringView, KeyringError> {
        self.transport
            .send(AddKey { key })
            .await
            .map_err(|_| KeyringError::Stopped)?
    }

    /// Makes the accepted key with id `key_id` the primary: every datagram from now on is
    /// sealed with it; the previous primary stays accepted. Step 2 of a rotation. Making the
    /// primary primary again changes nothing.
    ///
    /// # Errors
    /// [`KeyringError::UnknownKeyId`] if no accepted key has that id (add it first);
    /// [`KeyringError::AmbiguousKeyId`] if two accepted keys share it; [`KeyringError::Plaintext`];
    /// [`KeyringError::Stopped`]. The keyring did not change.
    pub async fn set_primary_key(&self, key_id: u8) -> Result<KeyringView, KeyringError> {
        self.transport
            .send(SetPrimaryKey { key_id })
            .await
            .map_err(|_| KeyringError::Stopped)?
    }

    /// Removes every accepted key with id `key_id`: datagrams sealed with it are dropped from
    /// now on (counted as `unknown_key_id`). Step 3 of a rotation.
    ///
    /// # Errors
    /// [`KeyringError::RemovePrimary`] if `key_id` is the primary's (make another key primary
    /// first); [`KeyringError::UnknownKeyId`] if no accepted key has it;
    /// [`KeyringError::Plaintext`]; [`KeyringError::Stopped`]. The keyring did not change.
    pub async fn remove_key(&self, key_id: u8) -> Result<KeyringView, KeyringError> {
        self.transport
            .send(RemoveKey { key_id })
            .await
            .map_err(|_| KeyringError::Stopped)?
    }

    /// The ids of the keys the node holds (`None` for a plaintext node).
    ///
    /// # Errors
    /// [`NodeError::Stopped`] after shutdown.
    pub async fn keyring(&self) -> Result<Option<KeyringView>, NodeError> {
        Ok(self.transport.send(GetKeyring).await?)
    }

    /// Tells discovery (and the state protocol, as a seed) about a peer.
    ///
    /// # Errors
    /// [`NodeError::Stopped`] after shutdown.
    pub async fn add_peer(&self, addr: SocketAddr) -> Result<(), NodeError> {
        if let Some(state) = &self.state {
            state.send(PeerStatus::Add { addr }).await?;
        }
        Ok(self
            .discovery
            .peer_status
            .send(PeerStatus::Add { addr })
            .await?)
    }

    /// Routes inbound application messages of `kind` to `recipient`: the seam for an actor of
    /// your own that speaks its own protocol beside the built-in ones, over the same sealed
    /// transport. Its replies go out with [`send_app`](Self::send_app) or through
    /// [`transport`](Self::transport).
    ///
    /// # Errors
    /// [`NodeError::Stopped`] after shutdown.
    pub async fn register_app(
        &self,
        kind: u16,
        recipient: Recipient<InboundMessage>,
    ) -> Result<(), NodeError> {
        Ok(self.transport.send(RegisterApp { kind, recipient }).await?)
    }

    /// Sends an application message of `kind` to the node at `to`, sealed like every other.
    ///
    /// # Errors
    /// [`NodeError::Send`] when the payload does not fit one datagram (both sizes named);
    /// [`NodeError::Stopped`] after shutdown.
    pub async fn send_app(
        &self,
        to: SocketAddr,
        kind: u16,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let message = gossip_core::Message::Application(gossip_core::AppMessage {
            kind,
            payload: payload.into(),
        });
        Ok(self.transport.send(SendMessage { to, message }).await??)
    }

    /// The node's transport, for actors of your own that send protocol messages.
    pub fn transport(&self) -> Recipient<SendMessage> {
        self.transport.clone().recipient()
    }

    /// A receiver of every event from now on (the same as [`subscribe`](Self::subscribe)):
    /// `Delivered`, `NewPeer`, `PeerDead`, `PeerLive`, `Update`, `FeedMessage`, `FeedForked`.
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Sets this node's `key` to `value` in the replicated key/value state, waiting (in a
    /// bounded queue, in order) while the AIMD update rate refuses it. Returns the version.
    ///
    /// # Errors
    /// [`NodeError::Set`]: the key is too long or the value too large (naming both sizes), too
    /// many keys, or `set_queue_capacity` updates already wait (nothing changed); or
    /// [`crate::state::SetError::Store`] when the write was applied but the store failed to
    /// make it durable; [`NodeError::NotRunning`] without the state protocol;
    /// [`NodeError::Stopped`] after shutdown.
    ///
    /// `Ok` means the write is durable in the node's store: it survives a crash and restart
    /// of this node on the same store (see [`NodeBuilder::store`]).
    pub async fn set(
        &self,
        key: impl Into<String>,
        value: impl Into<Bytes>,
    ) -> Result<u64, NodeError> {
        let flow = running(&self.flow, "state")?;
        let set = Set {
            key: key.into(),
            value: value.into(),
        };
        Ok(flow.send(set).await??)
    }

    /// Sets `key` now, or refuses: unlike [`set`](Self::set) it does not wait for the update
    /// rate.
    ///
    /// # Errors
    /// [`NodeError::Set`] with [`crate::state::SetError::State`] holding
    /// [`gossip_core::reconcile::StateError::Backpressure`] (and when to retry) above the
    /// current rate, with [`crate::state::SetError::Waiting`] while earlier `set`s or `delete`s still wait
    /// (it would overtake them), or for a key or value too large; as [`set`](Self::set)
    /// otherwise.
    pub async fn try_set(
        &self,
        key: impl Into<String>,
        value: impl Into<Bytes>,
    ) -> Result<u64, NodeError> {
        let flow = running(&self.flow, "state")?;
        let set = TrySet {
            key: key.into(),
            value: value.into(),
        };
        Ok(flow.send(TryWrite(set)).await??)
    }

    /// Deletes this node's `key` (a tombstone, collected after the grace period), waiting in
    /// order behind earlier writes like [`set`](Self::set). Returns the version taken, or
    /// `None` if the key held no value.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub async fn delete(&self, key: impl Into<String>) -> Result<Option<u64>, NodeError> {
        let flow = running(&self.flow, "state")?;
        Ok(flow.send(DeleteKey { key: key.into() }).await??)
    }

    /// `node`'s value of `key` as held here, with its version.
    ///
    /// # Errors
    /// [`NodeError::NotRunning`] without the state protocol; [`NodeError::Stopped`].
    pub async fn get(
        &self,
        node: NodeId,
        key: impl Into<String>,
    ) -> Result<Option<(Bytes, u64)>, NodeError> {
        let state = running(&self.state, "state")?;
        Ok(state
            .send(GetValue {
                node,
                key: key.into(),
            })
            .await?)
    }

    /// Everything held here of `node`'s state (generation, heartbeat, versions, live values).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn state(&self, node: NodeId) -> Result<Option<NodeStateView>, NodeError> {
        let state = running(&self.state, "state")?;
        Ok(state.send(GetNodeState { node }).await?)
    }

    /// Every node whose state is held here, this one included, sorted.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn nodes(&self) -> Result<Vec<NodeId>, NodeError> {
        let state = running(&self.state, "state")?;
        Ok(state.send(ListNodes).await?)
    }

    /// The peers discovery knows, in address order.
    ///
    /// # Errors
    /// [`NodeError::Stopped`] after shutdown.
    pub async fn known_peers(&self) -> Result<Vec<PeerSummary>, NodeError> {
        Ok(self.discovery.known_peers.send(KnownPeers).await?)
    }

    /// Every peer the failure detector tracks, with its liveness and current phi, ascending
    /// by node id; empty without the state protocol (which runs the detector).
    ///
    /// # Errors
    /// [`NodeError::Stopped`] after shutdown.
    pub async fn peer_phis(&self) -> Result<Vec<PeerPhi>, NodeError> {
        match &self.failure {
            Some(failure) => Ok(failure.send(GetPeerPhis).await?),
            None => Ok(Vec::new()),
        }
    }

    /// The links of every followed feed's broadcast tree (source, eager and lazy peers, the
    /// local head and the best-known sequence), ascending by feed; empty without the feeds
    /// protocol.
    ///
    /// # Errors
    /// [`NodeError::Stopped`] after shutdown.
    pub async fn feed_links(&self) -> Result<Vec<FeedLinks>, NodeError> {
        match &self.feeds {
            Some(feeds) => Ok(feeds.send(GetFeedLinks).await?),
            None => Ok(Vec::new()),
        }
    }

    /// This node's feed id (its public key).
    pub fn feed_id(&self) -> FeedId {
        FeedId(self.node_id.0)
    }

    /// Appends `content` to this node's feed; returns once the message is durable in the
    /// store. Peers that follow the feed receive it over the feed's broadcast tree.
    ///
    /// # Errors
    /// [`NodeError::Publish`] when the message would not fit one datagram (naming both sizes),
    /// too many messages wait to be appended, or the store fails; [`NodeError::Stopped`] after
    /// shutdown.
    pub async fn publish(&self, content: impl Into<Bytes>) -> Result<Published, NodeError> {
        let content = content.into();
        let feeds = running(&self.feeds, "feeds")?;
        Ok(feeds.send(Publish { content }).await??)
    }

    /// Replicates `feed` from now on (persisted in the store). Returns `true` if it was not
    /// followed before.
    ///
    /// # Errors
    /// [`NodeError::Follow`] when too many feeds are followed or the store fails;
    /// [`NodeError::Stopped`] after shutdown.
    pub async fn follow(&self, feed: FeedId) -> Result<bool, NodeError> {
        let feeds = running(&self.feeds, "feeds")?;
        Ok(feeds.send(Follow(feed)).await??)
    }

    /// Stops replicating `feed` (its log is kept). Returns `true` if it was followed.
    ///
    /// # Errors
    /// As [`follow`](Self::follow).
    pub async fn unfollow(&self, feed: FeedId) -> Result<bool, NodeError> {
        let feeds = running(&self.feeds, "feeds")?;
        Ok(feeds.send(Unfollow(feed)).await??)
    }

    /// The head of `feed` in this node's log: `(sequence, id)`, `None` if it holds none.
    ///
    /// # Errors
    /// [`NodeError::Store`] if the store fails; [`NodeError::Stopped`] after shutdown.
    pub async fn latest(&self, feed: FeedId) -> Result<Option<(u64, MessageHash)>, NodeError> {
        self.store
            .send(Latest(feed))
            .await?
            .map_err(|e| NodeError::Store(e.to_string()))
    }

    /// The messages of `feed` from sequence `from_seq` on, in sequence order: first those in
    /// the store, then live ones as they are appended. The stream ends at shutdown (or if
    /// the subscriber lags by more than `event_capacity` events: reopen it from the last
    /// sequence seen).
    pub fn feed(
        &self,
        feed: FeedId,
        from_seq: u64,
    ) -> impl futures::Stream<Item = FeedMessage> + Send + 'static {
        feed_stream(
            self.store.clone(),
            self.events.subscribe(),
            feed,
            from_seq.max(1),
        )
    }

    /// Stores `bytes` as a blob (named by their SHA-256, cut into datagram-sized chunks under
    /// a hash tree) and returns its id. The blob is pinned: never evicted. Other nodes fetch
    /// it with [`get_blob`](Self::get_blob); reference it from a feed message with
    /// [`gossip_core::blob::reference`] (`blob:<hex>`).
    ///
    /// # Errors
    /// [`NodeError::Blob`] when the blob is larger than 1 TiB or the store refuses it (full
    /// of blobs that may not be evicted); [`NodeError::Stopped`] after shutdown.
    pub async fn add_blob(&self, bytes: impl Into<Bytes>) -> Result<BlobId, NodeError> {
        let blobs = running(&self.blobs, "blobs")?;
        Ok(blobs.send(AddLocalBlob(bytes.into())).await??)
    }

    /// The bytes of blob `id`: from the store if held whole, else fetched from the peers
    /// that hold it (with [`NodeEvent::BlobProgress`] events, and [`NodeEvent::BlobComplete`]
    /// at the end); every piece and the whole are verified against their hashes. Waits until
    /// the fetch completes or fails (after the blob config's `stall_timeout` without
    /// progress, 60 s by default); wrap it in a timeout to wait less.
    ///
    /// # Errors
    /// [`NodeError::Blob`] when the fetch fails or too many run at once;
    /// [`NodeError::Stopped`] after shutdown.
    pub async fn get_blob(&self, id: BlobId) -> Result<Bytes, NodeError> {
        let blobs = running(&self.blobs, "blobs")?;
        Ok(blobs.send(GetBlob(id)).await??)
    }

    /// Whether this node holds blob `id` whole.
    ///
    /// # Errors
    /// [`NodeError::Blob`] if the store fails; [`NodeError::Stopped`] after shutdown.
    pub async fn has_blob(&self, id: BlobId) -> Result<bool, NodeError> {
        let blobs = running(&self.blobs, "blobs")?;
        Ok(blobs.send(HasBlob(id)).await??)
    }

    /// The peers that sent this node blob pieces whose hash or length was wrong, with how
    /// many; such a peer is no longer asked for any blob.
    ///
    /// # Errors
    /// [`NodeError::Stopped`] after shutdown.
    pub async fn blob_corrupt_peers(&self) -> Result<Vec<(NodeId, u32)>, NodeError> {
        let blobs = running(&self.blobs, "blobs")?;
        Ok(blobs.send(GetCorruptPeers).await?)
    }

    /// Stops every actor of the node and closes its socket. Calling it again is harmless.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for stores that flush on shutdown.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        if let Some(blobs) = &self.blobs {
            let _ = blobs.send(Shutdown).await;
        }
        if let Some(feeds) = &self.feeds {
            let _ = feeds.send(Shutdown).await;
        }
        if let Some(flow) = &self.flow {
            let _ = flow.send(Shutdown).await;
        }
        if let Some(state) = &self.state {
            let _ = state.send(Shutdown).await;
        }
        if let Some(failure) = &self.failure {
            let _ = failure.send(Shutdown).await;
        }
        if let Some(dissemination) = &self.dissemination {
            let _ = dissemination.send(Shutdown).await;
        }
        let _ = self.discovery.shutdown.send(Shutdown).await;
        let _ = self.transport.send(Shutdown).await;
        Ok(())
    }
}

/// The local node's key/value state as found in the store at start.
struct RestoredState {
    /// The generation to run with: above the stored one (if any), recorded durably.
    generation: u64,
    /// The stored entries, in write order.
    entries: Vec<gossip_store::OwnEntry>,
}

/// Reads the local node's persisted key/value entries ([`gossip_store::own_state`]) and
/// chooses the generation of this run: `proposed` (the wall clock in ms), or one above the
/// stored generation if the clock is not ahead of it (a clock stepped back, a restart within
/// the same millisecond). The choice is made durable before the node gossips, so no two runs
/// of a node id share a generation and peers replace the previous run's state with what is
/// restored.
async fn load_own_state(
    store: &StoreAddr,
    config: &gossip_core::reconcile::ReconcileConfig,
    proposed: u64,
) -> Result<RestoredState, StartError> {
    let store_err = |e: gossip_store::StoreError| StartError::Store(e.to_string());
    let stopped = |_| StartError::Store("the store actor stopped".into());
    let (stored, entries) = store
        .send(LoadOwnState {
            limit: config.max_keys_per_owner,
        })
        .await
        .map_err(stopped)?
        .map_err(store_err)?;
    let generation = match stored {
        Some(stored) if stored >= proposed => stored.saturating_add(1),
        _ => proposed,
    };
    store
        .send(PutOwnGeneration(generation))
        .await
        .map_err(stopped)?
        .map_err(store_err)?;
    tracing::debug!(
        generation,
        entries = entries.len(),
        "key/value state restored"
    );
    Ok(RestoredState {
        generation,
        entries,
    })
}

/// Reads the local feed's head and the followed feeds from the store and builds the tree core
/// following them. Returns the core and how many feeds it follows.
async fn load_tree(
    store: &StoreAddr,
    node_id: NodeId,
    config: TreeConfig,
    seed: u64,
    now: std::time::Instant,
) -> Result<(Tree<StdRng>, usize), StartError> {
    let store_err = |e: gossip_store::StoreError| StartError::Store(e.to_string());
    let stopped = |_| StartError::Store("the store actor stopped".into());
    let own = FeedId(node_id.0);
    let own_latest = store
        .send(Latest(own))
        .await
        .map_err(stopped)?
        .map_err(store_err)?;
    let mut core = Tree::new(
        node_id,
        own_latest,
        config,
        StdRng::seed_from_u64(seed),
        now,
    )?;
    let follows = store
        .send(Scan {
            table: FOLLOWS_TABLE,
            limit: core.config().max_feeds,
        })
        .await
        .map_err(stopped)?
        .map_err(store_err)?;
    let mut followed = 0;
    for (key, _) in follows {
        let Ok(bytes) = <[u8; 32]>::try_from(key.as_slice()) else {
            continue;
        };
        let feed = FeedId(bytes);
        let latest = store
            .send(Latest(feed))
            .await
            .map_err(stopped)?
            .map_err(store_err)?;
        if core.follow(now, feed, latest).is_ok() {
            followed += 1;
        }
    }
    Ok((core, followed))
}

/// Messages of one feed from `next` on: pages from the store, then live events, each
/// sequence once and in order.
fn feed_stream(
    store: StoreAddr,
    events: broadcast::Receiver<NodeEvent>,
    feed: FeedId,
    next: u64,
) -> impl futures::Stream<Item = FeedMessage> + Send + 'static {
    const PAGE: usize = 64;
    struct State {
        store: StoreAddr,
        events: broadcast::Receiver<NodeEvent>,
        feed: FeedId,
        next: u64,
        page: std::collections::VecDeque<FeedMessage>,
        caught_up: bool,
    }
    let state = State {
        store,
        events,
        feed,
        next,
        page: Default::default(),
        caught_up: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(message) = st.page.pop_front() {
                if message.sequence == st.next {
                    st.next += 1;
                    return Some((message, st));
                }
                continue;
            }
            if !st.caught_up {
                let page = st
                    .store
                    .send(Fetch {
                        feed: st.feed,
                        from_seq: st.next,
                        limit: PAGE,
                    })
                    .await
                    .ok()?
                    .ok()?;
                if page.len() < PAGE {
                    st.caught_up = true;
                }
                st.page.extend(page);
                continue;
            }
            match st.events.recv().await {
                Ok(NodeEvent::FeedMessage(message)) if message.author == st.feed => {
                    if message.sequence == st.next {
                        st.next += 1;
                        return Some((message, st));
                    }
                    if message.sequence > st.next {
                        // Missed some (appended between the last page and the subscription):
                        // read them from the store.
                        st.caught_up = false;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => st.caught_up = false,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

fn running<'a, A: Actor>(
    addr: &'a Option<Addr<A>>,
    protocol: &'static str,
) -> Result<&'a Addr<A>, NodeError> {
    addr.as_ref().ok_or(NodeError::NotRunning { protocol })
}
