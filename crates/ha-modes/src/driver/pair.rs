//! The pair-wide commands of `nm-cli ha` on the handle's side: the plans of
//! [`crate::core::plan`] carried out as steps on this node and its peer, with their waits.

use std::time::Duration;

use tokio::sync::oneshot;

use super::link::{self, Outgoing, Reply, Request};
use super::{Event, HaError, HaHandle};
use crate::core::Op;
use crate::core::plan::{OnFailedStart, Side, Step};
use crate::mode::{Mode, Status};

/// How long a command waits for the driver to publish (a mode being written) before it answers
/// with the last report published.
const SYNC_LIMIT: Duration = Duration::from_secs(5);

impl HaHandle {
    /// One exchange with the peer now (if it communicates), then the driver is in sync.
    pub(super) async fn refresh(&self) {
        let (reply, rx) = oneshot::channel();
        let out = Outgoing {
            request: Request::Exchange(self.mine.borrow().clone()),
            timeout: Duration::from_secs(1),
            reply,
        };
        // bounded: a link still dialling a silent peer does not hold up a status
        let asked = tokio::time::timeout(Duration::from_secs(1), async {
            if self.outbox.send(out).await.is_ok() {
                let _ = rx.await;
            }
        });
        let _ = asked.await;
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::Sync(tx)).is_ok() {
            // bounded: while the disk holds a mode, the report shown is the last durable one
            let _ = tokio::time::timeout(SYNC_LIMIT, rx).await;
        }
    }

    pub(super) async fn local(&self, op: Op, steps: &mut Vec<String>) -> Result<(), HaError> {
        let (reply, rx) = oneshot::channel();
        self.events
            .send(Event::Local { op, reply })
            .map_err(|_| HaError::Gone)?;
        rx.await
            .map_err(|_| HaError::Gone)?
            .map_err(HaError::Refused)?;
        if link::stops(op) {
            link::wait_not_primary(self.report.clone(), self.stop_wait)
                .await
                .map_err(HaError::Failed)?;
        }
        steps.push(format!("{}: {}", self.node, describe(op)));
        Ok(())
    }

    pub(super) async fn remote(&self, op: Op, steps: &mut Vec<String>) -> Result<(), HaError> {
        let (reply, rx) = oneshot::channel();
        let limit = self.stop_wait + Duration::from_secs(5);
        let out = Outgoing {
            request: Request::Op {
                op,
                state: self.mine.borrow().clone(),
            },
            timeout: limit,
            reply,
        };
        self.outbox.send(out).await.map_err(|_| HaError::Gone)?;
        // the link may still be dialling: wait for that too, but not forever
        let answer = tokio::time::timeout(limit * 2, rx).await.map_err(|_| {
            HaError::Failed(format!("{}: no answer within {:?}", self.peer, limit * 2))
        })?;
        match answer.map_err(|_| HaError::Gone)? {
            Ok(Reply::Op(Ok(_))) => {
                steps.push(format!("{}: {}", self.peer, describe(op)));
                Ok(())
            }
            Ok(Reply::Op(Err(why))) => Err(HaError::Failed(format!("{}: {why}", self.peer))),
            Ok(_) => Err(HaError::Failed(format!("{}: unexpected answer", self.peer))),
            Err(why) => Err(HaError::Failed(format!("{}: {why}", self.peer))),
        }
    }

    pub(super) async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::Sync(tx)).is_ok() {
            // bounded: while the disk holds a mode, the report shown is the last durable one
            let _ = tokio::time::timeout(SYNC_LIMIT, rx).await;
        }
    }

    /// Carries out a plan of [`crate::core::plan`]: each step in turn, waiting where it says.
    pub(super) async fn carry_out(
        &self,
        plan: Vec<Step>,
        steps: &mut Vec<String>,
    ) -> Result<(), HaError> {
        for step in plan {
            match step {
                Step::Run(Side::Local, op) => self.local(op, steps).await?,
                Step::Run(Side::Peer, op) => self.remote(op, steps).await?,
                Step::ToDefault(side) => {
                    self.refresh().await;
                    if step.needs_default(&self.report()) {
                        match side {
                            Side::Local => self.local(Op::Mode(Mode::Default), steps).await?,
                            Side::Peer => self.remote(Op::Mode(Mode::Default), steps).await?,
                        }
                    }
                }
                Step::Note(line) => steps.push(line),
                Step::AwaitPrimary { on_failed_start } => {
                    self.await_primary(on_failed_start, steps).await?;
                }
            }
        }
        Ok(())
    }

    /// [`Step::AwaitPrimary`]: until this node is primary with its servers started, or their
    /// start failed.
    pub(super) async fn await_primary(
        &self,
        on_failed_start: OnFailedStart,
        steps: &mut Vec<String>,
    ) -> Result<(), HaError> {
        let mut report = self.report.clone();
        let done = report.wait_for(|r| {
            (r.local.status == Some(Status::Primary) && !r.starting && !r.stopping)
                || r.local.ha_idle_failed_startup == Some(true)
        });
        // the watch guard is dropped here, before anything else is awaited
        let failed = match tokio::time::timeout(self.start_wait, done).await {
            Ok(Ok(now)) => now.local.ha_idle_failed_startup == Some(true),
            Ok(Err(_)) => return Err(HaError::Gone),
            Err(_) => {
                return Err(HaError::Failed(format!(
                    "{}: not primary after {:?} (fence: {})",
                    self.node,
                    self.start_wait,
                    self.report().fence
                )));
            }
        };
        if failed {
            // hand the servers back: the peer's HA starts again and, this node being blocked,
            // it becomes primary
            if on_failed_start == OnFailedStart::HandBackToPeer
                && self.remote(Op::Start, steps).await.is_err()
            {
                tracing::error!(peer = %self.peer, "cannot restart HA on the peer after the failed start");
            }
            return Err(HaError::Failed(format!(
                "{}: the start of the HA-managed servers failed: ha_idle_failed_startup is set (see `nm-cli nm log`; then `nm-cli ha clear`)",
                self.node
            )));
        }
        steps.push(format!("{}: primary", self.node));
        Ok(())
    }
}

/// A step as the reply's `steps` say it (after the node's name).
pub(super) fn describe(op: Op) -> String {
    match op {
        Op::Mode(m) => format!("mode {m}"),
        Op::Start => "HA started".into(),
        Op::Stop => "HA stopped (HA-managed servers stopped)".into(),
        Op::Clear => "ha_idle_failed_startup cleared".into(),
        Op::Peerdown => "peer certified peerdown".into(),
        Op::Peerup => "peerdown certification withdrawn".into(),
        Op::ForceSmith => "HA reset".into(),
    }
}
