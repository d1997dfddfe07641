//! An operator's stop lasts: across `kill -9` of the daemon and `shutdown` + start, within the
//! same boot, until an operator starts the server; after a reboot (simulated with the test-only
//! `NM_TEST_BOOT_ID`) `auto_start` decides. `shutdown --stop-servers` is a stop of the node, not
//! of each server.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use nm_api::ServerState as St;
use nm_tests::{Node, alive};

/// Both start with the daemon (`auto_start` is on by default).
const TWO: &str = "[[server]]\nname = \"web\"\ncommand = [\"sleep\", \"1000\"]\n\n\
                   [[server]]\nname = \"other\"\ncommand = [\"sleep\", \"1001\"]\n";

/// `nm-cli server stop web`, then its reason (`stopped by operator at …`).
async fn stop_web(node: &Node) -> String {
    node.running_pid("web").await;
    let (code, out, err) = node.cli(&["server", "stop", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    let info = node
        .wait_server("web", "SHUTDOWN", |s| s.state == St::Shutdown)
        .await;
    assert!(
        info.reason.starts_with("stopped by operator at 20"),
        "{info:#?}"
    );
    info.reason
}

#[tokio::test]
async fn an_operator_stop_stands_across_kill_9_of_the_daemon_until_an_operator_starts_it() {
    let mut node = Node::start(TWO).await;
    let other = node.running_pid("other").await;
    let why = stop_web(&node).await;
    node.kill9_daemon();
    node.start_daemon().await;
    let web = node.server("web").await;
    assert_eq!(web.state, St::Shutdown, "{web:#?}");
    assert_eq!(
        web.reason, why,
        "the reason and its time survive the restart"
    );
    assert_eq!(
        node.wait_server("other", "adopted", |s| s.state == St::Running)
            .await
            .pid,
        Some(other)
    );
    // `server list` says why it is down
    let (_, list, _) = node.cli(&["server", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("web ") && l.contains("stopped by operator at 20")),
        "{list}"
    );
    // an operator's start ends the stop: the next daemon restart adopts it
    let (code, out, err) = node.cli(&["server", "start", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    let web = node.running_pid("web").await;
    assert!(!node.data_dir.join("servers/web.stopped").exists());
    node.kill9_daemon();
    node.start_daemon().await;
    assert_eq!(node.running_pid("web").await, web);
}

#[tokio::test]
async fn an_operator_stop_stands_across_shutdown_and_start() {
    let mut node = Node::start(TWO).await;
    let why = stop_web(&node).await;
    let (code, out, err) = node.cli(&["shutdown"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(node.wait_daemon_exit().await.success());
    node.start_daemon().await;
    node.running_pid("other").await;
    let web = node.server("web").await;
    assert_eq!((web.state, web.reason), (St::Shutdown, why));
}

#[tokio::test]
async fn after_a_reboot_auto_start_decides_and_live_servers_are_still_adopted() {
    let mut node = Node::configure(TWO);
    node.start_daemon_under(&["env", "NM_TEST_BOOT_ID=one"])
        .await;
    let other = node.running_pid("other").await;
    stop_web(&node).await;
    // the same (simulated) boot: the stop stands
    node.kill9_daemon();
    node.start_daemon_under(&["env", "NM_TEST_BOOT_ID=one"])
        .await;
    assert_eq!(node.server("web").await.state, St::Shutdown);
    // another boot: auto_start decides
    node.kill9_daemon();
    node.start_daemon_under(&["env", "NM_TEST_BOOT_ID=two"])
        .await;
    node.running_pid("web").await;
    assert!(!node.data_dir.join("servers/web.stopped").exists());
    // the override never made a live server look gone: adopted, not started a second time
    let adopted = node
        .wait_server("other", "adopted", |s| s.state == St::Running)
        .await;
    assert_eq!(adopted.pid, Some(other), "{adopted:#?}");
    assert!(adopted.reason.contains("adopted"), "{}", adopted.reason);
    assert!(alive(other));
}

#[tokio::test]
async fn shutdown_with_stop_servers_is_a_stop_of_the_node_and_the_next_start_applies_auto_start() {
    let mut node = Node::start(
        "[[server]]\nname = \"web\"\ncommand = [\"sleep\", \"1000\"]\n\n\
         [[server]]\nname = \"manual\"\ncommand = [\"sleep\", \"1001\"]\nauto_start = false\n\n\
         [[server]]\nname = \"held\"\ncommand = [\"sleep\", \"1002\"]\n",
    )
    .await;
    let (code, out, err) = node.cli(&["server", "start", "manual"]);
    assert_eq!(code, 0, "{out}{err}");
    node.running_pid("manual").await;
    let (code, out, err) = node.cli(&["server", "stop", "held"]);
    assert_eq!(code, 0, "{out}{err}");
    let held = node
        .wait_server("held", "SHUTDOWN", |s| s.state == St::Shutdown)
        .await;
    let web = node.running_pid("web").await;

    let (code, out, err) = node.cli(&["shutdown", "--stop-servers"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(node.wait_daemon_exit().await.success());
    assert!(!alive(web));
    for s in ["web", "manual"] {
        assert!(
            !node.data_dir.join(format!("servers/{s}.stopped")).exists(),
            "{s}: the node stop recorded no operator stop"
        );
    }

    node.start_daemon().await;
    assert_ne!(
        node.running_pid("web").await,
        web,
        "auto_start: started again"
    );
    let manual = node.server("manual").await;
    assert_eq!(manual.state, St::Shutdown, "{manual:#?}");
    assert_eq!(manual.reason, "not started (auto_start = false)");
    // an operator's stop from before the node stop still stands
    let after = node.server("held").await;
    assert_eq!((after.state, after.reason), (St::Shutdown, held.reason));
}
