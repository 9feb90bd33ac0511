//! The `dht_cluster` binary run as a user would: a local mainline testnet and 8 gossip nodes,
//! all on 127.0.0.1, that find each other through the DHT and spread a broadcast. Every wait
//! has a timeout and the child is killed if it overruns.
#![cfg(feature = "dht")]

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;

mod support;
use support::wait_with_timeout;

#[test]
fn eight_nodes_find_each_other_through_a_local_dht_and_spread_a_broadcast() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dht_cluster"))
        .args(["--nodes", "8", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dht_cluster starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status = wait_with_timeout(&mut child, Duration::from_secs(90))
        .expect("dht_cluster finishes within 90 s");
    let text = reader.join().expect("reader thread");
    assert!(
        status.success(),
        "dht_cluster exited with {status}; stdout:\n{text}"
    );

    let last = text.lines().last().expect("some output");
    let summary: Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(summary["nodes"], 8, "{summary}");
    assert_eq!(summary["joined"], summary["nodes"], "{summary}");
    assert_eq!(summary["broadcast_reached"], summary["nodes"], "{summary}");
    assert!(summary["elapsed_ms"].as_u64().is_some(), "{summary}");
    assert!(summary["announces"].as_u64() >= Some(8), "{summary}");
    let bootstrap = summary["bootstrap"].as_array().expect("bootstrap list");
    assert!(!bootstrap.is_empty(), "{summary}");
    for addr in bootstrap {
        let addr = addr.as_str().expect("address text");
        assert!(addr.starts_with("127.0.0.1:"), "only 127.0.0.1: {summary}");
    }
}
