//! A standby process's life: link to the active, heartbeat, fence it when it falls silent, and
//! hand back the lock once the kernel grants it (the takeover).

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use supervisor_core::driver::{PinnedProcess, start_time_of};
use tokio::sync::{mpsc, oneshot};

use super::{lock_blocking, lock_holder, now, sleep_until, try_lock};
use crate::core::{ActiveInfo, TakeoverReason, Timing, Watcher, WatcherAction, WatcherEvent};
use crate::link::{self, Connected, HandshakeError, LinkEvent, LinkWriter, Msg};

/// What a standby needs.
#[derive(Debug, Clone)]
pub struct StandbyConfig {
    /// The active's standby port on loopback.
    pub port: u16,
    /// The node's standby key (the contents of `data_dir/standby.key`).
    pub key: Vec<u8>,
    /// The data directory, whose `flock` makes a node manager the active.
    pub data_dir: PathBuf,
    /// Heartbeat timing.
    pub timing: Timing,
}

/// How a standby's life ended.
#[derive(Debug)]
pub enum StandbyOutcome {
    /// The active told it to terminate (`nm-cli shutdown`): exit, no takeover.
    Terminated,
    /// The active refused it (another standby watches it): exit.
    Left {
        /// The active's reason.
        reason: String,
    },
    /// The lock is ours: become the active node manager.
    TookOver(Takeover),
}

/// A takeover: the lock, and what the logs and status should say about it.
#[derive(Debug)]
pub struct Takeover {
    /// The data directory, exclusively locked (`flock`) by this process. Keep it open for the
    /// process's life.
    pub lock: File,
    /// Why the previous active is gone.
    pub reason: TakeoverReason,
    /// The previous active, when the link ever said who it was. It has exited (its sockets are
    /// closed) by the time this is returned.
    pub previous: Option<ActiveInfo>,
    /// Takeovers since the pair started, this one included.
    pub takeovers: u64,
    /// When the pair started (unix ms), when known.
    pub pair_started_ms: Option<u64>,
}

/// Runs a standby until it terminates, leaves or takes over. Logs through `tracing` (the daemon
/// points it at `<node>_standby.log`).
pub async fn run_standby(cfg: StandbyConfig) -> io::Result<StandbyOutcome> {
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let me = (me, start_time_of(me)?);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.port));

    // The kernel decides when we may become active: once linked, wait for the lock on a thread
    // of our own (not a tokio blocking task, so a terminating standby's runtime does not wait
    // for it).
    let (lock_tx, mut lock_rx) = oneshot::channel::<io::Result<File>>();
    let mut lock_tx = Some(lock_tx);

    let (tx, mut rx) = mpsc::unbounded_channel::<Result<Connected, String>>();
    let (link_tx, mut link_rx) = mpsc::unbounded_channel::<((), LinkEvent)>();
    let mut core = Watcher::new(cfg.timing);
    let mut writer: Option<LinkWriter> = None;
    let mut active: Option<PinnedProcess> = None;
    let mut lock: Option<File> = None;
    let mut rejected: u64 = 0;
    // Every task of the standby's link lives here and is aborted when it returns: a connection
    // attempt still in flight at a takeover would otherwise reach this very process once it
    // listens on the standby port as the active, and attach it as its own standby.
    let mut tasks = tokio::task::JoinSet::new();
    core.on_start(now());
    loop {
        while let Some(ev) = core.poll_event() {
            log_event(&ev);
        }
        while let Some(action) = core.poll_action() {
            match action {
                WatcherAction::Connect => {
                    let tx = tx.clone();
                    let key = cfg.key.clone();
                    let timeout = cfg.timing.timeout;
                    tasks.spawn(async move {
                        let r = link::connect(addr, &key, me, timeout)
                            .await
                            .map_err(|e: HandshakeError| e.to_string());
                        let _ = tx.send(r);
                    });
                }
                WatcherAction::AwaitLock => {
                    if let Some(lock_tx) = lock_tx.take() {
                        let data_dir = cfg.data_dir.clone();
                        std::thread::Builder::new()
                            .name("nm-standby-lock".into())
                            .spawn(move || {
                                let _ = lock_tx.send(lock_blocking(&data_dir));
                            })?;
                    }
                }
                WatcherAction::SendHeartbeat => {
                    if let Some(w) = writer.as_mut() {
                        if let Err(e) = w.send(Msg::Heartbeat).await {
                            writer = None;
                            core.on_link_lost(now(), format!("cannot send a heartbeat: {e}"));
                        }
                    }
                }
                WatcherAction::Fence { pid } => {
                    let r = match &active {
                        Some(p) if p.pid() == pid => p.kill().map_err(|e| e.to_string()),
                        _ => Err(format!("active {pid} is not pinned")),
                    };
                    if r.is_ok() {
                        tracing::warn!(pid, "fenced the silent active node manager (SIGKILL)");
                    }
                    core.on_fenced(now(), r);
                }
                WatcherAction::TakeOver { reason, previous } => {
                    let lock = lock.take().expect("TakeOver follows on_lock_acquired");
                    if let Some(p) = &active {
                        // the lock is free, so the active's descriptors are closing: wait until
                        // it has fully exited (its API port and socket are closed too). Should it
                        // live on without the lock (its data directory replaced), fence it first.
                        if tokio::time::timeout(cfg.timing.timeout, p.exited())
                            .await
                            .is_err()
                        {
                            tracing::warn!(
                                pid = p.pid(),
                                "the active released the lock but lives on: fencing it"
                            );
                            p.kill()?;
                            p.exited().await;
                        }
                    }
                    tracing::debug!("the previous active has exited");
                    let takeovers = previous.map_or(0, |a| a.takeovers) + 1;
                    return Ok(StandbyOutcome::TookOver(Takeover {
                        lock,
                        reason,
                        previous,
                        takeovers,
                        pair_started_ms: previous.map(|a| a.pair_started_ms),
                    }));
                }
                WatcherAction::Terminate => {
                    drop(writer.take());
                    tracing::info!("terminating on the active node manager's request");
                    return Ok(StandbyOutcome::Terminated);
                }
                WatcherAction::Leave { reason } => {
                    tracing::info!(%reason, "this standby leaves");
                    return Ok(StandbyOutcome::Left { reason });
                }
            }
        }
        let deadline = core.next_deadline();
        tokio::select! {
            got = &mut lock_rx, if lock.is_none() && lock_tx.is_none() => {
                let file = got.map_err(|_| io::Error::other("the lock thread died"))??;
                lock = Some(file);
                tracing::debug!("the kernel handed over the lock");
                core.on_lock_acquired(now());
            }
            // The pinned active exited: its lock is free by now. Taking it here, on the runtime's
            // own thread woken by the pidfd, spares the wake-up of the lock thread (measured at
            // 6 ms on an idle VM). The lock thread stays as the fallback.
            () = exited(active.as_ref()), if lock.is_none() => {
                match try_lock(&cfg.data_dir) {
                    Ok(Some(file)) => {
                        lock = Some(file);
                        tracing::debug!("the active exited; the lock is taken");
                        core.on_lock_acquired(now());
                    }
                    // someone else holds it (a racing standby): only the lock thread may help
                    Ok(None) => active = None,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take the lock here; the lock thread will");
                        active = None;
                    }
                }
            }
            Some(connected) = rx.recv() => match connected {
                Ok(Connected::Linked(reader, w, info)) => {
                    match pin_active(&cfg, info) {
                        Ok(pinned) => {
                            tasks.spawn(reader.run((), link_tx.clone()));
                            writer = Some(w);
                            active = pinned;
                            core.on_linked(now(), info);
                        }
                        // an authenticated active that does not hold our data directory: not
                        // ours to watch (its config differs), and never ours to take over
                        Err(e) => {
                            tracing::error!(reason = %e, "refusing to stand by");
                            core.on_refused(now(), e);
                        }
                    }
                }
                Ok(Connected::Refused(reason)) => core.on_refused(now(), reason),
                Err(e) => core.on_connect_failed(now(), e),
            },
            Some(((), ev)) = link_rx.recv() => match ev {
                LinkEvent::Msg(Msg::Heartbeat) => core.on_heard(now()),
                LinkEvent::Msg(Msg::Shutdown) => core.on_shutdown_requested(now()),
                LinkEvent::Rejected(why) => {
                    rejected += 1;
                    tracing::warn!(%why, rejected, "dropped a frame from the standby link");
                }
                LinkEvent::Closed(why) => {
                    writer = None;
                    core.on_link_lost(now(), why);
                }
            },
            () = sleep_until(deadline) => core.on_timeout(now()),
        }
    }
}

/// Pins the active that welcomed us and checks it is who it says: alive when pinned, started
/// when it says, and the holder of our data directory's lock by the kernel's own account. Only a
/// pinned active may ever be fenced. An active that died between its welcome and this check is
/// still recorded (`Ok(None)`: nothing to fence, and the takeover should name it).
fn pin_active(cfg: &StandbyConfig, info: ActiveInfo) -> Result<Option<PinnedProcess>, String> {
    let pinned = match PinnedProcess::open(info.pid, Some(info.start_time)) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("the active's identity does not check out: {e}")),
    };
    match lock_holder(&cfg.data_dir) {
        Ok(Some(holder)) if holder == info.pid => Ok(Some(pinned)),
        _ if pinned.has_exited() => Ok(None),
        Ok(holder) => Err(format!(
            "process {} says it is the active, but {} holds {}",
            info.pid,
            holder.map_or_else(|| "nobody".to_owned(), |h| h.to_string()),
            cfg.data_dir.display()
        )),
        Err(e) => Err(format!("cannot read /proc/locks: {e}")),
    }
}

async fn exited(active: Option<&PinnedProcess>) {
    match active {
        Some(p) => p.exited().await,
        None => std::future::pending().await,
    }
}

fn log_event(ev: &WatcherEvent) {
    match ev {
        WatcherEvent::Linked(a) => tracing::info!(
            active_pid = a.pid,
            takeovers = a.takeovers,
            "watching the active node manager, pid {}",
            a.pid
        ),
        WatcherEvent::LinkLost { reason } => {
            tracing::warn!(%reason, "lost the link to the active node manager");
        }
        WatcherEvent::Unreachable { reason } => {
            tracing::warn!(%reason, "cannot reach the active node manager; retrying");
        }
        WatcherEvent::Hung { pid } => tracing::warn!(
            active_pid = pid,
            "the active node manager has been silent for the timeout: fencing it"
        ),
        WatcherEvent::Stalled => tracing::warn!(
            "this standby did not run for more than two heartbeats (stopped or frozen): the \
             active's silence timer starts again"
        ),
        WatcherEvent::FenceUnconfirmed { pid } => tracing::error!(
            active_pid = pid,
            "the fenced active node manager still holds the lock: fencing it again"
        ),
        WatcherEvent::FenceFailed { pid, reason } => {
            tracing::error!(active_pid = pid, %reason, "cannot fence the active node manager");
        }
    }
}
