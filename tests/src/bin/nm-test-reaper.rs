//! `nm-test-reaper CMD ARGS…`: runs a command (the test suite) and fails when any process it
//! started outlives it.
//!
//! It is a child subreaper (`PR_SET_CHILD_SUBREAPER`): every process orphaned below it is
//! reparented to it instead of init, so a server a test leaked is still found after the test
//! binary exited, whatever it did to its environment or process group. It also sets
//! `NM_TEST_RUN=<id>` in the command's environment and looks for that marker in
//! `/proc/*/environ`. When the command has exited, anything left is listed on stderr, killed
//! (the whole tree) and the exit code is 3; otherwise the command's own exit code is returned.
//! `.ci/run` runs `cargo test --workspace` under it.
#![allow(clippy::disallowed_methods)] // a harness waits for stragglers with a deadline

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use nm_tests::{Proc, descendants, kill_trees, pids_with_env};
use rustix::process::{Pid, WaitOptions, getpid, set_child_subreaper, wait};

/// How long processes may take to die after the command exited (a SIGKILL in flight).
const GRACE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: nm-test-reaper CMD ARGS…");
        return ExitCode::from(64);
    };
    let me = getpid();
    if let Err(e) = set_child_subreaper(Some(me)) {
        eprintln!("nm-test-reaper: PR_SET_CHILD_SUBREAPER: {e}");
        return ExitCode::from(1);
    }
    let run = format!(
        "{}-{}",
        me.as_raw_nonzero(),
        std::fs::read_to_string("/proc/sys/kernel/random/uuid")
            .unwrap_or_default()
            .trim()
    );
    let marker = format!("NM_TEST_RUN={run}");
    let child = match Command::new(program)
        .args(rest)
        .env("NM_TEST_RUN", &run)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nm-test-reaper: cannot run {program}: {e}");
            return ExitCode::from(1);
        }
    };
    let child_pid = Pid::from_child(&child);
    // reap everything (orphans included, at once, as init would) until the command exits
    let code = loop {
        match wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == child_pid => {
                break status
                    .exit_status()
                    .map_or(1, |c| u8::try_from(c).unwrap_or(1));
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                eprintln!("nm-test-reaper: wait: {e}");
                break 1;
            }
        }
    };
    let me = me.as_raw_nonzero().get();
    let left = || -> Vec<Proc> {
        while let Ok(Some(_)) = wait(WaitOptions::NOHANG) {}
        let mut left = descendants(me);
        for p in pids_with_env(&marker).into_iter().filter_map(Proc::of) {
            if p.pid != me && !left.contains(&p) {
                left.push(p);
            }
        }
        left
    };
    let end = Instant::now() + GRACE;
    let mut leaked = left();
    while !leaked.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        leaked = left();
    }
    if leaked.is_empty() {
        return ExitCode::from(code);
    }
    eprintln!(
        "nm-test-reaper: {} process(es) outlived `{}`:",
        leaked.len(),
        args.join(" ")
    );
    for p in &leaked {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        eprintln!("  {} {}", p.pid, cmdline.trim_end());
    }
    kill_trees(&leaked);
    while let Ok(Some(_)) = wait(WaitOptions::empty()) {}
    ExitCode::from(3)
}
