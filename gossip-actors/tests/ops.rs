//! The operations server (feature `http`): `/metrics` scraped from a node of a small local
//! cluster on 127.0.0.1 during traffic, the web view's JSON, its server-sent events and its
//! assets. Every wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_actors::crypto::{Key, Keyring};
use gossip_actors::ops::{ClusterSnapshot, Ops, OpsConfig};
use gossip_actors::{CyclonDiscovery, Node, NodeHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` on `addr`; returns (status line, headers and body as text). Reads until the
/// server closes (`Connection: close`) or `limit` elapses.
async fn get(addr: SocketAddr, path: &str, limit: Duration) -> (String, String) {
    let read = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        response
    };
    let response = tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("GET {path} answered within {limit:?}"));
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    (head.to_owned(), body.to_owned())
}

/// Sample name (with labels) → value, for every sample line of a Prometheus text scrape.
fn samples(scrape: &str) -> BTreeMap<String, f64> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Sum of the samples of `family` whose labels contain every one of `labels`.
fn sum(samples: &BTreeMap<String, f64>, family: &str, labels: &[&str]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|(name, _)| {
            (name.as_str() == family || name.starts_with(&format!("{family}{{")))
                && labels.iter().all(|l| name.contains(l))
        })
        .map(|(_, v)| *v)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

async fn start_cluster(n: usize) -> Vec<NodeHandle> {
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for i in 0..n {
        let seeds: Vec<SocketAddr> = nodes.first().map(|n| n.local_addr()).into_iter().collect();
        let node = Node::builder()
            .bind("127.0.0.1:0".parse().expect("address"))
            .keyring(Keyring::new(Key::from_bytes([8; 32])))
            .discovery(CyclonDiscovery::new(seeds))
            .rng_seed(40 + i as u64)
            .start()
            .await
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
        nodes.push(node);
    }
    nodes
}

/// The first family (with labels) missing from a scrape or zero where traffic makes it
/// nonzero; `None` when every one holds.
fn first_problem(values: &BTreeMap<String, f64>) -> Option<String> {
    let nonzero = |family: &str, labels: &[&str]| -> Option<String> {
        match sum(values, family, labels) {
            None => Some(format!("{family} {labels:?} is missing")),
            Some(v) if v <= 0.0 => Some(format!("{family} {labels:?} is {v}")),
            Some(_) => None,
        }
    };
    // Datagrams and bytes by packet type and direction: every protocol spoke both ways.
    for kind in [
        "push_message",
        "state_digest",
        "tree_notes",
        "cyclon_shuffle",
    ] {
        for direction in ["sent", "received"] {
            let direction = format!("direction=\"{direction}\"");
            let kind = format!("packet_type=\"{kind}\"");
            let labels = [direction.as_str(), kind.as_str()];
            for family in ["gossip_datagrams_total", "gossip_bytes_total"] {
                if let Some(problem) = nonzero(family, &labels) {
                    return Some(problem);
                }
            }
        }
    }
    let checks: [(&str, &[&str]); 11] = [
        ("gossip_drops_total", &[]),
        ("gossip_deliveries_total", &["protocol=\"broadcast\""]),
        ("gossip_deliveries_total", &["protocol=\"feed\""]),
        ("gossip_duplicates_total", &[]),
        ("gossip_rmr", &[]),
        ("gossip_peer_phi", &[]),
        ("gossip_peer_live", &[]),
        ("gossip_flow_rate_updates_per_second", &[]),
        ("gossip_view_size", &[]),
        ("gossip_feed_head", &[]),
        ("gossip_datagrams_total", &[]),
    ];
    if let Some(problem) = checks.iter().find_map(|(f, l)| nonzero(f, l)) {
        return Some(problem);
    }
    if sum(values, "gossip_drops_total", &["reason=\"mailbox_full\""]).is_none() {
        return Some("the transport's drop reasons are missing".into());
    }
    // The lag of a caught-up feed is 0: present is what counts.
    if sum(values, "gossip_feed_lag_messages", &[]).is_none() {
        return Some("gossip_feed_lag_messages is missing".into());
    }
    // Three feeds followed plus our own, each with a head.
    let heads = values
        .keys()
        .filter(|k| k.starts_with("gossip_feed_head{"))
        .count();
    (heads != 4).then(|| format!("{heads} feed heads, expected 4"))
}

#[actix::test]
async fn a_scrape_during_traffic_has_every_family_with_nonzero_counters() {
    let nodes = start_cluster(4).await;
    // Every node learns every address for the key/value state (CYCLON fills the view).
    for node in &nodes {
        for other in &nodes {
            if other.node_id() != node.node_id() {
                node.add_peer(other.local_addr()).await.expect("add peer");
            }
        }
    }
    for node in &nodes {
        for other in &nodes {
            if other.node_id() != node.node_id() {
                node.follow(other.feed_id()).await.expect("follow");
            }
        }
    }
    let config = OpsConfig {
        interval: Duration::from_millis(200),
        ..OpsConfig::default()
    };
    let ops = Ops::start(nodes[0].clone(), config);
    let http = ops
        .serve("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("serve");
    assert!(http.ip().is_loopback());

    // One datagram from nobody with our key: counted as a drop.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    stranger
        .send_to(b"not a gossip datagram", nodes[0].local_addr())
        .await
        .expect("send");

    let start = Instant::now();
    let mut round = 0u32;
    let (scrape, values) = loop {
        for (i, node) in nodes.iter().enumerate() {
            node.broadcast(format!("m{round}-{i}").into_bytes())
                .await
                .expect("broadcast");
            node.publish(format!("post {round}").into_bytes())
                .await
                .expect("publish");
            let _ = node
                .try_set(format!("k{i}"), format!("{round}").into_bytes())
                .await;
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, scrape) = get(http, "/metrics", Duration::from_secs(10)).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let values = samples(&scrape);
        let problem = first_problem(&values);
        if problem.is_none() || start.elapsed() > Duration::from_secs(30) {
            break (scrape, values);
        }
    };
    println!(
        "--- /metrics of node {} after {round} rounds ---",
        nodes[0].node_id().short()
    );
    let mut sample: Vec<&str> = scrape.lines().filter(|l| !l.ends_with(" 0")).collect();
    sample.sort_unstable();
    println!("{}", sample.join("\n"));
    if let Some(problem) = first_problem(&values) {
        panic!("after {round} rounds (30 s): {problem}:\n{scrape}");
    }
    for node in &nodes {
        node.shutdown().await.expect("shutdown");
    }
}

#[actix::test]
async fn the_web_view_serves_its_assets_the_snapshot_and_events() {
    let nodes = start_cluster(3).await;
    for node in &nodes {
        for other in &nodes {
            if other.node_id() != node.node_id() {
                node.follow(other.feed_id()).await.expect("follow");
            }
        }
    }
    let ops = Ops::start(
        nodes[1].clone(),
        OpsConfig {
            interval: Duration::from_millis(100),
            ..OpsConfig::default()
        },
    );
    let http = ops
        .serve("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("serve");
    assert_eq!(ops.http_addr(), Some(http));

    // The page and its assets come from the binary; the page names no other origin.
    let (status, page) = get(http, "/", Duration::from_secs(10)).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(page.contains(r#"<svg id="graph""#), "{page}");
    assert!(page.contains(r#"<script src="/app.js">"#), "{page}");
    assert!(!page.contains("://"), "no external reference in the page");
    for (path, kind) in [("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let (head, body) = get(http, path, Duration::from_secs(10)).await;
        assert!(head.to_ascii_lowercase().contains(kind), "{path}: {head}");
        assert!(body.len() > 500, "{path}");
    }

    // The snapshot lists this node with its view (CYCLON joined through node 0), its feeds and
    // its counters; deliveries carry hops.
    nodes[0].broadcast(&b"hello"[..]).await.expect("broadcast");
    nodes[2].publish(&b"post"[..]).await.expect("publish");
    let start = Instant::now();
    let snapshot = loop {
        let (_, body) = get(http, "/snapshot", Duration::from_secs(10)).await;
        let snapshot: ClusterSnapshot = serde_json::from_str(&body).expect("snapshot JSON");
        let ready = snapshot.nodes.first().is_some_and(|n| {
            !n.view.is_empty()
                && n.deliveries.iter().any(|d| d.hop >= 1)
                && n.feeds
                    .iter()
                    .any(|f| f.feed == nodes[2].feed_id().to_string() && f.latest == 1)
        });
        if ready || start.elapsed() > Duration::from_secs(30) {
            break snapshot;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(snapshot.nodes.len(), 1);
    let me = &snapshot.nodes[0];
    assert_eq!(me.node_id, nodes[1].node_id().to_string());
    assert_eq!(me.http.as_deref(), Some(http.to_string().as_str()));
    assert!(!me.view.is_empty(), "{me:?}");
    assert_eq!(me.feeds.len(), 3, "own feed and two followed: {me:?}");
    let delivered = me
        .deliveries
        .iter()
        .find(|d| d.origin == nodes[0].node_id().to_string())
        .unwrap_or_else(|| panic!("the broadcast is among the recent deliveries: {me:?}"));
    assert!(delivered.hop >= 1);
    let feed = me
        .feeds
        .iter()
        .find(|f| f.feed == nodes[2].feed_id().to_string())
        .expect("followed feed");
    assert_eq!((feed.latest, feed.lag), (1, 0), "{feed:?}");

    // Server-sent events: the first event carries a snapshot at once.
    let events = async {
        let mut stream = TcpStream::connect(http).await.expect("connect");
        let request = format!("GET /events HTTP/1.1\r\nHost: {http}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "the event stream stays open");
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if text.contains("event: snapshot") && text.contains(&me.node_id) {
                return text.into_owned();
            }
        }
    };
    let text = tokio::time::timeout(Duration::from_secs(10), events)
        .await
        .expect("a snapshot event within 10 s");
    assert!(
        text.to_ascii_lowercase().contains("text/event-stream"),
        "{text}"
    );

    ops.stop();
    for node in &nodes {
        node.shutdown().await.expect("shutdown");
    }
}
