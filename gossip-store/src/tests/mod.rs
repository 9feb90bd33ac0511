//! Tests of the crate: one contract suite per trait, written once as generic functions and
//! run against every backend (`MemoryStore`, `RedbStore` in memory, `RedbStore` on a file),
//! plus backend-specific tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

mod blobs;
mod feed_log;
mod memory;
mod redb;
mod store;

/// A fresh directory under the system temp dir, removed (with its content) on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "gossip-store-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Instantiates each named generic test function of the enclosing module once per backend:
/// `fn name(store: S)` with `S` = `MemoryStore`, `RedbStore::in_memory()`, and `RedbStore` on
/// a file in a fresh temporary directory.
macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[test]
                fn $test() {
                    super::$test(crate::MemoryStore::new());
                }
            )*
        }
        mod redb_in_memory {
            $(
                #[test]
                fn $test() {
                    super::$test(crate::RedbStore::in_memory().unwrap());
                }
            )*
        }
        mod redb_file {
            $(
                #[test]
                fn $test() {
                    let dir = crate::tests::TempDir::new(stringify!($test));
                    let store = crate::RedbStore::open(dir.path().join("store.redb")).unwrap();
                    super::$test(store);
                }
            )*
        }
    };
}

pub(crate) use for_each_backend;
