//! Processes: spawn a server in its own session, watch it through a pidfd, signal its process
//! group, reap it, and read its identity from `/proc`.
//!
//! The only `unsafe` of the crate lives here: `pre_exec(setsid)` and registering the pidfd with
//! tokio's reactor.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use rustix::process::{Pid as RPid, PidfdFlags, Signal as RSignal, WaitId, WaitIdOptions};
use tokio::io::unix::AsyncFd;

use crate::core::{Exit, Pid, Signal};
use crate::spec::ServerSpec;

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

/// Sends `signal` to the process group `pgid`. "No such process" is not an error: the group is
/// already gone.
///
/// Callers make sure the group id cannot have been reused: either its leader is our unreaped
/// child (a zombie still holds its PID, so no new group can take the number), or the leader is
/// alive (checked through its pidfd just before).
pub(crate) fn signal_group(pgid: Pid, signal: Signal) -> io::Result<()> {
    let Some(pgid) = RPid::from_raw(pgid) else {
        return Ok(());
    };
    match rustix::process::kill_process_group(pgid, to_rustix(signal)) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn to_rustix(signal: Signal) -> RSignal {
    match signal {
        Signal::Term => RSignal::TERM,
        Signal::Kill => RSignal::KILL,
        Signal::Stop => RSignal::STOP,
        Signal::Cont => RSignal::CONT,
    }
}

/// The user a server runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) name: String,
    pub(crate) home: String,
}

/// Looks up `user` (a name or a numeric uid) in `/etc/passwd`.
pub(crate) fn lookup_user(user: &str) -> io::Result<RunAs> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            continue;
        }
        if f[0] == user || f[2] == user {
            let uid = f[2]
                .parse()
                .map_err(|_| io::Error::other("bad uid in /etc/passwd"))?;
            let gid = f[3]
                .parse()
                .map_err(|_| io::Error::other("bad gid in /etc/passwd"))?;
            return Ok(RunAs {
                uid,
                gid,
                name: f[0].to_owned(),
                home: f[5].to_owned(),
            });
        }
    }
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(RunAs {
            uid,
            gid: uid,
            name: user.to_owned(),
            home: "/".to_owned(),
        });
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no user {user:?} in /etc/passwd"),
    ))
}

/// Starts `spec`'s command as the leader of a new session (so its group can be signalled as a
/// whole and no terminal signal reaches it), with stdout and stderr opened on its log files by
/// the kernel: no pipe through the daemon, so it keeps logging when the daemon is gone.
pub(crate) fn spawn(
    spec: &ServerSpec,
    token: &str,
    stdout: File,
    stderr: File,
    default_cwd: Option<&Path>,
) -> io::Result<Pid> {
    let mut cmd = std::process::Command::new(spec.command.program());
    cmd.args(spec.command.args())
        .envs(&spec.env)
        .env("NM_SERVER_NAME", spec.name.as_str())
        .env("NM_SERVER_TOKEN", token)
        .env_remove("NOTIFY_SOCKET") // systemd's socket is the daemon's, not the server's
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if let Some(cwd) = spec.cwd.as_deref().or(default_cwd) {
        cmd.current_dir(cwd);
    }
    if let Some(user) = &spec.user {
        let who = lookup_user(user)?;
        cmd.uid(who.uid)
            .gid(who.gid)
            .env("USER", &who.name)
            .env("LOGNAME", &who.name)
            .env("HOME", &who.home);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent; it is the only
    // thing run between fork and exec.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(io::Error::from));
    }
    let child = cmd.spawn()?;
    // Dropping a std Child neither waits nor kills: the process stays ours to reap via its pidfd.
    i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))
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

/// The value of `NM_SERVER_TOKEN` in the process's initial environment, if readable.
pub(crate) fn proc_token(pid: Pid) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"NM_SERVER_TOKEN="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Kills every process whose environment carries `NM_SERVER_TOKEN=token`: what is left of a
/// server whose leader died while nm could not reap it (an adopted server, or one that died while
/// the daemon was down). The token is random per start, so only that start's descendants match;
/// each match is pinned with a pidfd and checked again before the signal. Returns how many were
/// killed. A one-off scan of `/proc`, not a polling loop.
pub(crate) fn kill_leftovers(token: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<Pid>().ok())
        else {
            continue;
        };
        if proc_token(pid).as_deref() != Some(token) {
            continue;
        }
        let Some(rpid) = RPid::from_raw(pid) else {
            continue;
        };
        let Ok(fd) = rustix::process::pidfd_open(rpid, PidfdFlags::empty()) else {
            continue;
        };
        // the pidfd pins the process: if the token still matches, it is the one we mean
        if proc_token(pid).as_deref() == Some(token)
            && rustix::process::pidfd_send_signal(&fd, RSignal::KILL).is_ok()
        {
            killed += 1;
        }
    }
    killed
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub(crate) fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_owned())
}

/// A fresh random token for one start of a server: 128 bits, hex.
pub(crate) fn new_token() -> io::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
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
    fn our_own_stat_and_boot_id_are_readable() {
        let me = i32::try_from(std::process::id()).unwrap();
        let st = proc_stat(me).unwrap();
        assert!(st.start_time > 0);
        assert_eq!(boot_id().unwrap().len(), 36);
        assert_eq!(new_token().unwrap().len(), 32);
    }
}
