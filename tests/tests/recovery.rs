//! Crash recovery from lock files: adoption with the same PIDs, restarts of what died meanwhile,
//! and strangers left alone (DESIGN §4.2).
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use nm_api::ServerState as St;
use nm_tests::{KillOnDrop, Node, alive, kill9, pid_of, wait_for};

const TWO: &str = "[[server]]\nname = \"a\"\ncommand = [\"sleep\", \"1000\"]\n\n\
                   [[server]]\nname = \"b\"\ncommand = [\"sleep\", \"1001\"]\n";

#[tokio::test]
async fn a_restarted_daemon_adopts_live_servers_with_the_same_pids_and_restarts_the_dead() {
    let mut node = Node::start(TWO).await;
    let a = node.running_pid("a").await;
    let b = node.running_pid("b").await;
    node.kill9_daemon();
    assert!(alive(a) && alive(b), "servers survive the daemon's death");
    kill9(b); // dies while no daemon watches
    wait_for("b to be gone", || async { (!alive(b)).then_some(()) }).await;
    node.start_daemon().await;
    let a_now = node
        .wait_server("a", "adopted", |s| s.state == St::Running)
        .await;
    assert_eq!(a_now.pid, Some(a), "adopted, not restarted: {a_now:#?}");
    assert!(a_now.reason.contains("adopted"), "{}", a_now.reason);
    assert_eq!(a_now.restart_count, 0);
    let b_now = node
        .wait_server("b", "restarted", |s| s.state == St::Running)
        .await;
    assert_ne!(b_now.pid, Some(b));
    assert_eq!(b_now.restart_count, 1);
    // the adopted server is still controlled: a kill -9 now is seen and restarted
    kill9(a);
    let a_again = node
        .wait_server("a", "restarted after adoption", |s| {
            s.state == St::Running && s.pid != Some(a)
        })
        .await;
    assert_eq!(a_again.restart_count, 1);
    assert!(!alive(a));
}

#[tokio::test]
async fn a_lock_file_naming_an_unrelated_live_process_is_neither_adopted_nor_signalled() {
    let mut node = Node::start("[[server]]\nname = \"a\"\ncommand = [\"sleep\", \"1000\"]\n").await;
    let a = node.running_pid("a").await;
    node.kill9_daemon();
    kill9(a);
    // a stranger: a live process that is not the server, with its own start time
    let mut stranger = KillOnDrop(
        std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap(),
    );
    let spid = i32::try_from(stranger.id()).unwrap();
    let lock = node.data_dir.join("servers/a.lock");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
    record["pid"] = spid.into();
    record["pgid"] = spid.into();
    std::fs::write(&lock, serde_json::to_vec(&record).unwrap()).unwrap();

    node.start_daemon().await;
    let now = node
        .wait_server("a", "restarted", |s| s.state == St::Running)
        .await;
    assert_ne!(now.pid, Some(spid), "the stranger was adopted");
    assert!(alive(spid), "the stranger was signalled");
    assert_eq!(
        stranger.try_wait().unwrap(),
        None,
        "the stranger is still running"
    );
    let log = std::fs::read_to_string(node.data_dir.join("nm.log")).unwrap();
    assert!(
        log.contains(&format!("pid {spid} is another process")),
        "{log}"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[tokio::test]
async fn a_garbage_lock_file_is_reported_and_the_server_left_unknown() {
    let mut node = Node::start("[[server]]\nname = \"a\"\ncommand = [\"sleep\", \"1000\"]\n").await;
    let a = node.running_pid("a").await;
    node.kill9_daemon();
    let lock = node.data_dir.join("servers/a.lock");
    std::fs::write(&lock, b"{\"version\":1,\"ser").unwrap();
    // twice: a second daemon start must not forget what the first could not trust
    for _ in 0..2 {
        node.start_daemon().await;
        let info = node.server("a").await;
        assert_eq!(info.state, St::Unknown, "{info:#?}");
        assert!(info.reason.contains("unreadable"), "{}", info.reason);
        assert!(lock.exists(), "the lock file is left in place");
        assert!(alive(a), "an untrusted lock file leads to no signal");
        node.kill9_daemon();
    }
}

#[tokio::test]
async fn a_live_process_whose_token_cannot_be_confirmed_is_neither_adopted_nor_doubled() {
    let mut node = Node::start("[[server]]\nname = \"a\"\ncommand = [\"sleep\", \"1000\"]\n").await;
    let a = node.running_pid("a").await;
    node.kill9_daemon();
    // same pid, start time and group, another token: as if the server rewrote its environment
    let lock = node.data_dir.join("servers/a.lock");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
    record["token"] = "00000000000000000000000000000000".into();
    std::fs::write(&lock, serde_json::to_vec(&record).unwrap()).unwrap();
    node.start_daemon().await;
    let info = node.server("a").await;
    assert_eq!(info.state, St::Unknown, "{info:#?}");
    assert!(alive(a), "not signalled");
    let copies = nm_tests::pids_with_env(&format!("NM_TEST_NODE={}", node.tag))
        .into_iter()
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.starts_with("sleep"))
        })
        .count();
    assert_eq!(copies, 1, "no second copy was started");
}

#[tokio::test]
async fn sigterm_leaves_servers_running_and_the_next_daemon_adopts_them() {
    let mut node = Node::start(TWO).await;
    let a = node.running_pid("a").await;
    let pid = node.daemon_pid().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = node.wait_daemon_exit().await;
    assert!(status.success(), "{status:?}");
    assert!(alive(a));
    node.start_daemon().await;
    assert_eq!(
        node.wait_server("a", "adopted", |s| s.state == St::Running)
            .await
            .pid,
        Some(a)
    );
}

#[tokio::test]
async fn shutdown_with_stop_servers_stops_them_then_exits() {
    let mut node = Node::start(TWO).await;
    let a = node.running_pid("a").await;
    let (code, out, err) = node.cli(&["shutdown", "--stop-servers"]);
    assert_eq!(code, 0, "{out}{err}");
    let status = node.wait_daemon_exit().await;
    assert!(status.success());
    assert!(!alive(a));
    assert!(!node.data_dir.join("servers/a.lock").exists());
}

#[tokio::test]
async fn the_restart_budget_survives_a_daemon_restart() {
    let mut node =
        Node::start("[[server]]\nname = \"a\"\ncommand = [\"sleep\", \"1000\"]\nrestart_max = 1\n")
            .await;
    let first = node.running_pid("a").await;
    kill9(first);
    let second = pid_of(
        &node
            .wait_server("a", "restarted", |s| {
                s.state == St::Running && s.pid != Some(first)
            })
            .await,
    );
    node.kill9_daemon();
    node.start_daemon().await;
    assert_eq!(
        node.wait_server("a", "adopted", |s| s.state == St::Running)
            .await
            .pid,
        Some(second)
    );
    kill9(second);
    let info = node
        .wait_server("a", "given up", |s| s.state == St::FailedNotRestartable)
        .await;
    assert!(
        info.reason.contains("restart budget spent"),
        "{}",
        info.reason
    );
}

#[tokio::test]
async fn a_start_whose_record_was_never_written_is_found_by_its_reserved_token() {
    let mut node = Node::start("[[server]]\nname = \"a\"\ncommand = [\"sleep\", \"1000\"]\n").await;
    let a = node.running_pid("a").await;
    node.kill9_daemon();
    kill9(a);
    // as if the daemon had spawned the next start and died before writing its record: a session
    // leader carrying the token the lock file reserved for that start
    let lock = node.data_dir.join("servers/a.lock");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
    let reserved = record["next_token"].as_str().unwrap().to_owned();
    assert_eq!(reserved.len(), 32);
    let mut next = KillOnDrop(
        std::process::Command::new("setsid")
            .args(["sleep", "1000"])
            .env("NM_SERVER_TOKEN", &reserved)
            .env("NM_TEST_NODE", &node.tag)
            .spawn()
            .unwrap(),
    );
    let next_pid = i32::try_from(next.id()).unwrap();
    wait_for("the session leader", || async {
        std::fs::read_to_string(format!("/proc/{next_pid}/stat"))
            .ok()
            .filter(|s| s.contains("sleep"))
            .map(drop)
    })
    .await;
    node.start_daemon().await;
    let info = node
        .wait_server("a", "adopted", |s| s.state == St::Running)
        .await;
    assert_eq!(
        info.pid,
        Some(next_pid),
        "adopted by its reserved token, no second copy: {info:#?}"
    );
    assert_eq!(next.try_wait().unwrap(), None);
}
