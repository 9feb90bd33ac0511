//! The tree's wire shapes: [`Note`] (one feed's entry of a vector clock), [`Notes`] and
//! [`FeedBatch`], and the conservative size bounds that let the core split them into
//! datagrams without the encoder.

use serde::{Deserialize, Serialize};

use crate::feed::{FeedId, FeedMessage, wire_bound as feed_bound};

/// Bytes the envelope adds around a [`Notes`] or a [`FeedBatch`] (49): the 48-byte envelope
/// header (sender id, epoch, counter) and the 1-byte variant index of `Message::TreeNotes` (type 21) / `Message::TreeBatch`
/// (type 22). Each struct's [`encoded_len_bound`](Notes::encoded_len_bound) must be at most
/// `max_envelope_len − ENVELOPE_OVERHEAD`.
pub const ENVELOPE_OVERHEAD: usize = crate::message::wire_bound::ENVELOPE_HEADER + 1;

/// Bound on the varint of an `i64` (bincode 2 standard: zigzag, then 1, 3, 5 or 9 bytes).
pub const I64_BOUND: usize = 9;

/// Bound on one `(FeedId, i64)` entry of [`Notes`]: 32 + 9 = 41 bytes.
pub const NOTE_ENTRY_BOUND: usize = FeedId::LEN + I64_BOUND;

/// Bound on the length prefix of a list the core builds (fewer than 65,536 entries: a varint
/// of at most 3 bytes). Used when packing; [`Notes::encoded_len_bound`] and
/// [`FeedBatch::encoded_len_bound`] use the exact varint width of their length.
pub const LIST_PREFIX: usize = 3;

/// One feed's entry of a vector clock, Secure Scuttlebutt's encoding (ssb-ebt) of "how far I
/// am in this feed and whether you should push it to me" in a single `i64`:
///
/// | value | meaning |
/// |---|---|
/// | `-1` | [`DoNotReplicate`](Note::DoNotReplicate): the sender does not replicate this feed with the receiver (not followed, unfollowed, or forked) |
/// | `sequence << 1` (even) | [`Replicate`](Note::Replicate) with `eager: true`: the sender holds the feed up to `sequence` and asks the receiver to push every later message at once (the link is *eager*) |
/// | `(sequence << 1) \| 1` (odd) | `Replicate` with `eager: false`: the sender holds the feed up to `sequence` and does not want messages pushed (the link is *lazy*: "don't send me messages") |
///
/// So the low bit is ssb-ebt's receive flag inverted: 1 = "don't send me messages". Any
/// other negative value is invalid and ignored ([`Note::from_i64`] returns `None`).
/// Sequences above [`Note::MAX_SEQUENCE`] (2⁶² − 1) cannot be encoded and are clamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Note {
    /// `-1`: the sender does not replicate this feed with the receiver.
    DoNotReplicate,
    /// The sender replicates the feed.
    Replicate {
        /// The latest sequence the sender holds (0 before the first message).
        sequence: u64,
        /// Whether the sender asks the receiver to push new messages to it at once.
        eager: bool,
    },
}

impl Note {
    /// Largest sequence a note can carry: 2⁶² − 1 (the value must stay a non-negative `i64`
    /// after the shift).
    pub const MAX_SEQUENCE: u64 = (i64::MAX >> 1) as u64;

    /// The `i64` on the wire (see the type doc).
    pub fn to_i64(self) -> i64 {
        match self {
            Note::DoNotReplicate => -1,
            Note::Replicate { sequence, eager } => {
                let sequence = i64::try_from(sequence.min(Self::MAX_SEQUENCE)).unwrap_or(0);
                (sequence << 1) | i64::from(!eager)
            }
        }
    }

    /// Parses a wire value; `None` for a negative value other than `-1`.
    pub fn from_i64(value: i64) -> Option<Note> {
        match value {
            -1 => Some(Note::DoNotReplicate),
            v if v < 0 => None,
            v => Some(Note::Replicate {
                sequence: u64::try_from(v >> 1).unwrap_or(0),
                eager: v & 1 == 0,
            }),
        }
    }
}

/// A vector clock, or the part of one that changed: `(feed, note)` entries, each note an
/// `i64` as described on [`Note`]. Travels as `Message::TreeNotes` (type 21).
///
/// Entries are sorted by feed when the core builds them; a receiver accepts any order and
/// looks at one entry per feed at most once per message in effect (a later entry for the same
/// feed overrides an earlier one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notes {
    /// `(feed, Note::to_i64())` pairs.
    pub entries: Vec<(FeedId, i64)>,
}

impl Notes {
    /// An upper bound, in bytes, on this struct's encoding (bincode 2 standard config, the
    /// rules of [`crate::message::wire_bound`]): the list's length varint plus
    /// [`NOTE_ENTRY_BOUND`] per entry.
    pub fn encoded_len_bound(&self) -> usize {
        feed_bound::length_prefix(self.entries.len())
            .saturating_add(self.entries.len().saturating_mul(NOTE_ENTRY_BOUND))
    }
}

/// Consecutive messages of one or more feeds, in sequence order per feed. Travels as
/// `Message::TreeBatch` (type 22).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedBatch {
    /// The messages; for each feed, ascending and consecutive sequences.
    pub messages: Vec<FeedMessage>,
}

impl FeedBatch {
    /// An upper bound, in bytes, on this struct's encoding: the list's length varint plus
    /// each message's [`FeedMessage::encoded_len_bound`].
    pub fn encoded_len_bound(&self) -> usize {
        self.messages
            .iter()
            .fold(feed_bound::length_prefix(self.messages.len()), |sum, m| {
                sum.saturating_add(m.encoded_len_bound())
            })
    }
}

/// What the tree sends: the shell wraps [`Notes`] in `Message::TreeNotes` and [`FeedBatch`]
/// in `Message::TreeBatch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeMessage {
    /// A vector clock (or part of one).
    Notes(Notes),
    /// Feed messages.
    Batch(FeedBatch),
}

impl TreeMessage {
    /// The inner struct's `encoded_len_bound`; the envelope adds [`ENVELOPE_OVERHEAD`].
    pub fn encoded_len_bound(&self) -> usize {
        match self {
            TreeMessage::Notes(notes) => notes.encoded_len_bound(),
            TreeMessage::Batch(batch) => batch.encoded_len_bound(),
        }
    }
}

/// Largest struct bound that fits an envelope of `max_envelope_len` bytes:
/// `max_envelope_len − ENVELOPE_OVERHEAD` (0 if smaller).
pub const fn max_struct_len(max_envelope_len: usize) -> usize {
    max_envelope_len.saturating_sub(ENVELOPE_OVERHEAD)
}

/// How many note entries one [`Notes`] carries within `max_envelope_len` (32 for the default
/// 1,364 bytes).
pub const fn notes_per_datagram(max_envelope_len: usize) -> usize {
    max_struct_len(max_envelope_len).saturating_sub(LIST_PREFIX) / NOTE_ENTRY_BOUND
}

/// Largest content such that a [`FeedBatch`] holding one message with it fits
/// `max_envelope_len` (1,162 bytes for the default 1,364); `None` if not even an empty
/// content fits.
pub const fn max_content_fit(max_envelope_len: usize) -> Option<usize> {
    let room = max_struct_len(max_envelope_len);
    let fixed = LIST_PREFIX + feed_bound::FIXED;
    if room < fixed + 1 {
        return None;
    }
    let avail = room - fixed;
    // content + length_prefix(content) <= avail: for each varint width, the largest content
    // that uses at most that width; keep the largest.
    let widths = [1usize, 3, 5, 9];
    let uppers = [250usize, 0xffff, 0xffff_ffff, usize::MAX];
    let mut best: Option<usize> = None;
    let mut i = 0;
    while i < widths.len() {
        if avail >= widths[i] {
            let mut content = avail - widths[i];
            if content > uppers[i] {
                content = uppers[i];
            }
            best = match best {
                Some(b) if b >= content => Some(b),
                _ => Some(content),
            };
        }
        i += 1;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_encoding_is_ssb_s() {
        assert_eq!(Note::DoNotReplicate.to_i64(), -1);
        let eager = Note::Replicate {
            sequence: 5,
            eager: true,
        };
        let lazy = Note::Replicate {
            sequence: 5,
            eager: false,
        };
        assert_eq!(eager.to_i64(), 10);
        assert_eq!(lazy.to_i64(), 11);
        for note in [eager, lazy, Note::DoNotReplicate] {
            assert_eq!(Note::from_i64(note.to_i64()), Some(note));
        }
        assert_eq!(
            Note::from_i64(0),
            Some(Note::Replicate {
                sequence: 0,
                eager: true
            })
        );
        assert_eq!(Note::from_i64(-2), None);
        assert_eq!(Note::from_i64(i64::MIN), None);
        let top = Note::Replicate {
            sequence: u64::MAX,
            eager: false,
        };
        assert_eq!(top.to_i64(), i64::MAX);
        assert_eq!(
            Note::from_i64(i64::MAX),
            Some(Note::Replicate {
                sequence: Note::MAX_SEQUENCE,
                eager: false
            })
        );
    }

    #[test]
    fn default_sizes() {
        assert_eq!(ENVELOPE_OVERHEAD, 49);
        assert_eq!(max_struct_len(1_364), 1_315);
        assert_eq!(notes_per_datagram(1_364), 32);
        assert_eq!(max_content_fit(1_364), Some(1_162));
        assert_eq!(
            LIST_PREFIX + feed_bound::feed_message(1_162),
            max_struct_len(1_364)
        );
        // Just enough for an empty content: 49 + 3 + 147 + 1.
        assert_eq!(max_content_fit(200), Some(0));
        assert_eq!(max_content_fit(199), None);
        for len in 200..2_000 {
            let c = max_content_fit(len).unwrap();
            assert!(LIST_PREFIX + feed_bound::feed_message(c) <= max_struct_len(len));
            assert!(LIST_PREFIX + feed_bound::feed_message(c + 1) > max_struct_len(len));
        }
    }
}
