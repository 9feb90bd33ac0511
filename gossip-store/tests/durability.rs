//! Crash safety of `RedbStore`, on the public API only: what an append acknowledged is on
//! disk, whether the store is dropped without any close or the process is killed mid-write,
//! and the log read back validates end to end (every signature, sequence and previous hash).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gossip_core::NodeId;
use gossip_core::feed::{FeedId, FeedMessage, Feeds, FeedsConfig};
use gossip_crypto::Identity;
use gossip_store::{FeedLog, PeerClocks, RedbStore, Store};

/// A fresh directory under the system temp dir, removed (with its content) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "gossip-store-durability-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn identity(n: u8) -> Identity {
    Identity::from_bytes(&[n; 32])
}

/// Message `sequence` of `author`'s feed after `previous`.
fn next(author: &Identity, previous: Option<&FeedMessage>) -> FeedMessage {
    let sequence = previous.map_or(1, |p| p.sequence + 1);
    let content =
        Bytes::from(format!("message {sequence} of a feed").repeat(sequence as usize % 5));
    FeedMessage::create(author, previous, 1_000 * sequence, content, 1024).unwrap()
}

/// Reads every feed of `store` back from sequence 1 and runs it through the validator as a
/// fresh replica would: each message must be the next one of its feed, validly signed and
/// chained to the one before. Returns the number of messages checked per feed.
fn validate_end_to_end(store: &RedbStore) -> Vec<(FeedId, u64)> {
    let mut feeds = Feeds::new(FeedsConfig::default()).unwrap();
    let mut checked = Vec::new();
    for (feed, latest) in store.feeds().unwrap() {
        feeds.follow(feed, None).unwrap();
        let mut count = 0;
        let mut from = 1;
        loop {
            let page = store.messages(feed, from, 64).unwrap();
            let Some(last) = page.last() else { break };
            from = last.sequence + 1;
            for message in &page {
                let id = feeds.validate(feed, message, None).unwrap();
                assert_eq!(id, message.id());
                feeds.handle_appended(message).unwrap();
                count += 1;
            }
        }
        assert_eq!(
            count, latest,
            "feed {feed}: messages 1..={latest} without gaps"
        );
        assert_eq!(feeds.latest(feed), store.latest(feed).unwrap());
        checked.push((feed, count));
    }
    assert_eq!(feeds.stats().rejected(), 0);
    checked
}

#[test]
fn appended_messages_survive_drop_and_reopen_and_validate_end_to_end() {
    let dir = TempDir::new("reopen");
    let path = dir.path().join("node.redb");
    let authors = [identity(1), identity(2), identity(3)];
    let lengths = [40u64, 25, 1];
    let mut written: Vec<Vec<FeedMessage>> = vec![Vec::new(); authors.len()];
    {
        let mut store = RedbStore::open(&path).unwrap();
        // Interleaved appends, as replication of several feeds produces them.
        for round in 0..40 {
            for (i, author) in authors.iter().enumerate() {
                if round < lengths[i] {
                    let message = next(author, written[i].last());
                    store.append(&message).unwrap();
                    written[i].push(message);
                }
            }
        }
        store.put("kv", b"load", b"0.7").unwrap();
        store.put_clock(NodeId([9; 32]), b"clock bytes").unwrap();
        // Dropped here with no close, flush or sync call of any kind.
    }

    let mut store = RedbStore::open(&path).unwrap();
    for messages in &written {
        let feed = messages[0].author;
        for message in messages {
            assert_eq!(
                store.message(feed, message.sequence).unwrap().as_ref(),
                Some(message)
            );
        }
        let last = messages.last().unwrap();
        assert_eq!(
            store.latest(feed).unwrap(),
            Some((last.sequence, last.id()))
        );
    }
    assert_eq!(store.get("kv", b"load").unwrap(), Some(b"0.7".to_vec()));
    assert_eq!(
        store.clock(NodeId([9; 32])).unwrap(),
        Some(b"clock bytes".to_vec())
    );
    let mut checked = validate_end_to_end(&store);
    checked.sort();
    let mut expected: Vec<(FeedId, u64)> = written
        .iter()
        .map(|m| (m[0].author, m.len() as u64))
        .collect();
    expected.sort();
    assert_eq!(checked, expected);

    // The reopened log goes on from its head.
    let message = next(&authors[2], written[2].last());
    store.append(&message).unwrap();
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store.latest(message.author).unwrap(),
        Some((2, message.id()))
    );
}

/// Environment variable that turns [`crash_child_process`] into the writer of
/// [`an_append_acknowledged_before_a_kill_is_never_lost`]; its value is the database path.
const CHILD_ENV: &str = "GOSSIP_STORE_CRASH_CHILD";
/// Appends the child makes at most before it waits to be killed.
const CHILD_MAX_APPENDS: u64 = 2_000;
/// Acknowledgements the parent waits for before it kills the child.
const ACKS_BEFORE_KILL: u64 = 25;

/// Not a test on its own: with [`CHILD_ENV`] set, it appends to a feed as fast as it can and
/// prints `appended N` after each append returns, until its parent kills it (SIGKILL: no
/// destructor, no close, no flush). Without the variable it does nothing.
#[test]
fn crash_child_process() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut store = RedbStore::open(PathBuf::from(path)).unwrap();
    let author = identity(7);
    let mut head: Option<FeedMessage> = None;
    let mut stdout = std::io::stdout();
    for _ in 0..CHILD_MAX_APPENDS {
        let message = next(&author, head.as_ref());
        store.append(&message).unwrap();
        // Acknowledged only now that the append has returned.
        writeln!(stdout, "appended {}", message.sequence).unwrap();
        stdout.flush().unwrap();
        head = Some(message);
    }
    // Bounded wait for the kill; if it never comes the parent fails on its own deadline.
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn an_append_acknowledged_before_a_kill_is_never_lost() {
    let dir = TempDir::new("kill");
    let path = dir.path().join("node.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acknowledged = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(sequence) = line.strip_prefix("appended ") {
            acknowledged = sequence.trim().parse().unwrap();
            if acknowledged >= ACKS_BEFORE_KILL {
                break;
            }
        }
        assert!(Instant::now() < deadline, "child too slow");
    }
    // Killed while it is still appending: somewhere inside or between appends.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(acknowledged >= ACKS_BEFORE_KILL, "child stopped early");

    let store = RedbStore::open(&path).unwrap();
    let feed = FeedId::of(&identity(7));
    let (latest, _) = store
        .latest(feed)
        .unwrap()
        .expect("acknowledged appends kept");
    assert!(
        latest >= acknowledged,
        "acknowledged {acknowledged}, found only {latest}"
    );
    // Whatever was in flight is either wholly there or absent: the log validates.
    assert_eq!(validate_end_to_end(&store), vec![(feed, latest)]);
}
