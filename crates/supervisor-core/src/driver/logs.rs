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
    /// Uses (and creates, mode 0700) `data_dir/logs`, which must be owned by the daemon's user
    /// and writable by no one else ([`crate::os::check_private_dir`]; never changed).
    ///
    /// # Errors
    /// When the directory cannot be created, or is not private (`PermissionDenied`).
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

/// Append, create 0640, never through a link planted at `path` (it would hand a root-owned
/// file to the server's output, then to rotation's truncation).
fn append(path: &Path) -> io::Result<File> {
    crate::os::open_append_nofollow(path, 0o640)
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
    let len = match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= spec.max_size {
        return Ok(false);
    }
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    if spec.keep == 0 {
        crate::os::open_write_nofollow(path)?.set_len(0)?;
        return Ok(true);
    }
    for n in (1..spec.keep).rev() {
        match std::fs::rename(numbered(n), numbered(n + 1)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    copy_nofollow(path, &numbered(1), len)?;
    crate::os::open_write_nofollow(path)?.set_len(0)?;
    Ok(true)
}

/// Copies the first `len` bytes of `from` to a new `to` (0640), following no link at either
/// end: a stale `to` (or a link planted there) is unlinked first, then `to` is created with
/// `O_EXCL`. `len` bounds the copy, so a server that keeps writing cannot make it endless.
fn copy_nofollow(from: &Path, to: &Path, len: u64) -> io::Result<()> {
    use std::io::Read;
    let src = crate::os::open_read_nofollow(from)?;
    match std::fs::remove_file(to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o640)
        .open(to)?;
    io::copy(&mut src.take(len), &mut dst)?;
    Ok(())
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

    #[test]
    fn a_link_planted_at_a_server_log_is_refused_and_its_target_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = LogDir::open(tmp.path()).unwrap();
        let name = ServerName::new("web").unwrap();
        let target = tmp.path().join("precious");
        std::fs::write(&target, b"precious").unwrap();
        for path in [logs.stdout(&name), logs.stderr(&name)] {
            std::os::unix::fs::symlink(&target, &path).unwrap();
            assert!(logs.open_for_child(&name).is_err(), "{}", path.display());
            std::fs::remove_file(&path).unwrap();
        }
        let spec = LogSpec {
            max_size: 1,
            keep: 0,
        };
        std::fs::remove_file(logs.stdout(&name)).unwrap();
        std::os::unix::fs::symlink(&target, logs.stdout(&name)).unwrap();
        assert!(rotate_if_needed(&logs.stdout(&name), &spec).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn rotation_replaces_a_link_planted_at_a_numbered_copy_without_writing_through() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a.out");
        let target = tmp.path().join("precious");
        std::fs::write(&target, b"precious").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("a.out.1")).unwrap();
        std::fs::write(&p, b"output").unwrap();
        let spec = LogSpec {
            max_size: 1,
            keep: 1,
        };
        assert!(rotate_if_needed(&p, &spec).unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert_eq!(
            std::fs::read(tmp.path().join("a.out.1")).unwrap(),
            b"output"
        );
    }

    #[test]
    fn a_logs_directory_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("logs")).unwrap();
        std::fs::set_permissions(tmp.path().join("logs"), PermissionsExt::from_mode(0o777))
            .unwrap();
        assert!(LogDir::open(tmp.path()).is_err());
    }
}
