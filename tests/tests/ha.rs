//! The two-node HA pair (the StorNext HA Manager): two real daemons on loopback
//! (127.0.0.1 and 127.0.0.2), a fence command that records what it fenced, an HA-managed server
//! that records where it started.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::os::unix::fs::PermissionsExt;

use nm_api::{HaMode, HaStatus, ServerState as St};
use nm_tests::ha::{Pair, wait_ha};
use nm_tests::{Need, kill_tagged, require, wait_for};

fn ok(out: (i32, String, String)) -> String {
    assert_eq!(out.0, 0, "nm-cli failed: {}{}", out.1, out.2);
    out.1
}

fn row<'a>(out: &'a str, node: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.starts_with(node))
        .unwrap_or_else(|| panic!("no row for {node} in:\n{out}"))
        .split_whitespace()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_start_makes_this_node_primary_and_runs_the_ha_servers_only_there() {
    let p = Pair::start().await;
    // a new pair starts stopped: nothing HA-managed runs anywhere, the other servers do
    let out = ok(p.n2.cli(&["ha", "status"]));
    assert_eq!(
        row(&out, "node2"),
        ["node2", "local", "default", "stopped", "no"]
    );
    p.n1.running_pid("web").await;
    p.n2.running_pid("web").await;
    assert!(p.hadb().is_empty());

    let out = ok(p.n2.cli(&["ha", "start"]));
    assert!(out.contains("node2: primary"), "{out}");
    assert_eq!(
        row(&out, "node2"),
        ["node2", "local", "default", "primary", "no"]
    );
    assert_eq!(
        row(&out, "node1"),
        ["node1", "peer", "default", "running", "no"]
    );
    p.n2.running_pid("hadb").await;
    assert_eq!(p.hadb(), ["node2"], "{}", p.logs());
    assert_eq!(p.n1.server("hadb").await.state, St::Shutdown);
    // the secondary refuses to start an HA-managed server by hand
    let (code, _, err) = p.n1.cli(&["server", "start", "hadb"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("HA-managed"), "{err}");
    assert_eq!(p.hadb(), ["node2"]);
    // metrics say who is primary
    let metrics = nm_tests::raw_http(
        &p.n2.listen,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            p.n2.token()
        ),
    )
    .await;
    assert!(metrics.contains("nm_ha_primary 1"), "{metrics}");
    assert!(metrics.contains("nm_ha_peer_communicating 1"), "{metrics}");
    // nm-cli status has a line for it
    let out = ok(p.n2.cli(&["status"]));
    assert!(
        out.contains("primary (default-default, peer node1 running)"),
        "{out}"
    );
    // --json carries both nodes
    let json: serde_json::Value =
        serde_json::from_str(&ok(p.n1.cli(&["--json", "ha", "status"]))).unwrap();
    assert_eq!(json["report"]["local"]["status"], "running");
    assert_eq!(json["report"]["peer"]["status"], "primary");
    assert_eq!(json["report"]["state"], "default-default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_stop_stops_both_nodes_in_the_ha_managers_order_without_a_reset() {
    let p = Pair::start().await;
    ok(p.n1.cli(&["ha", "start"]));
    p.n1.running_pid("hadb").await;
    // from the secondary: it is locked first, the primary goes to config and stops, both default
    let out = ok(p.n2.cli(&["ha", "stop"]));
    let steps: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "steps:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    assert_eq!(
        steps,
        [
            "node2: mode locked",
            "node1: mode config",
            "node1: HA stopped (HA-managed servers stopped)",
            "node1: mode default",
            "node2: HA stopped (HA-managed servers stopped)",
            "node2: mode default",
        ],
        "{out}"
    );
    assert_eq!(
        row(&out, "node2"),
        ["node2", "local", "default", "stopped", "no"]
    );
    assert_eq!(
        row(&out, "node1"),
        ["node1", "peer", "default", "stopped", "no"]
    );
    assert!(p.hadb().is_empty(), "{}", p.logs());
    assert_eq!(p.n1.server("hadb").await.state, St::Shutdown);
    // no HA reset: no smith log, both daemons serve, the other servers run on
    for n in [&p.n1, &p.n2] {
        assert_eq!(n.read_data("smithlog"), "");
        assert!(n.read_data("ha.json").contains("\"started\": false"));
        n.running_pid("web").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_primary_node_makes_the_secondary_fence_it_then_take_over() {
    let mut p = Pair::start().await;
    ok(p.n1.cli(&["ha", "start"]));
    p.n1.running_pid("hadb").await;
    wait_ha(&p.n2, "secondary", |r| {
        r.report.local.status == Some(HaStatus::Running)
    })
    .await;
    // power failure of node1: its daemon and every process it started die at once
    kill_tagged(&p.n1.tag);
    p.n1.forget_daemon();
    let r = wait_ha(&p.n2, "primary after the takeover", |r| {
        r.report.local.status == Some(HaStatus::Primary)
    })
    .await;
    assert_eq!(r.report.fence, "fenced");
    assert!(!r.report.communicating);
    p.n2.running_pid("hadb").await;
    let events = p.events();
    let fence = events.iter().position(|e| e == "fence node1 by node2");
    let start = events.iter().rposition(|e| e == "start node2");
    assert!(
        fence.is_some() && start.is_some() && fence < start,
        "fenced before the takeover: {events:?}"
    );
    assert_eq!(events.iter().filter(|e| e.starts_with("fence")).count(), 1);
    assert_eq!(p.hadb(), ["node2"], "exactly once: {}", p.logs());

    // node1 comes back (the "reboot"): it finds node2 primary and stays secondary
    p.n1.start_daemon().await;
    let r = wait_ha(&p.n1, "back as secondary", |r| r.report.communicating).await;
    assert_eq!(r.report.local.status, Some(HaStatus::Running));
    assert_eq!(r.report.peer.status, Some(HaStatus::Primary));
    assert_eq!(p.hadb(), ["node2"], "{}", p.logs());
    // its lock file said hadb was meant to run: crash recovery must not restart it there
    assert_eq!(p.n1.server("hadb").await.state, St::Shutdown);
    assert!(
        p.n1.read_data("nm.log").contains("HA-managed"),
        "{}",
        p.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_adopts_its_running_ha_server_and_is_still_primary() {
    // a restart well within the peer timeout: the peer does not fence
    let mut p = Pair::start_with("5s").await;
    ok(p.n1.cli(&["ha", "start"]));
    let pid = p.n1.running_pid("hadb").await;
    p.n1.kill9_daemon();
    p.n1.start_daemon().await;
    let r = wait_ha(&p.n1, "linked again", |r| r.report.communicating).await;
    assert_eq!(r.report.local.status, Some(HaStatus::Primary));
    assert_eq!(
        p.n1.running_pid("hadb").await,
        pid,
        "adopted, not restarted"
    );
    assert_eq!(p.hadb(), ["node1"]);
    let r = wait_ha(&p.n2, "secondary", |r| r.report.communicating).await;
    assert_eq!(r.report.local.status, Some(HaStatus::Running));
    assert!(
        !p.events().iter().any(|e| e.starts_with("fence")),
        "{:?}",
        p.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peerdown_is_refused_while_the_peer_communicates_and_erased_when_it_returns() {
    let mut p = Pair::start().await;
    ok(p.n1.cli(&["ha", "start"]));
    p.n1.running_pid("hadb").await;
    let (code, _, err) = p.n1.cli(&["ha", "peerdown"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("refused: the peer node2 communicates"),
        "{err}"
    );

    // node2 powered off; the operator certifies it and runs node1 alone in single mode
    kill_tagged(&p.n2.tag);
    p.n2.forget_daemon();
    wait_ha(&p.n1, "the peer silent", |r| !r.report.communicating).await;
    let (code, _, err) = p.n1.cli(&["ha", "mode", "single"]);
    assert_eq!(code, 1);
    assert!(err.contains("prohibited state single-default"), "{err}");
    ok(p.n1.cli(&["ha", "peerdown"]));
    let out = ok(p.n1.cli(&["ha", "mode", "single"]));
    assert!(out.contains("single-peerdown (allowed)"), "{out}");
    assert_eq!(
        row(&out, "node2"),
        ["node2", "peer", "peerdown", "(certified)", "-", "-"]
    );
    let (code, _, err) = p.n1.cli(&["ha", "peerup"]);
    assert_eq!(code, 1);
    assert!(err.contains("peerup is refused in single mode"), "{err}");
    assert_eq!(p.hadb(), ["node1"]);

    // node2 starts communicating although certified down: node1 erases the certification,
    // returns to default mode and stops the HA-managed servers
    p.n2.start_daemon().await;
    let r = wait_ha(&p.n1, "the certification erased", |r| {
        r.report.communicating && r.report.local.mode == HaMode::Default
    })
    .await;
    assert_ne!(r.report.peer.mode, HaMode::Peerdown);
    p.n1.wait_server("hadb", "stopped", |s| s.state == St::Shutdown)
        .await;
    let rec = p.n1.read_data("ha.json");
    assert!(
        rec.contains("\"peerdown\": false") && rec.contains("\"mode\": \"default\""),
        "{rec}"
    );
    assert!(p.n1.read_data("nm.log").contains("certification erased"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_survive_a_daemon_restart() {
    let mut p = Pair::start().await;
    ok(p.n1.cli(&["ha", "mode", "locked"]));
    let out = ok(p.n2.cli(&["ha", "config"]));
    assert!(out.contains("config-locked (allowed)"), "{out}");
    // both daemons die and come back together
    p.n1.kill9_daemon();
    p.n2.kill9_daemon();
    p.n1.spawn_daemon();
    p.n2.spawn_daemon();
    p.wait_linked().await;
    let out = ok(p.n2.cli(&["ha", "status"]));
    assert_eq!(
        row(&out, "node2"),
        ["node2", "local", "config", "stopped", "no"]
    );
    assert_eq!(
        row(&out, "node1"),
        ["node1", "peer", "locked", "stopped", "no"]
    );
    assert!(out.contains("config-locked (allowed)"), "{out}");
    assert!(p.n1.read_data("ha.json").contains("\"mode\": \"locked\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_smith_writes_and_fsyncs_the_smithlog_line_before_the_reset() {
    if !require(&[Need::Strace]) {
        return;
    }
    let mut p = Pair::start().await;
    // node1 again, under strace: which syscalls come in which order
    p.n1.kill9_daemon();
    let trace = p.shared.path().join("trace");
    let trace_arg = trace.display().to_string();
    p.n1.spawn_daemon_under(&[
        "strace",
        "-f",
        "-qq",
        "-o",
        &trace_arg,
        "-e",
        "trace=openat,fsync,kill,tgkill,pidfd_send_signal",
    ]);
    p.wait_linked().await;
    ok(p.n1.cli(&["ha", "start"]));
    p.n1.running_pid("hadb").await;
    // the answer may or may not make it out before the daemon exits
    let _ = p.n1.cli(&["ha", "force", "smith"]);
    let status = p.n1.wait_daemon_exit().await;
    assert_eq!(status.code(), Some(86), "{}", p.logs());
    let smith = p.n1.read_data("smithlog");
    assert!(smith.contains("node1 HA reset: force smith"), "{smith}");
    wait_for("node1's hadb to be killed", || async {
        (!p.hadb().contains(&"node1")).then_some(())
    })
    .await;

    let trace = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let open = lines
        .iter()
        .position(|l| l.contains("openat(") && l.contains("smithlog"))
        .unwrap_or_else(|| panic!("no open of the smith log:\n{trace}"));
    // with several threads, strace splits a call into "<unfinished ...>" and "<... resumed>";
    // a line is "PID<spaces>CALL" (the PID padded to a width)
    let split = |l: &str| {
        let l = l.trim_start();
        let (pid, rest) = l.split_once(' ').unwrap_or((l, ""));
        (pid.to_owned(), rest.trim_start().to_owned())
    };
    let (pid, _) = split(lines[open]);
    let result = if lines[open].contains("<unfinished") {
        lines[open..]
            .iter()
            .map(|l| split(l))
            .find(|(p, rest)| *p == pid && rest.starts_with("<... openat resumed>"))
            .map(|(_, rest)| rest)
            .unwrap()
    } else {
        split(lines[open]).1
    };
    let fd = result.rsplit("= ").next().unwrap().trim().to_owned();
    let fsync = lines[open..]
        .iter()
        .position(|l| {
            let (p, rest) = split(l);
            p == pid
                && (rest.starts_with(&format!("fsync({fd})"))
                    || rest.starts_with(&format!("fsync({fd} <unfinished")))
        })
        .map(|i| i + open)
        .unwrap_or_else(|| panic!("no fsync({fd}) of the smith log:\n{trace}"));
    let first_kill = lines
        .iter()
        .position(|l| l.contains("SIGKILL"))
        .unwrap_or_else(|| panic!("no SIGKILL:\n{trace}"));
    assert!(
        open < fsync && fsync < first_kill,
        "smithlog open {open}, fsync {fsync}, first SIGKILL {first_kill}:\n{trace}"
    );

    // its peer finds it silent, fences it and takes over
    wait_ha(&p.n2, "primary", |r| {
        r.report.local.status == Some(HaStatus::Primary)
    })
    .await;
    p.n2.running_pid("hadb").await;
    assert!(p.events().contains(&"fence node1 by node2".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_sets_ha_idle_failed_startup_and_clear_lifts_it() {
    // hadb cannot start on node1; it can on node2, which runs it
    let mut p = Pair::configure("[\"sleep\", \"1000\"]", "1s");
    let text = std::fs::read_to_string(&p.n1.config).unwrap();
    let text = text.replacen("[\"sleep\", \"1000\"]", "[\"/nonexistent/hadb\"]", 1);
    std::fs::write(&p.n1.config, text).unwrap();
    p.n1.start_daemon().await;
    p.n2.start_daemon().await;
    p.wait_linked().await;
    ok(p.n2.cli(&["ha", "start"]));
    p.n2.running_pid("hadb").await;
    // ha start on node1 stops node2, fails to start here, and hands the servers back to node2
    let (code, out, err) = p.n1.cli(&["ha", "start"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("ha_idle_failed_startup is set"), "{err}");
    assert!(err.contains("node2: HA started"), "{err}");
    wait_ha(&p.n2, "primary again", |r| {
        r.report.local.status == Some(HaStatus::Primary)
    })
    .await;
    p.n2.running_pid("hadb").await;
    assert_eq!(p.hadb(), ["node2"]);
    let out = ok(p.n1.cli(&["ha", "status"]));
    assert_eq!(
        row(&out, "node1"),
        ["node1", "local", "default", "running", "yes"]
    );
    assert!(
        p.n1.read_data("ha.json")
            .contains("\"ha_idle_failed_startup\": true")
    );
    // starts are blocked until clear
    let (code, _, err) = p.n1.cli(&["ha", "start"]);
    assert_eq!(code, 1);
    assert!(err.contains("nm-cli ha clear"), "{err}");
    let out = ok(p.n1.cli(&["ha", "clear"]));
    assert!(
        out.contains("node1: ha_idle_failed_startup cleared"),
        "{out}"
    );
    assert_eq!(row(&out, "node1")[4], "no");
    assert!(
        p.n1.read_data("ha.json")
            .contains("\"ha_idle_failed_startup\": false")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_cluster_key_never_communicates_and_is_counted() {
    let mut p = Pair::configure("[\"sleep\", \"1000\"]", "1s");
    let other = p.shared.path().join("other.key");
    std::fs::write(&other, b"another key, also 32 bytes long!").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = p.shared.path().join("cluster.key").display().to_string();
    let text = std::fs::read_to_string(&p.n2.config).unwrap();
    std::fs::write(
        &p.n2.config,
        text.replace(&key, &other.display().to_string()),
    )
    .unwrap();
    p.n1.start_daemon().await;
    p.n2.start_daemon().await;
    let r = wait_ha(&p.n1, "rejected handshakes", |r| {
        r.report.rejected_frames >= 2
    })
    .await;
    assert!(!r.report.communicating);
    let (code, _, err) = p.n2.cli(&["ha", "start"]);
    // node2 is started, fences node1 after peer_timeout (the test fence "succeeds") and becomes
    // primary: without the key, it cannot tell node1 is alive. That is the fence's job.
    assert_eq!(code, 0, "{err}");
    wait_for("the fence", || async {
        p.events()
            .contains(&"fence node1 by node2".to_owned())
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_start_returns_a_pair_in_config_and_locked_mode_to_default() {
    let p = Pair::start().await;
    ok(p.n1.cli(&["ha", "start"]));
    p.n1.running_pid("hadb").await;
    ok(p.n2.cli(&["ha", "mode", "locked"]));
    let out = ok(p.n1.cli(&["ha", "config"]));
    assert!(out.contains("config-locked (allowed)"), "{out}");
    // the node in config mode leaves it first, then its locked peer: never default-config
    let out = ok(p.n1.cli(&["ha", "start"]));
    assert!(
        out.contains("node1: mode default\n  node2: mode default"),
        "{out}"
    );
    assert_eq!(
        row(&out, "node1"),
        ["node1", "local", "default", "primary", "no"]
    );
    assert_eq!(
        row(&out, "node2"),
        ["node2", "peer", "default", "running", "no"]
    );
    p.n1.running_pid("hadb").await;
    assert_eq!(p.hadb(), ["node1"], "{}", p.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_from_an_ha_reset_leaves_the_servers_to_its_peer() {
    // the reset node restarts well within the peer timeout: no fence, but no way back either
    let mut p = Pair::start_with("5s").await;
    ok(p.n1.cli(&["ha", "start"]));
    p.n1.running_pid("hadb").await;
    // node2 has run for a while (a second here, days in production)
    p.n2.wait_status("node2 up for a second", |s| s.uptime_secs >= 1)
        .await;
    let _ = p.n1.cli(&["ha", "force", "smith"]);
    assert_eq!(p.n1.wait_daemon_exit().await.code(), Some(86));
    p.n1.start_daemon().await;
    let r = wait_ha(&p.n2, "primary", |r| {
        r.report.local.status == Some(HaStatus::Primary) && !r.report.starting
    })
    .await;
    assert!(r.report.communicating);
    let r = wait_ha(&p.n1, "secondary", |r| r.report.communicating).await;
    assert_eq!(r.report.local.status, Some(HaStatus::Running));
    p.n2.running_pid("hadb").await;
    assert_eq!(p.hadb(), ["node2"], "{}", p.logs());
    assert!(
        !p.events().iter().any(|e| e.starts_with("fence")),
        "{:?}",
        p.events()
    );
}

/// Drops TCP to and from some ports (both directions of the HA link) until dropped. Loopback
/// traffic passes the output hook, so this cuts two daemons on one machine as a partition would:
/// silently, no RST.
fn cut(ports: &[u16]) -> nm_tests::nft::Table {
    let set = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    nm_tests::nft::Table::output(
        "nm_ha_test",
        &format!("  tcp dport {{ {set} }} drop\n  tcp sport {{ {set} }} drop"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_ends_with_the_primary_fenced_and_the_servers_running_once() {
    if !require(&[Need::Root, Need::Nftables]) {
        return;
    }
    let mut p = Pair::start().await;
    // the fence "powers off" the peer: every process of its node dies
    let tags = format!("node1 {}\nnode2 {}\n", p.n1.tag, p.n2.tag);
    std::fs::write(p.shared.path().join("tags"), tags).unwrap();
    let fence = p.shared.path().join("fence.sh");
    let events = nm_tests::ha::events_path(&p.shared);
    std::fs::write(
        &fence,
        format!(
            "#!/bin/sh\necho \"fence $NM_HA_PEER by $NM_HA_NODE\" >> {events}\n\
             tag=$(awk -v n=\"$NM_HA_PEER\" '$1 == n {{ print $2 }}' {tags})\n\
             for e in /proc/[0-9]*/environ; do\n\
               if tr '\\0' '\\n' < \"$e\" 2>/dev/null | grep -qx \"NM_TEST_NODE=$tag\"; then\n\
                 p=${{e#/proc/}}; kill -9 \"${{p%/environ}}\" 2>/dev/null\n\
               fi\n\
             done\nexit 0\n",
            events = events.display(),
            tags = p.shared.path().join("tags").display(),
        ),
    )
    .unwrap();
    ok(p.n1.cli(&["ha", "start"]));
    p.n1.running_pid("hadb").await;
    let daemon1 = p.n1.daemon_pid().unwrap();

    let cut = cut(&p.ports);
    let r = wait_ha(&p.n2, "primary after the partition", |r| {
        r.report.local.status == Some(HaStatus::Primary) && !r.report.starting
    })
    .await;
    assert_eq!(r.report.fence, "fenced");
    // node1 was powered off by the fence before node2 started the servers
    assert!(
        !nm_tests::alive(daemon1 as i32),
        "node1's daemon survived its fence"
    );
    let events = p.events();
    let fence = events.iter().position(|e| e == "fence node1 by node2");
    let start = events.iter().rposition(|e| e == "start node2");
    assert!(fence.is_some() && fence < start, "{events:?}");
    assert!(
        !events.iter().any(|e| e == "fence node2 by node1"),
        "the primary fences nothing"
    );
    p.n2.running_pid("hadb").await;
    assert_eq!(p.hadb(), ["node2"], "{}", p.logs());
    drop(cut);
    p.n1.forget_daemon();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_node_manager_takes_over_a_primary_without_a_failover() {
    let mut p = Pair::start_with("3s").await;
    // node1 gets a standby node manager (as in JEUS) beside its HA manager
    p.n1.kill9_daemon();
    let text = std::fs::read_to_string(&p.n1.config).unwrap();
    let text = text.replacen(
        "cluster_key_file",
        &format!("standby_port = {}\ncluster_key_file", nm_tests::free_port()),
        1,
    );
    std::fs::write(&p.n1.config, text).unwrap();
    p.n1.start_daemon().await;
    p.n1.wait_status("the standby attached", |s| {
        s.standby.as_ref().is_some_and(|sb| sb.state == "attached")
    })
    .await;
    p.wait_linked().await;
    ok(p.n1.cli(&["ha", "start"]));
    let hadb = p.n1.running_pid("hadb").await;
    let active = p.n1.daemon_pid().unwrap() as i32;
    // the active node manager dies; its standby becomes the active and adopts everything
    p.n1.kill9_daemon();
    let st =
        p.n1.wait_status("the standby took over", |s| s.pid != active)
            .await;
    assert_eq!(st.takeovers, 1);
    let r = wait_ha(&p.n1, "linked again", |r| r.report.communicating).await;
    assert_eq!(
        r.report.local.status,
        Some(HaStatus::Primary),
        "adopted: still primary"
    );
    assert_eq!(
        p.n1.running_pid("hadb").await,
        hadb,
        "adopted, not restarted"
    );
    let r = wait_ha(&p.n2, "linked again", |r| r.report.communicating).await;
    assert_eq!(r.report.local.status, Some(HaStatus::Running));
    assert!(
        !p.events().iter().any(|e| e.starts_with("fence")),
        "{:?}",
        p.events()
    );
    assert_eq!(p.hadb(), ["node1"], "{}", p.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_server_nm_cannot_identify_after_a_restart_keeps_the_node_primary() {
    if !require(&[Need::Program("perl")]) {
        return;
    }
    // the server sets its process title (perl $0, as nginx and many daemons do), which overwrites
    // /proc/PID/environ: after a daemon restart its start token cannot be confirmed (UNKNOWN)
    let mut p = Pair::configure(
        "[\"perl\", \"-e\", \"open(F, q(>>EVENTS)); print F qq(start $ENV{NODE}\\\\n); close F; \
         $0 = q(hadb: serving); sleep 1000\"]",
        "5s",
    );
    p.n1.start_daemon().await;
    p.n2.start_daemon().await;
    p.wait_linked().await;
    ok(p.n1.cli(&["ha", "start"]));
    p.n1.running_pid("hadb").await;
    p.n1.kill9_daemon();
    p.n1.start_daemon().await;
    p.n1.wait_server("hadb", "UNKNOWN", |s| s.state == St::Unknown)
        .await;
    // it may run: the node is primary, so its peer never starts a second copy
    let r = wait_ha(&p.n1, "linked again", |r| r.report.communicating).await;
    assert_eq!(
        r.report.local.status,
        Some(HaStatus::Primary),
        "{}",
        p.logs()
    );
    let r = wait_ha(&p.n2, "linked again", |r| r.report.communicating).await;
    assert_eq!(r.report.local.status, Some(HaStatus::Running));
    assert_eq!(r.report.peer.status, Some(HaStatus::Primary));
    assert_eq!(p.events(), ["start node1"], "{}", p.logs());
}
