//! Tests of the failure detector: phi against hand-computed values, detection timing on a
//! virtual clock, the pause guard, the bounds, and property tests.

use std::f64::consts::{LN_10, LOG10_E};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{FailureConfig, FailureDetector, FailureEvent, MAX_WINDOW};
use crate::id::NodeId;

fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn detector(config: FailureConfig, t0: Instant) -> FailureDetector {
    FailureDetector::new(config, t0).unwrap()
}

fn drain(fd: &mut FailureDetector) -> Vec<FailureEvent> {
    std::iter::from_fn(|| fd.poll_event()).collect()
}

fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "phi {actual} != expected {expected}"
    );
}

/// Drives `fd` from `from` (exclusive of nothing: a check runs at `from`) up to `to`,
/// checking every `check_interval` and heartbeating each of `nodes` every `period` on the
/// grid `from + k · period`. Returns the events and the largest phi of a live peer seen.
fn run_regular(
    fd: &mut FailureDetector,
    nodes: &[NodeId],
    from: Instant,
    to: Instant,
    period: Duration,
) -> (Vec<FailureEvent>, f64) {
    let check = fd.config().check_interval;
    let mut events = Vec::new();
    let mut max_phi = 0.0f64;
    let mut next_beat = from;
    let mut now = from;
    while now <= to {
        if now >= next_beat {
            for n in nodes {
                fd.handle_heartbeat(now, *n);
            }
            next_beat += period;
        }
        fd.handle_timeout(now);
        events.extend(drain(fd));
        for n in nodes {
            if fd.is_live(n) == Some(true) {
                max_phi = max_phi.max(fd.phi(now, n).unwrap());
            }
        }
        now += check;
    }
    (events, max_phi)
}

/// Checks every `check_interval` from `from` up to and including `to`, as a shell following
/// `poll_timeout` would, without draining events.
fn tick(fd: &mut FailureDetector, from: Instant, to: Instant) {
    let mut now = from;
    while now <= to {
        fd.handle_timeout(now);
        now += fd.config().check_interval;
    }
}

// ----- phi against hand computation -----

#[test]
fn phi_of_a_peer_heard_once_uses_first_interval() {
    let t0 = crate::test_util::epoch();
    let mut fd = detector(FailureConfig::default(), t0);
    let a = node(1);
    assert_eq!(fd.phi(t0, &a), None);
    fd.handle_heartbeat(t0, a);
    assert_eq!(drain(&mut fd), vec![], "a new peer is not announced");
    assert_eq!(fd.window_len(&a), Some(1));
    assert_eq!(fd.mean_interval(&a), Some(ms(750)));
    // Window [0.75 s], mean 0.75 s (above min_mean 0.5 s).
    // t = 0:      phi = 0 / (0.75 · ln 10) = 0.
    assert_close(fd.phi(t0, &a).unwrap(), 0.0);
    // t = 0.75 s: phi = 0.75 / (0.75 · 2.302585) = 1 / ln 10 = log₁₀ e = 0.4342944819.
    assert_close(fd.phi(t0 + ms(750), &a).unwrap(), LOG10_E);
    // t = 1.5 s:  phi = 1.5 / (0.75 · 2.302585) = 2 / ln 10 = 0.8685889638.
    assert_close(fd.phi(t0 + ms(1_500), &a).unwrap(), 0.868_588_963_806_503_5);
    // t = 13.8155 s = 8 · ln 10 · 0.75: phi = 8 exactly (the threshold).
    let t = Duration::from_secs_f64(8.0 * LN_10 * 0.75);
    assert!((fd.phi(t0 + t, &a).unwrap() - 8.0).abs() < 1e-6);
    // A time before the last arrival counts as no silence.
    assert_close(fd.phi(t0 - ms(10), &a).unwrap(), 0.0);
}

#[test]
fn phi_uses_the_window_mean() {
    let t0 = crate::test_util::epoch();
    let mut fd = detector(FailureConfig::default(), t0);
    let a = node(1);
    // Heard at 0, 1.25 s and 2.25 s: window [0.75, 1.25, 1.00] s, mean 3.00 / 3 = 1.00 s.
    fd.handle_heartbeat(t0, a);
    fd.handle_heartbeat(t0 + ms(1_250), a);
    let last = t0 + ms(2_250);
    fd.handle_heartbeat(last, a);
    assert_eq!(fd.window_len(&a), Some(3));
    assert_eq!(fd.mean_interval(&a), Some(ms(1_000)));
    // t = 1 s:    phi = 1 / (1 · ln 10) = 0.4342944819.
    assert_close(fd.phi(last + ms(1_000), &a).unwrap(), LOG10_E);
    // t = 3 s:    phi = 3 / (1 · 2.302585) = 1.3028834457.
    assert_close(
        fd.phi(last + ms(3_000), &a).unwrap(),
        1.302_883_445_709_755_3,
    );
    // t = 18.4 s: phi = 18.4 / 2.302585 = 7.9910184670 (below 8);
    // t = 18.5 s: phi = 18.5 / 2.302585 = 8.0344479152 (above 8).
    assert_close(
        fd.phi(last + ms(18_400), &a).unwrap(),
        7.991_018_467_019_832,
    );
    assert_close(
        fd.phi(last + ms(18_500), &a).unwrap(),
        8.034_447_915_210_158,
    );
}

#[test]
fn window_keeps_only_the_latest_samples() {
    let t0 = crate::test_util::epoch();
    let config = FailureConfig {
        window: 2,
        ..FailureConfig::default()
    };
    let mut fd = detector(config, t0);
    let a = node(1);
    // Heard at 0, 2 s and 6 s: samples 0.75 (initial), 2, 4; window 2 keeps [2, 4], mean 3 s.
    fd.handle_heartbeat(t0, a);
    fd.handle_heartbeat(t0 + ms(2_000), a);
    let last = t0 + ms(6_000);
    fd.handle_heartbeat(last, a);
    assert_eq!(fd.window_len(&a), Some(2));
    assert_eq!(fd.mean_interval(&a), Some(ms(3_000)));
    // t = 6 s: phi = 6 / (3 · ln 10) = 2 / ln 10 = 0.8685889638.
    assert_close(
        fd.phi(last + ms(6_000), &a).unwrap(),
        0.868_588_963_806_503_5,
    );
}

#[test]
fn min_mean_floors_the_mean_of_bursty_traffic() {
    let t0 = crate::test_util::epoch();
    let a = node(1);
    let burst = |config: FailureConfig| {
        let mut fd = detector(config, t0);
        // Four packets 10 ms apart after the first: window 4 keeps [10, 10, 10, 10] ms.
        for i in 0..5 {
            fd.handle_heartbeat(t0 + ms(10 * i), a);
        }
        assert_eq!(fd.mean_interval(&a), Some(ms(10)));
        fd
    };
    let last = t0 + ms(40);
    let base = FailureConfig {
        window: 4,
        ..FailureConfig::default()
    };

    // Default floor 0.5 s: t = 1 s gives phi = 1 / (max(0.01, 0.5) · ln 10) = 0.8685889638,
    // t = 5 s gives 5 / (0.5 · 2.302585) = 4.3429448190: still live after 5 s of quiet.
    let mut floored = burst(base.clone());
    assert_close(
        floored.phi(last + ms(1_000), &a).unwrap(),
        0.868_588_963_806_503_5,
    );
    assert_close(
        floored.phi(last + ms(5_000), &a).unwrap(),
        4.342_944_819_032_517_5,
    );
    tick(&mut floored, last, last + ms(5_000));
    assert_eq!(drain(&mut floored), vec![]);
    assert_eq!(floored.is_live(&a), Some(true));

    // With a 1 ms floor the raw 10 ms mean is used: t = 1 s gives phi = 1 / (0.01 · ln 10) =
    // 43.4294481903 and t = 0.5 s gives 0.5 / 0.0230259 = 21.7147240952; the threshold is
    // crossed after 8 · ln 10 · 0.01 s = 184 ms of quiet. (Such a floor also needs a pause
    // guard below 8 · ln 10 · 1 ms = 18.4 ms, hence the fast checks.)
    let config = FailureConfig {
        min_mean: ms(1),
        acceptable_pause: ms(10),
        check_interval: ms(5),
        ..base
    };
    let mut raw = burst(config);
    assert_close(
        raw.phi(last + ms(1_000), &a).unwrap(),
        43.429_448_190_325_18,
    );
    assert_close(raw.phi(last + ms(500), &a).unwrap(), 21.714_724_095_162_59);
    tick(&mut raw, last, last + ms(500));
    assert!(matches!(drain(&mut raw)[..], [FailureEvent::PeerDead { node, .. }] if node == a));
    assert_eq!(raw.stats().convictions, 1);
}

#[test]
fn samples_longer_than_max_interval_are_not_learnt() {
    let t0 = crate::test_util::epoch();
    let mut fd = detector(FailureConfig::default(), t0);
    let a = node(1);
    // Heard at 0 and 1.25 s: window [0.75, 1.25], mean 1 s.
    fd.handle_heartbeat(t0, a);
    fd.handle_heartbeat(t0 + ms(1_250), a);
    // Then after 12 s (> max_interval 10 s, < the 18.4 s it takes to convict at mean 1 s),
    // checked all along: the sample is dropped, only the last arrival moves.
    let last = t0 + ms(13_250);
    tick(&mut fd, t0 + ms(1_300), last);
    fd.handle_heartbeat(last, a);
    assert_eq!(drain(&mut fd), vec![]);
    assert_eq!(fd.window_len(&a), Some(2));
    assert_eq!(fd.mean_interval(&a), Some(ms(1_000)));
    assert_eq!(fd.stats().samples_over_max_interval, 1);
    // t = 2 s: phi = 2 / (1 · ln 10) = 0.8685889638.
    assert_close(
        fd.phi(last + ms(2_000), &a).unwrap(),
        0.868_588_963_806_503_5,
    );
}

// ----- detection timing -----

#[test]
fn peer_heard_every_second_never_crosses_the_threshold() {
    let t0 = crate::test_util::epoch();
    let mut fd = detector(FailureConfig::default(), t0);
    let peers = [node(1), node(2), node(3)];
    let (events, max_phi) = run_regular(&mut fd, &peers, t0, t0 + ms(1_000_000), ms(1_000));
    assert_eq!(events, vec![]);
    // The longest silence at a check is 0.9 s. Once the window holds real samples the mean is
    // (0.75 + k) / (k + 1) s ≥ 0.875 s, so phi ≤ 0.9 / (0.875 · ln 10) = 0.4467; the largest
    // value comes in the first second, with the window [0.75 s]:
    // phi = 0.9 / (0.75 · ln 10) = 0.5211533783 ≪ 8.
    assert_close(max_phi, 0.521_153_378_283_902_2);
    assert_eq!(fd.stats().convictions, 0);
    assert_eq!(fd.live_peers().collect::<Vec<_>>(), peers.to_vec());
    for p in &peers {
        assert_eq!(fd.mean_interval(p), Some(ms(1_000)));
    }
}

#[test]
fn silent_peer_is_convicted_at_the_documented_time() {
    let t0 = crate::test_util::epoch();
    let mut fd = detector(FailureConfig::default(), t0);
    let a = node(1);
    let keep = node(2);
    let (events, _) = run_regular(&mut fd, &[a, keep], t0, t0 + ms(150_000), ms(1_000));
    assert_eq!(events, vec![]);
    let last = t0 + ms(150_000); // a's last heartbeat
    let mean = fd.mean_interval(&a).unwrap();
    assert_eq!(mean, ms(1_000));
    let expected = fd.config().detection_time(mean); // 8 · ln 10 · 1 s = 18.4207 s
    let bound = fd.config().detection_bound(mean); // + one 100 ms check = 18.5207 s

    // Keep `keep` alive and let `a` fall silent; follow poll_timeout like a shell.
    let mut convicted_at = None;
    let mut now = last;
    let mut next_beat = last + ms(1_000);
    while convicted_at.is_none() && now < last + ms(60_000) {
        now = fd.poll_timeout().unwrap();
        if now >= next_beat {
            fd.handle_heartbeat(now, keep);
            next_beat += ms(1_000);
        }
        fd.handle_timeout(now);
        for event in drain(&mut fd) {
            match event {
                FailureEvent::PeerDead { node, phi } => {
                    assert_eq!(node, a);
                    // 18.5 / ln 10 = 8.0344479152: the first check after the crossing.
                    assert_close(phi, 8.034_447_915_210_158);
                    convicted_at = Some(now);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let silence = convicted_at.expect("convicted") - last;
    // Crossed at 18.4207 s; checks at 18.4 s (phi 7.99) and 18.5 s (phi 8.03).
    assert!(silence > expected && silence <= bound, "{silence:?}");
    assert_eq!(silence, ms(18_500));
    assert_eq!(fd.is_live(&a), Some(false));
    assert_eq!(fd.dead_peers().collect::<Vec<_>>(), vec![a]);
    assert_eq!(fd.live_peers().collect::<Vec<_>>(), vec![keep]);
    assert_eq!(fd.stats().convictions, 1);
}

/// The framework's own heartbeat pattern: every node's Scuttlebutt heartbeat counter advances
/// once per 1 s gossip round, and each advance reaches us after 1 to 4 rounds (directly or
/// relayed), at a random phase within the round; we report a heartbeat only when the counter
/// we learn is newer than any we knew. No live peer is convicted in ten minutes (largest phi
/// about 3.5), and a crashed one is convicted within the documented bound of its last
/// heartbeat reaching us, computed from its window mean at that moment.
#[test]
fn relayed_scuttlebutt_heartbeats_detection_bound() {
    let t0 = crate::test_util::epoch();
    let mut rng = StdRng::seed_from_u64(7);
    let mut fd = detector(FailureConfig::default(), t0);
    let peers: Vec<NodeId> = (1..=20).map(node).collect();
    let crashed = peers[0];
    let crash_round = 600u64;
    // (arrival ms, peer index, counter) of every advance, sorted by arrival.
    let mut arrivals: Vec<(u64, usize, u64)> = Vec::new();
    for (i, _) in peers.iter().enumerate() {
        let rounds = if i == 0 { crash_round } else { 700 };
        for k in 0..rounds {
            let delay = rng.random_range(1..=4u64) * 1_000 + rng.random_range(0..1_000u64);
            arrivals.push((k * 1_000 + delay, i, k));
        }
    }
    arrivals.sort();
    let mut known = vec![None::<u64>; peers.len()];
    let mut last_heard = vec![t0; peers.len()];
    let mut mean_at_last = Duration::ZERO;
    let mut next = arrivals.iter().peekable();
    let mut max_phi = 0.0f64;
    let mut convicted_at = None;
    let end = t0 + ms(700_000);
    // Discrete events: the next arrival or the next check, whichever comes first.
    loop {
        let check = fd.poll_timeout().unwrap_or(end + ms(1));
        let arrival = next.peek().map(|&&(at, i, k)| (t0 + ms(at), i, k));
        match arrival {
            Some((at, i, k)) if at <= check => {
                next.next();
                if known[i].is_none_or(|seen| k > seen) {
                    known[i] = Some(k);
                    fd.handle_heartbeat(at, peers[i]);
                    last_heard[i] = at;
                    if i == 0 {
                        mean_at_last = fd.mean_interval(&crashed).unwrap();
                    }
                }
            }
            _ if check > end => break,
            _ => {
                fd.handle_timeout(check);
                for event in drain(&mut fd) {
                    match event {
                        FailureEvent::PeerDead { node, .. } if node == crashed => {
                            convicted_at = Some(check)
                        }
                        other => panic!("unexpected {other:?} at {:?}", check - t0),
                    }
                }
                for p in &peers[1..] {
                    max_phi = max_phi.max(fd.phi(check, p).unwrap_or(0.0));
                }
            }
        }
    }
    // An advance is reported only if no newer one overtook it, so reports average about
    // 1.5 s (an overtaken advance is skipped), with gaps of up to several seconds.
    for p in &peers[1..] {
        let mean = fd.mean_interval(p).unwrap();
        assert!(mean > ms(1_300) && mean < ms(1_800), "{mean:?}");
    }
    assert!(max_phi < 4.0, "largest phi of a live peer {max_phi}");
    let silence = convicted_at.expect("crashed peer convicted") - last_heard[0];
    let config = fd.config();
    assert!(silence > config.detection_time(mean_at_last), "{silence:?}");
    assert!(
        silence <= config.detection_bound(mean_at_last),
        "{silence:?}"
    );
    // 8 · ln 10 · ~1.5 s ≈ 27.6 s.
    assert!(silence > ms(24_000) && silence < ms(33_000), "{silence:?}");
}

#[test]
fn dead_peer_heard_again_becomes_live() {
    let t0 = crate::test_util::epoch();
    let mut fd = detector(FailureConfig::default(), t0);
    let a = node(1);
    let (_, _) = run_regular(&mut fd, &[a], t0, t0 + ms(120_000), ms(1_000));
    let window_before = fd.window_len(&a);
    let mut now = t0 + ms(120_000);
    while fd.is_live(&a) == Some(true) {
        now = fd.poll_timeout().unwrap();
        fd.handle_timeout(now);
    }
    assert!(matches!(drain(&mut fd)[..], [FailureEvent::PeerDead { node, .. }] if node == a));
    // phi keeps growing while dead.
    assert!(fd.phi(now + ms(10_000), &a).unwrap() > fd.phi(now, &a).unwrap());

    // Heard again 5 s later: live, announced, and the ~23.5 s outage is not a sample.
    let back = now + ms(5_000);
    fd.handle_heartbeat(back, a);
    assert_eq!(drain(&mut fd), vec![FailureEvent::PeerLive { node: a }]);
    assert_eq!(fd.is_live(&a), Some(true));
    assert_eq!(fd.window_len(&a), window_before);
    assert_eq!(fd.mean_interval(&a), Some(ms(1_000)));
    assert_close(fd.phi(back, &a).unwrap(), 0.0);
    let s = fd.stats();
    assert_eq!((s.convictions, s.revivals, s.peers_dead), (1, 1, 0));

    // It stays live on its old rhythm; a second heartbeat is not announced again.
    let (events, _) = run_regular(&mut fd, &[a], back, back + ms(60_000), ms(1_000));
    assert_eq!(events, vec![]);
    assert_eq!(fd.stats().revivals, 1);
}

// ----- pause guard -----

/// Three peers heard every second; then the detector's own process stalls for 30 s (no input
/// at all), and resumes.
fn stalled_detector(t0: Instant) -> (FailureDetector, [NodeId; 3], Instant) {
    let mut fd = detector(FailureConfig::default(), t0);
    let peers = [node(1), node(2), node(3)];
    let (events, _) = run_regular(&mut fd, &peers, t0, t0 + ms(120_000), ms(1_000));
    assert_eq!(events, vec![]);
    // The last input was the check at 120.0 s (heartbeats at 120.0 s).
    (fd, peers, t0 + ms(120_000))
}

#[test]
fn local_stall_convicts_nobody() {
    let t0 = crate::test_util::epoch();
    let (mut fd, peers, stall_start) = stalled_detector(t0);
    let phi_before: Vec<f64> = peers
        .iter()
        .map(|p| fd.phi(stall_start + ms(100), p).unwrap())
        .collect();
    let resume = stall_start + ms(30_000);
    // Unguarded, 30 s of silence at mean 1 s would be phi = 30 / ln 10 = 13.03 > 8.
    assert!(fd.phi(resume, &peers[0]).unwrap() > 13.0);

    // The overdue timer fires first.
    fd.handle_timeout(resume);
    assert_eq!(drain(&mut fd), vec![]);
    let s = fd.stats();
    assert_eq!(s.stalls_detected, 1);
    assert_eq!(s.stalled_time, ms(30_000));
    // Each peer resumes with the phi it had 0.1 s into the stall: 0.1 / ln 10 = 0.0434.
    for (p, before) in peers.iter().zip(&phi_before) {
        assert_close(fd.phi(resume + ms(100), p).unwrap(), *before);
        assert_close(*before, 0.043_429_448_190_325_18);
    }

    // The late packets queued during the stall come in; the samples spanning it are dropped.
    for (i, p) in peers.iter().enumerate() {
        fd.handle_heartbeat(resume + ms(50 + i as u64), *p);
        assert_eq!(fd.mean_interval(p), Some(ms(1_000)), "window not poisoned");
        assert_eq!(fd.window_len(p), Some(100));
    }
    assert_eq!(fd.stats().samples_discarded_by_pause_guard, 3);

    // Life goes on: nobody is convicted, and the rhythm is still 1 s.
    let (events, max_phi) = run_regular(
        &mut fd,
        &peers,
        resume + ms(1_000),
        resume + ms(120_000),
        ms(1_000),
    );
    assert_eq!(events, vec![]);
    assert!(max_phi < 0.5, "{max_phi}");
    assert_eq!(fd.stats().convictions, 0);
    for p in &peers {
        assert_eq!(fd.mean_interval(p), Some(ms(1_000)));
    }
}

#[test]
fn stall_detected_by_a_heartbeat_first() {
    let t0 = crate::test_util::epoch();
    let (mut fd, peers, stall_start) = stalled_detector(t0);
    let resume = stall_start + ms(30_000);
    // The first thing after the stall is the late packet of peer 1, then the timer.
    fd.handle_heartbeat(resume, peers[0]);
    fd.handle_timeout(resume + ms(1));
    assert_eq!(drain(&mut fd), vec![]);
    let s = fd.stats();
    assert_eq!(
        (s.stalls_detected, s.samples_discarded_by_pause_guard),
        (1, 1)
    );
    assert_eq!(fd.mean_interval(&peers[0]), Some(ms(1_000)));
    // The others have not been heard since, but the stall is not their silence:
    // phi = 0.001 / ln 10 ≈ 0.0004.
    assert!(fd.phi(resume + ms(1), &peers[1]).unwrap() < 0.001);
}

#[test]
fn without_a_stall_thirty_seconds_of_silence_convicts() {
    // The contrast: the detector keeps running while the same three peers go quiet for 30 s.
    let t0 = crate::test_util::epoch();
    let (mut fd, peers, start) = stalled_detector(t0);
    let mut now = start;
    while now < start + ms(30_000) {
        now = fd.poll_timeout().unwrap();
        fd.handle_timeout(now);
    }
    let dead: Vec<NodeId> = drain(&mut fd)
        .into_iter()
        .filter_map(|e| match e {
            FailureEvent::PeerDead { node, .. } => Some(node),
            _ => None,
        })
        .collect();
    assert_eq!(dead, peers.to_vec());
    assert_eq!(fd.stats().stalls_detected, 0);
}

#[test]
fn peer_dead_before_a_stall_is_still_convicted_after_it() {
    let t0 = crate::test_util::epoch();
    let (mut fd, peers, _) = stalled_detector(t0);
    let last = t0 + ms(120_000); // every peer's last heartbeat
    // Peers 2 and 3 keep beating for 5 s; peer 1 is silent. Then a 30 s stall.
    let (_, _) = run_regular(
        &mut fd,
        &peers[1..],
        last + ms(1_000),
        last + ms(5_000),
        ms(1_000),
    );
    let stall_start = last + ms(5_000);
    let resume = stall_start + ms(30_000);
    let mut now = resume;
    let mut next_beat = resume;
    let mut convicted_at = None;
    while convicted_at.is_none() && now < resume + ms(60_000) {
        if now >= next_beat {
            for p in &peers[1..] {
                fd.handle_heartbeat(now, *p);
            }
            next_beat += ms(1_000);
        }
        fd.handle_timeout(now);
        for e in drain(&mut fd) {
            match e {
                FailureEvent::PeerDead { node, .. } if node == peers[0] => convicted_at = Some(now),
                other => panic!("unexpected {other:?}"),
            }
        }
        now = fd.poll_timeout().unwrap();
    }
    // Its silence excluding the 30 s stall: crossed 18.42 s after its last heartbeat, i.e.
    // at last + 30 s + 18.42 s, convicted at the next check.
    let silence = convicted_at.expect("convicted") - last - ms(30_000);
    let config = fd.config();
    assert!(silence > config.detection_time(ms(1_000)), "{silence:?}");
    assert!(silence <= config.detection_bound(ms(1_000)), "{silence:?}");
    assert_eq!(fd.stats().stalls_detected, 1);
    assert_eq!(fd.stats().convictions, 1);
}

#[test]
fn a_long_gap_with_no_live_peer_is_not_a_stall() {
    let t0 = crate::test_util::epoch();
    let mut fd = detector(FailureConfig::default(), t0);
    // Idle for an hour, then a first peer: nothing to guard.
    fd.handle_heartbeat(t0 + ms(3_600_000), node(1));
    assert_eq!(fd.stats().stalls_detected, 0);
    assert_eq!(
        fd.poll_timeout(),
        Some(t0 + ms(100)),
        "overdue: check at once"
    );
    // Only dead peers: the detector sleeps until the forget time, and that is no stall.
    let mut now = t0 + ms(3_600_000);
    while fd.is_live(&node(1)) == Some(true) {
        // An overdue deadline fires at once, at the current time.
        now = fd.poll_timeout().unwrap().max(now);
        fd.handle_timeout(now);
        now += ms(1);
    }
    now -= ms(1);
    let forget_at = now + fd.config().dead_forget_after;
    assert_eq!(fd.poll_timeout(), Some(forget_at));
    fd.handle_timeout(forget_at);
    assert_eq!(fd.stats().stalls_detected, 0);
    let events = drain(&mut fd);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], FailureEvent::PeerForgotten { node: node(1) });
    assert_eq!(fd.is_live(&node(1)), None);
    assert_eq!(fd.poll_timeout(), None);
    // Heard again after being forgotten: tracked afresh, silently.
    fd.handle_heartbeat(forget_at + ms(1), node(1));
    assert_eq!(drain(&mut fd), vec![]);
    assert_eq!(fd.is_live(&node(1)), Some(true));
    assert_eq!(fd.window_len(&node(1)), Some(1));
}

// ----- bounds and bookkeeping -----

#[test]
fn max_peers_refuses_or_evicts_the_longest_dead() {
    let t0 = crate::test_util::epoch();
    let config = FailureConfig {
        max_peers: 3,
        event_queue_capacity: 3,
        ..FailureConfig::default()
    };
    let mut fd = detector(config, t0);
    for n in 1..=5 {
        fd.handle_heartbeat(t0, node(n));
    }
    let s = fd.stats();
    assert_eq!((s.peers_tracked, s.refused, s.peers_added), (3, 2, 3));
    assert_eq!(fd.phi(t0, &node(4)), None);
    assert_eq!(fd.is_live(&node(5)), None);

    // Node 1 goes silent and is convicted at 13.9 s (window [0.75 s] then [0.75, 1, 1, ...]);
    // the others beat every second.
    let (events, _) = run_regular(
        &mut fd,
        &[node(2), node(3)],
        t0 + ms(1_000),
        t0 + ms(20_000),
        ms(1_000),
    );
    assert!(matches!(events[..], [FailureEvent::PeerDead { node: n, .. }] if n == node(1)));
    // Now node 4 gets in, in place of the dead node 1.
    fd.handle_heartbeat(t0 + ms(20_050), node(4));
    assert_eq!(
        drain(&mut fd),
        vec![FailureEvent::PeerForgotten { node: node(1) }]
    );
    assert_eq!(fd.is_live(&node(1)), None);
    assert_eq!(fd.is_live(&node(4)), Some(true));
    // Full again, all live: node 5 is refused.
    fd.handle_heartbeat(t0 + ms(20_060), node(5));
    let s = fd.stats();
    assert_eq!((s.peers_tracked, s.refused, s.dead_evicted), (3, 3, 1));
}

#[test]
fn window_is_bounded() {
    let t0 = crate::test_util::epoch();
    let config = FailureConfig {
        window: 5,
        ..FailureConfig::default()
    };
    let mut fd = detector(config, t0);
    let a = node(1);
    // Gaps 1.00, 1.05, ..., 3.45 s (50 samples); the window keeps the last five:
    // 3.25 .. 3.45 s, mean 3.35 s.
    let mut now = t0;
    fd.handle_heartbeat(now, a);
    for i in 0..50u64 {
        now += ms(1_000 + 50 * i);
        fd.handle_heartbeat(now, a);
        assert!(fd.window_len(&a).unwrap() <= 5);
    }
    assert_eq!(fd.window_len(&a), Some(5));
    assert_eq!(fd.mean_interval(&a), Some(ms(3_350)));
    assert_eq!(fd.stats().samples, 50);
    // t = 3.35 s: phi = 3.35 / (3.35 · ln 10) = 1 / ln 10 = 0.4342944819.
    assert_close(fd.phi(now + ms(3_350), &a).unwrap(), LOG10_E);

    // And the largest window is accepted.
    let config = FailureConfig {
        window: MAX_WINDOW,
        ..FailureConfig::default()
    };
    let mut fd = detector(config, t0);
    for i in 0..=(MAX_WINDOW as u64 + 10) {
        fd.handle_heartbeat(t0 + ms(1_000 * i), a);
    }
    assert_eq!(fd.window_len(&a), Some(MAX_WINDOW));
    assert_eq!(fd.mean_interval(&a), Some(ms(1_000)));
}

#[test]
fn undrained_events_are_bounded_and_counted() {
    let t0 = crate::test_util::epoch();
    let config = FailureConfig {
        max_peers: 3,
        event_queue_capacity: 3,
        ..FailureConfig::default()
    };
    let mut fd = detector(config, t0);
    for n in 1..=3 {
        fd.handle_heartbeat(t0, node(n));
    }
    // All three convicted at one check (13.8155 s for a peer heard once), not drained.
    tick(&mut fd, t0, t0 + ms(14_000));
    assert_eq!(fd.stats().convictions, 3);
    // Their revival cannot be queued.
    fd.handle_heartbeat(t0 + ms(14_100), node(1));
    let s = fd.stats();
    assert_eq!((s.revivals, s.events_dropped), (1, 1));
    let events = drain(&mut fd);
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .all(|e| matches!(e, FailureEvent::PeerDead { phi, .. } if *phi > 8.0))
    );
}

#[test]
fn remove_stops_tracking_silently() {
    let t0 = crate::test_util::epoch();
    let mut fd = detector(FailureConfig::default(), t0);
    assert_eq!(fd.poll_timeout(), None);
    fd.handle_heartbeat(t0, node(1));
    fd.handle_heartbeat(t0, node(2));
    assert_eq!(fd.poll_timeout(), Some(t0 + ms(100)));
    tick(&mut fd, t0, t0 + ms(14_000)); // both convicted at 13.9 s
    assert_eq!(drain(&mut fd).len(), 2);
    assert_eq!(fd.poll_timeout(), Some(t0 + ms(13_900) + ms(3_600_000)));
    fd.remove(&node(1));
    fd.remove(&node(2));
    fd.remove(&node(3)); // not tracked: nothing happens
    assert_eq!(drain(&mut fd), vec![]);
    assert_eq!(fd.poll_timeout(), None);
    let s = fd.stats();
    assert_eq!((s.removed, s.peers_tracked, s.peers_dead), (2, 0, 0));
    assert_eq!(fd.dead_peers().count(), 0);
}

#[test]
fn out_of_order_heartbeat_is_not_a_sample() {
    let t0 = crate::test_util::epoch();
    let mut fd = detector(FailureConfig::default(), t0);
    let a = node(1);
    fd.handle_heartbeat(t0 + ms(1_000), a);
    fd.handle_heartbeat(t0 + ms(500), a);
    assert_eq!(fd.stats().out_of_order, 1);
    assert_eq!(fd.window_len(&a), Some(1));
    assert_close(fd.phi(t0 + ms(1_000), &a).unwrap(), 0.0);
}

#[test]
fn new_rejects_an_invalid_config() {
    let t0 = crate::test_util::epoch();
    let config = FailureConfig {
        phi_threshold: f64::NAN,
        ..FailureConfig::default()
    };
    assert!(FailureDetector::new(config, t0).is_err());
}

// ----- property tests -----

#[derive(Clone, Debug)]
enum Input {
    Heartbeat { node: u8, after: Duration },
    Timeout { after: Duration },
    Remove { node: u8 },
}

fn arb_after() -> impl Strategy<Value = Duration> {
    prop_oneof![
        4 => (0u64..3_000).prop_map(Duration::from_millis),
        2 => (0u64..60_000).prop_map(Duration::from_millis),
        1 => (0u64..1_000_000).prop_map(Duration::from_nanos),
        1 => (0u64..30 * 24 * 3_600).prop_map(Duration::from_secs),
    ]
}

fn arb_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        5 => (0u8..8, arb_after()).prop_map(|(node, after)| Input::Heartbeat { node, after }),
        4 => arb_after().prop_map(|after| Input::Timeout { after }),
        1 => (0u8..8).prop_map(|node| Input::Remove { node }),
    ]
}

/// Valid configurations across the whole range: tiny and huge windows, floors, thresholds.
fn arb_config() -> impl Strategy<Value = FailureConfig> {
    (
        1usize..8,
        1u64..500,
        0u64..5_000,
        1u64..3_000,
        1.0f64..1e6,
        1u64..5_000,
        0u64..20_000,
        1usize..6,
        1u64..100_000,
    )
        .prop_map(
            |(window, check, pause, min_mean, factor, first, extra, max_peers, forget)| {
                let check_interval = Duration::from_millis(check);
                let acceptable_pause = check_interval * 2 + Duration::from_millis(pause);
                let min_mean = Duration::from_millis(min_mean);
                // Just large enough that phi_threshold · ln 10 · min_mean ≥ acceptable_pause.
                let phi_threshold = acceptable_pause.as_secs_f64()
                    / (LN_10 * min_mean.as_secs_f64())
                    * (1.001 + factor.ln());
                let first_interval = Duration::from_millis(first);
                FailureConfig {
                    phi_threshold,
                    window,
                    first_interval,
                    min_mean,
                    max_interval: first_interval.max(min_mean) + Duration::from_millis(extra),
                    acceptable_pause,
                    check_interval,
                    max_peers,
                    dead_forget_after: Duration::from_millis(forget),
                    event_queue_capacity: max_peers,
                }
            },
        )
}

fn run_inputs(config: FailureConfig, inputs: Vec<Input>) {
    let t0 = crate::test_util::epoch();
    let mut fd = detector(config.clone(), t0);
    let mut now = t0;
    for input in inputs {
        match input {
            Input::Heartbeat { node: n, after } => {
                now += after;
                fd.handle_heartbeat(now, node(n));
            }
            Input::Timeout { after } => {
                now += after;
                fd.handle_timeout(now);
            }
            Input::Remove { node: n } => fd.remove(&node(n)),
        }
        let s = fd.stats();
        assert!(s.peers_tracked <= config.max_peers, "{s:?}");
        assert!(s.peers_dead <= s.peers_tracked, "{s:?}");
        assert_eq!(
            fd.live_peers().count() + fd.dead_peers().count(),
            s.peers_tracked
        );
        assert_eq!(fd.dead_peers().count(), s.peers_dead);
        for n in 0..8 {
            let id = node(n);
            if let Some(phi) = fd.phi(now, &id) {
                assert!(phi.is_finite() && phi >= 0.0, "phi {phi}");
                let len = fd.window_len(&id).unwrap();
                assert!((1..=config.window).contains(&len), "window {len}");
            }
            // Far in the future too.
            if let Some(phi) = fd.phi(now + Duration::from_secs(100 * 365 * 86_400), &id) {
                assert!(phi.is_finite(), "phi {phi}");
            }
        }
        if let Some(at) = fd.poll_timeout() {
            // A deadline is never further than the forget time from the last input.
            assert!(at <= now + config.dead_forget_after + config.check_interval);
        }
        let mut queued = 0;
        while let Some(event) = fd.poll_event() {
            queued += 1;
            if let FailureEvent::PeerDead { phi, .. } = event {
                assert!(phi.is_finite() && phi > config.phi_threshold, "phi {phi}");
            }
        }
        assert!(queued <= config.event_queue_capacity);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any sequence of heartbeats, checks and removals with time moving forward, with the
    /// default configuration: no panic, phi never NaN, bounds hold after every step.
    #[test]
    fn arbitrary_inputs_with_defaults_never_panic(
        inputs in prop::collection::vec(arb_input(), 0..300)
    ) {
        run_inputs(FailureConfig::default(), inputs);
    }

    /// The same over arbitrary valid configurations.
    #[test]
    fn arbitrary_inputs_and_configs_never_panic(
        config in arb_config(),
        inputs in prop::collection::vec(arb_input(), 0..300)
    ) {
        prop_assume!(config.validate().is_ok());
        run_inputs(config, inputs);
    }
}
