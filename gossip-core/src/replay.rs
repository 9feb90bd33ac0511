//! Anti-replay: a sliding window of packet counters per sender, reset by the sender's boot
//! epoch.
//!
//! # Model
//!
//! Every envelope carries the sender's **epoch** (its wall-clock boot time in microseconds since
//! the Unix epoch: a restarted node has a larger one) and a packet **counter** (0, 1, 2, ... per
//! datagram the node sends, to any destination). Both are inside the AES-GCM seal, so only a
//! holder of the cluster key can choose them; an on-path attacker can only re-send datagrams
//! it captured. The receiver keeps, per sender, the highest epoch seen and a window of the
//! counters seen in that epoch, as WireGuard and IPsec do (RFC 6479, "IPsec Anti-Replay
//! Algorithm without Bit Shifting": a ring of 64-bit words, cleared a word at a time as the
//! window slides, so no bitmap is ever shifted):
//!
//! ```text
//!   epoch < known epoch                       -> drop, StaleEpoch (a datagram of a past boot)
//!   epoch > known epoch (or sender unknown)   -> reset the window to this epoch, accept
//!   counter > highest                         -> accept, slide the window up to it
//!   highest - window < counter <= highest     -> accept once; a second copy: drop, Replayed
//!   counter <= highest - window               -> drop, TooOld (cannot tell new from replayed)
//!
//!         too old          |<------------ window (2,048 counters) ------------>|
//!   ----------------------[ seen bits: 1 accepted once, 0 not yet              ]--> counter
//!                                                                        highest ^
//! ```
//!
//! Counters are per sender, not per link, so the counters one receiver sees from a sender have
//! gaps (the datagrams the sender sent to others) and may arrive out of order: both are fine
//! while the reordering spans fewer than [`ReplayConfig::window`] datagrams of that sender.
//!
//! # Bounds
//!
//! The table holds at most [`ReplayConfig::max_senders`] senders (default 4,096); each entry
//! costs `window / 64 + 1` words plus about 100 bytes of table overhead: 264 + ~100 bytes with
//! the default window of 2,048, so the whole table stays under 1.5 MiB. When a new sender
//! arrives at a full table, the **least recently seen** sender is evicted
//! ([`ReplayStats::evicted`]).
//!
//! **Residual risk of eviction:** an evicted sender is unknown again, and the first datagram
//! from an unknown sender is accepted (a new node must be able to join). A datagram of that
//! sender captured before its eviction can therefore be replayed **once** (after which its
//! counter is in the fresh window). To evict a sender an attacker needs datagrams from more
//! than `max_senders` other senders that authenticate, so this needs either a cluster larger
//! than the table or a holder of the cluster key (who can forge sender ids anyway); an
//! on-path observer alone cannot do it. Size `max_senders` above the number of nodes that
//! talk to one node.
//!
//! # Call order
//!
//! The shell calls [`ReplayGuard::handle_datagram`] once per datagram that passed every check
//! of the codec (authenticated, decoded, label type matching), before routing it; a datagram
//! is marked seen only when it is accepted, so a dropped one changes nothing but a counter.
//! Nothing here reads a clock.

use std::num::NonZeroUsize;

use lru::LruCache;

use crate::config::{self, ConfigError};
use crate::id::NodeId;

/// Counters per bitmap word.
const WORD_BITS: u64 = 64;

/// Parameters of the replay guard. Validate with [`ReplayConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// How far below a sender's highest counter a counter is still accepted (once): a counter
    /// `c` is accepted if unseen and `c > highest - window`. In counters (datagrams of one
    /// sender), a multiple of 64 in `64..=65_536`. Default 2,048 (RFC 6479 suggests at least
    /// 1,024 for fast links; WireGuard keeps 8,192 - 64 per peer).
    pub window: u64,
    /// Most senders tracked at once; beyond it the least recently seen is evicted (see the
    /// module docs for the risk). `1..=1_048_576`, default 4,096.
    pub max_senders: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            window: 2_048,
            max_senders: 4_096,
        }
    }
}

impl ReplayConfig {
    /// Largest [`ReplayConfig::window`].
    pub const MAX_WINDOW: u64 = 65_536;
    /// Largest [`ReplayConfig::max_senders`].
    pub const MAX_SENDERS: usize = 1 << 20;

    /// Checks every field against its documented bounds.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] naming `window` or `max_senders`;
    /// a window that is not a multiple of 64 is reported as [`ConfigError::TooSmall`] with the
    /// next multiple as the minimum.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let window = usize::try_from(self.window).unwrap_or(usize::MAX);
        config::in_range(
            "window",
            window,
            WORD_BITS as usize,
            Self::MAX_WINDOW as usize,
        )?;
        if self.window % WORD_BITS != 0 {
            return Err(ConfigError::TooSmall {
                field: "window",
                value: window,
                min: window.next_multiple_of(WORD_BITS as usize),
            });
        }
        config::in_range("max_senders", self.max_senders, 1, Self::MAX_SENDERS)?;
        Ok(())
    }

    fn words(&self) -> usize {
        // One extra word so that `window` counters below the highest always fit beside the
        // highest's own word (RFC 6479 keeps the same spare block).
        usize::try_from(self.window / WORD_BITS).unwrap_or(1) + 1
    }
}

/// Why a datagram was refused as a replay. Nothing but [`ReplayStats`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayDrop {
    /// The counter is inside the window and was already accepted: a duplicate.
    #[error("counter already seen")]
    Replayed,
    /// The counter is `window` or more below the sender's highest: it cannot be told apart
    /// from a replay.
    #[error("counter older than the window")]
    TooOld,
    /// The epoch is older than one already accepted from this sender: a datagram of a
    /// previous boot of that node.
    #[error("epoch older than the sender's current one")]
    StaleEpoch,
}

/// Counters of a [`ReplayGuard`], totals since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Datagrams accepted.
    pub accepted: u64,
    /// Dropped as [`ReplayDrop::Replayed`].
    pub replayed: u64,
    /// Dropped as [`ReplayDrop::TooOld`].
    pub too_old: u64,
    /// Dropped as [`ReplayDrop::StaleEpoch`].
    pub stale_epoch: u64,
    /// Senders whose newer epoch reset their window (restarts seen).
    pub epoch_resets: u64,
    /// Senders evicted from the full table (least recently seen first).
    pub evicted: u64,
}

/// One sender's epoch and counter window (RFC 6479).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayWindow {
    epoch: u64,
    highest: u64,
    /// Bit `c % 64` of word `(c / 64) % words` is set when counter `c` was accepted.
    bitmap: Box<[u64]>,
    window: u64,
}

impl ReplayWindow {
    /// A window of `config.window` counters whose first accepted datagram is (`epoch`,
    /// `counter`).
    pub fn new(config: &ReplayConfig, epoch: u64, counter: u64) -> Self {
        let mut window = ReplayWindow {
            epoch,
            highest: counter,
            bitmap: vec![0; config.words()].into_boxed_slice(),
            window: config.window,
        };
        window.mark(counter);
        window
    }

    /// The epoch this window belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The highest counter accepted in this epoch.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    fn slot(&self, counter: u64) -> (usize, u64) {
        let words = self.bitmap.len() as u64;
        (
            usize::try_from((counter / WORD_BITS) % words).unwrap_or(0),
            1 << (counter % WORD_BITS),
        )
    }

    fn mark(&mut self, counter: u64) {
        let (word, bit) = self.slot(counter);
        self.bitmap[word] |= bit;
    }

    /// Accepts `counter` of the window's epoch once: see the module docs.
    ///
    /// # Errors
    /// [`ReplayDrop::Replayed`] for a counter accepted before, [`ReplayDrop::TooOld`] for one
    /// `window` or more below the highest. The window is unchanged on error.
    pub fn check_and_mark(&mut self, counter: u64) -> Result<(), ReplayDrop> {
        if counter > self.highest {
            // Clear the words the window slides over (at most all of them), then move up.
            let words = self.bitmap.len() as u64;
            let from = self.highest / WORD_BITS;
            let to = counter / WORD_BITS;
            let steps = (to - from).min(words);
            for i in 1..=steps {
                let word = usize::try_from((from + i) % words).unwrap_or(0);
                self.bitmap[word] = 0;
            }
            self.highest = counter;
            self.mark(counter);
            return Ok(());
        }
        if self.highest - counter >= self.window {
            return Err(ReplayDrop::TooOld);
        }
        let (word, bit) = self.slot(counter);
        if self.bitmap[word] & bit != 0 {
            return Err(ReplayDrop::Replayed);
        }
        self.bitmap[word] |= bit;
        Ok(())
    }
}

/// The replay guard of one node: a bounded table of [`ReplayWindow`]s by sender. See the
/// module docs for the rules, the bound and the residual risk of eviction.
///
/// ```
/// use gossip_core::NodeId;
/// use gossip_core::replay::{ReplayConfig, ReplayDrop, ReplayGuard};
///
/// let mut guard = ReplayGuard::new(ReplayConfig::default())?;
/// let peer = NodeId([7; 32]);
/// assert_eq!(guard.handle_datagram(peer, 1_000, 5), Ok(()));
/// assert_eq!(guard.handle_datagram(peer, 1_000, 5), Err(ReplayDrop::Replayed));
/// assert_eq!(guard.handle_datagram(peer, 1_000, 3), Ok(())); // late, but unseen
/// assert_eq!(guard.handle_datagram(peer, 2_000, 0), Ok(())); // the peer restarted
/// assert_eq!(guard.handle_datagram(peer, 1_000, 9), Err(ReplayDrop::StaleEpoch));
/// # Ok::<(), gossip_core::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct ReplayGuard {
    config: ReplayConfig,
    senders: LruCache<NodeId, ReplayWindow>,
    stats: ReplayStats,
}

impl ReplayGuard {
    /// An empty guard.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` fails [`ReplayConfig::validate`].
    pub fn new(config: ReplayConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let cap = NonZeroUsize::new(config.max_senders).unwrap_or(NonZeroUsize::MIN);
        Ok(ReplayGuard {
            config,
            senders: LruCache::new(cap),
            stats: ReplayStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ReplayConfig {
        &self.config
    }

    /// Senders tracked now (at most [`ReplayConfig::max_senders`]).
    pub fn senders(&self) -> usize {
        self.senders.len()
    }

    /// The window of `sender`, if tracked (does not count as seeing it).
    pub fn window(&self, sender: &NodeId) -> Option<&ReplayWindow> {
        self.senders.peek(sender)
    }

    /// The counters.
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    /// Decides on one authenticated datagram of `sender` stamped (`epoch`, `counter`) and, if
    /// it is accepted, marks it seen. Any call makes `sender` the most recently seen.
    ///
    /// # Errors
    /// The [`ReplayDrop`] it was refused for; only the counters changed.
    pub fn handle_datagram(
        &mut self,
        sender: NodeId,
        epoch: u64,
        counter: u64,
    ) -> Result<(), ReplayDrop> {
        let result = match self.senders.get_mut(&sender) {
            Some(window) if epoch < window.epoch => Err(ReplayDrop::StaleEpoch),
            Some(window) if epoch > window.epoch => {
                *window = ReplayWindow::new(&self.config, epoch, counter);
                self.stats.epoch_resets += 1;
                Ok(())
            }
            Some(window) => window.check_and_mark(counter),
            None => {
                let window = ReplayWindow::new(&self.config, epoch, counter);
                if self.senders.push(sender, window).is_some() {
                    self.stats.evicted += 1;
                }
                Ok(())
            }
        };
        match result {
            Ok(()) => self.stats.accepted += 1,
            Err(ReplayDrop::Replayed) => self.stats.replayed += 1,
            Err(ReplayDrop::TooOld) => self.stats.too_old += 1,
            Err(ReplayDrop::StaleEpoch) => self.stats.stale_epoch += 1,
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    const A: NodeId = NodeId([1; 32]);

    fn guard() -> ReplayGuard {
        ReplayGuard::new(ReplayConfig::default()).unwrap()
    }

    #[test]
    fn defaults_and_bounds() {
        let c = ReplayConfig::default();
        assert_eq!((c.window, c.max_senders), (2_048, 4_096));
        assert_eq!(c.words(), 33);
        c.validate().unwrap();
        let bad = |window, max_senders| ReplayConfig {
            window,
            max_senders,
        };
        assert!(bad(0, 1).validate().is_err());
        assert!(bad(100, 1).validate().is_err());
        assert!(bad(65_600, 1).validate().is_err());
        assert!(bad(64, 0).validate().is_err());
        assert!(bad(64, ReplayConfig::MAX_SENDERS + 1).validate().is_err());
        bad(64, 1).validate().unwrap();
        bad(65_536, ReplayConfig::MAX_SENDERS).validate().unwrap();
    }

    #[test]
    fn duplicate_dropped_new_highest_and_late_unseen_accepted() {
        let mut g = guard();
        assert_eq!(g.handle_datagram(A, 10, 0), Ok(()));
        assert_eq!(g.handle_datagram(A, 10, 0), Err(ReplayDrop::Replayed));
        assert_eq!(g.handle_datagram(A, 10, 5), Ok(()));
        assert_eq!(g.handle_datagram(A, 10, 3), Ok(()));
        assert_eq!(g.handle_datagram(A, 10, 3), Err(ReplayDrop::Replayed));
        assert_eq!(g.handle_datagram(A, 10, 5), Err(ReplayDrop::Replayed));
        let s = g.stats();
        assert_eq!((s.accepted, s.replayed, s.too_old), (3, 3, 0));
    }

    #[test]
    fn window_edge_is_exact() {
        let mut g = guard();
        g.handle_datagram(A, 1, 10_000).unwrap();
        // highest - window = 7,952: counters above it are inside the window, it is not.
        assert_eq!(g.handle_datagram(A, 1, 7_953), Ok(()));
        assert_eq!(g.handle_datagram(A, 1, 7_952), Err(ReplayDrop::TooOld));
        assert_eq!(g.handle_datagram(A, 1, 0), Err(ReplayDrop::TooOld));
        assert_eq!(g.stats().too_old, 2);
    }

    #[test]
    fn big_jump_clears_the_whole_window() {
        let mut g = guard();
        for c in 0..2_048 {
            g.handle_datagram(A, 1, c).unwrap();
        }
        g.handle_datagram(A, 1, 1_000_000).unwrap();
        // Every counter within the window below the new highest is unseen again.
        for c in (1_000_000 - 2_047)..1_000_000 {
            assert_eq!(g.handle_datagram(A, 1, c), Ok(()), "counter {c}");
        }
        assert_eq!(g.stats().accepted, 2_048 + 1 + 2_047);
    }

    #[test]
    fn newer_epoch_resets_older_is_stale() {
        let mut g = guard();
        g.handle_datagram(A, 100, 50).unwrap();
        // Restart: counters start again at 0 under a larger epoch.
        assert_eq!(g.handle_datagram(A, 200, 0), Ok(()));
        assert_eq!(g.handle_datagram(A, 200, 0), Err(ReplayDrop::Replayed));
        assert_eq!(g.handle_datagram(A, 100, 51), Err(ReplayDrop::StaleEpoch));
        assert_eq!(g.window(&A).map(ReplayWindow::epoch), Some(200));
        let s = g.stats();
        assert_eq!((s.epoch_resets, s.stale_epoch, s.replayed), (1, 1, 1));
    }

    #[test]
    fn table_is_bounded_and_evicts_least_recently_seen() {
        let mut g = ReplayGuard::new(ReplayConfig {
            window: 64,
            max_senders: 3,
        })
        .unwrap();
        let n = |i: u8| NodeId([i; 32]);
        for i in 0..3 {
            g.handle_datagram(n(i), 1, 0).unwrap();
        }
        // Seeing 0 again makes 1 the least recently seen.
        assert_eq!(g.handle_datagram(n(0), 1, 0), Err(ReplayDrop::Replayed));
        g.handle_datagram(n(3), 1, 0).unwrap();
        assert_eq!(g.senders(), 3);
        assert!(g.window(&n(1)).is_none());
        assert_eq!(g.stats().evicted, 1);
        // The documented residual risk: an evicted sender's old datagram is accepted once.
        assert_eq!(g.handle_datagram(n(1), 1, 0), Ok(()));
        assert_eq!(g.handle_datagram(n(1), 1, 0), Err(ReplayDrop::Replayed));
        for i in 0..200u8 {
            let _ = g.handle_datagram(n(i), u64::from(i), 7);
            assert!(g.senders() <= 3);
        }
    }

    #[test]
    fn extreme_counters_and_epochs_never_panic() {
        let mut g = guard();
        for (e, c) in [(0, 0), (0, u64::MAX), (0, u64::MAX - 1), (u64::MAX, 0)] {
            let _ = g.handle_datagram(A, e, c);
        }
        assert_eq!(g.handle_datagram(A, u64::MAX, u64::MAX), Ok(()));
        assert_eq!(
            g.handle_datagram(A, u64::MAX, u64::MAX),
            Err(ReplayDrop::Replayed)
        );
        assert_eq!(g.handle_datagram(A, u64::MAX, 0), Err(ReplayDrop::TooOld));
    }

    proptest! {
        /// Any permutation of a set of distinct counters spanning less than the window is
        /// accepted exactly once each, and every second copy is dropped as replayed.
        #[test]
        fn any_permutation_within_the_window_is_accepted_exactly_once(
            base in any::<u64>().prop_map(|b| b % (1 << 40)),
            offsets in proptest::collection::btree_set(0u64..2_048, 1..300),
            shuffle_seed in any::<u64>(),
            dup_every in 1usize..5,
        ) {
            use rand::seq::SliceRandom;
            use rand::SeedableRng;
            let mut counters: Vec<u64> = offsets.iter().map(|o| base + o).collect();
            counters.shuffle(&mut rand::rngs::StdRng::seed_from_u64(shuffle_seed));
            let mut g = guard();
            let mut accepted = BTreeSet::new();
            let mut replays = 0u64;
            for (i, &c) in counters.iter().enumerate() {
                prop_assert_eq!(g.handle_datagram(A, 9, c), Ok(()));
                accepted.insert(c);
                // Re-send an earlier one now and then: always a replay.
                if i % dup_every == 0 {
                    let earlier = counters[i / 2];
                    prop_assert_eq!(g.handle_datagram(A, 9, earlier), Err(ReplayDrop::Replayed));
                    replays += 1;
                }
            }
            prop_assert_eq!(accepted.len(), counters.len());
            for &c in &counters {
                prop_assert_eq!(g.handle_datagram(A, 9, c), Err(ReplayDrop::Replayed));
            }
            let s = g.stats();
            prop_assert_eq!(s.accepted, counters.len() as u64);
            prop_assert_eq!(s.replayed, replays + counters.len() as u64);
            prop_assert_eq!(s.too_old, 0);
        }

        /// Against a reference model (a set of every accepted counter and the highest), any
        /// sequence of counters gets the verdict the rules give.
        #[test]
        fn matches_the_reference_model(
            counters in proptest::collection::vec(0u64..20_000, 1..600),
        ) {
            let mut g = ReplayGuard::new(ReplayConfig { window: 256, max_senders: 1 }).unwrap();
            let mut seen = BTreeSet::new();
            let mut highest: Option<u64> = None;
            for c in counters {
                let expected = match highest {
                    None => Ok(()),
                    Some(h) if c > h => Ok(()),
                    Some(h) if h - c >= 256 => Err(ReplayDrop::TooOld),
                    Some(_) if seen.contains(&c) => Err(ReplayDrop::Replayed),
                    Some(_) => Ok(()),
                };
                prop_assert_eq!(g.handle_datagram(A, 1, c), expected, "counter {}", c);
                if expected.is_ok() {
                    seen.insert(c);
                    highest = Some(highest.map_or(c, |h| h.max(c)));
                }
            }
        }
    }
}
