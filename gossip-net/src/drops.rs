//! Why an inbound datagram was dropped, and counters by reason.
//!
//! The first eleven reasons are the codec's checks 1 to 12 (`docs/wire.md` section 1.4;
//! `truncated` serves two of them); the last three are checks 13 to 15, the anti-replay check
//! that the transport runs on a datagram the codec accepted (`gossip_core::replay`).

use std::fmt;

/// Why an inbound datagram was dropped before reaching any protocol.
///
/// Every reason is counted separately; none of them changes any state beyond its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than the 8-byte label, or shorter than nonce + tag for an encrypted body.
    Truncated,
    /// Longer than this node's configured maximum datagram.
    Oversize,
    /// Label byte 0 is not a version this node speaks.
    UnsupportedVersion,
    /// Label byte 1 names no packet type.
    UnknownType,
    /// Label byte 2 names no cipher.
    UnknownCipher,
    /// Label byte 2 names a cipher other than the one this node requires (for example a
    /// plaintext packet sent to an encrypted node). The body is never read.
    CipherMismatch,
    /// The label's body length differs from the bytes that actually follow it.
    LengthMismatch,
    /// No key in the keyring has the label's key id.
    UnknownKeyId,
    /// The AES-GCM tag did not verify: a tampered label or body, or a key with a colliding id.
    Unauthenticated,
    /// The authenticated plaintext is not an envelope (or has trailing bytes).
    Malformed,
    /// The decoded message's kind differs from the label's packet type.
    TypeMismatch,
    /// Anti-replay: the sender's counter was already accepted in its current epoch (a
    /// duplicated or re-sent datagram).
    Replayed,
    /// Anti-replay: the counter is a whole window (2,048 by default) or more below the
    /// sender's highest; it cannot be told apart from a replay.
    TooOld,
    /// Anti-replay: the epoch is older than one already accepted from the same sender (a
    /// datagram from before that node restarted).
    StaleEpoch,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 14] = [
        DropReason::Truncated,
        DropReason::Oversize,
        DropReason::UnsupportedVersion,
        DropReason::UnknownType,
        DropReason::UnknownCipher,
        DropReason::CipherMismatch,
        DropReason::LengthMismatch,
        DropReason::UnknownKeyId,
        DropReason::Unauthenticated,
        DropReason::Malformed,
        DropReason::TypeMismatch,
        DropReason::Replayed,
        DropReason::TooOld,
        DropReason::StaleEpoch,
    ];

    /// A snake_case name for metrics and JSON.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Oversize => "oversize",
            DropReason::UnsupportedVersion => "unsupported_version",
            DropReason::UnknownType => "unknown_type",
            DropReason::UnknownCipher => "unknown_cipher",
            DropReason::CipherMismatch => "cipher_mismatch",
            DropReason::LengthMismatch => "length_mismatch",
            DropReason::UnknownKeyId => "unknown_key_id",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::Malformed => "malformed",
            DropReason::TypeMismatch => "type_mismatch",
            DropReason::Replayed => "replayed",
            DropReason::TooOld => "too_old",
            DropReason::StaleEpoch => "stale_epoch",
        }
    }

    /// True for the reasons that mean "not from a holder of our key": cipher mismatch, unknown
    /// key id, failed tag. The others mean a broken, hostile or replayed datagram.
    pub fn is_auth(self) -> bool {
        matches!(
            self,
            DropReason::CipherMismatch | DropReason::UnknownKeyId | DropReason::Unauthenticated
        )
    }

    /// True for the anti-replay reasons: replayed, too old, stale epoch. Such a datagram was
    /// authenticated and well formed, but a copy of it (or a newer boot of its sender) had
    /// been accepted before.
    pub fn is_replay(self) -> bool {
        matches!(
            self,
            DropReason::Replayed | DropReason::TooOld | DropReason::StaleEpoch
        )
    }

    /// The drop reason of an anti-replay verdict.
    pub fn from_replay(drop: gossip_core::replay::ReplayDrop) -> Self {
        match drop {
            gossip_core::replay::ReplayDrop::Replayed => DropReason::Replayed,
            gossip_core::replay::ReplayDrop::TooOld => DropReason::TooOld,
            _ => DropReason::StaleEpoch,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Dropped datagrams counted by [`DropReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    counts: [u64; DropReason::ALL.len()],
}

impl DropCounts {
    /// Counts one drop.
    pub fn record(&mut self, reason: DropReason) {
        let slot = &mut self.counts[reason.index()];
        *slot = slot.saturating_add(1);
    }

    /// Drops counted for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Drops for which [`DropReason::is_auth`] holds.
    pub fn auth(&self) -> u64 {
        self.iter()
            .filter(|(r, _)| r.is_auth())
            .map(|(_, n)| n)
            .sum()
    }

    /// Drops for which [`DropReason::is_replay`] holds.
    pub fn replay(&self) -> u64 {
        self.iter()
            .filter(|(r, _)| r.is_replay())
            .map(|(_, n)| n)
            .sum()
    }

    /// Drops for which neither [`DropReason::is_auth`] nor [`DropReason::is_replay`] holds:
    /// broken or hostile datagrams.
    pub fn malformed(&self) -> u64 {
        self.total() - self.auth() - self.replay()
    }

    /// `(reason, count)` for every reason, in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.get(r)))
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &DropCounts) {
        for (slot, n) in self.counts.iter_mut().zip(other.counts) {
            *slot = slot.saturating_add(n);
        }
    }
}
