//! Assembling the daemon: data directory, single-instance lock, logging, token, supervisor, API
//! listeners, the active/standby pair, signals, shutdown.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nm_api::{ShutdownReply, ShutdownRequest, TakeoverInfo};
use replication::driver::{ActiveConfig, ActiveHandle, StandbyOutcome, Takeover};
use replication::{TakeoverReason, Timing};
use supervisor_core::driver::lockfile::write_atomic;
use supervisor_core::{SupervisorConfig, driver};
use tokio::sync::{mpsc, oneshot};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::api::{self, AppState};
use crate::config::{LogFormat, NodeConfig, StandbyConfig};

/// How long in-flight requests (e.g. a `server log --follow`) may hold up the exit.
const DRAIN: Duration = Duration::from_secs(2);

/// Runs the node manager: the active (the normal start) or, with `standby`, a standby that
/// watches the active and becomes it at a takeover.
pub(crate) async fn run(cfg: NodeConfig, standby: bool) -> Result<()> {
    if standby {
        return run_standby(cfg).await;
    }
    prepare_data_dir(&cfg.data_dir)?;
    let lock = lock_instance(&cfg.data_dir)?;
    LogFile::init(&cfg, &cfg.data_dir.join("nm.log"), true)?;
    serve(cfg, lock, None).await
}

/// The standby's whole life (seed 000): it logs to `<node>_standby.log`, watches the active
/// over the standby link, and at a takeover switches to `nm.log` and serves as the active.
async fn run_standby(cfg: NodeConfig) -> Result<()> {
    let pair = cfg
        .standby
        .context("--standby needs standby_port in the config")?;
    if !cfg.data_dir.is_dir() {
        bail!(
            "data directory {} does not exist: the active node manager creates it",
            cfg.data_dir.display()
        );
    }
    let log = LogFile::init(&cfg, &standby_log_path(&cfg), false)?;
    let key = read_standby_key(&cfg.data_dir)?;
    tracing::info!(
        pid = std::process::id(),
        port = pair.port,
        "the standby node manager is starting"
    );
    let outcome = replication::driver::run_standby(replication::driver::StandbyConfig {
        port: pair.port,
        key,
        data_dir: cfg.data_dir.clone(),
        timing: timing(pair),
    })
    .await
    .context("the standby node manager failed")?;
    let takeover = match outcome {
        StandbyOutcome::Terminated | StandbyOutcome::Left { .. } => {
            tracing::info!(pid = std::process::id(), "the standby node manager exited");
            return Ok(());
        }
        StandbyOutcome::TookOver(t) => t,
    };
    let from = takeover.previous.map_or_else(
        || "an unknown process".to_owned(),
        |a| format!("pid {}", a.pid),
    );
    let reason = match takeover.reason {
        TakeoverReason::Died => "died",
        TakeoverReason::Fenced => "fenced",
    };
    tracing::warn!(
        pid = std::process::id(),
        takeovers = takeover.takeovers,
        "the active node manager ({from}) {reason}: this standby becomes the active"
    );
    if let Err(e) = log.switch(&cfg.data_dir.join("nm.log")) {
        // keep serving: the servers need a node manager more than the log needs its file
        tracing::error!("{e:#}; the active keeps logging here");
    }
    tracing::warn!(
        pid = std::process::id(),
        takeovers = takeover.takeovers,
        "took over from the active node manager ({from}, {reason}); takeover #{}",
        takeover.takeovers
    );
    let info = TakeoverInfo {
        at: humantime::format_rfc3339_millis(crate::wall_now()).to_string(),
        from_pid: takeover.previous.map(|a| a.pid),
        reason: reason.to_owned(),
    };
    let Takeover {
        lock,
        takeovers,
        pair_started_ms,
        ..
    } = takeover;
    serve(cfg, lock, Some((info, takeovers, pair_started_ms))).await
}

/// The active node manager, from a fresh start or a takeover (`takeover`: what it was, the
/// takeover count and when the pair started). `lock` is the data directory's `flock`, ours.
async fn serve(
    cfg: NodeConfig,
    lock: File,
    takeover: Option<(TakeoverInfo, u64, Option<u64>)>,
) -> Result<()> {
    // Signals first: from here on SIGTERM/SIGINT is an orderly stop of the pair, never a
    // default-action death that the standby would take for a crash.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // nm.lock names the active, for people and for the "already running" message
    let pid_file = cfg.data_dir.join("nm.lock");
    if let Err(e) = write_atomic(&pid_file, format!("{}\n", std::process::id()).as_bytes()) {
        tracing::warn!(path = %pid_file.display(), error = %e, "cannot record the active's PID");
    }
    raise_nofile();
    // the HA pair: its key and mode file are checked, its address bound, before anything starts
    let ha_ready = match &cfg.ha {
        Some(ha) => {
            let key = read_cluster_key(&ha.key_file)?;
            ha_modes::driver::store::load(&cfg.data_dir)?;
            let listener = match tokio::net::TcpListener::bind(ha.listen).await {
                Ok(l) => Some(l),
                Err(e) if takeover.is_some() => {
                    // the peer will find this node silent and fence it: say so loudly
                    tracing::error!(listen = %ha.listen, error = %e, "cannot listen for the HA peer after the takeover: running without HA (the peer will fence this node)");
                    None
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot listen for the HA peer on {} ([ha] listen in {})",
                            ha.listen,
                            cfg.path.display()
                        )
                    });
                }
            };
            listener.map(|l| (key, l))
        }
        None => None,
    };

    let token = load_or_create_token(&cfg)?;
    let standby_key = match cfg.standby {
        Some(_) => Some(load_or_create_standby_key(&cfg.data_dir)?),
        None => None,
    };
    // Bind before starting anything, so a busy address starts no server. At a takeover the
    // previous active has exited (its sockets are closed) before we get here; should its port
    // still be taken, the new active serves on the Unix socket alone rather than leave the
    // servers without a node manager.
    let tcp = match tokio::net::TcpListener::bind(cfg.listen).await {
        Ok(l) => Some(l),
        Err(e) if takeover.is_some() => {
            tracing::error!(
                listen = %cfg.listen, error = %e,
                "cannot listen on the API address after the takeover: serving on the Unix socket only"
            );
            None
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot listen on {} (listen in {})",
                    cfg.listen,
                    cfg.path.display()
                )
            });
        }
    };
    let sock_path = cfg.data_dir.join("nm.sock");
    // We hold the instance lock: a socket file left there is stale.
    let _ = std::fs::remove_file(&sock_path);
    let unix = match bind_socket(&sock_path) {
        Ok(l) => Some(l),
        Err(e) if takeover.is_some() => {
            tracing::error!("{e:#}: serving on the TCP address only");
            None
        }
        Err(e) => return Err(e),
    };
    let standby_listener = match cfg.standby {
        Some(pair) => match replication::driver::bind_standby_port(pair.port).await {
            Ok(l) => Some(l),
            // a fresh start fails whole; a takeover must go on serving without a standby
            Err(e) if takeover.is_none() => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot listen on the standby port 127.0.0.1:{} (standby_port in {})",
                        pair.port,
                        cfg.path.display()
                    )
                });
            }
            Err(e) => {
                tracing::error!(
                    port = pair.port,
                    error = %e,
                    "cannot listen on the standby port: running without a standby"
                );
                None
            }
        },
        None => None,
    };

    let ha_servers: Arc<Vec<String>> = Arc::new(
        cfg.ha
            .as_ref()
            .map(|h| h.servers.clone())
            .unwrap_or_default(),
    );
    let (sup, sup_task) = driver::start(SupervisorConfig {
        data_dir: cfg.data_dir.clone(),
        // a takeover always adopts: the servers are the pair's, not a new daemon's
        crash_recovery: cfg.crash_recovery || takeover.is_some(),
        keep_operator_stops: takeover.is_some(),
        no_crash_recovery: ha_servers.to_vec(),
        servers: cfg.servers.clone(),
    })
    .context("cannot start the supervisor")?;

    let (ha, mut ha_task) = match (&cfg.ha, ha_ready) {
        (Some(settings), Some((key, listener))) => {
            let (handle, task) =
                ha_modes::driver::start(ha_config(&cfg, settings, key), listener, sup.clone())
                    .context("cannot start the HA manager")?;
            (Some(handle), Some(task))
        }
        _ => (None, None),
    };

    // The standby is launched only now: had anything above failed, it would have taken over.
    let pair: Option<ActiveHandle> = match (cfg.standby, standby_listener, standby_key) {
        (Some(pair), Some(listener), Some(key)) => {
            let program = standby_program()?;
            let (takeovers, started) = takeover
                .as_ref()
                .map_or((0, None), |(_, n, started)| (*n, *started));
            let (handle, _task) = replication::driver::start_active(
                ActiveConfig {
                    key,
                    timing: timing(pair),
                    program,
                    args: vec![
                        "--config".into(),
                        cfg.path.clone().into_os_string(),
                        "--standby".into(),
                    ],
                    stderr: Some(standby_log_path(&cfg)),
                    takeovers,
                    pair_started_ms: started.unwrap_or_else(replication::driver::unix_ms),
                },
                listener,
            )
            .context("cannot start the standby node manager")?;
            Some(handle)
        }
        _ => None,
    };

    let (shutdown_tx, mut shutdown_rx) = mpsc::channel::<ShutdownRequest>(1);
    let (reply_tx, reply_rx) = oneshot::channel::<ShutdownReply>();
    let state = AppState {
        node: cfg.node.clone(),
        pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        started_at: crate::wall_now(),
        data_dir: cfg.data_dir.clone(),
        standby_log: cfg.standby.map(|_| standby_log_path(&cfg)),
        // the bound address: `listen = "127.0.0.1:0"` shows the port it got
        listen: tcp
            .as_ref()
            .and_then(|t| t.local_addr().ok())
            .map_or_else(|| cfg.listen.to_string(), |a| a.to_string()),
        sup: sup.clone(),
        pair: pair.clone(),
        last_takeover: takeover.as_ref().map(|(info, _, _)| info.clone()),
        token: Arc::new(token),
        shutdown: shutdown_tx,
        shutdown_done: Arc::new(tokio::sync::Mutex::new(Some(reply_rx))),
        ha,
        ha_servers: ha_servers.clone(),
    };
    let (stop_http_tx, stop_http) = tokio::sync::watch::channel(false);
    let graceful = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let tcp_server = tcp.map(|tcp| {
        tokio::spawn(
            axum::serve(tcp, api::router(state.clone(), true))
                .with_graceful_shutdown(graceful(stop_http.clone()))
                .into_future(),
        )
    });
    let unix_server = unix.map(|unix| {
        tokio::spawn(
            axum::serve(unix, api::router(state.clone(), false))
                .with_graceful_shutdown(graceful(stop_http.clone()))
                .into_future(),
        )
    });
    tracing::info!(
        node = %cfg.node, pid = state.pid, listen = %cfg.listen, socket = %sock_path.display(),
        servers = cfg.servers.len(), standby_port = cfg.standby.map(|p| p.port),
        "nm-daemon started"
    );
    let mut notify = vec![sd_notify::NotifyState::Ready];
    if takeover.is_some() {
        // the service manager's main PID is now us (needs NotifyAccess=all)
        notify.push(sd_notify::NotifyState::MainPid(std::process::id()));
    }
    let _ = sd_notify::notify(&notify);

    let reason = tokio::select! {
        _ = sigterm.recv() => Stop::Signal("SIGTERM"),
        _ = sigint.recv() => Stop::Signal("SIGINT"),
        Some(req) = shutdown_rx.recv() => Stop::Api(req),
        exit = wait_ha(&mut ha_task) => Stop::HaReset(exit),
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // stopNodeManager (seed 000): the standby goes first, so our exit is no takeover
    if let Some(pair) = &pair {
        // bounded: the standby is killed after standby_timeout if it does not leave by itself
        let limit = 3 * cfg.standby.map_or(Duration::ZERO, |p| p.timeout) + DRAIN;
        if tokio::time::timeout(limit, pair.shutdown()).await.is_err() {
            tracing::error!(
                "the standby node manager did not exit within {limit:?}; exiting anyway \
                 (it may take over)"
            );
        }
    }
    let mut ha_reset = None;
    match reason {
        Stop::HaReset(HaEnd { why, clean }) => {
            if !clean {
                // the HA manager died without its reset: do its work, its peer will take over
                let line = format!(
                    "{} {} HA reset: {why}",
                    humantime::format_rfc3339_millis(crate::wall_now()),
                    cfg.node
                );
                if let Err(e) = ha_modes::driver::store::smith(&cfg.data_dir, &line) {
                    tracing::error!(error = %e, "cannot write the smith log");
                }
                ha_modes::driver::kill_all(&sup, &ha_servers, Duration::from_secs(10)).await;
            }
            // the HA-managed servers are killed; the others are left for the next daemon
            tracing::error!(reason = %why, "HA reset: nm-daemon exits with status {}", crate::EXIT_HA_RESET);
            let _ = sup.shutdown(false).await;
            ha_reset = Some(why);
        }
        Stop::Signal(sig) => {
            tracing::info!(
                "{sig}: exiting; servers keep running and will be adopted by the next nm-daemon"
            );
            let left = sup.shutdown(false).await.unwrap_or_default();
            tracing::info!(left_running = left.left_running.len(), "supervisor stopped");
        }
        Stop::Api(req) => {
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
            let _ = reply_tx.send(ShutdownReply {
                pid: state.pid,
                stopped: done.stopped,
                left_running: done.left_running,
            });
        }
    }
    let _ = stop_http_tx.send(true);
    let _ = tokio::time::timeout(DRAIN, async {
        if let Some(t) = tcp_server {
            let _ = t.await;
        }
        if let Some(u) = unix_server {
            let _ = u.await;
        }
    })
    .await;
    let _ = sup_task.await;
    let _ = std::fs::remove_file(&sock_path);
    tracing::info!("nm-daemon exited");
    drop(lock);
    match ha_reset {
        Some(why) => Err(HaResetExit(why).into()),
        None => Ok(()),
    }
}

enum Stop {
    Signal(&'static str),
    Api(ShutdownRequest),
    HaReset(HaEnd),
}

/// How the HA manager ended: `clean` when it did its own HA reset (smith log line, servers
/// killed), not when it failed.
struct HaEnd {
    why: String,
    clean: bool,
}

/// The daemon ended with an HA reset (main exits with [`crate::EXIT_HA_RESET`]).
#[derive(Debug, thiserror::Error)]
#[error("HA reset: {0}")]
pub(crate) struct HaResetExit(pub(crate) String);

/// Resolves when the HA manager ends (with a reset, or by failing); never without `[ha]`.
async fn wait_ha(task: &mut Option<tokio::task::JoinHandle<ha_modes::driver::HaExit>>) -> HaEnd {
    let Some(t) = task else {
        return std::future::pending().await;
    };
    let (why, clean) = match t.await {
        Ok(ha_modes::driver::HaExit::Reset(why)) => (why, true),
        Ok(ha_modes::driver::HaExit::Stopped) => ("the HA manager stopped".into(), false),
        Err(e) => (format!("the HA manager failed: {e}"), false),
    };
    HaEnd { why, clean }
}

fn ha_config(
    cfg: &NodeConfig,
    ha: &crate::config::HaSettings,
    key: Vec<u8>,
) -> ha_modes::driver::HaConfig {
    // the HA-managed servers' longest stop_timeout bounds a graceful stop
    let stop_timeout = cfg
        .servers
        .iter()
        .filter(|s| ha.servers.iter().any(|n| n == s.name.as_str()))
        .map(|s| s.stop_timeout)
        .max()
        .unwrap_or(Duration::ZERO)
        + Duration::from_secs(5);
    ha_modes::driver::HaConfig {
        data_dir: cfg.data_dir.clone(),
        node: cfg.node.clone(),
        peer: ha.peer.clone(),
        peer_addr: ha.peer_address,
        key,
        servers: ha.servers.clone(),
        fence_command: ha.fence_command.clone(),
        fence_timeout: ha.fence_timeout,
        reset_command: ha.reset_command.clone(),
        start_timeout: ha.start_timeout,
        stop_timeout,
        timing: ha_modes::Timing {
            heartbeat: ha.heartbeat,
            peer_timeout: ha.peer_timeout,
            fence_delay: ha.fence_delay,
            fence_retry: ha.fence_retry,
        },
    }
}

/// The cluster key: at least 16 bytes, readable by its owner only (it authenticates the peer).
fn read_cluster_key(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "cannot read the cluster key {} (cluster_key_file)",
            path.display()
        )
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "the cluster key {} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let key = std::fs::read(path)
        .with_context(|| format!("cannot read the cluster key {}", path.display()))?;
    if key.len() < 16 {
        bail!(
            "the cluster key {} is too short ({} bytes, at least 16)",
            path.display(),
            key.len()
        );
    }
    Ok(key)
}

/// The executable a standby runs: ours. After a package upgrade replaced it, the path names the
/// new file (or nothing): keep running the same binary (and link protocol) through
/// `/proc/self/exe`, which still reaches the old one.
fn standby_program() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find nm-daemon's executable")?;
    if exe.to_string_lossy().ends_with(" (deleted)") {
        return Ok(PathBuf::from("/proc/self/exe"));
    }
    Ok(exe)
}

fn timing(pair: StandbyConfig) -> Timing {
    Timing {
        heartbeat: pair.heartbeat,
        timeout: pair.timeout,
    }
}

/// `<node>_standby.log` beside `nm.log` (seed 000).
pub(crate) fn standby_log_path(cfg: &NodeConfig) -> PathBuf {
    cfg.data_dir.join(format!("{}_standby.log", cfg.node))
}

/// Creates the data directory (0700) or restricts an existing one to 0700: it holds the API
/// socket (no token needed there), the token and the standby key.
fn prepare_data_dir(data_dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let mode = std::fs::metadata(data_dir)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    if mode != 0o700 {
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "cannot restrict data directory {} to mode 0700",
                    data_dir.display()
                )
            },
        )?;
    }
    Ok(())
}

/// The API's Unix socket, mode 0600.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener> {
    let unix = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind the API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    Ok(unix)
}

/// One active daemon per data directory: an exclusive `flock` on the directory itself, held for
/// the process's life and released by the kernel when it dies (no stale-lock guessing; deleting
/// files in it frees nothing). A standby waits on the same lock: it becomes active only when the
/// kernel hands the lock over. `nm.lock` records the holder's PID for the message below.
fn lock_instance(data_dir: &Path) -> Result<File> {
    let path = data_dir.join("nm.lock");
    match replication::driver::try_lock(data_dir) {
        Ok(Some(f)) => Ok(f),
        Ok(None) => {
            let mut holder = String::new();
            let _ = std::fs::File::open(&path).and_then(|mut f| f.read_to_string(&mut holder));
            let holder = holder.trim();
            bail!(
                "another nm-daemon{} is already running with data_dir {}",
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                },
                data_dir.display()
            );
        }
        Err(e) => Err(e).with_context(|| format!("cannot lock {}", data_dir.display())),
    }
}

/// The daemon's own log file (human or JSON lines), which a standby switches from
/// `<node>_standby.log` to `nm.log` at its takeover; plus human lines on stderr for a daemon
/// started as the active. `NM_LOG` overrides the level filter (e.g. `NM_LOG=debug`).
///
/// Lines are written synchronously (one `write` each, to the page cache): no logging thread.
#[derive(Clone)]
pub(crate) struct LogFile(Arc<LogTarget>);

/// The file behind a [`LogFile`]; `&LogTarget` is the writer tracing uses.
pub(crate) struct LogTarget(Mutex<File>);

impl Write for &LogTarget {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(()) // unbuffered
    }
}

impl LogFile {
    fn init(cfg: &NodeConfig, path: &Path, stderr: bool) -> Result<Self> {
        let file = Arc::new(LogTarget(Mutex::new(open_log(path)?)));
        let filter =
            || EnvFilter::try_from_env("NM_LOG").unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
        let file_layer = match cfg.log_format {
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .with_writer(file.clone())
                .with_filter(filter())
                .boxed(),
            LogFormat::Human => tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(file.clone())
                .with_filter(filter())
                .boxed(),
        };
        let stderr_layer = stderr.then(|| {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter(filter())
        });
        tracing_subscriber::registry()
            .with(file_layer)
            .with(stderr_layer)
            .try_init()
            .context("cannot set up logging")?;
        Ok(Self(file))
    }

    /// Writes every later line to `path` instead.
    fn switch(&self, path: &Path) -> Result<()> {
        let new = open_log(path)?;
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(())
    }
}

fn open_log(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The standby link's key, `data_dir/standby.key` (0600, 256 random bits, generated by the
/// first active). It never leaves the node: both ends of the link read it from the disk.
fn load_or_create_standby_key(data_dir: &Path) -> Result<Vec<u8>> {
    let path = data_dir.join("standby.key");
    match read_standby_key(data_dir) {
        Ok(k) => return Ok(k),
        Err(_) if !path.exists() => {}
        Err(e) => return Err(e),
    }
    let key = random_hex()?;
    write_atomic(&path, format!("{key}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the standby link key");
    Ok(key.into_bytes())
}

fn read_standby_key(data_dir: &Path) -> Result<Vec<u8>> {
    let path = data_dir.join("standby.key");
    let key = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the standby link key {}", path.display()))?;
    let key = key.trim();
    if key.len() < 32 {
        bail!(
            "the standby link key {} is too short (at least 32 characters)",
            path.display()
        );
    }
    Ok(key.as_bytes().to_vec())
}

/// 256 random bits as hex.
fn random_hex() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Each server costs the daemon a pidfd: lift the soft open-file limit to the hard one.
fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}

/// The API token: `token_file` if configured (must exist), else `data_dir/api.token`, generated
/// (0600, 256 random bits) on first start.
fn load_or_create_token(cfg: &NodeConfig) -> Result<String> {
    let (path, generate): (PathBuf, bool) = match &cfg.token_file {
        Some(p) => (p.clone(), false),
        None => (cfg.data_dir.join("api.token"), true),
    };
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) if !generate => bail!("token file {} is empty", path.display()),
        Err(e) if !generate || e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot read token file {}", path.display()));
        }
        _ => {}
    }
    let token = random_hex().context("cannot generate the API token")?;
    // write_atomic creates the file 0600
    write_atomic(&path, format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the API token");
    Ok(token)
}
