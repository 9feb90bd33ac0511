//! Flow control with real reconciliation cores on the virtual-clock network: an overloaded
//! producer, and two producers sharing the capacity.

use std::time::Duration;

use super::secs;
use super::sim::{Producer, Sample, Sim, SimConfig};
use crate::flow::FlowConfig;
use crate::reconcile::ReconcileConfig;

/// A 10-node cluster with default flow control, converged before the producers start.
fn cluster(seed: u64) -> Sim {
    let mut config = SimConfig::new(10, seed).seed_from_env();
    config.core = ReconcileConfig {
        flow: FlowConfig::default(),
        ..ReconcileConfig::default()
    };
    config.keys_per_node = 1;
    let mut sim = Sim::new(config);
    sim.run_until_converged(secs(30))
        .unwrap_or_else(|| panic!("no convergence: {}", sim.report("flow")));
    sim
}

/// A producer that would write 1,000 updates per second over 1,000 distinct keys.
fn heavy() -> Producer {
    Producer {
        every: Duration::from_millis(1),
        keys: 1_000,
        value_len: 32,
    }
}

fn window(samples: &[Sample], from: Duration, to: Duration) -> Vec<Sample> {
    samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .copied()
        .collect()
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Admitted updates per second over the window.
fn throughput(samples: &[Sample]) -> f64 {
    match (samples.first(), samples.last()) {
        (Some(a), Some(b)) if b.at > a.at => {
            (b.admitted - a.admitted) as f64 / (b.at - a.at).as_secs_f64()
        }
        _ => 0.0,
    }
}

fn trajectory(samples: &[Sample], every: usize) -> String {
    samples
        .iter()
        .step_by(every)
        .map(|s| {
            format!(
                "t={:>3}s rate {:>6.1} backlog {:>4} lag {:>6.1}",
                s.at.as_secs(),
                s.rate,
                s.backlog,
                s.mean_lag
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_overloaded_producer_lowers_its_rate_until_the_backlog_stops_growing() {
    let mut sim = cluster(11);
    let start = sim.elapsed();
    sim.produce(0, heavy());
    sim.run_until(start + secs(180));
    let samples = sim.samples[&0].clone();
    let report = sim.report("overload");
    println!("{report}\n{}", trajectory(&samples, 5));
    let flow = sim.core(0).flow().stats();
    println!("producer flow stats: {flow:?}");
    assert!(flow.decreases >= 3, "the rate was cut: {flow:?}");
    assert!(flow.refused > 0);
    let peak = samples.iter().map(|s| s.rate).fold(0.0, f64::max);
    let last = window(&samples, start + secs(120), start + secs(180));
    let middle = window(&samples, start + secs(60), start + secs(120));
    // The backlog does not keep growing. It oscillates with the AIMD saw-tooth, so single
    // peaks say little; judge the level and the trend: the last minute's mean backlog is no
    // worse than the minute before (with slack for the saw-tooth), and the least-squares slope
    // over both minutes is flat (a producer held at a rate the gossip cannot carry would add
    // entries every second: a slope of several per second).
    let mean_backlog = |w: &[Sample]| mean(w.iter().map(|s| s.backlog as f64));
    let (b_mid, b_last) = (mean_backlog(&middle), mean_backlog(&last));
    let both = window(&samples, start + secs(60), start + secs(180));
    let slope = backlog_slope(&both);
    println!(
        "peak rate {peak:.1}/s, mean rate last minute {:.1}/s, throughput {:.1}/s, \
         mean backlog {b_mid:.1} then {b_last:.1}, slope {slope:.3} entries/s",
        mean(last.iter().map(|s| s.rate)),
        throughput(&last)
    );
    assert!(
        b_last <= b_mid * 1.5 + 10.0,
        "backlog grows: mean {b_mid:.1} → {b_last:.1}"
    );
    assert!(slope < 0.5, "backlog trend {slope:.3} entries/s");
    // The producer was held far below what it asked for (1,000/s).
    assert!(throughput(&last) < 200.0);
    assert!(throughput(&last) > 5.0, "but kept writing");
    assert!(sim.bounds_ok(), "{report}");
}

#[test]
fn two_heavy_producers_end_with_rates_within_twenty_percent() {
    let mut sim = cluster(12);
    let start = sim.elapsed();
    sim.produce(0, heavy());
    sim.produce(5, heavy());
    sim.run_until(start + secs(240));
    let report = sim.report("two producers");
    let (a, b) = (sim.samples[&0].clone(), sim.samples[&5].clone());
    println!(
        "{report}\nproducer 0:\n{}\nproducer 5:\n{}",
        trajectory(&a, 10),
        trajectory(&b, 10)
    );
    let (la, lb) = (
        window(&a, start + secs(180), start + secs(240)),
        window(&b, start + secs(180), start + secs(240)),
    );
    let (ra, rb) = (
        mean(la.iter().map(|s| s.rate)),
        mean(lb.iter().map(|s| s.rate)),
    );
    let (ta, tb) = (throughput(&la), throughput(&lb));
    println!("last minute: mean rates {ra:.1} and {rb:.1}/s, throughputs {ta:.1} and {tb:.1}/s");
    assert!(
        (ra - rb).abs() <= 0.2 * ra.max(rb),
        "rates {ra:.1} vs {rb:.1}"
    );
    assert!(
        (ta - tb).abs() <= 0.2 * ta.max(tb),
        "throughputs {ta:.1} vs {tb:.1}"
    );
    assert!(sim.bounds_ok(), "{report}");
}

/// Least-squares slope of the backlog over time, in entries per second.
fn backlog_slope(samples: &[Sample]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let xs: Vec<f64> = samples.iter().map(|s| s.at.as_secs_f64()).collect();
    let ys: Vec<f64> = samples.iter().map(|s| s.backlog as f64).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}
