//! Discovery actors. Every other actor reaches discovery only through
//! [`DiscoveryRecipients`]: [`SelectPeers`],
//! [`PeerStatus`], [`KnownPeers`], [`Liveness`] and [`Shutdown`].
//!
//! # Writing your own discovery actor
//!
//! Any actix actor with a `Context<Self>` that handles those five messages plugs in through
//! [`NodeBuilder::discovery`](crate::NodeBuilder::discovery): implement [`Discovery`] for a
//! value that starts the actor, given the node's id, address and transport
//! ([`DiscoveryContext`]), and returns its [`DiscoveryRecipients`] plus the packet types it
//! speaks (so the transport routes them to it). The messages' contract:
//!
//! - `SelectPeers { count, exclude }` MUST answer at most `count` distinct addresses, none in
//!   `exclude` and never the node's own address, chosen uniformly at random among the peers
//!   it knows (a biased choice, such as always the first `count`, breaks the epidemic's
//!   guarantees: go-gossip shipped that bug). Answering fewer, or none, is allowed.
//! - `PeerStatus` is advisory: `Seen` arrives for every authenticated packet, so handle it in
//!   constant time and keep the table bounded.
//! - `KnownPeers` lists what it knows, in a stable order.
//! - `Liveness::Dead` from the failure detector MUST keep that node out of selections until
//!   `Liveness::Live` (or drop it; CYCLON removes it from the view at once).
//! - `Shutdown` stops the actor.

use std::net::SocketAddr;
use std::time::Instant;

use actix::prelude::*;
use gossip_core::membership::{Cyclon, CyclonConfig, CyclonEvent, CyclonMessage, CyclonStats};
use gossip_core::peers::PeerTable;
use gossip_core::{Message, PacketType};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::messages::{DiscoveryRecipients, InboundMessage, SendMessage};
use crate::shell::{now, peer_span};

use crate::failure::Liveness;
use crate::messages::{KnownPeers, PeerStatus, PeerSummary, SelectPeers, Shutdown};

/// What a discovery actor is given when its node starts.
#[derive(Clone, Debug)]
pub struct DiscoveryContext {
    /// The node's id.
    pub node_id: gossip_core::NodeId,
    /// The node's bound address (never to be selected).
    pub local_addr: SocketAddr,
    /// The node's transport, for discovery protocols that send messages of their own.
    pub transport: Recipient<SendMessage>,
    /// A seed for the actor's random choices, derived from the node's seed.
    pub rng_seed: u64,
    /// When the node started.
    pub now: Instant,
    /// The node's span (`node{id=…, addr=…}`): enter it while handling, so that log lines
    /// name the node.
    pub span: tracing::Span,
}

/// A started discovery actor.
#[derive(Debug)]
pub struct StartedDiscovery {
    /// How every other actor reaches it.
    pub recipients: DiscoveryRecipients,
    /// Packet types the transport must route to it (empty for a discovery without messages).
    pub routes: Vec<(PacketType, Recipient<InboundMessage>)>,
}

/// A discovery actor that can be started for a node: the seam through which static tables,
/// CYCLON, a DHT or a user's own actor plug into [`NodeBuilder`](crate::NodeBuilder).
pub trait Discovery: Send + std::fmt::Debug + 'static {
    /// Starts the actor on the current arbiter.
    ///
    /// # Errors
    /// A configuration the actor refuses, as text (the node then fails to start).
    fn start(self: Box<Self>, ctx: DiscoveryContext) -> Result<StartedDiscovery, String>;
}

/// Default bound on a static table, in peers.
pub const DEFAULT_STATIC_CAPACITY: usize = 4_096;

/// A discovery table supplied from outside (go-gossip's `Discovery`): the seed addresses,
/// plus, unless turned off, every peer whose authenticated packet arrives.
pub struct StaticDiscovery {
    local_addr: Option<SocketAddr>,
    seeds: Vec<SocketAddr>,
    learn_from_traffic: bool,
    /// Known peers; those the failure detector declared dead are marked and never selected.
    table: PeerTable,
    rng: StdRng,
}

impl std::fmt::Debug for StaticDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticDiscovery")
            .field("local_addr", &self.local_addr)
            .field("peers", &self.table.len())
            .field("learn_from_traffic", &self.learn_from_traffic)
            .finish_non_exhaustive()
    }
}

impl StaticDiscovery {
    /// A table holding `seeds`, bounded at [`DEFAULT_STATIC_CAPACITY`] peers, learning peers
    /// from traffic.
    pub fn new(seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        StaticDiscovery {
            local_addr: None,
            seeds: seeds.into_iter().collect(),
            learn_from_traffic: true,
            table: PeerTable::new(DEFAULT_STATIC_CAPACITY),
            rng: StdRng::seed_from_u64(0),
        }
    }

    /// Keep exactly the seeds (and peers added with [`PeerStatus::Add`]); ignore traffic.
    pub fn fixed(mut self) -> Self {
        self.learn_from_traffic = false;
        self
    }

    /// Bounds the table at `capacity` peers (further peers are refused, never evicted).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.table = PeerTable::new(capacity);
        self
    }

    /// Called by the node builder: never select `addr` (this node), and seed the random
    /// choice.
    pub fn bind(mut self, local_addr: SocketAddr, rng_seed: u64) -> Self {
        self.local_addr = Some(local_addr);
        self.rng = StdRng::seed_from_u64(rng_seed);
        self
    }

    fn add(&mut self, addr: SocketAddr, node_id: Option<gossip_core::NodeId>) {
        if Some(addr) == self.local_addr {
            return;
        }
        let now = tokio::time::Instant::now().into_std();
        self.table.insert(now, addr, node_id);
    }
}

impl Discovery for StaticDiscovery {
    fn start(self: Box<Self>, ctx: DiscoveryContext) -> Result<StartedDiscovery, String> {
        let addr = Actor::start(self.bind(ctx.local_addr, ctx.rng_seed));
        Ok(StartedDiscovery {
            recipients: DiscoveryRecipients::of(&addr),
            routes: Vec::new(),
        })
    }
}

impl Actor for StaticDiscovery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        for seed in std::mem::take(&mut self.seeds) {
            self.add(seed, None);
        }
    }
}

impl Handler<SelectPeers> for StaticDiscovery {
    type Result = MessageResult<SelectPeers>;

    fn handle(&mut self, msg: SelectPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.table.select(&mut self.rng, msg.count, &msg.exclude))
    }
}

impl Handler<PeerStatus> for StaticDiscovery {
    type Result = ();

    fn handle(&mut self, msg: PeerStatus, _: &mut Context<Self>) {
        match msg {
            PeerStatus::Seen { addr, node_id, at } => {
                if self.table.contains(&addr) {
                    self.table.mark_seen(at, &addr, Some(node_id));
                } else if self.learn_from_traffic {
                    self.add(addr, Some(node_id));
                }
            }
            PeerStatus::Add { addr } => self.add(addr, None),
            PeerStatus::Remove { addr } => {
                self.table.remove(&addr);
            }
        }
    }
}

/// Applies a failure detector verdict to a discovery table: a convicted peer is skipped by
/// selection until it is heard again (or forgotten by the detector). Shared by the
/// table-based discovery actors ([`StaticDiscovery`], `DhtDiscovery`).
pub(crate) fn apply_liveness(table: &mut PeerTable, verdict: Liveness) {
    match verdict {
        Liveness::Dead { node } => table.set_dead(&node, true),
        Liveness::Live { node } | Liveness::Forgotten { node } => table.set_dead(&node, false),
    };
}

/// Every peer of a discovery table, as [`KnownPeers`] answers it.
pub(crate) fn known_peers(table: &PeerTable) -> Vec<PeerSummary> {
    table
        .iter()
        .map(|(addr, info)| PeerSummary {
            addr: *addr,
            node_id: info.node_id,
        })
        .collect()
}

impl Handler<Liveness> for StaticDiscovery {
    type Result = ();

    fn handle(&mut self, msg: Liveness, _: &mut Context<Self>) {
        apply_liveness(&mut self.table, msg);
    }
}

impl Handler<KnownPeers> for StaticDiscovery {
    type Result = MessageResult<KnownPeers>;

    fn handle(&mut self, _: KnownPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(known_peers(&self.table))
    }
}

impl Handler<Shutdown> for StaticDiscovery {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// CYCLON membership (Voulgaris, Gavidia, van Steen 2005) as the node's discovery: a partial
/// view of `view_size` peers kept fresh by periodic shuffles with the oldest neighbour, a thin
/// shell around [`gossip_core::membership::Cyclon`]. Peer selection draws uniformly from the
/// view; a peer convicted by the failure detector leaves the view at once.
pub struct CyclonDiscovery {
    seeds: Vec<SocketAddr>,
    config: CyclonConfig,
    core: Option<Cyclon<StdRng>>,
    transport: Option<Recipient<SendMessage>>,
    timer: Option<SpawnHandle>,
    transport_full: u64,
    span: tracing::Span,
}

impl std::fmt::Debug for CyclonDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CyclonDiscovery")
            .field("seeds", &self.seeds)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CyclonDiscovery {
    /// CYCLON with the default configuration (view 20, shuffle 8, every 1000 ms), joining
    /// through `seeds`.
    pub fn new(seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        CyclonDiscovery {
            seeds: seeds.into_iter().collect(),
            config: CyclonConfig::default(),
            core: None,
            transport: None,
            timer: None,
            transport_full: 0,
            span: tracing::Span::none(),
        }
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: CyclonConfig) -> Self {
        self.config = config;
        self
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        let span = self.span.clone();
        let _node = span.enter();
        let (Some(core), Some(transport)) = (self.core.as_mut(), self.transport.as_ref()) else {
            return;
        };
        while let Some(transmit) = core.poll_transmit() {
            let message = match transmit.message {
                CyclonMessage::Shuffle(m) => Message::CyclonShuffle(m),
                CyclonMessage::Reply(m) => Message::CyclonShuffleReply(m),
            };
            if transport
                .try_send(SendMessage {
                    to: transmit.to,
                    message,
                })
                .is_err()
            {
                self.transport_full += 1;
            }
        }
        while let Some(event) = core.poll_event() {
            match event {
                CyclonEvent::NeighborUp { node, addr } => {
                    tracing::debug!(node = %node.short(), %addr, "neighbour up")
                }
                CyclonEvent::NeighborDown { node, .. } => {
                    tracing::debug!(node = %node.short(), "neighbour down")
                }
                other => tracing::debug!(?other, "unhandled cyclon event"),
            }
        }
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(deadline) = self.core.as_ref().and_then(|c| c.poll_timeout()) {
            let delay = deadline.saturating_duration_since(now());
            self.timer = Some(ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                if let Some(core) = act.core.as_mut() {
                    core.handle_timeout(now());
                }
                act.drain(ctx);
            }));
        }
    }
}

impl Discovery for CyclonDiscovery {
    fn start(mut self: Box<Self>, ctx: DiscoveryContext) -> Result<StartedDiscovery, String> {
        let mut core = Cyclon::new(
            ctx.node_id,
            ctx.local_addr,
            self.config.clone(),
            StdRng::seed_from_u64(ctx.rng_seed),
            ctx.now,
        )
        .map_err(|e| e.to_string())?;
        for seed in std::mem::take(&mut self.seeds) {
            if seed != ctx.local_addr {
                core.add_seed(ctx.now, None, seed);
            }
        }
        self.core = Some(core);
        self.transport = Some(ctx.transport);
        self.span = ctx.span;
        let addr = Actor::start(*self);
        let inbound: Recipient<InboundMessage> = addr.clone().recipient();
        Ok(StartedDiscovery {
            recipients: DiscoveryRecipients::of(&addr),
            routes: vec![
                (PacketType::CyclonShuffle, inbound.clone()),
                (PacketType::CyclonShuffleReply, inbound),
            ],
        })
    }
}

impl Actor for CyclonDiscovery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.drain(ctx);
    }
}

impl Handler<InboundMessage> for CyclonDiscovery {
    type Result = ();

    fn handle(&mut self, msg: InboundMessage, ctx: &mut Context<Self>) {
        let _peer = peer_span(&self.span, &msg).entered();
        let Some(core) = self.core.as_mut() else {
            return;
        };
        match msg.message {
            Message::CyclonShuffle(shuffle) => {
                core.handle_shuffle(msg.received_at, msg.from, msg.sender, shuffle)
            }
            Message::CyclonShuffleReply(reply) => {
                core.handle_shuffle_reply(msg.received_at, msg.from, msg.sender, reply)
            }
            _ => return,
        }
        self.drain(ctx);
    }
}

impl Handler<SelectPeers> for CyclonDiscovery {
    type Result = MessageResult<SelectPeers>;

    fn handle(&mut self, msg: SelectPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.core
                .as_mut()
                .map(|core| core.select(msg.count, &msg.exclude))
                .unwrap_or_default(),
        )
    }
}

impl Handler<PeerStatus> for CyclonDiscovery {
    type Result = ();

    fn handle(&mut self, msg: PeerStatus, ctx: &mut Context<Self>) {
        // The view is CYCLON's own: traffic does not add to it (that would bias the in-degree
        // towards talkative nodes). An explicit `Add` is a seed to join through.
        if let (PeerStatus::Add { addr }, Some(core)) = (msg, self.core.as_mut()) {
            core.add_seed(now(), None, addr);
            self.drain(ctx);
        }
    }
}

impl Handler<Liveness> for CyclonDiscovery {
    type Result = ();

    fn handle(&mut self, msg: Liveness, ctx: &mut Context<Self>) {
        if let (Liveness::Dead { node }, Some(core)) = (msg, self.core.as_mut()) {
            core.handle_peer_dead(now(), node);
            self.drain(ctx);
        }
    }
}

impl Handler<KnownPeers> for CyclonDiscovery {
    type Result = MessageResult<KnownPeers>;

    fn handle(&mut self, _: KnownPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.core
                .as_ref()
                .map(|core| {
                    core.view()
                        .map(|d| PeerSummary {
                            addr: d.addr,
                            node_id: Some(d.node),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        )
    }
}

/// Reads CYCLON's counters.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Option<CyclonStats>")]
pub struct GetCyclonStats;

impl Handler<GetCyclonStats> for CyclonDiscovery {
    type Result = Option<CyclonStats>;

    fn handle(&mut self, _: GetCyclonStats, _: &mut Context<Self>) -> Self::Result {
        self.core.as_ref().map(|core| core.stats())
    }
}

impl Handler<Shutdown> for CyclonDiscovery {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
