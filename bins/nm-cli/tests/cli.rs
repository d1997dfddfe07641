//! The built `nm-cli` against no daemon and against a scripted one (a thread answering canned
//! HTTP on a Unix socket): exit codes, the one stderr line, `--json` documents, log streaming.

// helpers outside #[test] fns too: any failure here is the test's failure
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;

use serde_json::{Value, json};

fn nm_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nm-cli"))
        .args(args)
        .env_remove("NM_SOCKET")
        .env_remove("NM_ADDR")
        .env_remove("NM_CONFIG")
        .env_remove("NM_TOKEN_FILE")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One canned answer: status, content type, body.
struct Answer {
    status: u16,
    body: String,
}

fn ok(body: &Value) -> Answer {
    Answer {
        status: 200,
        body: body.to_string(),
    }
}

fn text(body: &str) -> Answer {
    Answer {
        status: 200,
        body: body.to_owned(),
    }
}

fn refused(status: u16, error: &str) -> Answer {
    Answer {
        status,
        body: json!({ "error": error }).to_string(),
    }
}

/// Serves one request per answer on `dir/nm.sock`; the requests' "METHOD target body" lines come
/// back through the receiver.
fn daemon(dir: &Path, answers: Vec<Answer>) -> (PathBuf, mpsc::Receiver<String>) {
    let sock = dir.join("nm.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for answer in answers {
            let (stream, _) = listener.accept().unwrap();
            let request = read_request(&stream);
            tx.send(request).unwrap();
            let reason = if answer.status == 200 { "OK" } else { "Error" };
            let ctype = if answer.body.starts_with(['{', '[']) {
                "application/json"
            } else {
                "text/plain"
            };
            let mut w = &stream;
            write!(
                w,
                "HTTP/1.1 {} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                answer.status,
                answer.body.len(),
                answer.body
            )
            .unwrap();
        }
    });
    (sock, rx)
}

fn read_request(stream: &UnixStream) -> String {
    let mut r = BufReader::new(stream);
    let mut first = String::new();
    r.read_line(&mut first).unwrap();
    let mut len = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap(), parts.next().unwrap());
    format!("{method} {target} {}", String::from_utf8_lossy(&body))
        .trim_end()
        .to_owned()
}

fn server(name: &str, state: &str, pid: Option<i32>) -> Value {
    json!({
        "name": name, "state": state, "pid": pid, "restart_count": 0,
        "since": "2026-11-02T10:00:00Z", "reason": "", "last_exit": null, "health_failures": null,
        "command": ["sleep", "1000"], "stdout_log": "/d/web.out", "stderr_log": "/d/web.err"
    })
}

fn reply(command: &str, changed: bool, settled: bool, server: Value) -> Value {
    json!({ "command": command, "changed": changed, "settled": settled, "server": server })
}

#[test]
fn a_missing_socket_exits_2_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nope.sock");
    let out = nm_cli(&["--socket", sock.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("nm-cli: ")
            && err.contains(sock.to_str().unwrap())
            && err.contains("running"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn nothing_to_find_the_daemon_by_exits_2_naming_the_options() {
    // /etc/nm/nm.toml would be found on a configured machine; this test is about its absence
    if Path::new("/etc/nm/nm.toml").exists() {
        return;
    }
    let out = nm_cli(&["server", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--socket") && err.contains("--addr") && err.contains("--config"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for args in [
        &["bogus"][..],
        &["server", "start"],
        &["server", "status", "../x"],
        &[],
    ] {
        let out = nm_cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("nm-cli: "), "{err}");
    }
}

#[test]
fn help_and_version_exit_0() {
    assert!(nm_cli(&["--help"]).status.success());
    let out = nm_cli(&["--version"]);
    assert!(out.status.success() && stdout(&out).contains("nm-cli"));
}

#[test]
fn completions_need_no_daemon() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = nm_cli(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("nm-cli"), "{shell}");
    }
}

#[test]
fn server_list_json_is_the_array_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let list = json!([
        server("web", "RUNNING", Some(1234)),
        server("db", "SHUTDOWN", None)
    ]);
    let (sock, rx) = daemon(dir.path(), vec![ok(&list), ok(&list)]);
    let sock = sock.to_str().unwrap();

    let out = nm_cli(&["--socket", sock, "--json", "server", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rx.recv().unwrap(), "GET /v1/servers");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc, list);
    assert_eq!(doc[1]["pid"], Value::Null);

    let out = nm_cli(&["--socket", sock, "server", "list"]);
    let table = stdout(&out);
    assert!(table.lines().next().unwrap().starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["web", "RUNNING", "1234"])),
        "{table}"
    );
}

#[test]
fn start_waits_and_prints_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let answers = vec![
        ok(&reply(
            "start",
            true,
            true,
            server("web", "RUNNING", Some(1234)),
        )),
        ok(&reply(
            "start",
            false,
            true,
            server("web", "RUNNING", Some(1234)),
        )),
        ok(&reply(
            "stop",
            true,
            false,
            server("web", "SHUTTING_DOWN", Some(1234)),
        )),
    ];
    let (sock, rx) = daemon(dir.path(), answers);
    let sock = sock.to_str().unwrap();

    let out = nm_cli(&["--socket", sock, "server", "start", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rx.recv().unwrap(), "POST /v1/servers/web/start?wait=30 {}");
    assert_eq!(stdout(&out), "web: RUNNING (pid 1234)\n");

    let out = nm_cli(&["--socket", sock, "server", "start", "web", "--timeout", "5"]);
    assert_eq!(rx.recv().unwrap(), "POST /v1/servers/web/start?wait=5 {}");
    assert_eq!(stdout(&out), "web: already RUNNING (pid 1234)\n");

    let out = nm_cli(&["--socket", sock, "server", "stop", "web", "--no-wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rx.recv().unwrap(), "POST /v1/servers/web/stop {}");
    assert_eq!(stdout(&out), "web: SHUTTING_DOWN (pid 1234)\n");
}

#[test]
fn an_unsettled_wait_exits_3_and_json_still_prints_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let answer = reply("start", true, false, server("web", "STARTING", Some(9)));
    let (sock, _rx) = daemon(dir.path(), vec![ok(&answer), ok(&answer)]);
    let sock = sock.to_str().unwrap();

    let out = nm_cli(&["--socket", sock, "server", "start", "web"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out), "nm-cli: web: still STARTING after 30s\n");
    assert!(out.stdout.is_empty());

    let out = nm_cli(&["--socket", sock, "--json", "server", "start", "web"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        answer
    );
    assert_eq!(stderr(&out).lines().count(), 1);
}

#[test]
fn a_start_ending_failed_exits_1_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = server("web", "FAILED_NOT_RESTARTABLE", None);
    s["reason"] = json!("restart limit reached");
    let (sock, _rx) = daemon(dir.path(), vec![ok(&reply("start", true, true, s))]);
    let out = nm_cli(&["--socket", sock.to_str().unwrap(), "server", "start", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "nm-cli: web: FAILED_NOT_RESTARTABLE after start: restart limit reached\n"
    );
}

#[test]
fn a_refusal_exits_1_with_the_daemons_reason_and_empty_stdout_in_json_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, _rx) = daemon(dir.path(), vec![refused(404, "no server named \"nope\"")]);
    let out = nm_cli(&[
        "--socket",
        sock.to_str().unwrap(),
        "--json",
        "server",
        "status",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "nm-cli: no server named \"nope\"\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn logs_are_copied_raw_with_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let answers = vec![
        text("line 1\nline 2\n"),
        text("boot\n"),
        refused(404, "no standby"),
    ];
    let (sock, rx) = daemon(dir.path(), answers);
    let sock = sock.to_str().unwrap();

    let out = nm_cli(&[
        "--socket", sock, "server", "log", "web", "--tail", "2", "--stderr",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        rx.recv().unwrap(),
        "GET /v1/servers/web/log?stream=stderr&tail=2"
    );
    assert_eq!(stdout(&out), "line 1\nline 2\n");

    let out = nm_cli(&["--socket", sock, "nm", "log", "--follow"]);
    assert_eq!(rx.recv().unwrap(), "GET /v1/nm/log?follow=true");
    assert_eq!(stdout(&out), "boot\n");

    let out = nm_cli(&["--socket", sock, "nm", "log", "--standby", "--tail", "5"]);
    assert_eq!(rx.recv().unwrap(), "GET /v1/nm/log?standby=true&tail=5");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "nm-cli: no standby\n");
}

#[test]
fn shutdown_sends_the_request_and_names_the_exiting_pid() {
    let dir = tempfile::tempdir().unwrap();
    let answer = json!({ "pid": 4242, "stopped": ["web"], "left_running": [] });
    let (sock, rx) = daemon(dir.path(), vec![ok(&answer)]);
    let out = nm_cli(&[
        "--socket",
        sock.to_str().unwrap(),
        "shutdown",
        "--stop-servers",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        rx.recv().unwrap(),
        r#"POST /v1/shutdown {"stop_servers":true}"#
    );
    assert!(
        stdout(&out).contains("4242") && stdout(&out).contains("web"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn addr_sends_the_bearer_token_from_the_config_data_dir() {
    // TCP: a listener on an ephemeral port that checks the Authorization header
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/api.token"), "s3cret\n").unwrap();
    std::fs::write(
        dir.path().join("nm.toml"),
        "node = \"n1\"\ndata_dir = \"data\"\n",
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut r = BufReader::new(&stream);
        let mut auth = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if line.to_ascii_lowercase().starts_with("authorization:") {
                auth = line.trim().to_owned();
            }
        }
        let body = json!({ "error": "unauthorized" }).to_string();
        let mut w = &stream;
        write!(
            w,
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        auth
    });
    let config = dir.path().join("nm.toml");
    let out = nm_cli(&[
        "--addr",
        &addr,
        "--config",
        config.to_str().unwrap(),
        "status",
    ]);
    assert_eq!(seen.join().unwrap(), "authorization: Bearer s3cret");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "nm-cli: unauthorized\n");
}
