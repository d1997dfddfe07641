//! Deterministic simulation of a pair: two cores, a link that can be cut, nodes that crash,
//! reboot and are fenced (powered off), operators issuing any command on either node. Properties:
//! the HA-managed servers never run on both nodes, and no node stays in a prohibited state it is
//! at fault for (seed 004: such a state is always met by a corrective action).

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::core::ops::Op;

#[derive(Debug, Clone)]
enum Step {
    Tick(u64),
    Cmd(usize, Op),
    Cut,
    Heal,
    Crash(usize),
    Boot(usize),
    NextStartFails(usize),
    NextFenceFails(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Start),
        2 => Just(Op::Stop),
        2 => prop_oneof![
            Just(Mode::Default),
            Just(Mode::Single),
            Just(Mode::Config),
            Just(Mode::Locked)
        ]
        .prop_map(Op::Mode),
        1 => Just(Op::Clear),
        1 => Just(Op::Peerdown),
        1 => Just(Op::Peerup),
        1 => Just(Op::ForceSmith),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (100u64..2500).prop_map(Step::Tick),
        6 => (0usize..2, op()).prop_map(|(n, o)| Step::Cmd(n, o)),
        1 => Just(Step::Cut),
        2 => Just(Step::Heal),
        1 => (0usize..2).prop_map(Step::Crash),
        2 => (0usize..2).prop_map(Step::Boot),
        1 => (0usize..2).prop_map(Step::NextStartFails),
        1 => (0usize..2).prop_map(Step::NextFenceFails),
    ]
}

#[derive(Clone)]
struct Node {
    name: &'static str,
    ha: Option<Ha>,
    disk: Record,
    running: bool,
    incarnation: u64,
    start_fails: bool,
    fence_fails: bool,
}

#[derive(Clone)]
struct Sim {
    t: Instant,
    nodes: [Node; 2],
    link: bool,
    promotes: Vec<(usize, u64)>,
}

impl Sim {
    fn new() -> Self {
        let node = |name| Node {
            name,
            ha: None,
            disk: Record::default(),
            running: false,
            incarnation: 0,
            start_fails: false,
            fence_fails: false,
        };
        let mut sim = Self {
            t: super::tests_clock(),
            nodes: [node("node1"), node("node2")],
            link: true,
            promotes: vec![],
        };
        sim.boot(0);
        sim.boot(1);
        sim
    }

    fn timing(i: usize) -> Timing {
        Timing {
            heartbeat: Duration::from_millis(500),
            peer_timeout: Duration::from_secs(3),
            // one side waits: in a partition the other fences first
            fence_delay: Duration::from_millis(if i == 0 { 0 } else { 1500 }),
            fence_retry: Duration::from_secs(2),
        }
    }

    fn boot(&mut self, i: usize) {
        let t = self.t;
        let n = &mut self.nodes[i];
        if n.ha.is_some() {
            return;
        }
        n.incarnation += 1;
        let peer = if i == 0 { "node2" } else { "node1" };
        n.ha = Some(Ha::new(
            t,
            HaInit {
                node: n.name.into(),
                peer: peer.into(),
                incarnation: n.incarnation,
                record: n.disk,
                servers: if n.running {
                    Observed::Up
                } else {
                    Observed::Down
                },
                timing: Self::timing(i),
            },
        ));
        self.settle();
    }

    fn power_off(&mut self, i: usize) {
        self.nodes[i].ha = None;
        self.nodes[i].running = false;
        self.promotes.retain(|&(from, _)| from != i);
    }

    /// Whether node `i` is up and may run the servers (started, not locked, not blocked).
    fn may_run(&self, i: usize) -> bool {
        self.nodes[i].ha.as_ref().is_some_and(|h| {
            let r = h.record();
            r.started && r.mode != Mode::Locked && !r.ha_idle_failed_startup
        })
    }

    fn alive(&self, i: usize) -> bool {
        self.nodes[i].ha.is_some()
    }

    fn connected(&self) -> bool {
        self.link && self.alive(0) && self.alive(1)
    }

    fn run(&mut self, s: &Step) {
        match *s {
            Step::Tick(d) => {
                self.t += Duration::from_millis(d);
                let t = self.t;
                // claims sent since the last tick arrive now, if the link still carries them
                for (from, claim) in std::mem::take(&mut self.promotes) {
                    let to = 1 - from;
                    let granted = if self.connected() {
                        let inc = self.nodes[from].incarnation;
                        self.nodes[to]
                            .ha
                            .as_mut()
                            .is_some_and(|h| h.on_promote_request(t, inc, claim))
                    } else {
                        false
                    };
                    if let Some(h) = self.nodes[from].ha.as_mut() {
                        h.on_promote_answer(t, claim, granted);
                    }
                    self.settle();
                }
                if self.connected() {
                    // both states are taken before either is delivered: they cross on the wire
                    let s0 = self.nodes[0].ha.as_ref().map(Ha::state_for_peer);
                    let s1 = self.nodes[1].ha.as_ref().map(Ha::state_for_peer);
                    if let (Some(s0), Some(s1)) = (s0, s1) {
                        self.nodes[0].ha.as_mut().unwrap().on_peer_state(t, s1);
                        self.nodes[1].ha.as_mut().unwrap().on_peer_state(t, s0);
                    }
                }
                for n in &mut self.nodes {
                    if let Some(h) = n.ha.as_mut() {
                        h.on_timeout(t);
                    }
                }
                self.settle();
            }
            Step::Cmd(i, op) => {
                let t = self.t;
                // an operator certifies peerdown truthfully: only a node that is off
                if op == Op::Peerdown && self.alive(1 - i) {
                    return;
                }
                let n = &mut self.nodes[i];
                let Some(h) = n.ha.as_mut() else { return };
                if let Ok(rec) = h.check(t, op) {
                    n.disk = rec;
                    h.apply(t, op).expect("apply agrees with check");
                }
                self.settle();
            }
            Step::Cut => self.link = false,
            Step::Heal => self.link = true,
            Step::Crash(i) => self.power_off(i),
            Step::Boot(i) => self.boot(i),
            Step::NextStartFails(i) => self.nodes[i].start_fails = true,
            Step::NextFenceFails(i) => self.nodes[i].fence_fails = true,
        }
    }

    /// Runs every queued action until none is left.
    fn settle(&mut self) {
        let t = self.t;
        for _ in 0..100 {
            let mut any = false;
            for i in 0..2 {
                let Some(a) = self.nodes[i].ha.as_mut().and_then(Ha::poll_action) else {
                    continue;
                };
                any = true;
                let n = &mut self.nodes[i];
                match a {
                    Action::Persist(r) => n.disk = r,
                    Action::StartServers { .. } => {
                        let r = if std::mem::take(&mut n.start_fails) {
                            Err("start failed".to_owned())
                        } else {
                            n.running = true;
                            Ok(())
                        };
                        n.ha.as_mut().unwrap().on_servers_started(t, r);
                    }
                    Action::StopServers { .. } => {
                        n.running = false;
                        n.ha.as_mut().unwrap().on_servers_stopped(t, Ok(()));
                    }
                    Action::Fence => {
                        let r = if std::mem::take(&mut n.fence_fails) {
                            Err("fence failed".to_owned())
                        } else {
                            Ok(())
                        };
                        if r.is_ok() {
                            self.power_off(1 - i);
                        }
                        self.nodes[i].ha.as_mut().unwrap().on_fence_result(t, r);
                    }
                    Action::AskPromote { claim } => self.promotes.push((i, claim)),
                    Action::HaReset { .. } => self.power_off(i),
                }
            }
            if !any {
                return;
            }
        }
        panic!("actions never settle");
    }

    fn check(&self, trace: &[Step]) {
        assert!(
            !(self.nodes[0].running && self.nodes[1].running),
            "the HA-managed servers run on both nodes after {trace:#?}"
        );
        for n in &self.nodes {
            let Some(h) = &n.ha else { continue };
            if n.running {
                assert_eq!(
                    h.status(),
                    Status::Primary,
                    "{}: servers run, not primary",
                    n.name
                );
            }
            let comm = h.communicating(self.t);
            if !comm && !h.silent(self.t) {
                continue; // start-up window
            }
            let (l, r, v) = h.pair(self.t);
            if v == Verdict::Prohibited {
                assert!(
                    matches!(l, Mode::Default | Mode::Peerdown) && !(r == Mode::Peerdown && comm),
                    "{} stays in the prohibited state {l}-{r} it is at fault for, after {trace:#?}",
                    n.name
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_schedule_runs_the_servers_twice_or_leaves_a_prohibited_state_uncorrected(
        steps in proptest::collection::vec(step(), 1..120)
    ) {
        let mut sim = Sim::new();
        for (k, s) in steps.iter().enumerate() {
            sim.run(s);
            sim.check(&steps[..=k]);
        }
        // a copy of this state where node2 dies now: node1, if it may run the servers, fences
        // node2 and runs them, whatever was in flight
        let mut alone = sim.clone();
        alone.run(&Step::Crash(1));
        for _ in 0..40 {
            alone.run(&Step::Tick(500));
            alone.check(&steps);
        }
        if alone.may_run(0) {
            prop_assert!(
                alone.nodes[0].running,
                "node1 alone does not run the servers although it may: {:?}",
                alone.nodes[0].ha.as_ref().map(|h| (h.record(), h.status(), h.fence_state()))
            );
        }
        // then quiet: both nodes up, the link healed. A node that may run the servers (started,
        // not locked, not blocked by a failed start) means one node ends up running them.
        sim.run(&Step::Heal);
        sim.run(&Step::Boot(0));
        sim.run(&Step::Boot(1));
        for _ in 0..40 {
            sim.run(&Step::Tick(500));
            sim.check(&steps);
        }
        let may_run = sim.may_run(0) || sim.may_run(1);
        if sim.alive(0) && sim.alive(1) && may_run {
            prop_assert!(
                sim.nodes.iter().any(|n| n.running),
                "nobody runs the servers although a node may: {:?} / {:?}",
                sim.nodes[0].ha.as_ref().map(|h| (h.record(), h.status(), h.fence_state())),
                sim.nodes[1].ha.as_ref().map(|h| (h.record(), h.status(), h.fence_state()))
            );
        }
    }
}

#[test]
fn a_partition_ends_with_one_primary_and_the_other_node_fenced() {
    let mut sim = Sim::new();
    sim.run(&Step::Cmd(0, Op::Start));
    sim.run(&Step::Cmd(1, Op::Start));
    for _ in 0..4 {
        sim.run(&Step::Tick(500));
    }
    assert!(
        sim.nodes[0].running && !sim.nodes[1].running,
        "node1 primary"
    );
    sim.run(&Step::Cut);
    for _ in 0..20 {
        sim.run(&Step::Tick(500));
        sim.check(&[]);
    }
    // node1 (primary) keeps running; node2 fenced it after its 1.5 s delay and took over
    assert!(!sim.alive(0), "node1 was fenced");
    assert!(sim.nodes[1].running);
}
