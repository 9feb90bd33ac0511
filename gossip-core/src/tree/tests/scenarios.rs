//! Many-node scenarios on the simulated network.

use std::time::Duration;

use super::sim::{Sim, SimConfig};

/// 100 nodes (ring + 3 random chords each, about 8 peers), latency 10–50 ms, no loss; 10
/// authors publish 5 messages each, one a second; every node follows every feed.
#[test]
fn hundred_nodes_every_node_gets_every_message_in_order() {
    let mut sim = Sim::new(SimConfig::new(100, 7));
    sim.run_until(Duration::from_secs(12), 2_000_000);
    let report = sim.report("hundred_nodes");
    println!("{report}");
    assert!(sim.complete(), "{report}");
    assert!(sim.occupancy_ok(), "{report}");
    // Payload RMR after each feed's first three messages, per message: copies of a feed
    // message received / (n - 1) - 1.
    let steady = sim.rmr_over(4..=5);
    let worst = sim.max_rmr(4..=5);
    assert!(steady <= 0.05, "RMR {steady}: {report}");
    assert!(worst <= 0.05, "max RMR {worst}: {report}");
    // Once the trees stand, a message crosses them in a few hops of 10-50 ms.
    assert!(
        sim.max_completion_over(4..=5) < Duration::from_millis(500),
        "{report}"
    );
}

/// 40 nodes with 10 % of datagrams lost: notes, grafts and pushes are all lost sometimes;
/// the periodic notes and the repair rules still deliver everything.
#[test]
fn lossy_network_still_delivers_everything() {
    for seed in [1, 2, 3] {
        let mut config = SimConfig::new(40, seed);
        config.loss = 0.10;
        let mut sim = Sim::new(config);
        sim.run_until(Duration::from_secs(40), 2_000_000);
        let report = sim.report("lossy");
        println!("{report}");
        assert!(sim.complete(), "{report}");
        assert!(sim.occupancy_ok(), "{report}");
    }
}

/// 40 nodes; 6 of them go down while messages are being published and come back 4 s later
/// with the clocks they stored for their peers. Their sources are replaced at once while
/// they are away, and when they return the handshakes note only what changed; they catch up.
#[test]
fn churned_nodes_catch_up_with_stored_clocks() {
    let mut sim = Sim::new(SimConfig::new(40, 11));
    let away: Vec<usize> = (30..36).collect();
    sim.run_until(Duration::from_millis(2_500), 2_000_000);
    let lost_before = sim.total(|s| s.sources_lost);
    for &i in &away {
        let peers: Vec<usize> = sim.adjacency[i].iter().copied().collect();
        for j in peers {
            sim.disconnect(i, j);
            sim.disconnect(j, i);
        }
        sim.nodes[i].up = false;
    }
    let lost = sim.total(|s| s.sources_lost) - lost_before;
    sim.run_until(Duration::from_millis(6_500), 2_000_000);
    let entries_before = sim.total(|s| s.note_entries_sent);
    for &i in &away {
        sim.nodes[i].up = true;
        let peers: Vec<usize> = sim.adjacency[i].iter().copied().collect();
        for j in peers {
            sim.connect(i, j);
            sim.connect(j, i);
        }
    }
    // The handshakes on return: each side notes only the feeds that changed since the
    // stored clock (at most the 10 author feeds, not all 10 + own feeds of every node).
    let handshake = sim.total(|s| s.note_entries_sent) - entries_before;
    let links = away.iter().map(|&i| sim.adjacency[i].len()).sum::<usize>() as u64;
    sim.run_until(Duration::from_secs(20), 2_000_000);
    let report = sim.report("churn");
    println!(
        "{report}; sources lost when nodes left {lost}; {handshake} note entries in the return handshakes over {links} links"
    );
    assert!(lost > 0, "some churned node was a source");
    assert!(handshake <= links * 2 * 10, "{handshake} entries");
    assert!(sim.complete(), "{report}");
    assert!(sim.occupancy_ok(), "{report}");
}

/// Heavier variants: 300 nodes with 10 messages per author, and 100 nodes with 5 % loss.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "heavier variant; unoptimised only: .ci/run runs it optimised"
)]
fn many_nodes_longer_and_lossy() {
    let mut config = SimConfig::new(300, 8);
    config.messages_per_author = 10;
    let mut sim = Sim::new(config);
    sim.run_until(Duration::from_secs(20), 20_000_000);
    let report = sim.report("three_hundred_nodes_x10");
    println!("{report}");
    assert!(sim.complete(), "{report}");
    assert!(sim.rmr_over(4..=10) <= 0.05, "{report}");

    let mut config = SimConfig::new(100, 9);
    config.loss = 0.05;
    let mut sim = Sim::new(config);
    sim.run_until(Duration::from_secs(40), 10_000_000);
    let report = sim.report("hundred_nodes_lossy");
    println!("{report}");
    assert!(sim.complete(), "{report}");
}
