//! The pair-wide commands `ha start` and `ha stop` (the StorNext HA Manager's command table) as plans: pure
//! functions from the pair as this node reports it to the steps that run, in order, on this
//! node and its peer. The driver carries the steps out and waits where a step says so; a step
//! that fails ends the plan, and the steps before it stand.

use super::ops::{Op, Refused};
use crate::mode::{Mode, Status};
use crate::report::HaReport;

/// Which node of the pair a step runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This node (where the operator ran the command).
    Local,
    /// Its peer, over the link.
    Peer,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run `op` on `side`. An op that stops the HA-managed servers (`Stop`, mode `locked`) is
    /// done once they are down on that side.
    Run(Side, Op),
    /// Exchange with the peer, then set `side`'s mode to `default` unless the fresh report shows
    /// it there already ([`Step::needs_default`]).
    ToDefault(Side),
    /// Wait until this node is primary with its HA-managed servers started, or their start
    /// failed (`ha_idle_failed_startup`): then the plan fails, after `on_failed_start`. While it
    /// waits, the peer is re-examined at every report ([`awaiting`]): a peer that was silent
    /// when the plan was made and communicates now makes the driver plan again from the fresh
    /// report; a fence is reported only once the fence command reported success.
    AwaitPrimary {
        /// What to do when the start fails.
        on_failed_start: OnFailedStart,
    },
    /// Start HA on the peer if the fresh report shows it communicating (it becomes the
    /// secondary); a silent peer is left to arm itself when its daemon comes up beside this
    /// primary.
    StartPeer,
}

/// Where [`Step::AwaitPrimary`] stands, from a fresh report ([`awaiting`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Awaiting {
    /// This node is primary, its HA-managed servers started.
    Primary,
    /// Their start failed here (`ha_idle_failed_startup`).
    FailedStart,
    /// The peer, silent when the plan was made, communicates now and this node is not primary:
    /// plan `ha start` again from this report (the peer is stopped first, then started after).
    PeerAppeared,
    /// Not yet: wait for the next report.
    Wait,
}

/// [`Step::AwaitPrimary`]'s decision on a fresh report. `peer_was_silent`: the peer did not
/// communicate when the plan was made.
#[must_use]
pub fn awaiting(r: &HaReport, peer_was_silent: bool) -> Awaiting {
    if r.local.status == Some(Status::Primary) && !r.starting && !r.stopping {
        Awaiting::Primary
    } else if r.local.ha_idle_failed_startup == Some(true) {
        Awaiting::FailedStart
    } else if peer_was_silent && r.communicating && r.local.status != Some(Status::Primary) {
        Awaiting::PeerAppeared
    } else {
        Awaiting::Wait
    }
}

/// The step line for fences that reported success while a plan waited: `fences_before` is
/// the report's `fences` when the wait began. `None` when no fence command reported success:
/// nothing is ever said to be fenced on a guess.
#[must_use]
pub fn fenced_line(r: &HaReport, fences_before: u64) -> Option<String> {
    (r.fences > fences_before).then(|| {
        format!(
            "{}: the peer {} did not communicate: fenced (the fence command exited 0)",
            r.local.node, r.peer.node
        )
    })
}

/// What a failed start of the HA-managed servers does, in [`Step::AwaitPrimary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailedStart {
    /// Start HA on the peer again: this node being blocked, the peer becomes primary.
    HandBackToPeer,
    /// Nothing more (the peer does not communicate).
    Report,
}

impl Step {
    /// For [`Step::ToDefault`]: whether `report` (fresh) shows `side` out of `default` mode.
    /// `false` for every other step.
    #[must_use]
    pub fn needs_default(&self, report: &HaReport) -> bool {
        match self {
            Self::ToDefault(Side::Local) => report.local.mode != Mode::Default,
            Self::ToDefault(Side::Peer) => report.peer.mode != Mode::Default,
            _ => false,
        }
    }
}

/// The refusal of an `ha start` on a node whose starts are blocked.
const BLOCKED: &str = "ha_idle_failed_startup is set: a start of the HA-managed servers failed; fix the cause, then run `nm-cli ha clear`";

/// The StorNext HA Manager's `start`: stop each node where needed, both to default, this node first (primary),
/// then the peer (secondary).
///
/// # Errors
/// [`Refused`] when this node's starts are blocked by `ha_idle_failed_startup`: refused before
/// anything is touched, since stopping a healthy primary to then find that this node cannot start
/// would leave the pair with no primary.
pub fn plan_start(r: &HaReport) -> Result<Vec<Step>, Refused> {
    use Side::{Local, Peer};
    if r.local.ha_idle_failed_startup == Some(true) {
        return Err(Refused(BLOCKED.into()));
    }
    let comm = r.communicating;
    let mut plan = vec![];
    // the peer stops HA first (its servers too, if it is primary): once in default mode, a
    // started peer (a locked one shows `stopped` but may be started) would claim the servers
    // itself before this node starts
    if comm {
        plan.push(Step::Run(Peer, Op::Stop));
    }
    // both to default: a node in single or config mode leaves it first (its peer must stay
    // locked or certified until then), then the other
    let local_first = matches!(r.local.mode, Mode::Single | Mode::Config);
    let peer_to_default = comm && r.peer.mode != Mode::Default;
    if !local_first && peer_to_default {
        plan.push(Step::Run(Peer, Op::Mode(Mode::Default)));
    }
    // leaving config for default needs the servers stopped (Ha::check)
    if r.local.mode == Mode::Config && r.local.status == Some(Status::Primary) {
        plan.push(Step::Run(Local, Op::Stop));
    }
    if r.local.mode != Mode::Default {
        plan.push(Step::Run(Local, Op::Mode(Mode::Default)));
    }
    if local_first && peer_to_default {
        plan.push(Step::Run(Peer, Op::Mode(Mode::Default)));
    }
    plan.push(Step::Run(Local, Op::Start));
    plan.push(Step::AwaitPrimary {
        on_failed_start: if comm {
            OnFailedStart::HandBackToPeer
        } else {
            OnFailedStart::Report
        },
    });
    // decided on the report fresh after the wait: a peer that came up meanwhile is armed too
    plan.push(Step::StartPeer);
    Ok(plan)
}

/// The StorNext HA Manager's `stop`: the secondary to locked, the primary to config and stopped, then both to
/// default with the HA-managed servers stopped. No HA reset.
///
/// # Errors
/// [`Refused`] when the peer does not communicate and is not certified `peerdown`: `ha stop`
/// stops both nodes.
pub fn plan_stop(r: &HaReport) -> Result<Vec<Step>, Refused> {
    use Side::{Local, Peer};
    let run = Step::Run;
    if !r.communicating {
        if r.peer.mode != Mode::Peerdown {
            return Err(Refused(format!(
                "the peer {} does not communicate: `ha stop` stops both nodes and needs it; if it is powered off, certify it with `nm-cli ha peerdown`; to stop this node alone, `nm-cli ha mode locked`",
                r.peer.node
            )));
        }
        let mut plan = vec![run(Local, Op::Stop)];
        if r.local.mode != Mode::Default {
            plan.push(run(Local, Op::Mode(Mode::Default)));
        }
        return Ok(plan);
    }
    // the secondary is locked first, so it cannot take over while the primary stops
    let (primary, secondary) = if r.local.status == Some(Status::Primary) {
        (Local, Peer)
    } else if r.peer.status == Some(Status::Primary) {
        (Peer, Local)
    } else {
        return Ok(vec![
            run(Peer, Op::Stop),
            run(Local, Op::Stop),
            Step::ToDefault(Local),
            Step::ToDefault(Peer),
        ]);
    };
    Ok(vec![
        run(secondary, Op::Mode(Mode::Locked)),
        run(primary, Op::Mode(Mode::Config)),
        run(primary, Op::Stop),
        run(primary, Op::Mode(Mode::Default)),
        run(secondary, Op::Stop),
        run(secondary, Op::Mode(Mode::Default)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::NodeReport;
    use Side::{Local, Peer};

    /// The pair as node1 reports it; `peer: None` is a peer that does not communicate, taken to
    /// be in `peer_mode` (`default` assumed, or `peerdown` certified).
    fn report(local: (Mode, Status), peer: Option<(Mode, Status)>, peer_mode: Mode) -> HaReport {
        let mut r = HaReport::unconfigured("node1");
        r.configured = true;
        r.local = NodeReport {
            node: "node1".into(),
            mode: local.0,
            status: Some(local.1),
            ha_idle_failed_startup: Some(false),
            assumed: false,
        };
        r.communicating = peer.is_some();
        r.peer = NodeReport {
            node: "node2".into(),
            mode: peer.map_or(peer_mode, |p| p.0),
            status: peer.map(|p| p.1),
            ha_idle_failed_startup: peer.map(|_| false),
            assumed: peer.is_none(),
        };
        r
    }

    fn talking(local: (Mode, Status), peer: (Mode, Status)) -> HaReport {
        report(local, Some(peer), Mode::Default)
    }

    fn mode(m: Mode) -> Op {
        Op::Mode(m)
    }

    const HAND_BACK: Step = Step::AwaitPrimary {
        on_failed_start: OnFailedStart::HandBackToPeer,
    };

    #[test]
    fn start_stops_the_peer_first_and_starts_it_again_after_this_node_is_primary() {
        use Status::{Primary, Running, Stopped};
        let cases = [
            // (local, peer) -> the steps between the peer's stop and this node's start
            ((Mode::Default, Stopped), (Mode::Default, Stopped), vec![]),
            ((Mode::Default, Running), (Mode::Default, Primary), vec![]),
            ((Mode::Default, Primary), (Mode::Default, Running), vec![]),
            // the peer leaves locked before this node starts
            (
                (Mode::Default, Stopped),
                (Mode::Locked, Stopped),
                vec![Step::Run(Peer, mode(Mode::Default))],
            ),
            // this node leaves single first (its locked peer makes single allowed), then the peer
            (
                (Mode::Single, Primary),
                (Mode::Locked, Stopped),
                vec![
                    Step::Run(Local, mode(Mode::Default)),
                    Step::Run(Peer, mode(Mode::Default)),
                ],
            ),
            // a primary in config mode stops its servers before it may leave config
            (
                (Mode::Config, Primary),
                (Mode::Locked, Stopped),
                vec![
                    Step::Run(Local, Op::Stop),
                    Step::Run(Local, mode(Mode::Default)),
                    Step::Run(Peer, mode(Mode::Default)),
                ],
            ),
            (
                (Mode::Config, Stopped),
                (Mode::Locked, Stopped),
                vec![
                    Step::Run(Local, mode(Mode::Default)),
                    Step::Run(Peer, mode(Mode::Default)),
                ],
            ),
            // a locked node leaves locked after the peer left its mode
            (
                (Mode::Locked, Stopped),
                (Mode::Single, Primary),
                vec![
                    Step::Run(Peer, mode(Mode::Default)),
                    Step::Run(Local, mode(Mode::Default)),
                ],
            ),
        ];
        for (local, peer, middle) in cases {
            let mut want = vec![Step::Run(Peer, Op::Stop)];
            want.extend(middle);
            want.extend([Step::Run(Local, Op::Start), HAND_BACK, Step::StartPeer]);
            let got = plan_start(&talking(local, peer)).unwrap();
            assert_eq!(got, want, "local {local:?}, peer {peer:?}");
        }
    }

    #[test]
    fn start_beside_a_silent_peer_claims_no_fence_in_advance_and_starts_the_peer_if_it_appears() {
        let assumed = report((Mode::Default, Status::Stopped), None, Mode::Default);
        assert_eq!(
            plan_start(&assumed).unwrap(),
            [
                Step::Run(Local, Op::Start),
                Step::AwaitPrimary {
                    on_failed_start: OnFailedStart::Report
                },
                Step::StartPeer,
            ]
        );
        let certified = report((Mode::Single, Status::Primary), None, Mode::Peerdown);
        assert_eq!(
            plan_start(&certified).unwrap(),
            [
                Step::Run(Local, mode(Mode::Default)),
                Step::Run(Local, Op::Start),
                Step::AwaitPrimary {
                    on_failed_start: OnFailedStart::Report
                },
                Step::StartPeer,
            ]
        );
    }

    #[test]
    fn awaiting_primary_re_examines_the_peer_and_says_fenced_only_after_a_fence_succeeded() {
        use Status::{Primary, Running};
        // the peer was silent at the plan; it communicates now, this node is not primary yet
        let mut r = talking((Mode::Default, Running), (Mode::Default, Status::Stopped));
        assert_eq!(awaiting(&r, true), Awaiting::PeerAppeared);
        assert_eq!(awaiting(&r, false), Awaiting::Wait);
        // still silent: wait (a fence may be under way)
        let silent = report((Mode::Default, Running), None, Mode::Default);
        assert_eq!(awaiting(&silent, true), Awaiting::Wait);
        assert_eq!(fenced_line(&silent, 0), None, "no fence reported: no claim");
        // primary, its start finished
        r.local.status = Some(Primary);
        assert_eq!(awaiting(&r, true), Awaiting::Primary);
        r.starting = true;
        assert_eq!(awaiting(&r, true), Awaiting::Wait);
        r.starting = false;
        // a failed start
        let mut failed = silent.clone();
        failed.local.ha_idle_failed_startup = Some(true);
        assert_eq!(awaiting(&failed, true), Awaiting::FailedStart);
        // a fence that reported success since the wait began
        let mut fenced = silent;
        fenced.fences = 3;
        assert_eq!(fenced_line(&fenced, 3), None);
        assert_eq!(
            fenced_line(&fenced, 2).unwrap(),
            "node1: the peer node2 did not communicate: fenced (the fence command exited 0)"
        );
    }

    #[test]
    fn start_is_refused_before_any_step_while_this_nodes_starts_are_blocked() {
        for peer in [Some((Mode::Default, Status::Primary)), None] {
            let mut r = report((Mode::Default, Status::Stopped), peer, Mode::Default);
            r.local.ha_idle_failed_startup = Some(true);
            assert_eq!(plan_start(&r), Err(Refused(BLOCKED.into())));
        }
        // the peer's block is no reason to refuse: this node takes over
        let mut r = talking(
            (Mode::Default, Status::Running),
            (Mode::Default, Status::Stopped),
        );
        r.peer.ha_idle_failed_startup = Some(true);
        assert!(plan_start(&r).is_ok());
    }

    #[test]
    fn stop_locks_the_secondary_before_the_primary_stops() {
        use Status::{Primary, Running};
        let local_primary = talking((Mode::Default, Primary), (Mode::Default, Running));
        assert_eq!(
            plan_stop(&local_primary).unwrap(),
            [
                Step::Run(Peer, mode(Mode::Locked)),
                Step::Run(Local, mode(Mode::Config)),
                Step::Run(Local, Op::Stop),
                Step::Run(Local, mode(Mode::Default)),
                Step::Run(Peer, Op::Stop),
                Step::Run(Peer, mode(Mode::Default)),
            ]
        );
        let peer_primary = talking((Mode::Locked, Status::Stopped), (Mode::Single, Primary));
        assert_eq!(
            plan_stop(&peer_primary).unwrap(),
            [
                Step::Run(Local, mode(Mode::Locked)),
                Step::Run(Peer, mode(Mode::Config)),
                Step::Run(Peer, Op::Stop),
                Step::Run(Peer, mode(Mode::Default)),
                Step::Run(Local, Op::Stop),
                Step::Run(Local, mode(Mode::Default)),
            ]
        );
    }

    #[test]
    fn stop_without_a_primary_stops_both_then_brings_each_to_default_if_it_is_not() {
        let r = talking(
            (Mode::Locked, Status::Stopped),
            (Mode::Default, Status::Running),
        );
        let plan = plan_stop(&r).unwrap();
        assert_eq!(
            plan,
            [
                Step::Run(Peer, Op::Stop),
                Step::Run(Local, Op::Stop),
                Step::ToDefault(Local),
                Step::ToDefault(Peer),
            ]
        );
        // each ToDefault is decided on the report fresh at that step
        assert!(plan[2].needs_default(&r));
        assert!(!plan[3].needs_default(&r));
        assert!(!plan[0].needs_default(&r));
    }

    #[test]
    fn stop_beside_a_silent_peer_needs_it_certified_down() {
        let assumed = report((Mode::Default, Status::Primary), None, Mode::Default);
        let why = plan_stop(&assumed).unwrap_err().0;
        assert!(
            why.starts_with("the peer node2 does not communicate: `ha stop` stops both nodes"),
            "{why}"
        );
        let certified = report((Mode::Single, Status::Primary), None, Mode::Peerdown);
        assert_eq!(
            plan_stop(&certified).unwrap(),
            [
                Step::Run(Local, Op::Stop),
                Step::Run(Local, mode(Mode::Default))
            ]
        );
        let default = report((Mode::Default, Status::Running), None, Mode::Peerdown);
        assert_eq!(plan_stop(&default).unwrap(), [Step::Run(Local, Op::Stop)]);
    }
}
