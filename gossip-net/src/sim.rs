//! An in-process simulated network: [`SimNetwork`] hands out [`SimSocket`]s that a transport
//! uses in place of UDP sockets, so many real nodes can run in one process on tokio's paused
//! clock.
//!
//! Each datagram sent is, in this order: counted as sent; dropped if its sender or receiver is
//! crashed, if they sit in different partition groups, or with the link's loss probability;
//! otherwise delivered after a latency drawn uniformly from `latency_min..=latency_max`. One
//! seeded generator makes every loss and latency choice, and deliveries due at the same instant
//! leave in the order they were sent, so a run is reproducible from its seed (given the same
//! order of sends, which a single-threaded runtime provides).
//!
//! Delivery is driven by one task (spawned on first use with `tokio::spawn`) that sleeps until
//! the earliest due datagram; under a paused clock (`tokio::time::pause`) time jumps straight
//! there when every task is idle. Each socket's inbound queue is bounded: a full queue drops
//! the datagram and counts it, like a kernel receive buffer.
//!
//! Datagrams are opaque bytes here; the packet type for the counters is read from label byte
//! 1, which travels in the clear.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gossip_core::PacketType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// Properties of every link of a [`SimNetwork`].
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Smallest one-way latency.
    pub latency_min: Duration,
    /// Largest one-way latency (at least `latency_min`).
    pub latency_max: Duration,
    /// Probability in `0.0..=1.0` that a datagram is lost.
    pub loss: f64,
    /// Seed of the generator behind every loss and latency choice.
    pub seed: u64,
    /// Datagrams each socket buffers before it drops (a kernel receive buffer): 4,096.
    pub inbound_capacity: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency_min: Duration::from_millis(10),
            latency_max: Duration::from_millis(50),
            loss: 0.0,
            seed: 0,
            inbound_capacity: 4_096,
        }
    }
}

/// Traffic of one simulated address, by packet type (label byte 1; unknown types are counted
/// under `other`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Datagrams sent, by packet type.
    pub sent: BTreeMap<PacketTypeKey, u64>,
    /// Bytes sent, by packet type.
    pub sent_bytes: BTreeMap<PacketTypeKey, u64>,
    /// Datagrams delivered to this address, by packet type.
    pub received: BTreeMap<PacketTypeKey, u64>,
    /// Bytes delivered to this address, by packet type.
    pub received_bytes: BTreeMap<PacketTypeKey, u64>,
    /// Datagrams to this address dropped because its inbound queue was full.
    pub inbound_full: u64,
}

impl SimCounters {
    /// Datagrams sent, all types.
    pub fn datagrams_sent(&self) -> u64 {
        self.sent.values().sum()
    }

    /// Bytes sent, all types.
    pub fn bytes_sent(&self) -> u64 {
        self.sent_bytes.values().sum()
    }

    /// Datagrams received, all types.
    pub fn datagrams_received(&self) -> u64 {
        self.received.values().sum()
    }

    /// Bytes received, all types.
    pub fn bytes_received(&self) -> u64 {
        self.received_bytes.values().sum()
    }
}

/// A packet type as read from a label, or `Other` for a byte no type uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PacketTypeKey {
    /// A known packet type.
    Known(PacketType),
    /// Datagrams too short for a label or with an unknown type byte.
    Other,
}

impl PacketTypeKey {
    fn of(datagram: &[u8]) -> Self {
        datagram
            .get(1)
            .and_then(|b| PacketType::from_byte(*b))
            .map_or(PacketTypeKey::Other, PacketTypeKey::Known)
    }
}

/// Network-wide drop counters of a [`SimNetwork`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimDrops {
    /// Lost to the loss probability.
    pub loss: u64,
    /// Sender and receiver in different partition groups.
    pub partitioned: u64,
    /// Sender or receiver crashed.
    pub crashed: u64,
    /// No socket bound at the destination.
    pub unreachable: u64,
    /// Destination's inbound queue full.
    pub inbound_full: u64,
}

/// Why [`SimNetwork::bind`] failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimError {
    /// Another live socket holds the address.
    #[error("simulated address {0} is in use")]
    AddrInUse(SocketAddr),
    /// Port 0 asks for a free port; the simulated network has no more under this IP.
    #[error("no free simulated port on {0}")]
    NoFreePort(std::net::IpAddr),
}

struct InFlight {
    due: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    datagram: Bytes,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

struct Inner {
    config: SimConfig,
    rng: StdRng,
    sockets: BTreeMap<SocketAddr, mpsc::Sender<(BytesMut, SocketAddr)>>,
    crashed: BTreeSet<SocketAddr>,
    /// Partition group per address; addresses not listed are in group 0.
    groups: BTreeMap<SocketAddr, u32>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    counters: BTreeMap<SocketAddr, SimCounters>,
    drops: SimDrops,
    driver_started: bool,
    next_port: u16,
}

/// The simulated network. Cheap to clone; clones share the network.
#[derive(Clone)]
pub struct SimNetwork {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("SimNetwork")
            .field("config", &inner.config)
            .field("sockets", &inner.sockets.len())
            .field("in_flight", &inner.in_flight.len())
            .finish()
    }
}

impl SimNetwork {
    /// A network whose links all have `config`'s latency and loss.
    pub fn new(config: SimConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        SimNetwork {
            inner: Arc::new(Mutex::new(Inner {
                config,
                rng,
                sockets: BTreeMap::new(),
                crashed: BTreeSet::new(),
                groups: BTreeMap::new(),
                in_flight: BinaryHeap::new(),
                seq: 0,
                counters: BTreeMap::new(),
                drops: SimDrops::default(),
                driver_started: false,
                next_port: 10_000,
            })),
            wake: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock poisons it; the data is still consistent (every
        // update is a single field write), so keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds a socket at `addr` (port 0 picks a free port). A crashed address can be bound
    /// again: that is a restart.
    ///
    /// # Errors
    /// [`SimError::AddrInUse`] if a live socket holds `addr`; [`SimError::NoFreePort`] when
    /// port 0 finds none.
    pub fn bind(&self, addr: SocketAddr) -> Result<SimSocket, SimError> {
        let mut inner = self.lock();
        let addr = if addr.port() == 0 {
            let mut candidate = None;
            for _ in 0..u16::MAX {
                let port = inner.next_port;
                inner.next_port = inner.next_port.checked_add(1).unwrap_or(1_024);
                let a = SocketAddr::new(addr.ip(), port);
                if !inner.sockets.contains_key(&a) {
                    candidate = Some(a);
                    break;
                }
            }
            candidate.ok_or(SimError::NoFreePort(addr.ip()))?
        } else {
            addr
        };
        if let Some(tx) = inner.sockets.get(&addr)
            && !tx.is_closed()
            && !inner.crashed.contains(&addr)
        {
            return Err(SimError::AddrInUse(addr));
        }
        let (tx, rx) = mpsc::channel(inner.config.inbound_capacity.max(1));
        inner.sockets.insert(addr, tx);
        inner.crashed.remove(&addr);
        inner.counters.entry(addr).or_default();
        drop(inner);
        Ok(SimSocket {
            addr,
            network: self.clone(),
            inbound: rx,
        })
    }

    /// Crashes `addr`: from now on nothing it sends or is sent is delivered, datagrams in
    /// flight to it included. Its actors should be stopped by the caller; binding the address
    /// again restarts it.
    pub fn crash(&self, addr: SocketAddr) {
        let mut inner = self.lock();
        inner.crashed.insert(addr);
        inner.sockets.remove(&addr);
    }

    /// True if `addr` is crashed.
    pub fn is_crashed(&self, addr: &SocketAddr) -> bool {
        self.lock().crashed.contains(addr)
    }

    /// Splits the network: each inner list is a group that can only reach itself; addresses in
    /// no list form one more group together. Replaces any earlier partition.
    pub fn partition(&self, groups: &[Vec<SocketAddr>]) {
        let mut inner = self.lock();
        inner.groups.clear();
        for (i, group) in groups.iter().enumerate() {
            let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
            for addr in group {
                inner.groups.insert(*addr, id);
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&self) {
        self.lock().groups.clear();
    }

    /// Changes the loss probability of every link.
    pub fn set_loss(&self, loss: f64) {
        self.lock().config.loss = loss;
    }

    /// The counters of `addr` (all zero if it never sent or received).
    pub fn counters(&self, addr: &SocketAddr) -> SimCounters {
        self.lock().counters.get(addr).cloned().unwrap_or_default()
    }

    /// Network-wide drops by reason.
    pub fn drops(&self) -> SimDrops {
        self.lock().drops
    }

    /// Datagrams sent but not yet delivered or dropped.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    fn send(&self, from: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        let mut inner = self.lock();
        let kind = PacketTypeKey::of(datagram);
        let counters = inner.counters.entry(from).or_default();
        *counters.sent.entry(kind).or_default() += 1;
        *counters.sent_bytes.entry(kind).or_default() += datagram.len() as u64;

        if inner.crashed.contains(&from) || inner.crashed.contains(&to) {
            inner.drops.crashed += 1;
            return;
        }
        let group_of = |a: &SocketAddr| inner.groups.get(a).copied().unwrap_or(0);
        if group_of(&from) != group_of(&to) {
            inner.drops.partitioned += 1;
            return;
        }
        let loss = inner.config.loss.clamp(0.0, 1.0);
        if loss > 0.0 && inner.rng.random_bool(loss) {
            inner.drops.loss += 1;
            return;
        }
        let (min, max) = (
            inner.config.latency_min,
            inner.config.latency_max.max(inner.config.latency_min),
        );
        let latency = if max > min {
            let span = (max - min).as_micros() as u64;
            min + Duration::from_micros(inner.rng.random_range(0..=span))
        } else {
            min
        };
        let seq = inner.seq;
        inner.seq += 1;
        inner.in_flight.push(Reverse(InFlight {
            due: Instant::now() + latency,
            seq,
            from,
            to,
            datagram: Bytes::copy_from_slice(datagram),
        }));
        let start_driver = !inner.driver_started;
        inner.driver_started = true;
        drop(inner);
        if start_driver {
            let network = self.clone();
            tokio::spawn(async move { network.drive().await });
        }
        self.wake.notify_one();
    }

    /// Delivers due datagrams until no socket is left bound and nothing is in flight.
    async fn drive(self) {
        loop {
            let next_due = {
                let mut inner = self.lock();
                let now = Instant::now();
                while inner
                    .in_flight
                    .peek()
                    .is_some_and(|Reverse(d)| d.due <= now)
                {
                    if let Some(Reverse(datagram)) = inner.in_flight.pop() {
                        inner.deliver(datagram);
                    }
                }
                if inner.sockets.is_empty() && inner.in_flight.is_empty() {
                    inner.driver_started = false;
                    return;
                }
                inner.in_flight.peek().map(|Reverse(d)| d.due)
            };
            match next_due {
                Some(due) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }
}

impl Inner {
    fn deliver(&mut self, datagram: InFlight) {
        if self.crashed.contains(&datagram.to) || self.crashed.contains(&datagram.from) {
            self.drops.crashed += 1;
            return;
        }
        let Some(tx) = self.sockets.get(&datagram.to) else {
            self.drops.unreachable += 1;
            return;
        };
        let kind = PacketTypeKey::of(&datagram.datagram);
        let len = datagram.datagram.len() as u64;
        match tx.try_send((BytesMut::from(&datagram.datagram[..]), datagram.from)) {
            Ok(()) => {
                let counters = self.counters.entry(datagram.to).or_default();
                *counters.received.entry(kind).or_default() += 1;
                *counters.received_bytes.entry(kind).or_default() += len;
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.drops.inbound_full += 1;
                self.counters.entry(datagram.to).or_default().inbound_full += 1;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.drops.unreachable += 1;
                self.sockets.remove(&datagram.to);
            }
        }
    }
}

/// One bound address of a [`SimNetwork`]: send with [`SimSocket::try_send_to`], receive with
/// [`SimSocket::poll_recv`].
#[derive(Debug)]
pub struct SimSocket {
    addr: SocketAddr,
    network: SimNetwork,
    inbound: mpsc::Receiver<(BytesMut, SocketAddr)>,
}

impl SimSocket {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one datagram. Never blocks and never fails for the caller: losses are the
    /// network's and are counted in [`SimNetwork::drops`].
    ///
    /// # Errors
    /// None today; the `io::Result` matches `UdpSocket::try_send_to`.
    pub fn try_send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.network.send(self.addr, to, datagram);
        Ok(datagram.len())
    }

    /// Polls for the next datagram: `(bytes, source)`, or `None` once the socket is crashed.
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<(BytesMut, SocketAddr)>> {
        self.inbound.poll_recv(cx)
    }

    /// A handle for sending that does not own the receive queue.
    pub fn sender(&self) -> SimSender {
        SimSender {
            addr: self.addr,
            network: self.network.clone(),
        }
    }
}

/// The sending half of a [`SimSocket`].
#[derive(Clone, Debug)]
pub struct SimSender {
    addr: SocketAddr,
    network: SimNetwork,
}

impl SimSender {
    /// As [`SimSocket::try_send_to`].
    ///
    /// # Errors
    /// None today.
    pub fn try_send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.network.send(self.addr, to, datagram);
        Ok(datagram.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    async fn recv(socket: &mut SimSocket) -> Option<(BytesMut, SocketAddr)> {
        std::future::poll_fn(|cx| socket.poll_recv(cx)).await
    }

    #[tokio::test(start_paused = true)]
    async fn delivers_after_latency_within_bounds_and_counts_by_type() {
        let net = SimNetwork::new(SimConfig {
            latency_min: Duration::from_millis(10),
            latency_max: Duration::from_millis(50),
            ..SimConfig::default()
        });
        let a = net.bind(addr(1)).unwrap();
        let mut b = net.bind(addr(2)).unwrap();
        let start = Instant::now();
        let datagram = [1u8, PacketType::PushAck.to_byte(), 1, 0, 0, 0, 0, 0];
        a.try_send_to(&datagram, addr(2)).unwrap();
        let (bytes, from) = recv(&mut b).await.unwrap();
        let elapsed = start.elapsed();
        assert!((Duration::from_millis(10)..=Duration::from_millis(50)).contains(&elapsed));
        assert_eq!((&bytes[..], from), (&datagram[..], addr(1)));
        let key = PacketTypeKey::Known(PacketType::PushAck);
        assert_eq!(net.counters(&addr(1)).sent.get(&key), Some(&1));
        assert_eq!(net.counters(&addr(2)).received_bytes.get(&key), Some(&8));
    }

    #[tokio::test(start_paused = true)]
    async fn partitions_crashes_and_loss_drop_and_count() {
        let net = SimNetwork::new(SimConfig::default());
        let a = net.bind(addr(1)).unwrap();
        let mut b = net.bind(addr(2)).unwrap();
        net.partition(&[vec![addr(1)]]);
        a.try_send_to(b"x", addr(2)).unwrap();
        net.heal();
        net.crash(addr(2));
        a.try_send_to(b"y", addr(2)).unwrap();
        assert!(
            recv(&mut b).await.is_none(),
            "a crashed socket's queue is closed"
        );
        let mut b = net.bind(addr(2)).unwrap();
        net.set_loss(1.0);
        a.try_send_to(b"z", addr(2)).unwrap();
        net.set_loss(0.0);
        a.try_send_to(b"w", addr(2)).unwrap();
        let (bytes, _) = recv(&mut b).await.unwrap();
        assert_eq!(
            &bytes[..],
            b"w",
            "only the datagram after the restart and heal arrives"
        );
        let drops = net.drops();
        assert_eq!((drops.partitioned, drops.crashed, drops.loss), (1, 1, 1));
        assert!(matches!(net.bind(addr(2)), Err(SimError::AddrInUse(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_seed_gives_the_same_latencies_and_losses() {
        async fn run(seed: u64) -> Vec<(u8, Duration)> {
            let net = SimNetwork::new(SimConfig {
                loss: 0.3,
                seed,
                ..SimConfig::default()
            });
            let a = net.bind(addr(1)).unwrap();
            let mut b = net.bind(addr(2)).unwrap();
            let start = Instant::now();
            for i in 0..50u8 {
                a.try_send_to(&[i], addr(2)).unwrap();
            }
            let mut got = Vec::new();
            while net.in_flight() > 0 || !got.is_empty() && got.len() < 50 {
                match tokio::time::timeout(Duration::from_secs(1), recv(&mut b)).await {
                    Ok(Some((bytes, _))) => got.push((bytes[0], start.elapsed())),
                    _ => break,
                }
            }
            got
        }
        let first = run(7).await;
        assert!(
            first.len() > 20 && first.len() < 50,
            "{} delivered",
            first.len()
        );
        assert_eq!(first, run(7).await);
        assert_ne!(first, run(8).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_inbound_queue_drops_and_counts() {
        let net = SimNetwork::new(SimConfig {
            inbound_capacity: 2,
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(1),
            ..SimConfig::default()
        });
        let a = net.bind(addr(1)).unwrap();
        let _b = net.bind(addr(2)).unwrap();
        for _ in 0..5 {
            a.try_send_to(b"x", addr(2)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(net.drops().inbound_full, 3);
        assert_eq!(net.counters(&addr(2)).inbound_full, 3);
        assert_eq!(net.counters(&addr(2)).datagrams_received(), 2);
    }
}
