//! The API's credentials and the daemon's refusals: no token → 401 and no change; a bad config →
//! a clear error with its line; one daemon per data directory.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use nm_api::ServerState as St;
use nm_api::client::{Client, ClientError, Endpoint};
use nm_api::{CommandReply, NodeStatus, ServerInfo};
use nm_tests::{Node, bin, pid_of, raw_http};

const ONE: &str = "[[server]]\nname = \"a\"\ncommand = [\"sleep\", \"1000\"]\n";

fn tcp(node: &Node, token: &str) -> Client {
    Client::new(Endpoint::Tcp {
        addr: node.listen.clone(),
        token: token.to_owned(),
    })
}

#[tokio::test]
async fn a_request_without_the_token_gets_401_and_changes_nothing() {
    let node = Node::start(ONE).await;
    let before = node
        .wait_server("a", "RUNNING", |s| s.state == St::Running)
        .await;
    for token in ["", "wrong", &node.token()[1..]] {
        let err = tcp(&node, token)
            .post::<_, CommandReply>("/v1/servers/a/stop", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Refused { status: 401, .. }),
            "{err:?}"
        );
        let err = tcp(&node, token)
            .get::<Vec<ServerInfo>>("/v1/servers")
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Refused { status: 401, .. }),
            "{err:?}"
        );
    }
    // a raw request with no Authorization header at all
    let resp = raw_http(
        &node.listen,
        "POST /v1/shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    let after = node.server("a").await;
    assert_eq!(
        (after.state, after.pid),
        (St::Running, before.pid),
        "nothing changed"
    );
    // the right token works over TCP
    let status: NodeStatus = tcp(&node, &node.token()).get("/v1/status").await.unwrap();
    assert_eq!(status.node, "test");
    assert!(pid_of(&after) > 0);
    let mode = std::fs::metadata(node.data_dir.join("api.token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let sock = std::fs::metadata(node.data_dir.join("nm.sock")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&sock.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn a_bad_config_is_refused_with_its_line_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nm.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &cfg,
        format!(
            "node = \"n\"\ndata_dir = \"{}\"\n\n[[server]]\nname = \"a\"\ncommand = [\"sleep\", \"1\"]\nrestart_dely = 3\n",
            data.display()
        ),
    )
    .unwrap();
    for check in [true, false] {
        let mut cmd = std::process::Command::new(bin("nm-daemon"));
        cmd.arg("--config").arg(&cfg);
        if check {
            cmd.arg("--check");
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!("{}:7:", cfg.display())),
            "no line number: {err}"
        );
        assert!(first.contains("restart_dely"), "{err}");
    }
    assert!(!data.exists(), "a refused config creates nothing");
}

#[tokio::test]
async fn check_accepts_a_good_config() {
    let node = Node::configure(ONE);
    let out = std::process::Command::new(bin("nm-daemon"))
        .arg("--config")
        .arg(&node.config)
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_is_refused() {
    let node = Node::start(ONE).await;
    let out = std::process::Command::new(bin("nm-daemon"))
        .arg("--config")
        .arg(&node.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another nm-daemon"), "{err}");
    assert!(
        err.contains(&node.daemon_pid().unwrap().to_string()),
        "{err}"
    );
    // the first is untouched
    assert_eq!(node.server("a").await.state, St::Running);
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text() {
    let node = Node::start(ONE).await;
    node.wait_server("a", "RUNNING", |s| s.state == St::Running)
        .await;
    let resp = raw_http(
        &node.listen,
        &format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n", node.token()),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("nm_server_up{server=\"a\"} 1"), "{resp}");
}

#[tokio::test]
async fn a_misspelled_shutdown_request_is_refused_and_the_daemon_keeps_running() {
    let node = Node::start(ONE).await;
    node.wait_server("a", "RUNNING", |s| s.state == St::Running)
        .await;
    let body = "{\"stop_server\": true}";
    let req = format!(
        "POST /v1/shutdown HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        node.token(),
        body.len()
    );
    let resp = raw_http(&node.listen, &req).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("unknown field"), "{resp}");
    let status: NodeStatus = node.client().get("/v1/status").await.unwrap();
    assert_eq!(
        status.pid,
        i32::try_from(node.daemon_pid().unwrap()).unwrap(),
        "still the same daemon"
    );
    assert_eq!(node.server("a").await.state, St::Running);
}

#[tokio::test]
async fn commands_during_a_stopping_shutdown_are_refused_and_it_completes() {
    let mut node = Node::start(
        "[[server]]\nname = \"slow\"\ncommand = [\"sh\", \"-c\", \"trap '' TERM; sleep 1000 & wait\"]\nstop_timeout = \"2s\"\n\n\
         [[server]]\nname = \"idle\"\ncommand = [\"sleep\", \"1000\"]\nauto_start = false\n",
    )
    .await;
    node.wait_server("slow", "RUNNING", |s| s.state == St::Running)
        .await;
    let client = node.client();
    let shutdown = tokio::spawn(async move {
        client
            .post::<_, nm_api::ShutdownReply>(
                "/v1/shutdown",
                &serde_json::json!({"stop_servers": true}),
            )
            .await
    });
    node.wait_server("slow", "SHUTTING_DOWN", |s| s.state == St::ShuttingDown)
        .await;
    let err = node
        .client()
        .post::<_, CommandReply>("/v1/servers/idle/start", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { status: 503, .. }),
        "{err:?}"
    );
    let reply = shutdown.await.unwrap().unwrap();
    assert_eq!(reply.stopped, vec!["slow".to_owned()]);
    assert!(node.wait_daemon_exit().await.success());
}

#[tokio::test]
async fn a_bad_query_is_a_json_400_and_changes_nothing() {
    let node = Node::start(ONE).await;
    let before = node
        .wait_server("a", "RUNNING", |s| s.state == St::Running)
        .await;
    for path in [
        "/v1/servers/a/log?tial=5",
        "/v1/servers/a/stop?wait=soon",
        "/v1/nm/log?tail=x",
    ] {
        let method = if path.contains("/stop") {
            "POST"
        } else {
            "GET"
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            node.token()
        );
        let resp = raw_http(&node.listen, &req).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
        assert!(resp.contains("{\"error\":\"bad query"), "{path}: {resp}");
    }
    // a wrong method gets the JSON error body too
    let req = format!(
        "GET /v1/shutdown HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        node.token()
    );
    let resp = raw_http(&node.listen, &req).await;
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    assert!(resp.contains("method not allowed on this route"), "{resp}");
    assert_eq!(node.server("a").await.pid, before.pid, "nothing changed");
}
