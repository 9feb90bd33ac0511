//! A deterministic in-memory network of [`Tree`] cores on a virtual clock, each with an
//! in-memory log standing in for the store.
//!
//! The topology is a ring plus `chords` random links per node (symmetric, so about
//! `2 + 2 × chords` peers each). Every datagram gets a latency drawn uniformly from `latency`
//! and is lost with probability `loss`. The shell of each node does what an actor would:
//! appends `Received` messages to its log and reports them appended, answers fetches and
//! fork checks from the log, keeps stored clocks. The driver advances to the earliest of the
//! next arrival, the next publication and the earliest `poll_timeout`. One seed fixes the run;
//! a failing scenario prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gossip_crypto::Identity;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::feed::{FeedId, FeedMessage};
use crate::id::NodeId;
use crate::tree::{
    ENVELOPE_OVERHEAD, StoreRequest, Transmit, Tree, TreeConfig, TreeEvent, TreeMessage, TreeStats,
};

/// Parameters of one simulated run.
#[derive(Clone, Debug)]
pub(crate) struct SimConfig {
    pub nodes: usize,
    /// Random links each node adds to the ring.
    pub chords: usize,
    pub loss: f64,
    pub latency: (Duration, Duration),
    pub seed: u64,
    pub core: TreeConfig,
    /// Nodes `0..authors` publish.
    pub authors: usize,
    pub messages_per_author: u64,
    /// First publication; author `a` publishes message `k` (from 0) at
    /// `first_publish + k × publish_every + a × author_stagger`.
    pub first_publish: Duration,
    pub publish_every: Duration,
    pub author_stagger: Duration,
}

impl SimConfig {
    pub(crate) fn new(nodes: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            chords: 3,
            loss: 0.0,
            latency: (Duration::from_millis(10), Duration::from_millis(50)),
            seed,
            core: TreeConfig::default(),
            authors: 10,
            messages_per_author: 5,
            first_publish: Duration::from_secs(1),
            publish_every: Duration::from_secs(1),
            author_stagger: Duration::from_millis(90),
        }
    }
}

pub(crate) struct SimNode {
    pub core: Tree<StdRng>,
    pub id: NodeId,
    identity: Option<Identity>,
    pub log: BTreeMap<FeedId, Vec<FeedMessage>>,
    pub clocks: BTreeMap<NodeId, Vec<(FeedId, i64)>>,
    /// Hops each appended message travelled (0 at its author).
    hops: BTreeMap<(FeedId, u64), u32>,
    pub up: bool,
}

struct InFlight {
    to: usize,
    from: NodeId,
    message: TreeMessage,
}

pub(crate) struct Sim {
    pub config: SimConfig,
    epoch: Instant,
    pub now: Instant,
    pub nodes: Vec<SimNode>,
    pub addrs: Vec<SocketAddr>,
    index: BTreeMap<NodeId, usize>,
    pub adjacency: Vec<BTreeSet<usize>>,
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    /// Publications by (time, sequence number) → author node.
    scheduled: BTreeMap<(Instant, u64), usize>,
    seq: u64,
    rng: StdRng,
    pub feeds: Vec<FeedId>,
    /// (feed, sequence) → publication time since the epoch.
    pub published: BTreeMap<(FeedId, u64), Duration>,
    /// (node, feed, sequence) → (append time since the epoch, hop).
    pub delivered: BTreeMap<(usize, FeedId, u64), (Duration, u32)>,
    /// Feed-message copies that arrived in a `FeedBatch`, per (feed, sequence).
    pub copies: BTreeMap<(FeedId, u64), u64>,
    pub datagrams_sent: u64,
    pub datagrams_lost: u64,
    pub notes_datagrams: u64,
    pub batch_datagrams: u64,
    pub switches: u64,
    pub steps: u64,
}

impl Sim {
    pub(crate) fn new(config: SimConfig) -> Self {
        let epoch = crate::test_util::epoch();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let n = config.nodes;
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| {
                let i = u16::try_from(i).expect("at most 65,535 nodes");
                SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000))
            })
            .collect();
        let mut identities = Vec::new();
        let mut ids = Vec::new();
        for i in 0..n {
            if i < config.authors {
                let mut seed = [0u8; 32];
                rng.fill(&mut seed);
                let identity = Identity::from_bytes(&seed);
                ids.push(NodeId(identity.public_key()));
                identities.push(Some(identity));
            } else {
                ids.push(NodeId::random(&mut rng));
                identities.push(None);
            }
        }
        let feeds: Vec<FeedId> = ids[..config.authors]
            .iter()
            .map(|id| FeedId::from(*id))
            .collect();
        let mut adjacency = vec![BTreeSet::new(); n];
        if n > 1 {
            for i in 0..n {
                let j = (i + 1) % n;
                if i != j {
                    adjacency[i].insert(j);
                    adjacency[j].insert(i);
                }
                for _ in 0..config.chords {
                    let j = rng.random_range(0..n);
                    if j != i {
                        adjacency[i].insert(j);
                        adjacency[j].insert(i);
                    }
                }
            }
        }
        let nodes = (0..n)
            .map(|i| {
                let core_rng = StdRng::seed_from_u64(rng.random());
                let mut core = Tree::new(ids[i], None, config.core.clone(), core_rng, epoch)
                    .expect("valid config");
                for feed in &feeds {
                    core.follow(epoch, *feed, None).expect("room to follow");
                }
                SimNode {
                    core,
                    id: ids[i],
                    identity: identities[i].take(),
                    log: BTreeMap::new(),
                    clocks: BTreeMap::new(),
                    hops: BTreeMap::new(),
                    up: true,
                }
            })
            .collect();
        let index = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut sim = Sim {
            epoch,
            now: epoch,
            nodes,
            addrs,
            index,
            adjacency,
            in_flight: BTreeMap::new(),
            scheduled: BTreeMap::new(),
            seq: 0,
            rng,
            feeds,
            published: BTreeMap::new(),
            delivered: BTreeMap::new(),
            copies: BTreeMap::new(),
            datagrams_sent: 0,
            datagrams_lost: 0,
            notes_datagrams: 0,
            batch_datagrams: 0,
            switches: 0,
            steps: 0,
            config,
        };
        for i in 0..n {
            sim.flush(i);
        }
        for i in 0..n {
            let peers: Vec<usize> = sim.adjacency[i].iter().copied().collect();
            for j in peers {
                sim.connect(i, j);
            }
        }
        let config = sim.config.clone();
        for a in 0..config.authors {
            for k in 0..config.messages_per_author {
                let at = epoch
                    + config.first_publish
                    + config.publish_every * u32::try_from(k).expect("few messages")
                    + config.author_stagger * u32::try_from(a).expect("few authors");
                let seq = sim.next_seq();
                sim.scheduled.insert((at, seq), a);
            }
        }
        sim
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// `i` sees `j` come up, with the clock it stored for `j` if any.
    pub(crate) fn connect(&mut self, i: usize, j: usize) {
        let stored = self.nodes[i].clocks.get(&self.nodes[j].id).cloned();
        let (id, addr) = (self.nodes[j].id, self.addrs[j]);
        let now = self.now;
        self.nodes[i]
            .core
            .handle_peer_up(now, id, addr, stored)
            .expect("room for peers");
        self.flush(i);
    }

    /// `i` sees `j` go down.
    pub(crate) fn disconnect(&mut self, i: usize, j: usize) {
        let id = self.nodes[j].id;
        let now = self.now;
        self.nodes[i].core.handle_peer_down(now, id);
        self.flush(i);
    }

    /// Runs until `elapsed() == until`, failing past `max_steps` steps.
    pub(crate) fn run_until(&mut self, until: Duration, max_steps: u64) {
        let until = self.epoch + until;
        loop {
            let next_datagram = self.in_flight.keys().next().map(|(t, _)| *t);
            let next_publish = self.scheduled.keys().next().map(|(t, _)| *t);
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .filter_map(|n| n.core.poll_timeout())
                .min();
            let Some(next) = [next_datagram, next_publish, next_timer]
                .into_iter()
                .flatten()
                .min()
            else {
                self.now = self.now.max(until);
                return;
            };
            if next > until {
                self.now = self.now.max(until);
                return;
            }
            self.now = self.now.max(next);
            self.steps += 1;
            assert!(
                self.steps <= max_steps,
                "seed {}: more than {max_steps} steps",
                self.config.seed
            );
            let now = self.now;
            while let Some(entry) = self.scheduled.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let author = entry.remove();
                self.publish(author);
            }
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let d = entry.remove();
                if !self.nodes[d.to].up {
                    continue;
                }
                match d.message {
                    TreeMessage::Notes(notes) => {
                        self.nodes[d.to].core.handle_notes(now, d.from, notes);
                    }
                    TreeMessage::Batch(batch) => {
                        for m in &batch.messages {
                            *self.copies.entry((m.author, m.sequence)).or_default() += 1;
                        }
                        self.nodes[d.to].core.handle_batch(now, d.from, batch);
                    }
                }
                self.flush(d.to);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].up && self.nodes[i].core.poll_timeout().is_some_and(|t| t <= now) {
                    self.nodes[i].core.handle_timeout(now);
                    self.flush(i);
                }
            }
        }
    }

    /// Author `a` publishes its next message.
    pub(crate) fn publish(&mut self, a: usize) {
        let now = self.now;
        let at = self.elapsed();
        let node = &mut self.nodes[a];
        let identity = node.identity.as_ref().expect("an author");
        let feed = FeedId::of(identity);
        let next = node.log.get(&feed).map_or(1, |l| l.len() as u64 + 1);
        let mut content = vec![0u8; 200];
        self.rng.fill(&mut content[..]);
        let message = node
            .core
            .publish(
                now,
                identity,
                1_700_000_000_000 + next,
                Bytes::from(content),
            )
            .expect("publish");
        assert_eq!(message.sequence, next);
        self.published.insert((feed, next), at);
        self.append(a, message, 0);
        self.flush(a);
    }

    fn append(&mut self, i: usize, message: FeedMessage, hop: u32) {
        let now = self.now;
        let at = self.elapsed();
        let node = &mut self.nodes[i];
        let log = node.log.entry(message.author).or_default();
        assert_eq!(
            message.sequence,
            log.len() as u64 + 1,
            "seed {}: node {i} appends out of order",
            self.config.seed
        );
        assert_eq!(message.previous, log.last().map(FeedMessage::id));
        log.push(message.clone());
        node.hops.insert((message.author, message.sequence), hop);
        self.delivered
            .insert((i, message.author, message.sequence), (at, hop));
        node.core
            .handle_appended(now, &message)
            .expect("appended in order");
    }

    /// Drains node `i`'s outputs, as its shell would, until all three queues are empty.
    pub(crate) fn flush(&mut self, i: usize) {
        loop {
            let mut progress = false;
            while let Some(event) = self.nodes[i].core.poll_event() {
                progress = true;
                match event {
                    TreeEvent::Received { from, message } => {
                        let from_hop = self
                            .index
                            .get(&from)
                            .and_then(|&f| {
                                self.nodes[f].hops.get(&(message.author, message.sequence))
                            })
                            .copied()
                            .unwrap_or(0);
                        self.append(i, message, from_hop + 1);
                    }
                    TreeEvent::SourceSwitched { .. } => self.switches += 1,
                    TreeEvent::FeedAdvanced { .. } => {}
                    TreeEvent::Forked { feed, .. } => {
                        panic!("seed {}: unexpected fork of {feed:?}", self.config.seed)
                    }
                }
            }
            while let Some(request) = self.nodes[i].core.poll_store_request() {
                progress = true;
                let now = self.now;
                match request {
                    StoreRequest::Fetch {
                        feed,
                        from_seq,
                        limit,
                        for_peer,
                    } => {
                        let messages: Vec<FeedMessage> = self.nodes[i]
                            .log
                            .get(&feed)
                            .map(|log| {
                                log.iter()
                                    .skip(usize::try_from(from_seq.saturating_sub(1)).unwrap())
                                    .take(limit)
                                    .cloned()
                                    .collect()
                            })
                            .unwrap_or_default();
                        self.nodes[i]
                            .core
                            .handle_fetched(now, for_peer, feed, messages);
                    }
                    StoreRequest::StoreClock { peer, clock } => {
                        self.nodes[i].clocks.insert(peer, clock);
                    }
                    StoreRequest::CheckFork { message } => {
                        let stored = self.nodes[i]
                            .log
                            .get(&message.author)
                            .and_then(|log| {
                                log.get(usize::try_from(message.sequence).ok()?.checked_sub(1)?)
                            })
                            .cloned();
                        self.nodes[i].core.handle_fork_check(now, message, stored);
                    }
                }
            }
            while let Some(transmit) = self.nodes[i].core.poll_transmit() {
                progress = true;
                self.send(i, transmit);
            }
            if !progress {
                return;
            }
        }
    }

    fn send(&mut self, i: usize, transmit: Transmit) {
        let bound = transmit.message.encoded_len_bound();
        assert!(
            bound + ENVELOPE_OVERHEAD <= self.config.core.max_envelope_len,
            "oversized transmit of {bound} bytes"
        );
        let to = self.index[&transmit.to];
        assert_eq!(self.addrs[to], transmit.addr);
        assert!(
            self.adjacency[i].contains(&to),
            "node {i} sends to {to}, not a peer"
        );
        self.datagrams_sent += 1;
        match &transmit.message {
            TreeMessage::Notes(_) => self.notes_datagrams += 1,
            TreeMessage::Batch(_) => self.batch_datagrams += 1,
        }
        if self.rng.random_bool(self.config.loss) {
            self.datagrams_lost += 1;
            return;
        }
        let (lo, hi) = self.config.latency;
        let latency = self.rng.random_range(lo..=hi);
        let seq = self.next_seq();
        self.in_flight.insert(
            (self.now + latency, seq),
            InFlight {
                to,
                from: self.nodes[i].id,
                message: transmit.message,
            },
        );
    }

    /// Whether every node holds every published message, each log equal to its author's.
    pub(crate) fn complete(&self) -> bool {
        self.feeds.iter().enumerate().all(|(a, feed)| {
            let Some(reference) = self.nodes[a].log.get(feed) else {
                return false;
            };
            reference.len() as u64 == self.config.messages_per_author
                && self
                    .nodes
                    .iter()
                    .all(|n| n.log.get(feed).is_some_and(|l| l == reference))
        })
    }

    /// Pairs (node, message) missing.
    pub(crate) fn missing(&self) -> usize {
        let n = self.nodes.len();
        let expected = n * self.feeds.len() * self.config.messages_per_author as usize;
        expected - self.delivered.len()
    }

    /// RMR of one message: copies received / (n − 1) − 1.
    pub(crate) fn rmr(&self, feed: FeedId, seq: u64) -> f64 {
        let n = self.nodes.len() as f64;
        let copies = self.copies.get(&(feed, seq)).copied().unwrap_or(0) as f64;
        copies / (n - 1.0) - 1.0
    }

    /// RMR over all messages with `sequence` in `range`.
    pub(crate) fn rmr_over(&self, range: std::ops::RangeInclusive<u64>) -> f64 {
        let n = self.nodes.len() as f64;
        let mut copies = 0u64;
        let mut count = 0u64;
        for feed in &self.feeds {
            for seq in range.clone() {
                copies += self.copies.get(&(*feed, seq)).copied().unwrap_or(0);
                count += 1;
            }
        }
        copies as f64 / (count as f64 * (n - 1.0)) - 1.0
    }

    /// Largest per-message RMR over sequences in `range`.
    pub(crate) fn max_rmr(&self, range: std::ops::RangeInclusive<u64>) -> f64 {
        self.feeds
            .iter()
            .flat_map(|f| range.clone().map(move |s| (*f, s)))
            .map(|(f, s)| self.rmr(f, s))
            .fold(f64::MIN, f64::max)
    }

    /// Last delivery hop.
    pub(crate) fn ldh(&self) -> u32 {
        self.delivered.values().map(|(_, h)| *h).max().unwrap_or(0)
    }

    /// Per message, publication to last append; the maximum.
    pub(crate) fn max_completion(&self) -> Duration {
        self.max_completion_over(1..=u64::MAX)
    }

    /// As [`max_completion`](Self::max_completion), over messages with `sequence` in
    /// `range`.
    pub(crate) fn max_completion_over(&self, range: std::ops::RangeInclusive<u64>) -> Duration {
        let mut last: BTreeMap<(FeedId, u64), Duration> = BTreeMap::new();
        for ((_, feed, seq), (at, _)) in &self.delivered {
            if range.contains(seq) {
                let e = last.entry((*feed, *seq)).or_default();
                *e = (*e).max(*at);
            }
        }
        last.iter()
            .map(|(key, at)| at.saturating_sub(self.published[key]))
            .max()
            .unwrap_or_default()
    }

    /// Sum of a counter over all nodes.
    pub(crate) fn total(&self, f: impl Fn(&TreeStats) -> u64) -> u64 {
        self.nodes.iter().map(|n| f(&n.core.stats())).sum()
    }

    /// Whether every node's collections are within their bounds and its queues drained.
    pub(crate) fn occupancy_ok(&self) -> bool {
        self.nodes.iter().all(|n| {
            let o = n.core.occupancy();
            let c = n.core.config();
            o.feeds <= c.max_feeds
                && o.peers <= c.max_peers
                && o.pending_fetches <= c.max_pending_fetches
                && o.pending_fork_checks <= c.max_pending_fetches
                && o.recent <= c.recent_capacity.get()
                && o.buffered <= c.max_buffered
                && o.unappended <= c.max_unappended
                && o.queued == 0
        })
    }

    /// A one-paragraph report of the run's numbers.
    pub(crate) fn report(&self, name: &str) -> String {
        let m = self.config.messages_per_author;
        format!(
            "{name} (seed {}): {} nodes (avg degree {:.1}), loss {:.0}%, {} feeds x {m} msgs: \
             missing {}, RMR all {:.3}, RMR 1-3 {:.3}, RMR 4-{m} {:.3} (max per msg {:.3}), \
             LDH {}, max completion {:?} (message 1: {:?}, 4-{m}: {:?}), datagrams {} \
             (notes {}, batches {}), lost {}, \
             note entries {} (resent {}), grafts {}, prunes {}, stall switches {}, rewinds {}, \
             duplicates {}, steps {}",
            self.config.seed,
            self.nodes.len(),
            self.adjacency.iter().map(BTreeSet::len).sum::<usize>() as f64
                / self.nodes.len() as f64,
            self.config.loss * 100.0,
            self.feeds.len(),
            self.missing(),
            self.rmr_over(1..=m),
            self.rmr_over(1..=3.min(m)),
            self.rmr_over(4.min(m)..=m),
            self.max_rmr(4.min(m)..=m),
            self.ldh(),
            self.max_completion(),
            self.max_completion_over(1..=1),
            self.max_completion_over(4.min(m)..=m),
            self.datagrams_sent,
            self.notes_datagrams,
            self.batch_datagrams,
            self.datagrams_lost,
            self.total(|s| s.note_entries_sent),
            self.total(|s| s.note_entries_resent),
            self.total(|s| s.grafts),
            self.total(|s| s.prunes),
            self.total(|s| s.stall_switches),
            self.total(|s| s.rewinds),
            self.total(|s| s.duplicates),
            self.steps,
        )
    }
}
