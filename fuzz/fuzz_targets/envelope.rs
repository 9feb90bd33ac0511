//! The envelope decoder (bincode behind `gossip_net::wire`): arbitrary plaintext never panics;
//! whatever decodes re-encodes within the core's size bound and decodes to the same envelope.
#![no_main]

use gossip_net::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = wire::decode_envelope(data) {
        let mut again = Vec::new();
        wire::encode_envelope(&envelope, &mut again).expect("a decoded envelope encodes");
        assert!(again.len() <= envelope.encoded_len_bound());
        assert!(
            again.len() <= data.len(),
            "the shortest form is never longer"
        );
        assert_eq!(wire::decode_envelope(&again).expect("round trip"), envelope);
    }
});
