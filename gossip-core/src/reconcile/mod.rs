//! Scuttlebutt reconciliation of per-node key/value state (van Renesse, Dumitriu, Gough and
//! Thomas, "Efficient Reconciliation and Flow Control for Anti-Entropy Protocols", LADIS 2008;
//! the gossipmonger endpoint), as a sans-IO state machine, with paged digests for large
//! clusters and AIMD flow control of local updates ([`crate::flow`]).
//!
//! # Model
//!
//! Every node *owns* a map `key → (value, version)`; only the owner writes it. Each write
//! (a set or a delete) takes the owner's next version, one counter per owner for all its keys,
//! so "which state of owner X do I hold" is a single number, the highest version held
//! completely (gossipmonger's `maxVersionSeen`). Besides its keys an owner publishes a
//! *generation* (chosen at start, higher after every restart), a *heartbeat* (incremented
//! every gossip interval) and its address. Every node replicates every owner's map.
//!
//! A *digest* lists, per known node, `(node, generation, heartbeat, max version, gc
//! version)`. The *deltas* for a peer are, per owner, the entries newer than the peer's digest
//! entry. One exchange is the paper's three steps, after which both sides hold the newer state
//! of every node they compared:
//!
//! ```text
//!  initiator                                             peer
//!     |--- Digest: page of my digest + rumours + my rate --->|  re-split rates,
//!     |                                                      |  compare
//!     |<-- Reply: deltas you lack + my entries where you ----|
//!     |           are ahead + your new rate                  |
//!     |--- Deltas: deltas you asked for -------------------->|
//! ```
//!
//! # Fitting datagrams
//!
//! Deltas are fitted into one datagram (scuttle-depth by default, see [`DeltaOrder`]): each
//! owner's entries go out in ascending version order and only as a prefix, so the receiver
//! never has a gap and simply holds "everything up to the last version received". A digest of
//! thousands of nodes does not fit 1,400 bytes (chitchat's failure past a few hundred nodes),
//! so a [`Digest`] carries a *page*: the entries of a contiguous range of the node-id ring,
//! complete for that range, rotating round by round; a node the peer knows inside the range
//! but the initiator did not list is unknown to the initiator and is sent whole. Digest
//! entries name nodes by an 8-byte id prefix ([`NodePrefix`]), 12–16 bytes an entry, so a
//! 1,400-byte datagram lists about 90 nodes (against 30 with whole ids). Pages alone would make a fresh update wait until a page covers
//! it, so a digest also carries *rumours*: the nodes whose state changed most recently at the
//! initiator, newest first, each advertised until `rumor_counter` peers already had it
//! (Demers et al.'s rumour mongering with feedback and counter) or for at most
//! ⌈log₂ n + ln n⌉ + `rumor_counter` rounds (push gossip reaches n nodes in about
//! log₂ n + ln n rounds, Pittel 1987). Rumours spread news in O(log n) rounds; pages guarantee
//! that everything is eventually compared.
//!
//! # Measured
//!
//! On the virtual-clock simulator of this module's tests (1 s rounds, 1–20 ms latency,
//! 1,364-byte envelopes, every node starting with only three seed addresses, 8 seeds each):
//!
//! | nodes | cold start to full convergence | one fresh update reaches all |
//! |---|---|---|
//! | 50 (3 keys each) | 5–7 rounds (11–15 with 20 % loss) | 3–5 rounds |
//! | 500 (1 key each) | 31–35 rounds | 9–14 rounds |
//! | 1,000 (1 key each) | 68 rounds | 18 rounds |
//! | 2,000 (1 key each) | 171 rounds | 27 rounds |
//!
//! At 2,000 nodes each node sends about 3 datagrams and 3.2 KB per round. The first 90 % of
//! a cold start arrives at the bandwidth of one reply and one deltas datagram per node and
//! round (about 24 node states); the rest is found by pages and rumours. Two halves of a
//! 50-node cluster that each wrote during a two-minute partition converge 1–3 rounds after
//! it heals (the failure detectors marked the other half dead, and dead peers are probed).
//!
//! # Deletes, resets, restarts, forgetting
//!
//! A delete writes a tombstone, gossiped like a value and garbage-collected
//! `tombstone_grace` after a node learned it; the highest collected version is the owner's
//! *gc version*. A peer whose copy is older than a collected tombstone could still hold the
//! deleted value, so it gets a *reset* instead of deltas: it keeps its old values readable,
//! rebuilds the owner's state from version 0, and drops whatever the rebuilt state lacks once
//! it is complete; it never gossips the old values, so they cannot come back. A delta with a
//! higher generation replaces all state of that node (a restart). A node that persisted its
//! own live entries (the actors keep them in the store, durable before a write is
//! acknowledged) restarts in a higher generation and replays them with
//! [`Reconcile::restore`]: its peers then hold exactly its acknowledged values, and a key it
//! deleted is absent from the new generation, so nothing resurrects. Keeping the old
//! generation instead would need the heartbeat, versions, tombstones and gc version to be
//! persisted in step with every write, and still could not tell peers to drop versions that
//! were gossiped but never made durable. A node reported dead whose
//! heartbeat has not advanced for `dead_node_grace` is forgotten, and remembered as forgotten
//! as long again.
//!
//! The rules in full are on [`Reconcile`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::config::ConfigError;
use crate::flow::{Backpressure, FlowControl};
use crate::id::NodeId;

mod config;
mod state;
pub mod wire;

#[cfg(test)]
mod tests;

pub use config::{DeltaOrder, MIN_ENVELOPE_LEN, ReconcileConfig};
pub use wire::{
    DeltaEntry, Deltas, Digest, DigestEntry, ENVELOPE_OVERHEAD, NodeDelta, NodePrefix, Reply,
};

use state::{Entry, IndexedSet, NodeState};

/// Entries of a received digest (page and extra together) or of a reply's digest that are
/// looked at; the rest are ignored and counted (`digest_entries_ignored`). A 1,400-byte
/// datagram carries at most 37 entries; this leaves room for peers with 64 KB datagrams.
pub const DIGEST_ENTRY_LIMIT: usize = 2_048;

/// Nodes of a digest's range unknown to the initiator that a responder collects (it stops
/// scanning the range there). More than fit a reply; the depth order then picks among them.
pub const UNKNOWN_SCAN_LIMIT: usize = 64;

/// One of the three Scuttlebutt messages; the shell maps them to `Message::StateDigest`,
/// `StateReply` and `StateDeltas` (packet types 16, 17, 18).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateMessage {
    /// Step 1, initiator → peer.
    Digest(Digest),
    /// Step 2, peer → initiator.
    Reply(Reply),
    /// Step 3, initiator → peer.
    Deltas(Deltas),
}

impl StateMessage {
    /// Exact encoded size of the message body, in bytes; the envelope adds
    /// [`ENVELOPE_OVERHEAD`].
    pub fn encoded_len_bound(&self) -> usize {
        match self {
            StateMessage::Digest(m) => m.encoded_len_bound(),
            StateMessage::Reply(m) => m.encoded_len_bound(),
            StateMessage::Deltas(m) => m.encoded_len_bound(),
        }
    }
}

/// Bytes an entry counts beyond its key and value for [`ReconcileConfig::max_state_bytes`]:
/// its version, expiry, the `String` and `Bytes` headers and the vector slot (about 96 bytes
/// on 64-bit targets), rounded up.
pub const ENTRY_OVERHEAD: usize = 128;

/// Most seed addresses a [`Reconcile`] holds (constructor and [`Reconcile::add_seed`]).
pub const MAX_SEEDS: usize = 256;

/// A message to send, produced by [`Reconcile::poll_transmit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateTransmit {
    /// The peer's address: a known node's advertised address or a seed for a digest, the
    /// source address of the datagram answered for a reply or deltas.
    pub to: SocketAddr,
    /// What to send. Its [`StateMessage::encoded_len_bound`] plus [`ENVELOPE_OVERHEAD`] is at
    /// most [`ReconcileConfig::max_envelope_len`].
    pub message: StateMessage,
}

/// Something to tell the application and the failure detector, produced by
/// [`Reconcile::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateEvent {
    /// A node was learned (first time, or again after it was forgotten). It starts live.
    NewNode {
        /// The node.
        node: NodeId,
        /// Its advertised address.
        addr: SocketAddr,
        /// Its generation.
        generation: u64,
    },
    /// A remote key changed: a new value, or deleted (`value: None`). Local writes produce no
    /// event. A tombstone for a key that was not visible produces none either.
    Update {
        /// The owner.
        node: NodeId,
        /// The key.
        key: String,
        /// The new value, `None` if deleted.
        value: Option<Bytes>,
        /// The owner's version of this write (0 when a reset removed the key).
        version: u64,
    },
    /// A remote node's heartbeat advanced: proof that it was alive recently, even if it is
    /// far away. The failure detector counts it as an arrival of that node.
    HeartbeatAdvanced {
        /// The node.
        node: NodeId,
        /// Its new heartbeat.
        heartbeat: u64,
    },
    /// A node restarted with a higher generation: all its previous state was dropped (no
    /// per-key `Update` is emitted for it). Also an arrival for the failure detector.
    NodeRestarted {
        /// The node.
        node: NodeId,
        /// Its new generation.
        generation: u64,
        /// Its advertised address.
        addr: SocketAddr,
    },
    /// A node dead for `dead_node_grace` was forgotten with its state.
    NodeForgotten {
        /// The node.
        node: NodeId,
    },
}

/// Why a local `set` or `delete` was refused. In every case the state did not change and no
/// version was taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The key is longer than [`ReconcileConfig::max_key_len`].
    #[error("key of {len} bytes exceeds the maximum of {max} bytes")]
    KeyTooLong {
        /// The key's length, in bytes.
        len: usize,
        /// The longest accepted key, in bytes.
        max: usize,
    },
    /// The value is larger than [`ReconcileConfig::max_value_len`] (a single key/value must
    /// fit one datagram).
    #[error("value of {len} bytes exceeds the maximum of {max} bytes")]
    ValueTooLarge {
        /// The value's length, in bytes.
        len: usize,
        /// The largest accepted value, in bytes.
        max: usize,
    },
    /// The key is new and the local node already holds
    /// [`ReconcileConfig::max_keys_per_owner`] keys (tombstones count until collected).
    #[error("already {max} keys (tombstones included); no new key accepted")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },
    /// The update is above the current rate ([`crate::flow`]): retry after `retry_after`
    /// (a waiting `set`) or report it (`try_set`).
    #[error(transparent)]
    Backpressure(#[from] Backpressure),
}

/// A live value of a node, in a [`NodeStateView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryView {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// The owner's version of the write.
    pub version: u64,
}

/// A snapshot of what this node holds of one node, from [`Reconcile::node_state`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStateView {
    /// The node.
    pub node: NodeId,
    /// Its generation.
    pub generation: u64,
    /// Its heartbeat as held here.
    pub heartbeat: u64,
    /// The highest version held completely.
    pub max_version: u64,
    /// Tombstones at or below this version have been collected (see [`DigestEntry`]).
    pub gc_version: u64,
    /// Its advertised address.
    pub addr: SocketAddr,
    /// Live as far as the failure detector told (always `true` for the local node).
    pub live: bool,
    /// Live values (no tombstones), sorted by key. While the state is rebuilt after a reset it
    /// includes old values not replaced yet.
    pub entries: Vec<EntryView>,
}

/// Counters of a [`Reconcile`], running totals since construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileStats {
    /// Gossip rounds run.
    pub rounds: u64,
    /// Seeds not added by [`Reconcile::add_seed`] because [`MAX_SEEDS`] are held.
    pub seeds_refused: u64,
    /// Rounds in which no peer and no seed was available.
    pub idle_rounds: u64,
    /// Digests sent to a seed (fewer than `minimum_live_peers` live, or Cassandra's random
    /// seed gossip).
    pub seed_gossips: u64,
    /// Digests sent to a dead peer (probability dead / (live + 1)).
    pub dead_gossips: u64,
    /// Digest messages sent.
    pub digests_sent: u64,
    /// Reply messages sent.
    pub replies_sent: u64,
    /// Deltas messages sent.
    pub deltas_sent: u64,
    /// Digest messages received.
    pub digests_received: u64,
    /// Reply messages received.
    pub replies_received: u64,
    /// Deltas messages received.
    pub deltas_received: u64,
    /// Replies from an address with no exchange awaiting one (late, or unsolicited); their
    /// deltas are applied, their rate assignment ignored.
    pub unsolicited_replies: u64,
    /// Exchanges given up after `exchange_timeout` without a reply.
    pub exchanges_timed_out: u64,
    /// Exchanges given up because `max_outstanding_exchanges` were awaiting replies.
    pub exchanges_evicted: u64,
    /// Messages whose envelope sender is the local node, ignored.
    pub own_messages_ignored: u64,
    /// Local writes (`set` and `delete`) applied.
    pub local_updates: u64,
    /// Node deltas received (one per owner per message).
    pub node_deltas_received: u64,
    /// Entries applied from received deltas.
    pub entries_applied: u64,
    /// Entries sent in deltas.
    pub entries_sent: u64,
    /// Entries a peer lacked that did not fit the datagram (the flow-control overflow).
    pub entries_left_out: u64,
    /// Resets sent (the peer was older than a collected tombstone).
    pub resets_sent: u64,
    /// Resets received and applied.
    pub resets_received: u64,
    /// Nodes seen with a higher generation (restarted).
    pub restarts_seen: u64,
    /// Nodes learned (new, or again after being forgotten).
    pub nodes_learned: u64,
    /// Nodes not learned because `max_nodes` were known.
    pub nodes_refused: u64,
    /// Received keys refused because the owner already had `max_keys_per_owner` keys here.
    pub keys_refused: u64,
    /// Received entries refused because other nodes' state held here had reached
    /// `max_state_bytes`.
    pub bytes_refused: u64,
    /// Received entries with a key or value above the configured maximum, refused.
    pub oversized_entries: u64,
    /// Node deltas whose `from_version` was above the version held: entries ignored (the
    /// header still counted).
    pub gap_deltas: u64,
    /// Node deltas that broke the format (unsorted or out-of-range versions, a reset not from
    /// 0), ignored whole.
    pub malformed_deltas: u64,
    /// Node deltas about the local node, ignored (only the owner writes its state).
    pub own_state_ignored: u64,
    /// Node deltas of an older generation than held, ignored.
    pub old_generation_ignored: u64,
    /// Node deltas of a forgotten node no newer than when it was forgotten, ignored.
    pub forgotten_ignored: u64,
    /// Digest entries past [`DIGEST_ENTRY_LIMIT`], ignored.
    pub digest_entries_ignored: u64,
    /// Digest entries whose id prefix matches several known nodes, ignored (see
    /// [`NodePrefix`]).
    pub ambiguous_entries: u64,
    /// Tombstones garbage-collected.
    pub tombstones_collected: u64,
    /// Old keys dropped when a rebuild after a reset completed without them.
    pub stale_keys_dropped: u64,
    /// Dead nodes forgotten.
    pub nodes_forgotten: u64,
    /// `handle_peer_dead` / `handle_peer_live` for a node not known (or the local node).
    pub liveness_ignored: u64,
    /// Transmits dropped because `output_queue_capacity` outputs were queued.
    pub transmits_dropped: u64,
    /// Events dropped because `output_queue_capacity` outputs were queued.
    pub events_dropped: u64,
}

/// Current sizes of a [`Reconcile`]'s collections, each within the bound named in its doc.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileOccupancy {
    /// Known nodes, the local one included (≤ `max_nodes`).
    pub nodes: usize,
    /// Of them, reported dead.
    pub dead: usize,
    /// Forgotten nodes remembered (≤ `max_nodes`).
    pub forgotten: usize,
    /// Nodes advertised as rumours (≤ `max_nodes`).
    pub rumors: usize,
    /// Entries of the largest owner, tombstones and the old entries kept during a rebuild
    /// included (≤ 2 × `max_keys_per_owner` while rebuilding, else ≤ `max_keys_per_owner`).
    pub largest_owner: usize,
    /// Tombstones awaiting collection.
    pub tombstones: usize,
    /// Bytes of other nodes' state held (≤ `max_state_bytes`; see its doc for what counts).
    pub state_bytes: usize,
    /// Exchanges awaiting a reply (≤ `max_outstanding_exchanges`).
    pub outstanding: usize,
    /// Queued transmits; with `queued_events` ≤ `output_queue_capacity`.
    pub queued_transmits: usize,
    /// Queued events; with `queued_transmits` ≤ `output_queue_capacity`.
    pub queued_events: usize,
}

/// A node forgotten after it was dead for `dead_node_grace`.
#[derive(Clone, Copy, Debug)]
struct Forgotten {
    generation: u64,
    heartbeat: u64,
    at: Instant,
}

/// A node whose state changed recently here, advertised in digests.
#[derive(Clone, Copy, Debug)]
struct Rumor {
    /// Order of marking: newest rumours are advertised first.
    seq: u64,
    /// Exchanges in which the peer already had it (or did not answer).
    count: u32,
    /// The round in which it was marked.
    round: u64,
}

/// A digest sent and not answered yet.
#[derive(Clone, Debug)]
struct Outstanding {
    sent_at: Instant,
    /// Rumours advertised in it, for the feedback.
    rumors: Vec<NodeId>,
}

/// An owner whose deltas a peer wants.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    node: NodeId,
    /// Send entries with versions above this one.
    from: u64,
    /// Send as a reset (from 0, same generation).
    reset: bool,
    /// The peer does not hold this node (or not this generation): sent first.
    unknown: bool,
    /// Entries the peer lacks.
    pending: usize,
}

/// An owner this node wants (step 2 digest entry), with its priority.
#[derive(Clone, Copy, Debug)]
struct Want {
    entry: DigestEntry,
    /// 0: unknown node or generation, 1: versions behind, 2: only the heartbeat behind.
    class: u8,
    /// Versions behind (for class 0, the peer's max version).
    behind: u64,
}

/// Scuttlebutt reconciliation of per-node key/value state with paged digests, rumours,
/// tombstones, resets and AIMD flow control, as a sans-IO state machine.
///
/// # Call order
///
/// Like quinn's `Connection`, the core never does IO, never reads a clock and draws randomness
/// only from its own `R`:
///
/// 1. **Construction**: [`new`](Self::new) with the local id, address and generation (MUST
///    be higher than any generation this node id used before, for example a start timestamp),
///    the seed addresses, a validated config, a seeded rng and the current time.
/// 2. **Application commands**: [`set`](Self::set), [`delete`](Self::delete); getters
///    [`get`](Self::get), [`node_state`](Self::node_state), [`nodes`](Self::nodes),
///    [`digest_entry`](Self::digest_entry), [`stats`](Self::stats),
///    [`occupancy`](Self::occupancy), [`flow`](Self::flow).
/// 3. **Inputs**: [`handle_message`](Self::handle_message) for every authenticated datagram
///    of a state type; [`handle_peer_dead`](Self::handle_peer_dead) /
///    [`handle_peer_live`](Self::handle_peer_live) from the failure detector;
///    [`handle_timeout`](Self::handle_timeout) when the timer fires.
/// 4. **Outputs**: after *every* command or input, drain
///    [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event) until
///    `None`, then re-arm the one timer at [`poll_timeout`](Self::poll_timeout). Early or late
///    `handle_timeout` calls are harmless: a round runs only when due, and missed rounds are
///    not caught up.
///
/// Outputs beyond `output_queue_capacity` are dropped and counted.
///
/// A `set` or `delete` refused with [`StateError::Backpressure`] changed nothing. The node's
/// `try_set` reports the refusal; its waiting `set` puts the request in a bounded FIFO queue
/// (refusing with the same error when the queue is full) and calls again after
/// `retry_after`. While requests wait, later ones of the same node must wait behind them
/// (also those of `try_set`, which then refuses), or a queued old value could overwrite a
/// newer one.
///
/// # Protocol
///
/// 1. **Round** (every `gossip_interval`, first at a random phase): increment the local
///    heartbeat; collect tombstones older than `tombstone_grace` (raising the owner's gc
///    version); forget nodes dead with no heartbeat advance for `dead_node_grace`; give up
///    exchanges older than `exchange_timeout`. Then send a digest to one uniformly random live
///    peer; with probability dead / (live + 1) to one random dead peer too (gossipmonger,
///    Cassandra); and when fewer than `minimum_live_peers` are live, to a random seed
///    (gossipmonger). Otherwise, unless the live peer was a seed, also to a random seed with
///    probability seeds / (live + dead) (Cassandra's `maybeGossipToSeed`): without it, nodes
///    that each found one live peer through different seeds can stay in separate groups
///    forever.
///    Liveness comes only from the failure detector: a node is live from when it is learned
///    until [`handle_peer_dead`](Self::handle_peer_dead). The shell's failure detector MUST
///    start watching a node at [`StateEvent::NewNode`] so that one that is never heard from
///    is eventually reported dead.
/// 2. **Digest** (step 1): the local node's and the peer's entries, the newest rumours
///    within `rumor_share` of the datagram, and as much of the rotating page as fits (see
///    [`Digest`]); the next page starts where this one ended. The initiator's rate and
///    desired rate ride along.
/// 3. **Reply** (step 2): the responder re-splits the two rates ([`FlowControl::split`]),
///    compares every listed entry with its own (a higher generation wins; then the higher
///    max version; then the higher heartbeat) and adds the nodes of the page's range that the
///    initiator did not list. Deltas the initiator lacks fill the datagram in
///    [`DeltaOrder`]; the responder's own entries where the initiator is ahead (unknown nodes
///    first, then the most versions behind, then heartbeats) fill up to
///    `reply_digest_share` of it, or more if deltas leave room, always leaving room for one
///    delta of the largest entry.
/// 4. **Deltas** (step 3): the initiator applies the reply and answers the responder's
///    entries with the deltas it asked for, filling a whole datagram.
/// 5. **Applying a node delta**: ignored if about the local node, of an older generation, of
///    a node forgotten with a heartbeat at least as new, or malformed. A new node is learned
///    (up to `max_nodes`); a higher generation replaces the node's state; a higher heartbeat
///    is taken. A reset moves the held entries aside (still readable) and rebuilds from 0.
///    Otherwise entries are taken only if `from_version` ≤ the held max version (no gap);
///    each entry above it replaces the key's entry, the max version advances to
///    `to_version`, and a `complete` delta ends a rebuild, dropping old keys it did not bring.
///    An entry too large, or a new key beyond `max_keys_per_owner`, stops the delta there
///    (the max version stays just below it, so nothing is skipped).
/// 6. **Reset rule**: an owner's deltas for a peer whose digest entry has the same
///    generation, a max version below the owner's gc version here, and a gc version below it
///    too, are sent as a reset from 0.
/// 7. **Rumours**: a remote node whose state advanced here (new node, restart, new
///    versions) is a rumour with counter 0 (the local node is in every digest anyway); each
///    digest advertising it to a peer that did not ask for it in its reply, or did not reply,
///    adds 1; at `rumor_counter`, or ⌈log₂ n + ln n⌉ + `rumor_counter` rounds after it was
///    marked, it stops.
/// 8. **Flow control** ([`crate::flow`]): each `set`/`delete` takes a token of the current
///    rate; each reply or deltas message built reports pending and sent entries to the AIMD
///    rule; rates are re-split pairwise on every exchange.
///
/// No received message can panic the core; every drop is counted in [`ReconcileStats`].
///
/// # Determinism
///
/// Randomness (first round phase, targets, tie-breaks, the page cursor's start) comes from
/// `R`; every collection reaching an output is a `BTreeMap`, a sorted
/// vector or a vector whose order depends only on the inputs. The same seed and inputs give
/// the same outputs.
///
/// # Example
///
/// ```
/// use std::time::Instant;
/// use bytes::Bytes;
/// use gossip_core::NodeId;
/// use gossip_core::reconcile::{Reconcile, ReconcileConfig, StateEvent};
/// use rand::SeedableRng;
/// use rand::rngs::StdRng;
///
/// let now = Instant::now();
/// let (a_addr, b_addr) = ("10.0.0.1:7000".parse()?, "10.0.0.2:7000".parse()?);
/// let (a_id, b_id) = (NodeId([1; 32]), NodeId([2; 32]));
/// let config = ReconcileConfig::default();
/// let mut a = Reconcile::new(a_id, a_addr, 1, vec![], config.clone(), StdRng::seed_from_u64(1), now)?;
/// let mut b = Reconcile::new(b_id, b_addr, 1, vec![a_addr], config, StdRng::seed_from_u64(2), now)?;
/// a.set(now, "load", Bytes::from_static(b"0.7"))?;
///
/// // b knows only the seed a: its first round gossips with it.
/// let later = b.poll_timeout().unwrap();
/// b.handle_timeout(later);
/// let digest = b.poll_transmit().unwrap();
/// assert_eq!(digest.to, a_addr);
/// a.handle_message(later, b_addr, b_id, digest.message);
/// let reply = a.poll_transmit().unwrap();
/// b.handle_message(later, a_addr, a_id, reply.message);
/// assert_eq!(b.get(&a_id, "load"), Some((Bytes::from_static(b"0.7"), 1)));
/// assert!(matches!(b.poll_event(), Some(StateEvent::NewNode { node, .. }) if node == a_id));
///
/// // Step 3 tells a about b.
/// let deltas = b.poll_transmit().unwrap();
/// a.handle_message(later, b_addr, b_id, deltas.message);
/// assert!(a.node_state(&b_id).is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Reconcile<R: Rng> {
    local: NodeId,
    local_addr: SocketAddr,
    config: ReconcileConfig,
    rng: R,
    seeds: Vec<SocketAddr>,
    /// Every known node, the local one included.
    nodes: BTreeMap<NodeId, NodeState>,
    forgotten: BTreeMap<NodeId, Forgotten>,
    /// `(forgotten at, node)` of every entry of `forgotten`.
    forgotten_order: BTreeSet<(Instant, NodeId)>,
    live: IndexedSet<()>,
    dead: IndexedSet<()>,
    /// Rumours: recently changed nodes with their feedback counter.
    rumors: BTreeMap<NodeId, Rumor>,
    /// `(seq, node)` of every rumour, oldest first.
    rumor_order: BTreeSet<(u64, NodeId)>,
    rumor_seq: u64,
    /// `(expires, owner, key)` of every tombstone held in `entries`.
    gc_queue: BTreeSet<(Instant, NodeId, String)>,
    /// Where the next digest page starts on the id ring.
    cursor: NodeId,
    outstanding: BTreeMap<SocketAddr, Outstanding>,
    /// Sum of `NodeState::bytes` over the other nodes.
    state_bytes: usize,
    next_round: Instant,
    flow: FlowControl,
    transmits: VecDeque<StateTransmit>,
    events: VecDeque<StateEvent>,
    stats: ReconcileStats,
}

impl<R: Rng> std::fmt::Debug for Reconcile<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconcile")
            .field("local", &self.local)
            .field("occupancy", &self.occupancy())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<R: Rng> Reconcile<R> {
    // ----- construction -----

    /// A core for node `local` at `local_addr` with `generation`, started at `now`, knowing
    /// only itself and the `seeds` (deduplicated; `local_addr` removed).
    ///
    /// Draws the first round's phase (uniform in `0..=gossip_interval` after `now`) and the
    /// page cursor from `rng`.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` fails [`ReconcileConfig::validate`]; nothing is built.
    pub fn new(
        local: NodeId,
        local_addr: SocketAddr,
        generation: u64,
        mut seeds: Vec<SocketAddr>,
        config: ReconcileConfig,
        mut rng: R,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let flow = FlowControl::new(config.flow.clone(), now)?;
        seeds.sort();
        seeds.dedup();
        seeds.retain(|s| *s != local_addr);
        seeds.truncate(MAX_SEEDS);
        let mut nodes = BTreeMap::new();
        nodes.insert(local, NodeState::new(generation, 0, local_addr, now));
        let max = u64::try_from(config.gossip_interval.as_nanos()).unwrap_or(u64::MAX);
        let next_round = now
            .checked_add(Duration::from_nanos(rng.random_range(0..=max)))
            .unwrap_or(now);
        let cursor = NodeId::random(&mut rng);
        Ok(Reconcile {
            local,
            local_addr,
            rng,
            seeds,
            nodes,
            forgotten: BTreeMap::new(),
            forgotten_order: BTreeSet::new(),
            live: IndexedSet::default(),
            dead: IndexedSet::default(),
            rumors: BTreeMap::new(),
            rumor_order: BTreeSet::new(),
            rumor_seq: 0,
            gc_queue: BTreeSet::new(),
            cursor,
            outstanding: BTreeMap::new(),
            state_bytes: 0,
            next_round,
            flow,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ReconcileStats::default(),
            config,
        })
    }

    // ----- getters -----

    /// The configuration.
    pub fn config(&self) -> &ReconcileConfig {
        &self.config
    }

    /// The local node's id.
    pub fn local_id(&self) -> NodeId {
        self.local
    }

    /// The local node's advertised address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The seed addresses (sorted, without the local address).
    pub fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// Application command: adds `addr` as a seed (for example a peer named by the operator, or
    /// the source of an authenticated packet from a node this core does not know yet). Returns
    /// `true` if it was added; the local address, a known seed, or a seed beyond [`MAX_SEEDS`]
    /// is not (the last is counted in [`ReconcileStats::seeds_refused`]).
    pub fn add_seed(&mut self, addr: SocketAddr) -> bool {
        if addr == self.local_addr {
            return false;
        }
        match self.seeds.binary_search(&addr) {
            Ok(_) => false,
            Err(_) if self.seeds.len() >= MAX_SEEDS => {
                self.stats.seeds_refused += 1;
                false
            }
            Err(at) => {
                self.seeds.insert(at, addr);
                true
            }
        }
    }

    /// Counters since construction.
    pub fn stats(&self) -> ReconcileStats {
        self.stats
    }

    /// The flow controller: current rate ([`FlowControl::rate`]), desired rate, its stats.
    pub fn flow(&self) -> &FlowControl {
        &self.flow
    }

    /// Current sizes of the bounded collections.
    pub fn occupancy(&self) -> ReconcileOccupancy {
        ReconcileOccupancy {
            nodes: self.nodes.len(),
            dead: self.dead.len(),
            forgotten: self.forgotten.len(),
            rumors: self.rumors.len(),
            largest_owner: self
                .nodes
                .values()
                .map(|s| s.entries.len() + s.stale.len())
                .max()
                .unwrap_or(0),
            tombstones: self.gc_queue.len(),
            state_bytes: self.state_bytes,
            outstanding: self.outstanding.len(),
            queued_transmits: self.transmits.len(),
            queued_events: self.events.len(),
        }
    }

    /// The live value of `key` owned by `node`, with its version; `None` if the node or key
    /// is unknown or the key is deleted.
    pub fn get(&self, node: &NodeId, key: &str) -> Option<(Bytes, u64)> {
        let (value, version) = self.nodes.get(node)?.live_value(key)?;
        Some((value.clone(), version))
    }

    /// A snapshot of what this node holds of `node` (the local node included).
    pub fn node_state(&self, node: &NodeId) -> Option<NodeStateView> {
        let st = self.nodes.get(node)?;
        let mut entries: Vec<EntryView> = st
            .entries
            .iter()
            .filter_map(|e| {
                e.value.as_ref().map(|v| EntryView {
                    key: e.key.clone(),
                    value: v.clone(),
                    version: e.version,
                })
            })
            .collect();
        for e in &st.stale {
            if st.find(&e.key).is_err()
                && let Some(v) = &e.value
            {
                entries.push(EntryView {
                    key: e.key.clone(),
                    value: v.clone(),
                    version: e.version,
                });
            }
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Some(NodeStateView {
            node: *node,
            generation: st.generation,
            heartbeat: st.heartbeat,
            max_version: st.max_version,
            gc_version: st.gc_version,
            addr: st.addr,
            live: st.live,
            entries,
        })
    }

    /// This node's digest entry for `node`: which state of it is held here. Cheap.
    pub fn digest_entry(&self, node: &NodeId) -> Option<DigestEntry> {
        self.nodes.get(node).map(|st| st.digest_entry(*node))
    }

    /// How many nodes are known, the local one included. Cheap.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every known node, the local one included, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.keys().copied()
    }

    /// Whether `node` is currently considered live (`None` if unknown; the local node is
    /// always live).
    pub fn is_live(&self, node: &NodeId) -> Option<bool> {
        self.nodes.get(node).map(|st| st.live)
    }

    // ----- application commands -----

    /// Sets the local `key` to `value` and returns the version taken.
    ///
    /// # Errors
    /// [`StateError::KeyTooLong`], [`StateError::ValueTooLarge`] (both naming the size and the
    /// maximum), [`StateError::TooManyKeys`] for a new key beyond `max_keys_per_owner`, or
    /// [`StateError::Backpressure`] if above the current rate. The state did not change.
    pub fn set(&mut self, now: Instant, key: &str, value: Bytes) -> Result<u64, StateError> {
        self.check_write(key, &value)?;
        self.flow.try_admit(now)?;
        Ok(self.write_local(now, key, Some(value)))
    }

    /// Application command, at start only: sets the local `key` to `value` as a fresh write
    /// of this generation, without taking a flow-control token, and returns the version
    /// taken. A node that persisted its own entries (`gossip_store::own_state`) calls it for
    /// each stored entry, in the order they were written, right after [`new`](Self::new) with
    /// a generation higher than the stored one, before any input: peers replace the old
    /// generation's state with what is restored, so every acknowledged write survives the
    /// restart and no deleted key comes back. Flow control is skipped because the entries
    /// were admitted once already; at most `max_keys_per_owner` can be restored.
    ///
    /// # Errors
    /// As [`set`](Self::set) except [`StateError::Backpressure`]: the entry (a stored entry
    /// that no longer fits a changed configuration) was not restored; the state did not
    /// change.
    pub fn restore(&mut self, now: Instant, key: &str, value: Bytes) -> Result<u64, StateError> {
        self.check_write(key, &value)?;
        Ok(self.write_local(now, key, Some(value)))
    }

    /// Deletes the local `key` (writes a tombstone) and returns the version taken, or
    /// `Ok(None)` if the key holds no value (nothing written, no token taken).
    ///
    /// # Errors
    /// [`StateError::KeyTooLong`], or [`StateError::Backpressure`] if above the current rate.
    /// The state did not change.
    pub fn delete(&mut self, now: Instant, key: &str) -> Result<Option<u64>, StateError> {
        self.check_key(key)?;
        let own = self.own();
        let live = matches!(own.find(key), Ok(i) if own.entries[i].value.is_some());
        if !live {
            return Ok(None);
        }
        self.flow.try_admit(now)?;
        Ok(Some(self.write_local(now, key, None)))
    }

    // ----- inputs -----

    /// Input: `message`, received at `now` in a datagram from the UDP address `from`, sealed
    /// by node `sender` (the envelope's sender).
    ///
    /// Applies rules 2–8 of the [type doc](Self); answers go to `from`. Any message, however
    /// malformed its contents, is handled without panic and within the configured bounds.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        message: StateMessage,
    ) {
        if sender == self.local {
            self.stats.own_messages_ignored += 1;
            return;
        }
        match message {
            StateMessage::Digest(digest) => self.handle_digest(now, from, digest),
            StateMessage::Reply(reply) => self.handle_reply(now, from, reply),
            StateMessage::Deltas(deltas) => {
                self.stats.deltas_received += 1;
                self.apply_deltas(now, deltas.deltas);
            }
        }
    }

    /// Input: the failure detector reports `node` dead at `now`. Ignored (and counted) for an
    /// unknown node or the local node.
    pub fn handle_peer_dead(&mut self, now: Instant, node: NodeId) {
        let _ = now;
        match self.nodes.get_mut(&node) {
            Some(st) if node != self.local => {
                st.live = false;
                self.live.remove(&node);
                self.dead.insert(node, ());
            }
            _ => self.stats.liveness_ignored += 1,
        }
    }

    /// Input: the failure detector reports `node` live (again) at `now`. Ignored (and
    /// counted) for an unknown node or the local node.
    pub fn handle_peer_live(&mut self, now: Instant, node: NodeId) {
        let _ = now;
        match self.nodes.get_mut(&node) {
            Some(st) if node != self.local => {
                st.live = true;
                self.dead.remove(&node);
                self.live.insert(node, ());
            }
            _ => self.stats.liveness_ignored += 1,
        }
    }

    /// Input: the timer armed at [`poll_timeout`](Self::poll_timeout) fired at `now`. Runs a
    /// round (rule 1) if one is due; the next is `gossip_interval` after `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_round {
            return;
        }
        self.round(now);
        self.next_round = now.checked_add(self.config.gossip_interval).unwrap_or(now);
    }

    // ----- outputs -----

    /// Output: the next message to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<StateTransmit> {
        self.transmits.pop_front()
    }

    /// Output: the next event, oldest first.
    pub fn poll_event(&mut self) -> Option<StateEvent> {
        self.events.pop_front()
    }

    /// Output: when to call [`handle_timeout`](Self::handle_timeout) next (the next round).
    /// Always `Some`; it may be in the past: fire at once.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_round)
    }

    // ----- internals: local writes -----

    fn own(&self) -> &NodeState {
        // The local node is inserted at construction and never removed.
        self.nodes
            .get(&self.local)
            .expect("the local node's state always exists")
    }

    fn check_key(&self, key: &str) -> Result<(), StateError> {
        if key.len() > self.config.max_key_len {
            return Err(StateError::KeyTooLong {
                len: key.len(),
                max: self.config.max_key_len,
            });
        }
        Ok(())
    }

    fn check_write(&self, key: &str, value: &Bytes) -> Result<(), StateError> {
        self.check_key(key)?;
        if value.len() > self.config.max_value_len {
            return Err(StateError::ValueTooLarge {
                len: value.len(),
                max: self.config.max_value_len,
            });
        }
        let own = self.own();
        if own.find(key).is_err() && own.entries.len() >= self.config.max_keys_per_owner {
            return Err(StateError::TooManyKeys {
                max: self.config.max_keys_per_owner,
            });
        }
        Ok(())
    }

    fn write_local(&mut self, now: Instant, key: &str, value: Option<Bytes>) -> u64 {
        let local = self.local;
        let grace = self.config.tombstone_grace;
        let Some(own) = self.nodes.get_mut(&local) else {
            return 0;
        };
        let version = own.max_version.saturating_add(1);
        upsert(
            &mut self.gc_queue,
            grace,
            local,
            own,
            now,
            key,
            version,
            value,
        );
        own.max_version = version;
        own.last_advance = now;
        self.stats.local_updates += 1;
        version
    }

    // ----- internals: outputs -----

    fn queue_transmit(&mut self, to: SocketAddr, message: StateMessage) -> bool {
        if self.transmits.len() + self.events.len() >= self.config.output_queue_capacity {
            self.stats.transmits_dropped += 1;
            return false;
        }
        debug_assert!(
            message.encoded_len_bound() + ENVELOPE_OVERHEAD <= self.config.max_envelope_len
        );
        self.transmits.push_back(StateTransmit { to, message });
        true
    }

    fn queue_events(&mut self, events: Vec<StateEvent>) {
        for event in events {
            if self.transmits.len() + self.events.len() >= self.config.output_queue_capacity {
                self.stats.events_dropped += 1;
                continue;
            }
            self.events.push_back(event);
        }
    }

    // ----- internals: the round -----

    fn round(&mut self, now: Instant) {
        self.stats.rounds += 1;
        let local = self.local;
        if let Some(own) = self.nodes.get_mut(&local) {
            own.heartbeat = own.heartbeat.saturating_add(1);
            own.last_advance = now;
        }
        self.flow.handle_tick(now);
        self.expire_exchanges(now);
        self.collect_tombstones(now);
        self.forget_dead(now);
        self.expire_rumors();

        let mut targets: Vec<(SocketAddr, Option<NodeId>)> = Vec::new();
        let live = self.live.len();
        let dead = self.dead.len();
        if let Some(id) = self.live.pick(&mut self.rng)
            && let Some(st) = self.nodes.get(&id)
        {
            targets.push((st.addr, Some(id)));
        }
        if dead > 0 {
            let p = (dead as f64 / (live as f64 + 1.0)).min(1.0);
            if self.rng.random_bool(p)
                && let Some(id) = self.dead.pick(&mut self.rng)
                && let Some(st) = self.nodes.get(&id)
                && targets.iter().all(|(a, _)| *a != st.addr)
            {
                targets.push((st.addr, Some(id)));
                self.stats.dead_gossips += 1;
            }
        }
        if !self.seeds.is_empty() {
            let to_seed = if live < self.config.minimum_live_peers {
                true
            } else {
                // Cassandra's `maybeGossipToSeed`: when the live target was not a seed, or
                // fewer nodes are live than there are seeds, a seed with probability
                // seeds / (live + dead), so that groups of nodes that learned of each other
                // through different seeds do not stay apart. (The second condition matters
                // when every peer is a seed: two nodes whose first rounds picked each other
                // would otherwise only ever gossip with each other.)
                let live_target_is_seed = targets
                    .first()
                    .is_some_and(|(a, _)| self.seeds.binary_search(a).is_ok());
                let p = (self.seeds.len() as f64 / (live + dead) as f64).min(1.0);
                (!live_target_is_seed || live < self.seeds.len()) && self.rng.random_bool(p)
            };
            if to_seed {
                let seed = self.seeds[self.rng.random_range(0..self.seeds.len())];
                if targets.iter().all(|(a, _)| *a != seed) {
                    targets.push((seed, None));
                    self.stats.seed_gossips += 1;
                }
            }
        }
        if targets.is_empty() {
            self.stats.idle_rounds += 1;
        }
        for (to, node) in targets {
            self.send_digest(now, to, node);
        }
    }

    fn expire_exchanges(&mut self, now: Instant) {
        let timeout = self.config.exchange_timeout;
        let expired: Vec<SocketAddr> = self
            .outstanding
            .iter()
            .filter(|(_, o)| now.saturating_duration_since(o.sent_at) >= timeout)
            .map(|(a, _)| *a)
            .collect();
        for addr in expired {
            if let Some(o) = self.outstanding.remove(&addr) {
                self.stats.exchanges_timed_out += 1;
                for id in o.rumors {
                    self.rumor_not_needed(&id);
                }
            }
        }
    }

    fn collect_tombstones(&mut self, now: Instant) {
        while let Some(first) = self.gc_queue.first() {
            if first.0 > now {
                break;
            }
            let Some((_, node, key)) = self.gc_queue.pop_first() else {
                break;
            };
            let Some(st) = self.nodes.get_mut(&node) else {
                continue;
            };
            if let Ok(i) = st.find(&key)
                && st.entries[i].value.is_none()
            {
                let version = st.entries[i].version;
                st.entries.remove(i);
                st.gc_version = st.gc_version.max(version);
                self.stats.tombstones_collected += 1;
                self.refresh_bytes(node);
            }
        }
    }

    /// Re-accounts `node`'s held bytes in the `max_state_bytes` total (the local node is not
    /// counted).
    fn refresh_bytes(&mut self, node: NodeId) {
        if node == self.local {
            return;
        }
        if let Some(st) = self.nodes.get_mut(&node) {
            let held = st.held_bytes();
            self.state_bytes = self.state_bytes.saturating_sub(st.bytes) + held;
            st.bytes = held;
        }
    }

    fn forget_dead(&mut self, now: Instant) {
        let grace = self.config.dead_node_grace;
        let due: Vec<NodeId> = self
            .dead
            .ids()
            .filter(|id| {
                self.nodes
                    .get(id)
                    .is_some_and(|st| now.saturating_duration_since(st.last_advance) >= grace)
            })
            .collect();
        let mut events = Vec::new();
        for id in due {
            self.dead.remove(&id);
            self.remove_rumor(&id);
            let Some(st) = self.nodes.remove(&id) else {
                continue;
            };
            self.state_bytes = self.state_bytes.saturating_sub(st.bytes);
            for e in &st.entries {
                if let Some(expires) = e.expires {
                    self.gc_queue.remove(&(expires, id, e.key.clone()));
                }
            }
            if let Some(old) = self.forgotten.insert(
                id,
                Forgotten {
                    generation: st.generation,
                    heartbeat: st.heartbeat,
                    at: now,
                },
            ) {
                self.forgotten_order.remove(&(old.at, id));
            }
            self.forgotten_order.insert((now, id));
            self.stats.nodes_forgotten += 1;
            events.push(StateEvent::NodeForgotten { node: id });
        }
        while let Some(&(at, id)) = self.forgotten_order.first() {
            let expired = now.saturating_duration_since(at) >= grace;
            if !expired && self.forgotten.len() <= self.config.max_nodes {
                break;
            }
            self.forgotten_order.pop_first();
            self.forgotten.remove(&id);
        }
        self.queue_events(events);
    }

    // ----- internals: rumours -----

    fn mark_rumor(&mut self, id: NodeId) {
        if id == self.local {
            return;
        }
        // Already fresh news this round: keep its place.
        if self
            .rumors
            .get(&id)
            .is_some_and(|r| r.count == 0 && r.round == self.stats.rounds)
        {
            return;
        }
        self.remove_rumor(&id);
        self.rumor_seq += 1;
        self.rumors.insert(
            id,
            Rumor {
                seq: self.rumor_seq,
                count: 0,
                round: self.stats.rounds,
            },
        );
        self.rumor_order.insert((self.rumor_seq, id));
    }

    fn remove_rumor(&mut self, id: &NodeId) {
        if let Some(r) = self.rumors.remove(id) {
            self.rumor_order.remove(&(r.seq, *id));
        }
    }

    fn rumor_not_needed(&mut self, id: &NodeId) {
        let limit = self.config.rumor_counter;
        if let Some(r) = self.rumors.get_mut(id) {
            r.count += 1;
            if r.count >= limit {
                self.remove_rumor(id);
            }
        }
    }

    /// Rounds a rumour lives at most: ⌈log₂ n + ln n⌉ + `rumor_counter` for `n` known nodes,
    /// the rounds push gossip needs to reach `n` nodes (Pittel, 1987) plus the feedback
    /// allowance.
    fn rumor_rounds(&self) -> u64 {
        let n = self.nodes.len().max(1) as f64;
        (n.log2() + n.ln()).ceil() as u64 + u64::from(self.config.rumor_counter)
    }

    fn expire_rumors(&mut self) {
        let limit = self.rumor_rounds();
        let now = self.stats.rounds;
        while let Some(&(_, id)) = self.rumor_order.first() {
            match self.rumors.get(&id) {
                Some(r) if now.saturating_sub(r.round) <= limit => break,
                _ => {
                    self.rumor_order.pop_first();
                    self.rumors.remove(&id);
                }
            }
        }
    }

    // ----- internals: step 1 -----

    fn send_digest(&mut self, now: Instant, to: SocketAddr, target: Option<NodeId>) {
        let (digest, rumors) = self.build_digest(target);
        if !self.outstanding.contains_key(&to)
            && self.outstanding.len() >= self.config.max_outstanding_exchanges
            && let Some(oldest) = self
                .outstanding
                .iter()
                .min_by_key(|(a, o)| (o.sent_at, **a))
                .map(|(a, _)| *a)
            && let Some(o) = self.outstanding.remove(&oldest)
        {
            self.stats.exchanges_evicted += 1;
            for id in o.rumors {
                self.rumor_not_needed(&id);
            }
        }
        if let Some(old) = self.outstanding.insert(
            to,
            Outstanding {
                sent_at: now,
                rumors,
            },
        ) {
            for id in old.rumors {
                self.rumor_not_needed(&id);
            }
        }
        if self.queue_transmit(to, StateMessage::Digest(digest)) {
            self.stats.digests_sent += 1;
        }
    }

    /// Builds a digest for `target` (rule 2) and advances the page cursor. Returns the
    /// digest and the rumours it advertises.
    fn build_digest(&mut self, target: Option<NodeId>) -> (Digest, Vec<NodeId>) {
        let budget = self
            .config
            .max_message_len()
            .saturating_sub(Digest::FIXED_LEN);
        let local = self.local;
        let own_entry = self.own().digest_entry(local);
        let target_entry = target
            .filter(|t| *t != local)
            .and_then(|t| self.nodes.get(&t).map(|st| st.digest_entry(t)));
        let reserved =
            own_entry.encoded_len_bound() + target_entry.map_or(0, |e| e.encoded_len_bound());
        let mut room = budget.saturating_sub(reserved);

        // Rumours, newest first, within rumor_share of the room.
        let rumor_budget = room * self.config.rumor_share / 100;
        let mut extra: Vec<DigestEntry> = Vec::new();
        let mut listed: BTreeSet<NodeId> = BTreeSet::new();
        let mut advertised = Vec::new();
        let mut rumor_used = 0;
        for &(_, id) in self.rumor_order.iter().rev() {
            if rumor_budget.saturating_sub(rumor_used) < DigestEntry::MIN_LEN {
                break;
            }
            if id == local || Some(id) == target {
                continue;
            }
            let Some(st) = self.nodes.get(&id) else {
                continue;
            };
            let entry = st.digest_entry(id);
            let size = entry.encoded_len_bound();
            if rumor_used + size > rumor_budget {
                continue;
            }
            rumor_used += size;
            listed.insert(id);
            extra.push(entry);
            advertised.push(id);
        }
        room = room.saturating_sub(rumor_used);

        // The page: ring order from the cursor, skipping listed rumours.
        let mut page: Vec<DigestEntry> = Vec::new();
        let mut used = 0;
        let mut stopped_at = None;
        let (mut local_in_page, mut target_in_page) = (false, false);
        let cursor = self.cursor;
        for (id, st) in self.nodes.range(cursor..).chain(self.nodes.range(..cursor)) {
            if listed.contains(id) {
                continue;
            }
            let entry = st.digest_entry(*id);
            let size = entry.encoded_len_bound();
            if used + size > room {
                stopped_at = Some(*id);
                break;
            }
            used += size;
            page.push(entry);
            local_in_page |= *id == local;
            target_in_page |= Some(*id) == target;
        }
        let range_end = match (stopped_at, page.first()) {
            (Some(end), _) => {
                self.cursor = end;
                NodePrefix::of(&end)
            }
            (None, Some(first)) => first.node,
            (None, None) => NodePrefix::of(&cursor),
        };
        let mut front = Vec::new();
        if !local_in_page {
            front.push(own_entry);
        }
        if let Some(e) = target_entry
            && !target_in_page
        {
            front.push(e);
        }
        front.append(&mut extra);
        let digest = Digest {
            range_end,
            page,
            extra: front,
            flow: self.flow.advert(),
        };
        (digest, advertised)
    }

    // ----- internals: step 2 -----

    fn handle_digest(&mut self, now: Instant, from: SocketAddr, digest: Digest) {
        self.stats.digests_received += 1;
        let assigned = self.flow.split(now, digest.flow);
        let mut listed: BTreeSet<NodePrefix> = BTreeSet::new();
        let mut send = Vec::new();
        let mut wants = Vec::new();
        let total = digest.page.len() + digest.extra.len();
        if total > DIGEST_ENTRY_LIMIT {
            self.stats.digest_entries_ignored += (total - DIGEST_ENTRY_LIMIT) as u64;
        }
        for entry in digest
            .page
            .iter()
            .chain(digest.extra.iter())
            .take(DIGEST_ENTRY_LIMIT)
        {
            if listed.insert(entry.node) {
                self.compare(entry, &mut send, Some(&mut wants));
            }
        }
        // Nodes of the page's range the initiator did not list: unknown to it.
        if let Some(first) = digest.page.first() {
            let start = first.node.first_id();
            let end = digest.range_end.first_id();
            let (mut scanned, mut found) = (0, 0);
            let mut consider = |id: &NodeId, st: &NodeState| {
                scanned += 1;
                if !listed.contains(&NodePrefix::of(id)) {
                    found += 1;
                    send.push(Candidate {
                        node: *id,
                        from: 0,
                        reset: false,
                        unknown: true,
                        pending: st.entries.len(),
                    });
                }
                found < UNKNOWN_SCAN_LIMIT && scanned < DIGEST_ENTRY_LIMIT + UNKNOWN_SCAN_LIMIT
            };
            if start < end {
                for (id, st) in self.nodes.range(start..end) {
                    if !consider(id, st) {
                        break;
                    }
                }
            } else {
                // Wrapping (or the whole ring when start == end).
                for (id, st) in self.nodes.range(start..).chain(self.nodes.range(..end)) {
                    if !consider(id, st) {
                        break;
                    }
                }
            }
        }
        let avail = self
            .config
            .max_message_len()
            .saturating_sub(Reply::FIXED_LEN);
        wants.shuffle(&mut self.rng);
        wants.sort_by_key(|w| (w.class, std::cmp::Reverse(w.behind)));
        let want_need: usize = wants.iter().map(|w| w.entry.encoded_len_bound()).sum();
        let want_cap = want_need
            .min(avail * self.config.reply_digest_share / 100)
            .min(avail.saturating_sub(self.config.max_single_delta_len()));
        let (deltas, pending, sent, used) = self.build_deltas(send, avail - want_cap);
        let mut room = avail.saturating_sub(used);
        let mut digest_part = Vec::new();
        for w in wants {
            let size = w.entry.encoded_len_bound();
            if size > room {
                continue;
            }
            room -= size;
            digest_part.push(w.entry);
        }
        self.flow.handle_exchange(now, pending, sent);
        let reply = Reply {
            deltas,
            digest: digest_part,
            flow: self.flow.advert(),
            assigned_rate: assigned,
        };
        if self.queue_transmit(from, StateMessage::Reply(reply)) {
            self.stats.replies_sent += 1;
        }
    }

    /// The known node with id prefix `prefix`: `Ok(None)` if none, `Err(())` if several.
    fn resolve(&self, prefix: &NodePrefix) -> Result<Option<(NodeId, &NodeState)>, ()> {
        let mut found = self.nodes.range(prefix.first_id()..=prefix.last_id());
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some((id, st)), None) => Ok(Some((*id, st))),
            _ => Err(()),
        }
    }

    /// Compares a peer's digest entry with what is held here: pushes a [`Candidate`] if the
    /// peer lacks something, a [`Want`] (if `wants` is given) if the peer has something newer.
    fn compare(
        &mut self,
        peer: &DigestEntry,
        send: &mut Vec<Candidate>,
        wants: Option<&mut Vec<Want>>,
    ) {
        let (node, st) = match self.resolve(&peer.node) {
            Ok(Some(found)) => found,
            Ok(None) => {
                let Some(wants) = wants else { return };
                let forgotten = self
                    .forgotten
                    .range(peer.node.first_id()..=peer.node.last_id())
                    .any(|(_, f)| (peer.generation, peer.heartbeat) <= (f.generation, f.heartbeat));
                if forgotten || self.nodes.len() >= self.config.max_nodes {
                    return;
                }
                if self.nodes.len() >= self.config.max_nodes {
                    return;
                }
                wants.push(Want {
                    entry: DigestEntry {
                        node: peer.node,
                        generation: 0,
                        heartbeat: 0,
                        max_version: 0,
                        gc_version: 0,
                    },
                    class: 0,
                    behind: peer.max_version,
                });
                return;
            }
            Err(()) => {
                self.stats.ambiguous_entries += 1;
                return;
            }
        };
        let mine = st.digest_entry(node);
        let is_local = node == self.local;
        if st.generation > peer.generation {
            send.push(Candidate {
                node,
                from: 0,
                reset: false,
                unknown: true,
                pending: st.entries.len(),
            });
        } else if st.generation < peer.generation {
            if let Some(wants) = wants
                && !is_local
            {
                wants.push(Want {
                    entry: mine,
                    class: 0,
                    behind: peer.max_version,
                });
            }
        } else if st.max_version > peer.max_version {
            let reset = peer.max_version < st.gc_version && peer.gc_version < st.gc_version;
            let from = if reset { 0 } else { peer.max_version };
            send.push(Candidate {
                node,
                from,
                reset,
                unknown: false,
                pending: st.count_after(from),
            });
        } else if st.max_version < peer.max_version {
            if let Some(wants) = wants
                && !is_local
            {
                wants.push(Want {
                    entry: mine,
                    class: 1,
                    behind: peer.max_version - st.max_version,
                });
            }
        } else if st.heartbeat > peer.heartbeat {
            send.push(Candidate {
                node,
                from: peer.max_version,
                reset: false,
                unknown: false,
                pending: 0,
            });
        } else if st.heartbeat < peer.heartbeat
            && let Some(wants) = wants
            && !is_local
        {
            wants.push(Want {
                entry: mine,
                class: 2,
                behind: 0,
            });
        }
    }

    /// Fits the candidates' deltas into `budget` bytes in the configured order. Returns the
    /// deltas, the entries pending and sent (for flow control), and the bytes used.
    ///
    /// Each owner's entries go out as a prefix in ascending version order (no gap); an owner
    /// whose header and first entry do not fit is skipped, so a smaller one may still fit.
    fn build_deltas(
        &mut self,
        mut candidates: Vec<Candidate>,
        budget: usize,
    ) -> (Vec<NodeDelta>, u64, u64, usize) {
        candidates.shuffle(&mut self.rng);
        let rank = |c: &Candidate| {
            if c.unknown {
                0
            } else if c.pending > 0 {
                1
            } else {
                2
            }
        };
        let pending: u64 = candidates.iter().map(|c| c.pending as u64).sum();
        // (candidate, its entries to send, how many fit — usize::MAX for a header alone).
        let mut plans: Vec<(Candidate, Vec<&Entry>, usize)> = Vec::new();
        let mut used = 0usize;
        match self.config.delta_order {
            DeltaOrder::Depth => {
                candidates.sort_by_key(|c| (rank(c), std::cmp::Reverse(c.pending)));
                for c in &candidates {
                    if budget.saturating_sub(used) < NodeDelta::MIN_HEADER_LEN {
                        break;
                    }
                    let Some(st) = self.nodes.get(&c.node) else {
                        continue;
                    };
                    let header = header_len(st, c.from);
                    if used + header > budget {
                        continue;
                    }
                    let list = if c.pending == 0 {
                        Vec::new()
                    } else {
                        st.entries_after(c.from)
                    };
                    let mut size = header;
                    let mut n = 0;
                    for e in &list {
                        let s = e.wire_len();
                        if used + size + s > budget {
                            break;
                        }
                        size += s;
                        n += 1;
                    }
                    if n == 0 && !list.is_empty() {
                        continue;
                    }
                    used += size;
                    let take = if list.is_empty() { usize::MAX } else { n };
                    plans.push((*c, list, take));
                }
            }
            DeltaOrder::Breadth => {
                // Random order (the shuffle), header-only deltas last. First every owner that
                // fits gets its header and first entry, then second entries in turn, and so on.
                candidates.sort_by_key(|c| u8::from(rank(c) == 2));
                for c in &candidates {
                    if budget.saturating_sub(used) < NodeDelta::MIN_HEADER_LEN {
                        break;
                    }
                    let Some(st) = self.nodes.get(&c.node) else {
                        continue;
                    };
                    let list = if c.pending == 0 {
                        Vec::new()
                    } else {
                        st.entries_after(c.from)
                    };
                    let first = header_len(st, c.from) + list.first().map_or(0, |e| e.wire_len());
                    if used + first > budget {
                        continue;
                    }
                    used += first;
                    let take = if list.is_empty() { usize::MAX } else { 1 };
                    plans.push((*c, list, take));
                }
                let mut rank = 1;
                loop {
                    let mut progress = false;
                    for (_, list, take) in plans.iter_mut() {
                        if *take != rank {
                            continue;
                        }
                        let Some(e) = list.get(rank) else {
                            continue;
                        };
                        let size = e.wire_len();
                        if used + size > budget {
                            continue;
                        }
                        used += size;
                        *take += 1;
                        progress = true;
                    }
                    if !progress {
                        break;
                    }
                    rank += 1;
                }
            }
        }
        let mut deltas = Vec::with_capacity(plans.len());
        let mut sent = 0u64;
        let mut resets = 0u64;
        for (c, list, take) in &plans {
            let Some(st) = self.nodes.get(&c.node) else {
                continue;
            };
            let n = if *take == usize::MAX { 0 } else { *take };
            let complete = n == list.len();
            let to_version = if complete {
                st.max_version
            } else {
                list[n - 1].version
            };
            sent += n as u64;
            resets += u64::from(c.reset);
            deltas.push(NodeDelta {
                node: c.node,
                generation: st.generation,
                heartbeat: st.heartbeat,
                addr: st.addr,
                gc_version: st.gc_version,
                reset: c.reset,
                from_version: c.from,
                to_version: to_version.max(c.from),
                complete,
                entries: list[..n].iter().map(|e| e.to_delta()).collect(),
            });
        }
        self.stats.entries_sent += sent;
        self.stats.entries_left_out += pending.saturating_sub(sent);
        self.stats.resets_sent += resets;
        (deltas, pending, sent, used)
    }

    // ----- internals: step 3 -----

    fn handle_reply(&mut self, now: Instant, from: SocketAddr, reply: Reply) {
        self.stats.replies_received += 1;
        if let Some(o) = self.outstanding.remove(&from) {
            self.flow.handle_assigned(now, reply.assigned_rate);
            let wanted: BTreeSet<NodePrefix> = reply.digest.iter().map(|e| e.node).collect();
            for id in o.rumors {
                if !wanted.contains(&NodePrefix::of(&id)) {
                    self.rumor_not_needed(&id);
                }
            }
        } else {
            self.stats.unsolicited_replies += 1;
        }
        self.apply_deltas(now, reply.deltas);
        let mut send = Vec::new();
        if reply.digest.len() > DIGEST_ENTRY_LIMIT {
            self.stats.digest_entries_ignored += (reply.digest.len() - DIGEST_ENTRY_LIMIT) as u64;
        }
        let mut seen = BTreeSet::new();
        for entry in reply.digest.iter().take(DIGEST_ENTRY_LIMIT) {
            if seen.insert(entry.node) {
                self.compare(entry, &mut send, None);
            }
        }
        let budget = self
            .config
            .max_message_len()
            .saturating_sub(Deltas::FIXED_LEN);
        let (deltas, pending, sent, _) = self.build_deltas(send, budget);
        self.flow.handle_exchange(now, pending, sent);
        if !deltas.is_empty() && self.queue_transmit(from, StateMessage::Deltas(Deltas { deltas }))
        {
            self.stats.deltas_sent += 1;
        }
    }

    // ----- internals: applying deltas -----

    fn apply_deltas(&mut self, now: Instant, deltas: Vec<NodeDelta>) {
        let mut events = Vec::new();
        for delta in deltas {
            let node = delta.node;
            self.apply_delta(now, delta, &mut events);
            self.refresh_bytes(node);
        }
        self.queue_events(events);
    }

    /// Rule 5 of the type doc.
    fn apply_delta(&mut self, now: Instant, d: NodeDelta, events: &mut Vec<StateEvent>) {
        self.stats.node_deltas_received += 1;
        if d.node == self.local {
            self.stats.own_state_ignored += 1;
            return;
        }
        if !well_formed(&d) {
            self.stats.malformed_deltas += 1;
            return;
        }
        let node = d.node;
        if !self.nodes.contains_key(&node) {
            if let Some(f) = self.forgotten.get(&node) {
                if (d.generation, d.heartbeat) <= (f.generation, f.heartbeat) {
                    self.stats.forgotten_ignored += 1;
                    return;
                }
                self.forgotten_order.remove(&(f.at, node));
                self.forgotten.remove(&node);
            }
            if self.nodes.len() >= self.config.max_nodes {
                self.stats.nodes_refused += 1;
                return;
            }
            let mut st = NodeState::new(d.generation, d.heartbeat, d.addr, now);
            if d.from_version == 0 {
                st.gc_version = d.gc_version;
            }
            self.nodes.insert(node, st);
            self.live.insert(node, ());
            self.mark_rumor(node);
            self.stats.nodes_learned += 1;
            events.push(StateEvent::NewNode {
                node,
                addr: d.addr,
                generation: d.generation,
            });
        }
        let grace = self.config.tombstone_grace;
        let max_keys = self.config.max_keys_per_owner;
        let (max_key, max_value) = (self.config.max_key_len, self.config.max_value_len);
        let Some(st) = self.nodes.get_mut(&node) else {
            return;
        };
        if d.generation < st.generation {
            self.stats.old_generation_ignored += 1;
            return;
        }
        let mut advanced = false;
        if d.generation > st.generation {
            for e in st.entries.drain(..) {
                if let Some(expires) = e.expires {
                    self.gc_queue.remove(&(expires, node, e.key));
                }
            }
            st.stale.clear();
            st.generation = d.generation;
            st.heartbeat = d.heartbeat;
            st.max_version = 0;
            st.gc_version = if d.from_version == 0 { d.gc_version } else { 0 };
            st.addr = d.addr;
            st.last_advance = now;
            advanced = true;
            self.stats.restarts_seen += 1;
            events.push(StateEvent::NodeRestarted {
                node,
                generation: d.generation,
                addr: d.addr,
            });
        } else if d.heartbeat > st.heartbeat {
            st.heartbeat = d.heartbeat;
            st.addr = d.addr;
            st.last_advance = now;
            events.push(StateEvent::HeartbeatAdvanced {
                node,
                heartbeat: d.heartbeat,
            });
        }
        if d.reset {
            // Move everything aside, still readable, and rebuild from 0.
            for mut e in std::mem::take(&mut st.entries) {
                if let Some(expires) = e.expires.take() {
                    self.gc_queue.remove(&(expires, node, e.key.clone()));
                }
                match st.find_stale(&e.key) {
                    Ok(i) => st.stale[i] = e,
                    Err(i) => st.stale.insert(i, e),
                }
            }
            // A second reset before the first rebuild completed can merge two key sets: keep
            // the newest `max_keys_per_owner` old entries.
            if st.stale.len() > max_keys {
                let mut versions: Vec<u64> = st.stale.iter().map(|e| e.version).collect();
                versions.sort_unstable();
                let cut = versions[st.stale.len() - max_keys];
                for old in std::mem::take(&mut st.stale) {
                    if old.version >= cut {
                        st.stale.push(old);
                    } else if old.value.is_some() {
                        self.stats.stale_keys_dropped += 1;
                        events.push(StateEvent::Update {
                            node,
                            key: old.key,
                            value: None,
                            version: 0,
                        });
                    }
                }
            }
            st.max_version = 0;
            st.gc_version = st.gc_version.max(d.gc_version);
            self.stats.resets_received += 1;
        } else if d.from_version > st.max_version {
            self.stats.gap_deltas += 1;
            if advanced {
                self.mark_rumor(node);
            }
            return;
        }
        // Room left in the byte budget, with this owner's state as it is now (a restart or
        // reset above may have freed some).
        let others = self.state_bytes.saturating_sub(st.bytes);
        let mut room = self
            .config
            .max_state_bytes
            .saturating_sub(others + st.held_bytes());
        let mut stopped = false;
        for e in d.entries {
            if e.version <= st.max_version {
                continue;
            }
            let too_big =
                e.key.len() > max_key || e.value.as_ref().is_some_and(|v| v.len() > max_value);
            if too_big {
                self.stats.oversized_entries += 1;
                st.max_version = e.version - 1;
                stopped = true;
                break;
            }
            if st.find(&e.key).is_err() && st.entries.len() >= max_keys {
                self.stats.keys_refused += 1;
                st.max_version = e.version - 1;
                stopped = true;
                break;
            }
            // The entry replaces the key's current and old (rebuild) entries, freeing theirs.
            let bytes = state::entry_bytes(e.key.len(), e.value.as_ref().map_or(0, Bytes::len));
            let freed = st.find(&e.key).map_or(0, |i| st.entries[i].held_bytes())
                + st.find_stale(&e.key)
                    .map_or(0, |i| st.stale[i].held_bytes());
            let available = room + freed;
            if bytes > available {
                self.stats.bytes_refused += 1;
                st.max_version = e.version - 1;
                stopped = true;
                break;
            }
            room = available - bytes;
            let visible_before = upsert(
                &mut self.gc_queue,
                grace,
                node,
                st,
                now,
                &e.key,
                e.version,
                e.value.clone(),
            );
            st.max_version = e.version;
            advanced = true;
            self.stats.entries_applied += 1;
            if e.value.is_some() || visible_before {
                events.push(StateEvent::Update {
                    node,
                    key: e.key,
                    value: e.value,
                    version: e.version,
                });
            }
        }
        if !stopped {
            if d.to_version > st.max_version {
                st.max_version = d.to_version;
                advanced = true;
            }
            if d.complete && !st.stale.is_empty() {
                for old in std::mem::take(&mut st.stale) {
                    if old.value.is_some() {
                        self.stats.stale_keys_dropped += 1;
                        events.push(StateEvent::Update {
                            node,
                            key: old.key,
                            value: None,
                            version: 0,
                        });
                    }
                }
            }
        }
        if advanced {
            st.last_advance = now;
            self.mark_rumor(node);
        }
    }
}

/// Encoded size planned for a delta header of `st` from `from`, with a 3-byte list prefix.
fn header_len(st: &NodeState, from: u64) -> usize {
    NodeDelta::header_len(
        st.generation,
        st.heartbeat,
        &st.addr,
        st.gc_version,
        from,
        st.max_version.max(from),
        usize::from(u16::MAX),
    )
}

/// A delta's versions are consistent: `from ≤ to`, a reset starts at 0, entries strictly
/// ascending within `(from, to]`.
fn well_formed(d: &NodeDelta) -> bool {
    if d.from_version > d.to_version || (d.reset && d.from_version != 0) {
        return false;
    }
    let mut last = d.from_version;
    for e in &d.entries {
        if e.version <= last || e.version > d.to_version {
            return false;
        }
        last = e.version;
    }
    true
}

/// Writes `key` at `version` into `st` (owner `node`), keeping the tombstone queue in step,
/// and takes the key out of `stale`. Returns whether the key had a visible value before.
#[allow(clippy::too_many_arguments)]
fn upsert(
    gc_queue: &mut BTreeSet<(Instant, NodeId, String)>,
    grace: Duration,
    node: NodeId,
    st: &mut NodeState,
    now: Instant,
    key: &str,
    version: u64,
    value: Option<Bytes>,
) -> bool {
    let mut visible = false;
    if let Ok(i) = st.find_stale(key) {
        visible = st.stale[i].value.is_some();
        st.stale.remove(i);
    }
    let expires = if value.is_none() {
        now.checked_add(grace)
    } else {
        None
    };
    let entry = Entry {
        key: key.to_owned(),
        version,
        value,
        expires,
    };
    match st.find(key) {
        Ok(i) => {
            let old = std::mem::replace(&mut st.entries[i], entry);
            visible |= old.value.is_some();
            if let Some(old_expires) = old.expires {
                gc_queue.remove(&(old_expires, node, old.key));
            }
        }
        Err(i) => st.entries.insert(i, entry),
    }
    if let Some(expires) = expires {
        gc_queue.insert((expires, node, key.to_owned()));
    }
    visible
}
