//! Assembling the daemon: data directory, single-instance lock, logging, token, supervisor, API
//! listeners, signals, shutdown.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nm_api::{ShutdownReply, ShutdownRequest};
use supervisor_core::driver::lockfile::write_atomic;
use supervisor_core::{SupervisorConfig, driver};
use tokio::sync::{mpsc, oneshot};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::api::{self, AppState};
use crate::config::{LogFormat, NodeConfig};

/// How long in-flight requests (e.g. a `server log --follow`) may hold up the exit.
const DRAIN: Duration = Duration::from_secs(2);

pub(crate) async fn run(cfg: NodeConfig) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.data_dir)
        .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    // It holds the API socket (no token needed there) and the token: only we may enter.
    let mode = std::fs::metadata(&cfg.data_dir)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    if mode != 0o700 {
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| {
                format!(
                    "cannot restrict data directory {} to mode 0700",
                    cfg.data_dir.display()
                )
            })?;
    }
    let _instance = lock_instance(&cfg.data_dir)?;
    let _log_guard = init_logging(&cfg)?;
    raise_nofile();
    let token = load_or_create_token(&cfg)?;

    // Bind before starting anything, so a busy address starts no server.
    let tcp = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (listen in {})",
                cfg.listen,
                cfg.path.display()
            )
        })?;
    let sock_path = cfg.data_dir.join("nm.sock");
    // We hold the instance lock: a socket file left there is stale.
    let _ = std::fs::remove_file(&sock_path);
    let unix = tokio::net::UnixListener::bind(&sock_path)
        .with_context(|| format!("cannot bind the API socket {}", sock_path.display()))?;
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", sock_path.display()))?;

    let (sup, sup_task) = driver::start(SupervisorConfig {
        data_dir: cfg.data_dir.clone(),
        crash_recovery: cfg.crash_recovery,
        servers: cfg.servers.clone(),
    })
    .context("cannot start the supervisor")?;

    let (shutdown_tx, mut shutdown_rx) = mpsc::channel::<ShutdownRequest>(1);
    let (reply_tx, reply_rx) = oneshot::channel::<ShutdownReply>();
    let state = AppState {
        node: cfg.node.clone(),
        pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        started_at: crate::wall_now(),
        data_dir: cfg.data_dir.clone(),
        // the bound address: `listen = "127.0.0.1:0"` shows the port it got
        listen: tcp
            .local_addr()
            .map_or_else(|_| cfg.listen.to_string(), |a| a.to_string()),
        sup: sup.clone(),
        token: Arc::new(token),
        shutdown: shutdown_tx,
        shutdown_done: Arc::new(tokio::sync::Mutex::new(Some(reply_rx))),
    };
    let (stop_http_tx, stop_http) = tokio::sync::watch::channel(false);
    let graceful = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let tcp_server = tokio::spawn(
        axum::serve(tcp, api::router(state.clone(), true))
            .with_graceful_shutdown(graceful(stop_http.clone()))
            .into_future(),
    );
    let unix_server = tokio::spawn(
        axum::serve(unix, api::router(state.clone(), false))
            .with_graceful_shutdown(graceful(stop_http.clone()))
            .into_future(),
    );
    tracing::info!(
        node = %cfg.node, pid = state.pid, listen = %cfg.listen, socket = %sock_path.display(),
        servers = cfg.servers.len(), "nm-daemon started"
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let reason = tokio::select! {
        _ = sigterm.recv() => Stop::Signal("SIGTERM"),
        _ = sigint.recv() => Stop::Signal("SIGINT"),
        Some(req) = shutdown_rx.recv() => Stop::Api(req),
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    match reason {
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
        let _ = tcp_server.await;
        let _ = unix_server.await;
    })
    .await;
    let _ = sup_task.await;
    let _ = std::fs::remove_file(&sock_path);
    tracing::info!("nm-daemon exited");
    Ok(())
}

enum Stop {
    Signal(&'static str),
    Api(ShutdownRequest),
}

/// One daemon per data directory: an exclusive `flock` on `data_dir/nm.lock`, held for the
/// process's life and released by the kernel when it dies (no stale-lock guessing).
fn lock_instance(data_dir: &Path) -> Result<std::fs::File> {
    let path = data_dir.join("nm.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if let Err(e) = rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let holder = holder.trim();
        if e == rustix::io::Errno::WOULDBLOCK {
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
        bail!("cannot lock {}: {e}", path.display());
    }
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

/// `nm.log` in the data directory (human or JSON lines), plus human lines on stderr. `NM_LOG`
/// overrides the level filter (e.g. `NM_LOG=debug`).
fn init_logging(cfg: &NodeConfig) -> Result<tracing_appender::non_blocking::WorkerGuard> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(cfg.data_dir.join("nm.log"))
        .with_context(|| format!("cannot open {}", cfg.data_dir.join("nm.log").display()))?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    let filter =
        || EnvFilter::try_from_env("NM_LOG").unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    let file_layer = match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .with_filter(filter())
            .boxed(),
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer)
            .with_filter(filter())
            .boxed(),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_filter(filter());
    tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .try_init()
        .context("cannot set up logging")?;
    Ok(guard)
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
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness for the API token: {e}"))?;
    let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
    // write_atomic creates the file 0600
    write_atomic(&path, format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the API token");
    Ok(token)
}
