//! The example binaries, run as a user would: `cluster` end to end, and `gossip-node` over its
//! stdin/stdout protocol. Everything binds 127.0.0.1; every wait has a timeout and every child
//! is killed when its test ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::wait_with_timeout;

#[test]
fn cluster_of_eight_delivers_two_hundred_messages_exactly_once() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cluster"))
        .args(["--nodes", "8", "--messages", "200", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cluster starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status = wait_with_timeout(&mut child, Duration::from_secs(90))
        .expect("cluster finishes within 90 s");
    let text = reader.join().expect("reader thread");
    assert!(
        status.success(),
        "cluster exited with {status}; stdout:\n{text}"
    );

    let last = text.lines().last().expect("some output");
    let summary: Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(summary["expected_deliveries"], 1600, "{summary}");
    assert_eq!(summary["deliveries"], 1600, "{summary}");
    assert_eq!(summary["duplicate_deliveries"], 0, "{summary}");
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(summary["dropped_auth"], 0, "{summary}");
    assert_eq!(summary["nodes"], 8);
    assert_eq!(summary["messages"], 200);
    let p50 = summary["latency_ms_p50"].as_f64().expect("p50 present");
    let p99 = summary["latency_ms_p99"].as_f64().expect("p99 present");
    let max = summary["latency_ms_max"].as_f64().expect("max present");
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{summary}");
    assert!(summary["datagrams_sent"].as_u64().expect("datagrams_sent") > 0);
    assert!(summary["bytes_sent"].as_u64().expect("bytes_sent") > 0);
    assert!(summary["elapsed_ms"].as_u64().is_some());

    // Key/value state: every node set 3 keys, and every other node reported each of them.
    assert_eq!(summary["keys"], 3, "{summary}");
    assert_eq!(summary["sets"], 24, "{summary}");
    assert_eq!(summary["kv_converged"], true, "{summary}");
    assert_eq!(summary["unexpected_updates"], 0, "{summary}");
    assert!(summary["kv_convergence_ms"].as_f64().is_some(), "{summary}");

    // Failure detection: one node (not node 0) was killed; all 7 survivors declared it dead
    // within the documented bound, and no live node was ever declared dead.
    let killed = summary["killed_node"].as_u64().expect("a node was killed");
    assert!((1..8).contains(&killed), "{summary}");
    assert_eq!(summary["survivors"], 7, "{summary}");
    assert_eq!(summary["detected"], 7, "{summary}");
    let bound = summary["detection_bound_ms"].as_f64().expect("bound");
    assert!((31_000.0..32_000.0).contains(&bound), "{summary}");
    let p50 = summary["detection_ms_p50"].as_f64().expect("detection p50");
    let max = summary["detection_ms_max"].as_f64().expect("detection max");
    assert!(0.0 < p50 && p50 <= max && max <= bound, "{summary}");
    assert_eq!(summary["detection_within_bound"], true, "{summary}");
    assert_eq!(summary["false_dead"], 0, "{summary}");
}

/// One `gossip-node` process and its JSON lines.
struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    addr: String,
    node_id: String,
}

impl NodeProcess {
    fn start(passphrase: &str) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gossip-node"))
            .args(["--bind", "127.0.0.1:0", "--passphrase", passphrase])
            .args(["--cluster", "examples-test"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gossip-node starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut node = NodeProcess {
            child,
            stdin,
            lines,
            addr: String::new(),
            node_id: String::new(),
        };
        let ready = node.next_event(Duration::from_secs(20));
        assert_eq!(ready["event"], "ready", "first line is ready: {ready}");
        assert_eq!(ready["node_id"].as_str().map(str::len), Some(64));
        node.addr = ready["addr"].as_str().expect("addr").to_owned();
        node.node_id = ready["node_id"].as_str().expect("node_id").to_owned();
        assert!(node.addr.starts_with("127.0.0.1:"), "{ready}");
        node
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to node");
        stdin.flush().expect("flush to node");
    }

    fn next_event(&self, limit: Duration) -> Value {
        match self.lines.recv_timeout(limit) {
            Ok(value) => value,
            Err(RecvTimeoutError::Timeout) => panic!("no line from the node within {limit:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the node closed its stdout"),
        }
    }

    /// The first line for which `pred` holds, skipping others, within `limit`.
    fn wait_for(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(value) if pred(&value) => return Some(value),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    fn quit(mut self) -> Option<ExitStatus> {
        self.send("quit");
        let bye = self.wait_for(Duration::from_secs(5), |v| v["event"] == "bye");
        assert!(bye.is_some(), "bye is printed on quit");
        self.stdin = None;
        wait_with_timeout(&mut self.child, Duration::from_secs(5))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(nodes: &mut [&mut NodeProcess]) {
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        for (j, addr) in addrs.iter().enumerate() {
            if i != j {
                node.send(&format!("peer {addr}"));
                let added = node.wait_for(Duration::from_secs(5), |v| v["event"] == "peer_added");
                assert!(added.is_some(), "peer command acknowledged");
            }
        }
    }
}

fn is_delivery_of(payload: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| v["event"] == "delivered" && v["payload"] == payload
}

#[test]
fn gossip_node_speaks_json_lines_over_stdin_and_stdout() {
    let mut a = NodeProcess::start("stdin test passphrase");
    let mut b = NodeProcess::start("stdin test passphrase");
    connect(&mut [&mut a, &mut b]);

    a.send("peers");
    let peers = a
        .wait_for(Duration::from_secs(5), |v| v["event"] == "peers")
        .expect("peers answered");
    assert_eq!(peers["peers"][0]["addr"], b.addr.as_str(), "{peers}");

    a.send("broadcast hello from a");
    let accepted = a
        .wait_for(Duration::from_secs(5), |v| v["event"] == "broadcast")
        .expect("broadcast accepted");
    assert_eq!(accepted["payload"], "hello from a");
    let delivered = b
        .wait_for(Duration::from_secs(10), is_delivery_of("hello from a"))
        .expect("b delivers a's broadcast");
    assert_eq!(delivered["id"], accepted["id"]);
    assert_eq!(delivered["hop"], 1);
    assert!(delivered["at_us"].as_u64() >= accepted["at_us"].as_u64());

    // A bad command is an error event, and the node keeps working.
    b.send("frobnicate now");
    let error = b
        .wait_for(Duration::from_secs(5), |v| v["event"] == "error")
        .expect("error event");
    assert_eq!(error["command"], "frobnicate now", "{error}");
    b.send(&format!("broadcast {}", "x".repeat(2_000)));
    let error = b
        .wait_for(Duration::from_secs(5), |v| v["event"] == "error")
        .expect("oversize broadcast refused");
    assert!(
        error["error"].as_str().is_some_and(|e| e.contains("2000")),
        "{error}"
    );
    b.send("broadcast reply from b");
    a.wait_for(Duration::from_secs(10), is_delivery_of("reply from b"))
        .expect("a delivers b's broadcast");

    b.send("stats");
    let stats = b
        .wait_for(Duration::from_secs(5), |v| v["event"] == "stats")
        .expect("stats event");
    assert_eq!(stats["delivered"], 2, "{stats}");
    assert_eq!(stats["dropped_auth"], 0, "{stats}");
    assert!(stats["drops"].is_object(), "{stats}");
    assert!(stats["datagrams_sent"].as_u64() > Some(0), "{stats}");

    for node in [a, b] {
        let status = node.quit().expect("node exits after quit");
        assert!(status.success(), "exit status {status}");
    }
}

#[test]
fn gossip_node_sets_reads_and_reports_keys() {
    let mut a = NodeProcess::start("key value passphrase");
    let mut b = NodeProcess::start("key value passphrase");
    connect(&mut [&mut a, &mut b]);

    // The state protocol finds the other node.
    let new_peer = b
        .wait_for(Duration::from_secs(10), |v| v["event"] == "new_peer")
        .expect("b learns a");
    assert_eq!(new_peer["node"], a.node_id.as_str(), "{new_peer}");
    assert_eq!(new_peer["addr"], a.addr.as_str(), "{new_peer}");

    a.send("set color deep blue");
    let set = a
        .wait_for(Duration::from_secs(5), |v| v["event"] == "set")
        .expect("set acknowledged");
    assert_eq!(set["key"], "color", "{set}");
    let version = set["version"].as_u64().expect("version");
    assert!(set["at_us"].as_u64().is_some(), "{set}");
    let update = b
        .wait_for(Duration::from_secs(10), |v| v["event"] == "update")
        .expect("b hears a's key");
    assert_eq!(update["node"], a.node_id.as_str(), "{update}");
    assert_eq!(update["key"], "color", "{update}");
    assert_eq!(update["value"], "deep blue", "{update}");
    assert_eq!(update["version"], version, "{update}");
    assert!(
        update["at_us"].as_u64() >= set["at_us"].as_u64(),
        "{update}"
    );

    b.send(&format!("get {} color", a.node_id));
    let value = b
        .wait_for(Duration::from_secs(5), |v| v["event"] == "value")
        .expect("get answered");
    assert_eq!(value["value"], "deep blue", "{value}");
    assert_eq!(value["version"], version, "{value}");
    b.send(&format!("get {} shape", a.node_id));
    let value = b
        .wait_for(Duration::from_secs(5), |v| v["event"] == "value")
        .expect("get answered");
    assert!(
        value["value"].is_null() && value["version"].is_null(),
        "{value}"
    );

    a.send("try_set shape round");
    let set = a
        .wait_for(Duration::from_secs(5), |v| v["event"] == "set")
        .expect("try_set acknowledged");
    assert!(set["version"].as_u64() > Some(version), "{set}");
    a.send("delete color");
    let deleted = a
        .wait_for(Duration::from_secs(5), |v| v["event"] == "deleted")
        .expect("delete acknowledged");
    assert!(
        deleted["version"].as_u64() > set["version"].as_u64(),
        "{deleted}"
    );
    let update = b
        .wait_for(Duration::from_secs(10), |v| {
            v["event"] == "update" && v["key"] == "color"
        })
        .expect("b hears the delete");
    assert!(update["value"].is_null(), "{update}");

    // Too large a value is refused, naming both sizes.
    a.send(&format!("set big {}", "x".repeat(2_000)));
    let error = a
        .wait_for(Duration::from_secs(5), |v| v["event"] == "error")
        .expect("oversize value refused");
    let text = error["error"].as_str().unwrap_or_default();
    assert!(text.contains("2000") && text.contains("1024"), "{error}");
    b.send("get nothex color");
    let error = b
        .wait_for(Duration::from_secs(5), |v| v["event"] == "error")
        .expect("bad node id refused");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("node id"))
    );

    b.send("nodes");
    let nodes = b
        .wait_for(Duration::from_secs(5), |v| v["event"] == "nodes")
        .expect("nodes answered");
    let listed = nodes["nodes"].as_array().expect("nodes array");
    assert!(listed.iter().any(|n| n == a.node_id.as_str()), "{nodes}");
    assert!(listed.iter().any(|n| n == b.node_id.as_str()), "{nodes}");

    a.send("stats");
    let stats = a
        .wait_for(Duration::from_secs(5), |v| v["event"] == "stats")
        .expect("stats event");
    assert!(stats["state"]["rounds"].as_u64() > Some(0), "{stats}");
    assert_eq!(stats["state"]["local_updates"], 3, "{stats}");
    assert!(stats["state"]["rate_milli"].as_u64() > Some(0), "{stats}");
    assert_eq!(stats["failure"]["convictions"], 0, "{stats}");
    assert_eq!(stats["failure"]["revivals"], 0, "{stats}");
    assert_eq!(stats["flow"]["queued"], 0, "{stats}");

    for node in [a, b] {
        assert!(node.quit().is_some_and(|s| s.success()));
    }
}

#[test]
fn a_node_with_the_wrong_passphrase_delivers_nothing() {
    let mut a = NodeProcess::start("the right passphrase");
    let mut b = NodeProcess::start("the right passphrase");
    let mut intruder = NodeProcess::start("a wrong passphrase");
    connect(&mut [&mut a, &mut b, &mut intruder]);

    a.send("broadcast for members only");
    b.wait_for(Duration::from_secs(10), is_delivery_of("for members only"))
        .expect("b delivers");
    intruder.send("broadcast intrusion");
    // The intruder delivers its own broadcast (hop 0) and nothing from the cluster.
    let own = intruder
        .wait_for(Duration::from_secs(5), |v| v["event"] == "delivered")
        .expect("own delivery");
    assert_eq!(own["payload"], "intrusion");
    assert_eq!(own["hop"], 0);
    assert!(
        intruder
            .wait_for(Duration::from_millis(1_500), |v| v["event"] == "delivered")
            .is_none(),
        "the intruder delivers nothing from the cluster"
    );
    assert!(
        a.wait_for(Duration::from_millis(500), is_delivery_of("intrusion"))
            .is_none(),
        "nobody accepts the intruder's broadcast"
    );

    intruder.send("stats");
    let stats = intruder
        .wait_for(Duration::from_secs(5), |v| v["event"] == "stats")
        .expect("stats");
    assert_eq!(stats["delivered"], 1, "{stats}");
    assert!(stats["dropped_auth"].as_u64() > Some(0), "{stats}");
    a.send("stats");
    let stats = a
        .wait_for(Duration::from_secs(5), |v| v["event"] == "stats")
        .expect("stats");
    assert!(stats["dropped_auth"].as_u64() > Some(0), "{stats}");
    assert_eq!(stats["dropped_malformed"], 0, "{stats}");

    for node in [a, b, intruder] {
        assert!(node.quit().is_some_and(|s| s.success()));
    }
}

#[test]
fn end_of_stdin_is_quit() {
    let mut node = NodeProcess::start("eof passphrase");
    node.stdin = None;
    let bye = node.wait_for(Duration::from_secs(5), |v| v["event"] == "bye");
    assert!(bye.is_some());
    let status = wait_with_timeout(&mut node.child, Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()));
}
