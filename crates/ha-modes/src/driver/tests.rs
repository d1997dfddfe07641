//! Driver tests: real loopback sockets and a real supervisor (no servers) in a temporary data
//! directory. Tests about timers run on tokio's paused clock: virtual time moves only when every
//! task waits, so "after peer_timeout" is exact and costs no wall time.

use std::path::Path;
use std::sync::atomic::AtomicU64;

use nm_wire::session::{self, Connected, Received};
use supervisor_core::SupervisorConfig;
use tokio::task::JoinHandle;

use super::link::{Identity, Reply, Request};
use super::*;
use crate::core::Record;

const KEY: &[u8] = b"the test key of the pair: 32 byt";

/// The tests' one clock read: tokio's, paused or not.
#[allow(clippy::disallowed_methods)]
fn clock() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A supervisor with no servers, in `dir/sup`.
fn supervisor(dir: &Path) -> (SupervisorHandle, JoinHandle<()>) {
    supervisor_core::driver::start(SupervisorConfig {
        data_dir: dir.join("sup"),
        crash_recovery: true,
        keep_operator_stops: false,
        no_crash_recovery: vec![],
        servers: vec![],
    })
    .unwrap()
}

fn config(dir: &Path, node: &str, peer: &str, peer_addr: SocketAddr, timing: Timing) -> HaConfig {
    HaConfig {
        data_dir: dir.to_owned(),
        node: node.into(),
        peer: peer.into(),
        peer_addr,
        key: KEY.to_vec(),
        servers: vec![],
        fence_command: vec!["false".into()],
        fence_timeout: secs(10),
        reset_command: None,
        start_timeout: secs(10),
        stop_timeout: secs(10),
        timing,
    }
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// An address where nothing listens: connections to it are refused at once.
async fn nobody() -> SocketAddr {
    listener().await.local_addr().unwrap()
}

/// Waits (at most `within`, in the test's time) for a report that satisfies `f`.
async fn wait_report(
    ha: &HaHandle,
    what: &str,
    within: Duration,
    f: impl FnMut(&HaReport) -> bool,
) -> HaReport {
    let mut rx = ha.report.clone();
    match tokio::time::timeout(within, rx.wait_for(f)).await {
        Ok(Ok(r)) => r.clone(),
        _ => panic!(
            "{what}: not within {within:?}; last report {:#?}",
            ha.report()
        ),
    }
}

fn node2_state() -> PeerState {
    PeerState {
        node: "node2".into(),
        incarnation: 7,
        mode: Mode::Default,
        status: Status::Running,
        peerdown: false,
        started: true,
        ha_idle_failed_startup: false,
        promoting: false,
        claims_done: 0,
        seq: 1,
        up_ms: 0,
    }
}

fn identity(node: &str, peer: &str) -> Identity {
    Identity {
        node: node.into(),
        peer: peer.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_goes_silent_mid_handshake_is_fenced_after_peer_timeout_while_the_link_keeps_answering()
 {
    let dir = tempfile::tempdir().unwrap();
    let started = Record {
        started: true,
        ..Record::default()
    };
    store::save(dir.path(), &started).unwrap();
    // the peer's address: connection 0 gets nothing at all, connection 1 a challenge and then
    // nothing (the handshake half done), connection 2 a full handshake and then no answer to any
    // request; all are kept open, as by a machine that hangs
    let fake = listener().await;
    let fake_addr = fake.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let fake_peer = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let mut held: Vec<Box<dyn std::any::Any + Send>> = vec![];
            for k in 0u64.. {
                let Ok((stream, _)) = fake.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                if k % 3 == 0 {
                    held.push(Box::new(stream));
                    continue;
                }
                // sends the challenge, reads the hello
                let Ok(pending) =
                    session::accept::<Identity>(stream, link::PROTOCOL, KEY, secs(3600)).await
                else {
                    continue;
                };
                if k % 3 == 1 {
                    held.push(Box::new(pending));
                } else if let Ok(halves) = pending.welcome(&identity("node2", "node1")).await {
                    held.push(Box::new(halves));
                }
            }
        })
    };
    let (sup, sup_task) = supervisor(dir.path());
    let ours = listener().await;
    let our_addr = ours.local_addr().unwrap();
    let timing = Timing::default(); // heartbeat 500 ms, peer_timeout 3 s, no fence delay
    let cfg = HaConfig {
        // never finishes within the test: the fence stays `fencing`
        fence_command: vec!["sleep".into(), "3600".into()],
        fence_timeout: secs(7200),
        ..config(dir.path(), "node1", "node2", fake_addr, timing)
    };
    let t0 = clock();
    let (ha, task) = start(cfg, ours, sup).unwrap();

    // while its own dial hangs in a handshake, the node answers the peer's exchanges
    tokio::time::sleep_until(t0 + secs(1)).await;
    let linked = session::connect::<Identity, _>(
        our_addr,
        link::PROTOCOL,
        KEY,
        &identity("node2", "node1"),
        secs(5),
    )
    .await
    .unwrap();
    let Connected::Linked(mut rx, mut tx, them) = linked else {
        panic!("node1 refused the peer")
    };
    assert_eq!(them.node, "node1");
    tx.send(&Request::Exchange(node2_state())).await.unwrap();
    let Received::Msg(Reply::State(s)) = rx.recv::<Reply>().await.unwrap() else {
        panic!("no state in answer to an exchange")
    };
    assert_eq!((s.node.as_str(), s.status), ("node1", Status::Running));
    let heard = clock();
    wait_report(&ha, "the peer heard", secs(1), |r| r.communicating).await;
    drop((rx, tx)); // and now the peer is silent in every way

    // not silent yet a moment before peer_timeout: nothing is decided
    tokio::time::sleep_until(heard + timing.peer_timeout - ms(100)).await;
    assert_eq!(ha.report().fence, "idle");
    // then the peer is silent, and fenced before this node may take over
    let r = wait_report(&ha, "the fence of the silent peer", secs(30), |r| {
        r.fence != "idle"
    })
    .await;
    assert!(clock() >= heard + timing.peer_timeout);
    assert_eq!(r.fence, "fencing", "{r:#?}");
    assert!(!r.communicating, "{r:#?}");
    assert_eq!(r.peer.status, None);
    assert_eq!(
        r.local.status,
        Some(Status::Running),
        "not primary before the fence"
    );

    // the dialler did not hang either: it gave up on each silent connection and dialled again
    let redials = async {
        while accepted.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(timing.heartbeat).await;
        }
    };
    tokio::time::timeout(secs(60), redials)
        .await
        .expect("the dialler redials after each silent connection");
    // and the manager still answers its operator
    let reply = tokio::time::timeout(secs(10), ha.run(PairCommand::Status))
        .await
        .expect("ha status answers")
        .unwrap();
    assert!(!reply.report.communicating);
    assert_eq!(reply.report.fence, "fencing");

    drop(ha);
    task.abort();
    sup_task.abort();
    fake_peer.abort();
}

const NOT_PRIMARY: &str = "server \"web\" is HA-managed: it runs only on the HA primary, and this node is not primary (see `nm-cli ha status`)";

#[tokio::test(start_paused = true)]
async fn a_start_of_an_ha_managed_server_is_decided_by_the_ha_manager() {
    // HA stopped: not primary. Starts are refused before anything reaches the supervisor.
    let dir = tempfile::tempdir().unwrap();
    let (sup, sup_task) = supervisor(dir.path());
    let cfg = config(
        dir.path(),
        "node1",
        "node2",
        nobody().await,
        Timing::default(),
    );
    let (ha, task) = start(cfg, listener().await, sup).unwrap();
    for cmd in [Command::Start, Command::Restart, Command::Resume] {
        assert_eq!(
            ha.server_command("web", cmd).await,
            Err(HaError::Refused(NOT_PRIMARY.into())),
            "{cmd:?}"
        );
    }
    // other commands go through (this supervisor knows no "web")
    assert!(matches!(
        ha.server_command("web", Command::Stop).await,
        Ok(Err(CommandError::NoSuchServer(_)))
    ));
    drop(ha);
    task.abort();
    sup_task.abort();

    // the peer certified powered off: this node becomes primary, and starts go through
    let dir = tempfile::tempdir().unwrap();
    let certified = Record {
        started: true,
        peerdown: true,
        ..Record::default()
    };
    store::save(dir.path(), &certified).unwrap();
    let (sup, sup_task) = supervisor(dir.path());
    let cfg = config(
        dir.path(),
        "node1",
        "node2",
        nobody().await,
        Timing::default(),
    );
    let (ha, task) = start(cfg, listener().await, sup).unwrap();
    wait_report(&ha, "primary", secs(30), |r| {
        r.local.status == Some(Status::Primary) && !r.starting
    })
    .await;
    assert!(matches!(
        ha.server_command("web", Command::Start).await,
        Ok(Err(CommandError::NoSuchServer(_)))
    ));
    drop(ha);
    task.abort();
    sup_task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_mode_is_durable_before_it_is_applied_and_a_failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (sup, sup_task) = supervisor(dir.path());
    let cfg = config(
        dir.path(),
        "node1",
        "node2",
        nobody().await,
        Timing::default(),
    );
    let (ha, task) = start(cfg, listener().await, sup.clone()).unwrap();
    let reply = ha.run(PairCommand::Mode(Mode::Locked)).await.unwrap();
    assert_eq!(reply.steps, ["node1: mode locked"]);
    assert_eq!(reply.report.local.mode, Mode::Locked);
    assert_eq!(store::load(dir.path()).unwrap().mode, Mode::Locked);
    drop(ha);
    task.abort();

    // a data directory that cannot be written: the command is refused, the mode stays
    let gone = dir.path().join("gone");
    let cfg = config(&gone, "node1", "node2", nobody().await, Timing::default());
    let (ha, task) = start(cfg, listener().await, sup).unwrap();
    let Err(HaError::Refused(why)) = ha.run(PairCommand::Mode(Mode::Locked)).await else {
        panic!("a failed write is a refusal")
    };
    assert!(
        why.starts_with("cannot write ") && why.ends_with("ha.json: nothing changed"),
        "{why}"
    );
    assert_eq!(ha.report().local.mode, Mode::Default);
    drop(ha);
    task.abort();
    sup_task.abort();
}

/// A stalled disk, made with a FIFO where the atomic write of `ha.json` creates its temporary
/// file: the writer's `open` blocks until someone reads the FIFO. Real time (the point is a stall
/// longer than the peer timeout), short timing.
#[tokio::test]
async fn a_stalled_write_of_ha_json_holds_the_command_but_not_the_heartbeats() {
    let timing = Timing {
        heartbeat: ms(100),
        peer_timeout: secs(1),
        ..Timing::default()
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (l1, l2) = (listener().await, listener().await);
    let (a1, a2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
    let (sup1, s1) = supervisor(d1.path());
    let (sup2, s2) = supervisor(d2.path());
    let (ha1, t1) = start(config(d1.path(), "node1", "node2", a2, timing), l1, sup1).unwrap();
    let (ha2, t2) = start(config(d2.path(), "node2", "node1", a1, timing), l2, sup2).unwrap();
    for ha in [&ha1, &ha2] {
        wait_report(ha, "linked", secs(10), |r| r.communicating).await;
    }
    // the next write of ha.json blocks (a disk that stops answering), then fails
    let (release, written) = super::store::stall::next_save(d1.path());

    let command = {
        let ha1 = ha1.clone();
        tokio::spawn(async move { ha1.run(PairCommand::Mode(Mode::Locked)).await })
    };
    // for three peer timeouts node2 hears node1 all along, while the command waits for its write
    let mut seen = ha2.report.clone();
    let until = clock() + 3 * timing.peer_timeout;
    loop {
        let r = seen.borrow_and_update().clone();
        assert!(r.communicating, "node2 lost node1 during the stall: {r:#?}");
        assert_eq!(r.fence, "idle");
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            changed = seen.changed() => changed.unwrap(),
        }
    }
    assert!(!command.is_finished(), "the write was not stalled");
    assert_eq!(
        ha1.report().local.mode,
        Mode::Default,
        "applied before durable"
    );
    assert!(ha1.report().communicating);

    // the disk comes back, and the write fails: nothing changed
    drop(release);
    let result = tokio::time::timeout(secs(10), command)
        .await
        .expect("the command ends once the disk is back")
        .unwrap();
    let Err(HaError::Refused(why)) = result else {
        panic!("{result:?}")
    };
    assert!(why.ends_with("nothing changed"), "{why}");
    assert!(
        String::from_utf8(written.recv().unwrap())
            .unwrap()
            .contains("locked")
    );
    assert_eq!(ha1.report().local.mode, Mode::Default);
    for t in [t1, t2] {
        t.abort();
    }
    s1.abort();
    s2.abort();
}

/// A driver built by hand, without its tasks: its writes are collected, not written, and each
/// completes when the test says so.
fn bare_driver(
    dir: &Path,
    sup: SupervisorHandle,
    record: Record,
) -> (Driver, mpsc::UnboundedReceiver<Record>) {
    let cfg = config(
        dir,
        "node1",
        "node2",
        "127.0.0.1:9".parse().unwrap(),
        Timing::default(),
    );
    let t = now();
    let core = Ha::new(
        t,
        HaInit {
            node: "node1".into(),
            peer: "node2".into(),
            incarnation: 1,
            record,
            servers: Observed::Down,
            timing: cfg.timing,
        },
    );
    let (events, _) = mpsc::unbounded_channel();
    let (outbox, _) = mpsc::channel(1);
    let (mine, _) = watch::channel(core.state_for_peer());
    let (report, _) = watch::channel(HaReport::of(&core, t, "node2", &[]));
    let (writes, written) = mpsc::unbounded_channel();
    let driver = Driver {
        core,
        cfg: Arc::new(cfg),
        sup,
        events,
        outbox,
        mine,
        report,
        rejected: Arc::default(),
        incarnation: 1,
        writes,
        in_flight: VecDeque::new(),
        durable: record,
        syncs: vec![],
        history: VecDeque::new(),
        ended: false,
    };
    (driver, written)
}

fn node2_in(mode: Mode) -> PeerState {
    PeerState {
        mode,
        status: Status::Stopped,
        started: false,
        ..node2_state()
    }
}

#[tokio::test(start_paused = true)]
async fn a_command_refused_on_its_write_completion_leaves_the_disk_with_the_cores_record() {
    let dir = tempfile::tempdir().unwrap();
    let (sup, sup_task) = supervisor(dir.path());
    let (mut d, mut written) = bare_driver(dir.path(), sup, Record::default());
    let t = now();
    d.core.on_peer_state(t, node2_in(Mode::Locked));
    // single beside a locked peer: allowed; written first
    let (reply, mut answer) = oneshot::channel();
    d.command(t, Op::Mode(Mode::Single), reply);
    let single = Record {
        mode: Mode::Single,
        ..Record::default()
    };
    assert_eq!(written.try_recv().unwrap(), single);
    assert!(
        answer.try_recv().is_err(),
        "answered before its write finished"
    );
    assert_eq!(
        d.core.record().mode,
        Mode::Default,
        "applied before durable"
    );
    // meanwhile the peer leaves locked: single would now be the prohibited single-default
    d.core.on_peer_state(t, node2_in(Mode::Default));
    d.on_persisted(t, Ok(()));
    let why = answer.try_recv().unwrap().unwrap_err();
    assert!(
        why.starts_with("mode single would make the prohibited state single-default"),
        "{why}"
    );
    assert_eq!(d.core.record().mode, Mode::Default);
    // the disk holds `single` now: the core's record is written again
    assert_eq!(written.try_recv().unwrap(), Record::default());
    d.on_persisted(t, Ok(()));
    assert_eq!(d.durable, Record::default());
    assert!(d.in_flight.is_empty());
    sup_task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_record_of_the_core_is_published_only_once_durable_and_a_command_is_rechecked() {
    let dir = tempfile::tempdir().unwrap();
    let (sup, sup_task) = supervisor(dir.path());
    let certified = Record {
        peerdown: true,
        ..Record::default()
    };
    let (mut d, mut written) = bare_driver(dir.path(), sup, certified);
    let mut report = d.report.subscribe();
    let t = now();
    // config beside a certified peer: allowed; its write starts
    let (reply, mut answer) = oneshot::channel();
    d.command(t, Op::Mode(Mode::Config), reply);
    assert_eq!(written.try_recv().unwrap().mode, Mode::Config);
    // meanwhile the certified peer communicates: the core erases the certification (rule 1)
    // and writes that; until it is durable, the report still shows the certification
    d.core.on_peer_state(t, node2_in(Mode::Default));
    while let Some(a) = d.core.poll_action() {
        assert!(d.act(a).is_none());
    }
    let erased = d.core.record();
    assert!(!erased.peerdown);
    assert_eq!(written.try_recv().unwrap(), erased);
    d.publish();
    assert_eq!(report.borrow_and_update().peer.mode, Mode::Peerdown);
    // the command's write finishes first: re-checked, it is refused (config-default)
    d.on_persisted(t, Ok(()));
    let why = answer.try_recv().unwrap().unwrap_err();
    assert!(
        why.starts_with("mode config would make the prohibited state"),
        "{why}"
    );
    d.publish();
    assert_eq!(report.borrow_and_update().peer.mode, Mode::Peerdown);
    // then the core's: published now, and nothing more to write
    d.on_persisted(t, Ok(()));
    d.publish();
    assert_eq!(report.borrow_and_update().peer.mode, Mode::Default);
    assert_eq!(d.durable, erased);
    assert!(written.try_recv().is_err());
    sup_task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_start_while_the_ha_manager_stops_its_servers_is_refused_and_never_reaches_the_supervisor()
 {
    let dir = tempfile::tempdir().unwrap();
    let (sup, sup_task) = supervisor(dir.path());
    let locked = Record {
        mode: Mode::Locked,
        started: true,
        ..Record::default()
    };
    let (mut d, _written) = bare_driver(dir.path(), sup, locked);
    // the servers run here (adopted): locked mode stops them, and the node is still primary
    // until they are verified down
    d.core.on_servers_observed(now(), Observed::Up);
    let actions: Vec<_> = std::iter::from_fn(|| d.core.poll_action()).collect();
    assert!(d.core.stopping() && d.core.is_primary(), "{actions:?}");
    for command in [Command::Start, Command::Restart, Command::Resume] {
        let (reply, rx) = oneshot::channel();
        d.server_command("web", command, reply);
        let got = rx.await.unwrap();
        assert!(
            matches!(&got, Err(HaError::Refused(why)) if why.contains("stopping")),
            "{command:?} during the HA manager's own stop: {got:?}"
        );
    }
    sup_task.abort();
}
