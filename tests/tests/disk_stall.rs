//! DESIGN §4.6: a slow disk never makes a healthy node look dead. Every fsync of node1's daemon
//! is held for 3 s (`strace --inject=…:delay_enter`, the tool DESIGN §5 names for faults: it
//! stalls the one daemon's syncs, not the machine's disk) while node1 is the HA primary and has
//! a standby node manager, both with 1 s timeouts. A server restart during the stall writes its
//! lock file. Neither the standby nor the HA peer may fence node1: the fsyncs run off the
//! threads that carry the heartbeats.
//!
//! Needs root (strace attaches to a running daemon) and strace.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test: a panic is the failure report

use std::process::{Child, Command, Stdio};

use nm_api::ServerState;
use nm_tests::ha::Pair;
use nm_tests::{Need, Node, alive, wait_for};

/// How long each fsync of the stalled daemon waits: three times both timeouts.
const STALL_US: &str = "3000000";

/// strace, detached (SIGTERM lets it detach cleanly) when the test ends, on failure too.
struct Strace(Child);

impl Drop for Strace {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Whether every thread of `pid` is traced by `tracer`.
fn all_threads_traced(pid: u32, tracer: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("status")).is_ok_and(|s| {
            s.lines()
                .any(|l| l.split_whitespace().eq(["TracerPid:", &tracer.to_string()]))
        })
    })
}

/// Adds the standby node manager to a node's config (keys go before the first table).
fn with_standby(n: &Node) {
    let text = std::fs::read_to_string(&n.config).unwrap();
    let port = nm_tests::free_port();
    let top =
        format!("standby_port = {port}\nstandby_heartbeat = \"100ms\"\nstandby_timeout = \"1s\"\n");
    std::fs::write(&n.config, format!("{top}{text}")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_disk_gets_neither_the_standby_nor_the_ha_peer_to_fence_a_healthy_node() {
    // attaching to a running daemon needs CAP_SYS_PTRACE (Yama's ptrace_scope)
    if !nm_tests::require(&[Need::Root, Need::Strace]) {
        return;
    }
    let mut p = Pair::configure(
        "[\"sh\", \"-c\", \"echo start $NODE >> EVENTS; exec sleep 1000\"]",
        "1s",
    );
    with_standby(&p.n1);
    p.n1.start_daemon().await;
    p.n2.start_daemon().await;
    p.wait_linked().await;
    let (code, _, err) = p.n1.cli(&["ha", "start"]);
    assert_eq!(code, 0, "{err}");
    p.n1.running_pid("hadb").await;
    let active =
        p.n1.wait_status("the standby to attach", |s| {
            s.standby.as_ref().is_some_and(|b| b.state == "attached")
        })
        .await
        .pid;
    let web = p.n1.running_pid("web").await;

    // stall every fsync of node1's daemon, in every thread it has or starts
    let trace = p.shared.path().join("trace");
    let tracer = Command::new("strace")
        .args(["-f", "-qq", "-p", &active.to_string(), "-o"])
        .arg(&trace)
        .args(["-e", "trace=fsync,fdatasync"])
        .args([
            "-e",
            &format!("inject=fsync,fdatasync:delay_enter={STALL_US}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tracer = Strace(tracer);
    let tracer_pid = tracer.0.id();
    wait_for("strace to attach to every thread", || async {
        all_threads_traced(active as u32, tracer_pid).then_some(())
    })
    .await;

    // a restart during the stall: web's lock file is written (and fsync'd)
    let restart = {
        let sock = p.n1.data_dir.join("nm.sock");
        tokio::task::spawn_blocking(move || {
            Command::new(nm_tests::bin("nm-cli"))
                .arg("--socket")
                .arg(sock)
                .args(["server", "restart", "web"])
                .output()
                .unwrap()
        })
    };
    // watch the pair until the stalled syncs are done and the restart has answered
    let delayed = || {
        std::fs::read_to_string(&trace)
            .unwrap_or_default()
            .matches("(DELAYED)")
            .count()
    };
    let mut seen_silent = None;
    let until = tokio::time::Instant::now() + nm_tests::DEADLINE;
    while delayed() == 0 {
        if let Some(ha) = p.n2.status().await.and_then(|s| s.ha) {
            if !ha.communicating && seen_silent.is_none() {
                seen_silent = Some(format!("{ha:#?}"));
            }
        }
        assert!(
            alive(active),
            "node1's active node manager was killed during the stall (its standby fenced it):\n{}",
            p.logs()
        );
        assert!(
            !p.events().iter().any(|e| e.starts_with("fence")),
            "the HA peer fenced node1 during the stall:\n{}",
            p.logs()
        );
        assert!(
            tokio::time::Instant::now() < until,
            "no fsync was stalled:\n{}",
            p.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let restart = restart.await.unwrap();
    assert!(restart.status.success(), "{restart:?}");

    // nobody fenced node1: same active, no takeover, no fence by the peer, hadb runs there only
    let st = p.n1.status().await.expect("node1 answers");
    assert_eq!((st.pid, st.takeovers), (active, 0), "{}", p.logs());
    assert!(alive(active), "{}", p.logs());
    assert!(
        !p.events().iter().any(|e| e.starts_with("fence")),
        "the peer fenced node1:\n{}",
        p.logs()
    );
    assert_eq!(p.hadb(), ["node1"], "{}", p.logs());
    assert_eq!(
        seen_silent,
        None,
        "node2 lost node1 during the stall:\n{}",
        p.logs()
    );
    let after = p.n1.server("web").await;
    assert_eq!(after.state, ServerState::Running);
    assert_ne!(after.pid, Some(web), "restarted");
    drop(tracer);
}
