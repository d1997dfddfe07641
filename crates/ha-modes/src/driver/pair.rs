//! The pair-wide commands of `nm-cli ha` on the handle's side: the plans of
//! [`crate::core::plan`] carried out as steps on this node and its peer, with their waits.

use std::time::Duration;

use tokio::sync::oneshot;

use super::link::{self, Outgoing, Reply, Request};
use super::{Event, HaError, HaHandle};
use crate::core::Op;
use crate::core::plan::{self, Awaiting, OnFailedStart, Side, Step};
use crate::mode::Mode;

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

    /// `ha start`: [`plan::plan_start`] carried out; planned again from the fresh report when a
    /// peer that was silent communicates before this node is primary (its daemon came up), so
    /// that it is stopped first and started after, never raced. A bounded number of times.
    pub(super) async fn start_pair(&self, steps: &mut Vec<String>) -> Result<(), HaError> {
        for _ in 0..3 {
            let report = self.report();
            let plan = plan::plan_start(&report).map_err(|r| HaError::Refused(r.0))?;
            match self.carry_out(plan, steps).await? {
                Carried::Done => return Ok(()),
                Carried::PeerAppeared => {
                    steps.push(format!(
                        "{}: the peer {} communicates now: starting over with it",
                        self.node, self.peer
                    ));
                    self.refresh().await;
                }
            }
        }
        Err(HaError::Failed(format!(
            "{}: the peer {} keeps appearing and vanishing; see `nm-cli ha status`",
            self.node, self.peer
        )))
    }

    /// Carries out a plan of [`crate::core::plan`]: each step in turn, waiting where it says.
    pub(super) async fn carry_out(
        &self,
        plan: Vec<Step>,
        steps: &mut Vec<String>,
    ) -> Result<Carried, HaError> {
        let at_plan = self.report();
        let peer_was_silent = !at_plan.communicating;
        let fences_before = at_plan.fences;
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
                Step::AwaitPrimary { on_failed_start } => {
                    let wait = Waiting {
                        on_failed_start,
                        peer_was_silent,
                        fences_before,
                    };
                    if self.await_primary(wait, steps).await? == Carried::PeerAppeared {
                        return Ok(Carried::PeerAppeared);
                    }
                }
                Step::StartPeer => {
                    self.refresh().await;
                    if self.report().communicating {
                        self.remote(Op::Start, steps).await?;
                    }
                }
            }
        }
        Ok(Carried::Done)
    }

    /// [`Step::AwaitPrimary`]: until this node is primary with its servers started, or their
    /// start failed, or a peer silent at the plan communicates ([`plan::awaiting`] on every
    /// report). A fence is told in the steps only once the fence command reported success.
    async fn await_primary(
        &self,
        wait: Waiting,
        steps: &mut Vec<String>,
    ) -> Result<Carried, HaError> {
        let mut rx = self.report.clone();
        let limit = tokio::time::sleep(self.start_wait);
        tokio::pin!(limit);
        let mut told_fence = false;
        let failed = loop {
            let r = rx.borrow_and_update().clone();
            if !told_fence && let Some(line) = plan::fenced_line(&r, wait.fences_before) {
                steps.push(line);
                told_fence = true;
            }
            match plan::awaiting(&r, wait.peer_was_silent) {
                Awaiting::Primary => break false,
                Awaiting::FailedStart => break true,
                Awaiting::PeerAppeared => return Ok(Carried::PeerAppeared),
                Awaiting::Wait => {}
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() {
                    return Err(HaError::Gone);
                },
                () = &mut limit => {
                    return Err(HaError::Failed(format!(
                        "{}: not primary after {:?} (fence: {})",
                        self.node,
                        self.start_wait,
                        self.report().fence
                    )));
                }
            }
        };
        let on_failed_start = wait.on_failed_start;
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
        Ok(Carried::Done)
    }
}

/// How a plan ended ([`HaHandle::carry_out`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Carried {
    /// Every step done.
    Done,
    /// A peer silent at the plan communicates now: plan again.
    PeerAppeared,
}

/// What [`HaHandle::await_primary`] needs from its plan.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    on_failed_start: OnFailedStart,
    peer_was_silent: bool,
    /// The report's `fences` when the plan was made.
    fences_before: u64,
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
