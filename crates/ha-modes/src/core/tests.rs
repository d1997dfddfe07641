use std::time::{Duration, Instant};

use super::*;
use crate::core::ops::{Op, Refused};

fn t0() -> Instant {
    super::tests_clock()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const TIMING: Timing = Timing {
    heartbeat: Duration::from_millis(500),
    peer_timeout: Duration::from_secs(3),
    fence_delay: Duration::ZERO,
    fence_retry: Duration::from_secs(5),
};

fn started() -> Record {
    Record {
        started: true,
        ..Record::default()
    }
}

fn peer(mode: Mode, status: Status) -> PeerState {
    PeerState {
        node: "node2".into(),
        incarnation: 2,
        mode,
        status,
        peerdown: false,
        started: status != Status::Stopped,
        ha_idle_failed_startup: false,
        promoting: false,
        claims_done: 0,
        seq: 0,
        up_ms: 0,
    }
}

/// Node `me` of the pair node1/node2 at start (incarnation 1 for node1, 2 for node2), its
/// servers down.
fn init(me: &str, record: Record) -> HaInit {
    let (peer, incarnation) = if me == "node1" {
        ("node2", 1)
    } else {
        ("node1", 2)
    };
    HaInit {
        node: me.into(),
        peer: peer.into(),
        incarnation,
        record,
        servers: Observed::Down,
        timing: TIMING,
    }
}

fn drain(ha: &mut Ha) -> Vec<Action> {
    std::iter::from_fn(|| ha.poll_action()).collect()
}

fn is_start(a: &Action) -> bool {
    matches!(a, Action::StartServers { .. })
}

/// A started node whose peer is certified `peerdown`: it starts the servers (is primary) once the
/// start-up window is over, at `t + 3 s`.
fn starting_with_a_certified_peer(t: Instant) -> Ha {
    let rec = Record {
        peerdown: true,
        ..started()
    };
    let mut ha = Ha::new(t, init("node1", rec));
    ha.on_timeout(t + ms(3000));
    assert!(is_start(&drain(&mut ha)[0]));
    ha
}

// ---- failover and fencing ----

#[test]
fn a_secondary_fences_a_silent_primary_before_it_takes_over() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    ha.on_peer_state(t, peer(Mode::Default, Status::Primary));
    assert!(drain(&mut ha).is_empty());
    assert_eq!(ha.status(), Status::Running);
    // still within peer_timeout: nothing
    ha.on_timeout(t + ms(2999));
    assert!(drain(&mut ha).is_empty());
    ha.on_timeout(t + ms(3000));
    assert_eq!(drain(&mut ha), [Action::Fence]);
    assert_eq!(ha.fence_state(), FenceState::Fencing);
    assert_eq!(
        ha.status(),
        Status::Running,
        "not primary before the fence succeeded"
    );
    ha.on_fence_result(t + ms(3100), Ok(()));
    let a = drain(&mut ha);
    assert!(a.len() == 1 && is_start(&a[0]), "{a:?}");
    assert_eq!(ha.status(), Status::Primary);
    ha.on_servers_started(t + ms(3200), Ok(()));
    assert!(drain(&mut ha).is_empty());
    assert_eq!(ha.status(), Status::Primary);
}

#[test]
fn a_secondary_back_from_a_stall_counts_the_primarys_silence_again_before_it_fences() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    ha.on_peer_state(t, peer(Mode::Default, Status::Primary));
    assert!(drain(&mut ha).is_empty());
    // frozen from t + 1 s to t + 8 s: the timer set for t + 3 s fires 5 s late
    ha.on_stalled(t + ms(8000));
    assert!(
        drain(&mut ha).is_empty(),
        "no fence on a silence it did not watch"
    );
    assert!(!ha.silent(t + ms(8000)) && !ha.communicating(t + ms(8000)));
    assert_eq!(ha.next_deadline(), Some(t + ms(11_000)));
    // the primary's queued heartbeat is read: it talks, nothing happens
    ha.on_peer_state(t + ms(8010), peer(Mode::Default, Status::Primary));
    assert!(drain(&mut ha).is_empty());
    assert!(ha.communicating(t + ms(8010)));
    // a primary that really is gone is fenced one peer_timeout after the node's return
    ha.on_stalled(t + ms(20_000));
    ha.on_timeout(t + ms(22_999));
    assert!(drain(&mut ha).is_empty());
    ha.on_timeout(t + ms(23_000));
    assert_eq!(drain(&mut ha), [Action::Fence]);
}

#[test]
fn a_failed_fence_is_retried_and_never_followed_by_a_takeover() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    ha.on_timeout(t + ms(3000));
    assert_eq!(drain(&mut ha), [Action::Fence]);
    ha.on_fence_result(t + ms(3100), Err("exit status 1".into()));
    assert!(drain(&mut ha).is_empty());
    assert_eq!(ha.fence_state(), FenceState::Failed(t + ms(8100)));
    assert_eq!(ha.next_deadline(), Some(t + ms(8100)));
    ha.on_timeout(t + ms(8000));
    assert!(drain(&mut ha).is_empty());
    ha.on_timeout(t + ms(8100));
    assert_eq!(drain(&mut ha), [Action::Fence]);
    assert_eq!(ha.status(), Status::Running);
}

#[test]
fn the_fence_delay_holds_this_side_back_and_a_returning_peer_cancels_it() {
    let t = t0();
    let timing = Timing {
        fence_delay: ms(2000),
        ..TIMING
    };
    let mut ha = Ha::new(
        t,
        HaInit {
            timing,
            ..init("node1", started())
        },
    );
    ha.on_peer_state(t, peer(Mode::Default, Status::Primary));
    ha.on_timeout(t + ms(3000));
    assert!(drain(&mut ha).is_empty());
    assert_eq!(ha.fence_state(), FenceState::Delaying(t + ms(5000)));
    assert_eq!(ha.next_deadline(), Some(t + ms(5000)));
    ha.on_peer_state(t + ms(4000), peer(Mode::Default, Status::Primary));
    assert_eq!(ha.fence_state(), FenceState::Idle);
    ha.on_timeout(t + ms(5000));
    assert!(drain(&mut ha).is_empty(), "the peer is back: no fence");
}

#[test]
fn a_peer_certified_peerdown_is_not_fenced_and_a_started_node_takes_over() {
    let t = t0();
    let rec = Record {
        peerdown: true,
        ..started()
    };
    let mut ha = Ha::new(t, init("node1", rec));
    assert!(
        drain(&mut ha).is_empty(),
        "the start-up window: is the peer really silent?"
    );
    ha.on_timeout(t + ms(3000));
    let a = drain(&mut ha);
    assert!(a.len() == 1 && is_start(&a[0]), "{a:?}");
}

#[test]
fn a_primary_that_loses_its_peer_keeps_running_and_fences_nothing() {
    let t = t0();
    let mut ha = Ha::new(
        t,
        HaInit {
            servers: Observed::Up,
            ..init("node1", started())
        },
    );
    assert_eq!(
        ha.status(),
        Status::Primary,
        "adopted servers make the node primary"
    );
    ha.on_peer_state(t, peer(Mode::Default, Status::Running));
    ha.on_timeout(t + ms(10_000));
    assert!(drain(&mut ha).is_empty());
    assert_eq!(ha.status(), Status::Primary);
}

#[test]
fn a_stopped_or_locked_or_blocked_node_never_fences_or_starts() {
    let t = t0();
    for rec in [
        Record::default(),
        Record {
            mode: Mode::Locked,
            ..started()
        },
        Record {
            ha_idle_failed_startup: true,
            ..started()
        },
    ] {
        let mut ha = Ha::new(t, init("node1", rec));
        ha.on_timeout(t + ms(60_000));
        assert!(drain(&mut ha).is_empty(), "{rec:?}");
    }
}

// ---- promotion with a communicating peer ----

#[test]
fn with_a_communicating_peer_a_node_becomes_primary_only_with_its_consent() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    ha.on_peer_state(t, peer(Mode::Default, Status::Stopped));
    assert_eq!(drain(&mut ha), [Action::AskPromote { claim: 1 }]);
    assert!(ha.state_for_peer().promoting);
    ha.on_promote_answer(t + ms(10), 1, false);
    assert!(drain(&mut ha).is_empty());
    assert_eq!(ha.status(), Status::Running);
    assert_eq!(ha.state_for_peer().claims_done, 1);
    // the next exchange asks again, and a grant makes it primary
    ha.on_peer_state(t + ms(500), peer(Mode::Default, Status::Stopped));
    assert_eq!(drain(&mut ha), [Action::AskPromote { claim: 2 }]);
    ha.on_promote_answer(t + ms(510), 2, true);
    let a = drain(&mut ha);
    assert!(a.len() == 1 && is_start(&a[0]), "{a:?}");
    assert_eq!(ha.state_for_peer().status, Status::Primary);
}

#[test]
fn a_claim_that_failed_because_the_peer_died_does_not_block_the_fence() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    ha.on_peer_state(t, peer(Mode::Default, Status::Stopped));
    assert_eq!(drain(&mut ha), [Action::AskPromote { claim: 1 }]);
    // the peer dies: no answer, the claim counts as denied; the peer never reports again
    ha.on_promote_answer(t + ms(100), 1, false);
    assert!(drain(&mut ha).is_empty());
    ha.on_timeout(t + ms(3000));
    assert_eq!(drain(&mut ha), [Action::Fence], "a silent peer is fenced");
    ha.on_fence_result(t + ms(3100), Ok(()));
    assert!(is_start(&drain(&mut ha)[0]));
}

#[test]
fn two_started_secondaries_leave_the_promotion_to_the_lesser_name() {
    let t = t0();
    let mut n2 = Ha::new(t, init("node2", started()));
    let mut p = peer(Mode::Default, Status::Running);
    p.node = "node1".into();
    n2.on_peer_state(t, p);
    assert!(drain(&mut n2).is_empty(), "node2 waits for node1");
    let mut n1 = Ha::new(t, init("node1", started()));
    n1.on_peer_state(t, peer(Mode::Default, Status::Running));
    assert_eq!(drain(&mut n1), [Action::AskPromote { claim: 1 }]);
}

#[test]
fn a_node_just_back_from_a_reset_lets_the_longer_running_peer_claim_first() {
    let t = t0();
    // node1 (the lesser name) restarted a moment ago; node2 has run for a minute
    let mut n1 = Ha::new(
        t,
        HaInit {
            incarnation: 3,
            ..init("node1", started())
        },
    );
    let mut p = peer(Mode::Default, Status::Running);
    p.up_ms = 60_000;
    n1.on_peer_state(t + ms(500), p);
    assert!(drain(&mut n1).is_empty(), "node1 waits for node2");
    // and node2, seeing node1 young, claims
    let mut n2 = Ha::new(t, init("node2", started()));
    n2.since = t - ms(60_000);
    let mut p1 = peer(Mode::Default, Status::Running);
    p1.node = "node1".into();
    p1.up_ms = 500;
    n2.on_peer_state(t + ms(500), p1);
    assert_eq!(drain(&mut n2), [Action::AskPromote { claim: 1 }]);
}

#[test]
fn a_grant_blocks_this_nodes_own_claim_until_the_peer_reports_it_finished() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    assert!(ha.on_promote_request(t, 2, 7));
    ha.on_peer_state(t, peer(Mode::Default, Status::Stopped));
    assert!(
        drain(&mut ha).is_empty(),
        "granted to the peer: no claim of our own"
    );
    let mut p = peer(Mode::Default, Status::Running);
    p.claims_done = 7; // the peer's claim ended without it becoming primary
    ha.on_peer_state(t + ms(500), p);
    assert_eq!(drain(&mut ha), [Action::AskPromote { claim: 1 }]);
}

#[test]
fn simultaneous_claims_are_settled_by_name() {
    let t = t0();
    let mut n1 = Ha::new(t, init("node1", started()));
    let mut n2 = Ha::new(t, init("node2", started()));
    n1.on_peer_state(t, peer(Mode::Default, Status::Stopped));
    let mut p1 = peer(Mode::Default, Status::Stopped);
    p1.node = "node1".into();
    n2.on_peer_state(t, p1);
    assert_eq!(drain(&mut n1), [Action::AskPromote { claim: 1 }]);
    assert_eq!(drain(&mut n2), [Action::AskPromote { claim: 1 }]);
    // each receives the other's claim while its own is open
    assert!(!n1.on_promote_request(t, 2, 1), "node1 keeps its claim");
    assert!(n2.on_promote_request(t, 1, 1), "node2 yields");
    n1.on_promote_answer(t, 1, true);
    n2.on_promote_answer(t, 1, false);
    assert_eq!(n1.status(), Status::Primary);
    assert_eq!(n2.status(), Status::Running);
}

#[test]
fn a_node_that_fences_its_peer_refuses_the_peers_claim() {
    let t = t0();
    let mut ha = Ha::new(
        t,
        HaInit {
            incarnation: 1,
            ..init("node2", started())
        },
    );
    ha.on_timeout(t + ms(3000));
    assert_eq!(drain(&mut ha), [Action::Fence]);
    assert!(!ha.on_promote_request(t + ms(3100), 9, 1));
    ha.on_fence_result(t + ms(3200), Ok(()));
    assert!(!ha.on_promote_request(t + ms(3200), 9, 2));
}

#[test]
fn a_primary_or_starting_node_refuses_every_claim() {
    let t = t0();
    let mut ha = Ha::new(
        t,
        HaInit {
            incarnation: 1,
            servers: Observed::Up,
            ..init("node2", started())
        },
    );
    assert!(!ha.on_promote_request(t, 9, 1));
}

#[test]
fn two_primaries_that_communicate_reset_the_greater_name_only() {
    let t = t0();
    let mut n2 = Ha::new(
        t,
        HaInit {
            servers: Observed::Up,
            ..init("node2", started())
        },
    );
    let mut p = peer(Mode::Default, Status::Primary);
    p.node = "node1".into();
    n2.on_peer_state(t, p);
    let a = drain(&mut n2);
    assert!(
        matches!(&a[..], [Action::HaReset { reason }] if reason.contains("both nodes primary"))
    );
    let mut n1 = Ha::new(
        t,
        HaInit {
            servers: Observed::Up,
            ..init("node1", started())
        },
    );
    n1.on_peer_state(t, peer(Mode::Default, Status::Primary));
    assert!(drain(&mut n1).is_empty());
}

#[test]
fn a_report_overtaken_by_a_newer_one_is_dropped() {
    let t = t0();
    let mut n2 = Ha::new(t, init("node2", started()));
    let mut old = peer(Mode::Default, Status::Primary);
    old.node = "node1".into();
    old.seq = 5;
    let mut new = peer(Mode::Locked, Status::Stopped);
    new.node = "node1".into();
    new.seq = 6;
    new.started = false;
    n2.on_peer_state(t, new);
    assert_eq!(drain(&mut n2), [Action::AskPromote { claim: 1 }]);
    n2.on_promote_answer(t + ms(10), 1, true);
    assert!(is_start(&drain(&mut n2)[0]));
    // node1's heartbeat from before it stopped arrives late on the other stream: ignored, so no
    // "two primaries" and no reset of the new primary
    n2.on_peer_state(t + ms(200), old);
    assert!(drain(&mut n2).is_empty());
    assert_eq!(n2.status(), Status::Primary);
    assert_eq!(n2.peer(t + ms(200)).unwrap().mode, Mode::Locked);
}

#[test]
fn servers_seen_running_here_make_the_node_primary_and_refuse_the_peers_claim() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    ha.on_servers_observed(t, Observed::Up);
    assert_eq!(ha.status(), Status::Primary);
    assert!(!ha.on_promote_request(t, 2, 1));
}

#[test]
fn servers_that_survive_their_stop_keep_the_node_primary_and_reset_it() {
    let t = t0();
    let mut ha = Ha::new(
        t,
        HaInit {
            servers: Observed::Up,
            ..init("node1", started())
        },
    );
    ha.apply(t, Op::Stop).unwrap();
    assert!(matches!(&drain(&mut ha)[..], [Action::StopServers { .. }]));
    ha.on_servers_stopped(t, Err("db in D state".into()));
    let a = drain(&mut ha);
    assert!(
        matches!(&a[..], [Action::HaReset { reason }] if reason.contains("survive")),
        "{a:?}"
    );
    assert_eq!(ha.status(), Status::Primary);
    assert!(!ha.on_promote_request(t, 2, 1));
}

#[test]
fn a_stop_asked_for_during_a_start_is_not_a_failed_start() {
    let t = t0();
    let mut ha = starting_with_a_certified_peer(t);
    ha.apply(t + ms(3010), Op::Stop).unwrap();
    drain(&mut ha);
    ha.on_servers_started(t + ms(3020), Err("db is SHUTDOWN".into()));
    assert!(!ha.record().ha_idle_failed_startup);
    assert!(
        drain(&mut ha)
            .iter()
            .all(|a| !matches!(a, Action::Persist(_)))
    );
}

// ---- failed startup ----

#[test]
fn a_failed_start_sets_the_flag_stops_what_started_and_blocks_until_clear() {
    let t = t0();
    let mut ha = starting_with_a_certified_peer(t);
    ha.on_servers_started(t + ms(3100), Err("db: FAILED_NOT_RESTARTABLE".into()));
    let a = drain(&mut ha);
    assert!(matches!(&a[0], Action::Persist(r) if r.ha_idle_failed_startup));
    assert!(
        matches!(&a[1], Action::StopServers { reason } if reason.contains("FAILED_NOT_RESTARTABLE"))
    );
    assert_eq!(
        ha.status(),
        Status::Primary,
        "primary until the servers are down"
    );
    ha.on_servers_stopped(t + ms(3200), Ok(()));
    assert!(drain(&mut ha).is_empty(), "blocked: no new start");
    assert_eq!(ha.status(), Status::Running);
    let err = ha.check(t + ms(3200), Op::Start).unwrap_err();
    assert!(err.0.contains("ha clear"), "{err}");
    let rec = ha.check(t + ms(3300), Op::Clear).unwrap();
    assert!(!rec.ha_idle_failed_startup);
    ha.apply(t + ms(3300), Op::Clear).unwrap();
    assert!(
        is_start(&drain(&mut ha)[0]),
        "cleared: the node starts again"
    );
}

// ---- commands ----

#[test]
fn refused_commands_change_nothing_and_say_why() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    ha.on_peer_state(t, peer(Mode::Default, Status::Primary));
    drain(&mut ha);
    let before = ha.record();
    let cases: [(Op, &str); 6] = [
        (Op::Peerdown, "communicates"),
        (Op::Mode(Mode::Single), "prohibited state single-default"),
        (Op::Mode(Mode::Config), "prohibited state config-default"),
        (Op::Mode(Mode::Peerdown), "ha peerdown"),
        (Op::Start, ""), // allowed: already started, a no-op
        (Op::Stop, ""),
    ];
    for (op, why) in cases {
        match ha.check(t, op) {
            Err(Refused(r)) => assert!(!why.is_empty() && r.contains(why), "{op:?}: {r}"),
            Ok(_) => assert!(why.is_empty(), "{op:?} should be refused"),
        }
    }
    assert!(ha.apply(t, Op::Mode(Mode::Single)).is_err());
    assert_eq!(ha.record(), before);
    assert!(drain(&mut ha).is_empty());
}

#[test]
fn peerup_is_refused_in_single_and_config_and_force_smith_outside_default() {
    let t = t0();
    for mode in [Mode::Single, Mode::Config] {
        let rec = Record {
            mode,
            peerdown: true,
            ..Record::default()
        };
        let ha = Ha::new(t, init("node1", rec));
        assert!(
            ha.check(t, Op::Peerup)
                .unwrap_err()
                .0
                .contains("refused in")
        );
        assert!(
            ha.check(t, Op::ForceSmith)
                .unwrap_err()
                .0
                .contains("default mode")
        );
    }
    let mut ha = Ha::new(t, init("node1", Record::default()));
    ha.apply(t, Op::ForceSmith).unwrap();
    assert!(
        matches!(&drain(&mut ha)[..], [Action::HaReset { reason }] if reason.contains("force smith"))
    );
    assert!(ha.check(t, Op::Clear).is_err(), "nothing after a reset");
}

#[test]
fn config_is_set_on_the_primary_not_beside_it() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    ha.on_peer_state(t, peer(Mode::Locked, Status::Stopped));
    drain(&mut ha);
    // node1 secondary? No: its locked peer cannot run the servers, so node1 claims them
    let mut p = peer(Mode::Locked, Status::Primary);
    p.started = false;
    let mut other = Ha::new(t, init("node1", started()));
    other.on_peer_state(t, p);
    let err = other.check(t, Op::Mode(Mode::Config)).unwrap_err();
    assert!(err.0.contains("on the primary"), "{err}");
    assert!(ha.check(t, Op::Mode(Mode::Config)).is_ok());
}

#[test]
fn locking_a_primary_stops_its_servers() {
    let t = t0();
    let mut ha = Ha::new(
        t,
        HaInit {
            servers: Observed::Up,
            ..init("node1", started())
        },
    );
    ha.apply(t, Op::Mode(Mode::Locked)).unwrap();
    assert!(matches!(&drain(&mut ha)[..], [Action::StopServers { .. }]));
    ha.on_servers_stopped(t, Ok(()));
    assert_eq!(ha.status(), Status::Stopped);
}

#[test]
fn single_mode_is_left_for_default_without_stopping_but_config_mode_stops() {
    let t = t0();
    for (mode, stops) in [(Mode::Single, false), (Mode::Config, true)] {
        let rec = Record { mode, ..started() };
        let mut ha = Ha::new(
            t,
            HaInit {
                servers: Observed::Up,
                ..init("node1", rec)
            },
        );
        ha.on_peer_state(t, peer(Mode::Locked, Status::Stopped));
        assert!(drain(&mut ha).is_empty());
        // the peer is unlocked (tampering: the HA Manager's prohibited single-default/config-default)
        ha.on_peer_state(t + ms(500), peer(Mode::Default, Status::Running));
        let a = drain(&mut ha);
        assert!(
            matches!(&a[0], Action::Persist(r) if r.mode == Mode::Default),
            "{a:?}"
        );
        assert_eq!(
            a.iter().any(|a| matches!(a, Action::StopServers { .. })),
            stops,
            "{mode}: {a:?}"
        );
    }
}

// ---- the HA Manager's table, every input ----

/// What a node must do, seen from outside, in a state: written from the HA Manager's text, not from
/// the core's code.
#[derive(Debug, PartialEq)]
enum Expect {
    /// An allowed state: no correction.
    NoCorrection,
    /// The node at fault: certification erased, mode default, servers stopped if it runs them.
    EraseCertification,
    /// The node at fault in single/config mode: HA reset (it runs the servers, peer silent).
    Reset,
    /// The node at fault: mode to default, servers stopped if `config` or the peer is primary.
    ToDefault { stop: bool },
    /// The other side is at fault: this node starts nothing.
    Hold,
}

fn expect(local: Record, holding: bool, peer: Option<&PeerState>) -> Expect {
    let comm = peer.is_some();
    if local.peerdown && comm {
        return Expect::EraseCertification;
    }
    let left = if peer.is_some_and(|p| p.peerdown) {
        Mode::Peerdown
    } else {
        local.mode
    };
    let right = if local.peerdown {
        Mode::Peerdown
    } else {
        peer.map_or(Mode::Default, |p| p.mode)
    };
    if verdict(left, right, comm) == Verdict::Allowed {
        return Expect::NoCorrection;
    }
    match left {
        Mode::Single | Mode::Config if !comm && holding => Expect::Reset,
        Mode::Single | Mode::Config => Expect::ToDefault {
            stop: holding
                && (left == Mode::Config || peer.is_some_and(|p| p.status == Status::Primary)),
        },
        _ => Expect::Hold,
    }
}

fn observed(actions: &[Action], before: Record, after: Record) -> Expect {
    let stop = actions
        .iter()
        .any(|a| matches!(a, Action::StopServers { .. }));
    if actions.iter().any(|a| matches!(a, Action::HaReset { .. })) {
        return Expect::Reset;
    }
    if before.peerdown && !after.peerdown && after.mode == Mode::Default && !after.started {
        return Expect::EraseCertification;
    }
    if before.mode != after.mode && after.mode == Mode::Default {
        return Expect::ToDefault { stop };
    }
    Expect::NoCorrection
}

#[test]
fn every_local_and_peer_mode_communicating_or_not_is_handled_as_the_ha_manager_says() {
    let settable = [Mode::Default, Mode::Single, Mode::Config, Mode::Locked];
    let statuses = [Status::Stopped, Status::Running, Status::Primary];
    let mut peers: Vec<Option<PeerState>> = vec![None];
    for mode in settable {
        for status in statuses {
            for certifies_us in [false, true] {
                let mut p = peer(mode, status);
                p.peerdown = certifies_us;
                peers.push(Some(p));
            }
        }
    }
    let mut cases = 0;
    let mut seen = std::collections::BTreeSet::new();
    for mode in settable {
        for peerdown in [false, true] {
            for holding in [false, true] {
                for p in &peers {
                    let t = t0();
                    let rec = Record {
                        mode,
                        peerdown,
                        started: true,
                        ha_idle_failed_startup: false,
                        left: false,
                    };
                    // the state at rest, before the input: nothing decided yet
                    let mut ha = Ha::new(
                        t,
                        HaInit {
                            servers: if holding {
                                Observed::Up
                            } else {
                                Observed::Down
                            },
                            ..init("node1", rec)
                        },
                    );
                    ha.record = rec;
                    ha.holding = holding;
                    (ha.starting, ha.stopping, ha.since) = (false, false, t - ms(10_000));
                    drain(&mut ha);
                    // the state as the pair sees it, at a time the peer counts as silent or not
                    let before = ha.record();
                    match p {
                        Some(p) => ha.on_peer_state(t + ms(10), p.clone()),
                        None => ha.on_timeout(t + ms(10)),
                    }
                    let actions = drain(&mut ha);
                    let (l, r, v) = {
                        let mut h = Ha::new(
                            t,
                            HaInit {
                                servers: if holding {
                                    Observed::Up
                                } else {
                                    Observed::Down
                                },
                                ..init("node1", rec)
                            },
                        );
                        h.since = t - ms(10_000);
                        if let Some(p) = p {
                            h.peer = Some(p.clone());
                            h.heard = Some(t);
                        }
                        h.pair(t)
                    };
                    seen.insert((l, r, p.is_some(), v));
                    let want = expect(rec, holding, p.as_ref());
                    let got = observed(&actions, before, ha.record());
                    let ctx = format!(
                        "{l}-{r} ({v:?}) local {rec:?} holding {holding} peer {p:?}: {actions:?}"
                    );
                    match want {
                        Expect::Hold => {
                            assert_eq!(got, Expect::NoCorrection, "{ctx}");
                            assert!(
                                !actions.iter().any(|a| is_start(a)
                                    || matches!(a, Action::AskPromote { .. } | Action::Fence)),
                                "holding side starts nothing: {ctx}"
                            );
                        }
                        Expect::EraseCertification => {
                            assert_eq!(got, want, "{ctx}");
                            let stop = actions
                                .iter()
                                .any(|a| matches!(a, Action::StopServers { .. }));
                            assert_eq!(stop, holding, "{ctx}");
                        }
                        Expect::NoCorrection if mode == Mode::Locked && holding => {
                            // locked never runs the servers: stopped, nothing else changes
                            assert!(
                                actions
                                    .iter()
                                    .any(|a| matches!(a, Action::StopServers { .. })),
                                "{ctx}"
                            );
                        }
                        _ => assert_eq!(got, want, "{ctx}"),
                    }
                    if v == Verdict::Prohibited {
                        assert!(
                            !actions.iter().any(is_start),
                            "no start in a prohibited state: {ctx}"
                        );
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 4 * 2 * 2 * 25);
    // every (left, right, communicating) the HA Manager names was reached
    let pairs: std::collections::BTreeSet<(Mode, Mode, bool)> =
        seen.iter().map(|&(l, r, c, _)| (l, r, c)).collect();
    for l in Mode::ALL {
        for r in Mode::ALL {
            assert!(
                pairs.contains(&(l, r, true)),
                "{l}-{r} communicating not covered"
            );
        }
    }
    for l in [Mode::Default, Mode::Single, Mode::Config, Mode::Locked] {
        for r in [Mode::Default, Mode::Peerdown] {
            assert!(pairs.contains(&(l, r, false)), "{l}-{r} silent not covered");
        }
    }
}

// ---- planned stops (leave) and joining ----

/// node2's leave, from incarnation `inc`, its servers stopped.
fn leave_of(inc: u64, status: Status) -> PeerLeave {
    PeerLeave {
        state: PeerState {
            incarnation: inc,
            ..peer(Mode::Default, status)
        },
        boot: "b00t".into(),
        servers_stopped: true,
    }
}

fn events(ha: &mut Ha) -> Vec<PairEvent> {
    std::iter::from_fn(|| ha.poll_event()).collect()
}

#[test]
fn a_leaving_primary_persists_left_then_stops_its_servers_and_never_starts_them_again() {
    let t = t0();
    let mut ha = Ha::new(
        t,
        HaInit {
            servers: Observed::Up,
            ..init("node1", started())
        },
    );
    ha.on_peer_state(t, peer(Mode::Default, Status::Running));
    drain(&mut ha);
    assert!(ha.begin_leave(t + ms(10)), "HA started: a hand-over");
    let a = drain(&mut ha);
    assert_eq!(
        a[0],
        Action::Persist(Record {
            left: true,
            ..started()
        }),
        "persisted before the stop: {a:?}"
    );
    assert!(matches!(a[1], Action::StopServers { .. }), "{a:?}");
    assert!(!ha.leave_ready(), "not before the stop is verified");
    ha.on_servers_stopped(t + ms(20), Ok(()));
    assert!(ha.leave_ready());
    assert_eq!(ha.status(), Status::Running);
    // whatever comes now, this incarnation starts nothing: a grant, a silent peer, a fence
    ha.on_promote_answer(t + ms(30), 1, true);
    ha.on_timeout(t + ms(10_000));
    assert!(drain(&mut ha).is_empty());
    assert_eq!(events(&mut ha), [PairEvent::Leaving]);
    // a leave that could not verify its stop resets instead: no leave is ever ready
    let mut stuck = Ha::new(
        t,
        HaInit {
            servers: Observed::Up,
            ..init("node1", started())
        },
    );
    stuck.begin_leave(t);
    drain(&mut stuck);
    stuck.on_servers_stopped(t + ms(5), Err("still running".into()));
    assert!(!stuck.leave_ready());
    assert!(stuck.reset_reason().is_some());
}

#[test]
fn a_secondary_takes_over_a_peer_that_left_with_its_servers_stopped_without_fencing() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    ha.on_peer_state(t, peer(Mode::Default, Status::Primary));
    drain(&mut ha);
    ha.on_peer_left(t + ms(100), leave_of(2, Status::Running))
        .unwrap();
    let a = drain(&mut ha);
    assert!(a.len() == 1 && is_start(&a[0]), "no fence: {a:?}");
    assert!(ha.certified_left() && !ha.communicating(t + ms(100)));
    assert_eq!(
        ha.pair(t + ms(100)).1,
        Mode::Peerdown,
        "certified down, for now"
    );
    // the leaver's last heartbeats, still on their way, change nothing
    ha.on_peer_state(t + ms(150), peer(Mode::Default, Status::Running));
    assert!(ha.certified_left());
    assert!(
        !ha.on_promote_request(t + ms(160), 2, 9),
        "the leaver's late claim"
    );
    // it comes back (a new incarnation): heard again, secondary beside this primary
    ha.on_servers_started(t + ms(200), Ok(()));
    ha.on_peer_state(
        t + ms(5000),
        PeerState {
            incarnation: 7,
            ..peer(Mode::Default, Status::Running)
        },
    );
    assert!(!ha.peer_left() && ha.communicating(t + ms(5000)));
    assert!(drain(&mut ha).is_empty());
    assert_eq!(ha.status(), Status::Primary);
    assert_eq!(
        events(&mut ha),
        [
            PairEvent::PeerLeft {
                servers_stopped: true,
                boot: "b00t".into()
            },
            PairEvent::PeerRejoined
        ]
    );
}

#[test]
fn a_stale_leave_from_an_earlier_incarnation_is_refused() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    // nothing heard yet: no incarnation to match
    assert!(ha.on_peer_left(t, leave_of(2, Status::Running)).is_err());
    ha.on_peer_state(t, peer(Mode::Default, Status::Primary));
    // the peer restarted (incarnation 5 heard, or seen in a claim): incarnation 2's leave is late
    ha.on_peer_state(
        t + ms(10),
        PeerState {
            incarnation: 5,
            ..peer(Mode::Default, Status::Primary)
        },
    );
    drain(&mut ha);
    let why = ha
        .on_peer_left(t + ms(20), leave_of(2, Status::Running))
        .unwrap_err();
    assert!(why.0.contains("stale"), "{why}");
    assert!(!ha.peer_left() && drain(&mut ha).is_empty());
    let mut claimed = Ha::new(t, init("node1", started()));
    claimed.on_peer_state(t, peer(Mode::Default, Status::Running));
    claimed.on_promote_request(t + ms(5), 6, 1);
    assert!(
        claimed
            .on_peer_left(t + ms(6), leave_of(2, Status::Running))
            .is_err()
    );
}

#[test]
fn a_leave_without_its_servers_verified_stopped_is_a_lost_node_fenced_as_ever() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    ha.on_peer_state(t, peer(Mode::Default, Status::Primary));
    let mut leave = leave_of(2, Status::Primary); // still primary: its word is not enough
    leave.servers_stopped = true;
    ha.on_peer_left(t + ms(100), leave).unwrap();
    assert!(!ha.certified_left());
    ha.on_timeout(t + ms(3099));
    assert!(drain(&mut ha).is_empty(), "nothing before peer_timeout");
    ha.on_timeout(t + ms(3100));
    assert_eq!(drain(&mut ha), [Action::Fence]);
}

#[test]
fn a_primary_whose_secondary_leaves_keeps_the_servers_and_fences_nothing() {
    let t = t0();
    let mut ha = Ha::new(
        t,
        HaInit {
            servers: Observed::Up,
            ..init("node1", started())
        },
    );
    ha.on_peer_state(t, peer(Mode::Default, Status::Running));
    ha.on_peer_left(t + ms(10), leave_of(2, Status::Running))
        .unwrap();
    ha.on_timeout(t + ms(60_000));
    assert!(drain(&mut ha).is_empty());
    assert_eq!(ha.status(), Status::Primary);
    assert_eq!(ha.fences(), 0);
}

#[test]
fn a_node_back_from_a_planned_stop_waits_for_its_peer_and_rejoins_as_secondary() {
    let t = t0();
    let rec = Record {
        left: true,
        ..started()
    };
    let mut ha = Ha::new(t, init("node1", rec));
    // a silent peer: no fence, no start (its peer took the servers over, unfenced)
    ha.on_timeout(t + ms(30_000));
    assert!(drain(&mut ha).is_empty());
    // it hears its peer, primary: `left` is lifted (persisted) and it stays secondary
    ha.on_peer_state(t + ms(30_100), peer(Mode::Default, Status::Primary));
    assert_eq!(drain(&mut ha), [Action::Persist(started())]);
    assert_eq!(ha.status(), Status::Running);
    assert_eq!(events(&mut ha), [PairEvent::Rejoined]);
    // an operator's `ha start` lifts it too (and then a silent peer is fenced)
    let op = Ha::new(t, init("node1", rec));
    assert!(!op.check(t, Op::Start).unwrap().left);
}

#[test]
fn a_stopped_node_that_comes_up_beside_a_started_primary_arms_itself_as_secondary() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", Record::default()));
    let mut p = peer(Mode::Default, Status::Primary);
    p.started = true;
    ha.on_peer_state(t, p.clone());
    assert_eq!(drain(&mut ha), [Action::Persist(started())]);
    assert_eq!(ha.status(), Status::Running);
    assert_eq!(events(&mut ha), [PairEvent::JoinedAsSecondary]);
    // not after an operator's command in this daemon's life (e.g. `ha stop` from the peer)
    let mut stopped = Ha::new(t, init("node1", Record::default()));
    stopped.apply(t, Op::Stop).unwrap();
    stopped.on_peer_state(t, p.clone());
    assert!(drain(&mut stopped).is_empty());
    // nor beside a peer that is not primary, nor when locked
    let mut beside = Ha::new(t, init("node1", Record::default()));
    beside.on_peer_state(t, peer(Mode::Default, Status::Running));
    assert!(drain(&mut beside).is_empty());
    let locked = Record {
        mode: Mode::Locked,
        ..Record::default()
    };
    let mut l = Ha::new(t, init("node1", locked));
    l.on_peer_state(t, p);
    assert!(drain(&mut l).is_empty());
}

#[test]
fn a_leaving_node_takes_no_ha_command_so_nothing_erases_left() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", started()));
    ha.on_peer_state(t, peer(Mode::Default, Status::Primary));
    assert!(ha.begin_leave(t + ms(10)));
    drain(&mut ha);
    assert!(ha.record().left);
    for op in [
        Op::Start,
        Op::Stop,
        Op::Peerdown,
        Op::Mode(Mode::Default),
        Op::Clear,
    ] {
        let refused = ha.check(t + ms(20), op).unwrap_err();
        assert!(refused.0.contains("leaving"), "{op:?}: {refused}");
    }
    assert!(
        ha.record().left,
        "still left: the next daemon waits for its peer"
    );
}

#[test]
fn no_claim_is_granted_while_a_leave_stands_not_even_a_new_incarnations() {
    let t = t0();
    let mut ha = Ha::new(t, init("node1", Record::default()));
    ha.on_peer_state(t, peer(Mode::Default, Status::Running));
    ha.on_peer_left(t + ms(10), leave_of(2, Status::Running))
        .unwrap();
    // node2 is back as incarnation 9; its claim overtakes its first report
    assert!(
        !ha.on_promote_request(t + ms(20), 9, 1),
        "refused: the leave still stands"
    );
    // its first report clears the leave; the claim, asked again, is granted
    ha.on_peer_state(
        t + ms(30),
        PeerState {
            incarnation: 9,
            ..peer(Mode::Default, Status::Running)
        },
    );
    assert!(!ha.peer_left());
    assert!(ha.on_promote_request(t + ms(40), 9, 2));
}

#[test]
fn a_deadline_past_what_an_instant_holds_is_far_away_not_a_panic() {
    let t0 = t0();
    assert_eq!(later(t0, ms(5)), t0 + ms(5));
    assert!(later(t0, Duration::MAX) > t0 + Duration::from_secs(10 * 365 * 24 * 3600));
}
