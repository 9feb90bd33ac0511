//! The `Store` contract, run against every backend.

use super::for_each_backend;
use crate::{Entry, MAX_TABLE_NAME_LEN, Store, StoreError};

for_each_backend!(
    put_then_get,
    put_overwrites,
    empty_key_and_value_are_stored,
    tables_are_separate_namespaces,
    delete_reports_whether_the_key_existed,
    deleting_the_last_entry_leaves_an_empty_table,
    range_is_half_open_and_ascending,
    range_respects_limit,
    empty_or_inverted_range_is_empty,
    len_counts_entries,
    invalid_table_names_are_rejected_and_change_nothing,
    store_is_usable_as_a_trait_object,
);

fn pairs(items: &[(&[u8], &[u8])]) -> Vec<Entry> {
    items
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn fill<S: Store>(store: &mut S) {
    for key in [&b"c"[..], b"a", b"b", b"d", b"b\x00", b""] {
        store.put("t", key, &[key.len() as u8]).unwrap();
    }
}

fn put_then_get<S: Store>(mut store: S) {
    assert_eq!(store.get("kv", b"k").unwrap(), None);
    store.put("kv", b"k", b"v").unwrap();
    assert_eq!(store.get("kv", b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(store.get("kv", b"other").unwrap(), None);
}

fn put_overwrites<S: Store>(mut store: S) {
    store.put("kv", b"k", b"one").unwrap();
    store.put("kv", b"k", b"two").unwrap();
    assert_eq!(store.get("kv", b"k").unwrap(), Some(b"two".to_vec()));
    assert_eq!(store.len("kv").unwrap(), 1);
}

fn empty_key_and_value_are_stored<S: Store>(mut store: S) {
    store.put("kv", b"", b"").unwrap();
    assert_eq!(store.get("kv", b"").unwrap(), Some(Vec::new()));
    assert_eq!(store.len("kv").unwrap(), 1);
}

fn tables_are_separate_namespaces<S: Store>(mut store: S) {
    store.put("feed_log", b"k", b"log").unwrap();
    store.put("kv", b"k", b"kv").unwrap();
    assert_eq!(store.get("feed_log", b"k").unwrap(), Some(b"log".to_vec()));
    assert_eq!(store.get("kv", b"k").unwrap(), Some(b"kv".to_vec()));
    assert!(store.delete("kv", b"k").unwrap());
    assert_eq!(store.get("feed_log", b"k").unwrap(), Some(b"log".to_vec()));
    assert_eq!(store.len("feed_log").unwrap(), 1);
    assert_eq!(store.len("kv").unwrap(), 0);
}

fn delete_reports_whether_the_key_existed<S: Store>(mut store: S) {
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

fn deleting_the_last_entry_leaves_an_empty_table<S: Store>(mut store: S) {
    store.put("kv", b"k", b"v").unwrap();
    assert!(store.delete("kv", b"k").unwrap());
    assert_eq!(store.len("kv").unwrap(), 0);
    assert_eq!(store.get("kv", b"k").unwrap(), None);
    assert_eq!(store.range("kv", b"", b"\xff", 10).unwrap(), Vec::new());
}

fn range_is_half_open_and_ascending<S: Store>(mut store: S) {
    fill(&mut store);
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

fn range_respects_limit<S: Store>(mut store: S) {
    fill(&mut store);
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

fn empty_or_inverted_range_is_empty<S: Store>(mut store: S) {
    fill(&mut store);
    assert_eq!(store.range("t", b"b", b"b", 10).unwrap(), Vec::new());
    assert_eq!(store.range("t", b"d", b"a", 10).unwrap(), Vec::new());
    assert_eq!(store.range("none", b"a", b"z", 10).unwrap(), Vec::new());
}

fn len_counts_entries<S: Store>(mut store: S) {
    fill(&mut store);
    assert_eq!(store.len("t").unwrap(), 6);
    assert_eq!(store.len("other").unwrap(), 0);
}

fn invalid_table_names_are_rejected_and_change_nothing<S: Store>(mut store: S) {
    let long = "x".repeat(MAX_TABLE_NAME_LEN + 1);
    let longest = "x".repeat(MAX_TABLE_NAME_LEN);
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
    // The limit counts bytes, and a name of exactly the limit is fine.
    store.put(&longest, b"k", b"v").unwrap();
    assert_eq!(store.len(&longest).unwrap(), 1);
    let multibyte = "é".repeat(MAX_TABLE_NAME_LEN / 2 + 1);
    assert!(matches!(
        store.put(&multibyte, b"k", b"v"),
        Err(StoreError::InvalidTable { .. })
    ));
    assert_eq!(store.len(&multibyte[..MAX_TABLE_NAME_LEN]).unwrap(), 0);
}

fn store_is_usable_as_a_trait_object<S: Store>(store: S) {
    let mut store: Box<dyn Store> = Box::new(store);
    store.put("kv", b"k", b"v").unwrap();
    assert_eq!(store.get("kv", b"k").unwrap(), Some(b"v".to_vec()));
}

mod own_state {
    //! The local node's key/value entries ([`Store::put_own_entry`] and friends), on every
    //! backend.

    use super::super::for_each_backend;
    use crate::{OWN_STATE_TABLE, OwnEntry, Store, StoreError};

    for_each_backend!(
        own_entries_round_trip_in_write_order,
        own_entry_is_replaced_and_removed,
        own_entries_respect_the_limit_and_page,
        own_generation_round_trips,
        corrupt_own_entries_are_reported,
    );

    fn entry(key: &str, generation: u64, version: u64, value: &[u8]) -> OwnEntry {
        OwnEntry {
            key: key.to_owned(),
            generation,
            version,
            value: value.to_vec(),
        }
    }

    fn own_entries_round_trip_in_write_order<S: Store>(mut store: S) {
        assert_eq!(store.own_entries(100).unwrap(), vec![]);
        store.put_own_entry("b", 7, 1, b"one").unwrap();
        store.put_own_entry("a", 7, 2, b"").unwrap();
        store.put_own_entry("c", 5, 9, b"old generation").unwrap();
        assert_eq!(
            store.own_entries(100).unwrap(),
            vec![
                entry("c", 5, 9, b"old generation"),
                entry("b", 7, 1, b"one"),
                entry("a", 7, 2, b""),
            ]
        );
    }

    fn own_entry_is_replaced_and_removed<S: Store>(mut store: S) {
        store.put_own_entry("k", 1, 1, b"v1").unwrap();
        store.put_own_entry("k", 1, 2, b"v2").unwrap();
        assert_eq!(
            store.own_entries(10).unwrap(),
            vec![entry("k", 1, 2, b"v2")]
        );
        assert!(store.remove_own_entry("k").unwrap());
        assert!(!store.remove_own_entry("k").unwrap());
        assert_eq!(store.own_entries(10).unwrap(), vec![]);
        // The rows are ordinary rows of their table: nothing else is touched.
        store.put("other", b"k", b"v").unwrap();
        assert_eq!(store.len(OWN_STATE_TABLE).unwrap(), 0);
    }

    fn own_entries_respect_the_limit_and_page<S: Store>(mut store: S) {
        // More than one internal page of 256 rows.
        for i in 0..600u64 {
            store
                .put_own_entry(&format!("key-{i:04}"), 3, 600 - i, &i.to_be_bytes())
                .unwrap();
        }
        let all = store.own_entries(1_000).unwrap();
        assert_eq!(all.len(), 600);
        // Sorted by version: the last key was written first.
        assert_eq!(all[0].key, "key-0599");
        assert_eq!(all[599].key, "key-0000");
        assert!(all.windows(2).all(|w| w[0].version < w[1].version));
        // A limit keeps the first keys in key order.
        let some = store.own_entries(300).unwrap();
        assert_eq!(some.len(), 300);
        assert!(some.iter().all(|e| e.key.as_str() < "key-0300"));
        assert_eq!(store.own_entries(0).unwrap(), vec![]);
    }

    fn own_generation_round_trips<S: Store>(mut store: S) {
        assert_eq!(store.own_generation().unwrap(), None);
        store.put_own_generation(42).unwrap();
        assert_eq!(store.own_generation().unwrap(), Some(42));
        store.put_own_generation(u64::MAX).unwrap();
        assert_eq!(store.own_generation().unwrap(), Some(u64::MAX));
    }

    fn corrupt_own_entries_are_reported<S: Store>(mut store: S) {
        store.put(OWN_STATE_TABLE, b"short", &[0; 15]).unwrap();
        assert!(matches!(store.own_entries(10), Err(StoreError::Corrupt(_))));
        store.delete(OWN_STATE_TABLE, b"short").unwrap();
        store.put(OWN_STATE_TABLE, b"\xfe", &[0; 16]).unwrap();
        assert!(matches!(store.own_entries(10), Err(StoreError::Corrupt(_))));
        store
            .put(crate::OWN_GENERATION_TABLE, b"generation", &[1, 2, 3])
            .unwrap();
        assert!(matches!(
            store.own_generation(),
            Err(StoreError::Corrupt(_))
        ));
    }
}
