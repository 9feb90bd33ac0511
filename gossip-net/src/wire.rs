//! The one place the envelope encoding is chosen: bincode 2 (serde), standard configuration
//! (little-endian, variable-length integers), with a hard read limit.
//!
//! Every other module goes through [`encode_envelope`] / [`decode_envelope`], so replacing
//! bincode means replacing this file.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::enc::write::SizeWriter;
use gossip_core::Envelope;

/// Largest plaintext a decoder will look at, in bytes: the largest UDP payload (65,507) rounded
/// up. A length prefix claiming more is rejected before anything is allocated.
pub const DECODE_LIMIT: usize = 65_536;

type WireConfig = Configuration<LittleEndian, Varint, Limit<DECODE_LIMIT>>;

fn config() -> WireConfig {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Why an envelope could not be encoded or decoded. The text comes from bincode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The envelope could not be written (the writer failed). bincode does not enforce
    /// [`DECODE_LIMIT`] when encoding; size limits are the codec's `max_datagram`.
    #[error("cannot encode envelope: {0}")]
    Encode(String),
    /// The bytes are not an envelope: bad variant, truncated field, a length past the limit.
    #[error("cannot decode envelope: {0}")]
    Decode(String),
    /// The bytes hold an envelope followed by `trailing` bytes that belong to nothing.
    #[error("{trailing} trailing bytes after the envelope")]
    TrailingBytes {
        /// Bytes left over after the envelope.
        trailing: usize,
    },
}

/// Writes the encoding of `envelope` to `out` and returns how many bytes were written.
///
/// # Errors
/// [`WireError::Encode`] if `out` fails; `out` may then hold a partial encoding, which the
/// caller truncates.
pub fn encode_envelope<W: std::io::Write>(
    envelope: &Envelope,
    out: &mut W,
) -> Result<usize, WireError> {
    bincode::serde::encode_into_std_write(envelope, out, config())
        .map_err(|e| WireError::Encode(e.to_string()))
}

/// Decodes exactly one envelope that must fill `bytes` entirely.
///
/// Integers in a longer form than needed are accepted (bincode's decoder does not insist on
/// the shortest varint), so one envelope may have several encodings; senders write the
/// shortest. Nothing compares or signs encoded envelopes, so this is harmless today.
///
/// # Errors
/// [`WireError::Decode`] for anything that is not an envelope, [`WireError::TrailingBytes`] if
/// bytes are left over.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, WireError> {
    let (envelope, read): (Envelope, usize) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| WireError::Decode(e.to_string()))?;
    if read != bytes.len() {
        return Err(WireError::TrailingBytes {
            trailing: bytes.len() - read,
        });
    }
    Ok(envelope)
}

/// The exact encoded length of `envelope`, in bytes, without allocating.
///
/// # Errors
/// As [`encode_envelope`].
pub fn encoded_len(envelope: &Envelope) -> Result<usize, WireError> {
    let mut writer = SizeWriter::default();
    bincode::serde::encode_into_writer(envelope, &mut writer, config())
        .map_err(|e| WireError::Encode(e.to_string()))?;
    Ok(writer.bytes_written)
}
