//! A deterministic in-memory network of [`Reconcile`] cores on a virtual clock.
//!
//! Every datagram gets a latency drawn uniformly from `latency`, is lost with probability
//! `loss`, and is dropped if its two ends are in different partition groups. The driver is a
//! discrete-event loop over three queues (datagram arrivals, core timers, producer
//! attempts), always taking the earliest; ties in insertion order. An optional timeout
//! failure detector per node feeds `handle_peer_dead` / `handle_peer_live` from the
//! `HeartbeatAdvanced` events. One seed fixes the whole run; a failing scenario prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::id::NodeId;
use crate::reconcile::{
    ENVELOPE_OVERHEAD, Reconcile, ReconcileConfig, StateError, StateEvent, StateMessage,
};

/// A node that writes as fast as it is allowed: one attempt every `every`, or at the
/// `retry_after` of a refusal (a waiting `set` with a queue of one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Producer {
    pub every: Duration,
    /// Distinct keys written in turn.
    pub keys: u64,
    pub value_len: usize,
}

/// Parameters of one simulated run.
#[derive(Clone, Debug)]
pub(crate) struct SimConfig {
    pub nodes: usize,
    /// The first `seeds` nodes are every node's seeds.
    pub seeds: usize,
    pub loss: f64,
    pub latency: (Duration, Duration),
    pub seed: u64,
    pub core: ReconcileConfig,
    /// Keys each node sets at time 0.
    pub keys_per_node: usize,
    pub value_len: usize,
    /// A node is reported dead after this long without a heartbeat advance.
    pub failure_timeout: Option<Duration>,
}

impl SimConfig {
    pub(crate) fn new(nodes: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            seeds: 3.min(nodes),
            loss: 0.0,
            latency: (Duration::from_millis(1), Duration::from_millis(20)),
            seed,
            core: super::config(),
            keys_per_node: 3,
            value_len: 16,
            failure_timeout: None,
        }
    }

    /// `GOSSIP_SIM_SEED=<n>` replaces the seed, to rerun a failure.
    pub(crate) fn seed_from_env(mut self) -> Self {
        if let Some(seed) = std::env::var("GOSSIP_SIM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            self.seed = seed;
        }
        self
    }
}

struct SimNode {
    core: Reconcile<StdRng>,
    id: NodeId,
    /// The failure detector: last heartbeat advance seen per node, and whether reported dead.
    fd: BTreeMap<NodeId, (Instant, bool)>,
    producer: Option<Producer>,
    next_key: u64,
    /// The timer currently queued for this node.
    timer: Option<Instant>,
}

struct InFlight {
    to: usize,
    from: SocketAddr,
    sender: NodeId,
    message: StateMessage,
}

/// Per producer, sampled every second: (time, rate, admitted so far, backlog).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub at: Duration,
    pub rate: f64,
    pub admitted: u64,
    /// The producer's max version minus the lowest max version any node holds of it.
    pub backlog: u64,
    /// Mean over the other nodes of the producer's max version minus what they hold.
    pub mean_lag: f64,
}

pub(crate) struct Sim {
    pub config: SimConfig,
    epoch: Instant,
    now: Instant,
    nodes: Vec<SimNode>,
    addrs: Vec<SocketAddr>,
    index: BTreeMap<SocketAddr, usize>,
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    timers: BTreeSet<(Instant, usize)>,
    attempts: BTreeSet<(Instant, usize)>,
    seq: u64,
    rng: StdRng,
    /// Partition group of each node; datagrams between groups are dropped.
    groups: Option<Vec<u8>>,
    /// Nodes not yet seen converged.
    unconverged: BTreeSet<usize>,
    pub datagrams: u64,
    pub bytes: u64,
    pub lost: u64,
    pub partitioned: u64,
    pub steps: u64,
    pub samples: BTreeMap<usize, Vec<Sample>>,
    next_sample: Instant,
}

impl Sim {
    pub(crate) fn new(config: SimConfig) -> Self {
        let epoch = crate::test_util::epoch();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let addrs: Vec<SocketAddr> = (0..config.nodes)
            .map(|i| super::addr(u16::try_from(i).expect("at most 65,535 nodes")))
            .collect();
        let index = addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        let seeds: Vec<SocketAddr> = addrs[..config.seeds].to_vec();
        let mut nodes = Vec::with_capacity(config.nodes);
        for (i, addr) in addrs.iter().enumerate() {
            let id = NodeId::random(&mut rng);
            let core_rng = StdRng::seed_from_u64(rng.random());
            let mut core = Reconcile::new(
                id,
                *addr,
                1,
                seeds.clone(),
                config.core.clone(),
                core_rng,
                epoch,
            )
            .expect("valid config");
            for k in 0..config.keys_per_node {
                let value = Bytes::from(vec![i as u8; config.value_len]);
                core.set(epoch, &format!("key{k}"), value)
                    .expect("initial keys fit");
            }
            nodes.push(SimNode {
                core,
                id,
                fd: BTreeMap::new(),
                producer: None,
                next_key: 0,
                timer: None,
            });
        }
        let mut sim = Sim {
            unconverged: (0..config.nodes).collect(),
            config,
            epoch,
            now: epoch,
            nodes,
            addrs,
            index,
            in_flight: BTreeMap::new(),
            timers: BTreeSet::new(),
            attempts: BTreeSet::new(),
            seq: 0,
            rng,
            groups: None,
            datagrams: 0,
            bytes: 0,
            lost: 0,
            partitioned: 0,
            steps: 0,
            samples: BTreeMap::new(),
            next_sample: epoch,
        };
        for i in 0..sim.nodes.len() {
            sim.rearm(i);
        }
        sim
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    pub(crate) fn core(&self, i: usize) -> &Reconcile<StdRng> {
        &self.nodes[i].core
    }

    pub(crate) fn id(&self, i: usize) -> NodeId {
        self.nodes[i].id
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Splits the nodes into groups (`groups[i]` for node `i`); `None` heals.
    pub(crate) fn partition(&mut self, groups: Option<Vec<u8>>) {
        self.groups = groups;
    }

    /// Makes node `i` a producer from now on.
    pub(crate) fn produce(&mut self, i: usize, producer: Producer) {
        self.nodes[i].producer = Some(producer);
        self.attempts.insert((self.now, i));
        self.samples.entry(i).or_default();
    }

    /// Lets node `i` write `key` now (through flow control; panics if refused).
    pub(crate) fn set(&mut self, i: usize, key: &str, value: Bytes) -> u64 {
        let now = self.now;
        let v = self.nodes[i].core.set(now, key, value).expect("admitted");
        self.flush(i);
        v
    }

    /// Lets node `i` delete `key` now (through flow control; panics if refused).
    pub(crate) fn delete(&mut self, i: usize, key: &str) -> Option<u64> {
        let now = self.now;
        let v = self.nodes[i].core.delete(now, key).expect("admitted");
        self.flush(i);
        v
    }

    fn rearm(&mut self, i: usize) {
        if let Some(old) = self.nodes[i].timer.take() {
            self.timers.remove(&(old, i));
        }
        if let Some(at) = self.nodes[i].core.poll_timeout() {
            self.timers.insert((at, i));
            self.nodes[i].timer = Some(at);
        }
    }

    /// Runs until `elapsed() == until`.
    pub(crate) fn run_until(&mut self, until: Duration) {
        let until = self.epoch + until;
        while self.step(until) {}
        self.now = self.now.max(until);
    }

    /// Runs until every node holds every node's newest version (checked every simulated
    /// second), or `deadline`; returns the time of convergence.
    pub(crate) fn run_until_converged(&mut self, deadline: Duration) -> Option<Duration> {
        let deadline = self.epoch + deadline;
        loop {
            if self.converged() {
                return Some(self.elapsed());
            }
            let next = (self.now + Duration::from_secs(1)).min(deadline);
            while self.step(next) {}
            self.now = self.now.max(next);
            if self.now >= deadline {
                return self.converged().then(|| self.elapsed());
            }
        }
    }

    /// Processes the earliest pending item at or before `until`; `false` if there is none.
    fn step(&mut self, until: Instant) -> bool {
        let next_datagram = self.in_flight.keys().next().map(|(t, _)| *t);
        let next_timer = self.timers.first().map(|(t, _)| *t);
        let next_attempt = self.attempts.first().map(|(t, _)| *t);
        let Some(next) = [next_datagram, next_timer, next_attempt]
            .into_iter()
            .flatten()
            .min()
        else {
            return false;
        };
        if next > until {
            return false;
        }
        self.now = self.now.max(next);
        self.steps += 1;
        assert!(
            self.steps < 50_000_000,
            "seed {}: runaway simulation",
            self.config.seed
        );
        let now = self.now;
        if self.next_sample <= now {
            self.sample();
            self.next_sample = now + Duration::from_secs(1);
            self.run_failure_detectors();
        }
        if next_datagram == Some(next) {
            let Some(entry) = self.in_flight.first_entry() else {
                return true;
            };
            let d = entry.remove();
            self.nodes[d.to]
                .core
                .handle_message(now, d.from, d.sender, d.message);
            self.flush(d.to);
        } else if next_timer == Some(next) {
            let Some((_, i)) = self.timers.pop_first() else {
                return true;
            };
            self.nodes[i].timer = None;
            self.nodes[i].core.handle_timeout(now);
            self.flush(i);
        } else {
            let Some((_, i)) = self.attempts.pop_first() else {
                return true;
            };
            self.attempt(i);
        }
        true
    }

    fn attempt(&mut self, i: usize) {
        let now = self.now;
        let Some(p) = self.nodes[i].producer else {
            return;
        };
        let key = format!("p{}", self.nodes[i].next_key % p.keys);
        let value = Bytes::from(vec![i as u8; p.value_len]);
        match self.nodes[i].core.set(now, &key, value) {
            Ok(_) => {
                self.nodes[i].next_key += 1;
                self.attempts.insert((now + p.every, i));
            }
            Err(StateError::Backpressure(b)) => {
                self.attempts.insert((now + b.retry_after.max(p.every), i));
            }
            Err(e) => panic!("seed {}: {e}", self.config.seed),
        }
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        let now = self.now;
        let mut heard = Vec::new();
        while let Some(event) = self.nodes[i].core.poll_event() {
            match event {
                StateEvent::HeartbeatAdvanced { node, .. }
                | StateEvent::NewNode { node, .. }
                | StateEvent::NodeRestarted { node, .. } => heard.push(node),
                StateEvent::NodeForgotten { node } => {
                    self.nodes[i].fd.remove(&node);
                }
                _ => {}
            }
        }
        if self.config.failure_timeout.is_some() {
            for node in heard {
                let was_dead = self.nodes[i]
                    .fd
                    .insert(node, (now, false))
                    .is_some_and(|(_, dead)| dead);
                if was_dead {
                    self.nodes[i].core.handle_peer_live(now, node);
                }
            }
        }
        while let Some(t) = self.nodes[i].core.poll_transmit() {
            let len = t.message.encoded_len_bound() + ENVELOPE_OVERHEAD;
            assert!(
                len <= self.config.core.max_envelope_len,
                "seed {}: oversized {len}",
                self.config.seed
            );
            self.datagrams += 1;
            self.bytes += (len + 36) as u64;
            let Some(&to) = self.index.get(&t.to) else {
                self.lost += 1;
                continue;
            };
            if let Some(groups) = &self.groups
                && groups[to] != groups[i]
            {
                self.partitioned += 1;
                continue;
            }
            if self.config.loss > 0.0 && self.rng.random_bool(self.config.loss) {
                self.lost += 1;
                continue;
            }
            let (lo, hi) = self.config.latency;
            let latency = self.rng.random_range(lo..=hi);
            self.seq += 1;
            self.in_flight.insert(
                (now + latency, self.seq),
                InFlight {
                    to,
                    from: self.addrs[i],
                    sender: self.nodes[i].id,
                    message: t.message,
                },
            );
        }
        self.rearm(i);
    }

    fn run_failure_detectors(&mut self) {
        let Some(timeout) = self.config.failure_timeout else {
            return;
        };
        let now = self.now;
        for i in 0..self.nodes.len() {
            let due: Vec<NodeId> = self.nodes[i]
                .fd
                .iter()
                .filter(|(_, (at, dead))| !dead && now.saturating_duration_since(*at) > timeout)
                .map(|(n, _)| *n)
                .collect();
            for node in due {
                if let Some(entry) = self.nodes[i].fd.get_mut(&node) {
                    entry.1 = true;
                }
                self.nodes[i].core.handle_peer_dead(now, node);
            }
        }
    }

    fn sample(&mut self) {
        let at = self.elapsed();
        let producers: Vec<usize> = self.samples.keys().copied().collect();
        for p in producers {
            let id = self.nodes[p].id;
            let own = self.nodes[p]
                .core
                .digest_entry(&id)
                .map_or(0, |e| e.max_version);
            let mut lowest = own;
            let mut lag_sum = 0u64;
            for (j, n) in self.nodes.iter().enumerate() {
                if j == p {
                    continue;
                }
                let held = n.core.digest_entry(&id).map_or(0, |e| e.max_version);
                lowest = lowest.min(held);
                lag_sum += own - held.min(own);
            }
            let sample = Sample {
                at,
                rate: self.nodes[p].core.flow().rate(),
                admitted: self.nodes[p].core.flow().stats().admitted,
                backlog: own - lowest,
                mean_lag: lag_sum as f64 / (self.nodes.len() - 1).max(1) as f64,
            };
            self.samples.entry(p).or_default().push(sample);
        }
    }

    /// Whether node `i` holds every node's newest generation and version, and no other node.
    fn node_converged(&self, i: usize) -> bool {
        let core = &self.nodes[i].core;
        if core.node_count() != self.nodes.len() {
            return false;
        }
        self.nodes.iter().all(|n| {
            let truth = n.core.digest_entry(&n.id);
            let held = core.digest_entry(&n.id);
            match (truth, held) {
                (Some(t), Some(h)) => {
                    t.generation == h.generation && t.max_version == h.max_version
                }
                _ => false,
            }
        })
    }

    /// Whether every node converged. Nodes seen converged are not checked again unless
    /// [`Sim::reset_convergence`] is called (versions only grow, so a converged node stays
    /// converged while nobody writes).
    pub(crate) fn converged(&mut self) -> bool {
        let pending: Vec<usize> = self.unconverged.iter().copied().collect();
        for i in pending {
            if self.node_converged(i) {
                self.unconverged.remove(&i);
            } else {
                return false;
            }
        }
        true
    }

    /// Forgets which nodes were seen converged (after new writes).
    pub(crate) fn reset_convergence(&mut self) {
        self.unconverged = (0..self.nodes.len()).collect();
    }

    /// Number of nodes seen converged so far.
    pub(crate) fn converged_count(&self) -> usize {
        self.nodes.len() - self.unconverged.len()
    }

    /// Sum of a counter over all nodes.
    pub(crate) fn total(&self, f: impl Fn(&crate::reconcile::ReconcileStats) -> u64) -> u64 {
        self.nodes.iter().map(|n| f(&n.core.stats())).sum()
    }

    /// Every collection of every core within its bound, and nothing left queued.
    pub(crate) fn bounds_ok(&self) -> bool {
        self.nodes.iter().all(|n| {
            let o = n.core.occupancy();
            let c = n.core.config();
            o.nodes <= c.max_nodes
                && o.forgotten <= c.max_nodes
                && o.rumors <= c.max_nodes
                && o.largest_owner <= 2 * c.max_keys_per_owner
                && o.outstanding <= c.max_outstanding_exchanges
                && o.queued_transmits + o.queued_events == 0
        })
    }

    pub(crate) fn report(&self, name: &str) -> String {
        let n = self.nodes.len() as f64;
        let secs = self.elapsed().as_secs_f64().max(1e-9);
        format!(
            "{name} (seed {}): {} nodes, t = {:?}, converged {}, datagrams {} ({:.1}/node/s), \
             {:.0} bytes/node/s, lost {}, partitioned {}, resets {}, entries sent {}, \
             left out {}, steps {}",
            self.config.seed,
            self.nodes.len(),
            self.elapsed(),
            self.converged_count(),
            self.datagrams,
            self.datagrams as f64 / n / secs,
            self.bytes as f64 / n / secs,
            self.lost,
            self.partitioned,
            self.total(|s| s.resets_sent),
            self.total(|s| s.entries_sent),
            self.total(|s| s.entries_left_out),
            self.steps,
        )
    }
}
