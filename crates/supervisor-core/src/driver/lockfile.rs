//! Lock files: one per started server, so a restarted daemon knows what runs (WebLogic
//! `CrashRecoveryEnabled`).
//!
//! A lock file holds the PID, process group, start time, boot id and the per-start token of the
//! server's process, and whether it is meant to run. It is written atomically (temporary file,
//! fsync, rename, fsync of the directory), so a crash leaves the old or the new version. On
//! recovery a PID is trusted only if it is alive and its start time, process group, boot id and
//! `NM_SERVER_TOKEN` all match: PID reuse never makes nm adopt or signal a stranger (DESIGN §4.2).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::process::{self, PidFd};
use crate::core::{Boot, DownCause, LockFile, Pid, Process, StopMarker};
pub use crate::os::write_atomic;
use crate::os::{STATE_FILE_LIMIT, read_limited, remove_durably};
use crate::spec::ServerName;

/// The lock file's format version.
const VERSION: u32 = 1;

/// The content of `servers/NAME.lock`.
///
/// Unknown fields are ignored, so a field added later (with a default) keeps `version` 1 and an
/// older daemon can still read the file; a change that older daemons must not misread bumps
/// `version`, which they then treat as untrusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Format version (1).
    pub version: u32,
    /// The server's name.
    pub server: String,
    /// The PID of its session leader; 0 in the record written before a server's first start.
    pub pid: Pid,
    /// Its process group (the same as `pid`: each server leads its own session).
    pub pgid: Pid,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// `/proc/sys/kernel/random/boot_id` when it was started.
    pub boot_id: String,
    /// The random token it got as `NM_SERVER_TOKEN` (empty before the first start).
    pub token: String,
    /// The token reserved for the server's *next* start, durable before that start happens: if
    /// the daemon dies after a spawn but before the spawn's own record is written, recovery
    /// finds the process by this token instead of starting a second copy — and no restart waits
    /// for a disk write.
    #[serde(default)]
    pub next_token: String,
    /// Whether it should run if the daemon dies now: false once an operator stopped it or its
    /// restarts gave up.
    pub meant_to_run: bool,
    /// Restarts by nm since the last operator start.
    pub restart_count: u32,
    /// When it was started, for people (RFC 3339).
    pub started_at: String,
    /// Restarts counted in its current restart window, as milliseconds since the Unix epoch
    /// (the most recent [`MAX_RESTART_HISTORY`]), so the budget survives a daemon restart.
    #[serde(default)]
    pub restarts: Vec<u64>,
}

/// The content of `servers/NAME.stopped`: why the server is down on purpose, when, and in which
/// boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRecord {
    /// Format version (1).
    pub version: u32,
    /// The boot it was recorded in (the kernel's boot id; in tests, with `NM_TEST_BOOT_ID`).
    pub boot_id: String,
    /// When, for people (RFC 3339).
    pub at: String,
    /// Why: `"cause": "operator"`, or `"cause": "exited", "code": 0`.
    #[serde(flatten)]
    pub cause: DownCause,
}

/// How many restart instants a lock file keeps: with a `restart_max` above it, a daemon restart
/// forgets the oldest restarts of the window (a budget that large is not about a few restarts).
pub const MAX_RESTART_HISTORY: usize = 64;

/// Where the lock files live: `DATA_DIR/servers`.
#[derive(Debug, Clone)]
pub struct LockDir {
    dir: PathBuf,
}

impl LockDir {
    /// Uses (and creates, mode 0700) `data_dir/servers`, which must be owned by the daemon's user
    /// and writable by no one else ([`crate::os::check_private_dir`]; never changed).
    ///
    /// # Errors
    /// When the directory cannot be created, or is not private (`PermissionDenied`).
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        Ok(Self {
            dir: crate::os::private_dir(data_dir, "servers")?,
        })
    }

    /// The lock file of `server`.
    #[must_use]
    pub fn path(&self, server: &ServerName) -> PathBuf {
        self.dir.join(format!("{server}.lock"))
    }

    /// Writes `record` atomically.
    ///
    /// # Errors
    /// Any I/O error; the previous version of the file is then still in place.
    pub fn write(&self, record: &LockRecord) -> io::Result<()> {
        let name = ServerName::new(record.server.as_str())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut json = serde_json::to_vec(record).map_err(io::Error::other)?;
        json.push(b'\n');
        write_atomic(&self.path(&name), &json)
    }

    /// Removes the lock file of `server` (and makes the removal durable). A missing file is fine.
    ///
    /// # Errors
    /// Any other I/O error.
    pub fn remove(&self, server: &ServerName) -> io::Result<()> {
        remove_durably(&self.path(server))
    }

    /// The stop marker of `server`: `servers/NAME.stopped`, present while a stop on purpose
    /// stands (an operator's, or an exit with a success code): within its boot, and at a
    /// takeover, such a server stays down whatever `auto_start` says.
    #[must_use]
    pub fn stop_marker(&self, server: &ServerName) -> PathBuf {
        self.dir.join(format!("{server}.stopped"))
    }

    /// Records that `server` is down on purpose (atomically, durably).
    ///
    /// # Errors
    /// Any I/O error; the marker is then as it was.
    pub fn mark_stopped(&self, server: &ServerName, record: &StopRecord) -> io::Result<()> {
        let mut json = serde_json::to_vec(record).map_err(io::Error::other)?;
        json.push(b'\n');
        write_atomic(&self.stop_marker(server), &json)
    }

    /// Reads the stop marker of `server`, telling a marker of `boot` (the boot stop markers are
    /// kept within) from any other. A marker whose content is not a [`StopRecord`] (one written
    /// by an older nm, or damaged) is an operator's stop of no known boot: a daemon start drops
    /// it, as before, and a takeover keeps it. A marker that cannot be read at all is taken as a
    /// stop of this boot: the server stays down.
    #[must_use]
    pub fn read_stop_marker(&self, server: &ServerName, boot: &str) -> StopMarker {
        match read_limited(&self.stop_marker(server), STATE_FILE_LIMIT) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => StopMarker::Absent,
            Ok(bytes) => match serde_json::from_slice::<StopRecord>(&bytes) {
                Ok(r) => StopMarker::Present {
                    cause: r.cause,
                    at: Some(r.at),
                    boot: if r.boot_id == boot {
                        Boot::This
                    } else {
                        Boot::Other
                    },
                },
                Err(_) => StopMarker::unknown(),
            },
            // a marker that is there but cannot be read (EACCES, EIO): the stop may well be of
            // this boot, so the server stays down and the file stays (DESIGN §4.3)
            Err(_) => StopMarker::Present {
                cause: DownCause::Operator,
                at: None,
                boot: Boot::This,
            },
        }
    }

    /// Removes the stop marker of `server`. A missing marker is fine.
    ///
    /// # Errors
    /// Any other I/O error.
    pub fn clear_stopped(&self, server: &ServerName) -> io::Result<()> {
        remove_durably(&self.stop_marker(server))
    }

    /// Names of servers that have a lock file (for reporting locks of servers no longer
    /// configured).
    pub fn names(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .into_string()
                    .ok()?
                    .strip_suffix(".lock")
                    .map(str::to_owned)
            })
            .collect();
        v.sort();
        v
    }

    /// Crash recovery's reading of `server`'s lock file and of the process it names (the
    /// identity check, docs/design.md §6). Reads only: what to make of it is
    /// [`decide`](crate::core::decide)'s. An unreadable lock file is reported as
    /// [`LockFile::Unreadable`] at every daemon start until an operator starts or stops the
    /// server (which replaces or removes it).
    pub fn inspect(&self, server: &ServerName, boot_id: &str) -> Inspection {
        let path = self.path(server);
        let bytes = match read_limited(&path, STATE_FILE_LIMIT) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Inspection::plain(LockFile::Missing);
            }
            Err(e) => {
                return Inspection::plain(LockFile::Unreadable {
                    detail: format!("cannot read {}: {e}", path.display()),
                });
            }
        };
        let record = match serde_json::from_slice::<LockRecord>(&bytes) {
            Ok(r) if r.version == VERSION && r.server == server.as_str() => r,
            Ok(r) => {
                let detail = format!(
                    "lock file {} is for {:?} version {}, not {server:?} version {VERSION}",
                    path.display(),
                    r.server,
                    r.version
                );
                return Inspection::plain(LockFile::Unreadable {
                    detail: left_alone(&detail),
                });
            }
            Err(e) => {
                let what = if bytes.is_empty() {
                    "empty".to_owned()
                } else {
                    format!("unreadable ({e})")
                };
                return Inspection::plain(LockFile::Unreadable {
                    detail: left_alone(&format!("lock file {} is {what}", path.display())),
                });
            }
        };
        let (meant_to_run, restart_count) = (record.meant_to_run, record.restart_count);
        let found = |process: Process| LockFile::Read {
            meant_to_run,
            restart_count,
            process,
        };
        if record.boot_id != boot_id {
            let detail = format!("pid {} was started before this boot", record.pid);
            return Inspection {
                lock_file: found(Process::OtherBoot { detail }),
                record: Some(record),
                pidfd: None,
            };
        }
        let mut record = record;
        let mut detail = "its last start was recorded but no process of it runs".to_owned();
        if record.pid != 0 {
            match verify(&record) {
                Ok((pidfd, suspended)) => return adopted(record, pidfd, suspended),
                Err(Mismatch::Unsure(d)) => return unsure(found, &d),
                Err(Mismatch::Stranger(d)) => detail = d,
            }
        }
        // A start after this record was written, whose own record never reached the disk, runs
        // under the token this record reserved for it.
        let durable = record.clone();
        if let Some(pid) = process::find_leader_by_token(&record.next_token)
            && let Ok(stat) = process::proc_stat(pid)
        {
            record.pid = pid;
            record.pgid = pid;
            record.start_time = stat.start_time;
            record.token = std::mem::take(&mut record.next_token);
            match verify(&record) {
                Ok((pidfd, suspended)) => return adopted(record, pidfd, suspended),
                Err(Mismatch::Unsure(d)) => return unsure(found, &d),
                Err(Mismatch::Stranger(d)) => detail = d,
            }
        }
        Inspection {
            lock_file: found(Process::Gone { detail }),
            record: Some(durable),
            pidfd: None,
        }
    }
}

/// A process nm cannot vouch for: reported, never trusted as a record.
fn unsure(found: impl FnOnce(Process) -> LockFile, detail: &str) -> Inspection {
    Inspection::plain(found(Process::Unsure {
        detail: left_alone(detail),
    }))
}

fn left_alone(detail: &str) -> String {
    format!("{detail}; {LEFT_ALONE}")
}

fn adopted(record: LockRecord, pidfd: std::sync::Arc<PidFd>, suspended: bool) -> Inspection {
    Inspection {
        lock_file: LockFile::Read {
            meant_to_run: record.meant_to_run,
            restart_count: record.restart_count,
            process: Process::Live {
                pid: record.pid,
                suspended,
            },
        },
        record: Some(record),
        pidfd: Some(pidfd),
    }
}

/// What an operator reads about a server nm cannot vouch for.
const LEFT_ALONE: &str = "not trusted, nothing signalled, nothing started: the server is UNKNOWN until an operator \
     starts it (once sure it is not running) or stops it";

/// Why a lock record's process is not adopted.
enum Mismatch {
    /// Dead, or surely another process (start time or group differ): the server's own process is
    /// gone.
    Stranger(String),
    /// Same start time and group, but the token cannot be confirmed (overwritten or unreadable
    /// environment): most likely ours. Neither adopted nor restarted beside it.
    Unsure(String),
}

/// What crash recovery read for one server, with what the driver needs to keep watching it.
#[derive(Debug)]
pub struct Inspection {
    /// The lock file and the process it names, for [`decide`](crate::core::decide).
    pub lock_file: LockFile,
    /// The lock record read, if it was trusted as a record (for an adopted process, the record
    /// of the process adopted).
    pub record: Option<LockRecord>,
    /// The pidfd of a live process of the server.
    pub(crate) pidfd: Option<std::sync::Arc<PidFd>>,
}

impl Inspection {
    fn plain(lock_file: LockFile) -> Self {
        Self {
            lock_file,
            record: None,
            pidfd: None,
        }
    }
}

/// Checks that the process the record names is the one nm started: alive, same start time,
/// leads its own group, carries the same token. The pidfd is opened first, so the process the
/// checks read is the one it pins; a process that died or was replaced during the checks fails
/// them. On failure the process is never signalled.
fn verify(record: &LockRecord) -> Result<(std::sync::Arc<PidFd>, bool), Mismatch> {
    let pid = record.pid;
    let gone = || Mismatch::Stranger(format!("pid {pid} is not running"));
    let pidfd = PidFd::open(pid).map_err(|_| gone())?;
    let stat = process::proc_stat(pid).map_err(|_| gone())?;
    if stat.state == 'Z' || stat.state == 'X' {
        return Err(Mismatch::Stranger(format!(
            "pid {pid} is not running (zombie)"
        )));
    }
    if stat.start_time != record.start_time {
        return Err(Mismatch::Stranger(format!(
            "pid {pid} is another process (start time {} != {}): left alone",
            stat.start_time, record.start_time
        )));
    }
    if stat.pgrp != record.pgid {
        return Err(Mismatch::Stranger(format!(
            "pid {pid} is another process (process group {} != {}): left alone",
            stat.pgrp, record.pgid
        )));
    }
    match process::proc_token(pid) {
        Some(t) if t == record.token => {}
        Some(_) => {
            return Err(Mismatch::Unsure(format!(
                "pid {pid} has the recorded start time and process group but another NM_SERVER_TOKEN \
                 (did it rewrite its environment?)"
            )));
        }
        None => {
            return Err(Mismatch::Unsure(format!(
                "pid {pid} has the recorded start time and process group but its NM_SERVER_TOKEN \
                 cannot be read"
            )));
        }
    }
    if pidfd.has_exited() {
        return Err(Mismatch::Stranger(format!(
            "pid {pid} exited during recovery"
        )));
    }
    Ok((pidfd, stat.state == 'T'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> ServerName {
        ServerName::new(n).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Whatever bytes sit in a lock file or a stop marker (torn, hostile, huge numbers,
        /// wrong types), reading them never panics: an unusable lock file is UNKNOWN-worthy
        /// `Unreadable`, never trusted.
        #[test]
        fn any_bytes_in_a_lock_file_or_stop_marker_are_read_without_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            json in "\\{(\"[a-z_]{1,12}\":(-?[0-9]{1,20}|\"[a-z0-9-]{0,40}\"|true|null|\\[\\]),?){0,12}\\}",
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let dir = LockDir::open(tmp.path()).unwrap();
            for content in [bytes.as_slice(), json.as_bytes()] {
                std::fs::write(dir.path(&name("a")), content).unwrap();
                let found = dir.inspect(&name("a"), "boot");
                if let LockFile::Read { process: Process::Live { .. }, .. } = found.lock_file {
                    proptest::prop_assert!(false, "adopted a process from {content:?}");
                }
                std::fs::write(dir.stop_marker(&name("a")), content).unwrap();
                let _ = dir.read_stop_marker(&name("a"), "boot");
            }
        }
    }

    #[test]
    fn a_missing_lock_is_nothing_and_garbage_is_untrusted_and_left_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path()).unwrap();
        assert_eq!(dir.inspect(&name("a"), "boot").lock_file, LockFile::Missing);
        std::fs::write(dir.path(&name("a")), b"{\"version\": 1, \"serv").unwrap();
        for _ in 0..2 {
            // every daemon start sees it again: never forgotten, never trusted
            let r = dir.inspect(&name("a"), "boot");
            assert!(
                matches!(&r.lock_file, LockFile::Unreadable { detail } if detail.contains("unreadable")),
                "{:?}",
                r.lock_file
            );
            assert!(dir.path(&name("a")).exists());
        }
        std::fs::write(dir.path(&name("b")), b"").unwrap();
        assert!(
            matches!(dir.inspect(&name("b"), "boot").lock_file, LockFile::Unreadable { detail } if detail.contains("empty"))
        );
    }

    fn record(pid: Pid, start_time: u64, token: &str, boot: &str) -> LockRecord {
        LockRecord {
            version: 1,
            server: "a".into(),
            pid,
            pgid: pid,
            start_time,
            boot_id: boot.into(),
            token: token.into(),
            meant_to_run: true,
            restart_count: 2,
            started_at: "2026-01-01T00:00:00Z".into(),
            restarts: vec![],
            next_token: String::new(),
        }
    }

    #[tokio::test]
    async fn a_start_whose_record_never_reached_the_disk_is_found_by_its_reserved_token() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path()).unwrap();
        let spec = crate::spec::ServerSpec::new("a", &["sleep", "100"]).unwrap();
        let out = std::fs::File::create(tmp.path().join("out")).unwrap();
        let pid = process::spawn(&spec, "0123abcd", out.try_clone().unwrap(), out, None).unwrap();
        let boot = process::boot_id().unwrap();
        // the last durable record: an earlier, dead start that reserved "0123abcd" for the next
        let mut rec = record(999_999, 5, "old", &boot);
        rec.next_token = "0123abcd".into();
        dir.write(&rec).unwrap();
        let r = dir.inspect(&name("a"), &boot);
        assert!(
            matches!(r.lock_file, LockFile::Read { process: Process::Live { pid: p, .. }, .. } if p == pid),
            "{:?}",
            r.lock_file
        );
        let adopted = r.record.unwrap();
        assert_eq!(
            (
                adopted.pid,
                adopted.token.as_str(),
                adopted.next_token.as_str()
            ),
            (pid, "0123abcd", "")
        );
        // the same before a first start (pid 0)
        let mut first = record(0, 0, "", &boot);
        first.next_token = "0123abcd".into();
        dir.write(&first).unwrap();
        assert!(
            matches!(dir.inspect(&name("a"), &boot).lock_file, LockFile::Read { process: Process::Live { pid: p, .. }, .. } if p == pid)
        );
        process::signal_group(pid, crate::core::Signal::Kill).unwrap();
        process::reap_blocking(pid);
        assert!(matches!(
            dir.inspect(&name("a"), &boot).lock_file,
            LockFile::Read {
                meant_to_run: true,
                process: Process::Gone { .. },
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_live_stranger_is_not_adopted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path()).unwrap();
        // our own test process: alive, but not the start time or token of the record
        let me = i32::try_from(std::process::id()).unwrap();
        dir.write(&record(me, 1, "feed", "boot")).unwrap();
        let r = dir.inspect(&name("a"), "boot");
        assert!(
            matches!(&r.lock_file, LockFile::Read { meant_to_run: true, restart_count: 2, process: Process::Gone { detail } } if detail.contains("another process")),
            "{:?}",
            r.lock_file
        );
        assert!(r.pidfd.is_none());
    }

    #[tokio::test]
    async fn a_lock_from_another_boot_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path()).unwrap();
        dir.write(&record(1, 1, "feed", "old-boot")).unwrap();
        assert!(
            matches!(dir.inspect(&name("a"), "boot").lock_file, LockFile::Read { process: Process::OtherBoot { detail }, .. } if detail.contains("before this boot"))
        );
    }

    #[test]
    fn a_stop_marker_tells_its_boot_and_an_old_one_is_of_no_known_boot() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path()).unwrap();
        assert_eq!(dir.read_stop_marker(&name("a"), "boot"), StopMarker::Absent);
        let record = StopRecord {
            version: 1,
            boot_id: "boot".into(),
            at: "2026-12-02T06:27:22.028Z".into(),
            cause: DownCause::Exited { code: 3 },
        };
        dir.mark_stopped(&name("a"), &record).unwrap();
        let text = std::fs::read_to_string(dir.stop_marker(&name("a"))).unwrap();
        assert!(text.contains(r#""cause":"exited","code":3"#), "{text}");
        let present = |boot| StopMarker::Present {
            cause: DownCause::Exited { code: 3 },
            at: Some("2026-12-02T06:27:22.028Z".into()),
            boot,
        };
        assert_eq!(
            dir.read_stop_marker(&name("a"), "boot"),
            present(Boot::This)
        );
        assert_eq!(
            dir.read_stop_marker(&name("a"), "next"),
            present(Boot::Other)
        );
        // as an nm before boot ids wrote it
        std::fs::write(dir.stop_marker(&name("a")), b"stopped by an operator\n").unwrap();
        assert_eq!(
            dir.read_stop_marker(&name("a"), "boot"),
            StopMarker::unknown()
        );
        // one that cannot be read at all (here: a directory in its place) keeps the server down
        dir.clear_stopped(&name("a")).unwrap();
        std::fs::create_dir(dir.stop_marker(&name("a"))).unwrap();
        assert_eq!(
            dir.read_stop_marker(&name("a"), "boot"),
            StopMarker::Present {
                cause: DownCause::Operator,
                at: None,
                boot: Boot::This
            }
        );
        std::fs::remove_dir(dir.stop_marker(&name("a"))).unwrap();
        assert_eq!(dir.read_stop_marker(&name("a"), "boot"), StopMarker::Absent);
    }

    #[test]
    fn write_is_atomic_and_remove_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path()).unwrap();
        dir.write(&record(5, 6, "t", "b")).unwrap();
        let back: LockRecord =
            serde_json::from_slice(&std::fs::read(dir.path(&name("a"))).unwrap()).unwrap();
        assert_eq!(back, record(5, 6, "t", "b"));
        assert_eq!(dir.names(), vec!["a".to_owned()]);
        dir.remove(&name("a")).unwrap();
        dir.remove(&name("a")).unwrap();
        assert!(dir.names().is_empty());
    }

    #[test]
    fn links_planted_where_lock_files_and_stop_markers_are_written_are_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path()).unwrap();
        let target = tmp.path().join("precious");
        std::fs::write(&target, b"precious").unwrap();
        let servers = tmp.path().join("servers");
        for planted in ["a.lock", ".a.lock.tmp", "a.stopped", ".a.stopped.tmp"] {
            std::os::unix::fs::symlink(&target, servers.join(planted)).unwrap();
        }
        dir.write(&record(5, 6, "t", "b")).unwrap();
        let stop = StopRecord {
            version: 1,
            cause: DownCause::Operator,
            at: "2026-01-01T00:00:00Z".into(),
            boot_id: "b".into(),
        };
        dir.mark_stopped(&name("a"), &stop).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        for written in ["a.lock", "a.stopped"] {
            assert!(
                std::fs::symlink_metadata(servers.join(written))
                    .unwrap()
                    .is_file()
            );
        }
    }

    #[test]
    fn a_lock_file_or_stop_marker_that_is_a_link_or_too_large_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path()).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path(&name("a"))).unwrap();
        assert!(matches!(
            dir.inspect(&name("a"), "boot").lock_file,
            LockFile::Unreadable { .. }
        ));
        std::fs::write(dir.path(&name("b")), vec![b' '; 64 * 1024 + 1]).unwrap();
        assert!(matches!(
            dir.inspect(&name("b"), "boot").lock_file,
            LockFile::Unreadable { detail } if detail.contains("larger than")
        ));
        // a stop marker nm cannot read keeps its server down
        std::os::unix::fs::symlink("/dev/zero", dir.stop_marker(&name("a"))).unwrap();
        assert!(matches!(
            dir.read_stop_marker(&name("a"), "boot"),
            StopMarker::Present {
                boot: Boot::This,
                ..
            }
        ));
    }
}
