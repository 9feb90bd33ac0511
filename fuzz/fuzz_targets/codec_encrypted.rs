//! The receive path of an encrypted node. Input byte 0 chooses:
//! - even: the rest is a raw datagram (checks 1 to 10: label, key id, tag; a random input
//!   never authenticates, so this exercises everything before the tag);
//! - odd: the rest is a plaintext body that the test seals properly under the node's key, with
//!   input byte 1 as the label's type, so the authenticated path (envelope decode, type match)
//!   sees attacker-chosen plaintext, as a holder of the key could send.
#![no_main]

use std::sync::Arc;

use gossip_core::PacketType;
use gossip_crypto::{Key, Keyring, NONCE_LEN, SEAL_OVERHEAD};
use gossip_net::{Cipher, DropReason, LABEL_LEN, Label, PacketCodec, Security};
use libfuzzer_sys::fuzz_target;

/// A fixed nonce source: sealing is deterministic, so a crash input reproduces.
struct Fixed;

impl rand::RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        7
    }
    fn next_u64(&mut self) -> u64 {
        7
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(7);
    }
}

impl rand::CryptoRng for Fixed {}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keyring = Keyring::new(Key::from_bytes([0x42; 32]));
    let codec =
        PacketCodec::new(Security::Encrypted(Arc::new(keyring.clone())), 65_507).expect("codec");
    if mode % 2 == 0 {
        let mut datagram = rest.to_vec();
        let result = codec.decode_datagram(&mut datagram);
        // Nothing the fuzzer writes authenticates without the key (a forgery would be a
        // crash), and an AES-GCM cipher byte is never a cipher mismatch.
        assert!(result.is_err(), "a datagram authenticated without the key");
        if rest.get(2) == Some(&1) {
            assert_ne!(result.err(), Some(DropReason::CipherMismatch));
        }
        return;
    }
    let Some((&type_byte, plaintext)) = rest.split_first() else {
        return;
    };
    let packet_type = PacketType::from_byte(type_byte).unwrap_or(PacketType::PushAck);
    if plaintext.len() + LABEL_LEN + SEAL_OVERHEAD > 65_507 {
        return;
    }
    let label = Label {
        packet_type,
        cipher: Cipher::Aes256Gcm,
        key_id: keyring.primary_id(),
        body_len: u32::try_from(plaintext.len() + SEAL_OVERHEAD).expect("fits"),
    }
    .to_bytes();
    let mut datagram = label.to_vec();
    datagram.extend_from_slice(&[0; NONCE_LEN]);
    datagram.extend_from_slice(plaintext);
    datagram.extend_from_slice(&[0; SEAL_OVERHEAD - NONCE_LEN]);
    keyring
        .seal_in_place(&mut Fixed, &label, &mut datagram[LABEL_LEN..])
        .expect("seals");
    match codec.decode_datagram(&mut datagram) {
        Ok(envelope) => assert_eq!(envelope.message.packet_type(), packet_type),
        Err(reason) => assert!(
            matches!(reason, DropReason::Malformed | DropReason::TypeMismatch),
            "an authenticated body fails only as malformed or mistyped, not {reason:?}"
        ),
    }
});
