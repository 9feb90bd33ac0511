//! Signed feeds (Secure Scuttlebutt): per-author append-only hash chains, and their
//! validation as a sans-IO state machine.
//!
//! # Model
//!
//! A *feed* is the log of one author, named by the author's ed25519 public key ([`FeedId`],
//! the same 32 bytes as the author's [`NodeId`]). Each [`FeedMessage`] carries its sequence
//! number (1 for the first), the [hash](MessageHash) of the message before it (none for the
//! first), the author's timestamp, the application's content, and the author's signature over
//! a [canonical encoding](FeedMessage#canonical-encoding) of all of that:
//!
//! ```text
//!  seq 1                     seq 2                     seq 3
//! +-------------------+     +-------------------+     +-------------------+
//! | author  A         |     | author  A         |     | author  A         |
//! | previous  none    |<-+  | previous id(#1)   |<-+  | previous id(#2)   |
//! | timestamp, content|  +--| timestamp, content|  +--| timestamp, content|
//! | signature by A    |     | signature by A    |     | signature by A    |
//! +-------------------+     +-------------------+     +-------------------+
//!   id(#1) = SHA-256(signed encoding of #1)
//! ```
//!
//! Because every message names its predecessor's hash and is signed by the author, a replica
//! that holds message `n` and validates `n + 1` against it holds an unbroken prefix of the
//! author's log, whoever relayed the messages: no relay can alter, drop from the middle,
//! reorder or insert messages (DESIGN.md section 1, Secure Scuttlebutt; dominictarr's
//! "scalable secure scuttlebutt"). Only the author can break the chain, by signing two
//! different messages with the same sequence: a *fork*. The two messages are a
//! self-contained, third-party-checkable [`ForkProof`]; a forked feed is no longer replicated.
//!
//! # Validation
//!
//! [`Feeds`] holds the head (latest sequence and id) of each followed feed, bounded by
//! [`FeedsConfig::max_feeds`], and classifies each received message with one [`Rejection`]
//! reason per failure, counted in [`FeedStats`]. The log itself lives in `gossip-store`
//! (`FeedLog`); as everywhere in this crate, the core never reads it: the caller passes the
//! stored message that a fork check needs (see [`Feeds::validate`]).
//!
//! Which bytes travel on the wire is decided in `gossip-net` (serde, [`wire_bound`] bounds it);
//! which bytes are signed, hashed and stored is fixed here: the canonical encoding, byte by
//! byte, independent of serde.

use std::fmt;

use bytes::Bytes;
use gossip_crypto::{CryptoError, Identity, SIGNATURE_LEN};
use serde::{Deserialize, Serialize};

use crate::dissemination::{DATAGRAM_OVERHEAD, MAX_UDP_PAYLOAD};
use crate::id::NodeId;

mod feeds;

pub use feeds::{
    DEFAULT_EVENT_QUEUE_CAPACITY, DEFAULT_MAX_CONTENT_LEN, DEFAULT_MAX_FEEDS, FeedEvent, FeedState,
    FeedStats, Feeds, FeedsConfig, FollowError, ForkProof, MAX_FEEDS_LIMIT, Rejection,
};

#[cfg(test)]
mod tests;

/// Domain-separation prefix of the canonical encoding (18 ASCII bytes), so a feed-message
/// signature can never be replayed as a signature of anything else this framework signs.
pub const DOMAIN: &[u8; 18] = b"gossip/v1/feed-msg";

/// Length of the fixed part of the canonical encoding before the content, in bytes:
/// domain 18 + author 32 + sequence 8 + previous flag 1 + previous 32 + timestamp 8 +
/// content length 4 = 103.
pub const HEADER_LEN: usize = DOMAIN.len() + 32 + 8 + 1 + 32 + 8 + 4;

/// Bytes the canonical *signed* encoding adds to the content: [`HEADER_LEN`] + the 64-byte
/// signature = 167.
pub const SIGNED_OVERHEAD: usize = HEADER_LEN + SIGNATURE_LEN;

/// Largest content any feed message may carry, in bytes (65,272): a larger one could not
/// travel in one UDP datagram even alone in an envelope (65,507-byte payload − 36 bytes of
/// label, nonce and tag − 48-byte envelope header (sender, epoch, counter) − 1 variant byte − [`wire_bound::feed_message`]`(0)`
/// with a 3-byte length prefix). [`FeedMessage::create`] and [`FeedState::validate`] cap any
/// larger `max_content` at this; [`FeedsConfig::max_content_len`] must not exceed it.
pub const MAX_CONTENT_LIMIT: usize = MAX_UDP_PAYLOAD
    - DATAGRAM_OVERHEAD
    - crate::message::wire_bound::ENVELOPE_HEADER
    - 1
    - (wire_bound::FIXED + wire_bound::LENGTH_PREFIX_U16);

/// Identity of a feed: the author's ed25519 public key, on the wire as 32 raw bytes. It is
/// the same 32 bytes as the author's [`NodeId`], and converts both ways.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FeedId(pub [u8; 32]);

impl FeedId {
    /// Length of a feed id on the wire, in bytes.
    pub const LEN: usize = 32;

    /// The feed authored by `identity` (its public key).
    pub fn of(identity: &Identity) -> FeedId {
        FeedId(identity.public_key())
    }

    /// The first 8 hex digits, for logs and tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl From<NodeId> for FeedId {
    fn from(node: NodeId) -> FeedId {
        FeedId(node.0)
    }
}

impl From<FeedId> for NodeId {
    fn from(feed: FeedId) -> NodeId {
        NodeId(feed.0)
    }
}

impl fmt::Debug for FeedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeedId({})", self.short())
    }
}

impl fmt::Display for FeedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Identity of one feed message: SHA-256 of its canonical signed encoding
/// ([`FeedMessage::id`]). The next message of the feed names it in
/// [`previous`](FeedMessage::previous).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageHash(pub [u8; 32]);

impl MessageHash {
    /// Length of a message hash on the wire, in bytes.
    pub const LEN: usize = 32;
}

impl fmt::Debug for MessageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageHash({})", hex::encode(&self.0[..6]))
    }
}

impl fmt::Display for MessageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why [`FeedMessage::create`] refused to build a message. Nothing was built or signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The content is larger than the limit. Nothing was built.
    #[error("content of {len} bytes exceeds the maximum of {max} bytes")]
    ContentTooLarge {
        /// The content's length, in bytes.
        len: usize,
        /// The largest accepted content, in bytes: the caller's `max_content`, capped at
        /// [`MAX_CONTENT_LIMIT`].
        max: usize,
    },
    /// `previous` belongs to another author's feed. Nothing was built.
    #[error("previous message is from feed {previous}, not the signer's feed {signer}")]
    NotOwnFeed {
        /// The signer's feed.
        signer: FeedId,
        /// The author of the `previous` message.
        previous: FeedId,
    },
    /// `previous` has sequence `u64::MAX`; the feed cannot grow. Nothing was built.
    #[error("feed has reached the largest sequence number")]
    SequenceExhausted,
}

/// Why [`FeedMessage::decode_signed`] refused a byte string. Nothing was built. Decoding does
/// not check the signature; validation does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the fixed part of the encoding ([`SIGNED_OVERHEAD`]).
    #[error("{len} bytes is shorter than the {min}-byte minimum of a signed feed message")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// The minimum, [`SIGNED_OVERHEAD`].
        min: usize,
    },
    /// The first 18 bytes are not [`DOMAIN`].
    #[error("not a feed message: wrong domain prefix")]
    WrongDomain,
    /// The previous-flag byte is neither 0 nor 1.
    #[error("invalid previous flag {flag}")]
    InvalidPreviousFlag {
        /// The byte found.
        flag: u8,
    },
    /// The previous flag is 0 but the 32 previous bytes are not all zero (a non-canonical
    /// encoding that would give one message two ids).
    #[error("absent previous hash is not zero-filled")]
    NonCanonicalPrevious,
    /// The content length field exceeds the limit.
    #[error("content of {len} bytes exceeds the maximum of {max} bytes")]
    ContentTooLarge {
        /// The declared content length, in bytes.
        len: usize,
        /// The largest accepted content, in bytes.
        max: usize,
    },
    /// The byte string is not exactly [`SIGNED_OVERHEAD`] + content length bytes long
    /// (truncated content or signature, or trailing bytes).
    #[error("encoding is {len} bytes, expected {expected}")]
    WrongLength {
        /// Bytes given.
        len: usize,
        /// Bytes the header's content length implies.
        expected: usize,
    },
}

/// One message of a feed, as signed by its author.
///
/// Build with [`create`](Self::create); check with [`Feeds::validate`] or
/// [`FeedState::validate`]. The fields are public so that a decoder can fill them; a message
/// whose fields were changed after signing fails validation with
/// [`Rejection::BadSignature`].
///
/// # Canonical encoding
///
/// The bytes that are signed (the *signing encoding*) are, with every integer big-endian:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 18 | [`DOMAIN`] = ASCII `gossip/v1/feed-msg` |
/// | 18 | 32 | `author` (ed25519 public key) |
/// | 50 | 8 | `sequence`, u64 |
/// | 58 | 1 | previous flag: 0 = none (first message), 1 = present |
/// | 59 | 32 | `previous` hash; 32 zero bytes when the flag is 0 |
/// | 91 | 8 | `timestamp_ms`, u64 |
/// | 99 | 4 | content length *n*, u32 |
/// | 103 | *n* | `content` |
///
/// The *signed encoding* ([`encode_signed`](Self::encode_signed)) is the signing encoding
/// followed by the 64-byte ed25519 `signature` (RFC 8032: `R` ‖ `S`) at offset 103 + *n*,
/// [`SIGNED_OVERHEAD`] + *n* bytes in all. The message id is SHA-256 of the signed encoding
/// ([`id`](Self::id)). `gossip-store` stores exactly these bytes. The layout is fixed-width so
/// every message has exactly one encoding: [`decode_signed`](Self::decode_signed) rejects any
/// other (bad flag, non-zero absent hash, trailing bytes). Strict ed25519 verification makes
/// the signature itself non-malleable, so the id of a valid message is unique too.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use gossip_core::feed::{FeedMessage, FeedId};
/// use gossip_crypto::Identity;
///
/// let alice = Identity::generate();
/// let first = FeedMessage::create(&alice, None, 1_700_000_000_000, Bytes::from_static(b"hi"), 1024)?;
/// let second = FeedMessage::create(&alice, Some(&first), 1_700_000_000_500, Bytes::from_static(b"again"), 1024)?;
/// assert_eq!((first.sequence, second.sequence), (1, 2));
/// assert_eq!(second.previous, Some(first.id()));
/// assert_eq!(second.author, FeedId::of(&alice));
/// assert!(second.verify_signature().is_ok());
///
/// let bytes = second.encode_signed();
/// assert_eq!(FeedMessage::decode_signed(&bytes, 1024)?, second);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedMessage {
    /// The author, whose key signed the message; also the feed it belongs to.
    pub author: FeedId,
    /// Position in the feed: 1 for the first message, previous + 1 after.
    pub sequence: u64,
    /// Id of the message at `sequence - 1`; `None` exactly when `sequence == 1`.
    pub previous: Option<MessageHash>,
    /// When the author says it wrote the message, in milliseconds since the Unix epoch. The
    /// author's claim: signed, but not checked against any clock or against earlier messages.
    pub timestamp_ms: u64,
    /// The application's bytes, opaque to the protocol; at most the configured
    /// `max_content` bytes.
    pub content: Bytes,
    /// The author's ed25519 signature of the [signing encoding](Self#canonical-encoding).
    #[serde(with = "signature_serde")]
    pub signature: [u8; SIGNATURE_LEN],
}

impl FeedMessage {
    /// Signs the next message of `identity`'s feed: sequence 1 with no previous hash if
    /// `previous` is `None`, else `previous.sequence + 1` with `previous`'s id.
    ///
    /// The caller passes the feed's current head as `previous` (for example from
    /// `gossip-store`'s `FeedLog::latest` and `get`) and its clock's time as `timestamp_ms`
    /// (this crate reads no clock). Then it appends the message to its log, and only after the
    /// append returned (durably) records it with [`Feeds::handle_appended`] and publishes it.
    ///
    /// # Errors
    ///
    /// Nothing is built or signed on error:
    /// - [`FeedError::ContentTooLarge`] if `content.len()` exceeds `max_content` (capped at
    ///   [`MAX_CONTENT_LIMIT`]), naming both sizes;
    /// - [`FeedError::NotOwnFeed`] if `previous.author` is not `identity`'s public key;
    /// - [`FeedError::SequenceExhausted`] if `previous.sequence == u64::MAX`.
    pub fn create(
        identity: &Identity,
        previous: Option<&FeedMessage>,
        timestamp_ms: u64,
        content: Bytes,
        max_content: usize,
    ) -> Result<FeedMessage, FeedError> {
        let max = max_content.min(MAX_CONTENT_LIMIT);
        if content.len() > max {
            return Err(FeedError::ContentTooLarge {
                len: content.len(),
                max,
            });
        }
        let author = FeedId::of(identity);
        let (sequence, previous) = match previous {
            None => (1, None),
            Some(p) if p.author != author => {
                return Err(FeedError::NotOwnFeed {
                    signer: author,
                    previous: p.author,
                });
            }
            Some(p) => (
                p.sequence
                    .checked_add(1)
                    .ok_or(FeedError::SequenceExhausted)?,
                Some(p.id()),
            ),
        };
        let mut message = FeedMessage {
            author,
            sequence,
            previous,
            timestamp_ms,
            content,
            signature: [0; SIGNATURE_LEN],
        };
        message.signature = identity.sign(&message.signing_bytes());
        Ok(message)
    }

    /// The signing encoding: the [canonical encoding](Self#canonical-encoding) without the
    /// signature, [`HEADER_LEN`] + content bytes.
    ///
    /// A content longer than `u32::MAX` bytes (never valid: see [`MAX_CONTENT_LIMIT`]) has its
    /// length field saturated at `u32::MAX`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNED_OVERHEAD + self.content.len());
        self.write_signing(&mut out);
        out
    }

    /// The canonical signed encoding: [`signing_bytes`](Self::signing_bytes) ‖ signature,
    /// [`SIGNED_OVERHEAD`] + content bytes. What [`id`](Self::id) hashes and what
    /// `gossip-store` stores.
    pub fn encode_signed(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNED_OVERHEAD + self.content.len());
        self.write_signing(&mut out);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses a canonical signed encoding, as written by [`encode_signed`](Self::encode_signed).
    /// Checks every length against the input before reading, and the content length against
    /// `max_content` before copying. Does not check the signature.
    ///
    /// # Errors
    ///
    /// [`DecodeError`]: too short, wrong domain prefix, previous flag other than 0/1, non-zero
    /// absent hash, content over `max_content`, or a total length that disagrees with the
    /// content length (trailing or missing bytes).
    pub fn decode_signed(bytes: &[u8], max_content: usize) -> Result<FeedMessage, DecodeError> {
        if bytes.len() < SIGNED_OVERHEAD {
            return Err(DecodeError::Truncated {
                len: bytes.len(),
                min: SIGNED_OVERHEAD,
            });
        }
        let (header, rest) = bytes.split_at(HEADER_LEN);
        let (domain, header) = header.split_at(DOMAIN.len());
        if domain != DOMAIN {
            return Err(DecodeError::WrongDomain);
        }
        let (author, header) = split_array::<32>(header);
        let (sequence, header) = split_array::<8>(header);
        let (flag, header) = split_array::<1>(header);
        let (previous, header) = split_array::<32>(header);
        let (timestamp, header) = split_array::<8>(header);
        let (content_len, _) = split_array::<4>(header);
        let previous = match flag[0] {
            0 if previous == [0; 32] => None,
            0 => return Err(DecodeError::NonCanonicalPrevious),
            1 => Some(MessageHash(previous)),
            flag => return Err(DecodeError::InvalidPreviousFlag { flag }),
        };
        // u32 always fits usize on the 32- and 64-bit targets this crate supports; saturate
        // anyway so a 16-bit target would refuse rather than wrap.
        let content_len = usize::try_from(u32::from_be_bytes(content_len)).unwrap_or(usize::MAX);
        if content_len > max_content {
            return Err(DecodeError::ContentTooLarge {
                len: content_len,
                max: max_content,
            });
        }
        let expected = content_len.saturating_add(SIGNED_OVERHEAD);
        if bytes.len() != expected {
            return Err(DecodeError::WrongLength {
                len: bytes.len(),
                expected,
            });
        }
        let (content, signature) = rest.split_at(content_len);
        let (signature, _) = split_array::<SIGNATURE_LEN>(signature);
        Ok(FeedMessage {
            author: FeedId(author),
            sequence: u64::from_be_bytes(sequence),
            previous,
            timestamp_ms: u64::from_be_bytes(timestamp),
            content: Bytes::copy_from_slice(content),
            signature,
        })
    }

    /// The message id: SHA-256 of the [signed encoding](Self::encode_signed).
    pub fn id(&self) -> MessageHash {
        MessageHash(gossip_crypto::sha256(&self.encode_signed()))
    }

    /// Checks the signature against `author` (strict ed25519, see `gossip_crypto::verify`).
    ///
    /// # Errors
    ///
    /// [`CryptoError`] if the signature is not the author's over the signing encoding (a
    /// field was changed, or someone else signed).
    pub fn verify_signature(&self) -> Result<(), CryptoError> {
        gossip_crypto::verify(&self.author.0, &self.signing_bytes(), &self.signature)
    }

    /// Length of the canonical signed encoding, in bytes: [`SIGNED_OVERHEAD`] + content.
    pub fn encoded_signed_len(&self) -> usize {
        SIGNED_OVERHEAD + self.content.len()
    }

    /// An upper bound, in bytes, on this message's serde encoding in `gossip-net` (bincode 2
    /// standard config, see [`wire_bound`]).
    pub fn encoded_len_bound(&self) -> usize {
        wire_bound::feed_message(self.content.len())
    }

    fn write_signing(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(&self.author.0);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        match self.previous {
            None => {
                out.push(0);
                out.extend_from_slice(&[0; 32]);
            }
            Some(hash) => {
                out.push(1);
                out.extend_from_slice(&hash.0);
            }
        }
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        let len = u32::try_from(self.content.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.content);
    }
}

impl fmt::Debug for FeedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedMessage")
            .field("author", &self.author)
            .field("sequence", &self.sequence)
            .field("previous", &self.previous)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("content_len", &self.content.len())
            .field(
                "signature",
                &format_args!("{}..", hex::encode(&self.signature[..6])),
            )
            .finish()
    }
}

/// Splits `N` bytes off the front of `bytes`; the caller has checked `bytes.len() >= N`
/// (missing bytes read as zero rather than panic).
fn split_array<const N: usize>(bytes: &[u8]) -> ([u8; N], &[u8]) {
    let mut out = [0u8; N];
    let n = N.min(bytes.len());
    out[..n].copy_from_slice(&bytes[..n]);
    (out, &bytes[n..])
}

/// Conservative sizes of a [`FeedMessage`]'s serde encoding in `gossip-net` (bincode 2,
/// standard config: little-endian, variable-length integers), the same rules as
/// [`crate::message::wire_bound`].
pub mod wire_bound {
    /// A `u64` (varint, at most 9 bytes).
    pub const U64: usize = 9;
    /// An `Option` tag (1 byte).
    pub const OPTION_TAG: usize = 1;
    /// A byte-string length prefix for lengths up to 65,535 (varint, 3 bytes).
    pub const LENGTH_PREFIX_U16: usize = 3;
    /// Everything but the content and its length prefix: author 32 + sequence + previous
    /// (tag + 32) + timestamp + signature 64 = 147.
    pub const FIXED: usize = 32 + U64 + OPTION_TAG + 32 + U64 + super::SIGNATURE_LEN;

    /// Bytes of the varint length prefix of a byte string of `len` bytes: 1 below 251, 3 up
    /// to `u16::MAX`, 5 up to `u32::MAX`, else 9.
    pub const fn length_prefix(len: usize) -> usize {
        if len < 251 {
            1
        } else if len <= 0xffff {
            3
        } else if len <= 0xffff_ffff {
            5
        } else {
            9
        }
    }

    /// Bound on a [`super::FeedMessage`] with `content_len` bytes of content.
    pub const fn feed_message(content_len: usize) -> usize {
        FIXED + length_prefix(content_len) + content_len
    }
}

/// Serde for the 64-byte signature (serde derives arrays only up to 32): a tuple of 64 `u8`s,
/// which bincode writes as 64 raw bytes, like the 32-byte arrays of the ids.
mod signature_serde {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    use super::SIGNATURE_LEN;

    pub(super) fn serialize<S: Serializer>(
        signature: &[u8; SIGNATURE_LEN],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(SIGNATURE_LEN)?;
        for byte in signature {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; SIGNATURE_LEN], D::Error> {
        struct SignatureVisitor;

        impl<'de> Visitor<'de> for SignatureVisitor {
            type Value = [u8; SIGNATURE_LEN];

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{SIGNATURE_LEN} bytes")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = [0u8; SIGNATURE_LEN];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }

        deserializer.deserialize_tuple(SIGNATURE_LEN, SignatureVisitor)
    }
}
