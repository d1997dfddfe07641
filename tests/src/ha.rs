//! A two-node HA pair (the StorNext HA Manager) on loopback for tests and benchmarks: node1 on 127.0.0.1,
//! node2 on 127.0.0.2, one cluster key, a fence command that records what it fenced in an events
//! log (and succeeds: the "power-off" is the caller's kill), an HA-managed server `hadb` and a
//! plain server `web`.

#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

use std::os::unix::fs::PermissionsExt;

use nm_api::{HaReply, HaStatus};

use crate::{Node, alive, free_port, pids_with_env, wait_for};

/// Two nodes with everything they share: the cluster key, the fence script and the events log.
pub struct Pair {
    /// The cluster key, the fence script, the events log.
    pub shared: tempfile::TempDir,
    /// node1 (127.0.0.1).
    pub n1: Node,
    /// node2 (127.0.0.2).
    pub n2: Node,
    /// The `[ha] listen` ports of node1 and node2.
    pub ports: [u16; 2],
}

/// The events log: `fence PEER by NODE` and `start NODE` lines, in order.
#[must_use]
pub fn events_path(shared: &tempfile::TempDir) -> std::path::PathBuf {
    shared.path().join("events")
}

impl Pair {
    /// Configures both nodes (nothing started): `hadb` is the HA-managed server's command (a
    /// TOML array, where the word `EVENTS` stands for the events log's path), `peer_timeout` the
    /// `[ha] peer_timeout`.
    ///
    /// # Panics
    /// When the temporary files cannot be written.
    #[must_use]
    pub fn configure(hadb: &str, peer_timeout: &str) -> Self {
        let shared = tempfile::Builder::new().prefix("nm-ha-").tempdir().unwrap();
        let key = shared.path().join("cluster.key");
        std::fs::write(&key, b"0123456789abcdef0123456789abcdef").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let events = events_path(&shared);
        let fence = shared.path().join("fence.sh");
        std::fs::write(
            &fence,
            format!(
                "#!/bin/sh\necho \"fence $NM_HA_PEER by $NM_HA_NODE\" >> {}\n",
                events.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fence, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ports = [free_port(), free_port()];
        let hadb = hadb.replace("EVENTS", &events.display().to_string());
        let node = |i: usize| {
            let (me, peer) = (i + 1, 2 - i);
            let servers = format!(
                "[[server]]\nname = \"hadb\"\ncommand = {hadb}\nenv = {{ NODE = \"node{me}\" }}\n\
                 auto_restart = false\n\n\
                 [[server]]\nname = \"web\"\ncommand = [\"sleep\", \"1001\"]\n\n\
                 [ha]\npeer = \"node{peer}\"\npeer_address = \"127.0.0.{peer}:{}\"\n\
                 listen = \"127.0.0.{me}:{}\"\nservers = [\"hadb\"]\nfence_command = [\"{}\"]\n\
                 heartbeat = \"100ms\"\npeer_timeout = \"{peer_timeout}\"\nfence_retry = \"1s\"\n",
                ports[peer - 1],
                ports[me - 1],
                fence.display(),
            );
            Node::configure_named(
                &format!("node{me}"),
                &format!("cluster_key_file = \"{}\"", key.display()),
                &servers,
            )
        };
        Self {
            n1: node(0),
            n2: node(1),
            shared,
            ports,
        }
    }

    /// A pair whose HA-managed server records its start in the events log; the peer timeout is
    /// 1 s.
    pub async fn start() -> Self {
        Self::start_with("1s").await
    }

    /// [`Pair::start`] with another peer timeout.
    pub async fn start_with(peer_timeout: &str) -> Self {
        let mut p = Self::configure(
            "[\"sh\", \"-c\", \"echo start $NODE >> EVENTS; exec sleep 1000\"]",
            peer_timeout,
        );
        p.n1.start_daemon().await;
        p.n2.start_daemon().await;
        p.wait_linked().await;
        p
    }

    /// Waits until each node sees the other communicate.
    pub async fn wait_linked(&self) {
        for n in [&self.n1, &self.n2] {
            wait_ha(n, "the peer to communicate", |r| r.report.communicating).await;
        }
    }

    /// `nm-cli ha start` on node1, then waits until node1 is primary with `hadb` running and
    /// node2 is the armed secondary.
    ///
    /// # Panics
    /// When the command fails.
    pub async fn arm_node1(&self) {
        let (code, out, err) = self.n1.cli(&["ha", "start"]);
        assert_eq!(code, 0, "ha start: {out}{err}");
        self.n1.running_pid("hadb").await;
        wait_ha(&self.n2, "the armed secondary", |r| {
            r.report.communicating && r.report.local.status == Some(HaStatus::Running)
        })
        .await;
    }

    /// The events log's `fence …` lines: fence commands that ran.
    #[must_use]
    pub fn fences(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e.starts_with("fence"))
            .collect()
    }

    /// The events log's lines.
    #[must_use]
    pub fn events(&self) -> Vec<String> {
        std::fs::read_to_string(events_path(&self.shared))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Live `hadb` processes, by node name.
    #[must_use]
    pub fn hadb(&self) -> Vec<&'static str> {
        let mut on = vec![];
        for pid in pids_with_env("NM_SERVER_NAME=hadb") {
            if !alive(pid) {
                continue;
            }
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let env = String::from_utf8_lossy(&env);
            if env.contains(&format!("NM_TEST_NODE={}\0", self.n1.tag)) {
                on.push("node1");
            } else if env.contains(&format!("NM_TEST_NODE={}\0", self.n2.tag)) {
                on.push("node2");
            }
        }
        on.sort_unstable();
        on
    }

    /// The events and both nm.logs, for failure messages.
    #[must_use]
    pub fn logs(&self) -> String {
        format!(
            "--- events\n{}\n--- node1 nm.log\n{}\n--- node2 nm.log\n{}",
            self.events().join("\n"),
            self.n1.read_data("nm.log"),
            self.n2.read_data("nm.log")
        )
    }
}

/// The node's HA report (`GET /v1/ha`), if it answers.
pub async fn ha(n: &Node) -> Option<HaReply> {
    n.client().get::<HaReply>("/v1/ha").await.ok()
}

/// Waits until the node's HA report satisfies `pred`.
pub async fn wait_ha(n: &Node, what: &str, pred: impl Fn(&HaReply) -> bool) -> HaReply {
    let what = format!("{}: {what}", n.name);
    wait_for(&what, || async { ha(n).await.filter(|r| pred(r)) }).await
}

/// SIGTERM of the node's daemon (a planned stop: `systemctl stop`), then waits until it exits
/// and returns its status.
///
/// # Panics
/// When the daemon was not started by the harness.
pub async fn sigterm_daemon(n: &mut Node) -> std::process::ExitStatus {
    let pid = n.daemon_pid().expect("a daemon started by the harness");
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    n.wait_daemon_exit().await
}
