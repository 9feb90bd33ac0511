//! A deterministic in-memory network of [`Cyclon`] cores on a virtual clock.
//!
//! Every datagram gets a latency drawn uniformly from `latency` and is lost with probability
//! `loss`. The driver keeps every node's armed timer in one ordered set and always advances to
//! the earliest of the next datagram arrival, the next timer and the next failure-detector
//! report, so a 1,000-node run costs a few events per node and period. Crashed nodes drop what
//! reaches them. One seed fixes the whole run; failing assertions print it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::id::NodeId;
use crate::membership::wire_bound::ENVELOPE_OVERHEAD;
use crate::membership::{Cyclon, CyclonConfig, CyclonMessage, CyclonStats};

/// How the nodes learn of each other before the first period.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bootstrap {
    /// Every node knows the addresses (not the ids) of the first `k` nodes, as a deployment
    /// with a fixed seed list; the seeds know only each other.
    Seeds(usize),
    /// Node `i > 0` knows the address of one node drawn uniformly from `0..i`.
    RandomTree,
}

/// Parameters of one simulated run.
#[derive(Clone, Debug)]
pub(crate) struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    pub loss: f64,
    pub latency: (Duration, Duration),
    pub bootstrap: Bootstrap,
    pub core: CyclonConfig,
}

impl SimConfig {
    pub(crate) fn new(nodes: usize, seed: u64, bootstrap: Bootstrap) -> Self {
        SimConfig {
            nodes,
            seed,
            loss: 0.0,
            latency: (Duration::from_millis(1), Duration::from_millis(20)),
            bootstrap,
            core: CyclonConfig::default(),
        }
    }

    /// Replaces the seed with `GOSSIP_SIM_SEED` if it is set, to rerun a printed failure.
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

struct InFlight {
    to: usize,
    from: SocketAddr,
    sender: NodeId,
    message: CyclonMessage,
}

/// Degree and connectivity of the overlay among live nodes.
#[derive(Clone, Debug)]
pub(crate) struct Overlay {
    pub live: usize,
    pub in_degree_mean: f64,
    pub in_degree_stddev: f64,
    pub in_degree_min: usize,
    pub in_degree_max: usize,
    pub view_min: usize,
    pub view_mean: f64,
    /// Live nodes no live view points at.
    pub isolated: usize,
    /// Entries of live views that point at crashed nodes.
    pub dead_entries: usize,
    /// Live nodes reachable from the first live node following view entries.
    pub reachable: usize,
    /// Live nodes from which the first live node is reachable.
    pub co_reachable: usize,
}

impl Overlay {
    /// Every live node reaches every other along view entries (so the overlay is one
    /// strongly connected component, and a fortiori connected).
    pub(crate) fn strongly_connected(&self) -> bool {
        self.reachable == self.live && self.co_reachable == self.live
    }
}

pub(crate) struct Sim {
    pub config: SimConfig,
    epoch: Instant,
    now: Instant,
    cores: Vec<Option<Cyclon<StdRng>>>,
    ids: Vec<NodeId>,
    addrs: Vec<SocketAddr>,
    by_addr: BTreeMap<SocketAddr, usize>,
    by_id: BTreeMap<NodeId, usize>,
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    /// `(deadline, node)` of every armed timer; `armed[i]` is node `i`'s entry.
    timers: BTreeSet<(Instant, usize)>,
    armed: Vec<Option<Instant>>,
    /// Failure-detector reports `(at, seq) -> (told node, dead node)`.
    reports: BTreeMap<(Instant, u64), (usize, NodeId)>,
    /// The failure detector's delay, once enabled by [`Sim::crash_random`].
    detection: Option<(Duration, Duration)>,
    /// `(node, crashed node)` pairs already scheduled for a report.
    reported: BTreeSet<(usize, NodeId)>,
    /// Next sweep of the views by the failure detector.
    next_sweep: Option<Instant>,
    seq: u64,
    rng: StdRng,
    pub datagrams: u64,
    pub lost: u64,
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
                SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 7000))
            })
            .collect();
        let ids: Vec<NodeId> = (0..n).map(|_| NodeId::random(&mut rng)).collect();
        let mut cores: Vec<Option<Cyclon<StdRng>>> = (0..n)
            .map(|i| {
                let core_rng = StdRng::seed_from_u64(rng.random());
                Some(
                    Cyclon::new(ids[i], addrs[i], config.core.clone(), core_rng, epoch)
                        .expect("valid config"),
                )
            })
            .collect();
        for (i, core) in cores.iter_mut().enumerate() {
            let core = core.as_mut().expect("all alive");
            match config.bootstrap {
                Bootstrap::Seeds(k) => {
                    for seed in addrs.iter().take(k) {
                        core.add_seed(epoch, None, *seed);
                    }
                }
                Bootstrap::RandomTree => {
                    if i > 0 {
                        core.add_seed(epoch, None, addrs[rng.random_range(0..i)]);
                    }
                }
            }
            while core.poll_event().is_some() {}
        }
        let mut sim = Sim {
            epoch,
            now: epoch,
            by_addr: addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect(),
            by_id: ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            cores,
            ids,
            addrs,
            in_flight: BTreeMap::new(),
            timers: BTreeSet::new(),
            armed: vec![None; n],
            reports: BTreeMap::new(),
            detection: None,
            reported: BTreeSet::new(),
            next_sweep: None,
            seq: 0,
            rng,
            datagrams: 0,
            lost: 0,
            steps: 0,
            config,
        };
        for i in 0..n {
            sim.rearm(i);
        }
        sim
    }

    /// Virtual time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn rearm(&mut self, i: usize) {
        if let Some(old) = self.armed[i].take() {
            self.timers.remove(&(old, i));
        }
        if let Some(t) = self.cores[i].as_ref().and_then(|c| c.poll_timeout()) {
            self.timers.insert((t, i));
            self.armed[i] = Some(t);
        }
    }

    /// Runs until `elapsed() == until`, failing (with the seed) past `max_steps` events.
    pub(crate) fn run_until(&mut self, until: Duration, max_steps: u64) {
        let until = self.epoch + until;
        loop {
            let datagram = self.in_flight.keys().next().map(|k| k.0);
            let timer = self.timers.first().map(|k| k.0);
            let report = self.reports.keys().next().map(|k| k.0);
            let sweep = self.next_sweep;
            let Some(next) = [datagram, timer, report, sweep].into_iter().flatten().min() else {
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
            if sweep == Some(next) {
                self.detect();
                self.next_sweep = Some(now + Duration::from_secs(1));
            } else if datagram == Some(next) {
                let Some((_, d)) = self.in_flight.pop_first() else {
                    continue;
                };
                let Some(core) = self.cores[d.to].as_mut() else {
                    continue;
                };
                match d.message {
                    CyclonMessage::Shuffle(s) => core.handle_shuffle(now, d.from, d.sender, s),
                    CyclonMessage::Reply(r) => core.handle_shuffle_reply(now, d.from, d.sender, r),
                }
                self.flush(d.to);
            } else if report == Some(next) {
                let Some((_, (to, dead))) = self.reports.pop_first() else {
                    continue;
                };
                if let Some(core) = self.cores[to].as_mut() {
                    core.handle_peer_dead(now, dead);
                    self.flush(to);
                }
            } else {
                let Some((_, i)) = self.timers.pop_first() else {
                    continue;
                };
                self.armed[i] = None;
                if let Some(core) = self.cores[i].as_mut() {
                    core.handle_timeout(now);
                    self.flush(i);
                }
            }
        }
    }

    /// Drains node `i`'s outputs into the network and re-arms its timer.
    fn flush(&mut self, i: usize) {
        let now = self.now;
        let Some(core) = self.cores[i].as_mut() else {
            return;
        };
        while core.poll_event().is_some() {}
        let mut out = VecDeque::new();
        while let Some(t) = core.poll_transmit() {
            out.push_back(t);
        }
        let max = self.config.core.max_envelope_len;
        for t in out {
            let len = ENVELOPE_OVERHEAD + t.message.encoded_len_bound();
            assert!(len <= max, "seed {}: {len}-byte transmit", self.config.seed);
            self.datagrams += 1;
            if self.config.loss > 0.0 && self.rng.random_bool(self.config.loss) {
                self.lost += 1;
                continue;
            }
            let Some(&to) = self.by_addr.get(&t.to) else {
                continue;
            };
            let (lo, hi) = self.config.latency;
            let latency = self.rng.random_range(lo..=hi);
            let seq = self.next_seq();
            self.in_flight.insert(
                (now + latency, seq),
                InFlight {
                    to,
                    from: self.addrs[i],
                    sender: self.ids[i],
                    message: t.message,
                },
            );
        }
        self.rearm(i);
    }

    /// Crashes `count` live nodes drawn uniformly at random and returns them.
    ///
    /// With `detection`, every survivor runs a failure detector that monitors the nodes in its
    /// view (the peers it exchanges with): a crashed node seen in the view is reported with
    /// [`Cyclon::handle_peer_dead`] after a delay drawn uniformly from `detection`, once per
    /// survivor. The views are looked at every second. Without it nobody is told.
    pub(crate) fn crash_random(
        &mut self,
        count: usize,
        detection: Option<(Duration, Duration)>,
    ) -> Vec<usize> {
        let mut live: Vec<usize> = (0..self.cores.len())
            .filter(|i| self.cores[*i].is_some())
            .collect();
        let take = count.min(live.len());
        for k in 0..take {
            let j = self.rng.random_range(k..live.len());
            live.swap(k, j);
        }
        let mut crashed: Vec<usize> = live[..take].to_vec();
        crashed.sort_unstable();
        for &i in &crashed {
            self.cores[i] = None;
            if let Some(t) = self.armed[i].take() {
                self.timers.remove(&(t, i));
            }
        }
        if detection.is_some() {
            self.detection = detection;
            self.detect();
            self.next_sweep = Some(self.now + Duration::from_secs(1));
        }
        crashed
    }

    /// Schedules a report for every crashed node in a live view not yet reported there.
    fn detect(&mut self) {
        let Some((lo, hi)) = self.detection else {
            return;
        };
        for i in 0..self.cores.len() {
            let Some(core) = self.cores[i].as_ref() else {
                continue;
            };
            let dead: Vec<NodeId> = core
                .view()
                .map(|d| d.node)
                .filter(|n| self.by_id.get(n).is_some_and(|j| self.cores[*j].is_none()))
                .filter(|n| !self.reported.contains(&(i, *n)))
                .collect();
            for node in dead {
                self.reported.insert((i, node));
                let at = self.now + self.rng.random_range(lo..=hi);
                let seq = self.next_seq();
                self.reports.insert((at, seq), (i, node));
            }
        }
    }

    /// Failure-detector reports delivered or scheduled so far.
    pub(crate) fn reports(&self) -> usize {
        self.reported.len()
    }

    /// Degrees, dead entries and connectivity of the overlay among live nodes.
    pub(crate) fn overlay(&self) -> Overlay {
        let n = self.cores.len();
        let alive = |j: usize| self.cores[j].is_some();
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut back: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut in_degree = vec![0usize; n];
        let mut dead_entries = 0;
        let mut view_sizes = Vec::new();
        for (i, core) in self.cores.iter().enumerate() {
            let Some(core) = core else { continue };
            view_sizes.push(core.view().count());
            for d in core.view() {
                let j = self.by_id[&d.node];
                assert_eq!(
                    self.addrs[j], d.addr,
                    "seed {}: wrong address",
                    self.config.seed
                );
                if alive(j) {
                    in_degree[j] += 1;
                    out[i].push(j);
                    back[j].push(i);
                } else {
                    dead_entries += 1;
                }
            }
        }
        let live: Vec<usize> = (0..n).filter(|j| alive(*j)).collect();
        let degrees: Vec<f64> = live.iter().map(|j| in_degree[*j] as f64).collect();
        let count = live.len() as f64;
        let mean = degrees.iter().sum::<f64>() / count;
        let var = degrees.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / count;
        let reach = |adj: &Vec<Vec<usize>>| -> usize {
            let Some(&start) = live.first() else { return 0 };
            let mut seen = vec![false; n];
            seen[start] = true;
            let mut stack = vec![start];
            let mut reached = 1;
            while let Some(v) = stack.pop() {
                for &w in &adj[v] {
                    if !seen[w] {
                        seen[w] = true;
                        reached += 1;
                        stack.push(w);
                    }
                }
            }
            reached
        };
        Overlay {
            live: live.len(),
            in_degree_mean: mean,
            in_degree_stddev: var.sqrt(),
            in_degree_min: live.iter().map(|j| in_degree[*j]).min().unwrap_or(0),
            in_degree_max: live.iter().map(|j| in_degree[*j]).max().unwrap_or(0),
            view_min: view_sizes.iter().copied().min().unwrap_or(0),
            view_mean: view_sizes.iter().sum::<usize>() as f64 / count,
            isolated: live.iter().filter(|j| in_degree[**j] == 0).count(),
            dead_entries,
            reachable: reach(&out),
            co_reachable: reach(&back),
        }
    }

    /// Sum of a counter over live nodes.
    pub(crate) fn total(&self, f: impl Fn(&CyclonStats) -> u64) -> u64 {
        self.cores.iter().flatten().map(|c| f(&c.stats())).sum()
    }

    /// Every live core is within its bounds and has drained its outputs.
    pub(crate) fn occupancy_ok(&self) -> bool {
        self.cores.iter().flatten().all(|c| {
            let o = c.occupancy();
            let k = c.config();
            o.view <= k.view_size
                && o.seeds <= k.max_seeds
                && o.pending <= k.max_pending
                && o.dead <= k.max_dead
                && o.queued_transmits + o.queued_events == 0
        })
    }

    /// The views of all nodes (`None` for crashed ones), for comparing runs.
    pub(crate) fn views(&self) -> Vec<Option<Vec<(NodeId, u32)>>> {
        self.cores
            .iter()
            .map(|c| {
                c.as_ref()
                    .map(|c| c.view().map(|d| (d.node, d.age)).collect())
            })
            .collect()
    }
}
