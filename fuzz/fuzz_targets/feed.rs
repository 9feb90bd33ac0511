//! Feed validation (gossip-core `feed`): a followed feed receives a stream of messages built
//! from the input. Each 2-byte op header picks how a message is made:
//! - decoded from the wire bytes that follow (a `TreeBatch` body's message, arbitrary fields
//!   and signature), or from the canonical signed form (`decode_signed`);
//! - or signed properly by the feed's author with input-chosen sequence, previous hash,
//!   timestamp and content, so validation gets past the signature to the chain rules
//!   (duplicates, forks, gaps, wrong previous).
//! Accepted messages are appended (`handle_appended`) when they are the next of the chain.
#![no_main]

use bytes::Bytes;
use gossip_core::feed::{FeedId, FeedMessage, Feeds, FeedsConfig, MessageHash, Rejection};
use gossip_crypto::Identity;
use gossip_net::wire;
use libfuzzer_sys::fuzz_target;

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (head, tail) = data.split_at(n);
    *data = tail;
    Some(head)
}

fn u64_of(data: &mut &[u8]) -> Option<u64> {
    take(data, 8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
}

fuzz_target!(|input: &[u8]| {
    let author = Identity::from_bytes(&[1; 32]);
    let feed = FeedId::of(&author);
    let mut feeds = Feeds::new(FeedsConfig::default()).expect("config");
    feeds.follow(feed, None).expect("follow");
    // The log: what was appended, by sequence.
    let mut log: Vec<FeedMessage> = Vec::new();
    let mut data = input;
    for _ in 0..64 {
        let Some(op) = take(&mut data, 2) else { break };
        let len = (usize::from(op[1]) * 4).min(data.len());
        let Some(body) = take(&mut data, len) else {
            break;
        };
        let msg = match op[0] % 3 {
            0 => {
                // A wire FeedMessage: reuse the envelope decoder on a TreeBatch of one.
                let mut plaintext = vec![0u8; 48];
                plaintext.extend_from_slice(&[11, 1]);
                plaintext.extend_from_slice(body);
                match wire::decode_envelope(&plaintext) {
                    Ok(gossip_core::Envelope {
                        message: gossip_core::Message::TreeBatch(batch),
                        ..
                    }) => match batch.messages.into_iter().next() {
                        Some(m) => m,
                        None => continue,
                    },
                    _ => continue,
                }
            }
            1 => match FeedMessage::decode_signed(body, 65_536) {
                Ok(m) => {
                    assert_eq!(m.encode_signed(), body, "the signed form is canonical");
                    m
                }
                Err(_) => continue,
            },
            _ => {
                let mut b = body;
                let sequence = u64_of(&mut b).unwrap_or(1) % 8;
                let previous = match b.first() {
                    Some(x) if x % 2 == 1 => {
                        let at = usize::from(*x) % (log.len() + 1);
                        Some(log.get(at).map_or(MessageHash([9; 32]), FeedMessage::id))
                    }
                    _ => None,
                };
                let mut m = FeedMessage {
                    author: feed,
                    sequence,
                    previous,
                    timestamp_ms: u64_of(&mut b).unwrap_or(0),
                    content: Bytes::copy_from_slice(b),
                    signature: [0; 64],
                };
                m.signature = author.sign(&m.signing_bytes());
                m
            }
        };
        let stored = msg
            .sequence
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| log.get(i));
        match feeds.validate(feed, &msg, stored) {
            Ok(id) => {
                assert_eq!(id, msg.id());
                assert!(msg.verify_signature().is_ok(), "accepted only if signed");
                assert_eq!(msg.author, feed);
                let next = log.len() as u64 + 1;
                if msg.sequence == next {
                    feeds
                        .handle_appended(&msg)
                        .expect("the next message appends");
                    log.push(msg);
                }
            }
            Err(Rejection::Fork { .. }) => {
                assert!(feeds.is_forked(feed));
                assert!(feeds.fork_proof(feed).is_some_and(|p| p.is_valid()));
            }
            Err(_) => {}
        }
        assert_eq!(
            feeds.latest(feed).map(|(s, _)| s),
            log.last().map(|m| m.sequence)
        );
    }
});
