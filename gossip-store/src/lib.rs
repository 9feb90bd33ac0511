#![deny(missing_docs)]
//! Storage for the gossip framework: three small synchronous traits and two backends that
//! implement all of them, [`MemoryStore`] (in memory) and [`RedbStore`] (an embedded,
//! crash-safe database file, via the `redb` crate).
//!
//! # Model
//!
//! ```text
//!                 Store (key/value state)   FeedLog (signed feeds)      PeerClocks
//!                 named tables of ordered    per feed: messages by       per peer: the last
//!                 byte keys -> byte values   sequence 1..=n, and the     clock it sent, as
//!                                            head (n, id of message n)   opaque bytes
//! MemoryStore     BTreeMaps                  BTreeMaps                   BTreeMap
//! RedbStore       one redb table per name    tables gossip/feed_log,     table gossip/peer_clocks
//!                 (prefixed "store/")        gossip/feed_heads
//! ```
//!
//! - [`Store`] is the generic ordered key/value store: a set of named tables, each ordered
//!   lexicographically by key bytes (so big-endian integers sort numerically). It holds
//!   key/value state (gossipmonger-style per-node state, application data); there is no
//!   separate key/value trait. A table exists as soon as something is written to it; reading
//!   a table never written to behaves as reading an empty one. Table names are 1 to
//!   [`MAX_TABLE_NAME_LEN`] bytes.
//! - [`FeedLog`] holds Secure Scuttlebutt feeds: for each author, the messages with
//!   sequences `1..=n` without gaps, each stored as its canonical signed encoding
//!   ([`FeedMessage::encode_signed`]). An append must extend the chain (sequence = latest + 1,
//!   previous = latest id) and is durable when it returns, so a message is never acknowledged
//!   to its publisher or forwarded to a peer before it would survive a crash.
//! - [`BlobStore`] keeps blobs (large objects named by their SHA-256, `gossip_core::blob`) by
//!   piece, with a byte limit; [`evict_blobs`] removes those no followed feed references and
//!   that are not pinned (see the `blobs` module docs for the reference convention).
//! - [`PeerClocks`] keeps, per peer, the last vector clock exchanged with it (Secure
//!   Scuttlebutt's handshake sends only the feeds that changed since), as bytes whose
//!   encoding belongs to the protocol.
//!
//! The traits are synchronous and small on purpose (STYLE.md item 13, after redb's
//! `StorageBackend`): the sans-IO protocol core never calls them during a protocol step; the
//! actor that owns the store reads what the core needs, hands it over, and writes back what
//! the core returns. A store validates the *chain* (sequence and previous hash) but not
//! signatures: it holds only what `gossip_core::feed::Feeds` accepted, or what the node
//! signed itself.
//!
//! # Durability
//!
//! Every write of [`RedbStore`] is one redb transaction committed with
//! `Durability::Immediate`: when the call returns `Ok` the data is on disk (fsync) and
//! survives a crash of the process or the machine; an error, or a crash before the return,
//! leaves the previous state (redb commits are atomic). [`MemoryStore`] keeps nothing past
//! its drop.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use gossip_core::feed::{FeedId, FeedMessage};
//! use gossip_crypto::Identity;
//! use gossip_store::{FeedLog, MemoryStore, Store};
//!
//! let mut store = MemoryStore::new();
//! store.put("kv", b"load", b"0.7")?;
//! assert_eq!(store.get("kv", b"load")?, Some(b"0.7".to_vec()));
//!
//! let alice = Identity::generate();
//! let first = FeedMessage::create(&alice, None, 0, Bytes::from_static(b"hi"), 1024)?;
//! store.append(&first)?; // durable on return (for RedbStore)
//! assert_eq!(store.latest(FeedId::of(&alice))?, Some((1, first.id())));
//! assert_eq!(store.message(FeedId::of(&alice), 1)?, Some(first));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use gossip_core::NodeId;
use gossip_core::feed::{FeedId, FeedMessage, MessageHash};

mod blobs;
mod encoding;
mod memory;
pub mod own_state;
mod redb_store;
mod shared;

pub use blobs::{
    AddBlobError, BlobRecord, BlobStore, DEFAULT_BLOB_LIMIT, RECORD_LEN, add_blob, blob_hash,
    evict_blobs, piece_key, read_blob, referenced_blobs,
};
pub use memory::MemoryStore;
pub use own_state::{OWN_GENERATION_TABLE, OWN_STATE_TABLE, OwnEntry};
pub use shared::SharedStore;

/// Entry points for the fuzz targets of the repository's `fuzz/` crate, compiled only with
/// `--cfg fuzzing` (set by `cargo fuzz`); not part of the public API. A store file is local,
/// but a damaged one (a crash, a bad disk) must be refused, never panic the node.
#[cfg(fuzzing)]
pub mod fuzzing {
    use gossip_core::feed::{FeedId, FeedMessage, MessageHash};

    use crate::StoreError;

    /// The decoder of a stored feed message (its canonical signed form, checked to be of
    /// `feed` at `sequence`).
    pub fn decode_message(
        bytes: &[u8],
        feed: FeedId,
        sequence: u64,
    ) -> Result<FeedMessage, StoreError> {
        crate::encoding::decode_message(bytes, feed, sequence)
    }

    /// The decoder of a stored feed head (sequence and id).
    pub fn decode_head(bytes: &[u8], feed: FeedId) -> Result<(u64, MessageHash), StoreError> {
        crate::encoding::decode_head(bytes, feed)
    }
}
pub use redb_store::RedbStore;

#[cfg(test)]
mod tests;

/// Longest accepted table name, in bytes.
pub const MAX_TABLE_NAME_LEN: usize = 64;

/// Largest clock [`PeerClocks::put_clock`] accepts, in bytes: 1 MiB, room for the clock of
/// about 25,000 feeds at 40 bytes each (a 32-byte feed id and an 8-byte sequence).
pub const MAX_CLOCK_LEN: usize = 1 << 20;

/// One `(key, value)` pair, as returned by [`Store::range`].
pub type Entry = (Vec<u8>, Vec<u8>);

/// Errors of store operations. On any error the operation changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The table name is empty or longer than [`MAX_TABLE_NAME_LEN`] bytes. Nothing changed.
    #[error("invalid table name {table:?}: must be 1 to {MAX_TABLE_NAME_LEN} bytes")]
    InvalidTable {
        /// The rejected name.
        table: String,
    },
    /// [`FeedLog::append`] refused a message whose sequence is not the feed's latest + 1.
    /// Nothing changed.
    #[error("append to feed {feed}: expected sequence {expected}, got {got}")]
    OutOfOrder {
        /// The feed (the message's author).
        feed: FeedId,
        /// The sequence that would be accepted: latest + 1 (1 for an empty feed).
        expected: u64,
        /// The message's sequence.
        got: u64,
    },
    /// [`FeedLog::append`] refused a message whose `previous` is not the id of the feed's
    /// latest message (or is set on sequence 1). Nothing changed.
    #[error("append to feed {feed}: message {sequence} does not point at the latest message")]
    WrongPrevious {
        /// The feed (the message's author).
        feed: FeedId,
        /// The message's sequence.
        sequence: u64,
    },
    /// [`PeerClocks::put_clock`] refused a clock larger than [`MAX_CLOCK_LEN`]. Nothing
    /// changed.
    #[error("clock of {len} bytes exceeds the maximum of {max} bytes")]
    ClockTooLarge {
        /// The clock's length, in bytes.
        len: usize,
        /// [`MAX_CLOCK_LEN`].
        max: usize,
    },
    /// [`BlobStore::put_pieces`] refused a write after which the stored blob bytes would be
    /// `needed`, over the store's `limit`. Nothing changed; [`evict_blobs`] makes room.
    #[error("blob store full: {needed} bytes needed, the limit is {limit}")]
    BlobsFull {
        /// Bytes stored after the write.
        needed: u64,
        /// [`BlobStore::blob_limit`].
        limit: u64,
    },
    /// Stored bytes do not decode (a damaged or foreign database). Nothing changed; the
    /// store's content needs repair.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The backend failed (I/O, a full disk, a database locked by another process, ...); the
    /// message comes from the backend. Nothing changed: a failed write is rolled back.
    /// [`MemoryStore`] never returns it.
    #[error("storage backend failed: {0}")]
    Backend(String),
}

/// Ordered key/value storage in named tables (a table = a namespace such as `"kv"`). This is
/// also the store of key/value state.
///
/// Contract for implementations:
///
/// - Keys within a table MUST be ordered lexicographically by their bytes.
/// - A completed [`put`](Store::put) or [`delete`](Store::delete) MUST be visible to every later
///   call and, for persistent backends, durable before it returns.
/// - An operation that returns an error MUST leave the store unchanged.
/// - Every method MUST return [`StoreError::InvalidTable`] for a table name that is empty or
///   longer than [`MAX_TABLE_NAME_LEN`] bytes (see [`validate_table`]).
/// - A table never written to MUST read as empty, not as an error.
/// - The tables MUST be separate from the data of [`FeedLog`] and [`PeerClocks`].
pub trait Store: Send + 'static {
    /// The value stored under `key` in `table`, or `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidTable`]; [`StoreError::Backend`] if the backend fails.
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `value` under `key` in `table`, replacing any previous value.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidTable`]; [`StoreError::Backend`] if the backend fails. Nothing was
    /// written in either case.
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key` from `table`. Returns `true` if it existed.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidTable`]; [`StoreError::Backend`] if the backend fails. Nothing was
    /// removed in either case.
    fn delete(&mut self, table: &str, key: &[u8]) -> Result<bool, StoreError>;

    /// Entries with key in `[start, end)` in ascending key order, at most `limit` of them (the
    /// first `limit` from `start`). Empty if `start >= end` or `limit == 0`. To continue a
    /// listing, call again with `start` = the last returned key followed by a `0` byte.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidTable`]; [`StoreError::Backend`] if the backend fails.
    fn range(
        &self,
        table: &str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Number of entries in `table` (0 for a table never written to).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidTable`]; [`StoreError::Backend`] if the backend fails.
    fn len(&self, table: &str) -> Result<usize, StoreError>;

    /// Records the local node's write of `key` in its key/value state: `value` at the
    /// owner's `version` within `generation` ([`OwnEntry`]), replacing any earlier entry of
    /// the key. Stored in table [`OWN_STATE_TABLE`]; durable on return like
    /// [`put`](Store::put), so the node acknowledges a `set` only after this returns `Ok`.
    ///
    /// The provided implementation is one [`put`](Store::put); see [`own_state`] for the
    /// model (why deletes remove the row instead of keeping a tombstone).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the backend fails; nothing was written.
    fn put_own_entry(
        &mut self,
        key: &str,
        generation: u64,
        version: u64,
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.put(
            OWN_STATE_TABLE,
            key.as_bytes(),
            &own_state::encode_entry(generation, version, value),
        )
    }

    /// Records the local node's delete of `key`: removes its entry (see [`own_state`]).
    /// Returns whether there was one. Durable on return.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the backend fails; nothing was removed.
    fn remove_own_entry(&mut self, key: &str) -> Result<bool, StoreError> {
        self.delete(OWN_STATE_TABLE, key.as_bytes())
    }

    /// The local node's stored key/value entries, at most `limit` of them (the first in key
    /// order), sorted by `(generation, version)`: the order they were written in.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a stored entry does not decode (a key that is not UTF-8, a
    /// value shorter than its 16-byte header); [`StoreError::Backend`] if the backend fails.
    fn own_entries(&self, limit: usize) -> Result<Vec<OwnEntry>, StoreError> {
        own_state::read_entries(self, limit)
    }

    /// The generation the local node last started its key/value state with, `None` if never
    /// recorded. Stored in table [`OWN_GENERATION_TABLE`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored value is not 8 bytes; [`StoreError::Backend`]
    /// if the backend fails.
    fn own_generation(&self) -> Result<Option<u64>, StoreError> {
        own_state::read_generation(self)
    }

    /// Records `generation` as the one the local node's key/value state runs with now.
    /// Durable on return.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the backend fails; nothing was written.
    fn put_own_generation(&mut self, generation: u64) -> Result<(), StoreError> {
        self.put(
            OWN_GENERATION_TABLE,
            own_state::GENERATION_KEY,
            &generation.to_be_bytes(),
        )
    }
}

/// The log of signed feeds: for each feed, its messages with sequences `1..=n` and no gaps.
///
/// The methods are named `message`/`messages` rather than `get`/`range` so that a type can
/// implement both this trait and [`Store`] without every call becoming ambiguous.
///
/// Contract for implementations:
///
/// - [`append`](FeedLog::append) MUST refuse, changing nothing, a message whose sequence is
///   not latest + 1 ([`StoreError::OutOfOrder`]) or whose `previous` is not the latest id
///   ([`StoreError::WrongPrevious`]). It need not check the signature.
/// - A persistent backend's `append` MUST be durable before it returns `Ok`: the message and
///   the new head survive a crash at any later point, and a crash during the call leaves
///   either both or neither. The caller acknowledges or forwards the message only after that.
/// - Reads MUST return messages equal (`==`) to those appended, and
///   [`latest`](FeedLog::latest) MUST return the id ([`FeedMessage::id`]) of the last one.
/// - An operation that returns an error MUST leave the log unchanged.
pub trait FeedLog: Send + 'static {
    /// Appends `msg` to its author's feed as the new head.
    ///
    /// # Errors
    ///
    /// Nothing was written on error: [`StoreError::OutOfOrder`] if `msg.sequence` is not the
    /// latest + 1 (1 for an empty feed); [`StoreError::WrongPrevious`] if `msg.previous` is not
    /// the latest message's id (`None` for sequence 1); [`StoreError::Corrupt`] if the stored
    /// head does not decode; [`StoreError::Backend`] if the backend fails.
    fn append(&mut self, msg: &FeedMessage) -> Result<(), StoreError>;

    /// The message of `feed` at `sequence`, or `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored bytes do not decode to a message of that feed
    /// and sequence; [`StoreError::Backend`] if the backend fails.
    fn message(&self, feed: FeedId, sequence: u64) -> Result<Option<FeedMessage>, StoreError>;

    /// Messages of `feed` with sequence ≥ `from_sequence`, ascending, at most `limit` of them
    /// (consecutive, as feeds have no gaps). Empty if there are none or `limit == 0`.
    ///
    /// # Errors
    ///
    /// As [`message`](FeedLog::message).
    fn messages(
        &self,
        feed: FeedId,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<FeedMessage>, StoreError>;

    /// Sequence and id of `feed`'s latest message; `None` if the log holds none of it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored head does not decode; [`StoreError::Backend`] if
    /// the backend fails.
    fn latest(&self, feed: FeedId) -> Result<Option<(u64, MessageHash)>, StoreError>;

    /// Every feed with at least one message, with its latest sequence, ascending by feed id.
    ///
    /// # Errors
    ///
    /// As [`latest`](FeedLog::latest).
    fn feeds(&self) -> Result<Vec<(FeedId, u64)>, StoreError>;

    /// Deletes every message of `feed` and its head (to stop storing an unfollowed or forked
    /// feed); returns how many messages were removed. Durable on return like `append`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the backend fails; nothing was removed.
    fn remove_feed(&mut self, feed: FeedId) -> Result<u64, StoreError>;
}

/// The last vector clock exchanged with each peer, as opaque bytes (their encoding belongs to
/// the replication protocol).
///
/// Contract: [`put_clock`](PeerClocks::put_clock) MUST refuse a clock longer than
/// [`MAX_CLOCK_LEN`] ([`StoreError::ClockTooLarge`]) and, for persistent backends, be durable
/// when it returns; an error MUST leave the clocks unchanged.
pub trait PeerClocks: Send + 'static {
    /// Stores `clock` as `peer`'s, replacing any previous one.
    ///
    /// # Errors
    ///
    /// Nothing was written on error: [`StoreError::ClockTooLarge`] if `clock.len()` exceeds
    /// [`MAX_CLOCK_LEN`]; [`StoreError::Backend`] if the backend fails.
    fn put_clock(&mut self, peer: NodeId, clock: &[u8]) -> Result<(), StoreError>;

    /// `peer`'s stored clock, or `None`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the backend fails.
    fn clock(&self, peer: NodeId) -> Result<Option<Vec<u8>>, StoreError>;

    /// Forgets `peer`'s clock; returns whether there was one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the backend fails; nothing was removed.
    fn remove_clock(&mut self, peer: NodeId) -> Result<bool, StoreError>;

    /// The peers with a stored clock, ascending.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the backend fails.
    fn clock_peers(&self) -> Result<Vec<NodeId>, StoreError>;
}

/// Checks a table name against the [`Store`] contract: 1 to [`MAX_TABLE_NAME_LEN`] bytes.
///
/// # Errors
///
/// [`StoreError::InvalidTable`] with the name if it is empty or too long.
pub fn validate_table(table: &str) -> Result<(), StoreError> {
    if table.is_empty() || table.len() > MAX_TABLE_NAME_LEN {
        return Err(StoreError::InvalidTable {
            table: table.to_owned(),
        });
    }
    Ok(())
}

/// Checks that `msg` extends a feed whose head is `head` (the [`FeedLog::append`] contract).
fn check_append(head: Option<(u64, MessageHash)>, msg: &FeedMessage) -> Result<(), StoreError> {
    // A feed at u64::MAX can grow no further: the impossible next is reported as MAX.
    let expected = head.map_or(1, |(latest, _)| latest.saturating_add(1));
    let full = head.is_some_and(|(latest, _)| latest == u64::MAX);
    if full || msg.sequence != expected {
        return Err(StoreError::OutOfOrder {
            feed: msg.author,
            expected,
            got: msg.sequence,
        });
    }
    if msg.previous != head.map(|(_, id)| id) {
        return Err(StoreError::WrongPrevious {
            feed: msg.author,
            sequence: msg.sequence,
        });
    }
    Ok(())
}

/// Checks a clock's size against [`MAX_CLOCK_LEN`].
fn check_clock(clock: &[u8]) -> Result<(), StoreError> {
    if clock.len() > MAX_CLOCK_LEN {
        return Err(StoreError::ClockTooLarge {
            len: clock.len(),
            max: MAX_CLOCK_LEN,
        });
    }
    Ok(())
}

/// Everything a node persists: generic tables, the feed log, peer clocks and blobs.
/// Implemented by every type that implements the four traits ([`MemoryStore`], `RedbStore`).
pub trait NodeStore: Store + FeedLog + PeerClocks + BlobStore {}

impl<T: Store + FeedLog + PeerClocks + BlobStore> NodeStore for T {}
