//! Supervising a few processes from a small tokio program, without nm-daemon.
//!
//! `cargo run -p supervisor-core --example embed` starts three servers in a temporary data
//! directory, kills one with SIGKILL and watches it come back, stops another, and exits leaving
//! nothing running.

use std::sync::Arc;
use std::time::Duration;

use supervisor_core::{Command, ServerSpec, ServerState, SupervisorConfig, driver};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut ticker = ServerSpec::new(
        "ticker",
        &["sh", "-c", "while :; do echo tick; sleep 1; done"],
    )?;
    ticker.stop_timeout = Duration::from_secs(2);
    let mut crashy = ServerSpec::new("crashy", &["sleep", "1000"])?;
    crashy.restart_delay = Duration::from_millis(500);
    let idle = ServerSpec::new("idle", &["sleep", "1000"])?;

    let (sup, task) = driver::start(SupervisorConfig {
        data_dir: data.path().to_owned(),
        crash_recovery: true,
        keep_operator_stops: false,
        no_crash_recovery: vec![],
        servers: vec![Arc::new(ticker), Arc::new(crashy), Arc::new(idle)],
    })?;

    // Wait on conditions through the snapshot channel: every state change publishes one.
    let mut watch = sup.subscribe();
    let all_running = |s: &supervisor_core::Snapshot| {
        s.servers
            .values()
            .all(|v| v.view.state == ServerState::Running)
    };
    tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|s| all_running(s))).await??;
    print(&sup);

    let crashy_pid = sup
        .snapshot()
        .servers
        .values()
        .find(|s| s.view.name.as_str() == "crashy")
        .and_then(|s| s.pid);
    if let Some(pid) = crashy_pid.and_then(rustix::process::Pid::from_raw) {
        println!("\nkill -9 crashy ({pid:?})");
        rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
        let back = |s: &supervisor_core::Snapshot| {
            s.servers.values().any(|v| {
                v.view.name.as_str() == "crashy"
                    && v.view.restart_count == 1
                    && v.view.state == ServerState::Running
            })
        };
        tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|s| back(s))).await??;
        print(&sup);
    }

    println!("\nstop idle");
    sup.command("idle", Command::Stop).await??;
    let stopped = |s: &supervisor_core::Snapshot| {
        s.servers
            .values()
            .any(|v| v.view.name.as_str() == "idle" && v.view.state == ServerState::Shutdown)
    };
    tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|s| stopped(s))).await??;
    print(&sup);

    let done = sup.shutdown(true).await?;
    println!("\nshut down; stopped {:?}", done.stopped);
    task.await?;
    Ok(())
}

fn print(sup: &supervisor_core::SupervisorHandle) {
    for s in sup.snapshot().servers.values() {
        println!(
            "{:<8} {:<24} pid {:<8} restarts {}",
            s.view.name.as_str(),
            s.view.state.as_str(),
            s.pid.map_or("-".to_owned(), |p| p.to_string()),
            s.view.restart_count
        );
    }
}
