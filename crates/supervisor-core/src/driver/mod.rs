//! The tokio driver: one task owns the [`Supervisor`] core, executes its actions (spawn, signal,
//! probe, lock files) and feeds every result back. Other tasks reach it through a
//! [`SupervisorHandle`].
//!
//! Exits are learned from the kernel: each process's pidfd is registered with tokio's reactor and
//! becomes readable when the process exits (DESIGN §4.4: no polling of `/proc`).

mod health;
pub mod lockfile;
pub mod logs;
mod process;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};

use self::lockfile::{LockDir, LockRecord};
use self::logs::{LogDir, Rotator};
use self::process::PidFd;
use crate::core::{
    Accepted, Action, Command, CommandError, Event, Exit, Generation, Pid, ProbeResult, Recovered,
    ServerState, ServerView, Signal, Supervisor,
};
pub use crate::os::{PinnedProcess, start_time_of, unix_ms, wall_now};
use crate::spec::{ServerName, ServerSpec};

/// What the driver needs to run.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The data directory: `servers/` (lock files) and `logs/` are created in it.
    pub data_dir: PathBuf,
    /// Restart servers that died while the daemon was down (WebLogic `CrashRecoveryEnabled`,
    /// default on). Off: only `auto_start` decides what starts. Live servers from lock files are
    /// adopted either way, so no second copy is ever started beside one.
    pub crash_recovery: bool,
    /// Keep servers an operator stopped stopped (their `servers/NAME.stopped` marker), whatever
    /// `auto_start` says: set at a takeover, where the node manager pair is one node manager and
    /// an operator's stop must not be undone. Off (a daemon start): markers are dropped and
    /// `auto_start` decides, as after a reboot.
    pub keep_operator_stops: bool,
    /// Servers whose start another component decides (the HA-managed servers of an HA pair,
    /// started only on the primary): crash recovery never restarts one that died while the
    /// daemon was down. A live one is still adopted.
    pub no_crash_recovery: Vec<String>,
    /// The servers.
    pub servers: Vec<Arc<ServerSpec>>,
}

/// A failure to start the driver. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The data directory (or a directory in it) could not be created.
    #[error("cannot use data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The boot id could not be read (needed to trust lock files).
    #[error("cannot read the boot id from /proc/sys/kernel/random/boot_id")]
    BootId(#[source] std::io::Error),
    /// inotify could not be initialised (log rotation).
    #[error("cannot initialise inotify for log rotation")]
    Inotify(#[source] std::io::Error),
}

/// One server as the driver publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStatus {
    /// The core's view.
    pub view: ServerView,
    /// The PID of its live process, if any.
    pub pid: Option<Pid>,
    /// When it entered its state, wall clock.
    pub since: SystemTime,
    /// Its spec.
    pub spec: Arc<ServerSpec>,
    /// Its stdout log.
    pub stdout_log: PathBuf,
    /// Its stderr log.
    pub stderr_log: PathBuf,
}

/// All servers, published after every change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// By name.
    pub servers: BTreeMap<ServerName, ServerStatus>,
}

/// What a stop-everything finished with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Servers that were stopped.
    pub stopped: Vec<String>,
    /// Servers left running.
    pub left_running: Vec<String>,
}

type CommandResult = Result<Accepted, CommandError>;

enum Request {
    Command {
        server: String,
        command: Command,
        reply: oneshot::Sender<Result<Accepted, CommandError>>,
    },
    Shutdown {
        stop_servers: bool,
        reply: oneshot::Sender<Stopped>,
    },
}

/// A cloneable handle to the driver task.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    tx: mpsc::Sender<Request>,
    status: watch::Receiver<Arc<Snapshot>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Command {
                server, command, ..
            } => write!(f, "Command({server}, {command:?})"),
            Self::Shutdown { stop_servers, .. } => {
                write!(f, "Shutdown(stop_servers={stop_servers})")
            }
        }
    }
}

/// The driver task is gone (it shut down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the supervisor has shut down")]
pub struct Gone;

impl SupervisorHandle {
    /// Sends an operator command and returns the core's answer.
    ///
    /// # Errors
    /// `Err(Gone)` when the driver has shut down; `Ok(Err(..))` when the core refused it.
    pub async fn command(
        &self,
        server: &str,
        command: Command,
    ) -> Result<Result<Accepted, CommandError>, Gone> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Command {
                server: server.to_owned(),
                command,
                reply,
            })
            .await
            .map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }

    /// Stops the driver. With `stop_servers`, every server is stopped first (SIGTERM, SIGKILL after
    /// its `stop_timeout`) and the answer comes once all are down; without, servers keep running
    /// and their lock files stay, so the next daemon adopts them.
    ///
    /// # Errors
    /// `Gone` when the driver already shut down.
    pub async fn shutdown(&self, stop_servers: bool) -> Result<Stopped, Gone> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Shutdown {
                stop_servers,
                reply,
            })
            .await
            .map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }

    /// The latest snapshot.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.status.borrow().clone()
    }

    /// A receiver that sees every new snapshot (for waiting on a state).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.status.clone()
    }
}

/// Starts the driver on the current tokio runtime: creates the data directories, runs crash
/// recovery for every server, then starts what should run.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use supervisor_core::{Command, ServerSpec, ServerState, SupervisorConfig, driver};
///
/// let data = tempfile::tempdir()?;
/// let spec = ServerSpec::new("sleeper", &["sleep", "60"])?;
/// let (sup, task) = driver::start(SupervisorConfig {
///     data_dir: data.path().to_owned(),
///     crash_recovery: true,
///     keep_operator_stops: false,
///     no_crash_recovery: vec![],
///     servers: vec![Arc::new(spec)],
/// })?;
/// // every change publishes a snapshot: wait on a condition, not on time
/// let mut snapshots = sup.subscribe();
/// snapshots.wait_for(|s| s.servers.values().all(|v| v.view.state == ServerState::Running)).await?;
/// sup.command("sleeper", Command::Stop).await??;
/// snapshots.wait_for(|s| s.servers.values().all(|v| v.view.state == ServerState::Shutdown)).await?;
/// sup.shutdown(false).await?; // nothing runs any more
/// task.await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// See [`DriverError`]; nothing was started.
pub fn start(
    config: SupervisorConfig,
) -> Result<(SupervisorHandle, tokio::task::JoinHandle<()>), DriverError> {
    let dd = |source| DriverError::DataDir {
        path: config.data_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(dd)?;
    let locks = LockDir::open(&config.data_dir).map_err(dd)?;
    let logs = LogDir::open(&config.data_dir).map_err(dd)?;
    let boot_id = process::boot_id().map_err(DriverError::BootId)?;
    process::ensure_sigchld_not_ignored();
    let rotator = Rotator::start().map_err(DriverError::Inotify)?;
    let t0 = now();
    let mut core = Supervisor::new(t0, config.servers.iter().cloned());
    let (exit_tx, exit_rx) = mpsc::unbounded_channel();
    let (probe_tx, probe_rx) = mpsc::unbounded_channel();
    let mut exec = Executor {
        locks,
        logs,
        rotator,
        boot_id,
        procs: HashMap::new(),
        records: HashMap::new(),
        stop_marks: std::collections::HashSet::new(),
        sweeps: Vec::new(),
        exit_tx,
        probe_tx,
        clock: Clock {
            t0,
            wall0: wall_now(),
        },
    };

    let configured: std::collections::HashSet<&str> =
        config.servers.iter().map(|s| s.name.as_str()).collect();
    for stray in exec.locks.names() {
        if !configured.contains(stray.as_str()) {
            tracing::warn!(server = %stray, "lock file of a server that is not configured: left alone (its process, if any, is not touched)");
        }
    }
    for spec in &config.servers {
        let name = &spec.name;
        // A live process of ours is adopted even without crash recovery: starting a second copy
        // beside it would be worse. `crash_recovery = false` only stops nm from restarting what
        // died while it was down (auto_start alone decides then).
        let rec = exec.locks.recover(name, &exec.boot_id);
        if let (Some(pidfd), Some(record)) = (rec.pidfd, rec.record.clone()) {
            exec.watch(name.clone(), 1, record.pid, record.pgid, pidfd, false);
        }
        if let (Recovered::Gone { .. }, Some(record)) = (&rec.found, rec.record.as_ref())
            && record.boot_id == exec.boot_id
        {
            // its leader is gone; anything that still carries its start token (or the token of
            // a later start that died before its record was written) is left over
            let n = process::kill_leftovers(&record.token)
                + process::kill_leftovers(&record.next_token);
            if n > 0 {
                tracing::info!(server = %name, killed = n, "killed processes left behind by its dead leader");
            }
        }
        if let Some(record) = rec.record {
            exec.records.insert(name.clone(), record);
        }
        let stopped_marker = exec.locks.stop_marker(name).exists();
        let found = match rec.found {
            Recovered::Nothing if stopped_marker && config.keep_operator_stops => {
                exec.stop_marks.insert(name.clone());
                Recovered::StoppedByOperator
            }
            Recovered::Gone { detail, .. }
                if !config.crash_recovery
                    || config.no_crash_recovery.iter().any(|n| n == name.as_str()) =>
            {
                let why = if config.crash_recovery {
                    "its start is decided elsewhere (HA-managed)"
                } else {
                    "crash_recovery is off"
                };
                tracing::info!(server = %name, "{detail}; {why}: not restarted for that");
                if let Err(e) = exec.locks.remove(name) {
                    tracing::warn!(server = %name, error = %e, "cannot remove stale lock file");
                }
                exec.records.remove(name);
                Recovered::Nothing
            }
            found => found,
        };
        if stopped_marker && found != Recovered::StoppedByOperator {
            // a lock file (the server ran after the stop) or a daemon start: the stop is over
            if let Err(e) = exec.locks.clear_stopped(name) {
                tracing::warn!(server = %name, error = %e, "cannot remove the operator-stop marker");
            }
        }
        match &found {
            Recovered::Nothing | Recovered::StoppedByOperator => {}
            Recovered::Adopted { pid, .. } => {
                tracing::info!(server = %name, pid, "adopted running server")
            }
            Recovered::Gone {
                detail,
                meant_to_run,
                ..
            } => {
                tracing::warn!(server = %name, meant_to_run, "{detail}");
            }
            Recovered::Untrusted { detail } => tracing::error!(server = %name, "{detail}"),
        }
        if let Some(rec) = exec.records.get(name) {
            let wall = exec.clock.wall(t0);
            let ages: Vec<std::time::Duration> = rec
                .restarts
                .iter()
                .map(|&ms| {
                    wall.duration_since(
                        SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                    )
                    .unwrap_or_default()
                })
                .collect();
            core.on_restart_history(t0, name, &ages);
        }
        exec.rotator.watch(exec.logs.stdout(name), spec.log.clone());
        exec.rotator.watch(exec.logs.stderr(name), spec.log.clone());
        core.on_recovered(t0, name, found);
    }

    let (tx, rx) = mpsc::channel(64);
    let snapshot = Arc::new(exec.snapshot(&core));
    let (status_tx, status_rx) = watch::channel(snapshot);
    let task = tokio::spawn(run(core, exec, rx, exit_rx, probe_rx, status_tx));
    Ok((
        SupervisorHandle {
            tx,
            status: status_rx,
        },
        task,
    ))
}

struct Proc {
    generation: Generation,
    pid: Pid,
    pgid: Pid,
    pidfd: Arc<PidFd>,
    /// Our child (spawned by this daemon), so we reap it and get its status; adopted processes
    /// are reaped by their parent.
    child: bool,
    watcher: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy)]
struct Clock {
    t0: Instant,
    wall0: SystemTime,
}

impl Clock {
    fn wall(&self, at: Instant) -> SystemTime {
        if at >= self.t0 {
            self.wall0 + (at - self.t0)
        } else {
            // instants before the daemon started (restarts seeded from a lock file)
            self.wall0 - (self.t0 - at)
        }
    }
}

struct Executor {
    locks: LockDir,
    logs: LogDir,
    rotator: Rotator,
    boot_id: String,
    procs: HashMap<ServerName, Proc>,
    records: HashMap<ServerName, LockRecord>,
    /// Servers whose operator-stop marker may exist (removed at their next start).
    stop_marks: std::collections::HashSet<ServerName>,
    /// Start tokens of processes that just exited, to sweep for leftovers.
    sweeps: Vec<(ServerName, String)>,
    exit_tx: mpsc::UnboundedSender<(ServerName, Generation)>,
    probe_tx: mpsc::UnboundedSender<(ServerName, Generation, ProbeResult)>,
    clock: Clock,
}

impl Executor {
    /// Runs one action; `Err` is fed back to the core as `on_action_failed`.
    fn execute(&mut self, core: &mut Supervisor, action: &Action) -> Result<(), String> {
        match action {
            Action::Spawn {
                server,
                generation,
                restart_count,
            } => {
                let spec = core.spec(server).cloned().ok_or("unknown server")?;
                let (pid, mut record) = self.spawn(&spec, *generation, *restart_count)?;
                // the child is on its way: the bookkeeping below is off the restart's path
                record.restarts = core
                    .restart_history(server, now())
                    .into_iter()
                    .rev()
                    .take(lockfile::MAX_RESTART_HISTORY)
                    .rev()
                    .map(|t| unix_ms(self.clock.wall(t)))
                    .collect();
                if let Err(e) = self.locks.write(&record) {
                    // The previous record, which reserved this start's token, stays in place:
                    // recovery still finds the process. Its reservation is used up, so the next
                    // start writes one.
                    tracing::error!(server = %server, error = %e, "cannot update the lock file; crash recovery will find this process by its reserved token");
                    record.next_token.clear();
                }
                self.records.insert(server.clone(), record);
                // started again: the operator's stop is over (after the lock write, so a crash in
                // between finds the lock file, which wins over the marker)
                if self.stop_marks.remove(server) {
                    if let Err(e) = self.locks.clear_stopped(server) {
                        tracing::warn!(server = %server, error = %e, "cannot remove the operator-stop marker");
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
                self.locks
                    .write(&rec)
                    .map_err(|e| format!("writing {}: {e}", self.locks.path(server).display()))
            }
            Action::RemoveLock { server } => {
                // The operator's stop outlives this process: a takeover keeps the server down.
                // Marker first: dying between the two leaves marker + lock file, and the lock
                // file (meant_to_run = false since the stop began) leaves it down as well.
                self.stop_marks.insert(server.clone());
                self.locks.mark_stopped(server).map_err(|e| {
                    format!("writing {}: {e}", self.locks.stop_marker(server).display())
                })?;
                self.records.remove(server);
                self.locks
                    .remove(server)
                    .map_err(|e| format!("removing {}: {e}", self.locks.path(server).display()))
            }
        }
    }

    fn spawn(
        &mut self,
        spec: &ServerSpec,
        generation: Generation,
        restart_count: u32,
    ) -> Result<(Pid, LockRecord), String> {
        let name = &spec.name;
        let new_token =
            || process::new_token().map_err(|e| format!("no randomness for the server token: {e}"));
        let (out, err) = self
            .logs
            .open_for_child(name)
            .map_err(|e| format!("cannot open log {}: {e}", self.logs.stdout(name).display()))?;
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
                self.locks.write(&record).map_err(|e| {
                    format!(
                        "cannot record the start in {}: {e}",
                        self.locks.path(name).display()
                    )
                })?;
                self.records.insert(name.clone(), record.clone());
                std::mem::take(&mut record.next_token)
            }
        };
        let pid = process::spawn(spec, &token, out, err, None)
            .map_err(|e| format!("executing {:?}: {e}", spec.command.program()))?;
        // The child is unreaped until we reap it, so this pidfd is surely its.
        let pidfd = match PidFd::open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                // without a pidfd it cannot be watched: kill it and reap it here (no zombie)
                let _ = process::signal_group(pid, Signal::Kill);
                process::reap_blocking(pid);
                return Err(format!("pidfd_open({pid}): {e}"));
            }
        };
        let start_time = match process::proc_stat(pid) {
            Ok(st) => st.start_time,
            Err(e) => {
                // without its start time it could never be adopted again: do not run it
                let _ = process::signal_group(pid, Signal::Kill);
                process::reap_blocking(pid);
                return Err(format!("reading /proc/{pid}/stat: {e}"));
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

    fn watch(
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

    fn signal(
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
    fn reap(&mut self, server: &ServerName, generation: Generation) -> Option<Exit> {
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

    fn snapshot(&self, core: &Supervisor) -> Snapshot {
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

async fn run(
    mut core: Supervisor,
    mut exec: Executor,
    mut requests: mpsc::Receiver<Request>,
    mut exits: mpsc::UnboundedReceiver<(ServerName, Generation)>,
    mut probes: mpsc::UnboundedReceiver<(ServerName, Generation, ProbeResult)>,
    status: watch::Sender<Arc<Snapshot>>,
) {
    let mut shutdown: Option<(oneshot::Sender<Stopped>, Stopped)> = None;
    // Answers wait until the snapshot shows what the command did, so a caller that reads the
    // snapshot after the answer never sees the state from before it.
    let mut replies: Vec<(oneshot::Sender<CommandResult>, CommandResult)> = vec![];
    loop {
        // act on everything the core decided, feeding results back, then fire due timers
        loop {
            while let Some(action) = core.poll_action() {
                if let Err(reason) = exec.execute(&mut core, &action) {
                    tracing::warn!(?action, "{reason}");
                    core.on_action_failed(now(), &action, &reason);
                }
            }
            match core.next_deadline() {
                Some(d) if d <= now() => core.on_timeout(now()),
                _ => break,
            }
        }
        for (server, token) in exec.sweeps.drain(..) {
            // a moment later, so the /proc scan does not compete with a replacement's start for
            // the CPU (what it looks for is outside the group and already orphaned)
            tokio::spawn(async move {
                tokio::time::sleep(SWEEP_AFTER).await;
                let _ = tokio::task::spawn_blocking(move || {
                    let n = process::kill_leftovers(&token);
                    if n > 0 {
                        tracing::info!(server = %server, killed = n, "killed processes the server left behind");
                    }
                })
                .await;
            });
        }
        let mut changed = false;
        while let Some(ev) = core.poll_event() {
            log_event(&ev);
            changed = true;
        }
        if changed || !replies.is_empty() {
            status.send_replace(Arc::new(exec.snapshot(&core)));
        }
        for (reply, result) in replies.drain(..) {
            let _ = reply.send(result);
        }
        if let Some((_, stopped)) = &shutdown
            && core.servers().all(|v| !v.state.has_process())
        {
            let stopped = stopped.clone();
            if let Some((reply, _)) = shutdown.take() {
                let _ = reply.send(stopped);
            }
            return;
        }
        let deadline = core.next_deadline();
        tokio::select! {
            Some((server, generation)) = exits.recv() => {
                if let Some(exit) = exec.reap(&server, generation) {
                    core.on_exited(now(), &server, generation, exit);
                }
            }
            Some((server, generation, result)) = probes.recv() => core.on_probe(now(), &server, generation, result),
            req = requests.recv() => match req {
                Some(Request::Command { server, command, reply }) => {
                    if shutdown.is_some() {
                        // stopping everything: a new start would keep the shutdown waiting
                        // forever. Dropping the reply answers `Gone`.
                        drop(reply);
                    } else {
                        replies.push((reply, core.on_command(now(), &server, command)));
                    }
                }
                Some(Request::Shutdown { reply, .. }) if shutdown.is_some() => drop(reply), // one at a time
                Some(Request::Shutdown { stop_servers, reply }) => {
                    let mut stopped = Stopped::default();
                    for v in core.servers().collect::<Vec<_>>() {
                        let pending_restart = v.state == ServerState::FailedRestarting;
                        let affected = v.state.has_process() || (stop_servers && pending_restart);
                        if !affected {
                            continue;
                        }
                        if stop_servers {
                            let _ = core.on_command(now(), v.name.as_str(), Command::Stop);
                            stopped.stopped.push(v.name.to_string());
                        } else {
                            stopped.left_running.push(v.name.to_string());
                        }
                    }
                    if stop_servers {
                        shutdown = Some((reply, stopped));
                    } else {
                        let _ = reply.send(stopped);
                        return; // servers keep running; their lock files stay for the next daemon
                    }
                }
                None => return, // every handle dropped
            },
            () = sleep_until(deadline) => core.on_timeout(now()),
        }
    }
}

fn log_event(ev: &Event) {
    let (server, from, to, reason) = (
        ev.server.as_str(),
        ev.from.as_str(),
        ev.to.as_str(),
        ev.reason.as_str(),
    );
    match ev.to {
        ServerState::Failed
        | ServerState::FailedRestarting
        | ServerState::FailedNotRestartable
        | ServerState::Unknown => {
            tracing::warn!(server, from, to, "{reason}");
        }
        _ => tracing::info!(server, from, to, "{reason}"),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// How long after an exit the token sweep runs.
const SWEEP_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// The driver's one clock read: tokio's, so paused-time tests control it.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
