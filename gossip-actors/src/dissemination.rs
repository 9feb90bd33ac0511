//! [`DisseminationActor`]: go-gossip's push / ack / pull-sync, as a thin shell around
//! [`gossip_core::dissemination::Dissemination`].
//!
//! The actor makes no protocol decision. On every input (a broadcast command, an inbound
//! message, its one timer) it calls the core, then drains the core's outputs:
//!
//! - a transmit to [`Destination::Peer`] goes straight to the transport;
//! - a transmit to [`Destination::Random`] or [`Destination::RandomGroup`] first asks discovery
//!   for peers ([`SelectPeers`]), then goes to each chosen peer (a group's transmits share one
//!   choice, as the core requires);
//! - each delivery is published to subscribers (a bounded `tokio::sync::broadcast` channel: a
//!   subscriber that falls behind by more than its capacity skips events and is told how many);
//! - the timer is re-armed at the core's `poll_timeout()`.
//!
//! Sends go to the transport with `try_send`; a full transport mailbox drops the datagram and
//! counts it, as a lossy network would (pull-sync recovers).

use std::net::SocketAddr;

use actix::prelude::*;
use bytes::Bytes;
use gossip_core::dissemination::{
    BroadcastError, Delivery, Destination, Dissemination, DisseminationStats, Event,
};
use gossip_core::{Message, MessageId, NodeId};
use rand::rngs::StdRng;
use tokio::sync::broadcast;

use crate::messages::{DiscoveryRecipients, InboundMessage, SelectPeers, SendMessage, Shutdown};
use crate::shell::{TimedShell, now, peer_span};

/// Something a node tells its subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A broadcast reached this node for the first time (its own broadcasts included, at hop
    /// 0). Each message id is delivered once per node.
    Delivered(Delivery),
    /// A node joined this node's view of the cluster state (gossipmonger's `new peer`).
    NewPeer {
        /// The node.
        node: NodeId,
        /// The address it advertises.
        addr: SocketAddr,
    },
    /// The failure detector convicted a node (gossipmonger's `peer dead`).
    PeerDead {
        /// The node.
        node: NodeId,
    },
    /// A node declared dead was heard from again (gossipmonger's `peer live`).
    PeerLive {
        /// The node.
        node: NodeId,
    },
    /// A message of a followed feed (or of the local feed) was appended durably, in sequence
    /// order per feed.
    FeedMessage(gossip_core::feed::FeedMessage),
    /// A followed feed was found forked (two signed messages at one sequence); it is no longer
    /// replicated.
    FeedForked {
        /// The feed.
        feed: gossip_core::feed::FeedId,
    },
    /// A blob fetch advanced (at most every 100 ms per fetch, and once at the end).
    BlobProgress {
        /// The blob.
        blob: gossip_core::blob::BlobId,
        /// Bytes of its data stored so far.
        bytes: u64,
        /// Its size, in bytes.
        size: u64,
    },
    /// A blob was fetched whole and its SHA-256 matched its id.
    BlobComplete {
        /// The blob.
        blob: gossip_core::blob::BlobId,
        /// Its size, in bytes.
        size: u64,
    },
    /// A blob fetch ended without the blob.
    BlobFailed {
        /// The blob.
        blob: gossip_core::blob::BlobId,
        /// Why.
        reason: gossip_core::blob::FailReason,
    },
    /// A key of a node's state changed (gossipmonger's `update`); `value` is `None` for a
    /// delete.
    Update {
        /// The owner of the key.
        node: NodeId,
        /// The key.
        key: String,
        /// The new value, or `None` when deleted.
        value: Option<Bytes>,
        /// The owner's version of this change.
        version: u64,
    },
}

/// Starts a broadcast from this node. Replies with the new message's id.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<MessageId, BroadcastError>")]
pub struct Broadcast {
    /// The application's bytes (at most the core's `max_payload_len`).
    pub payload: Bytes,
}

/// Reads the dissemination counters, with the actor's own drops added.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "DisseminationActorStats")]
pub struct GetDisseminationStats;

/// Counters of the dissemination actor: the core's, plus what the shell dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DisseminationActorStats {
    /// The protocol core's counters.
    pub core: DisseminationStats,
    /// Datagrams not handed to the transport because its mailbox was full.
    pub transport_full: u64,
    /// Random destinations that resolved to no peer at all (discovery knew none).
    pub no_peers: u64,
    /// Peer selections that failed because discovery had stopped.
    pub discovery_errors: u64,
    /// Transmits to random peers dropped because [`MAX_SELECTIONS_IN_FLIGHT`] peer
    /// selections were already waiting for discovery.
    pub selections_dropped: u64,
}

/// Peer selections (with the messages waiting for them) the dissemination actor keeps
/// waiting for discovery's answer at once; beyond it a transmit to random peers is dropped
/// and counted (`selections_dropped`), as a lossy network would. Each holds at most one
/// datagram's worth of messages, so this bounds the shell's own buffering to about
/// 1,024 × 1,400 bytes. Discovery answers from the same arbiter within one turn, so the
/// bound is reached only when discovery's mailbox is itself backed up.
pub const MAX_SELECTIONS_IN_FLIGHT: usize = 1_024;

/// The dissemination actor of one node. See the module docs.
pub struct DisseminationActor {
    core: Dissemination<StdRng>,
    transport: Recipient<SendMessage>,
    discovery: DiscoveryRecipients,
    events: broadcast::Sender<NodeEvent>,
    timer: Option<SpawnHandle>,
    selections_in_flight: usize,
    stats: DisseminationActorStats,
    span: tracing::Span,
}

impl DisseminationActor {
    /// A shell around `core` that sends through `transport`, picks peers through `discovery`
    /// and publishes deliveries on `events`.
    pub fn new(
        core: Dissemination<StdRng>,
        transport: Recipient<SendMessage>,
        discovery: DiscoveryRecipients,
        events: broadcast::Sender<NodeEvent>,
    ) -> Self {
        DisseminationActor {
            core,
            transport,
            discovery,
            events,
            timer: None,
            selections_in_flight: 0,
            stats: DisseminationActorStats::default(),
            span: tracing::Span::none(),
        }
    }

    /// Runs the actor's work inside `span` (the node's span, `node{id=…, addr=…}`, set by
    /// the node builder), so its log lines name the node.
    pub fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    fn send(&mut self, to: SocketAddr, message: Message) {
        if self
            .transport
            .try_send(SendMessage { to, message })
            .is_err()
        {
            self.stats.transport_full += 1;
        }
    }

    fn send_to_random(
        &mut self,
        count: usize,
        exclude: Vec<SocketAddr>,
        messages: Vec<Message>,
        ctx: &mut Context<Self>,
    ) {
        if self.selections_in_flight >= MAX_SELECTIONS_IN_FLIGHT {
            self.stats.selections_dropped += messages.len() as u64;
            return;
        }
        self.selections_in_flight += 1;
        let request = self
            .discovery
            .select_peers
            .send(SelectPeers { count, exclude });
        let fut = request.into_actor(self).map(move |result, act, _ctx| {
            act.selections_in_flight = act.selections_in_flight.saturating_sub(1);
            match result {
                Ok(peers) if peers.is_empty() => act.stats.no_peers += 1,
                Ok(peers) => {
                    for peer in peers {
                        for message in &messages {
                            act.send(peer, message.clone());
                        }
                    }
                }
                Err(_) => act.stats.discovery_errors += 1,
            }
        });
        ctx.spawn(fut);
    }

    /// Drains every output of the core and re-arms the timer.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        let span = self.span.clone();
        let _node = span.enter();
        let mut group: Option<(u64, usize, Vec<SocketAddr>, Vec<Message>)> = None;
        while let Some(transmit) = self.core.poll_transmit() {
            if let Some((token, ..)) = &group {
                let same = matches!(&transmit.destination,
                    Destination::RandomGroup { group: g, .. } if g == token);
                if !same {
                    let (_, count, exclude, messages) = group.take().unwrap_or_default();
                    self.send_to_random(count, exclude, messages, ctx);
                }
            }
            match transmit.destination {
                Destination::Peer(addr) => self.send(addr, transmit.message),
                Destination::Random { count, exclude } => {
                    self.send_to_random(count, exclude, vec![transmit.message], ctx)
                }
                Destination::RandomGroup {
                    group: token,
                    count,
                    exclude,
                } => match &mut group {
                    Some((_, _, _, messages)) => messages.push(transmit.message),
                    None => group = Some((token, count, exclude, vec![transmit.message])),
                },
            }
        }
        if let Some((_, count, exclude, messages)) = group {
            self.send_to_random(count, exclude, messages, ctx);
        }
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Delivered(delivery) => {
                    // No subscriber is not an error: the delivery is still counted.
                    let _ = self.events.send(NodeEvent::Delivered(delivery));
                }
                other => tracing::debug!(?other, "unhandled dissemination event"),
            }
        }
        self.arm_timer(ctx);
    }
}

crate::shell::timed_shell!(DisseminationActor);

impl Actor for DisseminationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.arm_timer(ctx);
    }
}

impl Handler<Broadcast> for DisseminationActor {
    type Result = Result<MessageId, BroadcastError>;

    fn handle(&mut self, msg: Broadcast, ctx: &mut Context<Self>) -> Self::Result {
        let id = self.core.broadcast(now(), msg.payload)?;
        self.drain(ctx);
        Ok(id)
    }
}

impl Handler<InboundMessage> for DisseminationActor {
    type Result = ();

    fn handle(&mut self, msg: InboundMessage, ctx: &mut Context<Self>) {
        let _peer = peer_span(&self.span, &msg).entered();
        self.core
            .handle_message(msg.received_at, msg.from, msg.sender, msg.message);
        self.drain(ctx);
    }
}

impl Handler<GetDisseminationStats> for DisseminationActor {
    type Result = MessageResult<GetDisseminationStats>;

    fn handle(&mut self, _: GetDisseminationStats, _: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats;
        stats.core = self.core.stats();
        MessageResult(stats)
    }
}

impl Handler<Shutdown> for DisseminationActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
