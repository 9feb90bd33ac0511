//! [`RedbStore`]: every trait of the crate in one redb database.

use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use gossip_core::NodeId;
use gossip_core::blob::{BlobId, BlobMeta, PieceIndex};
use gossip_core::feed::{FeedId, FeedMessage, MessageHash};
use redb::backends::InMemoryBackend;
use redb::{
    Database, Durability, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableError, WriteTransaction,
};

use crate::blobs::check_room;
use crate::encoding::{
    LOG_KEY_LEN, clock_key, decode_head, decode_id, decode_message, encode_head, encode_message,
    log_key,
};
use crate::{
    BlobRecord, BlobStore, DEFAULT_BLOB_LIMIT, Entry, FeedLog, PeerClocks, Store, StoreError,
    check_append, check_clock, piece_key, validate_table,
};

/// Every message: [`log_key`] → canonical signed encoding.
pub(crate) const FEED_LOG: TableDefinition<'static, &[u8], &[u8]> =
    TableDefinition::new("gossip/feed_log");
/// The head of every non-empty feed: feed id → sequence ‖ id.
pub(crate) const FEED_HEADS: TableDefinition<'static, &[u8], &[u8]> =
    TableDefinition::new("gossip/feed_heads");
/// Peer clocks: node id → clock bytes.
const PEER_CLOCKS: TableDefinition<'static, &[u8], &[u8]> =
    TableDefinition::new("gossip/peer_clocks");
/// Blob pieces: [`piece_key`] (blob id ‖ level ‖ index BE) → bytes.
const BLOB_PIECES: TableDefinition<'static, &[u8], &[u8]> =
    TableDefinition::new("gossip/blob_pieces");
/// Blob records: blob id → [`BlobRecord::encode`].
const BLOB_RECORDS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("gossip/blobs");
/// Prefix of the redb table holding [`Store`] table `name`, so user tables never meet the
/// internal ones.
const STORE_TABLE_PREFIX: &str = "store/";

/// A [`Store`], [`FeedLog`] and [`PeerClocks`] in a redb database: a single file (or memory,
/// for tests), crash-safe.
///
/// Every write is one redb write transaction committed with `Durability::Immediate`: when the
/// call returns `Ok` its data has been written and fsynced, and a crash at any moment leaves
/// either the whole write or none of it (redb's copy-on-write B-trees and double-buffered
/// commit slots). So a feed message is appended together with its feed's new head, and both
/// survive a crash once [`append`](FeedLog::append) has returned. Nothing needs closing:
/// dropping the store, or the process dying, loses nothing that was acknowledged. After an
/// unclean stop, the next [`open`](Self::open) first runs redb's repair (a scan of the file,
/// so it takes time proportional to the database size).
///
/// A file is held open exclusively by one `RedbStore`: a second [`open`](Self::open) of the
/// same file, in this process or another, fails with [`StoreError::Backend`]. Each write
/// costs an fsync (milliseconds on most disks); batch at the caller where throughput matters.
///
/// # Example
///
/// ```
/// use gossip_store::{RedbStore, Store};
///
/// let path = std::env::temp_dir().join(format!("gossip-store-doc-{}.redb", std::process::id()));
/// {
///     let mut store = RedbStore::open(&path)?;
///     store.put("kv", b"k", b"v")?; // durable on return
/// } // dropped without any close
/// let store = RedbStore::open(&path)?;
/// assert_eq!(store.get("kv", b"k")?, Some(b"v".to_vec()));
/// # drop(store);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), gossip_store::StoreError>(())
/// ```
pub struct RedbStore {
    db: Database,
    /// The database file; `None` in memory.
    path: Option<PathBuf>,
    /// [`BlobStore::blob_limit`] (not persisted: a setting of the node that opens the file).
    blob_limit: u64,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A backend error (I/O, a locked or foreign file, ...).
fn backend(error: impl fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

impl RedbStore {
    /// Opens the database file at `path`, creating it (but not its directory) if missing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the file cannot be created or opened, is not a redb
    /// database, or is already open (in this process or another). Nothing was created
    /// unless the file did not exist and the error came after.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref();
        let db = Database::create(path).map_err(backend)?;
        RedbStore::init(db, Some(path.to_path_buf()))
    }

    /// A database held in memory (redb's `InMemoryBackend`), lost when dropped: the same code
    /// paths as a file without the disk, for tests.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if redb fails to initialise.
    pub fn in_memory() -> Result<RedbStore, StoreError> {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(backend)?;
        RedbStore::init(db, None)
    }

    /// The database file, `None` for [`in_memory`](Self::in_memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The database, for tests that damage it on purpose.
    #[cfg(test)]
    pub(crate) fn raw(&self) -> &Database {
        &self.db
    }

    /// Creates the internal tables, so that reads never meet a missing one.
    fn init(db: Database, path: Option<PathBuf>) -> Result<RedbStore, StoreError> {
        let store = RedbStore {
            db,
            path,
            blob_limit: DEFAULT_BLOB_LIMIT,
        };
        store.write(|txn| {
            for table in [FEED_LOG, FEED_HEADS, PEER_CLOCKS, BLOB_PIECES, BLOB_RECORDS] {
                txn.open_table(table).map_err(backend)?;
            }
            Ok(((), true))
        })?;
        Ok(store)
    }

    /// Runs `body` in one write transaction. `body` returns its result and whether to commit;
    /// on `Err` or `false` the transaction is aborted and nothing changes. Commits are
    /// `Durability::Immediate` (fsynced before returning).
    fn write<T>(
        &self,
        body: impl FnOnce(&WriteTransaction) -> Result<(T, bool), StoreError>,
    ) -> Result<T, StoreError> {
        let mut txn = self.db.begin_write().map_err(backend)?;
        txn.set_durability(Durability::Immediate);
        match body(&txn) {
            Ok((value, true)) => {
                txn.commit().map_err(backend)?;
                Ok(value)
            }
            Ok((value, false)) => {
                txn.abort().map_err(backend)?;
                Ok(value)
            }
            Err(error) => {
                // The body's error is the one to report; an abort failure changes nothing more.
                let _ = txn.abort();
                Err(error)
            }
        }
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(backend)
    }

    fn head(txn: &ReadTransaction, feed: FeedId) -> Result<Option<(u64, MessageHash)>, StoreError> {
        let heads = txn.open_table(FEED_HEADS).map_err(backend)?;
        let head = heads.get(&feed.0[..]).map_err(backend)?;
        head.map(|value| decode_head(value.value(), feed))
            .transpose()
    }
}

/// The redb table of [`Store`] table `table` (already validated).
fn store_table(table: &str) -> String {
    format!("{STORE_TABLE_PREFIX}{table}")
}

impl Store for RedbStore {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        validate_table(table)?;
        let name = store_table(table);
        let txn = self.read()?;
        let entries = match txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)) {
            Ok(entries) => entries,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(backend(error)),
        };
        let value = entries.get(key).map_err(backend)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        validate_table(table)?;
        let name = store_table(table);
        self.write(|txn| {
            let mut entries = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                .map_err(backend)?;
            entries.insert(key, value).map_err(backend)?;
            Ok(((), true))
        })
    }

    fn delete(&mut self, table: &str, key: &[u8]) -> Result<bool, StoreError> {
        validate_table(table)?;
        let name = store_table(table);
        self.write(|txn| {
            let mut entries = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                .map_err(backend)?;
            let existed = entries.remove(key).map_err(backend)?.is_some();
            // Nothing removed: abort, so a missing table is not created either.
            Ok((existed, existed))
        })
    }

    fn range(
        &self,
        table: &str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        validate_table(table)?;
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let name = store_table(table);
        let txn = self.read()?;
        let entries = match txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)) {
            Ok(entries) => entries,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(backend(error)),
        };
        let mut out = Vec::new();
        for item in entries.range::<&[u8]>(start..end).map_err(backend)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(backend)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn len(&self, table: &str) -> Result<usize, StoreError> {
        validate_table(table)?;
        let name = store_table(table);
        let txn = self.read()?;
        let entries = match txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)) {
            Ok(entries) => entries,
            Err(TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(error) => return Err(backend(error)),
        };
        let len = entries.len().map_err(backend)?;
        Ok(usize::try_from(len).unwrap_or(usize::MAX))
    }
}

impl FeedLog for RedbStore {
    fn append(&mut self, msg: &FeedMessage) -> Result<(), StoreError> {
        let feed = msg.author;
        self.write(|txn| {
            let mut heads = txn.open_table(FEED_HEADS).map_err(backend)?;
            let head = heads
                .get(&feed.0[..])
                .map_err(backend)?
                .map(|value| decode_head(value.value(), feed))
                .transpose()?;
            check_append(head, msg)?;
            let mut log = txn.open_table(FEED_LOG).map_err(backend)?;
            log.insert(&log_key(feed, msg.sequence)[..], &encode_message(msg)[..])
                .map_err(backend)?;
            heads
                .insert(&feed.0[..], &encode_head(msg.sequence, msg.id())[..])
                .map_err(backend)?;
            Ok(((), true))
        })
    }

    fn message(&self, feed: FeedId, sequence: u64) -> Result<Option<FeedMessage>, StoreError> {
        let txn = self.read()?;
        let log = txn.open_table(FEED_LOG).map_err(backend)?;
        let value = log.get(&log_key(feed, sequence)[..]).map_err(backend)?;
        value
            .map(|bytes| decode_message(bytes.value(), feed, sequence))
            .transpose()
    }

    fn messages(
        &self,
        feed: FeedId,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<FeedMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let txn = self.read()?;
        let log = txn.open_table(FEED_LOG).map_err(backend)?;
        let start = log_key(feed, from_sequence);
        let end = log_key(feed, u64::MAX);
        let mut out = Vec::new();
        for item in log.range::<&[u8]>(&start[..]..=&end[..]).map_err(backend)? {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(backend)?;
            let key = key.value();
            let sequence = key
                .get(FeedId::LEN..LOG_KEY_LEN)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt(format!("log key of {} bytes", key.len())))?;
            out.push(decode_message(value.value(), feed, sequence)?);
        }
        Ok(out)
    }

    fn latest(&self, feed: FeedId) -> Result<Option<(u64, MessageHash)>, StoreError> {
        RedbStore::head(&self.read()?, feed)
    }

    fn feeds(&self) -> Result<Vec<(FeedId, u64)>, StoreError> {
        let txn = self.read()?;
        let heads = txn.open_table(FEED_HEADS).map_err(backend)?;
        let mut out = Vec::new();
        for item in heads.iter().map_err(backend)? {
            let (key, value) = item.map_err(backend)?;
            let feed = FeedId(decode_id(key.value())?);
            let (sequence, _) = decode_head(value.value(), feed)?;
            out.push((feed, sequence));
        }
        Ok(out)
    }

    fn remove_feed(&mut self, feed: FeedId) -> Result<u64, StoreError> {
        self.write(|txn| {
            let mut log = txn.open_table(FEED_LOG).map_err(backend)?;
            let start = log_key(feed, 0);
            let end = log_key(feed, u64::MAX);
            let mut removed = 0u64;
            log.retain_in::<&[u8], _>(&start[..]..=&end[..], |_, _| {
                removed += 1;
                false
            })
            .map_err(backend)?;
            let mut heads = txn.open_table(FEED_HEADS).map_err(backend)?;
            let had_head = heads.remove(&feed.0[..]).map_err(backend)?.is_some();
            let changed = removed > 0 || had_head;
            Ok((removed, changed))
        })
    }
}

impl PeerClocks for RedbStore {
    fn put_clock(&mut self, peer: NodeId, clock: &[u8]) -> Result<(), StoreError> {
        check_clock(clock)?;
        self.write(|txn| {
            let mut clocks = txn.open_table(PEER_CLOCKS).map_err(backend)?;
            clocks
                .insert(&clock_key(peer)[..], clock)
                .map_err(backend)?;
            Ok(((), true))
        })
    }

    fn clock(&self, peer: NodeId) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let clocks = txn.open_table(PEER_CLOCKS).map_err(backend)?;
        let value = clocks.get(&clock_key(peer)[..]).map_err(backend)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn remove_clock(&mut self, peer: NodeId) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut clocks = txn.open_table(PEER_CLOCKS).map_err(backend)?;
            let existed = clocks
                .remove(&clock_key(peer)[..])
                .map_err(backend)?
                .is_some();
            Ok((existed, existed))
        })
    }

    fn clock_peers(&self) -> Result<Vec<NodeId>, StoreError> {
        let txn = self.read()?;
        let clocks = txn.open_table(PEER_CLOCKS).map_err(backend)?;
        let mut out = Vec::new();
        for item in clocks.iter().map_err(backend)? {
            let (key, _) = item.map_err(backend)?;
            out.push(NodeId(decode_id(key.value())?));
        }
        Ok(out)
    }
}

fn blob_record_from(bytes: &[u8]) -> Result<BlobRecord, StoreError> {
    BlobRecord::decode(bytes)
}

impl RedbStore {
    fn all_blob_records(
        table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    ) -> Result<Vec<(BlobId, BlobRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in table.iter().map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            let id: [u8; 32] = k
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt("blob id".into()))?;
            out.push((BlobId(id), blob_record_from(v.value())?));
        }
        Ok(out)
    }

    fn update_record(
        &self,
        blob: BlobId,
        change: impl FnOnce(&mut BlobRecord),
    ) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut records = txn.open_table(BLOB_RECORDS).map_err(backend)?;
            let current = records
                .get(&blob.0[..])
                .map_err(backend)?
                .map(|v| blob_record_from(v.value()))
                .transpose()?;
            let Some(mut record) = current else {
                return Ok((false, false));
            };
            change(&mut record);
            records
                .insert(&blob.0[..], &record.encode()[..])
                .map_err(backend)?;
            Ok((true, true))
        })
    }
}

impl BlobStore for RedbStore {
    fn put_pieces(
        &mut self,
        blob: BlobId,
        meta: BlobMeta,
        pieces: &[(PieceIndex, Bytes)],
    ) -> Result<(), StoreError> {
        let limit = self.blob_limit;
        self.write(|txn| {
            let mut records = txn.open_table(BLOB_RECORDS).map_err(backend)?;
            let all = RedbStore::all_blob_records(&records)?;
            let total: u64 = all.iter().map(|(_, r)| r.bytes).sum();
            let mut record = match all.iter().find(|(id, _)| *id == blob) {
                Some((_, r)) => *r,
                None => BlobRecord {
                    meta,
                    complete: false,
                    pinned: false,
                    bytes: 0,
                    seq: all.iter().map(|(_, r)| r.seq + 1).max().unwrap_or(0),
                },
            };
            let mut table = txn.open_table(BLOB_PIECES).map_err(backend)?;
            let mut added: i128 = 0;
            for (piece, data) in pieces {
                let key = piece_key(blob, *piece);
                let old = table
                    .insert(&key[..], &data[..])
                    .map_err(backend)?
                    .map_or(0, |v| v.value().len());
                added += data.len() as i128 - old as i128;
            }
            // The insertions are aborted with the transaction if the limit refuses them.
            check_room(
                total,
                u64::try_from(added.max(0)).unwrap_or(u64::MAX),
                limit,
            )?;
            record.bytes = u64::try_from((i128::from(record.bytes) + added).max(0)).unwrap_or(0);
            records
                .insert(&blob.0[..], &record.encode()[..])
                .map_err(backend)?;
            Ok(((), true))
        })
    }

    fn piece(&self, blob: BlobId, piece: PieceIndex) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(BLOB_PIECES).map_err(backend)?;
        let value = table.get(&piece_key(blob, piece)[..]).map_err(backend)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn pieces(
        &self,
        blob: BlobId,
        level: u8,
        from_index: u32,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(BLOB_PIECES).map_err(backend)?;
        let start = piece_key(
            blob,
            PieceIndex {
                level,
                index: from_index,
            },
        );
        let end = piece_key(
            blob,
            PieceIndex {
                level,
                index: u32::MAX,
            },
        );
        let mut out = Vec::new();
        let mut next = from_index;
        for item in table
            .range::<&[u8]>(&start[..]..=&end[..])
            .map_err(backend)?
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(backend)?;
            let key = k.value();
            let mut index = [0u8; 4];
            index.copy_from_slice(&key[33..37]);
            if u32::from_be_bytes(index) != next {
                break;
            }
            out.push(v.value().to_vec());
            next = next.saturating_add(1);
        }
        Ok(out)
    }

    fn blob(&self, blob: BlobId) -> Result<Option<BlobRecord>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(BLOB_RECORDS).map_err(backend)?;
        let value = table.get(&blob.0[..]).map_err(backend)?;
        value.map(|v| blob_record_from(v.value())).transpose()
    }

    fn mark_complete(&mut self, blob: BlobId) -> Result<bool, StoreError> {
        self.update_record(blob, |r| r.complete = true)
    }

    fn set_pinned(&mut self, blob: BlobId, pinned: bool) -> Result<bool, StoreError> {
        self.update_record(blob, |r| r.pinned = pinned)
    }

    fn blobs(&self) -> Result<Vec<(BlobId, BlobRecord)>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(BLOB_RECORDS).map_err(backend)?;
        RedbStore::all_blob_records(&table)
    }

    fn remove_blob(&mut self, blob: BlobId) -> Result<u64, StoreError> {
        self.write(|txn| {
            let mut records = txn.open_table(BLOB_RECORDS).map_err(backend)?;
            let removed = records
                .remove(&blob.0[..])
                .map_err(backend)?
                .map(|v| blob_record_from(v.value()))
                .transpose()?;
            let Some(record) = removed else {
                return Ok((0, false));
            };
            let mut table = txn.open_table(BLOB_PIECES).map_err(backend)?;
            let start = piece_key(blob, PieceIndex { level: 0, index: 0 });
            let end = piece_key(
                blob,
                PieceIndex {
                    level: u8::MAX,
                    index: u32::MAX,
                },
            );
            table
                .retain_in::<&[u8], _>(&start[..]..=&end[..], |_, _| false)
                .map_err(backend)?;
            Ok((record.bytes, true))
        })
    }

    fn blob_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.blobs()?.iter().map(|(_, r)| r.bytes).sum())
    }

    fn blob_limit(&self) -> u64 {
        self.blob_limit
    }

    fn set_blob_limit(&mut self, bytes: u64) {
        self.blob_limit = bytes;
    }
}
