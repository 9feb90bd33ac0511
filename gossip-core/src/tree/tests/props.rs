//! Property tests: arbitrary notes, batches, store answers, peer churn and timer firings
//! never panic the core, every bound holds after every input, every datagram fits, and the
//! wire bounds hold against the real encoding.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use gossip_crypto::Identity;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::feed::{FeedId, FeedMessage, MessageHash};
use crate::id::NodeId;
use crate::tree::{ENVELOPE_OVERHEAD, FeedBatch, Notes, StoreRequest, Tree, TreeConfig, TreeEvent};

/// Four authors with six valid messages each (signed once per process).
fn chains() -> &'static Vec<Vec<FeedMessage>> {
    static CHAINS: OnceLock<Vec<Vec<FeedMessage>>> = OnceLock::new();
    CHAINS.get_or_init(|| {
        (1..=4u8)
            .map(|n| {
                let author = Identity::from_bytes(&[n; 32]);
                let mut chain: Vec<FeedMessage> = Vec::new();
                for i in 1..=6u64 {
                    let m = FeedMessage::create(
                        &author,
                        chain.last(),
                        i,
                        Bytes::from(vec![n; 20 * i as usize]),
                        1024,
                    )
                    .unwrap();
                    chain.push(m);
                }
                chain
            })
            .collect()
    })
}

fn feed(i: u8) -> FeedId {
    chains()[usize::from(i % 4)][0].author
}

fn peer(i: u8) -> NodeId {
    NodeId([10 + i % 5; 32])
}

/// A message: a genuine one, or one with fields changed.
#[derive(Clone, Debug)]
enum Msg {
    /// The next message of the author's feed for the core under test (its head + 1).
    Next {
        author: u8,
    },
    Genuine {
        author: u8,
        index: u8,
    },
    Tampered {
        author: u8,
        index: u8,
        sequence: u64,
        content: Vec<u8>,
    },
    Junk {
        author: [u8; 32],
        sequence: u64,
        previous: Option<[u8; 32]>,
        len: u16,
    },
}

impl Msg {
    fn build(&self, core: &Tree<StdRng>) -> FeedMessage {
        match self {
            Msg::Next { author } => {
                let chain = &chains()[usize::from(author % 4)];
                let head = core.latest(chain[0].author).unwrap_or(0);
                chain[usize::try_from(head).unwrap_or(0).min(5)].clone()
            }
            Msg::Genuine { author, index } => {
                chains()[usize::from(author % 4)][usize::from(index % 6)].clone()
            }
            Msg::Tampered {
                author,
                index,
                sequence,
                content,
            } => {
                let mut m = chains()[usize::from(author % 4)][usize::from(index % 6)].clone();
                m.sequence = *sequence;
                m.content = Bytes::from(content.clone());
                m
            }
            Msg::Junk {
                author,
                sequence,
                previous,
                len,
            } => FeedMessage {
                author: FeedId(*author),
                sequence: *sequence,
                previous: previous.map(MessageHash),
                timestamp_ms: 0,
                content: Bytes::from(vec![0; usize::from(*len)]),
                signature: [0; 64],
            },
        }
    }
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        4 => any::<u8>().prop_map(|author| Msg::Next { author }),
        2 => (any::<u8>(), 0u8..6).prop_map(|(author, index)| Msg::Genuine { author, index }),
        1 => (any::<u8>(), 0u8..6, prop_oneof![Just(0u64), 1u64..8, Just(u64::MAX)],
              proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(author, index, sequence, content)| Msg::Tampered {
                author, index, sequence, content
            }),
        1 => (prop_oneof![Just([0u8; 32]), any::<[u8; 32]>()],
              prop_oneof![Just(0u64), 1u64..8, Just(u64::MAX)],
              proptest::option::of(any::<[u8; 32]>()), 0u16..1500)
            .prop_map(|(author, sequence, previous, len)| Msg::Junk {
                author, sequence, previous, len
            }),
    ]
}

#[derive(Clone, Debug)]
enum Input {
    Up(u8),
    UpWithClock(u8, Vec<(u8, i64)>),
    Down(u8),
    Notes(u8, Vec<(u8, i64)>),
    Batch(u8, Vec<Msg>),
    Fetched(u8, u8, Vec<Msg>),
    ForkCheck(Msg, Option<Msg>),
    Follow(u8),
    Unfollow(u8),
    Publish(u16),
    AppendFailed(u8),
    Advance(u16),
    /// Run the shell's duties (append what was received, answer fetches) or not.
    Shell(bool),
}

fn note_value() -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(-1i64),
        1 => Just(-2i64),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        6 => 0i64..14,
        1 => any::<i64>(),
    ]
}

fn entries() -> impl Strategy<Value = Vec<(u8, i64)>> {
    proptest::collection::vec((0u8..4, note_value()), 0..40)
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        2 => any::<u8>().prop_map(Input::Up),
        1 => (any::<u8>(), entries()).prop_map(|(p, c)| Input::UpWithClock(p, c)),
        1 => any::<u8>().prop_map(Input::Down),
        4 => (any::<u8>(), entries()).prop_map(|(p, e)| Input::Notes(p, e)),
        4 => (any::<u8>(), proptest::collection::vec(msg(), 0..8))
            .prop_map(|(p, m)| Input::Batch(p, m)),
        1 => (any::<u8>(), any::<u8>(), proptest::collection::vec(msg(), 0..5))
            .prop_map(|(p, f, m)| Input::Fetched(p, f, m)),
        1 => (msg(), proptest::option::of(msg())).prop_map(|(a, b)| Input::ForkCheck(a, b)),
        1 => any::<u8>().prop_map(Input::Follow),
        1 => any::<u8>().prop_map(Input::Unfollow),
        3 => prop_oneof![0u16..300, 1000u16..1100].prop_map(Input::Publish),
        1 => any::<u8>().prop_map(Input::AppendFailed),
        2 => (0u16..4000).prop_map(Input::Advance),
        2 => any::<bool>().prop_map(Input::Shell),
    ]
}

fn small_config() -> TreeConfig {
    TreeConfig {
        max_feeds: 4,
        max_peers: 3,
        peer_budget_bytes: 1_364,
        fetch_limit: 3,
        max_pending_fetches: 2,
        recent_capacity: std::num::NonZeroUsize::new(3).unwrap(),
        max_buffered: 3,
        max_unappended: 4,
        output_queue_capacity: 64,
        ..TreeConfig::default()
    }
}

fn check_bounds(core: &Tree<StdRng>) {
    let o = core.occupancy();
    let c = core.config();
    assert!(o.feeds <= c.max_feeds, "{o:?}");
    assert!(o.peers <= c.max_peers, "{o:?}");
    assert!(o.links <= c.max_peers * c.max_feeds, "{o:?}");
    assert!(o.pending_fetches <= c.max_pending_fetches, "{o:?}");
    assert!(o.pending_fork_checks <= c.max_pending_fetches, "{o:?}");
    assert!(o.backlog <= o.links, "{o:?}");
    assert!(o.recent <= c.recent_capacity.get(), "{o:?}");
    assert!(o.buffered <= c.max_buffered, "{o:?}");
    assert!(o.unappended <= c.max_unappended, "{o:?}");
    assert!(o.queued <= c.output_queue_capacity, "{o:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn arbitrary_inputs_never_panic_and_bounds_hold(
        inputs in proptest::collection::vec(input(), 1..60),
        seed in any::<u64>(),
    ) {
        let own = Identity::from_bytes(&[1; 32]);
        let local = NodeId(own.public_key());
        let start = crate::test_util::epoch();
        let mut now = start;
        let mut core = Tree::new(local, None, small_config(), StdRng::seed_from_u64(seed), now)
            .unwrap();
        let addr = |p: u8| SocketAddr::from(([10, 0, 0, p], 7000));
        let mut shell = true;
        let mut received: Vec<FeedMessage> = Vec::new();
        let mut log: Vec<FeedMessage> = Vec::new();
        for input in inputs {
            match input {
                Input::Up(p) => {
                    let _ = core.handle_peer_up(now, peer(p), addr(p), None);
                }
                Input::UpWithClock(p, clock) => {
                    let clock = clock.into_iter().map(|(f, v)| (feed(f), v)).collect();
                    let _ = core.handle_peer_up(now, peer(p), addr(p), Some(clock));
                }
                Input::Down(p) => core.handle_peer_down(now, peer(p)),
                Input::Notes(p, entries) => {
                    let entries = entries.into_iter().map(|(f, v)| (feed(f), v)).collect();
                    core.handle_notes(now, peer(p), Notes { entries });
                }
                Input::Batch(p, messages) => {
                    let messages = messages.iter().map(|m| m.build(&core)).collect();
                    core.handle_batch(now, peer(p), FeedBatch { messages });
                }
                Input::Fetched(p, f, messages) => {
                    let messages = messages.iter().map(|m| m.build(&core)).collect();
                    core.handle_fetched(now, peer(p), feed(f), messages);
                }
                Input::ForkCheck(a, b) => {
                    let (a, b) = (a.build(&core), b.map(|b| b.build(&core)));
                    core.handle_fork_check(now, a, b);
                }
                Input::Follow(f) => {
                    let _ = core.follow(now, feed(f), None);
                }
                Input::Unfollow(f) => {
                    core.unfollow(now, feed(f));
                }
                Input::Publish(len) => {
                    let r = core.publish(now, &own, 0, Bytes::from(vec![7; usize::from(len)]));
                    if let Ok(m) = r {
                        if shell {
                            let _ = core.handle_appended(now, &m);
                        } else {
                            log.push(m);
                        }
                    }
                }
                Input::AppendFailed(f) => core.handle_append_failed(now, feed(f)),
                Input::Advance(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    if core.poll_timeout().is_some_and(|t| t <= now) {
                        core.handle_timeout(now);
                    }
                }
                Input::Shell(on) => shell = on,
            }
            check_bounds(&core);
            if !shell {
                // Leave the outputs queued: the queue bound must hold on its own.
                continue;
            }
            // Drain as a shell would; appends happen in order.
            for m in log.drain(..) {
                let _ = core.handle_appended(now, &m);
            }
            for _ in 0..20 {
                let mut progress = false;
                while let Some(t) = core.poll_transmit() {
                    progress = true;
                    prop_assert!(
                        t.message.encoded_len_bound() + ENVELOPE_OVERHEAD
                            <= core.config().max_envelope_len
                    );
                }
                while let Some(event) = core.poll_event() {
                    progress = true;
                    if let TreeEvent::Received { message, .. } = event {
                        received.push(message);
                    }
                }
                for m in received.drain(..) {
                    let _ = core.handle_appended(now, &m);
                }
                while let Some(request) = core.poll_store_request() {
                    progress = true;
                    if let StoreRequest::Fetch { feed, from_seq, limit, for_peer } = request {
                        let chain = chains().iter().find(|c| c[0].author == feed);
                        let messages = chain
                            .map(|c| {
                                c.iter()
                                    .skip(usize::try_from(from_seq.saturating_sub(1)).unwrap_or(0))
                                    .take(limit)
                                    .cloned()
                                    .collect()
                            })
                            .unwrap_or_default();
                        core.handle_fetched(now, for_peer, feed, messages);
                    }
                }
                check_bounds(&core);
                if !progress {
                    break;
                }
            }
        }
        // Every accepted message was genuine: nothing forged was ever handed to the shell.
        let stats = core.stats();
        prop_assert!(stats.accepted <= stats.messages_received);
    }

    #[test]
    fn wire_bounds_hold_against_the_encoding(
        seed in any::<u64>(),
        entries in proptest::collection::vec((any::<[u8; 32]>(), any::<i64>()), 0..100),
        picks in proptest::collection::vec((0u8..4, 0u8..6), 0..10),
        junk in proptest::collection::vec(msg(), 0..4),
    ) {
        let config = bincode::config::standard();
        let notes = Notes { entries: entries.into_iter().map(|(f, v)| (FeedId(f), v)).collect() };
        let bytes = bincode::serde::encode_to_vec(&notes, config).unwrap();
        prop_assert!(bytes.len() <= notes.encoded_len_bound());
        let (back, used): (Notes, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(back, notes);

        let mut messages: Vec<FeedMessage> = picks
            .into_iter()
            .map(|(a, i)| chains()[usize::from(a)][usize::from(i)].clone())
            .collect();
        let core = Tree::new(NodeId([1; 32]), None, TreeConfig::default(), StdRng::seed_from_u64(seed), crate::test_util::epoch()).unwrap();
        messages.extend(junk.iter().map(|m| m.build(&core)));
        let batch = FeedBatch { messages };
        let bytes = bincode::serde::encode_to_vec(&batch, config).unwrap();
        prop_assert!(bytes.len() <= batch.encoded_len_bound());
        let (back, _): (FeedBatch, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
        prop_assert_eq!(back, batch);
    }
}

/// What the network does next, in the convergence property.
#[derive(Clone, Debug)]
enum NetAction {
    /// The author publishes.
    Publish,
    /// Deliver the in-flight datagram at this index (modulo their number).
    Deliver(usize),
    /// Deliver it and keep a copy in flight (duplication).
    Duplicate(usize),
    /// Lose it.
    Drop(usize),
    /// Let time pass.
    Advance(u16),
}

fn net_action() -> impl Strategy<Value = NetAction> {
    prop_oneof![
        1 => Just(NetAction::Publish),
        6 => any::<usize>().prop_map(NetAction::Deliver),
        1 => any::<usize>().prop_map(NetAction::Duplicate),
        2 => any::<usize>().prop_map(NetAction::Drop),
        2 => (0u16..1500).prop_map(NetAction::Advance),
    ]
}

struct NetNode {
    core: Tree<StdRng>,
    log: Vec<FeedMessage>,
}

/// Plays `i`'s shell and returns its datagrams as (to, from, message).
fn net_drain(
    nodes: &mut [NetNode],
    ids: &[NodeId],
    i: usize,
    now: std::time::Instant,
) -> Vec<(usize, NodeId, crate::tree::TreeMessage)> {
    let mut out = Vec::new();
    loop {
        let mut progress = false;
        while let Some(event) = nodes[i].core.poll_event() {
            progress = true;
            if let TreeEvent::Received { message, .. } = event {
                assert_eq!(message.sequence, nodes[i].log.len() as u64 + 1);
                nodes[i].log.push(message.clone());
                nodes[i].core.handle_appended(now, &message).unwrap();
            }
        }
        while let Some(request) = nodes[i].core.poll_store_request() {
            progress = true;
            if let StoreRequest::Fetch {
                feed,
                from_seq,
                limit,
                for_peer,
            } = request
            {
                let messages = nodes[i]
                    .log
                    .iter()
                    .skip(usize::try_from(from_seq - 1).unwrap())
                    .take(limit)
                    .cloned()
                    .collect();
                nodes[i].core.handle_fetched(now, for_peer, feed, messages);
            }
        }
        while let Some(t) = nodes[i].core.poll_transmit() {
            progress = true;
            let to = ids.iter().position(|id| *id == t.to).unwrap();
            out.push((to, ids[i], t.message));
        }
        if !progress {
            return out;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Three fully connected nodes, one of them the author, over a network that loses,
    /// duplicates and reorders datagrams as the test case says; then the network becomes
    /// reliable: within a bounded time every node holds the author's whole feed, in order.
    #[test]
    fn any_loss_duplication_and_reordering_converges_once_the_network_heals(
        actions in proptest::collection::vec(net_action(), 0..120),
        seed in any::<u64>(),
    ) {
        let author = Identity::from_bytes(&[1; 32]);
        let ids = [NodeId(author.public_key()), NodeId([2; 32]), NodeId([3; 32])];
        let feed = FeedId::of(&author);
        let start = crate::test_util::epoch();
        let mut now = start;
        let mut nodes: Vec<NetNode> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64));
                let mut core = Tree::new(*id, None, TreeConfig::default(), rng, now).unwrap();
                core.follow(now, feed, None).unwrap();
                NetNode { core, log: Vec::new() }
            })
            .collect();
        let mut in_flight = Vec::new();
        for i in 0..3 {
            for (j, id) in ids.iter().enumerate() {
                if i != j {
                    let addr = SocketAddr::from(([10, 0, 0, j as u8], 7000));
                    nodes[i].core.handle_peer_up(now, *id, addr, None).unwrap();
                }
            }
            in_flight.extend(net_drain(&mut nodes, &ids, i, now));
        }
        let mut published = 0u64;
        let deliver = |nodes: &mut Vec<NetNode>, (to, from, message): (usize, NodeId, crate::tree::TreeMessage), now| {
            match message {
                crate::tree::TreeMessage::Notes(n) => nodes[to].core.handle_notes(now, from, n),
                crate::tree::TreeMessage::Batch(b) => nodes[to].core.handle_batch(now, from, b),
            }
            net_drain(nodes, &ids, to, now)
        };
        for action in actions {
            match action {
                NetAction::Publish => {
                    let content = Bytes::from(vec![published as u8; 30]);
                    let m = nodes[0].core.publish(now, &author, published, content).unwrap();
                    nodes[0].log.push(m.clone());
                    nodes[0].core.handle_appended(now, &m).unwrap();
                    published += 1;
                    in_flight.extend(net_drain(&mut nodes, &ids, 0, now));
                }
                NetAction::Deliver(k) | NetAction::Duplicate(k) | NetAction::Drop(k)
                    if in_flight.is_empty() => { let _ = k; }
                NetAction::Deliver(k) => {
                    let d = in_flight.remove(k % in_flight.len());
                    let out = deliver(&mut nodes, d, now);
                    in_flight.extend(out);
                }
                NetAction::Duplicate(k) => {
                    let d = in_flight[k % in_flight.len()].clone();
                    let out = deliver(&mut nodes, d, now);
                    in_flight.extend(out);
                }
                NetAction::Drop(k) => {
                    in_flight.remove(k % in_flight.len());
                }
                NetAction::Advance(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    for i in 0..3 {
                        if nodes[i].core.poll_timeout().is_some_and(|t| t <= now) {
                            nodes[i].core.handle_timeout(now);
                            in_flight.extend(net_drain(&mut nodes, &ids, i, now));
                        }
                    }
                }
            }
            for n in &nodes {
                check_bounds(&n.core);
            }
        }
        // The network heals: everything in flight and everything sent from now on arrives
        // (in order, 10 ms later), and timers fire.
        let healed = now;
        while now - healed < Duration::from_secs(30) {
            let batch = std::mem::take(&mut in_flight);
            for d in batch {
                let out = deliver(&mut nodes, d, now);
                in_flight.extend(out);
            }
            now += Duration::from_millis(10);
            for i in 0..3 {
                if nodes[i].core.poll_timeout().is_some_and(|t| t <= now) {
                    nodes[i].core.handle_timeout(now);
                    in_flight.extend(net_drain(&mut nodes, &ids, i, now));
                }
            }
            if nodes.iter().all(|n| n.log.len() as u64 == published) && in_flight.is_empty() {
                break;
            }
        }
        for n in &nodes {
            prop_assert_eq!(&n.log, &nodes[0].log, "after {:?}", now - healed);
            check_bounds(&n.core);
        }
        prop_assert!(now - healed <= Duration::from_secs(10), "converged after {:?}", now - healed);
    }
}
