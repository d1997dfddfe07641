//! The commands the HA manager runs outside the supervisor (the fence command, the reset
//! command) and the effects of an HA reset.

use std::time::Duration;

use supervisor_core::SupervisorHandle;

use super::{HaConfig, servers, store};

/// What [`reset_effects`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetEffects {
    /// The smith log line was appended and fsync'd (`Err`: why not; the servers were killed
    /// anyway, the reset must not wait on a broken disk).
    pub smithlog: Result<(), String>,
    /// No HA-managed server runs any more (`false`: some were still alive 10 s after SIGKILL).
    pub servers_down: bool,
}

/// The effects of an HA reset (the StorNext HA Manager), in this order: append `"<time> <node> HA reset:
/// <reason>"` to `data_dir/smithlog` and fsync it, then SIGKILL the HA-managed `servers` and wait
/// (at most 10 s) until none runs. Used by the HA driver when it resets, and by a daemon whose HA
/// manager failed without resetting, so that its peer's takeover never meets a live copy.
///
/// The smith log is written on a blocking thread (the open, write and fsync all on that thread),
/// and awaited: nothing is killed before the line is durable or its write failed.
pub async fn reset_effects(
    data_dir: &std::path::Path,
    node: &str,
    servers: &[String],
    sup: &SupervisorHandle,
    reason: &str,
) -> ResetEffects {
    let at = humantime::format_rfc3339_millis(supervisor_core::driver::wall_now());
    let line = format!("{at} {node} HA reset: {reason}");
    let dir = data_dir.to_owned();
    // the StorNext HA Manager: the line is on disk before the reset acts
    let smithlog = match tokio::task::spawn_blocking(move || store::smith(&dir, &line)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the smith log writer failed: {e}")),
    };
    if let Err(e) = &smithlog {
        tracing::error!(error = %e, "cannot write the smith log");
    }
    tracing::error!(%reason, "HA RESET: killing the HA-managed servers");
    let servers_down = servers::kill_all(sup, servers, Duration::from_secs(10)).await;
    if !servers_down {
        tracing::error!("HA-managed servers still alive 10 s after SIGKILL");
    }
    ResetEffects {
        smithlog,
        servers_down,
    }
}

pub(super) async fn fence(cfg: &HaConfig) -> Result<(), String> {
    run(&cfg.fence_command, cfg, cfg.fence_timeout).await
}

/// Runs `argv` with `NM_HA_NODE`, `NM_HA_PEER` and `NM_HA_PEER_ADDR` in its environment, in a
/// process group of its own; `Ok` when it exits 0 within `timeout`. Past the timeout the whole
/// group is SIGKILLed (a fence script's children included).
pub(super) async fn run(argv: &[String], cfg: &HaConfig, timeout: Duration) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .env("NM_HA_NODE", &cfg.node)
        .env("NM_HA_PEER", &cfg.peer)
        .env("NM_HA_PEER_ADDR", cfg.peer_addr.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => {
            if let Some(g) = group {
                let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
            }
            Err(format!("{program}: no exit within {timeout:?} (killed)"))
        }
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Ok(Ok(out)) => {
            let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
            if out.status.success() {
                if !out.stdout.is_empty() {
                    tracing::info!(output = %text(&out.stdout), "{program}");
                }
                Ok(())
            } else {
                Err(format!("{program}: {} {}", out.status, text(&out.stderr)))
            }
        }
    }
}
