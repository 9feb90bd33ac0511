//! `gossip-node`: one gossip node, driven by commands on stdin, reporting JSON lines on stdout.
//! See [`gossip_examples::node`] for the protocol and [`gossip_examples::config`] for the
//! configuration file.

use std::process::ExitCode;

use gossip_examples::node::{NodeArgs, init_logging, print_default_config, run_node};

#[actix::main]
async fn main() -> ExitCode {
    let args = NodeArgs::parse_args();
    if args.print_default_config {
        return print_default_config();
    }
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
