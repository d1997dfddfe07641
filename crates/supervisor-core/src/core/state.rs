//! The server lifecycle states, with the exact strings of DESIGN §3.

use serde::{Deserialize, Serialize};

/// Where a server is in its lifecycle. The serialized strings are a contract (API, `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerState {
    /// Spawned; waiting for the first good health check.
    Starting,
    /// Running (and healthy, if it has a health check).
    Running,
    /// Stopped with SIGSTOP by an operator; the processes are in state `T`.
    Suspended,
    /// Stopping at an operator's request: SIGTERM sent, SIGKILL after `stop_timeout`.
    ShuttingDown,
    /// Not running, by an operator's request or because it was never started.
    Shutdown,
    /// Its health check failed `failure_threshold` times in a row. With `auto_kill_if_failed`
    /// it is being killed; without, it is left running and watched.
    Failed,
    /// It exited unexpectedly and waits `restart_delay` before it is started again.
    FailedRestarting,
    /// It failed and will not be restarted: `auto_restart = false`, the restart budget is spent,
    /// or its start failed. Only an operator `start` leaves this state.
    FailedNotRestartable,
    /// nm cannot tell whether it runs (e.g. its lock file was unreadable). Never restarted.
    Unknown,
}

impl ServerState {
    /// The contract string, e.g. `"FAILED_RESTARTING"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Suspended => "SUSPENDED",
            Self::ShuttingDown => "SHUTTING_DOWN",
            Self::Shutdown => "SHUTDOWN",
            Self::Failed => "FAILED",
            Self::FailedRestarting => "FAILED_RESTARTING",
            Self::FailedNotRestartable => "FAILED_NOT_RESTARTABLE",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Every state, for tables and tests.
    pub const ALL: [Self; 9] = [
        Self::Starting,
        Self::Running,
        Self::Suspended,
        Self::ShuttingDown,
        Self::Shutdown,
        Self::Failed,
        Self::FailedRestarting,
        Self::FailedNotRestartable,
        Self::Unknown,
    ];

    /// Whether a process of this server is (believed to be) alive in this state.
    #[must_use]
    pub fn has_process(self) -> bool {
        matches!(
            self,
            Self::Starting | Self::Running | Self::Suspended | Self::ShuttingDown | Self::Failed
        )
    }
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_strings_are_the_contract_strings() {
        for s in ServerState::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
            let back: ServerState =
                serde_json::from_value(serde_json::Value::String(s.as_str().into())).unwrap();
            assert_eq!(back, s);
        }
    }
}
