//! CYCLON membership (Voulgaris, Gavidia, van Steen, "CYCLON: Inexpensive Membership
//! Management for Unstructured P2P Overlays", 2005) as a sans-IO state machine.
//!
//! Each node keeps a small *partial view* of `c` [`Descriptor`]s (node id, address, age) and
//! once a period exchanges up to `l` of them with the neighbour it has heard of longest ago.
//! Entries are swapped, not copied, so the directed graph of views stays close to a random
//! graph in which every node has out-degree `c` and in-degree close to `c`, dead nodes age out
//! and the overlay stays connected without any node knowing the whole membership:
//!
//! ```text
//!   P: age all by 1, Q = oldest                 Q (any time)
//!   view_P - Q  ---- Shuffle [P@0, l-1 of P's] ---->  reply: l of view_Q (not P)
//!               <------- ShuffleReply [l of Q's] ---  merge P's entries
//!   merge Q's entries
//!   merge: drop self and held entries; fill empty slots, then replace the entries sent
//! ```
//!
//! After a shuffle the link P → Q is reversed (Q now holds P's fresh entry), which is why the
//! in-degree stays balanced, and a node that does not answer simply loses the entry: CYCLON
//! needs no separate failure detector, but uses one ([`Cyclon::handle_peer_dead`]) when there
//! is. The view is also the peer sample of the node's other protocols:
//! [`Cyclon::select`] draws from it, and [`CyclonEvent`]s tell a discovery table what entered
//! and left it. The rules are listed on [`Cyclon`]; the wire shapes are [`Shuffle`] and
//! [`ShuffleReply`], bounded in [`wire_bound`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::id::NodeId;

mod config;

pub use config::CyclonConfig;

#[cfg(test)]
mod tests;

/// One entry of a partial view, and what shuffles carry: a node, where to reach it, and how
/// many of its holders' periods have passed since the node created it.
///
/// On the wire (bincode 2 through serde) at most [`Descriptor::ENCODED_LEN_BOUND`] = 57 bytes;
/// see [`wire_bound`]. An IPv6 address travels without its flow info and scope id (serde's
/// compact form of `SocketAddrV6`), so those arrive as 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Descriptor {
    /// The node this entry points at.
    pub node: NodeId,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// 0 when the node put its own fresh entry in a shuffle; each holder adds 1 at every one of
    /// its periods (saturating). The oldest entry is the next shuffle partner.
    pub age: u32,
}

impl Descriptor {
    /// Upper bound on one encoded descriptor, in bytes (see [`wire_bound::DESCRIPTOR`]).
    pub const ENCODED_LEN_BOUND: usize = wire_bound::DESCRIPTOR;
}

/// A shuffle request (wire type 19, `CyclonShuffle`): the initiator's fresh self-entry (age 0)
/// and up to `l − 1` entries of its view. A receiver rejects one with more than its
/// `shuffle_length` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shuffle {
    /// The entries offered, the initiator's own first.
    pub entries: Vec<Descriptor>,
}

impl Shuffle {
    /// An upper bound, in bytes, on this shuffle's encoding, without the 49 bytes of
    /// envelope header and variant ([`wire_bound::ENVELOPE_OVERHEAD`]); see [`wire_bound::entries`].
    pub fn encoded_len_bound(&self) -> usize {
        wire_bound::entries(self.entries.len())
    }
}

/// The answer to a [`Shuffle`] (wire type 20, `CyclonShuffleReply`): up to `l` entries of the
/// partner's view, never the initiator's own. An initiator rejects one with more than its
/// `shuffle_length` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffleReply {
    /// The entries offered in return.
    pub entries: Vec<Descriptor>,
}

impl ShuffleReply {
    /// An upper bound, in bytes, on this reply's encoding, without the 49 bytes of envelope
    /// header and variant ([`wire_bound::ENVELOPE_OVERHEAD`]); see [`wire_bound::entries`].
    pub fn encoded_len_bound(&self) -> usize {
        wire_bound::entries(self.entries.len())
    }
}

/// Conservative encoded sizes of the CYCLON messages under the encoding `gossip-net` uses
/// (bincode 2, standard configuration: little-endian, variable-length integers, serde's
/// non-human-readable forms). A test encodes the extremes with bincode and checks them.
///
/// | field | encoding | bytes |
/// |---|---|---|
/// | `node: NodeId` | 32 raw bytes (a `[u8; 32]` is a tuple of `u8`s) | 32 |
/// | `addr: SocketAddr` | enum index `V4`/`V6` (varint, 1) + octets as a tuple of `u8`s (4 or 16) + port (varint `u16`: 1 below 251, else 3) | ≤ 8 (v4), ≤ 20 (v6) |
/// | `age: u32` | varint: 1 below 251, 3 below 2^16, else 5 | ≤ 5 |
/// | `Vec<Descriptor>` | length prefix (varint: 1 below 251, 3 below 2^16) + entries | ≤ 3 + 57 · n |
pub mod wire_bound {
    use crate::id::NodeId;
    use crate::message::wire_bound::{LENGTH_PREFIX, VARIANT};

    /// A `SocketAddr`: variant index, 16 IPv6 octets, port as a varint `u16` (3 bytes above
    /// 250). An IPv4 address takes at most 8.
    pub const SOCKET_ADDR: usize = VARIANT + 16 + 3;
    /// An age (`u32` varint, at most 5 bytes).
    pub const AGE: usize = 5;
    /// One [`Descriptor`](super::Descriptor): 32 + 20 + 5 = 57 bytes. Exact for an IPv6
    /// address with a port above 250 and an age of 2^16 or more; 45 for IPv4 with such a port
    /// and age, 39 for IPv4 with a port and an age below 251.
    pub const DESCRIPTOR: usize = NodeId::LEN + SOCKET_ADDR + AGE;
    /// What the envelope adds around a [`Shuffle`](super::Shuffle) or
    /// [`ShuffleReply`](super::ShuffleReply): the sender id (32) and the `Message` variant
    /// index (1).
    pub const ENVELOPE_OVERHEAD: usize = crate::message::wire_bound::ENVELOPE_HEADER + VARIANT;

    /// Bound on a [`Shuffle`](super::Shuffle) or [`ShuffleReply`](super::ShuffleReply) of `n`
    /// entries: length prefix (3 below 65,536 entries, else 9) + `n` · 57. For the default
    /// `l = 8`: 459 bytes, 508 with the envelope.
    pub const fn entries(n: usize) -> usize {
        let prefix = if n < 65_536 { LENGTH_PREFIX } else { 9 };
        prefix + n.saturating_mul(DESCRIPTOR)
    }

    /// Most entries one shuffle or reply may carry so that its envelope is at most
    /// `max_envelope_len` bytes: `(max_envelope_len − 36) / 57`, 23 for the default 1,364.
    pub const fn entries_per_message(max_envelope_len: usize) -> usize {
        let fixed = ENVELOPE_OVERHEAD + LENGTH_PREFIX;
        if max_envelope_len <= fixed {
            0
        } else {
            (max_envelope_len - fixed) / DESCRIPTOR
        }
    }
}

/// A CYCLON message, as [`Cyclon::poll_transmit`] produces it. The shell carries it in the
/// matching `Message` variant (types 19 and 20) of an envelope from the local node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CyclonMessage {
    /// A shuffle request, to be answered with a [`ShuffleReply`].
    Shuffle(Shuffle),
    /// The answer to a received shuffle.
    Reply(ShuffleReply),
}

impl CyclonMessage {
    /// An upper bound on the encoded message without envelope and variant (see
    /// [`wire_bound`]); with [`wire_bound::ENVELOPE_OVERHEAD`] it is at most the configured
    /// [`max_envelope_len`](CyclonConfig::max_envelope_len).
    pub fn encoded_len_bound(&self) -> usize {
        match self {
            CyclonMessage::Shuffle(s) => s.encoded_len_bound(),
            CyclonMessage::Reply(r) => r.encoded_len_bound(),
        }
    }
}

/// A message to send to one peer, produced by [`Cyclon::poll_transmit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CyclonTransmit {
    /// The peer's UDP address.
    pub to: SocketAddr,
    /// What to send.
    pub message: CyclonMessage,
}

/// A change of the view, produced by [`Cyclon::poll_event`].
///
/// The view is a moving sample: a node leaves it at every shuffle with it and whenever its
/// entry is swapped away, and may come back later. `NeighborDown` therefore does not mean the
/// node failed. A discovery table fed from these events holds exactly the view.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CyclonEvent {
    /// `node` entered the view at `addr`.
    NeighborUp {
        /// The node.
        node: NodeId,
        /// Its address as held in the view.
        addr: SocketAddr,
    },
    /// `node`, held at `addr`, left the view.
    NeighborDown {
        /// The node.
        node: NodeId,
        /// The address it was held at.
        addr: SocketAddr,
    },
}

/// Counters of a [`Cyclon`], each a running total since construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CyclonStats {
    /// Periods run: each aged the view by one.
    pub periods: u64,
    /// Shuffles started (with the oldest neighbour, or with a seed).
    pub shuffles_sent: u64,
    /// Of `shuffles_sent`, those sent to a seed to join (rule 6 on [`Cyclon`]).
    pub join_shuffles: u64,
    /// Shuffles not started because `max_pending` shuffles were outstanding.
    pub shuffles_skipped: u64,
    /// Periods with an empty view that started no shuffle (no seed, or all waited on).
    pub idle_periods: u64,
    /// Shuffles received, all of them.
    pub shuffles_received: u64,
    /// Received shuffles with more than `shuffle_length` entries: not answered, not merged.
    pub oversized_shuffles: u64,
    /// Replies sent.
    pub replies_sent: u64,
    /// Replies received, all of them.
    pub replies_received: u64,
    /// Replies that answered a pending shuffle and were merged.
    pub replies_merged: u64,
    /// Replies matching no pending shuffle (unsolicited, from another address or node, or
    /// after the shuffle timed out): ignored.
    pub unexpected_replies: u64,
    /// Replies with more than `shuffle_length` entries to a pending shuffle: the shuffle is
    /// closed without a merge.
    pub oversized_replies: u64,
    /// Shuffles and replies whose sender is the local node, or whose source is the local
    /// address: ignored.
    pub own_messages: u64,
    /// Shuffles that got no reply within `shuffle_timeout`: the partner stays out of the view.
    pub shuffles_unanswered: u64,
    /// Pending shuffles abandoned because their partner was declared dead.
    pub pending_cancelled: u64,
    /// Received entries that entered the view (into an empty slot or replacing a sent one).
    pub entries_added: u64,
    /// Of `entries_added`, those that replaced an entry sent to the partner.
    pub entries_replaced: u64,
    /// Received entries for this node (by id or by address): discarded.
    pub discarded_self: u64,
    /// Received entries for a node (or an address) already in the view: discarded.
    pub discarded_held: u64,
    /// Received entries a sender gave for itself while the view already held it: the held
    /// entry took the younger age instead.
    pub sender_refreshed: u64,
    /// Received entries for a node remembered as dead: discarded.
    pub discarded_dead: u64,
    /// Received entries for which no empty slot and no sent entry was left: discarded.
    pub discarded_no_room: u64,
    /// Unanswered shuffles retried at once with the new oldest entry (at most one per period).
    pub retries: u64,
    /// Calls of [`Cyclon::handle_peer_dead`].
    pub peers_declared_dead: u64,
    /// Of those, nodes that were in the view and left it.
    pub dead_removed_from_view: u64,
    /// Dead nodes forgotten early because `max_dead` were remembered.
    pub dead_evictions: u64,
    /// Seed addresses remembered.
    pub seeds_added: u64,
    /// Seeds refused: the local address or id, or `max_seeds` already remembered.
    pub seeds_refused: u64,
    /// Transmits dropped because `output_queue_capacity` outputs were queued.
    pub transmits_dropped: u64,
    /// Events dropped because `output_queue_capacity` outputs were queued.
    pub events_dropped: u64,
}

/// Current sizes of a [`Cyclon`]'s collections, each within the configured bound named in its
/// doc.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CyclonOccupancy {
    /// Entries in the view (≤ `view_size`).
    pub view: usize,
    /// Remembered seed addresses (≤ `max_seeds`).
    pub seeds: usize,
    /// Outstanding shuffles (≤ `max_pending`).
    pub pending: usize,
    /// Nodes remembered as dead (≤ `max_dead`).
    pub dead: usize,
    /// Queued transmits; with `queued_events` ≤ `output_queue_capacity`.
    pub queued_transmits: usize,
    /// Queued events; with `queued_transmits` ≤ `output_queue_capacity`.
    pub queued_events: usize,
}

/// A shuffle this node started and waits on.
#[derive(Clone, Debug)]
struct Pending {
    /// Where it went; the reply must come from here.
    to: SocketAddr,
    /// The partner's id; `None` for a seed known only by address, whose id is whatever the
    /// reply's envelope says.
    node: Option<NodeId>,
    /// The view entries sent (not the self-entry), in order: the ones the reply may replace.
    sent: Vec<NodeId>,
    deadline: Instant,
}

/// CYCLON's enhanced shuffling, as a sans-IO state machine.
///
/// # Call order
///
/// The core never does IO, never reads a clock and draws randomness only from its own `R`.
/// The shell (an actor, a simulator, a test) drives it like a quinn `Connection`:
///
/// 1. **Construction**: [`new`](Self::new) with the local id and address, a validated config,
///    a seeded rng and the current time; then [`add_seed`](Self::add_seed) for each seed.
/// 2. **Inputs**: [`handle_shuffle`](Self::handle_shuffle) and
///    [`handle_shuffle_reply`](Self::handle_shuffle_reply) for every authenticated datagram of
///    the two CYCLON types, [`handle_peer_dead`](Self::handle_peer_dead) when the failure
///    detector gives a node up, [`handle_timeout`](Self::handle_timeout) when the timer fires.
/// 3. **Outputs**: after *every* input (and `add_seed`), drain
///    [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event) until they
///    return `None`, then re-arm the one timer at [`poll_timeout`](Self::poll_timeout).
///    Calling `handle_timeout` early or late is harmless: only what is due runs, and missed
///    periods are not caught up.
/// 4. **Queries**, any time: [`select`](Self::select) (peers for other protocols, uses the
///    rng), [`view`](Self::view), [`contains`](Self::contains), [`stats`](Self::stats),
///    [`occupancy`](Self::occupancy), [`config`](Self::config).
///
/// Outputs beyond [`output_queue_capacity`](CyclonConfig::output_queue_capacity) are dropped
/// and counted, which a caller that drains after every input never sees.
///
/// # Protocol
///
/// Rules 1–5 are the paper's enhanced shuffling (section 2.2, `c` = `view_size`, `l` =
/// `shuffle_length`) with the refinements marked *ours*; rules 6–8 are ours. Each refinement
/// keeps the paper's invariant that a shuffle *swaps* entries (every node keeps its in-degree
/// except P, which gains the entry it hands Q, and Q, which loses P's entry for it) in a case
/// where the literal rules copy or lose one. The 1,000-node scenario measures the effect: an
/// in-degree standard deviation of 1.7–1.8 after 100 cycles (c = 20, l = 8, 22 seeds),
/// against about 2.7 with the rules as the paper states them (2.4–2.5 in a synchronous
/// cycle-by-cycle model of the paper) and √c ≈ 4.5 for a random graph.
///
/// 1. **Period** (every `shuffle_interval`, first at a random phase in the first interval so
///    that nodes do not shuffle in lock-step): add one to the age of every entry; pick the
///    oldest entry Q (ties broken at random); remove Q from the view (`NeighborDown`); send Q a
///    [`Shuffle`] of a fresh self-entry (age 0, first) and `l − 1` other entries drawn
///    uniformly from the view (all of them if fewer); remember the entries sent. Q's slot is
///    kept free for Q's reply (*ours*: otherwise a shuffle received meanwhile takes it and the
///    reply no longer fits).
/// 2. **Shuffle received** from P (at most `l` entries, else rejected whole): answer with a
///    [`ShuffleReply`] of up to `l` entries, then merge P's entries, the reply's entries being
///    the ones that may be replaced. The reply holds, first, this node's entries for nodes P
///    offered (*ours*: P keeps its copy of each, so neither side loses it), then entries drawn
///    uniformly from the rest of the view, leaving out P's own entry (P would discard it, and
///    this node would lose its link to P) and entries promised to a shuffle of this node's own
///    that is still waiting for its reply (*ours*: so that reply still finds them to replace).
/// 3. **Reply received**: merged only if it comes from the address (and node, when known) of a
///    pending shuffle and has at most `l` entries; otherwise ignored and counted. The entries
///    sent in rule 1 are the ones that may be replaced. Q does not come back by itself.
/// 4. **Merge**, youngest received entry first: discard entries for this node (by id or
///    address), for nodes remembered dead (rule 7) and for nodes (or addresses) already held;
///    put the rest into empty slots first, then in place of the entries sent; drop what is left
///    (`discarded_no_room`). Entries keep their age. *Ours*: an entry the partner sent back is
///    one it already held, so it is not replaced here; of the other entries sent, the youngest
///    are replaced first when the view is full (the copy kept when fewer arrive than were
///    sent then expires first) and the oldest first when slots are free after failures (the
///    copies kept are then the likeliest alive). The entry a sender gives for itself takes the
///    datagram's source address (a node that advertises a wildcard address stays reachable),
///    and if the sender is already held it refreshes that entry's age instead (*ours*).
/// 5. **Unanswered**: a shuffle with no reply after `shuffle_timeout` is closed; Q, already out
///    of the view, stays out. So a crashed node leaves every view without a failure detector:
///    its entries only grow older until each holder picks it as oldest, sends to it and gets
///    no answer. *Ours*: the first unanswered shuffle of a period is retried at once with the
///    new oldest entry (no extra ageing), so the fresh self-entry still goes out and dead
///    entries leave sooner; with the defaults that is at most two shuffles a period (three
///    while joining).
/// 6. **Join** (bootstrap): until a seed has answered, every period also sends a shuffle
///    (rule 1, but nothing is removed) to a random seed address not already waited on; the
///    seed learns of this node from the self-entry and answers with some of its view. A seed
///    known only by address is matched by address; its id is the reply's sender. Joining
///    through a seed even when others have already filled the view keeps groups of nodes that
///    joined through different seeds from forming separate overlays. A node whose view empties
///    joins again the same way.
/// 7. **Dead** ([`handle_peer_dead`](Self::handle_peer_dead)): the node leaves the view at once,
///    a shuffle waiting on it is closed, and its entries are refused for `dead_retention`
///    (up to `max_dead` nodes) unless the node itself sends a shuffle or a reply.
/// 8. **Bounds**: every collection has a configured bound ([`CyclonOccupancy`]).
///
/// No received message can panic the core; everything refused or dropped is counted in
/// [`CyclonStats`].
///
/// # Determinism
///
/// The view is a `BTreeMap` by node id, seeds a `BTreeSet`, pending shuffles a list in the
/// order sent; the rng draws the first phase, the tie-break among oldest entries and every
/// random subset. The same seed and the same inputs give the same outputs.
///
/// # Example
///
/// ```
/// use std::net::SocketAddr;
/// use std::time::{Duration, Instant};
/// use gossip_core::NodeId;
/// use gossip_core::membership::{Cyclon, CyclonConfig, CyclonEvent, CyclonMessage};
/// use rand::SeedableRng;
/// use rand::rngs::StdRng;
///
/// let now = Instant::now(); // the shell reads the clock; the core never does
/// let (a_id, b_id) = (NodeId([1; 32]), NodeId([2; 32]));
/// let a_addr: SocketAddr = "10.0.0.1:7000".parse()?;
/// let b_addr: SocketAddr = "10.0.0.2:7000".parse()?;
/// let config = CyclonConfig::default();
/// let mut a = Cyclon::new(a_id, a_addr, config.clone(), StdRng::seed_from_u64(1), now)?;
/// let mut b = Cyclon::new(b_id, b_addr, config, StdRng::seed_from_u64(2), now)?;
///
/// // a joins through b, knowing only b's address.
/// a.add_seed(now, None, b_addr);
/// let t = a.poll_timeout().unwrap(); // a random phase within the first second
/// a.handle_timeout(t);
/// let shuffle = a.poll_transmit().unwrap();
/// assert_eq!(shuffle.to, b_addr);
/// let CyclonMessage::Shuffle(shuffle) = shuffle.message else { unreachable!() };
///
/// // b learns of a from a's fresh self-entry and answers (with nothing: its view was empty).
/// b.handle_shuffle(t, a_addr, a_id, shuffle);
/// assert_eq!(b.poll_event(), Some(CyclonEvent::NeighborUp { node: a_id, addr: a_addr }));
/// let reply = b.poll_transmit().unwrap();
/// assert_eq!(reply.to, a_addr);
/// let CyclonMessage::Reply(reply) = reply.message else { unreachable!() };
/// a.handle_shuffle_reply(t + Duration::from_millis(5), b_addr, b_id, reply);
/// assert_eq!(a.stats().replies_merged, 1);
/// assert_eq!(b.view().map(|d| d.node).collect::<Vec<_>>(), vec![a_id]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Cyclon<R: Rng> {
    local: NodeId,
    local_addr: SocketAddr,
    config: CyclonConfig,
    rng: R,
    /// The partial view, at most `view_size` entries, by node id.
    view: BTreeMap<NodeId, Descriptor>,
    /// Seed addresses, at most `max_seeds`.
    seeds: BTreeSet<SocketAddr>,
    /// Outstanding shuffles in the order sent, at most `max_pending`.
    pending: VecDeque<Pending>,
    /// Nodes declared dead and when, at most `max_dead`.
    dead: BTreeMap<NodeId, Instant>,
    /// `(declared, node)` of every entry of `dead`, earliest first.
    dead_order: BTreeSet<(Instant, NodeId)>,
    transmits: VecDeque<CyclonTransmit>,
    events: VecDeque<CyclonEvent>,
    /// The next period; `None` only if the clock would overflow.
    next_period: Option<Instant>,
    /// Whether a seed has answered a join shuffle since the view was last empty.
    joined: bool,
    /// Whether this period already retried an unanswered shuffle.
    retried: bool,
    stats: CyclonStats,
}

impl<R: Rng> std::fmt::Debug for Cyclon<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cyclon")
            .field("local", &self.local)
            .field("local_addr", &self.local_addr)
            .field("occupancy", &self.occupancy())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<R: Rng> Cyclon<R> {
    // ----- construction -----

    /// A core for node `local`, reachable at `local_addr` (the address its self-entry
    /// advertises), started at `now` with an empty view.
    ///
    /// Draws the phase of the first period (uniform in `[0, shuffle_interval)` after `now`)
    /// from `rng`.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` fails [`CyclonConfig::validate`]; nothing is built.
    pub fn new(
        local: NodeId,
        local_addr: SocketAddr,
        config: CyclonConfig,
        mut rng: R,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let interval = u64::try_from(config.shuffle_interval.as_nanos()).unwrap_or(u64::MAX);
        let phase = Duration::from_nanos(rng.random_range(0..interval));
        Ok(Cyclon {
            local,
            local_addr,
            rng,
            view: BTreeMap::new(),
            seeds: BTreeSet::new(),
            pending: VecDeque::new(),
            dead: BTreeMap::new(),
            dead_order: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_period: now.checked_add(phase),
            joined: false,
            retried: false,
            stats: CyclonStats::default(),
            config,
        })
    }

    /// Bootstrap: remembers the seed `addr` (up to `max_seeds`), with its node id if known.
    ///
    /// A seed with a known `node` also enters the view at once (age 0, `NeighborUp`) if there
    /// is room and neither it nor its address is held, and is no longer remembered as dead.
    /// Until one seed has answered, every period also shuffles with a random seed (rule 6 on
    /// [`Cyclon`]).
    /// The local address or id is refused, as is a new address beyond `max_seeds`; both are
    /// counted in `seeds_refused`.
    pub fn add_seed(&mut self, now: Instant, node: Option<NodeId>, addr: SocketAddr) {
        let _ = now;
        if addr == self.local_addr || node == Some(self.local) {
            self.stats.seeds_refused += 1;
            return;
        }
        if !self.seeds.contains(&addr) {
            if self.seeds.len() < self.config.max_seeds {
                self.seeds.insert(addr);
                self.stats.seeds_added += 1;
            } else {
                self.stats.seeds_refused += 1;
            }
        }
        if let Some(node) = node {
            self.forget_dead(&node);
            if self.view.len() < self.config.view_size && !self.holds(&node, &addr) {
                self.insert(Descriptor { node, addr, age: 0 });
            }
        }
    }

    // ----- getters -----

    /// The configuration this core was built with.
    pub fn config(&self) -> &CyclonConfig {
        &self.config
    }

    /// The local node's id.
    pub fn local_id(&self) -> NodeId {
        self.local
    }

    /// The address the local node advertises in its self-entry.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The view, in node id order (stable between calls that change nothing).
    pub fn view(&self) -> impl Iterator<Item = &Descriptor> + '_ {
        self.view.values()
    }

    /// Whether `node` is in the view.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.view.contains_key(node)
    }

    /// Whether a seed has answered this node's join shuffle since its view was last empty
    /// (rule 6 on [`Cyclon`]); until then every period also shuffles with a seed.
    pub fn joined(&self) -> bool {
        self.joined
    }

    /// Counters since construction.
    pub fn stats(&self) -> CyclonStats {
        self.stats
    }

    /// Current sizes of the bounded collections.
    pub fn occupancy(&self) -> CyclonOccupancy {
        CyclonOccupancy {
            view: self.view.len(),
            seeds: self.seeds.len(),
            pending: self.pending.len(),
            dead: self.dead.len(),
            queued_transmits: self.transmits.len(),
            queued_events: self.events.len(),
        }
    }

    /// Chooses `n` distinct addresses uniformly at random from the view, none in `exclude`
    /// (all eligible ones, in random order, if fewer): the peer sample for other protocols.
    ///
    /// Every `n`-subset of the eligible entries is equally likely (a partial Fisher–Yates
    /// shuffle over the view in node id order); the view holds no address twice. Draws from
    /// the core's rng, so it is part of a seeded run. Cost O(c + |exclude| log |exclude|).
    pub fn select(&mut self, n: usize, exclude: &[SocketAddr]) -> Vec<SocketAddr> {
        let excluded: BTreeSet<&SocketAddr> = exclude.iter().collect();
        let mut eligible: Vec<SocketAddr> = self
            .view
            .values()
            .map(|d| d.addr)
            .filter(|addr| !excluded.contains(addr))
            .collect();
        partial_shuffle(&mut self.rng, &mut eligible, n);
        eligible
    }

    // ----- inputs -----

    /// Input: a [`Shuffle`] received at `now` in a datagram from `from`, sealed by `sender`.
    ///
    /// Rule 2 on [`Cyclon`]: queues a [`ShuffleReply`] to `from` and merges the entries
    /// (rule 4). A shuffle with more than `shuffle_length` entries is ignored whole (counted
    /// in `oversized_shuffles`), as is one from the local node or address. A shuffle from a node
    /// remembered as dead proves it alive and clears it.
    pub fn handle_shuffle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        shuffle: Shuffle,
    ) {
        self.stats.shuffles_received += 1;
        if sender == self.local || from == self.local_addr {
            self.stats.own_messages += 1;
            return;
        }
        if shuffle.entries.len() > self.config.shuffle_length {
            self.stats.oversized_shuffles += 1;
            return;
        }
        self.forget_dead(&sender);
        let chosen = self.reply_entries(&sender, &shuffle.entries);
        let entries = chosen
            .iter()
            .filter_map(|node| self.view.get(node).copied())
            .collect();
        let reply = CyclonMessage::Reply(ShuffleReply { entries });
        // Entries not actually sent must not be replaced.
        let sent = if self.queue_transmit(from, reply) {
            self.stats.replies_sent += 1;
            chosen
        } else {
            Vec::new()
        };
        self.merge(now, from, sender, shuffle.entries, sent, false);
    }

    /// Input: a [`ShuffleReply`] received at `now` in a datagram from `from`, sealed by
    /// `sender`.
    ///
    /// Rule 3 on [`Cyclon`]: merged (rule 4) if it answers the oldest pending shuffle sent to
    /// `from` (whose partner is `sender`, when its id was known); otherwise ignored and counted
    /// in `unexpected_replies`. A reply with more than `shuffle_length` entries closes that
    /// shuffle without a merge (`oversized_replies`).
    pub fn handle_shuffle_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        reply: ShuffleReply,
    ) {
        self.stats.replies_received += 1;
        if sender == self.local || from == self.local_addr {
            self.stats.own_messages += 1;
            return;
        }
        let Some(index) = self
            .pending
            .iter()
            .position(|p| p.to == from && p.node.is_none_or(|n| n == sender))
        else {
            self.stats.unexpected_replies += 1;
            return;
        };
        let Some(pending) = self.pending.remove(index) else {
            return;
        };
        if reply.entries.len() > self.config.shuffle_length {
            self.stats.oversized_replies += 1;
            return;
        }
        self.stats.replies_merged += 1;
        if pending.node.is_none() {
            self.joined = true;
        }
        self.forget_dead(&sender);
        let own_slot = pending.node.is_some();
        self.merge(now, from, sender, reply.entries, pending.sent, own_slot);
    }

    /// Input: the failure detector declared `node` dead at `now` (rule 7 on [`Cyclon`]).
    ///
    /// It leaves the view at once (`NeighborDown`), a shuffle waiting on it is closed (counted
    /// in `pending_cancelled`), and entries for it are refused for `dead_retention` (at most
    /// `max_dead` nodes remembered, earliest declared forgotten first). The local id is
    /// ignored.
    pub fn handle_peer_dead(&mut self, now: Instant, node: NodeId) {
        self.stats.peers_declared_dead += 1;
        if node == self.local {
            return;
        }
        if let Some(d) = self.view.remove(&node) {
            self.stats.dead_removed_from_view += 1;
            self.queue_event(CyclonEvent::NeighborDown { node, addr: d.addr });
        }
        let before = self.pending.len();
        self.pending.retain(|p| p.node != Some(node));
        self.stats.pending_cancelled += (before - self.pending.len()) as u64;
        self.remember_dead(now, node);
    }

    /// Input: the timer armed at [`poll_timeout`](Self::poll_timeout) fired at `now`.
    ///
    /// Closes every pending shuffle whose `shuffle_timeout` has passed and retries once per
    /// period (rule 5), forgets dead nodes older than `dead_retention`, and runs the period
    /// (rules 1 and 6) if it is due; the next period is `shuffle_interval` after `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let before = self.pending.len();
        self.pending.retain(|p| p.deadline > now);
        let unanswered = before - self.pending.len();
        self.stats.shuffles_unanswered += unanswered as u64;
        while let Some(&(declared, node)) = self.dead_order.first() {
            if now.saturating_duration_since(declared) < self.config.dead_retention {
                break;
            }
            self.dead_order.pop_first();
            self.dead.remove(&node);
        }
        let period_due = self.next_period.is_some_and(|t| t <= now);
        if unanswered > 0
            && !period_due
            && !self.retried
            && !self.view.is_empty()
            && let Some(deadline) = now.checked_add(self.config.shuffle_timeout)
            && self.may_start_shuffle()
        {
            self.retried = true;
            self.stats.retries += 1;
            self.shuffle_with_oldest(deadline);
        }
        if self.next_period.is_some_and(|t| t <= now) {
            self.period(now);
            self.next_period = now.checked_add(self.config.shuffle_interval);
        }
    }

    // ----- outputs -----

    /// Output: the next message to send, oldest first; `None` when the queue is empty.
    pub fn poll_transmit(&mut self) -> Option<CyclonTransmit> {
        self.transmits.pop_front()
    }

    /// Output: the next view change, oldest first; `None` when the queue is empty.
    pub fn poll_event(&mut self) -> Option<CyclonEvent> {
        self.events.pop_front()
    }

    /// Output: when to call [`handle_timeout`](Self::handle_timeout) next: the earlier of the
    /// next period and the first pending shuffle's deadline. `None` only if the clock would
    /// overflow. The instant may be in the past: fire at once.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.iter().map(|p| p.deadline).min();
        [self.next_period, pending].into_iter().flatten().min()
    }

    // ----- internals -----

    fn has_room(&self) -> bool {
        self.transmits.len() + self.events.len() < self.config.output_queue_capacity
    }

    /// Queues a transmit unless the output queue is full; `true` if queued.
    fn queue_transmit(&mut self, to: SocketAddr, message: CyclonMessage) -> bool {
        if !self.has_room() {
            self.stats.transmits_dropped += 1;
            return false;
        }
        self.transmits.push_back(CyclonTransmit { to, message });
        true
    }

    fn queue_event(&mut self, event: CyclonEvent) {
        if !self.has_room() {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    /// Whether `node`, or another node at `addr`, is in the view.
    fn holds(&self, node: &NodeId, addr: &SocketAddr) -> bool {
        self.view.contains_key(node) || self.view.values().any(|d| d.addr == *addr)
    }

    fn insert(&mut self, d: Descriptor) {
        self.view.insert(d.node, d);
        self.queue_event(CyclonEvent::NeighborUp {
            node: d.node,
            addr: d.addr,
        });
    }

    fn is_dead(&self, node: &NodeId, now: Instant) -> bool {
        self.dead
            .get(node)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.config.dead_retention)
    }

    fn forget_dead(&mut self, node: &NodeId) {
        if let Some(at) = self.dead.remove(node) {
            self.dead_order.remove(&(at, *node));
        }
    }

    fn remember_dead(&mut self, now: Instant, node: NodeId) {
        if self.config.max_dead == 0 {
            return;
        }
        self.forget_dead(&node);
        while self.dead.len() >= self.config.max_dead {
            let Some((_, oldest)) = self.dead_order.pop_first() else {
                break;
            };
            self.dead.remove(&oldest);
            self.stats.dead_evictions += 1;
        }
        self.dead.insert(node, now);
        self.dead_order.insert((now, node));
    }

    /// Rule 2: the entries to answer `sender`'s shuffle with: first those held for nodes the
    /// shuffle offers (in its order), then entries drawn uniformly from the rest of the view,
    /// `sender` excluded, `shuffle_length` in all.
    fn reply_entries(&mut self, sender: &NodeId, offered: &[Descriptor]) -> Vec<NodeId> {
        let l = self.config.shuffle_length;
        let mut chosen: Vec<NodeId> = Vec::new();
        for d in offered {
            if chosen.len() < l
                && d.node != *sender
                && self.view.contains_key(&d.node)
                && !chosen.contains(&d.node)
            {
                chosen.push(d.node);
            }
        }
        // Entries promised to a pending shuffle stay put until its reply replaces them.
        let promised: BTreeSet<&NodeId> = self.pending.iter().flat_map(|p| &p.sent).collect();
        let mut rest: Vec<NodeId> = self
            .view
            .keys()
            .filter(|node| *node != sender && !chosen.contains(node) && !promised.contains(node))
            .copied()
            .collect();
        partial_shuffle(&mut self.rng, &mut rest, l - chosen.len());
        chosen.extend(rest);
        chosen
    }

    /// Up to `n` distinct view entries drawn uniformly, `exclude` left out.
    fn random_entries(&mut self, n: usize, exclude: Option<&NodeId>) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .view
            .keys()
            .filter(|node| Some(*node) != exclude)
            .copied()
            .collect();
        partial_shuffle(&mut self.rng, &mut nodes, n);
        nodes
    }

    /// Rules 1 and 6: age the view, shuffle with the oldest neighbour, and with a seed while
    /// not joined.
    fn period(&mut self, now: Instant) {
        self.stats.periods += 1;
        self.retried = false;
        for d in self.view.values_mut() {
            d.age = d.age.saturating_add(1);
        }
        if self.view.is_empty() {
            self.joined = false;
        }
        let Some(deadline) = now.checked_add(self.config.shuffle_timeout) else {
            return;
        };
        let mut sent_any = false;
        if !self.view.is_empty() && self.may_start_shuffle() {
            self.shuffle_with_oldest(deadline);
            sent_any = true;
        }
        if !self.joined && !self.seeds.is_empty() && self.may_start_shuffle() {
            sent_any |= self.join(deadline);
        }
        if !sent_any && self.view.is_empty() {
            self.stats.idle_periods += 1;
        }
    }

    /// Whether one more shuffle may start: fewer than `max_pending` outstanding (else counted
    /// in `shuffles_skipped`) and room for its transmit and one event (else counted in
    /// `transmits_dropped`), so that a partner is never removed without being sent to.
    fn may_start_shuffle(&mut self) -> bool {
        if self.pending.len() >= self.config.max_pending {
            self.stats.shuffles_skipped += 1;
            return false;
        }
        if self.transmits.len() + self.events.len() + 2 > self.config.output_queue_capacity {
            self.stats.transmits_dropped += 1;
            return false;
        }
        true
    }

    /// This node's fresh entry, as it starts every shuffle.
    fn self_entry(&self) -> Descriptor {
        Descriptor {
            node: self.local,
            addr: self.local_addr,
            age: 0,
        }
    }

    /// Rule 1 on a non-empty view: remove the oldest entry Q and send it the self-entry and
    /// `l − 1` random others.
    fn shuffle_with_oldest(&mut self, deadline: Instant) {
        let Some(oldest_age) = self.view.values().map(|d| d.age).max() else {
            return;
        };
        let oldest: Vec<NodeId> = self
            .view
            .values()
            .filter(|d| d.age == oldest_age)
            .map(|d| d.node)
            .collect();
        let q = oldest[self.rng.random_range(0..oldest.len())];
        let Some(q) = self.view.remove(&q) else {
            return;
        };
        self.queue_event(CyclonEvent::NeighborDown {
            node: q.node,
            addr: q.addr,
        });
        self.send_shuffle(q.addr, Some(q.node), deadline);
    }

    /// Rule 6: shuffle with a random seed not already waited on; `false` if there is none.
    fn join(&mut self, deadline: Instant) -> bool {
        let candidates: Vec<SocketAddr> = self
            .seeds
            .iter()
            .filter(|addr| !self.pending.iter().any(|p| p.to == **addr))
            .copied()
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let to = candidates[self.rng.random_range(0..candidates.len())];
        self.send_shuffle(to, None, deadline);
        self.stats.join_shuffles += 1;
        true
    }

    /// Queues a shuffle of the self-entry and `l − 1` random view entries to `to` and
    /// remembers it as pending.
    fn send_shuffle(&mut self, to: SocketAddr, node: Option<NodeId>, deadline: Instant) {
        let sent = self.random_entries(self.config.shuffle_length - 1, None);
        let entries = std::iter::once(self.self_entry())
            .chain(sent.iter().filter_map(|node| self.view.get(node).copied()))
            .collect();
        self.queue_transmit(to, CyclonMessage::Shuffle(Shuffle { entries }));
        self.stats.shuffles_sent += 1;
        self.pending.push_back(Pending {
            to,
            node,
            sent,
            deadline,
        });
    }

    /// Rule 4: merges `received` from `sender` (datagram source `from`); `sent` lists the
    /// entries given to it, which may be replaced.
    fn merge(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        received: Vec<Descriptor>,
        sent: Vec<NodeId>,
        own_slot: bool,
    ) {
        // The slot of every partner still waited on is kept for its reply.
        let reserved = self.pending.iter().filter(|p| p.node.is_some()).count();
        let capacity = self.config.view_size.saturating_sub(reserved);
        // A sent entry the partner sent back is one it already held and discarded: keep it.
        let mut replaceable: Vec<(u32, NodeId)> = sent
            .into_iter()
            .filter(|node| !received.iter().any(|d| d.node == *node))
            .filter_map(|node| self.view.get(&node).map(|d| (d.age, node)))
            .collect();
        // Which sent entries go first. Those not replaced stay in both views. With the view
        // full that only happens when the partner sent entries already held here: replace the
        // youngest first, so the extra copy kept is the oldest and leaves soonest (in-degree
        // balance). With slots free beyond the awaited one (after unanswered shuffles or dead
        // peers) replace the oldest first, so the copies kept are young, likelier alive.
        let repair = self.view.len() + usize::from(own_slot) < capacity;
        if repair {
            replaceable.sort_by_key(|(age, _)| std::cmp::Reverse(*age));
        } else {
            replaceable.sort_by_key(|(age, _)| *age);
        }
        let mut replaceable = replaceable.into_iter().map(|(_, node)| node);
        // Youngest received first: if not all fit, the oldest (likeliest dead) are dropped.
        let mut received = received;
        received.sort_by_key(|d| d.age);
        for mut entry in received {
            if entry.node == sender {
                entry.addr = from;
                if let Some(held) = self.view.get_mut(&sender) {
                    held.age = held.age.min(entry.age);
                    self.stats.sender_refreshed += 1;
                    continue;
                }
            }
            if entry.node == self.local || entry.addr == self.local_addr {
                self.stats.discarded_self += 1;
                continue;
            }
            if self.is_dead(&entry.node, now) {
                self.stats.discarded_dead += 1;
                continue;
            }
            if self.holds(&entry.node, &entry.addr) {
                self.stats.discarded_held += 1;
                continue;
            }
            if self.view.len() < capacity {
                self.stats.entries_added += 1;
                self.insert(entry);
                continue;
            }
            let replaced = replaceable
                .by_ref()
                .find_map(|node| self.view.remove(&node));
            match replaced {
                Some(old) => {
                    self.queue_event(CyclonEvent::NeighborDown {
                        node: old.node,
                        addr: old.addr,
                    });
                    self.stats.entries_added += 1;
                    self.stats.entries_replaced += 1;
                    self.insert(entry);
                }
                None => self.stats.discarded_no_room += 1,
            }
        }
    }
}

/// Moves a uniformly drawn `n`-subset of `items` (all of them if fewer) to the front in random
/// order and truncates to it: a partial Fisher–Yates shuffle.
fn partial_shuffle<R: Rng + ?Sized, T>(rng: &mut R, items: &mut Vec<T>, n: usize) {
    let take = n.min(items.len());
    for i in 0..take {
        let j = rng.random_range(i..items.len());
        items.swap(i, j);
    }
    items.truncate(take);
}
