//! The node's storage (a [`gossip_store::NodeStore`]) behind a mailbox, reached through a
//! [`StoreAddr`]:
//!
//! - a persistent store runs in [`StoreActor`], on an actix `SyncArbiter` thread, so that disk
//!   work (a redb commit waits for `fsync`) never blocks the node's event loop;
//! - an in-memory store does no IO and runs in [`InlineStoreActor`] on the node's own arbiter.
//!   This also keeps simulations deterministic: a reply from another thread would let a
//!   paused tokio clock advance while the node waits for it.
//!
//! Either way one actor serves the store, so requests are handled in the order they were
//! sent: the feed tree actor relies on this to append each feed in sequence order.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use std::collections::BTreeSet;

use bytes::Bytes;
use gossip_core::NodeId;
use gossip_core::blob::{BlobId, BlobMeta, PieceIndex};
use gossip_core::feed::{FeedId, FeedMessage, MessageHash};
use gossip_store::{AddBlobError, BlobRecord, NodeStore, StoreError};

/// Appends a message to its feed's log; durable when the reply is `Ok`.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Append(pub FeedMessage);

/// Reads up to `limit` messages of `feed` from `from_seq`, in order.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<Vec<FeedMessage>, StoreError>")]
pub struct Fetch {
    /// The feed.
    pub feed: FeedId,
    /// First sequence.
    pub from_seq: u64,
    /// Most messages.
    pub limit: usize,
}

/// Reads the message of `feed` at `sequence`.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<Option<FeedMessage>, StoreError>")]
pub struct MessageAt {
    /// The feed.
    pub feed: FeedId,
    /// The sequence.
    pub sequence: u64,
}

/// Reads the head of `feed`: `(sequence, id)`.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<Option<(u64, MessageHash)>, StoreError>")]
pub struct Latest(pub FeedId);

/// Stores a peer's last clock (opaque bytes).
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<(), StoreError>")]
pub struct PutClock {
    /// The peer.
    pub peer: NodeId,
    /// The encoded clock.
    pub clock: Vec<u8>,
}

/// Reads a peer's last clock.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<Option<Vec<u8>>, StoreError>")]
pub struct GetClock(pub NodeId);

/// Writes `value` under `key` in `table` (the generic [`gossip_store::Store`] tables).
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Put {
    /// The table.
    pub table: &'static str,
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// Removes `key` from `table`; replies whether it existed.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct Remove {
    /// The table.
    pub table: &'static str,
    /// The key.
    pub key: Vec<u8>,
}

/// Lists up to `limit` entries of `table`, in key order.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<Vec<gossip_store::Entry>, StoreError>")]
pub struct Scan {
    /// The table.
    pub table: &'static str,
    /// Most entries.
    pub limit: usize,
}

/// Records a write of the local node's key/value state ([`gossip_store::own_state`]):
/// `Some(value)` stores the entry, `None` (a delete) removes it. Durable when the reply is
/// `Ok`.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<(), StoreError>")]
pub struct PutOwnEntry {
    /// The key.
    pub key: String,
    /// The generation the node runs with.
    pub generation: u64,
    /// The owner's version of the write.
    pub version: u64,
    /// The value; `None` for a delete.
    pub value: Option<bytes::Bytes>,
}

/// Reads the local node's stored key/value state: replies with the stored generation and up
/// to `limit` stored entries, in write order.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(Option<u64>, Vec<gossip_store::OwnEntry>), StoreError>")]
pub struct LoadOwnState {
    /// Most entries read (the state's `max_keys_per_owner`).
    pub limit: usize,
}

/// Records the generation the local node's key/value state runs with now. Durable when the
/// reply is `Ok`.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(), StoreError>")]
pub struct PutOwnGeneration(pub u64);

fn put_own_entry(s: &mut dyn NodeStore, msg: &PutOwnEntry) -> Result<(), StoreError> {
    match &msg.value {
        Some(value) => s.put_own_entry(&msg.key, msg.generation, msg.version, value),
        None => s.remove_own_entry(&msg.key).map(|_| ()),
    }
}

type Loaded = (Option<u64>, Vec<gossip_store::OwnEntry>);

fn load_own_state(s: &mut dyn NodeStore, msg: &LoadOwnState) -> Result<Loaded, StoreError> {
    Ok((s.own_generation()?, s.own_entries(msg.limit)?))
}

/// Reads a blob's record.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<Option<BlobRecord>, StoreError>")]
pub struct BlobLookup(pub BlobId);

/// Reads pieces of a blob, each `None` where the store lacks it.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<Vec<Option<Bytes>>, StoreError>")]
pub struct ReadPieces {
    /// The blob.
    pub blob: BlobId,
    /// The pieces.
    pub pieces: Vec<PieceIndex>,
}

/// Stores verified pieces of a blob being fetched, in one write. If the blob store is full,
/// first evicts blobs that no followed feed (`own_feed` and the feeds of the `follows` table)
/// references, that are not pinned and not in `keep`, to make room; then tries once more.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<(), StoreError>")]
pub struct PutPieces {
    /// The blob.
    pub blob: BlobId,
    /// Its layout.
    pub meta: BlobMeta,
    /// The pieces.
    pub pieces: Vec<(PieceIndex, Bytes)>,
    /// The node's own feed (always followed).
    pub own_feed: FeedId,
    /// Blobs that must not be evicted (fetches in progress).
    pub keep: BTreeSet<BlobId>,
}

/// Adds a local blob, pinned, evicting as [`PutPieces`] does if the store is full.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<(BlobId, BlobMeta), AddBlobError>")]
pub struct AddBlob {
    /// The bytes.
    pub bytes: Bytes,
    /// Chunk size, in bytes.
    pub chunk_size: u32,
    /// The node's own feed.
    pub own_feed: FeedId,
    /// Blobs that must not be evicted.
    pub keep: BTreeSet<BlobId>,
}

/// The SHA-256 of a blob's stored data, `None` if a chunk is missing.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<Option<[u8; 32]>, StoreError>")]
pub struct HashBlob(pub BlobId);

/// Marks a blob complete.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct CompleteBlob(pub BlobId);

/// Removes a blob; replies with the bytes freed.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct RemoveBlob(pub BlobId);

/// Reads a complete blob's bytes.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<Option<Bytes>, StoreError>")]
pub struct ReadBlob(pub BlobId);

/// The feeds whose references keep blobs: the own feed and every followed one.
fn followed_feeds(store: &dyn NodeStore, own_feed: FeedId) -> Result<Vec<FeedId>, StoreError> {
    let mut feeds = vec![own_feed];
    for (key, _) in store.range(crate::feeds::FOLLOWS_TABLE, &[], &[0xff; 64], usize::MAX)? {
        if let Ok(id) = <[u8; 32]>::try_from(key.as_slice()) {
            feeds.push(FeedId(id));
        }
    }
    Ok(feeds)
}

/// Runs `write`; if the blob store is full, evicts (see [`PutPieces`]) and runs it again.
fn with_room<T>(
    store: &mut dyn NodeStore,
    own_feed: FeedId,
    keep: &BTreeSet<BlobId>,
    mut write: impl FnMut(&mut dyn NodeStore) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match write(store) {
        Err(StoreError::BlobsFull { needed, limit }) => {
            let feeds = followed_feeds(store, own_feed)?;
            let current = store.blob_bytes()?;
            let extra = needed.saturating_sub(current);
            let target = limit.saturating_sub(extra);
            let removed = gossip_store::evict_blobs(store, &feeds, keep, target)?;
            tracing::debug!(removed = removed.len(), "blobs evicted to make room");
            write(store)
        }
        other => other,
    }
}

fn put_pieces(store: &mut dyn NodeStore, msg: &PutPieces) -> Result<(), StoreError> {
    with_room(store, msg.own_feed, &msg.keep, |s| {
        s.put_pieces(msg.blob, msg.meta, &msg.pieces)
    })
}

fn add_blob(store: &mut dyn NodeStore, msg: &AddBlob) -> Result<(BlobId, BlobMeta), AddBlobError> {
    let mut layout_error = None;
    let result = with_room(
        store,
        msg.own_feed,
        &msg.keep,
        |s| match gossip_store::add_blob(s, &msg.bytes, msg.chunk_size, true) {
            Ok(added) => Ok(added),
            Err(AddBlobError::Store(e)) => Err(e),
            Err(other) => {
                layout_error = Some(other);
                Err(StoreError::Corrupt("layout".into()))
            }
        },
    );
    match (result, layout_error) {
        (_, Some(layout)) => Err(layout),
        (result, None) => result.map_err(AddBlobError::Store),
    }
}

fn read_pieces(store: &dyn NodeStore, msg: &ReadPieces) -> Result<Vec<Option<Bytes>>, StoreError> {
    msg.pieces
        .iter()
        .map(|p| Ok(store.piece(msg.blob, *p)?.map(Bytes::from)))
        .collect()
}

/// The storage actor on its own thread, for stores that touch the disk. See the module docs.
pub struct StoreActor {
    store: Arc<Mutex<Box<dyn NodeStore>>>,
}

/// The storage actor on the node's arbiter, for stores that do no IO. See the module docs.
pub struct InlineStoreActor {
    store: Box<dyn NodeStore>,
}

/// The address of a node's storage actor, whichever kind it is.
#[derive(Clone)]
pub enum StoreAddr {
    /// A [`StoreActor`] on its own thread.
    Threaded(Addr<StoreActor>),
    /// An [`InlineStoreActor`] on the node's arbiter.
    Inline(Addr<InlineStoreActor>),
}

impl std::fmt::Debug for StoreAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreAddr::Threaded(_) => "StoreAddr::Threaded",
            StoreAddr::Inline(_) => "StoreAddr::Inline",
        })
    }
}

impl StoreAddr {
    /// Starts `store` on its own thread.
    pub fn threaded(store: Box<dyn NodeStore>) -> Self {
        let store = Arc::new(Mutex::new(store));
        StoreAddr::Threaded(SyncArbiter::start(1, move || StoreActor {
            store: Arc::clone(&store),
        }))
    }

    /// Starts `store` on the current arbiter (only for stores that never block).
    pub fn inline(store: Box<dyn NodeStore>) -> Self {
        StoreAddr::Inline(InlineStoreActor { store }.start())
    }

    /// Enqueues `msg` in the store's mailbox now (so requests made one after the other are
    /// served in that order) and returns the future of the reply.
    ///
    /// # Errors
    /// The future resolves to [`MailboxError`] if the store actor has stopped.
    pub fn request<M>(
        &self,
        msg: M,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<M::Result, MailboxError>>>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        StoreActor: Handler<M>,
        InlineStoreActor: Handler<M>,
    {
        match self {
            StoreAddr::Threaded(addr) => Box::pin(addr.send(msg)),
            StoreAddr::Inline(addr) => Box::pin(addr.send(msg)),
        }
    }

    /// Sends `msg` to the store and waits for the reply.
    ///
    /// # Errors
    /// [`MailboxError`] if the store actor has stopped.
    pub fn send<M>(
        &self,
        msg: M,
    ) -> impl std::future::Future<Output = Result<M::Result, MailboxError>> + 'static
    where
        M: Message + Send + 'static,
        M::Result: Send,
        StoreActor: Handler<M>,
        InlineStoreActor: Handler<M>,
    {
        let this = self.clone();
        async move {
            match this {
                StoreAddr::Threaded(addr) => addr.send(msg).await,
                StoreAddr::Inline(addr) => addr.send(msg).await,
            }
        }
    }
}

impl Actor for InlineStoreActor {
    type Context = Context<Self>;
}

macro_rules! inline_handlers {
    ($($msg:ty => $result:ty, |$s:ident, $m:ident| $body:expr;)*) => {
        $(
            impl Handler<$msg> for InlineStoreActor {
                type Result = $result;
                fn handle(&mut self, $m: $msg, _: &mut Context<Self>) -> Self::Result {
                    let $s = self.store.as_mut();
                    $body
                }
            }
        )*
    };
}

inline_handlers! {
    Append => Result<(), StoreError>, |s, msg| s.append(&msg.0);
    Fetch => Result<Vec<FeedMessage>, StoreError>, |s, msg| s.messages(msg.feed, msg.from_seq, msg.limit);
    MessageAt => Result<Option<FeedMessage>, StoreError>, |s, msg| s.message(msg.feed, msg.sequence);
    Latest => Result<Option<(u64, MessageHash)>, StoreError>, |s, msg| s.latest(msg.0);
    PutClock => Result<(), StoreError>, |s, msg| s.put_clock(msg.peer, &msg.clock);
    GetClock => Result<Option<Vec<u8>>, StoreError>, |s, msg| s.clock(msg.0);
    Put => Result<(), StoreError>, |s, msg| s.put(msg.table, &msg.key, &msg.value);
    Remove => Result<bool, StoreError>, |s, msg| s.delete(msg.table, &msg.key);
    Scan => Result<Vec<gossip_store::Entry>, StoreError>, |s, msg| s.range(msg.table, &[], &[0xff; 64], msg.limit);
    BlobLookup => Result<Option<BlobRecord>, StoreError>, |s, msg| s.blob(msg.0);
    ReadPieces => Result<Vec<Option<Bytes>>, StoreError>, |s, msg| read_pieces(s, &msg);
    PutPieces => Result<(), StoreError>, |s, msg| put_pieces(s, &msg);
    AddBlob => Result<(BlobId, BlobMeta), AddBlobError>, |s, msg| add_blob(s, &msg);
    HashBlob => Result<Option<[u8; 32]>, StoreError>, |s, msg| gossip_store::blob_hash(s, msg.0);
    CompleteBlob => Result<bool, StoreError>, |s, msg| s.mark_complete(msg.0);
    RemoveBlob => Result<u64, StoreError>, |s, msg| s.remove_blob(msg.0);
    ReadBlob => Result<Option<Bytes>, StoreError>, |s, msg| gossip_store::read_blob(s, msg.0);
    PutOwnEntry => Result<(), StoreError>, |s, msg| put_own_entry(s, &msg);
    LoadOwnState => Result<Loaded, StoreError>, |s, msg| load_own_state(s, &msg);
    PutOwnGeneration => Result<(), StoreError>, |s, msg| s.put_own_generation(msg.0);
}

macro_rules! threaded_handlers {
    ($($msg:ty => $result:ty, |$s:ident, $m:ident| $body:expr;)*) => {
        $(
            impl Handler<$msg> for StoreActor {
                type Result = $result;
                fn handle(&mut self, $m: $msg, _: &mut SyncContext<Self>) -> Self::Result {
                    let mut guard = self.store.lock().unwrap_or_else(|e| e.into_inner());
                    let $s = guard.as_mut();
                    $body
                }
            }
        )*
    };
}

threaded_handlers! {
    BlobLookup => Result<Option<BlobRecord>, StoreError>, |s, msg| s.blob(msg.0);
    ReadPieces => Result<Vec<Option<Bytes>>, StoreError>, |s, msg| read_pieces(s, &msg);
    PutPieces => Result<(), StoreError>, |s, msg| put_pieces(s, &msg);
    AddBlob => Result<(BlobId, BlobMeta), AddBlobError>, |s, msg| add_blob(s, &msg);
    HashBlob => Result<Option<[u8; 32]>, StoreError>, |s, msg| gossip_store::blob_hash(s, msg.0);
    CompleteBlob => Result<bool, StoreError>, |s, msg| s.mark_complete(msg.0);
    RemoveBlob => Result<u64, StoreError>, |s, msg| s.remove_blob(msg.0);
    ReadBlob => Result<Option<Bytes>, StoreError>, |s, msg| gossip_store::read_blob(s, msg.0);
}

impl StoreActor {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn NodeStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // One thread uses the store; a poisoned lock means a panic inside a backend call, whose
        // state redb keeps consistent (the transaction was not committed).
        let mut guard = self.store.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.as_mut())
    }
}

impl Actor for StoreActor {
    type Context = SyncContext<Self>;
}

impl Handler<Append> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: Append, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| s.append(&msg.0))
    }
}

impl Handler<Fetch> for StoreActor {
    type Result = Result<Vec<FeedMessage>, StoreError>;
    fn handle(&mut self, msg: Fetch, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| s.messages(msg.feed, msg.from_seq, msg.limit))
    }
}

impl Handler<MessageAt> for StoreActor {
    type Result = Result<Option<FeedMessage>, StoreError>;
    fn handle(&mut self, msg: MessageAt, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| s.message(msg.feed, msg.sequence))
    }
}

impl Handler<Latest> for StoreActor {
    type Result = Result<Option<(u64, MessageHash)>, StoreError>;
    fn handle(&mut self, msg: Latest, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| s.latest(msg.0))
    }
}

impl Handler<PutClock> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: PutClock, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| s.put_clock(msg.peer, &msg.clock))
    }
}

impl Handler<GetClock> for StoreActor {
    type Result = Result<Option<Vec<u8>>, StoreError>;
    fn handle(&mut self, msg: GetClock, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| s.clock(msg.0))
    }
}

impl Handler<Put> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: Put, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| s.put(msg.table, &msg.key, &msg.value))
    }
}

impl Handler<Remove> for StoreActor {
    type Result = Result<bool, StoreError>;
    fn handle(&mut self, msg: Remove, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| s.delete(msg.table, &msg.key))
    }
}

impl Handler<Scan> for StoreActor {
    type Result = Result<Vec<gossip_store::Entry>, StoreError>;
    fn handle(&mut self, msg: Scan, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| s.range(msg.table, &[], &[0xff; 64], msg.limit))
    }
}

impl Handler<PutOwnEntry> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: PutOwnEntry, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| put_own_entry(s, &msg))
    }
}

impl Handler<LoadOwnState> for StoreActor {
    type Result = Result<Loaded, StoreError>;
    fn handle(&mut self, msg: LoadOwnState, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| load_own_state(s, &msg))
    }
}

impl Handler<PutOwnGeneration> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: PutOwnGeneration, _: &mut SyncContext<Self>) -> Self::Result {
        self.with(|s| s.put_own_generation(msg.0))
    }
}
