//! `custom_node`: a node composed from a subset of the built-in actors plus an actor of your
//! own speaking its own request/response protocol over the same encrypted transport.
//!
//! Each of `--nodes` nodes (on 127.0.0.1) runs only the key/value state protocol with its
//! failure detector (no broadcast, no feeds) and a user-written `PingService` registered for
//! application message kind [`PING_KIND`]: it answers `ping <n>` with `pong <n>`, and completes
//! its own outstanding pings when the `pong` comes back. Every node pings every other
//! `--pings` times while the built-in state protocol converges on each node's `role` key.
//!
//! With `--json` the last stdout line is one JSON object: `nodes`, `requests`, `responses`,
//! `rtt_ms_p50`, `rtt_ms_max`, `state_converged`, `dissemination_running`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use clap::Parser;
use gossip_actors::core::{AppMessage, Message};
use gossip_actors::crypto::Keyring;
use gossip_actors::messages::{InboundMessage, SendMessage};
use gossip_actors::node::Protocols;
use gossip_actors::{Node, NodeConfig, NodeError, NodeHandle, StaticDiscovery};
use tokio::sync::oneshot;

/// The application message kind of the ping protocol.
const PING_KIND: u16 = 0x7001;

#[derive(Parser, Debug)]
#[command(about = "A node built from a subset of actors plus a user actor with its own protocol.")]
struct Args {
    /// How many nodes to start on 127.0.0.1.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Pings from every node to every other.
    #[arg(long, default_value_t = 10)]
    pings: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// Sends a ping to `to` and completes with the round-trip time.
#[derive(Message)]
#[rtype(result = "()")]
struct Ping {
    to: SocketAddr,
    done: oneshot::Sender<Duration>,
}

/// The user-written actor: answers pings, completes its own.
struct PingService {
    transport: Recipient<SendMessage>,
    next: u64,
    /// Outstanding pings, bounded: the oldest is abandoned past 1,024.
    pending: BTreeMap<u64, (Instant, oneshot::Sender<Duration>)>,
}

impl Actor for PingService {
    type Context = Context<Self>;
}

impl PingService {
    fn send(&self, to: SocketAddr, text: String) {
        let message = Message::Application(AppMessage {
            kind: PING_KIND,
            payload: Bytes::from(text),
        });
        let _ = self.transport.try_send(SendMessage { to, message });
    }
}

impl Handler<Ping> for PingService {
    type Result = ();

    fn handle(&mut self, msg: Ping, _: &mut Context<Self>) {
        let n = self.next;
        self.next += 1;
        if self.pending.len() >= 1_024 {
            self.pending.pop_first();
        }
        self.pending.insert(n, (Instant::now(), msg.done));
        self.send(msg.to, format!("ping {n}"));
    }
}

impl Handler<InboundMessage> for PingService {
    type Result = ();

    fn handle(&mut self, msg: InboundMessage, _: &mut Context<Self>) {
        let Message::Application(app) = msg.message else {
            return;
        };
        let text = String::from_utf8_lossy(&app.payload);
        if let Some(n) = text.strip_prefix("ping ") {
            self.send(msg.from, format!("pong {n}"));
        } else if let Some(n) = text
            .strip_prefix("pong ")
            .and_then(|n| n.parse::<u64>().ok())
            && let Some((sent, done)) = self.pending.remove(&n)
        {
            let _ = done.send(sent.elapsed());
        }
    }
}

async fn run(args: Args) -> Result<serde_json::Value, NodeError> {
    let keyring =
        Keyring::from_passphrase("custom node demo", "custom").map_err(|_| NodeError::Stopped)?;
    let config = NodeConfig {
        protocols: Protocols {
            dissemination: false,
            state: true,
            feeds: false,
        },
        ..NodeConfig::default()
    };
    let mut nodes: Vec<NodeHandle> = Vec::new();
    let mut services = Vec::new();
    for _ in 0..args.nodes {
        let node = Node::builder()
            .keyring(keyring.clone())
            .config(config.clone())
            .discovery(StaticDiscovery::new([]))
            .start()
            .await
            .map_err(|e| {
                eprintln!("node failed to start: {e}");
                NodeError::Stopped
            })?;
        let service = PingService {
            transport: node.transport(),
            next: 0,
            pending: BTreeMap::new(),
        }
        .start();
        node.register_app(PING_KIND, service.clone().recipient())
            .await?;
        nodes.push(node);
        services.push(service);
    }
    for node in &nodes {
        for other in &nodes {
            if other.local_addr() != node.local_addr() {
                node.add_peer(other.local_addr()).await?;
            }
        }
        node.set(
            "role",
            format!("custom-{}", node.local_addr().port()).into_bytes(),
        )
        .await?;
    }
    let dissemination_running = !matches!(
        nodes[0].broadcast(&b"x"[..]).await,
        Err(NodeError::NotRunning { .. })
    );

    let mut waits = Vec::new();
    for (i, service) in services.iter().enumerate() {
        for (j, other) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            for _ in 0..args.pings {
                let (tx, rx) = oneshot::channel();
                service.do_send(Ping {
                    to: other.local_addr(),
                    done: tx,
                });
                waits.push(rx);
            }
        }
    }
    let requests = waits.len();
    let mut rtts = Vec::new();
    for rx in waits {
        if let Ok(Ok(rtt)) = tokio::time::timeout(Duration::from_secs(5), rx).await {
            rtts.push(rtt);
        }
    }

    // The built-in state protocol, beside the user's: every node sees every node's role.
    let mut state_converged = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let mut all = true;
        for node in &nodes {
            for other in &nodes {
                if node.get(other.node_id(), "role").await?.is_none() {
                    all = false;
                }
            }
        }
        if all {
            state_converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in &nodes {
        node.shutdown().await?;
    }
    rtts.sort();
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Ok(serde_json::json!({
        "nodes": args.nodes,
        "requests": requests,
        "responses": rtts.len(),
        "rtt_ms_p50": ms(rtts.get(rtts.len() / 2)),
        "rtt_ms_max": ms(rtts.last()),
        "state_converged": state_converged,
        "dissemination_running": dissemination_running,
    }))
}

#[actix::main]
async fn main() {
    gossip_examples::node::init_logging_with("warn");
    let args = Args::parse();
    let json = args.json;
    match run(args).await {
        Ok(report) => {
            let ok = report["requests"] == report["responses"] && report["state_converged"] == true;
            println!(
                "{} nodes (state + failure detection + PingService, no broadcast, no feeds): \
                 {}/{} pings answered, rtt p50 {:.2} ms, state converged: {}",
                report["nodes"],
                report["responses"],
                report["requests"],
                report["rtt_ms_p50"].as_f64().unwrap_or(0.0),
                report["state_converged"]
            );
            if json {
                println!("{report}");
            }
            std::process::exit(if ok { 0 } else { 1 });
        }
        Err(err) => {
            eprintln!("custom_node failed: {err}");
            std::process::exit(2);
        }
    }
}
