//! [`TransportActor`]: the node's UDP socket behind the packet codec.
//!
//! Inbound, each datagram is decoded by the actor's [`PacketCodec`] (the socket stream only
//! reads datagrams, so the keyring can change at runtime); a dropped datagram is counted by
//! reason. An authenticated one then passes the **anti-replay** check
//! ([`gossip_core::replay::ReplayGuard`]: the sender's epoch and packet counter against its
//! sliding window), and a replayed, too old or stale-epoch datagram is dropped and counted
//! ([`DropReason::Replayed`], [`DropReason::TooOld`], [`DropReason::StaleEpoch`]) before anyone
//! sees it: it is not even a heartbeat. One beyond its source's [`InboundLimit`] is dropped
//! and counted (`rate_limited`). An accepted one is reported to every observer (every
//! authenticated packet is a heartbeat) and routed by its packet type to the recipient
//! registered for it, through `try_send`: a full mailbox drops the message and counts it
//! (`mailbox_full`, and by type).
//!
//! Outbound, [`SendMessage`] is wrapped in an envelope stamped with this node's boot epoch
//! (microseconds since the Unix epoch, from the node's wall clock: the simulator's virtual
//! one in simulations) and the next packet counter (0, 1, 2, ... per datagram, to any
//! destination), sealed synchronously by the codec and handed to the
//! kernel with `try_send_to`. The kernel's socket buffer is the only send queue, so it is
//! bounded; a full buffer (`WouldBlock`) drops the datagram and counts it, exactly as a lossy
//! network would. (`UdpFramed`'s sink is not used for sending: when `send_to` fails it keeps
//! the datagram and retries it on every flush, so one bad destination would stall all later
//! sends.)
//!
//! For tests, [`FaultInjection`] makes the transport lossy and slow on purpose: each outbound
//! datagram is discarded with probability `loss`, and a kept one is held back for a delay drawn
//! uniformly from a range, both from the transport's seeded generator. Delayed datagrams wait
//! in a bounded queue ([`FaultInjection::max_delayed`]; a datagram that finds it full is
//! dropped and counted in [`TransportStats::injected_delay_overflow`]) ordered by due time,
//! and leave on one actix timer re-armed for the earliest; actix timers run on tokio's clock,
//! so the delays are exact under a paused test clock.
//!
//! The keyring is swappable while the node runs ([`AddKey`], [`SetPrimaryKey`], [`RemoveKey`]:
//! the three steps of a rotation without downtime, `docs/wire.md` section 4.4); each change
//! applies to the next datagram sent or received.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use gossip_core::config::ConfigError;
use gossip_core::replay::{ReplayConfig, ReplayGuard, ReplayStats};
use gossip_core::{Envelope, NodeId, PacketType};
use gossip_net::sim::{SimSender, SimSocket};
use gossip_net::{DropCounts, DropReason, EncodeError, InboundLimit, InboundLimiter, PacketCodec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio_util::codec::BytesCodec;
use tokio_util::udp::UdpFramed;

use crate::error::{KeyringError, SendError};
use crate::messages::{
    AddKey, GetKeyring, GetTransportStats, InboundMessage, KeyringView, PeerStatus, RegisterApp,
    RegisterObserver, RegisterRoute, RemoveKey, SendMessage, SetPrimaryKey, Shutdown,
};

/// Deliberate faults for tests and demonstrations: outbound loss and delay, drawn from the
/// transport's seeded generator. Off by default; never enable in production.
///
/// Checked by [`FaultInjection::validate`] when a node starts. In a configuration file it is
/// the `[fault]` table (`loss`, `delay = [min_ms, max_ms]`, `max_delayed`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultInjection {
    /// Probability in `0.0..=1.0` that an outbound datagram is silently discarded instead of
    /// sent (counted in [`TransportStats::injected_loss`]).
    pub loss: f64,
    /// Range of the delay added to every outbound datagram that is not lost: uniform in
    /// `min..=max`, drawn per datagram (so datagrams may be reordered, as on a real network).
    /// `None` (the default) sends at once. At most [`MAX_INJECTED_DELAY`]. Datagrams still
    /// held back when the transport stops are discarded.
    pub delay: Option<DelayRange>,
    /// Most datagrams held back by `delay` at once: 4,096 by default (at most 4,096 ×
    /// the maximum datagram, 5.7 MB at 1,400 bytes). A datagram that finds the queue full is
    /// dropped and counted in [`TransportStats::injected_delay_overflow`]. At least 1 when
    /// `delay` is set.
    pub max_delayed: usize,
}

impl Default for FaultInjection {
    fn default() -> Self {
        FaultInjection {
            loss: 0.0,
            delay: None,
            max_delayed: DEFAULT_MAX_DELAYED,
        }
    }
}

/// Default of [`FaultInjection::max_delayed`], in datagrams.
pub const DEFAULT_MAX_DELAYED: usize = 4_096;

/// Longest injected delay accepted by [`FaultInjection::validate`]: 10 s.
pub const MAX_INJECTED_DELAY: Duration = Duration::from_secs(10);

/// A range of injected delays, both ends included. In a configuration file: `[20, 80]`
/// (minimum and maximum, in milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "DelayRangeMs", into = "DelayRangeMs")]
pub struct DelayRange {
    /// Shortest delay.
    pub min: Duration,
    /// Longest delay (at least `min`).
    pub max: Duration,
}

/// The file form of a [`DelayRange`]: `[min, max]` in milliseconds.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct DelayRangeMs(u64, u64);

impl From<DelayRangeMs> for DelayRange {
    fn from(DelayRangeMs(min, max): DelayRangeMs) -> Self {
        DelayRange::from_millis(min, max)
    }
}

impl From<DelayRange> for DelayRangeMs {
    fn from(range: DelayRange) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        DelayRangeMs(ms(range.min), ms(range.max))
    }
}

impl DelayRange {
    /// The range `min..=max` given in milliseconds.
    pub fn from_millis(min: u64, max: u64) -> Self {
        DelayRange {
            min: Duration::from_millis(min),
            max: Duration::from_millis(max),
        }
    }
}

impl FaultInjection {
    /// Checks the fault settings.
    ///
    /// # Errors
    /// [`FaultConfigError::Loss`] for a `loss` outside `0.0..=1.0` (or NaN);
    /// [`FaultConfigError::DelayReversed`] when `delay.max` is below `delay.min`;
    /// [`FaultConfigError::DelayTooLong`] when `delay.max` exceeds [`MAX_INJECTED_DELAY`];
    /// [`FaultConfigError::NoDelayQueue`] when `delay` is set and `max_delayed` is 0.
    pub fn validate(&self) -> Result<(), FaultConfigError> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(FaultConfigError::Loss(self.loss));
        }
        if let Some(DelayRange { min, max }) = self.delay {
            if max < min {
                return Err(FaultConfigError::DelayReversed { min, max });
            }
            if max > MAX_INJECTED_DELAY {
                return Err(FaultConfigError::DelayTooLong(max));
            }
            if self.max_delayed == 0 {
                return Err(FaultConfigError::NoDelayQueue);
            }
        }
        Ok(())
    }
}

/// Why [`FaultInjection::validate`] refused the settings.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultConfigError {
    /// The loss probability is outside `0.0..=1.0` or NaN.
    #[error("injected loss {0} is not a probability in 0..=1")]
    Loss(f64),
    /// The longest delay is below the shortest.
    #[error("injected delay range {min:?}..={max:?} is reversed")]
    DelayReversed {
        /// The shortest delay.
        min: Duration,
        /// The longest delay.
        max: Duration,
    },
    /// The longest delay exceeds [`MAX_INJECTED_DELAY`].
    #[error("injected delay {0:?} exceeds the maximum of {MAX_INJECTED_DELAY:?}")]
    DelayTooLong(Duration),
    /// A delay is set but no datagram may wait (`max_delayed` is 0).
    #[error("injected delay needs max_delayed of at least 1")]
    NoDelayQueue,
}

/// A datagram held back by [`FaultInjection::delay`].
struct DelayedDatagram {
    datagram: Bytes,
    to: SocketAddr,
    kind: PacketType,
}

/// Counters of one transport. All are totals since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Datagrams handed to the kernel.
    pub datagrams_sent: u64,
    /// Bytes of those datagrams (label, body and tag).
    pub bytes_sent: u64,
    /// Datagrams received, accepted or not.
    pub datagrams_received: u64,
    /// Bytes of those datagrams.
    pub bytes_received: u64,
    /// Received datagrams dropped by the codec or the anti-replay check, by reason.
    pub drops: DropCounts,
    /// The anti-replay guard: accepted, dropped by reason, restarts seen, senders evicted.
    pub replay: ReplayStats,
    /// Senders in the anti-replay table now (at most `ReplayConfig::max_senders`).
    pub replay_senders: usize,
    /// This node's boot epoch, stamped on every datagram it sends (microseconds since the
    /// Unix epoch).
    pub epoch: u64,
    /// Sends refused because the datagram would exceed the maximum.
    pub send_refused_oversize: u64,
    /// Datagrams dropped because the kernel's send buffer was full.
    pub send_would_block: u64,
    /// Datagrams the kernel refused for another reason (unreachable, not permitted).
    pub send_errors: u64,
    /// Errors reading from the socket.
    pub recv_errors: u64,
    /// Outbound datagrams discarded by [`FaultInjection::loss`].
    pub injected_loss: u64,
    /// Outbound datagrams held back by [`FaultInjection::delay`] (counted when queued; each
    /// is later sent, or counted like any other send failure).
    pub injected_delay: u64,
    /// Outbound datagrams dropped because [`FaultInjection::max_delayed`] datagrams were
    /// already held back.
    pub injected_delay_overflow: u64,
    /// Authenticated messages of a kind no actor registered for.
    pub unrouted: u64,
    /// Authenticated datagrams dropped because their source address exceeded its
    /// [`InboundLimit`] (before any protocol saw them).
    pub rate_limited: u64,
    /// Authenticated messages dropped because the routed actor's mailbox was full.
    pub mailbox_full: u64,
    /// The same drops by packet type (which protocol's actor was overloaded).
    pub mailbox_full_by_type: PacketTypeCounts,
    /// Datagrams sent, by packet type.
    pub sent_by_type: PacketTypeCounts,
    /// Authenticated datagrams received, by packet type.
    pub received_by_type: PacketTypeCounts,
    /// Bytes of the datagrams sent, by packet type (label, body and tag).
    pub sent_bytes_by_type: PacketTypeCounts,
    /// Bytes of the authenticated datagrams received, by packet type.
    pub received_bytes_by_type: PacketTypeCounts,
}

/// A counter per [`PacketType`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketTypeCounts {
    counts: [u64; PacketType::ALL.len()],
}

impl PacketTypeCounts {
    fn slot(kind: PacketType) -> usize {
        // Every packet type is in `ALL`, so the fallback is never taken.
        PacketType::ALL
            .iter()
            .position(|t| *t == kind)
            .unwrap_or_default()
    }

    /// Counts one packet of `kind`.
    pub fn record(&mut self, kind: PacketType) {
        let slot = &mut self.counts[Self::slot(kind)];
        *slot = slot.saturating_add(1);
    }

    /// Adds `n` to the count of `kind` (bytes, for example).
    pub fn add(&mut self, kind: PacketType, n: u64) {
        let slot = &mut self.counts[Self::slot(kind)];
        *slot = slot.saturating_add(n);
    }

    /// The count for `kind`.
    pub fn get(&self, kind: PacketType) -> u64 {
        self.counts[Self::slot(kind)]
    }

    /// `(type, count)` for every packet type, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (PacketType, u64)> + '_ {
        PacketType::ALL.into_iter().map(|t| (t, self.get(t)))
    }
}

/// What a transport sends and receives through: a real UDP socket, or an address of the
/// in-process simulated network. Both go through the same packet codec.
#[derive(Debug)]
pub enum Socket {
    /// A bound UDP socket.
    Udp(UdpSocket),
    /// A bound address of a [`gossip_net::sim::SimNetwork`].
    Sim(SimSocket),
}

impl Socket {
    /// The bound address.
    ///
    /// # Errors
    /// The OS error of `getsockname` for a UDP socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Socket::Udp(socket) => socket.local_addr(),
            Socket::Sim(socket) => Ok(socket.local_addr()),
        }
    }
}

enum Sender {
    Udp(Arc<UdpSocket>),
    Sim(SimSender),
}

impl Sender {
    fn try_send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            Sender::Udp(socket) => socket.try_send_to(datagram, to),
            Sender::Sim(socket) => socket.try_send_to(datagram, to),
        }
    }
}

enum Receiver {
    Udp(Arc<UdpSocket>),
    Sim(SimSocket),
}

impl From<UdpSocket> for Socket {
    fn from(socket: UdpSocket) -> Self {
        Socket::Udp(socket)
    }
}

impl From<SimSocket> for Socket {
    fn from(socket: SimSocket) -> Self {
        Socket::Sim(socket)
    }
}

/// The transport actor of one node. See the module docs.
pub struct TransportActor {
    local_id: NodeId,
    local_addr: SocketAddr,
    sender: Sender,
    receiver: Option<Receiver>,
    encoder: PacketCodec,
    decoder: PacketCodec,
    replay: ReplayGuard,
    epoch: u64,
    counter: u64,
    routes: BTreeMap<PacketType, Recipient<InboundMessage>>,
    app_routes: BTreeMap<u16, Recipient<InboundMessage>>,
    observers: Vec<Recipient<PeerStatus>>,
    fault: FaultInjection,
    rng: StdRng,
    buf: BytesMut,
    /// Datagrams held back by the injected delay, by due time and then order of sending; at
    /// most `fault.max_delayed`.
    delayed: BTreeMap<(tokio::time::Instant, u64), DelayedDatagram>,
    next_delay_token: u64,
    /// The timer that releases the earliest held-back datagram, and when it fires.
    delay_timer: Option<(tokio::time::Instant, SpawnHandle)>,
    limiter: InboundLimiter,
    stats: TransportStats,
    span: tracing::Span,
}

impl TransportActor {
    /// A transport for `socket` (already bound) that seals with `encoder` and opens with
    /// `decoder` (two codecs of the same security configuration), with the default
    /// [`ReplayConfig`] and an epoch read from the system clock (set both with
    /// [`TransportActor::with_replay`] and [`TransportActor::with_epoch`]).
    ///
    /// # Errors
    /// The OS error if the UDP socket's address cannot be read.
    pub fn new(
        local_id: NodeId,
        socket: impl Into<Socket>,
        encoder: PacketCodec,
        decoder: PacketCodec,
        fault: FaultInjection,
        rng_seed: u64,
    ) -> io::Result<Self> {
        let socket = socket.into();
        let local_addr = socket.local_addr()?;
        let (sender, receiver) = match socket {
            Socket::Udp(udp) => {
                let udp = Arc::new(udp);
                (Sender::Udp(Arc::clone(&udp)), Receiver::Udp(udp))
            }
            Socket::Sim(sim) => (Sender::Sim(sim.sender()), Receiver::Sim(sim)),
        };
        Ok(TransportActor {
            local_id,
            local_addr,
            sender,
            receiver: Some(receiver),
            encoder,
            decoder,
            replay: ReplayGuard::new(ReplayConfig::default())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            epoch: system_epoch(),
            counter: 0,
            routes: BTreeMap::new(),
            app_routes: BTreeMap::new(),
            observers: Vec::new(),
            fault,
            rng: StdRng::seed_from_u64(rng_seed),
            buf: BytesMut::with_capacity(gossip_net::MAX_UDP_PAYLOAD),
            delayed: BTreeMap::new(),
            next_delay_token: 0,
            delay_timer: None,
            limiter: InboundLimiter::new(InboundLimit::unlimited()),
            stats: TransportStats::default(),
            span: tracing::Span::none(),
        })
    }

    /// Runs the actor's work inside `span` (the node's span, `node{id=…, addr=…}`, set by
    /// the node builder), so its log lines name the node.
    pub fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// Admits at most `limit` authenticated datagrams per source address (see
    /// [`gossip_net::limit`]); the rest are dropped before routing and counted in
    /// [`TransportStats::rate_limited`]. Without it every datagram is admitted.
    pub fn with_inbound_limit(mut self, limit: InboundLimit) -> Self {
        self.limiter = InboundLimiter::new(limit);
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stamps `epoch` (this node's boot time, microseconds since the Unix epoch) on every
    /// datagram. A restarted node MUST use a larger epoch than its previous run: with an
    /// equal one its receivers drop its datagrams as replayed or too old until its counter
    /// passes the old run's, with a smaller one as stale epoch until they forget the sender.
    #[must_use]
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// Uses `config` for the anti-replay window and sender table.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` is out of bounds ([`ReplayConfig::validate`]).
    pub fn with_replay(mut self, config: ReplayConfig) -> Result<Self, ConfigError> {
        self.replay = ReplayGuard::new(config)?;
        Ok(self)
    }

    fn keyring_change(
        &mut self,
        change: impl Fn(&mut gossip_crypto::Keyring) -> Result<(), KeyringError>,
    ) -> Result<KeyringView, KeyringError> {
        let keyring = self.encoder.keyring_mut().ok_or(KeyringError::Plaintext)?;
        change(keyring)?;
        let view = KeyringView {
            primary: keyring.primary_id(),
            accepted: keyring.accepted_ids(),
        };
        if let Some(keyring) = self.decoder.keyring_mut() {
            // The same change on the decoder's copy; it held the same keys, so it succeeds.
            let _ = change(keyring);
        }
        Ok(view)
    }

    fn send(&mut self, msg: SendMessage, ctx: &mut Context<Self>) -> Result<(), SendError> {
        let kind = msg.message.packet_type();
        let envelope = Envelope {
            sender: self.local_id,
            epoch: self.epoch,
            counter: self.counter,
            message: msg.message,
        };
        self.buf.clear();
        if let Err(err) = self.encoder.encode_datagram(&envelope, &mut self.buf) {
            // Nothing was sealed under this counter, so it is not used up.
            if matches!(err, EncodeError::TooLarge { .. }) {
                self.stats.send_refused_oversize += 1;
            }
            return Err(SendError::Encode(err));
        }
        self.counter = self.counter.wrapping_add(1);
        if self.fault.loss > 0.0 && self.rng.random_bool(self.fault.loss.clamp(0.0, 1.0)) {
            self.stats.injected_loss += 1;
            return Ok(());
        }
        if let Some(range) = self.fault.delay {
            self.hold_back(range, msg.to, kind, ctx);
            return Ok(());
        }
        let datagram = std::mem::take(&mut self.buf);
        self.send_datagram(&datagram, msg.to, kind);
        self.buf = datagram;
        Ok(())
    }

    /// Queues the encoded datagram in `self.buf` for a delay drawn from `range`, or drops it
    /// (counted) when the queue is full.
    fn hold_back(
        &mut self,
        range: DelayRange,
        to: SocketAddr,
        kind: PacketType,
        ctx: &mut Context<Self>,
    ) {
        if self.delayed.len() >= self.fault.max_delayed {
            self.stats.injected_delay_overflow += 1;
            return;
        }
        let delay = if range.max > range.min {
            self.rng.random_range(range.min..=range.max)
        } else {
            range.min
        };
        let due = tokio::time::Instant::now() + delay;
        let token = self.next_delay_token;
        self.next_delay_token = self.next_delay_token.wrapping_add(1);
        let datagram = Bytes::copy_from_slice(&self.buf);
        self.delayed
            .insert((due, token), DelayedDatagram { datagram, to, kind });
        self.stats.injected_delay += 1;
        self.arm_delay_timer(ctx);
    }

    /// Arms the timer for the earliest held-back datagram, unless it is armed for that time
    /// or earlier already.
    fn arm_delay_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(&(due, _)) = self.delayed.keys().next() else {
            return;
        };
        if let Some((armed, handle)) = self.delay_timer {
            if armed <= due {
                return;
            }
            ctx.cancel_future(handle);
        }
        let wait = due.saturating_duration_since(tokio::time::Instant::now());
        let handle = ctx.run_later(wait, |actor, ctx| {
            actor.delay_timer = None;
            actor.release_due(ctx);
        });
        self.delay_timer = Some((due, handle));
    }

    /// Sends every held-back datagram that is due, in due order, and re-arms the timer.
    fn release_due(&mut self, ctx: &mut Context<Self>) {
        let now = tokio::time::Instant::now();
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let held = entry.remove();
            self.send_datagram(&held.datagram, held.to, held.kind);
        }
        self.arm_delay_timer(ctx);
    }

    /// Hands one encoded datagram to the socket and counts the outcome.
    fn send_datagram(&mut self, datagram: &[u8], to: SocketAddr, kind: PacketType) {
        match self.sender.try_send_to(datagram, to) {
            Ok(_) => {
                tracing::trace!(%to, ?kind, len = datagram.len(), "datagram sent");
                self.stats.datagrams_sent += 1;
                self.stats.bytes_sent += datagram.len() as u64;
                self.stats.sent_by_type.record(kind);
                self.stats
                    .sent_bytes_by_type
                    .add(kind, datagram.len() as u64);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.stats.send_would_block += 1;
            }
            Err(err) => {
                tracing::debug!(%to, error = %err, "send failed");
                self.stats.send_errors += 1;
            }
        }
    }

    fn receive(&mut self, mut datagram: BytesMut, from: SocketAddr) {
        let len = datagram.len();
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += len as u64;
        let checked = self
            .decoder
            .decode_datagram(&mut datagram)
            .and_then(|envelope| {
                self.replay
                    .handle_datagram(envelope.sender, envelope.epoch, envelope.counter)
                    .map_err(DropReason::from_replay)?;
                Ok(envelope)
            });
        let envelope = match checked {
            Ok(envelope) => envelope,
            Err(reason) => {
                tracing::trace!(%from, %reason, "datagram dropped");
                self.stats.drops.record(reason);
                return;
            }
        };
        let kind = envelope.message.packet_type();
        tracing::trace!(%from, node = %envelope.sender.short(), ?kind, len, "datagram received");
        self.stats.received_by_type.record(kind);
        self.stats.received_bytes_by_type.add(kind, len as u64);
        let received_at = tokio::time::Instant::now().into_std();
        // Blob messages have their own, faster bucket (`PacketType::is_bulk`).
        let admitted = if kind.is_bulk() {
            self.limiter.admit_bulk(received_at, from)
        } else {
            self.limiter.admit(received_at, from)
        };
        if !admitted {
            self.stats.rate_limited += 1;
            return;
        }
        for observer in &self.observers {
            // Observers learn liveness; losing one report under overload is harmless.
            let _ = observer.try_send(PeerStatus::Seen {
                addr: from,
                node_id: envelope.sender,
                at: received_at,
            });
        }
        let app_kind = match &envelope.message {
            gossip_core::Message::Application(app) => Some(app.kind),
            _ => None,
        };
        let route = match app_kind {
            Some(app) => self.app_routes.get(&app),
            None => self.routes.get(&kind),
        };
        let Some(route) = route else {
            self.stats.unrouted += 1;
            return;
        };
        let inbound = InboundMessage {
            from,
            sender: envelope.sender,
            message: envelope.message,
            received_at,
        };
        match route.try_send(inbound) {
            Ok(()) => {}
            Err(actix::prelude::SendError::Full(_)) => {
                self.stats.mailbox_full += 1;
                self.stats.mailbox_full_by_type.record(kind);
            }
            Err(actix::prelude::SendError::Closed(_)) => {
                self.stats.unrouted += 1;
                match app_kind {
                    Some(app) => self.app_routes.remove(&app),
                    None => self.routes.remove(&kind),
                };
            }
        }
    }
}

impl Actor for TransportActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        let Some(receiver) = self.receiver.take() else {
            return;
        };
        match receiver {
            Receiver::Udp(socket) => {
                // `BytesCodec` hands over each datagram whole (and skips empty ones, as the
                // packet codec's `Decoder` does); the actor decodes it with its own codec.
                ctx.add_stream(UdpFramed::new(socket, BytesCodec::new()));
            }
            Receiver::Sim(mut socket) => {
                let stream = futures::stream::poll_fn(move |cx| socket.poll_recv(cx)).map(Ok);
                ctx.add_stream(stream);
            }
        }
    }
}

impl StreamHandler<Result<(BytesMut, SocketAddr), io::Error>> for TransportActor {
    fn handle(&mut self, item: Result<(BytesMut, SocketAddr), io::Error>, _: &mut Context<Self>) {
        let span = self.span.clone();
        let _node = span.enter();
        match item {
            Ok((datagram, from)) => self.receive(datagram, from),
            Err(err) => {
                tracing::debug!(error = %err, "receive failed");
                self.stats.recv_errors += 1;
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<SendMessage> for TransportActor {
    type Result = Result<(), SendError>;

    fn handle(&mut self, msg: SendMessage, ctx: &mut Context<Self>) -> Self::Result {
        let span = self.span.clone();
        let _node = span.enter();
        self.send(msg, ctx)
    }
}

impl Handler<RegisterRoute> for TransportActor {
    type Result = ();

    fn handle(&mut self, msg: RegisterRoute, _: &mut Context<Self>) {
        for kind in msg.kinds {
            self.routes.insert(kind, msg.recipient.clone());
        }
    }
}

impl Handler<RegisterApp> for TransportActor {
    type Result = ();

    fn handle(&mut self, msg: RegisterApp, _: &mut Context<Self>) {
        self.app_routes.insert(msg.kind, msg.recipient);
    }
}

impl Handler<RegisterObserver> for TransportActor {
    type Result = ();

    fn handle(&mut self, msg: RegisterObserver, _: &mut Context<Self>) {
        self.observers.push(msg.recipient);
    }
}

impl Handler<GetTransportStats> for TransportActor {
    type Result = MessageResult<GetTransportStats>;

    fn handle(&mut self, _: GetTransportStats, _: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats;
        stats.replay = self.replay.stats();
        stats.replay_senders = self.replay.senders();
        stats.epoch = self.epoch;
        MessageResult(stats)
    }
}

impl Handler<AddKey> for TransportActor {
    type Result = Result<KeyringView, KeyringError>;

    fn handle(&mut self, msg: AddKey, _: &mut Context<Self>) -> Self::Result {
        self.keyring_change(|keyring| {
            keyring.add_accepted(msg.key.clone());
            Ok(())
        })
    }
}

impl Handler<SetPrimaryKey> for TransportActor {
    type Result = Result<KeyringView, KeyringError>;

    fn handle(&mut self, msg: SetPrimaryKey, _: &mut Context<Self>) -> Self::Result {
        let key_id = msg.key_id;
        self.keyring_change(|keyring| {
            if keyring.primary_id() == key_id && !keyring.accepted_ids().contains(&key_id) {
                return Ok(()); // already primary
            }
            match keyring.promote(key_id) {
                1 => Ok(()),
                0 => Err(KeyringError::UnknownKeyId { key_id }),
                count => Err(KeyringError::AmbiguousKeyId { key_id, count }),
            }
        })
    }
}

impl Handler<RemoveKey> for TransportActor {
    type Result = Result<KeyringView, KeyringError>;

    fn handle(&mut self, msg: RemoveKey, _: &mut Context<Self>) -> Self::Result {
        let key_id = msg.key_id;
        self.keyring_change(|keyring| {
            if keyring.primary_id() == key_id {
                return Err(KeyringError::RemovePrimary { key_id });
            }
            match keyring.remove(key_id) {
                0 => Err(KeyringError::UnknownKeyId { key_id }),
                _ => Ok(()),
            }
        })
    }
}

impl Handler<GetKeyring> for TransportActor {
    type Result = Option<KeyringView>;

    fn handle(&mut self, _: GetKeyring, _: &mut Context<Self>) -> Self::Result {
        match self.encoder.security() {
            gossip_net::Security::Encrypted(keyring) => Some(KeyringView {
                primary: keyring.primary_id(),
                accepted: keyring.accepted_ids(),
            }),
            gossip_net::Security::Plaintext => None,
        }
    }
}

/// The system clock in microseconds since the Unix epoch (0 if it reads before 1970).
pub fn system_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Handler<Shutdown> for TransportActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.span.in_scope(|| {
            tracing::info!(
                datagrams_sent = self.stats.datagrams_sent,
                datagrams_received = self.stats.datagrams_received,
                "node stopped"
            )
        });
        ctx.stop();
    }
}
