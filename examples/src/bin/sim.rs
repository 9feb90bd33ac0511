//! `sim`: simulates N real gossip nodes on a virtual network from one seed and reports
//! reliability, RMR, LDH, delivery times, traffic and detection (table, JSON, SVG chart).
//!
//! ```text
//! cargo run --release -p gossip-examples --bin sim -- --nodes 1000 --mode tree --scenario single --json
//! ```

use std::process::ExitCode;

use clap::Parser;

#[path = "../sim/mod.rs"]
mod sim;

fn main() -> ExitCode {
    sim::main_with(sim::SimCli::parse())
}
