//! Protocol messages and the envelope every datagram carries.
//!
//! The numbering of [`PacketType`] follows go-gossip (1 PushMessage .. 5 PullResponse); the
//! protocols added since take types from 16 up: 16-18 Scuttlebutt state, 19-20 CYCLON
//! membership, 21-22 per-feed broadcast trees, 23-26 blob transfer, 64 application messages. The
//! encoding itself lives in `gossip-net` (one encode/decode pair); this module only gives the
//! shapes and a conservative upper bound on their encoded size so that senders can split
//! batches to fit a datagram without knowing the encoder.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::id::{MessageId, NodeId};

/// The packet type byte of the wire label (byte 1, see `docs/wire.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// A broadcast pushed eagerly to `fanout` peers (go-gossip type 1).
    PushMessage = 1,
    /// Receipt of a push (go-gossip type 2).
    PushAck = 2,
    /// "I hold these message ids" (go-gossip type 3).
    PullSync = 3,
    /// "Send me these message ids" (go-gossip type 4).
    PullRequest = 4,
    /// A broadcast sent in answer to a pull request (go-gossip type 5).
    PullResponse = 5,
    /// Scuttlebutt step 1: the initiator's digest.
    StateDigest = 16,
    /// Scuttlebutt step 2: the peer's deltas for the initiator and its own digest.
    StateReply = 17,
    /// Scuttlebutt step 3: the initiator's deltas for the peer.
    StateDeltas = 18,
    /// A CYCLON shuffle request: up to `l` descriptors of the initiator's partial view.
    CyclonShuffle = 19,
    /// A CYCLON shuffle reply: up to `l` descriptors of the partner's partial view.
    CyclonShuffleReply = 20,
    /// Per-feed broadcast tree notes (SSB's vector clock entries).
    TreeNotes = 21,
    /// A batch of signed feed messages, in sequence order per feed.
    TreeBatch = 22,
    /// "Who holds this blob?" ([`crate::blob::BlobWant`]).
    BlobWant = 23,
    /// "I hold this blob whole, laid out like this" ([`crate::blob::BlobHave`]).
    BlobHave = 24,
    /// "Send me these pieces" ([`crate::blob::BlobRequest`]).
    BlobRequest = 25,
    /// One piece of a blob ([`crate::blob::BlobPiece`]).
    BlobPiece = 26,
    /// An application's own message ([`AppMessage`]), routed by its `kind` to the actor that
    /// registered for it.
    Application = 64,
}

impl PacketType {
    /// Whether this is bulk traffic: the blob messages (types 23-26), which a source sends
    /// one per chunk and which the receiver's blob core bounds by itself (unrequested pieces
    /// dropped, requests served from a bounded queue per peer). A node rate-limits them per
    /// source apart from the control traffic (`gossip_net::limit`).
    pub fn is_bulk(self) -> bool {
        matches!(
            self,
            PacketType::BlobWant
                | PacketType::BlobHave
                | PacketType::BlobRequest
                | PacketType::BlobPiece
        )
    }

    /// Every packet type, in wire order.
    pub const ALL: [PacketType; 17] = [
        PacketType::PushMessage,
        PacketType::PushAck,
        PacketType::PullSync,
        PacketType::PullRequest,
        PacketType::PullResponse,
        PacketType::StateDigest,
        PacketType::StateReply,
        PacketType::StateDeltas,
        PacketType::CyclonShuffle,
        PacketType::CyclonShuffleReply,
        PacketType::TreeNotes,
        PacketType::TreeBatch,
        PacketType::BlobWant,
        PacketType::BlobHave,
        PacketType::BlobRequest,
        PacketType::BlobPiece,
        PacketType::Application,
    ];

    /// Parses the label's type byte; `None` for a byte no packet type uses.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| *t as u8 == byte)
    }

    /// The label's type byte.
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    /// A short lowercase name for metrics and logs (`push_message`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PacketType::PushMessage => "push_message",
            PacketType::PushAck => "push_ack",
            PacketType::PullSync => "pull_sync",
            PacketType::PullRequest => "pull_request",
            PacketType::PullResponse => "pull_response",
            PacketType::StateDigest => "state_digest",
            PacketType::StateReply => "state_reply",
            PacketType::StateDeltas => "state_deltas",
            PacketType::CyclonShuffle => "cyclon_shuffle",
            PacketType::CyclonShuffleReply => "cyclon_shuffle_reply",
            PacketType::TreeNotes => "tree_notes",
            PacketType::TreeBatch => "tree_batch",
            PacketType::BlobWant => "blob_want",
            PacketType::BlobHave => "blob_have",
            PacketType::BlobRequest => "blob_request",
            PacketType::BlobPiece => "blob_piece",
            PacketType::Application => "application",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broadcast as it travels: carried by `PushMessage` and `PullResponse`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip {
    /// The broadcast's id, chosen by its origin.
    pub id: MessageId,
    /// The node that called `broadcast`.
    pub origin: NodeId,
    /// Hops travelled so far: 0 at the origin, incremented by each node that forwards it.
    pub hop: u16,
    /// The application's bytes, opaque to the protocol.
    pub payload: Bytes,
}

/// A protocol message. Each variant maps to one [`PacketType`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Type 1: a broadcast pushed to a random peer; the receiver answers [`Message::PushAck`].
    PushMessage(Gossip),
    /// Type 2: the receiver of a push (new or duplicate) holds `id`.
    PushAck {
        /// The acknowledged broadcast.
        id: MessageId,
    },
    /// Type 3: the sender holds these ids; the receiver requests the ones it lacks.
    PullSync {
        /// Held ids, at most as many as fit one datagram.
        ids: Vec<MessageId>,
    },
    /// Type 4: the sender lacks these ids (all announced by the receiver's `PullSync`).
    PullRequest {
        /// Wanted ids.
        ids: Vec<MessageId>,
    },
    /// Type 5: a broadcast served from the cache in answer to a `PullRequest`.
    PullResponse(Gossip),
    /// Type 16: Scuttlebutt digest (see [`crate::reconcile`]).
    StateDigest(crate::reconcile::Digest),
    /// Type 17: Scuttlebutt reply (see [`crate::reconcile`]).
    StateReply(crate::reconcile::Reply),
    /// Type 18: Scuttlebutt deltas (see [`crate::reconcile`]).
    StateDeltas(crate::reconcile::Deltas),
    /// Type 19: a CYCLON shuffle request (see [`crate::membership`]).
    CyclonShuffle(crate::membership::Shuffle),
    /// Type 20: a CYCLON shuffle reply (see [`crate::membership`]).
    CyclonShuffleReply(crate::membership::ShuffleReply),
    /// Type 21: per-feed broadcast tree notes (see [`crate::tree`]).
    TreeNotes(crate::tree::Notes),
    /// Type 22: signed feed messages (see [`crate::tree`]).
    TreeBatch(crate::tree::FeedBatch),
    /// Type 64: an application's own message, opaque to the framework.
    Application(AppMessage),
    // The blob variants come after `Application` so that the variant indexes (the first
    // byte of the encoding) of every earlier message stay as they were: 13-16.
    /// Type 23: who holds this blob (see [`crate::blob`]).
    BlobWant(crate::blob::BlobWant),
    /// Type 24: a holder's layout of a blob (see [`crate::blob`]).
    BlobHave(crate::blob::BlobHave),
    /// Type 25: pieces wanted (see [`crate::blob`]).
    BlobRequest(crate::blob::BlobRequest),
    /// Type 26: one piece (see [`crate::blob`]).
    BlobPiece(crate::blob::BlobPiece),
}

/// An application's own message: a `kind` chosen by the application (the transport routes it
/// to the actor registered for that kind) and opaque bytes. It travels sealed like every other
/// message, so only holders of the cluster key can send or read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMessage {
    /// The application's message kind.
    pub kind: u16,
    /// The application's bytes.
    pub payload: Bytes,
}

impl Message {
    /// The packet type byte this message travels under.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Message::PushMessage(_) => PacketType::PushMessage,
            Message::PushAck { .. } => PacketType::PushAck,
            Message::PullSync { .. } => PacketType::PullSync,
            Message::PullRequest { .. } => PacketType::PullRequest,
            Message::PullResponse(_) => PacketType::PullResponse,
            Message::StateDigest(_) => PacketType::StateDigest,
            Message::StateReply(_) => PacketType::StateReply,
            Message::StateDeltas(_) => PacketType::StateDeltas,
            Message::CyclonShuffle(_) => PacketType::CyclonShuffle,
            Message::CyclonShuffleReply(_) => PacketType::CyclonShuffleReply,
            Message::TreeNotes(_) => PacketType::TreeNotes,
            Message::TreeBatch(_) => PacketType::TreeBatch,
            Message::Application(_) => PacketType::Application,
            Message::BlobWant(_) => PacketType::BlobWant,
            Message::BlobHave(_) => PacketType::BlobHave,
            Message::BlobRequest(_) => PacketType::BlobRequest,
            Message::BlobPiece(_) => PacketType::BlobPiece,
        }
    }

    /// An upper bound, in bytes, on this message's encoding (see [`wire_bound`]).
    pub fn encoded_len_bound(&self) -> usize {
        wire_bound::VARIANT
            + match self {
                Message::PushMessage(g) | Message::PullResponse(g) => {
                    wire_bound::gossip(g.payload.len())
                }
                Message::PushAck { .. } => MessageId::LEN,
                Message::PullSync { ids } | Message::PullRequest { ids } => {
                    wire_bound::LENGTH_PREFIX + ids.len() * MessageId::LEN
                }
                Message::StateDigest(m) => m.encoded_len_bound(),
                Message::StateReply(m) => m.encoded_len_bound(),
                Message::StateDeltas(m) => m.encoded_len_bound(),
                Message::CyclonShuffle(m) => m.encoded_len_bound(),
                Message::CyclonShuffleReply(m) => m.encoded_len_bound(),
                Message::TreeNotes(m) => m.encoded_len_bound(),
                Message::TreeBatch(m) => m.encoded_len_bound(),
                Message::Application(m) => {
                    wire_bound::HOP + wire_bound::LENGTH_PREFIX + m.payload.len()
                }
                Message::BlobWant(_) => crate::blob::WANT_BOUND,
                Message::BlobHave(_) => crate::blob::HAVE_BOUND,
                Message::BlobRequest(r) => crate::blob::request_bound(r.pieces.len()),
                Message::BlobPiece(p) => crate::blob::piece_bound(p.data.len()),
            }
    }
}

/// The plaintext of every datagram: who sent it, when that node booted, which of its
/// datagrams this is, and the message.
///
/// On the wire: `sender (32) ‖ epoch (8, big-endian) ‖ counter (8, big-endian) ‖ message`, so
/// the message's variant byte is always at offset [`wire_bound::ENVELOPE_HEADER`] (48).
/// `epoch` and `counter` feed the receiver's anti-replay window ([`crate::replay`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending node. Trusted only as far as the key that sealed the datagram is.
    pub sender: NodeId,
    /// The sender's boot time, in microseconds since the Unix epoch (its wall clock when it
    /// started): a restarted node has a larger epoch, which resets its receivers' windows.
    #[serde(with = "fixed_be")]
    pub epoch: u64,
    /// The sender's packet counter: 0 for the first datagram it sends after booting, then one
    /// more for every datagram, to any destination.
    #[serde(with = "fixed_be")]
    pub counter: u64,
    /// The message.
    pub message: Message,
}

impl Envelope {
    /// An upper bound, in bytes, on the encoded envelope (see [`wire_bound`]).
    pub fn encoded_len_bound(&self) -> usize {
        wire_bound::ENVELOPE_HEADER + self.message.encoded_len_bound()
    }
}

/// A `u64` as 8 big-endian bytes (a fixed-size array: no length prefix, no varint), so the
/// envelope header has a fixed size.
mod fixed_be {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        value.to_be_bytes().serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        <[u8; 8]>::deserialize(deserializer).map(u64::from_be_bytes)
    }
}

/// Conservative per-field sizes of the encoding `gossip-net` uses (bincode 2, standard config:
/// little-endian, variable-length integers), so the core can size batches without the encoder.
///
/// `gossip-net` checks in its tests that every encoded envelope is at most
/// [`Envelope::encoded_len_bound`] bytes.
pub mod wire_bound {
    /// Bytes in front of every message in an envelope: sender (32), epoch (8) and counter (8).
    pub const ENVELOPE_HEADER: usize = crate::id::NodeId::LEN + 8 + 8;
    /// Enum variant index (varint, 1 byte below 251).
    pub const VARIANT: usize = 1;
    /// Length prefix of a byte string or list below 65,536 entries (varint, at most 3 bytes).
    pub const LENGTH_PREFIX: usize = 3;
    /// A `u16` (a hop count, an application kind; varint, at most 3 bytes).
    pub const HOP: usize = 3;

    /// Bound on a [`crate::message::Gossip`] with a payload of `payload_len` bytes.
    pub const fn gossip(payload_len: usize) -> usize {
        crate::id::MessageId::LEN + crate::id::NodeId::LEN + HOP + LENGTH_PREFIX + payload_len
    }

    /// Bytes of an envelope around a [`crate::message::Gossip`] with an empty payload: the
    /// largest payload that fits `max_envelope_len` is `max_envelope_len - GOSSIP_OVERHEAD`.
    pub const GOSSIP_OVERHEAD: usize = ENVELOPE_HEADER + VARIANT + gossip(0);

    /// How many message ids one `PullSync`/`PullRequest` may carry within `max_envelope_len`.
    pub const fn ids_per_message(max_envelope_len: usize) -> usize {
        let fixed = ENVELOPE_HEADER + VARIANT + LENGTH_PREFIX;
        if max_envelope_len <= fixed {
            0
        } else {
            (max_envelope_len - fixed) / crate::id::MessageId::LEN
        }
    }
}
