//! Identifiers: [`NodeId`] names a node, [`MessageId`] names one broadcast.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Identity of a node: 32 bytes, on the wire as 32 raw bytes.
///
/// A node's ed25519 public key (Secure Scuttlebutt's "peer id = public key"), so it is also the
/// id of the node's own feed. On the wire it is not proven by itself: the sender of an envelope
/// is trusted only as far as the cluster key that sealed it; feed messages carry signatures.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// Length of a node id on the wire, in bytes.
    pub const LEN: usize = 32;

    /// Draws a fresh id from `rng`.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes);
        NodeId(bytes)
    }

    /// The first 8 hex digits, for logs and tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Identity of one broadcast message: 16 random bytes chosen by its origin.
///
/// 128 random bits make a collision between two live messages negligible (birthday bound
/// 2^64 messages), and unlike a per-origin counter they stay unique across restarts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// Length of a message id on the wire, in bytes.
    pub const LEN: usize = 16;

    /// Draws a fresh id from `rng`.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes);
        MessageId(bytes)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", hex::encode(&self.0[..6]))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
