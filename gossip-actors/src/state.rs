//! [`StateActor`]: Scuttlebutt key/value reconciliation with AIMD flow control, a thin shell
//! around [`gossip_core::reconcile::Reconcile`]; and [`FlowControlActor`], the bounded queue
//! of updates waiting for the rate to admit them.
//!
//! The state actor feeds the core its inputs (the gossip timer, inbound `StateDigest` /
//! `StateReply` / `StateDeltas`, failure detector verdicts, local writes) and drains its
//! outputs: transmits to the transport, [`NodeEvent::NewPeer`] and [`NodeEvent::Update`] to
//! subscribers, every heartbeat advance to the failure detector (so a node that never talks
//! to us directly is still known alive), and every newly learned address to discovery.
//!
//! The update rate itself is decided by the core: its signals (deltas that overflowed the
//! datagram budget, rates piggybacked on every exchange) arrive in reconciliation messages.
//! [`StateActor`] answers a write at once, refusing with [`StateError::Backpressure`] above
//! the rate. Every local write of a node goes through [`FlowControlActor`], which keeps them in
//! submission order: [`Set`] and [`DeleteKey`] wait in its bounded queue (the head is retried
//! when the backpressure error says a token will be there), and [`TryWrite`] is passed on only
//! while nothing waits (otherwise refused with [`SetError::Waiting`]), so a newer value is never
//! overwritten by an older one that was still queued.

use std::collections::VecDeque;

use actix::prelude::*;
use bytes::Bytes;
use gossip_core::reconcile::{
    NodeStateView, Reconcile, ReconcileStats, StateError, StateEvent, StateMessage,
};
use gossip_core::{Message, NodeId};
use rand::rngs::StdRng;
use tokio::sync::{broadcast, oneshot};

use crate::dissemination::NodeEvent;
use crate::failure::{Heartbeat, Liveness};
use crate::messages::{InboundMessage, PeerStatus, SendMessage, Shutdown};
use crate::shell::{TimedShell, now, peer_span};
use crate::store::{PutOwnEntry, StoreAddr};

/// Sets a local key now, or refuses. Replies with the version taken, once the write is
/// durable in the node's store (when the actor persists, see [`StateActor::persist_to`]).
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<u64, SetError>")]
pub struct TrySet {
    /// The key (at most the core's `max_key_len` bytes).
    pub key: String,
    /// The value (at most the core's `max_value_len` bytes).
    pub value: Bytes,
}

/// Deletes a local key (a tombstone). Replies with the version taken, `None` if the key held
/// no value, once the delete is durable in the node's store (when the actor persists).
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<Option<u64>, SetError>")]
pub struct Delete {
    /// The key.
    pub key: String,
}

/// Reads `node`'s value of `key` as held here: `(value, version)`.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Option<(Bytes, u64)>")]
pub struct GetValue {
    /// The owner.
    pub node: NodeId,
    /// The key.
    pub key: String,
}

/// Reads everything held of `node`.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Option<NodeStateView>")]
pub struct GetNodeState {
    /// The node.
    pub node: NodeId,
}

/// Lists every node whose state is held here (the local node included), sorted.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Vec<NodeId>")]
pub struct ListNodes;

/// Reads the state actor's counters.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "StateActorStats")]
pub struct GetStateStats;

/// Counters of the state actor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateActorStats {
    /// The reconciliation core's counters.
    pub core: ReconcileStats,
    /// The current maximum update rate, in thousandths of an update per second.
    pub rate_milli: u32,
    /// Datagrams not handed to the transport because its mailbox was full.
    pub transport_full: u64,
    /// Heartbeats or peer news lost because the failure detector's or discovery's mailbox was
    /// full.
    pub notifications_dropped: u64,
}

/// Converts a core message to the wire message it travels as (types 16, 17, 18).
pub fn to_wire(message: StateMessage) -> Message {
    match message {
        StateMessage::Digest(m) => Message::StateDigest(m),
        StateMessage::Reply(m) => Message::StateReply(m),
        StateMessage::Deltas(m) => Message::StateDeltas(m),
    }
}

fn from_wire(message: Message) -> Option<StateMessage> {
    match message {
        Message::StateDigest(m) => Some(StateMessage::Digest(m)),
        Message::StateReply(m) => Some(StateMessage::Reply(m)),
        Message::StateDeltas(m) => Some(StateMessage::Deltas(m)),
        _ => None,
    }
}

/// The state actor of one node. See the module docs.
pub struct StateActor {
    core: Reconcile<StdRng>,
    transport: Recipient<SendMessage>,
    heartbeats: Option<Recipient<Heartbeat>>,
    discovery: Option<Recipient<PeerStatus>>,
    events: broadcast::Sender<NodeEvent>,
    timer: Option<SpawnHandle>,
    transport_full: u64,
    notifications_dropped: u64,
    span: tracing::Span,
    /// Where the local node's own writes are persisted, with the generation they belong to.
    store: Option<(StoreAddr, u64)>,
}

impl StateActor {
    /// A shell around `core` that sends through `transport`, reports heartbeats to the failure
    /// detector (if any) and new addresses to discovery (if any), and publishes on `events`.
    pub fn new(
        core: Reconcile<StdRng>,
        transport: Recipient<SendMessage>,
        heartbeats: Option<Recipient<Heartbeat>>,
        discovery: Option<Recipient<PeerStatus>>,
        events: broadcast::Sender<NodeEvent>,
    ) -> Self {
        StateActor {
            core,
            transport,
            heartbeats,
            discovery,
            events,
            timer: None,
            transport_full: 0,
            notifications_dropped: 0,
            span: tracing::Span::none(),
            store: None,
        }
    }

    /// Runs the actor's work inside `span` (the node's span, `node{id=…, addr=…}`, set by
    /// the node builder), so its log lines name the node.
    pub fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// Persists every local write in `store` ([`gossip_store::own_state`]) before answering
    /// it: a `set` stores the entry with the core's generation and the version taken, a
    /// `delete` removes it, and the reply comes once the store says the write is durable.
    /// The write is applied to the core (and may be gossiped) at once; if the store then
    /// fails, the caller gets [`SetError::Store`].
    ///
    /// Requests reach the store in the order the writes were applied, and the store serves
    /// them in that order, so the stored entry of a key is its latest write.
    pub fn persist_to(mut self, store: StoreAddr) -> Self {
        let local = self.core.local_id();
        let generation = self
            .core
            .digest_entry(&local)
            .map_or(0, |entry| entry.generation);
        self.store = Some((store, generation));
        self
    }

    /// Records the write of `key` (`None`: deleted) at `version`; resolves when durable.
    fn persist(
        &self,
        key: String,
        version: u64,
        value: Option<Bytes>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SetError>>>> {
        let Some((store, generation)) = &self.store else {
            return Box::pin(std::future::ready(Ok(())));
        };
        let request = store.request(PutOwnEntry {
            key,
            generation: *generation,
            version,
            value,
        });
        Box::pin(async move {
            match request.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(SetError::Store(err)),
                Err(_) => Err(SetError::Store(gossip_store::StoreError::Backend(
                    "the store actor stopped".into(),
                ))),
            }
        })
    }

    fn heartbeat(&mut self, node: NodeId) {
        if let Some(recipient) = &self.heartbeats
            && recipient.try_send(Heartbeat { node, at: now() }).is_err()
        {
            self.notifications_dropped += 1;
        }
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        let span = self.span.clone();
        let _node = span.enter();
        while let Some(transmit) = self.core.poll_transmit() {
            let message = to_wire(transmit.message);
            if self
                .transport
                .try_send(SendMessage {
                    to: transmit.to,
                    message,
                })
                .is_err()
            {
                self.transport_full += 1;
            }
        }
        while let Some(event) = self.core.poll_event() {
            match event {
                StateEvent::NewNode { node, addr, .. } => {
                    tracing::info!(node = %node.short(), %addr, "new peer");
                    self.heartbeat(node);
                    if let Some(discovery) = &self.discovery
                        && discovery.try_send(PeerStatus::Add { addr }).is_err()
                    {
                        self.notifications_dropped += 1;
                    }
                    let _ = self.events.send(NodeEvent::NewPeer { node, addr });
                }
                StateEvent::Update {
                    node,
                    key,
                    value,
                    version,
                } => {
                    let _ = self.events.send(NodeEvent::Update {
                        node,
                        key,
                        value,
                        version,
                    });
                }
                StateEvent::HeartbeatAdvanced { node, .. }
                | StateEvent::NodeRestarted { node, .. } => self.heartbeat(node),
                StateEvent::NodeForgotten { .. } => {}
                other => tracing::debug!(?other, "unhandled state event"),
            }
        }
        self.arm_timer(ctx);
    }
}

crate::shell::timed_shell!(StateActor);

impl Actor for StateActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.arm_timer(ctx);
    }
}

impl Handler<InboundMessage> for StateActor {
    type Result = ();

    fn handle(&mut self, msg: InboundMessage, ctx: &mut Context<Self>) {
        let _peer = peer_span(&self.span, &msg).entered();
        if let Some(message) = from_wire(msg.message) {
            self.core
                .handle_message(msg.received_at, msg.from, msg.sender, message);
            self.drain(ctx);
        }
    }
}

impl Handler<PeerStatus> for StateActor {
    type Result = ();

    /// An operator's peer, or the source of an authenticated packet from a node whose state
    /// is not held yet, becomes a seed: state reconciliation then finds peers whatever
    /// discovery runs.
    fn handle(&mut self, msg: PeerStatus, _: &mut Context<Self>) {
        match msg {
            PeerStatus::Add { addr } => {
                self.core.add_seed(addr);
            }
            PeerStatus::Seen { addr, node_id, .. } if self.core.node_state(&node_id).is_none() => {
                self.core.add_seed(addr);
            }
            _ => {}
        }
    }
}

impl Handler<Liveness> for StateActor {
    type Result = ();

    fn handle(&mut self, msg: Liveness, ctx: &mut Context<Self>) {
        match msg {
            Liveness::Dead { node } => self.core.handle_peer_dead(now(), node),
            Liveness::Live { node } => self.core.handle_peer_live(now(), node),
            Liveness::Forgotten { .. } => {}
        }
        self.drain(ctx);
    }
}

impl Handler<TrySet> for StateActor {
    type Result = ResponseFuture<Result<u64, SetError>>;

    fn handle(&mut self, msg: TrySet, ctx: &mut Context<Self>) -> Self::Result {
        let version = match self.core.set(now(), &msg.key, msg.value.clone()) {
            Ok(version) => version,
            Err(err) => return Box::pin(std::future::ready(Err(SetError::State(err)))),
        };
        self.drain(ctx);
        let durable = self.persist(msg.key, version, Some(msg.value));
        Box::pin(async move { durable.await.map(|()| version) })
    }
}

impl Handler<Delete> for StateActor {
    type Result = ResponseFuture<Result<Option<u64>, SetError>>;

    fn handle(&mut self, msg: Delete, ctx: &mut Context<Self>) -> Self::Result {
        let version = match self.core.delete(now(), &msg.key) {
            Ok(Some(version)) => version,
            Ok(None) => return Box::pin(std::future::ready(Ok(None))),
            Err(err) => return Box::pin(std::future::ready(Err(SetError::State(err)))),
        };
        self.drain(ctx);
        let durable = self.persist(msg.key, version, None);
        Box::pin(async move { durable.await.map(|()| Some(version)) })
    }
}

impl Handler<GetValue> for StateActor {
    type Result = Option<(Bytes, u64)>;

    fn handle(&mut self, msg: GetValue, _: &mut Context<Self>) -> Self::Result {
        self.core.get(&msg.node, &msg.key)
    }
}

impl Handler<GetNodeState> for StateActor {
    type Result = Option<NodeStateView>;

    fn handle(&mut self, msg: GetNodeState, _: &mut Context<Self>) -> Self::Result {
        self.core.node_state(&msg.node)
    }
}

impl Handler<ListNodes> for StateActor {
    type Result = MessageResult<ListNodes>;

    fn handle(&mut self, _: ListNodes, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.nodes().collect())
    }
}

impl Handler<GetStateStats> for StateActor {
    type Result = MessageResult<GetStateStats>;

    fn handle(&mut self, _: GetStateStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(StateActorStats {
            core: self.core.stats(),
            rate_milli: gossip_core::flow::to_milli(self.core.flow().rate()),
            transport_full: self.transport_full,
            notifications_dropped: self.notifications_dropped,
        })
    }
}

impl Handler<Shutdown> for StateActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Sets a local key, waiting (in a bounded queue, in order) while the update rate refuses it.
#[derive(Message, Debug)]
#[rtype(result = "Result<u64, SetError>")]
pub struct Set {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
}

/// Deletes a local key, waiting in the same queue as [`Set`].
#[derive(Message, Debug)]
#[rtype(result = "Result<Option<u64>, SetError>")]
pub struct DeleteKey {
    /// The key.
    pub key: String,
}

/// Sets a local key now or refuses: passed to the state actor only while no write waits.
#[derive(Message, Debug)]
#[rtype(result = "Result<u64, SetError>")]
pub struct TryWrite(pub TrySet);

/// Why a local write failed. The state did not change, except for [`SetError::Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// Writes submitted earlier still wait for the update rate; this one would overtake them.
    #[error("{queued} earlier writes still wait for the update rate")]
    Waiting {
        /// Writes waiting.
        queued: usize,
    },
    /// `capacity` updates are already waiting; try again later or use `try_set`.
    #[error("{capacity} updates are already waiting for the update rate")]
    QueueFull {
        /// The queue's bound, in updates.
        capacity: usize,
    },
    /// The update itself was refused (key too long, value too large, too many keys, or above
    /// the rate for a `try_set`). The state did not change.
    #[error(transparent)]
    State(StateError),
    /// The write was applied to the node's state (and may have been gossiped) but the store
    /// failed to make it durable: it may be lost if the node restarts.
    #[error("the write is not durable: {0}")]
    Store(gossip_store::StoreError),
    /// The state actor has stopped.
    #[error("the state actor has stopped")]
    Stopped,
}

/// Reads the flow control actor's counters.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "FlowActorStats")]
pub struct GetFlowStats;

/// Counters of the flow control actor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowActorStats {
    /// Updates waiting now.
    pub queued: usize,
    /// Updates that waited at least once for the rate.
    pub delayed: u64,
    /// Updates refused because the queue was full.
    pub refused_full: u64,
}

/// A write on its way to the state actor: the version taken (`None`: nothing to delete).
type WriteRequest = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Result<Option<u64>, SetError>, MailboxError>>>,
>;

enum Write {
    Set { key: String, value: Bytes },
    Delete { key: String },
}

type Waiting = (Write, oneshot::Sender<Result<Option<u64>, SetError>>);

/// Serves every local write in order: queues [`Set`] and [`DeleteKey`] (bounded, first in
/// first out) and passes each to the state actor once the rate admits it, sleeping for the
/// `retry_after` of each [`StateError::Backpressure`]; passes [`TryWrite`] on only when the
/// queue is empty.
pub struct FlowControlActor {
    state: Recipient<TrySet>,
    delete: Recipient<Delete>,
    capacity: usize,
    queue: VecDeque<Waiting>,
    busy: bool,
    stats: FlowActorStats,
}

impl FlowControlActor {
    /// A queue of at most `capacity` waiting writes in front of the state actor.
    pub fn new(state: Recipient<TrySet>, delete: Recipient<Delete>, capacity: usize) -> Self {
        FlowControlActor {
            state,
            delete,
            capacity: capacity.max(1),
            queue: VecDeque::new(),
            busy: false,
            stats: FlowActorStats::default(),
        }
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Some((write, reply)) = self.queue.pop_front() else {
            return;
        };
        if reply.is_closed() {
            // The caller gave up: do not write on its behalf.
            return self.pump(ctx);
        }
        self.busy = true;
        let request: WriteRequest = match &write {
            Write::Set { key, value } => {
                let request = self.state.send(TrySet {
                    key: key.clone(),
                    value: value.clone(),
                });
                Box::pin(async move { request.await.map(|r| r.map(Some)) })
            }
            Write::Delete { key } => {
                let request = self.delete.send(Delete { key: key.clone() });
                Box::pin(request)
            }
        };
        ctx.spawn(request.into_actor(self).map(move |result, act, ctx| {
            act.busy = false;
            match result {
                Ok(Err(SetError::State(StateError::Backpressure(bp)))) => {
                    act.stats.delayed += 1;
                    act.queue.push_front((write, reply));
                    act.busy = true;
                    ctx.run_later(bp.retry_after, |act, ctx| {
                        act.busy = false;
                        act.pump(ctx);
                    });
                    return;
                }
                Ok(Ok(version)) => {
                    let _ = reply.send(Ok(version));
                }
                Ok(Err(err)) => {
                    let _ = reply.send(Err(err));
                }
                Err(_) => {
                    let _ = reply.send(Err(SetError::Stopped));
                }
            }
            act.pump(ctx);
        }));
    }

    fn enqueue(
        &mut self,
        write: Write,
        ctx: &mut Context<Self>,
    ) -> Result<oneshot::Receiver<Result<Option<u64>, SetError>>, SetError> {
        if self.queue.len() >= self.capacity {
            self.stats.refused_full += 1;
            return Err(SetError::QueueFull {
                capacity: self.capacity,
            });
        }
        let (tx, rx) = oneshot::channel();
        self.queue.push_back((write, tx));
        self.pump(ctx);
        Ok(rx)
    }
}

impl Actor for FlowControlActor {
    type Context = Context<Self>;
}

impl Handler<Set> for FlowControlActor {
    type Result = ResponseFuture<Result<u64, SetError>>;

    fn handle(&mut self, msg: Set, ctx: &mut Context<Self>) -> Self::Result {
        let write = Write::Set {
            key: msg.key,
            value: msg.value,
        };
        match self.enqueue(write, ctx) {
            Ok(rx) => Box::pin(async move {
                match rx.await {
                    Ok(Ok(Some(version))) => Ok(version),
                    Ok(Ok(None)) | Err(_) => Err(SetError::Stopped),
                    Ok(Err(err)) => Err(err),
                }
            }),
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }
}

impl Handler<DeleteKey> for FlowControlActor {
    type Result = ResponseFuture<Result<Option<u64>, SetError>>;

    fn handle(&mut self, msg: DeleteKey, ctx: &mut Context<Self>) -> Self::Result {
        match self.enqueue(Write::Delete { key: msg.key }, ctx) {
            Ok(rx) => Box::pin(async move { rx.await.unwrap_or(Err(SetError::Stopped)) }),
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }
}

impl Handler<TryWrite> for FlowControlActor {
    type Result = ResponseFuture<Result<u64, SetError>>;

    fn handle(&mut self, msg: TryWrite, _: &mut Context<Self>) -> Self::Result {
        if self.busy || !self.queue.is_empty() {
            let queued = self.queue.len() + usize::from(self.busy);
            return Box::pin(async move { Err(SetError::Waiting { queued }) });
        }
        let request = self.state.send(msg.0);
        Box::pin(async move {
            match request.await {
                Ok(result) => result,
                Err(_) => Err(SetError::Stopped),
            }
        })
    }
}

impl Handler<GetFlowStats> for FlowControlActor {
    type Result = MessageResult<GetFlowStats>;

    fn handle(&mut self, _: GetFlowStats, _: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats;
        stats.queued = self.queue.len();
        MessageResult(stats)
    }
}

impl Handler<Shutdown> for FlowControlActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
