//! `cluster --web ADDR`: one live web view for the whole local cluster.
//!
//! Design: each child runs with `--snapshot-ms` (and `--http 127.0.0.1:0`, so each also
//! serves its own `/metrics`), and prints its [`NodeSnapshot`] as a `snapshot` line on the
//! stdout protocol the cluster already reads. The child's reader task keeps the latest one per
//! node in a [`Snapshots`] table instead of queueing it; every [`MERGE_INTERVAL`] the table is
//! merged into one [`ClusterSnapshot`] (nodes in child order) and served by the same routes as
//! a single node's page ([`gossip_actors::ops::router`]): `/`, `/snapshot`, `/events`. No HTTP
//! client, no second protocol: a child that dies keeps its last snapshot (its peers' failure
//! detectors then show it dead), and the cluster's `/metrics` is 404: scrape each child at the
//! `http` address its snapshot names.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_actors::ops::{ClusterSnapshot, NodeSnapshot, router};
use serde::Deserialize;
use tokio::sync::watch;

/// How often the children print their snapshot, in milliseconds.
pub const CHILD_SNAPSHOT_MS: u64 = 500;
/// How often the merged snapshot is rebuilt.
pub const MERGE_INTERVAL: Duration = Duration::from_millis(500);

/// The latest snapshot of every child, by child index.
#[derive(Clone, Debug)]
pub struct Snapshots {
    slots: Arc<Mutex<Vec<Option<NodeSnapshot>>>>,
}

/// A `snapshot` line of a child.
#[derive(Deserialize)]
struct SnapshotLine {
    snapshot: NodeSnapshot,
}

impl Snapshots {
    /// A table for `nodes` children.
    pub fn new(nodes: usize) -> Self {
        Snapshots {
            slots: Arc::new(Mutex::new(vec![None; nodes])),
        }
    }

    /// If `line` is a `snapshot` line of child `node`, keeps it and returns `true`; any other
    /// line is left to the caller.
    pub fn take_line(&self, node: usize, line: &str) -> bool {
        if !line.starts_with(r#"{"event":"snapshot""#) {
            return false;
        }
        match serde_json::from_str::<SnapshotLine>(line) {
            Ok(parsed) => {
                if let Ok(mut slots) = self.slots.lock()
                    && let Some(slot) = slots.get_mut(node)
                {
                    *slot = Some(parsed.snapshot);
                }
            }
            Err(err) => eprintln!("cluster: node {node}: unreadable snapshot: {err}"),
        }
        true
    }

    /// Every child's latest snapshot, in child order (children not reported yet left out).
    pub fn merged(&self) -> ClusterSnapshot {
        let nodes = self
            .slots
            .lock()
            .map(|slots| slots.iter().flatten().cloned().collect())
            .unwrap_or_default();
        ClusterSnapshot { nodes }
    }
}

/// The cluster's web server: binds `addr` now (so a taken address fails before any child
/// starts), then serves the merged snapshots until the runtime ends. Returns the bound
/// address.
///
/// # Errors
/// The OS error when `addr` cannot be bound.
pub async fn serve(addr: SocketAddr, snapshots: Snapshots) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (tx, rx) = watch::channel::<Arc<str>>(Arc::from(r#"{"nodes":[]}"#));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(MERGE_INTERVAL);
        loop {
            ticks.tick().await;
            let Ok(json) = serde_json::to_string(&snapshots.merged()) else {
                continue;
            };
            let changed = json.as_str() != tx.borrow().as_ref();
            if changed && tx.send(Arc::from(json)).is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router(rx, None)).await {
            eprintln!("cluster: web view server failed: {err}");
        }
    });
    Ok(local)
}
