//! [`MemoryStore`]: every trait of the crate, held in `BTreeMap`s.

use std::collections::BTreeMap;
use std::ops::Bound;

use gossip_core::NodeId;
use gossip_core::feed::{FeedId, FeedMessage, MessageHash};

use crate::{
    Entry, FeedLog, PeerClocks, Store, StoreError, check_append, check_clock, validate_table,
};

/// One table of [`MemoryStore`].
type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// One feed of [`MemoryStore`]: messages by sequence, each with its id.
type Log = BTreeMap<u64, (FeedMessage, MessageHash)>;

/// A [`Store`], [`FeedLog`] and [`PeerClocks`] held in memory: `BTreeMap`s, lost when dropped.
/// For tests and for nodes that need no persistence. Never returns [`StoreError::Backend`] or
/// [`StoreError::Corrupt`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    tables: BTreeMap<String, Table>,
    logs: BTreeMap<FeedId, Log>,
    clocks: BTreeMap<NodeId, Vec<u8>>,
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
