//! The `multihost` driver on 127.0.0.1 (four `gossip-node` processes, no namespaces: those
//! need root and are exercised by `scripts/multihost.sh`), with the same injected faults as
//! the script: 10% loss and 20-80 ms delay on every node. Every wait in the driver is bounded;
//! this test bounds the whole run too and kills it past that.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

#[test]
fn four_nodes_under_loss_and_delay_complete_broadcasts_state_and_feeds() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_multihost"))
        .args(["--host", "127.0.0.1"].repeat(4))
        .args(["--port", "0", "--loss", "0.1", "--delay-ms", "20-80"])
        .args([
            "--phase-timeout-secs",
            "40",
            "--passphrase",
            "multihost test",
        ])
        .args(["--node-bin", env!("CARGO_BIN_EXE_gossip-node")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("multihost starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("multihost did not finish within 240 s");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let text = reader.join().expect("reader thread");
    let last = text.lines().last().expect("some output");
    let summary: Value = serde_json::from_str(last).expect("last line is JSON");
    assert!(
        status.success(),
        "multihost exited with {status}: {summary}"
    );

    assert_eq!(summary["hosts"], 4, "{summary}");
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(summary["membership_complete"], true, "{summary}");
    // 4 nodes × 5 broadcasts each, delivered at 4 nodes.
    assert_eq!(summary["broadcasts_expected"], 80, "{summary}");
    assert_eq!(summary["broadcasts_delivered"], 80, "{summary}");
    assert_eq!(summary["duplicate_deliveries"], 0, "{summary}");
    // 4 × 3 receivers × 3 keys answered the second (latest) value.
    assert_eq!(summary["kv_converged"], true, "{summary}");
    assert_eq!(summary["kv_values_latest"], 36, "{summary}");
    // 4 receivers × 4 feeds × 5 messages, and 16 verified chains.
    assert_eq!(summary["feeds_complete"], true, "{summary}");
    assert_eq!(summary["feed_messages_delivered"], 80, "{summary}");
    assert_eq!(summary["feed_logs_verified"], 16, "{summary}");
    // The faults were applied and counted.
    assert!(summary["injected_loss"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["injected_delay"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["dropped_auth"], 0, "{summary}");
    let addrs = summary["addrs"].as_array().expect("addrs");
    assert_eq!(addrs.len(), 4);
    assert!(
        addrs
            .iter()
            .all(|a| a.as_str().unwrap().starts_with("127.0.0.1:")),
        "{summary}"
    );
}
