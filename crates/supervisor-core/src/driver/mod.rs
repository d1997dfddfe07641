//! The tokio driver: one task owns the [`Supervisor`] core, executes its actions (spawn, signal,
//! probe, lock files) and feeds every result back. Other tasks reach it through a
//! [`SupervisorHandle`].
//!
//! Exits are learned from the kernel: each process's pidfd is registered with tokio's reactor and
//! becomes readable when the process exits (DESIGN §4.4: no polling of `/proc`).
//!
//! Lock files, intent marks and stop markers are written (with their `fsync`s) by an
//! [`OrderedWriter`] thread, in the order the driver submits them, and the driver's task awaits
//! each before acting on it: a stalled disk holds the supervisor, never the runtime's thread
//! that also carries the standby heartbeats and the HA link.
//!
//! Files: `handle.rs` (what other tasks hold), `recovery.rs` (crash recovery carried out; the
//! decision is [`crate::core::decide`]), `executor.rs` (actions carried out), `run.rs` (the loop).

mod executor;
mod handle;
mod health;
pub mod lockfile;
pub mod logs;
mod process;
mod recovery;
mod run;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use self::executor::{Clock, Executor};
pub use self::handle::{Gone, QueueError, SupervisorHandle};
use self::lockfile::LockDir;
use self::logs::{LogDir, Rotator};
use crate::core::{Pid, ServerView, Supervisor};
pub use crate::os::{OrderedWriter, PinnedProcess, start_time_of, unix_ms, wall_now};
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
    /// Keep every server that went down on purpose (an operator's stop, or an exit with a
    /// success code: its `servers/NAME.stopped` marker) down, whatever `auto_start` says and
    /// whatever boot the marker is of: set at a takeover, where the node manager pair is one
    /// node manager. Off (a daemon start): such a server stays down when its marker is of this
    /// boot (a daemon restart, `kill -9` included, does not undo an operator's stop); after a
    /// reboot its marker is dropped and `auto_start` decides.
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
    /// The thread that writes lock files could not be started.
    #[error("cannot start the lock-file writer thread")]
    Writer(#[source] std::io::Error),
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
    let writer = OrderedWriter::start("nm-lock-writer").map_err(DriverError::Writer)?;
    start_with_writer(config, writer)
}

/// [`start`], with lock files, intent marks and stop markers written by `writer`: a
/// daemon can share one writer (one order) between its components, and a test can stall it
/// ([`OrderedWriter::stall`]) as a disk that stops answering.
///
/// Every write is awaited by the driver's task before it acts on it (a start's token is durable
/// before its process exists), never by the runtime's thread.
///
/// # Errors
/// See [`DriverError`]; nothing was started.
pub fn start_with_writer(
    config: SupervisorConfig,
    writer: OrderedWriter,
) -> Result<(SupervisorHandle, tokio::task::JoinHandle<()>), DriverError> {
    let dd = |source| DriverError::DataDir {
        path: config.data_dir.clone(),
        source,
    };
    crate::os::private_data_dir(&config.data_dir).map_err(dd)?;
    let locks = LockDir::open(&config.data_dir).map_err(dd)?;
    let logs = LogDir::open(&config.data_dir).map_err(dd)?;
    let boot = process::boot_ids().map_err(DriverError::BootId)?;
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
        boot_id: boot.kernel,
        stop_boot_id: boot.stops,
        procs: HashMap::new(),
        records: HashMap::new(),
        stop_marks: HashSet::new(),
        sweeps: Vec::new(),
        exit_tx,
        probe_tx,
        clock: Clock {
            t0,
            wall0: wall_now(),
        },
        writer,
    };

    recovery::recover(&config, &mut exec, &mut core, t0);

    let (tx, rx) = mpsc::channel(64);
    let snapshot = Arc::new(exec.snapshot(&core));
    let (status_tx, status_rx) = watch::channel(snapshot);
    let (started_tx, started_rx) = watch::channel(false);
    let task = tokio::spawn(run::run(
        core, exec, rx, exit_rx, probe_rx, status_tx, started_tx,
    ));
    Ok((
        SupervisorHandle {
            tx,
            status: status_rx,
            started: started_rx,
        },
        task,
    ))
}

/// The driver's one clock read: tokio's, so paused-time tests control it.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
