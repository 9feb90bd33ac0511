//! `gossip-node`: one gossip node, driven by commands on stdin, reporting JSON lines on stdout.
//! See [`gossip_examples::node`] for the protocol.

use std::process::ExitCode;

use clap::Parser;
use gossip_examples::node::{NodeArgs, init_logging, run_node};

#[actix::main]
async fn main() -> ExitCode {
    let args = NodeArgs::parse();
    init_logging();
    let result = run_node(args).await;
    actix::System::current().stop();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gossip-node: {err}");
            ExitCode::FAILURE
        }
    }
}
