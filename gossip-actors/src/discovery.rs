//! Discovery actors. Every other actor reaches discovery only through
//! [`DiscoveryRecipients`](crate::messages::DiscoveryRecipients): [`SelectPeers`],
//! [`PeerStatus`], [`KnownPeers`], [`Liveness`] and [`Shutdown`].
//!
//! # Writing your own discovery actor
//!
//! Any actix actor with a `Context<Self>` that handles those five messages plugs in through
//! [`NodeBuilder::discovery`](crate::NodeBuilder::discovery). Its contract:
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

use actix::prelude::*;
use gossip_core::peers::PeerTable;
use rand::SeedableRng;
use rand::rngs::StdRng;

use std::collections::BTreeSet;

use gossip_core::NodeId;

use crate::failure::Liveness;
use crate::messages::{KnownPeers, PeerStatus, PeerSummary, SelectPeers, Shutdown};

/// Default bound on a static table, in peers.
pub const DEFAULT_STATIC_CAPACITY: usize = 4_096;

/// A discovery table supplied from outside (go-gossip's `Discovery`): the seed addresses,
/// plus, unless turned off, every peer whose authenticated packet arrives.
pub struct StaticDiscovery {
    local_addr: Option<SocketAddr>,
    seeds: Vec<SocketAddr>,
    learn_from_traffic: bool,
    table: PeerTable,
    /// Nodes the failure detector declared dead (bounded by the table: entries of nodes no
    /// longer in the table are dropped when they are forgotten).
    dead: BTreeSet<NodeId>,
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
            dead: BTreeSet::new(),
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
        let mut exclude = msg.exclude;
        if !self.dead.is_empty() {
            exclude.extend(
                self.table
                    .iter()
                    .filter(|(_, info)| info.node_id.is_some_and(|id| self.dead.contains(&id)))
                    .map(|(addr, _)| *addr),
            );
        }
        MessageResult(self.table.select(&mut self.rng, msg.count, &exclude))
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

impl Handler<Liveness> for StaticDiscovery {
    type Result = ();

    fn handle(&mut self, msg: Liveness, _: &mut Context<Self>) {
        match msg {
            Liveness::Dead { node } => {
                if self.table.iter().any(|(_, info)| info.node_id == Some(node)) {
                    self.dead.insert(node);
                }
            }
            Liveness::Live { node } | Liveness::Forgotten { node } => {
                self.dead.remove(&node);
            }
        }
    }
}

impl Handler<KnownPeers> for StaticDiscovery {
    type Result = MessageResult<KnownPeers>;

    fn handle(&mut self, _: KnownPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.table
                .iter()
                .map(|(addr, info)| PeerSummary {
                    addr: *addr,
                    node_id: info.node_id,
                })
                .collect(),
        )
    }
}

impl Handler<Shutdown> for StaticDiscovery {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
