//! The actors of a gossip node, the node builder and its handle.
#![deny(missing_docs)]

pub mod discovery;
pub mod dissemination;
pub mod error;
pub mod messages;
pub mod node;
pub mod transport;

pub use discovery::StaticDiscovery;
pub use dissemination::{DisseminationActor, NodeEvent};
pub use error::{NodeError, SendError, StartError};
pub use node::{Node, NodeBuilder, NodeConfig, NodeHandle, NodeStats};
pub use transport::{FaultInjection, PacketTypeCounts, TransportActor, TransportStats};

pub use gossip_core as core;
pub use gossip_crypto as crypto;
pub use gossip_net as net;
