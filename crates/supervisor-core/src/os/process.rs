//! Pinned processes: a pidfd registered with tokio's reactor, and a process's identity read
//! from `/proc` after the pidfd pins it.
//!
//! Registering the pidfd with the reactor is `unsafe` (tokio's `AsyncFd::register_with_interest`):
//! this file allows it, with a `SAFETY` comment at the one use.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::process::{Pid as RPid, PidfdFlags, Signal as RSignal, WaitId, WaitIdOptions};
use tokio::io::unix::AsyncFd;

use crate::core::{Exit, Pid};

/// A pidfd registered with tokio: readable once the process has exited.
#[derive(Debug)]
pub(crate) struct PidFd(AsyncFd<OwnedFd>);

impl PidFd {
    /// Opens a pidfd for `pid` and registers it with the current runtime.
    pub(crate) fn open(pid: Pid) -> io::Result<Arc<Self>> {
        let rpid =
            RPid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let fd = rustix::process::pidfd_open(rpid, PidfdFlags::NONBLOCK)?;
        // SAFETY: `fd` is a freshly opened, owned pidfd; the AsyncFd takes ownership of it and
        // nothing else closes or replaces it while the AsyncFd lives.
        let afd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Arc::new(Self(afd)))
    }

    /// Resolves once the process has exited (it may still be an unreaped zombie).
    pub(crate) async fn exited(&self) {
        loop {
            match self.0.readable().await {
                // a pidfd stays readable once its process exited: never clear readiness
                Ok(_guard) => return,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    }

    /// Whether the process has exited, without waiting.
    pub(crate) fn has_exited(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            self.0.get_ref(),
            rustix::event::PollFlags::IN,
        )];
        matches!(rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())), Ok(n) if n > 0)
    }

    /// Reaps our child and returns how it ended; `Exit::Unknown` for a process that is not our
    /// child (adopted), whose status only its parent gets.
    pub(crate) fn reap(&self) -> Exit {
        match rustix::process::waitid(
            WaitId::PidFd(self.0.get_ref().as_fd()),
            WaitIdOptions::EXITED,
        ) {
            Ok(Some(st)) => {
                if let Some(code) = st.exit_status() {
                    Exit::Code(code)
                } else if let Some(sig) = st.terminating_signal() {
                    Exit::Signal(sig)
                } else {
                    Exit::Unknown
                }
            }
            _ => Exit::Unknown,
        }
    }
}

/// A process pinned by a pidfd, whose identity was checked after the pidfd was opened: the PID
/// cannot be reused while we hold it, so signalling it can never reach a stranger (DESIGN §4.2).
/// Used for the node manager pair, whose members are not each other's children.
#[derive(Debug, Clone)]
pub struct PinnedProcess {
    fd: Arc<PidFd>,
    pid: Pid,
    start_time: u64,
}

impl PinnedProcess {
    /// Pins `pid` and checks that it is alive and, when `start_time` is given, that it started at
    /// that many clock ticks after boot (`/proc/PID/stat` field 22). Fails with `NotFound` when the
    /// process is gone and `InvalidData` when it is another process than the one named.
    ///
    /// Needs a tokio runtime (the pidfd is registered with its reactor).
    pub fn open(pid: Pid, start_time: Option<u64>) -> io::Result<Self> {
        let fd = PidFd::open(pid).map_err(|e| {
            if e.raw_os_error() == Some(libc::ESRCH) {
                io::Error::new(io::ErrorKind::NotFound, format!("no process {pid}"))
            } else {
                e
            }
        })?;
        // read the identity after the pidfd pins the PID: the stat read is of that process
        let st = proc_stat(pid)?;
        if st.state == 'Z' || fd.has_exited() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("process {pid} has exited"),
            ));
        }
        if let Some(want) = start_time {
            if st.start_time != want {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "process {pid} started at tick {}, not {want}: another process",
                        st.start_time
                    ),
                ));
            }
        }
        Ok(Self {
            fd,
            pid,
            start_time: st.start_time,
        })
    }

    /// The pinned process's PID.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Its start time in clock ticks after boot.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// Resolves once the process has exited: all its file descriptors (and so its `flock`s and
    /// listening sockets) are closed by then.
    pub async fn exited(&self) {
        self.fd.exited().await;
    }

    /// Whether it has exited, without waiting.
    pub fn has_exited(&self) -> bool {
        self.fd.has_exited()
    }

    /// Sends SIGKILL to exactly this process (`pidfd_send_signal`). A process that already
    /// exited is not an error.
    pub fn kill(&self) -> io::Result<()> {
        match rustix::process::pidfd_send_signal(self.fd.0.get_ref(), RSignal::KILL) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A process's start time in clock ticks after boot (`/proc/PID/stat` field 22).
pub fn start_time_of(pid: Pid) -> io::Result<u64> {
    Ok(proc_stat(pid)?.start_time)
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// One-letter state (`R`, `S`, `T`, `Z`, ...).
    pub(crate) state: char,
    /// Process group id.
    pub(crate) pgrp: Pid,
    /// Start time in clock ticks since boot (field 22).
    pub(crate) start_time: u64,
}

/// Reads `/proc/PID/stat`. The command name may hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub(crate) fn proc_stat(pid: Pid) -> io::Result<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/PID/stat"))
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): index = field - 3
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        pgrp: f.get(2)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (we ird) (x) T 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'T',
                pgrp: 4242,
                start_time: 987_654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn our_own_start_time_is_readable() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(start_time_of(me).unwrap() > 0);
    }
}
