//! Runnable programs of the gossip framework, as library code the binaries call:
//!
//! - [`node`]: one node driven over stdin/stdout with JSON lines (`gossip-node`), optionally
//!   on a redb file and an identity file so that it survives a restart;
//! - [`cluster`]: a local multi-process cluster that measures delivery and latency
//!   (`cluster`), whose children run [`node::run_node`] by re-executing the `cluster` binary;
//! - [`cluster_web`]: `cluster --web ADDR`, one live web view merging every child's snapshot;
//! - [`chat`]: node processes that each post to their own feed and follow every other one,
//!   with one node killed (SIGKILL) and restarted on its files (`chat`);
//! - [`multihost`]: one `gossip-node` per host or network namespace, checked end to end for
//!   broadcasts, key/value state and feeds (`multihost`, run by `scripts/multihost.sh`);
//! - [`process`]: driving child `gossip-node` processes (a bounded stdin write, the setup
//!   error) and a scratch folder removed on drop;
//! - [`config`]: the `gossip-node` configuration file (`--config`, `--print-default-config`);

pub mod chat;
pub mod cluster;
pub mod cluster_web;
pub mod config;
pub mod multihost;
pub mod node;
pub mod process;
