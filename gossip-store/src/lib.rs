#![deny(missing_docs)]
//! Storage for the gossip framework: the [`Store`] trait and [`MemoryStore`], its in-memory
//! implementation. A persistent backend (redb) will implement the same trait.
//!
//! # Model
//!
//! A store is a set of named tables; each table is an ordered map from byte-string keys to
//! byte-string values, ordered lexicographically by key bytes (so big-endian integers sort
//! numerically, which feed logs keyed by sequence number rely on).
//!
//! ```text
//! store
//! ├── "feed_log"  { key bytes -> value bytes, ascending by key }
//! └── "kv"        { key bytes -> value bytes, ascending by key }
//! ```
//!
//! A table exists as soon as something is written to it; reading a table never written to
//! behaves as reading an empty one. Table names are 1 to [`MAX_TABLE_NAME_LEN`] bytes.
//!
//! The trait is synchronous and small on purpose (STYLE.md item 13, after redb's
//! `StorageBackend`): the sans-IO protocol core never calls it during a protocol step; the
//! actor that owns the store reads what the core needs, hands it over, and writes back what
//! the core returns.
//!
//! # Example
//!
//! ```
//! use gossip_store::{MemoryStore, Store};
//!
//! let mut store = MemoryStore::new();
//! store.put("kv", b"b", b"2")?;
//! store.put("kv", b"a", b"1")?;
//! assert_eq!(store.get("kv", b"a")?, Some(b"1".to_vec()));
//! let all = store.range("kv", b"", b"\xff", 10)?;
//! assert_eq!(all, vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
//! # Ok::<(), gossip_store::StoreError>(())
//! ```

use std::collections::BTreeMap;
use std::ops::Bound;

/// Longest accepted table name, in bytes.
pub const MAX_TABLE_NAME_LEN: usize = 64;

/// One `(key, value)` pair, as returned by [`Store::range`].
pub type Entry = (Vec<u8>, Vec<u8>);

/// One table of [`MemoryStore`].
type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// Errors of [`Store`] operations. On any error the operation changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The table name is empty or longer than [`MAX_TABLE_NAME_LEN`] bytes. Nothing changed.
    #[error("invalid table name {table:?}: must be 1 to {MAX_TABLE_NAME_LEN} bytes")]
    InvalidTable {
        /// The rejected name.
        table: String,
    },
    /// The backend failed (I/O, corruption, ...); the message comes from the backend. Nothing
    /// changed. [`MemoryStore`] never returns it.
    #[error("storage backend failed: {0}")]
    Backend(String),
}

/// Ordered key/value storage in named tables (a table = a namespace such as `"feed_log"` or
/// `"kv"`).
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

/// A [`Store`] held in memory: one `BTreeMap` per table. Lost when dropped; for tests and for
/// nodes that need no persistence. Never returns [`StoreError::Backend`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    tables: BTreeMap<String, Table>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&[u8], &[u8])]) -> Vec<Entry> {
        items
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    fn filled() -> MemoryStore {
        let mut store = MemoryStore::new();
        for key in [&b"c"[..], b"a", b"b", b"d", b"b\x00", b""] {
            store.put("t", key, &[key.len() as u8]).unwrap();
        }
        store
    }

    #[test]
    fn put_then_get() {
        let mut store = MemoryStore::new();
        assert_eq!(store.get("kv", b"k").unwrap(), None);
        store.put("kv", b"k", b"v").unwrap();
        assert_eq!(store.get("kv", b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.get("kv", b"other").unwrap(), None);
    }

    #[test]
    fn put_overwrites() {
        let mut store = MemoryStore::new();
        store.put("kv", b"k", b"one").unwrap();
        store.put("kv", b"k", b"two").unwrap();
        assert_eq!(store.get("kv", b"k").unwrap(), Some(b"two".to_vec()));
        assert_eq!(store.len("kv").unwrap(), 1);
    }

    #[test]
    fn empty_key_and_value_are_stored() {
        let mut store = MemoryStore::new();
        store.put("kv", b"", b"").unwrap();
        assert_eq!(store.get("kv", b"").unwrap(), Some(Vec::new()));
        assert_eq!(store.len("kv").unwrap(), 1);
    }

    #[test]
    fn tables_are_separate_namespaces() {
        let mut store = MemoryStore::new();
        store.put("feed_log", b"k", b"log").unwrap();
        store.put("kv", b"k", b"kv").unwrap();
        assert_eq!(store.get("feed_log", b"k").unwrap(), Some(b"log".to_vec()));
        assert_eq!(store.get("kv", b"k").unwrap(), Some(b"kv".to_vec()));
        assert!(store.delete("kv", b"k").unwrap());
        assert_eq!(store.get("feed_log", b"k").unwrap(), Some(b"log".to_vec()));
        assert_eq!(store.len("feed_log").unwrap(), 1);
        assert_eq!(store.len("kv").unwrap(), 0);
    }

    #[test]
    fn delete_reports_whether_the_key_existed() {
        let mut store = MemoryStore::new();
        assert!(!store.delete("kv", b"k").unwrap(), "table never written");
        store.put("kv", b"k", b"v").unwrap();
        store.put("kv", b"j", b"w").unwrap();
        assert!(!store.delete("kv", b"missing").unwrap());
        assert!(store.delete("kv", b"k").unwrap());
        assert!(!store.delete("kv", b"k").unwrap(), "already deleted");
        assert_eq!(store.get("kv", b"k").unwrap(), None);
        assert_eq!(store.get("kv", b"j").unwrap(), Some(b"w".to_vec()));
        assert_eq!(store.len("kv").unwrap(), 1);
    }

    #[test]
    fn deleting_the_last_entry_leaves_an_empty_table() {
        let mut store = MemoryStore::new();
        store.put("kv", b"k", b"v").unwrap();
        assert!(store.delete("kv", b"k").unwrap());
        assert_eq!(store, MemoryStore::new());
        assert_eq!(store.len("kv").unwrap(), 0);
        assert_eq!(store.range("kv", b"", b"\xff", 10).unwrap(), Vec::new());
    }

    #[test]
    fn range_is_half_open_and_ascending() {
        let store = filled();
        assert_eq!(
            store.range("t", b"a", b"c", 10).unwrap(),
            pairs(&[(b"a", &[1]), (b"b", &[1]), (b"b\x00", &[2])]),
        );
        // Start included, end excluded, even when both are present.
        assert_eq!(
            store.range("t", b"b", b"d", 10).unwrap(),
            pairs(&[(b"b", &[1]), (b"b\x00", &[2]), (b"c", &[1])]),
        );
        // Bounds need not be present keys.
        assert_eq!(
            store.range("t", b"a\x00", b"b\x01", 10).unwrap(),
            pairs(&[(b"b", &[1]), (b"b\x00", &[2])]),
        );
        // The empty key is the smallest.
        assert_eq!(
            store.range("t", b"", b"a", 10).unwrap(),
            pairs(&[(b"", &[0])])
        );
        let all = store.range("t", b"", b"\xff", 100).unwrap();
        let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [&b""[..], b"a", b"b", b"b\x00", b"c", b"d"]);
    }

    #[test]
    fn range_respects_limit() {
        let store = filled();
        assert_eq!(
            store.range("t", b"a", b"z", 2).unwrap(),
            pairs(&[(b"a", &[1]), (b"b", &[1])]),
        );
        assert_eq!(store.range("t", b"a", b"z", 0).unwrap(), Vec::new());
        // Paging with "last key ‖ 0x00" as the next start visits every entry once.
        let mut seen = Vec::new();
        let mut start = Vec::new();
        loop {
            let page = store.range("t", &start, b"\xff", 2).unwrap();
            let Some((last, _)) = page.last() else { break };
            start = [last.as_slice(), &[0]].concat();
            seen.extend(page);
        }
        assert_eq!(seen, store.range("t", b"", b"\xff", 100).unwrap());
    }

    #[test]
    fn empty_or_inverted_range_is_empty() {
        let store = filled();
        assert_eq!(store.range("t", b"b", b"b", 10).unwrap(), Vec::new());
        assert_eq!(store.range("t", b"d", b"a", 10).unwrap(), Vec::new());
        assert_eq!(store.range("none", b"a", b"z", 10).unwrap(), Vec::new());
    }

    #[test]
    fn len_counts_entries() {
        let store = filled();
        assert_eq!(store.len("t").unwrap(), 6);
        assert_eq!(store.len("other").unwrap(), 0);
    }

    #[test]
    fn invalid_table_names_are_rejected_and_change_nothing() {
        let long = "x".repeat(MAX_TABLE_NAME_LEN + 1);
        let longest = "x".repeat(MAX_TABLE_NAME_LEN);
        let mut store = MemoryStore::new();
        for table in ["", long.as_str()] {
            let error = StoreError::InvalidTable {
                table: table.to_owned(),
            };
            assert_eq!(store.put(table, b"k", b"v"), Err(error.clone()));
            assert_eq!(store.get(table, b"k"), Err(error.clone()));
            assert_eq!(store.delete(table, b"k"), Err(error.clone()));
            assert_eq!(store.range(table, b"", b"\xff", 1), Err(error.clone()));
            assert_eq!(store.len(table), Err(error));
        }
        assert_eq!(store, MemoryStore::new());
        // The limit counts bytes, and a name of exactly the limit is fine.
        store.put(&longest, b"k", b"v").unwrap();
        assert_eq!(store.len(&longest).unwrap(), 1);
        let multibyte = "é".repeat(MAX_TABLE_NAME_LEN / 2 + 1);
        assert!(matches!(
            store.put(&multibyte, b"k", b"v"),
            Err(StoreError::InvalidTable { .. })
        ));
    }

    #[test]
    fn store_is_usable_as_a_trait_object() {
        let mut store: Box<dyn Store> = Box::new(MemoryStore::new());
        store.put("kv", b"k", b"v").unwrap();
        assert_eq!(store.get("kv", b"k").unwrap(), Some(b"v".to_vec()));
    }
}
