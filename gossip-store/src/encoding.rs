//! The bytes the persistent backend stores: one encode/decode pair per kind of record, and
//! nothing else in the crate knows the layouts.
//!
//! | record | key | value |
//! |---|---|---|
//! | feed message | feed id 32 ‖ sequence u64 big-endian (40 bytes: sorts by feed, then sequence) | [`FeedMessage::encode_signed`], the canonical signed encoding |
//! | feed head | feed id 32 | latest sequence u64 big-endian ‖ id of that message 32 (40 bytes) |
//! | peer clock | node id 32 | the clock bytes as given |

use gossip_core::NodeId;
use gossip_core::feed::{FeedId, FeedMessage, MessageHash};

use crate::StoreError;

/// Length of a [`log_key`].
pub(crate) const LOG_KEY_LEN: usize = FeedId::LEN + 8;

/// Key of `feed`'s message at `sequence`: feed id ‖ sequence (big-endian).
pub(crate) fn log_key(feed: FeedId, sequence: u64) -> [u8; LOG_KEY_LEN] {
    let mut key = [0u8; LOG_KEY_LEN];
    key[..FeedId::LEN].copy_from_slice(&feed.0);
    key[FeedId::LEN..].copy_from_slice(&sequence.to_be_bytes());
    key
}

/// The stored form of a feed message: its canonical signed encoding.
pub(crate) fn encode_message(msg: &FeedMessage) -> Vec<u8> {
    msg.encode_signed()
}

/// Parses a stored message and checks it is the one its key names.
pub(crate) fn decode_message(
    bytes: &[u8],
    feed: FeedId,
    sequence: u64,
) -> Result<FeedMessage, StoreError> {
    let msg = FeedMessage::decode_signed(bytes, usize::MAX)
        .map_err(|e| StoreError::Corrupt(format!("feed {feed} message {sequence}: {e}")))?;
    if msg.author != feed || msg.sequence != sequence {
        return Err(StoreError::Corrupt(format!(
            "feed {feed} message {sequence}: stored under the wrong key (author {}, sequence {})",
            msg.author, msg.sequence
        )));
    }
    Ok(msg)
}

/// The stored form of a feed head: sequence (big-endian) ‖ id.
pub(crate) fn encode_head(sequence: u64, id: MessageHash) -> [u8; 8 + MessageHash::LEN] {
    let mut value = [0u8; 8 + MessageHash::LEN];
    value[..8].copy_from_slice(&sequence.to_be_bytes());
    value[8..].copy_from_slice(&id.0);
    value
}

/// Parses a stored feed head.
pub(crate) fn decode_head(bytes: &[u8], feed: FeedId) -> Result<(u64, MessageHash), StoreError> {
    let corrupt = || {
        StoreError::Corrupt(format!(
            "feed {feed} head: {} bytes, expected 40",
            bytes.len()
        ))
    };
    let (sequence, id) = bytes.split_at_checked(8).ok_or_else(corrupt)?;
    let sequence = u64::from_be_bytes(sequence.try_into().map_err(|_| corrupt())?);
    let id: [u8; MessageHash::LEN] = id.try_into().map_err(|_| corrupt())?;
    Ok((sequence, MessageHash(id)))
}

/// Parses a 32-byte id key (of a feed head or a peer clock).
pub(crate) fn decode_id(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("id key of {} bytes, expected 32", bytes.len())))
}

/// Key of a peer's clock.
pub(crate) fn clock_key(peer: NodeId) -> [u8; NodeId::LEN] {
    peer.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_feed_then_sequence() {
        let mut keys = vec![
            log_key(FeedId([2; 32]), 1),
            log_key(FeedId([1; 32]), 256),
            log_key(FeedId([1; 32]), 2),
            log_key(FeedId([1; 32]), u64::MAX),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                log_key(FeedId([1; 32]), 2),
                log_key(FeedId([1; 32]), 256),
                log_key(FeedId([1; 32]), u64::MAX),
                log_key(FeedId([2; 32]), 1),
            ]
        );
    }

    #[test]
    fn heads_round_trip_and_damage_is_reported() {
        let feed = FeedId([3; 32]);
        let value = encode_head(42, MessageHash([9; 32]));
        assert_eq!(decode_head(&value, feed), Ok((42, MessageHash([9; 32]))));
        for len in [0, 7, 8, 39, 41] {
            let bytes = vec![0u8; len];
            assert!(matches!(
                decode_head(&bytes, feed),
                Err(StoreError::Corrupt(_))
            ));
        }
        assert!(matches!(decode_id(&[0; 31]), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_message_under_the_wrong_key_is_corrupt() {
        let identity = gossip_crypto::Identity::from_bytes(&[1; 32]);
        let msg =
            FeedMessage::create(&identity, None, 0, bytes::Bytes::from_static(b"x"), 10).unwrap();
        let bytes = encode_message(&msg);
        assert_eq!(decode_message(&bytes, msg.author, 1), Ok(msg.clone()));
        assert!(matches!(
            decode_message(&bytes, msg.author, 2),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_message(&bytes, FeedId([0; 32]), 1),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_message(&bytes[1..], msg.author, 1),
            Err(StoreError::Corrupt(_))
        ));
    }
}
