//! HA failover benchmark (docs/benchmarks.md): a power failure of the primary node — its
//! nm-daemon and every process it started SIGKILLed at once — until the HA-managed server is
//! `RUNNING` on the secondary. That is the peer timeout (detection), the fence command (here a
//! script that only records), and the start of the server. Roles alternate: the killed node's
//! daemon is restarted and rejoins as secondary before the next trial.
//!
//! `bench/ha-failover.sh` builds the release binaries and runs it:
//! `ha-failover-bench [--trials N] [--peer-timeout DURATION]`.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock
#![allow(clippy::unwrap_used)] // a benchmark's failure is a panic with the reason

use std::time::{Duration, Instant};

use nm_api::{HaStatus, ServerInfo, ServerState};
use nm_tests::ha::{Pair, wait_ha};
use nm_tests::{Node, kill_tagged};

fn args() -> (usize, String) {
    let (mut trials, mut timeout) = (20, "1s".to_owned());
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--trials" => trials = value.parse().expect("--trials N"),
            "--peer-timeout" => timeout.clone_from(value),
            other => panic!("unknown argument {other}"),
        }
    }
    (trials, timeout)
}

async fn running(n: &Node) -> bool {
    n.client()
        .get::<ServerInfo>("/v1/servers/hadb")
        .await
        .is_ok_and(|s| s.state == ServerState::Running)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (trials, peer_timeout) = args();
    let mut p = Pair::start_with(&peer_timeout).await;
    p.n1.cli(&["ha", "start"]);
    let mut primary_is_n1 = true;
    let mut samples = vec![];
    for t in 0..trials {
        let (prim, sec) = if primary_is_n1 {
            (&mut p.n1, &mut p.n2)
        } else {
            (&mut p.n2, &mut p.n1)
        };
        wait_ha(sec, "secondary, the peer primary", |r| {
            r.report.communicating
                && r.report.local.status == Some(HaStatus::Running)
                && r.report.peer.status == Some(HaStatus::Primary)
        })
        .await;
        assert!(
            running(prim).await,
            "trial {t}: hadb not running on the primary"
        );
        let t0 = Instant::now();
        kill_tagged(&prim.tag);
        prim.forget_daemon();
        let deadline = t0 + Duration::from_secs(60);
        while !running(sec).await {
            assert!(Instant::now() < deadline, "trial {t}: no takeover in 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let took = t0.elapsed();
        samples.push(ms(took));
        eprintln!("trial {t}: {:.1} ms", ms(took));
        prim.start_daemon().await;
        primary_is_n1 = !primary_is_n1;
    }
    let fences = p.events().iter().filter(|e| e.starts_with("fence")).count();
    assert_eq!(fences, trials, "one fence per failover: {:?}", p.events());
    samples.sort_by(f64::total_cmp);
    println!(
        "ha failover (peer_timeout {peer_timeout}, heartbeat 100ms, {trials} trials): \
         min {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples[0],
        pct(&samples, 50.0),
        pct(&samples, 99.0),
        samples[samples.len() - 1]
    );
}
