//! Typed mailbox messages between the actors of a node.
//!
//! Each request is one struct with its reply type in `#[rtype]`. Actors hold
//! [`Recipient`]s of these messages, never concrete `Addr`s of each other, so any actor that
//! handles the same messages plugs in (a DHT in place of the static discovery table, a
//! recording actor in a test).

use std::net::SocketAddr;
use std::time::Instant;

use actix::{Message as ActixMessage, Recipient};
use gossip_core::{Message, NodeId, PacketType};

use crate::error::{KeyringError, SendError};
use crate::transport::TransportStats;

/// Send one protocol message to one peer. Handled by the transport.
///
/// The reply is `Ok` once the datagram is handed to the socket (UDP gives no delivery
/// guarantee); see [`SendError`] for refusals.
#[derive(ActixMessage, Clone, Debug)]
#[rtype(result = "Result<(), SendError>")]
pub struct SendMessage {
    /// Destination address.
    pub to: SocketAddr,
    /// The message; the transport adds the envelope with this node's id.
    pub message: Message,
}

/// An authenticated message delivered by the transport to the actor registered for its kind.
#[derive(ActixMessage, Clone, Debug)]
#[rtype(result = "()")]
pub struct InboundMessage {
    /// UDP source address of the datagram.
    pub from: SocketAddr,
    /// The sender named in the (authenticated) envelope.
    pub sender: NodeId,
    /// The message.
    pub message: Message,
    /// When the transport received it.
    pub received_at: Instant,
}

/// Route inbound messages of these kinds to `recipient` (replacing an earlier route for the
/// same kind). Handled by the transport.
#[derive(ActixMessage, Clone, Debug)]
#[rtype(result = "()")]
pub struct RegisterRoute {
    /// Packet types to route.
    pub kinds: Vec<PacketType>,
    /// Who receives them (through `try_send`: a full mailbox drops and counts).
    pub recipient: Recipient<InboundMessage>,
}

/// Route inbound [`Message::Application`] messages of
/// application `kind` to `recipient` (replacing an earlier route for the same kind). Handled by
/// the transport. This is how a user-written actor speaks its own protocol over the node's
/// encrypted transport.
#[derive(ActixMessage, Clone, Debug)]
#[rtype(result = "()")]
pub struct RegisterApp {
    /// The application's message kind.
    pub kind: u16,
    /// Who receives them (through `try_send`: a full mailbox drops and counts).
    pub recipient: Recipient<InboundMessage>,
}

/// Tell `recipient` about every authenticated packet (sender and source address). Used by
/// discovery today and by the failure detector later: every authenticated packet is a
/// heartbeat.
#[derive(ActixMessage, Clone, Debug)]
#[rtype(result = "()")]
pub struct RegisterObserver {
    /// Who is told, through `try_send`.
    pub recipient: Recipient<PeerStatus>,
}

/// Reads the transport's counters.
#[derive(ActixMessage, Clone, Copy, Debug)]
#[rtype(result = "TransportStats")]
pub struct GetTransportStats;

/// Asks discovery for up to `count` distinct peers chosen uniformly at random, none in
/// `exclude`. The reply may be shorter when fewer peers are known.
#[derive(ActixMessage, Clone, Debug)]
#[rtype(result = "Vec<SocketAddr>")]
pub struct SelectPeers {
    /// How many peers, at most.
    pub count: usize,
    /// Addresses that must not be chosen.
    pub exclude: Vec<SocketAddr>,
}

/// News about a peer, for discovery.
#[derive(ActixMessage, Clone, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum PeerStatus {
    /// An authenticated packet arrived from `addr`, sent by `node_id`.
    Seen {
        /// Source address.
        addr: SocketAddr,
        /// Authenticated sender.
        node_id: NodeId,
        /// When.
        at: Instant,
    },
    /// The application or an operator names a peer to use (for example a seed learned late).
    Add {
        /// The peer's address.
        addr: SocketAddr,
    },
    /// Forget this peer.
    Remove {
        /// The peer's address.
        addr: SocketAddr,
    },
}

/// A known peer, as reported by [`KnownPeers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSummary {
    /// The peer's address.
    pub addr: SocketAddr,
    /// Its node id, once a packet from it has been authenticated.
    pub node_id: Option<NodeId>,
}

/// Lists discovery's known peers, in address order.
#[derive(ActixMessage, Clone, Copy, Debug)]
#[rtype(result = "Vec<PeerSummary>")]
pub struct KnownPeers;

/// Asks an actor to stop. Every actor of a node handles it.
#[derive(ActixMessage, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Shutdown;

/// The recipients through which every other actor reaches discovery.
#[derive(Clone, Debug)]
pub struct DiscoveryRecipients {
    /// Peer selection.
    pub select_peers: Recipient<SelectPeers>,
    /// Peer news.
    pub peer_status: Recipient<PeerStatus>,
    /// Listing.
    pub known_peers: Recipient<KnownPeers>,
    /// Failure detector verdicts: a dead peer MUST NOT be selected until it is live again.
    pub liveness: Recipient<crate::failure::Liveness>,
    /// Stopping.
    pub shutdown: Recipient<Shutdown>,
}

impl DiscoveryRecipients {
    /// The recipients of any actor that handles the five discovery messages.
    pub fn of<A>(addr: &actix::Addr<A>) -> Self
    where
        A: actix::Actor<Context = actix::Context<A>>
            + actix::Handler<SelectPeers>
            + actix::Handler<PeerStatus>
            + actix::Handler<KnownPeers>
            + actix::Handler<crate::failure::Liveness>
            + actix::Handler<Shutdown>,
    {
        DiscoveryRecipients {
            select_peers: addr.clone().recipient(),
            peer_status: addr.clone().recipient(),
            known_peers: addr.clone().recipient(),
            liveness: addr.clone().recipient(),
            shutdown: addr.clone().recipient(),
        }
    }
}

/// Adds a key to the transport's keyring as an accepted key (opens, never seals): step 1 of a
/// rotation (`docs/wire.md` section 4.4). Adding a key already held changes nothing.
#[derive(ActixMessage, Clone)]
#[rtype(result = "Result<KeyringView, KeyringError>")]
pub struct AddKey {
    /// The key.
    pub key: gossip_crypto::Key,
}

impl std::fmt::Debug for AddKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddKey")
            .field("key_id", &self.key.id())
            .finish_non_exhaustive()
    }
}

/// Makes the accepted key with this id the primary (sealing) key; the previous primary stays
/// accepted: step 2 of a rotation.
#[derive(ActixMessage, Clone, Copy, Debug)]
#[rtype(result = "Result<KeyringView, KeyringError>")]
pub struct SetPrimaryKey {
    /// The key's id (`docs/wire.md` section 4.3).
    pub key_id: u8,
}

/// Removes every accepted key with this id: step 3 of a rotation. The primary is never
/// removed.
#[derive(ActixMessage, Clone, Copy, Debug)]
#[rtype(result = "Result<KeyringView, KeyringError>")]
pub struct RemoveKey {
    /// The key's id.
    pub key_id: u8,
}

/// Reads the ids of the transport's keyring (`None` in plaintext mode).
#[derive(ActixMessage, Clone, Copy, Debug)]
#[rtype(result = "Option<KeyringView>")]
pub struct GetKeyring;

/// The key ids a transport holds (never the keys).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyringView {
    /// Id of the primary key, which seals every outgoing datagram.
    pub primary: u8,
    /// Ids of the accepted (open-only) keys, in insertion order.
    pub accepted: Vec<u8>,
}
