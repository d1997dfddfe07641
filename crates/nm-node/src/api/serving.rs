//! Serving the API on one listener with the limits that keep clients from starving the node
//! (issue: 20,000 idle TCP connections used every file descriptor, so the Unix socket stopped
//! answering and a crashed server could not open its log to restart).
//!
//! - A slot is taken before `accept`: a client beyond the cap waits in the kernel's backlog and
//!   holds no descriptor of ours until a slot frees.
//! - A connection that sends no complete request head within [`HEADER_TIMEOUT`] (a new one, or a
//!   kept-alive one between requests) is closed. A request being answered (a `--follow` stream)
//!   is not idle.
//! - The caps are a share of `RLIMIT_NOFILE` left after a reserve for what the supervisor needs
//!   (log files, pidfds, lock files and pipes of every server, at each spawn and restart).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

/// How long a connection may take to send a request head, and stay idle between requests.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Descriptors kept for the node itself (runtime, listeners, state files, the HA and standby
/// links, the log of the node manager) before anything is given to API clients.
const RESERVE_BASE: u64 = 64;
/// Descriptors kept per configured server: its two log files, pidfd, lock file, the pipes and the
/// copy of a rotation, a health probe.
const RESERVE_PER_SERVER: u64 = 16;

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub(crate) connections: usize,
    /// Log reads (`GET …/log`, `--follow` included) answered at once; more get 503.
    pub(crate) log_reads: usize,
}

impl Limits {
    /// The limits of the TCP listener and of the Unix socket for a node with `servers` servers
    /// under an open-file limit of `nofile` (`None`: unlimited). TCP gets a third of what is left
    /// after the reserve, the Unix socket a sixth, and each log read (a file and an inotify
    /// descriptor) comes out of an eighth of a listener's connections: at most 5/8 of the budget
    /// in all, and the Unix socket has its own slots, which TCP clients cannot take.
    pub(crate) fn for_node(servers: usize, nofile: Option<u64>) -> (Self, Self) {
        let reserve = RESERVE_BASE + RESERVE_PER_SERVER * servers as u64;
        let budget = nofile.unwrap_or(u64::MAX).saturating_sub(reserve);
        let share = |div: u64, min: u64, max: u64| {
            usize::try_from((budget / div).clamp(min, max)).unwrap_or(usize::MAX)
        };
        let tcp = share(3, 4, 4096);
        let unix = share(6, 4, 1024);
        let reads = |conns: usize| (conns / 8).clamp(2, 64);
        (
            Self {
                connections: tcp,
                log_reads: reads(tcp),
            },
            Self {
                connections: unix,
                log_reads: reads(unix),
            },
        )
    }

    /// The limits under this process's current open-file limit.
    pub(crate) fn for_this_process(servers: usize) -> (Self, Self) {
        let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        Self::for_node(servers, lim.current)
    }
}

/// Serves `router` on `listener` with at most `limits.connections` connections at once, until
/// `stop` turns true; then stops accepting (the listener is closed), asks every connection to
/// finish its request in flight and resolves when all have.
pub(crate) fn serve<L>(
    mut listener: L,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    L: axum::serve::Listener,
{
    let max = limits.connections.max(1);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(max));
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // never closed
                },
                _ = stop.wait_for(|s| *s) => break,
            };
            // axum's `accept` retries errors itself (EMFILE included, after a pause)
            let (io, _addr) = tokio::select! {
                c = listener.accept() => c,
                _ = stop.wait_for(|s| *s) => break,
            };
            let service = TowerToHyperService::new(router.clone());
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let _permit = permit; // the slot frees when the connection ends
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                let conn = builder.serve_connection(TokioIo::new(io), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = stop.wait_for(|s| *s) => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            });
        }
        drop(listener);
        // every connection holds a slot: all of them back means all connections are done
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        let _ = slots.acquire_many(all).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::Limits;

    #[test]
    fn the_caps_leave_the_reserve_and_the_unix_socket_its_own_share() {
        let (tcp, unix) = Limits::for_node(2, Some(256));
        // 256 - (64 + 2 * 16) = 160 left
        assert_eq!(tcp.connections, 53);
        assert_eq!(unix.connections, 26);
        assert_eq!((tcp.log_reads, unix.log_reads), (6, 3));
        let used = tcp.connections + unix.connections + 2 * (tcp.log_reads + unix.log_reads);
        assert!(used <= 160, "{used}");

        let (tcp, unix) = Limits::for_node(1000, Some(1024));
        assert_eq!((tcp.connections, unix.connections), (4, 4));
        assert_eq!((tcp.log_reads, unix.log_reads), (2, 2));

        let (tcp, unix) = Limits::for_node(3, None);
        assert_eq!((tcp.connections, unix.connections), (4096, 1024));
        assert_eq!((tcp.log_reads, unix.log_reads), (64, 64));
    }
}
