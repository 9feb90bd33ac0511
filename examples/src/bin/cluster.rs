//! `cluster`: starts a local gossip cluster of child processes (re-executions of this binary),
//! broadcasts messages through it and reports delivery, latency and traffic.
//! See [`gossip_examples::cluster`].

use std::process::ExitCode;

use clap::Parser;
use gossip_examples::cluster::{ClusterCli, main_with};

fn main() -> ExitCode {
    main_with(ClusterCli::parse())
}
