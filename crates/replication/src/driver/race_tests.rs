//! Standbys racing for the data directory's lock, with real processes: the "active" is a
//! `flock(1)` process holding the lock, the link is served by the test with that process's
//! identity, and two real standby drivers (separate open file descriptions, so separate lock
//! owners) are linked to it when it dies.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::future::{self, Either};
use supervisor_core::driver::start_time_of;
use tokio::sync::mpsc;

use super::{StandbyConfig, StandbyOutcome, lock_holder, run_standby};
use crate::Timing;
use crate::link::{self, LinkEvent, Msg, Welcome};

const T: Duration = Duration::from_secs(20);

/// A process holding the lock on `dir`: `flock -o DIR sleep 600`, in a process group of its own.
/// `flock` holds the lock and waits for its child `sleep`, so killing `flock` alone would leave
/// the `sleep` behind (holding the test's stdout for ten minutes): the whole group is killed, by
/// [`Holder::kill`] or, should the test fail first, on drop.
pub(super) struct Holder {
    child: Child,
    reaped: bool,
}

impl Holder {
    /// Starts the helper and returns once it holds the lock.
    pub(super) async fn start(dir: &std::path::Path) -> Self {
        let child = Command::new("flock")
            .arg("-o")
            .arg(dir)
            .args(["sleep", "600"])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("flock(1) from util-linux");
        let holder = Self {
            child,
            reaped: false,
        };
        let pid = holder.pid();
        let deadline = super::now() + T;
        while lock_holder(dir).unwrap() != Some(pid) {
            assert!(super::now() < deadline, "flock never took the lock");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        holder
    }

    /// The PID of `flock`, the lock's holder (and the leader of the helper's process group).
    pub(super) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// SIGKILLs the helper's whole process group, then reaps `flock` (its `sleep` is reparented
    /// and reaped by init). Until `flock` is reaped here its PID, so its group id, cannot be
    /// reused: the kill cannot reach a stranger. Killing twice is harmless.
    pub(super) fn kill(&mut self) {
        if self.reaped {
            return;
        }
        if let Some(pgid) = rustix::process::Pid::from_raw(self.pid()) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `flock(1)` is here; otherwise the test prints `skipped: needs …` and returns, or fails
/// under `NM_TEST_REQUIRE_ALL=1` (as `nm_tests::require` does; this crate cannot depend on it).
fn have_flock() -> bool {
    let ok = Command::new("flock")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let reason = "skipped: needs `flock` (util-linux): two_linked_standbys_racing_for_the_lock";
        assert!(
            std::env::var_os("NM_TEST_REQUIRE_ALL").is_none_or(|v| v != "1"),
            "{reason}, and NM_TEST_REQUIRE_ALL=1 forbids skips"
        );
        eprintln!("{reason}");
    }
    ok
}

#[tokio::test]
async fn two_linked_standbys_racing_for_the_lock_never_both_take_over() {
    if !have_flock() {
        return;
    }
    for _round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let key = vec![b'k'; 64];
        let mut active = Holder::start(dir.path()).await;
        let active_pid = active.pid();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = StandbyConfig {
            port: listener.local_addr().unwrap().port(),
            key: key.clone(),
            data_dir: dir.path().to_path_buf(),
            // no fence may interfere: only death hands the lock over here
            timing: Timing {
                heartbeat: Duration::from_millis(50),
                timeout: Duration::from_secs(600),
            },
        };
        let racers = (
            tokio::spawn(run_standby(cfg.clone())),
            tokio::spawn(run_standby(cfg.clone())),
        );
        // welcome both with the lock holder's identity, and wait for a heartbeat from each:
        // a standby heartbeats only once it has checked the welcome and awaits the lock
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut writers = vec![];
        for id in 0..2 {
            let (stream, _) = tokio::time::timeout(T, listener.accept())
                .await
                .unwrap()
                .unwrap();
            let pending = link::accept(stream, &key, T).await.unwrap();
            let (reader, writer) = pending
                .welcome(Welcome {
                    pid: active_pid,
                    start_time: start_time_of(active_pid).unwrap(),
                    takeovers: 4,
                    pair_started_ms: 1,
                })
                .await
                .unwrap();
            reader.spawn(id, tx.clone());
            writers.push(writer);
        }
        let mut heard = [false; 2];
        while heard != [true; 2] {
            let (id, ev) = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
            if matches!(ev, LinkEvent::Msg(Msg::Heartbeat)) {
                heard[id] = true;
            }
        }
        // the active dies: exactly one racer takes over...
        active.kill();
        let (first, mut loser) = match tokio::time::timeout(T, future::select(racers.0, racers.1))
            .await
            .unwrap()
        {
            Either::Left((first, other)) | Either::Right((first, other)) => (first, other),
        };
        let StandbyOutcome::TookOver(winner) = first.unwrap().unwrap() else {
            panic!("the first to return did not take over");
        };
        assert_eq!(winner.takeovers, 5);
        assert_eq!(winner.previous.map(|a| a.pid), Some(active_pid));
        // ...and the other waits for as long as the winner holds the lock
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut loser)
                .await
                .is_err(),
            "two standbys took over at once"
        );
        assert_eq!(
            lock_holder(dir.path()).unwrap(),
            Some(i32::try_from(std::process::id()).unwrap())
        );
        // once the winner is gone, the other one is next
        drop(winner);
        let second = tokio::time::timeout(T, loser)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(matches!(second, StandbyOutcome::TookOver(_)));
        drop(writers);
    }
}
