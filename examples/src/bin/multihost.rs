//! `multihost`: drives one `gossip-node` per host (optionally per Linux network namespace)
//! and checks that broadcasts, key/value state and feeds all complete; run by
//! `scripts/multihost.sh`. See [`gossip_examples::multihost`].

use std::process::ExitCode;

use clap::Parser;
use gossip_examples::multihost::{MultihostArgs, main_with};

fn main() -> ExitCode {
    main_with(MultihostArgs::parse())
}
