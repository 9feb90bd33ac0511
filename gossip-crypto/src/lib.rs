#![deny(missing_docs)]
//! Cryptography of the gossip framework: packet sealing with AES-256-GCM under a rotating
//! [`Keyring`], Argon2id derivation of a cluster key from a passphrase, ed25519 identities and
//! signatures ([`Identity`], [`verify`]), and SHA-256 ([`sha256`]).
//!
//! Sealing (below) authenticates a datagram to *the cluster*: anyone holding the key. A
//! signature authenticates a feed message to *its author*, whoever forwards it: see
//! [`Identity`] and the [`identity`] module (strict ed25519 verification, RFC 8032).
//!
//! # Model
//!
//! A datagram is an 8-byte label followed by a body (DESIGN.md §5). The label is not encrypted
//! but is authenticated: it is the AES-GCM associated data (`aad`), so nothing in it can be
//! trusted before the tag verifies, and a label changed in flight makes the packet fail to open.
//!
//! ```text
//!  label (8 bytes, = aad)         body
//! +---+----+-----+------+------+-------------------+------------------+-----------------+
//! |ver|type|enc=1|key id|length| nonce (NONCE_LEN) | ciphertext (n)   | tag (TAG_LEN)   |
//! +---+----+-----+------+------+-------------------+------------------+-----------------+
//!                                \_____________ n + SEAL_OVERHEAD bytes ______________/
//! ```
//!
//! Every seal draws a fresh 96-bit nonce from a caller-supplied cryptographic RNG, so nodes
//! need no shared counter. The price is a per-key budget: with random 96-bit nonces the chance
//! of a repeated nonce (which breaks AES-GCM confidentiality and authenticity for that key)
//! stays negligible only while the number of packets sealed under one key is kept well under
//! 2^32 (NIST SP 800-38D §8.3). The remedy is rotation: a cluster that could approach that
//! count over a key's lifetime rotates to a new key before it does.
//!
//! Byte 3 of the label carries the [key id](Key::id) of the key that sealed the body, a byte
//! every holder of the key computes alike without configuration. Ids can collide (1 in 256);
//! the keyring then tries each held key with that id.
//!
//! # Rotation without downtime
//!
//! A [`Keyring`] has one primary key, which seals, and any number of accepted keys, which only
//! open. To replace key `A` with key `B` across a running cluster:
//!
//! 1. add `B` as accepted on every node ([`Keyring::add_accepted`]); nodes still seal with `A`;
//! 2. once every node holds `B`, make `B` primary everywhere ([`Keyring::rotate`]); `A` stays
//!    accepted, so packets sealed with `A` by nodes not yet switched still open;
//! 3. once every node seals with `B`, remove `A` everywhere ([`Keyring::remove`]).
//!
//! # Key derivation
//!
//! [`Key::from_passphrase`] runs Argon2id (RFC 9106, version 0x13) with
//! m = [`ARGON2_MEMORY_KIB`] KiB (19 MiB), t = [`ARGON2_ITERATIONS`], p = [`ARGON2_PARALLELISM`]
//! and a 32-byte output. These are OWASP's recommended minimum for Argon2id (Password Storage
//! Cheat Sheet: m = 19 MiB, t = 2, p = 1), which are also the `argon2` crate's defaults. The salt
//! is [`PASSPHRASE_SALT_PREFIX`] followed by the UTF-8 bytes of the cluster name, so the same
//! passphrase yields different keys in different clusters.
//!
//! # Example
//!
//! ```
//! use gossip_crypto::{Key, Keyring, SEAL_OVERHEAD, NONCE_LEN, TAG_LEN};
//!
//! let keyring = Keyring::new(Key::generate());
//! let label = [1u8, 1, 1, keyring.primary_id(), 0, 0, 0, 0];
//! let plaintext = b"hello";
//! let mut body = vec![0u8; plaintext.len() + SEAL_OVERHEAD];
//! body[NONCE_LEN..NONCE_LEN + plaintext.len()].copy_from_slice(plaintext);
//! keyring.seal_in_place(&mut rand::rng(), &label, &mut body)?;
//!
//! let opened = keyring.open_in_place(label[3], &label, &mut body)?;
//! assert_eq!(opened, plaintext);
//! # Ok::<(), gossip_crypto::CryptoError>(())
//! ```

use std::fmt;

pub mod identity;

pub use identity::{
    HASH_LEN, Identity, PUBLIC_KEY_LEN, SEED_LEN, SIGNATURE_LEN, Sha256Hasher, sha256, verify,
};
pub use zeroize::Zeroizing;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of an AES-256 key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of an AES-GCM nonce in bytes (96 bits).
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM authentication tag in bytes (128 bits).
pub const TAG_LEN: usize = 16;
/// Bytes sealing adds to a plaintext (nonce + tag) = 28.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Argon2id memory cost in KiB (19 MiB; OWASP's recommendation, the `argon2` crate default).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
/// Argon2id iteration (time) cost.
pub const ARGON2_ITERATIONS: u32 = 2;
/// Argon2id parallelism (lanes).
pub const ARGON2_PARALLELISM: u32 = 1;
/// Prefix of the Argon2id salt; the UTF-8 bytes of the cluster name follow it.
pub const PASSPHRASE_SALT_PREFIX: &[u8] = b"gossip/v1/cluster:";
/// Domain-separation prefix hashed before the key bytes to compute a [key id](Key::id).
pub const KEY_ID_CONTEXT: &[u8] = b"gossip/v1/key-id";

/// Opaque failure of a seal, an open or a signature check. It deliberately says nothing about
/// the cause (short body, unknown key id, tag mismatch, bad signature, invalid public key), so
/// an attacker learns nothing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, thiserror::Error)]
#[error("cryptographic operation failed")]
pub struct CryptoError;

/// Errors building a [`Key`]. No state exists before a key is built, so none changes on error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The raw key (or the decoded hex) was not [`KEY_LEN`] bytes long.
    #[error("key must be {KEY_LEN} bytes, got {len}")]
    WrongLength {
        /// Length received, in bytes.
        len: usize,
    },
    /// The text was not an even number of hexadecimal digits.
    #[error("key text is not hexadecimal")]
    InvalidHex,
    /// The passphrase was empty.
    #[error("passphrase is empty")]
    EmptyPassphrase,
    /// The cluster name was empty.
    #[error("cluster name is empty")]
    EmptyCluster,
    /// Argon2id refused the input (for example a passphrase over its length limit).
    #[error("key derivation failed: {0}")]
    Derivation(String),
}

/// A 256-bit AES-GCM key.
///
/// The bytes are zeroized when the value (or any clone of it) is dropped. `Debug` prints only
/// the [key id](Key::id), never the bytes. Equality compares the bytes in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key {
    bytes: [u8; KEY_LEN],
}

impl Key {
    /// Wraps 32 raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key { bytes }
    }

    /// Copies a key from a slice of exactly [`KEY_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`KeyError::WrongLength`] if `bytes.len() != KEY_LEN`.
    pub fn from_slice(bytes: &[u8]) -> Result<Key, KeyError> {
        if bytes.len() != KEY_LEN {
            return Err(KeyError::WrongLength { len: bytes.len() });
        }
        let mut key = Key {
            bytes: [0; KEY_LEN],
        };
        key.bytes.copy_from_slice(bytes);
        Ok(key)
    }

    /// Parses 64 hexadecimal digits (either case), as written by [`Key::to_hex`]. Leading and
    /// trailing whitespace (such as a key file's final newline) is ignored.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidHex`] if the trimmed text contains a non-hex character or an odd
    /// number of digits; [`KeyError::WrongLength`] (with the decoded byte count) if it is valid
    /// hex of other than 64 digits.
    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let digits = text.trim().as_bytes();
        if digits.len() % 2 != 0 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(KeyError::InvalidHex);
        }
        if digits.len() != 2 * KEY_LEN {
            return Err(KeyError::WrongLength {
                len: digits.len() / 2,
            });
        }
        let mut key = Key {
            bytes: [0; KEY_LEN],
        };
        for (byte, pair) in key.bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(key)
    }

    /// The key as 64 lowercase hexadecimal digits, for writing key files. The returned string
    /// is not zeroized; callers that care should zeroize it after use.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(2 * KEY_LEN);
        for byte in &self.bytes {
            text.push(char::from(DIGITS[usize::from(byte >> 4)]));
            text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        text
    }

    /// Derives the cluster key from a passphrase with Argon2id, version 0x13,
    /// m = [`ARGON2_MEMORY_KIB`] KiB, t = [`ARGON2_ITERATIONS`], p = [`ARGON2_PARALLELISM`],
    /// 32-byte output; salt = [`PASSPHRASE_SALT_PREFIX`] ‖ UTF-8 bytes of `cluster`. The
    /// passphrase is used byte for byte (no trimming or normalisation). Takes tens to hundreds
    /// of milliseconds and 19 MiB of memory.
    ///
    /// # Errors
    ///
    /// [`KeyError::EmptyPassphrase`], [`KeyError::EmptyCluster`] for empty inputs;
    /// [`KeyError::Derivation`] if Argon2 rejects an input (e.g. over its length limits).
    pub fn from_passphrase(passphrase: &str, cluster: &str) -> Result<Key, KeyError> {
        if passphrase.is_empty() {
            return Err(KeyError::EmptyPassphrase);
        }
        if cluster.is_empty() {
            return Err(KeyError::EmptyCluster);
        }
        let params = Params::new(
            ARGON2_MEMORY_KIB,
            ARGON2_ITERATIONS,
            ARGON2_PARALLELISM,
            Some(KEY_LEN),
        )
        .map_err(|e| KeyError::Derivation(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut salt = Vec::with_capacity(PASSPHRASE_SALT_PREFIX.len() + cluster.len());
        salt.extend_from_slice(PASSPHRASE_SALT_PREFIX);
        salt.extend_from_slice(cluster.as_bytes());
        // Derive straight into the zeroize-on-drop key: no other copy of the output exists.
        let mut key = Key {
            bytes: [0; KEY_LEN],
        };
        argon2
            .hash_password_into(passphrase.as_bytes(), &salt, &mut key.bytes)
            .map_err(|e| KeyError::Derivation(e.to_string()))?;
        Ok(key)
    }

    /// A fresh random key from the thread-local CSPRNG (`rand::rng()`: ChaCha12 seeded and
    /// periodically reseeded from the operating system's random source).
    ///
    /// # Panics
    ///
    /// Only if the operating system's random source is unavailable (as `rand::rng()` does).
    pub fn generate() -> Key {
        use rand::RngCore;
        let mut key = Key {
            bytes: [0; KEY_LEN],
        };
        rand::rng().fill_bytes(&mut key.bytes);
        key
    }

    /// The key id: the first byte of SHA-256([`KEY_ID_CONTEXT`] ‖ key bytes). It goes in
    /// byte 3 of the packet label to name the key that sealed the body. Every node holding the
    /// key computes the same id; distinct keys collide with probability 1/256.
    pub fn id(&self) -> u8 {
        let digest = Sha256::new()
            .chain_update(KEY_ID_CONTEXT)
            .chain_update(self.bytes)
            .finalize();
        digest[0]
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.bytes.into())
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        // Constant time: no early exit on the first differing byte.
        let diff = self
            .bytes
            .iter()
            .zip(other.bytes.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &format_args!("{:#04x}", self.id()))
            .finish_non_exhaustive()
    }
}

/// Value of one ASCII hex digit; callers have checked `is_ascii_hexdigit`.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// One held key with its id and its ready cipher (built once, not per packet).
#[derive(Clone)]
struct Entry {
    key: Key,
    id: u8,
    cipher: Aes256Gcm,
}

impl Entry {
    fn new(key: Key) -> Entry {
        Entry {
            id: key.id(),
            cipher: key.cipher(),
            key,
        }
    }
}

/// The keys a node seals and opens packets with: one primary key that seals, and further
/// accepted keys that only open. Each key's AES-256-GCM cipher is built once when the key is
/// added. Key bytes are zeroized on drop, and so are the AES round keys and POLYVAL state
/// inside the ciphers (this crate turns on the `aes` and `polyval` crates' `zeroize`
/// features; aes-gcm's own `zeroize` feature does not reach them).
///
/// # Rotation without downtime
///
/// To replace key `A` by key `B` in a running cluster:
///
/// 1. add `B` as accepted on every node ([`Keyring::add_accepted`]); everyone still seals
///    with `A` and can now open `B`;
/// 2. make `B` primary everywhere ([`Keyring::rotate`]); `A` stays accepted, so packets from
///    nodes that have not switched yet still open;
/// 3. remove `A` everywhere ([`Keyring::remove`] with `A`'s id).
///
/// Rotate well before a key has sealed 2^32 packets (random-nonce budget; see the crate docs).
///
/// # Example
///
/// ```
/// use gossip_crypto::{Key, Keyring};
///
/// let (old, new) = (Key::generate(), Key::generate());
/// let mut keyring = Keyring::new(old.clone());
/// keyring.add_accepted(new.clone()); // step 1
/// keyring.rotate(new.clone()); // step 2: old stays accepted
/// assert_eq!(keyring.primary_id(), new.id());
/// assert!(keyring.contains_key_id(old.id()));
/// if old.id() != new.id() {
///     assert_eq!(keyring.remove(old.id()), 1); // step 3
///     assert_eq!(keyring.len(), 1);
/// }
/// ```
#[derive(Clone)]
pub struct Keyring {
    /// Seals, and is tried first when opening.
    primary: Entry,
    /// Only open, tried in insertion order. No key is held twice (primary included).
    accepted: Vec<Entry>,
}

impl Keyring {
    /// A keyring holding only `primary`.
    pub fn new(primary: Key) -> Keyring {
        Keyring {
            primary: Entry::new(primary),
            accepted: Vec::new(),
        }
    }

    /// A keyring whose primary is [`Key::from_passphrase`]`(passphrase, cluster)`.
    ///
    /// # Errors
    ///
    /// As [`Key::from_passphrase`].
    pub fn from_passphrase(passphrase: &str, cluster: &str) -> Result<Keyring, KeyError> {
        Key::from_passphrase(passphrase, cluster).map(Keyring::new)
    }

    /// Builder form of [`Keyring::add_accepted`].
    #[must_use]
    pub fn with_accepted(mut self, key: Key) -> Keyring {
        self.add_accepted(key);
        self
    }

    /// Adds `key` as an accepted key (opens, never seals). Does nothing if the keyring already
    /// holds the same key, as primary or accepted.
    pub fn add_accepted(&mut self, key: Key) {
        if !self.holds(&key) {
            self.accepted.push(Entry::new(key));
        }
    }

    /// Makes `new_primary` the sealing key. The previous primary stays as an accepted key. If
    /// `new_primary` was already held as accepted it is moved, not duplicated; if it is
    /// already the primary nothing changes.
    pub fn rotate(&mut self, new_primary: Key) {
        if self.primary.key == new_primary {
            return;
        }
        let entry = match self.accepted.iter().position(|e| e.key == new_primary) {
            Some(index) => self.accepted.remove(index),
            None => Entry::new(new_primary),
        };
        let old = std::mem::replace(&mut self.primary, entry);
        self.accepted.push(old);
    }

    /// Removes every accepted key whose id is `key_id` and returns how many were removed. The
    /// primary key is never removed (rotate it away first).
    pub fn remove(&mut self, key_id: u8) -> usize {
        let before = self.accepted.len();
        self.accepted.retain(|entry| entry.id != key_id);
        before - self.accepted.len()
    }

    /// Makes the accepted key whose id is `key_id` the primary, as [`Keyring::rotate`] does
    /// with that key (the previous primary stays accepted). For operators who name keys by
    /// their id (section 4.3 of the wire document) rather than by their bytes.
    ///
    /// Returns how many accepted keys have that id: the keyring changed only if it is 1.
    /// 0 means no accepted key has it (the primary's own id also gives 0 and changes nothing);
    /// 2 or more means distinct keys collide on that id (probability 1/256 per pair), and
    /// which one to seal with is ambiguous: use [`Keyring::rotate`] with the key itself.
    pub fn promote(&mut self, key_id: u8) -> usize {
        let matching: Vec<usize> = self
            .accepted
            .iter()
            .enumerate()
            .filter(|(_, e)| e.id == key_id)
            .map(|(i, _)| i)
            .collect();
        if let [index] = matching[..] {
            let entry = self.accepted.remove(index);
            let old = std::mem::replace(&mut self.primary, entry);
            self.accepted.push(old);
        }
        matching.len()
    }

    /// Ids of the accepted (open-only) keys, in insertion order; the primary's is
    /// [`Keyring::primary_id`].
    pub fn accepted_ids(&self) -> Vec<u8> {
        self.accepted.iter().map(|e| e.id).collect()
    }

    /// Id of the primary (sealing) key: the value for byte 3 of an outgoing label.
    pub fn primary_id(&self) -> u8 {
        self.primary.id
    }

    /// Whether any held key (primary or accepted) has id `key_id`.
    pub fn contains_key_id(&self, key_id: u8) -> bool {
        self.entries().any(|e| e.id == key_id)
    }

    /// Number of keys held, primary included (at least 1).
    pub fn len(&self) -> usize {
        1 + self.accepted.len()
    }

    /// Always `false`: a keyring holds its primary key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Seals in place with the primary key.
    ///
    /// `body` is laid out as `[NONCE_LEN bytes, overwritten] ‖ plaintext ‖ [TAG_LEN bytes,
    /// overwritten]`, so it is `plaintext.len() + SEAL_OVERHEAD` bytes long. A fresh 96-bit
    /// nonce is drawn from `rng`; the plaintext is encrypted in place with `aad` (the packet
    /// label) as associated data; nonce and tag are written around it. Nothing is allocated.
    ///
    /// # Errors
    ///
    /// [`CryptoError`] if `body.len() < SEAL_OVERHEAD` or AES-GCM refuses the lengths; `body`
    /// is then unspecified and must not be sent.
    pub fn seal_in_place<R: rand::CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<(), CryptoError> {
        let (nonce, _) = split_body(body)?;
        rng.fill_bytes(nonce);
        self.seal_with_nonce(aad, body)
    }

    /// The sealing itself, once the nonce is in place. Not generic, so the AES-GCM loops are
    /// compiled here (at this crate's optimisation level) and not in every caller.
    fn seal_with_nonce(&self, aad: &[u8], body: &mut [u8]) -> Result<(), CryptoError> {
        let (nonce, rest) = split_body(body)?;
        let (plaintext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let computed = self
            .primary
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(nonce), aad, plaintext)
            .map_err(|_| CryptoError)?;
        tag.copy_from_slice(&computed);
        Ok(())
    }

    /// Opens in place a body laid out as `nonce ‖ ciphertext ‖ tag`, trying every held key
    /// whose id is `key_id`, primary first. On success the ciphertext has been replaced by the
    /// plaintext, which is returned as a sub-slice of `body` (`body.len() - SEAL_OVERHEAD`
    /// bytes, starting at offset [`NONCE_LEN`]).
    ///
    /// # Errors
    ///
    /// [`CryptoError`] if the body is shorter than [`SEAL_OVERHEAD`], no held key has id
    /// `key_id`, or the tag verifies under none of them (wrong key, or nonce, ciphertext, tag
    /// or `aad` altered). The error reveals nothing else; `body` is left unchanged.
    pub fn open_in_place<'a>(
        &self,
        key_id: u8,
        aad: &[u8],
        body: &'a mut [u8],
    ) -> Result<&'a [u8], CryptoError> {
        let (nonce, rest) = split_body(body)?;
        let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce = Nonce::from_slice(nonce);
        let tag = Tag::from_slice(tag);
        for entry in self.entries().filter(|e| e.id == key_id) {
            // aes-gcm verifies the tag before decrypting and leaves the buffer untouched on
            // failure, so the next candidate key sees the original ciphertext.
            if entry
                .cipher
                .decrypt_in_place_detached(nonce, aad, ciphertext, tag)
                .is_ok()
            {
                return Ok(ciphertext);
            }
        }
        Err(CryptoError)
    }

    /// Primary first, then accepted keys in insertion order.
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        std::iter::once(&self.primary).chain(&self.accepted)
    }

    fn holds(&self, key: &Key) -> bool {
        self.entries().any(|e| e.key == *key)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accepted: Vec<String> = self
            .accepted
            .iter()
            .map(|e| format!("{:#04x}", e.id))
            .collect();
        f.debug_struct("Keyring")
            .field("primary_id", &format_args!("{:#04x}", self.primary_id()))
            .field("accepted_ids", &accepted)
            .finish()
    }
}

/// Splits a body into `(nonce, ciphertext ‖ tag)`, refusing bodies shorter than the overhead.
fn split_body(body: &mut [u8]) -> Result<(&mut [u8], &mut [u8]), CryptoError> {
    if body.len() < SEAL_OVERHEAD {
        return Err(CryptoError);
    }
    Ok(body.split_at_mut(NONCE_LEN))
}

#[cfg(test)]
mod tests;
