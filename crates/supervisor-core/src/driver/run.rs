//! The run loop: act on everything the core decided, publish a snapshot, answer requests, then
//! wait for the next exit, probe result, request or deadline.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use super::executor::Executor;
use super::handle::{CommandResult, Request};
use super::process;
use super::{Snapshot, Stopped, now};
use crate::core::{Event, Generation, ProbeResult, ServerState, Supervisor};
use crate::spec::ServerName;

pub(super) async fn run(
    mut core: Supervisor,
    mut exec: Executor,
    mut requests: mpsc::Receiver<Request>,
    mut exits: mpsc::UnboundedReceiver<(ServerName, Generation)>,
    mut probes: mpsc::UnboundedReceiver<(ServerName, Generation, ProbeResult)>,
    status: watch::Sender<Arc<Snapshot>>,
    started: watch::Sender<bool>,
) {
    let mut shutdown: Option<(oneshot::Sender<Stopped>, Stopped)> = None;
    // Answers wait until the snapshot shows what the command did, so a caller that reads the
    // snapshot after the answer never sees the state from before it.
    let mut replies: Vec<(oneshot::Sender<CommandResult>, CommandResult)> = vec![];
    // recovery's file steps are durable (or failed and logged) before any action
    let _ = exec.writer.submit(|| Ok(())).await;
    loop {
        // act on everything the core decided, feeding results back, then fire due timers
        loop {
            while let Some(action) = core.poll_action() {
                if let Err(reason) = exec.execute(&mut core, &action).await {
                    tracing::warn!(target: "supervisor_core::driver", ?action, "{reason}");
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
                        tracing::info!(target: "supervisor_core::driver", server = %server, killed = n, "killed processes the server left behind");
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
        if changed || !replies.is_empty() || !*started.borrow() {
            status.send_replace(Arc::new(exec.snapshot(&core)));
        }
        for (reply, result) in replies.drain(..) {
            let _ = reply.send(result);
        }
        // the first pass carried out recovery's decisions, and its snapshot is published
        started.send_if_modified(|s| !std::mem::replace(s, true));
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
                    if stop_servers {
                        // a stop of the node, not an operator's stop of each server: the next
                        // daemon start applies auto_start
                        stopped.stopped =
                            core.on_node_stop(now()).iter().map(ToString::to_string).collect();
                    } else {
                        stopped.left_running = core
                            .servers()
                            .filter(|v| v.state.has_process())
                            .map(|v| v.name.to_string())
                            .collect();
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
            tracing::warn!(target: "supervisor_core::driver", server, from, to, "{reason}");
        }
        _ => tracing::info!(target: "supervisor_core::driver", server, from, to, "{reason}"),
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
