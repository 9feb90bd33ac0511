//! One owner's replicated state, and small indexed collections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use rand::Rng;

use super::wire::{DeltaEntry, DigestEntry, NodePrefix};
use crate::id::NodeId;

/// Bytes an entry of a `key_len`-byte key and a `value_len`-byte value counts for the
/// `max_state_bytes` budget.
pub(super) fn entry_bytes(key_len: usize, value_len: usize) -> usize {
    key_len + value_len + super::ENTRY_OVERHEAD
}

/// One key of an owner: a value or a tombstone at a version of the owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub key: String,
    pub version: u64,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    /// For a tombstone held in `entries`: when it is garbage-collected (local clock); its
    /// `(expires, owner, key)` is in the core's collection queue.
    pub expires: Option<Instant>,
}

impl Entry {
    /// Bytes this entry counts for the `max_state_bytes` budget.
    pub fn held_bytes(&self) -> usize {
        entry_bytes(self.key.len(), self.value.as_ref().map_or(0, Bytes::len))
    }

    /// Encoded size of this entry in a delta.
    pub fn wire_len(&self) -> usize {
        DeltaEntry::len_of(
            self.key.len(),
            self.version,
            self.value.as_ref().map(Bytes::len),
        )
    }

    pub fn to_delta(&self) -> DeltaEntry {
        DeltaEntry {
            key: self.key.clone(),
            version: self.version,
            value: self.value.clone(),
        }
    }
}

/// What this node holds of one owner (itself included).
///
/// Invariant: every entry in `entries` has a version ≤ `max_version`, and this node holds
/// every entry of the owner with a version ≤ `max_version` (as of some state of the owner).
/// `stale` is non-empty only while the copy is rebuilt after a reset: the old entries, still
/// readable, never gossiped, dropped when the rebuild completes.
#[derive(Clone, Debug)]
pub(super) struct NodeState {
    pub generation: u64,
    pub heartbeat: u64,
    pub max_version: u64,
    pub gc_version: u64,
    pub addr: SocketAddr,
    /// Sorted by key.
    pub entries: Vec<Entry>,
    /// Sorted by key; see the type doc.
    pub stale: Vec<Entry>,
    /// Local time the heartbeat, generation or version last advanced.
    pub last_advance: Instant,
    /// As told by the failure detector; new nodes start live.
    pub live: bool,
    /// [`held_bytes`](Self::held_bytes) as last accounted in the core's total.
    pub bytes: usize,
}

impl NodeState {
    pub fn new(generation: u64, heartbeat: u64, addr: SocketAddr, now: Instant) -> Self {
        NodeState {
            generation,
            heartbeat,
            max_version: 0,
            gc_version: 0,
            addr,
            entries: Vec::new(),
            stale: Vec::new(),
            last_advance: now,
            live: true,
            bytes: 0,
        }
    }

    /// Bytes this state holds for the `max_state_bytes` budget: key, value and
    /// [`super::ENTRY_OVERHEAD`] of every entry, old entries of a rebuild included.
    pub fn held_bytes(&self) -> usize {
        self.entries
            .iter()
            .chain(&self.stale)
            .map(Entry::held_bytes)
            .sum()
    }

    pub fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.key.as_str().cmp(key))
    }

    pub fn find_stale(&self, key: &str) -> Result<usize, usize> {
        self.stale.binary_search_by(|e| e.key.as_str().cmp(key))
    }

    pub fn digest_entry(&self, node: NodeId) -> DigestEntry {
        DigestEntry {
            node: NodePrefix::of(&node),
            generation: self.generation,
            heartbeat: self.heartbeat,
            max_version: self.max_version,
            gc_version: self.gc_version,
        }
    }

    /// Entries with a version above `from`, ascending by version.
    pub fn entries_after(&self, from: u64) -> Vec<&Entry> {
        let mut list: Vec<&Entry> = self.entries.iter().filter(|e| e.version > from).collect();
        list.sort_unstable_by_key(|e| e.version);
        list
    }

    /// How many entries have a version above `from`.
    pub fn count_after(&self, from: u64) -> usize {
        self.entries.iter().filter(|e| e.version > from).count()
    }

    /// The live value of `key` with its version: from `entries`, or while rebuilding from
    /// `stale` if `entries` does not have the key yet.
    pub fn live_value(&self, key: &str) -> Option<(&Bytes, u64)> {
        match self.find(key) {
            Ok(i) => {
                let e = &self.entries[i];
                e.value.as_ref().map(|v| (v, e.version))
            }
            Err(_) => match self.find_stale(key) {
                Ok(i) => {
                    let e = &self.stale[i];
                    e.value.as_ref().map(|v| (v, e.version))
                }
                Err(_) => None,
            },
        }
    }
}

/// A set of node ids with O(log n) insert and remove and O(1) uniform sampling, each with a
/// value. Order of `items` depends only on the sequence of operations (deterministic).
#[derive(Clone, Debug)]
pub(super) struct IndexedSet<V> {
    items: Vec<(NodeId, V)>,
    index: BTreeMap<NodeId, usize>,
}

impl<V> Default for IndexedSet<V> {
    fn default() -> Self {
        IndexedSet {
            items: Vec::new(),
            index: BTreeMap::new(),
        }
    }
}

impl<V> IndexedSet<V> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    #[cfg(test)]
    pub fn contains(&self, id: &NodeId) -> bool {
        self.index.contains_key(id)
    }

    /// Inserts or replaces; `true` if `id` was new.
    pub fn insert(&mut self, id: NodeId, value: V) -> bool {
        if let Some(&i) = self.index.get(&id) {
            self.items[i].1 = value;
            return false;
        }
        self.index.insert(id, self.items.len());
        self.items.push((id, value));
        true
    }

    pub fn remove(&mut self, id: &NodeId) -> Option<V> {
        let i = self.index.remove(id)?;
        let (_, value) = self.items.swap_remove(i);
        if let Some((moved, _)) = self.items.get(i) {
            self.index.insert(*moved, i);
        }
        Some(value)
    }

    pub fn at(&self, i: usize) -> Option<NodeId> {
        self.items.get(i).map(|(id, _)| *id)
    }

    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.items.iter().map(|(id, _)| *id)
    }

    /// A uniformly random member.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<NodeId> {
        if self.items.is_empty() {
            return None;
        }
        self.at(rng.random_range(0..self.items.len()))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn indexed_set_keeps_index_consistent() {
        let mut set = IndexedSet::default();
        for i in 0..10u8 {
            assert!(set.insert(NodeId([i; 32]), i));
        }
        assert!(!set.insert(NodeId([3; 32]), 33));
        assert_eq!(set.remove(&NodeId([0; 32])), Some(0));
        assert_eq!(set.remove(&NodeId([0; 32])), None);
        assert_eq!(set.remove(&NodeId([5; 32])), Some(5));
        assert_eq!(set.len(), 8);
        for i in 0..set.len() {
            let id = set.at(i).unwrap();
            assert_eq!(set.index[&id], i);
        }
        assert_eq!(set.items[set.index[&NodeId([3; 32])]].1, 33);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            assert!(set.contains(&set.pick(&mut rng).unwrap()));
        }
        let empty: IndexedSet<()> = IndexedSet::default();
        assert_eq!(empty.pick(&mut rng), None);
    }
}
