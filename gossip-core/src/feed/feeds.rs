//! Validation of received feed messages: [`FeedState`] per feed, [`Feeds`] for many.

use std::collections::{BTreeMap, VecDeque};

use gossip_crypto::SIGNATURE_LEN;

use super::{FeedId, FeedMessage, MAX_CONTENT_LIMIT, MessageHash};
use crate::config::{self, ConfigError};

/// Default [`FeedsConfig::max_content_len`]: 1,024 bytes. A message with that much content is
/// at most [`wire_bound::feed_message`](super::wire_bound::feed_message)`(1024)` = 1,174 bytes
/// on the wire, which leaves room in the default 1,400-byte datagram (1,364-byte envelope)
/// for the envelope and a feed-protocol header.
pub const DEFAULT_MAX_CONTENT_LEN: usize = 1_024;

/// Default [`FeedsConfig::max_feeds`]: 10,000 followed feeds (a Secure Scuttlebutt node
/// replicating two hops of its follow graph typically holds a few thousand).
pub const DEFAULT_MAX_FEEDS: usize = 10_000;

/// Largest accepted [`FeedsConfig::max_feeds`]: 1,000,000.
pub const MAX_FEEDS_LIMIT: usize = 1_000_000;

/// Default [`FeedsConfig::event_queue_capacity`]: 64 undrained events.
pub const DEFAULT_EVENT_QUEUE_CAPACITY: usize = 64;

/// Configuration of [`Feeds`]. [`validate`](Self::validate) is the one place the bounds are
/// checked; [`Feeds::new`] calls it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedsConfig {
    /// Largest content of a message, in bytes; larger ones are rejected with
    /// [`Rejection::ContentTooLarge`]. Default [`DEFAULT_MAX_CONTENT_LEN`] (1,024). Bound:
    /// `1..=`[`MAX_CONTENT_LIMIT`]. Every node of a network must use the same value, or
    /// messages valid at their author are refused elsewhere.
    pub max_content_len: usize,
    /// Feeds followed at once. Default [`DEFAULT_MAX_FEEDS`] (10,000). Bound:
    /// `1..=`[`MAX_FEEDS_LIMIT`]. Each costs about 100 bytes, plus its [`ForkProof`] (two
    /// messages) once forked.
    pub max_feeds: usize,
    /// Events held until [`Feeds::poll_event`] drains them; past it new events are dropped
    /// and counted in [`FeedStats::events_dropped`] (the proof stays available from
    /// [`Feeds::fork_proof`]). Default [`DEFAULT_EVENT_QUEUE_CAPACITY`] (64). Bound: ≥ 1.
    pub event_queue_capacity: usize,
}

impl Default for FeedsConfig {
    fn default() -> Self {
        FeedsConfig {
            max_content_len: DEFAULT_MAX_CONTENT_LEN,
            max_feeds: DEFAULT_MAX_FEEDS,
            event_queue_capacity: DEFAULT_EVENT_QUEUE_CAPACITY,
        }
    }
}

impl FeedsConfig {
    /// Checks every field against the bound in its doc.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first field out of bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::in_range(
            "max_content_len",
            self.max_content_len,
            1,
            MAX_CONTENT_LIMIT,
        )?;
        config::in_range("max_feeds", self.max_feeds, 1, MAX_FEEDS_LIMIT)?;
        config::at_least("event_queue_capacity", self.event_queue_capacity, 1)?;
        Ok(())
    }
}

/// Why a received feed message was not accepted, one variant per reason.
///
/// Each variant's doc says whether state changed; every rejection through [`Feeds`] is counted
/// in the matching [`FeedStats`] field. The checks run in the order of the variants below, so
/// a message with several faults reports the first (a replayed message with an edited
/// sequence is [`BadSignature`](Self::BadSignature), not [`NotNext`](Self::NotNext)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The feed is not followed by this [`Feeds`]. Nothing changed.
    #[error("feed is not followed")]
    NotFollowed,
    /// The feed is known to be forked: nothing more is accepted or replicated for it. Nothing
    /// changed.
    #[error("feed is forked; no further messages are accepted")]
    Forked,
    /// The message's author is not the feed being replicated. Nothing changed.
    #[error("message by {got} offered for feed {expected}")]
    WrongAuthor {
        /// The feed being replicated.
        expected: FeedId,
        /// The message's author.
        got: FeedId,
    },
    /// The content is larger than the configured maximum. Nothing changed.
    #[error("content of {len} bytes exceeds the maximum of {max} bytes")]
    ContentTooLarge {
        /// The content's length, in bytes.
        len: usize,
        /// The largest accepted content, in bytes.
        max: usize,
    },
    /// Byte-identical to a message already accepted at that sequence (the head, or the
    /// stored message passed in): harmless, and the common case in gossip. Counted apart from
    /// the faults. Nothing changed.
    #[error("duplicate of an accepted message")]
    Duplicate,
    /// The signature is not the author's over the message's fields: content, sequence,
    /// previous hash or timestamp were altered, or someone other than the author signed.
    /// Nothing changed.
    #[error("signature does not verify against the author's key")]
    BadSignature,
    /// Validly signed by the author, but not the next message: a gap (a message is missing
    /// before it, for example received out of order) or sequence 0. Nothing changed; the
    /// message may become acceptable once the gap is filled.
    #[error("expected sequence {expected}, got {got}")]
    NotNext {
        /// The sequence that would be accepted: latest + 1.
        expected: u64,
        /// The message's sequence.
        got: u64,
    },
    /// Validly signed, the next sequence, but its `previous` is not the id of the feed's
    /// latest message (or is set on sequence 1, or missing after it): the chain is broken.
    /// Nothing changed.
    #[error("message {sequence} does not point at the previous message's id")]
    WrongPrevious {
        /// The message's sequence.
        sequence: u64,
    },
    /// A second, different, validly signed message at a sequence that already has one: the
    /// author forked the feed. State changed: the feed is now forked (nothing more is
    /// accepted or replicated for it), the [`ForkProof`] is kept, and
    /// [`FeedEvent::Forked`] is queued.
    #[error("fork at sequence {sequence}: two different messages signed by the author")]
    Fork {
        /// The sequence with two messages.
        sequence: u64,
    },
    /// Validly signed, at a sequence at or below the latest, differing from the head, and no
    /// stored message was passed: it cannot be told a duplicate from a fork. Nothing changed.
    /// Call again with the message the log holds at that sequence.
    #[error("message {sequence} is at or below the latest ({latest}) and needs the stored message")]
    Unresolved {
        /// The message's sequence.
        sequence: u64,
        /// The feed's latest sequence.
        latest: u64,
    },
}

impl Rejection {
    /// A short lowercase name for metrics and logs (`bad_signature`, ...), the same as the
    /// [`FeedStats`] field that counts it.
    pub fn name(&self) -> &'static str {
        match self {
            Rejection::NotFollowed => "not_followed",
            Rejection::Forked => "forked",
            Rejection::WrongAuthor { .. } => "wrong_author",
            Rejection::ContentTooLarge { .. } => "content_too_large",
            Rejection::Duplicate => "duplicates",
            Rejection::BadSignature => "bad_signature",
            Rejection::NotNext { .. } => "not_next",
            Rejection::WrongPrevious { .. } => "wrong_previous",
            Rejection::Fork { .. } => "forks",
            Rejection::Unresolved { .. } => "unresolved",
        }
    }
}

/// Two different messages signed by one author at one sequence: proof that the author forked
/// its feed. Anyone can check it with [`is_valid`](Self::is_valid), with no other state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkProof {
    /// The message held first (from the log).
    pub first: FeedMessage,
    /// The conflicting message received later.
    pub second: FeedMessage,
}

impl ForkProof {
    /// The forked feed (the author of both messages).
    pub fn feed(&self) -> FeedId {
        self.first.author
    }

    /// The sequence with two messages.
    pub fn sequence(&self) -> u64 {
        self.first.sequence
    }

    /// Whether this proves a fork: same author, same sequence, different ids, and both
    /// signatures valid. Costs two signature checks.
    pub fn is_valid(&self) -> bool {
        self.first.author == self.second.author
            && self.first.sequence == self.second.sequence
            && self.first.id() != self.second.id()
            && self.first.verify_signature().is_ok()
            && self.second.verify_signature().is_ok()
    }
}

/// Something to tell the application, from [`Feeds::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedEvent {
    /// `feed` was found forked; it is no longer accepted or replicated. Raised once per feed
    /// (by [`Feeds::validate`] or [`Feeds::mark_forked`]).
    Forked {
        /// The forked feed.
        feed: FeedId,
        /// The two messages.
        proof: ForkProof,
    },
}

/// Why [`Feeds::follow`] or [`Feeds::mark_forked`] failed. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// [`FeedsConfig::max_feeds`] feeds are followed already. Nothing changed.
    #[error("already following the maximum of {max} feeds")]
    TooManyFeeds {
        /// The bound, [`FeedsConfig::max_feeds`].
        max: usize,
    },
    /// The proof passed to [`Feeds::mark_forked`] does not prove a fork
    /// ([`ForkProof::is_valid`] is false). Nothing changed.
    #[error("fork proof is invalid")]
    InvalidForkProof,
}

/// Counters of a [`Feeds`], each a running total since construction. The rejection fields
/// are named by [`Rejection::name`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Messages [`Feeds::validate`] accepted.
    pub accepted: u64,
    /// Messages recorded as the new head by [`Feeds::handle_appended`].
    pub appended: u64,
    /// [`Rejection::NotFollowed`].
    pub not_followed: u64,
    /// [`Rejection::Forked`].
    pub forked: u64,
    /// [`Rejection::WrongAuthor`].
    pub wrong_author: u64,
    /// [`Rejection::ContentTooLarge`].
    pub content_too_large: u64,
    /// [`Rejection::Duplicate`] (harmless).
    pub duplicates: u64,
    /// [`Rejection::BadSignature`].
    pub bad_signature: u64,
    /// [`Rejection::NotNext`].
    pub not_next: u64,
    /// [`Rejection::WrongPrevious`].
    pub wrong_previous: u64,
    /// [`Rejection::Fork`]: forks detected, at most one per feed.
    pub forks: u64,
    /// [`Rejection::Unresolved`].
    pub unresolved: u64,
    /// Feeds marked forked from a proof by [`Feeds::mark_forked`].
    pub fork_proofs_imported: u64,
    /// Events dropped because [`FeedsConfig::event_queue_capacity`] were undrained.
    pub events_dropped: u64,
}

impl FeedStats {
    /// The counter of `reason`'s kind (its data is ignored).
    pub fn count(&self, reason: &Rejection) -> u64 {
        match reason {
            Rejection::NotFollowed => self.not_followed,
            Rejection::Forked => self.forked,
            Rejection::WrongAuthor { .. } => self.wrong_author,
            Rejection::ContentTooLarge { .. } => self.content_too_large,
            Rejection::Duplicate => self.duplicates,
            Rejection::BadSignature => self.bad_signature,
            Rejection::NotNext { .. } => self.not_next,
            Rejection::WrongPrevious { .. } => self.wrong_previous,
            Rejection::Fork { .. } => self.forks,
            Rejection::Unresolved { .. } => self.unresolved,
        }
    }

    /// All rejections but duplicates.
    pub fn rejected(&self) -> u64 {
        self.not_followed
            + self.forked
            + self.wrong_author
            + self.content_too_large
            + self.bad_signature
            + self.not_next
            + self.wrong_previous
            + self.forks
            + self.unresolved
    }

    fn record(&mut self, reason: &Rejection) {
        let counter = match reason {
            Rejection::NotFollowed => &mut self.not_followed,
            Rejection::Forked => &mut self.forked,
            Rejection::WrongAuthor { .. } => &mut self.wrong_author,
            Rejection::ContentTooLarge { .. } => &mut self.content_too_large,
            Rejection::Duplicate => &mut self.duplicates,
            Rejection::BadSignature => &mut self.bad_signature,
            Rejection::NotNext { .. } => &mut self.not_next,
            Rejection::WrongPrevious { .. } => &mut self.wrong_previous,
            Rejection::Fork { .. } => &mut self.forks,
            Rejection::Unresolved { .. } => &mut self.unresolved,
        };
        *counter = counter.saturating_add(1);
    }
}

/// What this node knows of one feed: its head (latest sequence and id, `None` before the
/// first message), or that it is forked.
///
/// It holds ids, not messages, so it is small; the messages are in the log. To tell a
/// duplicate from a fork below the head, [`validate`](Self::validate) is handed the stored
/// message at the received sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedState {
    feed: FeedId,
    latest: Option<(u64, MessageHash)>,
    fork: Option<Box<ForkProof>>,
}

impl FeedState {
    /// The state of `feed` whose log ends at `latest` (`None` if the log holds no message of
    /// it), for example from `gossip-store`'s `FeedLog::latest`.
    pub fn new(feed: FeedId, latest: Option<(u64, MessageHash)>) -> FeedState {
        FeedState {
            feed,
            latest,
            fork: None,
        }
    }

    /// The feed.
    pub fn feed(&self) -> FeedId {
        self.feed
    }

    /// Sequence and id of the latest message, `None` before the first.
    pub fn latest(&self) -> Option<(u64, MessageHash)> {
        self.latest
    }

    /// Whether the feed is known to be forked.
    pub fn is_forked(&self) -> bool {
        self.fork.is_some()
    }

    /// The fork proof, if the feed is forked.
    pub fn fork_proof(&self) -> Option<&ForkProof> {
        self.fork.as_deref()
    }

    /// Classifies `msg` as received for this feed, without changing anything. On success
    /// returns the message's id: `msg` is the next message of the feed and may be appended.
    ///
    /// `stored_at_seq` is the message the log holds for this feed at `msg.sequence`. It is
    /// needed only when `msg.sequence` is at or below the latest sequence (to tell a duplicate
    /// from a fork, and to build the fork proof); otherwise pass `None` (it is ignored). A
    /// stored message of another feed or sequence is ignored.
    ///
    /// `max_content` is capped at [`MAX_CONTENT_LIMIT`].
    ///
    /// # Errors
    ///
    /// The first [`Rejection`] that applies, in the order of its variants (`NotFollowed`
    /// aside, which only [`Feeds`] returns). `Fork` is returned here without any change; it is
    /// [`Feeds::validate`] that marks the feed.
    pub fn validate(
        &self,
        msg: &FeedMessage,
        stored_at_seq: Option<&FeedMessage>,
        max_content: usize,
    ) -> Result<MessageHash, Rejection> {
        if self.fork.is_some() {
            return Err(Rejection::Forked);
        }
        if msg.author != self.feed {
            return Err(Rejection::WrongAuthor {
                expected: self.feed,
                got: msg.author,
            });
        }
        let max = max_content.min(MAX_CONTENT_LIMIT);
        if msg.content.len() > max {
            return Err(Rejection::ContentTooLarge {
                len: msg.content.len(),
                max,
            });
        }
        // One encoding serves both the id (hash of all of it) and the signature check (all
        // but the trailing signature).
        let signed = msg.encode_signed();
        let id = MessageHash(gossip_crypto::sha256(&signed));
        let signing = &signed[..signed.len() - SIGNATURE_LEN];
        let signature_ok = || gossip_crypto::verify(&msg.author.0, signing, &msg.signature).is_ok();

        match self.latest {
            Some((latest, head)) if msg.sequence <= latest => {
                // Identical bytes to an accepted message: its signature was checked then.
                if msg.sequence == latest && id == head {
                    return Err(Rejection::Duplicate);
                }
                let stored =
                    stored_at_seq.filter(|s| s.author == self.feed && s.sequence == msg.sequence);
                if stored.is_some_and(|s| s.id() == id) {
                    return Err(Rejection::Duplicate);
                }
                if !signature_ok() {
                    return Err(Rejection::BadSignature);
                }
                if msg.sequence == 0 {
                    return Err(Rejection::NotNext {
                        expected: latest.saturating_add(1),
                        got: 0,
                    });
                }
                match stored {
                    Some(_) => Err(Rejection::Fork {
                        sequence: msg.sequence,
                    }),
                    None => Err(Rejection::Unresolved {
                        sequence: msg.sequence,
                        latest,
                    }),
                }
            }
            _ => {
                if !signature_ok() {
                    return Err(Rejection::BadSignature);
                }
                // Here latest < msg.sequence, so latest + 1 cannot overflow.
                let expected = self
                    .latest
                    .map_or(1, |(latest, _)| latest.saturating_add(1));
                if msg.sequence != expected {
                    return Err(Rejection::NotNext {
                        expected,
                        got: msg.sequence,
                    });
                }
                if msg.previous != self.latest.map(|(_, head)| head) {
                    return Err(Rejection::WrongPrevious {
                        sequence: msg.sequence,
                    });
                }
                Ok(id)
            }
        }
    }
}

/// The validation state of every followed feed: heads, fork proofs, counters and events.
///
/// # Call order
///
/// Sans-IO like the rest of the crate: it reads no clock and never touches the log. The shell
/// (the feed-tree actor, which owns a `gossip-store` `FeedLog`) drives it:
///
/// 1. **Construction**: [`new`](Self::new), then [`follow`](Self::follow) each followed feed
///    (the node's own feed too) with its head from the log (`FeedLog::latest`), and
///    [`mark_forked`](Self::mark_forked) for every fork proof persisted earlier.
/// 2. **Received message** `msg` for feed `f`: if `msg.sequence` is at or below
///    [`latest`](Self::latest)`(f)`, read the log's message at that sequence; call
///    [`validate`](Self::validate)`(f, &msg, stored)`. On `Ok`, append `msg` to the log; once
///    the append has returned (it is durable), call [`handle_appended`](Self::handle_appended)
///    and only then deliver and forward `msg`. On `Err`, drop it (the reason is counted in
///    [`stats`](Self::stats)); on [`Rejection::Unresolved`], read the stored message and call
///    again.
/// 3. **Own message**: [`FeedMessage::create`] with the head, append, then
///    [`handle_appended`](Self::handle_appended), then publish.
/// 4. **Outputs**: after every input drain [`poll_event`](Self::poll_event) until `None`
///    (persist each [`FeedEvent::Forked`] proof if forks must survive a restart).
///
/// Validating never advances a feed: if the append fails nothing needs undoing. After an
/// append whose outcome is unknown (an I/O error), [`resync`](Self::resync) with the log's
/// head.
///
/// # Forks
///
/// A fork at sequence `s` can only be recognised against the message already held at `s`.
/// For `s` = the head, the head id tells a duplicate (the common case in gossip) with no log
/// read. Below the head, or to build the proof, the caller passes the stored message: this
/// keeps per-feed state at two numbers instead of a window of recent ids whose size would
/// either bound how far back a fork is noticed or cost memory per feed.
///
/// # Bounds
///
/// At most [`FeedsConfig::max_feeds`] feeds, each with at most one [`ForkProof`]; at most
/// [`FeedsConfig::event_queue_capacity`] undrained events. No message can panic it.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use gossip_core::feed::{FeedId, FeedMessage, Feeds, FeedsConfig, Rejection};
/// use gossip_crypto::Identity;
///
/// let alice = Identity::generate();
/// let feed = FeedId::of(&alice);
/// let mut feeds = Feeds::new(FeedsConfig::default())?;
/// feeds.follow(feed, None)?;
///
/// let first = FeedMessage::create(&alice, None, 0, Bytes::from_static(b"one"), 1024)?;
/// let id = feeds.validate(feed, &first, None)?;
/// // ... append `first` to the log, durably ...
/// feeds.handle_appended(&first)?;
/// assert_eq!(feeds.latest(feed), Some((1, id)));
///
/// let mut tampered = FeedMessage::create(&alice, Some(&first), 1, Bytes::from_static(b"two"), 1024)?;
/// tampered.content = Bytes::from_static(b"TWO");
/// assert_eq!(feeds.validate(feed, &tampered, None), Err(Rejection::BadSignature));
/// assert_eq!(feeds.stats().bad_signature, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Feeds {
    config: FeedsConfig,
    feeds: BTreeMap<FeedId, FeedState>,
    events: VecDeque<FeedEvent>,
    stats: FeedStats,
}

impl Feeds {
    // ----- construction -----

    /// An empty set of followed feeds.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if `config` fails [`FeedsConfig::validate`]; nothing is built.
    pub fn new(config: FeedsConfig) -> Result<Feeds, ConfigError> {
        config.validate()?;
        Ok(Feeds {
            config,
            feeds: BTreeMap::new(),
            events: VecDeque::new(),
            stats: FeedStats::default(),
        })
    }

    // ----- getters -----

    /// The configuration.
    pub fn config(&self) -> &FeedsConfig {
        &self.config
    }

    /// Counters since construction.
    pub fn stats(&self) -> FeedStats {
        self.stats
    }

    /// Number of followed feeds (≤ [`FeedsConfig::max_feeds`]).
    pub fn len(&self) -> usize {
        self.feeds.len()
    }

    /// Whether no feed is followed.
    pub fn is_empty(&self) -> bool {
        self.feeds.is_empty()
    }

    /// Number of undrained events (≤ [`FeedsConfig::event_queue_capacity`]).
    pub fn queued_events(&self) -> usize {
        self.events.len()
    }

    /// The state of `feed`, if followed.
    pub fn state(&self, feed: FeedId) -> Option<&FeedState> {
        self.feeds.get(&feed)
    }

    /// Sequence and id of `feed`'s latest message; `None` if not followed or empty.
    pub fn latest(&self, feed: FeedId) -> Option<(u64, MessageHash)> {
        self.feeds.get(&feed).and_then(FeedState::latest)
    }

    /// Whether `feed` is followed and known to be forked.
    pub fn is_forked(&self, feed: FeedId) -> bool {
        self.feeds.get(&feed).is_some_and(FeedState::is_forked)
    }

    /// The proof that `feed` forked, if it did.
    pub fn fork_proof(&self, feed: FeedId) -> Option<&ForkProof> {
        self.feeds.get(&feed).and_then(FeedState::fork_proof)
    }

    /// The feeds to replicate with their latest sequence (0 before the first message), in
    /// ascending feed order: every followed feed except the forked ones. This is the vector
    /// clock of the Secure Scuttlebutt handshake.
    pub fn clock(&self) -> impl Iterator<Item = (FeedId, u64)> + '_ {
        self.feeds
            .values()
            .filter(|state| !state.is_forked())
            .map(|state| (state.feed, state.latest.map_or(0, |(seq, _)| seq)))
    }

    // ----- commands -----

    /// Starts following `feed`, whose log ends at `latest` (`None` if it holds none of its
    /// messages). Returns `true` if newly followed, `false` if it was already (then nothing
    /// changed; see [`resync`](Self::resync)).
    ///
    /// # Errors
    ///
    /// [`FollowError::TooManyFeeds`] when [`FeedsConfig::max_feeds`] are followed; nothing
    /// changed.
    pub fn follow(
        &mut self,
        feed: FeedId,
        latest: Option<(u64, MessageHash)>,
    ) -> Result<bool, FollowError> {
        if self.feeds.contains_key(&feed) {
            return Ok(false);
        }
        if self.feeds.len() >= self.config.max_feeds {
            return Err(FollowError::TooManyFeeds {
                max: self.config.max_feeds,
            });
        }
        self.feeds.insert(feed, FeedState::new(feed, latest));
        Ok(true)
    }

    /// Stops following `feed` and returns its state (with any fork proof), or `None` if it was
    /// not followed. A feed followed again later starts from the `latest` then given and is
    /// not known forked unless [`mark_forked`](Self::mark_forked) is called.
    pub fn unfollow(&mut self, feed: FeedId) -> Option<FeedState> {
        self.feeds.remove(&feed)
    }

    /// Sets the head of followed `feed` to `latest`, as read from the log (after an append
    /// whose outcome is unknown). Returns `false`, changing nothing, if `feed` is not
    /// followed. A fork mark is kept.
    pub fn resync(&mut self, feed: FeedId, latest: Option<(u64, MessageHash)>) -> bool {
        match self.feeds.get_mut(&feed) {
            Some(state) => {
                state.latest = latest;
                true
            }
            None => false,
        }
    }

    /// Marks `proof.feed()` forked from a proof obtained elsewhere (persisted by this node
    /// earlier, or received from a peer), following the feed if needed. Returns `true` and
    /// queues [`FeedEvent::Forked`] if the feed was not yet known forked; `false` if it was
    /// (nothing changed). Costs two signature checks.
    ///
    /// # Errors
    ///
    /// Nothing changed on error: [`FollowError::InvalidForkProof`] if the proof does not prove
    /// a fork; [`FollowError::TooManyFeeds`] if the feed is not followed and no room is left.
    pub fn mark_forked(&mut self, proof: ForkProof) -> Result<bool, FollowError> {
        let feed = proof.feed();
        if self.is_forked(feed) {
            return Ok(false);
        }
        if !proof.is_valid() {
            return Err(FollowError::InvalidForkProof);
        }
        self.follow(feed, None)?;
        self.stats.fork_proofs_imported += 1;
        self.set_forked(feed, proof);
        Ok(true)
    }

    // ----- inputs -----

    /// Input: `msg`, received for feed `feed`. Returns its id if it is the next message of
    /// the feed, to be appended to the log; the feed does *not* advance until
    /// [`handle_appended`](Self::handle_appended).
    ///
    /// `stored_at_seq` is the message the log holds for `feed` at `msg.sequence`, needed only
    /// when `msg.sequence` ≤ [`latest`](Self::latest)`(feed)` (see [`FeedState::validate`]).
    ///
    /// # Errors
    ///
    /// The [`Rejection`], counted in [`stats`](Self::stats). Only [`Rejection::Fork`] changes
    /// state: the feed is marked forked with [`ForkProof`] `{ first: stored, second: msg }`
    /// and [`FeedEvent::Forked`] is queued.
    pub fn validate(
        &mut self,
        feed: FeedId,
        msg: &FeedMessage,
        stored_at_seq: Option<&FeedMessage>,
    ) -> Result<MessageHash, Rejection> {
        let result = match self.feeds.get(&feed) {
            Some(state) => state.validate(msg, stored_at_seq, self.config.max_content_len),
            None => Err(Rejection::NotFollowed),
        };
        match &result {
            Ok(_) => self.stats.accepted += 1,
            Err(reason) => {
                self.stats.record(reason);
                if let (Rejection::Fork { .. }, Some(first)) = (reason, stored_at_seq) {
                    let proof = ForkProof {
                        first: first.clone(),
                        second: msg.clone(),
                    };
                    self.set_forked(feed, proof);
                }
            }
        }
        result
    }

    /// Input: `msg` has been appended to the log and is durable; it becomes the head of its
    /// feed (`msg.author`). Call it for accepted messages and for the node's own. Checks the
    /// chain (not the signature, already checked or made locally).
    ///
    /// # Errors
    ///
    /// Nothing changed on error: [`Rejection::NotFollowed`], [`Rejection::Forked`],
    /// [`Rejection::NotNext`] or [`Rejection::WrongPrevious`] if `msg` is not the next
    /// message of the head this core holds (the caller skipped a step; [`resync`](Self::resync)
    /// from the log). Not counted in the rejection stats.
    pub fn handle_appended(&mut self, msg: &FeedMessage) -> Result<(), Rejection> {
        let state = self
            .feeds
            .get_mut(&msg.author)
            .ok_or(Rejection::NotFollowed)?;
        if state.is_forked() {
            return Err(Rejection::Forked);
        }
        let expected = match state.latest {
            None => 1,
            Some((latest, _)) => latest.checked_add(1).ok_or(Rejection::NotNext {
                expected: latest,
                got: msg.sequence,
            })?,
        };
        if msg.sequence != expected {
            return Err(Rejection::NotNext {
                expected,
                got: msg.sequence,
            });
        }
        if msg.previous != state.latest.map(|(_, head)| head) {
            return Err(Rejection::WrongPrevious {
                sequence: msg.sequence,
            });
        }
        state.latest = Some((msg.sequence, msg.id()));
        self.stats.appended += 1;
        Ok(())
    }

    // ----- outputs -----

    /// The next event for the application, oldest first.
    pub fn poll_event(&mut self) -> Option<FeedEvent> {
        self.events.pop_front()
    }

    fn set_forked(&mut self, feed: FeedId, proof: ForkProof) {
        let Some(state) = self.feeds.get_mut(&feed) else {
            return;
        };
        state.fork = Some(Box::new(proof.clone()));
        if self.events.len() >= self.config.event_queue_capacity {
            self.stats.events_dropped += 1;
        } else {
            self.events.push_back(FeedEvent::Forked { feed, proof });
        }
    }
}
