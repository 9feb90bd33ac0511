//! The canonical encoding, `create`, ids, decoding and the wire bound.

use bytes::Bytes;

use super::{chain, identity};
use crate::NodeId;
use crate::feed::{
    DOMAIN, DecodeError, FeedError, FeedId, FeedMessage, HEADER_LEN, MAX_CONTENT_LIMIT,
    MessageHash, SIGNED_OVERHEAD, wire_bound,
};

/// A message with distinctive field values, signed by `identity(1)`.
fn sample() -> FeedMessage {
    let author = identity(1);
    let mut message = FeedMessage {
        author: FeedId::of(&author),
        sequence: 0x0102_0304_0506_0708,
        previous: Some(MessageHash([0xab; 32])),
        timestamp_ms: 0x1112_1314_1516_1718,
        content: Bytes::from_static(b"hello"),
        signature: [0; 64],
    };
    message.signature = author.sign(&message.signing_bytes());
    message
}

#[test]
fn layout_is_byte_exact() {
    let m = sample();
    let bytes = m.encode_signed();
    assert_eq!(HEADER_LEN, 103);
    assert_eq!(SIGNED_OVERHEAD, 167);
    assert_eq!(bytes.len(), SIGNED_OVERHEAD + 5);
    assert_eq!(&bytes[0..18], b"gossip/v1/feed-msg");
    assert_eq!(&bytes[0..18], DOMAIN);
    assert_eq!(&bytes[18..50], &m.author.0);
    assert_eq!(&bytes[50..58], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(bytes[58], 1);
    assert_eq!(&bytes[59..91], &[0xab; 32]);
    assert_eq!(
        &bytes[91..99],
        &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
    );
    assert_eq!(&bytes[99..103], &[0, 0, 0, 5]);
    assert_eq!(&bytes[103..108], b"hello");
    assert_eq!(&bytes[108..], &m.signature);
    assert_eq!(m.signing_bytes(), bytes[..108]);
    assert_eq!(m.encoded_signed_len(), bytes.len());

    // No previous: flag 0 and 32 zero bytes.
    let first = &chain(&identity(1), 1)[0];
    let bytes = first.encode_signed();
    assert_eq!(bytes[58], 0);
    assert_eq!(&bytes[59..91], &[0; 32]);
    assert_eq!(&bytes[50..58], &1u64.to_be_bytes());
}

#[test]
fn id_is_sha256_of_the_signed_encoding() {
    let m = sample();
    assert_eq!(m.id().0, gossip_crypto::sha256(&m.encode_signed()));
}

/// Known answer: signing is deterministic (RFC 8032), so the id of this message is fixed.
/// A change here changes the wire format of every feed; docs/wire.md can cite this vector.
/// An independent implementation (Python `cryptography`, OpenSSL's Ed25519 and SHA-256,
/// building the bytes from the layout table alone) gives the same public key, signature and
/// id.
#[test]
fn known_answer_for_the_first_message_of_seed_one() {
    let author = identity(1);
    let first = FeedMessage::create(
        &author,
        None,
        1_700_000_000_000,
        Bytes::from_static(b"hello"),
        1024,
    )
    .unwrap();
    assert_eq!(
        hex::encode(first.author.0),
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
    );
    assert_eq!(hex::encode(first.id().0), KAT_FIRST_ID);
    assert_eq!(hex::encode(first.signature), KAT_FIRST_SIGNATURE);
}

const KAT_FIRST_ID: &str = "601e8b3a209c8ed846cf8c8a1cdc66324f2d2709669585233a2fba5db02a95cc";
const KAT_FIRST_SIGNATURE: &str = "4d15df840f98ab3b388c631e9da5798c15548e12a3833cd0413001010adbac9a5700853a9b32c15ddf853896f00484e8d90a778a811772d27281e69a393f410e";

#[test]
fn every_field_is_covered_by_the_signature_and_the_id() {
    let m = sample();
    assert!(m.verify_signature().is_ok());
    let mut variants = Vec::new();
    let mut v = m.clone();
    v.author = FeedId::of(&identity(2));
    variants.push(v);
    let mut v = m.clone();
    v.sequence += 1;
    variants.push(v);
    let mut v = m.clone();
    v.previous = None;
    variants.push(v);
    let mut v = m.clone();
    v.previous = Some(MessageHash([0xac; 32]));
    variants.push(v);
    let mut v = m.clone();
    v.timestamp_ms += 1;
    variants.push(v);
    let mut v = m.clone();
    v.content = Bytes::from_static(b"hellO");
    variants.push(v);
    let mut v = m.clone();
    v.content = Bytes::from_static(b"hello!");
    variants.push(v);
    for v in &variants {
        assert!(v.verify_signature().is_err(), "{v:?}");
        assert_ne!(v.id(), m.id(), "{v:?}");
    }
    let mut v = m.clone();
    v.signature[63] ^= 0x01;
    assert_ne!(v.id(), m.id());
    assert!(v.verify_signature().is_err());
}

#[test]
fn create_chains_sequence_and_previous() {
    let author = identity(3);
    let messages = chain(&author, 4);
    assert_eq!(messages[0].sequence, 1);
    assert_eq!(messages[0].previous, None);
    for pair in messages.windows(2) {
        assert_eq!(pair[1].sequence, pair[0].sequence + 1);
        assert_eq!(pair[1].previous, Some(pair[0].id()));
        assert!(pair[1].verify_signature().is_ok());
    }
}

#[test]
fn create_refuses_oversize_content_naming_both_sizes() {
    let author = identity(1);
    let error = FeedMessage::create(&author, None, 0, Bytes::from(vec![0; 11]), 10).unwrap_err();
    assert_eq!(error, FeedError::ContentTooLarge { len: 11, max: 10 });
    assert_eq!(
        error.to_string(),
        "content of 11 bytes exceeds the maximum of 10 bytes"
    );
    assert!(FeedMessage::create(&author, None, 0, Bytes::from(vec![0; 10]), 10).is_ok());
    // A larger max is capped at the datagram-derived limit.
    let big = Bytes::from(vec![0; MAX_CONTENT_LIMIT + 1]);
    assert_eq!(
        FeedMessage::create(&author, None, 0, big, usize::MAX).unwrap_err(),
        FeedError::ContentTooLarge {
            len: MAX_CONTENT_LIMIT + 1,
            max: MAX_CONTENT_LIMIT
        }
    );
}

#[test]
fn create_refuses_another_feeds_previous_and_exhausted_sequence() {
    let (alice, bob) = (identity(1), identity(2));
    let bobs = chain(&bob, 1);
    assert_eq!(
        FeedMessage::create(&alice, Some(&bobs[0]), 0, Bytes::new(), 10).unwrap_err(),
        FeedError::NotOwnFeed {
            signer: FeedId::of(&alice),
            previous: FeedId::of(&bob),
        }
    );
    let mut last = chain(&alice, 1).remove(0);
    last.sequence = u64::MAX;
    assert_eq!(
        FeedMessage::create(&alice, Some(&last), 0, Bytes::new(), 10).unwrap_err(),
        FeedError::SequenceExhausted
    );
}

#[test]
fn max_content_limit_fits_the_largest_datagram() {
    assert_eq!(MAX_CONTENT_LIMIT, 65_272);
    let envelope = crate::message::wire_bound::ENVELOPE_HEADER
        + 1
        + wire_bound::feed_message(MAX_CONTENT_LIMIT);
    assert_eq!(
        envelope + crate::dissemination::DATAGRAM_OVERHEAD,
        crate::dissemination::MAX_UDP_PAYLOAD
    );
}

#[test]
fn decode_round_trips() {
    for m in chain(&identity(4), 3).into_iter().chain([sample()]) {
        let bytes = m.encode_signed();
        assert_eq!(FeedMessage::decode_signed(&bytes, 1024).unwrap(), m);
    }
    let empty = FeedMessage::create(&identity(4), None, 0, Bytes::new(), 0).unwrap();
    assert_eq!(
        FeedMessage::decode_signed(&empty.encode_signed(), 0).unwrap(),
        empty
    );
}

#[test]
fn decode_rejects_every_non_canonical_form() {
    let m = sample();
    let good = m.encode_signed();
    let decode = |bytes: &[u8]| FeedMessage::decode_signed(bytes, 1024);

    assert_eq!(
        decode(&good[..SIGNED_OVERHEAD - 1]),
        Err(DecodeError::Truncated {
            len: SIGNED_OVERHEAD - 1,
            min: SIGNED_OVERHEAD
        })
    );
    assert!(matches!(decode(&[]), Err(DecodeError::Truncated { .. })));

    let mut bad = good.clone();
    bad[0] = b'G';
    assert_eq!(decode(&bad), Err(DecodeError::WrongDomain));

    let mut bad = good.clone();
    bad[58] = 2;
    assert_eq!(
        decode(&bad),
        Err(DecodeError::InvalidPreviousFlag { flag: 2 })
    );

    let mut bad = good.clone();
    bad[58] = 0; // flag says absent, but the hash bytes are 0xab
    assert_eq!(decode(&bad), Err(DecodeError::NonCanonicalPrevious));

    let mut bad = good.clone();
    bad[99..103].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        decode(&bad),
        Err(DecodeError::ContentTooLarge {
            len: u32::MAX as usize,
            max: 1024
        })
    );
    assert_eq!(
        FeedMessage::decode_signed(&good, 4),
        Err(DecodeError::ContentTooLarge { len: 5, max: 4 })
    );

    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        decode(&trailing),
        Err(DecodeError::WrongLength {
            len: good.len() + 1,
            expected: good.len()
        })
    );
    assert_eq!(
        decode(&good[..good.len() - 1]),
        Err(DecodeError::WrongLength {
            len: good.len() - 1,
            expected: good.len()
        })
    );
}

#[test]
fn ids_convert_and_print_briefly() {
    let node = NodeId([7; 32]);
    let feed = FeedId::from(node);
    assert_eq!(feed.0, [7; 32]);
    assert_eq!(NodeId::from(feed), node);
    assert_eq!(format!("{feed:?}"), "FeedId(07070707)");
    assert_eq!(feed.to_string(), "07".repeat(32));
    assert_eq!(
        format!("{:?}", MessageHash([0xab; 32])),
        "MessageHash(abababababab)"
    );
    let m = FeedMessage::create(
        &identity(1),
        None,
        0,
        Bytes::from_static(b"secret text"),
        100,
    )
    .unwrap();
    let debug = format!("{m:?}");
    assert!(debug.contains("content_len: 11"), "{debug}");
    assert!(!debug.contains("secret"), "{debug}");
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1 << 17 }>()
}

#[test]
fn wire_bound_holds_for_the_bincode_encoding() {
    let author = identity(5);
    for len in [0usize, 1, 250, 251, 1024, 65_535, MAX_CONTENT_LIMIT] {
        let mut m = FeedMessage::create(&author, None, 0, Bytes::new(), 0).unwrap();
        m.content = Bytes::from(vec![0x5a; len]);
        for (sequence, timestamp_ms, previous) in [
            (1, 0, None),
            (u64::MAX, u64::MAX, Some(MessageHash([0xff; 32]))),
        ] {
            m.sequence = sequence;
            m.timestamp_ms = timestamp_ms;
            m.previous = previous;
            let bytes = bincode::serde::encode_to_vec(&m, bincode_config()).unwrap();
            assert!(
                bytes.len() <= m.encoded_len_bound(),
                "len {len}: {} > {}",
                bytes.len(),
                m.encoded_len_bound()
            );
            let (decoded, read): (FeedMessage, usize) =
                bincode::serde::decode_from_slice(&bytes, bincode_config()).unwrap();
            assert_eq!(read, bytes.len());
            assert_eq!(decoded, m);
        }
    }
    // The largest case is exact: every varint at its widest.
    let m = FeedMessage {
        author: FeedId([1; 32]),
        sequence: u64::MAX,
        previous: Some(MessageHash([2; 32])),
        timestamp_ms: u64::MAX,
        content: Bytes::from(vec![3; 300]),
        signature: [4; 64],
    };
    let bytes = bincode::serde::encode_to_vec(&m, bincode_config()).unwrap();
    assert_eq!(bytes.len(), m.encoded_len_bound());
}

#[test]
fn bincode_rejects_a_short_signature() {
    let m = sample();
    let bytes = bincode::serde::encode_to_vec(&m, bincode_config()).unwrap();
    let result: Result<(FeedMessage, usize), _> =
        bincode::serde::decode_from_slice(&bytes[..bytes.len() - 1], bincode_config());
    assert!(result.is_err());
}
