//! The standby node manager (JEUS): a second process of the same program that watches the active
//! over the standby link and becomes it when the kernel hands it the data directory's lock.
//!
//! The program that launches standbys (`nm-daemon`, or an embedding program through
//! [`crate::StandbyCommand`]) runs [`watch`] when started as a standby, and on
//! [`Watched::TookOver`] starts the node with the takeover as its [`crate::Origin`].

use nm_api::TakeoverInfo;
use replication::TakeoverReason;
use replication::driver::StandbyOutcome;

use crate::config::NodeConfig;
use crate::files::{self, DataDirLock};
use crate::node::{NodeError, Origin, Takeover, timing};

/// How a standby's watch ended.
#[derive(Debug)]
pub enum Watched {
    /// It was told to leave (`nm-cli shutdown`, a replacement) or terminated: exit, no takeover.
    Left,
    /// The active is gone and this process holds the data directory: start the node from this.
    TookOver(Origin),
}

/// Watches the active until this standby leaves or takes over. Logs through `tracing`.
///
/// # Errors
/// No `standby_port`, no data directory or standby key, or the link failed; nothing was taken.
pub async fn watch(cfg: &NodeConfig) -> Result<Watched, NodeError> {
    let pair = cfg
        .standby
        .ok_or_else(|| NodeError::NoStandbyPort(cfg.path.clone()))?;
    if !cfg.data_dir.is_dir() {
        return Err(NodeError::NoDataDir(cfg.data_dir.clone()));
    }
    let key = files::read_standby_key(&cfg.data_dir)?;
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
    .map_err(|e| files::io("the standby node manager failed".into(), e))?;
    let takeover = match outcome {
        StandbyOutcome::Terminated | StandbyOutcome::Left { .. } => {
            tracing::info!(pid = std::process::id(), "the standby node manager exited");
            return Ok(Watched::Left);
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
    Ok(Watched::TookOver(Origin::Takeover(Takeover {
        info: TakeoverInfo {
            at: humantime::format_rfc3339_millis(crate::wall_now()).to_string(),
            from_pid: takeover.previous.map(|a| a.pid),
            reason: reason.to_owned(),
        },
        lock: DataDirLock::from(takeover.lock),
        takeovers: takeover.takeovers,
        pair_started_ms: takeover.pair_started_ms,
    })))
}
