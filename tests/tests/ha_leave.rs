//! A planned stop of an HA node is not a failure (the StorNext HA Manager stops after the
//! service; Sailfin GMS's `PEER_STOP_EVENT`): SIGTERM or `nm-cli shutdown` of a daemon whose HA is
//! started stops its HA-managed servers, tells the peer, and the peer takes them over without
//! running the fence command. The leaver comes back as the secondary. Two real daemons on loopback
//! (the `nm_tests::ha::Pair` harness: its fence script writes `fence …` to the events log).
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use nm_api::{HaMode, HaStatus};
use nm_tests::ha::{Pair, ha, sigterm_daemon, wait_ha};
use nm_tests::{alive, kill_tagged};

fn ok(out: (i32, String, String)) -> String {
    assert_eq!(out.0, 0, "nm-cli failed: {}{}", out.1, out.2);
    out.1
}

fn has_event(r: &nm_api::HaReply, text: &str) -> bool {
    r.report.events.iter().any(|e| e.contains(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_primary_moves_the_ha_servers_to_the_peer_without_a_fence() {
    let mut p = Pair::start().await;
    p.arm_node1().await;
    let web = p.n1.running_pid("web").await;

    let status = sigterm_daemon(&mut p.n1).await;
    assert!(status.success(), "{status:?}\n{}", p.logs());
    // the peer is primary at once, unfenced: without the leave it would fence after peer_timeout
    let r = wait_ha(&p.n2, "primary after the leave", |r| {
        r.report.local.status == Some(HaStatus::Primary) && !r.report.starting
    })
    .await;
    assert_eq!(r.report.fence, "idle", "{}", p.logs());
    assert!(r.report.peer_left);
    assert_eq!(
        r.report.peer.mode,
        HaMode::Peerdown,
        "certified down, for now"
    );
    assert!(has_event(&r, "peer node1 left (planned stop"), "{r:?}");
    p.n2.running_pid("hadb").await;
    assert_eq!(p.hadb(), ["node2"], "{}", p.logs());
    assert!(
        p.fences().is_empty(),
        "the fence command never ran: {}",
        p.logs()
    );
    for n in [&p.n1, &p.n2] {
        assert_eq!(n.read_data("smithlog"), "", "no HA reset");
    }
    // the ordinary server is left running for the next daemon, as after any SIGTERM
    assert!(alive(web), "web keeps running");
    assert!(p.n1.read_data("ha.json").contains("\"left\": true"));

    // node1 comes back: it rejoins as the secondary, the peer keeps the servers
    p.n1.start_daemon().await;
    let r = wait_ha(&p.n1, "rejoined", |r| r.report.communicating).await;
    assert_eq!(r.report.local.status, Some(HaStatus::Running), "{r:?}");
    assert_eq!(r.report.peer.status, Some(HaStatus::Primary));
    let r = wait_ha(&p.n1, "the rejoin told", |r| {
        has_event(r, "this node rejoined after its planned stop")
    })
    .await;
    assert!(!r.report.peer_left);
    let r = wait_ha(&p.n2, "the rejoin told", |r| {
        has_event(r, "peer node1 rejoined") && r.report.communicating
    })
    .await;
    assert_eq!(r.report.local.status, Some(HaStatus::Primary));
    assert!(!p.n1.read_data("ha.json").contains("left"));
    // `ha status` on both shows the leave and the rejoin
    let out = ok(p.n2.cli(&["ha", "status"]));
    assert!(out.contains("peer node1 left (planned stop"), "{out}");
    assert!(
        out.contains("peer node1 rejoined after its planned stop"),
        "{out}"
    );
    let out = ok(p.n1.cli(&["ha", "status"]));
    assert!(
        out.contains("this node rejoined after its planned stop"),
        "{out}"
    );
    assert_eq!(p.hadb(), ["node2"], "{}", p.logs());
    assert!(p.fences().is_empty(), "{}", p.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_secondary_fences_nothing_and_the_primary_keeps_the_servers() {
    let mut p = Pair::start().await;
    p.arm_node1().await;
    let hadb = p.n1.running_pid("hadb").await;
    assert!(sigterm_daemon(&mut p.n2).await.success());
    let r = wait_ha(&p.n1, "the leave", |r| r.report.peer_left).await;
    assert!(has_event(&r, "peer node2 left (planned stop"), "{r:?}");
    assert_eq!(r.report.local.status, Some(HaStatus::Primary));
    // back as the secondary; the primary kept its server, the same process
    p.n2.start_daemon().await;
    let r = wait_ha(&p.n2, "rejoined", |r| r.report.communicating).await;
    assert_eq!(r.report.local.status, Some(HaStatus::Running));
    assert_eq!(p.n1.running_pid("hadb").await, hadb, "not restarted");
    assert_eq!(p.hadb(), ["node1"]);
    assert!(p.fences().is_empty(), "{}", p.logs());
    assert_eq!(p.n1.read_data("smithlog"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nm_cli_shutdown_of_the_primary_hands_over_the_ha_servers_even_when_it_keeps_the_others() {
    let mut p = Pair::start().await;
    p.arm_node1().await;
    let web = p.n1.running_pid("web").await;
    // without --stop-servers: web keeps running, hadb goes to the peer
    let out = ok(p.n1.cli(&["shutdown"]));
    assert!(p.n1.wait_daemon_exit().await.success(), "{out}");
    wait_ha(&p.n2, "primary after the leave", |r| {
        r.report.local.status == Some(HaStatus::Primary) && !r.report.starting
    })
    .await;
    p.n2.running_pid("hadb").await;
    assert!(alive(web), "web keeps running");
    assert_eq!(p.hadb(), ["node2"], "{}", p.logs());
    assert!(p.fences().is_empty(), "{}", p.logs());

    // back, moved back with ha start, then `shutdown --stop-servers`: the same hand-over
    p.n1.start_daemon().await; // adopts the web it left running
    wait_ha(&p.n1, "rejoined", |r| r.report.communicating).await;
    p.arm_node1().await;
    assert_eq!(p.hadb(), ["node1"], "{}", p.logs());
    ok(p.n1.cli(&["shutdown", "--stop-servers"]));
    assert!(p.n1.wait_daemon_exit().await.success());
    wait_ha(&p.n2, "primary again", |r| {
        r.report.local.status == Some(HaStatus::Primary) && !r.report.starting
    })
    .await;
    p.n2.running_pid("hadb").await;
    assert_eq!(p.hadb(), ["node2"], "{}", p.logs());
    assert!(p.fences().is_empty(), "{}", p.logs());
    for n in [&p.n1, &p.n2] {
        assert_eq!(n.read_data("smithlog"), "");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_whose_peer_is_gone_still_stops_its_ha_servers_when_it_leaves() {
    let mut p = Pair::start().await;
    p.arm_node1().await;
    kill_tagged(&p.n2.tag);
    p.n2.forget_daemon();
    wait_ha(&p.n1, "the peer silent", |r| !r.report.communicating).await;
    // nobody to tell: the servers are stopped anyway (the peer, when back, fences this node)
    assert!(sigterm_daemon(&mut p.n1).await.success());
    assert!(p.hadb().is_empty(), "{}", p.logs());
    assert!(
        p.n1.read_data("nm.log")
            .contains("the peer did not take the leave"),
        "{}",
        p.logs()
    );
    assert!(ha(&p.n1).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_node_stop_ends_the_standby_node_manager_first_then_hands_over() {
    let mut p = Pair::start().await;
    // node1 gets a standby node manager (JEUS) beside its HA manager
    p.n1.kill9_daemon();
    let text = std::fs::read_to_string(&p.n1.config).unwrap();
    let text = text.replacen(
        "cluster_key_file",
        &format!("standby_port = {}\ncluster_key_file", nm_tests::free_port()),
        1,
    );
    std::fs::write(&p.n1.config, text).unwrap();
    p.n1.start_daemon().await;
    let st =
        p.n1.wait_status("the standby attached", |s| {
            s.standby.as_ref().is_some_and(|sb| sb.state == "attached")
        })
        .await;
    let standby = st.standby_pid.unwrap();
    p.wait_linked().await;
    p.arm_node1().await;

    assert!(sigterm_daemon(&mut p.n1).await.success(), "{}", p.logs());
    // the standby left with the active: no takeover brought the HA-managed server back
    assert!(!alive(standby), "the standby node manager is gone");
    wait_ha(&p.n2, "primary after the leave", |r| {
        r.report.local.status == Some(HaStatus::Primary) && !r.report.starting
    })
    .await;
    p.n2.running_pid("hadb").await;
    assert_eq!(p.hadb(), ["node2"], "{}", p.logs());
    assert!(p.fences().is_empty(), "{}", p.logs());
    let log = p.n1.read_data("nm.log");
    let standby_stop = log
        .find("the standby node manager has stopped")
        .unwrap_or_else(|| panic!("no standby stop in nm.log:\n{log}"));
    let hand_over = log
        .find("planned stop: HA-managed servers stopped")
        .unwrap_or_else(|| panic!("no hand-over in nm.log:\n{log}"));
    assert!(standby_stop < hand_over, "the standby first:\n{log}");
}
