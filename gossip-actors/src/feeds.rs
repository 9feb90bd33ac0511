//! [`FeedTreeActor`]: signed feeds replicated over per-feed epidemic broadcast trees, a thin
//! shell around [`gossip_core::tree::Tree`] with the store actor ([`crate::store`]) as its log.
//!
//! The shell's duties are the ones the core's call order names:
//!
//! - **durability**: each validated message ([`TreeEvent::Received`]) and each published one
//!   is appended through the store, strictly one at a time in the order produced, and only
//!   once the store replies `Ok` does the core hear [`Tree::handle_appended`] (after which it
//!   may forward the message) and the publisher get its answer;
//! - **store requests**: fetches for pushes, fork checks and peer clocks go to the store and
//!   come back as core inputs;
//! - **peers**: every second the actor tops its tree peers up to `target_peers`, drawn
//!   uniformly at random from discovery's known peers (CYCLON's partial view is a random graph,
//!   so the trees' overlay is connected; taking the first nodes heard instead splits it into
//!   clusters); any node that sends tree messages becomes a peer too (links are symmetric), up
//!   to the core's `max_peers`; a node the failure detector convicts goes down, and its clock
//!   is stored so that the next handshake sends only what changed;
//! - **follows** are persisted in the store's `follows` table and restored at start.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use gossip_core::feed::{FeedId, FeedMessage, MessageHash};
use gossip_core::tree::{
    FeedLinks, PublishError, StoreRequest, Tree, TreeEvent, TreeMessage, TreeStats,
};
use gossip_core::{Message, NodeId};
use gossip_crypto::Identity;
use gossip_store::StoreError;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use tokio::sync::{broadcast, oneshot};

use crate::dissemination::NodeEvent;
use crate::failure::Liveness;
use crate::messages::{InboundMessage, KnownPeers, SendMessage, Shutdown};
use crate::shell::{TimedShell, now, peer_span};
use crate::store::{Append, Fetch, GetClock, MessageAt, PutClock, StoreAddr};

/// The store table that remembers followed feeds (key: the feed id, value: empty).
pub const FOLLOWS_TABLE: &str = "follows";

/// Source of message timestamps, in milliseconds since the Unix epoch.
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock as a [`WallClock`].
pub fn system_clock() -> WallClock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// Appends `content` to the local feed. Replies once the message is durable.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<Published, PublishFailed>")]
pub struct Publish {
    /// The content (at most the tree's `max_content_len` bytes).
    pub content: Bytes,
}

/// A message appended to the local feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// Its sequence in the local feed (from 1).
    pub sequence: u64,
    /// Its id (SHA-256 of the signed encoding).
    pub id: MessageHash,
}

/// Why a publish failed. Nothing was appended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishFailed {
    /// The core refused it (too large, naming both sizes; backlog; forked feed).
    #[error(transparent)]
    Refused(#[from] PublishError),
    /// The store could not append it.
    #[error("the store refused the message: {0}")]
    Store(StoreError),
    /// The feed actor has stopped.
    #[error("the feed actor has stopped")]
    Stopped,
}

/// Starts replicating `feed` (persisted). Replies `true` if it was not followed before.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<bool, FollowFailed>")]
pub struct Follow(pub FeedId);

/// Stops replicating `feed` (persisted; its log is kept). Replies `true` if it was followed.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<bool, FollowFailed>")]
pub struct Unfollow(pub FeedId);

/// Why a follow or unfollow failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowFailed {
    /// The core refused (too many feeds, or the feed is the local one).
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error("the store failed: {0}")]
    Store(StoreError),
    /// The feed actor has stopped.
    #[error("the feed actor has stopped")]
    Stopped,
}

/// Reads the feed tree counters.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "FeedActorStats")]
pub struct GetFeedStats;

/// Reads the links of every followed feed ([`Tree::feed_links`]), ascending by feed.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Vec<FeedLinks>")]
pub struct GetFeedLinks;

/// Counters of the feed tree actor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedActorStats {
    /// The core's counters.
    pub core: TreeStats,
    /// Messages appended durably (received and published).
    pub appended: u64,
    /// Appends the store refused.
    pub append_errors: u64,
    /// Store reads (fetches, fork checks, clocks) that failed.
    pub store_errors: u64,
    /// Datagrams not handed to the transport because its mailbox was full.
    pub transport_full: u64,
    /// Tree peers currently up.
    pub peers_up: usize,
}

/// Encodes a peer clock for the store: 40 bytes per entry (feed id, note as i64 BE).
pub fn encode_clock(clock: &[(FeedId, i64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(clock.len() * 40);
    for (feed, note) in clock {
        out.extend_from_slice(&feed.0);
        out.extend_from_slice(&note.to_be_bytes());
    }
    out
}

/// Decodes [`encode_clock`]'s bytes; `None` if the length is not a multiple of 40.
pub fn decode_clock(bytes: &[u8]) -> Option<Vec<(FeedId, i64)>> {
    if bytes.len() % 40 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(40)
            .map(|chunk| {
                let mut feed = [0u8; 32];
                feed.copy_from_slice(&chunk[..32]);
                let mut note = [0u8; 8];
                note.copy_from_slice(&chunk[32..]);
                (FeedId(feed), i64::from_be_bytes(note))
            })
            .collect(),
    )
}

enum AppendJob {
    Received(FeedMessage),
    Published(
        FeedMessage,
        oneshot::Sender<Result<Published, PublishFailed>>,
    ),
}

/// The feed tree actor of one node. See the module docs.
pub struct FeedTreeActor {
    core: Tree<StdRng>,
    identity: Arc<Identity>,
    transport: Recipient<SendMessage>,
    store: StoreAddr,
    events: broadcast::Sender<NodeEvent>,
    clock: WallClock,
    discovery: Recipient<KnownPeers>,
    rng: StdRng,
    target_peers: usize,
    peers: BTreeMap<NodeId, SocketAddr>,
    pending_up: BTreeSet<NodeId>,
    appends: VecDeque<AppendJob>,
    appending: bool,
    timer: Option<SpawnHandle>,
    stats: FeedActorStats,
    span: tracing::Span,
}

impl FeedTreeActor {
    /// A shell around `core` (already following the persisted feeds) for the node whose
    /// identity is `identity`, drawing up to `target_peers` tree peers from `discovery`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        core: Tree<StdRng>,
        identity: Arc<Identity>,
        transport: Recipient<SendMessage>,
        store: StoreAddr,
        events: broadcast::Sender<NodeEvent>,
        clock: WallClock,
        discovery: Recipient<KnownPeers>,
        rng_seed: u64,
        target_peers: usize,
    ) -> Self {
        FeedTreeActor {
            core,
            identity,
            transport,
            store,
            events,
            clock,
            discovery,
            rng: StdRng::seed_from_u64(rng_seed),
            target_peers,
            peers: BTreeMap::new(),
            pending_up: BTreeSet::new(),
            appends: VecDeque::new(),
            appending: false,
            timer: None,
            stats: FeedActorStats::default(),
            span: tracing::Span::none(),
        }
    }

    /// Runs the actor's work inside `span` (the node's span, `node{id=…, addr=…}`, set by
    /// the node builder), so its log lines name the node.
    pub fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    fn peer_up(&mut self, node: NodeId, addr: SocketAddr, ctx: &mut Context<Self>) {
        // At most `max_peers` links, pending ones included: nodes that speak to us about feeds
        // cannot grow this set past the core's own bound.
        if node == self.core.local_id()
            || self.peers.contains_key(&node)
            || self.peers.len() + self.pending_up.len() >= self.core.config().max_peers
            || !self.pending_up.insert(node)
        {
            return;
        }
        let fut = self
            .store
            .send(GetClock(node))
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.pending_up.remove(&node);
                let stored = match result {
                    Ok(Ok(bytes)) => bytes.and_then(|b| decode_clock(&b)),
                    _ => {
                        act.stats.store_errors += 1;
                        None
                    }
                };
                match act.core.handle_peer_up(now(), node, addr, stored) {
                    Ok(()) => {
                        act.peers.insert(node, addr);
                    }
                    Err(err) => tracing::debug!(node = %node.short(), %err, "tree peer refused"),
                }
                act.drain(ctx);
            });
        ctx.spawn(fut);
    }

    /// Tops the tree peers up to `target_peers` with known peers drawn uniformly at random.
    fn top_up(&mut self, ctx: &mut Context<Self>) {
        let wanted = self
            .target_peers
            .saturating_sub(self.peers.len() + self.pending_up.len());
        if wanted == 0 {
            return;
        }
        let fut = self
            .discovery
            .send(KnownPeers)
            .into_actor(self)
            .map(move |result, act, ctx| {
                let Ok(known) = result else { return };
                let local = act.core.local_id();
                let candidates: Vec<(NodeId, SocketAddr)> = known
                    .into_iter()
                    .filter_map(|p| p.node_id.map(|id| (id, p.addr)))
                    .filter(|(id, _)| {
                        *id != local && !act.peers.contains_key(id) && !act.pending_up.contains(id)
                    })
                    .collect();
                let chosen: Vec<(NodeId, SocketAddr)> = candidates
                    .choose_multiple(&mut act.rng, wanted)
                    .copied()
                    .collect();
                for (node, addr) in chosen {
                    act.peer_up(node, addr, ctx);
                }
            });
        ctx.spawn(fut);
    }

    fn peer_down(&mut self, node: NodeId, ctx: &mut Context<Self>) {
        if self.peers.remove(&node).is_some() {
            self.core.handle_peer_down(now(), node);
            self.drain(ctx);
        }
    }

    fn send(&mut self, addr: SocketAddr, message: Message) {
        if self
            .transport
            .try_send(SendMessage { to: addr, message })
            .is_err()
        {
            self.stats.transport_full += 1;
        }
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        let span = self.span.clone();
        let _node = span.enter();
        while let Some(transmit) = self.core.poll_transmit() {
            let message = match transmit.message {
                TreeMessage::Notes(notes) => Message::TreeNotes(notes),
                TreeMessage::Batch(batch) => Message::TreeBatch(batch),
            };
            self.send(transmit.addr, message);
        }
        while let Some(event) = self.core.poll_event() {
            match event {
                TreeEvent::Received { message, .. } => {
                    self.appends.push_back(AppendJob::Received(message));
                }
                TreeEvent::Forked { feed, .. } => {
                    tracing::warn!(feed = ?feed, "feed forked: no longer replicated");
                    let _ = self.events.send(NodeEvent::FeedForked { feed });
                }
                TreeEvent::FeedAdvanced { .. } | TreeEvent::SourceSwitched { .. } => {}
                other => tracing::debug!(?other, "unhandled tree event"),
            }
        }
        while let Some(request) = self.core.poll_store_request() {
            self.store_request(request, ctx);
        }
        self.pump_appends(ctx);
        self.arm_timer(ctx);
    }

    fn store_request(&mut self, request: StoreRequest, ctx: &mut Context<Self>) {
        match request {
            StoreRequest::Fetch {
                feed,
                from_seq,
                limit,
                for_peer,
            } => {
                let fut = self
                    .store
                    .send(Fetch {
                        feed,
                        from_seq,
                        limit,
                    })
                    .into_actor(self)
                    .map(move |result, act, ctx| {
                        let messages = match result {
                            Ok(Ok(messages)) => messages,
                            _ => {
                                act.stats.store_errors += 1;
                                Vec::new()
                            }
                        };
                        act.core.handle_fetched(now(), for_peer, feed, messages);
                        act.drain(ctx);
                    });
                ctx.spawn(fut);
            }
            StoreRequest::StoreClock { peer, clock } => {
                let fut = self
                    .store
                    .send(PutClock {
                        peer,
                        clock: encode_clock(&clock),
                    })
                    .into_actor(self)
                    .map(|result, act, _| {
                        if !matches!(result, Ok(Ok(()))) {
                            act.stats.store_errors += 1;
                        }
                    });
                ctx.spawn(fut);
            }
            StoreRequest::CheckFork { message } => {
                let query = MessageAt {
                    feed: message.author,
                    sequence: message.sequence,
                };
                let fut = self
                    .store
                    .send(query)
                    .into_actor(self)
                    .map(move |result, act, ctx| {
                        let stored = match result {
                            Ok(Ok(stored)) => stored,
                            _ => {
                                act.stats.store_errors += 1;
                                None
                            }
                        };
                        act.core.handle_fork_check(now(), message, stored);
                        act.drain(ctx);
                    });
                ctx.spawn(fut);
            }
            other => tracing::debug!(?other, "unhandled store request"),
        }
    }

    /// Appends the next queued message, one at a time, so each feed is appended in order.
    fn pump_appends(&mut self, ctx: &mut Context<Self>) {
        if self.appending {
            return;
        }
        let Some(job) = self.appends.pop_front() else {
            return;
        };
        self.appending = true;
        let message = match &job {
            AppendJob::Received(m) | AppendJob::Published(m, _) => m.clone(),
        };
        let fut = self
            .store
            .send(Append(message.clone()))
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.appending = false;
                let ok = matches!(result, Ok(Ok(())));
                if ok {
                    act.stats.appended += 1;
                    if let Err(rejection) = act.core.handle_appended(now(), &message) {
                        tracing::debug!(?rejection, "appended message not taken by the tree");
                    }
                    let _ = act.events.send(NodeEvent::FeedMessage(message.clone()));
                } else {
                    act.stats.append_errors += 1;
                    act.core.handle_append_failed(now(), message.author);
                }
                if let AppendJob::Published(message, reply) = job {
                    let answer = match result {
                        Ok(Ok(())) => Ok(Published {
                            sequence: message.sequence,
                            id: message.id(),
                        }),
                        Ok(Err(err)) => Err(PublishFailed::Store(err)),
                        Err(_) => Err(PublishFailed::Stopped),
                    };
                    let _ = reply.send(answer);
                }
                act.drain(ctx);
            });
        ctx.spawn(fut);
    }
}

crate::shell::timed_shell!(FeedTreeActor);

impl Actor for FeedTreeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.drain(ctx);
        ctx.run_interval(PEER_MAINTENANCE_INTERVAL, |act, ctx| act.top_up(ctx));
    }
}

/// How often the tree peers are topped up from discovery.
pub const PEER_MAINTENANCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Handler<InboundMessage> for FeedTreeActor {
    type Result = ();

    fn handle(&mut self, msg: InboundMessage, ctx: &mut Context<Self>) {
        let _peer = peer_span(&self.span, &msg).entered();
        match self.peers.get(&msg.sender) {
            None => {
                // A node that speaks to us about feeds is a tree peer (the link is symmetric);
                // this message is lost, and retransmitted by the sender's next note round.
                self.peer_up(msg.sender, msg.from, ctx);
                return;
            }
            Some(addr) if *addr != msg.from => {
                // The peer restarted on another address: take the link down (its clock is
                // stored) and up again at the new address.
                self.peer_down(msg.sender, ctx);
                self.peer_up(msg.sender, msg.from, ctx);
                return;
            }
            Some(_) => {}
        }
        let now = msg.received_at;
        match msg.message {
            Message::TreeNotes(notes) => self.core.handle_notes(now, msg.sender, notes),
            Message::TreeBatch(batch) => self.core.handle_batch(now, msg.sender, batch),
            _ => return,
        }
        self.drain(ctx);
    }
}

impl Handler<Liveness> for FeedTreeActor {
    type Result = ();

    fn handle(&mut self, msg: Liveness, ctx: &mut Context<Self>) {
        if let Liveness::Dead { node } = msg {
            self.peer_down(node, ctx);
        }
    }
}

impl Handler<Publish> for FeedTreeActor {
    type Result = ResponseFuture<Result<Published, PublishFailed>>;

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) -> Self::Result {
        let timestamp = (self.clock)();
        let result = self
            .core
            .publish(now(), &self.identity, timestamp, msg.content);
        let message = match result {
            Ok(message) => message,
            Err(err) => return Box::pin(async move { Err(PublishFailed::Refused(err)) }),
        };
        let (tx, rx) = oneshot::channel();
        self.appends.push_back(AppendJob::Published(message, tx));
        self.drain(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(PublishFailed::Stopped)) })
    }
}

impl Handler<Follow> for FeedTreeActor {
    type Result = ResponseActFuture<Self, Result<bool, FollowFailed>>;

    /// Reads the feed's head, asks the core, and persists the follow only if the core took it
    /// (undoing it in the core if the store fails), so a refused follow is never saved.
    fn handle(&mut self, msg: Follow, _: &mut Context<Self>) -> Self::Result {
        let feed = msg.0;
        if feed == self.core.own_feed() {
            return Box::pin(actix::fut::ready(Err(FollowFailed::Refused(
                "a node always replicates its own feed; it cannot follow it".into(),
            ))));
        }
        let store = self.store.clone();
        let latest = async move {
            store
                .send(crate::store::Latest(feed))
                .await
                .map_err(|_| FollowFailed::Stopped)?
                .map_err(FollowFailed::Store)
        };
        let store = self.store.clone();
        Box::pin(
            latest
                .into_actor(self)
                .map(move |latest, act, ctx| {
                    let added = act
                        .core
                        .follow(now(), feed, latest?)
                        .map_err(|e| FollowFailed::Refused(e.to_string()))?;
                    act.drain(ctx);
                    Ok(added)
                })
                .then(move |added: Result<bool, FollowFailed>, act, _| {
                    let persist = async move {
                        let added = added?;
                        if added {
                            store
                                .send(crate::store::Put {
                                    table: FOLLOWS_TABLE,
                                    key: feed.0.to_vec(),
                                    value: Vec::new(),
                                })
                                .await
                                .map_err(|_| FollowFailed::Stopped)?
                                .map_err(FollowFailed::Store)?;
                        }
                        Ok(added)
                    };
                    persist.into_actor(act).map(move |result, act, ctx| {
                        if matches!(result, Err(FollowFailed::Store(_) | FollowFailed::Stopped)) {
                            act.core.unfollow(now(), feed);
                            act.drain(ctx);
                        }
                        result
                    })
                }),
        )
    }
}

impl Handler<Unfollow> for FeedTreeActor {
    type Result = ResponseActFuture<Self, Result<bool, FollowFailed>>;

    fn handle(&mut self, msg: Unfollow, ctx: &mut Context<Self>) -> Self::Result {
        let feed = msg.0;
        let was = self.core.unfollow(now(), feed);
        self.drain(ctx);
        let store = self.store.clone();
        Box::pin(
            async move {
                store
                    .send(crate::store::Remove {
                        table: FOLLOWS_TABLE,
                        key: feed.0.to_vec(),
                    })
                    .await
                    .map_err(|_| FollowFailed::Stopped)?
                    .map_err(FollowFailed::Store)?;
                Ok(was)
            }
            .into_actor(self),
        )
    }
}

impl Handler<GetFeedStats> for FeedTreeActor {
    type Result = MessageResult<GetFeedStats>;

    fn handle(&mut self, _: GetFeedStats, _: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats;
        stats.core = self.core.stats();
        stats.peers_up = self.peers.len();
        MessageResult(stats)
    }
}

impl Handler<GetFeedLinks> for FeedTreeActor {
    type Result = MessageResult<GetFeedLinks>;

    fn handle(&mut self, _: GetFeedLinks, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.feed_links())
    }
}

impl Handler<Shutdown> for FeedTreeActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
