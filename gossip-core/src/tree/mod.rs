//! Per-feed epidemic broadcast trees (Secure Scuttlebutt's "EBT", ssbc/epidemic-broadcast-trees)
//! over lossy datagrams, as a sans-IO state machine.
//!
//! # Model
//!
//! Every followed feed has its own spanning tree over the connected peers. A node asks
//! exactly one peer per feed, its *eager source*, to push that feed's new messages at once;
//! every other link of the feed is *lazy* and carries only [`Notes`]: `(feed, sequence +
//! flag)` entries of the vector clock, which announce what a node holds and whether it wants
//! pushes ([`Note`] gives the `i64` encoding, SSB's). So each message crosses each node's
//! tree link once, and the lazy links keep every node informed enough to repair the tree:
//!
//! ```text
//!              A (author)       ====  eager link: new messages pushed at once
//!            //    \\           - - - lazy link: notes only
//!           B - - - C
//!          //\\      \\         D's source is B, E's is C. If B stays quiet
//!         D  F      E           for source_timeout while E announces a newer
//!          \ - - - - /          sequence, D grafts E and prunes B.
//! ```
//!
//! The per-peer, per-feed state is ssb-ebt's: local and remote sequence, local request
//! (whether we asked the peer to push: our eager source or not), remote request (whether the
//! peer asked us to push), plus what we last told the peer and how far we pushed. The rules
//! are listed on [`Tree`]; what they add to ssb-ebt is what UDP needs: nothing is
//! acknowledged, so a periodic note round retransmits whatever is still unsettled, and
//! pushes are limited per peer (ssb-ebt has no backpressure, `DESIGN.md` section 8), and a
//! source that stays quiet is replaced after a timeout instead of stalling the feed.
//!
//! # Storage and validation
//!
//! The core never reads or writes the log. It asks the shell for stored messages it must push
//! ([`StoreRequest::Fetch`] → [`Tree::handle_fetched`]), hands it each validated message to
//! append ([`TreeEvent::Received`]), and forwards a message only after the shell reports it
//! appended and durable ([`Tree::handle_appended`]). Validation (author followed, content
//! size, next sequence, previous id, signature) is done by the core against the tip of the
//! feed, so the shell appends exactly what it is given, in order. The heads, the followed
//! set and fork proofs are kept in a [`Feeds`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gossip_crypto::Identity;
use lru::LruCache;
use rand::Rng;

use crate::config::ConfigError;
use crate::feed::{
    FeedEvent, FeedId, FeedMessage, Feeds, FeedsConfig, FollowError, ForkProof, MessageHash,
    Rejection,
};
use crate::id::NodeId;

mod config;
mod wire;

pub use config::TreeConfig;
pub use wire::{
    ENVELOPE_OVERHEAD, FeedBatch, I64_BOUND, LIST_PREFIX, NOTE_ENTRY_BOUND, Note, Notes,
    TreeMessage, max_content_fit, max_struct_len, notes_per_datagram,
};

#[cfg(test)]
mod tests;

/// Most entries of one received [`Notes`] that are looked at (a 65,507-byte datagram holds
/// fewer than 1,600); the rest are ignored and counted.
pub const MAX_NOTE_ENTRIES_PER_MESSAGE: usize = 2_048;

/// Most messages of one received [`FeedBatch`] that are looked at (a 65,507-byte datagram
/// holds fewer than 450); the rest are ignored and counted.
pub const MAX_MESSAGES_PER_BATCH: usize = 512;

/// A message to send, from [`Tree::poll_transmit`]. The shell wraps it in an envelope
/// (`Message::TreeNotes` / `Message::TreeBatch`) with the local node id as sender; its
/// [`TreeMessage::encoded_len_bound`] is at most `max_envelope_len − 49`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The peer it is for.
    pub to: NodeId,
    /// The peer's address, as given to [`Tree::handle_peer_up`].
    pub addr: SocketAddr,
    /// What to send.
    pub message: TreeMessage,
}

/// Something for the shell or the application, from [`Tree::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeEvent {
    /// `message` is the next message of its feed (`message.author`), received from `from`
    /// and validated (content size, sequence, previous id, signature). The shell MUST append
    /// it to the log, in the order these events come, and once the append is durable call
    /// [`Tree::handle_appended`]; if the append fails, [`Tree::handle_append_failed`].
    Received {
        /// The peer that pushed it.
        from: NodeId,
        /// The message.
        message: FeedMessage,
    },
    /// `feed` now holds messages up to `sequence` durably ([`Tree::handle_appended`]); for
    /// the application, in feed order, each sequence once.
    FeedAdvanced {
        /// The feed.
        feed: FeedId,
        /// Its new latest sequence.
        sequence: u64,
    },
    /// The eager source of `feed` changed: `from` was pruned (or lost), `to` grafted. `from`
    /// is `None` for the first graft, `to` is `None` when no other peer could take over.
    SourceSwitched {
        /// The feed.
        feed: FeedId,
        /// The previous source.
        from: Option<NodeId>,
        /// The new source.
        to: Option<NodeId>,
    },
    /// `feed` was found forked (two messages signed by its author at one sequence); it is no
    /// longer replicated. Raised once per feed; persist the proof if forks must survive a
    /// restart.
    Forked {
        /// The feed.
        feed: FeedId,
        /// The two messages.
        proof: ForkProof,
    },
}

/// A request to the shell's storage, from [`Tree::poll_store_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreRequest {
    /// Read up to `limit` messages of `feed` starting at `from_seq`, in order, and pass them
    /// to [`Tree::handle_fetched`] (`for_peer`, `feed`); fewer (or none) if the log holds
    /// fewer. Unanswered fetches are forgotten after
    /// [`fetch_timeout`](TreeConfig::fetch_timeout).
    Fetch {
        /// The feed.
        feed: FeedId,
        /// First sequence wanted.
        from_seq: u64,
        /// Most messages wanted (≤ [`fetch_limit`](TreeConfig::fetch_limit)).
        limit: usize,
        /// The peer they will be pushed to.
        for_peer: NodeId,
    },
    /// Persist `clock` as `peer`'s last clock (for example with `gossip-store`'s
    /// `PeerClocks`), and pass it back to [`Tree::handle_peer_up`] when the peer is
    /// connected again, so that only the feeds that changed are noted. Raised when the peer
    /// goes down; [`Tree::peer_clock`] gives it at any time.
    StoreClock {
        /// The peer.
        peer: NodeId,
        /// `(feed, note)` pairs, ascending by feed: the peer's sequence as last known, lazy,
        /// or `-1` where it does not replicate the feed.
        clock: Vec<(FeedId, i64)>,
    },
    /// `message` is at or below the local head of its feed but differs from the head: read
    /// the log's message of `message.author` at `message.sequence` and call
    /// [`Tree::handle_fork_check`], which tells a duplicate from a fork.
    CheckFork {
        /// The message received.
        message: FeedMessage,
    },
}

/// Why [`Tree::publish`] refused a message. Nothing was signed or changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The message would not fit one datagram: a [`FeedBatch`] of this one message is
    /// `batch_len` bytes (bound) against the `max_batch_len` a datagram carries. The content
    /// (`len` bytes) may be at most `max` bytes.
    #[error(
        "a feed message with {len} bytes of content is {batch_len} bytes in a batch, over the \
         {max_batch_len}-byte limit; content is limited to {max} bytes"
    )]
    TooLarge {
        /// The content's length, in bytes.
        len: usize,
        /// The largest accepted content ([`TreeConfig::max_content_len`]).
        max: usize,
        /// Bound on the encoded batch of one, in bytes.
        batch_len: usize,
        /// Largest batch bound that fits a datagram: `max_envelope_len − 49`, or less when the
        /// content limit is lower (a batch with `max` bytes of content).
        max_batch_len: usize,
    },
    /// `identity` is not the local node's feed author.
    #[error("identity signs feed {signer}, not the local feed {local}")]
    NotOwnFeed {
        /// The feed `identity` signs.
        signer: FeedId,
        /// The local node's feed.
        local: FeedId,
    },
    /// The local feed is known to be forked.
    #[error("the local feed is forked")]
    Forked,
    /// [`max_unappended`](TreeConfig::max_unappended) messages wait for
    /// [`Tree::handle_appended`].
    #[error("{max} messages wait to be appended")]
    Backlogged {
        /// The bound.
        max: usize,
    },
    /// The feed has reached the largest sequence a note can carry.
    #[error("the local feed has reached the largest sequence")]
    SequenceExhausted,
}

/// Why [`Tree::handle_peer_up`] refused a peer. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// [`max_peers`](TreeConfig::max_peers) peers are connected.
    #[error("already connected to the maximum of {max} peers")]
    TooManyPeers {
        /// The bound.
        max: usize,
    },
    /// The peer is the local node.
    #[error("a node cannot be its own peer")]
    Local,
}

/// Counters of a [`Tree`], each a running total since construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// [`Notes`] datagrams queued.
    pub notes_sent: u64,
    /// Entries in them (each about one feed).
    pub note_entries_sent: u64,
    /// Entries resent because the state they describe was still unsettled after a
    /// `notes_interval` (retransmissions; included in `note_entries_sent`).
    pub note_entries_resent: u64,
    /// `-1` entries sent for feeds this node does not follow (included in
    /// `note_entries_sent`).
    pub refusals_sent: u64,
    /// [`Notes`] received from connected peers.
    pub notes_received: u64,
    /// Entries in them.
    pub note_entries_received: u64,
    /// Entries with an invalid note (negative, not `-1`), ignored.
    pub invalid_notes: u64,
    /// Entries past [`MAX_NOTE_ENTRIES_PER_MESSAGE`] of one message, ignored.
    pub note_entries_truncated: u64,
    /// [`FeedBatch`] datagrams queued.
    pub batches_sent: u64,
    /// Feed messages in them (payload copies sent).
    pub messages_sent: u64,
    /// [`FeedBatch`]es received from connected peers.
    pub batches_received: u64,
    /// Feed messages in them (payload copies received).
    pub messages_received: u64,
    /// Messages past [`MAX_MESSAGES_PER_BATCH`] of one batch, ignored.
    pub messages_truncated: u64,
    /// Messages validated and handed to the shell ([`TreeEvent::Received`]).
    pub accepted: u64,
    /// Messages reported appended ([`Tree::handle_appended`]), own ones included.
    pub appended: u64,
    /// Received messages at or below the tip of their feed (copies that were not needed).
    pub duplicates: u64,
    /// Received messages ahead of the tip, kept until the gap is filled.
    pub buffered: u64,
    /// Messages ahead of the tip dropped because `max_buffered` were kept.
    pub buffer_dropped: u64,
    /// Received messages of feeds not followed.
    pub not_followed: u64,
    /// Received messages of forked feeds.
    pub forked_dropped: u64,
    /// Rejected: content over `max_content_len`.
    pub content_too_large: u64,
    /// Rejected: `previous` is not the tip's id.
    pub wrong_previous: u64,
    /// Rejected: the signature does not verify.
    pub bad_signature: u64,
    /// Valid messages dropped because `max_unappended` wait for the shell.
    pub unappended_full: u64,
    /// Appends the shell reported failed ([`Tree::handle_append_failed`]).
    pub append_failures: u64,
    /// Links made eager: a peer asked to become the source of a feed.
    pub grafts: u64,
    /// Links made lazy: a source replaced, or a peer told to stop pushing.
    pub prunes: u64,
    /// Sources replaced because they made no progress for `source_timeout`.
    pub stall_switches: u64,
    /// Sources lost because the peer went down or stopped replicating the feed.
    pub sources_lost: u64,
    /// Push pointers moved back at a peer's repeated request (lost pushes resent).
    pub rewinds: u64,
    /// Pushes left for the next round because the peer's budget was spent.
    pub budget_deferred: u64,
    /// [`StoreRequest::Fetch`]es raised.
    pub fetches: u64,
    /// Fetches not raised because `max_pending_fetches` were outstanding (retried later).
    pub fetches_deferred: u64,
    /// Fetches forgotten after `fetch_timeout`.
    pub fetches_expired: u64,
    /// Fetched messages that were not the next one for the peer (skipped).
    pub fetch_mismatches: u64,
    /// [`StoreRequest::CheckFork`]s raised.
    pub fork_checks: u64,
    /// Forks found.
    pub forks: u64,
    /// Inputs from a peer that is not connected, ignored.
    pub unknown_peer: u64,
    /// Peers refused by [`Tree::handle_peer_up`] (`max_peers`).
    pub peers_refused: u64,
    /// Transmits dropped because `output_queue_capacity` outputs were queued.
    pub transmits_dropped: u64,
    /// Events dropped because `output_queue_capacity` outputs were queued.
    pub events_dropped: u64,
    /// Store requests dropped because `output_queue_capacity` outputs were queued.
    pub requests_dropped: u64,
}

/// The links of one followed feed, as reported by [`Tree::feed_links`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedLinks {
    /// The feed.
    pub feed: FeedId,
    /// The appended head of the local log: its latest sequence, 0 before the first message.
    pub latest: u64,
    /// The highest sequence any connected peer replicating the feed is known to hold (its
    /// notes and the messages it pushed), or `latest` if higher. `best_known - latest` is how
    /// many messages this node lags behind.
    pub best_known: u64,
    /// The eager source: the peer asked to push the feed to this node, if any.
    pub source: Option<NodeId>,
    /// The peers that asked this node to push the feed (its eager children), ascending.
    pub eager: Vec<NodeId>,
    /// The peers linked lazily (notes only, no payloads), the source excepted, ascending.
    pub lazy: Vec<NodeId>,
}

/// Current sizes of a [`Tree`]'s collections, each within the bound named in its doc.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Followed feeds (≤ `max_feeds`).
    pub feeds: usize,
    /// Connected peers (≤ `max_peers`).
    pub peers: usize,
    /// Per-peer, per-feed link states (≤ `max_peers × max_feeds`).
    pub links: usize,
    /// Outstanding fetches (≤ `max_pending_fetches`).
    pub pending_fetches: usize,
    /// Outstanding fork checks (≤ `max_pending_fetches`).
    pub pending_fork_checks: usize,
    /// Links waiting to be served (≤ links).
    pub backlog: usize,
    /// Recently appended messages kept (≤ `recent_capacity`).
    pub recent: usize,
    /// Out-of-order messages kept (≤ `max_buffered`).
    pub buffered: usize,
    /// Messages handed to the shell and not yet appended (≤ `max_unappended`).
    pub unappended: usize,
    /// Queued transmits, events and store requests together (≤ `output_queue_capacity`).
    pub queued: usize,
}

/// What a peer asked of us for one feed, from its last note.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Remote {
    /// No note yet.
    #[default]
    Unknown,
    /// `-1`.
    DontReplicate,
    /// "Don't send me messages."
    Lazy,
    /// "Send me messages."
    Eager,
}

impl Remote {
    fn replicates(self) -> bool {
        matches!(self, Remote::Lazy | Remote::Eager)
    }
}

/// The state of one feed on one link (ssb-ebt's per-peer replication state).
#[derive(Clone, Debug, Default)]
struct Link {
    /// Remote request: what the peer asked in its last note.
    remote: Remote,
    /// Remote sequence: the highest sequence the peer is known to hold (its notes, and the
    /// messages it pushed to us).
    remote_seq: u64,
    /// The raw value of the peer's last note (a repeat signals a retransmission).
    last_note: Option<i64>,
    /// Local request: we asked this peer to push the feed (it is our eager source).
    local_eager: bool,
    /// The kind of the last note we sent: `None` never, else (eager, replicate).
    told_mode: Option<Told>,
    /// The highest local sequence the peer was told: by a note, or by a message we pushed.
    told_seq: Option<u64>,
    /// When we last sent a note or a message of this feed to the peer.
    told_at: Option<Instant>,
    /// Push pointer: the highest sequence pushed to the peer (or that it holds).
    sent: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Told {
    Eager,
    Lazy,
    DontReplicate,
}

struct Peer {
    addr: SocketAddr,
    links: BTreeMap<FeedId, Link>,
    /// Bytes this peer may still be pushed this round (may go negative by one fetch).
    budget: i64,
}

/// The tree of one followed feed.
#[derive(Clone, Debug, Default)]
struct FeedTree {
    /// Highest sequence validated and handed to the shell (≥ the appended head).
    tip: u64,
    /// Id of the message at `tip`.
    tip_id: Option<MessageHash>,
    /// The eager source.
    source: Option<NodeId>,
    /// The last source, where rotation continues when there is none.
    last_source: Option<NodeId>,
    /// Since when a peer announces more than `tip` without progress (reset on progress and
    /// when the source changes).
    waiting_since: Option<Instant>,
}

/// Per-feed epidemic broadcast trees (ssb-ebt) over datagrams, as a sans-IO state machine.
///
/// # Call order
///
/// The core never does IO, never reads a clock and draws randomness only from its own `R`
/// (the phase of the note rounds). The shell drives it like a quinn `Connection`:
///
/// 1. **Construction**: [`new`](Self::new) with the local id, the head of the local feed
///    (which is always followed), a validated config, a seeded rng and the time; then
///    [`follow`](Self::follow) every followed feed with its head from the log.
/// 2. **Peers**: [`handle_peer_up`](Self::handle_peer_up) when a peer becomes live (with its
///    stored clock, if any), [`handle_peer_down`](Self::handle_peer_down) when it is not.
/// 3. **Application commands**: [`publish`](Self::publish), [`follow`](Self::follow),
///    [`unfollow`](Self::unfollow).
/// 4. **Inputs**: [`handle_notes`](Self::handle_notes) and [`handle_batch`](Self::handle_batch)
///    for received messages; [`handle_appended`](Self::handle_appended) /
///    [`handle_append_failed`](Self::handle_append_failed) after each append;
///    [`handle_fetched`](Self::handle_fetched) and [`handle_fork_check`](Self::handle_fork_check)
///    with what the store returned; [`handle_timeout`](Self::handle_timeout) when the timer
///    fires.
/// 5. **Outputs**: after *every* command or input, drain [`poll_transmit`](Self::poll_transmit),
///    [`poll_event`](Self::poll_event) and [`poll_store_request`](Self::poll_store_request)
///    until `None`, and re-arm the one timer at [`poll_timeout`](Self::poll_timeout).
///
/// Durability: a received message is validated, handed to the shell as
/// [`TreeEvent::Received`], and pushed or announced to other peers only after
/// [`handle_appended`](Self::handle_appended). A published message is returned by
/// [`publish`](Self::publish); the shell appends it and calls `handle_appended` the same way.
///
/// # Protocol
///
/// Notes are `i64`s as on [`Note`]; "our sequence" is the appended head `L` of the feed.
///
/// 1. **Handshake**: on peer up, the peer is sent the notes of every followed feed whose
///    value changed since its stored clock (all of them without one): a feed at the same
///    sequence on both sides last time is not mentioned. The peer does the same; the notes
///    it sends become its clock (remote sequence and request).
/// 2. **Graft**: a note (or a stored clock) announcing a sequence above our tip, for a feed
///    with no eager source, makes that peer the source: we send it our note with the eager
///    flag. A peer that pushes a new valid message to a feed with no source becomes it too.
/// 3. **Push**: a peer whose note is eager is pushed every message after the sequence in that
///    note, in sequence order: new ones at once on append, older ones from the recent cache
///    or the store ([`StoreRequest::Fetch`]), packed into [`FeedBatch`]es that fit a
///    datagram, within the peer's byte budget per `notes_interval` (backpressure).
/// 4. **Announce**: on append, every lazy peer not known to hold the message is sent our new
///    note at once (the lazy push of Plumtree), so that it can graft us if needed.
/// 5. **Prune**: a message pushed by a peer that is not our source for that feed (a
///    duplicate, or new but unrequested: its eager request is stale) makes us send that peer
///    a lazy note (at most once per half interval); it stops pushing. Exactly one peer per
///    feed is the eager source.
/// 6. **Rotation**: if a peer announces a sequence above our tip and the source makes no
///    progress for `source_timeout`, the next peer in rotation (ascending node id, after the
///    current source, cyclically) that announces more is grafted and the old source pruned.
///    A source that goes down or sends `-1` is replaced at once the same way.
/// 7. **Note round** (every `notes_interval` ± 10 %, first at a random phase): each peer is sent
///    the notes whose value changed since the last note to it (new sequence or request; the
///    cumulative acknowledgement of pushed messages); and, at most one datagram's worth per
///    peer, the notes of links still unsettled after `notes_interval` (the peer's sequence
///    differs from ours, or it never answered): these retransmissions replace acks.
/// 8. **Repair**: a peer's eager note that repeats its previous value, or that is below its
///    push pointer while the last push to it is half an interval old, is a retransmission
///    request: its push pointer moves back to the sequence in the note, and what was lost is
///    pushed again. A node sends one to its source when the source itself announces more
///    than the node holds (a source announces to an eager peer only when its pushes went
///    unacknowledged for an interval), and at the note round when some peer has announced
///    more for `notes_interval` without progress. A repeated note is answered with ours if
///    ours is older than half an interval, so retransmissions settle.
/// 9. **Follow model**: only followed feeds (and the local one) are replicated; notes about
///    any other feed are answered `-1`, and a peer's `-1` stops all pushes and notes of
///    that feed to it.
///
/// # Loss
///
/// Every datagram may be lost. A lost note or push leaves the link's two sides disagreeing on
/// the sequence, which rule 7 retransmits until they agree; a lost push is noticed by the
/// source (no acknowledgement, rule 7) and by the receiver (a lazy peer or the source
/// announces more, rule 8); a lost graft is resent by rule 8; a source that cannot deliver is
/// replaced by rule 6. Messages that arrive ahead of a gap (reordering) are kept up to
/// `max_buffered`.
///
/// # Bounds
///
/// Peers, followed feeds, pending fetches and fork checks, the recent cache, the reorder
/// buffer, unappended messages and the output queues are bounded by [`TreeConfig`]; every
/// drop is counted in [`TreeStats`]. No received message can panic the core.
///
/// # Example
///
/// ```
/// use std::time::Instant;
/// use bytes::Bytes;
/// use gossip_core::NodeId;
/// use gossip_core::feed::FeedId;
/// use gossip_core::tree::{Note, Tree, TreeConfig, TreeMessage};
/// use gossip_crypto::Identity;
/// use rand::SeedableRng;
/// use rand::rngs::StdRng;
///
/// let now = Instant::now();
/// let alice = Identity::generate();
/// let a_id = NodeId(alice.public_key());
/// let b_id = NodeId([2; 32]);
/// let mut a = Tree::new(a_id, None, TreeConfig::default(), StdRng::seed_from_u64(1), now)?;
/// let mut b = Tree::new(b_id, None, TreeConfig::default(), StdRng::seed_from_u64(2), now)?;
/// let feed = FeedId::of(&alice);
/// b.follow(now, feed, None)?;
/// a.handle_peer_up(now, b_id, "10.0.0.2:7000".parse()?, None)?;
/// b.handle_peer_up(now, a_id, "10.0.0.1:7000".parse()?, None)?;
///
/// // a publishes; its shell appends the message, then reports it appended.
/// let message = a.publish(now, &alice, 1_700_000_000_000, Bytes::from_static(b"hi"))?;
/// a.handle_appended(now, &message)?;
/// // a announces sequence 1 to b (lazily)...
/// let announce = std::iter::from_fn(|| a.poll_transmit())
///     .find_map(|t| match t.message {
///         TreeMessage::Notes(n) if n.entries.contains(&(feed, Note::Replicate { sequence: 1, eager: false }.to_i64())) => Some(n),
///         _ => None,
///     })
///     .unwrap();
/// // ... and b, which has no source for the feed yet, grafts a.
/// b.handle_notes(now, a_id, announce);
/// let graft = std::iter::from_fn(|| b.poll_transmit()).last().unwrap();
/// assert_eq!(graft.to, a_id);
/// assert!(matches!(&graft.message, TreeMessage::Notes(n)
///     if n.entries.contains(&(feed, Note::Replicate { sequence: 0, eager: true }.to_i64()))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Tree<R: Rng> {
    local: NodeId,
    own: FeedId,
    config: TreeConfig,
    rng: R,
    feeds: Feeds,
    trees: BTreeMap<FeedId, FeedTree>,
    peers: BTreeMap<NodeId, Peer>,
    recent: LruCache<(FeedId, u64), FeedMessage>,
    buffer: BTreeMap<(FeedId, u64), (NodeId, FeedMessage)>,
    unappended: usize,
    fetches: BTreeMap<(NodeId, FeedId), Instant>,
    fork_checks: BTreeMap<FeedId, Instant>,
    backlog: BTreeSet<(NodeId, FeedId)>,
    /// Where serving the backlog resumes (fairness between links).
    serve_cursor: Option<(NodeId, FeedId)>,
    /// Notes to send at the end of the current input: the current note of each listed feed.
    note_outbox: BTreeMap<NodeId, BTreeSet<FeedId>>,
    /// Of those, the ones queued as retransmissions (for the stats).
    resend_outbox: BTreeSet<(NodeId, FeedId)>,
    /// `-1` answers for feeds not followed.
    refusals: BTreeMap<NodeId, BTreeSet<FeedId>>,
    /// Messages to push at the end of the current input, in push order.
    batch_outbox: BTreeMap<NodeId, Vec<FeedMessage>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TreeEvent>,
    requests: VecDeque<StoreRequest>,
    next_round: Instant,
    stats: TreeStats,
}

impl<R: Rng> std::fmt::Debug for Tree<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("local", &self.local)
            .field("occupancy", &self.occupancy())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<R: Rng> Tree<R> {
    // ----- construction -----

    /// A core for node `local`, whose own feed (`FeedId::from(local)`, always followed) ends
    /// at `own_latest` in the log (`None` if empty), started at `now`. The first note round
    /// is at a random phase in `0..=notes_interval` after `now`.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` fails [`TreeConfig::validate`]; nothing is built.
    pub fn new(
        local: NodeId,
        own_latest: Option<(u64, MessageHash)>,
        config: TreeConfig,
        mut rng: R,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut feeds = Feeds::new(FeedsConfig {
            max_content_len: config.max_content_len,
            max_feeds: config.max_feeds,
            ..FeedsConfig::default()
        })?;
        let own = FeedId::from(local);
        // max_feeds >= 1, so following the first feed cannot fail.
        let _ = feeds.follow(own, own_latest);
        let mut trees = BTreeMap::new();
        trees.insert(own, FeedTree::at(own_latest));
        let phase = u64::try_from(config.notes_interval.as_nanos()).unwrap_or(u64::MAX);
        let next_round = now
            .checked_add(Duration::from_nanos(rng.random_range(0..=phase)))
            .unwrap_or(now);
        Ok(Tree {
            local,
            own,
            recent: LruCache::new(config.recent_capacity),
            config,
            rng,
            feeds,
            trees,
            peers: BTreeMap::new(),
            buffer: BTreeMap::new(),
            unappended: 0,
            fetches: BTreeMap::new(),
            fork_checks: BTreeMap::new(),
            backlog: BTreeSet::new(),
            serve_cursor: None,
            note_outbox: BTreeMap::new(),
            resend_outbox: BTreeSet::new(),
            refusals: BTreeMap::new(),
            batch_outbox: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            requests: VecDeque::new(),
            next_round,
            stats: TreeStats::default(),
        })
    }

    // ----- getters -----

    /// The configuration this core was built with.
    pub fn config(&self) -> &TreeConfig {
        &self.config
    }

    /// The local node's id.
    pub fn local_id(&self) -> NodeId {
        self.local
    }

    /// The local node's feed.
    pub fn own_feed(&self) -> FeedId {
        self.own
    }

    /// Counters since construction.
    pub fn stats(&self) -> TreeStats {
        self.stats
    }

    /// Current sizes of the bounded collections.
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            feeds: self.trees.len(),
            peers: self.peers.len(),
            links: self.peers.values().map(|p| p.links.len()).sum(),
            pending_fetches: self.fetches.len(),
            pending_fork_checks: self.fork_checks.len(),
            backlog: self.backlog.len(),
            recent: self.recent.len(),
            buffered: self.buffer.len(),
            unappended: self.unappended,
            queued: self.queued(),
        }
    }

    /// Whether `feed` is followed.
    pub fn is_following(&self, feed: FeedId) -> bool {
        self.trees.contains_key(&feed)
    }

    /// The appended head of `feed`: its latest sequence, 0 before the first message; `None`
    /// if not followed.
    pub fn latest(&self, feed: FeedId) -> Option<u64> {
        self.trees.contains_key(&feed).then(|| self.head(feed).0)
    }

    /// The eager source of `feed`, if any.
    pub fn source(&self, feed: FeedId) -> Option<NodeId> {
        self.trees.get(&feed).and_then(|t| t.source)
    }

    /// The peers that asked us to push `feed` (its eager children), ascending.
    pub fn eager_peers(&self, feed: FeedId) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| {
                p.links
                    .get(&feed)
                    .is_some_and(|l| l.remote == Remote::Eager)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The links of every followed feed, ascending by feed: what an operator's view of the
    /// trees shows (the source, eager and lazy peers, how far behind the best-known sequence
    /// the local log is).
    pub fn feed_links(&self) -> Vec<FeedLinks> {
        self.trees
            .iter()
            .map(|(feed, tree)| {
                let mut links = FeedLinks {
                    feed: *feed,
                    latest: self.head(*feed).0,
                    best_known: 0,
                    source: tree.source,
                    eager: Vec::new(),
                    lazy: Vec::new(),
                };
                for (id, peer) in &self.peers {
                    let Some(link) = peer.links.get(feed) else {
                        continue;
                    };
                    if link.remote.replicates() {
                        links.best_known = links.best_known.max(link.remote_seq);
                    }
                    if link.remote == Remote::Eager {
                        links.eager.push(*id);
                    } else if link.remote == Remote::Lazy && tree.source != Some(*id) {
                        links.lazy.push(*id);
                    }
                }
                links.best_known = links.best_known.max(links.latest);
                links
            })
            .collect()
    }

    /// Whether `node` is connected.
    pub fn is_peer_up(&self, node: NodeId) -> bool {
        self.peers.contains_key(&node)
    }

    /// The connected peers, ascending.
    pub fn peers(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    /// `node`'s clock as it would be stored now (see [`StoreRequest::StoreClock`]); `None`
    /// if not connected.
    pub fn peer_clock(&self, node: NodeId) -> Option<Vec<(FeedId, i64)>> {
        self.peers.get(&node).map(Self::clock_of)
    }

    // ----- peers -----

    /// Input: `node` became live at `addr`. `stored_clock` is its clock as persisted from an
    /// earlier [`StoreRequest::StoreClock`] (`None` for a peer never met).
    ///
    /// Sends the peer the notes of the followed feeds whose value changed since
    /// `stored_clock` (rule 1): a feed whose stored sequence equals our head is settled and
    /// not mentioned. Grafts the peer for feeds it is known to be ahead in and that have no
    /// source. Calling it again for a connected peer updates its address only.
    ///
    /// # Errors
    /// [`PeerError::TooManyPeers`] at [`max_peers`](TreeConfig::max_peers) (counted);
    /// [`PeerError::Local`] for the local node. Nothing changed.
    pub fn handle_peer_up(
        &mut self,
        now: Instant,
        node: NodeId,
        addr: SocketAddr,
        stored_clock: Option<Vec<(FeedId, i64)>>,
    ) -> Result<(), PeerError> {
        if node == self.local {
            return Err(PeerError::Local);
        }
        if let Some(peer) = self.peers.get_mut(&node) {
            peer.addr = addr;
            return Ok(());
        }
        if self.peers.len() >= self.config.max_peers {
            self.stats.peers_refused += 1;
            return Err(PeerError::TooManyPeers {
                max: self.config.max_peers,
            });
        }
        let stored: BTreeMap<FeedId, Note> = stored_clock
            .unwrap_or_default()
            .into_iter()
            .filter(|(feed, _)| self.trees.contains_key(feed))
            .filter_map(|(feed, value)| Note::from_i64(value).map(|n| (feed, n)))
            .collect();
        let mut links = BTreeMap::new();
        let mut to_note = BTreeSet::new();
        let mut to_graft = Vec::new();
        for (&feed, tree) in &self.trees {
            if self.feeds.is_forked(feed) {
                continue;
            }
            let head = self.feeds.latest(feed).map_or(0, |(seq, _)| seq);
            let mut link = Link::default();
            match stored.get(&feed) {
                Some(Note::DoNotReplicate) => link.remote = Remote::DontReplicate,
                Some(&Note::Replicate { sequence, .. }) => {
                    // A stored request is stale: the peer asks again if it wants pushes.
                    link.remote = Remote::Lazy;
                    link.remote_seq = sequence;
                    link.sent = sequence;
                    if sequence == head {
                        link.told_mode = Some(Told::Lazy);
                        link.told_seq = Some(head);
                        link.told_at = Some(now);
                    } else {
                        to_note.insert(feed);
                    }
                    if sequence > tree.tip && tree.source.is_none() {
                        to_graft.push(feed);
                    }
                }
                None => {
                    to_note.insert(feed);
                }
            }
            links.insert(feed, link);
        }
        let budget = i64::try_from(self.config.peer_budget_bytes).unwrap_or(i64::MAX);
        self.peers.insert(
            node,
            Peer {
                addr,
                links,
                budget,
            },
        );
        if !to_note.is_empty() {
            self.note_outbox.entry(node).or_default().extend(to_note);
        }
        for feed in to_graft {
            self.switch_source(now, feed, Some(node));
        }
        self.after_input(now);
        Ok(())
    }

    /// Input: `node` is no longer live. Raises [`StoreRequest::StoreClock`] with its clock,
    /// forgets it, and replaces it as the source of its feeds (rule 6). Nothing happens for a
    /// peer not connected.
    pub fn handle_peer_down(&mut self, now: Instant, node: NodeId) {
        let Some(peer) = self.peers.remove(&node) else {
            return;
        };
        let clock = Self::clock_of(&peer);
        self.queue_request(StoreRequest::StoreClock { peer: node, clock });
        self.note_outbox.remove(&node);
        self.refusals.remove(&node);
        self.batch_outbox.remove(&node);
        self.resend_outbox.retain(|(p, _)| *p != node);
        self.fetches.retain(|(p, _), _| *p != node);
        self.backlog.retain(|(p, _)| *p != node);
        let lost: Vec<FeedId> = self
            .trees
            .iter()
            .filter(|(_, t)| t.source == Some(node))
            .map(|(f, _)| *f)
            .collect();
        for feed in lost {
            self.source_lost(now, feed, node);
        }
        self.after_input(now);
    }

    // ----- application commands -----

    /// Signs the next message of the local feed with `content` and the author's
    /// `timestamp_ms` (this crate reads no clock), and returns it. The shell appends it and,
    /// once durable, calls [`handle_appended`](Self::handle_appended), which pushes and
    /// announces it. Several messages may be published before the first is appended; they
    /// chain in order.
    ///
    /// # Errors
    /// Nothing is signed or changed on error: [`PublishError::TooLarge`] if the content is
    /// over [`max_content_len`](TreeConfig::max_content_len), naming the batch size it would
    /// have and the limit; [`PublishError::NotOwnFeed`] if `identity` is not the local
    /// node's; [`PublishError::Forked`], [`PublishError::Backlogged`],
    /// [`PublishError::SequenceExhausted`].
    pub fn publish(
        &mut self,
        now: Instant,
        identity: &Identity,
        timestamp_ms: u64,
        content: Bytes,
    ) -> Result<FeedMessage, PublishError> {
        let _ = now;
        let signer = FeedId::of(identity);
        if signer != self.own {
            return Err(PublishError::NotOwnFeed {
                signer,
                local: self.own,
            });
        }
        let max = self.config.max_content_len;
        if content.len() > max {
            let bound = |len: usize| LIST_PREFIX + crate::feed::wire_bound::feed_message(len);
            return Err(PublishError::TooLarge {
                len: content.len(),
                max,
                batch_len: bound(content.len()),
                max_batch_len: bound(max).min(self.config.max_struct_len()),
            });
        }
        if self.feeds.is_forked(self.own) {
            return Err(PublishError::Forked);
        }
        if self.unappended >= self.config.max_unappended {
            return Err(PublishError::Backlogged {
                max: self.config.max_unappended,
            });
        }
        let tree = self.trees.entry(self.own).or_default();
        if tree.tip >= Note::MAX_SEQUENCE {
            return Err(PublishError::SequenceExhausted);
        }
        let mut message = FeedMessage {
            author: self.own,
            sequence: tree.tip + 1,
            previous: tree.tip_id,
            timestamp_ms,
            content,
            signature: [0; 64],
        };
        message.signature = identity.sign(&message.signing_bytes());
        tree.tip = message.sequence;
        tree.tip_id = Some(message.id());
        self.unappended += 1;
        Ok(message)
    }

    /// Starts following `feed`, whose log ends at `latest` (`None` if it holds none of its
    /// messages), and notes it to every connected peer. Returns `true` if newly followed,
    /// `false` if it was already (nothing changed).
    ///
    /// # Errors
    /// [`FollowError::TooManyFeeds`] at [`max_feeds`](TreeConfig::max_feeds); nothing
    /// changed.
    pub fn follow(
        &mut self,
        now: Instant,
        feed: FeedId,
        latest: Option<(u64, MessageHash)>,
    ) -> Result<bool, FollowError> {
        if !self.feeds.follow(feed, latest)? {
            return Ok(false);
        }
        self.trees.insert(feed, FeedTree::at(latest));
        for (node, peer) in &mut self.peers {
            peer.links.insert(feed, Link::default());
            self.note_outbox.entry(*node).or_default().insert(feed);
        }
        self.after_input(now);
        Ok(true)
    }

    /// Stops following `feed`: tells every peer that knew of it `-1`, and forgets its tree,
    /// links, buffered messages and pending work. Returns `false` (nothing changed) if it was
    /// not followed, or if it is the local feed, which is always followed. Messages of it
    /// already handed to the shell are refused by `handle_appended` afterwards.
    pub fn unfollow(&mut self, now: Instant, feed: FeedId) -> bool {
        if feed == self.own || !self.trees.contains_key(&feed) {
            return false;
        }
        let head = self.head(feed).0;
        if let Some(tree) = self.trees.remove(&feed) {
            self.unappended = self
                .unappended
                .saturating_sub(usize::try_from(tree.tip.saturating_sub(head)).unwrap_or(0));
        }
        self.feeds.unfollow(feed);
        for (node, peer) in &mut self.peers {
            if let Some(link) = peer.links.remove(&feed)
                && link.told_mode.is_some()
                && link.remote != Remote::DontReplicate
            {
                self.refusals.entry(*node).or_default().insert(feed);
            }
            if let Some(set) = self.note_outbox.get_mut(node) {
                set.remove(&feed);
            }
        }
        self.buffer.retain(|(f, _), _| *f != feed);
        self.fetches.retain(|(_, f), _| *f != feed);
        self.fork_checks.remove(&feed);
        self.backlog.retain(|(_, f)| *f != feed);
        self.resend_outbox.retain(|(_, f)| *f != feed);
        for messages in self.batch_outbox.values_mut() {
            messages.retain(|m| m.author != feed);
        }
        self.after_input(now);
        true
    }

    // ----- inputs -----

    /// Input: `notes` received from `from`. Applies rules 2, 3, 6, 8 and 9 of the
    /// [type doc](Self) to each entry (at most [`MAX_NOTE_ENTRIES_PER_MESSAGE`]). Ignored,
    /// and counted, if `from` is not connected.
    pub fn handle_notes(&mut self, now: Instant, from: NodeId, notes: Notes) {
        if !self.peers.contains_key(&from) {
            self.stats.unknown_peer += 1;
            return;
        }
        self.stats.notes_received += 1;
        let mut entries = notes.entries;
        if entries.len() > MAX_NOTE_ENTRIES_PER_MESSAGE {
            self.stats.note_entries_truncated +=
                (entries.len() - MAX_NOTE_ENTRIES_PER_MESSAGE) as u64;
            entries.truncate(MAX_NOTE_ENTRIES_PER_MESSAGE);
        }
        for (feed, value) in entries {
            self.handle_note(now, from, feed, value);
        }
        self.after_input(now);
    }

    /// Input: `batch` received from `from`. Each message (at most
    /// [`MAX_MESSAGES_PER_BATCH`]) of a followed feed that is the next of its feed is
    /// validated and handed to the shell ([`TreeEvent::Received`]); later ones are buffered
    /// until the gap is filled; earlier ones are duplicates. A pusher that is not our source
    /// is pruned (rule 5). Ignored, and counted, if `from` is not connected.
    pub fn handle_batch(&mut self, now: Instant, from: NodeId, batch: FeedBatch) {
        if !self.peers.contains_key(&from) {
            self.stats.unknown_peer += 1;
            return;
        }
        self.stats.batches_received += 1;
        let mut messages = batch.messages;
        if messages.len() > MAX_MESSAGES_PER_BATCH {
            self.stats.messages_truncated += (messages.len() - MAX_MESSAGES_PER_BATCH) as u64;
            messages.truncate(MAX_MESSAGES_PER_BATCH);
        }
        for message in messages {
            self.receive_message(now, from, message);
        }
        self.after_input(now);
    }

    /// Input: `message` has been appended to the log and is durable. It becomes the head of
    /// its feed; it is pushed at once to the peers that asked for it and announced to the
    /// others (rules 3 and 4), and [`TreeEvent::FeedAdvanced`] is raised. Call it for every
    /// [`TreeEvent::Received`] message and every published one, in order.
    ///
    /// # Errors
    /// Nothing changed on error: [`Rejection::NotFollowed`], [`Rejection::Forked`],
    /// [`Rejection::NotNext`] or [`Rejection::WrongPrevious`] if `message` is not the next
    /// message of the head (see [`Feeds::handle_appended`]).
    pub fn handle_appended(
        &mut self,
        now: Instant,
        message: &FeedMessage,
    ) -> Result<(), Rejection> {
        let feed = message.author;
        if !self.trees.contains_key(&feed) {
            return Err(Rejection::NotFollowed);
        }
        self.feeds.handle_appended(message)?;
        self.stats.appended += 1;
        let seq = message.sequence;
        if let Some(tree) = self.trees.get_mut(&feed) {
            if tree.tip >= seq {
                self.unappended = self.unappended.saturating_sub(1);
                if tree.tip == seq {
                    tree.tip_id = self.feeds.latest(feed).map(|(_, id)| id);
                }
            } else {
                tree.tip = seq;
                tree.tip_id = self.feeds.latest(feed).map(|(_, id)| id);
            }
        }
        self.recent.put((feed, seq), message.clone());
        self.queue_event(TreeEvent::FeedAdvanced {
            feed,
            sequence: seq,
        });
        let peers: Vec<(NodeId, bool)> = self
            .peers
            .iter()
            .map(|(id, p)| (*id, p.budget > 0))
            .collect();
        for (node, budget_left) in peers {
            let Some(link) = self.link_mut(node, feed) else {
                continue;
            };
            match link.remote {
                Remote::DontReplicate => {}
                Remote::Eager => {
                    link.sent = link.sent.max(link.remote_seq);
                    let next = link.sent.saturating_add(1) == seq;
                    if next && budget_left {
                        self.push(now, node, message.clone());
                    } else if link.sent < seq {
                        if next {
                            self.stats.budget_deferred += 1;
                        }
                        self.backlog.insert((node, feed));
                    }
                }
                Remote::Lazy | Remote::Unknown => {
                    if link.remote_seq < seq && link.told_seq.is_none_or(|t| t < seq) {
                        self.note_outbox.entry(node).or_default().insert(feed);
                    }
                }
            }
        }
        self.after_input(now);
        Ok(())
    }

    /// Input: the shell could not append a message of `feed` handed to it (a
    /// [`TreeEvent::Received`] or a published one). The tip of the feed goes back to the
    /// appended head; messages after it are asked for again. Nothing happens for a feed not
    /// followed.
    pub fn handle_append_failed(&mut self, now: Instant, feed: FeedId) {
        let (head, head_id) = self.head(feed);
        let Some(tree) = self.trees.get_mut(&feed) else {
            return;
        };
        self.stats.append_failures += 1;
        let pending = usize::try_from(tree.tip.saturating_sub(head)).unwrap_or(0);
        self.unappended = self.unappended.saturating_sub(pending);
        tree.tip = head;
        tree.tip_id = head_id;
        tree.waiting_since = Some(now);
        self.after_input(now);
    }

    /// Input: the answer to [`StoreRequest::Fetch`] for `for_peer` and `feed`: the stored
    /// messages from the requested sequence on, in order. Those that are the next for the
    /// peer are pushed in [`FeedBatch`]es, within its budget; the rest are asked for again
    /// later. Unexpected messages are skipped and counted; answers for a peer that went down
    /// or stopped asking are dropped.
    pub fn handle_fetched(
        &mut self,
        now: Instant,
        for_peer: NodeId,
        feed: FeedId,
        messages: Vec<FeedMessage>,
    ) {
        self.fetches.remove(&(for_peer, feed));
        let (head, _) = self.head(feed);
        let forked = self.feeds.is_forked(feed);
        let empty = messages.is_empty();
        for message in messages.into_iter().take(self.config.fetch_limit) {
            let Some(peer) = self.peers.get(&for_peer) else {
                break;
            };
            let Some(link) = peer.links.get(&feed) else {
                break;
            };
            if link.remote != Remote::Eager || forked {
                break;
            }
            if message.author != feed
                || message.sequence != link.sent.saturating_add(1)
                || message.sequence > head
            {
                self.stats.fetch_mismatches += 1;
                continue;
            }
            if peer.budget <= 0 {
                self.stats.budget_deferred += 1;
                break;
            }
            self.push(now, for_peer, message);
        }
        if empty {
            // The log does not hold what the peer wants: stop asking until it asks again.
            self.backlog.remove(&(for_peer, feed));
        }
        self.after_input(now);
    }

    /// Input: the answer to [`StoreRequest::CheckFork`]: `received` as it was in the request,
    /// and the log's message of its feed at its sequence (`None` if the log has none). A
    /// different, validly signed message is a fork: the feed stops being replicated and
    /// [`TreeEvent::Forked`] is raised.
    pub fn handle_fork_check(
        &mut self,
        now: Instant,
        received: FeedMessage,
        stored: Option<FeedMessage>,
    ) {
        let feed = received.author;
        self.fork_checks.remove(&feed);
        let Some(stored) = stored else {
            return;
        };
        if !self.trees.contains_key(&feed) {
            return;
        }
        if let Err(Rejection::Fork { .. }) = self.feeds.validate(feed, &received, Some(&stored)) {
            self.stats.forks += 1;
            self.forked(now, feed);
        }
        self.drain_feed_events();
        self.after_input(now);
    }

    /// Input: the timer armed at [`poll_timeout`](Self::poll_timeout) fired at `now`. Runs
    /// the note round if it is due (rule 7; missed rounds are not caught up): refills the
    /// peers' budgets, forgets expired fetches, replaces stalled sources (rule 6), sends
    /// changed and unsettled notes, and serves the backlog.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_round {
            return;
        }
        // Rounds are spaced 0.9..=1.1 x notes_interval so that nodes do not fall into step.
        let interval = self.config.notes_interval;
        let jitter = self.rng.random_range(0.9..=1.1);
        self.next_round = now.checked_add(interval.mul_f64(jitter)).unwrap_or(now);
        let budget = i64::try_from(self.config.peer_budget_bytes).unwrap_or(i64::MAX);
        for peer in self.peers.values_mut() {
            peer.budget = budget;
        }
        let timeout = self.config.fetch_timeout;
        let before = self.fetches.len();
        self.fetches
            .retain(|_, at| now.saturating_duration_since(*at) < timeout);
        self.stats.fetches_expired += (before - self.fetches.len()) as u64;
        self.fork_checks
            .retain(|_, at| now.saturating_duration_since(*at) < timeout);
        self.check_sources(now);
        self.note_round(now);
        self.after_input(now);
    }

    // ----- outputs -----

    /// Output: the next datagram to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Output: the next event, oldest first.
    pub fn poll_event(&mut self) -> Option<TreeEvent> {
        self.events.pop_front()
    }

    /// Output: the next storage request, oldest first.
    pub fn poll_store_request(&mut self) -> Option<StoreRequest> {
        self.requests.pop_front()
    }

    /// Output: when to call [`handle_timeout`](Self::handle_timeout): the next note round
    /// (every `notes_interval` ± 10 %). Always `Some`; it may be in the past (fire at once).
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_round)
    }

    // ----- internals: notes -----

    fn handle_note(&mut self, now: Instant, from: NodeId, feed: FeedId, value: i64) {
        self.stats.note_entries_received += 1;
        let Some(note) = Note::from_i64(value) else {
            self.stats.invalid_notes += 1;
            return;
        };
        let Some(tree) = self.trees.get(&feed) else {
            if note != Note::DoNotReplicate {
                self.refusals.entry(from).or_default().insert(feed);
            }
            return;
        };
        let tip = tree.tip;
        let source = tree.source;
        let (head, _) = self.head(feed);
        let forked = self.feeds.is_forked(feed);
        let half = self.config.notes_interval / 2;
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        let link = peer.links.entry(feed).or_default();
        let previous_remote = link.remote;
        let repeated = link.last_note == Some(value);
        link.last_note = Some(value);
        if forked {
            if note != Note::DoNotReplicate {
                link.remote = Remote::Lazy;
                if link.told_mode != Some(Told::DontReplicate) {
                    self.note_outbox.entry(from).or_default().insert(feed);
                }
            } else {
                link.remote = Remote::DontReplicate;
            }
            return;
        }
        let Note::Replicate { sequence, eager } = note else {
            link.remote = Remote::DontReplicate;
            self.backlog.remove(&(from, feed));
            if link.local_eager {
                link.local_eager = false;
                self.source_lost(now, feed, from);
            }
            return;
        };
        link.remote_seq = link.remote_seq.max(sequence);
        if eager {
            // A new request, a repeated one, or one below what we pushed more than half an
            // interval ago (an acknowledgement racing a push arrives within a round trip):
            // the peer holds `sequence` and nothing after it arrived.
            let stale_push = sequence < link.sent
                && link
                    .told_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= half);
            let rewind = previous_remote != Remote::Eager || repeated || stale_push;
            if rewind {
                if sequence < link.sent {
                    self.stats.rewinds += 1;
                }
                // The peer asks from `sequence`: that is what it holds now, whatever it
                // announced or was pushed before (lost pushes, or a peer that lost its log).
                link.sent = sequence;
                link.remote_seq = sequence;
            } else {
                link.sent = link.sent.max(sequence);
            }
            link.remote = Remote::Eager;
            if link.sent < head {
                self.backlog.insert((from, feed));
            }
        } else {
            link.remote = Remote::Lazy;
            link.sent = link.sent.max(sequence);
            self.backlog.remove(&(from, feed));
        }
        let told_old = link
            .told_at
            .is_none_or(|t| now.saturating_duration_since(t) >= half);
        let news = Self::is_news(link, head);
        let is_source = source == Some(from);
        let mut reply = news;
        if sequence > tip {
            if source.is_none() {
                self.switch_source(now, feed, Some(from));
                return;
            }
            let tree = self.trees.entry(feed).or_default();
            tree.waiting_since.get_or_insert(now);
            // Our source announces more than we hold: it only does so when its pushes went
            // unacknowledged for an interval, so they were lost. Ask again (rule 8).
            if is_source && told_old {
                reply = true;
                self.resend_outbox.insert((from, feed));
            }
        } else if repeated && told_old {
            // A repeated note is a retransmission: answer it so that it settles.
            reply = true;
        }
        if reply {
            self.note_outbox.entry(from).or_default().insert(feed);
        }
    }

    /// Whether our current note for the link differs from what the peer was told.
    fn is_news(link: &Link, head: u64) -> bool {
        let mode = if link.local_eager {
            Told::Eager
        } else {
            Told::Lazy
        };
        link.told_mode != Some(mode) || link.told_seq.is_none_or(|t| t < head)
    }

    /// The note round: changed notes to every peer, and up to one datagram of
    /// retransmissions per peer.
    fn note_round(&mut self, now: Instant) {
        let interval = self.config.notes_interval;
        let per_datagram = notes_per_datagram(self.config.max_envelope_len).max(1);
        let heads: BTreeMap<FeedId, (u64, bool, Option<Instant>)> = self
            .trees
            .iter()
            .map(|(f, t)| {
                let head = self.feeds.latest(*f).map_or(0, |(s, _)| s);
                (*f, (head, self.feeds.is_forked(*f), t.waiting_since))
            })
            .collect();
        for (node, peer) in &mut self.peers {
            let mut resend: Vec<(Instant, FeedId)> = Vec::new();
            let outbox = self.note_outbox.entry(*node).or_default();
            for (feed, link) in &peer.links {
                let Some(&(head, forked, waiting)) = heads.get(feed) else {
                    continue;
                };
                if link.remote == Remote::DontReplicate {
                    continue;
                }
                if forked {
                    if link.told_mode != Some(Told::DontReplicate) && link.remote.replicates() {
                        outbox.insert(*feed);
                    }
                    continue;
                }
                if Self::is_news(link, head) {
                    outbox.insert(*feed);
                    continue;
                }
                let Some(told_at) = link.told_at else {
                    continue;
                };
                if now.saturating_duration_since(told_at) < interval {
                    continue;
                }
                // Unsettled: the peer never answered, or it is behind us, or it is our
                // source and we have been behind (someone announces more) for an interval.
                let unsettled = match link.remote {
                    Remote::Unknown => true,
                    _ => {
                        link.remote_seq < head
                            || (link.local_eager
                                && waiting
                                    .is_some_and(|w| now.saturating_duration_since(w) >= interval))
                    }
                };
                if unsettled {
                    resend.push((told_at, *feed));
                }
            }
            resend.sort();
            for (_, feed) in resend.into_iter().take(per_datagram) {
                outbox.insert(feed);
                self.resend_outbox.insert((*node, feed));
            }
        }
        self.note_outbox.retain(|_, set| !set.is_empty());
    }

    // ----- internals: sources -----

    /// Makes `to` the eager source of `feed` (pruning the current one), or clears it.
    fn switch_source(&mut self, now: Instant, feed: FeedId, to: Option<NodeId>) {
        self.switch_source_reported(now, feed, to, None);
    }

    /// As [`switch_source`](Self::switch_source); the event names `reported_from` as the
    /// previous source if given (a source already dropped).
    fn switch_source_reported(
        &mut self,
        now: Instant,
        feed: FeedId,
        to: Option<NodeId>,
        reported_from: Option<NodeId>,
    ) {
        let Some(tree) = self.trees.get_mut(&feed) else {
            return;
        };
        let from = tree.source;
        if from == to {
            return;
        }
        tree.source = to;
        if to.is_some() {
            tree.last_source = to;
        }
        tree.waiting_since = Some(now);
        if let Some(old) = from
            && let Some(link) = self
                .peers
                .get_mut(&old)
                .and_then(|p| p.links.get_mut(&feed))
        {
            link.local_eager = false;
            self.note_outbox.entry(old).or_default().insert(feed);
            self.stats.prunes += 1;
        }
        if let Some(new) = to
            && let Some(link) = self
                .peers
                .get_mut(&new)
                .and_then(|p| p.links.get_mut(&feed))
        {
            link.local_eager = true;
            self.note_outbox.entry(new).or_default().insert(feed);
            self.stats.grafts += 1;
        }
        self.queue_event(TreeEvent::SourceSwitched {
            feed,
            from: reported_from.or(from),
            to,
        });
    }

    /// The source of `feed`, `lost`, went down or stopped replicating it: graft the next
    /// peer in rotation that is ahead, if any.
    fn source_lost(&mut self, now: Instant, feed: FeedId, lost: NodeId) {
        self.stats.sources_lost += 1;
        let next = self.next_candidate(feed, Some(lost), false);
        if let Some(tree) = self.trees.get_mut(&feed) {
            // The lost peer's link is gone or lazy already; do not prune it.
            if tree.source == Some(lost) {
                tree.source = None;
            }
        }
        match next {
            Some(next) => self.switch_source_reported(now, feed, Some(next), Some(lost)),
            None => self.queue_event(TreeEvent::SourceSwitched {
                feed,
                from: Some(lost),
                to: None,
            }),
        }
    }

    /// The first peer after `after` in rotation (ascending node id, cyclically, `after`
    /// itself last, or not at all if `include_after` is false) that replicates `feed` and
    /// announces more than our tip.
    fn next_candidate(
        &self,
        feed: FeedId,
        after: Option<NodeId>,
        include_after: bool,
    ) -> Option<NodeId> {
        let tip = self.trees.get(&feed)?.tip;
        let ahead = |(id, peer): (&NodeId, &Peer)| {
            let link = peer.links.get(&feed)?;
            (link.remote.replicates() && link.remote_seq > tip).then_some(*id)
        };
        match after {
            None => self.peers.iter().find_map(ahead),
            Some(after) => {
                let later = self
                    .peers
                    .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded));
                let earlier = if include_after {
                    self.peers.range(..=after)
                } else {
                    self.peers.range(..after)
                };
                later.chain(earlier).find_map(ahead)
            }
        }
    }

    /// Rule 6 at the note round: graft where there is no source and a peer is ahead; replace
    /// sources that made no progress for `source_timeout`.
    fn check_sources(&mut self, now: Instant) {
        let feeds: Vec<FeedId> = self.trees.keys().copied().collect();
        for feed in feeds {
            if self.feeds.is_forked(feed) {
                continue;
            }
            let behind = self.is_behind(feed);
            let Some(tree) = self.trees.get_mut(&feed) else {
                continue;
            };
            if !behind {
                tree.waiting_since = None;
                continue;
            }
            let since = *tree.waiting_since.get_or_insert(now);
            match tree.source {
                None => {
                    let after = tree.last_source;
                    if let Some(next) = self.next_candidate(feed, after, true) {
                        self.switch_source(now, feed, Some(next));
                    }
                }
                Some(current) => {
                    if now.saturating_duration_since(since) >= self.config.source_timeout
                        && let Some(next) = self.next_candidate(feed, Some(current), false)
                    {
                        self.stats.stall_switches += 1;
                        self.switch_source(now, feed, Some(next));
                    }
                }
            }
        }
    }

    /// Whether some connected peer announces more of `feed` than our tip.
    fn is_behind(&self, feed: FeedId) -> bool {
        let Some(tree) = self.trees.get(&feed) else {
            return false;
        };
        self.peers.values().any(|p| {
            p.links
                .get(&feed)
                .is_some_and(|l| l.remote.replicates() && l.remote_seq > tree.tip)
        })
    }

    // ----- internals: messages -----

    fn receive_message(&mut self, now: Instant, from: NodeId, message: FeedMessage) {
        self.stats.messages_received += 1;
        let feed = message.author;
        let Some(tree) = self.trees.get(&feed) else {
            self.stats.not_followed += 1;
            self.refusals.entry(from).or_default().insert(feed);
            return;
        };
        if self.feeds.is_forked(feed) {
            self.stats.forked_dropped += 1;
            return;
        }
        let tip = tree.tip;
        let source = tree.source;
        let seq = message.sequence;
        if seq <= tip {
            self.stats.duplicates += 1;
            let (head, head_id) = self.head(feed);
            if seq == head && tip == head && seq > 0 && head_id != Some(message.id()) {
                self.check_fork(now, message);
            }
            if source != Some(from) {
                self.prune_pusher(now, from, feed);
            }
            return;
        }
        if seq > tip.saturating_add(1) {
            if self.buffer.contains_key(&(feed, seq)) {
                self.stats.duplicates += 1;
            } else if self.buffer.len() >= self.config.max_buffered {
                self.stats.buffer_dropped += 1;
            } else {
                self.stats.buffered += 1;
                self.buffer.insert((feed, seq), (from, message));
            }
            return;
        }
        if !self.accept(now, from, message) {
            return;
        }
        // Take what the buffer holds next.
        while let Some(tip) = self.trees.get(&feed).map(|t| t.tip) {
            let Some(next_seq) = tip.checked_add(1) else {
                break;
            };
            let Some((pusher, next)) = self.buffer.remove(&(feed, next_seq)) else {
                break;
            };
            if !self.accept(now, pusher, next) {
                break;
            }
        }
        if let Some(tip) = self.trees.get(&feed).map(|t| t.tip) {
            self.buffer.retain(|(f, s), _| *f != feed || *s > tip);
        }
    }

    /// Validates `message`, the next of its feed, and hands it to the shell. `true` if
    /// accepted.
    fn accept(&mut self, now: Instant, from: NodeId, message: FeedMessage) -> bool {
        let feed = message.author;
        let Some(tree) = self.trees.get(&feed) else {
            return false;
        };
        if message.content.len() > self.config.max_content_len {
            self.stats.content_too_large += 1;
            return false;
        }
        if message.previous != tree.tip_id {
            self.stats.wrong_previous += 1;
            return false;
        }
        if self.unappended >= self.config.max_unappended {
            self.stats.unappended_full += 1;
            return false;
        }
        if self.queued() >= self.config.output_queue_capacity {
            self.stats.events_dropped += 1;
            return false;
        }
        let id = message.id();
        if !signature_ok(&message, &id) {
            self.stats.bad_signature += 1;
            return false;
        }
        let seq = message.sequence;
        let source = tree.source;
        if let Some(tree) = self.trees.get_mut(&feed) {
            tree.tip = seq;
            tree.tip_id = Some(id);
        }
        self.unappended += 1;
        self.stats.accepted += 1;
        if let Some(link) = self.link_mut(from, feed) {
            link.remote_seq = link.remote_seq.max(seq);
            link.sent = link.sent.max(seq);
        }
        self.events.push_back(TreeEvent::Received { from, message });
        // Progress: the wait restarts if we are still behind.
        let behind = self.is_behind(feed);
        if let Some(tree) = self.trees.get_mut(&feed) {
            tree.waiting_since = behind.then_some(now);
        }
        match source {
            // (A buffered message's pusher may have gone down since.)
            None if self.peers.contains_key(&from) => self.switch_source(now, feed, Some(from)),
            None => {}
            Some(source) if source != from => self.prune_pusher(now, from, feed),
            Some(_) => {}
        }
        true
    }

    /// Rule 5: `from` pushed `feed` without being our source; tell it to stop, at most once
    /// per half interval.
    fn prune_pusher(&mut self, now: Instant, from: NodeId, feed: FeedId) {
        let half = self.config.notes_interval / 2;
        let Some(link) = self.link_mut(from, feed) else {
            return;
        };
        if link.local_eager {
            return;
        }
        let recent = link.told_mode == Some(Told::Lazy)
            && link
                .told_at
                .is_some_and(|t| now.saturating_duration_since(t) < half);
        if !recent {
            self.stats.prunes += 1;
            self.note_outbox.entry(from).or_default().insert(feed);
        }
    }

    fn check_fork(&mut self, now: Instant, message: FeedMessage) {
        let feed = message.author;
        if self.fork_checks.contains_key(&feed)
            || self.fork_checks.len() >= self.config.max_pending_fetches
        {
            return;
        }
        if self.queue_request(StoreRequest::CheckFork { message }) {
            self.fork_checks.insert(feed, now);
            self.stats.fork_checks += 1;
        }
    }

    /// `feed` is forked: stop replicating it (notes `-1`), drop its source and pending work.
    fn forked(&mut self, now: Instant, feed: FeedId) {
        let _ = now;
        if let Some(tree) = self.trees.get_mut(&feed) {
            tree.source = None;
            tree.waiting_since = None;
        }
        for (node, peer) in &mut self.peers {
            if let Some(link) = peer.links.get_mut(&feed) {
                link.local_eager = false;
                if link.remote != Remote::DontReplicate {
                    self.note_outbox.entry(*node).or_default().insert(feed);
                }
            }
        }
        self.backlog.retain(|(_, f)| *f != feed);
        self.buffer.retain(|(f, _), _| *f != feed);
        self.fetches.retain(|(_, f), _| *f != feed);
    }

    fn drain_feed_events(&mut self) {
        while let Some(event) = self.feeds.poll_event() {
            match event {
                FeedEvent::Forked { feed, proof } => {
                    self.queue_event(TreeEvent::Forked { feed, proof });
                }
            }
        }
    }

    // ----- internals: pushing -----

    /// Queues `message` for `node` (packed into batches at the end of the input).
    fn push(&mut self, now: Instant, node: NodeId, message: FeedMessage) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        let feed = message.author;
        let Some(link) = peer.links.get_mut(&feed) else {
            return;
        };
        let bound = i64::try_from(message.encoded_len_bound()).unwrap_or(i64::MAX);
        peer.budget = peer.budget.saturating_sub(bound);
        link.sent = message.sequence;
        link.told_seq = Some(
            link.told_seq
                .map_or(message.sequence, |t| t.max(message.sequence)),
        );
        link.told_at = Some(now);
        self.batch_outbox.entry(node).or_default().push(message);
    }

    /// Serves the backlog: pushes from the recent cache, or asks the store, within each
    /// peer's budget and the fetch bound.
    fn serve(&mut self, now: Instant) {
        if self.backlog.is_empty() {
            return;
        }
        let order: Vec<(NodeId, FeedId)> = match self.serve_cursor {
            Some(cursor) => {
                let later = self.backlog.range((
                    std::ops::Bound::Excluded(cursor),
                    std::ops::Bound::Unbounded,
                ));
                let earlier = self.backlog.range(..=cursor);
                later.chain(earlier).copied().collect()
            }
            None => self.backlog.iter().copied().collect(),
        };
        for (node, feed) in order {
            self.serve_cursor = Some((node, feed));
            let (head, _) = self.head(feed);
            let forked = self.feeds.is_forked(feed);
            let Some(peer) = self.peers.get_mut(&node) else {
                self.backlog.remove(&(node, feed));
                continue;
            };
            let Some(link) = peer.links.get_mut(&feed) else {
                self.backlog.remove(&(node, feed));
                continue;
            };
            link.sent = link.sent.max(link.remote_seq);
            if link.remote != Remote::Eager || forked || link.sent >= head {
                self.backlog.remove(&(node, feed));
                continue;
            }
            if peer.budget <= 0 {
                self.stats.budget_deferred += 1;
                continue;
            }
            if self.fetches.contains_key(&(node, feed)) {
                continue;
            }
            // Below, `last < head`, so `last + 1` cannot overflow.
            let mut last = link.sent;
            let mut budget = peer.budget;
            let mut from_cache = Vec::new();
            while last < head && budget > 0 {
                let Some(message) = self.recent.peek(&(feed, last + 1)) else {
                    break;
                };
                budget = budget
                    .saturating_sub(i64::try_from(message.encoded_len_bound()).unwrap_or(i64::MAX));
                from_cache.push(message.clone());
                last += 1;
            }
            for message in from_cache {
                self.push(now, node, message);
            }
            if last >= head {
                self.backlog.remove(&(node, feed));
                continue;
            }
            if budget <= 0 {
                self.stats.budget_deferred += 1;
                continue;
            }
            if self.fetches.len() >= self.config.max_pending_fetches {
                self.stats.fetches_deferred += 1;
                continue;
            }
            let limit = usize::try_from(head - last)
                .unwrap_or(usize::MAX)
                .min(self.config.fetch_limit);
            let request = StoreRequest::Fetch {
                feed,
                from_seq: last + 1,
                limit,
                for_peer: node,
            };
            if self.queue_request(request) {
                self.fetches.insert((node, feed), now);
                self.stats.fetches += 1;
            }
        }
    }

    // ----- internals: output -----

    /// End of every input: serve the backlog, then turn the outboxes into datagrams.
    fn after_input(&mut self, now: Instant) {
        self.serve(now);
        self.flush_batches();
        self.flush_notes(now);
    }

    fn flush_batches(&mut self) {
        let max = self.config.max_struct_len();
        let outbox = std::mem::take(&mut self.batch_outbox);
        for (node, messages) in outbox {
            let Some(addr) = self.peers.get(&node).map(|p| p.addr) else {
                continue;
            };
            let mut batch: Vec<FeedMessage> = Vec::new();
            let mut len = LIST_PREFIX;
            for message in messages {
                let bound = message.encoded_len_bound();
                if !batch.is_empty() && len + bound > max {
                    self.queue_batch(node, addr, std::mem::take(&mut batch));
                    len = LIST_PREFIX;
                }
                len += bound;
                batch.push(message);
            }
            if !batch.is_empty() {
                self.queue_batch(node, addr, batch);
            }
        }
    }

    fn queue_batch(&mut self, to: NodeId, addr: SocketAddr, messages: Vec<FeedMessage>) {
        let count = messages.len() as u64;
        let message = TreeMessage::Batch(FeedBatch { messages });
        if self.queue_transmit(Transmit { to, addr, message }) {
            self.stats.batches_sent += 1;
            self.stats.messages_sent += count;
        }
    }

    fn flush_notes(&mut self, now: Instant) {
        let per_datagram = notes_per_datagram(self.config.max_envelope_len).max(1);
        let outbox = std::mem::take(&mut self.note_outbox);
        let refusals = std::mem::take(&mut self.refusals);
        let resend = std::mem::take(&mut self.resend_outbox);
        let nodes: BTreeSet<NodeId> = outbox.keys().chain(refusals.keys()).copied().collect();
        for node in nodes {
            let Some(addr) = self.peers.get(&node).map(|p| p.addr) else {
                continue;
            };
            // feed -> (value, whether it is our note for a followed feed)
            let mut entries: BTreeMap<FeedId, (i64, bool)> = BTreeMap::new();
            for &feed in refusals.get(&node).into_iter().flatten() {
                if !self.trees.contains_key(&feed) {
                    entries.insert(feed, (-1, false));
                }
            }
            for &feed in outbox.get(&node).into_iter().flatten() {
                if let Some(note) = self.current_note(node, feed) {
                    entries.insert(feed, (note.to_i64(), true));
                }
            }
            let entries: Vec<(FeedId, (i64, bool))> = entries.into_iter().collect();
            for chunk in entries.chunks(per_datagram) {
                let notes = Notes {
                    entries: chunk.iter().map(|(f, (v, _))| (*f, *v)).collect(),
                };
                let message = TreeMessage::Notes(notes);
                if !self.queue_transmit(Transmit {
                    to: node,
                    addr,
                    message,
                }) {
                    // Left untold: the next round sends them again.
                    break;
                }
                self.stats.notes_sent += 1;
                self.stats.note_entries_sent += chunk.len() as u64;
                for (feed, (value, ours)) in chunk {
                    if !*ours {
                        self.stats.refusals_sent += 1;
                        continue;
                    }
                    if resend.contains(&(node, *feed)) {
                        self.stats.note_entries_resent += 1;
                    }
                    let Some(link) = self.link_mut(node, *feed) else {
                        continue;
                    };
                    link.told_at = Some(now);
                    match Note::from_i64(*value) {
                        Some(Note::Replicate { sequence, eager }) => {
                            link.told_mode = Some(if eager { Told::Eager } else { Told::Lazy });
                            link.told_seq =
                                Some(link.told_seq.map_or(sequence, |t| t.max(sequence)));
                        }
                        _ => link.told_mode = Some(Told::DontReplicate),
                    }
                }
            }
        }
    }

    /// Our note for `feed` to `node` now: `-1` if forked, else our head and request.
    fn current_note(&self, node: NodeId, feed: FeedId) -> Option<Note> {
        if !self.trees.contains_key(&feed) {
            return None;
        }
        let link = self.peers.get(&node)?.links.get(&feed)?;
        if self.feeds.is_forked(feed) {
            return Some(Note::DoNotReplicate);
        }
        Some(Note::Replicate {
            sequence: self.head(feed).0,
            eager: link.local_eager,
        })
    }

    fn queued(&self) -> usize {
        self.transmits.len() + self.events.len() + self.requests.len()
    }

    fn queue_transmit(&mut self, transmit: Transmit) -> bool {
        if self.queued() >= self.config.output_queue_capacity {
            self.stats.transmits_dropped += 1;
            return false;
        }
        self.transmits.push_back(transmit);
        true
    }

    fn queue_event(&mut self, event: TreeEvent) {
        if self.queued() >= self.config.output_queue_capacity {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn queue_request(&mut self, request: StoreRequest) -> bool {
        if self.queued() >= self.config.output_queue_capacity {
            self.stats.requests_dropped += 1;
            return false;
        }
        self.requests.push_back(request);
        true
    }

    // ----- internals: small helpers -----

    /// The appended head of `feed`: sequence (0 if none) and id.
    fn head(&self, feed: FeedId) -> (u64, Option<MessageHash>) {
        match self.feeds.latest(feed) {
            Some((seq, id)) => (seq, Some(id)),
            None => (0, None),
        }
    }

    fn link_mut(&mut self, node: NodeId, feed: FeedId) -> Option<&mut Link> {
        self.peers.get_mut(&node)?.links.get_mut(&feed)
    }

    fn clock_of(peer: &Peer) -> Vec<(FeedId, i64)> {
        peer.links
            .iter()
            .filter_map(|(feed, link)| {
                let note = match link.remote {
                    Remote::Unknown => return None,
                    Remote::DontReplicate => Note::DoNotReplicate,
                    Remote::Lazy | Remote::Eager => Note::Replicate {
                        sequence: link.remote_seq,
                        eager: false,
                    },
                };
                Some((*feed, note.to_i64()))
            })
            .collect()
    }
}

impl FeedTree {
    fn at(latest: Option<(u64, MessageHash)>) -> FeedTree {
        FeedTree {
            tip: latest.map_or(0, |(seq, _)| seq),
            tip_id: latest.map(|(_, id)| id),
            ..FeedTree::default()
        }
    }
}

/// Checks `message`'s signature. `id` is its id, computed by the caller.
///
/// In this crate's own tests the result is memoised per message id within a thread (the id
/// hashes every signed byte, so equal ids mean equal messages and equal results): a
/// simulation runs a hundred nodes in one process, each checking the same messages, and an
/// unoptimised ed25519 check costs about 8 ms. Outside `cfg(test)` every call verifies.
#[cfg(not(test))]
fn signature_ok(message: &FeedMessage, id: &MessageHash) -> bool {
    let _ = id;
    message.verify_signature().is_ok()
}

#[cfg(test)]
fn signature_ok(message: &FeedMessage, id: &MessageHash) -> bool {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static VERIFIED: RefCell<HashMap<MessageHash, bool>> = RefCell::new(HashMap::new());
    }
    VERIFIED.with(|memo| {
        let mut memo = memo.borrow_mut();
        if let Some(&ok) = memo.get(id) {
            return ok;
        }
        let ok = message.verify_signature().is_ok();
        if memo.len() >= 1 << 16 {
            memo.clear();
        }
        memo.insert(*id, ok);
        ok
    })
}
