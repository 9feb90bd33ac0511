//! Tests of feed messages and their validation: the canonical encoding byte by byte, one
//! crafted message per rejection reason, forks with their proof and event, bounds, and
//! property tests that no input panics and no tampering is accepted.

mod encoding;
mod props;
mod validation;

use bytes::Bytes;
use gossip_crypto::Identity;

use super::{FeedId, FeedMessage, Feeds, FeedsConfig};

/// A fixed identity per `n`.
pub(super) fn identity(n: u8) -> Identity {
    Identity::from_bytes(&[n; 32])
}

/// The first `len` messages of `author`'s feed; message `i` (from 1) has timestamp `1000 * i`
/// and content `"message {i}"`.
pub(super) fn chain(author: &Identity, len: u64) -> Vec<FeedMessage> {
    let mut messages: Vec<FeedMessage> = Vec::new();
    for i in 1..=len {
        let content = Bytes::from(format!("message {i}"));
        let message =
            FeedMessage::create(author, messages.last(), 1000 * i, content, 1024).unwrap();
        messages.push(message);
    }
    messages
}

/// A `Feeds` with the default config following `authors` from empty.
pub(super) fn following(authors: &[&Identity]) -> Feeds {
    let mut feeds = Feeds::new(FeedsConfig::default()).unwrap();
    for author in authors {
        assert!(feeds.follow(FeedId::of(author), None).unwrap());
    }
    feeds
}

/// Validates and records `messages` in order, as a shell with a log would.
pub(super) fn ingest(feeds: &mut Feeds, messages: &[FeedMessage]) {
    for message in messages {
        let id = feeds.validate(message.author, message, None).unwrap();
        assert_eq!(id, message.id());
        feeds.handle_appended(message).unwrap();
    }
}
