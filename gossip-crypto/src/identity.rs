//! Ed25519 identities and signatures (RFC 8032, via `ed25519-dalek` 2.x), and SHA-256.
//!
//! A node's id and a feed's id are its ed25519 public key (Secure Scuttlebutt's "peer id =
//! public key"). [`Identity`] holds the secret signing key; [`verify`] checks a signature
//! against a public key alone, so a receiver needs nothing but the 32 bytes that name the
//! author.
//!
//! Verification is *strict* (`verify_strict`): besides the RFC 8032 checks it rejects
//! signatures under small-order ("weak") public keys and with a small-order `R` component,
//! which plain ed25519 verification accepts. Without this, a key such as the identity point
//! lets anyone forge a "valid" signature on any message, and one signature can be valid for
//! several messages. `s` must be canonical (below the group order), so a signature cannot be
//! re-encoded into a second valid one (no malleability): a message id that hashes the
//! signature is therefore stable.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;

/// Length of an ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an ed25519 secret seed in bytes (RFC 8032's 32-byte private key).
pub const SEED_LEN: usize = 32;
/// Length of an ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a SHA-256 digest in bytes.
pub const HASH_LEN: usize = 32;

/// An ed25519 signing identity: the 32-byte secret seed and the public key derived from it.
///
/// The secret is zeroized when the value (or any clone of it) is dropped (`ed25519-dalek`'s
/// `zeroize` feature). `Debug` prints only the public key. Signing is deterministic
/// (RFC 8032): the same identity and message always give the same signature, so signing draws
/// no randomness.
///
/// # Example
///
/// ```
/// use gossip_crypto::{Identity, verify};
///
/// let identity = Identity::generate();
/// let signature = identity.sign(b"hello");
/// assert!(verify(&identity.public_key(), b"hello", &signature).is_ok());
/// assert!(verify(&identity.public_key(), b"hellO", &signature).is_err());
///
/// // The seed restores the same identity.
/// let restored = Identity::from_bytes(&identity.to_bytes());
/// assert_eq!(restored.public_key(), identity.public_key());
/// ```
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

// `SigningKey` zeroizes its secret in its own `Drop` (the `zeroize` feature is on).
impl ZeroizeOnDrop for Identity {}

impl Identity {
    /// A fresh identity from a 32-byte seed drawn from the thread-local CSPRNG
    /// (`rand::rng()`: ChaCha12 seeded and periodically reseeded from the operating system).
    /// The seed buffer is zeroized after use.
    ///
    /// # Panics
    ///
    /// Only if the operating system's random source is unavailable (as `rand::rng()` does).
    pub fn generate() -> Identity {
        use rand::RngCore;
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rand::rng().fill_bytes(seed.as_mut());
        Identity::from_bytes(&seed)
    }

    /// The identity whose secret seed is `seed` (RFC 8032's 32-byte private key). Every seed
    /// is valid. The caller should zeroize its copy of the seed.
    pub fn from_bytes(seed: &[u8; SEED_LEN]) -> Identity {
        Identity {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The secret seed, for storing the identity. It is zeroized when the returned value is
    /// dropped; keep it no longer than needed and never log it.
    pub fn to_bytes(&self) -> Zeroizing<[u8; SEED_LEN]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public key: the node id and feed id of this identity.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.signing.verifying_key().to_bytes()
    }

    /// The ed25519 signature of `msg` (RFC 8032, deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(msg).to_bytes()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field(
                "public_key",
                &format_args!("{}", to_hex(&self.public_key())),
            )
            .finish_non_exhaustive()
    }
}

/// Checks that `signature` is `public_key`'s ed25519 signature of `msg`, strictly: see the
/// [module doc](self) (small-order keys and `R`, non-canonical `s` are rejected).
///
/// # Errors
///
/// [`CryptoError`] if `public_key` is not a valid curve point, is of small order, or the
/// signature does not verify; the error does not say which.
///
/// # Example
///
/// ```
/// use gossip_crypto::{Identity, verify};
///
/// let identity = Identity::from_bytes(&[7; 32]);
/// let mut signature = identity.sign(b"msg");
/// assert_eq!(verify(&identity.public_key(), b"msg", &signature), Ok(()));
/// signature[0] ^= 1;
/// assert!(verify(&identity.public_key(), b"msg", &signature).is_err());
/// ```
pub fn verify(
    public_key: &[u8; PUBLIC_KEY_LEN],
    msg: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), CryptoError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| CryptoError)?;
    let signature = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(msg, &signature).map_err(|_| CryptoError)
}

/// The SHA-256 digest of `data` (FIPS 180-4).
///
/// # Example
///
/// ```
/// let digest = gossip_crypto::sha256(b"abc");
/// assert_eq!(digest[..4], [0xba, 0x78, 0x16, 0xbf]);
/// ```
pub fn sha256(data: &[u8]) -> [u8; HASH_LEN] {
    Sha256::digest(data).into()
}

/// SHA-256 over data given in parts (for example the chunks of a blob read one page at a
/// time): the same digest as [`sha256`] of the concatenation.
///
/// ```
/// let mut hasher = gossip_crypto::Sha256Hasher::new();
/// hasher.update(b"a");
/// hasher.update(b"bc");
/// assert_eq!(hasher.finalize(), gossip_crypto::sha256(b"abc"));
/// ```
#[derive(Clone, Default)]
pub struct Sha256Hasher(Sha256);

impl fmt::Debug for Sha256Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sha256Hasher")
    }
}

impl Sha256Hasher {
    /// A hasher over no data yet.
    pub fn new() -> Sha256Hasher {
        Sha256Hasher(Sha256::new())
    }

    /// Appends `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything appended.
    pub fn finalize(self) -> [u8; HASH_LEN] {
        self.0.finalize().into()
    }
}

/// Lowercase hex of `bytes`, for `Debug` output of public values.
fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex<const N: usize>(text: &str) -> [u8; N] {
        let digits = text.as_bytes();
        assert_eq!(digits.len(), 2 * N);
        let mut out = [0u8; N];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).unwrap();
            *byte = u8::from_str_radix(pair, 16).unwrap();
        }
        out
    }

    /// RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte, 0x72).
    #[test]
    fn rfc8032_test_vectors() {
        let cases: [(&str, &str, &[u8], &str); 2] = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                b"",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                &[0x72],
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
        ];
        for (seed, public, msg, signature) in cases {
            let identity = Identity::from_bytes(&unhex(seed));
            assert_eq!(identity.public_key(), unhex::<32>(public));
            assert_eq!(identity.sign(msg), unhex::<64>(signature));
            assert_eq!(verify(&unhex(public), msg, &unhex(signature)), Ok(()));
        }
    }

    #[test]
    fn sha256_test_vectors() {
        assert_eq!(
            sha256(b""),
            unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(
            sha256(b"abc"),
            unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn seed_round_trip_and_distinct_identities() {
        let a = Identity::generate();
        let b = Identity::generate();
        assert_ne!(a.public_key(), b.public_key());
        let restored = Identity::from_bytes(&a.to_bytes());
        assert_eq!(restored.public_key(), a.public_key());
        assert_eq!(restored.sign(b"m"), a.sign(b"m"));
    }

    #[test]
    fn altered_message_signature_or_key_fails() {
        let identity = Identity::from_bytes(&[1; SEED_LEN]);
        let other = Identity::from_bytes(&[2; SEED_LEN]);
        let msg = b"the message";
        let signature = identity.sign(msg);
        let key = identity.public_key();
        assert_eq!(verify(&key, msg, &signature), Ok(()));
        assert_eq!(verify(&key, b"the messagf", &signature), Err(CryptoError));
        assert_eq!(
            verify(&other.public_key(), msg, &signature),
            Err(CryptoError)
        );
        for bit in [0, 100, 255, 256, 511] {
            let mut flipped = signature;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(verify(&key, msg, &flipped), Err(CryptoError), "bit {bit}");
        }
    }

    /// With the identity point as public key and R = identity, s = 0, the plain RFC 8032
    /// equation holds for every message; strict verification must refuse it.
    #[test]
    fn small_order_key_forgery_is_rejected() {
        let mut weak_key = [0u8; PUBLIC_KEY_LEN];
        weak_key[0] = 1; // the identity point (y = 1)
        let mut forged = [0u8; SIGNATURE_LEN];
        forged[0] = 1; // R = identity, s = 0
        for msg in [&b""[..], b"anything", b"at all"] {
            assert_eq!(verify(&weak_key, msg, &forged), Err(CryptoError));
        }
    }

    /// Adding the group order L to s gives the same signature equation; a strict verifier
    /// refuses the non-canonical s, so a signature cannot be re-encoded.
    #[test]
    fn non_canonical_s_is_rejected() {
        // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let identity = Identity::from_bytes(&[3; SEED_LEN]);
        let signature = identity.sign(b"m");
        let mut malleated = signature;
        let mut carry = 0u16;
        for (i, l) in L.iter().enumerate() {
            let sum = u16::from(signature[32 + i]) + u16::from(*l) + carry;
            malleated[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert_ne!(malleated, signature);
        assert_eq!(
            verify(&identity.public_key(), b"m", &malleated),
            Err(CryptoError)
        );
    }

    #[test]
    fn invalid_public_key_bytes_fail_without_panic() {
        let signature = Identity::from_bytes(&[4; SEED_LEN]).sign(b"m");
        for byte in [0u8, 0x02, 0x80, 0xfe, 0xff] {
            assert_eq!(verify(&[byte; 32], b"m", &signature), Err(CryptoError));
        }
    }

    #[test]
    fn debug_shows_only_the_public_key() {
        let identity = Identity::from_bytes(&[0x5a; SEED_LEN]);
        let text = format!("{identity:?}");
        assert!(text.contains(&to_hex(&identity.public_key())), "{text}");
        assert!(!text.contains(&to_hex(&[0x5a; SEED_LEN])), "{text}");
        assert!(!text.contains("5a5a5a"), "{text}");
    }
}
