//! The local node's own key/value state, kept so that a restarted node still holds every
//! write it acknowledged.
//!
//! # Model
//!
//! Scuttlebutt state (`gossip_core::reconcile`) is replicated from memory: every node holds
//! every owner's map, and only the owner writes its own. A node that crashes loses its copy of
//! the others' maps (harmless: it gets them back from its peers) and of its own map, which no
//! peer can give back, since a peer's copy may be older than what the owner acknowledged, and
//! the owner would anyway restart in a new generation that replaces all of it. So the owner
//! persists its own map, and only that:
//!
//! ```text
//! table gossip.own_state       key = the state key (UTF-8)
//!                              value = generation (u64 BE) ‖ version (u64 BE) ‖ value bytes
//! table gossip.own_generation  key = "generation"   value = u64 BE
//! ```
//!
//! - `set` writes the row ([`Store::put_own_entry`]) and is acknowledged only when the row is
//!   durable.
//! - `delete` removes the row ([`Store::remove_own_entry`]); no tombstone is kept. A
//!   restarted node starts a **new, higher generation** (recorded with
//!   [`Store::put_own_generation`] before the node gossips), republishes the stored entries
//!   as fresh writes of that generation, and every peer replaces all state it holds of an
//!   older generation of the node (Scuttlebutt's restart rule). A deleted key is therefore
//!   absent from the new generation everywhere and cannot come back, whatever old copies
//!   still circulate (they are of an older generation and ignored). Tombstones matter only
//!   within one generation, where the running node keeps them in memory.
//! - The table therefore holds at most the owner's live keys (the core's
//!   `max_keys_per_owner`), whatever the history of writes.
//! - Rows are sorted on reading by `(generation, version)`, the order they were written in,
//!   so a restart replays them in that order.

use crate::{Store, StoreError};

/// Table of the local node's key/value entries (see the [module docs](self)).
pub const OWN_STATE_TABLE: &str = "gossip.own_state";

/// Table of the local node's current generation (see the [module docs](self)).
pub const OWN_GENERATION_TABLE: &str = "gossip.own_generation";

/// The one key of [`OWN_GENERATION_TABLE`].
pub(crate) const GENERATION_KEY: &[u8] = b"generation";

/// Bytes before the value in a stored entry: generation and version, 8 bytes each.
const HEADER_LEN: usize = 16;

/// One stored write of the local node, from [`Store::own_entries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnEntry {
    /// The state key.
    pub key: String,
    /// The generation the node ran with when it wrote the entry.
    pub generation: u64,
    /// The owner's version of the write within that generation.
    pub version: u64,
    /// The value.
    pub value: Vec<u8>,
}

pub(crate) fn encode_entry(generation: u64, version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + value.len());
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode_entry(key: Vec<u8>, stored: &[u8]) -> Result<OwnEntry, StoreError> {
    let key = String::from_utf8(key)
        .map_err(|_| StoreError::Corrupt("own state key is not UTF-8".into()))?;
    let (Some(generation), Some(version), Some(value)) = (
        stored.get(0..8),
        stored.get(8..HEADER_LEN),
        stored.get(HEADER_LEN..),
    ) else {
        return Err(StoreError::Corrupt(format!(
            "own state entry {key:?} has {} bytes, fewer than its {HEADER_LEN}-byte header",
            stored.len()
        )));
    };
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        u64::from_be_bytes(w)
    };
    Ok(OwnEntry {
        key,
        generation: word(generation),
        version: word(version),
        value: value.to_vec(),
    })
}

/// Rows fetched per `range` call while reading.
const PAGE: usize = 256;

pub(crate) fn read_entries<S: Store + ?Sized>(
    store: &S,
    limit: usize,
) -> Result<Vec<OwnEntry>, StoreError> {
    let mut entries = Vec::new();
    // Keys are UTF-8, which never contains the byte 0xff, so `[0xff]` is above every key.
    let end = [0xffu8];
    let mut start: Vec<u8> = Vec::new();
    while entries.len() < limit {
        let want = PAGE.min(limit - entries.len());
        let page = store.range(OWN_STATE_TABLE, &start, &end, want)?;
        let last = page.len() < want;
        for (key, value) in page {
            start = key.clone();
            start.push(0);
            entries.push(decode_entry(key, &value)?);
        }
        if last {
            break;
        }
    }
    entries.sort_by_key(|e| (e.generation, e.version));
    Ok(entries)
}

pub(crate) fn read_generation<S: Store + ?Sized>(store: &S) -> Result<Option<u64>, StoreError> {
    match store.get(OWN_GENERATION_TABLE, GENERATION_KEY)? {
        None => Ok(None),
        Some(bytes) => {
            let word: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                StoreError::Corrupt(format!("own generation has {} bytes, not 8", bytes.len()))
            })?;
            Ok(Some(u64::from_be_bytes(word)))
        }
    }
}
