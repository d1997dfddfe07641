//! Server output logs: `logs/NAME.out` and `logs/NAME.err`, opened by the daemon in append mode
//! and handed to the child by the kernel, then rotated by size.
//!
//! Rotation is copy-and-truncate (logrotate's `copytruncate`): the server keeps its file
//! descriptor, and `O_APPEND` makes its next write land at the new end. It is driven by inotify
//! (`IN_MODIFY` with `IN_ONESHOT`, re-armed at most once a second), so an idle server costs no
//! wake-ups; lines written between the copy and the truncation can be lost, a documented limit.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{Inotify, WatchDescriptor, WatchMask};
use tokio::sync::mpsc;

use crate::spec::{LogSpec, ServerName};

/// The log files of servers under `data_dir/logs`.
#[derive(Debug, Clone)]
pub struct LogDir {
    dir: PathBuf,
}

impl LogDir {
    /// Uses (and creates, mode 0700) `data_dir/logs`.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        Ok(Self {
            dir: crate::os::private_dir(data_dir, "logs")?,
        })
    }

    /// `logs/NAME.out`.
    #[must_use]
    pub fn stdout(&self, server: &ServerName) -> PathBuf {
        self.dir.join(format!("{server}.out"))
    }

    /// `logs/NAME.err`.
    #[must_use]
    pub fn stderr(&self, server: &ServerName) -> PathBuf {
        self.dir.join(format!("{server}.err"))
    }

    /// Opens both files for a new process of `server` (append, create 0640).
    pub(crate) fn open_for_child(&self, server: &ServerName) -> io::Result<(File, File)> {
        Ok((append(&self.stdout(server))?, append(&self.stderr(server))?))
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Rotates `path` if it is larger than `spec.max_size`: `path.N-1` → `path.N`, …, copy of
/// `path` → `path.1`, then `path` truncated to 0. Returns whether it rotated.
///
/// # Errors
/// Any I/O error; the live file is then not truncated.
pub fn rotate_if_needed(path: &Path, spec: &LogSpec) -> io::Result<bool> {
    if spec.max_size == 0 {
        return Ok(false);
    }
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= spec.max_size {
        return Ok(false);
    }
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    if spec.keep == 0 {
        File::options().write(true).open(path)?.set_len(0)?;
        return Ok(true);
    }
    for n in (1..spec.keep).rev() {
        match std::fs::rename(numbered(n), numbered(n + 1)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    std::fs::copy(path, numbered(1))?;
    File::options().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// Watches log files and rotates them when they outgrow their limit.
#[derive(Debug, Clone)]
pub(crate) struct Rotator {
    tx: mpsc::UnboundedSender<(PathBuf, LogSpec)>,
}

impl Rotator {
    /// Starts the rotation task on the current runtime.
    pub(crate) fn start() -> io::Result<Self> {
        let inotify = Inotify::init()?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(inotify, rx));
        Ok(Self { tx })
    }

    /// Watches `path` with `spec` (again: a later call replaces the spec).
    pub(crate) fn watch(&self, path: PathBuf, spec: LogSpec) {
        if spec.max_size > 0 {
            let _ = self.tx.send((path, spec));
        }
    }
}

const REARM_AFTER: Duration = Duration::from_secs(1);

async fn run(inotify: Inotify, mut rx: mpsc::UnboundedReceiver<(PathBuf, LogSpec)>) {
    let mut watches = inotify.watches();
    let Ok(mut events) = inotify.into_event_stream([0u8; 4096]) else {
        return;
    };
    let mut files: HashMap<WatchDescriptor, (PathBuf, LogSpec)> = HashMap::new();
    let (rearm_tx, mut rearm_rx) = mpsc::unbounded_channel::<(PathBuf, LogSpec)>();
    loop {
        let (path, spec) = tokio::select! {
            Some(entry) = rx.recv() => entry,
            Some(entry) = rearm_rx.recv() => entry,
            ev = events.next() => match ev {
                Some(Ok(ev)) => {
                    // one-shot: the watch is gone; re-arm after a pause so a chatty server
                    // costs at most one size check a second
                    if let Some(entry) = files.remove(&ev.wd) {
                        let tx = rearm_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(REARM_AFTER).await;
                            let _ = tx.send(entry);
                        });
                    }
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "inotify failed; log rotation stops");
                    return;
                }
                None => return,
            },
            else => return,
        };
        // the copy of a large log is blocking work: keep it off the runtime's thread
        let job = {
            let (path, spec) = (path.clone(), spec.clone());
            tokio::task::spawn_blocking(move || {
                append(&path).and_then(|_| rotate_if_needed(&path, &spec))
            })
        };
        if let Ok(Err(e)) = job.await {
            tracing::warn!(path = %path.display(), error = %e, "log rotation failed");
        }
        match watches.add(&path, WatchMask::MODIFY | WatchMask::ONESHOT) {
            Ok(wd) => {
                files.insert(wd, (path, spec));
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot watch log file for rotation");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_shifts_numbered_copies_and_truncates_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a.out");
        let spec = LogSpec {
            max_size: 4,
            keep: 2,
        };
        let mut live = append(&p).unwrap();
        use std::io::Write;
        live.write_all(b"first").unwrap();
        assert!(rotate_if_needed(&p, &spec).unwrap());
        live.write_all(b"second").unwrap(); // the writer's fd keeps working, at the new end
        assert!(rotate_if_needed(&p, &spec).unwrap());
        live.write_all(b"third").unwrap();
        assert!(rotate_if_needed(&p, &spec).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("a.out.1")).unwrap(),
            "third"
        );
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("a.out.2")).unwrap(),
            "second"
        );
        assert!(!tmp.path().join("a.out.3").exists());
        assert!(!rotate_if_needed(&p, &spec).unwrap());
    }
}
