//! The blob protocol's wire shapes ([`BlobId`], [`PieceIndex`], [`BlobWant`], [`BlobHave`],
//! [`BlobRequest`], [`BlobPiece`]) and the conservative size bounds that let the core size
//! chunks and requests to fit one datagram without the encoder.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Name of a blob: the SHA-256 of its bytes, 32 bytes on the wire.
///
/// Written as 64 lowercase hex digits ([`Display`](fmt::Display), [`FromStr`]); a feed
/// message references a blob as `blob:<64 hex digits>` (see [`super::references`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// Length on the wire, in bytes.
    pub const LEN: usize = 32;

    /// The id of `bytes`: their SHA-256.
    pub fn of(bytes: &[u8]) -> BlobId {
        BlobId(gossip_crypto::sha256(bytes))
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.short())
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A blob id that is not 64 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a blob id is 64 hex digits")]
pub struct ParseBlobIdError;

impl FromStr for BlobId {
    type Err = ParseBlobIdError;

    /// Parses 64 hex digits (either case).
    fn from_str(text: &str) -> Result<BlobId, ParseBlobIdError> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(text, &mut id).map_err(|_| ParseBlobIdError)?;
        Ok(BlobId(id))
    }
}

/// One piece of a blob's hash tree (see [`super::Layout`]): `level` 0 is a data chunk,
/// `level` ≥ 1 a page of the SHA-256 hashes of up to `fanout` pieces of the level below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PieceIndex {
    /// 0 for data, 1.. for hash pages.
    pub level: u8,
    /// Position within the level, from 0.
    pub index: u32,
}

/// What a holder announces about a blob: enough to lay out and verify its hash tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    /// The blob's length, in bytes.
    pub size: u64,
    /// Bytes per data chunk (every chunk but the last is this long); a multiple of 32.
    pub chunk_size: u32,
    /// SHA-256 of the top page of the hash tree.
    pub root: [u8; 32],
}

/// Type 23: "who holds this blob?" Holders answer [`BlobHave`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobWant {
    /// The blob wanted.
    pub blob: BlobId,
}

/// Type 24: "I hold this whole blob, laid out like this."
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobHave {
    /// The blob held.
    pub blob: BlobId,
    /// Its layout and tree root.
    pub meta: BlobMeta,
}

/// Type 25: "send me these pieces of this blob."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRequest {
    /// The blob.
    pub blob: BlobId,
    /// Pieces wanted, at most as many as fit one datagram.
    pub pieces: Vec<PieceIndex>,
}

/// Type 26: one piece of a blob, in answer to a [`BlobRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobPiece {
    /// The blob.
    pub blob: BlobId,
    /// Which piece.
    pub piece: PieceIndex,
    /// The piece's bytes (a data chunk, or a page of 32-byte hashes).
    pub data: Bytes,
}

/// What the blob core sends; the shell wraps each in its `Message` variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobMessage {
    /// `Message::BlobWant` (type 23).
    Want(BlobWant),
    /// `Message::BlobHave` (type 24).
    Have(BlobHave),
    /// `Message::BlobRequest` (type 25).
    Request(BlobRequest),
    /// `Message::BlobPiece` (type 26).
    Piece(BlobPiece),
}

impl BlobMessage {
    /// Bound on the inner struct's encoding; the envelope adds [`ENVELOPE_OVERHEAD`].
    pub fn encoded_len_bound(&self) -> usize {
        match self {
            BlobMessage::Want(_) => WANT_BOUND,
            BlobMessage::Have(_) => HAVE_BOUND,
            BlobMessage::Request(r) => request_bound(r.pieces.len()),
            BlobMessage::Piece(p) => piece_bound(p.data.len()),
        }
    }
}

/// Bytes the envelope adds around a blob message: the 48-byte header (sender id, epoch,
/// packet counter) and the 1-byte variant index.
pub const ENVELOPE_OVERHEAD: usize = crate::message::wire_bound::ENVELOPE_HEADER + 1;

/// Bound on a `u32` varint (bincode 2 standard: 1, 3 or 5 bytes).
pub const U32_BOUND: usize = 5;

/// Bound on a `u64` varint (1, 3, 5 or 9 bytes).
pub const U64_BOUND: usize = 9;

/// Bound on a length prefix below 65,536 (1 or 3 bytes).
pub const LENGTH_PREFIX: usize = 3;

/// Bound on one [`PieceIndex`]: a `u8` (1 byte, not a varint) and a `u32` varint.
pub const PIECE_INDEX_BOUND: usize = 1 + U32_BOUND;

/// Bound on a [`BlobWant`]: 32 bytes.
pub const WANT_BOUND: usize = BlobId::LEN;

/// Bound on a [`BlobHave`]: id, size, chunk size and root: 78 bytes.
pub const HAVE_BOUND: usize = BlobId::LEN + U64_BOUND + U32_BOUND + 32;

/// Bound on a [`BlobRequest`] of `pieces` pieces (fewer than 65,536).
pub const fn request_bound(pieces: usize) -> usize {
    BlobId::LEN + LENGTH_PREFIX + pieces * PIECE_INDEX_BOUND
}

/// Bound on a [`BlobPiece`] carrying `data_len` bytes (fewer than 65,536).
pub const fn piece_bound(data_len: usize) -> usize {
    BlobId::LEN + PIECE_INDEX_BOUND + LENGTH_PREFIX + data_len
}

/// Envelope bytes around a piece's data: 90. A chunk of `c` bytes travels in an envelope of
/// at most `c + PIECE_OVERHEAD` bytes.
pub const PIECE_OVERHEAD: usize = ENVELOPE_OVERHEAD + piece_bound(0);

/// The chunk size used for envelopes of at most `max_envelope_len` bytes: the largest
/// multiple of 32 that fits with [`PIECE_OVERHEAD`] (1,248 for the default 1,364-byte
/// envelope of a 1,400-byte datagram); 0 if not even 32 bytes fit. A multiple of 32 so
/// that a hash page (`chunk_size / 32` hashes) is exactly as long as a full chunk.
pub const fn chunk_size_for(max_envelope_len: usize) -> usize {
    let room = max_envelope_len.saturating_sub(PIECE_OVERHEAD);
    let size = room / 32 * 32;
    if size > MAX_CHUNK_SIZE {
        MAX_CHUNK_SIZE
    } else {
        size
    }
}

/// How many pieces one [`BlobRequest`] may name within `max_envelope_len` (213 for the
/// default 1,364 bytes).
pub const fn pieces_per_request(max_envelope_len: usize) -> usize {
    let fixed = ENVELOPE_OVERHEAD + request_bound(0);
    max_envelope_len.saturating_sub(fixed) / PIECE_INDEX_BOUND
}

/// Smallest accepted chunk size, in bytes: two hashes per page, so the tree narrows.
pub const MIN_CHUNK_SIZE: usize = 64;

/// Largest accepted chunk size, in bytes (a 65,507-byte datagram holds 65,408 after the
/// label, the AEAD and [`PIECE_OVERHEAD`]; the largest multiple of 32 below is 65,376 and the
/// power-of-two-friendly limit used is 65,024).
pub const MAX_CHUNK_SIZE: usize = 65_024;
