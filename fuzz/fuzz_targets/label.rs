//! The label parser (`docs/wire.md` section 2; checks 3 to 5 of section 1.4): any 8 bytes give
//! a label or a drop reason, and a parsed label writes back the same bytes.
#![no_main]

use gossip_net::fuzzing::parse_label;
use gossip_net::{DropReason, LABEL_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_label(data) {
        None => assert!(data.len() < LABEL_LEN),
        Some(Ok(label)) => assert_eq!(&label.to_bytes()[..], &data[..LABEL_LEN]),
        Some(Err(reason)) => assert!(matches!(
            reason,
            DropReason::UnsupportedVersion | DropReason::UnknownType | DropReason::UnknownCipher
        )),
    }
});
