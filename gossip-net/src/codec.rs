//! [`PacketCodec`]: the label, the envelope and AES-256-GCM as a tokio-util
//! [`Encoder`]/[`Decoder`] pair for [`tokio_util::udp::UdpFramed`].
//!
//! Decoding treats each datagram as a whole: [`Decoder::decode`] consumes the entire buffer and
//! yields either the envelope or the [`DropReason`] it was rejected for, so a bad datagram
//! never stalls the stream (tokio-util's `UdpFramed` would otherwise retry the same bytes).
//!
//! Checks run in this order, and the first that fails names the drop:
//!
//! ```text
//! oversize -> truncated label -> version -> type -> cipher byte -> required cipher
//!   -> body length -> truncated body (encrypted: shorter than nonce + tag) -> key id -> tag
//!   -> envelope decode -> type matches label
//! ```

use std::fmt;
use std::io;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use gossip_core::Envelope;
use gossip_crypto::{CryptoError, Keyring, NONCE_LEN, SEAL_OVERHEAD, TAG_LEN};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::codec::{Decoder, Encoder};

use crate::drops::DropReason;
use crate::label::{Cipher, LABEL_LEN, Label};
use crate::wire::{self, WireError};

/// The largest UDP payload over IPv4, in bytes: the upper bound for `max_datagram`.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// The default maximum datagram, in bytes: the safe Ethernet payload, as in memberlist.
pub const DEFAULT_MAX_DATAGRAM: usize = 1_400;

/// The smallest accepted `max_datagram`, in bytes: room for the label, nonce, tag and a
/// minimal envelope.
pub const MIN_MAX_DATAGRAM: usize = 128;

/// Bytes an encrypted datagram adds around the envelope: label (8) + nonce (12) + tag (16).
pub const PACKET_OVERHEAD: usize = LABEL_LEN + SEAL_OVERHEAD;

/// Which cipher this node seals with and requires from others.
///
/// The receiver decides: a datagram whose encryption byte differs from this is dropped with
/// [`DropReason::CipherMismatch`] and never read another way (go-gossip let the sender's label
/// pick, which allowed a plaintext downgrade).
#[derive(Clone)]
pub enum Security {
    /// AES-256-GCM under the keyring's primary key; any key of the keyring opens.
    Encrypted(Arc<Keyring>),
    /// No encryption or authentication. For tests and closed networks only.
    Plaintext,
}

impl Security {
    /// The cipher byte this configuration writes and requires.
    pub fn cipher(&self) -> Cipher {
        match self {
            Security::Encrypted(_) => Cipher::Aes256Gcm,
            Security::Plaintext => Cipher::Plaintext,
        }
    }

    /// Bytes a datagram adds around the envelope under this configuration.
    pub fn overhead(&self) -> usize {
        match self {
            Security::Encrypted(_) => PACKET_OVERHEAD,
            Security::Plaintext => LABEL_LEN,
        }
    }
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Security::Encrypted(keyring) => f
                .debug_struct("Encrypted")
                .field("primary_key_id", &keyring.primary_id())
                .field("keys", &keyring.len())
                .finish(),
            Security::Plaintext => f.write_str("Plaintext"),
        }
    }
}

/// Why an envelope could not be turned into a datagram. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The datagram would exceed the configured maximum. Split the content or raise
    /// `max_datagram` (at most 65,507 bytes).
    #[error("datagram of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Bytes the datagram would take.
        size: usize,
        /// The configured maximum datagram, in bytes.
        max: usize,
    },
    /// The envelope could not be encoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Sealing failed (it cannot for a well-formed buffer; kept so no path panics).
    #[error("sealing failed: {0}")]
    Crypto(CryptoError),
    /// The socket failed while `UdpFramed` flushed the datagram.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a [`PacketCodec`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecConfigError {
    /// `max_datagram` is outside [`MIN_MAX_DATAGRAM`]..=[`MAX_UDP_PAYLOAD`].
    #[error(
        "max_datagram of {max_datagram} bytes is outside {MIN_MAX_DATAGRAM}..={MAX_UDP_PAYLOAD}"
    )]
    MaxDatagram {
        /// The refused value, in bytes.
        max_datagram: usize,
    },
}

/// The packet codec: [`Envelope`] in, datagram out, and back.
///
/// Encoding writes `label ‖ nonce ‖ ciphertext ‖ tag` (or `label ‖ envelope` in plaintext mode),
/// drawing each nonce from a CSPRNG seeded from the OS once per codec. Decoding yields
/// a [`Decoded`] per datagram: the envelope or the [`DropReason`].
///
/// ```
/// use std::sync::Arc;
/// use bytes::BytesMut;
/// use gossip_core::{Envelope, Message, MessageId, NodeId};
/// use gossip_crypto::{Key, Keyring};
/// use gossip_net::{PacketCodec, Security};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let keyring = Arc::new(Keyring::new(Key::from_bytes([7; 32])));
/// let mut codec = PacketCodec::new(Security::Encrypted(keyring), 1400)?;
/// let envelope = Envelope {
///     sender: NodeId([1; 32]),
///     epoch: 1_700_000_000_000_000,
///     counter: 0,
///     message: Message::PushAck { id: MessageId([2; 16]) },
/// };
/// let mut datagram = BytesMut::new();
/// codec.encode(envelope.clone(), &mut datagram)?;
/// let decoded = codec.decode(&mut datagram)?.expect("one datagram");
/// assert_eq!(decoded.result, Ok(envelope));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PacketCodec {
    security: Security,
    max_datagram: usize,
    rng: StdRng,
    /// Reused plaintext buffer: bincode writes small fields one by one, which is cheaper into
    /// a `Vec` than through `BytesMut`'s writer. Never larger than `max_datagram` after use.
    scratch: Vec<u8>,
}

impl fmt::Debug for PacketCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketCodec")
            .field("security", &self.security)
            .field("max_datagram", &self.max_datagram)
            .finish_non_exhaustive()
    }
}

impl PacketCodec {
    /// A codec sealing and requiring `security`, refusing datagrams over `max_datagram` bytes.
    ///
    /// # Errors
    /// [`CodecConfigError::MaxDatagram`] when `max_datagram` is outside
    /// [`MIN_MAX_DATAGRAM`]..=[`MAX_UDP_PAYLOAD`].
    pub fn new(security: Security, max_datagram: usize) -> Result<Self, CodecConfigError> {
        if !(MIN_MAX_DATAGRAM..=MAX_UDP_PAYLOAD).contains(&max_datagram) {
            return Err(CodecConfigError::MaxDatagram { max_datagram });
        }
        Ok(PacketCodec {
            security,
            max_datagram,
            rng: StdRng::from_os_rng(),
            scratch: Vec::with_capacity(DEFAULT_MAX_DATAGRAM),
        })
    }

    /// The configured maximum datagram, in bytes.
    pub fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// The security configuration.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The keyring, to change at runtime (add, promote, remove keys: see [`Keyring`]'s
    /// rotation steps); `None` in plaintext mode. The next datagram encoded or decoded uses
    /// the changed keyring. Another codec that shared the keyring keeps its own copy (the
    /// `Arc` is cloned on write), so apply the same change to every codec of a node.
    pub fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        match &mut self.security {
            Security::Encrypted(keyring) => Some(Arc::make_mut(keyring)),
            Security::Plaintext => None,
        }
    }

    /// The largest encoded envelope, in bytes, that fits one datagram.
    pub fn max_envelope_len(&self) -> usize {
        self.max_datagram - self.security.overhead()
    }

    /// The exact size in bytes of the datagram `envelope` would become.
    ///
    /// # Errors
    /// [`WireError`] if the envelope cannot be encoded at all.
    pub fn datagram_len(&self, envelope: &Envelope) -> Result<usize, WireError> {
        Ok(wire::encoded_len(envelope)? + self.security.overhead())
    }

    /// Appends the datagram for `envelope` to `dst`; returns its length in bytes.
    ///
    /// # Errors
    /// [`EncodeError::TooLarge`] if it would exceed `max_datagram` (naming both sizes),
    /// [`EncodeError::Wire`] or [`EncodeError::Crypto`] otherwise. On error `dst` is unchanged.
    pub fn encode_datagram(
        &mut self,
        envelope: &Envelope,
        dst: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        let start = dst.len();
        let result = self.encode_at(envelope, dst, start);
        if result.is_err() {
            dst.truncate(start);
        }
        result
    }

    fn encode_at(
        &mut self,
        envelope: &Envelope,
        dst: &mut BytesMut,
        start: usize,
    ) -> Result<usize, EncodeError> {
        // Refuse an envelope that cannot fit before copying it: the bound is cheap, and the
        // exact size is computed only when the bound says it might not fit.
        if envelope.encoded_len_bound() + self.security.overhead() > self.max_datagram {
            let size = self.datagram_len(envelope)?;
            if size > self.max_datagram {
                return Err(EncodeError::TooLarge {
                    size,
                    max: self.max_datagram,
                });
            }
        }
        let cipher = self.security.cipher();
        let (nonce_len, tag_len) = match cipher {
            Cipher::Aes256Gcm => (NONCE_LEN, TAG_LEN),
            Cipher::Plaintext => (0, 0),
        };
        self.scratch.clear();
        wire::encode_envelope(envelope, &mut self.scratch)?;
        let total = LABEL_LEN + nonce_len + self.scratch.len() + tag_len;
        if total > self.max_datagram {
            self.scratch.clear();
            self.scratch.shrink_to(self.max_datagram);
            return Err(EncodeError::TooLarge {
                size: total,
                max: self.max_datagram,
            });
        }
        dst.reserve(total);
        dst.put_bytes(0, LABEL_LEN + nonce_len);
        dst.extend_from_slice(&self.scratch);
        dst.put_bytes(0, tag_len);
        let size = dst.len() - start;
        let (key_id, body_len) = match &self.security {
            Security::Encrypted(keyring) => (keyring.primary_id(), size - LABEL_LEN),
            Security::Plaintext => (0, size - LABEL_LEN),
        };
        let label = Label {
            packet_type: envelope.message.packet_type(),
            cipher,
            key_id,
            // `size <= max_datagram <= 65_507`, so the body length always fits a u32.
            body_len: u32::try_from(body_len).unwrap_or(u32::MAX),
        }
        .to_bytes();
        dst[start..start + LABEL_LEN].copy_from_slice(&label);
        if let Security::Encrypted(keyring) = &self.security {
            keyring
                .seal_in_place(&mut self.rng, &label, &mut dst[start + LABEL_LEN..])
                .map_err(EncodeError::Crypto)?;
        }
        Ok(size)
    }

    /// Parses, authenticates and decodes one whole datagram.
    ///
    /// `datagram` is decrypted in place (its contents are garbage afterwards).
    ///
    /// # Errors
    /// The first [`DropReason`] that applies, in the order given in the module docs.
    pub fn decode_datagram(&self, datagram: &mut [u8]) -> Result<Envelope, DropReason> {
        if datagram.len() > self.max_datagram {
            return Err(DropReason::Oversize);
        }
        let Some((label, body)) = datagram.split_first_chunk_mut::<LABEL_LEN>() else {
            return Err(DropReason::Truncated);
        };
        let Label {
            packet_type,
            cipher,
            key_id,
            body_len,
        } = Label::parse(label)?;
        if cipher != self.security.cipher() {
            return Err(DropReason::CipherMismatch);
        }
        if usize::try_from(body_len).ok() != Some(body.len()) {
            return Err(DropReason::LengthMismatch);
        }
        let plaintext: &[u8] = match &self.security {
            Security::Plaintext => body,
            Security::Encrypted(keyring) => {
                if body.len() < SEAL_OVERHEAD {
                    return Err(DropReason::Truncated);
                }
                if !keyring.contains_key_id(key_id) {
                    return Err(DropReason::UnknownKeyId);
                }
                keyring
                    .open_in_place(key_id, &label[..], body)
                    .map_err(|_| DropReason::Unauthenticated)?
            }
        };
        let envelope = wire::decode_envelope(plaintext).map_err(|_| DropReason::Malformed)?;
        if envelope.message.packet_type() != packet_type {
            return Err(DropReason::TypeMismatch);
        }
        Ok(envelope)
    }
}

impl Encoder<Envelope> for PacketCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: Envelope, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.encode_datagram(&item, dst).map(|_| ())
    }
}

impl Encoder<&Envelope> for PacketCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: &Envelope, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.encode_datagram(item, dst).map(|_| ())
    }
}

/// One decoded datagram: its size and what it held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the datagram as received.
    pub len: usize,
    /// The envelope, or why the datagram was dropped.
    pub result: Result<Envelope, DropReason>,
}

impl Decoder for PacketCodec {
    type Item = Decoded;
    type Error = io::Error;

    /// Consumes the whole buffer as one datagram. An empty buffer yields `None` (this is how
    /// `UdpFramed` asks whether anything is left; a zero-length datagram is thus skipped
    /// without a count).
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if src.is_empty() {
            return Ok(None);
        }
        let mut datagram = src.split();
        let len = datagram.len();
        let result = self.decode_datagram(&mut datagram);
        Ok(Some(Decoded { len, result }))
    }
}
