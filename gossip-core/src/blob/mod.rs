//! Blobs: large objects named by the SHA-256 of their bytes, cut into chunks that each fit
//! one datagram, and fetched on demand from the peers that hold them — the "large objects
//! in optional attachments" of the Secure Scuttlebutt talk, as a sans-IO state machine.
//!
//! # Model
//!
//! A blob is stored once and named by its [`BlobId`]; a feed message references it as
//! `blob:<64 hex digits>` ([`references`]). Its bytes are cut into chunks and a hash tree is
//! built over them ([`Layout`]: pages of chunk hashes, pages of page hashes, up to one top
//! page whose hash is the *root*), so that every piece — a chunk or a page — fits one
//! datagram and can be verified the moment it arrives.
//!
//! ```text
//!  fetcher                                   holder
//!     | -- BlobWant {blob} (want round) ------> |   holders of the whole blob answer
//!     | <----- BlobHave {blob, size, chunk, root}|
//!     | -- BlobRequest {blob, pieces ≤ window} -> |   bounded per peer
//!     | <------------- BlobPiece {piece, data} -- |   one datagram each
//!     |  verify sha256(data) against the parent page (the root for the top page);
//!     |  a verified page makes the pieces it names requestable; a chunk is stored;
//!     |  when every piece is stored: sha256(whole blob) must equal the blob id.
//! ```
//!
//! # Rules of [`Blobs`]
//!
//! 1. **Sources.** A fetch sends [`BlobWant`] to up to `want_fanout` peers every
//!    `want_interval` while it has fewer than `max_sources` sources. A peer that answers
//!    [`BlobHave`] with the layout the fetch adopted (the first acceptable one) becomes a
//!    source; answers with another layout are counted and ignored.
//! 2. **Window.** Each source has a window (TCP Reno in pieces, see [`BlobConfig`]); the
//!    fetch requests the next wanted pieces (pages before chunks, top level first) from the
//!    sources with room, preferring for a piece that timed out a source other than the one
//!    that failed it. Across all fetches at most `max_held_pieces` pieces are held (in
//!    flight, or verified and being stored), which bounds the memory of a transfer whatever
//!    the blob's size ([`BlobStats::peak_held_pieces`]).
//! 3. **Verification.** A piece is accepted only if its length is the layout's and its
//!    SHA-256 is the hash its parent page names. A piece that fails is counted against the
//!    peer that sent it ([`BlobEvent::CorruptPiece`], [`Blobs::corrupt_count`]); after
//!    `max_corrupt` the peer is no longer a source of any blob, and the piece is requested
//!    again from another source.
//! 4. **Timeouts.** A request unanswered within the source's retransmission timeout is
//!    retried, the source's window halves, and a source that times out
//!    `max_source_timeouts` windows in a row is dropped.
//! 5. **Completion.** When every piece is stored the shell hashes the whole blob
//!    ([`StoreRequest::CheckBlob`]); if the hash is the blob id the fetch completes
//!    ([`StoreRequest::Commit`], [`BlobEvent::Complete`]). Otherwise the layout its sources
//!    announced was false (every piece matched a tree that does not describe the blob):
//!    they are banned for this blob, the stored pieces are discarded and the fetch starts
//!    over.
//! 6. **Serving.** A [`BlobWant`] is answered from the store ([`StoreRequest::Lookup`])
//!    when the blob is held whole; a [`BlobRequest`] is served from the store
//!    ([`StoreRequest::ReadPieces`]) with at most `serve_queue_per_peer` pieces per peer and
//!    `max_pending_reads` reads at once; the excess is dropped, counted, and retried by the
//!    requester. Nothing about serving grows without a bound.
//!
//! # Call order
//!
//! Like every core of this crate: after each input (`fetch`, `cancel`, `handle_*`) drain
//! [`poll_transmit`](Blobs::poll_transmit), [`poll_event`](Blobs::poll_event) and
//! [`poll_store_request`](Blobs::poll_store_request) until `None`, then arm one timer at
//! [`poll_timeout`](Blobs::poll_timeout) and call [`handle_timeout`](Blobs::handle_timeout)
//! when it fires. Every store request is answered by its `handle_*` input.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use rand::seq::IndexedRandom;

use crate::config::ConfigError;
use crate::id::NodeId;

mod config;
mod layout;
mod wire;

#[cfg(test)]
mod tests;

pub use config::{BlobConfig, MAX_FETCH_SIZE};
pub use layout::{Built, Layout, LayoutError, MAX_BLOB_SIZE, MAX_LEVELS, build};
pub use wire::{
    BlobHave, BlobId, BlobMessage, BlobMeta, BlobPiece, BlobRequest, BlobWant, ENVELOPE_OVERHEAD,
    HAVE_BOUND, LENGTH_PREFIX, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, PIECE_INDEX_BOUND, PIECE_OVERHEAD,
    ParseBlobIdError, PieceIndex, U32_BOUND, U64_BOUND, WANT_BOUND, chunk_size_for, piece_bound,
    pieces_per_request, request_bound,
};

/// The prefix of a blob reference in feed content: `blob:` followed by the id's 64
/// lowercase hex digits.
pub const REFERENCE_PREFIX: &str = "blob:";

/// The blob ids referenced by `content`: every `blob:<64 hex digits>` in it (lowercase hex,
/// as [`BlobId`]'s `Display` writes it), in order of first appearance, each once. The
/// reference may appear anywhere in the content (text, JSON strings); bytes around it do not
/// matter except that the 64 digits must follow the prefix immediately.
///
/// This is the convention that decides which blobs a feed *references* (and so which blobs
/// a store keeps and which a node fetches for followed feeds).
pub fn references(content: &[u8]) -> Vec<BlobId> {
    let prefix = REFERENCE_PREFIX.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at + prefix.len() + 64 <= content.len() {
        if &content[at..at + prefix.len()] != prefix {
            at += 1;
            continue;
        }
        let digits = &content[at + prefix.len()..at + prefix.len() + 64];
        let lower = digits
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        let mut id = [0u8; 32];
        if lower && hex::decode_to_slice(digits, &mut id).is_ok() {
            if !found.contains(&BlobId(id)) {
                found.push(BlobId(id));
            }
            at += prefix.len() + 64;
        } else {
            at += 1;
        }
    }
    found
}

/// The reference to write in feed content for `blob`: `blob:<64 hex digits>`.
pub fn reference(blob: BlobId) -> String {
    format!("{REFERENCE_PREFIX}{blob}")
}

/// A message to send, from [`Blobs::poll_transmit`]. Its bound is at most
/// `max_envelope_len − ENVELOPE_OVERHEAD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The peer it is for; `None` for a want sent to an address whose node id is not known
    /// yet ([`Blobs::handle_peer_addr`]).
    pub to: Option<NodeId>,
    /// The peer's address.
    pub addr: SocketAddr,
    /// What to send.
    pub message: BlobMessage,
}

/// Why a fetch ended without the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// No piece was verified for `stall_timeout` (no holder answered, or none delivered).
    Stalled,
    /// The shell could not store a piece (for example the blob store is full).
    Store,
}

/// Something for the shell or the application, from [`Blobs::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobEvent {
    /// A fetch advanced: `stored` of `total` pieces are stored (data chunks and pages),
    /// `bytes` of the blob's `size` bytes of data among them. At most one per
    /// `progress_interval` per fetch, and one when the last piece is stored.
    Progress {
        /// The blob.
        blob: BlobId,
        /// Data bytes stored.
        bytes: u64,
        /// The blob's size, in bytes.
        size: u64,
        /// Pieces stored.
        stored: u64,
        /// Pieces of the tree.
        total: u64,
    },
    /// The blob is stored whole and its SHA-256 is its id.
    Complete {
        /// The blob.
        blob: BlobId,
        /// Its size, in bytes.
        size: u64,
    },
    /// `peer` sent a piece whose length or hash is wrong; the piece will be fetched from
    /// another source.
    CorruptPiece {
        /// The blob.
        blob: BlobId,
        /// The piece.
        piece: PieceIndex,
        /// The peer that sent it.
        peer: NodeId,
    },
    /// The stored pieces did not hash to the blob id: the layout announced by `banned` was
    /// false. They are banned for this blob and the fetch starts over.
    HashMismatch {
        /// The blob.
        blob: BlobId,
        /// The sources of the false layout.
        banned: Vec<NodeId>,
    },
    /// The fetch ended without the blob; its stored pieces are discarded.
    Failed {
        /// The blob.
        blob: BlobId,
        /// Why.
        reason: FailReason,
    },
}

/// A request to the shell's blob storage, from [`Blobs::poll_store_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreRequest {
    /// Does the store hold `blob` whole? Answer with [`Blobs::handle_lookup`].
    Lookup {
        /// The blob.
        blob: BlobId,
        /// The peer that asked.
        for_peer: NodeId,
    },
    /// Read these pieces of `blob` and answer with [`Blobs::handle_pieces_read`] (a piece
    /// the store lacks is answered `None`).
    ReadPieces {
        /// The blob.
        blob: BlobId,
        /// The pieces, as requested.
        pieces: Vec<PieceIndex>,
        /// The peer they are for.
        for_peer: NodeId,
    },
    /// Store a verified piece of a blob being fetched, and answer with
    /// [`Blobs::handle_stored`], passing `ticket` back.
    StorePiece {
        /// The blob.
        blob: BlobId,
        /// Names this attempt of the fetch: the answer to a write asked for by an attempt
        /// that was since cancelled or restarted is ignored.
        ticket: u64,
        /// Its layout (to record with the first piece).
        meta: BlobMeta,
        /// The piece.
        piece: PieceIndex,
        /// Its bytes, verified.
        data: Bytes,
    },
    /// Every piece of `blob` is stored: compute the SHA-256 of its data (the level-0 chunks
    /// in order) and answer with [`Blobs::handle_blob_hash`].
    CheckBlob {
        /// The blob.
        blob: BlobId,
    },
    /// The blob is complete and verified: mark it held whole with this layout, so that it
    /// is served.
    Commit {
        /// The blob.
        blob: BlobId,
        /// Its layout.
        meta: BlobMeta,
    },
    /// Remove every stored piece of `blob` (a failed, restarted or cancelled fetch).
    Discard {
        /// The blob.
        blob: BlobId,
    },
}

/// Why [`Blobs::fetch`] refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// `max_fetches` fetches are already running.
    #[error("{max} blob fetches are already running")]
    TooManyFetches {
        /// [`BlobConfig::max_fetches`].
        max: usize,
    },
}

/// Counters of [`Blobs`]. All are totals since start unless named otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobStats {
    /// Fetches started.
    pub fetches_started: u64,
    /// Fetches completed (hash matched).
    pub fetches_completed: u64,
    /// Fetches failed.
    pub fetches_failed: u64,
    /// Want messages sent.
    pub wants_sent: u64,
    /// Have messages sent (answers to wants).
    pub haves_sent: u64,
    /// Request messages sent, and pieces named in them.
    pub requests_sent: u64,
    /// Pieces requested.
    pub pieces_requested: u64,
    /// Pieces verified (hash matched) and handed to the store.
    pub pieces_verified: u64,
    /// Pieces that failed verification (length or hash).
    pub pieces_corrupt: u64,
    /// Pieces received that were not (or no longer) wanted: duplicates after a retry.
    pub pieces_unwanted: u64,
    /// Requests that timed out (pieces retried).
    pub pieces_timed_out: u64,
    /// Times a window halved.
    pub window_decreases: u64,
    /// Sources dropped after `max_source_timeouts`.
    pub sources_dropped: u64,
    /// Haves announcing a layout other than the one adopted, or an unacceptable one.
    pub haves_ignored: u64,
    /// Final hash checks that failed (false layouts).
    pub hash_mismatches: u64,
    /// Pieces held right now (requested, or verified and being stored).
    pub held_pieces: usize,
    /// Most pieces ever held at once (≤ `max_held_pieces`).
    pub peak_held_pieces: usize,
    /// Bytes of verified pieces being stored right now.
    pub held_bytes: usize,
    /// Most bytes of pieces ever held at once, counting a requested piece at its layout
    /// length (≤ `max_held_pieces × chunk_size`).
    pub peak_held_bytes: usize,
    /// Pieces served.
    pub pieces_served: u64,
    /// Requested pieces refused: the peer's serve queue or the read bound was full.
    pub serve_refused: u64,
    /// Requested pieces the store did not have.
    pub serve_missing: u64,
    /// Wants not answered because the read bound was full.
    pub lookups_refused: u64,
    /// Messages from an unknown peer dropped because `max_peers` addresses are kept.
    pub peers_full: u64,
    /// Malformed messages (a piece outside the tree).
    pub malformed: u64,
    /// Outputs dropped because a queue was at `output_queue_capacity`.
    pub output_dropped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceState {
    /// The parent page is not verified yet.
    Unknown,
    /// Requestable.
    Wanted,
    /// Requested from a source.
    InFlight,
    /// Verified, handed to the store.
    Storing,
    /// Stored.
    Done,
}

struct InFlight {
    peer: NodeId,
    sent_at: Instant,
    deadline: Instant,
    len: usize,
}

struct Source {
    addr: SocketAddr,
    /// Congestion window, in pieces (fractional for congestion avoidance).
    window: f64,
    ssthresh: f64,
    in_flight: usize,
    srtt: Option<Duration>,
    rttvar: Duration,
    last_decrease: Option<Instant>,
    /// Windows timed out in a row without a verified piece.
    timeouts: u32,
}

struct Tree {
    /// This attempt's [`StoreRequest::StorePiece::ticket`].
    ticket: u64,
    meta: BlobMeta,
    layout: Layout,
    /// Per level: each piece's expected hash (zero until its parent is verified).
    hashes: Vec<Vec<[u8; 32]>>,
    state: Vec<Vec<PieceState>>,
    /// Requestable pieces: top level first, then ascending index.
    wanted: BTreeSet<(u8, u32)>,
    /// The source that last failed a piece (timed out), to prefer another.
    failed_by: BTreeMap<PieceIndex, NodeId>,
    in_flight: BTreeMap<PieceIndex, InFlight>,
    stored: u64,
    stored_bytes: u64,
    checking: bool,
}

impl Tree {
    fn new(ticket: u64, meta: BlobMeta, layout: Layout) -> Tree {
        let levels = layout.levels();
        let mut hashes = Vec::with_capacity(levels);
        let mut state = Vec::with_capacity(levels);
        for level in 0..levels {
            let n = layout.count(level as u8) as usize;
            hashes.push(vec![[0u8; 32]; n]);
            state.push(vec![PieceState::Unknown; n]);
        }
        let top = layout.top();
        hashes[top as usize][0] = meta.root;
        state[top as usize][0] = PieceState::Wanted;
        let mut wanted = BTreeSet::new();
        wanted.insert((u8::MAX - top, 0));
        Tree {
            ticket,
            meta,
            layout,
            hashes,
            state,
            wanted,
            failed_by: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            stored: 0,
            stored_bytes: 0,
            checking: false,
        }
    }

    fn state(&self, piece: PieceIndex) -> Option<PieceState> {
        self.state
            .get(usize::from(piece.level))
            .and_then(|l| l.get(piece.index as usize))
            .copied()
    }

    fn set_state(&mut self, piece: PieceIndex, to: PieceState) {
        if let Some(s) = self
            .state
            .get_mut(usize::from(piece.level))
            .and_then(|l| l.get_mut(piece.index as usize))
        {
            *s = to;
        }
        let key = (u8::MAX - piece.level, piece.index);
        if to == PieceState::Wanted {
            self.wanted.insert(key);
        } else {
            self.wanted.remove(&key);
        }
    }

    fn expected(&self, piece: PieceIndex) -> Option<[u8; 32]> {
        self.hashes
            .get(usize::from(piece.level))
            .and_then(|l| l.get(piece.index as usize))
            .copied()
    }
}

struct Fetch {
    /// Largest size accepted from a holder's layout, in bytes.
    max_size: u64,
    tree: Option<Tree>,
    sources: BTreeMap<NodeId, Source>,
    /// Peers that must not be sources of this blob (false layout).
    banned: BTreeSet<NodeId>,
    next_want: Instant,
    last_progress: Instant,
    last_progress_event: Option<Instant>,
}

/// The blob transfer state machine of one node: fetching (sources, windows, verification,
/// retries) and serving (bounded per peer). See the module docs for the rules and the call
/// order.
///
/// # Example
///
/// ```
/// use std::time::Instant;
/// use bytes::Bytes;
/// use gossip_core::NodeId;
/// use gossip_core::blob::{BlobConfig, BlobId, Blobs, build};
/// use rand::SeedableRng;
///
/// let bytes = Bytes::from(vec![7u8; 4 * 1_248]);
/// let built = build(&bytes, BlobConfig::default().chunk_size())?;
/// assert_eq!(built.id, BlobId::of(&bytes));
/// assert_eq!(BlobConfig::default().chunk_size(), 1_248); // at a 1,400-byte datagram
/// assert_eq!(built.pieces.len(), 4 + 1); // four chunks and one page
///
/// let now = Instant::now();
/// let mut blobs = Blobs::new(NodeId([1; 32]), BlobConfig::default(),
///                            rand::rngs::StdRng::seed_from_u64(1), now)?;
/// blobs.handle_peer_up(NodeId([2; 32]), "127.0.0.1:7001".parse()?);
/// blobs.fetch(now, built.id)?;
/// let want = blobs.poll_transmit().expect("a want to the peer");
/// assert_eq!(want.to, Some(NodeId([2; 32])));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Blobs<R> {
    local_id: NodeId,
    config: BlobConfig,
    rng: R,
    peers: BTreeMap<NodeId, SocketAddr>,
    /// Addresses from discovery whose node id is not known yet: asked in want rounds too.
    addrs: BTreeSet<SocketAddr>,
    fetches: BTreeMap<BlobId, Fetch>,
    corrupt: BTreeMap<NodeId, u32>,
    /// The last [`Tree::ticket`] handed out.
    next_ticket: u64,
    serving: BTreeMap<NodeId, usize>,
    pending_reads: usize,
    transmits: VecDeque<Transmit>,
    events: VecDeque<BlobEvent>,
    store_requests: VecDeque<StoreRequest>,
    stats: BlobStats,
}

impl<R: Rng> std::fmt::Debug for Blobs<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("local_id", &self.local_id)
            .field("fetches", &self.fetches.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<R: Rng> Blobs<R> {
    /// A core for the node `local_id`.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` is out of bounds (see [`BlobConfig::validate`]).
    pub fn new(
        local_id: NodeId,
        config: BlobConfig,
        rng: R,
        _now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Blobs {
            local_id,
            config,
            rng,
            peers: BTreeMap::new(),
            addrs: BTreeSet::new(),
            fetches: BTreeMap::new(),
            corrupt: BTreeMap::new(),
            next_ticket: 0,
            serving: BTreeMap::new(),
            pending_reads: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            store_requests: VecDeque::new(),
            stats: BlobStats::default(),
        })
    }

    // ---- getters ----

    /// The configuration.
    pub fn config(&self) -> &BlobConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> BlobStats {
        self.stats
    }

    /// Corrupt pieces received from `peer` so far.
    pub fn corrupt_count(&self, peer: NodeId) -> u32 {
        self.corrupt.get(&peer).copied().unwrap_or(0)
    }

    /// Every peer that sent corrupt pieces, with how many, ascending by node id (at most
    /// `max_peers` entries: past it the peer with the fewest is forgotten).
    pub fn corrupt_peers(&self) -> Vec<(NodeId, u32)> {
        self.corrupt.iter().map(|(id, n)| (*id, *n)).collect()
    }

    /// The blobs being fetched, ascending.
    pub fn fetching(&self) -> Vec<BlobId> {
        self.fetches.keys().copied().collect()
    }

    /// Whether `blob` is being fetched.
    pub fn is_fetching(&self, blob: BlobId) -> bool {
        self.fetches.contains_key(&blob)
    }

    /// The current sources of a fetch, with their windows in whole pieces.
    pub fn sources(&self, blob: BlobId) -> Vec<(NodeId, u32)> {
        self.fetches.get(&blob).map_or_else(Vec::new, |f| {
            f.sources
                .iter()
                .map(|(id, s)| (*id, s.window as u32))
                .collect()
        })
    }

    // ---- peers ----

    /// `node` can be reached at `addr` (from discovery). Ignored past `max_peers`.
    pub fn handle_peer_up(&mut self, node: NodeId, addr: SocketAddr) {
        if node == self.local_id {
            return;
        }
        if self.peers.len() < self.config.max_peers || self.peers.contains_key(&node) {
            self.peers.insert(node, addr);
        }
    }

    /// A peer at `addr` whose node id is not known yet (discovery's seeds): it is asked in
    /// want rounds like a known peer, and known by id once it answers. Ignored past
    /// `max_peers` such addresses.
    pub fn handle_peer_addr(&mut self, addr: SocketAddr) {
        if self.addrs.len() < self.config.max_peers {
            self.addrs.insert(addr);
        }
    }

    /// `node` is gone: it stops being a source (its pieces in flight are retried).
    pub fn handle_peer_down(&mut self, now: Instant, node: NodeId) {
        self.peers.remove(&node);
        self.serving.remove(&node);
        let blobs: Vec<BlobId> = self.fetches.keys().copied().collect();
        for blob in blobs {
            self.drop_source(now, blob, node);
        }
        self.schedule(now);
    }

    // ---- commands ----

    /// Starts fetching `blob`. Returns `false` if it is already being fetched. The shell
    /// calls this only for a blob its store does not hold.
    ///
    /// # Errors
    /// [`FetchError::TooManyFetches`] when `max_fetches` are running.
    pub fn fetch(&mut self, now: Instant, blob: BlobId) -> Result<bool, FetchError> {
        self.fetch_limited(now, blob, self.config.max_blob_size)
    }

    /// As [`fetch`](Self::fetch), but holders announcing a size above `max_size` bytes (or
    /// above `max_blob_size`) are ignored: for blobs fetched because a followed feed
    /// references them, within a configured size.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    pub fn fetch_limited(
        &mut self,
        now: Instant,
        blob: BlobId,
        max_size: u64,
    ) -> Result<bool, FetchError> {
        if self.fetches.contains_key(&blob) {
            return Ok(false);
        }
        if self.fetches.len() >= self.config.max_fetches {
            return Err(FetchError::TooManyFetches {
                max: self.config.max_fetches,
            });
        }
        self.fetches.insert(
            blob,
            Fetch {
                max_size: max_size.min(self.config.max_blob_size),
                tree: None,
                sources: BTreeMap::new(),
                banned: BTreeSet::new(),
                next_want: now,
                last_progress: now,
                last_progress_event: None,
            },
        );
        self.stats.fetches_started += 1;
        self.want_round(now, blob);
        Ok(true)
    }

    /// Stops fetching `blob` (its stored pieces are discarded). Returns whether it was being
    /// fetched.
    pub fn cancel(&mut self, now: Instant, blob: BlobId) -> bool {
        let existed = self.end_fetch(blob);
        if existed {
            self.push_store(StoreRequest::Discard { blob });
        }
        self.schedule(now);
        existed
    }

    // ---- network input ----

    /// A blob message from `from` at `addr`.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: NodeId,
        addr: SocketAddr,
        message: BlobMessage,
    ) {
        if from == self.local_id {
            return;
        }
        match self.peers.get(&from) {
            Some(known) if *known == addr => {}
            Some(_) => {
                self.peers.insert(from, addr);
            }
            None if self.peers.len() < self.config.max_peers => {
                self.peers.insert(from, addr);
            }
            None => {
                self.stats.peers_full += 1;
                return;
            }
        }
        match message {
            BlobMessage::Want(want) => self.on_want(from, want),
            BlobMessage::Have(have) => self.on_have(now, from, have),
            BlobMessage::Request(request) => self.on_request(from, request),
            BlobMessage::Piece(piece) => self.on_piece(now, from, piece),
        }
        self.schedule(now);
    }

    fn on_want(&mut self, from: NodeId, want: BlobWant) {
        if self.pending_reads >= self.config.max_pending_reads {
            self.stats.lookups_refused += 1;
            return;
        }
        self.pending_reads += 1;
        self.push_store(StoreRequest::Lookup {
            blob: want.blob,
            for_peer: from,
        });
    }

    fn on_have(&mut self, now: Instant, from: NodeId, have: BlobHave) {
        let max_chunk = self.config.chunk_size().max(MIN_CHUNK_SIZE as u32);
        let max_sources = self.config.max_sources;
        let initial = f64::from(self.config.initial_window);
        let max_window = f64::from(self.config.max_window);
        let bad = self
            .corrupt
            .get(&from)
            .is_some_and(|c| *c >= self.config.max_corrupt);
        let Some(fetch) = self.fetches.get_mut(&have.blob) else {
            return;
        };
        if bad || fetch.banned.contains(&from) || fetch.sources.contains_key(&from) {
            return;
        }
        let acceptable = have.meta.size <= fetch.max_size
            && have.meta.chunk_size <= max_chunk
            && Layout::of(&have.meta).is_ok();
        match &fetch.tree {
            None if acceptable => {
                if let Ok(layout) = Layout::of(&have.meta) {
                    self.next_ticket += 1;
                    fetch.tree = Some(Tree::new(self.next_ticket, have.meta, layout));
                    fetch.last_progress = now;
                }
            }
            Some(tree) if tree.meta == have.meta => {}
            _ => {
                self.stats.haves_ignored += 1;
                return;
            }
        }
        if fetch.sources.len() >= max_sources {
            return;
        }
        let Some(addr) = self.peers.get(&from).copied() else {
            return;
        };
        fetch.sources.insert(
            from,
            Source {
                addr,
                window: initial,
                ssthresh: max_window,
                in_flight: 0,
                srtt: None,
                rttvar: Duration::ZERO,
                last_decrease: None,
                timeouts: 0,
            },
        );
    }

    fn on_request(&mut self, from: NodeId, request: BlobRequest) {
        let queued = self.serving.get(&from).copied().unwrap_or(0);
        let room = self.config.serve_queue_per_peer.saturating_sub(queued);
        if room == 0 || self.pending_reads >= self.config.max_pending_reads {
            self.stats.serve_refused += request.pieces.len() as u64;
            return;
        }
        let mut pieces = request.pieces;
        if pieces.len() > room {
            self.stats.serve_refused += (pieces.len() - room) as u64;
            pieces.truncate(room);
        }
        *self.serving.entry(from).or_default() += pieces.len();
        self.pending_reads += 1;
        self.push_store(StoreRequest::ReadPieces {
            blob: request.blob,
            pieces,
            for_peer: from,
        });
    }

    fn on_piece(&mut self, now: Instant, from: NodeId, msg: BlobPiece) {
        let blob = msg.blob;
        let piece = msg.piece;
        let Some(fetch) = self.fetches.get_mut(&blob) else {
            self.stats.pieces_unwanted += 1;
            return;
        };
        let Some(tree) = fetch.tree.as_mut() else {
            self.stats.pieces_unwanted += 1;
            return;
        };
        if !tree.layout.contains(piece) {
            self.stats.malformed += 1;
            return;
        }
        // Whoever it was asked of, the piece is no longer in flight once it arrives.
        let flight = tree.in_flight.remove(&piece);
        if let Some(f) = &flight {
            self.stats.held_pieces = self.stats.held_pieces.saturating_sub(1);
            if let Some(source) = fetch.sources.get_mut(&f.peer) {
                source.in_flight = source.in_flight.saturating_sub(1);
                if f.peer == from {
                    source.sample_rtt(now.saturating_duration_since(f.sent_at));
                }
            }
        }
        let state = tree.state(piece);
        // A late piece (its request timed out) is taken only within the held bound.
        let late_over_bound =
            flight.is_none() && self.stats.held_pieces >= self.config.max_held_pieces;
        if !matches!(state, Some(PieceState::InFlight | PieceState::Wanted)) || late_over_bound {
            self.stats.pieces_unwanted += 1;
            return;
        }
        let ok = msg.data.len() == tree.layout.piece_len(piece)
            && tree.expected(piece) == Some(gossip_crypto::sha256(&msg.data));
        if !ok {
            self.stats.pieces_corrupt += 1;
            let count = self.corrupt.entry(from).or_default();
            *count = count.saturating_add(1);
            let banned = *count >= self.config.max_corrupt;
            tree.failed_by.insert(piece, from);
            tree.set_state(piece, PieceState::Wanted);
            if banned {
                self.drop_source(now, blob, from);
            }
            // Bound the corrupt-peer table: keep the worst offenders.
            if self.corrupt.len() > self.config.max_peers {
                if let Some((&least, _)) = self.corrupt.iter().min_by_key(|(_, c)| **c) {
                    self.corrupt.remove(&least);
                }
            }
            self.push_event(BlobEvent::CorruptPiece {
                blob,
                piece,
                peer: from,
            });
            return;
        }
        if let Some(source) = fetch.sources.get_mut(&from) {
            source.on_success();
            let cap = f64::from(self.config.max_window);
            source.window = source.window.min(cap);
        }
        fetch.last_progress = now;
        tree.failed_by.remove(&piece);
        tree.set_state(piece, PieceState::Storing);
        if piece.level > 0 {
            let children: Vec<PieceIndex> = tree.layout.children(piece).collect();
            for (child, hash) in children.into_iter().zip(msg.data.chunks_exact(32)) {
                if let Some(slot) = tree
                    .hashes
                    .get_mut(usize::from(child.level))
                    .and_then(|l| l.get_mut(child.index as usize))
                {
                    slot.copy_from_slice(hash);
                }
                tree.set_state(child, PieceState::Wanted);
            }
        }
        let meta = tree.meta;
        let ticket = tree.ticket;
        self.stats.pieces_verified += 1;
        self.stats.held_pieces += 1;
        self.stats.held_bytes += msg.data.len();
        self.note_peaks();
        self.push_store(StoreRequest::StorePiece {
            blob,
            ticket,
            meta,
            piece,
            data: msg.data,
        });
    }

    // ---- store answers ----

    /// The answer to [`StoreRequest::Lookup`]: `meta` if the store holds `blob` whole.
    pub fn handle_lookup(
        &mut self,
        now: Instant,
        for_peer: NodeId,
        blob: BlobId,
        meta: Option<BlobMeta>,
    ) {
        self.pending_reads = self.pending_reads.saturating_sub(1);
        if let (Some(meta), Some(addr)) = (meta, self.peers.get(&for_peer).copied()) {
            self.stats.haves_sent += 1;
            self.push_transmit(Transmit {
                to: Some(for_peer),
                addr,
                message: BlobMessage::Have(BlobHave { blob, meta }),
            });
        }
        self.schedule(now);
    }

    /// The answer to [`StoreRequest::ReadPieces`]: each piece with its bytes, or `None`
    /// where the store lacks it. Every requested piece must be answered once.
    pub fn handle_pieces_read(
        &mut self,
        now: Instant,
        for_peer: NodeId,
        blob: BlobId,
        pieces: Vec<(PieceIndex, Option<Bytes>)>,
    ) {
        let requested = pieces.len();
        self.pending_reads = self.pending_reads.saturating_sub(1);
        if let Some(queued) = self.serving.get_mut(&for_peer) {
            *queued = queued.saturating_sub(requested);
            if *queued == 0 {
                self.serving.remove(&for_peer);
            }
        }
        let Some(addr) = self.peers.get(&for_peer).copied() else {
            return;
        };
        for (piece, data) in pieces {
            match data {
                Some(data) => {
                    self.stats.pieces_served += 1;
                    self.push_transmit(Transmit {
                        to: Some(for_peer),
                        addr,
                        message: BlobMessage::Piece(BlobPiece { blob, piece, data }),
                    });
                }
                None => self.stats.serve_missing += 1,
            }
        }
        self.schedule(now);
    }

    /// The answer to [`StoreRequest::StorePiece`] with its `ticket`: `ok` if the piece is
    /// stored. Ignored if the fetch was since cancelled or restarted.
    pub fn handle_stored(
        &mut self,
        now: Instant,
        blob: BlobId,
        ticket: u64,
        piece: PieceIndex,
        ok: bool,
    ) {
        let Some(fetch) = self.fetches.get_mut(&blob) else {
            return;
        };
        let Some(tree) = fetch.tree.as_mut() else {
            return;
        };
        if tree.ticket != ticket || tree.state(piece) != Some(PieceState::Storing) {
            return;
        }
        let len = tree.layout.piece_len(piece);
        self.stats.held_pieces = self.stats.held_pieces.saturating_sub(1);
        self.stats.held_bytes = self.stats.held_bytes.saturating_sub(len);
        if !ok {
            self.fail(now, blob, FailReason::Store);
            self.schedule(now);
            return;
        }
        tree.set_state(piece, PieceState::Done);
        tree.stored += 1;
        if piece.level == 0 {
            tree.stored_bytes += len as u64;
        }
        let total = tree.layout.total_pieces();
        let done = tree.stored == total;
        let due = fetch
            .last_progress_event
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.progress_interval);
        let progress = BlobEvent::Progress {
            blob,
            bytes: tree.stored_bytes,
            size: tree.meta.size,
            stored: tree.stored,
            total,
        };
        if done {
            tree.checking = true;
        }
        if done || due {
            fetch.last_progress_event = Some(now);
            self.push_event(progress);
        }
        if done {
            self.push_store(StoreRequest::CheckBlob { blob });
        }
        self.schedule(now);
    }

    /// The answer to [`StoreRequest::CheckBlob`]: the SHA-256 of the stored data, or `None`
    /// if it could not be read.
    pub fn handle_blob_hash(&mut self, now: Instant, blob: BlobId, hash: Option<[u8; 32]>) {
        let Some(fetch) = self.fetches.get_mut(&blob) else {
            return;
        };
        let Some(tree) = fetch.tree.as_ref() else {
            return;
        };
        if !tree.checking {
            return;
        }
        let meta = tree.meta;
        match hash {
            Some(hash) if hash == blob.0 => {
                self.end_fetch(blob);
                self.stats.fetches_completed += 1;
                self.push_store(StoreRequest::Commit { blob, meta });
                self.push_event(BlobEvent::Complete {
                    blob,
                    size: meta.size,
                });
            }
            None => self.fail(now, blob, FailReason::Store),
            Some(_) => {
                self.stats.hash_mismatches += 1;
                let banned: Vec<NodeId> = fetch.sources.keys().copied().collect();
                fetch.banned.extend(banned.iter().copied());
                fetch.sources.clear();
                fetch.tree = None;
                fetch.next_want = now;
                fetch.last_progress = now;
                self.push_store(StoreRequest::Discard { blob });
                self.push_event(BlobEvent::HashMismatch { blob, banned });
                self.want_round(now, blob);
            }
        }
        self.schedule(now);
    }

    // ---- time ----

    /// The timer fired: retries timed-out requests, runs want rounds, fails stalled fetches.
    pub fn handle_timeout(&mut self, now: Instant) {
        let blobs: Vec<BlobId> = self.fetches.keys().copied().collect();
        for blob in blobs {
            let Some(fetch) = self.fetches.get(&blob) else {
                continue;
            };
            let checking = fetch.tree.as_ref().is_some_and(|t| t.checking);
            if !checking
                && now.saturating_duration_since(fetch.last_progress) >= self.config.stall_timeout
            {
                self.fail(now, blob, FailReason::Stalled);
                continue;
            }
            self.expire(now, blob);
            if self.fetches.get(&blob).is_some_and(|f| f.next_want <= now) {
                self.want_round(now, blob);
            }
        }
        self.schedule(now);
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.fetches
            .values()
            .flat_map(|f| {
                let flights = f
                    .tree
                    .iter()
                    .flat_map(|t| t.in_flight.values().map(|i| i.deadline));
                let wants = (f.sources.len() < self.config.max_sources).then_some(f.next_want);
                let checking = f.tree.as_ref().is_some_and(|t| t.checking);
                let stall = (!checking).then(|| f.last_progress + self.config.stall_timeout);
                flights.chain(wants).chain(stall)
            })
            .min()
    }

    // ---- outputs ----

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<BlobEvent> {
        self.events.pop_front()
    }

    /// The next storage request.
    pub fn poll_store_request(&mut self) -> Option<StoreRequest> {
        self.store_requests.pop_front()
    }

    // ---- internals ----

    fn push_transmit(&mut self, t: Transmit) {
        if self.transmits.len() >= self.config.output_queue_capacity {
            self.stats.output_dropped += 1;
        } else {
            self.transmits.push_back(t);
        }
    }

    fn push_event(&mut self, e: BlobEvent) {
        if self.events.len() >= self.config.output_queue_capacity {
            self.stats.output_dropped += 1;
        } else {
            self.events.push_back(e);
        }
    }

    /// Store requests are never dropped: each is an answer the core waits for, and their
    /// number is bounded by `max_held_pieces` plus `max_pending_reads` plus a few per fetch.
    fn push_store(&mut self, r: StoreRequest) {
        self.store_requests.push_back(r);
    }

    fn note_peaks(&mut self) {
        self.stats.peak_held_pieces = self.stats.peak_held_pieces.max(self.stats.held_pieces);
        let in_flight_bytes: usize = self
            .fetches
            .values()
            .filter_map(|f| f.tree.as_ref())
            .flat_map(|t| t.in_flight.values().map(|i| i.len))
            .sum();
        self.stats.peak_held_bytes = self
            .stats
            .peak_held_bytes
            .max(self.stats.held_bytes + in_flight_bytes);
    }

    /// Removes a fetch, releasing what it held. Returns whether it existed.
    fn end_fetch(&mut self, blob: BlobId) -> bool {
        let Some(fetch) = self.fetches.remove(&blob) else {
            return false;
        };
        if let Some(tree) = fetch.tree {
            let mut storing: Vec<usize> = Vec::new();
            for (level, states) in tree.state.iter().enumerate() {
                for (index, s) in states.iter().enumerate() {
                    if *s == PieceState::Storing {
                        storing.push(tree.layout.piece_len(PieceIndex {
                            level: level as u8,
                            index: index as u32,
                        }));
                    }
                }
            }
            self.stats.held_pieces = self
                .stats
                .held_pieces
                .saturating_sub(tree.in_flight.len() + storing.len());
            self.stats.held_bytes = self
                .stats
                .held_bytes
                .saturating_sub(storing.iter().sum::<usize>());
        }
        true
    }

    fn fail(&mut self, _now: Instant, blob: BlobId, reason: FailReason) {
        if self.end_fetch(blob) {
            self.stats.fetches_failed += 1;
            self.push_store(StoreRequest::Discard { blob });
            self.push_event(BlobEvent::Failed { blob, reason });
        }
    }

    /// Drops `node` as a source of `blob`; its pieces in flight become wanted again.
    fn drop_source(&mut self, _now: Instant, blob: BlobId, node: NodeId) {
        let Some(fetch) = self.fetches.get_mut(&blob) else {
            return;
        };
        if fetch.sources.remove(&node).is_none() {
            return;
        }
        let Some(tree) = fetch.tree.as_mut() else {
            return;
        };
        let theirs: Vec<PieceIndex> = tree
            .in_flight
            .iter()
            .filter(|(_, f)| f.peer == node)
            .map(|(p, _)| *p)
            .collect();
        for piece in theirs {
            tree.in_flight.remove(&piece);
            self.stats.held_pieces = self.stats.held_pieces.saturating_sub(1);
            tree.failed_by.insert(piece, node);
            tree.set_state(piece, PieceState::Wanted);
        }
    }

    /// Retries the requests of `blob` whose deadline passed, and shrinks their windows.
    fn expire(&mut self, now: Instant, blob: BlobId) {
        let Some(fetch) = self.fetches.get_mut(&blob) else {
            return;
        };
        let Some(tree) = fetch.tree.as_mut() else {
            return;
        };
        let expired: Vec<(PieceIndex, NodeId)> = tree
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(p, f)| (*p, f.peer))
            .collect();
        let mut dead = Vec::new();
        for (piece, peer) in expired {
            tree.in_flight.remove(&piece);
            self.stats.held_pieces = self.stats.held_pieces.saturating_sub(1);
            self.stats.pieces_timed_out += 1;
            tree.failed_by.insert(piece, peer);
            tree.set_state(piece, PieceState::Wanted);
            if let Some(source) = fetch.sources.get_mut(&peer) {
                source.in_flight = source.in_flight.saturating_sub(1);
                let rto = source.rto(&self.config);
                if source
                    .last_decrease
                    .is_none_or(|t| now.saturating_duration_since(t) >= rto)
                {
                    source.last_decrease = Some(now);
                    source.ssthresh = (source.window / 2.0).max(f64::from(self.config.min_window));
                    source.window = source.ssthresh;
                    source.timeouts += 1;
                    self.stats.window_decreases += 1;
                    if source.timeouts >= self.config.max_source_timeouts {
                        dead.push(peer);
                    }
                }
            }
        }
        for peer in dead {
            self.stats.sources_dropped += 1;
            self.drop_source(now, blob, peer);
        }
    }

    /// Sends a want round for `blob` if it needs more sources.
    fn want_round(&mut self, now: Instant, blob: BlobId) {
        let Some(fetch) = self.fetches.get_mut(&blob) else {
            return;
        };
        fetch.next_want = now + self.config.want_interval;
        if fetch.sources.len() >= self.config.max_sources {
            return;
        }
        let max_corrupt = self.config.max_corrupt;
        let mut candidates: Vec<(Option<NodeId>, SocketAddr)> = self
            .peers
            .iter()
            .filter(|(id, _)| {
                !fetch.sources.contains_key(id)
                    && !fetch.banned.contains(id)
                    && self.corrupt.get(id).is_none_or(|c| *c < max_corrupt)
            })
            .map(|(id, addr)| (Some(*id), *addr))
            .collect();
        let known: BTreeSet<SocketAddr> = self.peers.values().copied().collect();
        candidates.extend(
            self.addrs
                .iter()
                .filter(|a| !known.contains(a))
                .map(|a| (None, *a)),
        );
        let chosen: Vec<(Option<NodeId>, SocketAddr)> = candidates
            .choose_multiple(&mut self.rng, self.config.want_fanout)
            .copied()
            .collect();
        for (to, addr) in chosen {
            self.stats.wants_sent += 1;
            self.push_transmit(Transmit {
                to,
                addr,
                message: BlobMessage::Want(BlobWant { blob }),
            });
        }
    }

    /// Requests wanted pieces from sources with room in their windows, within
    /// `max_held_pieces`.
    fn schedule(&mut self, now: Instant) {
        let per_request = self.config.pieces_per_request();
        let blobs: Vec<BlobId> = self.fetches.keys().copied().collect();
        for blob in blobs {
            let Some(fetch) = self.fetches.get_mut(&blob) else {
                continue;
            };
            let Some(tree) = fetch.tree.as_mut() else {
                continue;
            };
            let mut batches: BTreeMap<NodeId, Vec<PieceIndex>> = BTreeMap::new();
            // A source is asked again once a quarter of its window is free (or nothing is in
            // flight), so requests carry several pieces instead of one per arrival.
            let ready: BTreeSet<NodeId> = fetch
                .sources
                .iter()
                .filter(|(_, s)| {
                    let window = s.window.floor().max(1.0) as usize;
                    let free = window.saturating_sub(s.in_flight);
                    s.in_flight == 0 || free >= (window / 4).max(1)
                })
                .map(|(id, _)| *id)
                .collect();
            // Round-robin over the sources, one piece at a time, while any has room.
            loop {
                let mut progressed = false;
                for (peer, source) in fetch.sources.iter_mut() {
                    if self.stats.held_pieces >= self.config.max_held_pieces {
                        break;
                    }
                    if !ready.contains(peer)
                        || source.in_flight >= source.window.floor().max(1.0) as usize
                    {
                        continue;
                    }
                    let batch = batches.entry(*peer).or_default();
                    if batch.len() >= per_request {
                        continue;
                    }
                    // The first wanted piece this source did not fail, else the first one.
                    let pick = tree
                        .wanted
                        .iter()
                        .take(64)
                        .map(|(l, i)| PieceIndex {
                            level: u8::MAX - l,
                            index: *i,
                        })
                        .find(|p| tree.failed_by.get(p) != Some(peer))
                        .or_else(|| {
                            tree.wanted.first().map(|(l, i)| PieceIndex {
                                level: u8::MAX - l,
                                index: *i,
                            })
                        });
                    let Some(piece) = pick else {
                        break;
                    };
                    tree.set_state(piece, PieceState::InFlight);
                    let rto = source.rto(&self.config);
                    tree.in_flight.insert(
                        piece,
                        InFlight {
                            peer: *peer,
                            sent_at: now,
                            deadline: now + rto,
                            len: tree.layout.piece_len(piece),
                        },
                    );
                    source.in_flight += 1;
                    self.stats.held_pieces += 1;
                    batch.push(piece);
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            for (peer, pieces) in batches {
                if pieces.is_empty() {
                    continue;
                }
                let Some(addr) = fetch.sources.get(&peer).map(|s| s.addr) else {
                    continue;
                };
                self.stats.requests_sent += 1;
                self.stats.pieces_requested += pieces.len() as u64;
                let t = Transmit {
                    to: Some(peer),
                    addr,
                    message: BlobMessage::Request(BlobRequest { blob, pieces }),
                };
                if self.transmits.len() >= self.config.output_queue_capacity {
                    self.stats.output_dropped += 1;
                } else {
                    self.transmits.push_back(t);
                }
            }
        }
        self.note_peaks();
    }
}

impl Source {
    fn rto(&self, config: &BlobConfig) -> Duration {
        match self.srtt {
            None => config.initial_rto,
            Some(srtt) => (srtt * 2 + self.rttvar * 4).clamp(config.min_rto, config.max_rto),
        }
    }

    /// RFC 6298's smoothing (alpha 1/8, beta 1/4).
    fn sample_rtt(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// Reno: one piece per verified piece in slow start, one per window after.
    fn on_success(&mut self) {
        self.timeouts = 0;
        if self.window < self.ssthresh {
            self.window += 1.0;
        } else {
            self.window += 1.0 / self.window.max(1.0);
        }
    }
}

impl BlobMessage {
    /// The protocol message this travels as.
    pub fn into_message(self) -> crate::message::Message {
        use crate::message::Message;
        match self {
            BlobMessage::Want(m) => Message::BlobWant(m),
            BlobMessage::Have(m) => Message::BlobHave(m),
            BlobMessage::Request(m) => Message::BlobRequest(m),
            BlobMessage::Piece(m) => Message::BlobPiece(m),
        }
    }

    /// The blob message inside `message`, if it is one.
    pub fn from_message(message: crate::message::Message) -> Option<BlobMessage> {
        use crate::message::Message;
        match message {
            Message::BlobWant(m) => Some(BlobMessage::Want(m)),
            Message::BlobHave(m) => Some(BlobMessage::Have(m)),
            Message::BlobRequest(m) => Some(BlobMessage::Request(m)),
            Message::BlobPiece(m) => Some(BlobMessage::Piece(m)),
            _ => None,
        }
    }
}
