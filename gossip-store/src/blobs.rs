//! [`BlobStore`]: blobs stored by piece (`gossip_core::blob`), with a size limit, and the
//! helpers built on it: [`add_blob`], [`read_blob`], [`blob_hash`], [`referenced_blobs`] and
//! [`evict_blobs`].
//!
//! # Model
//!
//! ```text
//!  blob id -> BlobRecord { meta (size, chunk size, root), complete, pinned, bytes, seq }
//!  (blob id, level, index) -> piece bytes        level 0: data chunks, 1..: hash pages
//! ```
//!
//! A blob being fetched has a record with `complete: false` and whatever pieces have arrived;
//! [`BlobStore::mark_complete`] marks it whole once its hash was checked. The store counts the
//! bytes of every stored piece ([`BlobStore::blob_bytes`]) and refuses a write that would pass
//! its limit ([`StoreError::BlobsFull`]); room is made by [`evict_blobs`].
//!
//! # What is kept: references and pins
//!
//! A blob is *referenced* when the content of a message of a feed the node follows (its own
//! feed included) contains `blob:<64 lowercase hex digits>` naming it
//! (`gossip_core::blob::references`). A blob is *pinned* when it was added locally
//! ([`add_blob`] with `pin`) or pinned later ([`BlobStore::set_pinned`]). [`evict_blobs`]
//! removes only blobs that are neither referenced, nor pinned, nor named in its `keep` set
//! (the fetches in progress that the application asked for): first incomplete ones, then
//! complete ones in the order they were first stored.

use std::collections::BTreeSet;

use bytes::Bytes;
use gossip_core::blob::{BlobId, BlobMeta, LayoutError, PieceIndex, build, references};
use gossip_core::feed::FeedId;

use crate::{FeedLog, StoreError};

/// The default limit on stored blob bytes (pieces, data and hash pages): 1 GiB.
pub const DEFAULT_BLOB_LIMIT: u64 = 1 << 30;

/// What a store knows about one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobRecord {
    /// Size, chunk size and tree root.
    pub meta: BlobMeta,
    /// Every piece is stored and the data hashed to the blob id.
    pub complete: bool,
    /// Never evicted (added locally, or pinned by the application).
    pub pinned: bool,
    /// Bytes of the pieces stored.
    pub bytes: u64,
    /// Order of first storage (smaller = older), for eviction.
    pub seq: u64,
}

/// Length of an encoded [`BlobRecord`]: size 8 ‖ chunk size 4 ‖ root 32 ‖ complete 1 ‖
/// pinned 1 ‖ bytes 8 ‖ seq 8, integers big-endian.
pub const RECORD_LEN: usize = 62;

impl BlobRecord {
    /// The fixed-width encoding ([`RECORD_LEN`] bytes).
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[..8].copy_from_slice(&self.meta.size.to_be_bytes());
        out[8..12].copy_from_slice(&self.meta.chunk_size.to_be_bytes());
        out[12..44].copy_from_slice(&self.meta.root);
        out[44] = u8::from(self.complete);
        out[45] = u8::from(self.pinned);
        out[46..54].copy_from_slice(&self.bytes.to_be_bytes());
        out[54..62].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// Decodes [`encode`](Self::encode)'s bytes.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a wrong length or a flag other than 0/1.
    pub fn decode(bytes: &[u8]) -> Result<BlobRecord, StoreError> {
        let corrupt = || StoreError::Corrupt("blob record".into());
        if bytes.len() != RECORD_LEN || bytes[44] > 1 || bytes[45] > 1 {
            return Err(corrupt());
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let mut chunk = [0u8; 4];
        chunk.copy_from_slice(&bytes[8..12]);
        let mut root = [0u8; 32];
        root.copy_from_slice(&bytes[12..44]);
        Ok(BlobRecord {
            meta: BlobMeta {
                size: u64_at(0),
                chunk_size: u32::from_be_bytes(chunk),
                root,
            },
            complete: bytes[44] == 1,
            pinned: bytes[45] == 1,
            bytes: u64_at(46),
            seq: u64_at(54),
        })
    }
}

/// The key of a piece: blob id ‖ level ‖ index (big-endian), so a blob's pieces sort by level
/// then index.
pub fn piece_key(blob: BlobId, piece: PieceIndex) -> [u8; 37] {
    let mut key = [0u8; 37];
    key[..32].copy_from_slice(&blob.0);
    key[32] = piece.level;
    key[33..].copy_from_slice(&piece.index.to_be_bytes());
    key
}

/// Blob storage by piece, with a byte limit.
///
/// Contract for implementations:
///
/// - [`put_pieces`](BlobStore::put_pieces) MUST store all the pieces or none, and refuse with
///   [`StoreError::BlobsFull`] (storing nothing) a write after which
///   [`blob_bytes`](BlobStore::blob_bytes) would exceed [`blob_limit`](BlobStore::blob_limit);
///   replacing a stored piece counts only the difference. It creates the blob's record
///   (incomplete, unpinned) if there is none. Persistent backends MUST make it durable
///   before returning, in one transaction however many pieces.
/// - Reads MUST return the bytes written.
/// - An operation that returns an error MUST leave the store unchanged.
pub trait BlobStore: Send + 'static {
    /// Stores `pieces` of `blob` (laid out as `meta`).
    ///
    /// # Errors
    /// [`StoreError::BlobsFull`] when over the limit; [`StoreError::Corrupt`] if a stored
    /// record does not decode; [`StoreError::Backend`]. Nothing was written on error.
    fn put_pieces(
        &mut self,
        blob: BlobId,
        meta: BlobMeta,
        pieces: &[(PieceIndex, Bytes)],
    ) -> Result<(), StoreError>;

    /// The bytes of one piece, or `None`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if the backend fails.
    fn piece(&self, blob: BlobId, piece: PieceIndex) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` consecutive pieces of `level` from `from_index`, ascending, as stored
    /// (a missing piece ends the run).
    ///
    /// # Errors
    /// [`StoreError::Backend`] if the backend fails.
    fn pieces(
        &self,
        blob: BlobId,
        level: u8,
        from_index: u32,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError>;

    /// The record of `blob`, or `None`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if it does not decode; [`StoreError::Backend`].
    fn blob(&self, blob: BlobId) -> Result<Option<BlobRecord>, StoreError>;

    /// Marks `blob` complete (held whole, verified). Returns `false` if it has no record.
    ///
    /// # Errors
    /// As [`blob`](BlobStore::blob).
    fn mark_complete(&mut self, blob: BlobId) -> Result<bool, StoreError>;

    /// Pins or unpins `blob`. Returns `false` if it has no record.
    ///
    /// # Errors
    /// As [`blob`](BlobStore::blob).
    fn set_pinned(&mut self, blob: BlobId, pinned: bool) -> Result<bool, StoreError>;

    /// Every blob with a record, ascending by id.
    ///
    /// # Errors
    /// As [`blob`](BlobStore::blob).
    fn blobs(&self) -> Result<Vec<(BlobId, BlobRecord)>, StoreError>;

    /// Removes `blob`'s record and pieces; returns the bytes freed (0 if it had none).
    ///
    /// # Errors
    /// [`StoreError::Backend`]; nothing was removed.
    fn remove_blob(&mut self, blob: BlobId) -> Result<u64, StoreError>;

    /// Bytes of every stored piece.
    ///
    /// # Errors
    /// As [`blobs`](BlobStore::blobs).
    fn blob_bytes(&self) -> Result<u64, StoreError>;

    /// The limit on [`blob_bytes`](BlobStore::blob_bytes) ([`DEFAULT_BLOB_LIMIT`] unless
    /// set).
    fn blob_limit(&self) -> u64;

    /// Sets the limit. Blobs already stored stay, even above it, until evicted.
    fn set_blob_limit(&mut self, bytes: u64);
}

/// The [`StoreError::BlobsFull`] check shared by the backends: `current` stored, `added` more.
pub(crate) fn check_room(current: u64, added: u64, limit: u64) -> Result<(), StoreError> {
    let needed = current.saturating_add(added);
    if needed > limit {
        return Err(StoreError::BlobsFull { needed, limit });
    }
    Ok(())
}

/// Why [`add_blob`] failed. Nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddBlobError {
    /// The blob cannot be laid out (too large, bad chunk size).
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The store refused it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores `bytes` as a complete blob in chunks of `chunk_size` bytes (one transaction),
/// pinned if `pin`. Returns its id and layout. Adding a blob already held whole changes
/// nothing but the pin (which is only ever set, not cleared, here).
///
/// # Errors
/// [`AddBlobError::Layout`]; [`AddBlobError::Store`] (for example [`StoreError::BlobsFull`]).
pub fn add_blob(
    store: &mut (impl BlobStore + ?Sized),
    bytes: &Bytes,
    chunk_size: u32,
    pin: bool,
) -> Result<(BlobId, BlobMeta), AddBlobError> {
    let built = build(bytes, chunk_size)?;
    if let Some(record) = store.blob(built.id)? {
        if record.complete && record.meta == built.meta {
            if pin && !record.pinned {
                store.set_pinned(built.id, true)?;
            }
            return Ok((built.id, built.meta));
        }
        store.remove_blob(built.id)?;
    }
    store.put_pieces(built.id, built.meta, &built.pieces)?;
    store.mark_complete(built.id)?;
    if pin {
        store.set_pinned(built.id, true)?;
    }
    Ok((built.id, built.meta))
}

/// Data chunks read per store call by [`read_blob`] and [`blob_hash`].
const READ_BATCH: usize = 256;

/// Calls `f` with each data chunk of `blob` in order; `false` if a chunk is missing.
fn for_each_chunk(
    store: &(impl BlobStore + ?Sized),
    blob: BlobId,
    record: &BlobRecord,
    mut f: impl FnMut(&[u8]),
) -> Result<bool, StoreError> {
    let chunks = record
        .meta
        .size
        .div_ceil(u64::from(record.meta.chunk_size.max(1)))
        .max(1);
    let mut index: u64 = 0;
    while index < chunks {
        let from = u32::try_from(index).unwrap_or(u32::MAX);
        let batch = store.pieces(blob, 0, from, READ_BATCH)?;
        if batch.is_empty() {
            return Ok(false);
        }
        for chunk in &batch {
            f(chunk);
        }
        index += batch.len() as u64;
    }
    Ok(index == chunks)
}

/// The bytes of a complete blob, or `None` if it is not held whole.
///
/// # Errors
/// As [`BlobStore::pieces`].
pub fn read_blob(
    store: &(impl BlobStore + ?Sized),
    blob: BlobId,
) -> Result<Option<Bytes>, StoreError> {
    let Some(record) = store.blob(blob)?.filter(|r| r.complete) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(usize::try_from(record.meta.size).unwrap_or(0));
    let whole = for_each_chunk(store, blob, &record, |c| out.extend_from_slice(c))?;
    Ok(whole.then(|| Bytes::from(out)))
}

/// The SHA-256 of the stored data chunks of `blob` (complete or not), read in batches; `None`
/// if it has no record or a chunk is missing.
///
/// # Errors
/// As [`BlobStore::pieces`].
pub fn blob_hash(
    store: &(impl BlobStore + ?Sized),
    blob: BlobId,
) -> Result<Option<[u8; 32]>, StoreError> {
    let Some(record) = store.blob(blob)? else {
        return Ok(None);
    };
    let mut hasher = gossip_crypto::Sha256Hasher::new();
    let whole = for_each_chunk(store, blob, &record, |c| hasher.update(c))?;
    Ok(whole.then(|| hasher.finalize()))
}

/// Messages read per store call by [`referenced_blobs`].
const SCAN_BATCH: usize = 256;

/// Every blob referenced by a message of `feeds` (see the module docs), read in batches.
///
/// # Errors
/// As [`FeedLog::messages`].
pub fn referenced_blobs(
    store: &(impl FeedLog + ?Sized),
    feeds: &[FeedId],
) -> Result<BTreeSet<BlobId>, StoreError> {
    let mut found = BTreeSet::new();
    for feed in feeds {
        let mut from = 1;
        loop {
            let batch = store.messages(*feed, from, SCAN_BATCH)?;
            let Some(last) = batch.last() else { break };
            from = last.sequence.saturating_add(1);
            for message in &batch {
                found.extend(references(&message.content));
            }
            if batch.len() < SCAN_BATCH {
                break;
            }
        }
    }
    Ok(found)
}

/// Removes blobs that are neither referenced by `feeds`, nor pinned, nor in `keep`, until at
/// most `target_bytes` are stored: incomplete blobs first, then complete ones oldest first.
/// Returns the blobs removed, in order.
///
/// # Errors
/// As [`referenced_blobs`] and [`BlobStore::remove_blob`]; blobs removed before the error
/// stay removed.
pub fn evict_blobs<S: BlobStore + FeedLog + ?Sized>(
    store: &mut S,
    feeds: &[FeedId],
    keep: &BTreeSet<BlobId>,
    target_bytes: u64,
) -> Result<Vec<BlobId>, StoreError> {
    let mut removed = Vec::new();
    let mut bytes = store.blob_bytes()?;
    if bytes <= target_bytes {
        return Ok(removed);
    }
    let referenced = referenced_blobs(store, feeds)?;
    let mut candidates: Vec<(BlobId, BlobRecord)> = store
        .blobs()?
        .into_iter()
        .filter(|(id, r)| !r.pinned && !referenced.contains(id) && !keep.contains(id))
        .collect();
    candidates.sort_by_key(|(_, r)| (r.complete, r.seq));
    for (id, _) in candidates {
        if bytes <= target_bytes {
            break;
        }
        let freed = store.remove_blob(id)?;
        bytes = bytes.saturating_sub(freed);
        removed.push(id);
    }
    Ok(removed)
}
