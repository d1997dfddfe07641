//! The exit code decides (the WebLogic Node Manager "determines from the … process exit code"
//! whether a server needs a restart): real daemons, real exits.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use nm_api::ServerState as St;
use nm_tests::Node;

/// `clean` exits 0 and `crash` exits 3 a moment after they start; `three` exits 3, which its
/// `success_exit_codes` count as a success; `early` exits 0 before its health check ever passes.
const SERVERS: &str = r#"
[[server]]
name = "clean"
command = ["sh", "-c", "sleep 0.3; exit 0"]

[[server]]
name = "crash"
command = ["sh", "-c", "sleep 0.3; exit 3"]
restart_max = 1

[[server]]
name = "three"
command = ["sh", "-c", "sleep 0.3; exit 3"]
success_exit_codes = [0, 3]

[[server]]
name = "early"
command = ["sh", "-c", "sleep 0.3; exit 0"]
[server.health]
exec = ["false"]
interval = "100ms"
"#;

#[tokio::test]
async fn a_server_that_exits_0_stays_shutdown_across_a_daemon_restart_and_one_that_exits_3_is_restarted()
 {
    let mut node = Node::start(SERVERS).await;
    // crash: restarted once, then its budget of 1 is spent
    let crash = node
        .wait_server("crash", "given up after its restart", |s| {
            s.state == St::FailedNotRestartable
        })
        .await;
    assert_eq!(crash.restart_count, 1, "{crash:#?}");
    assert_eq!(crash.last_exit.as_deref(), Some("exited with code 3"));
    // clean stopped itself at the same pace and was never restarted
    let clean = node
        .wait_server("clean", "SHUTDOWN", |s| s.state == St::Shutdown)
        .await;
    assert_eq!(clean.restart_count, 0, "{clean:#?}");
    assert!(
        clean.reason.starts_with("exited with status 0 at "),
        "{}",
        clean.reason
    );
    assert_eq!(clean.last_exit.as_deref(), Some("exited with code 0"));
    let three = node
        .wait_server("three", "SHUTDOWN", |s| s.state == St::Shutdown)
        .await;
    assert!(
        three.reason.starts_with("exited with status 3"),
        "{}",
        three.reason
    );
    assert_eq!(three.restart_count, 0);
    // an exit during STARTING is a failed start, whatever its code
    let early = node
        .wait_server("early", "a failed start", |s| {
            s.state == St::FailedNotRestartable
        })
        .await;
    assert_eq!(
        early.reason, "start failed: exited with code 0 during startup",
        "{early:#?}"
    );
    // recorded: no lock file, a marker saying why
    assert!(!node.data_dir.join("servers/clean.lock").exists());
    let marker = node.read_data("servers/clean.stopped");
    assert!(marker.contains(r#""cause":"exited","code":0"#), "{marker}");

    // crash recovery after the daemon's death does not start it again
    node.kill9_daemon();
    node.start_daemon().await;
    let after = node.server("clean").await;
    assert_eq!(after.state, St::Shutdown, "{after:#?}");
    assert_eq!(
        after.reason, clean.reason,
        "the same reason, from its marker"
    );
    assert_eq!(node.server("three").await.state, St::Shutdown);
    // an operator start runs it again
    let (code, out, err) = node.cli(&["server", "start", "clean", "--no-wait"]);
    assert_eq!(code, 0, "{out}{err}");
    node.wait_server("clean", "stopped by itself again", |s| {
        s.state == St::Shutdown && s.reason != clean.reason
    })
    .await;
}

#[tokio::test]
async fn a_server_that_exits_0_under_auto_restart_always_is_restarted_within_its_budget() {
    let node = Node::start(
        r#"
[[server]]
name = "loop"
command = ["sh", "-c", "sleep 0.3; exit 0"]
auto_restart = "always"
restart_max = 2
"#,
    )
    .await;
    let info = node
        .wait_server("loop", "its budget spent", |s| {
            s.state == St::FailedNotRestartable
        })
        .await;
    assert_eq!(info.restart_count, 2, "{info:#?}");
    assert!(
        info.reason.contains("restart budget spent"),
        "{}",
        info.reason
    );
    assert_eq!(info.last_exit.as_deref(), Some("exited with code 0"));
}
