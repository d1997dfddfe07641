use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::spec::{AutoRestart, HealthSpec, Probe};

#[allow(clippy::disallowed_methods)] // the tests' fixed origin; all later times are offsets
fn t0() -> Instant {
    Instant::now()
}
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
fn name(n: &str) -> ServerName {
    ServerName::new(n).unwrap()
}

fn spec(f: impl FnOnce(&mut ServerSpec)) -> Arc<ServerSpec> {
    let mut s = ServerSpec::new("web", &["sleep", "100"]).unwrap();
    f(&mut s);
    Arc::new(s)
}

fn health(threshold: u32) -> Option<HealthSpec> {
    Some(HealthSpec {
        probe: Probe::Tcp("127.0.0.1:1".into()),
        interval: secs(5),
        timeout: secs(1),
        failure_threshold: threshold,
        start_timeout: secs(30),
    })
}

/// A core with one server "web", recovered with nothing (so it is spawning), its actions drained.
fn started(now: Instant, spec: Arc<ServerSpec>) -> (Supervisor, Generation) {
    let mut sup = Supervisor::new(now, [spec]);
    sup.on_recovered(now, &name("web"), Recovered::StartFresh);
    let gen_ = match drain(&mut sup).as_slice() {
        [Action::Spawn { generation, .. }] => *generation,
        other => panic!("expected one spawn, got {other:?}"),
    };
    sup.on_spawned(now, &name("web"), gen_, 100);
    (sup, gen_)
}

fn drain(sup: &mut Supervisor) -> Vec<Action> {
    std::iter::from_fn(|| sup.poll_action()).collect()
}
fn state(sup: &Supervisor) -> ServerState {
    sup.server(&name("web")).unwrap().state
}
fn generation(sup: &Supervisor) -> Generation {
    sup.server(&name("web")).unwrap().generation
}
fn reason(sup: &Supervisor) -> String {
    sup.server(&name("web")).unwrap().reason
}
const AT: &str = "2026-12-02T06:27:22.028Z";
fn spawns(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Spawn { .. }))
        .count()
}

#[test]
fn a_server_without_health_check_runs_once_spawned() {
    let t0 = t0();
    let (sup, _) = started(t0, spec(|_| {}));
    assert_eq!(state(&sup), ServerState::Running);
}

#[test]
fn auto_start_off_leaves_it_shutdown() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|s| s.auto_start = false)]);
    sup.on_recovered(t0, &name("web"), Recovered::LeaveDown(Down::NotAutoStarted));
    assert!(drain(&mut sup).is_empty());
    assert_eq!(state(&sup), ServerState::Shutdown);
}

#[test]
fn an_operator_stop_kept_across_a_takeover_wins_over_auto_start() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|s| s.auto_start = true)]);
    let stopped = Down::Stopped {
        cause: DownCause::Operator,
        at: Some(AT.into()),
    };
    sup.on_recovered(t0, &name("web"), Recovered::LeaveDown(stopped));
    assert!(drain(&mut sup).is_empty());
    assert_eq!(state(&sup), ServerState::Shutdown);
    assert_eq!(reason(&sup), format!("stopped by operator at {AT}"));
    // the operator may start it again
    assert_eq!(
        sup.on_command(t0 + secs(1), "web", Command::Start),
        Ok(Accepted::Changed)
    );
    assert_eq!(spawns(&drain(&mut sup)), 1);
}

#[test]
fn a_crash_waits_restart_delay_in_failed_restarting_then_respawns() {
    let t0 = t0();
    let (mut sup, g) = started(t0, spec(|s| s.restart_delay = secs(3)));
    sup.on_exited(t0 + secs(1), &name("web"), g, Exit::Signal(9));
    assert_eq!(state(&sup), ServerState::FailedRestarting);
    assert_eq!(sup.next_deadline(), Some(t0 + secs(4)));
    assert_eq!(spawns(&drain(&mut sup)), 0);
    sup.on_timeout(t0 + secs(2)); // early: nothing
    assert_eq!(spawns(&drain(&mut sup)), 0);
    sup.on_timeout(t0 + secs(4));
    let actions = drain(&mut sup);
    assert_eq!(
        actions,
        vec![Action::Spawn {
            server: name("web"),
            generation: g + 1,
            restart_count: 1
        }]
    );
    sup.on_timeout(t0 + secs(4)); // twice: harmless
    assert!(drain(&mut sup).is_empty());
    sup.on_spawned(t0 + secs(4), &name("web"), g + 1, 101);
    assert_eq!(state(&sup), ServerState::Running);
    assert_eq!(sup.server(&name("web")).unwrap().restart_count, 1);
}

#[test]
fn the_budget_spent_makes_it_failed_not_restartable() {
    let t0 = t0();
    let (mut sup, mut g) = started(t0, spec(|s| s.restart_max = 2));
    for i in 1..=2 {
        sup.on_exited(t0 + secs(i), &name("web"), g, Exit::Code(1));
        sup.on_timeout(t0 + secs(i));
        assert_eq!(spawns(&drain(&mut sup)), 1);
        g = generation(&sup);
        sup.on_spawned(t0 + secs(i), &name("web"), g, 100);
    }
    sup.on_exited(t0 + secs(3), &name("web"), g, Exit::Code(1));
    assert_eq!(state(&sup), ServerState::FailedNotRestartable);
    let actions = drain(&mut sup);
    assert_eq!(
        actions,
        vec![Action::MarkIntent {
            server: name("web"),
            meant_to_run: false
        }]
    );
    assert_eq!(sup.next_deadline(), None);
}

#[test]
fn auto_restart_off_never_restarts() {
    let t0 = t0();
    let (mut sup, g) = started(t0, spec(|s| s.auto_restart = AutoRestart::Off));
    sup.on_exited(t0 + secs(1), &name("web"), g, Exit::Code(1));
    assert_eq!(state(&sup), ServerState::FailedNotRestartable);
    assert!(
        reason(&sup).ends_with("auto_restart is off"),
        "{}",
        reason(&sup)
    );
}

#[test]
fn operator_stop_sends_term_then_kill_and_never_restarts() {
    let t0 = t0();
    let (mut sup, g) = started(t0, spec(|s| s.stop_timeout = secs(5)));
    assert_eq!(
        sup.on_command(t0, "web", Command::Stop),
        Ok(Accepted::Changed)
    );
    assert_eq!(state(&sup), ServerState::ShuttingDown);
    let actions = drain(&mut sup);
    assert!(actions.contains(&Action::Signal {
        server: name("web"),
        generation: g,
        signal: Signal::Term
    }));
    sup.on_timeout(t0 + secs(5));
    assert_eq!(
        drain(&mut sup),
        vec![Action::Signal {
            server: name("web"),
            generation: g,
            signal: Signal::Kill
        }]
    );
    sup.on_exited(t0 + secs(6), &name("web"), g, Exit::Signal(9));
    assert_eq!(state(&sup), ServerState::Shutdown);
    assert_eq!(
        drain(&mut sup),
        vec![Action::RecordDown {
            server: name("web"),
            cause: DownCause::Operator
        }]
    );
    assert_eq!(sup.next_deadline(), None);
    // once recorded, the reason says when (and a daemon restart shows the same)
    sup.on_down_recorded(&name("web"), DownCause::Operator, AT);
    assert_eq!(reason(&sup), format!("stopped by operator at {AT}"));
}

#[test]
fn a_failed_first_start_is_not_restarted() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|s| s.health = health(1))]);
    sup.on_recovered(t0, &name("web"), Recovered::StartFresh);
    let _ = drain(&mut sup);
    sup.on_spawned(t0, &name("web"), 1, 100);
    assert_eq!(state(&sup), ServerState::Starting);
    sup.on_exited(t0 + secs(1), &name("web"), 1, Exit::Code(2));
    assert_eq!(state(&sup), ServerState::FailedNotRestartable);
    assert!(
        sup.server(&name("web"))
            .unwrap()
            .reason
            .contains("during startup")
    );
}

#[test]
fn a_spawn_error_is_a_failed_start() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|_| {})]);
    sup.on_recovered(t0, &name("web"), Recovered::StartFresh);
    let spawn = drain(&mut sup).remove(0);
    sup.on_action_failed(t0, &spawn, "No such file or directory");
    assert_eq!(state(&sup), ServerState::FailedNotRestartable);
}

#[test]
fn health_gates_running_and_failures_mark_failed_without_killing() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|s| s.health = health(2))]);
    sup.on_recovered(t0, &name("web"), Recovered::StartFresh);
    let _ = drain(&mut sup);
    sup.on_spawned(t0, &name("web"), 1, 100);
    sup.on_timeout(t0);
    assert_eq!(
        drain(&mut sup),
        vec![Action::Probe {
            server: name("web"),
            generation: 1
        }]
    );
    assert_eq!(
        sup.next_deadline(),
        Some(t0 + secs(30)),
        "the start timeout; no probe while one is in flight"
    );
    sup.on_probe(
        t0,
        &name("web"),
        1,
        ProbeResult::Unhealthy("refused".into()),
    );
    assert_eq!(
        state(&sup),
        ServerState::Starting,
        "failures during startup are not counted"
    );
    sup.on_timeout(t0 + secs(5));
    let _ = drain(&mut sup);
    sup.on_probe(t0 + secs(5), &name("web"), 1, ProbeResult::Healthy);
    assert_eq!(state(&sup), ServerState::Running);
    for i in [10, 15] {
        sup.on_timeout(t0 + secs(i));
        assert_eq!(
            drain(&mut sup),
            vec![Action::Probe {
                server: name("web"),
                generation: 1
            }]
        );
        sup.on_probe(
            t0 + secs(i),
            &name("web"),
            1,
            ProbeResult::Unhealthy("refused".into()),
        );
    }
    assert_eq!(state(&sup), ServerState::Failed);
    assert!(
        drain(&mut sup).is_empty(),
        "no kill without auto_kill_if_failed"
    );
    sup.on_timeout(t0 + secs(20));
    let _ = drain(&mut sup);
    sup.on_probe(t0 + secs(20), &name("web"), 1, ProbeResult::Healthy);
    assert_eq!(
        state(&sup),
        ServerState::Running,
        "a passing probe brings it back"
    );
}

#[test]
fn auto_kill_if_failed_kills_and_restarts_by_policy() {
    let t0 = t0();
    let (mut sup, g) = started(
        t0,
        spec(|s| {
            s.health = health(1);
            s.auto_kill_if_failed = true;
        }),
    );
    sup.on_timeout(t0);
    let _ = drain(&mut sup);
    sup.on_probe(t0, &name("web"), g, ProbeResult::Healthy);
    sup.on_timeout(t0 + secs(5));
    let _ = drain(&mut sup);
    sup.on_probe(
        t0 + secs(5),
        &name("web"),
        g,
        ProbeResult::Unhealthy("500".into()),
    );
    assert_eq!(state(&sup), ServerState::Failed);
    assert_eq!(
        drain(&mut sup),
        vec![Action::Signal {
            server: name("web"),
            generation: g,
            signal: Signal::Kill
        }]
    );
    sup.on_exited(t0 + secs(5), &name("web"), g, Exit::Signal(9));
    assert_eq!(state(&sup), ServerState::FailedRestarting);
    sup.on_timeout(t0 + secs(5));
    assert_eq!(spawns(&drain(&mut sup)), 1);
}

#[test]
fn start_timeout_kills_a_server_that_never_gets_healthy() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|s| s.health = health(1))]);
    sup.on_recovered(t0, &name("web"), Recovered::StartFresh);
    let _ = drain(&mut sup);
    sup.on_spawned(t0, &name("web"), 1, 100);
    sup.on_timeout(t0);
    let _ = drain(&mut sup);
    sup.on_probe(
        t0,
        &name("web"),
        1,
        ProbeResult::Unhealthy("refused".into()),
    );
    sup.on_timeout(t0 + secs(30));
    let actions = drain(&mut sup);
    assert!(
        actions.contains(&Action::Signal {
            server: name("web"),
            generation: 1,
            signal: Signal::Kill
        }),
        "{actions:?}"
    );
    sup.on_exited(t0 + secs(30), &name("web"), 1, Exit::Signal(9));
    assert_eq!(state(&sup), ServerState::FailedNotRestartable);
}

#[test]
fn suspend_and_resume_signal_the_group() {
    let t0 = t0();
    let (mut sup, g) = started(t0, spec(|_| {}));
    assert_eq!(
        sup.on_command(t0, "web", Command::Suspend),
        Ok(Accepted::Changed)
    );
    assert_eq!(state(&sup), ServerState::Suspended);
    assert_eq!(
        drain(&mut sup),
        vec![Action::Signal {
            server: name("web"),
            generation: g,
            signal: Signal::Stop
        }]
    );
    assert_eq!(
        sup.on_command(t0, "web", Command::Suspend),
        Ok(Accepted::AlreadyDone)
    );
    assert_eq!(
        sup.on_command(t0, "web", Command::Resume),
        Ok(Accepted::Changed)
    );
    assert_eq!(
        drain(&mut sup),
        vec![Action::Signal {
            server: name("web"),
            generation: g,
            signal: Signal::Cont
        }]
    );
    assert_eq!(state(&sup), ServerState::Running);
}

#[test]
fn refused_commands_change_nothing() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|s| s.auto_start = false)]);
    sup.on_recovered(t0, &name("web"), Recovered::LeaveDown(Down::NotAutoStarted));
    let before = sup.server(&name("web"));
    assert!(matches!(
        sup.on_command(t0, "web", Command::Resume),
        Err(CommandError::NotNow { .. })
    ));
    assert!(matches!(
        sup.on_command(t0, "web", Command::Suspend),
        Err(CommandError::NotNow { .. })
    ));
    assert_eq!(
        sup.on_command(t0, "nope", Command::Start),
        Err(CommandError::NoSuchServer("nope".into()))
    );
    assert_eq!(
        sup.on_command(t0, "../x", Command::Start),
        Err(CommandError::NoSuchServer("../x".into()))
    );
    assert_eq!(sup.server(&name("web")), before);
    assert!(drain(&mut sup).is_empty());
}

#[test]
fn restart_stops_then_starts_with_a_fresh_budget() {
    let t0 = t0();
    let (mut sup, g) = started(t0, spec(|_| {}));
    assert_eq!(
        sup.on_command(t0, "web", Command::Restart),
        Ok(Accepted::Changed)
    );
    let _ = drain(&mut sup);
    sup.on_exited(t0 + secs(1), &name("web"), g, Exit::Signal(15));
    let actions = drain(&mut sup);
    assert_eq!(
        actions,
        vec![Action::Spawn {
            server: name("web"),
            generation: g + 1,
            restart_count: 0
        }]
    );
    assert_eq!(state(&sup), ServerState::Starting);
}

#[test]
fn recovery_adopts_a_live_server_without_spawning() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|_| {})]);
    sup.on_recovered(
        t0,
        &name("web"),
        Recovered::Adopt {
            pid: 42,
            suspended: false,
            restart_count: 1,
        },
    );
    assert!(drain(&mut sup).is_empty());
    assert_eq!(state(&sup), ServerState::Running);
    assert_eq!(sup.server(&name("web")).unwrap().restart_count, 1);
}

#[test]
fn an_operator_stop_interrupted_by_the_daemons_death_is_finished_not_undone() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|s| s.stop_timeout = secs(5))]);
    let adopted = Recovered::FinishStop {
        pid: 42,
        suspended: true,
        restart_count: 0,
    };
    sup.on_recovered(t0, &name("web"), adopted);
    assert_eq!(state(&sup), ServerState::ShuttingDown);
    let actions = drain(&mut sup);
    assert!(actions.contains(&Action::Signal {
        server: name("web"),
        generation: 1,
        signal: Signal::Cont
    }));
    assert!(actions.contains(&Action::Signal {
        server: name("web"),
        generation: 1,
        signal: Signal::Term
    }));
    sup.on_exited(t0 + secs(1), &name("web"), 1, Exit::Unknown);
    assert_eq!(state(&sup), ServerState::Shutdown);
    sup.on_timeout(t0 + secs(60));
    assert!(
        !drain(&mut sup)
            .iter()
            .any(|a| matches!(a, Action::Spawn { .. }))
    );
}

#[test]
fn recovery_restarts_a_server_that_died_while_meant_to_run() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|_| {})]);
    let found = Recovered::Restart {
        restart_count: 0,
        detail: "pid 42 is not running".into(),
    };
    sup.on_recovered(t0, &name("web"), found);
    assert_eq!(state(&sup), ServerState::FailedRestarting);
    sup.on_timeout(t0);
    assert_eq!(spawns(&drain(&mut sup)), 1);
    assert_eq!(sup.server(&name("web")).unwrap().restart_count, 1);
}

#[test]
fn an_untrusted_lock_file_leaves_the_server_unknown_and_untouched() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|_| {})]);
    sup.on_recovered(
        t0,
        &name("web"),
        Recovered::Unknown {
            detail: "garbage".into(),
        },
    );
    assert!(drain(&mut sup).is_empty());
    assert_eq!(state(&sup), ServerState::Unknown);
    assert_eq!(sup.next_deadline(), None);
}

#[test]
fn a_stale_generation_exit_is_ignored() {
    let t0 = t0();
    let (mut sup, g) = started(t0, spec(|_| {}));
    sup.on_exited(t0, &name("web"), g - 1, Exit::Code(1));
    assert_eq!(state(&sup), ServerState::Running);
    assert!(drain(&mut sup).is_empty());
}

// ---- property tests ----

#[derive(Debug, Clone)]
enum Input {
    Cmd(Command),
    Exit(Exit),
    NodeStop,
    Spawned,
    SpawnFailed,
    Probe(bool),
    Advance(u64),
}

fn arb_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        prop::sample::select(vec![
            Command::Start,
            Command::Stop,
            Command::Restart,
            Command::Kill,
            Command::Suspend,
            Command::Resume
        ])
        .prop_map(Input::Cmd),
        prop::sample::select(vec![
            Exit::Code(0),
            Exit::Code(1),
            Exit::Code(3),
            Exit::Signal(9),
            Exit::Unknown
        ])
        .prop_map(Input::Exit),
        prop::sample::select(vec![Exit::Code(0), Exit::Code(1)]).prop_map(Input::Exit),
        Just(Input::NodeStop),
        Just(Input::Spawned),
        Just(Input::SpawnFailed),
        any::<bool>().prop_map(Input::Probe),
        (0u64..120).prop_map(Input::Advance),
    ]
}

/// Drives the core like the executor would; returns every spawn with its time and whether an
/// operator start/restart preceded it.
struct World {
    sup: Supervisor,
    now: Instant,
    pending_spawn: Option<Action>,
    probing: bool,
    /// Down on purpose (an operator stop/kill, a node stop, an exit with a success code) and no
    /// operator start/restart since.
    stopped_by_operator: bool,
    /// Times of restarts (spawns not caused by an operator command or auto_start).
    restarts: Vec<Instant>,
}

impl World {
    fn pump(&mut self, operator_start: bool) -> Result<(), TestCaseError> {
        while let Some(a) = self.sup.poll_action() {
            match a {
                Action::Spawn { .. } => {
                    prop_assert!(
                        !self.stopped_by_operator,
                        "spawned after a stop on purpose without an operator start"
                    );
                    if !operator_start {
                        self.restarts.push(self.now);
                    }
                    self.pending_spawn = Some(a);
                }
                Action::Probe { .. } => self.probing = true,
                _ => {}
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn no_restart_after_a_stop_on_purpose_and_no_more_than_restart_max_in_a_window(
        restart_max in 0u32..4,
        auto_restart in prop::sample::select(vec![AutoRestart::Off, AutoRestart::OnFailure, AutoRestart::Always]),
        success_exit_codes in prop::sample::select(vec![vec![], vec![0], vec![0, 3]]),
        window in 1u64..300,
        delay in 0u64..10,
        with_health in any::<bool>(),
        auto_kill in any::<bool>(),
        inputs in prop::collection::vec(arb_input(), 1..80),
    ) {
        let t0 = t0();
        let spec = spec(|s| {
            s.restart_max = restart_max;
            s.restart_interval = secs(window);
            s.restart_delay = secs(delay);
            s.auto_kill_if_failed = auto_kill;
            s.auto_restart = auto_restart;
            s.success_exit_codes = success_exit_codes.clone();
            if with_health { s.health = health(2); }
        });
        let mut w = World {
            sup: Supervisor::new(t0, [spec]),
            now: t0,
            pending_spawn: None,
            probing: false,
            stopped_by_operator: false,
            restarts: vec![],
        };
        w.sup.on_recovered(t0, &name("web"), Recovered::StartFresh);
        w.pump(true)?;
        for input in inputs {
            let mut operator_start = false;
            match input {
                Input::Cmd(c) => {
                    let res = w.sup.on_command(w.now, "web", c);
                    if res.is_ok() {
                        match c {
                            Command::Stop | Command::Kill => w.stopped_by_operator = true,
                            Command::Start | Command::Restart => {
                                w.stopped_by_operator = false;
                                w.restarts.clear(); // an operator start resets the budget
                                operator_start = true;
                            }
                            _ => {}
                        }
                    }
                }
                Input::Exit(exit) => {
                    let g = generation(&w.sup);
                    let before = state(&w.sup);
                    let budget = w.sup.restart_history(&name("web"), w.now).len();
                    w.sup.on_exited(w.now, &name("web"), g, exit);
                    let after = state(&w.sup);
                    // the restart-after-stop (operator restart) spawns here
                    operator_start = after == ServerState::Starting && before == ServerState::ShuttingDown;
                    if operator_start { w.restarts.clear(); }
                    let success = matches!(exit, Exit::Code(c) if success_exit_codes.contains(&u8::try_from(c).unwrap()));
                    let running = matches!(before, ServerState::Running | ServerState::Suspended | ServerState::Failed);
                    if running && success && auto_restart != AutoRestart::Always {
                        // the exit code decides: down on purpose, nothing counted
                        prop_assert_eq!(after, ServerState::Shutdown);
                        prop_assert_eq!(w.sup.restart_history(&name("web"), w.now).len(), budget);
                    } else if before != ServerState::ShuttingDown && before.has_process() {
                        // a signal, an unknown status, a failure code, any exit while starting
                        prop_assert_ne!(after, ServerState::Shutdown, "{:?} after {:?}", exit, before);
                    }
                    if after == ServerState::Shutdown {
                        w.stopped_by_operator = true;
                    }
                }
                Input::NodeStop => {
                    let _ = w.sup.on_node_stop(w.now);
                    w.stopped_by_operator = true;
                }
                Input::Spawned => {
                    if let Some(Action::Spawn { server, generation, .. }) = w.pending_spawn.take() {
                        w.sup.on_spawned(w.now, &server, generation, 7);
                    }
                }
                Input::SpawnFailed => {
                    if let Some(a) = w.pending_spawn.take() {
                        w.sup.on_action_failed(w.now, &a, "exec failed");
                    }
                }
                Input::Probe(ok) => {
                    if w.probing {
                        w.probing = false;
                        let g = generation(&w.sup);
                        let r = if ok { ProbeResult::Healthy } else { ProbeResult::Unhealthy("x".into()) };
                        w.sup.on_probe(w.now, &name("web"), g, r);
                    }
                }
                Input::Advance(s) => {
                    // a simulated clock: fire every deadline on time on the way to the target
                    let target = w.now + secs(s);
                    let mut fired = 0;
                    while let Some(d) = w.sup.next_deadline().filter(|&d| d <= target) {
                        fired += 1;
                        prop_assert!(fired < 1000, "a deadline that on_timeout never clears");
                        w.now = d.max(w.now);
                        w.sup.on_timeout(w.now);
                        w.pump(false)?;
                    }
                    w.now = target;
                    w.sup.on_timeout(w.now);
                }
            }
            w.pump(operator_start)?;
            // no more than restart_max restarts in any window
            for (i, &t) in w.restarts.iter().enumerate() {
                let in_window = w.restarts[i..].iter().filter(|&&u| u.saturating_duration_since(t) < secs(window)).count();
                prop_assert!(in_window <= restart_max as usize, "{in_window} restarts within {window}s (max {restart_max})");
            }
            // after firing what is due, no deadline is left in the past (the driver would spin)
            w.sup.on_timeout(w.now);
            w.pump(false)?;
            if let Some(d) = w.sup.next_deadline() {
                prop_assert!(d > w.now, "deadline {d:?} not after now {:?}", w.now);
            }
        }
    }
}

#[test]
fn restart_while_shutting_down_does_not_postpone_the_sigkill() {
    let t0 = t0();
    let (mut sup, g) = started(t0, spec(|s| s.stop_timeout = secs(5)));
    assert_eq!(
        sup.on_command(t0, "web", Command::Stop),
        Ok(Accepted::Changed)
    );
    let _ = drain(&mut sup);
    assert_eq!(
        sup.on_command(t0 + secs(4), "web", Command::Restart),
        Ok(Accepted::Changed)
    );
    assert!(drain(&mut sup).is_empty(), "no second SIGTERM");
    assert_eq!(sup.next_deadline(), Some(t0 + secs(5)));
    sup.on_timeout(t0 + secs(5));
    assert_eq!(
        drain(&mut sup),
        vec![Action::Signal {
            server: name("web"),
            generation: g,
            signal: Signal::Kill
        }]
    );
    sup.on_exited(t0 + secs(5), &name("web"), g, Exit::Signal(9));
    assert_eq!(
        state(&sup),
        ServerState::Starting,
        "started again once down"
    );
}

#[test]
fn a_starting_server_cannot_be_suspended() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|s| s.health = health(1))]);
    sup.on_recovered(t0, &name("web"), Recovered::StartFresh);
    let _ = drain(&mut sup);
    sup.on_spawned(t0, &name("web"), 1, 100);
    assert!(matches!(
        sup.on_command(t0, "web", Command::Suspend),
        Err(CommandError::NotNow { .. })
    ));
    assert_eq!(state(&sup), ServerState::Starting);
}

#[test]
fn restart_history_from_a_previous_daemon_counts_against_the_budget() {
    let t0 = t0() + secs(1000);
    let mut sup = Supervisor::new(t0, [spec(|s| s.restart_max = 2)]);
    sup.on_restart_history(t0, &name("web"), &[secs(30), secs(10)]);
    assert_eq!(
        sup.restart_history(&name("web"), t0),
        vec![t0 - secs(30), t0 - secs(10)]
    );
    let found = Recovered::Restart {
        restart_count: 2,
        detail: "pid 9 is not running".into(),
    };
    sup.on_recovered(t0, &name("web"), found);
    assert_eq!(
        state(&sup),
        ServerState::FailedNotRestartable,
        "the budget was spent before the daemon restarted"
    );
}

#[test]
fn an_adopted_server_with_a_health_check_is_running_only_after_a_good_probe() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|s| s.health = health(1))]);
    let adopted = Recovered::Adopt {
        pid: 42,
        suspended: false,
        restart_count: 0,
    };
    sup.on_recovered(t0, &name("web"), adopted);
    assert_eq!(state(&sup), ServerState::Starting);
    assert!(
        sup.server(&name("web"))
            .unwrap()
            .reason
            .contains("adopted pid 42")
    );
    sup.on_timeout(t0);
    assert_eq!(
        drain(&mut sup),
        vec![Action::Probe {
            server: name("web"),
            generation: 1
        }]
    );
    sup.on_probe(t0, &name("web"), 1, ProbeResult::Healthy);
    assert_eq!(state(&sup), ServerState::Running);
}

// ---- the exit code decides (the WebLogic Node Manager), stops that last ----

#[test]
fn a_success_exit_while_running_leaves_it_shutdown_uncounted_and_recorded() {
    let t0 = t0();
    let (mut sup, g) = started(t0, spec(|s| s.restart_max = 1));
    sup.on_exited(t0 + secs(5), &name("web"), g, Exit::Code(0));
    assert_eq!(state(&sup), ServerState::Shutdown);
    assert_eq!(reason(&sup), "exited with status 0");
    assert_eq!(
        drain(&mut sup),
        vec![
            Action::MarkIntent {
                server: name("web"),
                meant_to_run: false
            },
            Action::RecordDown {
                server: name("web"),
                cause: DownCause::Exited { code: 0 }
            }
        ],
        "not meant to run first, then the marker: a crash between them still leaves it down"
    );
    assert_eq!(sup.next_deadline(), None);
    assert!(sup.restart_history(&name("web"), t0 + secs(5)).is_empty());
    sup.on_down_recorded(&name("web"), DownCause::Exited { code: 0 }, AT);
    assert_eq!(reason(&sup), format!("exited with status 0 at {AT}"));
    sup.on_timeout(t0 + secs(3600));
    assert!(drain(&mut sup).is_empty(), "never restarted by itself");
    // nothing was spent: after an operator start, its whole budget is there
    assert_eq!(
        sup.on_command(t0 + secs(6), "web", Command::Start),
        Ok(Accepted::Changed)
    );
    let _ = drain(&mut sup);
    let g = generation(&sup);
    sup.on_spawned(t0 + secs(6), &name("web"), g, 101);
    sup.on_exited(t0 + secs(7), &name("web"), g, Exit::Code(1));
    assert_eq!(state(&sup), ServerState::FailedRestarting);
}

#[test]
fn only_the_configured_codes_are_success_and_a_failure_code_is_restarted() {
    let t0 = t0();
    let (mut sup, g) = started(t0, spec(|s| s.success_exit_codes = vec![0, 3]));
    sup.on_exited(t0, &name("web"), g, Exit::Code(3));
    assert_eq!(state(&sup), ServerState::Shutdown);
    assert_eq!(reason(&sup), "exited with status 3");

    let (mut sup, g) = started(t0, spec(|s| s.success_exit_codes = vec![3]));
    sup.on_exited(t0, &name("web"), g, Exit::Code(0));
    assert_eq!(
        state(&sup),
        ServerState::FailedRestarting,
        "0 is not in [3]"
    );
    assert!(reason(&sup).starts_with("exited with code 0; restart 1 of 2"));

    // an exit status of a process is 0..=255; anything else cannot match
    let (mut sup, g) = started(t0, spec(|_| {}));
    sup.on_exited(t0, &name("web"), g, Exit::Code(256));
    assert_eq!(state(&sup), ServerState::FailedRestarting);
}

#[test]
fn a_death_by_a_signal_or_of_unknown_status_is_never_a_success() {
    let t0 = t0();
    for exit in [Exit::Signal(15), Exit::Signal(9), Exit::Unknown] {
        let (mut sup, g) = started(t0, spec(|s| s.success_exit_codes = vec![0, 9, 15]));
        sup.on_exited(t0, &name("web"), g, exit);
        assert_eq!(state(&sup), ServerState::FailedRestarting, "{exit:?}");
    }
}

#[test]
fn an_exit_during_starting_is_a_failed_start_whatever_its_code() {
    let t0 = t0();
    // a fresh start: given up
    let mut sup = Supervisor::new(t0, [spec(|s| s.health = health(1))]);
    sup.on_recovered(t0, &name("web"), Recovered::StartFresh);
    let _ = drain(&mut sup);
    sup.on_spawned(t0, &name("web"), 1, 100);
    sup.on_exited(t0 + secs(1), &name("web"), 1, Exit::Code(0));
    assert_eq!(state(&sup), ServerState::FailedNotRestartable);
    assert_eq!(
        reason(&sup),
        "start failed: exited with code 0 during startup"
    );
    // a restart: one more failure, counted
    let (mut sup, g) = started(
        t0,
        spec(|s| {
            s.health = health(1);
            s.restart_max = 1;
        }),
    );
    sup.on_timeout(t0);
    let _ = drain(&mut sup);
    sup.on_probe(t0, &name("web"), g, ProbeResult::Healthy);
    sup.on_exited(t0 + secs(1), &name("web"), g, Exit::Signal(9));
    sup.on_timeout(t0 + secs(1));
    let _ = drain(&mut sup);
    let g = generation(&sup);
    sup.on_spawned(t0 + secs(1), &name("web"), g, 101);
    assert_eq!(state(&sup), ServerState::Starting);
    sup.on_exited(t0 + secs(2), &name("web"), g, Exit::Code(0));
    assert_eq!(state(&sup), ServerState::FailedNotRestartable);
    assert!(
        reason(&sup).contains("restart budget spent"),
        "{}",
        reason(&sup)
    );
}

#[test]
fn a_failed_or_suspended_server_that_exits_with_a_success_code_stopped_on_purpose() {
    let t0 = t0();
    let (mut sup, g) = started(t0, spec(|s| s.health = health(1)));
    sup.on_timeout(t0);
    let _ = drain(&mut sup);
    sup.on_probe(t0, &name("web"), g, ProbeResult::Healthy);
    sup.on_timeout(t0 + secs(5));
    let _ = drain(&mut sup);
    let bad = ProbeResult::Unhealthy("refused".into());
    sup.on_probe(t0 + secs(5), &name("web"), g, bad);
    assert_eq!(state(&sup), ServerState::Failed);
    sup.on_exited(t0 + secs(6), &name("web"), g, Exit::Code(0));
    assert_eq!(state(&sup), ServerState::Shutdown);

    let (mut sup, g) = started(t0, spec(|_| {}));
    let _ = sup.on_command(t0, "web", Command::Suspend);
    let _ = drain(&mut sup);
    sup.on_exited(t0 + secs(1), &name("web"), g, Exit::Code(0));
    assert_eq!(state(&sup), ServerState::Shutdown);
}

#[test]
fn auto_restart_off_leaves_a_success_exit_shutdown_not_failed() {
    let t0 = t0();
    let (mut sup, g) = started(t0, spec(|s| s.auto_restart = AutoRestart::Off));
    sup.on_exited(t0, &name("web"), g, Exit::Code(0));
    assert_eq!(state(&sup), ServerState::Shutdown);
    assert_eq!(reason(&sup), "exited with status 0");
}

#[test]
fn auto_restart_always_restarts_a_success_exit_and_counts_it() {
    let t0 = t0();
    let (mut sup, mut g) = started(
        t0,
        spec(|s| {
            s.auto_restart = AutoRestart::Always;
            s.restart_max = 2;
            s.restart_delay = secs(1);
        }),
    );
    for i in 1..=2 {
        sup.on_exited(t0 + secs(10 * i), &name("web"), g, Exit::Code(0));
        assert_eq!(state(&sup), ServerState::FailedRestarting);
        assert!(
            reason(&sup).starts_with(&format!("exited with code 0; restart {i} of 2")),
            "{}",
            reason(&sup)
        );
        sup.on_timeout(t0 + secs(10 * i + 1));
        assert_eq!(spawns(&drain(&mut sup)), 1);
        g = generation(&sup);
        sup.on_spawned(t0 + secs(10 * i + 1), &name("web"), g, 100);
    }
    // the budget bounds a server that exits at once: no loop
    sup.on_exited(t0 + secs(30), &name("web"), g, Exit::Code(0));
    assert_eq!(state(&sup), ServerState::FailedNotRestartable);
}

#[test]
fn a_node_stop_records_nothing_and_drops_pending_restarts() {
    let t0 = t0();
    let specs = [
        spec(|s| s.stop_timeout = secs(5)),
        Arc::new(ServerSpec::new("late", &["x"]).unwrap()),
        Arc::new(ServerSpec::new("down", &["x"]).unwrap()),
    ];
    let mut sup = Supervisor::new(t0, specs);
    sup.on_recovered(t0, &name("web"), Recovered::StartFresh);
    sup.on_recovered(t0, &name("late"), Recovered::StartFresh);
    sup.on_recovered(
        t0,
        &name("down"),
        Recovered::LeaveDown(Down::NotAutoStarted),
    );
    let _ = drain(&mut sup);
    sup.on_spawned(t0, &name("web"), 1, 100);
    sup.on_spawned(t0, &name("late"), 1, 101);
    sup.on_exited(t0, &name("late"), 1, Exit::Code(1));
    let _ = drain(&mut sup);
    assert_eq!(
        sup.server(&name("late")).unwrap().state,
        ServerState::FailedRestarting
    );

    let stopped = sup.on_node_stop(t0 + secs(1));
    assert_eq!(stopped, vec![name("late"), name("web")]);
    let actions = drain(&mut sup);
    assert_eq!(
        actions,
        vec![
            Action::RemoveLock {
                server: name("late")
            },
            Action::Signal {
                server: name("web"),
                generation: 1,
                signal: Signal::Term
            }
        ],
        "no intent mark and no marker: the next daemon start applies auto_start"
    );
    assert_eq!(
        sup.next_deadline(),
        Some(t0 + secs(6)),
        "SIGKILL after stop_timeout"
    );
    sup.on_exited(t0 + secs(2), &name("web"), 1, Exit::Code(0));
    assert_eq!(state(&sup), ServerState::Shutdown);
    assert_eq!(reason(&sup), "stopped with the node (exited with code 0)");
    assert_eq!(
        drain(&mut sup),
        vec![Action::RemoveLock {
            server: name("web")
        }]
    );
    assert_eq!(
        sup.server(&name("down")).unwrap().state,
        ServerState::Shutdown
    );
}

#[test]
fn a_server_recovered_down_on_purpose_shows_why_and_when() {
    let t0 = t0();
    let mut sup = Supervisor::new(t0, [spec(|_| {})]);
    let down = Down::Stopped {
        cause: DownCause::Exited { code: 0 },
        at: Some(AT.into()),
    };
    sup.on_recovered(t0, &name("web"), Recovered::LeaveDown(down));
    assert_eq!(state(&sup), ServerState::Shutdown);
    assert_eq!(reason(&sup), format!("exited with status 0 at {AT}"));
    assert!(drain(&mut sup).is_empty());
    // a late record of another stop is ignored once it runs again
    let _ = sup.on_command(t0, "web", Command::Start);
    sup.on_down_recorded(&name("web"), DownCause::Operator, AT);
    assert_eq!(state(&sup), ServerState::Starting);
    assert_eq!(reason(&sup), "operator start");
}

#[test]
fn durations_past_what_an_instant_holds_never_panic_the_core() {
    // the reader refuses these (spec::limits); a spec built another way must still not panic
    let t0 = t0();
    let far = |sup: &Supervisor| sup.next_deadline().is_some_and(|d| d > t0 + secs(3600));
    let (mut sup, g) = started(t0, spec(|s| s.restart_delay = Duration::MAX));
    sup.on_exited(t0 + secs(1), &name("web"), g, Exit::Code(1));
    assert_eq!(state(&sup), ServerState::FailedRestarting);
    assert!(far(&sup));

    let (mut sup, _) = started(t0, spec(|s| s.stop_timeout = Duration::MAX));
    assert_eq!(
        sup.on_command(t0, "web", Command::Stop),
        Ok(Accepted::Changed)
    );
    assert!(far(&sup));

    let (mut sup, _) = started(
        t0,
        spec(|s| {
            s.health = Some(HealthSpec {
                probe: Probe::Tcp("127.0.0.1:1".into()),
                interval: Duration::MAX,
                timeout: Duration::MAX,
                failure_threshold: 1,
                start_timeout: Duration::MAX,
            });
        }),
    );
    assert_eq!(state(&sup), ServerState::Starting);
    drain(&mut sup);
    sup.on_timeout(t0 + secs(1));
    drain(&mut sup);
}
