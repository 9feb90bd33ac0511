//! The network edge of the gossip framework: the labelled, encrypted packet codec.
//!
//! A datagram is an 8-byte [`Label`] followed by a body. Under AES-256-GCM the body is
//! `nonce (12) ‖ ciphertext ‖ tag (16)`, the label is the associated data, and the plaintext
//! is the bincode encoding of an [`Envelope`](gossip_core::Envelope) (sender id, the sender's
//! boot epoch and packet counter for anti-replay, and the message):
//!
//! ```text
//! | version | type | cipher | key id | body length (u32 BE) | nonce | AES-GCM(envelope) | tag |
//!   label: 8 bytes, authenticated, trusted only after the tag verifies
//! ```
//!
//! [`PacketCodec`] is a tokio-util `Encoder`/`Decoder` for `UdpFramed`. The receiver decides
//! the cipher from its own [`Security`]; every datagram it rejects yields a [`DropReason`]
//! instead of an error, so a hostile datagram is counted and never stalls the stream. No
//! datagram leaves larger than the configured maximum (default 1400 bytes, memberlist's safe
//! Ethernet payload): an envelope that does not fit is refused with both sizes named.
//!
//! The encoding is bincode 2 behind one function pair in [`wire`], so it can be replaced in one
//! file. `docs/wire.md` in the repository specifies every byte, with test vectors that a test
//! checks against this code.
#![deny(missing_docs)]

pub mod codec;
pub mod drops;
pub mod label;
pub mod limit;
pub mod sim;
pub mod wire;

pub use codec::{
    CodecConfigError, DEFAULT_MAX_DATAGRAM, Decoded, EncodeError, MAX_UDP_PAYLOAD, PACKET_OVERHEAD,
    PacketCodec, Security,
};
pub use drops::{DropCounts, DropReason};
pub use label::{Cipher, LABEL_LEN, Label};
pub use limit::{InboundLimit, InboundLimiter};

/// Entry points for the fuzz targets of the repository's `fuzz/` crate, compiled only with
/// `--cfg fuzzing` (set by `cargo fuzz`); not part of the public API.
#[cfg(fuzzing)]
pub mod fuzzing {
    use crate::drops::DropReason;
    use crate::label::{LABEL_LEN, Label};

    /// The label parser on the first 8 bytes of `bytes` (`None` if shorter): the codec's
    /// checks 3 to 5.
    pub fn parse_label(bytes: &[u8]) -> Option<Result<Label, DropReason>> {
        let label: &[u8; LABEL_LEN] = bytes.get(..LABEL_LEN)?.try_into().ok()?;
        Some(Label::parse(label))
    }
}
