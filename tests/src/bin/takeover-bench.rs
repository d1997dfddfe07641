//! Takeover benchmark (docs/benchmarks.md): how long the node's API is gone when its node
//! manager dies.
//!
//! - `takeover`: kill -9 of the active → the new active (the standby) answers `GET /v1/status` on
//!   the TCP API address. Each trial waits for the fresh standby to attach before the next.
//! - `hung`: SIGSTOP of the active → the standby fences it after `standby_timeout` and answers.
//! - `respawn`: the same node without a standby, its nm-daemon restarted at once by an outer
//!   supervisor (this program, like systemd's `Restart=always`, `RestartSec=0`) → the new daemon
//!   answers. The baseline a standby is meant to beat.
//!
//! `bench/takeover.sh` builds the release binaries and runs it:
//! `takeover-bench [--trials N] [--hung-trials N] [--servers N]`.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock
#![allow(clippy::unwrap_used)] // a benchmark's failure is a panic with the reason

use std::time::{Duration, Instant};

use nm_api::NodeStatus;
use nm_api::client::{Client, Endpoint};
use nm_tests::{Node, free_port, kill9};

struct Args {
    trials: usize,
    hung_trials: usize,
    servers: usize,
}

fn args() -> Args {
    let mut a = Args {
        trials: 200,
        hung_trials: 10,
        servers: 10,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--trials" => a.trials = value,
            "--hung-trials" => a.hung_trials = value,
            "--servers" => a.servers = value,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn servers(n: usize) -> String {
    (0..n)
        .map(|i| format!("[[server]]\nname = \"s{i}\"\ncommand = [\"sleep\", \"100000\"]\n\n"))
        .collect()
}

fn tcp(node: &Node) -> Client {
    Client::new(Endpoint::Tcp {
        addr: node.listen.clone(),
        token: node.token(),
    })
}

/// Polls the TCP API every 200 µs until a daemon other than `old` answers; the elapsed time.
async fn answered_by_other(api: &Client, old: i32, t0: Instant) -> (Duration, NodeStatus) {
    loop {
        if let Ok(st) = api.get::<NodeStatus>("/v1/status").await {
            if st.pid != old {
                return (t0.elapsed(), st);
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no takeover within 30 s"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn attached(node: &Node) -> NodeStatus {
    node.wait_status("the standby to attach", |s| {
        s.standby
            .as_ref()
            .is_some_and(|sb| sb.state == "attached" && sb.pid.is_some())
    })
    .await
}

fn summary(name: &str, mut xs: Vec<Duration>) -> String {
    xs.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let q = |p: f64| ms(xs[((xs.len() - 1) as f64 * p).round() as usize]);
    format!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        xs.len(),
        ms(xs[0]),
        q(0.5),
        q(0.9),
        q(0.99),
        ms(xs[xs.len() - 1])
    )
}

async fn takeover(a: &Args) -> Vec<Duration> {
    let mut node = Node::configure_with(
        &format!("standby_port = {}\n", free_port()),
        &servers(a.servers),
    );
    node.start_daemon().await;
    let api = tcp(&node);
    let mut times = Vec::with_capacity(a.trials);
    for trial in 0..a.trials {
        let st = attached(&node).await;
        let t0 = Instant::now();
        if trial == 0 {
            node.kill9_daemon(); // our child
        } else {
            kill9(st.pid);
        }
        let (dt, new) = answered_by_other(&api, st.pid, t0).await;
        assert_eq!(Some(new.pid), st.standby_pid, "the standby took over");
        assert_eq!(new.takeovers, trial as u64 + 1);
        assert_eq!(new.servers.get("RUNNING"), Some(&a.servers), "servers kept");
        times.push(dt);
    }
    times
}

async fn hung(a: &Args) -> (Vec<Duration>, Duration) {
    let mut node = Node::configure_with(
        &format!("standby_port = {}\n", free_port()),
        &servers(a.servers),
    );
    node.start_daemon().await;
    let api = tcp(&node);
    let timeout = Duration::from_secs(3); // the default standby_timeout
    let mut times = Vec::with_capacity(a.hung_trials);
    for trial in 0..a.hung_trials {
        let st = attached(&node).await;
        let p = rustix::process::Pid::from_raw(st.pid).unwrap();
        let t0 = Instant::now();
        rustix::process::kill_process(p, rustix::process::Signal::STOP).unwrap();
        let (dt, new) = answered_by_other(&api, st.pid, t0).await;
        assert_eq!(new.last_takeover.unwrap().reason, "fenced");
        if trial == 0 {
            node.forget_daemon();
        }
        times.push(dt);
    }
    (times, timeout)
}

async fn respawn(a: &Args) -> Vec<Duration> {
    let mut node = Node::configure(&servers(a.servers));
    node.start_daemon().await;
    let api = tcp(&node);
    let mut times = Vec::with_capacity(a.trials);
    for _ in 0..a.trials {
        let old = node.daemon_pid().unwrap() as i32;
        let t0 = Instant::now();
        node.kill9_daemon(); // kill -9 and reap, as the outer supervisor would see it
        node.spawn_daemon();
        let (dt, new) = answered_by_other(&api, old, t0).await;
        assert_eq!(
            new.servers.get("RUNNING"),
            Some(&a.servers),
            "servers adopted"
        );
        times.push(dt);
    }
    times
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    println!(
        "{} servers per node; times from the kill (or SIGSTOP) to the first answer of the new daemon on the TCP API, in ms\n",
        a.servers
    );
    println!("| case | trials | min | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|");
    let t = takeover(&a).await;
    println!("{}", summary("kill -9 of the active → standby answers", t));
    let r = respawn(&a).await;
    println!(
        "{}",
        summary("kill -9, no standby → respawned daemon answers", r)
    );
    let (h, timeout) = hung(&a).await;
    println!(
        "{}",
        summary(
            &format!(
                "SIGSTOP of the active → fenced after standby_timeout ({}s) → standby answers",
                timeout.as_secs()
            ),
            h
        )
    );
}
