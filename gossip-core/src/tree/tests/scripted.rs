//! Scripted exchanges between a few cores, with datagrams routed (or dropped) by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gossip_crypto::Identity;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::feed::{FeedId, FeedMessage, MessageHash};
use crate::id::NodeId;
use crate::tree::{
    ENVELOPE_OVERHEAD, FeedBatch, Note, Notes, PublishError, StoreRequest, Transmit, Tree,
    TreeConfig, TreeEvent, TreeMessage,
};

const SECOND: Duration = Duration::from_secs(1);

fn identity(n: u8) -> Identity {
    Identity::from_bytes(&[n; 32])
}

fn addr(id: NodeId) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id.0[0]], 7000))
}

fn lazy(sequence: u64) -> i64 {
    Note::Replicate {
        sequence,
        eager: false,
    }
    .to_i64()
}

fn eager(sequence: u64) -> i64 {
    Note::Replicate {
        sequence,
        eager: true,
    }
    .to_i64()
}

/// The first `len` messages of `author`'s feed, with `content_len` bytes of content each.
fn chain(author: &Identity, len: u64, content_len: usize) -> Vec<FeedMessage> {
    let mut messages: Vec<FeedMessage> = Vec::new();
    for i in 1..=len {
        let content = Bytes::from(vec![i as u8; content_len]);
        let message =
            FeedMessage::create(author, messages.last(), 1000 * i, content, 65_000).unwrap();
        messages.push(message);
    }
    messages
}

/// One core with a shell: an in-memory log, stored clocks, and what came out of it.
struct Node {
    core: Tree<StdRng>,
    id: NodeId,
    log: BTreeMap<FeedId, Vec<FeedMessage>>,
    clocks: BTreeMap<NodeId, Vec<(FeedId, i64)>>,
    events: Vec<TreeEvent>,
    fork_checks: Vec<FeedMessage>,
}

impl Node {
    /// A node whose id is `[n; 32]` (the public key of `identity(n)` is not needed unless it
    /// publishes; see `author`).
    fn new(n: u8, config: TreeConfig, now: Instant) -> Node {
        Self::with_id(NodeId([n; 32]), config, now)
    }

    /// A node whose id is `identity(n)`'s public key, so it can publish.
    fn author(n: u8, config: TreeConfig, now: Instant) -> Node {
        Self::with_id(NodeId(identity(n).public_key()), config, now)
    }

    fn with_id(id: NodeId, config: TreeConfig, now: Instant) -> Node {
        let rng = StdRng::seed_from_u64(u64::from(id.0[0]));
        Node {
            core: Tree::new(id, None, config, rng, now).unwrap(),
            id,
            log: BTreeMap::new(),
            clocks: BTreeMap::new(),
            events: Vec::new(),
            fork_checks: Vec::new(),
        }
    }

    /// Holds `messages` in the log (appended and reported).
    fn hold(&mut self, now: Instant, messages: &[FeedMessage]) {
        for m in messages {
            self.log.entry(m.author).or_default().push(m.clone());
            self.core.handle_appended(now, m).unwrap();
        }
    }

    fn follow(&mut self, now: Instant, feed: FeedId) {
        self.core.follow(now, feed, None).unwrap();
    }

    /// Plays the shell until the core is quiet; returns the datagrams it sent.
    fn drain(&mut self, now: Instant) -> Vec<Transmit> {
        let mut out = Vec::new();
        loop {
            let mut progress = false;
            while let Some(event) = self.core.poll_event() {
                progress = true;
                if let TreeEvent::Received { message, .. } = &event {
                    let log = self.log.entry(message.author).or_default();
                    assert_eq!(message.sequence, log.len() as u64 + 1);
                    log.push(message.clone());
                    self.core.handle_appended(now, message).unwrap();
                }
                self.events.push(event);
            }
            while let Some(request) = self.core.poll_store_request() {
                progress = true;
                match request {
                    StoreRequest::Fetch {
                        feed,
                        from_seq,
                        limit,
                        for_peer,
                    } => {
                        let messages = self.log.get(&feed).map_or_else(Vec::new, |log| {
                            log.iter()
                                .skip(from_seq as usize - 1)
                                .take(limit)
                                .cloned()
                                .collect()
                        });
                        self.core.handle_fetched(now, for_peer, feed, messages);
                    }
                    StoreRequest::StoreClock { peer, clock } => {
                        self.clocks.insert(peer, clock);
                    }
                    StoreRequest::CheckFork { message } => {
                        self.fork_checks.push(message);
                    }
                }
            }
            while let Some(t) = self.core.poll_transmit() {
                progress = true;
                assert!(
                    t.message.encoded_len_bound() + ENVELOPE_OVERHEAD
                        <= self.core.config().max_envelope_len
                );
                out.push(t);
            }
            if !progress {
                return out;
            }
        }
    }

    /// Runs the timer from `from` up to `until` (a timer already due fires at `from`);
    /// returns what was sent, with the time it was sent.
    fn tick(&mut self, from: Instant, until: Instant) -> Vec<(Instant, Transmit)> {
        let mut out = Vec::new();
        while let Some(at) = self.core.poll_timeout().filter(|t| *t <= until) {
            let at = at.max(from);
            self.core.handle_timeout(at);
            out.extend(self.drain(at).into_iter().map(|t| (at, t)));
        }
        out
    }

    fn up(&mut self, now: Instant, other: NodeId) {
        self.core
            .handle_peer_up(now, other, addr(other), self.clocks.get(&other).cloned())
            .unwrap();
    }

    fn take_events(&mut self) -> Vec<TreeEvent> {
        std::mem::take(&mut self.events)
    }
}

/// The note entries in `transmits` for `to`, in order.
fn notes_to(transmits: &[Transmit], to: NodeId) -> Vec<(FeedId, i64)> {
    transmits
        .iter()
        .filter(|t| t.to == to)
        .filter_map(|t| match &t.message {
            TreeMessage::Notes(n) => Some(n.entries.clone()),
            TreeMessage::Batch(_) => None,
        })
        .flatten()
        .collect()
}

/// The messages in `transmits` for `to`, in order, as (feed, sequence).
fn pushed_to(transmits: &[Transmit], to: NodeId) -> Vec<(FeedId, u64)> {
    transmits
        .iter()
        .filter(|t| t.to == to)
        .filter_map(|t| match &t.message {
            TreeMessage::Batch(b) => Some(b.messages.iter().map(|m| (m.author, m.sequence))),
            TreeMessage::Notes(_) => None,
        })
        .flatten()
        .collect()
}

/// Hands every transmit of `transmits` addressed to `node` to it.
fn deliver(now: Instant, transmits: &[Transmit], from: NodeId, node: &mut Node) -> Vec<Transmit> {
    for t in transmits.iter().filter(|t| t.to == node.id) {
        match t.message.clone() {
            TreeMessage::Notes(notes) => node.core.handle_notes(now, from, notes),
            TreeMessage::Batch(batch) => node.core.handle_batch(now, from, batch),
        }
    }
    node.drain(now)
}

/// Exchanges datagrams between `a` and `b` until neither sends anything; returns everything
/// each sent (a's, b's).
fn converse(now: Instant, a: &mut Node, b: &mut Node) -> (Vec<Transmit>, Vec<Transmit>) {
    let from_a = a.drain(now);
    let from_b = b.drain(now);
    converse_from(now, a, b, from_a, from_b)
}

/// As [`converse`], starting with datagrams already taken from `a` and `b`.
fn converse_from(
    now: Instant,
    a: &mut Node,
    b: &mut Node,
    mut from_a: Vec<Transmit>,
    mut from_b: Vec<Transmit>,
) -> (Vec<Transmit>, Vec<Transmit>) {
    let (mut all_a, mut all_b) = (Vec::new(), Vec::new());
    for _ in 0..1_000 {
        if from_a.is_empty() && from_b.is_empty() {
            return (all_a, all_b);
        }
        let next_b = deliver(now, &from_a, a.id, b);
        let next_a = deliver(now, &from_b, b.id, a);
        all_a.append(&mut from_a);
        all_b.append(&mut from_b);
        from_a = next_a;
        from_b = next_b;
    }
    panic!("no quiescence");
}

fn switches(events: &[TreeEvent]) -> Vec<(FeedId, Option<NodeId>, Option<NodeId>)> {
    events
        .iter()
        .filter_map(|e| match e {
            TreeEvent::SourceSwitched { feed, from, to } => Some((*feed, *from, *to)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_newer_note_grafts_when_there_is_no_source_and_only_then() {
    let now = crate::test_util::epoch();
    let feed = FeedId::of(&identity(9));
    let mut x = Node::new(1, TreeConfig::default(), now);
    x.follow(now, feed);
    let (q, r) = (NodeId([2; 32]), NodeId([3; 32]));
    x.up(now, q);
    x.up(now, r);
    let handshake = x.drain(now);
    // The handshake notes every followed feed (the own one too), lazily, at sequence 0.
    assert!(notes_to(&handshake, q).contains(&(feed, lazy(0))));
    assert!(notes_to(&handshake, r).contains(&(feed, lazy(0))));

    // q announces sequence 3: x has no source, so it grafts q.
    x.core.handle_notes(
        now,
        q,
        Notes {
            entries: vec![(feed, lazy(3))],
        },
    );
    let out = x.drain(now);
    assert_eq!(notes_to(&out, q), vec![(feed, eager(0))]);
    assert_eq!(x.core.source(feed), Some(q));
    assert_eq!(switches(&x.take_events()), vec![(feed, None, Some(q))]);
    assert_eq!(x.core.stats().grafts, 1);

    // r announces more, but the source is not stalled: no graft.
    x.core.handle_notes(
        now,
        r,
        Notes {
            entries: vec![(feed, lazy(5))],
        },
    );
    let out = x.drain(now);
    assert!(notes_to(&out, r).iter().all(|(_, v)| *v != eager(0)));
    assert_eq!(x.core.source(feed), Some(q));
    assert!(switches(&x.take_events()).is_empty());
}

#[test]
fn a_duplicate_from_a_non_source_prunes_that_link() {
    let now = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let messages = chain(&author, 3, 10);
    let config = TreeConfig::default();
    let mut x = Node::new(1, config.clone(), now);
    let mut q = Node::new(2, config.clone(), now);
    let mut r = Node::new(3, config, now);
    for n in [&mut x, &mut q, &mut r] {
        n.follow(now, feed);
    }
    q.hold(now, &messages[..1]);
    r.hold(now, &messages[..1]);
    x.up(now, q.id);
    q.up(now, x.id);
    x.up(now, r.id);
    r.up(now, x.id);
    // x grafts q (it learns of sequence 1 from q first) and gets message 1 from it.
    let (_, _) = converse(now, &mut x, &mut q);
    assert_eq!(x.core.source(feed), Some(q.id));
    assert_eq!(x.log[&feed].len(), 1);
    // r still believes x wants pushes from it (a stale eager request, as after a lost prune).
    r.core.handle_notes(
        now,
        x.id,
        Notes {
            entries: vec![(feed, eager(0))],
        },
    );
    let from_r = r.drain(now);
    assert_eq!(pushed_to(&from_r, x.id), vec![(feed, 1)]);
    assert_eq!(r.core.eager_peers(feed), vec![x.id]);

    // The duplicate arrives at x over that eager link: x prunes r.
    let prunes = x.core.stats().prunes;
    // (Half an interval after x's handshake note to r, which r never got.)
    let now = now + Duration::from_millis(600);
    let from_x = deliver(now, &from_r, r.id, &mut x);
    assert_eq!(x.core.stats().duplicates, 1);
    assert_eq!(x.core.stats().prunes, prunes + 1);
    assert!(notes_to(&from_x, r.id).contains(&(feed, lazy(1))));
    assert_eq!(x.core.source(feed), Some(q.id), "the source is unchanged");

    // r takes the link lazy: its next message is announced to x, not pushed.
    deliver(now, &from_x, x.id, &mut r);
    assert!(r.core.eager_peers(feed).is_empty());
    r.hold(now, &messages[1..2]);
    let from_r = r.drain(now);
    assert!(pushed_to(&from_r, x.id).is_empty());
    assert_eq!(notes_to(&from_r, x.id), vec![(feed, lazy(2))]);
}

#[test]
fn a_quiet_source_is_replaced_by_the_next_peer_in_rotation() {
    let t0 = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let messages = chain(&author, 2, 10);
    let config = TreeConfig::default();
    let mut x = Node::new(1, config.clone(), t0);
    x.follow(t0, feed);
    let peers = [NodeId([2; 32]), NodeId([3; 32]), NodeId([4; 32])];
    for p in peers {
        x.up(t0, p);
    }
    x.drain(t0);
    // Peer 3 announces 1 first and becomes the source; it delivers message 1.
    x.core.handle_notes(
        t0,
        peers[1],
        Notes {
            entries: vec![(feed, lazy(1))],
        },
    );
    x.drain(t0);
    assert_eq!(x.core.source(feed), Some(peers[1]));
    x.core.handle_batch(
        t0,
        peers[1],
        FeedBatch {
            messages: messages[..1].to_vec(),
        },
    );
    x.drain(t0);
    assert_eq!(x.core.latest(feed), Some(1));
    // Everyone announces 2, the source too, but the source never delivers it.
    let t1 = t0 + Duration::from_millis(100);
    for p in peers {
        x.core.handle_notes(
            t1,
            p,
            Notes {
                entries: vec![(feed, lazy(2))],
            },
        );
    }
    let out = x.drain(t1);
    // The source announcing more than it pushed means its push was lost: ask again.
    assert_eq!(notes_to(&out, peers[1]), vec![(feed, eager(1))]);
    x.take_events();

    // Nothing arrives. Within source_timeout only the source is asked (again), and no
    // switch happens.
    let sent = x.tick(t1, t1 + Duration::from_millis(2_999));
    assert!(switches(&x.take_events()).is_empty());
    for (_, t) in &sent {
        if let TreeMessage::Notes(n) = &t.message
            && n.entries.contains(&(feed, eager(1)))
        {
            assert_eq!(t.to, peers[1], "only the source is asked");
        }
    }
    // After source_timeout without progress, the next peer in rotation after 3 (4) is
    // grafted and 3 pruned, at the first note round past the timeout.
    let sent = x.tick(t1, t1 + Duration::from_millis(4_200));
    let events = x.take_events();
    assert_eq!(
        switches(&events),
        vec![(feed, Some(peers[1]), Some(peers[2]))]
    );
    let at = sent
        .iter()
        .find(|(_, t)| notes_to(std::slice::from_ref(t), peers[2]).contains(&(feed, eager(1))))
        .map(|(at, _)| *at)
        .expect("graft of the next peer");
    let waited = at - t1;
    assert!(
        waited >= Duration::from_millis(3_000) && waited <= Duration::from_millis(4_100),
        "switched after {waited:?}"
    );
    assert!(
        sent.iter()
            .any(|(_, t)| notes_to(std::slice::from_ref(t), peers[1]).contains(&(feed, lazy(1))))
    );
    assert_eq!(x.core.source(feed), Some(peers[2]));
    assert_eq!(x.core.stats().stall_switches, 1);

    // 4 is quiet too: the rotation wraps around to 2.
    x.tick(at, at + Duration::from_millis(4_200));
    assert_eq!(
        switches(&x.take_events()),
        vec![(feed, Some(peers[2]), Some(peers[0]))]
    );
    // 2 delivers: progress, no further switch.
    let now = at + Duration::from_millis(4_300);
    x.core.handle_batch(
        now,
        peers[0],
        FeedBatch {
            messages: messages[1..].to_vec(),
        },
    );
    x.drain(now);
    assert_eq!(x.core.latest(feed), Some(2));
    x.tick(now, now + Duration::from_secs(10));
    assert!(switches(&x.take_events()).is_empty());
}

#[test]
fn a_source_that_goes_down_is_replaced_at_once_and_its_clock_stored() {
    let now = crate::test_util::epoch();
    let feed = FeedId::of(&identity(9));
    let mut x = Node::new(1, TreeConfig::default(), now);
    x.follow(now, feed);
    let (s, r) = (NodeId([2; 32]), NodeId([3; 32]));
    x.up(now, s);
    x.up(now, r);
    for p in [s, r] {
        x.core.handle_notes(
            now,
            p,
            Notes {
                entries: vec![(feed, lazy(4))],
            },
        );
    }
    x.drain(now);
    assert_eq!(x.core.source(feed), Some(s));
    x.take_events();
    x.core.handle_peer_down(now, s);
    let out = x.drain(now);
    assert_eq!(switches(&x.take_events()), vec![(feed, Some(s), Some(r))]);
    assert_eq!(notes_to(&out, r), vec![(feed, eager(0))]);
    assert!(x.clocks[&s].contains(&(feed, lazy(4))));
    assert_eq!(x.core.stats().sources_lost, 1);
}

/// Two nodes sharing 10,000 followed feeds meet, part, and meet again after 10 feeds
/// advanced: the second handshake notes those 10 feeds, not 10,000.
#[test]
fn reconnect_notes_only_the_feeds_that_changed() {
    let now = crate::test_util::epoch();
    let config = TreeConfig {
        max_feeds: 10_001,
        ..TreeConfig::default()
    };
    let mut a = Node::new(1, config.clone(), now);
    let mut b = Node::new(2, config, now);
    let authors: Vec<Identity> = (10..20).map(identity).collect();
    let chains: Vec<Vec<FeedMessage>> = authors.iter().map(|i| chain(i, 2, 50)).collect();
    let changed: BTreeSet<FeedId> = authors.iter().map(FeedId::of).collect();
    // 9,990 feeds both hold at sequence 5 (heads stand in for logs never read here).
    for i in 0u32..9_990 {
        let mut bytes = [0xee; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        let head = Some((5, MessageHash([7; 32])));
        for n in [&mut a, &mut b] {
            n.core.follow(now, FeedId(bytes), head).unwrap();
        }
    }
    // 10 real feeds both hold at sequence 1.
    for c in &chains {
        for n in [&mut a, &mut b] {
            n.follow(now, c[0].author);
            n.hold(now, &c[..1]);
        }
    }
    a.drain(now);
    b.drain(now);

    // First meeting: no stored clock, so the whole clock goes both ways, 32 entries per
    // datagram.
    a.up(now, b.id);
    b.up(now, a.id);
    let handshake = a.drain(now);
    assert_eq!(notes_to(&handshake, b.id).len(), 10_001);
    assert_eq!(handshake.len(), 10_001_usize.div_ceil(32), "split to fit");
    let handshake_b = b.drain(now);
    let (from_a, from_b) = converse_from(now, &mut a, &mut b, handshake, handshake_b);
    let first = notes_to(&from_a, b.id).len() + notes_to(&from_b, a.id).len();
    assert!(first >= 20_000, "{first} entries");

    // They part; each stores the other's clock.
    a.core.handle_peer_down(now, b.id);
    b.core.handle_peer_down(now, a.id);
    a.drain(now);
    b.drain(now);
    assert!(a.clocks[&b.id].len() >= 10_000);

    // While apart, b gets message 2 of the 10 real feeds.
    let later = now + Duration::from_secs(60);
    for c in &chains {
        b.hold(later, &c[1..]);
    }
    b.drain(later);

    // They meet again with the stored clocks.
    a.up(later, b.id);
    b.up(later, a.id);
    let (from_a, from_b) = converse(later, &mut a, &mut b);
    let mut sent: Vec<(FeedId, i64)> = notes_to(&from_a, b.id);
    sent.extend(notes_to(&from_b, a.id));
    let feeds: BTreeSet<FeedId> = sent.iter().map(|(f, _)| *f).collect();
    println!(
        "reconnect: {} note entries about {} feeds (first meeting: {first} entries)",
        sent.len(),
        feeds.len()
    );
    assert_eq!(feeds, changed, "only the changed feeds are noted");
    // b announces each (10), a grafts each (10).
    assert_eq!(sent.len(), 20);
    for c in &chains {
        assert_eq!(a.log[&c[0].author].len(), 2, "a caught up");
    }

    // A note round later they acknowledge and settle: still only those feeds.
    let mut late = a.tick(later, later + 2 * SECOND);
    late.extend(b.tick(later, later + 2 * SECOND));
    let late: Vec<Transmit> = late.into_iter().map(|(_, t)| t).collect();
    let late_feeds: BTreeSet<FeedId> = notes_to(&late, b.id)
        .into_iter()
        .chain(notes_to(&late, a.id))
        .map(|(f, _)| f)
        .collect();
    assert!(late_feeds.is_subset(&changed), "{late_feeds:?}");
}

#[test]
fn a_lost_push_is_noticed_and_pushed_again() {
    let t0 = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let messages = chain(&author, 2, 10);
    let config = TreeConfig::default();
    let mut s = Node::new(1, config.clone(), t0);
    let mut c = Node::new(2, config, t0);
    for n in [&mut s, &mut c] {
        n.follow(t0, feed);
    }
    s.hold(t0, &messages[..1]);
    s.up(t0, c.id);
    c.up(t0, s.id);
    converse(t0, &mut s, &mut c);
    assert_eq!(c.core.source(feed), Some(s.id));
    assert_eq!(c.log[&feed].len(), 1);
    // c acknowledges at its round; s learns c holds 1.
    let t1 = t0 + 2 * SECOND;
    let acks: Vec<Transmit> = c.tick(t0, t1).into_iter().map(|(_, t)| t).collect();
    deliver(t1, &acks, c.id, &mut s);
    s.tick(t0, t1);

    // s appends message 2 and pushes it; the datagram is lost.
    s.hold(t1, &messages[1..]);
    let lost = s.drain(t1);
    assert_eq!(pushed_to(&lost, c.id), vec![(feed, 2)]);

    // An interval later, s has no acknowledgement and announces 2 to c; c asks again with
    // the same note (a repeat), s rewinds and pushes 2 again.
    let t2 = t1 + Duration::from_millis(2_300);
    let from_s: Vec<Transmit> = s.tick(t1, t2).into_iter().map(|(_, t)| t).collect();
    assert!(notes_to(&from_s, c.id).contains(&(feed, lazy(2))));
    let from_c = deliver(t2, &from_s, s.id, &mut c);
    assert_eq!(notes_to(&from_c, s.id), vec![(feed, eager(1))]);
    let again = deliver(t2, &from_c, c.id, &mut s);
    assert_eq!(pushed_to(&again, c.id), vec![(feed, 2)]);
    assert_eq!(s.core.stats().rewinds, 1);
    deliver(t2, &again, s.id, &mut c);
    assert_eq!(c.log[&feed].len(), 2);
    assert!(s.core.stats().note_entries_resent >= 1);
}

#[test]
fn catch_up_is_fetched_split_to_fit_and_in_order() {
    let now = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let messages = chain(&author, 30, 400);
    let config = TreeConfig::default();
    let mut s = Node::new(1, config.clone(), now);
    let mut c = Node::new(2, config.clone(), now);
    for n in [&mut s, &mut c] {
        n.follow(now, feed);
    }
    s.hold(now, &messages);
    s.up(now, c.id);
    c.up(now, s.id);
    let (from_s, _) = converse(now, &mut s, &mut c);
    let pushed = pushed_to(&from_s, c.id);
    assert_eq!(pushed, (1..=30).map(|i| (feed, i)).collect::<Vec<_>>());
    let batches: Vec<&FeedBatch> = from_s
        .iter()
        .filter_map(|t| match &t.message {
            TreeMessage::Batch(b) => Some(b),
            TreeMessage::Notes(_) => None,
        })
        .collect();
    for b in &batches {
        assert!(b.encoded_len_bound() <= config.max_struct_len());
    }
    // 400-byte messages (bound 550): two fit a 1,331-byte batch, three do not.
    assert_eq!(batches.len(), 15);
    assert_eq!(c.log[&feed], messages);
    // The recent cache held the 30 messages: no store read was needed.
    assert_eq!(s.core.stats().fetches, 0);
}

#[test]
fn fetches_go_to_the_store_when_the_cache_does_not_have_them() {
    let now = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let messages = chain(&author, 20, 10);
    let config = TreeConfig {
        recent_capacity: std::num::NonZeroUsize::new(4).unwrap(),
        fetch_limit: 8,
        ..TreeConfig::default()
    };
    let mut s = Node::new(1, config.clone(), now);
    let mut c = Node::new(2, config, now);
    for n in [&mut s, &mut c] {
        n.follow(now, feed);
    }
    s.hold(now, &messages);
    s.up(now, c.id);
    c.up(now, s.id);
    converse(now, &mut s, &mut c);
    assert_eq!(c.log[&feed], messages);
    // 16 from the store in fetches of 8, then the 4 cached ones.
    assert_eq!(s.core.stats().fetches, 2);
}

#[test]
fn pushes_stay_within_the_per_peer_budget() {
    let t0 = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let messages = chain(&author, 100, 500);
    let bound = messages[0].encoded_len_bound();
    let config = TreeConfig {
        peer_budget_bytes: 10_000,
        ..TreeConfig::default()
    };
    let mut s = Node::new(1, config.clone(), t0);
    let mut c = Node::new(2, config, t0);
    for n in [&mut s, &mut c] {
        n.follow(t0, feed);
    }
    s.hold(t0, &messages);
    s.up(t0, c.id);
    c.up(t0, s.id);
    let (from_s, _) = converse(t0, &mut s, &mut c);
    let first = pushed_to(&from_s, c.id).len();
    // The budget allows 10,000 bytes: 15 messages of 651, the last one overdrawing.
    assert_eq!(first, 10_000_usize.div_ceil(bound));
    assert!(s.core.stats().budget_deferred > 0);
    // Each round refills the budget; the rest follows round by round.
    let mut now = t0;
    let mut rounds = 0;
    while c.log[&feed].len() < 100 {
        now = s.core.poll_timeout().unwrap();
        let out: Vec<Transmit> = s.tick(now, now).into_iter().map(|(_, t)| t).collect();
        assert!(pushed_to(&out, c.id).len() <= first);
        deliver(now, &out, s.id, &mut c);
        rounds += 1;
        assert!(rounds < 20);
    }
    assert_eq!(c.log[&feed], messages);
    assert!(now - t0 >= 5 * SECOND, "spread over rounds: {:?}", now - t0);
}

#[test]
fn publish_refuses_a_message_that_cannot_fit_naming_both_sizes() {
    let now = crate::test_util::epoch();
    let config = TreeConfig {
        max_envelope_len: 616,
        max_content_len: 400,
        ..TreeConfig::default()
    };
    let mut a = Node::author(1, config, now);
    let err = a
        .core
        .publish(now, &identity(1), 0, Bytes::from(vec![0; 401]))
        .unwrap_err();
    assert_eq!(
        err,
        PublishError::TooLarge {
            len: 401,
            max: 400,
            batch_len: 3 + 147 + 3 + 401,
            max_batch_len: 3 + 147 + 3 + 400,
        }
    );
    assert_eq!(
        err.to_string(),
        "a feed message with 401 bytes of content is 554 bytes in a batch, over the 553-byte \
         limit; content is limited to 400 bytes"
    );
    // At the limit it is accepted, and the batch of one fits the envelope.
    let m = a
        .core
        .publish(now, &identity(1), 0, Bytes::from(vec![0; 400]))
        .unwrap();
    assert!(FeedBatch { messages: vec![m] }.encoded_len_bound() + ENVELOPE_OVERHEAD <= 616);
    // Someone else's identity is refused.
    assert!(matches!(
        a.core.publish(now, &identity(2), 0, Bytes::new()),
        Err(PublishError::NotOwnFeed { .. })
    ));
}

#[test]
fn feeds_not_followed_are_answered_minus_one_and_never_replicated() {
    let now = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let messages = chain(&author, 2, 10);
    let mut x = Node::new(1, TreeConfig::default(), now);
    let mut q = Node::new(2, TreeConfig::default(), now);
    q.follow(now, feed);
    q.hold(now, &messages[..1]);
    x.up(now, q.id);
    q.up(now, x.id);
    let (from_x, _) = converse(now, &mut x, &mut q);
    assert!(notes_to(&from_x, q.id).contains(&(feed, -1)));
    assert!(x.core.stats().refusals_sent >= 1);
    assert!(!x.log.contains_key(&feed));
    // q appends more: it neither pushes nor announces that feed to x.
    q.hold(now, &messages[1..]);
    let from_q = q.drain(now);
    assert!(pushed_to(&from_q, x.id).is_empty());
    assert!(notes_to(&from_q, x.id).is_empty());
    // A message of it pushed anyway is dropped and counted.
    x.core.handle_batch(
        now,
        q.id,
        FeedBatch {
            messages: messages.clone(),
        },
    );
    assert_eq!(x.core.stats().not_followed, 2);
    assert!(
        x.drain(now)
            .iter()
            .all(|t| matches!(t.message, TreeMessage::Notes(_)))
    );
    assert!(
        x.take_events()
            .iter()
            .all(|e| !matches!(e, TreeEvent::Received { .. }))
    );

    // Once x follows it, x notes it and catches up; unfollowing tells q -1 again.
    x.follow(now, feed);
    converse(now, &mut x, &mut q);
    assert_eq!(x.log[&feed], messages);
    assert!(x.core.unfollow(now, feed));
    let out = x.drain(now);
    assert_eq!(notes_to(&out, q.id), vec![(feed, -1)]);
    assert!(
        !x.core.unfollow(now, x.core.own_feed()),
        "the own feed stays followed"
    );
}

#[test]
fn messages_arriving_out_of_order_are_buffered_until_the_gap_fills() {
    let now = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let messages = chain(&author, 3, 10);
    let mut x = Node::new(1, TreeConfig::default(), now);
    x.follow(now, feed);
    let q = NodeId([2; 32]);
    x.up(now, q);
    x.core.handle_notes(
        now,
        q,
        Notes {
            entries: vec![(feed, lazy(3))],
        },
    );
    x.drain(now);
    for i in [2, 1, 0] {
        x.core.handle_batch(
            now,
            q,
            FeedBatch {
                messages: vec![messages[i].clone()],
            },
        );
        x.drain(now);
    }
    assert_eq!(x.log[&feed], messages);
    assert_eq!(x.core.stats().buffered, 2);
    assert_eq!(x.core.occupancy().buffered, 0);
}

#[test]
fn invalid_messages_are_rejected_and_counted() {
    let now = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let messages = chain(&author, 2, 10);
    let mut x = Node::new(1, TreeConfig::default(), now);
    x.follow(now, feed);
    let q = NodeId([2; 32]);
    x.up(now, q);
    let mut forged = messages[0].clone();
    forged.content = Bytes::from_static(b"forged");
    let mut unchained = messages[1].clone();
    unchained.sequence = 1;
    for m in [forged, unchained] {
        x.core.handle_batch(now, q, FeedBatch { messages: vec![m] });
    }
    x.drain(now);
    let stats = x.core.stats();
    assert_eq!(
        (stats.bad_signature, stats.wrong_previous, stats.accepted),
        (1, 1, 0)
    );
    // An unknown peer's input is ignored.
    x.core.handle_batch(
        now,
        NodeId([7; 32]),
        FeedBatch {
            messages: messages.clone(),
        },
    );
    x.core.handle_notes(now, NodeId([7; 32]), Notes::default());
    assert_eq!(x.core.stats().unknown_peer, 2);
    // The genuine message is accepted.
    x.core.handle_batch(
        now,
        q,
        FeedBatch {
            messages: messages[..1].to_vec(),
        },
    );
    x.drain(now);
    assert_eq!(x.log[&feed], messages[..1]);
}

#[test]
fn a_fork_at_the_head_is_detected_and_the_feed_dropped() {
    let now = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let first = chain(&author, 1, 10).remove(0);
    let other = FeedMessage::create(&author, None, 5, Bytes::from_static(b"other"), 1024).unwrap();
    let mut x = Node::new(1, TreeConfig::default(), now);
    x.follow(now, feed);
    x.hold(now, std::slice::from_ref(&first));
    let q = NodeId([2; 32]);
    x.up(now, q);
    x.drain(now);
    x.core.handle_batch(
        now,
        q,
        FeedBatch {
            messages: vec![other.clone()],
        },
    );
    x.drain(now);
    assert_eq!(x.fork_checks, vec![other.clone()]);
    x.core
        .handle_fork_check(now, other.clone(), Some(first.clone()));
    let out = x.drain(now);
    let forked: Vec<_> = x
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            TreeEvent::Forked { feed, proof } => Some((feed, proof)),
            _ => None,
        })
        .collect();
    assert_eq!(forked.len(), 1);
    assert_eq!(forked[0].0, feed);
    assert!(forked[0].1.is_valid());
    assert_eq!(notes_to(&out, q), vec![(feed, -1)]);
    // Nothing more of it is accepted.
    x.core.handle_batch(
        now,
        q,
        FeedBatch {
            messages: vec![other],
        },
    );
    assert_eq!(x.core.stats().forked_dropped, 1);
    // A duplicate identical to the head is not a fork check.
    let checks = x.core.stats().fork_checks;
    assert_eq!(checks, 1);
}

#[test]
fn an_append_failure_asks_again() {
    let t0 = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let messages = chain(&author, 1, 10);
    let config = TreeConfig::default();
    let mut s = Node::new(1, config.clone(), t0);
    let mut c = Node::new(2, config, t0);
    for n in [&mut s, &mut c] {
        n.follow(t0, feed);
    }
    s.hold(t0, &messages);
    s.up(t0, c.id);
    c.up(t0, s.id);
    let from_s = s.drain(t0);
    let graft = deliver(t0, &from_s, s.id, &mut c);
    let push = deliver(t0, &graft, c.id, &mut s);
    // c's shell fails to append the message it is handed.
    for t in push.iter().filter(|t| t.to == c.id) {
        if let TreeMessage::Batch(b) = t.message.clone() {
            c.core.handle_batch(t0, s.id, b);
        }
    }
    assert!(matches!(
        c.core.poll_event(),
        Some(TreeEvent::Received { .. })
    ));
    c.core.handle_append_failed(t0, feed);
    assert_eq!(c.core.occupancy().unappended, 0);
    // At the next rounds c asks its source again and gets it.
    let mut now = t0;
    for _ in 0..5 {
        now += SECOND;
        let from_c: Vec<Transmit> = c
            .tick(now - SECOND, now)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let from_s = deliver(now, &from_c, c.id, &mut s);
        deliver(now, &from_s, s.id, &mut c);
    }
    assert_eq!(c.log[&feed], messages);
}

#[test]
fn feed_links_report_the_source_and_the_eager_and_lazy_peers() {
    let now = crate::test_util::epoch();
    let author = identity(9);
    let feed = FeedId::of(&author);
    let messages = chain(&author, 3, 10);
    let config = TreeConfig::default();
    let mut x = Node::new(1, config.clone(), now);
    let mut q = Node::new(2, config.clone(), now);
    let mut r = Node::new(3, config, now);
    for n in [&mut x, &mut q, &mut r] {
        n.follow(now, feed);
    }
    q.hold(now, &messages[..2]);
    r.hold(now, &messages[..2]);
    x.up(now, q.id);
    q.up(now, x.id);
    x.up(now, r.id);
    r.up(now, x.id);
    let (_, _) = converse(now, &mut x, &mut q);
    let links = x.core.feed_links();
    let links = links.iter().find(|l| l.feed == feed).expect("followed");
    assert_eq!(links.source, Some(q.id));
    assert_eq!(links.latest, 2);
    assert_eq!(links.best_known, 2);
    assert!(links.eager.is_empty() && links.lazy.is_empty(), "{links:?}");

    // x asks r to push: r reports x as an eager child.
    r.core.handle_notes(
        now,
        x.id,
        Notes {
            entries: vec![(feed, eager(2))],
        },
    );
    let links = r.core.feed_links();
    let links = links.iter().find(|l| l.feed == feed).expect("followed");
    assert_eq!(links.eager, vec![x.id]);
    assert!(links.lazy.is_empty());
    assert_eq!((links.latest, links.best_known, links.source), (2, 2, None));

    // x takes the link lazy: r reports it lazy.
    r.core.handle_notes(
        now,
        x.id,
        Notes {
            entries: vec![(feed, lazy(2))],
        },
    );
    let links = r.core.feed_links();
    let links = links.iter().find(|l| l.feed == feed).expect("followed");
    assert!(links.eager.is_empty());
    assert_eq!(links.lazy, vec![x.id]);
}
