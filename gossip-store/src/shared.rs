//! [`SharedStore`]: one [`NodeStore`] used by a node and read by the program that runs it.
//!
//! A node takes its store by value and serves it on a thread of its own. A program that also
//! wants to read the store while the node runs (the `gossip-node` example answers `log` and
//! `verify-log` up to a feed's current head), or a test that restarts a node on the store
//! the previous run left (as a database file outlives a process), gives the node a
//! `SharedStore` and keeps a clone: every call locks one mutex around the real store, so the
//! node's writes and the program's reads are serialised and each read sees only complete
//! writes.

use std::sync::{Arc, Mutex, MutexGuard};

use gossip_core::NodeId;
use gossip_core::blob::{BlobId, BlobMeta, PieceIndex};
use gossip_core::feed::{FeedId, FeedMessage, MessageHash};

use crate::{BlobRecord, BlobStore, Entry, FeedLog, NodeStore, PeerClocks, Store, StoreError};

/// A [`NodeStore`] behind an `Arc<Mutex<..>>`; clones share the same store.
#[derive(Clone)]
pub struct SharedStore {
    inner: Arc<Mutex<Box<dyn NodeStore>>>,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore").finish_non_exhaustive()
    }
}

impl SharedStore {
    /// Shares `store`.
    pub fn new(store: Box<dyn NodeStore>) -> SharedStore {
        SharedStore {
            inner: Arc::new(Mutex::new(store)),
        }
    }

    /// The store, locked. A panic while the lock was held cannot leave a half-done write
    /// (every store operation is atomic), so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, Box<dyn NodeStore>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for SharedStore {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.lock().get(table, key)
    }

    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.lock().put(table, key, value)
    }

    fn delete(&mut self, table: &str, key: &[u8]) -> Result<bool, StoreError> {
        self.lock().delete(table, key)
    }

    fn range(
        &self,
        table: &str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.lock().range(table, start, end, limit)
    }

    fn len(&self, table: &str) -> Result<usize, StoreError> {
        self.lock().len(table)
    }
}

impl FeedLog for SharedStore {
    fn append(&mut self, msg: &FeedMessage) -> Result<(), StoreError> {
        self.lock().append(msg)
    }

    fn message(&self, feed: FeedId, sequence: u64) -> Result<Option<FeedMessage>, StoreError> {
        self.lock().message(feed, sequence)
    }

    fn messages(
        &self,
        feed: FeedId,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<FeedMessage>, StoreError> {
        self.lock().messages(feed, from_sequence, limit)
    }

    fn latest(&self, feed: FeedId) -> Result<Option<(u64, MessageHash)>, StoreError> {
        self.lock().latest(feed)
    }

    fn feeds(&self) -> Result<Vec<(FeedId, u64)>, StoreError> {
        self.lock().feeds()
    }

    fn remove_feed(&mut self, feed: FeedId) -> Result<u64, StoreError> {
        self.lock().remove_feed(feed)
    }
}

impl PeerClocks for SharedStore {
    fn put_clock(&mut self, peer: NodeId, clock: &[u8]) -> Result<(), StoreError> {
        self.lock().put_clock(peer, clock)
    }

    fn clock(&self, peer: NodeId) -> Result<Option<Vec<u8>>, StoreError> {
        self.lock().clock(peer)
    }

    fn remove_clock(&mut self, peer: NodeId) -> Result<bool, StoreError> {
        self.lock().remove_clock(peer)
    }

    fn clock_peers(&self) -> Result<Vec<NodeId>, StoreError> {
        self.lock().clock_peers()
    }
}

impl BlobStore for SharedStore {
    fn put_pieces(
        &mut self,
        blob: BlobId,
        meta: BlobMeta,
        pieces: &[(PieceIndex, bytes::Bytes)],
    ) -> Result<(), StoreError> {
        self.lock().put_pieces(blob, meta, pieces)
    }

    fn piece(&self, blob: BlobId, piece: PieceIndex) -> Result<Option<Vec<u8>>, StoreError> {
        self.lock().piece(blob, piece)
    }

    fn pieces(
        &self,
        blob: BlobId,
        level: u8,
        from_index: u32,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.lock().pieces(blob, level, from_index, limit)
    }

    fn blob(&self, blob: BlobId) -> Result<Option<BlobRecord>, StoreError> {
        self.lock().blob(blob)
    }

    fn mark_complete(&mut self, blob: BlobId) -> Result<bool, StoreError> {
        self.lock().mark_complete(blob)
    }

    fn set_pinned(&mut self, blob: BlobId, pinned: bool) -> Result<bool, StoreError> {
        self.lock().set_pinned(blob, pinned)
    }

    fn blobs(&self) -> Result<Vec<(BlobId, BlobRecord)>, StoreError> {
        self.lock().blobs()
    }

    fn remove_blob(&mut self, blob: BlobId) -> Result<u64, StoreError> {
        self.lock().remove_blob(blob)
    }

    fn blob_bytes(&self) -> Result<u64, StoreError> {
        self.lock().blob_bytes()
    }

    fn blob_limit(&self) -> u64 {
        self.lock().blob_limit()
    }

    fn set_blob_limit(&mut self, bytes: u64) {
        self.lock().set_blob_limit(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use gossip_crypto::Identity;

    use crate::MemoryStore;

    #[test]
    fn clones_share_one_store() {
        let mut a = SharedStore::new(Box::new(MemoryStore::new()));
        let b = a.clone();
        let alice = Identity::generate();
        let first = FeedMessage::create(&alice, None, 0, Bytes::from_static(b"hi"), 64)
            .expect("message fits");
        a.append(&first).expect("append");
        assert_eq!(
            b.latest(FeedId::of(&alice)).expect("latest"),
            Some((1, first.id()))
        );
        a.put("t", b"k", b"v").expect("put");
        assert_eq!(b.get("t", b"k").expect("get"), Some(b"v".to_vec()));
        assert_eq!(b.len("t").expect("len"), 1);
    }
}
