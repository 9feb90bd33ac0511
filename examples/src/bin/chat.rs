//! `chat`: node processes (re-executions of this binary) that each post to their own signed
//! feed and follow all the others; one is killed with SIGKILL and restarted on its redb file.
//! See [`gossip_examples::chat`].

use std::process::ExitCode;

use clap::Parser;
use gossip_examples::chat::{ChatCli, main_with};

fn main() -> ExitCode {
    main_with(ChatCli::parse())
}
