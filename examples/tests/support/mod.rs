//! What the example tests that run the binaries as child processes share: a bounded wait for
//! a child to exit. Each includes it with `mod support;`; their scratch folder is
//! `gossip_examples::process::TempDir`.

use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Waits for `child` to exit within `limit` (polling every 20 ms), killing it otherwise;
/// `None` if it had to be killed.
pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
