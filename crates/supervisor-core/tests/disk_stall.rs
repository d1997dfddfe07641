//! A disk that stops answering does not stop the runtime's thread: the supervisor driver waits
//! for its lock-file writes on the ordered writer, while other tasks on the same current-thread
//! runtime (the daemon's heartbeats and HA link, here a loopback echo) go on. And the safety
//! ordering holds through the stall: a start's token is durable before its process exists.
//!
//! The stall is [`OrderedWriter::stall`]: the writer thread is held, as by a disk whose `fsync`
//! does not return.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use supervisor_core::driver::{self, lockfile::LockRecord};
use supervisor_core::os::OrderedWriter;
use supervisor_core::{Accepted, Command, ServerSpec, ServerState, SupervisorConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(20);

/// PIDs of processes whose environment holds `key=value`.
fn processes_with_env(key: &str, value: &str) -> Vec<i32> {
    let want = format!("{key}={value}").into_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == want.as_slice()))
        })
        .collect()
}

fn env_of(pid: i32, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Waits (yielding to the runtime) until `cond` holds; fails after `T`.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(T, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// `rounds` echo round trips over loopback, served and driven by tasks of this runtime.
async fn echo_round_trips(rounds: usize) -> usize {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 8];
        while s.read_exact(&mut buf).await.is_ok() {
            s.write_all(&buf).await.unwrap();
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut done = 0;
    for i in 0..rounds {
        let ping = u64::try_from(i).unwrap().to_be_bytes();
        c.write_all(&ping).await.unwrap();
        let mut pong = [0u8; 8];
        c.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, ping);
        done += 1;
    }
    drop(c);
    server.await.unwrap();
    done
}

fn lock_file(data: &Path) -> std::path::PathBuf {
    data.join("servers").join("sleeper.lock")
}

#[tokio::test] // current_thread, as the daemon runs
async fn the_runtime_thread_stays_responsive_while_a_lock_file_write_is_stalled() {
    let data = tempfile::tempdir().unwrap();
    let mark = data.path().display().to_string();
    let mut spec = ServerSpec::new("sleeper", &["sleep", "600"]).unwrap();
    spec.auto_start = false;
    spec.env.insert("NM_TEST_DISK_STALL".into(), mark.clone());
    let writer = OrderedWriter::start("test-lock-writer").unwrap();
    let (sup, task) = driver::start_with_writer(
        SupervisorConfig {
            data_dir: data.path().to_owned(),
            crash_recovery: true,
            keep_operator_stops: false,
            no_crash_recovery: vec![],
            servers: vec![Arc::new(spec)],
        },
        writer.clone(),
    )
    .unwrap();
    // one answer from the driver: its run loop is past recovery's writes
    assert_eq!(
        sup.command("sleeper", Command::Stop).await.unwrap(),
        Ok(Accepted::AlreadyDone)
    );

    // the disk stops answering; an operator starts the server, whose first start must write
    // its token's reservation before it spawns
    let stall = writer.stall();
    let start = tokio::spawn({
        let sup = sup.clone();
        async move { sup.command("sleeper", Command::Start).await }
    });
    wait_until("the driver queued the reservation", || writer.queued() == 1).await;

    // this thread is free: a loopback echo on it completes every round trip
    assert_eq!(echo_round_trips(50).await, 50);
    assert_eq!(sup.snapshot().servers.len(), 1, "the handle still answers");
    // ...while the start waits for the disk: no answer, no lock file, and no process yet
    assert!(
        !start.is_finished(),
        "the start was answered before its write"
    );
    assert!(!lock_file(data.path()).exists());
    assert_eq!(
        processes_with_env("NM_TEST_DISK_STALL", &mark),
        Vec::<i32>::new(),
        "a process exists before its token is durable"
    );

    // the disk answers again: the start completes, and the lock file names the process by the
    // token it runs with
    drop(stall);
    let answer = tokio::time::timeout(T, start).await.unwrap().unwrap();
    assert_eq!(answer, Ok(Ok(Accepted::Changed)));
    let mut snapshots = sup.subscribe();
    let running = tokio::time::timeout(
        T,
        snapshots.wait_for(|s| {
            s.servers
                .values()
                .all(|v| v.view.state == ServerState::Running)
        }),
    )
    .await
    .unwrap()
    .unwrap();
    let pid = running.servers.values().next().unwrap().pid.unwrap();
    drop(running);
    let record: LockRecord =
        serde_json::from_slice(&std::fs::read(lock_file(data.path())).unwrap()).unwrap();
    assert_eq!(record.pid, pid);
    // (the kernel lets posix_spawn return before exec has laid out the new environment)
    wait_until("the server's environment is readable", || {
        env_of(pid, "NM_SERVER_TOKEN").is_some()
    })
    .await;
    assert_eq!(env_of(pid, "NM_SERVER_TOKEN"), Some(record.token));
    assert_eq!(
        processes_with_env("NM_TEST_DISK_STALL", &mark),
        vec![pid],
        "one process"
    );

    let stopped = sup.shutdown(true).await.unwrap();
    assert_eq!(stopped.stopped, vec!["sleeper".to_owned()]);
    task.await.unwrap();
    assert!(!lock_file(data.path()).exists(), "a clean stop removes it");
}

#[tokio::test]
async fn started_resolves_once_recoverys_starts_are_spawned_however_slow_the_disk() {
    let data = tempfile::tempdir().unwrap();
    let spec = ServerSpec::new("sleeper", &["sleep", "600"]).unwrap(); // auto_start
    let writer = OrderedWriter::start("test-lock-writer").unwrap();
    let stall = writer.stall(); // before the daemon starts
    let (sup, task) = driver::start_with_writer(
        SupervisorConfig {
            data_dir: data.path().to_owned(),
            crash_recovery: true,
            keep_operator_stops: false,
            no_crash_recovery: vec![],
            servers: vec![Arc::new(spec)],
        },
        writer.clone(),
    )
    .unwrap();
    let started = tokio::spawn({
        let sup = sup.clone();
        async move { sup.started().await }
    });
    wait_until("the driver waits on the disk", || writer.queued() >= 1).await;
    assert_eq!(echo_round_trips(20).await, 20);
    assert!(
        !started.is_finished(),
        "started before its first start was spawned"
    );
    assert_eq!(
        sup.snapshot().servers.values().next().unwrap().view.state,
        ServerState::Starting
    );
    drop(stall);
    tokio::time::timeout(T, started).await.unwrap().unwrap();
    let snapshot = sup.snapshot();
    let server = snapshot.servers.values().next().unwrap();
    assert_eq!(server.view.state, ServerState::Running);
    assert!(server.pid.is_some());
    sup.started().await; // at once, from now on
    sup.shutdown(true).await.unwrap();
    task.await.unwrap();
}
