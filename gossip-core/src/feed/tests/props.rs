//! Property tests: arbitrary bytes never panic the decoders or validation, encodings round
//! trip, and no single-byte change of a valid message is accepted as a different message.

use bytes::Bytes;
use proptest::prelude::*;

use super::{chain, identity};
use crate::feed::{FeedId, FeedMessage, FeedState, Feeds, FeedsConfig, MessageHash};

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1 << 17 }>()
}

/// Runs `msg` through a fresh `FeedState` in several positions and through a `Feeds`; only
/// checks that nothing panics and that an unsigned message is never accepted.
fn validate_everywhere(msg: &FeedMessage, stored: Option<&FeedMessage>) {
    let genuine = identity(1).sign(&msg.signing_bytes()) == msg.signature
        && msg.author == FeedId::of(&identity(1));
    for latest in [
        None,
        Some((0, MessageHash([0; 32]))),
        Some((1, MessageHash([1; 32]))),
        Some((msg.sequence, MessageHash([2; 32]))),
        Some((u64::MAX, MessageHash([3; 32]))),
    ] {
        let state = FeedState::new(msg.author, latest);
        let result = state.validate(msg, stored, 1024);
        if !genuine {
            assert!(result.is_err(), "{msg:?} accepted");
        }
    }
    let mut feeds = Feeds::new(FeedsConfig::default()).unwrap();
    feeds.follow(msg.author, None).unwrap();
    let result = feeds.validate(msg.author, msg, stored);
    if result.is_ok() {
        let _ = feeds.handle_appended(msg);
    }
    while feeds.poll_event().is_some() {}
}

fn arbitrary_message() -> impl Strategy<Value = FeedMessage> {
    (
        prop_oneof![
            Just([0u8; 32]),
            any::<[u8; 32]>(),
            Just(FeedId::of(&identity(1)).0)
        ],
        prop_oneof![Just(0u64), Just(1), Just(2), Just(u64::MAX), any::<u64>()],
        proptest::option::of(any::<[u8; 32]>()),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..1100),
        proptest::collection::vec(any::<u8>(), 64..=64),
    )
        .prop_map(
            |(author, sequence, previous, timestamp_ms, content, signature)| {
                let mut sig = [0u8; 64];
                sig.copy_from_slice(&signature);
                FeedMessage {
                    author: FeedId(author),
                    sequence,
                    previous: previous.map(MessageHash),
                    timestamp_ms,
                    content: Bytes::from(content),
                    signature: sig,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic_decoding_or_validation(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        if let Ok(msg) = FeedMessage::decode_signed(&bytes, 1024) {
            validate_everywhere(&msg, None);
        }
        if let Ok((msg, _)) =
            bincode::serde::decode_from_slice::<FeedMessage, _>(&bytes, bincode_config())
        {
            validate_everywhere(&msg, None);
        }
    }

    #[test]
    fn arbitrary_canonical_looking_bytes_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..400),
        flag in 0u8..3,
    ) {
        // A valid domain prefix gets the decoder past its first check.
        let mut bytes = crate::feed::DOMAIN.to_vec();
        bytes.extend_from_slice(&tail);
        if bytes.len() > 58 {
            bytes[58] = flag;
        }
        if let Ok(msg) = FeedMessage::decode_signed(&bytes, 1024) {
            validate_everywhere(&msg, None);
        }
    }

    #[test]
    fn arbitrary_messages_round_trip_and_are_never_accepted(
        msg in arbitrary_message(),
        stored in proptest::option::of(arbitrary_message()),
    ) {
        let bytes = msg.encode_signed();
        prop_assert_eq!(bytes.len(), msg.encoded_signed_len());
        prop_assert_eq!(FeedMessage::decode_signed(&bytes, usize::MAX).unwrap(), msg.clone());
        let wire = bincode::serde::encode_to_vec(&msg, bincode_config()).unwrap();
        prop_assert!(wire.len() <= msg.encoded_len_bound());
        validate_everywhere(&msg, stored.as_ref());
    }

    /// Flip one byte anywhere in the signed encoding of the next message: whatever decodes
    /// is either the same message or rejected.
    #[test]
    fn no_single_byte_change_is_accepted(index in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let alice = identity(1);
        let messages = chain(&alice, 2);
        let state = FeedState::new(FeedId::of(&alice), Some((1, messages[0].id())));
        let mut bytes = messages[1].encode_signed();
        let i = index.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(changed) = FeedMessage::decode_signed(&bytes, 1024) {
            prop_assert_ne!(&changed, &messages[1]);
            prop_assert!(state.validate(&changed, Some(&messages[0]), 1024).is_err());
        }
    }
}
