//! [`BlobActor`]: blobs (large objects named by their SHA-256) fetched on demand and served
//! from the store, a thin shell around [`gossip_core::blob::Blobs`].
//!
//! The shell's duties are the ones the core's call order names:
//!
//! - **peers**: every second the known peers of discovery (with their node ids) are handed
//!   to the core as candidates for want rounds; a node the failure detector convicts goes
//!   down;
//! - **store requests**: lookups and piece reads (serving), piece writes (fetching; batched:
//!   the pieces verified since the last write go in one store write, one write at a time, so
//!   a redb store pays one fsync per batch), the final hash, commit and discard go to the
//!   store actor and come back as core inputs;
//! - **waiters**: [`GetBlob`] answers from the store when the blob is held whole, else starts
//!   a fetch and answers when it completes or fails;
//! - **feeds**: with [`BlobActor::fetch_for_feeds`] above 0, every blob referenced
//!   (`blob:<hex>`, [`gossip_core::blob::references`]) by a message of a followed feed is
//!   fetched if it is at most that many bytes.
//!
//! Progress reaches the application as [`NodeEvent::BlobProgress`],
//! [`NodeEvent::BlobComplete`] and [`NodeEvent::BlobFailed`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use actix::prelude::*;
use bytes::Bytes;
use gossip_core::Message;
use gossip_core::blob::{
    BlobEvent, BlobId, BlobMessage, BlobMeta, BlobStats, Blobs, FailReason, FetchError, PieceIndex,
    StoreRequest,
};
use gossip_core::feed::FeedId;
use gossip_store::{AddBlobError, StoreError};
use rand::rngs::StdRng;
use tokio::sync::{broadcast, oneshot};

use crate::dissemination::NodeEvent;
use crate::failure::Liveness;
use crate::messages::{InboundMessage, KnownPeers, SendMessage, Shutdown};
use crate::shell::{TimedShell, now};
use crate::store::{
    AddBlob, BlobLookup, CompleteBlob, HashBlob, PutPieces, ReadBlob, ReadPieces, RemoveBlob,
    StoreAddr,
};

/// How often the core's peers are refreshed from discovery.
pub const PEER_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Most callers waiting on [`GetBlob`] for one blob; more are refused.
pub const MAX_WAITERS_PER_BLOB: usize = 64;

/// Why a blob operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The blob could not be laid out (larger than 1 TiB).
    #[error("the blob cannot be stored: {0}")]
    Layout(String),
    /// The store failed (for example it is full of blobs that may not be evicted).
    #[error("the store failed: {0}")]
    Store(String),
    /// Too many fetches run at once.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The fetch ended without the blob (no holder answered, or none delivered, within the
    /// stall timeout; or the store failed).
    #[error("fetching blob {blob} failed: {reason:?}")]
    Failed {
        /// The blob.
        blob: BlobId,
        /// Why.
        reason: FailReason,
    },
    /// Too many callers wait for this blob.
    #[error("too many callers wait for blob {0}")]
    TooManyWaiters(BlobId),
    /// The blob actor has stopped.
    #[error("the blob actor has stopped")]
    Stopped,
}

impl From<StoreError> for BlobError {
    fn from(e: StoreError) -> Self {
        BlobError::Store(e.to_string())
    }
}

/// Adds `bytes` as a local blob (pinned: never evicted). Replies with its id.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<BlobId, BlobError>")]
pub struct AddLocalBlob(pub Bytes);

/// The bytes of a blob: from the store, or fetched from the peers that hold it.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<Bytes, BlobError>")]
pub struct GetBlob(pub BlobId);

/// Whether the store holds a blob whole.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<bool, BlobError>")]
pub struct HasBlob(pub BlobId);

/// Lists the peers that sent corrupt blob pieces, with how many (see
/// [`Blobs::corrupt_peers`]).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Vec<(gossip_core::NodeId, u32)>")]
pub struct GetCorruptPeers;

/// Reads the blob counters.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "BlobActorStats")]
pub struct GetBlobStats;

/// A feed message the node appended (for fetching the blobs it references).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
struct FeedSeen(gossip_core::feed::FeedMessage);

/// Counters of the blob actor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobActorStats {
    /// The core's counters.
    pub core: BlobStats,
    /// Store writes of fetched pieces (each a batch).
    pub store_writes: u64,
    /// Store operations that failed.
    pub store_errors: u64,
    /// Datagrams not handed to the transport because its mailbox was full.
    pub transport_full: u64,
    /// Fetches started because a followed feed referenced the blob.
    pub fetched_for_feeds: u64,
}

type Waiter = oneshot::Sender<Result<Bytes, BlobError>>;

/// The blob actor of one node. See the module docs.
pub struct BlobActor {
    core: Blobs<StdRng>,
    own_feed: FeedId,
    transport: Recipient<SendMessage>,
    store: StoreAddr,
    events: broadcast::Sender<NodeEvent>,
    discovery: Recipient<KnownPeers>,
    fetch_for_feeds: u64,
    waiters: BTreeMap<BlobId, Vec<Waiter>>,
    writes: VecDeque<(BlobId, u64, BlobMeta, PieceIndex, Bytes)>,
    writing: bool,
    timer: Option<SpawnHandle>,
    stats: BlobActorStats,
}

impl BlobActor {
    /// A shell around `core` for the node whose feed is `own_feed`. With `fetch_for_feeds`
    /// above 0, blobs of at most that many bytes referenced by followed feeds are fetched.
    pub fn new(
        core: Blobs<StdRng>,
        own_feed: FeedId,
        transport: Recipient<SendMessage>,
        store: StoreAddr,
        events: broadcast::Sender<NodeEvent>,
        discovery: Recipient<KnownPeers>,
        fetch_for_feeds: u64,
    ) -> Self {
        BlobActor {
            core,
            own_feed,
            transport,
            store,
            events,
            discovery,
            fetch_for_feeds,
            waiters: BTreeMap::new(),
            writes: VecDeque::new(),
            writing: false,
            timer: None,
            stats: BlobActorStats::default(),
        }
    }

    /// The size limit of blobs fetched for followed feeds, in bytes (0: none are).
    pub fn fetch_for_feeds(&self) -> u64 {
        self.fetch_for_feeds
    }

    fn refresh_peers(&mut self, ctx: &mut Context<Self>) {
        let fut = self
            .discovery
            .send(KnownPeers)
            .into_actor(self)
            .map(|result, act, ctx| {
                let Ok(known) = result else { return };
                for peer in known {
                    match peer.node_id {
                        Some(id) => act.core.handle_peer_up(id, peer.addr),
                        None => act.core.handle_peer_addr(peer.addr),
                    }
                }
                act.drain(ctx);
            });
        ctx.spawn(fut);
    }

    /// Blobs eviction must spare: every fetch in progress (asked for by the application or
    /// for a followed feed).
    fn keep(&self) -> BTreeSet<BlobId> {
        self.core.fetching().into_iter().collect()
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        while let Some(t) = self.core.poll_transmit() {
            let message: Message = t.message.into_message();
            if self
                .transport
                .try_send(SendMessage {
                    to: t.addr,
                    message,
                })
                .is_err()
            {
                self.stats.transport_full += 1;
            }
        }
        // Store requests before events: a completed blob's commit reaches the store before
        // the read that answers its waiters (the store serves in order).
        while let Some(request) = self.core.poll_store_request() {
            self.store_request(request, ctx);
        }
        while let Some(event) = self.core.poll_event() {
            self.on_event(event, ctx);
        }
        self.pump_writes(ctx);
        self.arm_timer(ctx);
    }

    fn on_event(&mut self, event: BlobEvent, ctx: &mut Context<Self>) {
        match event {
            BlobEvent::Progress {
                blob, bytes, size, ..
            } => {
                let _ = self
                    .events
                    .send(NodeEvent::BlobProgress { blob, bytes, size });
            }
            BlobEvent::Complete { blob, size } => {
                let _ = self.events.send(NodeEvent::BlobComplete { blob, size });
                if let Some(waiters) = self.waiters.remove(&blob) {
                    let store = self.store.clone();
                    ctx.spawn(
                        async move {
                            // Marked complete first (again: the core's commit request may not
                            // have reached the store yet), so the read finds it whole.
                            let read = match store.send(CompleteBlob(blob)).await {
                                Ok(Ok(_)) => store.send(ReadBlob(blob)).await,
                                Ok(Err(e)) => Ok(Err(e)),
                                Err(e) => Err(e),
                            };
                            let answer = match read {
                                Ok(Ok(Some(bytes))) => Ok(bytes),
                                Ok(Ok(None)) => Err(BlobError::Store("blob vanished".into())),
                                Ok(Err(e)) => Err(e.into()),
                                Err(_) => Err(BlobError::Stopped),
                            };
                            for waiter in waiters {
                                let _ = waiter.send(answer.clone());
                            }
                        }
                        .into_actor(self),
                    );
                }
            }
            BlobEvent::Failed { blob, reason } => {
                let _ = self.events.send(NodeEvent::BlobFailed { blob, reason });
                for waiter in self.waiters.remove(&blob).unwrap_or_default() {
                    let _ = waiter.send(Err(BlobError::Failed { blob, reason }));
                }
            }
            BlobEvent::CorruptPiece { blob, peer, piece } => {
                tracing::warn!(blob = %blob.short(), peer = %peer.short(), ?piece, "corrupt blob piece");
            }
            BlobEvent::HashMismatch { blob, banned } => {
                tracing::warn!(blob = %blob.short(), banned = banned.len(), "false blob layout");
            }
            other => tracing::debug!(?other, "unhandled blob event"),
        }
    }

    fn store_request(&mut self, request: StoreRequest, ctx: &mut Context<Self>) {
        match request {
            StoreRequest::Lookup { blob, for_peer } => {
                let fut = self.store.send(BlobLookup(blob)).into_actor(self).map(
                    move |result, act, ctx| {
                        let meta = match result {
                            Ok(Ok(record)) => record.filter(|r| r.complete).map(|r| r.meta),
                            _ => {
                                act.stats.store_errors += 1;
                                None
                            }
                        };
                        act.core.handle_lookup(now(), for_peer, blob, meta);
                        act.drain(ctx);
                    },
                );
                ctx.spawn(fut);
            }
            StoreRequest::ReadPieces {
                blob,
                pieces,
                for_peer,
            } => {
                let asked = pieces.clone();
                let fut = self
                    .store
                    .send(ReadPieces { blob, pieces })
                    .into_actor(self)
                    .map(move |result, act, ctx| {
                        let read: Vec<(PieceIndex, Option<Bytes>)> = match result {
                            Ok(Ok(data)) => asked.into_iter().zip(data).collect(),
                            _ => {
                                act.stats.store_errors += 1;
                                asked.into_iter().map(|p| (p, None)).collect()
                            }
                        };
                        act.core.handle_pieces_read(now(), for_peer, blob, read);
                        act.drain(ctx);
                    });
                ctx.spawn(fut);
            }
            StoreRequest::StorePiece {
                blob,
                ticket,
                meta,
                piece,
                data,
            } => self.writes.push_back((blob, ticket, meta, piece, data)),
            StoreRequest::CheckBlob { blob } => {
                let fut = self.store.send(HashBlob(blob)).into_actor(self).map(
                    move |result, act, ctx| {
                        let hash = match result {
                            Ok(Ok(hash)) => hash,
                            _ => {
                                act.stats.store_errors += 1;
                                None
                            }
                        };
                        act.core.handle_blob_hash(now(), blob, hash);
                        act.drain(ctx);
                    },
                );
                ctx.spawn(fut);
            }
            StoreRequest::Commit { blob, .. } => {
                // Ordered after every write of the blob: the store actor serves in order.
                let fut =
                    self.store
                        .send(CompleteBlob(blob))
                        .into_actor(self)
                        .map(|result, act, _| {
                            if !matches!(result, Ok(Ok(true))) {
                                act.stats.store_errors += 1;
                            }
                        });
                ctx.spawn(fut);
            }
            StoreRequest::Discard { blob } => {
                self.writes.retain(|(b, ..)| *b != blob);
                let fut =
                    self.store
                        .send(RemoveBlob(blob))
                        .into_actor(self)
                        .map(|result, act, _| {
                            if !matches!(result, Ok(Ok(_))) {
                                act.stats.store_errors += 1;
                            }
                        });
                ctx.spawn(fut);
            }
            other => tracing::debug!(?other, "unhandled blob store request"),
        }
    }

    /// Writes the pieces verified so far, one store write per blob at a time.
    fn pump_writes(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        let Some((blob, ticket, meta, ..)) = self.writes.front().cloned() else {
            return;
        };
        let mut pieces = Vec::new();
        let mut rest = VecDeque::new();
        while let Some(write) = self.writes.pop_front() {
            if write.0 == blob && write.1 == ticket {
                pieces.push((write.3, write.4));
            } else {
                rest.push_back(write);
            }
        }
        self.writes = rest;
        self.writing = true;
        let written: Vec<PieceIndex> = pieces.iter().map(|(p, _)| *p).collect();
        let fut = self
            .store
            .send(PutPieces {
                blob,
                meta,
                pieces,
                own_feed: self.own_feed,
                keep: self.keep(),
            })
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.writing = false;
                act.stats.store_writes += 1;
                let ok = matches!(result, Ok(Ok(())));
                if !ok {
                    act.stats.store_errors += 1;
                }
                let at = now();
                for piece in written {
                    act.core.handle_stored(at, blob, ticket, piece, ok);
                }
                act.drain(ctx);
            });
        ctx.spawn(fut);
    }

    fn fetch(&mut self, blob: BlobId, max_size: Option<u64>) -> Result<bool, FetchError> {
        let at = now();
        match max_size {
            Some(max) => self.core.fetch_limited(at, blob, max),
            None => self.core.fetch(at, blob),
        }
    }
}

crate::shell::timed_shell!(BlobActor);

impl Actor for BlobActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.refresh_peers(ctx);
        ctx.run_interval(PEER_REFRESH_INTERVAL, |act, ctx| act.refresh_peers(ctx));
        if self.fetch_for_feeds > 0 {
            let mut events = self.events.subscribe();
            let addr = ctx.address();
            let own = self.own_feed;
            actix::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(NodeEvent::FeedMessage(message)) if message.author != own => {
                            if addr.try_send(FeedSeen(message)).is_err() && !addr.connected() {
                                break;
                            }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            if !addr.connected() {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            });
        }
        self.drain(ctx);
    }
}

impl Handler<InboundMessage> for BlobActor {
    type Result = ();

    fn handle(&mut self, msg: InboundMessage, ctx: &mut Context<Self>) {
        let Some(message) = BlobMessage::from_message(msg.message) else {
            return;
        };
        self.core
            .handle_message(msg.received_at, msg.sender, msg.from, message);
        self.drain(ctx);
    }
}

impl Handler<Liveness> for BlobActor {
    type Result = ();

    fn handle(&mut self, msg: Liveness, ctx: &mut Context<Self>) {
        if let Liveness::Dead { node } = msg {
            self.core.handle_peer_down(now(), node);
            self.drain(ctx);
        }
    }
}

impl Handler<FeedSeen> for BlobActor {
    type Result = ();

    fn handle(&mut self, msg: FeedSeen, ctx: &mut Context<Self>) {
        for blob in gossip_core::blob::references(&msg.0.content) {
            let store = self.store.clone();
            let limit = self.fetch_for_feeds;
            // Only blobs the store does not hold whole.
            let fut = async move { store.send(BlobLookup(blob)).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let held = matches!(result, Ok(Ok(Some(r))) if r.complete);
                    if !held && matches!(act.fetch(blob, Some(limit)), Ok(true)) {
                        act.stats.fetched_for_feeds += 1;
                    }
                    act.drain(ctx);
                });
            ctx.spawn(fut);
        }
    }
}

impl Handler<AddLocalBlob> for BlobActor {
    type Result = ResponseActFuture<Self, Result<BlobId, BlobError>>;

    fn handle(&mut self, msg: AddLocalBlob, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let add = AddBlob {
            bytes: msg.0,
            chunk_size: self.core.config().chunk_size(),
            own_feed: self.own_feed,
            keep: self.keep(),
        };
        Box::pin(
            async move {
                match store.send(add).await {
                    Ok(Ok((id, _))) => Ok(id),
                    Ok(Err(AddBlobError::Layout(e))) => Err(BlobError::Layout(e.to_string())),
                    Ok(Err(AddBlobError::Store(e))) => Err(e.into()),
                    Ok(Err(other)) => Err(BlobError::Store(other.to_string())),
                    Err(_) => Err(BlobError::Stopped),
                }
            }
            .into_actor(self)
            // A fetch of the same blob that is running goes on: its pieces verify against
            // the same tree, and its waiters are answered when it completes.
            .map(|result, _, _| result),
        )
    }
}

impl Handler<GetBlob> for BlobActor {
    type Result = ResponseActFuture<Self, Result<Bytes, BlobError>>;

    fn handle(&mut self, msg: GetBlob, _: &mut Context<Self>) -> Self::Result {
        let blob = msg.0;
        let store = self.store.clone();
        Box::pin(
            async move { store.send(ReadBlob(blob)).await }
                .into_actor(self)
                .then(move |read, act, ctx| {
                    let (tx, rx) = oneshot::channel();
                    match read {
                        Ok(Ok(Some(bytes))) => {
                            let _ = tx.send(Ok(bytes));
                        }
                        Err(_) => {
                            let _ = tx.send(Err(BlobError::Stopped));
                        }
                        Ok(result) => {
                            if let Err(e) = result {
                                act.stats.store_errors += 1;
                                tracing::debug!(%e, "blob read failed; fetching");
                            }
                            let waiting = act.waiters.get(&blob).map_or(0, Vec::len);
                            if waiting >= MAX_WAITERS_PER_BLOB {
                                let _ = tx.send(Err(BlobError::TooManyWaiters(blob)));
                            } else {
                                match act.fetch(blob, None) {
                                    Ok(_) => act.waiters.entry(blob).or_default().push(tx),
                                    Err(e) => {
                                        let _ = tx.send(Err(e.into()));
                                    }
                                }
                                act.drain(ctx);
                            }
                        }
                    }
                    async move { rx.await.unwrap_or(Err(BlobError::Stopped)) }.into_actor(act)
                }),
        )
    }
}

impl Handler<HasBlob> for BlobActor {
    type Result = ResponseFuture<Result<bool, BlobError>>;

    fn handle(&mut self, msg: HasBlob, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            match store.send(BlobLookup(msg.0)).await {
                Ok(Ok(record)) => Ok(record.is_some_and(|r| r.complete)),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(BlobError::Stopped),
            }
        })
    }
}

impl Handler<GetBlobStats> for BlobActor {
    type Result = MessageResult<GetBlobStats>;

    fn handle(&mut self, _: GetBlobStats, _: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats;
        stats.core = self.core.stats();
        MessageResult(stats)
    }
}

impl Handler<GetCorruptPeers> for BlobActor {
    type Result = MessageResult<GetCorruptPeers>;

    fn handle(&mut self, _: GetCorruptPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.corrupt_peers())
    }
}

impl Handler<Shutdown> for BlobActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
