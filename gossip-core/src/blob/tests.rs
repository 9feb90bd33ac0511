//! Tests of the blob core: the layout and references, and scenarios of several cores on a
//! virtual clock with latency, loss, a corrupting peer, a false layout and a slow store.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::test_util::epoch;

/// The chunk size of the default configuration (a 1,400-byte datagram), which the scenarios'
/// cores use.
fn chunk() -> u32 {
    BlobConfig::default().chunk_size()
}

fn bytes_of(len: usize, seed: u64) -> Bytes {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    Bytes::from(v)
}

#[test]
fn layout_of_ten_mebibytes() {
    let layout = Layout::new(10 << 20, 1_280).unwrap();
    assert_eq!(layout.count(0), 8_192);
    assert_eq!(layout.count(1), 205);
    assert_eq!(layout.count(2), 6);
    assert_eq!(layout.count(3), 1);
    assert_eq!(layout.top(), 3);
    assert_eq!(
        layout.piece_len(PieceIndex {
            level: 1,
            index: 204
        }),
        32 * 32
    );
    assert_eq!(layout.piece_len(PieceIndex { level: 3, index: 0 }), 6 * 32);
    assert_eq!(
        layout.piece_len(PieceIndex {
            level: 0,
            index: 8_192
        }),
        0
    );
    let empty = Layout::new(0, 1_280).unwrap();
    assert_eq!((empty.count(0), empty.count(1), empty.levels()), (1, 1, 2));
    assert_eq!(
        Layout::new(10, 100).unwrap_err(),
        LayoutError::ChunkSize(100)
    );
    // Piece indexes are u32: 2^40 bytes in 64-byte chunks is 2^34 chunks.
    assert!(matches!(
        Layout::new(1 << 40, 64),
        Err(LayoutError::TooLarge { .. })
    ));
    assert!(matches!(
        Layout::new((1 << 40) + 1, 65_024),
        Err(LayoutError::TooLarge { .. })
    ));
}

#[test]
fn build_links_every_piece_to_the_root() {
    for len in [0usize, 1, 1_280, 1_281, 40 * 1_280 + 5, 200_000] {
        let bytes = bytes_of(len, len as u64);
        let built = build(&bytes, 1_280).unwrap();
        let layout = Layout::of(&built.meta).unwrap();
        assert_eq!(built.pieces.len() as u64, layout.total_pieces());
        let map: BTreeMap<PieceIndex, Bytes> = built.pieces.iter().cloned().collect();
        let top = PieceIndex {
            level: layout.top(),
            index: 0,
        };
        assert_eq!(gossip_crypto::sha256(&map[&top]), built.meta.root);
        for (piece, data) in &map {
            assert_eq!(data.len(), layout.piece_len(*piece));
            if let Some((parent, slot)) = layout.parent(*piece) {
                let page = &map[&parent];
                assert_eq!(
                    &page[slot * 32..slot * 32 + 32],
                    &gossip_crypto::sha256(data)
                );
            }
        }
        let data: Vec<u8> = (0..layout.count(0))
            .flat_map(|i| map[&PieceIndex { level: 0, index: i }].to_vec())
            .collect();
        assert_eq!(BlobId::of(&data), built.id);
    }
}

#[test]
fn references_are_found_in_content() {
    let a = BlobId([0xab; 32]);
    let b = BlobId([0x01; 32]);
    let text = format!(
        "{{\"text\":\"see {}\",\"also\":[\"{}\",\"{}\"]}} blob:XYZ blob:{}",
        reference(a),
        reference(b),
        reference(a),
        &a.to_string()[..10]
    );
    assert_eq!(references(text.as_bytes()), vec![a, b]);
    // Upper-case hex is not a reference (ids are written lowercase).
    let upper = format!("blob:{}", a.to_string().to_uppercase());
    assert!(references(upper.as_bytes()).is_empty());
    assert_eq!(a.to_string().parse::<BlobId>().unwrap(), a);
    assert!("zz".parse::<BlobId>().is_err());
}

// ---- a small deterministic network of cores ----

#[derive(Default)]
struct MemBlobs {
    complete: BTreeMap<BlobId, BlobMeta>,
    pieces: BTreeMap<(BlobId, PieceIndex), Bytes>,
}

impl MemBlobs {
    fn add(&mut self, bytes: &Bytes, chunk: u32) -> BlobId {
        let built = build(bytes, chunk).unwrap();
        for (piece, data) in built.pieces {
            self.pieces.insert((built.id, piece), data);
        }
        self.complete.insert(built.id, built.meta);
        built.id
    }

    fn data(&self, blob: BlobId) -> Vec<u8> {
        self.pieces
            .range((blob, PieceIndex { level: 0, index: 0 })..)
            .take_while(|((b, p), _)| *b == blob && p.level == 0)
            .flat_map(|(_, d)| d.to_vec())
            .collect()
    }
}

/// How a node misbehaves when serving.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serve {
    Honest,
    /// Flips a byte of every chunk it sends.
    Corrupt,
}

struct SimNode {
    id: NodeId,
    addr: SocketAddr,
    core: Blobs<StdRng>,
    store: MemBlobs,
    serve: Serve,
    /// Store writes are acknowledged this long after they are asked.
    store_delay: Duration,
    pending_stores: VecDeque<(Instant, BlobId, u64, PieceIndex)>,
    events: Vec<BlobEvent>,
}

struct Sim {
    now: Instant,
    nodes: Vec<SimNode>,
    rng: StdRng,
    loss: f64,
    latency: Duration,
    in_transit: VecDeque<(Instant, usize, NodeId, SocketAddr, BlobMessage)>,
    delivered: u64,
}

impl Sim {
    fn new(n: usize, config: BlobConfig, seed: u64) -> Sim {
        let now = epoch();
        let nodes: Vec<SimNode> = (0..n)
            .map(|i| {
                let id = NodeId([i as u8 + 1; 32]);
                SimNode {
                    id,
                    addr: SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
                    core: Blobs::new(
                        id,
                        config.clone(),
                        StdRng::seed_from_u64(seed ^ i as u64),
                        now,
                    )
                    .unwrap(),
                    store: MemBlobs::default(),
                    serve: Serve::Honest,
                    store_delay: Duration::ZERO,
                    pending_stores: VecDeque::new(),
                    events: Vec::new(),
                }
            })
            .collect();
        let mut sim = Sim {
            now,
            nodes,
            rng: StdRng::seed_from_u64(seed),
            loss: 0.0,
            latency: Duration::from_millis(1),
            in_transit: VecDeque::new(),
            delivered: 0,
        };
        let peers: Vec<(NodeId, SocketAddr)> = sim.nodes.iter().map(|n| (n.id, n.addr)).collect();
        for node in &mut sim.nodes {
            for (id, addr) in &peers {
                node.core.handle_peer_up(*id, *addr);
            }
        }
        sim
    }

    fn index_of(&self, addr: SocketAddr) -> usize {
        self.nodes.iter().position(|n| n.addr == addr).unwrap()
    }

    /// Drains every output of node `i`.
    fn drain(&mut self, i: usize) {
        loop {
            let mut any = false;
            while let Some(t) = self.nodes[i].core.poll_transmit() {
                any = true;
                let mut message = t.message;
                if self.nodes[i].serve == Serve::Corrupt {
                    if let BlobMessage::Piece(p) = &mut message {
                        if p.piece.level == 0 && !p.data.is_empty() {
                            let mut data = p.data.to_vec();
                            data[0] ^= 0xff;
                            p.data = Bytes::from(data);
                        }
                    }
                }
                if self.rng.random_bool(self.loss) {
                    continue;
                }
                let to = self.index_of(t.addr);
                let from = self.nodes[i].id;
                let from_addr = self.nodes[i].addr;
                let _ = to;
                self.in_transit
                    .push_back((self.now + self.latency, to, from, from_addr, message));
            }
            while let Some(e) = self.nodes[i].core.poll_event() {
                any = true;
                self.nodes[i].events.push(e);
            }
            while let Some(r) = self.nodes[i].core.poll_store_request() {
                any = true;
                self.store_request(i, r);
            }
            if !any {
                break;
            }
        }
    }

    fn store_request(&mut self, i: usize, request: StoreRequest) {
        let now = self.now;
        let node = &mut self.nodes[i];
        match request {
            StoreRequest::Lookup { blob, for_peer } => {
                let meta = node.store.complete.get(&blob).copied();
                node.core.handle_lookup(now, for_peer, blob, meta);
            }
            StoreRequest::ReadPieces {
                blob,
                pieces,
                for_peer,
            } => {
                let read = pieces
                    .into_iter()
                    .map(|p| (p, node.store.pieces.get(&(blob, p)).cloned()))
                    .collect();
                node.core.handle_pieces_read(now, for_peer, blob, read);
            }
            StoreRequest::StorePiece {
                blob,
                ticket,
                piece,
                data,
                ..
            } => {
                node.store.pieces.insert((blob, piece), data);
                if node.store_delay.is_zero() {
                    node.core.handle_stored(now, blob, ticket, piece, true);
                } else {
                    node.pending_stores
                        .push_back((now + node.store_delay, blob, ticket, piece));
                }
            }
            StoreRequest::CheckBlob { blob } => {
                let hash = gossip_crypto::sha256(&node.store.data(blob));
                node.core.handle_blob_hash(now, blob, Some(hash));
            }
            StoreRequest::Commit { blob, meta } => {
                node.store.complete.insert(blob, meta);
            }
            StoreRequest::Discard { blob } => {
                node.store.pieces.retain(|(b, _), _| *b != blob);
            }
        }
    }

    /// Runs in steps of 1 ms until `done` or `max` of virtual time.
    fn run_until(&mut self, max: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + max;
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
        while self.now < end {
            if done(self) {
                return true;
            }
            self.now += Duration::from_millis(1);
            let now = self.now;
            // Deliver what is due.
            let mut due = Vec::new();
            while self.in_transit.front().is_some_and(|(at, ..)| *at <= now) {
                due.push(self.in_transit.pop_front().unwrap());
            }
            for (_, to, from, addr, message) in due {
                self.delivered += 1;
                self.nodes[to].core.handle_message(now, from, addr, message);
                self.drain(to);
            }
            for i in 0..self.nodes.len() {
                while self.nodes[i]
                    .pending_stores
                    .front()
                    .is_some_and(|(at, ..)| *at <= now)
                {
                    let (_, blob, ticket, piece) =
                        self.nodes[i].pending_stores.pop_front().unwrap();
                    self.nodes[i]
                        .core
                        .handle_stored(now, blob, ticket, piece, true);
                }
                if self.nodes[i].core.poll_timeout().is_some_and(|t| t <= now) {
                    self.nodes[i].core.handle_timeout(now);
                }
                self.drain(i);
            }
        }
        done(self)
    }

    fn complete(&self, i: usize, blob: BlobId) -> bool {
        self.nodes[i].store.complete.contains_key(&blob)
    }
}

fn all_complete(sim: &Sim, blob: BlobId) -> bool {
    (0..sim.nodes.len()).all(|i| sim.complete(i, blob))
}

#[test]
fn nine_nodes_fetch_from_one_and_every_copy_hashes_equal() {
    let mut sim = Sim::new(10, BlobConfig::default(), 1);
    let bytes = bytes_of(1 << 20, 7);
    let blob = sim.nodes[0].store.add(&bytes, chunk());
    for i in 1..10 {
        assert!(sim.nodes[i].core.fetch(sim.now, blob).unwrap());
    }
    assert!(sim.run_until(Duration::from_secs(60), |s| all_complete(s, blob)));
    for i in 1..10 {
        assert_eq!(BlobId::of(&sim.nodes[i].store.data(blob)), blob);
        let events = &sim.nodes[i].events;
        assert!(events.contains(&BlobEvent::Complete {
            blob,
            size: 1 << 20
        }));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, BlobEvent::Progress { bytes, .. } if *bytes < 1 << 20))
        );
        let stats = sim.nodes[i].core.stats();
        assert_eq!(stats.pieces_corrupt, 0);
        assert!(!sim.nodes[i].core.is_fetching(blob));
        assert_eq!(stats.held_pieces, 0, "node {i} releases what it held");
    }
}

#[test]
fn fetch_completes_with_twenty_percent_loss() {
    let mut sim = Sim::new(4, BlobConfig::default(), 2);
    sim.loss = 0.2;
    let bytes = bytes_of(300_000, 9);
    let blob = sim.nodes[0].store.add(&bytes, chunk());
    for i in 1..4 {
        sim.nodes[i].core.fetch(sim.now, blob).unwrap();
    }
    assert!(sim.run_until(Duration::from_secs(300), |s| all_complete(s, blob)));
    for i in 1..4 {
        assert_eq!(BlobId::of(&sim.nodes[i].store.data(blob)), blob);
        let stats = sim.nodes[i].core.stats();
        assert!(stats.pieces_timed_out > 0, "loss forced retries");
        assert!(stats.window_decreases > 0, "timeouts shrank windows");
    }
}

#[test]
fn a_corrupting_peer_is_detected_counted_and_avoided() {
    let mut sim = Sim::new(3, BlobConfig::default(), 3);
    let bytes = bytes_of(200_000, 11);
    let blob = sim.nodes[0].store.add(&bytes, chunk());
    sim.nodes[1].store.add(&bytes, chunk());
    sim.nodes[1].serve = Serve::Corrupt;
    let bad = sim.nodes[1].id;
    sim.nodes[2].core.fetch(sim.now, blob).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(2, blob)));
    assert_eq!(BlobId::of(&sim.nodes[2].store.data(blob)), blob);
    let fetcher = &sim.nodes[2];
    assert!(fetcher.core.corrupt_count(bad) >= 1);
    assert_eq!(fetcher.core.corrupt_count(sim.nodes[0].id), 0);
    assert!(fetcher.core.stats().pieces_corrupt >= 1);
    assert!(
        fetcher
            .events
            .iter()
            .any(|e| matches!(e, BlobEvent::CorruptPiece { peer, .. } if *peer == bad))
    );
    // After max_corrupt (1) the peer is no longer a source: the corrupt pieces are few.
    assert!(fetcher.core.stats().pieces_corrupt <= u64::from(BlobConfig::default().max_window));
    // A later fetch does not even ask it.
    let other = bytes_of(5_000, 12);
    let blob2 = sim.nodes[0].store.add(&other, chunk());
    sim.nodes[1].store.add(&other, chunk());
    sim.nodes[2].core.fetch(sim.now, blob2).unwrap();
    assert!(sim.run_until(Duration::from_secs(10), |s| s.complete(2, blob2)));
    assert!(sim.nodes[2].core.sources(blob2).is_empty());
}

#[test]
fn without_an_honest_source_corrupt_pieces_never_complete_the_blob() {
    let mut sim = Sim::new(2, BlobConfig::default(), 4);
    let bytes = bytes_of(50_000, 13);
    let blob = sim.nodes[0].store.add(&bytes, chunk());
    sim.nodes[0].serve = Serve::Corrupt;
    sim.nodes[1].core.fetch(sim.now, blob).unwrap();
    assert!(!sim.run_until(Duration::from_secs(2), |s| s.complete(1, blob)));
    let bad = sim.nodes[0].id;
    let counted = sim.nodes[1].core.corrupt_count(bad);
    // The pieces already in flight when the first one failed arrive corrupt too; no more
    // are asked of it. The window grew by one for each page verified before the chunks were
    // asked for (2 + 1 pages for 41 chunks of 1,248 bytes).
    let layout = Layout::new(bytes.len() as u64, chunk()).unwrap();
    let pages = u32::try_from(layout.total_pieces()).unwrap() - layout.count(0);
    let in_flight = BlobConfig::default().initial_window + pages;
    assert!(
        (1..=in_flight + 1).contains(&counted),
        "{counted} > {in_flight} + 1"
    );
    assert!(sim.nodes[1].core.sources(blob).is_empty());
    assert!(!sim.run_until(Duration::from_secs(3), |s| s.complete(1, blob)));
    assert_eq!(sim.nodes[1].core.corrupt_count(bad), counted);
}

#[test]
fn a_false_layout_is_caught_by_the_blob_hash_and_its_source_banned() {
    let mut sim = Sim::new(3, BlobConfig::default(), 5);
    let bytes = bytes_of(30_000, 14);
    let blob = sim.nodes[0].store.add(&bytes, chunk());
    // Node 1 claims other bytes (a consistent tree) under this blob's id.
    let lie = bytes_of(30_000, 15);
    let built = build(&lie, chunk()).unwrap();
    for (piece, data) in built.pieces {
        sim.nodes[1].store.pieces.insert((blob, piece), data);
    }
    sim.nodes[1].store.complete.insert(blob, built.meta);
    // The fetcher hears only the liar first.
    let liar = (sim.nodes[1].id, sim.nodes[1].addr);
    let honest = (sim.nodes[0].id, sim.nodes[0].addr);
    sim.nodes[2].core.handle_peer_down(sim.now, honest.0);
    sim.nodes[2].core.fetch(sim.now, blob).unwrap();
    sim.run_until(Duration::from_millis(500), |_| false);
    sim.nodes[2].core.handle_peer_up(honest.0, honest.1);
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(2, blob)));
    assert_eq!(BlobId::of(&sim.nodes[2].store.data(blob)), blob);
    assert!(
        sim.nodes[2].events.iter().any(
            |e| matches!(e, BlobEvent::HashMismatch { banned, .. } if banned == &vec![liar.0])
        )
    );
    assert_eq!(sim.nodes[2].core.stats().hash_mismatches, 1);
}

#[test]
fn held_pieces_never_exceed_the_bound_with_a_slow_store() {
    let config = BlobConfig {
        max_held_pieces: 48,
        max_window: 32,
        ..BlobConfig::default()
    };
    let mut sim = Sim::new(5, config.clone(), 6);
    let bytes = bytes_of(400_000, 16);
    let blob = sim.nodes[0].store.add(&bytes, chunk());
    for i in 1..4 {
        sim.nodes[i].store.add(&bytes, chunk());
    }
    // Stores are slow: 20 ms per write, so verified pieces pile up unless the bound holds.
    sim.nodes[4].store_delay = Duration::from_millis(20);
    sim.nodes[4].core.fetch(sim.now, blob).unwrap();
    let mut max_seen = 0;
    assert!(sim.run_until(Duration::from_secs(120), |s| {
        max_seen = max_seen.max(s.nodes[4].core.stats().held_pieces);
        s.complete(4, blob)
    }));
    let stats = sim.nodes[4].core.stats();
    assert!(stats.peak_held_pieces <= config.max_held_pieces);
    assert!(max_seen <= config.max_held_pieces);
    assert!(stats.peak_held_bytes <= config.max_held_pieces * config.chunk_size() as usize);
    // The bound was the limit, not an accident of a light load.
    assert_eq!(stats.peak_held_pieces, config.max_held_pieces);
    assert!(sim.nodes[4].core.sources(blob).is_empty());
    assert_eq!(BlobId::of(&sim.nodes[4].store.data(blob)), blob);
}

#[test]
fn windows_grow_and_are_capped_per_source() {
    let config = BlobConfig {
        max_window: 16,
        ..BlobConfig::default()
    };
    let mut sim = Sim::new(2, config, 7);
    sim.latency = Duration::from_millis(5);
    let bytes = bytes_of(600_000, 17);
    let blob = sim.nodes[0].store.add(&bytes, chunk());
    sim.nodes[1].core.fetch(sim.now, blob).unwrap();
    let mut max_window = 0;
    sim.run_until(Duration::from_secs(60), |s| {
        for (_, w) in s.nodes[1].core.sources(blob) {
            max_window = max_window.max(w);
        }
        s.complete(1, blob)
    });
    assert!(sim.complete(1, blob));
    assert_eq!(
        max_window, 16,
        "slow start reaches the cap and stays under it"
    );
}

#[test]
fn serving_is_bounded_per_peer() {
    let config = BlobConfig {
        serve_queue_per_peer: 10,
        ..BlobConfig::default()
    };
    let now = epoch();
    let mut core = Blobs::new(NodeId([1; 32]), config, StdRng::seed_from_u64(1), now).unwrap();
    let peer = NodeId([2; 32]);
    let addr = SocketAddr::from(([127, 0, 0, 1], 1));
    let blob = BlobId([9; 32]);
    let request = |n: u32| {
        BlobMessage::Request(BlobRequest {
            blob,
            pieces: (0..n).map(|index| PieceIndex { level: 0, index }).collect(),
        })
    };
    core.handle_message(now, peer, addr, request(8));
    core.handle_message(now, peer, addr, request(8));
    core.handle_message(now, peer, addr, request(8));
    let mut asked = 0;
    while let Some(r) = core.poll_store_request() {
        if let StoreRequest::ReadPieces { pieces, .. } = r {
            asked += pieces.len();
        }
    }
    assert_eq!(asked, 10);
    assert_eq!(core.stats().serve_refused, 14);
    // Once served, the queue has room again.
    core.handle_pieces_read(
        now,
        peer,
        blob,
        (0..8)
            .map(|index| (PieceIndex { level: 0, index }, Some(Bytes::new())))
            .collect(),
    );
    assert_eq!(core.stats().pieces_served, 8);
    core.handle_message(now, peer, addr, request(8));
    assert!(matches!(
        core.poll_store_request(),
        Some(StoreRequest::ReadPieces { pieces, .. }) if pieces.len() == 8
    ));
}

#[test]
fn a_fetch_without_holders_fails_after_the_stall_timeout() {
    let config = BlobConfig {
        stall_timeout: Duration::from_secs(5),
        ..BlobConfig::default()
    };
    let mut sim = Sim::new(2, config, 8);
    let blob = BlobId([3; 32]);
    sim.nodes[1].core.fetch(sim.now, blob).unwrap();
    sim.run_until(Duration::from_secs(6), |_| false);
    assert!(sim.nodes[1].events.contains(&BlobEvent::Failed {
        blob,
        reason: FailReason::Stalled
    }));
    assert!(sim.nodes[1].core.stats().wants_sent >= 5);
    assert!(!sim.nodes[1].core.is_fetching(blob));
}

#[test]
fn a_limited_fetch_ignores_larger_blobs() {
    let mut sim = Sim::new(2, BlobConfig::default(), 9);
    let bytes = bytes_of(50_000, 18);
    let blob = sim.nodes[0].store.add(&bytes, chunk());
    sim.nodes[1]
        .core
        .fetch_limited(sim.now, blob, 49_999)
        .unwrap();
    assert!(!sim.run_until(Duration::from_secs(3), |s| s.complete(1, blob)));
    assert!(sim.nodes[1].core.stats().haves_ignored >= 1);
    assert!(sim.nodes[1].core.cancel(sim.now, blob));
    sim.nodes[1]
        .core
        .fetch_limited(sim.now, blob, 50_000)
        .unwrap();
    assert!(sim.run_until(Duration::from_secs(10), |s| s.complete(1, blob)));
}

#[test]
fn a_store_answer_of_an_earlier_attempt_is_ignored() {
    let mut sim = Sim::new(2, BlobConfig::default(), 10);
    let bytes = bytes_of(20_000, 19);
    let blob = sim.nodes[0].store.add(&bytes, chunk());
    sim.nodes[1].store_delay = Duration::from_secs(100);
    sim.nodes[1].core.fetch(sim.now, blob).unwrap();
    sim.run_until(Duration::from_secs(1), |s| {
        !s.nodes[1].pending_stores.is_empty()
    });
    let (_, b, ticket, piece) = sim.nodes[1].pending_stores[0];
    let held = sim.nodes[1].core.stats().held_pieces;
    assert!(held >= 1);
    let now = sim.now;
    sim.nodes[1]
        .core
        .handle_stored(now, b, ticket + 1, piece, true);
    assert_eq!(sim.nodes[1].core.stats().held_pieces, held);
    sim.nodes[1].core.handle_stored(now, b, ticket, piece, true);
    assert_eq!(sim.nodes[1].core.stats().held_pieces, held - 1);
    // A cancelled and restarted fetch takes a new ticket: the old answers no longer count.
    assert!(sim.nodes[1].core.cancel(now, blob));
    sim.nodes[1].pending_stores.clear();
    sim.nodes[1].store_delay = Duration::ZERO;
    sim.nodes[1].core.fetch(now, blob).unwrap();
    assert!(sim.run_until(Duration::from_secs(10), |s| s.complete(1, blob)));
    assert_eq!(BlobId::of(&sim.nodes[1].store.data(blob)), blob);
}
