//! Crash and restart: `gossip-node` processes on redb stores and identity files publish feed
//! messages and write key/value state while the test kills random ones with SIGKILL (a seeded
//! RNG picks them; the count is bounded) and restarts them on the same store, identity and
//! port. At the end no acknowledged write is lost:
//!
//! - every node holds every acknowledged feed message (a `published` event was printed) of
//!   every feed, with the acknowledged id;
//! - for every owner and key, every node holds the owner's latest acknowledged write (a `set`
//!   or `deleted` event was printed), or a write submitted after it that was in flight when
//!   the owner was killed (it may have become durable without being acknowledged); a deleted
//!   key is absent everywhere (nothing resurrects).
//!
//! The counts are printed: kills, restarts, acknowledged publishes/sets/deletes, in-flight
//! writes at the kills, lost (0). `CRASH_SEED=N` reruns another schedule. Everything binds
//! 127.0.0.1; every wait has a timeout; children are killed when the test ends and files live
//! in a fresh folder under the system's temporary directory, removed at the end.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use gossip_examples::process::TempDir;

/// Nodes in the cluster.
const NODES: usize = 4;
/// Workload steps (one publish and one write to a random live node each).
const STEPS: usize = 36;
/// Steps at which a random live node is killed; it is restarted `DOWN_STEPS` later.
const KILL_AT: [usize; 4] = [6, 14, 22, 30];
const DOWN_STEPS: usize = 3;
/// Keys each node writes (small, so writes overwrite each other).
const KEYS: usize = 3;
/// How long the cluster may take to hold everything after the last restart.
const CONVERGE_LIMIT: Duration = Duration::from_secs(60);

/// One running `gossip-node` and its JSON lines.
struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
}

impl NodeProcess {
    fn start(dir: &Path, i: usize, bind: SocketAddr, seeds: &[SocketAddr]) -> (NodeProcess, Value) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gossip-node"));
        command
            .arg("--bind")
            .arg(bind.to_string())
            .arg("--key-file")
            .arg(dir.join("cluster.key"))
            .arg("--store")
            .arg(dir.join(format!("node{i}.redb")))
            .arg("--identity-file")
            .arg(dir.join(format!("node{i}.identity")));
        for seed in seeds {
            command.arg("--seed").arg(seed.to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
        let node = NodeProcess {
            child,
            stdin,
            lines,
        };
        let ready = node
            .lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("node {i} printed nothing within 30 s"));
        assert_eq!(ready["event"], "ready", "first line is ready: {ready}");
        (node, ready)
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to node");
        stdin.flush().expect("flush to node");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command sent and not answered yet.
#[derive(Debug)]
enum Pending {
    Publish {
        line: String,
    },
    Write {
        line: String,
        key: String,
        value: Option<String>,
    },
    Query {
        line: String,
        answer: &'static str,
    },
}

/// What is known of one owner's key: its latest acknowledged write (`None` inside: a delete;
/// outer `None`: never acknowledged) and the writes submitted after it, not acknowledged.
#[derive(Debug, Default)]
struct KeyTrack {
    acked: Option<Option<String>>,
    after: Vec<Option<String>>,
}

impl KeyTrack {
    /// Whether a node may hold `held` for this key at the end.
    fn allows(&self, held: &Option<String>) -> bool {
        let acked_ok = match &self.acked {
            Some(value) => value == held,
            None => held.is_none(),
        };
        acked_ok || self.after.contains(held)
    }
}

/// One node slot: its files, port, ids and (while alive) its process.
struct Slot {
    addr: SocketAddr,
    node_id: String,
    feed: String,
    process: Option<NodeProcess>,
    pending: VecDeque<Pending>,
}

#[derive(Default)]
struct Counts {
    kills: usize,
    restarts: usize,
    acked_publishes: usize,
    acked_sets: usize,
    acked_deletes: usize,
    refused: usize,
    in_flight_at_kill: usize,
}

struct Cluster {
    dir: TempDir,
    slots: Vec<Slot>,
    /// feed → sequence → id of every acknowledged message.
    feeds: BTreeMap<String, BTreeMap<u64, String>>,
    /// (owner node id, key) → what was written.
    keys: BTreeMap<(String, String), KeyTrack>,
    /// Answers to queries, by slot.
    answers: Vec<VecDeque<Value>>,
    counts: Counts,
}

impl Cluster {
    fn alive(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].process.is_some())
            .collect()
    }

    fn seeds_for(&self, i: usize) -> Vec<SocketAddr> {
        self.alive()
            .into_iter()
            .filter(|j| *j != i)
            .map(|j| self.slots[j].addr)
            .collect()
    }

    fn submit(&mut self, i: usize, pending: Pending) {
        let line = match &pending {
            Pending::Publish { line }
            | Pending::Write { line, .. }
            | Pending::Query { line, .. } => line.clone(),
        };
        if let Pending::Write { key, value, .. } = &pending {
            let owner = self.slots[i].node_id.clone();
            self.keys
                .entry((owner, key.clone()))
                .or_default()
                .after
                .push(value.clone());
        }
        let slot = &mut self.slots[i];
        slot.process.as_mut().expect("alive").send(&line);
        slot.pending.push_back(pending);
    }

    /// Handles one line printed by slot `i`: answers are matched to the oldest pending
    /// command (a node answers its commands one at a time, in order).
    fn handle(&mut self, i: usize, event: Value) {
        let kind = event["event"].as_str().unwrap_or_default().to_owned();
        let answers_command = matches!(
            kind.as_str(),
            "published" | "set" | "deleted" | "value" | "log" | "followed" | "peer_added"
        ) || (kind == "error" && event["command"].is_string());
        if !answers_command {
            return;
        }
        let node_id = self.slots[i].node_id.clone();
        let pending = self.slots[i]
            .pending
            .pop_front()
            .unwrap_or_else(|| panic!("node {i}: an answer with nothing pending: {event}"));
        match (kind.as_str(), pending) {
            ("published", Pending::Publish { .. }) => {
                let feed = event["feed"].as_str().expect("feed").to_owned();
                let sequence = event["sequence"].as_u64().expect("sequence");
                let id = event["id"].as_str().expect("id").to_owned();
                let previous = self.feeds.entry(feed).or_default().insert(sequence, id);
                assert!(
                    previous.is_none(),
                    "node {i}: sequence {sequence} acknowledged twice"
                );
                self.counts.acked_publishes += 1;
            }
            ("set" | "deleted", Pending::Write { key, value, .. }) => {
                assert_eq!(event["key"], key.as_str(), "node {i}: answer out of order");
                assert_eq!(kind == "deleted", value.is_none(), "node {i}: {event}");
                let track = self.keys.get_mut(&(node_id, key)).expect("submitted");
                let at = track
                    .after
                    .iter()
                    .position(|v| *v == value)
                    .expect("acknowledged write was submitted");
                track.after.drain(..=at);
                track.acked = Some(value.clone());
                if value.is_some() {
                    self.counts.acked_sets += 1;
                } else {
                    self.counts.acked_deletes += 1;
                }
            }
            ("error", Pending::Write { line, key, value }) => {
                assert_eq!(event["command"], line.as_str(), "node {i}: {event}");
                let track = self.keys.get_mut(&(node_id, key)).expect("submitted");
                if let Some(at) = track.after.iter().position(|v| *v == value) {
                    track.after.remove(at);
                }
                self.counts.refused += 1;
            }
            ("error", Pending::Publish { line }) => {
                assert_eq!(event["command"], line.as_str(), "node {i}: {event}");
                self.counts.refused += 1;
            }
            (kind, Pending::Query { answer, .. }) if kind == answer || kind == "error" => {
                self.answers[i].push_back(event);
            }
            (_, pending) => panic!("node {i}: answer {event} to {pending:?}"),
        }
    }

    /// Handles every line already printed by every live node.
    fn pump(&mut self) {
        for i in 0..self.slots.len() {
            let mut lines = Vec::new();
            if let Some(process) = &self.slots[i].process {
                while let Ok(line) = process.lines.try_recv() {
                    lines.push(line);
                }
            }
            for line in lines {
                self.handle(i, line);
            }
        }
    }

    /// Sends a query to node `i` and waits for its answer (other lines handled meanwhile).
    fn ask(&mut self, i: usize, line: String, answer: &'static str) -> Value {
        self.submit(
            i,
            Pending::Query {
                line: line.clone(),
                answer,
            },
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(value) = self.answers[i].pop_front() {
                return value;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "node {i}: no answer to {line:?}");
            let received = self.slots[i]
                .process
                .as_ref()
                .expect("alive")
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)));
            match received {
                Ok(value) => self.handle(i, value),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => panic!("node {i} died"),
            }
        }
    }

    /// SIGKILLs node `i`; lines it printed before dying still count as acknowledgements.
    fn kill(&mut self, i: usize) {
        let mut process = self.slots[i].process.take().expect("alive");
        process.child.kill().expect("SIGKILL");
        let _ = process.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match process.lines.recv_timeout(left) {
                Ok(value) => self.handle(i, value),
                Err(_) => break,
            }
        }
        // What is left was in flight: maybe durable, never acknowledged.
        self.counts.in_flight_at_kill += self.slots[i].pending.len();
        self.slots[i].pending.clear();
        self.counts.kills += 1;
    }

    fn restart(&mut self, i: usize) {
        let seeds = self.seeds_for(i);
        let (process, ready) = NodeProcess::start(self.dir.path(), i, self.slots[i].addr, &seeds);
        assert_eq!(
            ready["node_id"],
            self.slots[i].node_id.as_str(),
            "the identity file keeps the node id"
        );
        assert_eq!(ready["addr"], self.slots[i].addr.to_string().as_str());
        self.slots[i].process = Some(process);
        self.introduce(i);
        self.counts.restarts += 1;
    }

    /// Gives node `i` every other live node as a peer (`--seed` only feeds discovery; the
    /// `peer` command also makes it a seed of the key/value state).
    fn introduce(&mut self, i: usize) {
        for addr in self.seeds_for(i) {
            let added = self.ask(i, format!("peer {addr}"), "peer_added");
            assert_eq!(added["event"], "peer_added", "{added}");
        }
    }
}

#[test]
fn killed_and_restarted_nodes_lose_no_acknowledged_feed_message_or_state_update() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    println!("crash_restart: seed {seed} (rerun with CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = TempDir::create("test-crash-restart").expect("a scratch folder");
    std::fs::write(
        dir.path().join("cluster.key"),
        format!("{}\n", "5a".repeat(32)),
    )
    .expect("write the key file");

    // Start the nodes, each seeded with the ones before it, on ports they keep.
    let mut slots: Vec<Slot> = Vec::new();
    for i in 0..NODES {
        let seeds: Vec<SocketAddr> = slots.iter().map(|s| s.addr).collect();
        let bind: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let (process, ready) = NodeProcess::start(dir.path(), i, bind, &seeds);
        slots.push(Slot {
            addr: ready["addr"]
                .as_str()
                .expect("addr")
                .parse()
                .expect("address"),
            node_id: ready["node_id"].as_str().expect("node id").to_owned(),
            feed: ready["feed"].as_str().expect("feed").to_owned(),
            process: Some(process),
            pending: VecDeque::new(),
        });
    }
    let mut cluster = Cluster {
        dir,
        slots,
        feeds: BTreeMap::new(),
        keys: BTreeMap::new(),
        answers: vec![VecDeque::new(); NODES],
        counts: Counts::default(),
    };
    // Everyone knows and follows everyone (follows are kept in the store across restarts).
    for i in 0..NODES {
        cluster.introduce(i);
    }
    for i in 0..NODES {
        for j in 0..NODES {
            if i != j {
                let feed = cluster.slots[j].feed.clone();
                let followed = cluster.ask(i, format!("follow {feed}"), "followed");
                assert_ne!(followed["event"], "error", "{followed}");
            }
        }
    }

    // The workload, with kills and restarts.
    let mut down: Vec<(usize, usize)> = Vec::new(); // (restart at step, slot)
    let mut writes = 0usize;
    for step in 0..STEPS {
        cluster.pump();
        while let Some(at) = down.iter().position(|(when, _)| *when <= step) {
            let (_, i) = down.remove(at);
            cluster.restart(i);
        }
        let alive = cluster.alive();
        let i = alive[rng.random_range(0..alive.len())];
        cluster.submit(
            i,
            Pending::Publish {
                line: format!("publish node {i} step {step}"),
            },
        );
        let burst = if KILL_AT.contains(&step) { 4 } else { 1 };
        for _ in 0..burst {
            writes += 1;
            let key = format!("k{}", rng.random_range(0..KEYS));
            let pending = if rng.random_bool(0.15) {
                Pending::Write {
                    line: format!("delete {key}"),
                    key,
                    value: None,
                }
            } else {
                let value = format!("w{writes}-node{i}");
                Pending::Write {
                    line: format!("set {key} {value}"),
                    key,
                    value: Some(value),
                }
            };
            cluster.submit(i, pending);
        }
        if KILL_AT.contains(&step) && cluster.alive().len() > 2 {
            // Kill the node just written to (its writes are in flight) half of the time,
            // another live node otherwise.
            let victim = if rng.random_bool(0.5) {
                i
            } else {
                let alive = cluster.alive();
                alive[rng.random_range(0..alive.len())]
            };
            thread::sleep(Duration::from_millis(rng.random_range(0..40)));
            cluster.kill(victim);
            down.push((step + DOWN_STEPS, victim));
        }
        thread::sleep(Duration::from_millis(80));
    }
    for (_, i) in std::mem::take(&mut down) {
        cluster.restart(i);
    }
    // Every command answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.slots.iter().any(|s| !s.pending.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "commands still unanswered after 30 s"
        );
        cluster.pump();
        thread::sleep(Duration::from_millis(20));
    }

    // Wait until every node holds everything, then count what is lost.
    let started = Instant::now();
    let (lost_messages, lost_updates) = loop {
        let mut lost_messages = 0usize;
        let mut lost_updates = 0usize;
        let mut report = Vec::new();
        let feeds: Vec<(String, BTreeMap<u64, String>)> = cluster
            .feeds
            .iter()
            .map(|(f, m)| (f.clone(), m.clone()))
            .collect();
        for i in 0..NODES {
            for (feed, acked) in &feeds {
                let Some(&last) = acked.keys().last() else {
                    continue;
                };
                let log = cluster.ask(i, format!("log {feed} 1 {last}"), "log");
                assert_eq!(log["event"], "log", "{log}");
                let held: BTreeMap<u64, String> = log["messages"]
                    .as_array()
                    .expect("messages")
                    .iter()
                    .map(|m| {
                        let sequence = m["sequence"].as_u64().expect("sequence");
                        (sequence, m["id"].as_str().expect("id").to_owned())
                    })
                    .collect();
                for (sequence, id) in acked {
                    if held.get(sequence) != Some(id) {
                        lost_messages += 1;
                        report.push(format!("node {i} lacks {}… #{sequence}", &feed[..8]));
                    }
                }
            }
            let keys: Vec<(String, String)> = cluster.keys.keys().cloned().collect();
            for (owner, key) in keys {
                let value = cluster.ask(i, format!("get {owner} {key}"), "value");
                assert_eq!(value["event"], "value", "{value}");
                let held = value["value"].as_str().map(str::to_owned);
                let track = &cluster.keys[&(owner.clone(), key.clone())];
                if !track.allows(&held) {
                    lost_updates += 1;
                    report.push(format!(
                        "node {i}: {}…/{key} = {held:?}, acknowledged {:?} (then {:?})",
                        &owner[..8],
                        track.acked,
                        track.after
                    ));
                }
            }
        }
        if lost_messages + lost_updates == 0 || started.elapsed() > CONVERGE_LIMIT {
            if !report.is_empty() {
                eprintln!(
                    "still missing after {:?}:\n{}",
                    started.elapsed(),
                    report.join("\n")
                );
            }
            break (lost_messages, lost_updates);
        }
        thread::sleep(Duration::from_millis(500));
    };
    let c = &cluster.counts;
    println!(
        "crash_restart: nodes {NODES}, kills {}, restarts {}, acknowledged publishes {}, \
         acknowledged sets {}, acknowledged deletes {}, refused {}, in flight at a kill {}, \
         converged after {:.1} s, lost feed messages {lost_messages}, lost state updates \
         {lost_updates}",
        c.kills,
        c.restarts,
        c.acked_publishes,
        c.acked_sets,
        c.acked_deletes,
        c.refused,
        c.in_flight_at_kill,
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(c.kills, KILL_AT.len(), "every scheduled kill happened");
    assert_eq!(c.restarts, c.kills);
    assert!(c.acked_publishes > STEPS / 2, "most publishes acknowledged");
    assert!(c.acked_sets > STEPS / 2, "most sets acknowledged");
    assert_eq!(
        lost_messages, 0,
        "acknowledged feed messages lost (seed {seed})"
    );
    assert_eq!(
        lost_updates, 0,
        "acknowledged state updates lost (seed {seed})"
    );
    for slot in &mut cluster.slots {
        if let Some(process) = &mut slot.process {
            process.send("quit");
        }
    }
}
