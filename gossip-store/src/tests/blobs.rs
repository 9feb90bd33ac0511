//! The `BlobStore` contract and the blob helpers, run against every backend.

use std::collections::BTreeSet;

use bytes::Bytes;
use gossip_core::blob::{BlobId, BlobMeta, PieceIndex, build, reference};
use gossip_core::feed::{FeedId, FeedMessage};
use gossip_crypto::Identity;

use super::for_each_backend;
use crate::{
    BlobStore, FeedLog, NodeStore, StoreError, add_blob, blob_hash, evict_blobs, read_blob,
};

for_each_backend!(
    pieces_read_back_and_are_counted,
    the_limit_refuses_a_write_and_changes_nothing,
    added_blobs_read_back_and_hash_to_their_id,
    eviction_spares_referenced_pinned_and_kept_blobs,
    blobs_are_usable_as_a_node_store,
);

fn bytes_of(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

fn meta() -> BlobMeta {
    BlobMeta {
        size: 3_000,
        chunk_size: 1_280,
        root: [7; 32],
    }
}

fn p(level: u8, index: u32) -> PieceIndex {
    PieceIndex { level, index }
}

fn pieces_read_back_and_are_counted<S: BlobStore>(mut store: S) {
    let blob = BlobId([1; 32]);
    assert_eq!(store.blob(blob).unwrap(), None);
    store
        .put_pieces(
            blob,
            meta(),
            &[
                (p(0, 0), Bytes::from(vec![1; 1_280])),
                (p(0, 1), Bytes::from(vec![2; 1_280])),
                (p(0, 3), Bytes::from(vec![4; 10])),
            ],
        )
        .unwrap();
    assert_eq!(store.piece(blob, p(0, 1)).unwrap(), Some(vec![2; 1_280]));
    assert_eq!(store.piece(blob, p(1, 0)).unwrap(), None);
    // A run stops at the first missing piece.
    assert_eq!(store.pieces(blob, 0, 0, 10).unwrap().len(), 2);
    assert_eq!(store.pieces(blob, 0, 3, 10).unwrap(), vec![vec![4; 10]]);
    assert_eq!(store.pieces(blob, 0, 0, 1).unwrap().len(), 1);
    let record = store.blob(blob).unwrap().unwrap();
    assert_eq!(
        (record.meta, record.complete, record.pinned),
        (meta(), false, false)
    );
    assert_eq!(record.bytes, 2_570);
    assert_eq!(store.blob_bytes().unwrap(), 2_570);
    // Replacing a piece counts the difference.
    store
        .put_pieces(blob, meta(), &[(p(0, 3), Bytes::from(vec![5; 20]))])
        .unwrap();
    assert_eq!(store.blob_bytes().unwrap(), 2_580);
    assert!(store.mark_complete(blob).unwrap());
    assert!(store.set_pinned(blob, true).unwrap());
    let record = store.blob(blob).unwrap().unwrap();
    assert!(record.complete && record.pinned);
    assert!(!store.mark_complete(BlobId([2; 32])).unwrap());
    let other = BlobId([0; 32]);
    store
        .put_pieces(other, meta(), &[(p(0, 0), Bytes::from(vec![9; 100]))])
        .unwrap();
    let listed: Vec<BlobId> = store
        .blobs()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(listed, vec![other, blob]);
    assert!(store.blob(other).unwrap().unwrap().seq > record.seq);
    assert_eq!(store.remove_blob(blob).unwrap(), 2_580);
    assert_eq!(store.remove_blob(blob).unwrap(), 0);
    assert_eq!(store.piece(blob, p(0, 0)).unwrap(), None);
    assert_eq!(store.blob_bytes().unwrap(), 100);
    assert_eq!(store.piece(other, p(0, 0)).unwrap(), Some(vec![9; 100]));
}

fn the_limit_refuses_a_write_and_changes_nothing<S: BlobStore>(mut store: S) {
    assert_eq!(store.blob_limit(), crate::DEFAULT_BLOB_LIMIT);
    store.set_blob_limit(1_000);
    let blob = BlobId([1; 32]);
    store
        .put_pieces(blob, meta(), &[(p(0, 0), Bytes::from(vec![1; 600]))])
        .unwrap();
    let err = store
        .put_pieces(
            blob,
            meta(),
            &[
                (p(0, 1), Bytes::from(vec![1; 300])),
                (p(0, 2), Bytes::from(vec![1; 300])),
            ],
        )
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::BlobsFull {
            needed: 1_200,
            limit: 1_000
        }
    );
    assert_eq!(store.blob_bytes().unwrap(), 600);
    assert_eq!(store.piece(blob, p(0, 1)).unwrap(), None);
    let err = store
        .put_pieces(
            BlobId([2; 32]),
            meta(),
            &[(p(0, 0), Bytes::from(vec![1; 401]))],
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::BlobsFull { .. }));
    assert_eq!(store.blob(BlobId([2; 32])).unwrap(), None);
}

fn added_blobs_read_back_and_hash_to_their_id<S: BlobStore>(mut store: S) {
    for len in [0usize, 5, 1_280, 300_000] {
        let bytes = bytes_of(len, len as u8);
        let (id, meta) = add_blob(&mut store, &bytes, 1_280, true).unwrap();
        assert_eq!(id, BlobId::of(&bytes));
        assert_eq!(meta, build(&bytes, 1_280).unwrap().meta);
        assert_eq!(read_blob(&store, id).unwrap(), Some(bytes.clone()));
        assert_eq!(blob_hash(&store, id).unwrap(), Some(id.0));
        let record = store.blob(id).unwrap().unwrap();
        assert!(record.complete && record.pinned);
        // Adding it again changes nothing.
        let before = store.blob_bytes().unwrap();
        add_blob(&mut store, &bytes, 1_280, false).unwrap();
        assert_eq!(store.blob_bytes().unwrap(), before);
    }
    // An incomplete blob is not read, and hashes only if every chunk is there.
    let bytes = bytes_of(5_000, 1);
    let built = build(&bytes, 1_280).unwrap();
    let some: Vec<(PieceIndex, Bytes)> = built.pieces[..2].to_vec();
    store.put_pieces(built.id, built.meta, &some).unwrap();
    assert_eq!(read_blob(&store, built.id).unwrap(), None);
    assert_eq!(blob_hash(&store, built.id).unwrap(), None);
    store
        .put_pieces(built.id, built.meta, &built.pieces)
        .unwrap();
    assert_eq!(blob_hash(&store, built.id).unwrap(), Some(built.id.0));
    assert_eq!(
        read_blob(&store, built.id).unwrap(),
        None,
        "not marked complete"
    );
}

fn eviction_spares_referenced_pinned_and_kept_blobs<S: BlobStore + FeedLog>(mut store: S) {
    let blob = |seed: u8| {
        let bytes = bytes_of(4_000, seed);
        (bytes.clone(), BlobId::of(&bytes))
    };
    let (ref_bytes, referenced) = blob(1);
    let (pin_bytes, pinned) = blob(2);
    let (keep_bytes, kept) = blob(3);
    let (old_bytes, old) = blob(4);
    let (new_bytes, newer) = blob(5);
    for (bytes, pin) in [
        (&ref_bytes, false),
        (&pin_bytes, true),
        (&keep_bytes, false),
        (&old_bytes, false),
        (&new_bytes, false),
    ] {
        add_blob(&mut store, bytes, 1_280, pin).unwrap();
    }
    // An incomplete blob: evicted first.
    let partial = build(&bytes_of(4_000, 6), 1_280).unwrap();
    store
        .put_pieces(partial.id, partial.meta, &partial.pieces[..1])
        .unwrap();
    // A followed feed references one blob.
    let author = Identity::from_bytes(&[9; 32]);
    let content = format!("photo: {}", reference(referenced));
    let message = FeedMessage::create(&author, None, 1, Bytes::from(content), 1_024).unwrap();
    store.append(&message).unwrap();
    let feeds = [FeedId::of(&author)];
    let keep: BTreeSet<BlobId> = [kept].into();
    let per_blob = store.blob(old).unwrap().unwrap().bytes;
    // Make room for one blob: only the partial one and the oldest unprotected one go.
    let target = store.blob_bytes().unwrap() - per_blob;
    let removed = evict_blobs(&mut store, &feeds, &keep, target).unwrap();
    assert_eq!(removed, vec![partial.id, old]);
    // Down to nothing: everything unprotected goes, the rest stays.
    let removed = evict_blobs(&mut store, &feeds, &keep, 0).unwrap();
    assert_eq!(removed, vec![newer]);
    let left: BTreeSet<BlobId> = store
        .blobs()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, [referenced, pinned, kept].into());
    // Without the feed, the referenced blob is evictable too.
    let removed = evict_blobs(&mut store, &[], &keep, 0).unwrap();
    assert_eq!(removed, vec![referenced]);
}

fn blobs_are_usable_as_a_node_store<S: NodeStore>(store: S) {
    let mut boxed: Box<dyn NodeStore> = Box::new(store);
    let bytes = bytes_of(2_000, 3);
    let (id, _) = add_blob(boxed.as_mut(), &bytes, 1_280, false).unwrap();
    assert_eq!(read_blob(boxed.as_ref(), id).unwrap(), Some(bytes));
}
