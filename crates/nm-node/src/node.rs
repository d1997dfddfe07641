//! A running node: [`Node::start`] assembles it from its config, [`Node::stop_requested`] says
//! when something inside asks it to stop, [`Node::shutdown`] stops it in order. [`NodeHandle`]
//! reads it while it runs.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nm_api::{ShutdownReply, ShutdownRequest, TakeoverInfo};
use replication::driver::{ActiveConfig, ActiveHandle};
use supervisor_core::driver::lockfile::write_atomic;
use supervisor_core::{Accepted, Command, CommandError, Snapshot, SupervisorHandle};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{NodeConfig, StandbyConfig};
use crate::files::{self, DataDirLock, io};
use crate::{api, rules};

/// How long in-flight requests (e.g. a `server log --follow`) may hold up the exit.
const DRAIN: Duration = Duration::from_secs(2);

/// The exit status of a daemon after an HA reset (the StorNext HA Manager): the HA-managed servers
/// were killed, the smith log says why. A service manager should restart the daemon (the node
/// rejoins as secondary).
pub const EXIT_HA_RESET: u8 = 86;

/// Why a node could not start or stop cleanly. At start, nothing was started: no server, no
/// listener, no standby.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Another node manager holds the data directory's lock.
    #[error(
        "another nm-daemon{} is already running with data_dir {}",
        holder.as_ref().map_or_else(String::new, |h| format!(" (pid {h})")),
        data_dir.display()
    )]
    AlreadyRunning {
        /// The data directory.
        data_dir: PathBuf,
        /// The PID `nm.lock` names, when it could be read.
        holder: Option<String>,
    },
    /// A file, directory or address of the node could not be used.
    #[error("{what}")]
    Io {
        /// What was being done, naming the path or address and the config key.
        what: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The data directory, or a directory nm keeps in it, is not the daemon's own: another user
    /// owns it or may write in it (docs/operations.md, "What nm requires of data_dir"). Nothing
    /// in it was created or changed.
    #[error("data_dir {0}")]
    UnsafeDataDir(String),
    /// A key or token file is unusable (owner, mode, length, empty).
    #[error("{0}")]
    Key(String),
    /// `ha.json` is unusable, or the HA manager could not start.
    #[error("cannot start the HA manager")]
    Ha(#[source] ha_modes::driver::StartError),
    /// The supervisor could not start (data directory, lock files, inotify).
    #[error("cannot start the supervisor")]
    Supervisor(#[source] supervisor_core::driver::DriverError),
    /// A standby found no data directory: the active node manager creates it.
    #[error("data directory {} does not exist: the active node manager creates it", .0.display())]
    NoDataDir(PathBuf),
    /// `--standby` without `standby_port` in the config.
    #[error("the standby node manager needs standby_port in {}", .0.display())]
    NoStandbyPort(PathBuf),
}

/// How this process came to be the node's active node manager.
#[derive(Debug)]
pub enum Origin {
    /// A normal start: it holds the data directory's lock from [`crate::claim_data_dir`].
    Fresh(DataDirLock),
    /// A standby's takeover ([`crate::standby::watch`]): the kernel handed it the lock.
    Takeover(Takeover),
}

/// A standby's takeover, as the new active starts from it.
#[derive(Debug)]
pub struct Takeover {
    /// The data directory's lock, now ours.
    pub lock: DataDirLock,
    /// What the API shows as `last_takeover`.
    pub info: TakeoverInfo,
    /// Takeovers since the pair started, this one included.
    pub takeovers: u64,
    /// When the pair started (unix ms), when known.
    pub pair_started_ms: Option<u64>,
}

/// How the standby node manager is launched when `standby_port` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

impl StandbyCommand {
    /// This executable with `--config FILE --standby` (what `nm-daemon` and the embedding example
    /// understand). After a package upgrade replaced the executable, `/proc/self/exe` still
    /// reaches the running one (same link protocol).
    ///
    /// # Errors
    /// The executable cannot be found.
    pub fn this_program(cfg: &NodeConfig) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let program = if exe.to_string_lossy().ends_with(" (deleted)") {
            PathBuf::from("/proc/self/exe")
        } else {
            exe
        };
        Ok(Self {
            program,
            args: vec![
                "--config".into(),
                cfg.path.clone().into_os_string(),
                "--standby".into(),
            ],
        })
    }
}

/// Options of [`Node::start_with`].
#[derive(Debug, Default, Clone)]
pub struct StartOptions {
    /// The standby node manager's command (with `standby_port`); `None`:
    /// [`StandbyCommand::this_program`].
    pub standby_command: Option<StandbyCommand>,
}

/// Why a node stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A signal to the process (`SIGTERM`, `SIGINT`): servers keep running, for the next daemon to
    /// adopt.
    Signal(&'static str),
    /// `POST /v1/shutdown` (`nm-cli shutdown`), answered once the node has stopped.
    Api(ShutdownRequest),
    /// The HA manager ended: `clean` when it did its own HA reset (smith log line written,
    /// HA-managed servers killed), not when it failed.
    HaEnded {
        /// Why.
        why: String,
        /// Whether the reset's effects are done.
        clean: bool,
    },
}

/// How a node ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeExit {
    /// An orderly stop.
    Stopped,
    /// An HA reset: the process should exit with [`EXIT_HA_RESET`].
    HaReset(String),
}

/// A running node. Drop it only through [`Node::shutdown`]: dropping it leaves its tasks running
/// on the runtime.
#[derive(Debug)]
pub struct Node {
    handle: NodeHandle,
    lock: DataDirLock,
    sup_task: JoinHandle<()>,
    ha_task: Option<JoinHandle<ha_modes::driver::HaExit>>,
    shutdown_rx: mpsc::Receiver<ShutdownRequest>,
    reply_tx: Option<oneshot::Sender<ShutdownReply>>,
    stop_http: watch::Sender<bool>,
    http: Vec<JoinHandle<std::io::Result<()>>>,
    sock_path: PathBuf,
}

/// A cloneable view of a running node: status, servers, commands, the HA manager.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub(crate) cfg: Arc<NodeConfig>,
    pub(crate) pid: i32,
    pub(crate) started_at: SystemTime,
    /// The bound API address (`listen = "127.0.0.1:0"` shows the port it got).
    pub(crate) listen: String,
    pub(crate) sup: SupervisorHandle,
    pub(crate) pair: Option<ActiveHandle>,
    pub(crate) last_takeover: Option<TakeoverInfo>,
    pub(crate) ha: Option<ha_modes::driver::HaHandle>,
}

impl Node {
    /// Starts a node the usual way: creates and locks its data directory
    /// ([`crate::claim_data_dir`]), then [`Node::start_with`] default options.
    ///
    /// # Errors
    /// As [`crate::claim_data_dir`] and [`Node::start_with`].
    pub async fn start(cfg: NodeConfig) -> Result<Self, NodeError> {
        let lock = files::claim_data_dir(&cfg)?;
        Self::start_with(cfg, Origin::Fresh(lock), StartOptions::default()).await
    }

    /// Starts the node's active node manager on the current tokio runtime: checks its keys and
    /// state files and binds every listener first, then starts the supervisor (recovering or
    /// adopting the servers), the HA manager and the API, and launches the standby last.
    ///
    /// At a takeover a listener that cannot be bound is logged and skipped (the servers need a
    /// node manager more than a port); at a fresh start it fails the start.
    ///
    /// # Errors
    /// [`NodeError`]; nothing was started.
    pub async fn start_with(
        cfg: NodeConfig,
        origin: Origin,
        options: StartOptions,
    ) -> Result<Self, NodeError> {
        let cfg = Arc::new(cfg);
        let (lock, takeover) = match origin {
            Origin::Fresh(lock) => (lock, None),
            Origin::Takeover(t) => (t.lock, Some((t.info, t.takeovers, t.pair_started_ms))),
        };
        let is_takeover = takeover.is_some();
        // nm.lock names the active, for people and for the "already running" message
        let pid_file = cfg.data_dir.join("nm.lock");
        if let Err(e) = write_atomic(&pid_file, format!("{}\n", std::process::id()).as_bytes()) {
            tracing::warn!(path = %pid_file.display(), error = %e, "cannot record the active's PID");
        }
        files::raise_nofile();
        let ha_ready = bind_ha(&cfg, is_takeover).await?;
        let token = files::load_or_create_token(&cfg)?;
        let standby_key = match cfg.standby {
            Some(_) => Some(files::load_or_create_standby_key(&cfg.data_dir)?),
            None => None,
        };
        // Bind before starting anything, so a busy address starts no server. At a takeover the
        // previous active has exited (its sockets are closed) before we get here; should its
        // port still be taken, the new active serves on the Unix socket alone.
        let tcp = match tokio::net::TcpListener::bind(cfg.listen).await {
            Ok(l) => Some(l),
            Err(e) if is_takeover => {
                tracing::error!(listen = %cfg.listen, error = %e, "cannot listen on the API address after the takeover: serving on the Unix socket only");
                None
            }
            Err(e) => {
                let what = format!(
                    "cannot listen on {} (listen in {})",
                    cfg.listen,
                    cfg.path.display()
                );
                return Err(io(what, e));
            }
        };
        let sock_path = cfg.data_dir.join("nm.sock");
        // We hold the instance lock: a socket file left there is stale.
        let _ = std::fs::remove_file(&sock_path);
        let unix = match files::bind_socket(&sock_path) {
            Ok(l) => Some(l),
            Err(e) if is_takeover => {
                tracing::error!("{e}: serving on the TCP address only");
                None
            }
            Err(e) => return Err(e),
        };
        let standby_listener = match cfg.standby {
            Some(pair) => match replication::driver::bind_standby_port(pair.port).await {
                Ok(l) => Some(l),
                Err(e) if !is_takeover => {
                    let what = format!(
                        "cannot listen on the standby port 127.0.0.1:{} (standby_port in {})",
                        pair.port,
                        cfg.path.display()
                    );
                    return Err(io(what, e));
                }
                Err(e) => {
                    tracing::error!(port = pair.port, error = %e, "cannot listen on the standby port: running without a standby");
                    None
                }
            },
            None => None,
        };

        let (sup, sup_task) =
            supervisor_core::driver::start(rules::supervisor_config(&cfg, is_takeover))
                .map_err(NodeError::Supervisor)?;
        // Recovery's adoptions and starts are done (their lock files written off this thread)
        // before anything reads the servers: the HA manager derives "primary" from them, and the
        // API never shows a server STARTING only because its token's fsync is under way.
        sup.started().await;
        let (ha, ha_task) = match (&cfg.ha, ha_ready) {
            (Some(settings), Some((key, listener))) => {
                let (h, t) = ha_modes::driver::start(
                    rules::ha_config(&cfg, settings, key),
                    listener,
                    sup.clone(),
                )
                .map_err(NodeError::Ha)?;
                (Some(h), Some(t))
            }
            _ => (None, None),
        };
        // The standby is launched only now: had anything above failed, it would have taken over.
        let pair = match (cfg.standby, standby_listener, standby_key) {
            (Some(pair), Some(listener), Some(key)) => {
                let command = match options.standby_command {
                    Some(c) => c,
                    None => StandbyCommand::this_program(&cfg).map_err(|e| {
                        io(
                            "cannot find this program's executable for the standby".into(),
                            e,
                        )
                    })?,
                };
                let (takeovers, started) =
                    takeover.as_ref().map_or((0, None), |(_, n, s)| (*n, *s));
                let (handle, _task) = replication::driver::start_active(
                    ActiveConfig {
                        key,
                        timing: timing(pair),
                        program: command.program,
                        args: command.args,
                        stderr: Some(files::standby_log_path(&cfg)),
                        takeovers,
                        pair_started_ms: started.unwrap_or_else(replication::driver::unix_ms),
                    },
                    listener,
                )
                .map_err(|e| io("cannot start the standby node manager".into(), e))?;
                Some(handle)
            }
            _ => None,
        };

        let handle = NodeHandle {
            pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
            started_at: crate::wall_now(),
            listen: tcp
                .as_ref()
                .and_then(|t| t.local_addr().ok())
                .map_or_else(|| cfg.listen.to_string(), |a| a.to_string()),
            sup,
            pair,
            last_takeover: takeover.map(|(info, _, _)| info),
            ha,
            cfg: cfg.clone(),
        };
        let (shutdown_tx, shutdown_rx) = mpsc::channel::<ShutdownRequest>(1);
        let (reply_tx, reply_rx) = oneshot::channel::<ShutdownReply>();
        let state = api::AppState {
            node: handle.clone(),
            token: Arc::new(token),
            shutdown: shutdown_tx,
            shutdown_done: Arc::new(tokio::sync::Mutex::new(Some(reply_rx))),
        };
        let (stop_http, stopping) = watch::channel(false);
        let mut http = vec![];
        // after raise_nofile: the caps are shares of the open-file limit left after a reserve
        // for the servers, so API clients never starve spawning and restarting
        let (tcp_limits, unix_limits) = api::Limits::for_this_process(cfg.servers.len());
        if let Some(tcp) = tcp {
            http.push(api::serve(
                tcp,
                api::router(state.clone(), true, tcp_limits),
                tcp_limits,
                stopping.clone(),
            ));
        }
        if let Some(unix) = unix {
            http.push(api::serve(
                unix,
                api::router(state, false, unix_limits),
                unix_limits,
                stopping,
            ));
        }
        tracing::info!(
            node = %cfg.node, pid = handle.pid, listen = %cfg.listen, socket = %sock_path.display(),
            servers = cfg.servers.len(), standby_port = cfg.standby.map(|p| p.port),
            tcp_connections = tcp_limits.connections, socket_connections = unix_limits.connections,
            "nm-daemon started"
        );
        Ok(Self {
            handle,
            lock,
            sup_task,
            ha_task,
            shutdown_rx,
            reply_tx: Some(reply_tx),
            stop_http,
            http,
            sock_path,
        })
    }

    /// A handle that reads the node while it runs.
    #[must_use]
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Resolves when something inside the node asks it to stop: `POST /v1/shutdown`, or the HA
    /// manager's end (an HA reset, or its failure). Never resolves otherwise; cancel-safe.
    pub async fn stop_requested(&mut self) -> StopReason {
        tokio::select! {
            Some(req) = self.shutdown_rx.recv() => StopReason::Api(req),
            end = wait_ha(&mut self.ha_task) => end,
        }
    }

    /// Stops the node in order: the standby first (so this exit is no takeover), then the HA
    /// hand-over (a planned stop, not a failure: the HA-managed servers are stopped, verified,
    /// and the peer is told, so it takes them over without fencing this node), then the servers
    /// as `reason` says (an API shutdown may stop them; a signal leaves them running for the next
    /// daemon to adopt; an HA reset has killed the HA-managed ones), then the API (in-flight
    /// requests get [`DRAIN`]), then the lock. The HA-managed servers are handed over whatever
    /// `reason` says of the others: they cannot run without an HA manager watching them.
    ///
    /// # Errors
    /// None today; reserved for a stop that cannot complete.
    pub async fn shutdown(mut self, reason: StopReason) -> Result<NodeExit, NodeError> {
        let cfg = self.handle.cfg.clone();
        let sup = self.handle.sup.clone();
        // stopNodeManager (JEUS): the standby goes first, so our exit is no takeover
        if let Some(pair) = &self.handle.pair {
            // bounded: the standby is killed after standby_timeout if it does not leave by itself
            let limit = 3 * cfg.standby.map_or(Duration::ZERO, |p| p.timeout) + DRAIN;
            if tokio::time::timeout(limit, pair.shutdown()).await.is_err() {
                tracing::error!(
                    "the standby node manager did not exit within {limit:?}; exiting anyway (it may take over)"
                );
            } else {
                tracing::info!("the standby node manager has stopped");
            }
        }
        let mut exit = NodeExit::Stopped;
        // then the HA hand-over (the StorNext HA Manager stops after the service; Sailfin GMS's
        // PEER_STOP_EVENT): after the standby, so that no takeover revives what it stops
        if !matches!(reason, StopReason::HaEnded { .. })
            && let Some(why) = self.leave_ha().await
        {
            exit = NodeExit::HaReset(why);
        }
        match reason {
            StopReason::HaEnded { why, clean } => {
                if !clean {
                    // the HA manager died without its reset: do its work (the same function),
                    // its peer will take over
                    let servers = rules::ha_servers(&cfg);
                    ha_modes::driver::reset_effects(&cfg.data_dir, &cfg.node, &servers, &sup, &why)
                        .await;
                }
                // the HA-managed servers are killed; the others are left for the next daemon
                tracing::error!(reason = %why, "HA reset: nm-daemon exits with status {EXIT_HA_RESET}");
                let _ = sup.shutdown(false).await;
                exit = NodeExit::HaReset(why);
            }
            StopReason::Signal(sig) => {
                tracing::info!(
                    "{sig}: exiting; servers (but the HA-managed ones) keep running and will be adopted by the next nm-daemon"
                );
                let left = sup.shutdown(false).await.unwrap_or_default();
                tracing::info!(left_running = left.left_running.len(), "supervisor stopped");
            }
            StopReason::Api(req) => {
                tracing::info!(
                    stop_servers = req.stop_servers,
                    "shutdown requested through the API"
                );
                let done = sup.shutdown(req.stop_servers).await.unwrap_or_default();
                tracing::info!(
                    stopped = done.stopped.len(),
                    left_running = done.left_running.len(),
                    "supervisor stopped"
                );
                if let Some(tx) = self.reply_tx.take() {
                    let _ = tx.send(ShutdownReply {
                        pid: self.handle.pid,
                        stopped: done.stopped,
                        left_running: done.left_running,
                    });
                }
            }
        }
        let _ = self.stop_http.send(true);
        let http = std::mem::take(&mut self.http);
        let _ = tokio::time::timeout(DRAIN, async {
            for h in http {
                let _ = h.await;
            }
        })
        .await;
        let _ = (&mut self.sup_task).await;
        let _ = std::fs::remove_file(&self.sock_path);
        tracing::info!("nm-daemon exited");
        drop(self.lock);
        Ok(exit)
    }
}

impl Node {
    /// The HA part of a planned stop; `Some(reason)` when it ended in an HA reset (a server
    /// survived its stop: the smith log says so, the daemon exits as after any reset).
    async fn leave_ha(&mut self) -> Option<String> {
        use ha_modes::driver::LeaveOutcome;
        let ha = self.handle.ha.as_ref()?;
        let peer = self.handle.cfg.ha.as_ref().map_or("", |h| h.peer.as_str());
        let mut reset = None;
        match ha.leave().await {
            LeaveOutcome::NotStarted => {
                tracing::info!("planned stop: HA is not started here, nothing to hand over");
            }
            LeaveOutcome::Delivered => tracing::warn!(
                %peer,
                "planned stop: HA-managed servers stopped; the peer took the leave and takes them over without a fence"
            ),
            LeaveOutcome::NotDelivered(why) => tracing::error!(
                %peer, error = %why,
                "planned stop: HA-managed servers stopped, but the peer did not take the leave: it will fence this node"
            ),
            LeaveOutcome::Failed { why, reset: was } => {
                tracing::error!(error = %why, "planned stop: no hand-over");
                if was {
                    reset = Some(why);
                }
            }
            other => tracing::info!(?other, "planned stop"),
        }
        // the HA manager ends after a leave: let it close its link
        let mut done = false;
        if let Some(task) = self.ha_task.take()
            && let Ok(Ok(ha_modes::driver::HaExit::Reset(why))) =
                tokio::time::timeout(DRAIN, task).await
        {
            (reset, done) = (Some(why), true);
        }
        if let Some(why) = &reset
            && !done
        {
            // the leave failed as a reset (a server outlived its stop) but the HA manager did
            // not carry it out: do its work (the same function), so nothing HA-managed outlives
            // the daemon and the smith log says why
            let (cfg, sup) = (&self.handle.cfg, &self.handle.sup);
            let servers = rules::ha_servers(cfg);
            ha_modes::driver::reset_effects(&cfg.data_dir, &cfg.node, &servers, sup, why).await;
        }
        reset
    }
}

impl NodeHandle {
    /// The node manager's status (`GET /v1/status`, `nm-cli status`).
    #[must_use]
    pub fn status(&self) -> nm_api::NodeStatus {
        use nm_api::{NodeStatus, Role, StandbyStatus};
        let snap = self.sup.snapshot();
        let mut servers = std::collections::BTreeMap::new();
        for s in snap.servers.values() {
            *servers.entry(s.view.state.as_str().to_owned()).or_insert(0) += 1;
        }
        let uptime = crate::wall_now()
            .duration_since(self.started_at)
            .unwrap_or_default();
        let pair = self
            .pair
            .as_ref()
            .map(replication::driver::ActiveHandle::status);
        NodeStatus {
            node: self.cfg.node.clone(),
            pid: self.pid,
            role: Role::Active,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: humantime::format_rfc3339_millis(self.started_at).to_string(),
            uptime_secs: uptime.as_secs(),
            data_dir: self.cfg.data_dir.display().to_string(),
            listen: self.listen.clone(),
            standby_pid: pair.and_then(|p| p.standby.pid),
            takeovers: pair.map_or(0, |p| p.takeovers),
            standby: pair.map(|p| StandbyStatus {
                pid: p.standby.pid,
                state: p.standby.state.as_str().to_owned(),
                uptime_secs: p.standby.pid.map(|_| {
                    crate::now()
                        .saturating_duration_since(p.standby.since)
                        .as_secs()
                }),
                launches: p.standby.launches,
                port: p.port,
                rejected_frames: p.rejected,
            }),
            last_takeover: self.last_takeover.clone(),
            ha: self.ha.as_ref().map(ha_modes::driver::HaHandle::report),
            servers,
        }
    }

    /// The node's config.
    #[must_use]
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// The servers now.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.sup.snapshot()
    }

    /// Every change of the servers: a new snapshot after each (state changes, restarts, PIDs).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.sup.subscribe()
    }

    /// The supervisor, for what the node does not wrap.
    #[must_use]
    pub fn supervisor(&self) -> &SupervisorHandle {
        &self.sup
    }

    /// The HA manager, with `[ha]`.
    #[must_use]
    pub fn ha(&self) -> Option<&ha_modes::driver::HaHandle> {
        self.ha.as_ref()
    }

    /// A server command, with the rules that span crates: a start, restart or resume of an
    /// HA-managed server is decided by the HA manager (primary only), everything else goes to the
    /// supervisor.
    ///
    /// # Errors
    /// `Err(refusal)` with one line when the HA manager refuses (not primary) or the node is
    /// shutting down; `Ok(Err(..))` is the supervisor's own refusal.
    pub async fn command(
        &self,
        name: &str,
        command: Command,
    ) -> Result<Result<Accepted, CommandError>, Refusal> {
        if rules::is_ha_managed(&self.cfg, name) {
            let Some(ha) = &self.ha else {
                let starts = matches!(command, Command::Start | Command::Restart | Command::Resume);
                if starts {
                    // [ha] is configured but its manager is not running (a takeover that could
                    // not bind the HA address): nobody here may decide this node is primary
                    return Err(Refusal::NotPrimary(format!(
                        "server {name:?} is HA-managed and this node runs without its HA manager (see `nm-cli nm log`): it is not started here"
                    )));
                }
                return self
                    .sup
                    .command(name, command)
                    .await
                    .map_err(|_| Refusal::ShuttingDown);
            };
            // the StorNext HA Manager: an HA-managed server runs on the primary only, and the HA
            // manager decides it in its own task, atomically with its promote/demote decisions
            return ha.server_command(name, command).await.map_err(|e| match e {
                ha_modes::driver::HaError::Refused(why) => Refusal::NotPrimary(why),
                ha_modes::driver::HaError::Failed(why) => Refusal::Busy(why),
                _ => Refusal::ShuttingDown,
            });
        }
        self.sup
            .command(name, command)
            .await
            .map_err(|_| Refusal::ShuttingDown)
    }
}

/// A server command the node refused before the supervisor saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// An HA-managed server on a node that is not primary. Nothing changed.
    #[error("{0}")]
    NotPrimary(String),
    /// The node is stopping. Nothing changed.
    #[error("nm-daemon is shutting down")]
    ShuttingDown,
    /// The command could not be queued now (the supervisor is busy). Nothing changed.
    #[error("{0}")]
    Busy(String),
}

/// The HA pair's key and listener, checked and bound before anything starts (`None` without
/// `[ha]`, or at a takeover whose HA address is taken: the peer will fence this node).
async fn bind_ha(
    cfg: &NodeConfig,
    is_takeover: bool,
) -> Result<Option<(Vec<u8>, tokio::net::TcpListener)>, NodeError> {
    let Some(ha) = &cfg.ha else {
        return Ok(None);
    };
    let key = files::read_cluster_key(&ha.key_file)?;
    ha_modes::driver::store::load(&cfg.data_dir)
        .map_err(|e| NodeError::Ha(ha_modes::driver::StartError::Store(e)))?;
    match tokio::net::TcpListener::bind(ha.listen).await {
        Ok(l) => Ok(Some((key, l))),
        Err(e) if is_takeover => {
            // the peer will find this node silent and fence it: say so loudly
            tracing::error!(listen = %ha.listen, error = %e, "cannot listen for the HA peer after the takeover: running without HA (the peer will fence this node)");
            Ok(None)
        }
        Err(e) => {
            let what = format!(
                "cannot listen for the HA peer on {} ([ha] listen in {})",
                ha.listen,
                cfg.path.display()
            );
            Err(io(what, e))
        }
    }
}

/// Resolves when the HA manager ends (with a reset, or by failing); never without `[ha]`.
async fn wait_ha(task: &mut Option<JoinHandle<ha_modes::driver::HaExit>>) -> StopReason {
    let Some(t) = task else {
        return std::future::pending().await;
    };
    let (why, clean) = match t.await {
        Ok(ha_modes::driver::HaExit::Reset(why)) => (why, true),
        Ok(ha_modes::driver::HaExit::Stopped | ha_modes::driver::HaExit::Left) => {
            ("the HA manager stopped".into(), false)
        }
        Err(e) => (format!("the HA manager failed: {e}"), false),
    };
    *task = None;
    StopReason::HaEnded { why, clean }
}

pub(crate) fn timing(pair: StandbyConfig) -> replication::Timing {
    replication::Timing {
        heartbeat: pair.heartbeat,
        timeout: pair.timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_its_ha_manager_a_node_starts_no_ha_managed_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nm.toml");
        let text = "node = \"n\"\ndata_dir = \"data\"\ncluster_key_file = \"k\"\n\
                    [[server]]\nname = \"db\"\ncommand = [\"sleep\", \"600\"]\n\
                    [[server]]\nname = \"web\"\ncommand = [\"sleep\", \"601\"]\nauto_start = false\n\
                    [ha]\npeer = \"p\"\npeer_address = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\nservers = [\"db\"]\n\
                    fence_command = [\"false\"]\n";
        let cfg = Arc::new(crate::config::parse(text, &path).unwrap());
        std::fs::create_dir(&cfg.data_dir).unwrap();
        let (sup, task) =
            supervisor_core::driver::start(rules::supervisor_config(&cfg, true)).unwrap();
        sup.started().await;
        // a takeover that could not bind the HA address runs without its HA manager
        let node = NodeHandle {
            cfg: cfg.clone(),
            pid: 1,
            started_at: crate::wall_now(),
            listen: String::new(),
            sup: sup.clone(),
            pair: None,
            last_takeover: None,
            ha: None,
        };
        for command in [Command::Start, Command::Restart, Command::Resume] {
            let got = node.command("db", command).await;
            assert!(
                matches!(got, Err(Refusal::NotPrimary(_))),
                "{command:?}: {got:?}"
            );
        }
        assert_eq!(
            node.command("db", Command::Stop).await,
            Ok(Ok(Accepted::AlreadyDone))
        );
        assert_eq!(
            node.command("web", Command::Start).await,
            Ok(Ok(Accepted::Changed))
        );
        let _ = sup.shutdown(true).await;
        let _ = task.await;
    }
}
