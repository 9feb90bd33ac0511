//! Push / ack / pull-sync dissemination (go-gossip) with periodic anti-entropy, as a sans-IO
//! state machine.
//!
//! [`Dissemination`] spreads application broadcasts to every node exactly once. Its rules are
//! go-gossip's 2022 design (protocol-diver/go-gossip): eager push to `fanout` random peers, a
//! `PushAck` from every receiver, a `PullSync` → `PullRequest` → `PullResponse` recovery round
//! when a push misses its ack majority, and an LRU payload cache. To that we add what a lossy
//! network needs: a periodic anti-entropy `PullSync` (the single recovery round can itself be
//! lost), a time-to-live on payloads, a longer-lived bounded seen-id set (iroh-gossip's
//! `message_id_retention`) and a bound on every collection. The rules are listed on
//! [`Dissemination`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;
use rand::Rng;

use crate::config::ConfigError;
use crate::id::{MessageId, NodeId};
use crate::message::{Gossip, Message};

mod config;

pub use config::{
    DATAGRAM_OVERHEAD, DEFAULT_MAX_ENVELOPE_LEN, DisseminationConfig, MAX_UDP_PAYLOAD,
};

#[cfg(test)]
mod tests;

/// Shortest time between two expiry sweeps of the cache, the seen set and the pending pulls.
///
/// Expired entries are never used even before they are swept (each use checks the age), so a
/// sweep only returns memory; sweeping at most once a second keeps idle nodes quiet.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Where a [`Transmit`] goes. The shell resolves it to one or more peer addresses and sends
/// the message to each.
///
/// Not `#[non_exhaustive]` on purpose: a shell must handle every kind of destination, so a new
/// one has to break its `match` rather than fall into a wildcard that drops datagrams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Exactly this peer (an answer to a datagram from it).
    Peer(SocketAddr),
    /// `count` distinct peers chosen uniformly at random by the shell's discovery, none of
    /// them in `exclude` (all eligible peers if fewer; none if there are none), for example
    /// with [`PeerTable::select`](crate::peers::PeerTable::select). Each transmit is resolved
    /// independently.
    Random {
        /// Peers wanted.
        count: usize,
        /// Peers that must not be chosen (sorted, deduplicated).
        exclude: Vec<SocketAddr>,
    },
    /// Like [`Destination::Random`], but every transmit carrying the same `group` MUST go to
    /// the same peers.
    ///
    /// Used when one logical message is split into several datagrams (an anti-entropy
    /// `PullSync` whose ids do not fit one datagram), so the receiver sees the whole
    /// announcement. Guarantees to the shell: the transmits of one group are queued
    /// consecutively by [`Dissemination::poll_transmit`], all carry the same `count` and
    /// `exclude`, and group tokens are never reused by one core (a counter from 0). So the
    /// shell resolves the first transmit of a group and reuses that choice for the following
    /// transmits with the same token; remembering only the last group suffices.
    RandomGroup {
        /// Token shared by the transmits of one group, unique per core.
        group: u64,
        /// Peers wanted.
        count: usize,
        /// Peers that must not be chosen (sorted, deduplicated).
        exclude: Vec<SocketAddr>,
    },
}

/// A message to send, produced by [`Dissemination::poll_transmit`]. The shell wraps it in an
/// [`Envelope`](crate::message::Envelope) with the local node id as sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: Destination,
    /// What to send. Its [`Message::encoded_len_bound`] plus the sender id is at most
    /// [`DisseminationConfig::max_envelope_len`].
    pub message: Message,
}

/// Something to tell the application, produced by [`Dissemination::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A broadcast reached this node for the first time (or was broadcast by it). Each id is
    /// delivered at most once while it is remembered (`seen_ttl`, `seen_capacity`).
    Delivered(Delivery),
}

/// One delivered broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The broadcast's id.
    pub id: MessageId,
    /// The node that broadcast it.
    pub origin: NodeId,
    /// Links travelled: 0 at the origin, 1 at a peer that got it straight from the origin, and
    /// so on (saturating at `u16::MAX`). The last delivery hop (LDH) of a run is its maximum.
    pub hop: u16,
    /// The application's bytes.
    pub payload: Bytes,
}

/// Why [`Dissemination::broadcast`] refused a payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// The payload does not fit one datagram. Nothing was queued, cached or counted, and no
    /// randomness was drawn: the state did not change.
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// The payload's length, in bytes.
        len: usize,
        /// The largest accepted payload, in bytes ([`DisseminationConfig::max_payload_len`]).
        max: usize,
    },
}

/// Counters of a [`Dissemination`], each a running total since construction.
///
/// A "transmit" is one queued [`Transmit`]; one addressed to [`Destination::Random`] becomes up
/// to `count` datagrams in the shell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DisseminationStats {
    /// Payloads accepted by [`Dissemination::broadcast`].
    pub broadcasts: u64,
    /// [`Event::Delivered`] produced (own broadcasts included).
    pub delivered: u64,
    /// `PushMessage`s and `PullResponse`s for an id already seen (or of our own origin).
    pub duplicates_suppressed: u64,
    /// Received broadcasts whose payload exceeds [`DisseminationConfig::max_payload_len`]:
    /// not delivered (this node could not forward them), but remembered as seen.
    pub oversized_dropped: u64,
    /// `PushMessage` transmits (origin and re-propagation), each to up to `fanout` peers.
    pub pushes_sent: u64,
    /// `PushAck`s sent, one per received `PushMessage`.
    pub push_acks_sent: u64,
    /// `PushAck`s received, all of them.
    pub acks_received: u64,
    /// `PushAck`s from an address that had already acknowledged the same pending push.
    pub duplicate_acks: u64,
    /// `PushAck`s for an id with no pending ack timer (unknown, satisfied or timed out).
    pub stray_acks: u64,
    /// Pushes that reached `acks_needed` distinct acks in time.
    pub ack_majorities: u64,
    /// Pushes whose ack timer fired with fewer than `acks_needed` acks (go-gossip's
    /// majority missed); each is followed by a `PullSync` if the payload is still cached.
    pub ack_timeouts: u64,
    /// Ack timers dropped (oldest first) because `cache_capacity` were outstanding.
    pub ack_timers_dropped: u64,
    /// `PullSync` transmits: after an ack timeout, and every anti-entropy datagram.
    pub pull_syncs_sent: u64,
    /// `PullSync`s received.
    pub pull_syncs_received: u64,
    /// Ids past [`DisseminationConfig::ids_per_message`] in a received `PullSync` or
    /// `PullRequest`, ignored.
    pub ids_truncated: u64,
    /// `PullRequest` transmits.
    pub pull_requests_sent: u64,
    /// `PullRequest`s received.
    pub pull_requests_received: u64,
    /// `PullResponse` transmits, one per requested id served from the cache.
    pub pull_responses_sent: u64,
    /// Requested ids not served: not cached, or older than `cache_ttl`.
    pub pull_misses: u64,
    /// Broadcasts delivered because of a `PullResponse` (recovered by pull-sync).
    pub pulls_recovered: u64,
    /// Missing ids not requested because `pending_pull_capacity` ids were already pending.
    pub pending_pull_full_drops: u64,
    /// Anti-entropy rounds that announced at least one id.
    pub anti_entropy_rounds: u64,
    /// Cached payloads evicted to make room (`cache_capacity`).
    pub cache_evictions: u64,
    /// Cached payloads dropped for age (`cache_ttl`).
    pub cache_expirations: u64,
    /// Seen ids forgotten to make room (`seen_capacity`).
    pub seen_evictions: u64,
    /// Seen ids forgotten for age (`seen_ttl`).
    pub seen_expirations: u64,
    /// Transmits dropped because `output_queue_capacity` outputs were queued (the caller did
    /// not drain).
    pub transmits_dropped: u64,
    /// Events dropped because `output_queue_capacity` outputs were queued (the caller did not
    /// drain).
    pub events_dropped: u64,
    /// Messages of another protocol handed to [`Dissemination::handle_message`]; ignored.
    pub foreign_messages: u64,
}

/// Current sizes of a [`Dissemination`]'s collections, each within the configured bound named
/// in its doc. For gauges and for tests of the bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Cached payloads (≤ `cache_capacity`).
    pub cached: usize,
    /// Remembered seen ids (≤ `seen_capacity`).
    pub seen: usize,
    /// Outstanding ack timers (≤ `cache_capacity`).
    pub pending_acks: usize,
    /// Requested ids not yet received (≤ `pending_pull_capacity`).
    pub pending_pulls: usize,
    /// Queued transmits; with `queued_events` ≤ `output_queue_capacity`.
    pub queued_transmits: usize,
    /// Queued events; with `queued_transmits` ≤ `output_queue_capacity`.
    pub queued_events: usize,
}

/// A payload held to answer pull requests.
#[derive(Clone, Debug)]
struct CachedGossip {
    origin: NodeId,
    /// The hop at which this node delivered it (what a `PullResponse` carries).
    hop: u16,
    payload: Bytes,
    received: Instant,
}

/// An ack timer: a push waiting for `acks_needed` distinct acks.
#[derive(Clone, Debug)]
struct PendingAck {
    deadline: Instant,
    /// The peer the broadcast came from (`None` at the origin); it holds the message, so the
    /// fallback `PullSync` skips it.
    source: Option<SocketAddr>,
    /// Distinct acknowledging addresses, fewer than `acks_needed`.
    acked: Vec<SocketAddr>,
}

/// How a broadcast reached this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Push,
    Pull,
}

/// go-gossip's push / ack / pull-sync plus periodic anti-entropy, as a sans-IO state machine.
///
/// # Call order
///
/// The core never does IO, never reads a clock and draws randomness only from its own `R`.
/// The shell (an actor, a simulator, a test) drives it like a quinn `Connection`:
///
/// 1. **Construction**: [`new`](Self::new) with the local id, a validated config, a seeded
///    rng and the current time.
/// 2. **Application commands**: [`broadcast`](Self::broadcast).
/// 3. **Inputs**: [`handle_message`](Self::handle_message) for every authenticated datagram
///    of a dissemination type, [`handle_timeout`](Self::handle_timeout) when the timer fires.
/// 4. **Outputs**: after *every* command or input, drain [`poll_transmit`](Self::poll_transmit)
///    and [`poll_event`](Self::poll_event) until they return `None`, then re-arm the one timer
///    at [`poll_timeout`](Self::poll_timeout) (cancel it if `None`), and call
///    `handle_timeout(now)` when it fires. Calling `handle_timeout` early or late is harmless:
///    only what is due runs.
///
/// Outputs queue up until drained; more than
/// [`output_queue_capacity`](DisseminationConfig::output_queue_capacity) are dropped and
/// counted (`transmits_dropped`, `events_dropped`), which a caller that drains after every
/// input never sees (the capacity is at least
/// [`max_outputs_per_input`](DisseminationConfig::max_outputs_per_input)).
/// Getters: [`stats`](Self::stats), [`occupancy`](Self::occupancy), [`config`](Self::config),
/// [`local_id`](Self::local_id).
///
/// # Protocol
///
/// Rules 1–6 and the LRU cache are go-gossip's (protocol-diver/go-gossip, 2022); rule 7, the
/// time-to-lives and the bounds are ours.
///
/// 1. **Push** `PushMessage(g)` from `from`: always answer `PushAck { id }` to `from`, also
///    for a duplicate (it tells the pusher we hold it). If `g.id` is new, mark it seen, cache
///    it, deliver it with `hop = g.hop + 1`, and re-propagate it like a broadcast:
///    `PushMessage` with that hop to [`Destination::Random`] `{ count: fanout, exclude: [from] }`
///    and arm an ack timer. A seen id, or one whose origin is this node, is a duplicate.
/// 2. **Ack** `PushAck { id }` from `from`: counts once per distinct address towards the
///    pending timer of `id`; at `acks_needed` the timer is satisfied and removed. Acks for no
///    pending timer are stray and ignored.
/// 3. **Ack timeout**: fewer than `acks_needed` acks after `ack_timeout` → `PullSync { ids:
///    [id] }` to `Random { count: pull_sync_peers, exclude: acked peers + the peer it came
///    from }` (skipped if the payload is no longer cached, since it could not be served).
/// 4. **PullSync** `{ ids }` from `from` (first `ids_per_message` looked at): request the ids
///    neither seen nor already requested within `pull_retry` with one `PullRequest` to `from`,
///    and remember them as pending (at most `pending_pull_capacity`; the rest are not
///    requested, and counted).
/// 5. **PullRequest** `{ ids }` from `from` (first `ids_per_message`, each once): a
///    `PullResponse` to `from` for each id cached and younger than `cache_ttl`.
/// 6. **PullResponse(g)**: like a new push (deliver, cache, re-propagate, ack timer) but no
///    `PushAck`; counted in `pulls_recovered`. Clears the pending request.
/// 7. **Anti-entropy**: every `anti_entropy_interval` (first round at a random phase), the
///    cached ids received within `anti_entropy_window`, most recent first, are announced in
///    `PullSync`s of at most `ids_per_message` ids, all to the same `anti_entropy_peers`
///    random peers ([`Destination::RandomGroup`]). go-gossip's single recovery round can be
///    lost too; this bounds how long a node stays behind.
/// 8. **Memory**: the payload cache is an LRU of `cache_capacity` entries with `cache_ttl`;
///    seen ids are kept `seen_ttl` (≥ `cache_ttl`) up to `seen_capacity` (≥ `cache_capacity`),
///    first received forgotten first, so every cached id is also a seen id and a payload is
///    not delivered twice while any node can still serve it from its cache. Ack timers are at
///    most `cache_capacity` (oldest dropped and counted).
///
/// A received broadcast with a payload larger than
/// [`max_payload_len`](DisseminationConfig::max_payload_len) is acknowledged and remembered
/// as seen but not delivered (this node could not forward it), counted in
/// `oversized_dropped`. No received message can panic the core; every drop is counted in
/// [`DisseminationStats`].
///
/// # Determinism
///
/// The rng is used for message ids and the first anti-entropy phase; every collection that
/// reaches an output is a `BTreeMap`, a `BTreeSet` or an LRU list walked in insertion order.
/// The same seed and the same inputs give the same outputs.
///
/// # Example
///
/// ```
/// use std::time::Instant;
/// use bytes::Bytes;
/// use gossip_core::NodeId;
/// use gossip_core::dissemination::{Destination, Dissemination, DisseminationConfig, Event};
/// use gossip_core::message::Message;
/// use rand::SeedableRng;
/// use rand::rngs::StdRng;
///
/// let now = Instant::now();
/// let (a_id, b_id) = (NodeId([1; 32]), NodeId([2; 32]));
/// let mut a = Dissemination::new(a_id, DisseminationConfig::default(), StdRng::seed_from_u64(1), now)?;
/// let mut b = Dissemination::new(b_id, DisseminationConfig::default(), StdRng::seed_from_u64(2), now)?;
///
/// let id = a.broadcast(now, Bytes::from_static(b"hello"))?;
/// assert!(matches!(a.poll_event(), Some(Event::Delivered(d)) if d.id == id && d.hop == 0));
/// let push = a.poll_transmit().unwrap();
/// assert!(matches!(push.destination, Destination::Random { count: 3, .. }));
///
/// // The shell sends `push.message` to the chosen peers; one of them is b.
/// b.handle_message(now, "10.0.0.1:7000".parse()?, a_id, push.message);
/// let ack = b.poll_transmit().unwrap();
/// assert!(matches!(ack.message, Message::PushAck { id: acked } if acked == id));
/// assert!(matches!(b.poll_event(), Some(Event::Delivered(d)) if d.hop == 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Dissemination<R: Rng> {
    local: NodeId,
    config: DisseminationConfig,
    rng: R,
    /// Payloads by id, LRU list in insertion order (entries are only peeked, never promoted).
    cache: LruCache<MessageId, CachedGossip>,
    /// Seen ids with their first-receipt time, LRU list in insertion order.
    seen: LruCache<MessageId, Instant>,
    pending_acks: BTreeMap<MessageId, PendingAck>,
    /// `(deadline, id)` of every entry of `pending_acks`, earliest first.
    ack_deadlines: BTreeSet<(Instant, MessageId)>,
    /// Requested ids and when they were requested.
    pending_pulls: BTreeMap<MessageId, Instant>,
    /// `(requested, id)` of every entry of `pending_pulls`, oldest first.
    pull_order: BTreeSet<(Instant, MessageId)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Next anti-entropy round; `None` when `anti_entropy_peers` is 0.
    next_anti_entropy: Option<Instant>,
    last_sweep: Instant,
    next_group: u64,
    stats: DisseminationStats,
}

impl<R: Rng> std::fmt::Debug for Dissemination<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dissemination")
            .field("local", &self.local)
            .field("occupancy", &self.occupancy())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<R: Rng> Dissemination<R> {
    // ----- construction -----

    /// A core for node `local`, started at `now`.
    ///
    /// Draws the phase of the first anti-entropy round (uniform in
    /// `0..=anti_entropy_interval` after `now`) from `rng`.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` fails [`DisseminationConfig::validate`]; nothing is built.
    pub fn new(
        local: NodeId,
        config: DisseminationConfig,
        mut rng: R,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let seen_capacity =
            NonZeroUsize::new(config.seen_capacity).ok_or(ConfigError::TooSmall {
                field: "seen_capacity",
                value: 0,
                min: 1,
            })?;
        let next_anti_entropy = if config.anti_entropy_peers == 0 {
            None
        } else {
            let max = u64::try_from(config.anti_entropy_interval.as_nanos()).unwrap_or(u64::MAX);
            now.checked_add(Duration::from_nanos(rng.random_range(0..=max)))
        };
        Ok(Dissemination {
            local,
            cache: LruCache::new(config.cache_capacity),
            seen: LruCache::new(seen_capacity),
            pending_acks: BTreeMap::new(),
            ack_deadlines: BTreeSet::new(),
            pending_pulls: BTreeMap::new(),
            pull_order: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_anti_entropy,
            last_sweep: now,
            next_group: 0,
            stats: DisseminationStats::default(),
            config,
            rng,
        })
    }

    // ----- getters -----

    /// The configuration this core was built with.
    pub fn config(&self) -> &DisseminationConfig {
        &self.config
    }

    /// The local node's id (the origin of its broadcasts).
    pub fn local_id(&self) -> NodeId {
        self.local
    }

    /// Counters since construction.
    pub fn stats(&self) -> DisseminationStats {
        self.stats
    }

    /// Current sizes of the bounded collections.
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            cached: self.cache.len(),
            seen: self.seen.len(),
            pending_acks: self.pending_acks.len(),
            pending_pulls: self.pending_pulls.len(),
            queued_transmits: self.transmits.len(),
            queued_events: self.events.len(),
        }
    }

    /// Whether `id` is remembered as seen (delivered, or otherwise known) at this node.
    pub fn has_seen(&self, id: &MessageId) -> bool {
        self.seen.contains(id) || self.cache.contains(id)
    }

    // ----- application commands -----

    /// Starts a broadcast of `payload` and returns its fresh random id.
    ///
    /// Queues [`Event::Delivered`] with hop 0 for the local application, caches the payload,
    /// queues a `PushMessage { hop: 0 }` to [`Destination::Random`] `{ count: fanout, exclude:
    /// [] }` and arms its ack timer (`ack_timeout` from `now`).
    ///
    /// # Errors
    /// [`BroadcastError::PayloadTooLarge`] when `payload.len()` exceeds
    /// [`DisseminationConfig::max_payload_len`] (1,261 bytes by default); the state did not
    /// change.
    pub fn broadcast(&mut self, now: Instant, payload: Bytes) -> Result<MessageId, BroadcastError> {
        let max = self.config.max_payload_len();
        if payload.len() > max {
            return Err(BroadcastError::PayloadTooLarge {
                len: payload.len(),
                max,
            });
        }
        let id = MessageId::random(&mut self.rng);
        self.stats.broadcasts += 1;
        self.accept(now, None, id, self.local, 0, payload);
        Ok(id)
    }

    // ----- inputs -----

    /// Input: `message`, received at `now` in a datagram from the UDP address `from`, sealed
    /// by node `sender` (the envelope's sender).
    ///
    /// Applies rules 1–6 of the [type doc](Self). Acks are counted per `from` address, as in
    /// go-gossip; `sender` is accepted so that the shell passes the whole envelope and is not
    /// otherwise used by this protocol. Any message, however malformed its contents (huge id
    /// lists, oversized payloads, repeated ids, our own broadcasts), is handled without panic
    /// and within the configured bounds.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        message: Message,
    ) {
        let _ = sender;
        match message {
            Message::PushMessage(gossip) => {
                if self.queue_transmit(Destination::Peer(from), Message::PushAck { id: gossip.id })
                {
                    self.stats.push_acks_sent += 1;
                }
                self.receive_gossip(now, from, gossip, Via::Push);
            }
            Message::PushAck { id } => self.handle_ack(from, id),
            Message::PullSync { ids } => self.handle_pull_sync(now, from, ids),
            Message::PullRequest { ids } => self.handle_pull_request(now, from, ids),
            Message::PullResponse(gossip) => self.receive_gossip(now, from, gossip, Via::Pull),
            // Another protocol's message: the shell routes by packet type, so this only
            // happens when a caller feeds the wrong core. Ignored and counted.
            _ => self.stats.foreign_messages += 1,
        }
    }

    /// Input: the timer armed at [`poll_timeout`](Self::poll_timeout) fired at `now`.
    ///
    /// Fires every ack timer due by `now` (rule 3), runs one anti-entropy round if it is due
    /// (rule 7; missed rounds are not caught up, the next is `anti_entropy_interval` after
    /// `now`), and sweeps expired entries if the last sweep is [`SWEEP_INTERVAL`] old.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.fire_ack_timers(now);
        if self.next_anti_entropy.is_some_and(|t| t <= now) {
            self.anti_entropy(now);
            self.next_anti_entropy = now.checked_add(self.config.anti_entropy_interval);
        }
        if self
            .last_sweep
            .checked_add(SWEEP_INTERVAL)
            .is_some_and(|t| t <= now)
        {
            self.sweep(now);
        }
    }

    // ----- outputs -----

    /// Output: the next message to send, oldest first; `None` when the queue is empty.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Output: the next event for the application, oldest first; `None` when the queue is
    /// empty.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Output: when to call [`handle_timeout`](Self::handle_timeout) next: the earliest of the
    /// pending ack deadlines, the next anti-entropy round and the next expiry sweep (only when
    /// something will expire, and not sooner than [`SWEEP_INTERVAL`] after the last one).
    /// `None` when nothing is scheduled. The instant may be in the past: fire at once.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ack = self.ack_deadlines.first().map(|(deadline, _)| *deadline);
        [ack, self.next_anti_entropy, self.next_sweep()]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- internals -----

    /// Queues a transmit unless the output queue is full; `true` if queued.
    fn queue_transmit(&mut self, destination: Destination, message: Message) -> bool {
        if self.transmits.len() + self.events.len() >= self.config.output_queue_capacity {
            self.stats.transmits_dropped += 1;
            return false;
        }
        self.transmits.push_back(Transmit {
            destination,
            message,
        });
        true
    }

    /// Queues an event unless the output queue is full.
    fn queue_event(&mut self, event: Event) {
        if self.transmits.len() + self.events.len() >= self.config.output_queue_capacity {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn mark_seen(&mut self, now: Instant, id: MessageId) {
        if let Some((evicted, _)) = self.seen.push(id, now)
            && evicted != id
        {
            self.stats.seen_evictions += 1;
        }
    }

    /// The cached entry of `id` if it is younger than `cache_ttl` at `now`.
    fn fresh_cached(&self, id: &MessageId, now: Instant) -> Option<&CachedGossip> {
        self.cache
            .peek(id)
            .filter(|c| now.saturating_duration_since(c.received) < self.config.cache_ttl)
    }

    /// A broadcast new to this node: deliver, cache, push to `fanout` peers, arm the ack timer.
    fn accept(
        &mut self,
        now: Instant,
        source: Option<SocketAddr>,
        id: MessageId,
        origin: NodeId,
        hop: u16,
        payload: Bytes,
    ) {
        self.mark_seen(now, id);
        let cached = CachedGossip {
            origin,
            hop,
            payload: payload.clone(),
            received: now,
        };
        if let Some((evicted, _)) = self.cache.push(id, cached)
            && evicted != id
        {
            self.stats.cache_evictions += 1;
        }
        self.stats.delivered += 1;
        self.queue_event(Event::Delivered(Delivery {
            id,
            origin,
            hop,
            payload: payload.clone(),
        }));
        let destination = Destination::Random {
            count: self.config.fanout,
            exclude: source.into_iter().collect(),
        };
        let push = Message::PushMessage(Gossip {
            id,
            origin,
            hop,
            payload,
        });
        if self.queue_transmit(destination, push) {
            self.stats.pushes_sent += 1;
            self.arm_ack_timer(now, id, source);
        }
    }

    fn arm_ack_timer(&mut self, now: Instant, id: MessageId, source: Option<SocketAddr>) {
        let Some(deadline) = now.checked_add(self.config.ack_timeout) else {
            return;
        };
        if let Some(old) = self.pending_acks.remove(&id) {
            self.ack_deadlines.remove(&(old.deadline, id));
        }
        while self.pending_acks.len() >= self.config.cache_capacity.get() {
            let Some((_, oldest)) = self.ack_deadlines.pop_first() else {
                break;
            };
            self.pending_acks.remove(&oldest);
            self.stats.ack_timers_dropped += 1;
        }
        self.pending_acks.insert(
            id,
            PendingAck {
                deadline,
                source,
                acked: Vec::new(),
            },
        );
        self.ack_deadlines.insert((deadline, id));
    }

    fn receive_gossip(&mut self, now: Instant, from: SocketAddr, gossip: Gossip, via: Via) {
        self.clear_pending_pull(&gossip.id);
        let seen = self.has_seen(&gossip.id);
        if gossip.payload.len() > self.config.max_payload_len() {
            self.stats.oversized_dropped += 1;
            if !seen {
                self.mark_seen(now, gossip.id);
            }
            return;
        }
        if seen || gossip.origin == self.local {
            self.stats.duplicates_suppressed += 1;
            if !seen {
                // Our own broadcast, forgotten: remember it again so it is not pulled.
                self.mark_seen(now, gossip.id);
            }
            return;
        }
        if via == Via::Pull {
            self.stats.pulls_recovered += 1;
        }
        self.accept(
            now,
            Some(from),
            gossip.id,
            gossip.origin,
            gossip.hop.saturating_add(1),
            gossip.payload,
        );
    }

    fn handle_ack(&mut self, from: SocketAddr, id: MessageId) {
        self.stats.acks_received += 1;
        let Some(pending) = self.pending_acks.get_mut(&id) else {
            self.stats.stray_acks += 1;
            return;
        };
        if pending.acked.contains(&from) {
            self.stats.duplicate_acks += 1;
            return;
        }
        pending.acked.push(from);
        if pending.acked.len() >= self.config.acks_needed {
            let deadline = pending.deadline;
            self.pending_acks.remove(&id);
            self.ack_deadlines.remove(&(deadline, id));
            self.stats.ack_majorities += 1;
        }
    }

    /// Caps a received id list at `ids_per_message`, counting the rest.
    fn truncate_ids(&mut self, mut ids: Vec<MessageId>) -> Vec<MessageId> {
        let limit = self.config.ids_per_message();
        if ids.len() > limit {
            self.stats.ids_truncated += (ids.len() - limit) as u64;
            ids.truncate(limit);
        }
        ids
    }

    fn handle_pull_sync(&mut self, now: Instant, from: SocketAddr, ids: Vec<MessageId>) {
        self.stats.pull_syncs_received += 1;
        let ids = self.truncate_ids(ids);
        let mut missing = Vec::new();
        for id in ids {
            if self.has_seen(&id) {
                continue;
            }
            if let Some(&requested) = self.pending_pulls.get(&id) {
                if now.saturating_duration_since(requested) < self.config.pull_retry {
                    continue;
                }
                self.clear_pending_pull(&id);
            }
            if self.pending_pulls.len() >= self.config.pending_pull_capacity
                && !self.drop_stale_pull(now)
            {
                self.stats.pending_pull_full_drops += 1;
                continue;
            }
            self.pending_pulls.insert(id, now);
            self.pull_order.insert((now, id));
            missing.push(id);
        }
        if !missing.is_empty()
            && self.queue_transmit(
                Destination::Peer(from),
                Message::PullRequest { ids: missing },
            )
        {
            self.stats.pull_requests_sent += 1;
        }
    }

    fn clear_pending_pull(&mut self, id: &MessageId) {
        if let Some(requested) = self.pending_pulls.remove(id) {
            self.pull_order.remove(&(requested, *id));
        }
    }

    /// Frees the oldest pending pull if it is older than `pull_retry`; `true` if one was freed.
    fn drop_stale_pull(&mut self, now: Instant) -> bool {
        match self.pull_order.first() {
            Some(&(requested, id))
                if now.saturating_duration_since(requested) >= self.config.pull_retry =>
            {
                self.pull_order.remove(&(requested, id));
                self.pending_pulls.remove(&id);
                true
            }
            _ => false,
        }
    }

    fn handle_pull_request(&mut self, now: Instant, from: SocketAddr, ids: Vec<MessageId>) {
        self.stats.pull_requests_received += 1;
        let ids = self.truncate_ids(ids);
        let mut answered = BTreeSet::new();
        for id in ids {
            if !answered.insert(id) {
                continue;
            }
            let Some(cached) = self.fresh_cached(&id, now) else {
                self.stats.pull_misses += 1;
                continue;
            };
            let response = Message::PullResponse(Gossip {
                id,
                origin: cached.origin,
                hop: cached.hop,
                payload: cached.payload.clone(),
            });
            if self.queue_transmit(Destination::Peer(from), response) {
                self.stats.pull_responses_sent += 1;
            }
        }
    }

    fn fire_ack_timers(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.ack_deadlines.first() {
            if deadline > now {
                break;
            }
            self.ack_deadlines.pop_first();
            let Some(pending) = self.pending_acks.remove(&id) else {
                continue;
            };
            self.stats.ack_timeouts += 1;
            if self.fresh_cached(&id, now).is_none() {
                continue;
            }
            let mut exclude = pending.acked;
            exclude.extend(pending.source);
            exclude.sort();
            exclude.dedup();
            let destination = Destination::Random {
                count: self.config.pull_sync_peers,
                exclude,
            };
            if self.queue_transmit(destination, Message::PullSync { ids: vec![id] }) {
                self.stats.pull_syncs_sent += 1;
            }
        }
    }

    fn anti_entropy(&mut self, now: Instant) {
        let window = self.config.anti_entropy_window.min(self.config.cache_ttl);
        // The LRU list runs from the most recently inserted entry: most recent first.
        let ids: Vec<MessageId> = self
            .cache
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.received) <= window)
            .filter(|(_, c)| now.saturating_duration_since(c.received) < self.config.cache_ttl)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        self.stats.anti_entropy_rounds += 1;
        let group = self.next_group;
        self.next_group = self.next_group.wrapping_add(1);
        for chunk in ids.chunks(self.config.ids_per_message().max(1)) {
            let destination = Destination::RandomGroup {
                group,
                count: self.config.anti_entropy_peers,
                exclude: Vec::new(),
            };
            let sync = Message::PullSync {
                ids: chunk.to_vec(),
            };
            if self.queue_transmit(destination, sync) {
                self.stats.pull_syncs_sent += 1;
            }
        }
    }

    /// When the next sweep is worth running: the earliest expiry, not before
    /// `last_sweep + SWEEP_INTERVAL`; `None` if nothing can expire.
    fn next_sweep(&self) -> Option<Instant> {
        let cache = self
            .cache
            .peek_lru()
            .and_then(|(_, c)| c.received.checked_add(self.config.cache_ttl));
        let seen = self
            .seen
            .peek_lru()
            .and_then(|(_, at)| at.checked_add(self.config.seen_ttl));
        let pull = self
            .pull_order
            .first()
            .and_then(|(at, _)| at.checked_add(self.config.pull_retry));
        let earliest = [cache, seen, pull].into_iter().flatten().min()?;
        let not_before = self.last_sweep.checked_add(SWEEP_INTERVAL)?;
        Some(earliest.max(not_before))
    }

    /// Drops expired cache entries, seen ids and pending pulls. Each list is in insertion
    /// order, so this pops from the old end until it meets a live entry.
    fn sweep(&mut self, now: Instant) {
        while let Some((_, cached)) = self.cache.peek_lru() {
            if now.saturating_duration_since(cached.received) < self.config.cache_ttl {
                break;
            }
            self.cache.pop_lru();
            self.stats.cache_expirations += 1;
        }
        while let Some((_, &at)) = self.seen.peek_lru() {
            if now.saturating_duration_since(at) < self.config.seen_ttl {
                break;
            }
            self.seen.pop_lru();
            self.stats.seen_expirations += 1;
        }
        while self.drop_stale_pull(now) {}
        self.last_sweep = now;
    }
}
