//! [`FailureDetectorActor`]: phi-accrual failure detection, a thin shell around
//! [`gossip_core::failure::FailureDetector`].
//!
//! Heartbeats come from two places: the transport reports every authenticated packet
//! ([`PeerStatus::Seen`], registered as a transport observer), and the state actor reports
//! every advance of a node's Scuttlebutt heartbeat ([`Heartbeat`]), which reaches nodes that
//! never exchange packets directly. Verdicts go out as [`Liveness`] to every registered
//! recipient (state, discovery) and as [`NodeEvent::PeerDead`] / [`NodeEvent::PeerLive`] to
//! subscribers.
//!
//! Run it together with a protocol that keeps every node talking (the state actor gossips
//! once per interval): with dissemination alone, a quiet node looks dead.

use std::time::{Duration, Instant};

use actix::prelude::*;
use gossip_core::NodeId;
use gossip_core::failure::{FailureDetector, FailureEvent, FailureStats};
use tokio::sync::broadcast;

use crate::dissemination::NodeEvent;
use crate::messages::{PeerStatus, Shutdown};
use crate::shell::{TimedShell, now};

/// A node is alive: its Scuttlebutt heartbeat advanced, learned through gossip.
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct Heartbeat {
    /// The node whose heartbeat advanced.
    pub node: NodeId,
    /// When it was learned.
    pub at: Instant,
}

/// A verdict of the failure detector, sent to every [`RegisterLiveness`] recipient.
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum Liveness {
    /// The node was convicted (phi crossed the threshold).
    Dead {
        /// The node.
        node: NodeId,
    },
    /// A node declared dead was heard from again.
    Live {
        /// The node.
        node: NodeId,
    },
    /// A node dead for long was forgotten by the detector.
    Forgotten {
        /// The node.
        node: NodeId,
    },
}

/// Adds a recipient of [`Liveness`] verdicts.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct RegisterLiveness {
    /// Who is told, through `try_send` (a full mailbox loses the verdict and is counted).
    pub recipient: Recipient<Liveness>,
}

/// Reads the detector's counters, with the shell's own.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "FailureActorStats")]
pub struct GetFailureStats;

/// Counters of the failure detector actor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureActorStats {
    /// The core's counters.
    pub core: FailureStats,
    /// Verdicts lost because a recipient's mailbox was full.
    pub verdicts_dropped: u64,
}

/// Asks for a node's current phi; `None` if it is not tracked.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Option<f64>")]
pub struct GetPhi {
    /// The node.
    pub node: NodeId,
}

/// Lists every tracked peer with its liveness and current phi, ascending by node id.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Vec<PeerPhi>")]
pub struct GetPeerPhis;

/// One peer as the failure detector sees it ([`GetPeerPhis`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeerPhi {
    /// The peer.
    pub node: NodeId,
    /// Whether it is live (not convicted).
    pub live: bool,
    /// Its suspicion level now (dimensionless; convicted above the configured threshold,
    /// 8 by default); `None` before enough heartbeats to estimate one.
    pub phi: Option<f64>,
    /// The mean interval between its heartbeats in the detector's window (before the
    /// `min_mean` floor); `None` if not tracked. A dead peer is convicted within
    /// `FailureConfig::detection_bound(mean)` of its last heartbeat.
    pub mean_interval: Option<Duration>,
}

/// The failure detector actor of one node. See the module docs.
pub struct FailureDetectorActor {
    core: FailureDetector,
    local: NodeId,
    recipients: Vec<Recipient<Liveness>>,
    events: broadcast::Sender<NodeEvent>,
    timer: Option<SpawnHandle>,
    verdicts_dropped: u64,
    span: tracing::Span,
}

impl FailureDetectorActor {
    /// A shell around `core` for the node `local` (whose own packets are never heartbeats),
    /// publishing verdicts on `events`.
    pub fn new(core: FailureDetector, local: NodeId, events: broadcast::Sender<NodeEvent>) -> Self {
        FailureDetectorActor {
            core,
            local,
            recipients: Vec::new(),
            events,
            timer: None,
            verdicts_dropped: 0,
            span: tracing::Span::none(),
        }
    }

    /// Runs the actor's work inside `span` (the node's span, `node{id=…, addr=…}`, set by
    /// the node builder), so its log lines name the node.
    pub fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    fn heartbeat(&mut self, at: Instant, node: NodeId, ctx: &mut Context<Self>) {
        if node == self.local {
            return;
        }
        self.core.handle_heartbeat(at, node);
        self.drain(ctx);
    }

    fn tell(&mut self, verdict: Liveness) {
        for recipient in &self.recipients {
            if recipient.try_send(verdict).is_err() {
                self.verdicts_dropped += 1;
            }
        }
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        let span = self.span.clone();
        let _node = span.enter();
        while let Some(event) = self.core.poll_event() {
            match event {
                FailureEvent::PeerDead { node, phi } => {
                    tracing::info!(node = %node.short(), phi, "peer dead");
                    self.tell(Liveness::Dead { node });
                    let _ = self.events.send(NodeEvent::PeerDead { node });
                }
                FailureEvent::PeerLive { node } => {
                    tracing::info!(node = %node.short(), "peer live");
                    self.tell(Liveness::Live { node });
                    let _ = self.events.send(NodeEvent::PeerLive { node });
                }
                FailureEvent::PeerForgotten { node } => self.tell(Liveness::Forgotten { node }),
                other => tracing::debug!(?other, "unhandled failure detector event"),
            }
        }
        self.arm_timer(ctx);
    }
}

crate::shell::timed_shell!(FailureDetectorActor);

impl Actor for FailureDetectorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.arm_timer(ctx);
    }
}

impl Handler<PeerStatus> for FailureDetectorActor {
    type Result = ();

    fn handle(&mut self, msg: PeerStatus, ctx: &mut Context<Self>) {
        if let PeerStatus::Seen { node_id, at, .. } = msg {
            self.heartbeat(at, node_id, ctx);
        }
    }
}

impl Handler<Heartbeat> for FailureDetectorActor {
    type Result = ();

    fn handle(&mut self, msg: Heartbeat, ctx: &mut Context<Self>) {
        self.heartbeat(msg.at, msg.node, ctx);
    }
}

impl Handler<RegisterLiveness> for FailureDetectorActor {
    type Result = ();

    fn handle(&mut self, msg: RegisterLiveness, _: &mut Context<Self>) {
        self.recipients.push(msg.recipient);
    }
}

impl Handler<GetFailureStats> for FailureDetectorActor {
    type Result = MessageResult<GetFailureStats>;

    fn handle(&mut self, _: GetFailureStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(FailureActorStats {
            core: self.core.stats(),
            verdicts_dropped: self.verdicts_dropped,
        })
    }
}

impl Handler<GetPhi> for FailureDetectorActor {
    type Result = Option<f64>;

    fn handle(&mut self, msg: GetPhi, _: &mut Context<Self>) -> Self::Result {
        self.core.phi(now(), &msg.node)
    }
}

impl Handler<GetPeerPhis> for FailureDetectorActor {
    type Result = MessageResult<GetPeerPhis>;

    fn handle(&mut self, _: GetPeerPhis, _: &mut Context<Self>) -> Self::Result {
        let at = now();
        let live = self.core.live_peers().map(|node| (node, true));
        let dead = self.core.dead_peers().map(|node| (node, false));
        let mut peers: Vec<PeerPhi> = live
            .chain(dead)
            .map(|(node, live)| PeerPhi {
                node,
                live,
                phi: self.core.phi(at, &node),
                mean_interval: self.core.mean_interval(&node),
            })
            .collect();
        peers.sort_by_key(|p| p.node);
        MessageResult(peers)
    }
}

impl Handler<Shutdown> for FailureDetectorActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
