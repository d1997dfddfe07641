//! Hostile API clients: thousands of idle TCP connections, too many log readers, malformed
//! bodies. The node keeps serving its Unix socket and restarting its servers, closes idle
//! connections, answers every error in JSON and returns to its normal memory afterwards.
//!
//! The daemon runs under `prlimit --nofile=256:256`, so a flood that would need every descriptor
//! of a default limit is a few hundred connections here.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use nm_api::ServerState as St;
use nm_tests::{DEADLINE, Node, kill9, pid_of, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEEPER: &str = "[[server]]\nname = \"keeper\"\ncommand = [\"sleep\", \"1000\"]\nrestart_max = 100\nrestart_delay = \"0s\"\n";

/// How many connections the flood opens at most (well over the daemon's 256 descriptors).
const FLOOD: usize = 3000;

/// The daemon under a 256-descriptor limit.
async fn small_daemon(servers: &str) -> Node {
    let mut node = Node::configure(servers);
    node.start_daemon_under(&["prlimit", "--nofile=256:256", "--"])
        .await;
    node
}

/// This test process may hold the flood's connections.
fn raise_own_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    setrlimit(Resource::Nofile, lim).unwrap();
}

/// The resident set of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// The daemon's status over the Unix socket, or `None` if it does not answer within a second.
async fn socket_status(node: &Node) -> Option<nm_api::NodeStatus> {
    tokio::time::timeout(Duration::from_secs(1), node.status())
        .await
        .ok()
        .flatten()
}

/// One request on a new connection; the status line and headers, and the body read so far.
async fn request(
    node: &Node,
    method: &str,
    path: &str,
    body: &[u8],
) -> (TcpStream, String, String) {
    let mut s = TcpStream::connect(&node.listen).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        node.token(),
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    let text = loop {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if n == 0 || text.contains("\r\n\r\n") {
            break text;
        }
    };
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (s, head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn thousands_of_idle_tcp_connections_leave_the_socket_answering_and_servers_restarting() {
    raise_own_nofile();
    let node = small_daemon(KEEPER).await;
    let first = node
        .wait_server("keeper", "RUNNING", |s| s.state == St::Running)
        .await;
    let daemon = node.daemon_pid().unwrap();
    let rss_before = rss(daemon);

    // connections that never send a byte, all at once: those the daemon does not take wait in
    // the kernel's backlog, the rest in SYN retries (and give up)
    let attempts = (0..FLOOD).map(|_| {
        let addr = node.listen.clone();
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
                .await
                .ok()
                .and_then(Result::ok)
        })
    });
    let mut idle = Vec::new();
    for a in attempts.collect::<Vec<_>>() {
        idle.extend(a.await.unwrap());
    }
    // more than the daemon's TCP cap (58 under 256 descriptors): some wait in the backlog
    assert!(idle.len() > 100, "only {} connections opened", idle.len());

    // the Unix socket still answers
    wait_for("the Unix socket to answer during the flood", || {
        socket_status(&node)
    })
    .await;
    // a server that crashes is restarted (its logs opened, its process spawned)
    kill9(pid_of(&first));
    let again = node
        .wait_server("keeper", "RUNNING again", |s| {
            s.state == St::Running && s.pid != first.pid
        })
        .await;
    assert_eq!(again.restart_count, 1, "{again:#?}");
    // the idle connections are closed by the server (they sent nothing)
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(60), idle[0].read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "an idle connection was not closed: {closed:?}"
    );

    // the flood ends: the daemon's memory comes back near where it was
    drop(idle);
    let limit = 2 * rss_before + 20 * 1024 * 1024;
    wait_for(
        "the daemon's memory to come back after the flood",
        || async { (rss(daemon) < limit).then_some(()) },
    )
    .await;
    assert!(socket_status(&node).await.is_some());
    // and TCP clients are served again
    let (_s, head, _) = request(&node, "GET", "/v1/status", b"").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn log_reads_beyond_the_listeners_slots_get_a_json_503_and_slots_come_back() {
    let node = small_daemon(KEEPER).await;
    node.wait_server("keeper", "RUNNING", |s| s.state == St::Running)
        .await;
    // under 256 descriptors with one server: 58 TCP connections, 7 log reads at once
    let mut follows = Vec::new();
    let busy = loop {
        let (s, head, body) =
            request(&node, "GET", "/v1/servers/keeper/log?follow=true", b"").await;
        if head.starts_with("HTTP/1.1 200") {
            follows.push(s);
            assert!(follows.len() <= 64, "no log-read limit");
            continue;
        }
        break (head, body);
    };
    assert_eq!(follows.len(), 7);
    let (head, body) = busy;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.to_lowercase().contains("retry-after: 1"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("too many log reads"),
        "{v}"
    );
    // the Unix socket has slots of its own
    let log = node
        .client()
        .get_stream("/v1/servers/keeper/log?tail=1")
        .await
        .unwrap();
    assert_eq!(log.status(), 200);
    // a reader that goes away gives its slot back
    drop(follows.pop());
    wait_for("a log-read slot to come back", || async {
        let (s, head, _) = request(&node, "GET", "/v1/servers/keeper/log?tail=1", b"").await;
        drop(s);
        head.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_shutdown_body_that_is_not_a_json_object_is_refused_in_json_and_every_error_is_json() {
    let node = Node::start(KEEPER).await;
    node.wait_server("keeper", "RUNNING", |s| s.state == St::Running)
        .await;
    for body in [&b"[]"[..], b"[true]", b"true", b"\"x\"", b"null"] {
        let (_s, head, text) = request(&node, "POST", "/v1/shutdown", body).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["error"].is_string(), "{text}");
    }
    // too large, a bad path parameter, a wrong method, no such route: JSON each
    for (method, path, body, status) in [
        ("POST", "/v1/shutdown", vec![b' '; 8192], "413"),
        ("GET", "/v1/servers/keeper/log?tail=-1", vec![], "400"),
        ("GET", "/v1/servers/%FF", vec![], "400"),
        ("DELETE", "/v1/status", vec![], "405"),
        ("GET", "/v2/nothing", vec![], "404"),
    ] {
        let (mut s, head, mut text) = request(&node, method, path, &body).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{method} {path}: {head}"
        );
        assert!(head.contains("application/json"), "{method} {path}: {head}");
        if text.is_empty() {
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            text = String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: {text:?}"));
        assert!(v["error"].is_string(), "{text}");
    }
    // nothing was stopped
    assert_eq!(node.server("keeper").await.state, St::Running);
    assert!(socket_status(&node).await.is_some());
}
