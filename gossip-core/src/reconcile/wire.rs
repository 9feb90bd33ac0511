//! The three Scuttlebutt messages and their size bounds.
//!
//! # Size rules
//!
//! `gossip-net` encodes with bincode 2, standard configuration (little-endian, variable-length
//! integers) through serde. Every `encoded_len_bound` here adds up these per-field sizes, the
//! same rules as [`crate::message::wire_bound`] but exact for integers:
//!
//! | field | bytes |
//! |---|---|
//! | `u64` / `u32` / `u16` (varint) | 1 below 251, 3 up to 2^16 − 1, 5 up to 2^32 − 1, else 9 ([`varint_len`]) |
//! | `bool`, `Option` tag, enum variant below 251 | 1 |
//! | [`NodeId`] (`[u8; 32]`) | 32 |
//! | [`NodePrefix`] (`[u8; 8]`) | 8 |
//! | `String`, `Bytes`, `Vec<T>` | varint of the length, then the bytes or items |
//! | `SocketAddr` (serde's compact form: variant, octets, port varint) | 8 for IPv4, 20 for IPv6 ([`socket_addr_len`]) |
//!
//! So the bound of a value is its exact encoded length; it is an upper bound in the sense of
//! [`crate::message::Envelope::encoded_len_bound`]. The envelope around a message adds
//! [`ENVELOPE_OVERHEAD`] bytes (sender id, epoch, counter and variant byte), so a message whose bound is at
//! most `max_envelope_len − ENVELOPE_OVERHEAD` fits one datagram.

use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::flow::FlowAdvert;
use crate::id::NodeId;

/// Bytes the envelope adds around a state message (49): the 48-byte envelope header (sender
/// id, epoch, counter) and the 1-byte
/// `Message` variant (types 16, 17, 18 are below 251).
pub const ENVELOPE_OVERHEAD: usize =
    crate::message::wire_bound::ENVELOPE_HEADER + crate::message::wire_bound::VARIANT;

/// Bytes of an unsigned integer in bincode's varint encoding.
pub const fn varint_len(value: u64) -> usize {
    if value < 251 {
        1
    } else if value <= u16::MAX as u64 {
        3
    } else if value <= u32::MAX as u64 {
        5
    } else {
        9
    }
}

/// Bytes of a [`SocketAddr`] through serde in a binary format: variant byte, 4 or 16 octets
/// and the port as a varint (1 or 3 bytes). IPv6 flow info and scope id are not encoded.
pub const fn socket_addr_len(addr: &SocketAddr) -> usize {
    let port = varint_len(addr.port() as u64);
    match addr {
        SocketAddr::V4(_) => 1 + 4 + port,
        SocketAddr::V6(_) => 1 + 16 + port,
    }
}

/// The largest [`socket_addr_len`]: 20 bytes.
pub const MAX_SOCKET_ADDR_LEN: usize = 20;

/// Bytes of a length-prefixed byte string of `len` bytes.
pub const fn bytes_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// Bytes of a list's length prefix for `len` items.
pub const fn list_prefix_len(len: usize) -> usize {
    varint_len(len as u64)
}

/// The first 8 bytes of a [`NodeId`], which names a node in digests.
///
/// Digest entries are a quarter of their size with a prefix instead of the whole id, so a
/// datagram carries three times as many (a digest is what limits reconciliation of large
/// clusters). Prefixes sort like the ids they start. Node ids are random (or public keys), so
/// two nodes of a cluster of 10,000 share a prefix with probability about 3 · 10⁻¹², and an
/// insider would need about 2⁶⁴ key generations to collide with a given node. If it happens,
/// the entry is ambiguous and ignored (counted): the nodes concerned are still reconciled as
/// unlisted nodes of a page, only less efficiently. Deltas always carry whole ids.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodePrefix(pub [u8; 8]);

impl NodePrefix {
    /// Length on the wire, in bytes.
    pub const LEN: usize = 8;

    /// The prefix of `id`.
    pub fn of(id: &NodeId) -> Self {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&id.0[..8]);
        NodePrefix(bytes)
    }

    /// The smallest id with this prefix.
    pub fn first_id(&self) -> NodeId {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&self.0);
        NodeId(bytes)
    }

    /// The largest id with this prefix.
    pub fn last_id(&self) -> NodeId {
        let mut bytes = [0xffu8; 32];
        bytes[..8].copy_from_slice(&self.0);
        NodeId(bytes)
    }
}

impl std::fmt::Debug for NodePrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodePrefix({})", hex::encode(&self.0[..4]))
    }
}

/// One node's line in a digest: which state of that node the sender holds.
///
/// An entry of zeros in a [`Reply`]'s digest means "I hold nothing of this node".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The node (the owner of the state), by the first 8 bytes of its id.
    pub node: NodePrefix,
    /// The owner's generation the sender holds.
    pub generation: u64,
    /// The owner's heartbeat the sender holds.
    pub heartbeat: u64,
    /// The highest version of the owner the sender holds completely: it holds every entry of
    /// the owner with a version up to this one (gossipmonger's `maxVersionSeen`).
    pub max_version: u64,
    /// Tombstones of the owner with versions up to this one are garbage-collected in the
    /// sender's copy, or the sender rebuilt its copy from a peer that had collected them: the
    /// sender holds no value the owner deleted at or below this version.
    pub gc_version: u64,
}

impl DigestEntry {
    /// Exact encoded size, in bytes (see the [module doc](self)).
    pub fn encoded_len_bound(&self) -> usize {
        NodePrefix::LEN
            + varint_len(self.generation)
            + varint_len(self.heartbeat)
            + varint_len(self.max_version)
            + varint_len(self.gc_version)
    }

    /// The largest [`encoded_len_bound`](Self::encoded_len_bound) of any entry: 44 bytes.
    pub const MAX_LEN: usize = NodePrefix::LEN + 4 * 9;

    /// The smallest [`encoded_len_bound`](Self::encoded_len_bound) of any entry: 12 bytes.
    pub const MIN_LEN: usize = NodePrefix::LEN + 4;
}

/// Scuttlebutt step 1, initiator → peer: a page of the initiator's digest.
///
/// The *page* covers a contiguous range of the node-id ring: every node the initiator knows
/// whose id prefix is in the cyclic interval `[page[0].node, range_end)` is listed, in `page`
/// or in `extra`. `range_end == page[0].node` means the whole ring (the initiator's complete
/// digest). So a node the peer knows in the range and finds in neither list is unknown to the
/// initiator, and the peer sends it whole. Pages rotate around the ring from round to round,
/// which is how a digest of thousands of nodes is carried by 1,400-byte datagrams.
///
/// `extra` lists nodes outside that guarantee: the initiator itself, the node it gossips with,
/// and the nodes whose state changed most recently at the initiator (rumours). Their
/// absence means nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Exclusive end of the page's range on the ring of id prefixes.
    pub range_end: NodePrefix,
    /// The initiator's entries for the nodes of the range, in ring order from the range start.
    pub page: Vec<DigestEntry>,
    /// Further entries: the initiator, the peer, recently changed nodes.
    pub extra: Vec<DigestEntry>,
    /// The initiator's update rate and desired rate, for the fair re-split.
    pub flow: FlowAdvert,
}

impl Digest {
    /// Exact encoded size, in bytes (see the [module doc](self)).
    pub fn encoded_len_bound(&self) -> usize {
        NodePrefix::LEN
            + list_prefix_len(self.page.len())
            + self
                .page
                .iter()
                .map(DigestEntry::encoded_len_bound)
                .sum::<usize>()
            + list_prefix_len(self.extra.len())
            + self
                .extra
                .iter()
                .map(DigestEntry::encoded_len_bound)
                .sum::<usize>()
            + self.flow.encoded_len_bound()
    }

    /// Bytes of a digest with empty lists and the largest advert, planned with 3-byte list
    /// prefixes: 24.
    pub const FIXED_LEN: usize = NodePrefix::LEN + 3 + 3 + FlowAdvert::MAX_LEN;
}

/// One key's state in a delta: a value or a tombstone, at a version of its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaEntry {
    /// The key.
    pub key: String,
    /// The owner's version of this write.
    pub version: u64,
    /// The value; `None` is a tombstone (the key was deleted at `version`).
    pub value: Option<Bytes>,
}

impl DeltaEntry {
    /// Exact encoded size, in bytes (see the [module doc](self)).
    pub fn encoded_len_bound(&self) -> usize {
        Self::len_of(
            self.key.len(),
            self.version,
            self.value.as_ref().map(Bytes::len),
        )
    }

    /// Encoded size of an entry with a key of `key_len` bytes at `version` with a value of
    /// `value_len` bytes (`None` for a tombstone).
    pub const fn len_of(key_len: usize, version: u64, value_len: Option<usize>) -> usize {
        bytes_len(key_len)
            + varint_len(version)
            + 1
            + match value_len {
                Some(len) => bytes_len(len),
                None => 0,
            }
    }
}

/// The deltas of one owner: every entry of the owner the sender holds with a version in
/// `(from_version, to_version]`, in ascending version order and without a gap, plus the
/// owner's header (generation, heartbeat, address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDelta {
    /// The owner.
    pub node: NodeId,
    /// The owner's generation. A higher generation than the receiver's replaces all its state
    /// of the owner.
    pub generation: u64,
    /// The owner's heartbeat as the sender holds it.
    pub heartbeat: u64,
    /// The owner's advertised address, so nodes learned transitively can be contacted.
    pub addr: SocketAddr,
    /// The sender's [`DigestEntry::gc_version`] for the owner.
    pub gc_version: u64,
    /// The receiver must discard its state of the owner (keeping old values readable until
    /// the new state is complete) and rebuild it from these entries: it was too far behind to
    /// learn about garbage-collected tombstones. `from_version` is then 0.
    pub reset: bool,
    /// Exclusive lower bound of the versions carried.
    pub from_version: u64,
    /// Inclusive upper bound: every entry the sender holds in `(from_version, to_version]` is
    /// in `entries`.
    pub to_version: u64,
    /// `to_version` is the sender's complete `max_version` of the owner (nothing left out).
    pub complete: bool,
    /// The entries, strictly ascending by version.
    pub entries: Vec<DeltaEntry>,
}

impl NodeDelta {
    /// Exact encoded size, in bytes (see the [module doc](self)).
    pub fn encoded_len_bound(&self) -> usize {
        Self::header_len(
            self.generation,
            self.heartbeat,
            &self.addr,
            self.gc_version,
            self.from_version,
            self.to_version,
            self.entries.len(),
        ) + self
            .entries
            .iter()
            .map(DeltaEntry::encoded_len_bound)
            .sum::<usize>()
    }

    /// Encoded size of a delta without its entries, with `entries` entries to follow.
    pub const fn header_len(
        generation: u64,
        heartbeat: u64,
        addr: &SocketAddr,
        gc_version: u64,
        from_version: u64,
        to_version: u64,
        entries: usize,
    ) -> usize {
        NodeId::LEN
            + varint_len(generation)
            + varint_len(heartbeat)
            + socket_addr_len(addr)
            + varint_len(gc_version)
            + 1
            + varint_len(from_version)
            + varint_len(to_version)
            + 1
            + list_prefix_len(entries)
    }

    /// The smallest header of any delta (every integer 1 byte, an IPv4 address with a port
    /// below 251): 46 bytes.
    pub const MIN_HEADER_LEN: usize = NodeId::LEN + 5 + 6 + 1 + 1 + 1;

    /// The largest header of any delta (every integer 9 bytes, an IPv6 address, a 3-byte list
    /// prefix): 102 bytes.
    pub const MAX_HEADER_LEN: usize = NodeId::LEN + 5 * 9 + MAX_SOCKET_ADDR_LEN + 1 + 1 + 3;
}

/// Scuttlebutt step 2, peer → initiator: the peer's deltas for the initiator, and the peer's
/// digest entries for the nodes where the initiator's digest showed newer state, so the
/// initiator can answer with [`Deltas`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Deltas the initiator lacks, most out-of-date owner first (scuttle-depth) or
    /// breadth-first.
    pub deltas: Vec<NodeDelta>,
    /// The peer's entries (zeros for nodes it does not know) for nodes the initiator is ahead
    /// on: it wants those deltas in step 3.
    pub digest: Vec<DigestEntry>,
    /// The peer's update rate and desired rate after the re-split.
    pub flow: FlowAdvert,
    /// The initiator's new maximum update rate from the re-split, in thousandths of an update
    /// per second.
    pub assigned_rate: u32,
}

impl Reply {
    /// Exact encoded size, in bytes (see the [module doc](self)).
    pub fn encoded_len_bound(&self) -> usize {
        list_prefix_len(self.deltas.len())
            + self
                .deltas
                .iter()
                .map(NodeDelta::encoded_len_bound)
                .sum::<usize>()
            + list_prefix_len(self.digest.len())
            + self
                .digest
                .iter()
                .map(DigestEntry::encoded_len_bound)
                .sum::<usize>()
            + self.flow.encoded_len_bound()
            + varint_len(u64::from(self.assigned_rate))
    }

    /// Bytes of a reply with empty lists, planned with 3-byte list prefixes and the largest
    /// integers: 21.
    pub const FIXED_LEN: usize = 3 + 3 + FlowAdvert::MAX_LEN + 5;
}

/// Scuttlebutt step 3, initiator → peer: the initiator's deltas for the nodes the peer asked
/// for in its [`Reply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deltas {
    /// Deltas the peer lacks, in the configured order.
    pub deltas: Vec<NodeDelta>,
}

impl Deltas {
    /// Exact encoded size, in bytes (see the [module doc](self)).
    pub fn encoded_len_bound(&self) -> usize {
        list_prefix_len(self.deltas.len())
            + self
                .deltas
                .iter()
                .map(NodeDelta::encoded_len_bound)
                .sum::<usize>()
    }

    /// Bytes of an empty message, planned with a 3-byte list prefix.
    pub const FIXED_LEN: usize = 3;
}
