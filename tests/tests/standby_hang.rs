//! The standby node manager (JEUS) fences a hung active even when its link dropped first: the
//! link is reset, then the active is SIGSTOPped. Its kernel still accepts the standby's
//! reconnections, whose handshakes hang; the standby must not take that quiet for a freeze of its
//! own. It fences the pinned active (SIGKILL) a `standby_timeout` after the active's last
//! heartbeat and takes over, adopting the servers.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use nm_api::ServerState as St;
use nm_tests::{Need, Node, alive, free_port, proc_state, require, wait_for};

const TWO: &str = "[[server]]\nname = \"a\"\ncommand = [\"sleep\", \"1000\"]\n\n\
                   [[server]]\nname = \"b\"\ncommand = [\"sleep\", \"1001\"]\n";

/// `standby_timeout` of the test's node.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Beyond `standby_timeout`: the handshake that is hanging when the fence comes, the takeover
/// (the lock, the previous active's exit, a daemon start) on a loaded machine.
const MARGIN: Duration = Duration::from_secs(10);

/// Answers every TCP packet sent to `port` on loopback with a reset (a standby link that drops at
/// once, not silently) until dropped; `reject` never answers a reset, so nothing loops.
fn reset_port(port: u16) -> nm_tests::nft::Table {
    nm_tests::nft::Table::output(
        "nm_standby_hang",
        &format!("  tcp dport {port} reject with tcp reset"),
    )
}

fn logs(node: &Node) -> String {
    format!(
        "--- processes\n{}\n--- nm.log\n{}\n--- standby log\n{}",
        node.processes(),
        node.read_data("nm.log"),
        node.read_data("test_standby.log")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_fences_an_active_that_hangs_after_its_link_dropped_and_takes_over() {
    if !require(&[Need::Root, Need::Nftables]) {
        return;
    }
    let port = free_port();
    let top = format!(
        "standby_port = {port}\nstandby_heartbeat = \"200ms\"\nstandby_timeout = \"{}s\"\n",
        TIMEOUT.as_secs()
    );
    let mut node = Node::configure_with(&top, TWO);
    node.start_daemon().await;
    let st = node
        .wait_status("the standby to attach", |s| {
            s.standby
                .as_ref()
                .is_some_and(|sb| sb.state == "attached" && sb.pid.is_some())
        })
        .await;
    let (active, standby) = (st.pid, st.standby_pid.unwrap());
    let a = node.running_pid("a").await;
    let b = node.running_pid("b").await;
    // the standby has linked (it pinned the active): only a linked standby ever fences
    let watching = format!("watching the active node manager, pid {active}");
    wait_for("the standby to watch the active", || async {
        node.read_data("test_standby.log")
            .contains(&watching)
            .then_some(())
    })
    .await;

    // the link drops: the standby's next heartbeat is answered with a reset, and so is every
    // reconnection while the rule stands
    let reset = reset_port(port);
    wait_for("the standby to lose its link", || async {
        node.read_data("test_standby.log")
            .contains("lost the link to the active node manager")
            .then_some(())
    })
    .await;
    // the active hangs (before its own timeout would replace the silent standby); the node's
    // cleanup kills it, stopped or not, should the test fail
    let p = rustix::process::Pid::from_raw(active).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::STOP).unwrap();
    wait_for("the active to be stopped", || async {
        (proc_state(active) == Some('T')).then_some(())
    })
    .await;
    // the port answers again: the stopped active's kernel accepts each reconnection, whose
    // handshake then hangs
    drop(reset);

    let st = tokio::time::timeout(
        TIMEOUT + MARGIN,
        node.wait_status("the standby to fence the hung active and take over", |s| {
            s.pid == standby
        }),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the hung active was not fenced within standby_timeout + {MARGIN:?}\n{}",
            logs(&node)
        )
    });
    node.forget_daemon();
    assert!(!alive(active), "the hung active was killed");
    let tk = st.last_takeover.clone().unwrap();
    assert_eq!(
        (tk.from_pid, tk.reason.as_str()),
        (Some(active), "fenced"),
        "{}",
        logs(&node)
    );
    assert_eq!(st.takeovers, 1);
    // adopted, not restarted
    for (name, pid) in [("a", a), ("b", b)] {
        let s = node.server(name).await;
        assert_eq!(
            (s.state, s.pid, s.restart_count),
            (St::Running, Some(pid), 0),
            "{name}"
        );
    }
    let standby_log = node.read_data("test_standby.log");
    assert!(
        standby_log.contains("fenced the silent active"),
        "{standby_log}"
    );
    assert!(
        !standby_log.contains("this standby did not run"),
        "the hanging handshakes passed for a stall of the standby:\n{standby_log}"
    );
    // the new active watches over a fresh standby on the same port
    node.wait_status("a fresh standby", |s| {
        s.standby
            .as_ref()
            .is_some_and(|sb| sb.state == "attached" && sb.pid.is_some_and(|p| p != standby))
    })
    .await;
}
