//! The 8-byte label in front of every datagram (`docs/wire.md` section 2).
//!
//! ```text
//!  0         1          2            3         4               8
//! +---------+----------+------------+---------+---------------+----------------------+
//! | version | type     | encryption | key id  | body length   | body                 |
//! | = 1     | 1..5,    | 0 / 1      | 0..255  | u32 BE        | nonce ‖ ct ‖ tag     |
//! |         | 16..22,64|            |         |               |                      |
//! +---------+----------+------------+---------+---------------+----------------------+
//! ```
//!
//! The label is the AES-GCM associated data: every byte of it is authenticated, and none of it
//! is trusted before the tag verifies.

use gossip_core::PacketType;

use crate::drops::DropReason;

/// Bytes of the label.
pub const LABEL_LEN: usize = 8;

/// The only wire version this crate speaks.
pub const WIRE_VERSION: u8 = 1;

/// The encryption byte (label byte 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cipher {
    /// 0: the body is the bare envelope. Accepted only by a node configured for plaintext.
    Plaintext = 0,
    /// 1: the body is `nonce (12) ‖ ciphertext ‖ tag (16)` under AES-256-GCM.
    Aes256Gcm = 1,
}

impl Cipher {
    /// Parses the encryption byte; `None` for a byte no cipher uses.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Cipher::Plaintext),
            1 => Some(Cipher::Aes256Gcm),
            _ => None,
        }
    }
}

/// A label, parsed or to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label {
    /// Byte 1.
    pub packet_type: PacketType,
    /// Byte 2.
    pub cipher: Cipher,
    /// Byte 3: the keyring slot (key id) that sealed the body; 0 for plaintext.
    pub key_id: u8,
    /// Bytes 4..8: length of the body in bytes (the datagram minus the label).
    pub body_len: u32,
}

impl Label {
    /// Parses the label's bytes: checks 3 to 5 of `docs/wire.md` section 1.4 (version, type,
    /// cipher byte). Nothing else is checked here (not the cipher the receiver requires, not
    /// the body length against the datagram, not the key id): the codec does, in order.
    pub(crate) fn parse(bytes: &[u8; LABEL_LEN]) -> Result<Label, DropReason> {
        if bytes[0] != WIRE_VERSION {
            return Err(DropReason::UnsupportedVersion);
        }
        let packet_type = PacketType::from_byte(bytes[1]).ok_or(DropReason::UnknownType)?;
        let cipher = Cipher::from_byte(bytes[2]).ok_or(DropReason::UnknownCipher)?;
        Ok(Label {
            packet_type,
            cipher,
            key_id: bytes[3],
            body_len: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        })
    }

    /// The label's bytes.
    pub fn to_bytes(&self) -> [u8; LABEL_LEN] {
        let len = self.body_len.to_be_bytes();
        [
            WIRE_VERSION,
            self.packet_type.to_byte(),
            self.cipher as u8,
            self.key_id,
            len[0],
            len[1],
            len[2],
            len[3],
        ]
    }
}
