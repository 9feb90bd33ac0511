//! Flood: one authenticated peer (it holds the cluster key and seals with gossip-net's
//! `PacketCodec` directly) sends 100,000 valid but useless datagrams to a victim
//! `gossip-node` as fast as it can, while two honest `gossip-node`s broadcast through it.
//!
//! The flood is a mix of every protocol's inputs a stranger can make a node store or answer:
//! `PushMessage`s with fresh random ids and the largest payload, `PullSync`s announcing
//! random ids, Scuttlebutt digests naming fake nodes, deltas of fake nodes carrying the
//! largest value, tree notes for unknown feeds, and CYCLON shuffles with fake peers.
//!
//! Checked: the victim's peak resident memory (`VmHWM` of `/proc/PID/status`, Linux) stays
//! under the bound derived from its configured bounds in `docs/bounds.md` (see
//! [`memory_bound`]); the victim delivers every honest broadcast exactly once; and the
//! victim's counters account for the flood (received, dropped by reason). The counts are
//! printed. Everything binds 127.0.0.1; every wait has a timeout; children are killed when
//! the test ends. Linux only (it reads `/proc`).
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gossip_actors::core::feed::FeedId;
use gossip_actors::core::flow::FlowAdvert;
use gossip_actors::core::membership::{Descriptor, Shuffle};
use gossip_actors::core::reconcile::{
    DeltaEntry, Deltas, Digest, DigestEntry, NodeDelta, NodePrefix,
};
use gossip_actors::core::tree::Notes;
use gossip_actors::core::{Envelope, Gossip, Message, MessageId, NodeId};
use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::net::{PacketCodec, Security};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use gossip_examples::process::TempDir;

/// Datagrams the flooder sends.
const FLOOD: u64 = 100_000;
/// Broadcasts each honest node makes while the flood runs.
const HONEST_BROADCASTS: usize = 20;
/// The cluster key (also written to the key file the nodes read).
const KEY: [u8; 32] = [0x3c; 32];
/// Authenticated datagrams per second the victim admits from one source.
const VICTIM_RATE: u32 = 200;
/// The nodes' maximum datagram (gossip-node's default).
const MAX_DATAGRAM: usize = 1_400;

/// What the victim's reader thread extracts from its stdout: the honest deliveries (id,
/// origin) and every other answer. Flood deliveries are only counted, not parsed.
enum Line {
    Honest { id: String },
    Other(Value),
}

/// One `gossip-node` child.
struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    addr: SocketAddr,
    node_id: String,
    /// Delivered events of origins other than the honest ones (the flood).
    other_deliveries: Arc<AtomicU64>,
    /// `"origin":"<hex>"` of the honest nodes whose deliveries the reader reports.
    honest_origins: Arc<std::sync::Mutex<Vec<String>>>,
}

impl NodeProcess {
    /// Starts a node with `args`; its reader reports deliveries whose origin is in
    /// `honest_origins` and only counts the others.
    fn start(key_file: &Path, args: &[&str]) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gossip-node"))
            .args(["--bind", "127.0.0.1:0", "--key-file"])
            .arg(key_file)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("gossip-node starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = channel();
        let other_deliveries = Arc::new(AtomicU64::new(0));
        let honest: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let counter = Arc::clone(&other_deliveries);
        let watched = Arc::clone(&honest);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parsed = if line.starts_with("{\"event\":\"delivered\"") {
                    let origins = watched.lock().map(|w| w.clone()).unwrap_or_default();
                    if origins.iter().any(|o| line.contains(o.as_str())) {
                        let value: Value = serde_json::from_str(&line).expect("JSON");
                        Line::Honest {
                            id: value["id"].as_str().expect("id").to_owned(),
                        }
                    } else {
                        counter.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                } else {
                    Line::Other(serde_json::from_str(&line).expect("JSON"))
                };
                if tx.send(parsed).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let ready = match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(Line::Other(value)) => value,
            _ => panic!("gossip-node printed no ready line"),
        };
        assert_eq!(ready["event"], "ready", "{ready}");
        NodeProcess {
            child,
            stdin,
            lines,
            addr: ready["addr"].as_str().expect("addr").parse().expect("addr"),
            node_id: ready["node_id"].as_str().expect("node id").to_owned(),
            other_deliveries,
            honest_origins: honest,
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to node");
        stdin.flush().expect("flush to node");
    }

    /// Sends `command` and waits for the event named `answer` (or an error).
    fn ask(&mut self, command: &str, answer: &str, honest: &mut Vec<String>) -> Value {
        self.send(command);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Line::Other(v)) if v["event"] == answer || v["event"] == "error" => return v,
                Ok(Line::Honest { id }) => honest.push(id),
                Ok(Line::Other(_)) => {}
                Err(_) => panic!("no answer to {command:?}"),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` and `VmHWM` (peak) of process `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Datagrams the kernel dropped at the socket bound to `port` on 127.0.0.1 (the `drops`
/// column of `/proc/net/udp`): the flood beyond what the victim reads.
fn kernel_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// The victim's resident memory bound, in KiB: its idle resident set plus what its bounded
/// collections may hold, each term a configured bound (defaults, `docs/bounds.md`) times the
/// largest element, doubled for the allocator's slack (freed blocks kept by malloc, arena
/// rounding):
///
/// | term | bound |
/// |---|---|
/// | dissemination cache | 512 entries × 1,400 B |
/// | seen ids | 16,384 × 128 B |
/// | pending pulls | 4,096 × 128 B |
/// | five protocol mailboxes (transport → actor) | 5 × 4,096 × (1,400 B + 256 B) |
/// | transport mailbox (actors → transport) | 4,096 × (1,400 B + 256 B) |
/// | event channel (node → subscribers) | 4,096 × (1,400 B + 256 B) |
/// | Scuttlebutt state of other nodes | `max_state_bytes` 64 MiB + 10,000 nodes × 512 B |
/// | forgotten/rumour indexes | 2 × 10,000 × 128 B |
/// | CYCLON view, dead set, pending | (20 + 1,024 + 4) × 128 B |
/// | failure detector | 4,096 peers × (100 samples × 8 B + 256 B) |
/// | static discovery table | 4,096 peers × 256 B |
/// | tree: peers × feeds links, recent cache, buffer | 32 × 16 × 64 B + 512 × 1,400 B + 256 × 1,400 B |
fn memory_bound(idle_kib: u64) -> u64 {
    let d = MAX_DATAGRAM as u64;
    let terms: [u64; 12] = [
        512 * d,
        16_384 * 128,
        4_096 * 128,
        5 * 4_096 * (d + 256),
        4_096 * (d + 256),
        4_096 * (d + 256),
        (64 << 20) + 10_000 * 512,
        2 * 10_000 * 128,
        (20 + 1_024 + 4) * 128,
        4_096 * (100 * 8 + 256),
        4_096 * 256,
        32 * 16 * 64 + 512 * d + 256 * d,
    ];
    idle_kib + 2 * terms.iter().sum::<u64>() / 1024
}

/// The flood's datagrams, one kind after the other in a fixed rotation.
/// Datagram `n` of the flood: a fresh packet counter each (`n`) under one boot `epoch`, so
/// every one passes the victim's anti-replay check; only their content is useless.
fn flood_envelope(
    rng: &mut StdRng,
    sender: NodeId,
    epoch: u64,
    n: u64,
    payload_len: usize,
) -> Envelope {
    let message = match n % 10 {
        0..=3 => Message::PushMessage(Gossip {
            id: MessageId::random(rng),
            origin: NodeId::random(rng),
            hop: 0,
            payload: Bytes::from(vec![b'f'; payload_len]),
        }),
        4 => Message::PullSync {
            ids: (0..64).map(|_| MessageId::random(rng)).collect(),
        },
        5 | 6 => Message::StateDigest(Digest {
            range_end: NodePrefix(rng.random()),
            page: (0..40)
                .map(|_| DigestEntry {
                    node: NodePrefix(rng.random()),
                    generation: rng.random_range(1..1_000_000),
                    heartbeat: rng.random_range(1..1_000_000),
                    max_version: rng.random_range(1..1_000_000),
                    gc_version: 0,
                })
                .collect(),
            extra: Vec::new(),
            flow: FlowAdvert {
                rate: 1_000,
                desired: 1_000,
            },
        }),
        7 => Message::StateDeltas(Deltas {
            deltas: vec![NodeDelta {
                node: NodeId::random(rng),
                generation: 1,
                heartbeat: 1,
                addr: SocketAddr::from(([127, 0, 0, 1], 9)),
                gc_version: 0,
                reset: false,
                from_version: 0,
                to_version: 1,
                complete: true,
                entries: vec![DeltaEntry {
                    key: "k".repeat(128),
                    version: 1,
                    value: Some(Bytes::from(vec![b'v'; 1_024])),
                }],
            }],
        }),
        8 => Message::TreeNotes(Notes {
            entries: (0..24)
                .map(|_| (FeedId(rng.random()), rng.random_range(0..1_000)))
                .collect(),
        }),
        _ => Message::CyclonShuffle(Shuffle {
            entries: (0..8)
                .map(|_| Descriptor {
                    node: NodeId::random(rng),
                    addr: SocketAddr::from(([127, 0, 0, 1], 9)),
                    age: rng.random_range(0..10),
                })
                .collect(),
        }),
    };
    Envelope {
        sender,
        epoch,
        counter: n,
        message,
    }
}

#[test]
fn a_flooded_node_stays_within_its_memory_bound_and_keeps_delivering() {
    let dir = TempDir::create("test-flood").expect("a scratch folder");
    let key_file = dir.path().join("cluster.key");
    std::fs::write(&key_file, format!("{}\n", hex_of(&KEY))).expect("write the key file");

    // The victim admits VICTIM_RATE datagrams per second per source: below what an
    // unoptimised node on a loaded machine can process, so that the per-source limit, not
    // the kernel's socket buffer, decides what is dropped (in a release build the default
    // of 1,000/s plays that part).
    let rate = VICTIM_RATE.to_string();
    let burst = (2 * VICTIM_RATE).to_string();
    let mut victim = NodeProcess::start(
        &key_file,
        &["--inbound-rate", &rate, "--inbound-burst", &burst],
    );
    let mut a = NodeProcess::start(&key_file, &[]);
    let mut b = NodeProcess::start(&key_file, &[]);
    {
        // The victim reports deliveries from the two honest nodes.
        let mut origins = victim.honest_origins.lock().expect("lock");
        origins.push(format!("\"origin\":\"{}\"", a.node_id));
        origins.push(format!("\"origin\":\"{}\"", b.node_id));
    }
    let mut honest_seen: Vec<String> = Vec::new();
    let mut scratch = Vec::new();
    let (va, aa, ba) = (victim.addr, a.addr, b.addr);
    for (node, peers) in [
        (&mut victim, vec![aa, ba]),
        (&mut a, vec![va, ba]),
        (&mut b, vec![va, aa]),
    ] {
        for peer in peers {
            let added = node.ask(&format!("peer {peer}"), "peer_added", &mut scratch);
            assert_eq!(added["event"], "peer_added", "{added}");
        }
    }
    // Warm up: a broadcast from each honest node reaches the victim.
    for (node, text) in [(&mut a, "warm-up a"), (&mut b, "warm-up b")] {
        let sent = node.ask(&format!("broadcast {text}"), "broadcast", &mut scratch);
        assert_eq!(sent["event"], "broadcast", "{sent}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while honest_seen.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "warm-up broadcasts not delivered"
        );
        if let Ok(Line::Honest { id }) = victim.lines.recv_timeout(Duration::from_millis(100)) {
            honest_seen.push(id);
        }
    }
    let warm_up: Vec<String> = std::mem::take(&mut honest_seen);
    thread::sleep(Duration::from_millis(500));
    let (idle_rss, _) = memory_kib(victim.pid());
    let bound = memory_bound(idle_rss);
    let victim_port = victim.addr.port();
    let kernel_drops_before = kernel_drops(victim_port);

    // The flooder: its own thread, sealing with the cluster key.
    let done = Arc::new(AtomicBool::new(false));
    let flooder = {
        let target = victim.addr;
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the flooder");
            let security = Security::Encrypted(Arc::new(Keyring::new(Key::from_bytes(KEY))));
            let mut codec = PacketCodec::new(security, MAX_DATAGRAM).expect("codec");
            let payload_len = codec.max_envelope_len()
                - gossip_actors::core::message::wire_bound::GOSSIP_OVERHEAD;
            let mut rng = StdRng::seed_from_u64(0xf100d);
            let sender = NodeId::random(&mut rng);
            let epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
            let mut buf = BytesMut::with_capacity(MAX_DATAGRAM);
            let (mut sent, mut by_kind) = (0u64, BTreeMap::<&'static str, u64>::new());
            let started = Instant::now();
            for n in 0..FLOOD {
                let envelope = flood_envelope(&mut rng, sender, epoch, n, payload_len);
                buf.clear();
                codec
                    .encode_datagram(&envelope, &mut buf)
                    .unwrap_or_else(|e| panic!("flood datagram {n} does not encode: {e}"));
                if socket.send_to(&buf, target).is_ok() {
                    sent += 1;
                    *by_kind
                        .entry(envelope.message.packet_type().name())
                        .or_default() += 1;
                }
            }
            done.store(true, Ordering::Relaxed);
            (sent, by_kind, started.elapsed())
        })
    };

    // Meanwhile the honest nodes broadcast, and the victim's memory is sampled.
    let mut peak_rss = idle_rss;
    let mut expected: Vec<String> = Vec::new();
    for i in 0..HONEST_BROADCASTS {
        for (name, node) in [("a", &mut a), ("b", &mut b)] {
            let sent = node.ask(
                &format!("broadcast honest {name} {i}"),
                "broadcast",
                &mut scratch,
            );
            assert_eq!(sent["event"], "broadcast", "{sent}");
            expected.push(sent["id"].as_str().expect("id").to_owned());
        }
        peak_rss = peak_rss.max(memory_kib(victim.pid()).0);
        while let Ok(line) = victim.lines.try_recv() {
            if let Line::Honest { id } = line {
                honest_seen.push(id);
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    let (sent, by_kind, flood_time) = flooder.join().expect("the flooder finishes");
    assert!(done.load(Ordering::Relaxed));

    // Every honest broadcast is delivered (anti-entropy repairs what the flood crowded out),
    // then a few more anti-entropy rounds bring no second copy.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_new = Instant::now();
    loop {
        peak_rss = peak_rss.max(memory_kib(victim.pid()).0);
        let complete = expected.iter().all(|id| honest_seen.contains(id));
        if complete && last_new.elapsed() > Duration::from_secs(3) {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        if let Ok(Line::Honest { id }) = victim.lines.recv_timeout(Duration::from_millis(100)) {
            honest_seen.push(id);
            last_new = Instant::now();
        }
    }
    let stats = victim.ask("stats", "stats", &mut honest_seen);
    let (rss_now, hwm) = memory_kib(victim.pid());
    peak_rss = peak_rss.max(hwm);
    let dropped_by_kernel = kernel_drops(victim_port).saturating_sub(kernel_drops_before);

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &honest_seen {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let delivered_once = expected
        .iter()
        .filter(|id| counts.get(id.as_str()) == Some(&1))
        .count();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    let duplicated: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let drops: BTreeMap<String, u64> = stats["drops"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.as_u64() != Some(0))
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "flood: sent {sent} datagrams in {:.1} s ({by_kind:?})",
        flood_time.as_secs_f64()
    );
    println!(
        "victim: received {} datagrams, dropped by the kernel (socket buffer full) \
         {dropped_by_kernel}, dropped by the codec {drops:?}, rate-limited {}, mailbox full {}, \
         mailbox full by type {}, unrouted {}, flood deliveries {}, state nodes refused {}, state entries refused for bytes {}",
        stats["datagrams_received"],
        stats["rate_limited"],
        stats["mailbox_full"],
        stats["mailbox_full_by_type"],
        stats["unrouted"],
        victim.other_deliveries.load(Ordering::Relaxed),
        stats["state"]["nodes_refused"],
        stats["state"]["bytes_refused"],
    );
    println!(
        "victim memory: idle {idle_rss} KiB, peak {peak_rss} KiB (VmHWM), now {rss_now} KiB, \
         bound {bound} KiB"
    );
    println!(
        "honest broadcasts: {} expected, {delivered_once} delivered exactly once, {} missing, \
         {} duplicated (warm-up {})",
        expected.len(),
        missing.len(),
        duplicated.len(),
        warm_up.len()
    );
    assert_eq!(sent, FLOOD, "every flood datagram was handed to the kernel");
    assert!(
        missing.is_empty(),
        "honest broadcasts never delivered: {missing:?}"
    );
    assert!(
        duplicated.is_empty(),
        "delivered more than once: {duplicated:?}"
    );
    assert!(
        peak_rss <= bound,
        "peak resident memory {peak_rss} KiB above the bound {bound} KiB"
    );
    for node in [&mut victim, &mut a, &mut b] {
        node.send("quit");
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
