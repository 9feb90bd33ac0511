//! [`MemoryStore`]: every trait of the crate, held in `BTreeMap`s.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use gossip_core::NodeId;
use gossip_core::blob::{BlobId, BlobMeta, PieceIndex};
use gossip_core::feed::{FeedId, FeedMessage, MessageHash};

use crate::blobs::check_room;
use crate::{
    BlobRecord, BlobStore, DEFAULT_BLOB_LIMIT, Entry, FeedLog, PeerClocks, Store, StoreError,
    check_append, check_clock, validate_table,
};

/// One table of [`MemoryStore`].
type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// One feed of [`MemoryStore`]: messages by sequence, each with its id.
type Log = BTreeMap<u64, (FeedMessage, MessageHash)>;

/// A [`Store`], [`FeedLog`], [`PeerClocks`] and [`BlobStore`] held in memory: `BTreeMap`s,
/// lost when dropped. For tests and for nodes that need no persistence. Never returns
/// [`StoreError::Backend`] or [`StoreError::Corrupt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryStore {
    tables: BTreeMap<String, Table>,
    logs: BTreeMap<FeedId, Log>,
    clocks: BTreeMap<NodeId, Vec<u8>>,
    blobs: BTreeMap<BlobId, BlobRecord>,
    pieces: BTreeMap<(BlobId, PieceIndex), Bytes>,
    blob_bytes: u64,
    blob_limit: u64,
    blob_seq: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            tables: BTreeMap::new(),
            logs: BTreeMap::new(),
            clocks: BTreeMap::new(),
            blobs: BTreeMap::new(),
            pieces: BTreeMap::new(),
            blob_bytes: 0,
            blob_limit: DEFAULT_BLOB_LIMIT,
            blob_seq: 0,
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn table(&self, table: &str) -> Result<Option<&Table>, StoreError> {
        validate_table(table)?;
        Ok(self.tables.get(table))
    }
}

impl Store for MemoryStore {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.table(table)?.and_then(|t| t.get(key)).cloned())
    }

    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        validate_table(table)?;
        self.tables
            .entry(table.to_owned())
            .or_default()
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, table: &str, key: &[u8]) -> Result<bool, StoreError> {
        validate_table(table)?;
        let Some(entries) = self.tables.get_mut(table) else {
            return Ok(false);
        };
        let existed = entries.remove(key).is_some();
        if entries.is_empty() {
            self.tables.remove(table);
        }
        Ok(existed)
    }

    fn range(
        &self,
        table: &str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let Some(entries) = self.table(table)? else {
            return Ok(Vec::new());
        };
        // BTreeMap::range panics when start > end; an empty interval is simply empty here.
        if start >= end {
            return Ok(Vec::new());
        }
        let bounds = (Bound::Included(start), Bound::Excluded(end));
        Ok(entries
            .range::<[u8], _>(bounds)
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn len(&self, table: &str) -> Result<usize, StoreError> {
        Ok(self.table(table)?.map_or(0, Table::len))
    }
}

impl FeedLog for MemoryStore {
    fn append(&mut self, msg: &FeedMessage) -> Result<(), StoreError> {
        check_append(self.latest(msg.author)?, msg)?;
        self.logs
            .entry(msg.author)
            .or_default()
            .insert(msg.sequence, (msg.clone(), msg.id()));
        Ok(())
    }

    fn message(&self, feed: FeedId, sequence: u64) -> Result<Option<FeedMessage>, StoreError> {
        Ok(self
            .logs
            .get(&feed)
            .and_then(|log| log.get(&sequence))
            .map(|(msg, _)| msg.clone()))
    }

    fn messages(
        &self,
        feed: FeedId,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<FeedMessage>, StoreError> {
        let Some(log) = self.logs.get(&feed) else {
            return Ok(Vec::new());
        };
        Ok(log
            .range(from_sequence..)
            .take(limit)
            .map(|(_, (msg, _))| msg.clone())
            .collect())
    }

    fn latest(&self, feed: FeedId) -> Result<Option<(u64, MessageHash)>, StoreError> {
        Ok(self
            .logs
            .get(&feed)
            .and_then(|log| log.last_key_value())
            .map(|(sequence, (_, id))| (*sequence, *id)))
    }

    fn feeds(&self) -> Result<Vec<(FeedId, u64)>, StoreError> {
        Ok(self
            .logs
            .iter()
            .filter_map(|(feed, log)| log.last_key_value().map(|(seq, _)| (*feed, *seq)))
            .collect())
    }

    fn remove_feed(&mut self, feed: FeedId) -> Result<u64, StoreError> {
        Ok(self.logs.remove(&feed).map_or(0, |log| log.len() as u64))
    }
}

impl PeerClocks for MemoryStore {
    fn put_clock(&mut self, peer: NodeId, clock: &[u8]) -> Result<(), StoreError> {
        check_clock(clock)?;
        self.clocks.insert(peer, clock.to_vec());
        Ok(())
    }

    fn clock(&self, peer: NodeId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.clocks.get(&peer).cloned())
    }

    fn remove_clock(&mut self, peer: NodeId) -> Result<bool, StoreError> {
        Ok(self.clocks.remove(&peer).is_some())
    }

    fn clock_peers(&self) -> Result<Vec<NodeId>, StoreError> {
        Ok(self.clocks.keys().copied().collect())
    }
}

impl BlobStore for MemoryStore {
    fn put_pieces(
        &mut self,
        blob: BlobId,
        meta: BlobMeta,
        pieces: &[(PieceIndex, Bytes)],
    ) -> Result<(), StoreError> {
        let mut added: i128 = 0;
        for (piece, data) in pieces {
            let old = self.pieces.get(&(blob, *piece)).map_or(0, Bytes::len);
            added += data.len() as i128 - old as i128;
        }
        let added_u = u64::try_from(added.max(0)).unwrap_or(u64::MAX);
        check_room(self.blob_bytes, added_u, self.blob_limit)?;
        let seq = self.blob_seq;
        let record = self.blobs.entry(blob).or_insert_with(|| BlobRecord {
            meta,
            complete: false,
            pinned: false,
            bytes: 0,
            seq,
        });
        if record.seq == seq {
            self.blob_seq += 1;
        }
        for (piece, data) in pieces {
            self.pieces.insert((blob, *piece), data.clone());
        }
        let bytes = i128::from(record.bytes) + added;
        record.bytes = u64::try_from(bytes.max(0)).unwrap_or(0);
        let total = i128::from(self.blob_bytes) + added;
        self.blob_bytes = u64::try_from(total.max(0)).unwrap_or(0);
        Ok(())
    }

    fn piece(&self, blob: BlobId, piece: PieceIndex) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.pieces.get(&(blob, piece)).map(|b| b.to_vec()))
    }

    fn pieces(
        &self,
        blob: BlobId,
        level: u8,
        from_index: u32,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        let mut next = from_index;
        for ((b, p), data) in self.pieces.range(
            (
                blob,
                PieceIndex {
                    level,
                    index: from_index,
                },
            )..,
        ) {
            if out.len() >= limit || *b != blob || p.level != level || p.index != next {
                break;
            }
            out.push(data.to_vec());
            next = next.saturating_add(1);
        }
        Ok(out)
    }

    fn blob(&self, blob: BlobId) -> Result<Option<BlobRecord>, StoreError> {
        Ok(self.blobs.get(&blob).copied())
    }

    fn mark_complete(&mut self, blob: BlobId) -> Result<bool, StoreError> {
        Ok(self
            .blobs
            .get_mut(&blob)
            .map(|r| r.complete = true)
            .is_some())
    }

    fn set_pinned(&mut self, blob: BlobId, pinned: bool) -> Result<bool, StoreError> {
        Ok(self
            .blobs
            .get_mut(&blob)
            .map(|r| r.pinned = pinned)
            .is_some())
    }

    fn blobs(&self) -> Result<Vec<(BlobId, BlobRecord)>, StoreError> {
        Ok(self.blobs.iter().map(|(id, r)| (*id, *r)).collect())
    }

    fn remove_blob(&mut self, blob: BlobId) -> Result<u64, StoreError> {
        let Some(record) = self.blobs.remove(&blob) else {
            return Ok(0);
        };
        let first = PieceIndex { level: 0, index: 0 };
        let last = PieceIndex {
            level: u8::MAX,
            index: u32::MAX,
        };
        let keys: Vec<(BlobId, PieceIndex)> = self
            .pieces
            .range((blob, first)..=(blob, last))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.pieces.remove(&key);
        }
        self.blob_bytes = self.blob_bytes.saturating_sub(record.bytes);
        Ok(record.bytes)
    }

    fn blob_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.blob_bytes)
    }

    fn blob_limit(&self) -> u64 {
        self.blob_limit
    }

    fn set_blob_limit(&mut self, bytes: u64) {
        self.blob_limit = bytes;
    }
}
