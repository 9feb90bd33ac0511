//! Feeds through the example binaries: a `gossip-node` killed with SIGKILL in the middle of a
//! burst of publishes keeps every acknowledged message, and `chat` end to end. Everything
//! binds 127.0.0.1; every wait has a timeout, every child is killed when its test ends, and
//! every file lives in a fresh folder under the system's temporary directory, removed at the
//! end.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use gossip_examples::process::TempDir;

mod support;
use support::wait_with_timeout;

/// One `gossip-node` process on a store and identity file, and its JSON lines.
struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    feed: String,
}

impl NodeProcess {
    fn start(store: &Path, identity: &Path) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gossip-node"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--passphrase",
                "feed test passphrase",
            ])
            .arg("--store")
            .arg(store)
            .arg("--identity-file")
            .arg(identity)
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
            feed: String::new(),
        };
        let ready = node
            .wait_for(Duration::from_secs(20), |_| true)
            .expect("a first line");
        assert_eq!(ready["event"], "ready", "first line is ready: {ready}");
        node.feed = ready["feed"].as_str().expect("feed").to_owned();
        assert_eq!(node.feed.len(), 64, "{ready}");
        assert_eq!(ready["feed"], ready["node_id"], "{ready}");
        node
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to node");
        stdin.flush().expect("flush to node");
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

    fn ask(&mut self, command: &str, event: &str) -> Value {
        self.send(command);
        self.wait_for(Duration::from_secs(10), |v| {
            v["event"] == event || v["event"] == "error"
        })
        .unwrap_or_else(|| panic!("no answer to {command:?}"))
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

/// Records a `published` event: sequence → id.
fn record_published(acked: &mut BTreeMap<u64, String>, event: &Value) {
    let sequence = event["sequence"].as_u64().expect("sequence");
    let id = event["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 64, "{event}");
    assert!(
        acked.insert(sequence, id).is_none(),
        "sequence {sequence} acknowledged twice"
    );
}

#[test]
fn a_node_killed_during_a_burst_of_publishes_loses_no_acknowledged_message() {
    let dir = TempDir::create("test-crash").expect("a scratch folder");
    let store = dir.path().join("node.redb");
    let identity = dir.path().join("node.identity");

    let mut node = NodeProcess::start(&store, &identity);
    let feed = node.feed.clone();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&identity)
            .expect("identity file created")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "identity file mode {mode:o}");
    }

    // 200 publishes, written without waiting; SIGKILL after the 50th acknowledgement.
    let burst: String = (1..=200).map(|i| format!("publish burst {i}\n")).collect();
    {
        let stdin = node.stdin.as_mut().expect("stdin open");
        stdin.write_all(burst.as_bytes()).expect("write the burst");
        stdin.flush().expect("flush the burst");
    }
    let mut acked = BTreeMap::new();
    while acked.len() < 50 {
        let event = node
            .wait_for(Duration::from_secs(20), |v| {
                v["event"] == "published" || v["event"] == "error"
            })
            .expect("published events keep coming");
        assert_eq!(event["event"], "published", "{event}");
        record_published(&mut acked, &event);
    }
    node.child.kill().expect("SIGKILL");
    let status = wait_with_timeout(&mut node.child, Duration::from_secs(5)).expect("it dies");
    assert!(!status.success(), "killed, not exited: {status}");
    // Lines it printed before dying are acknowledgements too.
    while let Ok(event) = node.lines.recv_timeout(Duration::from_secs(2)) {
        if event["event"] == "published" {
            record_published(&mut acked, &event);
        }
    }
    drop(node);
    let acked_head = *acked.keys().last().expect("some acknowledged");
    assert!(acked_head >= 50);
    // The kill normally lands in the middle of the burst; if the node was faster than the
    // kill, the checks below still hold, on a complete log.
    eprintln!("{acked_head} of 200 publishes acknowledged before the SIGKILL");
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=acked_head).collect::<Vec<_>>(),
        "acknowledged in sequence order without gaps"
    );

    // Restarted on the same files: same feed, every acknowledged message, no gap.
    let mut node = NodeProcess::start(&store, &identity);
    assert_eq!(node.feed, feed, "the identity file keeps the feed id");
    let log = node.ask(&format!("log {feed} 1"), "log");
    assert_eq!(log["event"], "log", "{log}");
    let head = log["head"].as_u64().expect("head");
    assert!(
        head >= acked_head,
        "head {head} < acknowledged {acked_head}"
    );
    eprintln!("log head after the restart: {head}");
    let messages = log["messages"].as_array().expect("messages");
    assert_eq!(messages.len() as u64, head, "log from 1 lists 1..=head");
    for (expected, message) in (1u64..).zip(messages) {
        assert_eq!(message["sequence"], expected, "no gap: {message}");
        assert_eq!(message["content"], format!("burst {expected}"), "{message}");
        if let Some(id) = acked.get(&expected) {
            assert_eq!(
                message["id"],
                id.as_str(),
                "acknowledged id kept: {message}"
            );
        }
        if expected > 1 {
            assert_eq!(
                message["previous"],
                messages[expected as usize - 2]["id"],
                "chained: {message}"
            );
        }
    }
    let verified = node.ask(&format!("verify-log {feed}"), "log_verified");
    assert_eq!(verified["event"], "log_verified", "{verified}");
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["messages"], head, "{verified}");

    // Publishing continues at head + 1, and the log still verifies.
    let published = node.ask("publish after the restart", "published");
    assert_eq!(published["event"], "published", "{published}");
    assert_eq!(published["sequence"], head + 1, "{published}");
    assert_eq!(published["feed"], feed.as_str());
    let tail = node.ask(&format!("log {feed} {}", head + 1), "log");
    assert_eq!(tail["head"], head + 1, "{tail}");
    assert_eq!(tail["messages"][0]["id"], published["id"], "{tail}");
    let verified = node.ask(&format!("verify-log {feed}"), "log_verified");
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["messages"], head + 1, "{verified}");

    let status = node.quit().expect("node exits after quit");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn feed_commands_answer_with_events_or_errors() {
    let dir = TempDir::create("test-commands").expect("a scratch folder");
    let mut node = NodeProcess::start(
        &dir.path().join("node.redb"),
        &dir.path().join("node.identity"),
    );
    let other = "ab".repeat(32);
    let followed = node.ask(&format!("follow {other}"), "followed");
    assert_eq!(followed["feed"], other.as_str(), "{followed}");
    assert_eq!(followed["added"], true, "{followed}");
    let empty = node.ask(&format!("log {other} 1"), "log");
    assert_eq!(empty["head"], 0, "{empty}");
    assert_eq!(empty["messages"], Value::Array(Vec::new()), "{empty}");
    let unfollowed = node.ask(&format!("unfollow {other}"), "unfollowed");
    assert_eq!(unfollowed["was_followed"], true, "{unfollowed}");

    let error = node.ask("follow not-a-feed", "followed");
    assert_eq!(error["event"], "error", "{error}");
    let error = node.ask(&format!("publish {}", "x".repeat(2_000)), "published");
    assert_eq!(error["event"], "error", "{error}");
    let text = error["error"].as_str().expect("error text");
    assert!(text.contains("2000") && text.contains("1024"), "{text}");

    let published = node.ask("publish hi", "published");
    assert_eq!(published["sequence"], 1, "{published}");
    let message = node
        .wait_for(Duration::from_secs(5), |v| v["event"] == "feed_message")
        .expect("own message reported");
    assert_eq!(message["content"], "hi", "{message}");
    assert_eq!(message["id"], published["id"], "{message}");

    let stats = node.ask("stats", "stats");
    assert_eq!(stats["feeds"]["appended"], 1, "{stats}");
    assert_eq!(stats["feeds"]["append_errors"], 0, "{stats}");
    assert!(stats["feeds"]["rejected"].is_object(), "{stats}");
    assert!(node.quit().is_some_and(|s| s.success()));
}

#[test]
fn a_damaged_identity_file_is_refused() {
    let dir = TempDir::create("test-identity").expect("a scratch folder");
    let identity = dir.path().join("node.identity");
    std::fs::write(&identity, "not hex\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_gossip-node"))
        .args(["--passphrase", "x", "--identity-file"])
        .arg(&identity)
        .stdin(Stdio::null())
        .output()
        .expect("gossip-node runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("identity file"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout before ready");
}

#[test]
fn chat_of_five_delivers_every_post_in_order_and_survives_a_sigkill() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["--nodes", "5", "--posts", "20", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("chat starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status =
        wait_with_timeout(&mut child, Duration::from_secs(60)).expect("chat finishes within 60 s");
    let text = reader.join().expect("reader thread");
    assert!(
        status.success(),
        "chat exited with {status}; stdout:\n{text}"
    );

    let last = text.lines().last().expect("some output");
    let summary: Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(summary["nodes"], 5, "{summary}");
    assert_eq!(summary["posts_per_node"], 20, "{summary}");
    assert_eq!(summary["expected"], 400, "{summary}");
    assert_eq!(summary["delivered"], 400, "{summary}");
    assert_eq!(summary["out_of_order"], 0, "{summary}");
    assert_eq!(summary["restart_caught_up"], true, "{summary}");
    assert_eq!(summary["restart_lost"], 0, "{summary}");
    assert_eq!(summary["restart_resent"], 0, "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");
    assert_eq!(summary["identity_kept"], true, "{summary}");
    assert_eq!(summary["logs_verified"], 5, "{summary}");
    assert!(summary["elapsed_ms"].as_u64().is_some(), "{summary}");
}

#[test]
fn chat_attachment_is_fetched_by_every_other_node_and_hashes_equal() {
    let dir = TempDir::create("test-attach").expect("a scratch folder");
    let file = dir.path().join("photo.bin");
    // 1.5 MiB of varied bytes: about 1,230 chunks.
    let bytes: Vec<u8> = (0..1_536_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &bytes).expect("write the attachment");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat"))
        .args([
            "--nodes",
            "3",
            "--posts",
            "3",
            "--extra-posts",
            "1",
            "--json",
        ])
        .arg("--attach")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("chat starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status = wait_with_timeout(&mut child, Duration::from_secs(180))
        .expect("chat finishes within 180 s");
    let text = reader.join().expect("reader thread");
    assert!(
        status.success(),
        "chat exited with {status}; stdout:\n{text}"
    );
    let last = text.lines().last().expect("some output");
    let summary: Value = serde_json::from_str(last).expect("last line is JSON");
    let a = &summary["attachment"];
    let sha = hex::encode(gossip_actors::crypto::sha256(&bytes));
    assert_eq!(a["file"], "photo.bin", "{summary}");
    assert_eq!(a["size"], 1_536_000, "{summary}");
    assert_eq!(a["blob"], sha, "{summary}");
    assert_eq!(a["added_as"], sha, "{summary}");
    assert_eq!(a["reference_seen"], 2, "{summary}");
    assert_eq!(a["fetched"], 2, "{summary}");
    assert_eq!(a["hashes_match"], 2, "{summary}");
    assert_eq!(a["expected"], 2, "{summary}");
    assert!(a["fetch_ms"].as_u64().is_some(), "{summary}");
}
