//! `dht_cluster` (cargo feature `dht`): starts a local mainline DHT testnet and gossip nodes on
//! 127.0.0.1 that know only the DHT's bootstrap addresses, and shows that they find each other
//! and spread a broadcast. See `examples/src/dht_cluster.rs`.
//!
//! ```text
//! cargo run --release -p gossip-examples --features dht --bin dht_cluster -- --nodes 8 --json
//! ```

use std::process::ExitCode;

use clap::Parser;

// The module sits beside the library's modules but is compiled into this binary only, so the
// library (and `cargo test --workspace` without the feature) never needs mainline.
#[path = "../dht_cluster.rs"]
mod dht_cluster;

fn main() -> ExitCode {
    dht_cluster::main_with(dht_cluster::DhtClusterArgs::parse())
}
