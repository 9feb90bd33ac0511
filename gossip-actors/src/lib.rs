//! The actors of a gossip node, the node builder and its handle.
//!
//! A node is a set of actix actors that reach each other only through typed mailboxes
//! ([`actix::Recipient`]), so each can be replaced by any actor that handles the same
//! messages (see [`messages`]):
//!
//! ```text
//!  NodeHandle --Broadcast--> DisseminationActor --SelectPeers--> discovery (StaticDiscovery)
//!                                |      ^
//!                    SendMessage |      | InboundMessage (routed by packet type)
//!                                v      |
//!                             TransportActor --PeerStatus::Seen--> discovery
//!                                |
//!                          UDP (gossip-net PacketCodec)
//! ```
//!
//! Each actor is a thin shell: protocol decisions live in the sans-IO cores of
//! [`gossip_core`]; an actor turns a mailbox message into a core input, calls the core, and
//! sends the outputs on. Inbound messages travel with `try_send`, so a full mailbox drops and
//! counts instead of growing without bound.
//!
//! Start a node with [`Node::builder`]; it returns a [`NodeHandle`] (`Clone + Send`) with
//! `broadcast`, `subscribe`, `stats` and `shutdown`. Actors run on the actix arbiter of the
//! caller, so call `start` inside an actix system (`#[actix::main]`, `#[actix::test]`).
#![deny(missing_docs)]

pub mod blobs;
pub mod config;
#[cfg(feature = "dht")]
pub mod dht;
pub mod discovery;
pub mod dissemination;
pub mod error;
pub mod failure;
pub mod feeds;
pub mod messages;
pub mod node;
#[cfg(feature = "http")]
pub mod ops;
mod shell;
pub mod sim;
pub mod state;
pub mod store;
pub mod transport;

pub use blobs::{BlobActor, BlobActorStats, BlobError};
pub use config::NodeConfigError;
#[cfg(feature = "dht")]
pub use dht::{DhtConfig, DhtDiscovery, DhtError, DhtStats};
pub use discovery::{
    CyclonDiscovery, Discovery, DiscoveryContext, StartedDiscovery, StaticDiscovery,
};
pub use dissemination::{DisseminationActor, NodeEvent};
pub use error::{KeyringError, NodeError, SendError, StartError};
pub use failure::{FailureDetectorActor, Liveness};
pub use messages::KeyringView;
pub use node::{Node, NodeBuilder, NodeConfig, NodeHandle, NodeStats};
pub use transport::{
    DelayRange, FaultConfigError, FaultInjection, PacketTypeCounts, Socket, TransportActor,
    TransportStats,
};

pub use gossip_core as core;
pub use gossip_crypto as crypto;
pub use gossip_net as net;
pub use gossip_store as storage;
