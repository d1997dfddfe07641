//! A panic anywhere ends the daemon at once with [`EXIT_PANIC`].
//!
//! tokio catches a panic in a task and only reports it to whoever awaits the task, so without
//! this a panicked supervisor or HA task left a daemon half alive: its API answering "shutting
//! down" to every command, `server list` showing a dead server as `RUNNING` (issue 12 §4). A
//! daemon that is gone is safer than one that lies: its servers keep running, as after a
//! `kill -9`, the standby (with `standby_port`) takes over at once, and the next daemon adopts
//! them; an HA peer sees silence and fences this node.

/// Exit status after a panic (`EX_SOFTWARE` of sysexits.h: an internal software error).
pub(crate) const EXIT_PANIC: u8 = 70;

/// Installs the hook: the panic is printed as Rust prints it (stderr, with the location), then
/// logged, then the process exits with [`EXIT_PANIC`], whichever thread or task panicked.
pub(crate) fn exit_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // stderr first: it needs no lock the panicking code may hold
        print(info);
        tracing::error!("internal error: {info}; nm-daemon exits with status {EXIT_PANIC}");
        std::process::exit(i32::from(EXIT_PANIC));
    }));
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use super::*;

    /// Set in the child process that panics.
    const CHILD: &str = "NM_DAEMON_PANIC_TEST_CHILD";

    #[test]
    fn a_panic_in_a_task_ends_the_process_with_exit_70() {
        if std::env::var_os(CHILD).is_some() {
            exit_on_panic();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // tokio would hand this panic to the JoinHandle and keep running
                let _ = tokio::spawn(async { panic!("a task's invariant broke") }).await;
                let _ = tokio::time::timeout(Duration::from_secs(30), std::future::pending::<()>())
                    .await;
            });
            return; // exit 0: the parent's assertion fails
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "panic::tests::a_panic_in_a_task_ends_the_process_with_exit_70",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(i32::from(EXIT_PANIC)), "{stderr}");
        assert!(stderr.contains("a task's invariant broke"), "{stderr}");
    }
}
