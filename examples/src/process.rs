//! What the multi-process examples (`cluster`, `chat`, `multihost`) share about driving
//! child `gossip-node` processes over stdin/stdout, and the scratch folder their tests and
//! runs use.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::time::timeout;

/// Writes `line` and a newline to a child's stdin and flushes, within `limit`.
///
/// # Errors
/// A text naming what went wrong: the stdin was closed already (`None`), the write failed
/// (the child exited), or it did not finish within `limit` (the child stopped reading).
pub async fn send_line(
    stdin: &mut Option<ChildStdin>,
    line: &str,
    limit: Duration,
) -> Result<(), String> {
    let stdin = stdin.as_mut().ok_or("stdin already closed")?;
    let write = async {
        stdin.write_all(line.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await
    };
    match timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(format!("write failed: {err}")),
        Err(_) => Err("write timed out".into()),
    }
}

/// Why a run could not go on at all (the examples exit with code 2): a child that cannot be
/// started, a folder that cannot be made, a child that died before it was ready.
#[derive(Debug)]
pub struct SetupError(pub String);

impl<T: std::fmt::Display> From<T> for SetupError {
    fn from(value: T) -> Self {
        SetupError(value.to_string())
    }
}

/// A fresh folder under the system's temporary directory, removed with its contents on drop
/// (a failure to remove it is printed to stderr).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<temp>/gossip-<tag>-<pid>-<nanos>-<attempt>`, trying 64 names.
    ///
    /// # Errors
    /// The error of `create_dir` other than "already exists", or the last "already exists"
    /// when all 64 names are taken.
    pub fn create(tag: &str) -> io::Result<TempDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let base = std::env::temp_dir();
        let mut last = None;
        for attempt in 0..64u32 {
            let path = base.join(format!(
                "gossip-{tag}-{}-{nanos:09}-{attempt}",
                std::process::id()
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temporary folder name")))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            eprintln!("cannot remove {}: {err}", self.0.display());
        }
    }
}
