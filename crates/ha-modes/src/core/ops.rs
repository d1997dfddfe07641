//! Operator commands on the local node: [`Ha::check`] says what the record becomes (or why the
//! command is refused) without changing anything, so the driver can persist the new record
//! before [`Ha::apply`] acts on it.

use std::time::Instant;

use super::{Ha, Record};
use crate::mode::{Mode, Status, Verdict, verdict};

/// A command on the local node (the pair-wide `ha start` and `ha stop` are sequences of these
/// on both nodes, run by the driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    /// Set the local mode.
    Mode(Mode),
    /// Start HA here: the node becomes primary or secondary.
    Start,
    /// Stop HA here: the HA-managed servers are stopped gracefully, no HA reset.
    Stop,
    /// Lift `ha_idle_failed_startup`.
    Clear,
    /// Certify the peer powered off.
    Peerdown,
    /// Withdraw the certification.
    Peerup,
    /// HA reset of this node now (only in default mode).
    ForceSmith,
}

/// A command the tables forbid, with the reason. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Ha {
    /// The record after `op`, or why it is refused. Changes nothing.
    ///
    /// # Errors
    /// [`Refused`] with a reason an operator can act on.
    pub fn check(&self, now: Instant, op: Op) -> Result<Record, Refused> {
        if let Some(r) = &self.reset {
            return Err(Refused(format!("an HA reset is under way ({r})")));
        }
        if self.leaving {
            // a command now could erase `left`, and the restarted daemon would then claim (or
            // fence) before hearing the peer that took the servers over
            return Err(Refused(
                "this node is leaving (a planned stop of its daemon): no HA command is taken"
                    .into(),
            ));
        }
        let comm = self.communicating(now);
        let (_, right, _) = self.pair(now);
        let mode = self.record.mode;
        let mut rec = self.record;
        match op {
            Op::Mode(m) => {
                if !m.is_settable() {
                    return Err(Refused(
                        "peerdown is a certification that the peer is powered off: use `nm-cli ha peerdown`".into(),
                    ));
                }
                if m == mode {
                    return Ok(rec);
                }
                if verdict(m, right, comm) == Verdict::Prohibited {
                    let peer = if comm {
                        format!("the peer {} is in {right} mode", self.peer_name)
                    } else {
                        format!(
                            "the peer {} does not communicate and is assumed in default mode",
                            self.peer_name
                        )
                    };
                    let need = match m {
                        Mode::Single | Mode::Config => format!(
                            "{m} mode needs the peer locked (and communicating) or certified peerdown"
                        ),
                        _ => format!("the peer must leave {right} mode first"),
                    };
                    return Err(Refused(format!(
                        "mode {m} would make the prohibited state {m}-{right}: {peer}; {need}"
                    )));
                }
                let peer_primary = self.peer(now).is_some_and(|p| p.status == Status::Primary);
                if m == Mode::Config && !self.holding && peer_primary {
                    return Err(Refused(format!(
                        "config mode is set on the primary ({}), or on either node when both are stopped",
                        self.peer_name
                    )));
                }
                if mode == Mode::Config && m == Mode::Default && self.holding {
                    return Err(Refused(
                        "leaving config mode for default needs the HA-managed servers stopped: run `nm-cli ha stop`".into(),
                    ));
                }
                rec.mode = m;
            }
            Op::Start => {
                if rec.ha_idle_failed_startup {
                    return Err(Refused(
                        "ha_idle_failed_startup is set: a start of the HA-managed servers failed; fix the cause, then run `nm-cli ha clear`".into(),
                    ));
                }
                if mode == Mode::Locked {
                    return Err(Refused(
                        "this node is locked: run `nm-cli ha mode default` first".into(),
                    ));
                }
                rec.started = true;
                // an operator's start: this node decides again (a silent peer is fenced)
                rec.left = false;
            }
            Op::Stop => rec.started = false,
            Op::Clear => rec.ha_idle_failed_startup = false,
            Op::Peerdown => {
                if comm {
                    return Err(Refused(format!(
                        "the peer {} communicates: it is not powered off",
                        self.peer_name
                    )));
                }
                rec.peerdown = true;
                rec.left = false;
            }
            Op::Peerup => {
                if matches!(mode, Mode::Single | Mode::Config) {
                    return Err(Refused(format!(
                        "peerup is refused in {mode} mode: the peer would be assumed in default mode, the prohibited {mode}-default; leave {mode} mode first"
                    )));
                }
                rec.peerdown = false;
            }
            Op::ForceSmith => {
                if mode != Mode::Default {
                    return Err(Refused(format!(
                        "force smith resets only a node in default mode; this node is in {mode} mode"
                    )));
                }
            }
        }
        Ok(rec)
    }

    /// Applies `op` once its record (from [`Ha::check`]) is persisted.
    ///
    /// # Errors
    /// [`Refused`] as [`Ha::check`] says; nothing changed then.
    pub fn apply(&mut self, now: Instant, op: Op) -> Result<(), Refused> {
        self.record = self.check(now, op)?;
        // an operator (or the peer's operator) decided about this node: no arming from the peer
        self.joining = false;
        match op {
            Op::Mode(Mode::Locked) => self.stop_servers("mode locked".into()),
            Op::Stop => self.stop_servers("ha stop".into()),
            Op::ForceSmith => {
                self.ha_reset("force smith: HA reset requested by an operator".into())
            }
            _ => {}
        }
        self.evaluate(now);
        Ok(())
    }
}
