//! The active/standby node manager pair (JEUS): takeover after kill -9, fencing of a
//! hung active, replacement of a dead standby, the ordered shutdown, and that the kernel's lock
//! never lets two node managers be active for one data directory.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::{Read, Write};

use nm_api::client::{Client, Endpoint};
use nm_api::{NodeStatus, ServerState as St};
use nm_tests::{Node, alive, free_port, kill9, pids_with_env, raw_http, wait_for};

const TWO: &str = "[[server]]\nname = \"a\"\ncommand = [\"sleep\", \"1000\"]\n\n\
                   [[server]]\nname = \"b\"\ncommand = [\"sleep\", \"1001\"]\n";

fn pair_keys() -> String {
    format!("standby_port = {}\n", free_port())
}

/// Starts a pair and waits until its standby watches the active.
async fn start_pair(top: &str, servers: &str) -> (Node, NodeStatus) {
    let mut node = Node::configure_with(top, servers);
    node.start_daemon().await;
    let st = attached(&node, "the first standby to attach").await;
    (node, st)
}

async fn attached(node: &Node, what: &str) -> NodeStatus {
    node.wait_status(what, |s| {
        s.standby
            .as_ref()
            .is_some_and(|sb| sb.state == "attached" && sb.pid.is_some())
    })
    .await
}

/// The live nm-daemon processes of this node (active and standbys).
fn daemons(node: &Node) -> Vec<i32> {
    pids_with_env(&format!("NM_TEST_NODE={}", node.tag))
        .into_iter()
        .filter(|&p| alive(p))
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "nm-daemon")
        })
        .collect()
}

fn logs(node: &Node) -> String {
    format!(
        "--- processes\n{}\n--- nm.log\n{}\n--- standby log\n{}",
        node.processes(),
        node.read_data("nm.log"),
        node.read_data("test_standby.log")
    )
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[tokio::test]
async fn kill9_of_the_active_three_times_keeps_every_server_and_the_api_address() {
    let (mut node, st) = start_pair(&pair_keys(), TWO).await;
    assert_eq!(st.takeovers, 0);
    let a = node.running_pid("a").await;
    let b = node.running_pid("b").await;
    let tcp = Client::new(Endpoint::Tcp {
        addr: node.listen.clone(),
        token: node.token(),
    });
    let mut active = st.pid;
    let mut standby = st.standby_pid.unwrap();
    for round in 1..=3u64 {
        if round == 1 {
            node.kill9_daemon(); // our child: killed and reaped
        } else {
            kill9(active);
        }
        let st = node
            .wait_status(&format!("takeover #{round} by standby {standby}"), |s| {
                s.pid == standby && s.takeovers == round
            })
            .await;
        // the same TCP address answers, from the new active
        let over_tcp: NodeStatus = wait_for("the API address to answer again", || async {
            tcp.get::<NodeStatus>("/v1/status").await.ok()
        })
        .await;
        assert_eq!(over_tcp.pid, standby);
        let tk = st.last_takeover.clone().unwrap();
        assert_eq!(
            (tk.from_pid, tk.reason.as_str()),
            (Some(active), "died"),
            "{}",
            logs(&node)
        );
        // every server kept its PID: adopted, not restarted
        for (name, pid) in [("a", a), ("b", b)] {
            let s = node.server(name).await;
            assert_eq!(
                (s.state, s.pid, s.restart_count),
                (St::Running, Some(pid), 0)
            );
        }
        // a fresh standby watches the new active
        let st = attached(&node, "a fresh standby").await;
        let fresh = st.standby_pid.unwrap();
        assert!(fresh != standby && fresh != active);
        assert!(!alive(active));
        active = standby;
        standby = fresh;
        let nm_log = node.read_data("nm.log");
        assert_eq!(
            count(&nm_log, "took over from the active node manager"),
            round as usize
        );
        assert_eq!(
            count(
                &node.read_data("test_standby.log"),
                "this standby becomes the active"
            ),
            round as usize
        );
    }
    let mut live = daemons(&node);
    live.sort_unstable();
    let mut want = vec![active, standby];
    want.sort_unstable();
    assert_eq!(live, want, "exactly one active and one standby");
}

#[tokio::test]
async fn a_stopped_active_is_fenced_by_the_standby_which_takes_over() {
    let top = format!(
        "{}standby_heartbeat = \"200ms\"\nstandby_timeout = \"2s\"\n",
        pair_keys()
    );
    let (mut node, st) = start_pair(&top, TWO).await;
    let a = node.running_pid("a").await;
    let (active, standby) = (st.pid, st.standby_pid.unwrap());
    let p = rustix::process::Pid::from_raw(active).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::STOP).unwrap();
    let st = node
        .wait_status("the standby to fence and take over", |s| s.pid == standby)
        .await;
    node.forget_daemon();
    assert!(!alive(active), "the hung active was killed");
    let tk = st.last_takeover.unwrap();
    assert_eq!((tk.from_pid, tk.reason.as_str()), (Some(active), "fenced"));
    assert_eq!(st.takeovers, 1);
    assert_eq!(node.server("a").await.pid, Some(a));
    assert!(
        node.read_data("test_standby.log")
            .contains("fenced the silent active")
    );
    attached(&node, "a fresh standby").await;
}

#[tokio::test]
async fn a_killed_standby_is_replaced_and_the_active_says_so() {
    let (node, st) = start_pair(&pair_keys(), TWO).await;
    let old = st.standby_pid.unwrap();
    kill9(old);
    let st = node
        .wait_status("a new standby", |s| {
            s.standby
                .as_ref()
                .is_some_and(|sb| sb.state == "attached" && sb.pid.is_some_and(|p| p != old))
        })
        .await;
    assert_eq!(st.pid, node.daemon_pid().unwrap() as i32, "no takeover");
    assert_eq!(st.takeovers, 0);
    assert!(st.standby.unwrap().launches >= 2);
    assert!(
        node.read_data("nm.log")
            .contains("the standby node manager died; launching a new one"),
        "{}",
        node.read_data("nm.log")
    );
}

#[tokio::test]
async fn shutdown_stops_the_standby_then_the_active_without_a_takeover() {
    let (mut node, st) = start_pair(&pair_keys(), TWO).await;
    let a = node.running_pid("a").await;
    let standby = st.standby_pid.unwrap();
    let (code, out, err) = node.cli(&["shutdown"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(node.wait_daemon_exit().await.success());
    wait_for("the standby to exit", || async {
        (!alive(standby)).then_some(())
    })
    .await;
    assert_eq!(daemons(&node), Vec::<i32>::new());
    assert!(alive(a), "servers keep running");
    let standby_log = node.read_data("test_standby.log");
    assert!(standby_log.contains("terminating on the active node manager's request"));
    assert!(standby_log.contains("the standby node manager exited"));
    assert!(!standby_log.contains("becomes the active"), "{standby_log}");
    assert!(!node.read_data("nm.log").contains("took over"));
    // and nothing answers any more
    assert!(node.status().await.is_none());
}

#[tokio::test]
async fn a_server_killed_during_the_takeover_window_is_restarted_once() {
    let (mut node, st) = start_pair(&pair_keys(), TWO).await;
    let a = node.running_pid("a").await;
    let b = node.running_pid("b").await;
    let standby = st.standby_pid.unwrap();
    // freeze the active so it cannot see the server die, kill the server, then the active
    let p = rustix::process::Pid::from_raw(st.pid).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::STOP).unwrap();
    kill9(a);
    node.kill9_daemon();
    node.wait_status("the takeover", |s| s.pid == standby).await;
    let a_now = node
        .wait_server("a", "restarted", |s| {
            s.state == St::Running && s.pid != Some(a)
        })
        .await;
    assert_eq!(a_now.restart_count, 1);
    attached(&node, "a fresh standby").await;
    // exactly one process runs `a`, and the log shows one restart
    let tagged = pids_with_env(&format!("NM_TEST_NODE={}", node.tag));
    let running_a: Vec<i32> = tagged
        .into_iter()
        .filter(|&p| alive(p))
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c == "sleep\u{0}1000\u{0}")
        })
        .collect();
    assert_eq!(running_a, vec![a_now.pid.unwrap()]);
    assert_eq!(node.server("a").await.restart_count, 1);
    assert_eq!(node.server("b").await.pid, Some(b));
}

#[tokio::test]
async fn without_standby_port_there_is_one_process_and_no_standby() {
    let node = Node::start(TWO).await;
    node.running_pid("a").await;
    let st = node.status().await.unwrap();
    assert_eq!((st.standby_pid, st.takeovers), (None, 0));
    assert!(st.standby.is_none());
    assert_eq!(daemons(&node), vec![node.daemon_pid().unwrap() as i32]);
    assert!(!node.data_dir.join("standby.key").exists());
    let (code, _, err) = node.cli(&["nm", "log", "--standby"]);
    assert_ne!(code, 0);
    assert!(err.contains("no standby"), "{err}");
}

#[tokio::test]
async fn the_standby_log_starts_with_the_active_pid_and_is_served_by_the_cli() {
    let (node, st) = start_pair(&pair_keys(), "").await;
    // the active counts the standby attached once it sent its welcome; the standby logs the
    // active's PID once it has checked it
    let watching = format!("watching the active node manager, pid {}", st.pid);
    let out = wait_for("the standby to log the active's PID", || async {
        let (code, out, _) = node.cli(&["nm", "log", "--standby"]);
        (code == 0 && out.contains(&watching)).then_some(out)
    })
    .await;
    let starting = out.find("the standby node manager is starting").unwrap();
    assert!(starting < out.find(&watching).unwrap(), "{out}");
    let (code, out, _) = node.cli(&["status"]);
    assert_eq!(code, 0);
    for row in ["standby_state", "standby_uptime", "standby_launches"] {
        assert!(out.contains(row), "{row} missing from\n{out}");
    }
    let metrics = raw_http(
        &node.listen,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            node.token()
        ),
    )
    .await;
    for line in ["nm_standby_up 1", "nm_takeovers 0", "nm_standby_launches 1"] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn garbage_on_the_standby_port_is_counted_and_changes_nothing() {
    let port = free_port();
    let (node, st) = start_pair(&format!("standby_port = {port}\n"), "").await;
    for junk in [
        &b"\x00\x00\x00\x05hello"[..],
        &b"\xff\xff\xff\xffxxxx"[..],
        &[0u8; 64][..],
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut challenge = [0u8; 4];
        s.read_exact(&mut challenge).unwrap();
        s.write_all(junk).unwrap();
        drop(s);
    }
    let after = node
        .wait_status("the three bad handshakes to be counted", |s| {
            s.standby.as_ref().is_some_and(|sb| sb.rejected_frames >= 3)
        })
        .await;
    assert_eq!(after.pid, st.pid);
    assert_eq!(
        after.standby_pid, st.standby_pid,
        "the standby is untouched"
    );
    assert_eq!(after.takeovers, 0);
}

#[tokio::test]
async fn deleting_nm_lock_frees_nothing_the_data_directory_is_what_is_locked() {
    let (mut node, st) = start_pair(&pair_keys(), TWO).await;
    let a = node.running_pid("a").await;
    std::fs::remove_file(node.data_dir.join("nm.lock")).unwrap();
    // a fresh standby (the old one killed) must still find the active holding the lock
    kill9(st.standby_pid.unwrap());
    let st2 = node
        .wait_status("a new standby", |s| {
            s.standby.as_ref().is_some_and(|sb| {
                sb.state == "attached" && sb.pid.is_some_and(|p| Some(p) != st.standby_pid)
            })
        })
        .await;
    assert_eq!((st2.pid, st2.takeovers), (st.pid, 0), "{}", logs(&node));
    assert_eq!(daemons(&node).len(), 2, "{}", logs(&node));
    // and the pair still takes over when the active really dies
    node.kill9_daemon();
    let st3 = node
        .wait_status("the takeover", |s| Some(s.pid) == st2.standby_pid)
        .await;
    assert_eq!(st3.takeovers, 1);
    assert_eq!(node.server("a").await.pid, Some(a));
}

#[tokio::test]
async fn a_standby_whose_config_names_another_data_dir_never_takes_over() {
    let (node, st) = start_pair(&pair_keys(), TWO).await;
    let a = node.running_pid("a").await;
    // nm.toml edited to a copy of the data directory (same key), the pair still running
    let other = node.dir.path().join("copy");
    std::fs::create_dir(&other).unwrap();
    std::fs::copy(node.data_dir.join("standby.key"), other.join("standby.key")).unwrap();
    let text = std::fs::read_to_string(&node.config).unwrap();
    let data = node.data_dir.display().to_string();
    std::fs::write(
        &node.config,
        text.replace(&data, &other.display().to_string()),
    )
    .unwrap();
    kill9(st.standby_pid.unwrap());
    // the relaunched standbys read the edited file: they refuse to watch an active that does
    // not hold their data directory, and leave
    let st2 = node
        .wait_status("two standbys to have refused", |s| {
            s.standby.as_ref().is_some_and(|sb| sb.launches >= 3)
        })
        .await;
    assert_eq!((st2.pid, st2.takeovers), (st.pid, 0), "{}", logs(&node));
    let standby_log = std::fs::read_to_string(other.join("test_standby.log")).unwrap_or_default()
        + &node.read_data("test_standby.log");
    assert!(
        standby_log.contains("refusing to stand by"),
        "{standby_log}"
    );
    assert!(!other.join("nm.sock").exists() && !other.join("servers").exists());
    assert_eq!(node.server("a").await.pid, Some(a));
}

#[tokio::test]
async fn sigterm_to_the_active_stops_the_pair_without_a_takeover() {
    let (mut node, st) = start_pair(&pair_keys(), TWO).await;
    let a = node.running_pid("a").await;
    let p = rustix::process::Pid::from_raw(st.pid).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::TERM).unwrap();
    assert!(node.wait_daemon_exit().await.success());
    let standby = st.standby_pid.unwrap();
    wait_for("the standby to exit", || async {
        (!alive(standby)).then_some(())
    })
    .await;
    assert_eq!(daemons(&node), Vec::<i32>::new(), "{}", logs(&node));
    assert!(alive(a), "servers keep running");
    assert!(!node.read_data("nm.log").contains("took over"));
}

#[tokio::test]
async fn a_server_an_operator_stopped_stays_stopped_across_a_takeover_and_a_daemon_start_in_the_same_boot()
 {
    let (mut node, st) = start_pair(&pair_keys(), TWO).await;
    node.running_pid("a").await;
    let b = node.running_pid("b").await;
    let (code, out, err) = node.cli(&["server", "stop", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    node.kill9_daemon();
    let standby = st.standby_pid.unwrap();
    node.wait_status("the takeover", |s| s.pid == standby).await;
    let a = node
        .wait_server("a", "recovered", |s| s.state != St::Unknown)
        .await;
    assert_eq!((a.state, a.pid), (St::Shutdown, None), "{a:#?}");
    assert!(
        a.reason.starts_with("stopped by operator at "),
        "{}",
        a.reason
    );
    assert_eq!(node.server("b").await.pid, Some(b));
    // a whole new daemon (after a shutdown) in the same boot keeps the stop too
    let (code, out, err) = node.cli(&["shutdown"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("the pair to exit", || async {
        daemons(&node).is_empty().then_some(())
    })
    .await;
    node.start_daemon().await;
    let again = node.server("a").await;
    assert_eq!((again.state, &again.reason), (St::Shutdown, &a.reason));
    // after a reboot (simulated for stop markers only) auto_start decides again
    let (code, out, err) = node.cli(&["shutdown"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("the pair to exit", || async {
        daemons(&node).is_empty().then_some(())
    })
    .await;
    node.start_daemon_under(&["env", "NM_TEST_BOOT_ID=rebooted"])
        .await;
    node.running_pid("a").await;
    assert!(!node.data_dir.join("servers/a.stopped").exists());
}
