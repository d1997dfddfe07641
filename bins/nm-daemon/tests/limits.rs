//! Every duration, size and count of `nm.toml` at its maximum, and one past it: `--check`
//! accepts or refuses it exactly as the daemon behaves (issue 12 §4). Before the ranges,
//! `stop_timeout = 9223372036854775807` passed `--check` and then panicked the supervisor.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// `(section, key, its maximum, one past it)`; the ranges of docs/config.md.
const LIMITS: &[(&str, &str, &str, &str)] = &[
    ("", "standby_heartbeat", "\"1m\"", "\"60000000001ns\""),
    ("", "standby_timeout", "\"1h\"", "\"3600000000001ns\""),
    ("server", "stop_timeout", "86400", "\"86400000000001ns\""),
    ("server", "restart_delay", "\"1day\"", "86401"),
    ("server", "restart_interval", "\"365days\"", "31536001"),
    ("server", "restart_max", "1000", "1001"),
    ("health", "interval", "\"24h\"", "\"86400000000001ns\""),
    ("health", "timeout", "\"24h\"", "86401"),
    ("health", "start_timeout", "\"24h\"", "86401"),
    ("health", "failure_threshold", "1000", "1001"),
    ("log", "max_size", "\"1TiB\"", "1099511627777"),
    ("log", "keep", "1000", "1001"),
    ("ha", "heartbeat", "\"1m\"", "\"60000000001ns\""),
    ("ha", "peer_timeout", "\"1h\"", "\"3600000000001ns\""),
    ("ha", "fence_delay", "\"1h\"", "\"3600000000001ns\""),
    ("ha", "fence_timeout", "\"1h\"", "3601"),
    ("ha", "fence_retry", "\"1h\"", "3601"),
    ("ha", "start_timeout", "\"1day\"", "86401"),
];

/// A config with `extra(section)` lines in each section, and the line of `mark` if it is in
/// there. Two servers: `web` (sleeps, healthy) and `crash` (exits 3 at once).
fn config(dir: &Path, extra: &dyn Fn(&str) -> Vec<String>, mark: &str) -> (String, usize) {
    let mut lines = vec![
        "node = \"node1\"".to_owned(),
        format!("data_dir = \"{}\"", dir.join("data").display()),
        format!("listen = \"127.0.0.1:{}\"", free_port()),
        "cluster_key_file = \"cluster.key\"".to_owned(),
        format!("standby_port = {}", free_port()),
    ];
    lines.extend(extra(""));
    lines.extend(
        [
            "[[server]]",
            "name = \"web\"",
            "command = [\"sleep\", \"120\"]",
        ]
        .map(String::from),
    );
    lines.extend(extra("server"));
    lines.extend(["[server.health]", "exec = [\"true\"]"].map(String::from));
    lines.extend(extra("health"));
    lines.push("[server.log]".to_owned());
    lines.extend(extra("log"));
    lines.extend(
        [
            "[[server]]",
            "name = \"crash\"",
            "command = [\"sh\", \"-c\", \"exit 3\"]",
        ]
        .map(String::from),
    );
    lines.extend(extra("server"));
    lines.extend([
        "[ha]".to_owned(),
        "peer = \"node2\"".to_owned(),
        format!("peer_address = \"127.0.0.1:{}\"", free_port()),
        format!("listen = \"127.0.0.1:{}\"", free_port()),
        "fence_command = [\"false\"]".to_owned(),
    ]);
    lines.extend(extra("ha"));
    let at = lines.iter().position(|l| l == mark).map_or(0, |i| i + 1);
    (lines.join("\n") + "\n", at)
}

/// With `section`/`key` set, the peer timeouts at their maximum so a heartbeat at its own fits.
fn one_key(section: &str, key: &str, value: &str) -> impl Fn(&str) -> Vec<String> {
    let (s, k, v) = (section.to_owned(), key.to_owned(), value.to_owned());
    move |at: &str| {
        let mut out = vec![];
        if at == s {
            out.push(format!("{k} = {v}"));
        }
        for (sec, timeout) in [("", "standby_timeout"), ("ha", "peer_timeout")] {
            if at == sec && !(s == sec && k == timeout) {
                out.push(format!("{timeout} = \"1h\""));
            }
        }
        out
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let key = dir.join("cluster.key");
    std::fs::write(&key, [7u8; 32]).expect("key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let path = dir.join("nm.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nm-daemon"))
        .arg("--config")
        .arg(path)
        .arg("--check")
        .output()
        .expect("run")
}

#[test]
fn check_accepts_every_maximum_and_refuses_one_past_it_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    for &(section, key, max, past) in LIMITS {
        let (text, _) = config(dir.path(), &one_key(section, key, max), "");
        let out = check(&write(dir.path(), &text));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{key} = {max}: {stderr}\n{text}"
        );

        let line = format!("{key} = {past}");
        let (text, at) = config(dir.path(), &one_key(section, key, past), &line);
        let out = check(&write(dir.path(), &text));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{line}: {stderr}");
        let column = key.len() + 4;
        assert!(
            stderr.contains(&format!("nm.toml:{at}:{column}: ")),
            "{line} (line {at}): {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn the_values_from_the_report_are_refused_by_check_without_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (section, key, value) in [
        ("server", "stop_timeout", "9223372036854775807"),
        ("server", "restart_delay", "\"300000000000y\""),
        ("", "standby_heartbeat", "\"300000000000y\""),
        ("ha", "heartbeat", "\"300000000000y\""),
    ] {
        let line = format!("{key} = {value}");
        let (text, at) = config(dir.path(), &one_key(section, key, value), &line);
        let out = check(&write(dir.path(), &text));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{line}: {stderr}");
        assert!(
            stderr.contains(&format!("nm.toml:{at}:")),
            "{line}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Kills the daemon if the test ends early.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request over the API's Unix socket; the body of the answer.
fn request(sock: &Path, method: &str, path: &str) -> Option<String> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: nm\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

/// Polls `probe` until it returns true; panics with `what` after 30 s.
fn wait_until(what: &str, mut probe: impl FnMut() -> bool) {
    #[allow(clippy::disallowed_methods)] // the test's own deadline
    let deadline = Instant::now() + Duration::from_secs(30);
    #[allow(clippy::disallowed_methods)]
    while Instant::now() < deadline {
        if probe() {
            return;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn the_daemon_runs_with_every_maximum_at_once_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = |at: &str| -> Vec<String> {
        LIMITS
            .iter()
            .filter(|(section, ..)| *section == at)
            .map(|(_, key, max, _)| format!("{key} = {max}"))
            .collect()
    };
    let (text, _) = config(dir.path(), &all, "");
    let path = write(dir.path(), &text);
    assert_eq!(check(&path).status.code(), Some(0), "{text}");
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_nm-daemon"))
            .arg("--config")
            .arg(&path)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let sock = dir.path().join("data/nm.sock");
    let servers = || request(&sock, "GET", "/v1/servers").unwrap_or_default();
    // web runs (healthy), crash waits its day-long restart_delay: deadlines a day away
    wait_until("web RUNNING and crash FAILED_RESTARTING", || {
        let s = servers();
        s.contains("\"name\":\"web\",\"state\":\"RUNNING\"")
            && s.contains("\"name\":\"crash\",\"state\":\"FAILED_RESTARTING\"")
    });
    // a stop arms the day-long stop_timeout; sleep ends at SIGTERM
    request(&sock, "POST", "/v1/servers/web/stop?wait=20").expect("stop");
    wait_until("web SHUTDOWN", || {
        servers().contains("\"name\":\"web\",\"state\":\"SHUTDOWN\"")
    });
    let pid = daemon.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()));
    let mut status = None;
    wait_until("the daemon's exit", || {
        status = daemon.0.try_wait().expect("wait");
        status.is_some()
    });
    let mut stderr = String::new();
    if let Some(mut e) = daemon.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
