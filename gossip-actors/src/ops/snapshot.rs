//! The JSON shapes of the web view: what one node reports, and a cluster of them.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use gossip_core::tree::FeedLinks;
use serde::{Deserialize, Serialize};

use crate::failure::PeerPhi;
use crate::messages::PeerSummary;
use crate::node::{NodeHandle, NodeStats};

/// What the web view draws: every node of a cluster (one for a single node's page), in the
/// order the source lists them. Served as `GET /snapshot` and pushed as each `data:` of
/// `GET /events`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterSnapshot {
    /// The nodes.
    pub nodes: Vec<NodeSnapshot>,
}

/// One node at one poll. Ids are 64 hex digits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeSnapshot {
    /// The node's id (also its feed id).
    pub node_id: String,
    /// Its UDP address.
    pub addr: String,
    /// Its HTTP address (metrics and its own page), if it serves one.
    pub http: Option<String>,
    /// When the snapshot was taken, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Discovery's view (the membership graph's out-edges of this node), in address order.
    pub view: Vec<ViewJson>,
    /// The failure detector's peers, ascending by id.
    pub peers: Vec<PeerJson>,
    /// Every followed feed's tree links, ascending by feed.
    pub feeds: Vec<FeedJson>,
    /// The most recent broadcast deliveries, oldest first.
    pub deliveries: Vec<DeliveryJson>,
    /// Totals and rates.
    pub counters: CountersJson,
}

/// A peer in discovery's view.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ViewJson {
    /// Its address.
    pub addr: String,
    /// Its node id, once known.
    pub node: Option<String>,
}

/// A peer as the failure detector sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerJson {
    /// Its node id.
    pub node: String,
    /// Live (not convicted).
    pub live: bool,
    /// Its phi now, `null` before enough heartbeats.
    pub phi: Option<f64>,
}

/// One followed feed's broadcast tree at this node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeedJson {
    /// The feed (its author's id).
    pub feed: String,
    /// The local head (0 before the first message).
    pub latest: u64,
    /// The highest sequence a replicating peer is known to hold (at least `latest`).
    pub best_known: u64,
    /// `best_known - latest`, in messages.
    pub lag: u64,
    /// The eager source (pushes the feed to this node), if any.
    pub source: Option<String>,
    /// Peers this node pushes the feed to (its eager children).
    pub eager: Vec<String>,
    /// Peers linked lazily (notes only), the source excepted.
    pub lazy: Vec<String>,
}

/// A broadcast delivered here.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryJson {
    /// Message id, 32 hex digits.
    pub id: String,
    /// Origin's node id.
    pub origin: String,
    /// Links travelled (0 at the origin).
    pub hop: u16,
    /// When it was seen by the poller, milliseconds since the Unix epoch (within one
    /// interval of the delivery).
    pub at_ms: u64,
}

/// Totals since start and current rates.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CountersJson {
    /// Datagrams handed to the kernel.
    pub datagrams_sent: u64,
    /// Datagrams received, accepted or not.
    pub datagrams_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Datagrams dropped, all reasons.
    pub dropped: u64,
    /// Broadcasts delivered (own included).
    pub broadcast_delivered: u64,
    /// Broadcast copies suppressed as duplicates.
    pub broadcast_duplicates: u64,
    /// Feed messages appended (own included).
    pub feed_appended: u64,
    /// Feed message copies received at or below their feed's tip.
    pub feed_duplicates: u64,
    /// Broadcast duplicates per broadcast delivered from elsewhere.
    pub rmr_broadcast: f64,
    /// Feed duplicates per feed message received and accepted.
    pub rmr_feed: f64,
    /// The AIMD update rate of the key/value state, updates per second.
    pub flow_rate_per_sec: f64,
}

impl CountersJson {
    fn of(stats: &NodeStats) -> CountersJson {
        let t = &stats.transport;
        let d = &stats.dissemination.core;
        let f = &stats.feeds.core;
        let dropped = t.drops.total()
            + t.send_refused_oversize
            + t.send_would_block
            + t.send_errors
            + t.recv_errors
            + t.injected_loss
            + t.unrouted
            + t.mailbox_full;
        let remote = d.delivered.saturating_sub(d.broadcasts);
        CountersJson {
            datagrams_sent: t.datagrams_sent,
            datagrams_received: t.datagrams_received,
            bytes_sent: t.bytes_sent,
            bytes_received: t.bytes_received,
            dropped,
            broadcast_delivered: d.delivered,
            broadcast_duplicates: d.duplicates_suppressed,
            feed_appended: stats.feeds.appended,
            feed_duplicates: f.duplicates,
            rmr_broadcast: ratio(d.duplicates_suppressed, remote),
            rmr_feed: ratio(f.duplicates, f.accepted),
            flow_rate_per_sec: f64::from(stats.state.rate_milli) / 1000.0,
        }
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl NodeSnapshot {
    pub(super) fn of(
        node: &NodeHandle,
        http: Option<SocketAddr>,
        stats: &NodeStats,
        view: &[PeerSummary],
        peers: &[PeerPhi],
        feeds: &[FeedLinks],
        deliveries: Vec<DeliveryJson>,
    ) -> NodeSnapshot {
        let hex = |ids: &[gossip_core::NodeId]| ids.iter().map(ToString::to_string).collect();
        NodeSnapshot {
            node_id: node.node_id().to_string(),
            addr: node.local_addr().to_string(),
            http: http.map(|a| a.to_string()),
            at_ms: unix_millis(),
            view: view
                .iter()
                .map(|p| ViewJson {
                    addr: p.addr.to_string(),
                    node: p.node_id.map(|id| id.to_string()),
                })
                .collect(),
            peers: peers
                .iter()
                .map(|p| PeerJson {
                    node: p.node.to_string(),
                    live: p.live,
                    phi: p.phi.filter(|phi| phi.is_finite()),
                })
                .collect(),
            feeds: feeds
                .iter()
                .map(|l| FeedJson {
                    feed: l.feed.to_string(),
                    latest: l.latest,
                    best_known: l.best_known,
                    lag: l.best_known.saturating_sub(l.latest),
                    source: l.source.map(|s| s.to_string()),
                    eager: hex(&l.eager),
                    lazy: hex(&l.lazy),
                })
                .collect(),
            deliveries,
            counters: CountersJson::of(stats),
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(super) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
