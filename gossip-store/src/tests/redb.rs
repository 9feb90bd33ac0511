//! `RedbStore`-specific behaviour: files, locking, damage.

use bytes::Bytes;
use gossip_core::feed::{FeedId, FeedMessage};
use gossip_crypto::Identity;

use super::TempDir;
use crate::redb_store::{FEED_HEADS, FEED_LOG};
use crate::{FeedLog, RedbStore, Store, StoreError};

#[test]
fn a_file_is_held_by_one_store_at_a_time() {
    let dir = TempDir::new("lock");
    let path = dir.path().join("db.redb");
    let mut first = RedbStore::open(&path).unwrap();
    assert_eq!(first.path(), Some(path.as_path()));
    first.put("kv", b"k", b"v").unwrap();
    assert!(matches!(
        RedbStore::open(&path),
        Err(StoreError::Backend(_))
    ));
    drop(first);
    let second = RedbStore::open(&path).unwrap();
    assert_eq!(second.get("kv", b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn a_foreign_or_unreachable_file_is_a_backend_error() {
    let dir = TempDir::new("foreign");
    let path = dir.path().join("not-a-db");
    std::fs::write(&path, vec![0x42; 4096]).unwrap();
    assert!(matches!(
        RedbStore::open(&path),
        Err(StoreError::Backend(_))
    ));
    let missing_dir = dir.path().join("missing").join("db.redb");
    assert!(matches!(
        RedbStore::open(missing_dir),
        Err(StoreError::Backend(_))
    ));
}

#[test]
fn damaged_records_are_reported_as_corrupt_not_panics() {
    let store = RedbStore::in_memory().unwrap();
    let mut store = store;
    let alice = Identity::from_bytes(&[1; 32]);
    let feed = FeedId::of(&alice);
    let first = FeedMessage::create(&alice, None, 0, Bytes::from_static(b"x"), 10).unwrap();
    store.append(&first).unwrap();
    let txn = store.raw().begin_write().unwrap();
    {
        let mut log = txn.open_table(FEED_LOG).unwrap();
        let mut key = feed.0.to_vec();
        key.extend_from_slice(&1u64.to_be_bytes());
        log.insert(&key[..], &b"garbage"[..]).unwrap();
        let mut heads = txn.open_table(FEED_HEADS).unwrap();
        heads.insert(&feed.0[..], &b"short"[..]).unwrap();
    }
    txn.commit().unwrap();
    assert!(matches!(
        store.message(feed, 1),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.messages(feed, 1, 5),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(store.latest(feed), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.feeds(), Err(StoreError::Corrupt(_))));
    let second = FeedMessage::create(&alice, Some(&first), 0, Bytes::new(), 10).unwrap();
    assert!(matches!(store.append(&second), Err(StoreError::Corrupt(_))));
}

#[test]
fn debug_names_the_path_only() {
    let store = RedbStore::in_memory().unwrap();
    assert_eq!(format!("{store:?}"), "RedbStore { path: None, .. }");
}
