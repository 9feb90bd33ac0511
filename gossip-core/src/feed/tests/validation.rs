//! One crafted message per rejection reason, forks, counting, bounds and configuration.

use bytes::Bytes;

use super::{chain, following, identity, ingest};
use crate::config::ConfigError;
use crate::feed::{
    FeedEvent, FeedId, FeedMessage, FeedState, FeedStats, Feeds, FeedsConfig, FollowError,
    ForkProof, MAX_CONTENT_LIMIT, MAX_FEEDS_LIMIT, MessageHash, Rejection,
};

/// Alice's own signature over `message` as it stands (an author-made message).
fn resign(author: &gossip_crypto::Identity, mut message: FeedMessage) -> FeedMessage {
    message.signature = author.sign(&message.signing_bytes());
    message
}

#[test]
fn a_chain_in_order_is_accepted_and_advances_only_when_appended() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let messages = chain(&alice, 5);
    let mut feeds = following(&[&alice]);
    assert_eq!(feeds.latest(feed), None);
    // Validation alone does not advance: validating 1 twice is fine, 2 is not next yet.
    feeds.validate(feed, &messages[0], None).unwrap();
    feeds.validate(feed, &messages[0], None).unwrap();
    assert_eq!(
        feeds.validate(feed, &messages[1], None),
        Err(Rejection::NotNext {
            expected: 1,
            got: 2
        })
    );
    feeds.handle_appended(&messages[0]).unwrap();
    ingest(&mut feeds, &messages[1..]);
    assert_eq!(feeds.latest(feed), Some((5, messages[4].id())));
    assert_eq!(feeds.clock().collect::<Vec<_>>(), vec![(feed, 5)]);
    let stats = feeds.stats();
    assert_eq!((stats.accepted, stats.appended), (6, 5));
    assert_eq!(stats.not_next, 1);
}

#[test]
fn tampered_content_is_a_bad_signature() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let messages = chain(&alice, 2);
    let mut feeds = following(&[&alice]);
    ingest(&mut feeds, &messages[..1]);
    let mut tampered = messages[1].clone();
    tampered.content = Bytes::from_static(b"message 3");
    assert_eq!(
        feeds.validate(feed, &tampered, None),
        Err(Rejection::BadSignature)
    );
    // Other fields too: the timestamp, and a flipped signature bit.
    let mut tampered = messages[1].clone();
    tampered.timestamp_ms += 1;
    assert_eq!(
        feeds.validate(feed, &tampered, None),
        Err(Rejection::BadSignature)
    );
    let mut tampered = messages[1].clone();
    tampered.signature[10] ^= 0x40;
    assert_eq!(
        feeds.validate(feed, &tampered, None),
        Err(Rejection::BadSignature)
    );
    assert_eq!(feeds.stats().bad_signature, 3);
    assert_eq!(feeds.latest(feed), Some((1, messages[0].id())), "unchanged");
    // The genuine message is still accepted.
    feeds.validate(feed, &messages[1], None).unwrap();
}

#[test]
fn reordered_messages_are_not_next_until_the_gap_is_filled() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let messages = chain(&alice, 3);
    let mut feeds = following(&[&alice]);
    ingest(&mut feeds, &messages[..1]);
    assert_eq!(
        feeds.validate(feed, &messages[2], None),
        Err(Rejection::NotNext {
            expected: 2,
            got: 3
        })
    );
    ingest(&mut feeds, &messages[1..]);
    assert_eq!(feeds.latest(feed), Some((3, messages[2].id())));
    assert_eq!(feeds.stats().not_next, 1);
}

#[test]
fn an_inserted_message_is_wrong_previous_or_bad_signature() {
    let (alice, mallory) = (identity(1), identity(9));
    let feed = FeedId::of(&alice);
    let messages = chain(&alice, 2);
    let mut feeds = following(&[&alice]);
    ingest(&mut feeds, &messages[..1]);

    // Validly signed by the author, right sequence, but pointing elsewhere.
    let mut inserted = messages[1].clone();
    inserted.previous = Some(MessageHash([0x77; 32]));
    let inserted = resign(&alice, inserted);
    assert!(inserted.verify_signature().is_ok());
    assert_eq!(
        feeds.validate(feed, &inserted, None),
        Err(Rejection::WrongPrevious { sequence: 2 })
    );
    // A first message must have no previous; a later one must have one.
    let first = resign(
        &alice,
        FeedMessage {
            previous: Some(messages[0].id()),
            ..messages[0].clone()
        },
    );
    let mut empty = following(&[&alice]);
    assert_eq!(
        empty.validate(feed, &first, None),
        Err(Rejection::WrongPrevious { sequence: 1 })
    );
    let orphan = resign(
        &alice,
        FeedMessage {
            previous: None,
            ..messages[1].clone()
        },
    );
    assert_eq!(
        feeds.validate(feed, &orphan, None),
        Err(Rejection::WrongPrevious { sequence: 2 })
    );

    // Inserted by someone else in the author's name: the signature gives it away.
    let mut forged = messages[1].clone();
    forged.content = Bytes::from_static(b"inserted");
    let forged = resign(&mallory, forged);
    assert_eq!(
        feeds.validate(feed, &forged, None),
        Err(Rejection::BadSignature)
    );
    assert_eq!(feeds.stats().wrong_previous, 2);
    assert_eq!(feeds.stats().bad_signature, 1);
}

#[test]
fn a_replay_with_a_new_sequence_is_a_bad_signature() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let messages = chain(&alice, 3);
    let mut feeds = following(&[&alice]);
    ingest(&mut feeds, &messages);
    // Message 1 replayed as message 4, re-pointed at the head: the attacker cannot re-sign.
    let mut replay = messages[0].clone();
    replay.sequence = 4;
    replay.previous = Some(messages[2].id());
    assert_eq!(
        feeds.validate(feed, &replay, None),
        Err(Rejection::BadSignature)
    );
    // Replayed unchanged, it is a harmless duplicate (with the stored message, or at the head).
    assert_eq!(
        feeds.validate(feed, &messages[0], Some(&messages[0])),
        Err(Rejection::Duplicate)
    );
    assert_eq!(
        feeds.validate(feed, &messages[2], None),
        Err(Rejection::Duplicate)
    );
    let stats = feeds.stats();
    assert_eq!((stats.bad_signature, stats.duplicates), (1, 2));
    assert_eq!(stats.rejected(), 1, "duplicates are not faults");
}

#[test]
fn sequence_zero_is_not_next() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let messages = chain(&alice, 1);
    let zero = resign(
        &alice,
        FeedMessage {
            sequence: 0,
            ..messages[0].clone()
        },
    );
    let mut feeds = following(&[&alice]);
    assert_eq!(
        feeds.validate(feed, &zero, None),
        Err(Rejection::NotNext {
            expected: 1,
            got: 0
        })
    );
    ingest(&mut feeds, &messages);
    assert_eq!(
        feeds.validate(feed, &zero, None),
        Err(Rejection::NotNext {
            expected: 2,
            got: 0
        })
    );
}

#[test]
fn wrong_author_and_not_followed() {
    let (alice, bob, carol) = (identity(1), identity(2), identity(3));
    let mut feeds = following(&[&alice, &bob]);
    let bobs = chain(&bob, 1);
    assert_eq!(
        feeds.validate(FeedId::of(&alice), &bobs[0], None),
        Err(Rejection::WrongAuthor {
            expected: FeedId::of(&alice),
            got: FeedId::of(&bob)
        })
    );
    let carols = chain(&carol, 1);
    assert_eq!(
        feeds.validate(FeedId::of(&carol), &carols[0], None),
        Err(Rejection::NotFollowed)
    );
    assert_eq!(
        feeds.handle_appended(&carols[0]),
        Err(Rejection::NotFollowed)
    );
    feeds.validate(FeedId::of(&bob), &bobs[0], None).unwrap();
    let stats = feeds.stats();
    assert_eq!((stats.wrong_author, stats.not_followed), (1, 1));
}

#[test]
fn oversize_content_is_refused_before_the_signature_is_checked() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let config = FeedsConfig {
        max_content_len: 16,
        ..FeedsConfig::default()
    };
    let mut feeds = Feeds::new(config).unwrap();
    feeds.follow(feed, None).unwrap();
    let big = FeedMessage::create(&alice, None, 0, Bytes::from(vec![1; 17]), 100).unwrap();
    assert_eq!(
        feeds.validate(feed, &big, None),
        Err(Rejection::ContentTooLarge { len: 17, max: 16 })
    );
    let mut tampered = big.clone();
    tampered.signature = [0; 64];
    assert_eq!(
        feeds.validate(feed, &tampered, None),
        Err(Rejection::ContentTooLarge { len: 17, max: 16 })
    );
    let fits = FeedMessage::create(&alice, None, 0, Bytes::from(vec![1; 16]), 100).unwrap();
    feeds.validate(feed, &fits, None).unwrap();
    assert_eq!(feeds.stats().content_too_large, 2);
    // FeedState caps any max at MAX_CONTENT_LIMIT.
    let state = FeedState::new(feed, None);
    let huge = FeedMessage {
        content: Bytes::from(vec![0; MAX_CONTENT_LIMIT + 1]),
        ..fits
    };
    assert_eq!(
        state.validate(&huge, None, usize::MAX),
        Err(Rejection::ContentTooLarge {
            len: MAX_CONTENT_LIMIT + 1,
            max: MAX_CONTENT_LIMIT
        })
    );
}

/// Two validly signed messages at sequence 2: the second is a fork once checked against the
/// stored first.
fn forked_pair(alice: &gossip_crypto::Identity) -> (Vec<FeedMessage>, FeedMessage) {
    let messages = chain(alice, 3);
    let other = FeedMessage::create(
        alice,
        Some(&messages[0]),
        2001,
        Bytes::from_static(b"other"),
        1024,
    )
    .unwrap();
    assert_eq!(other.sequence, 2);
    (messages, other)
}

#[test]
fn a_fork_is_kept_as_proof_raises_an_event_and_stops_the_feed() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let (messages, other) = forked_pair(&alice);
    let mut feeds = following(&[&alice, &identity(2)]);
    ingest(&mut feeds, &messages[..2]);

    // At the head, the head id alone shows it is not a duplicate; the stored message is
    // needed for the proof.
    assert_eq!(
        feeds.validate(feed, &other, None),
        Err(Rejection::Unresolved {
            sequence: 2,
            latest: 2
        })
    );
    assert!(!feeds.is_forked(feed));
    assert_eq!(feeds.poll_event(), None);

    assert_eq!(
        feeds.validate(feed, &other, Some(&messages[1])),
        Err(Rejection::Fork { sequence: 2 })
    );
    let expected = ForkProof {
        first: messages[1].clone(),
        second: other.clone(),
    };
    assert!(expected.is_valid());
    assert_eq!((expected.feed(), expected.sequence()), (feed, 2));
    assert!(feeds.is_forked(feed));
    assert_eq!(feeds.fork_proof(feed), Some(&expected));
    assert_eq!(
        feeds.poll_event(),
        Some(FeedEvent::Forked {
            feed,
            proof: expected
        })
    );
    assert_eq!(feeds.poll_event(), None);

    // Nothing more is accepted or replicated for the feed, not even its genuine next message.
    assert_eq!(
        feeds.validate(feed, &messages[2], None),
        Err(Rejection::Forked)
    );
    assert_eq!(feeds.handle_appended(&messages[2]), Err(Rejection::Forked));
    assert_eq!(
        feeds.clock().collect::<Vec<_>>(),
        vec![(FeedId::of(&identity(2)), 0)]
    );
    let stats = feeds.stats();
    assert_eq!((stats.unresolved, stats.forks, stats.forked), (1, 1, 1));
}

#[test]
fn a_fork_below_the_head_needs_the_stored_message() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let (messages, other) = forked_pair(&alice);
    let mut feeds = following(&[&alice]);
    ingest(&mut feeds, &messages);
    assert_eq!(
        feeds.validate(feed, &other, None),
        Err(Rejection::Unresolved {
            sequence: 2,
            latest: 3
        })
    );
    // A stored message of another sequence is ignored.
    assert_eq!(
        feeds.validate(feed, &other, Some(&messages[0])),
        Err(Rejection::Unresolved {
            sequence: 2,
            latest: 3
        })
    );
    assert_eq!(
        feeds.validate(feed, &other, Some(&messages[1])),
        Err(Rejection::Fork { sequence: 2 })
    );
    assert!(matches!(
        feeds.poll_event(),
        Some(FeedEvent::Forked { proof, .. }) if proof.first == messages[1] && proof.second == other
    ));
}

#[test]
fn a_tampered_old_message_is_not_a_fork() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let messages = chain(&alice, 3);
    let mut feeds = following(&[&alice]);
    ingest(&mut feeds, &messages);
    let mut tampered = messages[1].clone();
    tampered.content = Bytes::from_static(b"rewritten history");
    assert_eq!(
        feeds.validate(feed, &tampered, Some(&messages[1])),
        Err(Rejection::BadSignature)
    );
    assert!(!feeds.is_forked(feed));
    assert_eq!(feeds.poll_event(), None);
}

#[test]
fn feed_state_validate_changes_nothing() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let (messages, other) = forked_pair(&alice);
    let state = FeedState::new(feed, Some((2, messages[1].id())));
    let before = state.clone();
    assert_eq!(
        state.validate(&other, Some(&messages[1]), 1024),
        Err(Rejection::Fork { sequence: 2 })
    );
    assert_eq!(
        state.validate(&messages[2], None, 1024),
        Ok(messages[2].id())
    );
    assert_eq!(state, before);
    assert!(!state.is_forked());
}

#[test]
fn every_reason_is_counted_under_its_own_name() {
    let (alice, bob) = (identity(1), identity(2));
    let feed = FeedId::of(&alice);
    let (messages, other) = forked_pair(&alice);
    let config = FeedsConfig {
        max_content_len: 20,
        ..FeedsConfig::default()
    };
    let mut feeds = Feeds::new(config).unwrap();
    feeds.follow(feed, None).unwrap();
    ingest(&mut feeds, &messages[..2]);

    let mut tampered = messages[2].clone();
    tampered.content = Bytes::from_static(b"x");
    let wrong_previous = resign(
        &alice,
        FeedMessage {
            previous: Some(MessageHash([1; 32])),
            ..messages[2].clone()
        },
    );
    let big =
        FeedMessage::create(&alice, Some(&messages[1]), 0, Bytes::from(vec![0; 21]), 100).unwrap();
    let next_after_gap = {
        let third = &messages[2];
        FeedMessage::create(&alice, Some(third), 0, Bytes::new(), 10).unwrap()
    };
    let bobs = chain(&bob, 1);

    let cases: Vec<(FeedId, &FeedMessage, Option<&FeedMessage>, Rejection)> = vec![
        (FeedId::of(&bob), &bobs[0], None, Rejection::NotFollowed),
        (
            feed,
            &bobs[0],
            None,
            Rejection::WrongAuthor {
                expected: feed,
                got: FeedId::of(&bob),
            },
        ),
        (
            feed,
            &big,
            None,
            Rejection::ContentTooLarge { len: 21, max: 20 },
        ),
        (feed, &messages[1], None, Rejection::Duplicate),
        (feed, &tampered, None, Rejection::BadSignature),
        (
            feed,
            &next_after_gap,
            None,
            Rejection::NotNext {
                expected: 3,
                got: 4,
            },
        ),
        (
            feed,
            &wrong_previous,
            None,
            Rejection::WrongPrevious { sequence: 3 },
        ),
        (
            feed,
            &other,
            None,
            Rejection::Unresolved {
                sequence: 2,
                latest: 2,
            },
        ),
        (
            feed,
            &other,
            Some(&messages[1]),
            Rejection::Fork { sequence: 2 },
        ),
        (feed, &messages[2], None, Rejection::Forked),
    ];
    for (i, (target, msg, stored, reason)) in cases.iter().enumerate() {
        let before = feeds.stats();
        assert_eq!(
            feeds.validate(*target, msg, *stored),
            Err(*reason),
            "case {i}"
        );
        let after = feeds.stats();
        assert_eq!(after.count(reason), before.count(reason) + 1, "case {i}");
        assert_eq!(
            after.rejected() + after.duplicates,
            before.rejected() + before.duplicates + 1,
            "case {i}: exactly one counter moved"
        );
    }
    let stats = feeds.stats();
    assert_eq!(
        stats,
        FeedStats {
            accepted: 2,
            appended: 2,
            not_followed: 1,
            forked: 1,
            wrong_author: 1,
            content_too_large: 1,
            duplicates: 1,
            bad_signature: 1,
            not_next: 1,
            wrong_previous: 1,
            forks: 1,
            unresolved: 1,
            fork_proofs_imported: 0,
            events_dropped: 0,
        }
    );
    let names: Vec<&str> = cases.iter().map(|c| c.3.name()).collect();
    assert_eq!(
        names,
        [
            "not_followed",
            "wrong_author",
            "content_too_large",
            "duplicates",
            "bad_signature",
            "not_next",
            "wrong_previous",
            "unresolved",
            "forks",
            "forked"
        ]
    );
}

#[test]
fn mark_forked_checks_the_proof_and_follows_the_feed() {
    let (alice, bob) = (identity(1), identity(2));
    let feed = FeedId::of(&alice);
    let (messages, other) = forked_pair(&alice);
    let mut feeds = following(&[&bob]);

    let same_twice = ForkProof {
        first: messages[1].clone(),
        second: messages[1].clone(),
    };
    assert_eq!(
        feeds.mark_forked(same_twice),
        Err(FollowError::InvalidForkProof)
    );
    let different_sequence = ForkProof {
        first: messages[0].clone(),
        second: other.clone(),
    };
    assert_eq!(
        feeds.mark_forked(different_sequence),
        Err(FollowError::InvalidForkProof)
    );
    let mut tampered = other.clone();
    tampered.content = Bytes::from_static(b"forged");
    let forged = ForkProof {
        first: messages[1].clone(),
        second: tampered,
    };
    assert_eq!(
        feeds.mark_forked(forged),
        Err(FollowError::InvalidForkProof)
    );
    let cross_author = ForkProof {
        first: messages[1].clone(),
        second: chain(&bob, 2).remove(1),
    };
    assert_eq!(
        feeds.mark_forked(cross_author),
        Err(FollowError::InvalidForkProof)
    );
    assert_eq!(feeds.len(), 1, "nothing changed");

    let proof = ForkProof {
        first: messages[1].clone(),
        second: other,
    };
    assert_eq!(feeds.mark_forked(proof.clone()), Ok(true));
    assert_eq!(feeds.mark_forked(proof.clone()), Ok(false));
    assert!(feeds.is_forked(feed));
    assert_eq!(feeds.len(), 2);
    assert_eq!(
        feeds.poll_event(),
        Some(FeedEvent::Forked {
            feed,
            proof: proof.clone()
        })
    );
    assert_eq!(feeds.poll_event(), None);
    assert_eq!(feeds.stats().fork_proofs_imported, 1);
    // Unfollow hands the proof back.
    let state = feeds.unfollow(feed).unwrap();
    assert_eq!(state.fork_proof(), Some(&proof));
    assert!(!feeds.is_forked(feed));
}

#[test]
fn followed_feeds_are_bounded() {
    let config = FeedsConfig {
        max_feeds: 2,
        ..FeedsConfig::default()
    };
    let mut feeds = Feeds::new(config).unwrap();
    assert_eq!(feeds.follow(FeedId([1; 32]), None), Ok(true));
    assert_eq!(
        feeds.follow(FeedId([1; 32]), Some((9, MessageHash([0; 32])))),
        Ok(false)
    );
    assert_eq!(
        feeds.latest(FeedId([1; 32])),
        None,
        "follow does not overwrite"
    );
    assert_eq!(feeds.follow(FeedId([2; 32]), None), Ok(true));
    assert_eq!(
        feeds.follow(FeedId([3; 32]), None),
        Err(FollowError::TooManyFeeds { max: 2 })
    );
    assert_eq!(feeds.len(), 2);
    // A proof for an unfollowed feed cannot be imported past the bound either.
    let carol = identity(3);
    let (messages, other) = forked_pair(&carol);
    let proof = ForkProof {
        first: messages[1].clone(),
        second: other,
    };
    assert_eq!(
        feeds.mark_forked(proof.clone()),
        Err(FollowError::TooManyFeeds { max: 2 })
    );
    assert!(feeds.unfollow(FeedId([2; 32])).is_some());
    assert_eq!(feeds.mark_forked(proof), Ok(true));
}

#[test]
fn undrained_events_are_bounded_and_counted() {
    let config = FeedsConfig {
        event_queue_capacity: 1,
        ..FeedsConfig::default()
    };
    let mut feeds = Feeds::new(config).unwrap();
    for n in [1, 2] {
        let author = identity(n);
        let (messages, other) = forked_pair(&author);
        let proof = ForkProof {
            first: messages[1].clone(),
            second: other,
        };
        assert_eq!(feeds.mark_forked(proof), Ok(true));
        assert!(feeds.queued_events() <= 1);
    }
    assert_eq!(feeds.stats().events_dropped, 1);
    // The dropped event's proof is still held.
    assert!(feeds.fork_proof(FeedId::of(&identity(2))).is_some());
    assert!(feeds.poll_event().is_some());
    assert_eq!(feeds.poll_event(), None);
}

#[test]
fn handle_appended_checks_the_chain_and_resync_resets_the_head() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let messages = chain(&alice, 3);
    let mut feeds = following(&[&alice]);
    assert_eq!(
        feeds.handle_appended(&messages[1]),
        Err(Rejection::NotNext {
            expected: 1,
            got: 2
        })
    );
    feeds.handle_appended(&messages[0]).unwrap();
    let broken = FeedMessage {
        previous: Some(MessageHash([5; 32])),
        ..messages[1].clone()
    };
    assert_eq!(
        feeds.handle_appended(&broken),
        Err(Rejection::WrongPrevious { sequence: 2 })
    );
    assert_eq!(feeds.stats().rejected(), 0, "caller errors are not counted");
    assert!(feeds.resync(feed, Some((2, messages[1].id()))));
    feeds.handle_appended(&messages[2]).unwrap();
    assert_eq!(feeds.latest(feed), Some((3, messages[2].id())));
    assert!(!feeds.resync(FeedId([9; 32]), None));
}

#[test]
fn own_messages_go_through_create_append_record() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let mut feeds = following(&[&alice]);
    let mut head: Option<FeedMessage> = None;
    for i in 0..5u64 {
        let message = FeedMessage::create(
            &alice,
            head.as_ref(),
            i,
            Bytes::from(vec![i as u8; 3]),
            1024,
        )
        .unwrap();
        // (append to the log here)
        feeds.handle_appended(&message).unwrap();
        head = Some(message);
    }
    assert_eq!(feeds.latest(feed).map(|(seq, _)| seq), Some(5));
}

#[test]
fn config_bounds() {
    assert_eq!(FeedsConfig::default().validate(), Ok(()));
    let cases = [
        (
            FeedsConfig {
                max_content_len: 0,
                ..FeedsConfig::default()
            },
            ConfigError::OutOfRange {
                field: "max_content_len",
                value: 0,
                min: 1,
                max: MAX_CONTENT_LIMIT,
            },
        ),
        (
            FeedsConfig {
                max_content_len: MAX_CONTENT_LIMIT + 1,
                ..FeedsConfig::default()
            },
            ConfigError::OutOfRange {
                field: "max_content_len",
                value: MAX_CONTENT_LIMIT + 1,
                min: 1,
                max: MAX_CONTENT_LIMIT,
            },
        ),
        (
            FeedsConfig {
                max_feeds: 0,
                ..FeedsConfig::default()
            },
            ConfigError::OutOfRange {
                field: "max_feeds",
                value: 0,
                min: 1,
                max: MAX_FEEDS_LIMIT,
            },
        ),
        (
            FeedsConfig {
                max_feeds: MAX_FEEDS_LIMIT + 1,
                ..FeedsConfig::default()
            },
            ConfigError::OutOfRange {
                field: "max_feeds",
                value: MAX_FEEDS_LIMIT + 1,
                min: 1,
                max: MAX_FEEDS_LIMIT,
            },
        ),
        (
            FeedsConfig {
                event_queue_capacity: 0,
                ..FeedsConfig::default()
            },
            ConfigError::TooSmall {
                field: "event_queue_capacity",
                value: 0,
                min: 1,
            },
        ),
    ];
    for (config, error) in cases {
        assert_eq!(config.validate(), Err(error.clone()));
        assert_eq!(Feeds::new(config).unwrap_err(), error);
    }
}

#[test]
fn a_feed_at_the_last_sequence_accepts_nothing_new() {
    let alice = identity(1);
    let feed = FeedId::of(&alice);
    let state = FeedState::new(feed, Some((u64::MAX, MessageHash([1; 32]))));
    let messages = chain(&alice, 1);
    let last = resign(
        &alice,
        FeedMessage {
            sequence: u64::MAX,
            previous: Some(MessageHash([0; 32])),
            ..messages[0].clone()
        },
    );
    assert_eq!(
        state.validate(&last, None, 1024),
        Err(Rejection::Unresolved {
            sequence: u64::MAX,
            latest: u64::MAX
        })
    );
    assert_eq!(
        state.validate(&messages[0], None, 1024),
        Err(Rejection::Unresolved {
            sequence: 1,
            latest: u64::MAX
        })
    );
}
