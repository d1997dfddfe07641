//! Processes: spawn a server in its own session, watch it through a pidfd, signal its process
//! group, reap it, and read its identity from `/proc`.
//!
//! The only `unsafe` of the crate lives here: `posix_spawn` (or `pre_exec(setsid)`) and
//! registering the pidfd with tokio's reactor.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::process::{Pid as RPid, PidfdFlags, Signal as RSignal};

use crate::core::{Pid, Signal};
pub(crate) use crate::os::process::{PidFd, proc_stat};
use crate::spec::ServerSpec;

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
///
/// Without `user`, this is `posix_spawn` with `POSIX_SPAWN_SETSID`: glibc runs the child on the
/// parent's memory until `exec` (`CLONE_VFORK`), so a restart does not pay for copying the
/// daemon's page tables. With `user`, std's fork path sets the ids.
pub(crate) fn spawn(
    spec: &ServerSpec,
    token: &str,
    stdout: File,
    stderr: File,
    default_cwd: Option<&Path>,
) -> io::Result<Pid> {
    let cwd = spec.cwd.as_deref().or(default_cwd);
    if spec.user.is_none() {
        return posix_spawn_setsid(spec, token, &stdout, &stderr, cwd);
    }
    let mut cmd = std::process::Command::new(spec.command.program());
    cmd.args(spec.command.args())
        .envs(&spec.env)
        .env("NM_SERVER_NAME", spec.name.as_str())
        .env("NM_SERVER_TOKEN", token)
        .env_remove("NOTIFY_SOCKET") // systemd's socket is the daemon's, not the server's
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if let Some(cwd) = cwd {
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
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            // as the posix_spawn path: no inherited descriptor above stderr reaches the server
            // (std has set up 0-2 by now; its own error pipe is close-on-exec already)
            let _ = libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Dropping a std Child neither waits nor kills: the process stays ours to reap via its pidfd.
    i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))
}

fn cstring(s: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(s).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "NUL byte in command, env or cwd",
        )
    })
}

/// The server's environment: the daemon's, plus its `env`, plus its name and token.
fn server_env(spec: &ServerSpec, token: &str) -> Vec<(OsString, OsString)> {
    let mut env: std::collections::BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    env.remove(OsStr::new("NOTIFY_SOCKET")); // systemd's socket is the daemon's, not the server's
    for (k, v) in &spec.env {
        env.insert(k.into(), v.into());
    }
    env.insert("NM_SERVER_NAME".into(), spec.name.as_str().into());
    env.insert("NM_SERVER_TOKEN".into(), token.into());
    env.into_iter().collect()
}

/// `program` as a path: as given if it has a `/`, else the first executable match in `PATH`.
fn resolve_program(program: &str, path_var: Option<&OsStr>) -> io::Result<PathBuf> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path_var = path_var.unwrap_or_else(|| OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    for dir in std::env::split_paths(path_var) {
        let candidate = dir.join(program);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{program:?} not found in PATH"),
    ))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn posix_spawn_setsid(
    spec: &ServerSpec,
    token: &str,
    stdout: &File,
    stderr: &File,
    cwd: Option<&Path>,
) -> io::Result<Pid> {
    let env = server_env(spec, token);
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    let program = cstring(
        resolve_program(spec.command.program(), path_var)?
            .into_os_string()
            .into_vec(),
    )?;
    let argv: Vec<CString> = spec
        .command
        .as_slice()
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(kv)
        })
        .collect::<io::Result<_>>()?;
    let cwd = cwd.map(|c| cstring(c.as_os_str().as_bytes())).transpose()?;
    let mut argv_ptrs: Vec<*mut libc::c_char> =
        argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut envp_ptrs: Vec<*mut libc::c_char> =
        envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp_ptrs.push(std::ptr::null_mut());
    let dev_null = c"/dev/null";
    let mut pid: libc::pid_t = 0;
    // SAFETY: the file-actions and attribute objects are initialised before use and destroyed
    // on every path; every pointer passed (program, argv, envp, cwd, /dev/null) points into a
    // CString or Vec that outlives the call; argv and envp are NULL-terminated; the fds are
    // open for the duration of the call (borrowed from the File arguments).
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut fa))?;
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        if let Err(e) = check(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut fa);
            return Err(e);
        }
        let result = (|| {
            check(libc::posix_spawn_file_actions_addopen(
                &mut fa,
                0,
                dev_null.as_ptr(),
                libc::O_RDONLY,
                0,
            ))?;
            check(libc::posix_spawn_file_actions_adddup2(
                &mut fa,
                stdout.as_raw_fd(),
                1,
            ))?;
            check(libc::posix_spawn_file_actions_adddup2(
                &mut fa,
                stderr.as_raw_fd(),
                2,
            ))?;
            // nothing the daemon inherited (a shell's redirection, a service manager's socket)
            // or opened reaches the server: every descriptor above stderr is closed in the child
            check(libc::posix_spawn_file_actions_addclosefrom_np(&mut fa, 3))?;
            if let Some(cwd) = &cwd {
                check(libc::posix_spawn_file_actions_addchdir_np(
                    &mut fa,
                    cwd.as_ptr(),
                ))?;
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            // a clean signal state: nothing blocked, every disposition default (the daemon
            // ignores SIGPIPE, which exec alone would pass on)
            check(libc::posix_spawnattr_setsigmask(&mut attr, &empty))?;
            check(libc::posix_spawnattr_setsigdefault(&mut attr, &all))?;
            // libc types these flags c_short or c_int; their values (128 | 8 | 4) fit both
            let flags = libc::c_int::from(libc::POSIX_SPAWN_SETSID)
                | libc::c_int::from(libc::POSIX_SPAWN_SETSIGMASK)
                | libc::c_int::from(libc::POSIX_SPAWN_SETSIGDEF);
            let flags = libc::c_short::try_from(flags)
                .map_err(|_| io::Error::other("spawn flags out of range"))?;
            check(libc::posix_spawnattr_setflags(&mut attr, flags))?;
            check(libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                &fa,
                &attr,
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
            ))
        })();
        libc::posix_spawnattr_destroy(&mut attr);
        libc::posix_spawn_file_actions_destroy(&mut fa);
        result?;
    }
    Ok(pid)
}

/// Waits for our child `pid` to exit and reaps it (after it was killed).
pub(crate) fn reap_blocking(pid: Pid) {
    let _ = rustix::process::waitpid(RPid::from_raw(pid), rustix::process::WaitOptions::empty());
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
    if token.is_empty() {
        return 0; // no start behind it: never match processes by an empty token
    }
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

/// The session leader whose environment carries `NM_SERVER_TOKEN=token`, if one runs: the
/// process a start recorded without its PID became. A one-off scan of `/proc`.
pub(crate) fn find_leader_by_token(token: &str) -> Option<Pid> {
    if token.is_empty() {
        return None;
    }
    let dir = std::fs::read_dir("/proc").ok()?;
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
        .find(|&pid| {
            proc_stat(pid).is_ok_and(|st| st.pgrp == pid && st.state != 'Z')
                && proc_token(pid).as_deref() == Some(token)
        })
}

/// Makes sure exits of our children are reported to us. A daemon started with SIGCHLD ignored
/// (inherited across exec) would have its children reaped by the kernel at once, and then a
/// zombie would no longer hold a server's group id while nm signals the group. Only an ignored
/// disposition is changed: a handler someone installed (tokio's) is left alone.
pub(crate) fn ensure_sigchld_not_ignored() {
    // SAFETY: sigaction with a null new action only reads the current disposition into `old`;
    // setting SIG_DFL installs no handler code. Both are plain syscalls on valid pointers.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
        {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGCHLD, &dfl, std::ptr::null_mut());
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub(crate) fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_owned())
}

/// The environment variable that simulates a reboot for stop markers, in tests only.
pub(crate) const TEST_BOOT_ID_ENV: &str = "NM_TEST_BOOT_ID";

/// The ids of this boot the driver uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BootIds {
    /// The kernel's: lock files record it, and it alone decides whether a recorded process can
    /// still be alive.
    pub(crate) kernel: String,
    /// The boot stop markers (`servers/NAME.stopped`) are kept within.
    pub(crate) stops: String,
}

/// This boot's ids: the kernel's, and the one stop markers are kept within — the kernel's,
/// followed by [`TEST_BOOT_ID_ENV`] when that is set and not empty.
///
/// The override is for tests: it lets one daemon start see the stops of the previous one as
/// "before a reboot" without rebooting. It is kept safe by what it cannot do: it never touches
/// lock files (a live server is never taken for gone, so never started a second time beside
/// itself, and never adopted across a real reboot), and it only adds to the kernel's id (after a
/// real reboot a marker is of another boot whatever the variable says, so a variable forgotten
/// in a unit file cannot make a stop outlive a reboot). At worst it makes nm start a server an
/// operator stopped, as a reboot would.
pub(crate) fn boot_ids() -> io::Result<BootIds> {
    let kernel = boot_id()?;
    let stops = stop_boot_id(&kernel, std::env::var(TEST_BOOT_ID_ENV).ok().as_deref());
    Ok(BootIds { kernel, stops })
}

/// The boot stop markers are kept within, from the kernel's boot id and the test override.
fn stop_boot_id(kernel: &str, test: Option<&str>) -> String {
    match test {
        Some(test) if !test.is_empty() => format!("{kernel}+{TEST_BOOT_ID_ENV}={test}"),
        _ => kernel.to_owned(),
    }
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

    fn reap(pid: Pid) {
        let _ = rustix::process::kill_process(RPid::from_raw(pid).unwrap(), RSignal::KILL);
        let _ =
            rustix::process::waitpid(RPid::from_raw(pid), rustix::process::WaitOptions::empty());
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the wait below has a deadline of wall time
    fn a_spawned_server_leads_its_own_session_with_a_clean_signal_state_and_its_token() {
        let tmp = tempfile::tempdir().unwrap();
        let out = File::create(tmp.path().join("out")).unwrap();
        let err = File::create(tmp.path().join("err")).unwrap();
        let mut spec = ServerSpec::new("t", &["sleep", "100"]).unwrap();
        spec.env.insert("EXTRA".into(), "1".into());
        spec.cwd = Some(tmp.path().to_owned());
        let pid = spawn(&spec, "cafe", out, err, None).unwrap();
        // reaped whatever happens below (a failed assertion must not leave `sleep 100` behind)
        struct Reap(Pid);
        impl Drop for Reap {
            fn drop(&mut self) {
                reap(self.0);
            }
        }
        let _reap = Reap(pid);
        // /proc/PID/environ can read empty for a moment while the exec settles: wait for it
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proc_token(pid).is_none() && std::time::Instant::now() < until {
            std::thread::yield_now();
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .collect();
        assert_eq!(fields[2], pid.to_string(), "process group");
        assert_eq!(fields[3], pid.to_string(), "session");
        assert_eq!(proc_token(pid).as_deref(), Some("cafe"));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let ignored = status.lines().find(|l| l.starts_with("SigIgn:")).unwrap();
        let mask = u64::from_str_radix(ignored.trim_start_matches("SigIgn:").trim(), 16).unwrap();
        // no standard signal ignored (SIGPIPE!); 32 and 33 are glibc's own real-time signals
        assert_eq!(mask & 0x7fff_ffff, 0, "{ignored}"); // signals 1..=31
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
        assert_eq!(cwd, tmp.path().canonicalize().unwrap());
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(environ.split(|&b| b == 0).any(|kv| kv == b"EXTRA=1"));
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_process() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = ServerSpec::new("t", &["no-such-program-nm"]).unwrap();
        let out = File::create(tmp.path().join("out")).unwrap();
        let err = spawn(&spec, "x", out.try_clone().unwrap(), out, None).unwrap_err();
        assert!(err.to_string().contains("not found in PATH"), "{err}");
        let spec = ServerSpec::new("t", &["/nonexistent/prog"]).unwrap();
        let out = File::create(tmp.path().join("out2")).unwrap();
        let err = spawn(&spec, "x", out.try_clone().unwrap(), out, None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn the_test_boot_id_only_adds_to_the_kernels() {
        assert_eq!(stop_boot_id("k1", None), "k1");
        assert_eq!(stop_boot_id("k1", Some("")), "k1");
        let a = stop_boot_id("k1", Some("a"));
        assert!(a.starts_with("k1") && a != "k1" && a != stop_boot_id("k1", Some("b")));
        // a real reboot is another boot whatever the override says
        assert_ne!(a, stop_boot_id("k2", Some("a")));
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
