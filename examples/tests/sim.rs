//! The `sim` binary as a user runs it: flags or a TOML file in, a table, files and a JSON last
//! line out. Small networks, so each run takes well under a second of wall time.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

const FIELDS: [&str; 16] = [
    "nodes",
    "seed",
    "reliability",
    "rmr_first",
    "rmr_steady",
    "control_per_broadcast",
    "ldh_max",
    "last_delivery_ms_p50",
    "last_delivery_ms_p99",
    "last_delivery_ms_max",
    "bytes_per_node_per_s",
    "detection_ms_max",
    "false_dead",
    "in_degree_stddev",
    "wall_s",
    "peak_rss_mb",
];

fn run(args: &[&str]) -> Value {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let out_dir = std::env::temp_dir().join(format!(
        "gossip-sim-test-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .arg("--out")
        .arg(&out_dir)
        .args(["--json", "--quiet"])
        .output()
        .expect("sim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sim failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("a last line");
    let report: Value = serde_json::from_str(last).expect("the last line is JSON");
    let stem = format!(
        "sim-{}-{}-{}-seed{}",
        report["mode"].as_str().unwrap(),
        report["senders"].as_str().unwrap(),
        report["nodes"],
        report["seed"]
    );
    let svg = std::fs::read_to_string(out_dir.join(format!("{stem}.svg"))).expect("chart written");
    assert!(svg.starts_with("<svg"));
    assert!(out_dir.join(format!("{stem}.json")).exists());
    let _ = std::fs::remove_dir_all(&out_dir);
    report
}

#[test]
fn broadcast_from_flags_prints_every_field_and_is_reproducible() {
    let args = [
        "--nodes",
        "40",
        "--mode",
        "broadcast",
        "--scenario",
        "random",
        "--messages",
        "4",
        "--warmup-s",
        "5",
        "--settle-s",
        "5",
        "--seed",
        "3",
    ];
    let report = run(&args);
    for field in FIELDS {
        assert!(report.get(field).is_some(), "missing {field}: {report}");
    }
    assert_eq!(report["nodes"], 40);
    assert_eq!(report["reliability"], 1.0);
    assert!(report["ldh_max"].as_u64().unwrap() >= 1);
    let mut again = run(&args);
    let mut first = report;
    for r in [&mut first, &mut again] {
        r["wall_s"] = Value::Null;
        r["peak_rss_mb"] = Value::Null;
    }
    assert_eq!(first, again, "seed 3 must reproduce the report");
}

#[test]
fn tree_scenario_from_a_toml_file_with_a_crash() {
    let path = std::env::temp_dir().join(format!("gossip-sim-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "nodes = 50\nmode = \"tree\"\nscenario = \"single\"\nmessages = 3\nwarmup_s = 8\n\
         settle_s = 8\ncrash = 0.2\nseed = 5\n",
    )
    .unwrap();
    let report = run(&["--config", path.to_str().unwrap(), "--messages", "4"]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(report["mode"], "tree");
    assert_eq!(report["messages"], 4, "the flag overrides the file");
    assert_eq!(report["crashed"], 10);
    assert_eq!(report["live_at_end"], 40);
    assert!(report["ldh_max"].is_null(), "no hop count on feed messages");
    assert!(report["reliability"].as_f64().unwrap() > 0.9, "{report}");
}
