//! Runnable programs of the gossip framework, as library code the binaries call:
//!
//! - [`node`]: one node driven over stdin/stdout with JSON lines (`gossip-node`);
//! - [`cluster`]: a local multi-process cluster that measures delivery and latency
//!   (`cluster`), whose children run [`node::run_node`] by re-executing the `cluster` binary.

pub mod cluster;
pub mod node;
