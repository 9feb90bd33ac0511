//! The `FeedLog` and `PeerClocks` contracts, run against every backend.

use bytes::Bytes;
use gossip_core::NodeId;
use gossip_core::feed::{FeedId, FeedMessage, MessageHash};
use gossip_crypto::Identity;

use super::for_each_backend;
use crate::{FeedLog, MAX_CLOCK_LEN, PeerClocks, Store, StoreError};

for_each_backend!(
    appended_messages_read_back,
    append_refuses_anything_but_the_next_message_and_changes_nothing,
    messages_pages_and_limits,
    feeds_are_independent_and_listed_in_order,
    remove_feed_deletes_messages_and_head,
    feed_log_is_separate_from_store_tables,
    feed_log_is_usable_as_a_trait_object,
    clocks_are_stored_per_peer,
    oversize_clock_is_refused,
);

fn identity(n: u8) -> Identity {
    Identity::from_bytes(&[n; 32])
}

/// The first `len` messages of `author`'s feed, with contents of varied lengths.
fn chain(author: &Identity, len: u64) -> Vec<FeedMessage> {
    let mut messages: Vec<FeedMessage> = Vec::new();
    for i in 1..=len {
        let content = Bytes::from(vec![i as u8; (i as usize * 7) % 300]);
        let message = FeedMessage::create(author, messages.last(), i, content, 1024).unwrap();
        messages.push(message);
    }
    messages
}

fn append_all<S: FeedLog>(store: &mut S, messages: &[FeedMessage]) {
    for message in messages {
        store.append(message).unwrap();
    }
}

fn appended_messages_read_back<S: FeedLog>(mut store: S) {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    assert_eq!(store.latest(feed).unwrap(), None);
    assert_eq!(store.message(feed, 1).unwrap(), None);
    assert_eq!(store.feeds().unwrap(), Vec::new());
    let messages = chain(&alice, 10);
    append_all(&mut store, &messages);
    for message in &messages {
        assert_eq!(
            store.message(feed, message.sequence).unwrap().as_ref(),
            Some(message)
        );
    }
    assert_eq!(store.message(feed, 0).unwrap(), None);
    assert_eq!(store.message(feed, 11).unwrap(), None);
    assert_eq!(store.latest(feed).unwrap(), Some((10, messages[9].id())));
    assert_eq!(store.feeds().unwrap(), vec![(feed, 10)]);
    assert_eq!(store.messages(feed, 1, 100).unwrap(), messages);
}

fn append_refuses_anything_but_the_next_message_and_changes_nothing<S: FeedLog>(mut store: S) {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let messages = chain(&alice, 4);

    // An empty feed takes only sequence 1.
    assert_eq!(
        store.append(&messages[1]),
        Err(StoreError::OutOfOrder {
            feed,
            expected: 1,
            got: 2
        })
    );
    let with_previous = FeedMessage {
        previous: Some(MessageHash([1; 32])),
        ..messages[0].clone()
    };
    assert_eq!(
        store.append(&with_previous),
        Err(StoreError::WrongPrevious { feed, sequence: 1 })
    );
    assert_eq!(store.latest(feed).unwrap(), None);
    assert_eq!(store.feeds().unwrap(), Vec::new());

    append_all(&mut store, &messages[..2]);
    let head = Some((2, messages[1].id()));
    let refused = [
        (
            messages[0].clone(),
            StoreError::OutOfOrder {
                feed,
                expected: 3,
                got: 1,
            },
        ),
        (
            messages[1].clone(),
            StoreError::OutOfOrder {
                feed,
                expected: 3,
                got: 2,
            },
        ),
        (
            messages[3].clone(),
            StoreError::OutOfOrder {
                feed,
                expected: 3,
                got: 4,
            },
        ),
        (
            FeedMessage {
                sequence: 0,
                ..messages[0].clone()
            },
            StoreError::OutOfOrder {
                feed,
                expected: 3,
                got: 0,
            },
        ),
        (
            FeedMessage {
                previous: Some(messages[0].id()),
                ..messages[2].clone()
            },
            StoreError::WrongPrevious { feed, sequence: 3 },
        ),
        (
            FeedMessage {
                previous: None,
                ..messages[2].clone()
            },
            StoreError::WrongPrevious { feed, sequence: 3 },
        ),
    ];
    for (message, error) in refused {
        assert_eq!(store.append(&message), Err(error));
        assert_eq!(store.latest(feed).unwrap(), head, "unchanged");
        assert_eq!(store.messages(feed, 1, 10).unwrap(), messages[..2]);
    }
    append_all(&mut store, &messages[2..]);
    assert_eq!(store.messages(feed, 1, 10).unwrap(), messages);
}

fn messages_pages_and_limits<S: FeedLog>(mut store: S) {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let messages = chain(&alice, 7);
    append_all(&mut store, &messages);
    assert_eq!(store.messages(feed, 3, 2).unwrap(), messages[2..4]);
    assert_eq!(store.messages(feed, 0, 3).unwrap(), messages[..3]);
    assert_eq!(store.messages(feed, 7, 10).unwrap(), messages[6..]);
    assert_eq!(store.messages(feed, 8, 10).unwrap(), Vec::new());
    assert_eq!(store.messages(feed, u64::MAX, 10).unwrap(), Vec::new());
    assert_eq!(store.messages(feed, 1, 0).unwrap(), Vec::new());
    assert_eq!(store.messages(FeedId([0; 32]), 1, 10).unwrap(), Vec::new());
    // Paging from the last sequence + 1 visits every message once.
    let mut seen = Vec::new();
    let mut next = 1;
    loop {
        let page = store.messages(feed, next, 3).unwrap();
        let Some(last) = page.last() else { break };
        next = last.sequence + 1;
        seen.extend(page);
    }
    assert_eq!(seen, messages);
}

fn feeds_are_independent_and_listed_in_order<S: FeedLog>(mut store: S) {
    let authors = [identity(3), identity(1), identity(2)];
    let chains: Vec<Vec<FeedMessage>> = authors
        .iter()
        .zip([2u64, 5, 1])
        .map(|(author, len)| chain(author, len))
        .collect();
    // Interleave the appends.
    for i in 0..5 {
        for chain in &chains {
            if let Some(message) = chain.get(i) {
                store.append(message).unwrap();
            }
        }
    }
    let mut expected: Vec<(FeedId, u64)> = chains
        .iter()
        .map(|c| (c[0].author, c.len() as u64))
        .collect();
    expected.sort();
    assert_eq!(store.feeds().unwrap(), expected);
    for chain in &chains {
        let feed = chain[0].author;
        assert_eq!(store.messages(feed, 1, 100).unwrap(), *chain);
        let last = chain.last().unwrap();
        assert_eq!(
            store.latest(feed).unwrap(),
            Some((last.sequence, last.id()))
        );
    }
}

fn remove_feed_deletes_messages_and_head<S: FeedLog>(mut store: S) {
    let (alice, bob) = (identity(1), identity(2));
    let (a, b) = (chain(&alice, 4), chain(&bob, 2));
    append_all(&mut store, &a);
    append_all(&mut store, &b);
    assert_eq!(store.remove_feed(a[0].author).unwrap(), 4);
    assert_eq!(store.remove_feed(a[0].author).unwrap(), 0);
    assert_eq!(store.latest(a[0].author).unwrap(), None);
    assert_eq!(store.message(a[0].author, 1).unwrap(), None);
    assert_eq!(store.feeds().unwrap(), vec![(b[0].author, 2)]);
    assert_eq!(store.messages(b[0].author, 1, 10).unwrap(), b);
    // The feed can start over from sequence 1.
    append_all(&mut store, &a[..1]);
    assert_eq!(store.latest(a[0].author).unwrap(), Some((1, a[0].id())));
}

fn feed_log_is_separate_from_store_tables<S: FeedLog + Store + PeerClocks>(mut store: S) {
    let alice = identity(1);
    let messages = chain(&alice, 2);
    append_all(&mut store, &messages);
    store.put_clock(NodeId([1; 32]), b"clock").unwrap();
    for table in [
        "feed_log",
        "feed_heads",
        "peer_clocks",
        "gossip/feed_log",
        "gossip/feed_heads",
        "gossip/peer_clocks",
    ] {
        assert_eq!(store.len(table).unwrap(), 0, "{table}");
        store.put(table, &[0; 40], b"junk").unwrap();
        store.put(table, &alice.public_key(), b"junk").unwrap();
    }
    assert_eq!(store.messages(messages[0].author, 1, 10).unwrap(), messages);
    assert_eq!(store.feeds().unwrap(), vec![(messages[0].author, 2)]);
    assert_eq!(store.clock_peers().unwrap(), vec![NodeId([1; 32])]);
}

fn feed_log_is_usable_as_a_trait_object<S: FeedLog>(store: S) {
    let mut store: Box<dyn FeedLog> = Box::new(store);
    let messages = chain(&identity(1), 2);
    for message in &messages {
        store.append(message).unwrap();
    }
    assert_eq!(store.messages(messages[0].author, 1, 10).unwrap(), messages);
}

fn clocks_are_stored_per_peer<S: PeerClocks>(mut store: S) {
    let (p, q) = (NodeId([2; 32]), NodeId([1; 32]));
    assert_eq!(store.clock(p).unwrap(), None);
    assert_eq!(store.clock_peers().unwrap(), Vec::new());
    store.put_clock(p, b"one").unwrap();
    store.put_clock(q, b"").unwrap();
    store.put_clock(p, b"two").unwrap();
    assert_eq!(store.clock(p).unwrap(), Some(b"two".to_vec()));
    assert_eq!(store.clock(q).unwrap(), Some(Vec::new()));
    assert_eq!(store.clock_peers().unwrap(), vec![q, p]);
    assert!(store.remove_clock(p).unwrap());
    assert!(!store.remove_clock(p).unwrap());
    assert_eq!(store.clock(p).unwrap(), None);
    assert_eq!(store.clock_peers().unwrap(), vec![q]);
}

fn oversize_clock_is_refused<S: PeerClocks>(mut store: S) {
    let peer = NodeId([3; 32]);
    store.put_clock(peer, b"old").unwrap();
    let big = vec![0u8; MAX_CLOCK_LEN + 1];
    assert_eq!(
        store.put_clock(peer, &big),
        Err(StoreError::ClockTooLarge {
            len: MAX_CLOCK_LEN + 1,
            max: MAX_CLOCK_LEN
        })
    );
    assert_eq!(store.clock(peer).unwrap(), Some(b"old".to_vec()));
    let largest = vec![7u8; MAX_CLOCK_LEN];
    store.put_clock(peer, &largest).unwrap();
    assert_eq!(store.clock(peer).unwrap(), Some(largest));
}
