//! Every message decoder: the first input byte picks the variant (13 of them, section 5.2), the
//! rest are its fields after a valid envelope header, so each decoder is reached at once
//! rather than only behind a lucky variant byte.
#![no_main]

use gossip_net::wire;
use libfuzzer_sys::fuzz_target;

/// sender (32) ‖ epoch (8) ‖ counter (8).
const HEADER: [u8; 48] = [7; 48];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, fields)) = data.split_first() else {
        return;
    };
    let mut plaintext = HEADER.to_vec();
    plaintext.push(selector % 13);
    plaintext.extend_from_slice(fields);
    if let Ok(envelope) = wire::decode_envelope(&plaintext) {
        assert_eq!(envelope.epoch, u64::from_be_bytes([7; 8]));
        let mut again = Vec::new();
        wire::encode_envelope(&envelope, &mut again).expect("encodes");
        assert!(again.len() <= envelope.encoded_len_bound());
        assert_eq!(wire::decode_envelope(&again).expect("round trip"), envelope);
    }
});
