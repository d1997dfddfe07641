//! The handle other tasks reach the driver through: an mpsc of requests, a `watch` of snapshots.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::{Snapshot, Stopped};
use crate::core::{Accepted, Command, CommandError};

pub(super) type CommandResult = Result<Accepted, CommandError>;

pub(super) enum Request {
    Command {
        server: String,
        command: Command,
        reply: oneshot::Sender<Result<Accepted, CommandError>>,
    },
    Shutdown {
        stop_servers: bool,
        reply: oneshot::Sender<Stopped>,
    },
}

/// A cloneable handle to the driver task.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    pub(super) tx: mpsc::Sender<Request>,
    pub(super) status: watch::Receiver<Arc<Snapshot>>,
    /// Becomes true once crash recovery's first actions are carried out.
    pub(super) started: watch::Receiver<bool>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Command {
                server, command, ..
            } => write!(f, "Command({server}, {command:?})"),
            Self::Shutdown { stop_servers, .. } => {
                write!(f, "Shutdown(stop_servers={stop_servers})")
            }
        }
    }
}

/// Why [`SupervisorHandle::queue_command`] queued nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The driver task is gone (it shut down).
    #[error("the supervisor has shut down")]
    Gone,
    /// Its queue of commands is full (it is busy, e.g. waiting for a stalled disk).
    #[error("the supervisor is busy (its command queue is full); try again")]
    Busy,
}

/// The driver task is gone (it shut down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the supervisor has shut down")]
pub struct Gone;

impl SupervisorHandle {
    /// Sends an operator command and returns the core's answer.
    ///
    /// # Errors
    /// `Err(Gone)` when the driver has shut down; `Ok(Err(..))` when the core refused it.
    pub async fn command(
        &self,
        server: &str,
        command: Command,
    ) -> Result<Result<Accepted, CommandError>, Gone> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Command {
                server: server.to_owned(),
                command,
                reply,
            })
            .await
            .map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }

    /// Queues an operator command without waiting for the core's answer, which comes on the
    /// returned receiver: commands queued by one task reach the core in the order queued, and the
    /// caller's task is never held up by the driver (e.g. while a lock-file write waits for a
    /// stalled disk).
    ///
    /// # Errors
    /// [`QueueError::Gone`] when the driver has shut down, [`QueueError::Busy`] when its queue is
    /// full; nothing was queued.
    pub fn queue_command(
        &self,
        server: &str,
        command: Command,
    ) -> Result<oneshot::Receiver<Result<Accepted, CommandError>>, QueueError> {
        let (reply, rx) = oneshot::channel();
        let request = Request::Command {
            server: server.to_owned(),
            command,
            reply,
        };
        match self.tx.try_send(request) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Err(QueueError::Busy),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(QueueError::Gone),
        }
    }

    /// Stops the driver. With `stop_servers`, every server is stopped first (SIGTERM, SIGKILL after
    /// its `stop_timeout`) and the answer comes once all are down; without, servers keep running
    /// and their lock files stay, so the next daemon adopts them.
    ///
    /// # Errors
    /// `Gone` when the driver already shut down.
    pub async fn shutdown(&self, stop_servers: bool) -> Result<Stopped, Gone> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Shutdown {
                stop_servers,
                reply,
            })
            .await
            .map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }

    /// The latest snapshot.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.status.borrow().clone()
    }

    /// A receiver that sees every new snapshot (for waiting on a state).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.status.clone()
    }
    /// Resolves once the driver has carried out what crash recovery decided at its start (the
    /// adoptions, and the starts and restarts with their lock-file writes) and published the
    /// result: a daemon that opens its API only then never shows a server `STARTING` merely
    /// because its token's `fsync` is under way. Resolves at once after that, and when the
    /// driver has shut down.
    pub async fn started(&self) {
        let mut started = self.started.clone();
        let _ = started.wait_for(|s| *s).await;
    }
}
