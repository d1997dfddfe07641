//! Process trees, so that no test leaves a process behind, on failure too.
//!
//! A test kills what it started through [`KillOnDrop`] guards and [`crate::Node`]'s drop, which
//! kill whole trees: the direct child, everything below it (by parent PID, which survives a
//! server rewriting its environment or leaving its process group), and what was orphaned when a
//! test killed a daemon on purpose. `.ci/run` checks the result: it runs the tests under
//! `nm-test-reaper`, a child subreaper that fails the run when any process outlives it.

use std::process::Child;

/// A process identity that survives PID reuse: the PID and its start time (clock ticks after
/// boot, `/proc/PID/stat` field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// The PID.
    pub pid: i32,
    /// Its start time.
    pub start: u64,
}

impl Proc {
    /// The live (non-zombie) process `pid`, with its start time.
    #[must_use]
    pub fn of(pid: i32) -> Option<Self> {
        let (_, _, start) = stat(pid)?;
        crate::alive(pid).then_some(Self { pid, start })
    }

    /// Whether this very process is still alive (not a zombie, not a reused PID).
    #[must_use]
    pub fn alive(self) -> bool {
        Self::of(self.pid) == Some(self)
    }
}

/// `(state, ppid, start time)` of `pid` from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // after the ")" closing the command name: state ppid pgrp … (field 3 onward)
    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let start = f.nth(17)?.parse().ok()?;
    Some((state, ppid, start))
}

/// Every live process below `root` (children, their children…), not `root` itself.
#[must_use]
pub fn descendants(root: i32) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let table: Vec<(i32, i32)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| stat(pid).map(|(_, ppid, _)| (pid, ppid)))
        .collect();
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &table {
            if ppid == parent && !out.iter().any(|p: &Proc| p.pid == pid) {
                frontier.push(pid);
                if let Some(p) = Proc::of(pid) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// SIGKILL of `procs` that are still the same processes.
pub fn kill_procs(procs: &[Proc]) {
    for p in procs {
        if p.alive() {
            signal_kill(p.pid);
        }
    }
}

/// SIGKILL of `roots` and everything below them. Each is stopped (SIGSTOP) first, then what is
/// below it, pass after pass until no new process appears; then all are killed. A stopped
/// process neither forks nor restarts a server it sees die, so nothing escapes the tree.
pub fn kill_trees(roots: &[Proc]) {
    let mut all: Vec<Proc> = roots.iter().copied().filter(|p| p.alive()).collect();
    for p in &all {
        signal(p.pid, rustix::process::Signal::STOP);
    }
    for _ in 0..50 {
        let new: Vec<Proc> = all
            .iter()
            .flat_map(|p| descendants(p.pid))
            .filter(|d| !all.contains(d))
            .collect();
        if new.is_empty() {
            break;
        }
        for p in &new {
            signal(p.pid, rustix::process::Signal::STOP);
        }
        all.extend(new);
    }
    kill_procs(&all);
}

fn signal_kill(pid: i32) {
    signal(pid, rustix::process::Signal::KILL);
}

fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// A child process (and its whole tree) killed and reaped when the guard drops: at the end of
/// the test or when it panics.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// The child's PID.
    #[must_use]
    pub fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("a PID fits in i32")
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // the child is unreaped until `wait`, so its PID cannot be reused meanwhile
        if let Some(root) = Proc::of(self.pid()) {
            kill_trees(&[root]);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
