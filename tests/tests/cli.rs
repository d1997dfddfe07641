//! nm-cli against a real daemon: the JSON contract fields, commands, logs, and failures.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use nm_api::ServerState as St;
use nm_tests::{KillOnDrop, Node, bin, pid_of, wait_for};

const SERVERS: &str = "[[server]]\nname = \"talk\"\ncommand = [\"sh\", \"-c\", \"echo hello-out; echo hello-err >&2; while read line; do :; done; sleep 1000\"]\n\n\
                       [[server]]\nname = \"later\"\ncommand = [\"sleep\", \"1000\"]\nauto_start = false\n";

#[tokio::test]
async fn json_output_carries_the_contract_fields() {
    let node = Node::start(SERVERS).await;
    node.wait_server("talk", "RUNNING", |s| s.state == St::Running)
        .await;
    let (code, out, err) = node.cli(&["--json", "server", "list"]);
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arr = list.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    for s in arr {
        for field in ["name", "state", "pid", "restart_count", "since"] {
            assert!(s.get(field).is_some(), "missing {field} in {s}");
        }
    }
    let later = arr.iter().find(|s| s["name"] == "later").unwrap();
    assert_eq!(later["state"], "SHUTDOWN");
    assert!(later["pid"].is_null());
    let (code, out, _) = node.cli(&["--json", "status"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["node"], "test");
    assert_eq!(status["role"], "active");
    assert_eq!(status["pid"], node.daemon_pid().unwrap());
}

#[tokio::test]
async fn commands_wait_for_the_state_and_print_it() {
    let node = Node::start(SERVERS).await;
    let (code, out, err) = node.cli(&["server", "start", "later"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("RUNNING"), "{out}");
    let pid = pid_of(&node.server("later").await);
    let (code, out, err) = node.cli(&["server", "stop", "later"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("SHUTDOWN"), "{out}");
    assert!(!nm_tests::alive(pid));
    let (code, _, err) = node.cli(&["server", "resume", "later"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("it is SHUTDOWN"), "{err}");
}

#[tokio::test]
async fn server_log_shows_stdout_and_stderr_and_follow_streams() {
    let node = Node::start(SERVERS).await;
    node.wait_server("talk", "RUNNING", |s| s.state == St::Running)
        .await;
    let out_log = node.data_dir.join("logs/talk.out");
    wait_for("output in the log", || async {
        std::fs::read_to_string(&out_log)
            .ok()
            .filter(|s| s.contains("hello-out"))
            .map(drop)
    })
    .await;
    let (code, out, _) = node.cli(&["server", "log", "talk", "--tail", "5"]);
    assert_eq!(code, 0);
    assert!(out.contains("hello-out"), "{out}");
    let err_log = node.data_dir.join("logs/talk.err");
    wait_for("stderr in the log", || async {
        std::fs::read_to_string(&err_log)
            .ok()
            .filter(|s| s.contains("hello-err"))
            .map(drop)
    })
    .await;
    let (_, out, _) = node.cli(&["server", "log", "talk", "--stderr"]);
    assert!(out.contains("hello-err"), "{out}");

    // --follow: a line appended later arrives on the open stream
    let mut follow = KillOnDrop(
        std::process::Command::new(bin("nm-cli"))
            .arg("--socket")
            .arg(node.data_dir.join("nm.sock"))
            .args(["server", "log", "talk", "--follow", "--tail", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("appended-later"))
            .is_some()
    });
    // append to the server's stdout file (as the server itself would) until the follower,
    // which may still be connecting, sees a line
    for _ in 0..50 {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&out_log)
            .unwrap();
        writeln!(f, "appended-later").unwrap();
        if reader.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(follow);
    assert!(reader.join().unwrap(), "the followed line never arrived");
}

#[test]
fn an_unreachable_daemon_is_one_line_and_exit_2() {
    let out = std::process::Command::new(bin("nm-cli"))
        .args(["--socket", "/nonexistent/nm.sock", "status"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/nonexistent/nm.sock") && err.contains("running"),
        "{err}"
    );
}
