//! A tiny deterministic in-memory network of [`Dissemination`] cores on a virtual clock.
//!
//! Every datagram gets a latency drawn uniformly from `latency` and is lost with probability
//! `loss`; `Destination::Random` is resolved with [`PeerTable::select`] over all other nodes,
//! `Destination::RandomGroup` once per group. The driver always advances to the earliest of
//! the next datagram arrival, the next scheduled broadcast and the earliest `poll_timeout`.
//! One seed fixes the whole run; a failing scenario prints it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::dissemination::{
    Destination, Dissemination, DisseminationConfig, DisseminationStats, Event,
};
use crate::id::{MessageId, NodeId};
use crate::message::{Envelope, Message, PacketType};
use crate::peers::PeerTable;

/// Parameters of one simulated run.
#[derive(Clone, Debug)]
pub(crate) struct SimConfig {
    pub nodes: usize,
    pub loss: f64,
    pub latency: (Duration, Duration),
    pub seed: u64,
    pub core: DisseminationConfig,
}

impl SimConfig {
    pub(crate) fn new(nodes: usize, loss: f64, seed: u64) -> Self {
        SimConfig {
            nodes,
            loss,
            latency: (Duration::from_millis(1), Duration::from_millis(20)),
            seed,
            core: DisseminationConfig::default(),
        }
    }
}

struct SimNode {
    core: Dissemination<StdRng>,
    id: NodeId,
    peers: PeerTable,
    /// The last `RandomGroup` token seen from this node and the peers it resolved to.
    last_group: Option<(u64, Vec<SocketAddr>)>,
}

struct InFlight {
    to: usize,
    from: SocketAddr,
    sender: NodeId,
    message: Message,
}

/// One delivery as the application saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeliveryRecord {
    pub node: usize,
    pub id: MessageId,
    pub hop: u16,
    pub at: Duration,
}

pub(crate) struct Sim {
    pub config: SimConfig,
    epoch: Instant,
    now: Instant,
    nodes: Vec<SimNode>,
    addrs: Vec<SocketAddr>,
    index: BTreeMap<SocketAddr, usize>,
    /// Datagrams in flight by (arrival, sequence number).
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    /// Broadcasts to start by (time, sequence number) → node.
    scheduled: BTreeMap<(Instant, u64), usize>,
    seq: u64,
    rng: StdRng,
    pub deliveries: Vec<DeliveryRecord>,
    pub delivery_count: BTreeMap<(usize, MessageId), u32>,
    /// Broadcast id → (origin node, start time).
    pub broadcasts: BTreeMap<MessageId, (usize, Duration)>,
    pub datagrams_sent: BTreeMap<PacketType, u64>,
    pub datagrams_lost: u64,
    /// `PushMessage` and `PullResponse` datagrams that arrived (payload copies).
    pub payload_copies_received: u64,
    pub steps: u64,
}

impl Sim {
    pub(crate) fn new(config: SimConfig) -> Self {
        let epoch = crate::test_util::epoch();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let addrs: Vec<SocketAddr> = (0..config.nodes)
            .map(|i| {
                let i = u16::try_from(i).expect("at most 65,535 nodes");
                SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000))
            })
            .collect();
        let index = addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        let nodes = (0..config.nodes)
            .map(|i| {
                let id = NodeId::random(&mut rng);
                let core_rng = StdRng::seed_from_u64(rng.random());
                let core = Dissemination::new(id, config.core.clone(), core_rng, epoch)
                    .expect("valid config");
                let mut peers = PeerTable::new(config.nodes);
                for (j, addr) in addrs.iter().enumerate() {
                    if j != i {
                        peers.insert(epoch, *addr, None);
                    }
                }
                SimNode {
                    core,
                    id,
                    peers,
                    last_group: None,
                }
            })
            .collect();
        Sim {
            config,
            epoch,
            now: epoch,
            nodes,
            addrs,
            index,
            in_flight: BTreeMap::new(),
            scheduled: BTreeMap::new(),
            seq: 0,
            rng,
            deliveries: Vec::new(),
            delivery_count: BTreeMap::new(),
            broadcasts: BTreeMap::new(),
            datagrams_sent: BTreeMap::new(),
            datagrams_lost: 0,
            payload_copies_received: 0,
            steps: 0,
        }
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Schedules `count` broadcasts from random nodes, one every `every` starting at `start`.
    pub(crate) fn schedule_broadcasts(&mut self, count: usize, start: Duration, every: Duration) {
        for k in 0..count {
            let node = self.rng.random_range(0..self.nodes.len());
            let at = self.epoch + start + every * u32::try_from(k).expect("few broadcasts");
            let seq = self.next_seq();
            self.scheduled.insert((at, seq), node);
        }
    }

    /// Runs until `elapsed() == until`, failing if more than `max_steps` steps are needed.
    pub(crate) fn run_until(&mut self, until: Duration, max_steps: u64) {
        let until = self.epoch + until;
        loop {
            let next_datagram = self.in_flight.keys().next().map(|(t, _)| *t);
            let next_broadcast = self.scheduled.keys().next().map(|(t, _)| *t);
            let next_timer = self
                .nodes
                .iter()
                .filter_map(|n| n.core.poll_timeout())
                .min();
            let Some(next) = [next_datagram, next_broadcast, next_timer]
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
                let node = entry.remove();
                let mut payload = vec![0u8; 64];
                self.rng.fill(&mut payload[..]);
                let id = self.nodes[node]
                    .core
                    .broadcast(now, Bytes::from(payload))
                    .expect("payload fits");
                self.broadcasts.insert(id, (node, now - self.epoch));
                self.flush(node);
            }
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let d = entry.remove();
                if matches!(
                    d.message,
                    Message::PushMessage(_) | Message::PullResponse(_)
                ) {
                    self.payload_copies_received += 1;
                }
                self.nodes[d.to]
                    .core
                    .handle_message(now, d.from, d.sender, d.message);
                self.flush(d.to);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].core.poll_timeout().is_some_and(|t| t <= now) {
                    self.nodes[i].core.handle_timeout(now);
                    self.flush(i);
                }
            }
        }
    }

    /// Drains node `i`'s outputs: sends its transmits through the lossy network and records
    /// its deliveries.
    fn flush(&mut self, i: usize) {
        let now = self.now;
        while let Some(event) = self.nodes[i].core.poll_event() {
            match event {
                Event::Delivered(d) => {
                    *self.delivery_count.entry((i, d.id)).or_default() += 1;
                    self.deliveries.push(DeliveryRecord {
                        node: i,
                        id: d.id,
                        hop: d.hop,
                        at: now - self.epoch,
                    });
                }
            }
        }
        while let Some(transmit) = self.nodes[i].core.poll_transmit() {
            let envelope = Envelope {
                sender: self.nodes[i].id,
                epoch: u64::MAX,
                counter: u64::MAX,
                message: transmit.message,
            };
            assert!(
                envelope.encoded_len_bound() <= self.config.core.max_envelope_len,
                "oversized transmit {:?}",
                envelope.message.packet_type()
            );
            let node = &mut self.nodes[i];
            let targets = match transmit.destination {
                Destination::Peer(addr) => vec![addr],
                Destination::Random { count, exclude } => {
                    node.peers.select(&mut self.rng, count, &exclude)
                }
                Destination::RandomGroup {
                    group,
                    count,
                    exclude,
                } => match &node.last_group {
                    Some((g, peers)) if *g == group => peers.clone(),
                    _ => {
                        let peers = node.peers.select(&mut self.rng, count, &exclude);
                        node.last_group = Some((group, peers.clone()));
                        peers
                    }
                },
            };
            let kind = envelope.message.packet_type();
            for target in targets {
                *self.datagrams_sent.entry(kind).or_default() += 1;
                if self.rng.random_bool(self.config.loss) {
                    self.datagrams_lost += 1;
                    continue;
                }
                let (lo, hi) = self.config.latency;
                let latency = self.rng.random_range(lo..=hi);
                let seq = self.next_seq();
                let to = self.index[&target];
                self.in_flight.insert(
                    (now + latency, seq),
                    InFlight {
                        to,
                        from: self.addrs[i],
                        sender: envelope.sender,
                        message: envelope.message.clone(),
                    },
                );
            }
        }
    }

    pub(crate) fn stats(&self, i: usize) -> DisseminationStats {
        self.nodes[i].core.stats()
    }

    pub(crate) fn occupancy_ok(&self) -> bool {
        self.nodes.iter().all(|n| {
            let o = n.core.occupancy();
            let c = n.core.config();
            o.cached <= c.cache_capacity.get()
                && o.seen <= c.seen_capacity
                && o.pending_acks <= c.cache_capacity.get()
                && o.pending_pulls <= c.pending_pull_capacity
                && o.queued_transmits + o.queued_events == 0
        })
    }

    /// Sum of a counter over all nodes.
    pub(crate) fn total(&self, f: impl Fn(&DisseminationStats) -> u64) -> u64 {
        self.nodes.iter().map(|n| f(&n.core.stats())).sum()
    }

    /// Pairs (node, broadcast) delivered exactly once, and any pair delivered more than once.
    pub(crate) fn exactly_once(&self) -> (usize, Vec<(usize, MessageId, u32)>) {
        let mut once = 0;
        let mut more = Vec::new();
        for ((node, id), count) in &self.delivery_count {
            assert!(self.broadcasts.contains_key(id), "unknown id delivered");
            if *count == 1 {
                once += 1;
            } else {
                more.push((*node, *id, *count));
            }
        }
        (once, more)
    }

    /// Time from the first broadcast's start to the last delivery of any broadcast.
    pub(crate) fn last_delivery(&self) -> Duration {
        self.deliveries
            .iter()
            .map(|d| d.at)
            .max()
            .unwrap_or_default()
    }

    /// Per broadcast, the time from its start to its last delivery; the maximum.
    pub(crate) fn max_completion(&self) -> Duration {
        let mut last: BTreeMap<MessageId, Duration> = BTreeMap::new();
        for d in &self.deliveries {
            let e = last.entry(d.id).or_default();
            *e = (*e).max(d.at);
        }
        last.iter()
            .map(|(id, at)| at.saturating_sub(self.broadcasts[id].1))
            .max()
            .unwrap_or_default()
    }

    /// A one-paragraph report of the run's numbers.
    pub(crate) fn report(&self, name: &str) -> String {
        let n = self.nodes.len() as f64;
        let b = self.broadcasts.len() as f64;
        let sent: u64 = self.datagrams_sent.values().sum();
        let rmr = self.payload_copies_received as f64 / (b * (n - 1.0)) - 1.0;
        let ldh = self.deliveries.iter().map(|d| d.hop).max().unwrap_or(0);
        let by_type: Vec<String> = self
            .datagrams_sent
            .iter()
            .map(|(t, c)| format!("{t}={:.1}", *c as f64 / b))
            .collect();
        format!(
            "{name} (seed {}): {} nodes, loss {:.0}%, {} broadcasts: datagrams/broadcast {:.1} \
             [{}], lost {}, RMR {:.2}, LDH {ldh}, pulls_recovered {}, ack_timeouts {}, \
             anti_entropy_rounds {}, max completion {:?}, last delivery at {:?}, steps {}",
            self.config.seed,
            self.nodes.len(),
            self.config.loss * 100.0,
            self.broadcasts.len(),
            sent as f64 / b,
            by_type.join(" "),
            self.datagrams_lost,
            rmr,
            self.total(|s| s.pulls_recovered),
            self.total(|s| s.ack_timeouts),
            self.total(|s| s.anti_entropy_rounds),
            self.max_completion(),
            self.last_delivery(),
            self.steps,
        )
    }
}
