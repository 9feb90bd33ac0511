//! The store's decoders (a damaged redb file must be refused, never panic): a stored feed
//! message and a stored feed head.
#![no_main]

use gossip_core::feed::FeedId;
use gossip_store::fuzzing::{decode_head, decode_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let feed = FeedId(
        data.get(..32)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 32]),
    );
    let sequence = data.first().map_or(1, |b| u64::from(*b));
    if let Ok(m) = decode_message(data, feed, sequence) {
        assert_eq!((m.author, m.sequence), (feed, sequence));
        assert_eq!(m.encode_signed(), data);
    }
    if let Ok((sequence, _)) = decode_head(data, feed) {
        assert!(data.len() >= 8);
        let _ = sequence;
    }
});
