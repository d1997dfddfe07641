//! The embedding example (`examples/embed_node.rs`) runs a whole node: its servers, the API on the
//! Unix socket, and a standby (a second process of the example) that takes over when the first
//! is killed. `cargo test --workspace` builds the example before this runs.

#![allow(clippy::disallowed_methods)] // deadlines of the test read the clock
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failure is a test failure

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nm_api::client::{Client, Endpoint};
use nm_api::{NodeStatus, ServerInfo, ShutdownReply, ShutdownRequest};

const DEADLINE: Duration = Duration::from_secs(20);

fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/embed_node");
    assert!(
        p.exists(),
        "{} is not built: run `cargo test -p nm-node` (it builds the examples)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Kills what the test started, on failure too: the example (active or standby) and the server,
/// found by the marker in their environment.
struct Cleanup {
    marker: String,
    first: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = &mut self.first {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in with_marker(&self.marker) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// The processes whose environment holds `marker` (every process this test started inherits it).
fn with_marker(marker: &str) -> Vec<i32> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(env) = std::fs::read(entry.path().join("environ")) {
            if env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
                found.push(pid);
            }
        }
    }
    found
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[tokio::test]
async fn the_embed_example_runs_a_node_whose_standby_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nm.toml");
    std::fs::write(
        &config,
        format!(
            "node = \"embedded\"\ndata_dir = \"data\"\nlisten = \"127.0.0.1:{}\"\nstandby_port = {}\n\
             [[server]]\nname = \"worker\"\ncommand = [\"sleep\", \"600\"]\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let marker = format!("NM_EMBED_TEST={}", std::process::id());
    let (key, value) = marker.split_once('=').unwrap();
    let first = Command::new(example())
        .arg("--config")
        .arg(&config)
        .env(key, value)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let first_pid = i32::try_from(first.id()).unwrap();
    let mut guard = Cleanup {
        marker: marker.clone(),
        first: Some(first),
    };
    let client = Client::new(Endpoint::Unix(dir.path().join("data/nm.sock")));

    // a whole node: the server runs, and the standby watches the active
    let status: NodeStatus = wait_for("the standby to attach", async || {
        let s: NodeStatus = client.get("/v1/status").await.ok()?;
        let attached = s.standby.as_ref().is_some_and(|b| b.state == "attached");
        (s.servers.get("RUNNING") == Some(&1) && attached).then_some(s)
    })
    .await;
    assert_eq!((status.node.as_str(), status.pid), ("embedded", first_pid));
    let servers: Vec<ServerInfo> = client.get("/v1/servers").await.unwrap();
    let worker = servers[0].pid.unwrap();

    // the embedding program dies: its standby (the same program) takes over, adopting the server
    let mut first = guard.first.take().unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    let after: NodeStatus = wait_for("the takeover", async || {
        let s: NodeStatus = client.get("/v1/status").await.ok()?;
        (s.pid != first_pid && s.takeovers == 1).then_some(s)
    })
    .await;
    assert_eq!(after.last_takeover.map(|t| t.reason), Some("died".into()));
    let servers: Vec<ServerInfo> = client.get("/v1/servers").await.unwrap();
    assert_eq!(servers[0].pid, Some(worker), "adopted, not restarted");

    // an orderly stop through the API, servers included
    let reply: ShutdownReply = client
        .post("/v1/shutdown", &ShutdownRequest { stop_servers: true })
        .await
        .unwrap();
    assert_eq!(reply.stopped, ["worker"]);
    wait_for("the node and its server to exit", async || {
        (!alive(after.pid) && !alive(worker)).then_some(())
    })
    .await;
    wait_for("every process of the test to exit", async || {
        with_marker(&marker).is_empty().then_some(())
    })
    .await;
    drop(guard);
}
