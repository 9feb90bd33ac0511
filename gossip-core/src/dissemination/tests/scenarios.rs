//! Multi-node scenarios on the virtual-clock network of [`super::sim`].

use std::time::Duration;

use super::sim::{Sim, SimConfig};

const BROADCASTS: usize = 200;
const MAX_STEPS: u64 = 2_000_000;

/// Runs `broadcasts` broadcasts from random nodes, one every 10 ms from t = 100 ms, then lets
/// the network run until `until`.
///
/// `GOSSIP_SIM_SEED=<n>` replaces the scenario's seed, to rerun a failure printed by
/// [`assert_exactly_once`] or to try another one.
fn run(mut config: SimConfig, until: Duration) -> Sim {
    if let Some(seed) = std::env::var("GOSSIP_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        config.seed = seed;
    }
    simulate(config, until)
}

/// [`run`] with exactly the given seed.
fn simulate(config: SimConfig, until: Duration) -> Sim {
    let mut sim = Sim::new(config);
    sim.schedule_broadcasts(
        BROADCASTS,
        Duration::from_millis(100),
        Duration::from_millis(10),
    );
    sim.run_until(until, MAX_STEPS);
    sim
}

/// Every node delivered every broadcast exactly once, the bounds held, and the run finished
/// within `deadline` of each broadcast's start.
fn assert_exactly_once(sim: &Sim, deadline: Duration) {
    let report = sim.report("run");
    let n = sim.node_count();
    assert_eq!(sim.broadcasts.len(), BROADCASTS, "{report}");
    let (once, more) = sim.exactly_once();
    assert!(
        more.is_empty(),
        "delivered more than once: {more:?}\n{report}"
    );
    assert_eq!(once, n * BROADCASTS, "missing deliveries\n{report}");
    assert!(sim.occupancy_ok(), "{report}");
    assert!(sim.max_completion() <= deadline, "{report}");
    let delivered = sim.total(|s| s.delivered);
    assert_eq!(delivered, (n * BROADCASTS) as u64, "{report}");
}

#[test]
fn ten_nodes_no_loss_every_node_delivers_every_broadcast_once() {
    let sim = run(SimConfig::new(10, 0.0, 1), Duration::from_secs(30));
    println!("{}", sim.report("10 nodes, no loss"));
    assert_exactly_once(&sim, Duration::from_secs(5));
    // Without loss every push collects its ack majority; only the few nodes the random pushes
    // miss are reached by anti-entropy.
    assert_eq!(sim.total(|s| s.ack_timeouts), 0);
    let receiver_deliveries = (9 * BROADCASTS) as u64;
    let pulled = sim.total(|s| s.pulls_recovered);
    assert!(
        pulled * 20 <= receiver_deliveries,
        "{pulled} of {receiver_deliveries} deliveries needed a pull"
    );
    assert_eq!(sim.datagrams_lost, 0);
}

#[test]
fn ten_nodes_twenty_percent_loss_every_node_delivers_every_broadcast_once() {
    // Run well past seen_ttl (90 s) to show that nothing is delivered again once ids are
    // forgotten: by then no node announces or serves them.
    let sim = run(SimConfig::new(10, 0.2, 2), Duration::from_secs(120));
    println!("{}", sim.report("10 nodes, 20% loss"));
    assert_exactly_once(&sim, Duration::from_secs(30));
    assert!(sim.total(|s| s.pulls_recovered) > 0);
    assert!(sim.total(|s| s.ack_timeouts) > 0);
    assert!(sim.datagrams_lost > 0);
    assert!(sim.total(|s| s.seen_expirations) > 0, "ids were forgotten");
}

#[test]
fn fifty_nodes_twenty_percent_loss_every_node_delivers_every_broadcast_once() {
    let sim = run(SimConfig::new(50, 0.2, 3), Duration::from_secs(30));
    println!("{}", sim.report("50 nodes, 20% loss"));
    assert_exactly_once(&sim, Duration::from_secs(30));
    assert!(sim.total(|s| s.pulls_recovered) > 0);
}

#[test]
fn same_seed_same_run() {
    let a = simulate(SimConfig::new(10, 0.2, 42), Duration::from_secs(10));
    let b = simulate(SimConfig::new(10, 0.2, 42), Duration::from_secs(10));
    assert_eq!(a.deliveries, b.deliveries);
    assert!(!a.deliveries.is_empty());
    for i in 0..a.node_count() {
        assert_eq!(a.stats(i), b.stats(i));
    }
    assert_eq!(a.datagrams_sent, b.datagrams_sent);
    let c = simulate(SimConfig::new(10, 0.2, 43), Duration::from_secs(10));
    assert_ne!(a.deliveries, c.deliveries, "the seed matters");
}

/// The 50-node lossy scenario over 20 more seeds (about 5 s optimised, minutes in debug): run
/// `cargo test --release -p gossip-core many_seeds`.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow: 20 runs of the 50-node scenario; unoptimised only: .ci/run runs it optimised"
)]
fn many_seeds_fifty_nodes_twenty_percent_loss() {
    for seed in 100..120 {
        let sim = simulate(SimConfig::new(50, 0.2, seed), Duration::from_secs(30));
        println!("{}", sim.report("50 nodes, 20% loss"));
        assert_exactly_once(&sim, Duration::from_secs(30));
    }
}
