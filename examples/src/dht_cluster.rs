//! Gossip nodes that find each other through a BitTorrent mainline DHT: the logic of the
//! `dht_cluster` binary (cargo feature `dht`).
//!
//! Everything runs in this process and on 127.0.0.1 only:
//!
//! 1. start a local mainline testnet of `--dht-nodes` DHT server nodes bound to 127.0.0.1
//!    ([`Testnet`] builder); its addresses are the only bootstrap list;
//! 2. start `--nodes` gossip nodes on `127.0.0.1:0`, each with a
//!    [`DhtDiscovery`] that knows nothing but that bootstrap list. Their tables are filled by
//!    the DHT alone (`learn_from_traffic` off), so `joined` measures the DHT, not gossip
//!    traffic;
//! 3. wait until every node's table lists every other node, or `--join-timeout-secs`;
//! 4. broadcast one message from a node chosen with `--seed` and wait until every node
//!    delivered it, or `--deadline-secs`.
//!
//! Progress goes to stderr; the summary to stdout, as text or, with `--json`, as one JSON
//! object on the last line: `nodes`, `joined` (nodes whose table holds at least one other
//! node), `full_tables` (nodes whose table holds every other node), `broadcast_reached`
//! (nodes that delivered the broadcast, the origin included), `join_ms`, `broadcast_ms`,
//! `elapsed_ms`, `dht_nodes`, `lookups`, `announces`, `bootstrap`.
//!
//! Exit codes: 0 when every node joined and delivered the broadcast, 1 when a deadline
//! passed first, 2 when the testnet or a node could not be started.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use gossip_actors::crypto::Keyring;
use gossip_actors::dht::mainline::Testnet;
use gossip_actors::{DhtConfig, DhtDiscovery, DhtStats, Node, NodeConfig, NodeEvent, NodeHandle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often the nodes' tables are read while waiting for them to fill.
pub const JOIN_POLL: Duration = Duration::from_millis(100);
/// Longest wait for one node's answer (its table, a shutdown).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Command line of the `dht_cluster` binary.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "dht_cluster",
    about = "Start a local mainline DHT testnet and gossip nodes on 127.0.0.1 that know only \
             the DHT's bootstrap addresses; show that they find each other and spread a \
             broadcast."
)]
pub struct DhtClusterArgs {
    /// Number of gossip nodes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=128))]
    pub nodes: u32,
    /// Number of DHT server nodes in the local testnet.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub dht_nodes: u32,
    /// Seconds to wait for every node's table to list every other node.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub join_timeout_secs: u64,
    /// Seconds to wait for every node to deliver the broadcast.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub deadline_secs: u64,
    /// Print one JSON object (on the last stdout line) instead of the readable summary.
    #[arg(long)]
    pub json: bool,
    /// Seed of the nodes' random choices and of the choice of the broadcasting node.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Passphrase of the cluster (a demonstration default).
    #[arg(long, default_value = "gossip demo passphrase")]
    pub passphrase: String,
    /// Cluster name: the salt of the key derivation and the source of the DHT info-hash.
    #[arg(long, default_value = "gossip-dht-demo")]
    pub cluster: String,
}

/// The summary, printed as the last stdout line with `--json`.
#[derive(Serialize, Debug, Clone)]
pub struct DhtClusterSummary {
    /// Gossip nodes started.
    pub nodes: usize,
    /// Nodes whose table held at least one other node at the end of the join phase.
    pub joined: usize,
    /// Nodes whose table held every other node at the end of the join phase.
    pub full_tables: usize,
    /// Nodes that delivered the broadcast (its origin included).
    pub broadcast_reached: usize,
    /// From the first node's start to the end of the join phase, in milliseconds.
    pub join_ms: u64,
    /// From the broadcast to its last delivery (or the deadline), in milliseconds.
    pub broadcast_ms: u64,
    /// The whole run, testnet included, in milliseconds.
    pub elapsed_ms: u64,
    /// DHT server nodes in the testnet.
    pub dht_nodes: usize,
    /// DHT lookups finished, summed over the nodes.
    pub lookups: u64,
    /// Announces the DHT confirmed, summed over the nodes.
    pub announces: u64,
    /// The testnet's addresses: the only bootstrap list the nodes had.
    pub bootstrap: Vec<SocketAddr>,
}

/// Why the run could not be set up (exit code 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DhtClusterError {
    /// The local testnet could not be started.
    #[error("cannot start the DHT testnet: {0}")]
    Testnet(std::io::Error),
    /// The testnet reported an address that is not a 127.0.0.1 socket address.
    #[error("the testnet reported {0:?}, not an address on 127.0.0.1")]
    NotLoopback(String),
    /// The key could not be derived from the passphrase.
    #[error("cannot derive the key: {0}")]
    Key(String),
    /// A gossip node could not be started.
    #[error("node {index} failed to start: {reason}")]
    Node {
        /// Which node.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A node stopped answering.
    #[error("node {0} stopped answering")]
    Stopped(usize),
}

/// Entry point of the `dht_cluster` binary after argument parsing.
pub fn main_with(args: DhtClusterArgs) -> ExitCode {
    gossip_examples::node::init_logging_with("warn");
    let system = actix::System::new();
    let result = system.block_on(async {
        let result = run(&args).await;
        actix::System::current().stop();
        result
    });
    match result {
        Ok(summary) => {
            if args.json {
                match serde_json::to_string(&summary) {
                    Ok(line) => println!("{line}"),
                    Err(err) => eprintln!("dht_cluster: cannot encode the summary: {err}"),
                }
            } else {
                print!("{}", render(&summary));
            }
            let complete =
                summary.joined == summary.nodes && summary.broadcast_reached == summary.nodes;
            if complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("dht_cluster: {err}");
            ExitCode::from(2)
        }
    }
}

/// Starts a testnet of `count` DHT server nodes bound to 127.0.0.1 (on a blocking thread:
/// mainline's constructor waits for its own threads), and returns it with its addresses.
///
/// # Errors
/// [`DhtClusterError::Testnet`] when a DHT node cannot bind; [`DhtClusterError::NotLoopback`]
/// when an address is not on 127.0.0.1.
pub async fn local_testnet(count: usize) -> Result<(Testnet, Vec<SocketAddr>), DhtClusterError> {
    let testnet = tokio::task::spawn_blocking(move || {
        Testnet::builder(count)
            .bind_address(Ipv4Addr::LOCALHOST)
            .build()
    })
    .await
    .map_err(|e| DhtClusterError::Testnet(std::io::Error::other(e.to_string())))?
    .map_err(DhtClusterError::Testnet)?;
    let mut bootstrap = Vec::with_capacity(testnet.bootstrap.len());
    for text in &testnet.bootstrap {
        match text.parse::<SocketAddr>() {
            Ok(addr) if addr.ip() == Ipv4Addr::LOCALHOST => bootstrap.push(addr),
            _ => return Err(DhtClusterError::NotLoopback(text.clone())),
        }
    }
    Ok((testnet, bootstrap))
}

/// The whole run; returns the summary (the testnet and every node are stopped on return).
async fn run(args: &DhtClusterArgs) -> Result<DhtClusterSummary, DhtClusterError> {
    let started = Instant::now();
    let n = args.nodes as usize;
    let (testnet, bootstrap) = local_testnet(args.dht_nodes as usize).await?;
    eprintln!(
        "dht_cluster: DHT testnet of {} server nodes on 127.0.0.1: {}",
        bootstrap.len(),
        join(&bootstrap)
    );
    let keyring = Keyring::from_passphrase(&args.passphrase, &args.cluster)
        .map_err(|e| DhtClusterError::Key(e.to_string()))?;

    let mut nodes: Vec<NodeHandle> = Vec::with_capacity(n);
    let mut stats: Vec<watch::Receiver<DhtStats>> = Vec::with_capacity(n);
    let join_started = Instant::now();
    for index in 0..n {
        let discovery =
            DhtDiscovery::new(&args.cluster, bootstrap.clone()).with_config(DhtConfig {
                learn_from_traffic: false,
                ..DhtConfig::local()
            });
        stats.push(discovery.stats());
        let mut config = NodeConfig::default();
        config.dissemination.anti_entropy_interval = Duration::from_millis(200);
        let node = Node::builder()
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .keyring(keyring.clone())
            .config(config)
            .rng_seed(args.seed.wrapping_mul(1_000).wrapping_add(index as u64))
            .discovery(discovery)
            .start()
            .await;
        match node {
            Ok(node) => nodes.push(node),
            Err(err) => {
                shutdown(&nodes).await;
                return Err(DhtClusterError::Node {
                    index,
                    reason: err.to_string(),
                });
            }
        }
    }
    eprintln!(
        "dht_cluster: {n} gossip nodes on 127.0.0.1 ({}), announcing under info-hash {}",
        join(&nodes.iter().map(|n| n.local_addr()).collect::<Vec<_>>()),
        hex::encode(gossip_actors::dht::cluster_info_hash(&args.cluster))
    );

    let result = exercise(args, &nodes, join_started).await;
    let (lookups, announces) = stats.iter().fold((0, 0), |(l, a), s| {
        let s = *s.borrow();
        (l + s.lookups, a + s.announces)
    });
    shutdown(&nodes).await;
    drop(testnet);
    let (joined, full_tables, join_ms, broadcast_reached, broadcast_ms) = result?;
    Ok(DhtClusterSummary {
        nodes: n,
        joined,
        full_tables,
        broadcast_reached,
        join_ms,
        broadcast_ms,
        elapsed_ms: started.elapsed().as_millis() as u64,
        dht_nodes: bootstrap.len(),
        lookups,
        announces,
        bootstrap,
    })
}

/// The join phase then the broadcast: (joined, full tables, join ms, reached, broadcast ms).
async fn exercise(
    args: &DhtClusterArgs,
    nodes: &[NodeHandle],
    join_started: Instant,
) -> Result<(usize, usize, u64, usize, u64), DhtClusterError> {
    let n = nodes.len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.join_timeout_secs);
    let mut last_report = (usize::MAX, usize::MAX);
    let (joined, full) = loop {
        let mut joined = 0;
        let mut full = 0;
        for (index, node) in nodes.iter().enumerate() {
            let peers = tokio::time::timeout(CALL_TIMEOUT, node.known_peers())
                .await
                .map_err(|_| DhtClusterError::Stopped(index))?
                .map_err(|_| DhtClusterError::Stopped(index))?;
            let others = peers.iter().filter(|p| p.addr != node.local_addr()).count();
            joined += usize::from(others >= 1);
            full += usize::from(others + 1 >= n);
        }
        if (joined, full) != last_report {
            eprintln!(
                "dht_cluster: {:>6} ms  joined {joined}/{n}, full tables {full}/{n}",
                join_started.elapsed().as_millis()
            );
            last_report = (joined, full);
        }
        if full == n || tokio::time::Instant::now() >= deadline {
            break (joined, full);
        }
        tokio::time::sleep(JOIN_POLL).await;
    };
    let join_ms = join_started.elapsed().as_millis() as u64;
    if full < n {
        eprintln!(
            "dht_cluster: join timeout of {} s passed with {full}/{n} full tables",
            args.join_timeout_secs
        );
    }

    let origin = StdRng::seed_from_u64(args.seed).random_range(0..n);
    let receivers: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();
    let broadcast_started = Instant::now();
    let id = nodes[origin]
        .broadcast(&b"hello through the DHT"[..])
        .await
        .map_err(|_| DhtClusterError::Stopped(origin))?;
    eprintln!("dht_cluster: node {origin} broadcast {id:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.deadline_secs);
    let mut waiters = JoinSet::new();
    for mut rx in receivers {
        waiters.spawn(async move {
            tokio::time::timeout_at(deadline, async {
                loop {
                    match rx.recv().await {
                        Ok(NodeEvent::Delivered(d)) if d.id == id => return true,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                    }
                }
            })
            .await
            .unwrap_or(false)
        });
    }
    let mut reached = 0;
    while let Some(delivered) = waiters.join_next().await {
        if matches!(delivered, Ok(true)) {
            reached += 1;
        }
    }
    let broadcast_ms = broadcast_started.elapsed().as_millis() as u64;
    eprintln!("dht_cluster: broadcast reached {reached}/{n} nodes in {broadcast_ms} ms");
    Ok((joined, full, join_ms, reached, broadcast_ms))
}

/// Stops every node, each within [`CALL_TIMEOUT`].
async fn shutdown(nodes: &[NodeHandle]) {
    for (index, node) in nodes.iter().enumerate() {
        if tokio::time::timeout(CALL_TIMEOUT, node.shutdown())
            .await
            .is_err()
        {
            eprintln!("dht_cluster: node {index} did not shut down in time");
        }
    }
}

fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The readable summary.
fn render(s: &DhtClusterSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "gossip over DHT discovery on 127.0.0.1");
    let _ = writeln!(
        out,
        "  DHT testnet           {} server nodes: {}",
        s.dht_nodes,
        join(&s.bootstrap)
    );
    let _ = writeln!(out, "  gossip nodes          {}", s.nodes);
    let _ = writeln!(
        out,
        "  joined                {} (full tables {}) in {} ms",
        s.joined, s.full_tables, s.join_ms
    );
    let _ = writeln!(
        out,
        "  broadcast reached     {} in {} ms",
        s.broadcast_reached, s.broadcast_ms
    );
    let _ = writeln!(
        out,
        "  DHT traffic           {} lookups, {} announces",
        s.lookups, s.announces
    );
    let _ = writeln!(
        out,
        "  elapsed               {:.1} s",
        s.elapsed_ms as f64 / 1000.0
    );
    if s.joined == s.nodes && s.broadcast_reached == s.nodes {
        let _ = writeln!(
            out,
            "every node found the others through the DHT and delivered the broadcast"
        );
    } else {
        let _ = writeln!(out, "NOT complete");
    }
    out
}
