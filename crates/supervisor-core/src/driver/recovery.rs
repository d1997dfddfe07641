//! Crash recovery at start, carried out: read each server's lock file, stop marker and
//! `/proc`, let the pure [`decide`] decide, then do what it says (docs/design.md §6).
//!
//! Its file steps (forgetting a lock file, clearing a marker) are queued on the ordered writer
//! and not awaited here: every later write of the driver queues behind them, and the run loop
//! waits for them before its first action.

use std::time::{Duration, Instant, SystemTime};

use super::SupervisorConfig;
use super::executor::Executor;
use super::process;
use crate::core::{
    AutoStart, CrashRecovery, Down, Found, Leftovers, LockFileStep, OperatorStops, Recovered,
    RecoveryPolicy, StopMarker, StopMarkerStep, Supervisor, decide,
};
use crate::spec::ServerSpec;

/// Recovers every configured server: the core gets one `on_recovered` each.
pub(super) fn recover(
    config: &SupervisorConfig,
    exec: &mut Executor,
    core: &mut Supervisor,
    t0: Instant,
) {
    let configured: std::collections::HashSet<&str> =
        config.servers.iter().map(|s| s.name.as_str()).collect();
    for stray in exec.locks.names() {
        if !configured.contains(stray.as_str()) {
            tracing::warn!(target: "supervisor_core::driver", server = %stray, "lock file of a server that is not configured: left alone (its process, if any, is not touched)");
        }
    }
    for spec in &config.servers {
        recover_one(config, spec, exec, core, t0);
    }
}

/// The policy `config` sets for `spec`.
fn policy(config: &SupervisorConfig, spec: &ServerSpec) -> RecoveryPolicy {
    RecoveryPolicy {
        auto_start: if spec.auto_start {
            AutoStart::On
        } else {
            AutoStart::Off
        },
        crash_recovery: if !config.crash_recovery {
            CrashRecovery::Off
        } else if config
            .no_crash_recovery
            .iter()
            .any(|n| n == spec.name.as_str())
        {
            CrashRecovery::DecidedElsewhere
        } else {
            CrashRecovery::On
        },
        operator_stops: if config.keep_operator_stops {
            OperatorStops::Keep
        } else {
            OperatorStops::ThisBoot
        },
    }
}

fn recover_one(
    config: &SupervisorConfig,
    spec: &ServerSpec,
    exec: &mut Executor,
    core: &mut Supervisor,
    t0: Instant,
) {
    let name = &spec.name;
    // read
    let seen = exec.locks.inspect(name, &exec.boot_id);
    let stop_marker = exec.locks.read_stop_marker(name, &exec.stop_boot_id);
    let marked = stop_marker != StopMarker::Absent;
    let found = Found {
        lock_file: seen.lock_file,
        stop_marker,
    };
    // decide
    let decision = decide(found, policy(config, spec));
    // act: a live process is watched whatever comes next
    if let (Some(pidfd), Some(record)) = (seen.pidfd, seen.record.as_ref()) {
        exec.watch(name.clone(), 1, record.pid, record.pgid, pidfd, false);
    }
    if let (Leftovers::KillByToken, Some(record)) = (decision.leftovers, seen.record.as_ref()) {
        // its leader is gone; anything that still carries its start token (or the token of a
        // later start that died before its record was written) is left over
        let n =
            process::kill_leftovers(&record.token) + process::kill_leftovers(&record.next_token);
        if n > 0 {
            tracing::info!(target: "supervisor_core::driver", server = %name, killed = n, "killed processes left behind by its dead leader");
        }
    }
    match decision.lock_file {
        LockFileStep::Keep => {
            if let Some(record) = seen.record {
                exec.records.insert(name.clone(), record);
            }
        }
        LockFileStep::Forget { log } => {
            tracing::info!(target: "supervisor_core::driver", server = %name, "{log}");
            let (server, n) = (name.clone(), name.clone());
            let removed = exec.on_disk(move |locks| locks.remove(&n));
            tokio::spawn(async move {
                if let Err(e) = removed.await {
                    tracing::warn!(target: "supervisor_core::driver", server = %server, error = %e, "cannot remove stale lock file");
                }
            });
        }
    }
    match decision.stop_marker {
        StopMarkerStep::Keep if marked => {
            exec.stop_marks.insert(name.clone());
        }
        StopMarkerStep::Keep => {}
        StopMarkerStep::Clear => {
            // a lock file (the server ran after the stop) or another boot: the stop is over
            let (server, n) = (name.clone(), name.clone());
            let cleared = exec.on_disk(move |locks| locks.clear_stopped(&n));
            tokio::spawn(async move {
                if let Err(e) = cleared.await {
                    tracing::warn!(target: "supervisor_core::driver", server = %server, error = %e, "cannot remove the stop marker");
                }
            });
        }
    }
    match &decision.server {
        Recovered::Adopt { pid, .. } | Recovered::FinishStop { pid, .. } => {
            tracing::info!(target: "supervisor_core::driver", server = %name, pid, "adopted running server");
        }
        Recovered::Restart { detail, .. } => {
            tracing::warn!(target: "supervisor_core::driver", server = %name, meant_to_run = true, "{detail}");
        }
        Recovered::LeaveDown(Down::NotMeantToRun { detail, .. }) => {
            tracing::warn!(target: "supervisor_core::driver", server = %name, meant_to_run = false, "{detail}");
        }
        Recovered::Unknown { detail } => {
            tracing::error!(target: "supervisor_core::driver", server = %name, "{detail}")
        }
        Recovered::StartFresh | Recovered::LeaveDown(_) => {}
    }
    if let Some(rec) = exec.records.get(name) {
        // the restart budget carries over the daemon restart
        let wall = exec.clock.wall(t0);
        let ages: Vec<Duration> = rec
            .restarts
            .iter()
            .map(|&ms| {
                wall.duration_since(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
                    .unwrap_or_default()
            })
            .collect();
        core.on_restart_history(t0, name, &ages);
    }
    exec.rotator.watch(exec.logs.stdout(name), spec.log.clone());
    exec.rotator.watch(exec.logs.stderr(name), spec.log.clone());
    core.on_recovered(t0, name, decision.server);
}
