//! `cluster --web`: the merged snapshot of every child and each child's own `/metrics`, read
//! over HTTP on 127.0.0.1 while the cluster runs. Every wait is bounded; the cluster is killed
//! if it outlives the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on `addr`; the body, or `None` if the server is not answering.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

#[test]
fn cluster_web_view_merges_every_child_and_each_child_serves_metrics() {
    let child = Command::new(env!("CARGO_BIN_EXE_cluster"))
        .args([
            "--nodes",
            "3",
            "--messages",
            "20",
            "--keys",
            "1",
            "--no-kill",
        ])
        .args(["--web", "127.0.0.1:0", "--web-linger-secs", "4", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cluster starts");
    let mut cluster = KillOnDrop(child);
    let stderr = cluster.0.stderr.take().expect("stderr is piped");
    let (tx, lines) = channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = tx.send(line);
        }
    });
    let web: SocketAddr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the cluster names its web address");
        if let Some(rest) = line.strip_prefix("cluster: web view at http://") {
            break rest.trim_end_matches('/').parse().expect("an address");
        }
    };
    assert!(web.ip().is_loopback() && web.port() != 0, "{web}");

    let start = Instant::now();
    let snapshot = loop {
        let snapshot: Option<Value> =
            get(web, "/snapshot").and_then(|body| serde_json::from_str(&body).ok());
        if let Some(s) = &snapshot {
            let nodes = s["nodes"].as_array().map(Vec::as_slice).unwrap_or_default();
            let full = nodes.len() == 3
                && nodes.iter().all(|n| {
                    n["view"].as_array().is_some_and(|v| v.len() == 2)
                        && n["feeds"].as_array().is_some_and(|f| f.len() == 3)
                        && n["http"].is_string()
                });
            if full {
                break s.clone();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "3 nodes with full views and 3 feeds each within 60 s: {snapshot:?}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    let page = get(web, "/").expect("the page");
    assert!(page.contains(r#"<svg id="graph""#));
    assert!(
        get(web, "/metrics").is_none(),
        "the cluster itself has no metrics"
    );

    // Each child serves its own /metrics, with traffic counted.
    let node = &snapshot["nodes"][0];
    let http: SocketAddr = node["http"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("the child's HTTP address");
    assert!(http.ip().is_loopback());
    let scrape = get(http, "/metrics").expect("the child's metrics");
    let sent: f64 = scrape
        .lines()
        .filter(|l| l.starts_with("gossip_datagrams_total{direction=\"sent\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(sent > 0.0, "{scrape}");

    // The run ends by itself after lingering 4 s, with the usual JSON summary.
    let limit = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = cluster.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < limit, "the cluster exits after lingering");
        thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    cluster
        .0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(status.success(), "{status}: {out}");
    let summary: Value =
        serde_json::from_str(out.lines().last().expect("a summary")).expect("JSON");
    assert_eq!(summary["complete"], true, "{summary}");
}
