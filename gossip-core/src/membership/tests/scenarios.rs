//! CYCLON scenarios on the virtual-clock network of [`super::sim`], up to 1,000 cores.
//!
//! A cycle is one `shuffle_interval` (1 s of virtual time). `GOSSIP_SIM_SEED=<n>` replaces a
//! scenario's seed, to rerun a printed failure or try another.

use std::time::Duration;

use super::sim::{Bootstrap, Overlay, Sim, SimConfig};

const NODES: usize = 1_000;
const MAX_STEPS: u64 = 5_000_000;

fn cycles(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn report(name: &str, sim: &Sim, o: &Overlay) -> String {
    format!(
        "{name} (seed {}) at {:?}: {} live, in-degree mean {:.2} stddev {:.2} min {} max {}, \
         view min {} mean {:.2}, isolated {}, dead entries {}, reachable {}/{}, \
         co-reachable {}/{}, datagrams {}, unanswered {}, steps {}",
        sim.config.seed,
        sim.elapsed(),
        o.live,
        o.in_degree_mean,
        o.in_degree_stddev,
        o.in_degree_min,
        o.in_degree_max,
        o.view_min,
        o.view_mean,
        o.isolated,
        o.dead_entries,
        o.reachable,
        o.live,
        o.co_reachable,
        o.live,
        sim.datagrams,
        sim.total(|s| s.shuffles_unanswered),
        sim.steps,
    )
}

/// The overlay is balanced (in-degree stddev ≤ 2 around a mean of c = 20), nobody is
/// isolated, and every live node reaches every other.
fn assert_healthy(name: &str, sim: &Sim) -> Overlay {
    let o = sim.overlay();
    let r = report(name, sim, &o);
    println!("{r}");
    assert!(o.in_degree_stddev <= 2.0, "{r}");
    assert_eq!(o.isolated, 0, "{r}");
    assert!(o.strongly_connected(), "{r}");
    assert!(sim.occupancy_ok(), "{r}");
    o
}

#[test]
fn thousand_nodes_from_three_seeds_are_balanced_and_connected_after_100_cycles() {
    let config = SimConfig::new(NODES, 1, Bootstrap::Seeds(3)).seed_from_env();
    let mut sim = Sim::new(config);
    for c in [1u64, 2, 5, 10, 20, 50] {
        sim.run_until(cycles(c), MAX_STEPS);
        let o = sim.overlay();
        println!("{}", report(&format!("cycle {c}"), &sim, &o));
    }
    sim.run_until(cycles(100), MAX_STEPS);
    let o = assert_healthy("1,000 nodes, 3 seeds, 100 cycles", &sim);
    // Every view is full but for the slot of a partner whose reply is in flight, so the mean
    // in-degree is c = 20 less those few slots.
    let seed = sim.config.seed;
    assert!(o.view_min >= 19, "seed {seed}: {o:?}");
    assert!(o.in_degree_mean >= 19.9, "seed {seed}: {o:?}");
    assert_eq!(sim.total(|s| s.shuffles_unanswered), 0, "seed {seed}");
    // Entries that found no slot (a shuffle overlapping another) are rare.
    let no_room = sim.total(|s| s.discarded_no_room);
    assert!(
        no_room * 1_000 <= sim.total(|s| s.shuffles_sent),
        "seed {seed}: {no_room}"
    );
}

/// Crashes half of the nodes, drawn at random, after 50 cycles and lets the survivors run 40
/// more; returns the first cycle after the crash from which no live view held a dead entry.
/// `detection` as in [`Sim::crash_random`].
fn half_crash(config: SimConfig, detection: Option<(Duration, Duration)>, name: &str) -> u64 {
    let mut sim = Sim::new(config);
    sim.run_until(cycles(50), MAX_STEPS);
    assert_healthy(&format!("{name}: before the crash"), &sim);
    sim.crash_random(NODES / 2, detection);
    let mut clean_at = None;
    for c in 1..=40u64 {
        sim.run_until(cycles(50 + c), MAX_STEPS);
        let o = sim.overlay();
        if c % 5 == 0 || (clean_at.is_none() && o.dead_entries == 0) {
            println!("{}", report(&format!("{name}: {c} cycles after"), &sim, &o));
        }
        if o.dead_entries == 0 && clean_at.is_none() {
            clean_at = Some(c);
        }
        if o.dead_entries > 0 {
            clean_at = None;
        }
    }
    let o = sim.overlay();
    let r = report(&format!("{name}: 40 cycles after the crash"), &sim, &o);
    assert_eq!(o.live, NODES / 2, "{r}");
    assert_eq!(o.dead_entries, 0, "{r}");
    assert_eq!(o.isolated, 0, "{r}");
    assert!(o.strongly_connected(), "{r}");
    assert!(sim.occupancy_ok(), "{r}");
    println!(
        "{name}: no dead entry from cycle {clean_at:?} after the crash; {} failure-detector \
         reports",
        sim.reports()
    );
    clean_at.unwrap_or(u64::MAX)
}

#[test]
fn half_crashed_unreported_leave_every_view_through_unanswered_shuffles() {
    let config = SimConfig::new(NODES, 2, Bootstrap::Seeds(3)).seed_from_env();
    half_crash(config, None, "half crashed, no failure detector");
}

#[test]
fn half_crashed_reported_by_the_failure_detector_leave_every_view() {
    half_crash(
        SimConfig::new(NODES, 3, Bootstrap::Seeds(3)).seed_from_env(),
        Some((Duration::from_secs(2), Duration::from_secs(5))),
        "half crashed, failure detector",
    );
}

/// Every node knows one earlier node by address: without rule 6 (join through the seed even
/// when others have filled the view) the subtrees stay separate overlays.
#[test]
fn nodes_joining_along_a_random_tree_form_one_overlay() {
    let config = SimConfig::new(300, 4, Bootstrap::RandomTree).seed_from_env();
    let mut sim = Sim::new(config);
    sim.run_until(cycles(60), MAX_STEPS);
    let o = sim.overlay();
    let r = report("300 nodes, random tree, 60 cycles", &sim, &o);
    println!("{r}");
    assert_eq!(o.isolated, 0, "{r}");
    assert!(o.strongly_connected(), "{r}");
    assert!(o.view_min >= 19, "{r}");
    assert!(o.in_degree_stddev <= 3.0, "{r}");
    assert!(sim.occupancy_ok(), "{r}");
}

#[test]
fn two_hundred_nodes_with_ten_percent_loss_stay_connected() {
    let mut config = SimConfig::new(200, 5, Bootstrap::Seeds(3)).seed_from_env();
    config.loss = 0.1;
    let mut sim = Sim::new(config);
    sim.run_until(cycles(100), MAX_STEPS);
    let o = sim.overlay();
    let r = report("200 nodes, 10% loss, 100 cycles", &sim, &o);
    println!("{r}");
    // A lost request or reply costs the initiator its partner's entry: views run a little
    // short of c, but the overlay holds together.
    assert_eq!(o.isolated, 0, "{r}");
    assert!(o.strongly_connected(), "{r}");
    assert!(o.view_min >= 15, "{r}");
    assert!(sim.total(|s| s.shuffles_unanswered) > 0, "{r}");
    assert!(sim.occupancy_ok(), "{r}");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = |seed| {
        let mut config = SimConfig::new(100, seed, Bootstrap::Seeds(2));
        config.loss = 0.05;
        let mut sim = Sim::new(config);
        sim.run_until(cycles(10), MAX_STEPS);
        sim.crash_random(30, Some((Duration::from_secs(1), Duration::from_secs(3))));
        sim.run_until(cycles(20), MAX_STEPS);
        (sim.views(), sim.datagrams, sim.lost, sim.steps)
    };
    let a = run(9);
    assert_eq!(a, run(9));
    assert_ne!(a, run(10), "the seed matters");
}

/// The 1,000-node scenarios over 10 more seeds (about 30 s optimised): run
/// `cargo test --release -p gossip-core membership_many_seeds -- --nocapture` (in release the test is not skipped).
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow: 30 runs of 1,000 nodes; unoptimised only: .ci/run runs it optimised"
)]
fn membership_many_seeds() {
    let mut worst_stddev: f64 = 0.0;
    let mut worst_clean = 0;
    for seed in 100..110 {
        let mut sim = Sim::new(SimConfig::new(NODES, seed, Bootstrap::Seeds(3)));
        sim.run_until(cycles(100), MAX_STEPS);
        let o = assert_healthy("many seeds", &sim);
        worst_stddev = worst_stddev.max(o.in_degree_stddev);
        let config = SimConfig::new(NODES, seed, Bootstrap::Seeds(3));
        worst_clean = worst_clean.max(half_crash(config.clone(), None, "many seeds, no detector"));
        worst_clean = worst_clean.max(half_crash(
            config,
            Some((Duration::from_secs(2), Duration::from_secs(5))),
            "many seeds, detector",
        ));
    }
    println!("worst in-degree stddev {worst_stddev:.2}, worst cycles to clean {worst_clean}");
}
