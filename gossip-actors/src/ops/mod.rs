//! Operations (feature `http`): Prometheus metrics and a live web view of a running node, on
//! an opt-in HTTP address.
//!
//! ```text
//!  NodeHandle --stats, known_peers, peer_phis, feed_links (every interval)--> poller
//!  NodeHandle --events (Delivered: recent deliveries with hops)------------->   |
//!                                                                               v
//!                       per-node Prometheus recorder  <--counters, gauges-- NodeSnapshot
//!                                  |                                            |
//!          GET /metrics (text format)                 GET /snapshot (JSON), GET /events (SSE)
//!                                  \___________ axum on --http ADDR ___________/
//!                                               GET / (page, script, style: in the binary)
//! ```
//!
//! # Design
//!
//! No protocol core or actor calls the metrics facade. An [`Ops`] task polls the node's
//! public queries every [`OpsConfig::interval`] (1000 ms): [`NodeHandle::stats`] (totals kept
//! by the actors), [`NodeHandle::known_peers`] (the partial view), [`NodeHandle::peer_phis`]
//! and [`NodeHandle::feed_links`]; it keeps the last [`OpsConfig::recent_deliveries`]
//! deliveries from the node's events. From each poll it builds a [`NodeSnapshot`] (what the
//! web view draws, pushed to browsers by server-sent events) and sets the metrics: totals with
//! `Counter::absolute`, current values with gauges. A scrape therefore lags the node by at
//! most one interval.
//!
//! **One recorder per node.** The `metrics` facade has one global recorder per process; a
//! process that runs several nodes (tests, the simulator) would mix their series. Each [`Ops`]
//! builds its own `PrometheusRecorder` and records into it with
//! `metrics::with_local_recorder`, and its `/metrics` renders only that recorder: one scrape
//! target per node, told apart by Prometheus's `instance` label, with no node label needed.
//! Nothing is installed globally, so an application keeps the global recorder for itself.
//! Series of a peer or feed that disappears (per-peer phi, per-feed lag) are removed after
//! [`OpsConfig::idle_timeout`] (60 s) without an update.
//!
//! # Metric families
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `gossip_datagrams_total` | counter | `direction` (sent, received), `packet_type` | datagrams handed to the kernel / authenticated on receipt |
//! | `gossip_bytes_total` | counter | `direction`, `packet_type` | bytes of those datagrams (label, body and tag) |
//! | `gossip_drops_total` | counter | `reason` | datagrams dropped: the codec's reasons (`unauthenticated`, `truncated`, `cipher_mismatch`, ...) and the transport's (`send_would_block`, `mailbox_full`, ...) |
//! | `gossip_deliveries_total` | counter | `protocol` (broadcast, feed) | broadcasts delivered (own included) / feed messages appended (own included) |
//! | `gossip_duplicates_total` | counter | `protocol` | payload copies received for something already delivered |
//! | `gossip_rmr` | gauge | `protocol` | running relative message redundancy at this node: duplicates / remote deliveries (the cluster-wide RMR, copies / (n − 1) − 1, is the same ratio summed over the nodes) |
//! | `gossip_peer_phi` | gauge | `peer` | the failure detector's phi per peer (dimensionless; 8 convicts by default) |
//! | `gossip_peer_live` | gauge | `peer` | 1 live, 0 convicted |
//! | `gossip_flow_rate_updates_per_second` | gauge | | the AIMD update rate of the key/value state |
//! | `gossip_view_size` | gauge | | peers in discovery's view (CYCLON's partial view, or the static table) |
//! | `gossip_feed_lag_messages` | gauge | `feed` | best-known sequence of a followed feed minus the local head |
//! | `gossip_feed_head` | gauge | `feed` | the local head of a followed feed |
//!
//! Peers and feeds are labelled by the first 8 hex digits of their id.

mod http;
mod snapshot;

pub use http::router;
pub use snapshot::{
    ClusterSnapshot, CountersJson, DeliveryJson, FeedJson, NodeSnapshot, PeerJson, ViewJson,
};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::watch;

use crate::dissemination::NodeEvent;
use crate::error::NodeError;
use crate::node::{NodeHandle, NodeStats};

/// How the operations task polls and keeps.
#[derive(Clone, Debug)]
pub struct OpsConfig {
    /// Time between two polls of the node: 1000 ms (the gossip interval; a scrape is at most
    /// this old). At least 10 ms.
    pub interval: Duration,
    /// Recent broadcast deliveries kept for the web view: 64 entries.
    pub recent_deliveries: usize,
    /// Per-peer and per-feed series not updated for this long are removed from `/metrics`:
    /// 60 s.
    pub idle_timeout: Duration,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            interval: Duration::from_millis(1000),
            recent_deliveries: 64,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The operations task of one node: polls it, keeps its metrics and its latest
/// [`NodeSnapshot`], and serves both over HTTP on request ([`serve`](Self::serve)). See the
/// module docs. Dropping it (or [`stop`](Self::stop)) ends the poller and the HTTP server.
pub struct Ops {
    snapshots: watch::Receiver<Option<Arc<NodeSnapshot>>>,
    page: watch::Receiver<Arc<str>>,
    metrics: PrometheusHandle,
    http: Arc<Mutex<Option<SocketAddr>>>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("http", &self.http_addr())
            .finish_non_exhaustive()
    }
}

impl Ops {
    /// Starts polling `node` every `config.interval` on the current actix arbiter (call it
    /// inside the actix system the node runs in). The first snapshot is taken at once. The
    /// poller ends when the node stops or this value is dropped.
    pub fn start(node: NodeHandle, config: OpsConfig) -> Ops {
        let recorder = PrometheusBuilder::new()
            .idle_timeout(MetricKindMask::GAUGE, Some(config.idle_timeout))
            .build_recorder();
        let metrics = recorder.handle();
        metrics::with_local_recorder(&recorder, describe);
        let (snapshot_tx, snapshots) = watch::channel(None);
        let (page_tx, page) = watch::channel(Arc::from(r#"{"nodes":[]}"#));
        let (stop, stopped) = watch::channel(false);
        let http = Arc::new(Mutex::new(None));
        let poller = Poller {
            node,
            config,
            recorder,
            metrics: metrics.clone(),
            http: Arc::clone(&http),
            recent: VecDeque::new(),
        };
        actix::spawn(poller.run(snapshot_tx, page_tx, stopped));
        Ops {
            snapshots,
            page,
            metrics,
            http,
            stop,
        }
    }

    /// Binds `addr` and serves `/metrics`, `/snapshot`, `/events` and the web view there
    /// (see [`router`]). Returns the bound address (port 0 picks a free one). Serve only on
    /// an address you trust: the page shows node ids, addresses and traffic.
    ///
    /// # Errors
    /// The OS error when `addr` cannot be bound; nothing is left running.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        if let Ok(mut http) = self.http.lock() {
            *http = Some(local);
        }
        let app = router(self.page.clone(), Some(self.metrics.clone()));
        let mut stopped = self.stop.subscribe();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %err, "ops HTTP server failed");
            }
        });
        Ok(local)
    }

    /// The HTTP address bound by [`serve`](Self::serve), if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.lock().ok().and_then(|http| *http)
    }

    /// The latest snapshots, as they are taken (`None` before the first).
    pub fn snapshots(&self) -> watch::Receiver<Option<Arc<NodeSnapshot>>> {
        self.snapshots.clone()
    }

    /// The node's Prometheus registry, for rendering `/metrics` elsewhere.
    pub fn metrics(&self) -> PrometheusHandle {
        self.metrics.clone()
    }

    /// Stops the poller and the HTTP server. Calling it again is harmless.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Ops {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Poller {
    node: NodeHandle,
    config: OpsConfig,
    recorder: PrometheusRecorder,
    metrics: PrometheusHandle,
    http: Arc<Mutex<Option<SocketAddr>>>,
    recent: VecDeque<DeliveryJson>,
}

impl Poller {
    async fn run(
        mut self,
        snapshots: watch::Sender<Option<Arc<NodeSnapshot>>>,
        page: watch::Sender<Arc<str>>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut events = self.node.subscribe();
        let mut ticks = tokio::time::interval(self.config.interval.max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            loop {
                match events.try_recv() {
                    Ok(NodeEvent::Delivered(d)) => {
                        if self.recent.len() >= self.config.recent_deliveries {
                            self.recent.pop_front();
                        }
                        if self.config.recent_deliveries > 0 {
                            self.recent.push_back(DeliveryJson {
                                id: d.id.to_string(),
                                origin: d.origin.to_string(),
                                hop: d.hop,
                                at_ms: snapshot::unix_millis(),
                            });
                        }
                    }
                    Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return,
                }
            }
            let http = self.http.lock().ok().and_then(|http| *http);
            let (snapshot, stats) = match self.poll(http).await {
                Ok(polled) => polled,
                Err(NodeError::Stopped) => return,
                Err(err) => {
                    tracing::debug!(error = %err, "ops poll failed");
                    continue;
                }
            };
            metrics::with_local_recorder(&self.recorder, || record(&stats, &snapshot));
            self.metrics.run_upkeep();
            let cluster = ClusterSnapshot {
                nodes: vec![snapshot.clone()],
            };
            if let Ok(json) = serde_json::to_string(&cluster) {
                page.send_replace(Arc::from(json));
            }
            snapshots.send_replace(Some(Arc::new(snapshot)));
        }
    }

    async fn poll(&self, http: Option<SocketAddr>) -> Result<(NodeSnapshot, NodeStats), NodeError> {
        let stats = self.node.stats().await?;
        let view = self.node.known_peers().await?;
        let peers = self.node.peer_phis().await?;
        let feeds = self.node.feed_links().await?;
        let snapshot = NodeSnapshot::of(
            &self.node,
            http,
            &stats,
            &view,
            &peers,
            &feeds,
            self.recent.iter().cloned().collect(),
        );
        Ok((snapshot, stats))
    }
}

/// Names and help texts of every family (units in the text, as Prometheus has no unit field
/// in the text format).
fn describe() {
    describe_counter!(
        "gossip_datagrams_total",
        "Datagrams sent (handed to the kernel) and received (authenticated), by packet type."
    );
    describe_counter!(
        "gossip_bytes_total",
        "Bytes of the datagrams sent and received (label, body and tag), by packet type."
    );
    describe_counter!(
        "gossip_drops_total",
        "Datagrams dropped, by reason (codec and transport reasons)."
    );
    describe_counter!(
        "gossip_deliveries_total",
        "Broadcasts delivered and feed messages appended (own ones included)."
    );
    describe_counter!(
        "gossip_duplicates_total",
        "Payload copies received for something already delivered."
    );
    describe_gauge!(
        "gossip_rmr",
        "Running relative message redundancy at this node: duplicates per remote delivery."
    );
    describe_gauge!(
        "gossip_peer_phi",
        "Phi-accrual suspicion of each peer (dimensionless; convicted above the threshold, 8)."
    );
    describe_gauge!("gossip_peer_live", "1 if the peer is live, 0 if convicted.");
    describe_gauge!(
        "gossip_flow_rate_updates_per_second",
        "AIMD maximum update rate of the key/value state, in updates per second."
    );
    describe_gauge!(
        "gossip_view_size",
        "Peers in discovery's view (CYCLON partial view or static table), in entries."
    );
    describe_gauge!(
        "gossip_feed_lag_messages",
        "Best-known sequence of a followed feed minus the local head, in messages."
    );
    describe_gauge!(
        "gossip_feed_head",
        "Latest sequence of a followed feed in the local log."
    );
}

/// Sets every family from one poll. Runs inside `with_local_recorder`.
fn record(stats: &NodeStats, snapshot: &NodeSnapshot) {
    let transport = &stats.transport;
    for (direction, datagrams, bytes) in [
        (
            "sent",
            &transport.sent_by_type,
            &transport.sent_bytes_by_type,
        ),
        (
            "received",
            &transport.received_by_type,
            &transport.received_bytes_by_type,
        ),
    ] {
        for ((kind, count), (_, byte_count)) in datagrams.iter().zip(bytes.iter()) {
            let labels = [("direction", direction), ("packet_type", kind.name())];
            counter!("gossip_datagrams_total", &labels).absolute(count);
            counter!("gossip_bytes_total", &labels).absolute(byte_count);
        }
    }
    for (reason, count) in transport.drops.iter() {
        counter!("gossip_drops_total", "reason" => reason.name()).absolute(count);
    }
    for (reason, count) in [
        ("send_oversize", transport.send_refused_oversize),
        ("send_would_block", transport.send_would_block),
        ("send_error", transport.send_errors),
        ("recv_error", transport.recv_errors),
        ("injected_loss", transport.injected_loss),
        ("unrouted", transport.unrouted),
        ("mailbox_full", transport.mailbox_full),
    ] {
        counter!("gossip_drops_total", "reason" => reason).absolute(count);
    }
    let counters = &snapshot.counters;
    counter!("gossip_deliveries_total", "protocol" => "broadcast")
        .absolute(counters.broadcast_delivered);
    counter!("gossip_deliveries_total", "protocol" => "feed").absolute(counters.feed_appended);
    counter!("gossip_duplicates_total", "protocol" => "broadcast")
        .absolute(counters.broadcast_duplicates);
    counter!("gossip_duplicates_total", "protocol" => "feed").absolute(counters.feed_duplicates);
    gauge!("gossip_rmr", "protocol" => "broadcast").set(counters.rmr_broadcast);
    gauge!("gossip_rmr", "protocol" => "feed").set(counters.rmr_feed);
    for peer in &snapshot.peers {
        let label = short(&peer.node);
        if let Some(phi) = peer.phi {
            gauge!("gossip_peer_phi", "peer" => label.clone()).set(phi);
        }
        gauge!("gossip_peer_live", "peer" => label).set(if peer.live { 1.0 } else { 0.0 });
    }
    gauge!("gossip_flow_rate_updates_per_second").set(counters.flow_rate_per_sec);
    gauge!("gossip_view_size").set(snapshot.view.len() as f64);
    for feed in &snapshot.feeds {
        let label = short(&feed.feed);
        gauge!("gossip_feed_lag_messages", "feed" => label.clone()).set(feed.lag as f64);
        gauge!("gossip_feed_head", "feed" => label).set(feed.latest as f64);
    }
}

/// The first 8 hex digits of an id.
fn short(id: &str) -> String {
    id.chars().take(8).collect()
}
