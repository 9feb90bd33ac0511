//! The whole receive path of a plaintext node: `PacketCodec::decode_datagram` (all twelve
//! checks) and then the anti-replay guard (checks 13 to 15), on an arbitrary datagram.
#![no_main]

use gossip_core::replay::{ReplayConfig, ReplayGuard};
use gossip_net::{PacketCodec, Security};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = PacketCodec::new(Security::Plaintext, 65_507).expect("codec");
    let mut guard = ReplayGuard::new(ReplayConfig {
        window: 64,
        max_senders: 2,
    })
    .expect("guard");
    let mut datagram = data.to_vec();
    if let Ok(envelope) = codec.decode_datagram(&mut datagram) {
        assert_eq!(data[1], envelope.message.packet_type().to_byte());
        assert!(
            guard
                .handle_datagram(envelope.sender, envelope.epoch, envelope.counter)
                .is_ok()
        );
        assert!(
            guard
                .handle_datagram(envelope.sender, envelope.epoch, envelope.counter)
                .is_err(),
            "the same datagram twice is a replay"
        );
    }
});
