//! Sans-IO protocol state machines of the gossip framework.
//!
//! # Model
//!
//! Every protocol in this crate is a plain struct that never touches a socket, a file or a
//! clock, and never draws from a global random generator. The shell that owns it (an actix
//! actor in `gossip-actors`, the simulator, a test) feeds it inputs stamped with the current
//! time and carries its outputs out, in the style of quinn-proto and iroh-gossip's `proto`:
//!
//! ```text
//!                     +--------------------------------+
//!  command ---------->| broadcast(now, payload)        |
//!  datagram --------->| handle_message(now, from, ..)  |---> poll_transmit() -> Transmit
//!  timer fired ------>| handle_timeout(now)            |---> poll_event()    -> Event
//!                     |   state: cache, seen ids,      |---> poll_timeout()  -> Option<Instant>
//!  rng (seeded) ----->|   ack timers, pending pulls    |
//!                     +--------------------------------+
//! ```
//!
//! After each input the shell drains `poll_transmit` and `poll_event` until `None` and re-arms
//! its single timer at `poll_timeout`. Randomness comes from an injected, seedable
//! `R: rand::Rng`, and whatever order reaches an output comes from a `BTreeMap`, a sorted
//! vector or an insertion-ordered list, so one seed reproduces a whole run; the deterministic
//! simulator relies on this. `Instant::now`, `SystemTime::now` and `rand::rng` are banned in
//! this crate by its `clippy.toml`.
//!
//! # Protocols
//!
//! - [`dissemination`]: go-gossip's (protocol-diver/go-gossip, 2022 design) push to `fanout`
//!   random peers, `PushAck` with a majority rule, and `PullSync` → `PullRequest` →
//!   `PullResponse` recovery from an LRU payload cache; plus a periodic anti-entropy
//!   `PullSync` (gossipmonger's 1 s gossip interval) so that a node that missed both the push
//!   and the recovery round still catches up, and a seen-id memory that outlives the payload
//!   cache (iroh-gossip's `message_id_retention`) so nothing is delivered twice.
//! - [`failure`]: phi accrual failure detection (Hayashibara et al. 2004) over a window of
//!   heartbeat inter-arrival times with gossipmonger's defaults (threshold 8, window 100,
//!   first interval 750 ms) and the exponential model of gossipmonger and Cassandra: a peer
//!   heard every second is declared dead about 18.4 s after it falls silent. A floor under
//!   the mean keeps bursts of traffic from making it trigger-happy, and a pause guard keeps a
//!   stall of the local process from convicting everyone.
//! - [`feed`]: Secure Scuttlebutt's signed feeds: per-author append-only hash chains of
//!   ed25519-signed messages with a byte-exact canonical encoding, and their validation, with
//!   one counted reason per rejection and fork detection that keeps both messages as proof.
//! - [`membership`]: CYCLON (Voulgaris, Gavidia, van Steen, "CYCLON: Inexpensive Membership
//!   Management for Unstructured P2P Overlays", 2005): a partial view of `c` = 20 entries with
//!   ages, refreshed every period by a shuffle of `l` = 8 entries with the oldest neighbour;
//!   unanswered shuffles and the failure detector remove dead nodes, and the view is the
//!   uniform peer sample (`select`) and the discovery feed (`NeighborUp` / `NeighborDown`).
//! - [`peers`]: the bounded peer table (go-gossip's `Discovery` table) with uniform random
//!   selection; go-gossip always picked the first `n` peers.
//! - [`tree`]: Secure Scuttlebutt's epidemic broadcast trees (ssb-ebt), one per followed feed:
//!   a single eager source per feed pushes new messages at once, every other link is lazy and
//!   carries vector-clock notes (SSB's `i64` encoding: sequence and a receive flag, `-1` for
//!   "do not replicate"); duplicates prune, newer notes graft, a source quiet for 3 s is
//!   replaced by the next peer in rotation, and the handshake sends only the feeds that
//!   changed since the peer's stored clock. Periodic notes replace acknowledgements over
//!   lossy datagrams, and pushes are limited per peer (backpressure).
//! - [`reconcile`]: Scuttlebutt reconciliation (van Renesse et al., LADIS 2008; gossipmonger)
//!   of per-node key/value state with versions, heartbeats and generations: three-step
//!   digest → deltas + digest → deltas exchanges, scuttle-depth (or -breadth) fitting into
//!   one datagram without version gaps, digests paged over the node-id ring plus rumours so
//!   that thousands of nodes work with 1,400-byte datagrams, tombstones with garbage
//!   collection and resets, restarts by generation, and gossipmonger's choice of live, dead
//!   and seed peers.
//! - [`blob`]: large objects ("attachments" in the Secure Scuttlebutt talk) named by the
//!   SHA-256 of their bytes, cut into datagram-sized chunks under a hash tree (BitTorrent
//!   v2's shape), fetched on demand from holders found by want/have rounds with a TCP Reno
//!   window per source, every piece verified on arrival, corrupt sources counted and
//!   avoided, and serving bounded per peer.
//! - [`flow`]: the same paper's flow control: a per-node maximum update rate enforced by a
//!   token bucket, adapted by AIMD from the overflow of gossip messages, and re-split
//!   pairwise between gossip partners from piggybacked rates so capacity is shared fairly.
//!
//! - [`replay`]: anti-replay as in WireGuard and IPsec (RFC 6479): a sliding window of packet
//!   counters per sender, reset by the sender's boot epoch, in a bounded table of senders.
//!
//! The wire shapes are in [`id`] and [`message`]; their encoding lives in `gossip-net`, and
//! [`message::wire_bound`] lets the core size datagrams without the encoder.
//!
//! # Robustness
//!
//! No message received from the network can panic a state machine. Every collection has a
//! bound that is a configuration field, and everything dropped at a bound is counted in the
//! protocol's stats (`DESIGN.md` section 8: go-gossip's remote panics, gossipsub's unbounded
//! queues, plumcast's ever-growing store). Configurations are validated in one place per
//! protocol and fail with the crate's single [`ConfigError`].
#![deny(missing_docs)]

pub mod blob;
pub mod config;
pub mod dissemination;
pub mod failure;
pub mod feed;
pub mod flow;
pub mod id;
pub mod membership;
pub mod message;
pub mod peers;
pub mod reconcile;
pub mod replay;
pub mod tree;

pub use config::ConfigError;
pub use id::{MessageId, NodeId};
pub use message::{AppMessage, Envelope, Gossip, Message, PacketType};

#[cfg(test)]
pub(crate) mod test_util {
    use std::time::Instant;

    /// The epoch of a test's virtual clock. Any instant will do; every later time is derived
    /// from it by adding durations, so this is the one clock read in the crate's tests.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn epoch() -> Instant {
        Instant::now()
    }
}
