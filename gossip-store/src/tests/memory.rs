//! `MemoryStore`-specific behaviour.

use crate::{MemoryStore, Store, StoreError};

#[test]
fn deleting_the_last_entry_frees_the_table() {
    let mut store = MemoryStore::new();
    store.put("kv", b"k", b"v").unwrap();
    assert!(store.delete("kv", b"k").unwrap());
    assert_eq!(store, MemoryStore::new());
}

#[test]
fn failed_operations_leave_the_store_equal() {
    let mut store = MemoryStore::new();
    store.put("kv", b"k", b"v").unwrap();
    let before = store.clone();
    assert!(matches!(
        store.put("", b"k", b"v"),
        Err(StoreError::InvalidTable { .. })
    ));
    assert_eq!(store, before);
}
