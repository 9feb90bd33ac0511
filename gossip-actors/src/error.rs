//! Errors of the node's public operations.

use gossip_core::dissemination::BroadcastError;
use gossip_net::{CodecConfigError, EncodeError};

/// Why the transport refused to send a message. Nothing was sent in any case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The datagram would exceed the configured maximum (both sizes named).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The transport has stopped.
    #[error("the transport has stopped")]
    Stopped,
}

/// Why [`crate::NodeBuilder::start`] failed. No actor is left running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Binding the UDP socket failed (address in use, not local, no permission).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The simulated network refused the address (in use, or no free port).
    #[error(transparent)]
    SimBind(#[from] gossip_net::sim::SimError),
    /// The store could not be read at start.
    #[error("the store failed at start: {0}")]
    Store(String),
    /// The discovery actor refused its configuration.
    #[error("discovery failed to start: {0}")]
    Discovery(String),
    /// No keyring was given and plaintext was not asked for explicitly.
    #[error("no keyring configured: call .keyring(..) or, for closed test networks, .plaintext()")]
    NoKeyring,
    /// The codec configuration is invalid (max datagram out of range).
    #[error(transparent)]
    Codec(#[from] CodecConfigError),
    /// A protocol configuration value is out of its bounds.
    #[error(transparent)]
    Config(#[from] gossip_core::config::ConfigError),
    /// The fault injection settings are invalid (see
    /// [`crate::FaultInjection::validate`]).
    #[error(transparent)]
    Fault(#[from] crate::transport::FaultConfigError),
    /// A [`crate::NodeConfig`] value is out of its bounds; the error names it by its full
    /// path (`dissemination.fanout`).
    #[error(transparent)]
    InvalidConfig(#[from] crate::config::NodeConfigError),
}

/// Why a [`crate::NodeHandle`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The transport refused the message (it does not fit one datagram); nothing was sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The broadcast was refused; nothing was sent.
    #[error(transparent)]
    Broadcast(#[from] BroadcastError),
    /// The publish was refused or failed; nothing was appended.
    #[error(transparent)]
    Publish(#[from] crate::feeds::PublishFailed),
    /// The follow or unfollow failed.
    #[error(transparent)]
    Follow(#[from] crate::feeds::FollowFailed),
    /// A key/value write was refused; the state did not change.
    #[error(transparent)]
    State(#[from] gossip_core::reconcile::StateError),
    /// A waiting write failed (queue full, or refused); the state did not change.
    #[error(transparent)]
    Set(#[from] crate::state::SetError),
    /// The store failed to read.
    #[error("the store failed: {0}")]
    Store(String),
    /// A blob could not be added or fetched (see [`crate::blobs::BlobError`]).
    #[error(transparent)]
    Blob(#[from] crate::blobs::BlobError),
    /// The node was built without this protocol (see `NodeConfig::protocols`).
    #[error("the node does not run the {protocol} protocol")]
    NotRunning {
        /// The protocol's name.
        protocol: &'static str,
    },
    /// The node has shut down (or the actor's mailbox is closed).
    #[error("the node has shut down")]
    Stopped,
}

impl From<actix::MailboxError> for NodeError {
    fn from(_: actix::MailboxError) -> Self {
        NodeError::Stopped
    }
}

/// Why a keyring change ([`crate::NodeHandle::add_key`], [`crate::NodeHandle::set_primary_key`],
/// [`crate::NodeHandle::remove_key`]) was refused. The keyring did not change in any case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The node runs in plaintext mode: it has no keyring.
    #[error("the node runs in plaintext mode and has no keyring")]
    Plaintext,
    /// No accepted key has this id (add the key first; the primary's own id is not an
    /// accepted key).
    #[error("no accepted key has id {key_id:#04x}")]
    UnknownKeyId {
        /// The key id asked for.
        key_id: u8,
    },
    /// Several accepted keys share this one-byte id (distinct keys collide with probability
    /// 1/256), so which one is meant is ambiguous: remove the extra key, or rotate by key.
    #[error("{count} accepted keys share id {key_id:#04x}")]
    AmbiguousKeyId {
        /// The key id asked for.
        key_id: u8,
        /// How many accepted keys have it.
        count: usize,
    },
    /// The key to remove is the primary, which seals every outgoing datagram: make another
    /// key primary first.
    #[error("key {key_id:#04x} is the primary key; make another key primary before removing it")]
    RemovePrimary {
        /// The primary's id.
        key_id: u8,
    },
    /// The node has shut down.
    #[error("the node has shut down")]
    Stopped,
}
