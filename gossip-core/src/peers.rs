//! A bounded table of known peers and uniform random peer selection.
//!
//! The table is what go-gossip calls the `Discovery` table: the set of addresses a node may
//! gossip with, supplied from outside (static seeds, CYCLON, a DHT). It never evicts on its own:
//! at capacity a new peer is refused and counted, so an address flood cannot push out the peers
//! a node already trusts.
//!
//! [`PeerTable::select`] draws distinct peers uniformly at random. go-gossip's selection always
//! returned the first `n` peers of its table (see `DESIGN.md` section 8); here every subset of
//! size `n` of the eligible peers is equally likely.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;

use crate::id::NodeId;

/// What the table knows about one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node id, once known (from an authenticated envelope or from discovery).
    pub node_id: Option<NodeId>,
    /// When the peer was first inserted.
    pub added: Instant,
    /// The last time a datagram from the peer was authenticated, if ever.
    pub last_seen: Option<Instant>,
    /// The failure detector declared this peer's node dead ([`PeerTable::set_dead`]); a dead
    /// peer is never selected.
    pub dead: bool,
}

/// Result of [`PeerTable::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The address was new and is now in the table.
    Added,
    /// The address was already known; its node id was updated if one was given.
    Updated,
    /// The table is at capacity and the address is new: it was refused (and counted in
    /// [`PeerTableStats::refused`]). The table did not change.
    Full,
}

/// Counters of a [`PeerTable`], each a running total since construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerTableStats {
    /// Inserts that added a new peer.
    pub added: u64,
    /// Inserts of an already known peer.
    pub updated: u64,
    /// Inserts refused because the table was at capacity.
    pub refused: u64,
    /// Peers removed by [`PeerTable::remove`].
    pub removed: u64,
}

/// A bounded table of known peers keyed by their UDP address.
///
/// Iteration and selection are in address order before randomisation, so the same seed gives
/// the same choices.
///
/// # Example
/// ```
/// use std::time::Instant;
/// use gossip_core::peers::{InsertOutcome, PeerTable};
/// use rand::SeedableRng;
///
/// let now = Instant::now(); // the shell reads the clock; the table never does
/// let mut table = PeerTable::new(2);
/// assert_eq!(table.insert(now, "10.0.0.1:7000".parse().unwrap(), None), InsertOutcome::Added);
/// assert_eq!(table.insert(now, "10.0.0.2:7000".parse().unwrap(), None), InsertOutcome::Added);
/// assert_eq!(table.insert(now, "10.0.0.3:7000".parse().unwrap(), None), InsertOutcome::Full);
/// let mut rng = rand::rngs::StdRng::seed_from_u64(7);
/// let chosen = table.select(&mut rng, 1, &[]);
/// assert_eq!(chosen.len(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct PeerTable {
    peers: BTreeMap<SocketAddr, PeerInfo>,
    capacity: usize,
    stats: PeerTableStats,
}

impl PeerTable {
    /// An empty table holding at most `capacity` peers (0 refuses every insert).
    pub fn new(capacity: usize) -> Self {
        PeerTable {
            peers: BTreeMap::new(),
            capacity,
            stats: PeerTableStats::default(),
        }
    }

    /// The most peers the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds `addr`, or updates it if known.
    ///
    /// A known peer keeps its `added` time; its node id is replaced when `node_id` is `Some`
    /// (a node that restarted with a new identity) and kept when it is `None`. A new peer at
    /// capacity is refused ([`InsertOutcome::Full`]); nothing is ever evicted to make room.
    pub fn insert(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        node_id: Option<NodeId>,
    ) -> InsertOutcome {
        if let Some(info) = self.peers.get_mut(&addr) {
            if node_id.is_some() {
                info.node_id = node_id;
            }
            self.stats.updated += 1;
            return InsertOutcome::Updated;
        }
        if self.peers.len() >= self.capacity {
            self.stats.refused += 1;
            return InsertOutcome::Full;
        }
        self.peers.insert(
            addr,
            PeerInfo {
                node_id,
                added: now,
                last_seen: None,
                dead: false,
            },
        );
        self.stats.added += 1;
        InsertOutcome::Added
    }

    /// Removes `addr`; `true` if it was present.
    pub fn remove(&mut self, addr: &SocketAddr) -> bool {
        let removed = self.peers.remove(addr).is_some();
        if removed {
            self.stats.removed += 1;
        }
        removed
    }

    /// Whether `addr` is in the table.
    pub fn contains(&self, addr: &SocketAddr) -> bool {
        self.peers.contains_key(addr)
    }

    /// What the table knows about `addr`.
    pub fn get(&self, addr: &SocketAddr) -> Option<&PeerInfo> {
        self.peers.get(addr)
    }

    /// Number of peers held (at most [`capacity`](Self::capacity)).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the table holds no peer.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The peers in address order.
    pub fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &PeerInfo)> + '_ {
        self.peers.iter()
    }

    /// Records that an authenticated datagram came from `addr` at `now`, learning its node id
    /// when `node_id` is `Some`. Returns `false` (and changes nothing) if `addr` is unknown:
    /// only [`insert`](Self::insert) adds peers.
    pub fn mark_seen(&mut self, now: Instant, addr: &SocketAddr, node_id: Option<NodeId>) -> bool {
        match self.peers.get_mut(addr) {
            Some(info) => {
                info.last_seen = Some(now);
                if node_id.is_some() {
                    info.node_id = node_id;
                }
                true
            }
            None => false,
        }
    }

    /// Counters since construction.
    pub fn stats(&self) -> PeerTableStats {
        self.stats
    }

    /// Marks every peer whose node id is `node` dead (excluded from [`select`](Self::select))
    /// or live again. Returns how many entries changed. A verdict about a node not in the table
    /// changes nothing (so nothing outside the table's bound is remembered).
    pub fn set_dead(&mut self, node: &NodeId, dead: bool) -> usize {
        let mut changed = 0;
        for info in self.peers.values_mut() {
            if info.node_id.as_ref() == Some(node) && info.dead != dead {
                info.dead = dead;
                changed += 1;
            }
        }
        changed
    }

    /// Chooses `n` distinct peers uniformly at random among those not in `exclude` and not dead (all of them,
    /// in random order, if fewer are eligible).
    ///
    /// Every `n`-subset of the eligible peers is equally likely (a partial Fisher–Yates shuffle
    /// over the eligible peers in address order), unlike go-gossip's selection which always
    /// took the first `n`. Cost: O(len + |exclude| log |exclude|) time, O(len) memory.
    pub fn select<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        n: usize,
        exclude: &[SocketAddr],
    ) -> Vec<SocketAddr> {
        let excluded: BTreeSet<&SocketAddr> = exclude.iter().collect();
        let mut eligible: Vec<SocketAddr> = self
            .peers
            .iter()
            .filter(|(addr, info)| !info.dead && !excluded.contains(addr))
            .map(|(addr, _)| *addr)
            .collect();
        let take = n.min(eligible.len());
        for i in 0..take {
            let j = rng.random_range(i..eligible.len());
            eligible.swap(i, j);
        }
        eligible.truncate(take);
        eligible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_peers_are_never_selected_until_live_again() {
        use rand::SeedableRng;
        let now = crate::test_util::epoch();
        let mut t = PeerTable::new(8);
        let dead_node = NodeId([9; 32]);
        for port in 1..=4u16 {
            let id = (port == 2).then_some(dead_node);
            t.insert(now, SocketAddr::from(([10, 0, 0, 1], port)), id);
        }
        assert_eq!(
            t.set_dead(&NodeId([7; 32]), true),
            0,
            "unknown node: nothing changes"
        );
        assert_eq!(t.set_dead(&dead_node, true), 1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let chosen = t.select(&mut rng, 4, &[]);
            assert_eq!(chosen.len(), 3);
            assert!(!chosen.contains(&SocketAddr::from(([10, 0, 0, 1], 2))));
        }
        assert_eq!(t.set_dead(&dead_node, false), 1);
        assert_eq!(t.select(&mut rng, 4, &[]).len(), 4);
    }
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7000))
    }

    #[test]
    fn insert_update_full_remove() {
        let now = crate::test_util::epoch();
        let later = now + std::time::Duration::from_secs(1);
        let id = NodeId([1; 32]);
        let mut t = PeerTable::new(2);
        assert!(t.is_empty());
        assert_eq!(t.insert(now, addr(1), None), InsertOutcome::Added);
        assert_eq!(t.insert(now, addr(2), Some(id)), InsertOutcome::Added);
        assert_eq!(t.insert(now, addr(3), None), InsertOutcome::Full);
        assert_eq!(t.insert(now, addr(3), None), InsertOutcome::Full);
        assert!(!t.contains(&addr(3)));
        assert_eq!(t.len(), 2);
        // Update keeps `added`, learns the id, never forgets it through `None`.
        assert_eq!(t.insert(later, addr(1), Some(id)), InsertOutcome::Updated);
        assert_eq!(t.insert(later, addr(1), None), InsertOutcome::Updated);
        let info = t.get(&addr(1)).unwrap();
        assert_eq!(info.node_id, Some(id));
        assert_eq!(info.added, now);
        assert_eq!(info.last_seen, None);
        assert!(t.mark_seen(later, &addr(1), None));
        assert_eq!(t.get(&addr(1)).unwrap().last_seen, Some(later));
        assert!(!t.mark_seen(later, &addr(9), Some(id)));
        assert!(!t.contains(&addr(9)));
        assert!(t.remove(&addr(1)));
        assert!(!t.remove(&addr(1)));
        assert_eq!(t.insert(now, addr(3), None), InsertOutcome::Added);
        let order: Vec<_> = t.iter().map(|(a, _)| *a).collect();
        assert_eq!(order, vec![addr(2), addr(3)]);
        assert_eq!(
            t.stats(),
            PeerTableStats {
                added: 3,
                updated: 2,
                refused: 2,
                removed: 1
            }
        );
        let mut zero = PeerTable::new(0);
        assert_eq!(zero.insert(now, addr(1), None), InsertOutcome::Full);
    }

    #[test]
    fn select_small_cases() {
        let now = crate::test_util::epoch();
        let mut rng = StdRng::seed_from_u64(1);
        let mut t = PeerTable::new(10);
        assert!(t.select(&mut rng, 3, &[]).is_empty());
        for i in 1..=4 {
            t.insert(now, addr(i), None);
        }
        assert!(t.select(&mut rng, 0, &[]).is_empty());
        let mut all = t.select(&mut rng, 10, &[addr(2)]);
        all.sort();
        assert_eq!(all, vec![addr(1), addr(3), addr(4)]);
        assert!(
            t.select(&mut rng, 2, &[addr(1), addr(2), addr(3), addr(4)])
                .is_empty()
        );
    }

    /// 10 peers, n = 3, 30,000 draws: each peer is chosen 9,000 times in expectation; every
    /// count must be within ±5 %. With go-gossip's "first n" selection peers 1..=3 would be
    /// chosen 30,000 times and the rest never.
    #[test]
    fn select_is_uniform_distinct_and_respects_exclude() {
        let now = crate::test_util::epoch();
        let mut t = PeerTable::new(16);
        for i in 1..=10 {
            t.insert(now, addr(i), None);
        }
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let draws = 30_000u32;
        let mut counts: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        for _ in 0..draws {
            let chosen = t.select(&mut rng, 3, &[]);
            assert_eq!(chosen.len(), 3);
            let distinct: BTreeSet<_> = chosen.iter().collect();
            assert_eq!(distinct.len(), 3, "duplicate in {chosen:?}");
            for a in chosen {
                *counts.entry(a).or_default() += 1;
            }
        }
        let expected = f64::from(draws) * 3.0 / 10.0;
        assert_eq!(counts.len(), 10);
        for (a, c) in &counts {
            let dev = (f64::from(*c) - expected).abs() / expected;
            assert!(dev <= 0.05, "{a} chosen {c} times, expected {expected}");
        }

        // With exclusions: 8 eligible peers, 3 of them drawn each time.
        let exclude = [addr(1), addr(5)];
        let mut counts: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        for _ in 0..draws {
            let chosen = t.select(&mut rng, 3, &exclude);
            assert_eq!(chosen.len(), 3);
            let distinct: BTreeSet<_> = chosen.iter().collect();
            assert_eq!(distinct.len(), 3);
            for a in chosen {
                assert!(!exclude.contains(&a), "excluded {a} chosen");
                *counts.entry(a).or_default() += 1;
            }
        }
        let expected = f64::from(draws) * 3.0 / 8.0;
        assert_eq!(counts.len(), 8);
        for (a, c) in &counts {
            let dev = (f64::from(*c) - expected).abs() / expected;
            assert!(dev <= 0.05, "{a} chosen {c} times, expected {expected}");
        }
    }

    #[test]
    fn select_is_deterministic_for_a_seed() {
        let now = crate::test_util::epoch();
        let mut t = PeerTable::new(16);
        for i in 1..=10 {
            t.insert(now, addr(i), None);
        }
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20)
                .map(|_| t.select(&mut rng, 3, &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
