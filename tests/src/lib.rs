//! Helpers for the multi-process tests: a real `nm-daemon` in a temporary data directory, its
//! API client, and waiting on conditions with deadlines.
//!
//! The binaries are taken from the cargo target directory; `cargo test --workspace` builds them
//! before any test runs.

#![allow(clippy::disallowed_methods)] // deadlines of the test harness read the clock

pub mod ha;
mod need;
pub mod nft;
mod procs;

pub use need::{Need, require, require_all};
pub use procs::{KillOnDrop, Proc, descendants, kill_procs, kill_trees};

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use nm_api::client::{Client, Endpoint};
use nm_api::{NodeStatus, ServerInfo};
use tokio::time::Instant;

/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The path of a workspace binary (`nm-daemon`, `nm-cli`) in the cargo target directory of the
/// test executable, or in `NM_BIN_DIR` when set.
///
/// # Panics
/// When it has not been built (run `cargo test --workspace`).
#[must_use]
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // NM_BIN_DIR: the benchmarks run release binaries from another directory
    let dir = std::env::var_os("NM_BIN_DIR").map_or_else(
        || {
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_path_buf()
        },
        PathBuf::from,
    );
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo test --workspace` (or `cargo build --workspace`)",
        p.display()
    );
    p
}

/// A free TCP port on 127.0.0.1 (bound and released; the race with other programs is accepted).
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One node: a config, a data directory and (while running) an `nm-daemon` process.
pub struct Node {
    /// Temporary directory holding everything (removed on drop).
    pub dir: tempfile::TempDir,
    /// `dir/nm.toml`.
    pub config: PathBuf,
    /// `dir/data`.
    pub data_dir: PathBuf,
    /// `127.0.0.1:PORT` of the HTTP API.
    pub listen: String,
    /// Marks every process started for this node (inherited by its servers), for cleanup.
    pub tag: String,
    /// Top-level keys written before the servers (e.g. `standby_port = 5557`).
    pub top: String,
    /// The node's name in `nm.toml` (`test` unless made with [`Node::configure_named`]).
    pub name: String,
    daemon: Option<Child>,
    /// Processes orphaned when the test killed a daemon (its servers, which a later daemon may
    /// adopt): killed on drop even if they no longer carry the tag (a server that sets its
    /// process title can overwrite `/proc/PID/environ`).
    orphans: Vec<Proc>,
}

impl Node {
    /// Writes a config with `servers` (TOML `[[server]]` tables) and starts the daemon, waiting
    /// until its API answers.
    pub async fn start(servers: &str) -> Self {
        let node = Self::configure(servers);
        let mut node = node;
        node.start_daemon().await;
        node
    }

    /// Writes the config without starting anything.
    #[must_use]
    pub fn configure(servers: &str) -> Self {
        Self::configure_with("", servers)
    }

    /// Writes the config with extra top-level keys (`top`, TOML lines) without starting anything.
    #[must_use]
    pub fn configure_with(top: &str, servers: &str) -> Self {
        Self::configure_named("test", top, servers)
    }

    /// Writes the config of a node called `name`, with extra top-level keys, without starting
    /// anything. `servers` may end with other tables (e.g. `[ha]`).
    #[must_use]
    pub fn configure_named(name: &str, top: &str, servers: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nm-test-")
            .tempdir()
            .expect("tempdir");
        let data_dir = dir.path().join("data");
        let listen = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("nm.toml");
        let tag = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let node = Self {
            dir,
            config,
            data_dir,
            listen,
            tag,
            top: top.to_owned(),
            name: name.to_owned(),
            daemon: None,
            orphans: vec![],
        };
        node.write_config(servers);
        node
    }

    /// (Re)writes `nm.toml` with `servers` (TOML `[[server]]` tables); takes effect at the next
    /// daemon start.
    pub fn write_config(&self, servers: &str) {
        let text = format!(
            "node = \"{}\"\ndata_dir = \"{}\"\nlisten = \"{}\"\n{}\n\n{servers}\n",
            self.name,
            self.data_dir.display(),
            self.listen,
            self.top
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Waits until `name` is RUNNING and returns its PID.
    pub async fn running_pid(&self, name: &str) -> i32 {
        pid_of(
            &self
                .wait_server(name, "RUNNING", |s| s.state == nm_api::ServerState::Running)
                .await,
        )
    }

    /// Starts `nm-daemon --config` without waiting for it.
    pub fn spawn_daemon(&mut self) {
        self.spawn_daemon_under(&[]);
    }

    /// Starts `WRAPPER… nm-daemon --config` (e.g. under `strace`) without waiting for it.
    ///
    /// # Panics
    /// When the program cannot be spawned.
    pub fn spawn_daemon_under(&mut self, wrapper: &[&str]) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.out"))
            .expect("daemon.out");
        let daemon = bin("nm-daemon");
        let mut cmd = match wrapper.split_first() {
            None => std::process::Command::new(&daemon),
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg(&daemon);
                c
            }
        };
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .env("NM_TEST_NODE", &self.tag)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn nm-daemon");
        self.daemon = Some(child);
    }

    /// Starts `nm-daemon --config` and waits until its socket answers.
    pub async fn start_daemon(&mut self) {
        self.spawn_daemon();
        let pid = self.daemon_pid().expect("just spawned");
        let client = self.client();
        let end = Instant::now() + DEADLINE;
        loop {
            let answered = client
                .get::<NodeStatus>("/v1/status")
                .await
                .ok()
                .is_some_and(|s| s.pid == pid as i32);
            if answered {
                return;
            }
            let exited = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < end,
                "nm-daemon {pid} never answered (exit status {exited:?})\n--- processes\n{}\n--- output\n{}\n--- nm.log\n{}",
                self.processes(),
                self.daemon_output(),
                self.read_data("nm.log"),
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The active node manager's status, from the Unix socket.
    pub async fn status(&self) -> Option<NodeStatus> {
        self.client().get::<NodeStatus>("/v1/status").await.ok()
    }

    /// Waits until the status satisfies `pred` and returns it.
    pub async fn wait_status(&self, what: &str, pred: impl Fn(&NodeStatus) -> bool) -> NodeStatus {
        let end = Instant::now() + DEADLINE;
        let mut last = None;
        loop {
            if let Some(st) = self.status().await {
                if pred(&st) {
                    return st;
                }
                last = Some(st);
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; last status {last:#?}\n--- processes\n{}\n{}\n--- nm.log\n{}\n--- standby log\n{}",
                self.processes(),
                self.daemon_output(),
                self.read_data("nm.log"),
                self.read_data("test_standby.log")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// This node's live processes, one line each (`/proc/PID/stat` up to the parent), for
    /// failure messages.
    #[must_use]
    pub fn processes(&self) -> String {
        pids_with_env(&format!("NM_TEST_NODE={}", self.tag))
            .into_iter()
            .filter_map(|p| {
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
                Some(
                    stat.split_whitespace()
                        .take(5)
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A file of the data directory as text ("" when missing).
    #[must_use]
    pub fn read_data(&self, name: &str) -> String {
        std::fs::read_to_string(self.data_dir.join(name)).unwrap_or_default()
    }

    /// Reaps the daemon this helper started, after something else killed it.
    pub fn forget_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.wait();
        }
    }

    /// The daemon's PID, if started by this helper and not known dead.
    #[must_use]
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// SIGKILL of the daemon (servers keep running), reaped. Its servers are remembered and
    /// killed when the node drops.
    pub fn kill9_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                self.orphans.extend(descendants(pid));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the daemon process to exit by itself and returns its status.
    pub async fn wait_daemon_exit(&mut self) -> std::process::ExitStatus {
        let mut c = self.daemon.take().expect("daemon started");
        wait_for("nm-daemon to exit", || {
            let st = c.try_wait().ok().flatten();
            async move { st }
        })
        .await
    }

    /// A client on the Unix socket.
    #[must_use]
    pub fn client(&self) -> Client {
        Client::new(Endpoint::Unix(self.data_dir.join("nm.sock")))
    }

    /// The API token (after the first start).
    #[must_use]
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("api.token"))
            .expect("api.token")
            .trim()
            .to_owned()
    }

    /// One server's info.
    pub async fn server(&self, name: &str) -> ServerInfo {
        self.client()
            .get(&format!("/v1/servers/{name}"))
            .await
            .expect("server info")
    }

    /// Waits until `name` satisfies `pred`, failing the test after [`DEADLINE`] with the last
    /// info seen.
    pub async fn wait_server(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&ServerInfo) -> bool,
    ) -> ServerInfo {
        let client = self.client();
        let path = format!("/v1/servers/{name}");
        let end = Instant::now() + DEADLINE;
        let mut last = None;
        loop {
            if let Ok(info) = client.get::<ServerInfo>(&path).await {
                if pred(&info) {
                    return info;
                }
                last = Some(info);
            }
            assert!(
                Instant::now() < end,
                "{name}: timed out waiting for {what}; last seen {last:#?}\n{}",
                self.daemon_output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `nm-cli --socket SOCK ARGS…` and returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(bin("nm-cli"))
            .arg("--socket")
            .arg(self.data_dir.join("nm.sock"))
            .args(args)
            .output()
            .expect("run nm-cli");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// What the daemon printed (for failure messages).
    #[must_use]
    pub fn daemon_output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.out")).unwrap_or_default()
    }
}

impl Drop for Node {
    /// Kills everything of this node, on success and on failure: the daemon's process tree, every
    /// process carrying the node's tag (servers adopted by a later daemon, a standby) and the
    /// servers orphaned by an earlier [`Node::kill9_daemon`].
    fn drop(&mut self) {
        let mut roots: Vec<Proc> = self
            .daemon
            .as_ref()
            .and_then(|c| Proc::of(i32::try_from(c.id()).ok()?))
            .into_iter()
            .collect();
        roots.append(&mut self.orphans);
        kill_trees(&roots);
        self.kill9_daemon();
        kill_tagged(&self.tag);
        kill_procs(&std::mem::take(&mut self.orphans));
    }
}

/// SIGKILL of every process whose environment carries `NM_TEST_NODE=tag`, and of everything
/// below them (a server that rewrote its environment included), as a power failure of that node
/// would: all are stopped first, so no node manager restarts a server it sees killed.
pub fn kill_tagged(tag: &str) {
    let needle = format!("NM_TEST_NODE={tag}");
    for _ in 0..50 {
        let roots: Vec<Proc> = pids_with_env(&needle)
            .into_iter()
            .filter_map(Proc::of)
            .collect();
        if roots.is_empty() {
            return;
        }
        kill_trees(&roots);
    }
}

/// PIDs whose initial environment contains the entry `kv` (`NAME=value`).
#[must_use]
pub fn pids_with_env(kv: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == kv.as_bytes()))
        })
        .collect()
}

/// Whether `pid` is alive (not a zombie).
#[must_use]
pub fn alive(pid: i32) -> bool {
    proc_state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// The one-letter state of `pid` from `/proc/PID/stat` (`S`, `T`, `Z`, …).
#[must_use]
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Polls `probe` every 20 ms until it returns `Some`, failing after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGKILL of `pid` (a server process, as a crash would).
pub fn kill9(pid: i32) {
    let p = rustix::process::Pid::from_raw(pid).expect("a positive pid");
    rustix::process::kill_process(p, rustix::process::Signal::KILL).expect("kill -9");
}

/// A running server's PID, or a panic naming the server.
#[must_use]
pub fn pid_of(info: &ServerInfo) -> i32 {
    info.pid
        .unwrap_or_else(|| panic!("{} has no pid: {info:#?}", info.name))
}

/// Sends one raw HTTP/1.1 request to `addr` and returns the answer, headers included: all of it
/// when the request says `Connection: close`, else what the first read returns.
pub async fn raw_http(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("send");
    let mut buf = Vec::new();
    if request.contains("Connection: close") {
        s.read_to_end(&mut buf).await.expect("read");
    } else {
        // a kept-alive connection is never closed by the server: the first read is the answer
        buf.resize(64 * 1024, 0);
        let n = s.read(&mut buf).await.expect("read");
        buf.truncate(n);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

impl Node {
    /// Starts `WRAPPER… nm-daemon --config` and waits until it answers; the wrapper must exec
    /// the daemon (e.g. `["env", "NM_TEST_BOOT_ID=two"]`), so the PID that answers is the one
    /// spawned.
    pub async fn start_daemon_under(&mut self, wrapper: &[&str]) {
        self.spawn_daemon_under(wrapper);
        let pid = i32::try_from(self.daemon_pid().expect("just spawned")).expect("a pid");
        self.wait_status("the daemon to answer", |s| s.pid == pid)
            .await;
    }
}
