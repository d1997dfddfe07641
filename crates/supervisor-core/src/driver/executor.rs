//! The executor: carries out the core's actions (spawn, signal, probe, lock files) and keeps
//! what the driver knows of each server's process.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::lockfile::{self, LockDir, LockRecord, StopRecord};
use super::logs::{LogDir, Rotator};
use super::process::{self, PidFd};
use super::{ServerStatus, Snapshot, health, now};
use crate::core::{Action, Exit, Generation, Pid, ProbeResult, Signal, Supervisor};
use crate::os::{OrderedWriter, unix_ms, wall_now};
use crate::spec::{ServerName, ServerSpec};

pub(super) struct Proc {
    generation: Generation,
    pid: Pid,
    pgid: Pid,
    pidfd: Arc<PidFd>,
    /// Our child (spawned by this daemon), so we reap it and get its status; adopted processes
    /// are reaped by their parent.
    child: bool,
    watcher: tokio::task::JoinHandle<()>,
}

/// Maps the driver's instants to wall-clock time, for people.
#[derive(Clone, Copy)]
pub(super) struct Clock {
    pub(super) t0: Instant,
    pub(super) wall0: SystemTime,
}

impl Clock {
    pub(super) fn wall(&self, at: Instant) -> SystemTime {
        if at >= self.t0 {
            self.wall0 + (at - self.t0)
        } else {
            // instants before the daemon started (restarts seeded from a lock file)
            self.wall0 - (self.t0 - at)
        }
    }
}

/// Carries out the core's actions: processes, probes and lock files.
pub(super) struct Executor {
    pub(super) locks: LockDir,
    pub(super) logs: LogDir,
    pub(super) rotator: Rotator,
    /// The kernel's boot id, for lock files.
    pub(super) boot_id: String,
    /// The boot stop markers are kept within (the kernel's, or a test's override).
    pub(super) stop_boot_id: String,
    pub(super) procs: HashMap<ServerName, Proc>,
    pub(super) records: HashMap<ServerName, LockRecord>,
    /// Servers whose stop marker may exist (removed at their next start).
    pub(super) stop_marks: HashSet<ServerName>,
    /// Start tokens of processes that just exited, to sweep for leftovers.
    pub(super) sweeps: Vec<(ServerName, String)>,
    pub(super) exit_tx: mpsc::UnboundedSender<(ServerName, Generation)>,
    pub(super) probe_tx: mpsc::UnboundedSender<(ServerName, Generation, ProbeResult)>,
    pub(super) clock: Clock,
    /// Lock files, intent marks and stop markers are written here, in order.
    pub(super) writer: OrderedWriter,
}

/// How long a spawn is retried while file descriptors are short.
const FD_RETRY_FOR: Duration = Duration::from_secs(3);
/// The first pause before such a retry; it doubles up to [`FD_RETRY_MAX`].
const FD_RETRY_FIRST: Duration = Duration::from_millis(10);
const FD_RETRY_MAX: Duration = Duration::from_millis(500);

/// Why a spawn failed.
#[derive(Debug)]
pub(super) struct SpawnError {
    /// One line, for the core and the log.
    pub(super) reason: String,
    /// For lack of file descriptors (`EMFILE`, `ENFILE`): worth retrying in a moment.
    pub(super) out_of_fds: bool,
}

impl SpawnError {
    fn io(context: String, e: &io::Error) -> Self {
        Self {
            reason: format!("{context}: {e}"),
            out_of_fds: is_out_of_fds(e),
        }
    }

    fn other(reason: String) -> Self {
        Self {
            reason,
            out_of_fds: false,
        }
    }
}

/// Whether `e` says the process or the system has no file descriptor left.
pub(super) fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl Executor {
    /// Runs one action; `Err` is fed back to the core as `on_action_failed`. Lock-file writes
    /// go to the ordered writer and are awaited: the driver's task waits for the disk, the
    /// runtime's thread does not.
    pub(super) async fn execute(
        &mut self,
        core: &mut Supervisor,
        action: &Action,
    ) -> Result<(), String> {
        match action {
            Action::Spawn {
                server,
                generation,
                restart_count,
            } => {
                let spec = core.spec(server).cloned().ok_or("unknown server")?;
                let (pid, mut record) = self
                    .spawn_retrying(&spec, *generation, *restart_count)
                    .await?;
                // the child is on its way: the bookkeeping below is off the restart's path
                record.restarts = core
                    .restart_history(server, now())
                    .into_iter()
                    .rev()
                    .take(lockfile::MAX_RESTART_HISTORY)
                    .rev()
                    .map(|t| unix_ms(self.clock.wall(t)))
                    .collect();
                let rec = record.clone();
                if let Err(e) = self.on_disk(move |locks| locks.write(&rec)).await {
                    // The previous record, which reserved this start's token, stays in place:
                    // recovery still finds the process. Its reservation is used up, so the next
                    // start writes one.
                    tracing::error!(target: "supervisor_core::driver", server = %server, error = %e, "cannot update the lock file; crash recovery will find this process by its reserved token");
                    record.next_token.clear();
                }
                self.records.insert(server.clone(), record);
                // started again: the operator's stop is over (after the lock write, so a crash in
                // between finds the lock file, which wins over the marker)
                if self.stop_marks.remove(server) {
                    let name = server.clone();
                    if let Err(e) = self.on_disk(move |locks| locks.clear_stopped(&name)).await {
                        tracing::warn!(target: "supervisor_core::driver", server = %server, error = %e, "cannot remove the stop marker");
                    }
                }
                core.on_spawned(now(), server, *generation, pid);
                Ok(())
            }
            Action::Signal {
                server,
                generation,
                signal,
            } => self.signal(server, *generation, *signal),
            Action::Probe { server, generation } => {
                let spec = core.spec(server).cloned().ok_or("unknown server")?;
                let Some(health) = spec.health.clone() else {
                    return Err("no health check".into());
                };
                let pid = self
                    .procs
                    .get(server)
                    .filter(|p| p.generation == *generation)
                    .map(|p| p.pid);
                let (tx, server, generation) = (self.probe_tx.clone(), server.clone(), *generation);
                tokio::spawn(async move {
                    let result = health::probe(&server, pid, &health).await;
                    let _ = tx.send((server, generation, result));
                });
                Ok(())
            }
            Action::MarkIntent {
                server,
                meant_to_run,
            } => {
                let Some(rec) = self.records.get_mut(server) else {
                    return Ok(());
                };
                if rec.meant_to_run == *meant_to_run {
                    return Ok(());
                }
                rec.meant_to_run = *meant_to_run;
                let rec = rec.clone();
                self.on_disk(move |locks| locks.write(&rec))
                    .await
                    .map_err(|e| format!("writing {}: {e}", self.locks.path(server).display()))
            }
            Action::RecordDown { server, cause } => {
                // The stop outlives this process: a daemon restart in this boot, or a takeover,
                // keeps the server down. Marker first: dying between the two leaves marker +
                // lock file, and the lock file (meant_to_run = false since the stop began, or
                // since the exit) leaves it down as well.
                self.stop_marks.insert(server.clone());
                let at = humantime::format_rfc3339_millis(wall_now()).to_string();
                let record = StopRecord {
                    version: 1,
                    boot_id: self.stop_boot_id.clone(),
                    at: at.clone(),
                    cause: *cause,
                };
                let name = server.clone();
                self.on_disk(move |locks| locks.mark_stopped(&name, &record))
                    .await
                    .map_err(|e| {
                        format!("writing {}: {e}", self.locks.stop_marker(server).display())
                    })?;
                self.records.remove(server);
                let name = server.clone();
                self.on_disk(move |locks| locks.remove(&name))
                    .await
                    .map_err(|e| format!("removing {}: {e}", self.locks.path(server).display()))?;
                core.on_down_recorded(server, *cause, &at);
                Ok(())
            }
            Action::RemoveLock { server } => {
                // Down with the node: nothing recorded, so the next daemon start applies
                // auto_start. A marker from before the server's last start (its removal failed
                // then) goes too: the stop it recorded is over.
                self.records.remove(server);
                let name = server.clone();
                self.on_disk(move |locks| locks.remove(&name))
                    .await
                    .map_err(|e| format!("removing {}: {e}", self.locks.path(server).display()))?;
                if self.stop_marks.remove(server) {
                    let name = server.clone();
                    self.on_disk(move |locks| locks.clear_stopped(&name))
                        .await
                        .map_err(|e| {
                            format!("removing {}: {e}", self.locks.stop_marker(server).display())
                        })?;
                }
                Ok(())
            }
        }
    }

    /// Runs `f` on the lock directory on the ordered writer, behind every write queued before
    /// it. The work is queued at this call; the future only waits for it.
    pub(super) fn on_disk<F>(&self, f: F) -> impl Future<Output = io::Result<()>> + Send + 'static
    where
        F: FnOnce(&LockDir) -> io::Result<()> + Send + 'static,
    {
        let locks = self.locks.clone();
        self.writer.submit(move || f(&locks))
    }

    /// [`Self::spawn`], retried for up to [`FD_RETRY_FOR`] while it fails for lack of file
    /// descriptors (`EMFILE`, `ENFILE`: a shortage of the daemon or of the system, not a fault of
    /// the server), so a passing shortage is not reported to the core, where a failed restart
    /// counts as a crash and a failed first start gives up. The run loop waits meanwhile (the
    /// server stays STARTING, which no command changes before its spawn's outcome).
    pub(super) async fn spawn_retrying(
        &mut self,
        spec: &ServerSpec,
        generation: Generation,
        restart_count: u32,
    ) -> Result<(Pid, LockRecord), String> {
        let until = now() + FD_RETRY_FOR;
        let mut pause = FD_RETRY_FIRST;
        loop {
            match self.spawn(spec, generation, restart_count).await {
                Ok(started) => return Ok(started),
                Err(e) if e.out_of_fds && now() + pause < until => {
                    tracing::warn!(target: "supervisor_core::driver", server = %spec.name, "{}: retrying in {pause:?}", e.reason);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(FD_RETRY_MAX);
                }
                Err(e) => return Err(e.reason),
            }
        }
    }

    pub(super) async fn spawn(
        &mut self,
        spec: &ServerSpec,
        generation: Generation,
        restart_count: u32,
    ) -> Result<(Pid, LockRecord), SpawnError> {
        let name = &spec.name;
        let new_token = || {
            process::new_token()
                .map_err(|e| SpawnError::other(format!("no randomness for the server token: {e}")))
        };
        let (out, err) = self.logs.open_for_child(name).map_err(|e| {
            SpawnError::io(
                format!("cannot open log {}", self.logs.stdout(name).display()),
                &e,
            )
        })?;
        // The token of this start must be on disk before the spawn, so that a daemon dying
        // right after it cannot leave a process that recovery does not know (a second copy would
        // follow). The previous start's lock file reserved it already (`next_token`, fsync'd
        // then, off this path); only a start without one writes a reservation first.
        let reserved = self
            .records
            .get(name)
            .map(|r| r.next_token.clone())
            .filter(|t| !t.is_empty());
        let mut record = LockRecord {
            version: 1,
            server: name.to_string(),
            pid: 0,
            pgid: 0,
            start_time: 0,
            boot_id: self.boot_id.clone(),
            token: String::new(),
            next_token: String::new(),
            meant_to_run: true,
            restart_count,
            started_at: humantime::format_rfc3339_millis(wall_now()).to_string(),
            restarts: Vec::new(),
        };
        let token = match reserved {
            Some(token) => token,
            None => {
                record.next_token = new_token()?;
                let rec = record.clone();
                self.on_disk(move |locks| locks.write(&rec))
                    .await
                    .map_err(|e| {
                        SpawnError::io(
                            format!(
                                "cannot record the start in {}",
                                self.locks.path(name).display()
                            ),
                            &e,
                        )
                    })?;
                self.records.insert(name.clone(), record.clone());
                std::mem::take(&mut record.next_token)
            }
        };
        let pid = process::spawn(spec, &token, out, err, None)
            .map_err(|e| SpawnError::io(format!("executing {:?}", spec.command.program()), &e))?;
        // The child is unreaped until we reap it, so this pidfd is surely its.
        let pidfd = match PidFd::open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                // without a pidfd it cannot be watched: kill it and reap it here (no zombie)
                let _ = process::signal_group(pid, Signal::Kill);
                process::reap_blocking(pid);
                return Err(SpawnError::io(format!("pidfd_open({pid})"), &e));
            }
        };
        let start_time = match process::proc_stat(pid) {
            Ok(st) => st.start_time,
            Err(e) => {
                // without its start time it could never be adopted again: do not run it
                let _ = process::signal_group(pid, Signal::Kill);
                process::reap_blocking(pid);
                return Err(SpawnError::io(format!("reading /proc/{pid}/stat"), &e));
            }
        };
        self.watch(name.clone(), generation, pid, pid, pidfd, true);
        record.pid = pid;
        record.pgid = pid;
        record.start_time = start_time;
        record.token = token;
        record.next_token = new_token().unwrap_or_default();
        Ok((pid, record))
    }

    pub(super) fn watch(
        &mut self,
        server: ServerName,
        generation: Generation,
        pid: Pid,
        pgid: Pid,
        pidfd: Arc<PidFd>,
        child: bool,
    ) {
        let tx = self.exit_tx.clone();
        let fd = pidfd.clone();
        let s = server.clone();
        let watcher = tokio::spawn(async move {
            fd.exited().await;
            let _ = tx.send((s, generation));
        });
        if let Some(old) = self.procs.insert(
            server,
            Proc {
                generation,
                pid,
                pgid,
                pidfd,
                child,
                watcher,
            },
        ) {
            old.watcher.abort();
        }
    }

    pub(super) fn signal(
        &mut self,
        server: &ServerName,
        generation: Generation,
        signal: Signal,
    ) -> Result<(), String> {
        let Some(p) = self
            .procs
            .get(server)
            .filter(|p| p.generation == generation)
        else {
            return Ok(());
        };
        if !p.child && p.pidfd.has_exited() {
            // an adopted leader that died may already be reaped by its parent: its group id
            // could name someone else's group now
            return Ok(());
        }
        process::signal_group(p.pgid, signal)
            .map_err(|e| format!("signal {signal:?} to process group {}: {e}", p.pgid))
    }

    /// The process of (server, generation) exited: kill what is left of its group, reap it.
    pub(super) fn reap(&mut self, server: &ServerName, generation: Generation) -> Option<Exit> {
        let p = self
            .procs
            .get(server)
            .filter(|p| p.generation == generation)?;
        let exit = if p.child {
            // The zombie still holds its PID, so the group id is surely ours: kill any
            // grandchildren left behind before reaping frees the number.
            let _ = process::signal_group(p.pgid, Signal::Kill);
            p.pidfd.reap()
        } else {
            // Not our child: its parent may have reaped it and freed the group id, so only
            // the token sweep below may find what is left.
            Exit::Unknown
        };
        // Descendants that left the process group (setsid) or outlived an adopted leader still
        // carry this start's token: sweep for them once the driver has acted (a restart is not
        // held up by the /proc scan).
        if let Some(rec) = self.records.get(server) {
            self.sweeps.push((server.clone(), rec.token.clone()));
        }
        self.procs.remove(server);
        Some(exit)
    }

    pub(super) fn snapshot(&self, core: &Supervisor) -> Snapshot {
        let servers = core
            .servers()
            .filter_map(|view| {
                let spec = core.spec(&view.name)?.clone();
                let pid = self
                    .procs
                    .get(&view.name)
                    .filter(|p| p.generation == view.generation && view.state.has_process())
                    .map(|p| p.pid);
                let status = ServerStatus {
                    pid,
                    since: self.clock.wall(view.since),
                    stdout_log: self.logs.stdout(&view.name),
                    stderr_log: self.logs.stderr(&view.name),
                    spec,
                    view,
                };
                Some((status.view.name.clone(), status))
            })
            .collect();
        Snapshot { servers }
    }
}
