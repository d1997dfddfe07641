//! The HA-managed servers, through the node's supervisor: start them all, stop them all, kill
//! them all, and whether any runs. Each waits on the supervisor's snapshots with a deadline.

use std::time::Duration;

use supervisor_core::{Command, ServerState, Snapshot, SupervisorHandle};

use crate::core::Observed;

/// Whether any of `names` has a live process, is meant to be running, or may run for all nm
/// can tell (`UNKNOWN`: e.g. its lock file names a live process whose start token cannot be read).
#[must_use]
pub fn any_up(snap: &Snapshot, names: &[String]) -> bool {
    snap.servers.iter().any(|(n, s)| {
        names.iter().any(|x| x == n.as_str())
            && (s.pid.is_some()
                || matches!(
                    s.view.state,
                    ServerState::Starting
                        | ServerState::Running
                        | ServerState::Suspended
                        | ServerState::ShuttingDown
                        | ServerState::FailedRestarting
                        | ServerState::Unknown
                ))
    })
}

/// What the supervisor shows of `names`: [`Observed::Unknown`] when one is `UNKNOWN`, else
/// [`Observed::Up`] when one may run (as [`any_up`] says), else [`Observed::Down`].
#[must_use]
pub fn observe(snap: &Snapshot, names: &[String]) -> Observed {
    let unknown = snap.servers.iter().any(|(n, s)| {
        names.iter().any(|x| x == n.as_str()) && s.view.state == ServerState::Unknown
    });
    if unknown {
        Observed::Unknown
    } else if any_up(snap, names) {
        Observed::Up
    } else {
        Observed::Down
    }
}

fn all_down(snap: &Snapshot, names: &[String]) -> bool {
    !any_up(snap, names)
}

/// Starts every server in `names` and waits until all are `RUNNING`. A server that ends
/// `FAILED`, `FAILED_NOT_RESTARTABLE` or `SHUTDOWN` first, or one not `RUNNING` within
/// `timeout`, fails the start.
///
/// # Errors
/// The first server that failed, and how.
pub(crate) async fn start_all(
    sup: &SupervisorHandle,
    names: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let mut rx = sup.subscribe();
    // a server nm cannot tell about may run: starting it could make a second copy
    let unknown: Vec<&String> = {
        let snap = rx.borrow_and_update();
        names
            .iter()
            .filter(|n| {
                snap.servers
                    .iter()
                    .any(|(k, s)| k.as_str() == n.as_str() && s.view.state == ServerState::Unknown)
            })
            .collect()
    };
    if let Some(n) = unknown.first() {
        return Err(format!(
            "{n} is UNKNOWN (nm cannot tell whether it runs): not started; see `nm-cli server status {n}`"
        ));
    }
    for n in names {
        match sup.command(n, Command::Start).await {
            Err(_) => return Err("the supervisor has shut down".into()),
            // already running (adopted, or started by an earlier attempt): fine
            Ok(Err(supervisor_core::CommandError::NotNow { .. }) | Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("{n}: {e}")),
        }
    }
    let verdict = |snap: &Snapshot| -> Option<Result<(), String>> {
        let mut all = true;
        for n in names {
            let Some((_, s)) = snap.servers.iter().find(|(k, _)| k.as_str() == n) else {
                return Some(Err(format!("{n}: no such server")));
            };
            match s.view.state {
                ServerState::Running => {}
                ServerState::Failed | ServerState::FailedNotRestartable | ServerState::Shutdown => {
                    return Some(Err(format!("{n} is {}", s.view.state.as_str())));
                }
                _ => all = false,
            }
        }
        all.then_some(Ok(()))
    };
    let wait = async {
        loop {
            if let Some(v) = verdict(&rx.borrow_and_update()) {
                return v;
            }
            if rx.changed().await.is_err() {
                return Err("the supervisor has shut down".into());
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .unwrap_or_else(|_| Err(format!("not all RUNNING within {timeout:?}")))
}

/// Stops every server in `names` (SIGTERM, SIGKILL after each one's `stop_timeout`) and waits
/// until none runs; after `timeout` they are killed.
///
/// # Errors
/// When some still run 5 s after SIGKILL (uninterruptible I/O), or are `UNKNOWN`.
pub(crate) async fn stop_all(
    sup: &SupervisorHandle,
    names: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let mut rx = sup.subscribe();
    for n in names {
        let _ = sup.command(n, Command::Stop).await;
    }
    if wait_down(&mut rx, names, timeout).await {
        return Ok(());
    }
    tracing::warn!(servers = ?names, "HA-managed servers not down within {timeout:?}: killing them");
    if kill_all(sup, names, Duration::from_secs(5)).await {
        Ok(())
    } else {
        Err(format!("still running 5 s after SIGKILL: {names:?}"))
    }
}

/// SIGKILLs every server in `names` and waits (at most `timeout`) until none runs. Returns
/// whether all are down.
pub async fn kill_all(sup: &SupervisorHandle, names: &[String], timeout: Duration) -> bool {
    let mut rx = sup.subscribe();
    for n in names {
        let _ = sup.command(n, Command::Kill).await;
    }
    wait_down(&mut rx, names, timeout).await
}

async fn wait_down(
    rx: &mut tokio::sync::watch::Receiver<std::sync::Arc<Snapshot>>,
    names: &[String],
    timeout: Duration,
) -> bool {
    let wait = async {
        loop {
            if all_down(&rx.borrow_and_update(), names) {
                return true;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.unwrap_or(false)
}
