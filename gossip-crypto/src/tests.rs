use super::*;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const LABEL: [u8; 8] = [1, 1, 1, 0, 0, 0, 0, 5];
const PLAINTEXT: &[u8] = b"hello";

/// Known answer for `Key::from_passphrase("correct horse", "cluster-a")`; the Argon2 reference
/// C implementation (via argon2-cffi, `hash_secret_raw` with the same parameters) agrees.
const KAT_PASSPHRASE_KEY_HEX: &str =
    "a00875d3055a87fddefb81fd6576e63828027cb69ae6ccd7e5f286f94c2a8e8b";
/// Known answer for the id of that key.
const KAT_PASSPHRASE_KEY_ID: u8 = 0x65;

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn key(byte: u8) -> Key {
    Key::from_bytes([byte; KEY_LEN])
}

/// A body of `plaintext.len() + SEAL_OVERHEAD` bytes with the plaintext in place.
fn body_for(plaintext: &[u8]) -> Vec<u8> {
    let mut body = vec![0xAA; plaintext.len() + SEAL_OVERHEAD];
    body[NONCE_LEN..NONCE_LEN + plaintext.len()].copy_from_slice(plaintext);
    body
}

fn seal(keyring: &Keyring, rng: &mut StdRng, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut body = body_for(plaintext);
    keyring
        .seal_in_place(rng, aad, &mut body)
        .expect("body is long enough");
    body
}

fn open(keyring: &Keyring, key_id: u8, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut copy = body.to_vec();
    keyring
        .open_in_place(key_id, aad, &mut copy)
        .map(<[u8]>::to_vec)
}

/// A key other than `other` with the same id (found by counting; ids are 8 bits).
fn colliding_key(other: &Key) -> Key {
    (1u32..)
        .map(|n| {
            let mut bytes = [0x55; KEY_LEN];
            bytes[..4].copy_from_slice(&n.to_be_bytes());
            Key::from_bytes(bytes)
        })
        .find(|k| k.id() == other.id() && k != other)
        .expect("an 8-bit id collides within a few thousand keys")
}

#[test]
fn seal_open_round_trip_with_aad() {
    let keyring = Keyring::new(key(1));
    let body = seal(&keyring, &mut rng(), &LABEL, PLAINTEXT);
    assert_eq!(body.len(), PLAINTEXT.len() + SEAL_OVERHEAD);
    assert_ne!(&body[NONCE_LEN..NONCE_LEN + PLAINTEXT.len()], PLAINTEXT);
    let opened = open(&keyring, keyring.primary_id(), &LABEL, &body).unwrap();
    assert_eq!(opened, PLAINTEXT);
}

#[test]
fn open_returns_plaintext_sub_slice_of_body() {
    let keyring = Keyring::new(key(1));
    let mut body = seal(&keyring, &mut rng(), &LABEL, PLAINTEXT);
    let range = {
        let base = body.as_ptr() as usize;
        let opened = keyring
            .open_in_place(keyring.primary_id(), &LABEL, &mut body)
            .unwrap();
        let start = opened.as_ptr() as usize - base;
        start..start + opened.len()
    };
    assert_eq!(range, NONCE_LEN..NONCE_LEN + PLAINTEXT.len());
    assert_eq!(&body[range], PLAINTEXT);
}

#[test]
fn empty_plaintext_round_trips() {
    let keyring = Keyring::new(key(1));
    let body = seal(&keyring, &mut rng(), &LABEL, b"");
    assert_eq!(body.len(), SEAL_OVERHEAD);
    assert_eq!(
        open(&keyring, keyring.primary_id(), &LABEL, &body),
        Ok(vec![])
    );
}

#[test]
fn tampering_any_part_fails() {
    let keyring = Keyring::new(key(1));
    let id = keyring.primary_id();
    let body = seal(&keyring, &mut rng(), &LABEL, PLAINTEXT);

    let mut aad = LABEL;
    aad[7] ^= 1;
    assert_eq!(open(&keyring, id, &aad, &body), Err(CryptoError), "aad");

    let parts = [
        ("nonce", 0),
        ("ciphertext", NONCE_LEN + 2),
        ("tag", body.len() - 1),
    ];
    for (part, index) in parts {
        let mut tampered = body.clone();
        tampered[index] ^= 0x80;
        assert_eq!(
            open(&keyring, id, &LABEL, &tampered),
            Err(CryptoError),
            "{part}"
        );
    }
    // The untouched body still opens: the failures above were the tampering.
    assert_eq!(open(&keyring, id, &LABEL, &body).unwrap(), PLAINTEXT);
}

#[test]
fn failed_open_leaves_body_unchanged() {
    let keyring = Keyring::new(key(1));
    let mut body = seal(&keyring, &mut rng(), &LABEL, PLAINTEXT);
    let original = body.clone();
    assert!(
        keyring
            .open_in_place(keyring.primary_id(), b"other", &mut body)
            .is_err()
    );
    assert_eq!(body, original);
}

#[test]
fn keyring_without_the_key_fails() {
    let sealer = Keyring::new(key(1));
    let body = seal(&sealer, &mut rng(), &LABEL, PLAINTEXT);
    // Same key id, different key: the tag does not verify.
    let impostor = Keyring::new(colliding_key(&key(1)));
    assert_eq!(impostor.primary_id(), sealer.primary_id());
    assert_eq!(
        open(&impostor, sealer.primary_id(), &LABEL, &body),
        Err(CryptoError)
    );
    // Different key id: no candidate key at all.
    let other = Keyring::new(key(2));
    assert_ne!(other.primary_id(), sealer.primary_id());
    assert_eq!(
        open(&other, sealer.primary_id(), &LABEL, &body),
        Err(CryptoError)
    );
}

#[test]
fn unknown_key_id_fails() {
    let keyring = Keyring::new(key(1));
    let body = seal(&keyring, &mut rng(), &LABEL, PLAINTEXT);
    let wrong_id = keyring.primary_id().wrapping_add(1);
    assert!(!keyring.contains_key_id(wrong_id));
    assert_eq!(open(&keyring, wrong_id, &LABEL, &body), Err(CryptoError));
}

#[test]
fn short_body_fails() {
    let keyring = Keyring::new(key(1));
    for len in 0..SEAL_OVERHEAD {
        let mut body = vec![0u8; len];
        assert_eq!(
            keyring.seal_in_place(&mut rng(), &LABEL, &mut body),
            Err(CryptoError),
            "seal {len}"
        );
        assert_eq!(
            keyring.open_in_place(keyring.primary_id(), &LABEL, &mut body),
            Err(CryptoError),
            "open {len}"
        );
    }
}

#[test]
fn colliding_ids_are_all_tried() {
    let primary = key(1);
    let accepted = colliding_key(&primary);
    let keyring = Keyring::new(primary).with_accepted(accepted.clone());
    let body = seal(&Keyring::new(accepted), &mut rng(), &LABEL, PLAINTEXT);
    assert_eq!(
        open(&keyring, keyring.primary_id(), &LABEL, &body).unwrap(),
        PLAINTEXT
    );
}

#[test]
fn rotation_keeps_old_packets_and_seals_new_ones_under_new_id() {
    let (old, new) = (key(1), key(2));
    assert_ne!(old.id(), new.id());
    let mut rng = rng();
    let mut node = Keyring::new(old.clone());
    let before = seal(&node, &mut rng, &LABEL, PLAINTEXT);

    node.rotate(new.clone());
    assert_eq!(node.primary_id(), new.id());
    assert_eq!(node.len(), 2);
    assert_eq!(open(&node, old.id(), &LABEL, &before).unwrap(), PLAINTEXT);

    let after = seal(&node, &mut rng, &LABEL, PLAINTEXT);
    assert_eq!(
        open(&Keyring::new(new.clone()), new.id(), &LABEL, &after).unwrap(),
        PLAINTEXT,
        "sealed under the new key"
    );
    assert_eq!(
        open(&Keyring::new(old.clone()), old.id(), &LABEL, &after),
        Err(CryptoError),
        "not under the old one"
    );

    // A node that still holds only the old key cannot open new packets...
    let mut lagging = Keyring::new(old.clone());
    assert_eq!(open(&lagging, new.id(), &LABEL, &after), Err(CryptoError));
    // ...until it accepts the new key.
    lagging.add_accepted(new.clone());
    assert_eq!(open(&lagging, new.id(), &LABEL, &after).unwrap(), PLAINTEXT);

    // Removing the old key makes old packets fail.
    assert_eq!(node.remove(old.id()), 1);
    assert_eq!(node.len(), 1);
    assert!(!node.contains_key_id(old.id()));
    assert_eq!(open(&node, old.id(), &LABEL, &before), Err(CryptoError));
    assert_eq!(open(&node, new.id(), &LABEL, &after).unwrap(), PLAINTEXT);
}

#[test]
fn remove_never_removes_the_primary() {
    let mut keyring = Keyring::new(key(1));
    assert_eq!(keyring.remove(key(1).id()), 0);
    assert_eq!(keyring.len(), 1);
    assert!(!keyring.is_empty());
    assert!(keyring.contains_key_id(key(1).id()));
}

#[test]
fn keys_are_held_once() {
    let mut keyring = Keyring::new(key(1)).with_accepted(key(1));
    assert_eq!(keyring.len(), 1);
    keyring.add_accepted(key(2));
    keyring.add_accepted(key(2));
    assert_eq!(keyring.len(), 2);
    // Promoting an accepted key moves it rather than duplicating it.
    keyring.rotate(key(2));
    assert_eq!(keyring.len(), 2);
    assert_eq!(keyring.primary_id(), key(2).id());
    // Rotating to the current primary changes nothing.
    keyring.rotate(key(2));
    assert_eq!(keyring.len(), 2);
    assert_eq!(keyring.primary_id(), key(2).id());
    assert!(keyring.contains_key_id(key(1).id()));
}

#[test]
fn two_seals_of_the_same_plaintext_differ() {
    let keyring = Keyring::new(key(1));
    let mut rng = rng();
    let first = seal(&keyring, &mut rng, &LABEL, PLAINTEXT);
    let second = seal(&keyring, &mut rng, &LABEL, PLAINTEXT);
    assert_ne!(first[..NONCE_LEN], second[..NONCE_LEN], "nonce");
    assert_ne!(
        first[NONCE_LEN..],
        second[NONCE_LEN..],
        "ciphertext and tag"
    );
}

#[test]
fn seal_draws_the_nonce_from_the_given_rng() {
    let keyring = Keyring::new(key(1));
    let body = seal(&keyring, &mut rng(), &LABEL, PLAINTEXT);
    let mut expected = [0u8; NONCE_LEN];
    rand::RngCore::fill_bytes(&mut rng(), &mut expected);
    assert_eq!(body[..NONCE_LEN], expected);
}

#[test]
fn generated_keys_differ() {
    assert_ne!(Key::generate(), Key::generate());
}

#[test]
fn passphrase_derivation_is_deterministic_and_separated() {
    let a = Key::from_passphrase("correct horse", "cluster-a").unwrap();
    let again = Key::from_passphrase("correct horse", "cluster-a").unwrap();
    assert_eq!(a, again);
    assert_eq!(a.to_hex(), again.to_hex());
    assert_eq!(a.id(), again.id());
    let other_cluster = Key::from_passphrase("correct horse", "cluster-b").unwrap();
    let other_passphrase = Key::from_passphrase("correct horse!", "cluster-a").unwrap();
    assert_ne!(a, other_cluster);
    assert_ne!(a, other_passphrase);
    assert_ne!(other_cluster, other_passphrase);

    let keyring = Keyring::from_passphrase("correct horse", "cluster-a").unwrap();
    assert_eq!(keyring.primary_id(), a.id());
}

#[test]
fn passphrase_known_answer() {
    // Independent computation with the argon2 crate from the documented parameters.
    let params = argon2::Params::new(19_456, 2, 1, Some(32)).unwrap();
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut expected = [0u8; 32];
    argon2
        .hash_password_into(
            b"correct horse",
            b"gossip/v1/cluster:cluster-a",
            &mut expected,
        )
        .unwrap();

    let key = Key::from_passphrase("correct horse", "cluster-a").unwrap();
    assert_eq!(key, Key::from_bytes(expected));
    // Hard-coded so a change of parameters (or of the argon2 crate) is caught.
    assert_eq!(key.to_hex(), KAT_PASSPHRASE_KEY_HEX);
    assert_eq!(key.id(), KAT_PASSPHRASE_KEY_ID);
}

#[test]
fn key_id_known_answer() {
    // Independent computation: first byte of SHA-256("gossip/v1/key-id" || key).
    let bytes = [0x42u8; KEY_LEN];
    let mut input = b"gossip/v1/key-id".to_vec();
    input.extend_from_slice(&bytes);
    let expected = Sha256::digest(&input)[0];
    let key = Key::from_bytes(bytes);
    assert_eq!(key.id(), expected);
    assert_eq!(key.id(), KAT_KEY_ID_0X42);
    // The all-zero key too.
    assert_eq!(Key::from_bytes([0; KEY_LEN]).id(), KAT_KEY_ID_ZERO);
}

/// Known answer: id of the key `[0x42; 32]`.
const KAT_KEY_ID_0X42: u8 = 0x3c;
/// Known answer: id of the key `[0; 32]`.
const KAT_KEY_ID_ZERO: u8 = 0xd4;

#[test]
fn empty_passphrase_or_cluster_is_rejected() {
    assert_eq!(
        Key::from_passphrase("", "cluster-a"),
        Err(KeyError::EmptyPassphrase)
    );
    assert_eq!(
        Key::from_passphrase("correct horse", ""),
        Err(KeyError::EmptyCluster)
    );
    assert!(matches!(
        Keyring::from_passphrase("", "c"),
        Err(KeyError::EmptyPassphrase)
    ));
}

#[test]
fn hex_round_trip() {
    let key = Key::from_bytes(core::array::from_fn(|i| (i as u8).wrapping_mul(37)));
    let text = key.to_hex();
    assert_eq!(text.len(), 64);
    assert!(
        text.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    );
    assert_eq!(Key::from_hex(&text).unwrap(), key);
    assert_eq!(Key::from_hex(&format!("  {text}\n")).unwrap(), key);
    assert_eq!(Key::from_hex(&text.to_uppercase()).unwrap(), key);
    assert_eq!(
        Key::from_hex(&"0f".repeat(32)).unwrap(),
        Key::from_bytes([0x0f; 32])
    );
}

#[test]
fn bad_hex_is_rejected() {
    let good = "ab".repeat(32);
    let cases = [
        (format!("{}g", &good[..63]), KeyError::InvalidHex),
        (format!("{}é", &good[..62]), KeyError::InvalidHex),
        (good[..63].to_string(), KeyError::InvalidHex),
        (
            format!("{} ", &good[..32]) + &good[32..62],
            KeyError::InvalidHex,
        ),
        (good[..62].to_string(), KeyError::WrongLength { len: 31 }),
        (format!("{good}ab"), KeyError::WrongLength { len: 33 }),
        (String::new(), KeyError::WrongLength { len: 0 }),
    ];
    for (text, error) in cases {
        assert_eq!(Key::from_hex(&text), Err(error), "{text:?}");
    }
}

#[test]
fn from_slice_checks_length() {
    assert_eq!(Key::from_slice(&[7; 32]).unwrap(), Key::from_bytes([7; 32]));
    assert_eq!(
        Key::from_slice(&[7; 31]),
        Err(KeyError::WrongLength { len: 31 })
    );
    assert_eq!(
        Key::from_slice(&[7; 33]),
        Err(KeyError::WrongLength { len: 33 })
    );
}

#[test]
fn debug_does_not_reveal_key_bytes() {
    let key = Key::from_bytes(core::array::from_fn(|i| i as u8 ^ 0xC3));
    let hex = key.to_hex();
    let debug = format!("{key:?} {key:#?}");
    assert!(!debug.contains(&hex), "{debug}");
    assert!(!debug.contains(&hex[..8]), "{debug}");
    assert!(!debug.contains(&hex.to_uppercase()[..8]), "{debug}");
    assert!(debug.contains(&format!("{:#04x}", key.id())), "{debug}");

    let keyring = Keyring::new(key.clone()).with_accepted(Key::from_bytes([9; 32]));
    let debug = format!("{keyring:?}");
    assert!(!debug.contains(&hex[..8]), "{debug}");
    assert!(!debug.contains("0909"), "{debug}");
}

#[test]
fn crypto_error_is_opaque() {
    assert_eq!(CryptoError.to_string(), "cryptographic operation failed");
}

proptest! {
    #[test]
    fn open_arbitrary_bytes_never_panics(
        key_id in any::<u8>(),
        aad in proptest::collection::vec(any::<u8>(), 0..16),
        mut body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let keyring = Keyring::new(key(1)).with_accepted(colliding_key(&key(1)));
        let original = body.clone();
        let result = keyring.open_in_place(key_id, &aad, &mut body).map(<[u8]>::to_vec);
        prop_assert_eq!(result, Err(CryptoError));
        prop_assert_eq!(body, original);
    }

    #[test]
    fn seal_open_round_trips_any_plaintext(
        plaintext in proptest::collection::vec(any::<u8>(), 0..256),
        aad in proptest::collection::vec(any::<u8>(), 0..16),
        seed in any::<u64>(),
    ) {
        let keyring = Keyring::new(key(3));
        let body = seal(&keyring, &mut StdRng::seed_from_u64(seed), &aad, &plaintext);
        prop_assert_eq!(open(&keyring, keyring.primary_id(), &aad, &body), Ok(plaintext));
    }
}

#[test]
fn promote_by_id_moves_one_accepted_key_and_refuses_ambiguity() {
    let (a, b) = (key(1), key(2));
    assert_ne!(a.id(), b.id());
    let mut ring = Keyring::new(a.clone());
    // Nothing accepted with that id yet: nothing changes.
    assert_eq!(ring.promote(b.id()), 0);
    assert_eq!(ring.primary_id(), a.id());
    ring.add_accepted(b.clone());
    assert_eq!(ring.accepted_ids(), vec![b.id()]);
    assert_eq!(ring.promote(b.id()), 1);
    assert_eq!(ring.primary_id(), b.id());
    assert_eq!(ring.accepted_ids(), vec![a.id()]);
    // The primary's own id is not an accepted key.
    assert_eq!(ring.promote(b.id()), 0);
    assert_eq!(ring.primary_id(), b.id());
    // Two accepted keys colliding on one id: ambiguous, nothing changes.
    // Ids are one byte: among 100,000 distinct keys one collides with `a` (1 - (255/256)^n).
    let twin = (3u32..100_003)
        .map(|i| {
            let mut bytes = [0u8; KEY_LEN];
            bytes[..4].copy_from_slice(&i.to_be_bytes());
            Key::from_bytes(bytes)
        })
        .find(|k| k.id() == a.id())
        .expect("a colliding key id");
    ring.add_accepted(twin);
    assert_eq!(ring.promote(a.id()), 2);
    assert_eq!(ring.primary_id(), b.id());
    assert_eq!(ring.len(), 3);
}
