//! One node, real servers: restarts, the restart budget, delays, health checks, stop, suspend.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use nm_api::{CommandReply, ServerState as St};
use nm_tests::{Need, Node, alive, kill9, pid_of, proc_state, require, wait_for};

async fn command(node: &Node, server: &str, cmd: &str) -> CommandReply {
    node.client()
        .post(
            &format!("/v1/servers/{server}/{cmd}?wait=20"),
            &serde_json::json!({}),
        )
        .await
        .unwrap_or_else(|e| panic!("{cmd} {server}: {e}"))
}

#[tokio::test]
async fn kill_9_of_a_server_starts_a_new_process_and_counts_the_restart() {
    let node =
        Node::start("[[server]]\nname = \"s\"\ncommand = [\"sleep\", \"1000\"]\nrestart_max = 5\n")
            .await;
    let first = node
        .wait_server("s", "RUNNING", |s| s.state == St::Running)
        .await;
    let pid = pid_of(&first);
    kill9(pid);
    let second = node
        .wait_server("s", "a new RUNNING process", |s| {
            s.state == St::Running && s.pid != Some(pid)
        })
        .await;
    assert_eq!(second.restart_count, 1);
    assert_eq!(second.last_exit.as_deref(), Some("killed by signal 9"));
    assert!(alive(pid_of(&second)));
}

#[tokio::test]
async fn a_spent_restart_budget_leaves_the_server_failed_not_restartable() {
    let node = Node::start(
        "[[server]]\nname = \"crash\"\ncommand = [\"sh\", \"-c\", \"sleep 0.2; exit 3\"]\nrestart_max = 2\nrestart_interval = \"1h\"\n",
    )
    .await;
    let info = node
        .wait_server("crash", "FAILED_NOT_RESTARTABLE", |s| {
            s.state == St::FailedNotRestartable
        })
        .await;
    assert_eq!(info.restart_count, 2, "{info:#?}");
    assert_eq!(info.last_exit.as_deref(), Some("exited with code 3"));
    assert!(
        info.reason.contains("restart budget spent"),
        "{}",
        info.reason
    );
    assert_eq!(info.pid, None);
    // an operator start gives it a fresh budget
    let reply = command(&node, "crash", "start").await;
    assert!(reply.changed);
    assert_eq!(node.server("crash").await.restart_count, 0);
}

#[tokio::test]
async fn restart_delay_is_honoured_in_failed_restarting() {
    let node = Node::start(
        "[[server]]\nname = \"d\"\ncommand = [\"sleep\", \"1000\"]\nrestart_delay = \"2s\"\n",
    )
    .await;
    let pid = node.running_pid("d").await;
    kill9(pid);
    let waiting = node
        .wait_server("d", "FAILED_RESTARTING", |s| {
            s.state == St::FailedRestarting
        })
        .await;
    assert_eq!(waiting.pid, None);
    let back = node
        .wait_server("d", "RUNNING again", |s| {
            s.state == St::Running && s.pid != Some(pid)
        })
        .await;
    // both instants are the daemon's own stamps
    let failed_at = humantime::parse_rfc3339(&waiting.since).unwrap();
    let started_at = humantime::parse_rfc3339(&back.since).unwrap();
    let waited = started_at.duration_since(failed_at).unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(1990),
        "restarted after {waited:?}, before restart_delay"
    );
    assert_eq!(back.restart_count, 1);
}

#[tokio::test]
async fn a_failing_health_check_with_auto_kill_kills_and_restarts_the_server() {
    let node = Node::configure("");
    let flag = node.dir.path().join("healthy");
    std::fs::write(&flag, "").unwrap();
    let servers = format!(
        "[[server]]\nname = \"h\"\ncommand = [\"sleep\", \"1000\"]\nauto_kill_if_failed = true\n\
         [server.health]\nexec = [\"test\", \"-e\", \"{}\"]\ninterval = \"100ms\"\nfailure_threshold = 2\n",
        flag.display()
    );
    let mut node = node;
    node.write_config(&servers);
    node.start_daemon().await;
    let pid = node.running_pid("h").await;
    std::fs::remove_file(&flag).unwrap();
    node.wait_server("h", "FAILED", |s| {
        s.state == St::Failed || s.restart_count > 0
    })
    .await;
    wait_for("the unhealthy process to be killed", || async {
        (!alive(pid)).then_some(())
    })
    .await;
    std::fs::write(&flag, "").unwrap();
    let back = node
        .wait_server("h", "RUNNING after restart", |s| {
            s.state == St::Running && s.pid != Some(pid)
        })
        .await;
    assert_eq!(back.restart_count, 1);
}

#[tokio::test]
async fn a_failing_health_check_without_auto_kill_marks_failed_and_leaves_it_running() {
    let node = Node::configure("");
    let flag = node.dir.path().join("healthy");
    std::fs::write(&flag, "").unwrap();
    let servers = format!(
        "[[server]]\nname = \"h\"\ncommand = [\"sleep\", \"1000\"]\n\
         [server.health]\nexec = [\"test\", \"-e\", \"{}\"]\ninterval = \"100ms\"\nfailure_threshold = 2\n",
        flag.display()
    );
    let mut node = node;
    node.write_config(&servers);
    node.start_daemon().await;
    let pid = node.running_pid("h").await;
    std::fs::remove_file(&flag).unwrap();
    let failed = node
        .wait_server("h", "FAILED", |s| s.state == St::Failed)
        .await;
    assert_eq!(failed.pid, Some(pid), "left running, same process");
    assert!(alive(pid));
    assert!(
        failed.reason.contains("health check failed"),
        "{}",
        failed.reason
    );
    std::fs::write(&flag, "").unwrap();
    let back = node
        .wait_server("h", "RUNNING again", |s| s.state == St::Running)
        .await;
    assert_eq!(back.pid, Some(pid));
    assert_eq!(back.restart_count, 0);
}

#[tokio::test]
async fn stop_removes_a_forked_grandchild_too() {
    let node = Node::configure("");
    let gc = node.dir.path().join("grandchild.pid");
    let servers = format!(
        "[[server]]\nname = \"fam\"\ncommand = [\"sh\", \"-c\", \"trap '' TERM; sleep 1000 & echo $! > {}; wait\"]\nstop_timeout = \"1s\"\n",
        gc.display()
    );
    let mut node = node;
    node.write_config(&servers);
    node.start_daemon().await;
    let leader = node.running_pid("fam").await;
    let grandchild: i32 = wait_for("the grandchild's pid file", || async {
        std::fs::read_to_string(&gc)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .await;
    assert!(alive(grandchild));
    let reply = command(&node, "fam", "stop").await;
    assert!(reply.settled, "{reply:#?}");
    assert_eq!(reply.server.state, St::Shutdown);
    assert!(!alive(leader), "leader {leader} survived stop");
    wait_for("the grandchild to be gone", || async {
        (!alive(grandchild)).then_some(())
    })
    .await;
    // an operator stop is never undone by a restart
    assert_eq!(node.server("fam").await.state, St::Shutdown);
    assert!(
        !node.data_dir.join("servers/fam.lock").exists(),
        "a clean stop removes the lock file"
    );
}

#[tokio::test]
async fn suspend_stops_the_processes_and_resume_continues_them() {
    let node = Node::start(
        "[[server]]\nname = \"z\"\ncommand = [\"sh\", \"-c\", \"sleep 1000 & wait\"]\n",
    )
    .await;
    let pid = node.running_pid("z").await;
    let reply = command(&node, "z", "suspend").await;
    assert_eq!(reply.server.state, St::Suspended);
    wait_for("state T", || async {
        (proc_state(pid) == Some('T')).then_some(())
    })
    .await;
    let kids = children_of(pid);
    assert!(!kids.is_empty());
    for k in &kids {
        wait_for("the child in state T", || async {
            (proc_state(*k) == Some('T')).then_some(())
        })
        .await;
    }
    let reply = command(&node, "z", "resume").await;
    assert_eq!(reply.server.state, St::Running);
    wait_for("state S", || async {
        (proc_state(pid) == Some('S')).then_some(())
    })
    .await;
    for k in &kids {
        wait_for("the child running again", || async {
            (proc_state(*k) == Some('S')).then_some(())
        })
        .await;
    }
    assert_eq!(node.server("z").await.pid, Some(pid));
}

#[tokio::test]
async fn refused_commands_say_why_and_change_nothing() {
    let node = Node::start(
        "[[server]]\nname = \"q\"\ncommand = [\"sleep\", \"1000\"]\nauto_start = false\n",
    )
    .await;
    let err = node
        .client()
        .post::<_, CommandReply>("/v1/servers/q/resume", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot resume server \"q\": it is SHUTDOWN"),
        "{err}"
    );
    let err = node
        .client()
        .post::<_, CommandReply>("/v1/servers/nope/start", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no server named \"nope\""),
        "{err}"
    );
    assert_eq!(node.server("q").await.state, St::Shutdown);
}

fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[tokio::test]
async fn a_server_runs_as_its_configured_user() {
    // switching to another user needs CAP_SETUID
    if !require(&[Need::Root]) {
        return;
    }
    let node = Node::start(
        "[[server]]\nname = \"u\"\ncommand = [\"sleep\", \"1000\"]\nuser = \"nobody\"\n",
    )
    .await;
    let pid = node.running_pid("u").await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_owned();
    let nobody = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .and_then(|l| l.split(':').nth(2).map(str::to_owned))
        .unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == nobody),
        "{uid_line}"
    );
}

#[tokio::test]
async fn output_logs_rotate_by_size() {
    let node = Node::start(
        "[[server]]\nname = \"chatty\"\ncommand = [\"sh\", \"-c\", \"while :; do seq 1 2000; sleep 0.2; done\"]\n\
         [server.log]\nmax_size = \"8KiB\"\nkeep = 2\n",
    )
    .await;
    node.wait_server("chatty", "RUNNING", |s| s.state == St::Running)
        .await;
    let first = node.data_dir.join("logs/chatty.out.1");
    let second = node.data_dir.join("logs/chatty.out.2");
    wait_for("two rotations", || async {
        (first.exists() && second.exists()).then_some(())
    })
    .await;
    assert!(
        !node.data_dir.join("logs/chatty.out.3").exists(),
        "keep = 2"
    );
    assert!(std::fs::metadata(&first).unwrap().len() > 8 * 1024);
}

#[tokio::test]
async fn a_descendant_that_left_the_process_group_is_swept_when_the_server_exits() {
    let node = Node::configure("");
    let esc = node.dir.path().join("escaped.pid");
    let servers = format!(
        "[[server]]\nname = \"esc\"\ncommand = [\"sh\", \"-c\", \"setsid sh -c 'echo $$ > {}; exec sleep 1000' & sleep 1000\"]\n",
        esc.display()
    );
    let mut node = node;
    node.write_config(&servers);
    node.start_daemon().await;
    node.wait_server("esc", "RUNNING", |s| s.state == St::Running)
        .await;
    let escaped: i32 = wait_for("the escaped pid", || async {
        std::fs::read_to_string(&esc)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .await;
    assert!(alive(escaped));
    let reply = command(&node, "esc", "stop").await;
    assert_eq!(reply.server.state, St::Shutdown);
    wait_for("the escaped descendant to be gone", || async {
        (!alive(escaped)).then_some(())
    })
    .await;
}
