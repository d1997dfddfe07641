//! The active's side of the pair: the standby port, launching and replacing the standby, the
//! link's heartbeats, and the pair's ordered shutdown.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nm_wire::admission::{self, Gate};

use supervisor_core::driver::{PinnedProcess, start_time_of};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{now, sleep_until};
use crate::core::{Keeper, KeeperAction, KeeperEvent, Pid, StandbyView, Timing};
use crate::link::{self, LinkEvent, LinkWriter, Msg, Pending, Welcome};

/// What the active's side needs.
#[derive(Debug, Clone)]
pub struct ActiveConfig {
    /// The node's standby key.
    pub key: Vec<u8>,
    /// Heartbeat timing.
    pub timing: Timing,
    /// The program that runs a standby (this daemon's own executable).
    pub program: PathBuf,
    /// Its arguments (e.g. `--config nm.toml --standby`).
    pub args: Vec<OsString>,
    /// Where the standby's stderr goes (appended): early errors before its log is open.
    pub stderr: Option<PathBuf>,
    /// Takeovers since the pair started (0 for a fresh start).
    pub takeovers: u64,
    /// When the pair started (unix ms), kept across takeovers.
    pub pair_started_ms: u64,
}

/// The pair as `nm-cli status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairStatus {
    /// The standby as the active sees it.
    pub standby: StandbyView,
    /// Takeovers since the pair started.
    pub takeovers: u64,
    /// When the pair started (unix ms).
    pub pair_started_ms: u64,
    /// The standby port actually bound.
    pub port: u16,
    /// Frames and handshakes dropped for failing authentication or decoding.
    pub rejected: u64,
}

/// Reaches the active's replication task.
#[derive(Debug, Clone)]
pub struct ActiveHandle {
    shutdown: mpsc::Sender<oneshot::Sender<()>>,
    status: watch::Receiver<PairStatus>,
}

impl ActiveHandle {
    /// Stops the pair's replication in order: tells the standby to terminate and waits until it
    /// has exited (killed after the timeout if it does not go). Only then may the active exit
    /// without a takeover.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shutdown.send(tx).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The pair's current status.
    pub fn status(&self) -> PairStatus {
        *self.status.borrow()
    }
}

enum Input {
    Attaching(Box<Pending>, PinnedProcess),
    Rejected(String),
    Exited(Pid, String),
}

/// Binds the standby port on loopback (`0`: any free port). Bind it before anything else starts,
/// so a busy port starts nothing; hand it to [`start_active`] once the active is ready.
pub async fn bind_standby_port(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
}

/// Launches the first standby and runs the active's side on `listener` (from
/// [`bind_standby_port`]) until [`ActiveHandle::shutdown`] completes.
pub fn start_active(
    cfg: ActiveConfig,
    listener: TcpListener,
) -> io::Result<(ActiveHandle, JoinHandle<()>)> {
    let port = listener.local_addr()?.port();
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let welcome = Welcome {
        pid: me,
        start_time: start_time_of(me)?,
        takeovers: cfg.takeovers,
        pair_started_ms: cfg.pair_started_ms,
    };
    let t = now();
    let core = Keeper::new(t, cfg.timing);
    let status = PairStatus {
        standby: core.view(),
        takeovers: cfg.takeovers,
        pair_started_ms: cfg.pair_started_ms,
        port,
        rejected: 0,
    };
    let (status_tx, status_rx) = watch::channel(status);
    let (shutdown_tx, shutdown_rx) = mpsc::channel(4);
    let (tx, rx) = mpsc::unbounded_channel();
    let (link_tx, link_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(
        Driver {
            cfg,
            welcome,
            core,
            status: status_tx,
            writer: None,
            procs: HashMap::new(),
            children: HashMap::new(),
            rejected: 0,
            tx,
            link_tx,
        }
        .run(listener, shutdown_rx, rx, link_rx),
    );
    Ok((
        ActiveHandle {
            shutdown: shutdown_tx,
            status: status_rx,
        },
        task,
    ))
}

struct Driver {
    cfg: ActiveConfig,
    welcome: Welcome,
    core: Keeper,
    status: watch::Sender<PairStatus>,
    /// The attached standby's PID and the sending half of its link.
    writer: Option<(Pid, LinkWriter)>,
    /// Every standby process we know of, pinned (our children and attached strangers).
    procs: HashMap<Pid, PinnedProcess>,
    /// Our own standby children, killed through their reaping task (exact until reaped, even
    /// when pinning failed).
    children: HashMap<Pid, oneshot::Sender<()>>,
    rejected: u64,
    tx: mpsc::UnboundedSender<Input>,
    link_tx: mpsc::UnboundedSender<(Pid, LinkEvent)>,
}

impl Driver {
    async fn run(
        mut self,
        listener: TcpListener,
        mut shutdown_rx: mpsc::Receiver<oneshot::Sender<()>>,
        mut rx: mpsc::UnboundedReceiver<Input>,
        mut link_rx: mpsc::UnboundedReceiver<(Pid, LinkEvent)>,
    ) {
        let accept = tokio::spawn(accept_loop(
            listener,
            self.cfg.key.clone(),
            self.cfg.timing,
            self.tx.clone(),
        ));
        let mut waiting: Vec<oneshot::Sender<()>> = vec![];
        self.core.on_start(now());
        loop {
            self.execute().await;
            if self.core.is_complete() {
                break;
            }
            let deadline = self.core.next_deadline();
            tokio::select! {
                Some(reply) = shutdown_rx.recv() => {
                    waiting.push(reply);
                    self.core.on_shutdown(now());
                }
                Some(input) = rx.recv() => match input {
                    Input::Attaching(pending, pinned) => self.attach(*pending, pinned).await,
                    Input::Rejected(why) => {
                        self.rejected += 1;
                        // anyone local can connect: keep the log from being filled
                        if self.rejected <= 10 || self.rejected.is_power_of_two() {
                            tracing::warn!(%why, rejected = self.rejected, "refused a connection on the standby port");
                        }
                    }
                    Input::Exited(pid, how) => {
                        self.procs.remove(&pid);
                        self.children.remove(&pid);
                        if self.writer.as_ref().is_some_and(|(p, _)| *p == pid) {
                            self.writer = None;
                        }
                        self.core.on_standby_exited(now(), pid, how);
                    }
                },
                Some((pid, ev)) = link_rx.recv() => match ev {
                    LinkEvent::Msg(Msg::Heartbeat) => self.core.on_heard(now(), pid),
                    LinkEvent::Msg(Msg::Shutdown) => {
                        self.rejected += 1;
                        tracing::warn!(pid, "a standby sent a shutdown: ignored");
                    }
                    LinkEvent::Rejected(why) => {
                        self.rejected += 1;
                        tracing::warn!(pid, %why, "dropped a frame from the standby link");
                    }
                    LinkEvent::Closed(why) => {
                        if self.writer.as_ref().is_some_and(|(p, _)| *p == pid) {
                            self.writer = None;
                        }
                        self.core.on_link_lost(now(), pid, why);
                    }
                },
                () = sleep_until(deadline) => self.core.on_timeout(now()),
            }
        }
        accept.abort();
        for reply in waiting {
            let _ = reply.send(());
        }
        // later shutdown requests find the pair already stopped
        while let Ok(reply) = shutdown_rx.try_recv() {
            let _ = reply.send(());
        }
    }

    async fn execute(&mut self) {
        loop {
            while let Some(ev) = self.core.poll_event() {
                log_event(&ev);
            }
            let Some(action) = self.core.poll_action() else {
                break;
            };
            match action {
                KeeperAction::SpawnStandby => match self.spawn() {
                    Ok(pid) => self.core.on_spawned(now(), pid),
                    Err(e) => self.core.on_spawn_failed(now(), e.to_string()),
                },
                KeeperAction::SendHeartbeat => self.send(Msg::Heartbeat).await,
                KeeperAction::SendShutdown => {
                    tracing::info!("telling the standby node manager to terminate");
                    self.send(Msg::Shutdown).await;
                }
                KeeperAction::Kill { pid } => {
                    if is_me(pid) {
                        continue;
                    }
                    if let Some(kill) = self.children.remove(&pid) {
                        let _ = kill.send(());
                    } else if let Some(p) = self.procs.get(&pid) {
                        if let Err(e) = p.kill() {
                            tracing::error!(pid, error = %e, "cannot kill the standby");
                        }
                    }
                }
                KeeperAction::ShutdownComplete => {
                    tracing::info!("the standby node manager is gone");
                }
            }
        }
        let status = PairStatus {
            standby: self.core.view(),
            takeovers: self.welcome.takeovers,
            pair_started_ms: self.welcome.pair_started_ms,
            port: self.status.borrow().port,
            rejected: self.rejected,
        };
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }

    async fn send(&mut self, msg: Msg) {
        if let Some((pid, w)) = self.writer.as_mut() {
            let pid = *pid;
            if let Err(e) = w.send(msg).await {
                self.writer = None;
                self.core
                    .on_link_lost(now(), pid, format!("cannot send to the standby: {e}"));
            }
        }
    }

    /// Launches a standby: our child in a process group of its own (a terminal's Ctrl-C for
    /// the active does not reach it), pinned at once, reaped by a task that reports its exit.
    fn spawn(&mut self) -> io::Result<Pid> {
        let stderr = match &self.cfg.stderr {
            // `<node>_standby.log` in the data directory: 0640, never through a planted link
            Some(path) => {
                supervisor_core::os::open_append_nofollow(path, 0o640).map(Stdio::from)?
            }
            None => Stdio::null(),
        };
        let mut child = tokio::process::Command::new(&self.cfg.program)
            .args(&self.cfg.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| io::Error::other("the standby exited at once"))?;
        // our unreaped child: its PID cannot be reused, so pinning needs no identity check
        match PinnedProcess::open(pid, None) {
            Ok(p) => {
                self.procs.insert(pid, p);
            }
            Err(e) => tracing::warn!(pid, error = %e, "cannot pin the standby"),
        }
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        self.children.insert(pid, kill_tx);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                st = child.wait() => st,
                asked = kill_rx => {
                    if asked.is_ok() {
                        let _ = child.start_kill();
                    }
                    child.wait().await
                }
            };
            let how = match status {
                Ok(st) => describe(st),
                Err(e) => format!("unknown ({e})"),
            };
            let _ = tx.send(Input::Exited(pid, how));
        });
        Ok(pid)
    }

    async fn attach(&mut self, pending: Pending, pinned: PinnedProcess) {
        let pid = pending.pid;
        if let Err(e) = self.core.on_attach(now(), pid) {
            tracing::info!(pid, reason = %e, "refused a standby");
            pending.refuse(&e.to_string()).await;
            return;
        }
        match pending.welcome(self.welcome).await {
            Ok((reader, writer)) => {
                reader.spawn(pid, self.link_tx.clone());
                self.writer = Some((pid, writer));
                if let std::collections::hash_map::Entry::Vacant(v) = self.procs.entry(pid) {
                    // not our child (started by hand): watch its exit through the pidfd
                    let p = v.insert(pinned).clone();
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        p.exited().await;
                        let _ = tx.send(Input::Exited(pid, "exited".into()));
                    });
                }
            }
            Err(e) => self.core.on_link_lost(now(), pid, e.to_string()),
        }
    }
}

/// Accepts standbys on the standby port. Anyone local can connect: a connection handshakes in a
/// bounded pool ([`nm_wire::admission`]: per source address and in total, a newcomer evicting
/// the oldest of the busiest source, every eviction counted) within
/// [`admission::handshake_deadline`] of the heartbeat, so idle or garbage connections can
/// neither pile up descriptors and tasks nor keep a new standby from attaching. An attached
/// standby's link lives with the driver, outside the pool.
async fn accept_loop(
    listener: TcpListener,
    key: Vec<u8>,
    timing: Timing,
    tx: mpsc::UnboundedSender<Input>,
) {
    let deadline = admission::handshake_deadline(timing.heartbeat);
    accept_with(listener, key, deadline, tx).await;
}

/// [`accept_loop`] with the handshake deadline given (tests give strangers all the time they
/// want).
async fn accept_with(
    listener: TcpListener,
    key: Vec<u8>,
    deadline: Duration,
    tx: mpsc::UnboundedSender<Input>,
) {
    let handshakes = Gate::handshakes();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // e.g. out of descriptors: do not spin on it
                tracing::warn!(error = %e, "cannot accept on the standby port");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (mut slot, evicted) = handshakes.admit(peer.ip());
        if let Some(e) = evicted {
            let _ = tx.send(Input::Rejected(format!(
                "{}: handshake slots full: its oldest unauthenticated connection closed",
                e.source
            )));
        }
        let _ = stream.set_nodelay(true);
        let key = key.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
            let Some(accepted) = slot.hold(link::accept(stream, &key, deadline)).await else {
                return; // evicted by a newer connection: counted when it was
            };
            drop(slot);
            let input = match accepted {
                // never our own standby: attaching (and later killing) ourselves must be impossible
                Ok(pending) if pending.pid == me => {
                    Input::Rejected(format!("{peer}: a standby claiming this process's own pid"))
                }
                Ok(pending) => match PinnedProcess::open(pending.pid, Some(pending.start_time)) {
                    Ok(pinned) => Input::Attaching(Box::new(pending), pinned),
                    Err(e) => Input::Rejected(format!(
                        "{peer}: standby pid {} does not check out: {e}",
                        pending.pid
                    )),
                },
                Err(e) => Input::Rejected(format!("{peer}: {e}")),
            };
            let _ = tx.send(input);
        });
    }
}

fn is_me(pid: Pid) -> bool {
    u32::try_from(pid).is_ok_and(|p| p == std::process::id())
}

fn describe(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown".into(),
    }
}

fn log_event(ev: &KeeperEvent) {
    match ev {
        KeeperEvent::Launched { pid } => {
            tracing::info!(standby_pid = pid, "launched a standby node manager");
        }
        KeeperEvent::Attached { pid } => {
            tracing::info!(standby_pid = pid, "the standby node manager is watching");
        }
        KeeperEvent::Exited {
            pid,
            how,
            expected: true,
        } => tracing::info!(standby_pid = pid, %how, "the standby node manager exited"),
        KeeperEvent::Exited { pid, how, .. } => tracing::warn!(
            standby_pid = pid,
            %how,
            "the standby node manager died; launching a new one"
        ),
        KeeperEvent::Replacing { pid, reason } => tracing::warn!(
            standby_pid = pid,
            %reason,
            "killing the standby node manager to replace it"
        ),
        KeeperEvent::LaunchFailed { reason } => {
            tracing::error!(%reason, "cannot launch a standby node manager");
        }
        KeeperEvent::Backoff { delay } => tracing::warn!(
            delay = ?delay,
            "standby node managers keep dying young: waiting before the next launch"
        ),
    }
}

#[cfg(test)]
mod tests {
    //! Strangers against the standby port: real sockets, no timing. Strangers get all the time
    //! they want (an hour's handshake deadline), so only the admission policy lets a standby in.
    use std::process::Command;

    use nm_wire::admission::HANDSHAKES_TOTAL;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    use super::*;
    use crate::link::Connected;

    const KEY: &[u8] = b"standby key";
    /// A deadline on conditions, never reached when the code works.
    const WAIT: Duration = Duration::from_secs(20);

    async fn stranger(to: SocketAddr, source: u8) -> TcpStream {
        nm_wire::testing::stranger(to, source, WAIT).await
    }

    #[tokio::test]
    async fn strangers_holding_every_handshake_slot_do_not_keep_a_standby_from_attaching() {
        let listener = bind_standby_port(0).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let accept = tokio::spawn(accept_with(
            listener,
            KEY.to_vec(),
            Duration::from_secs(3600),
            tx,
        ));
        // the standby: a real process other than this one, whose identity the port checks
        let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
        let pid = i32::try_from(sleeper.id()).unwrap();
        let standby = (pid, start_time_of(pid).unwrap());

        // idle strangers, most from the standby's own address, twice the pool; and garbage
        let mut held = vec![];
        for i in 0..2 * HANDSHAKES_TOTAL {
            held.push(stranger(addr, 1 + (i % 3) as u8).await);
        }
        let mut huge = stranger(addr, 4).await;
        huge.write_all(&u32::MAX.to_be_bytes()).await.unwrap();

        let connecting = tokio::spawn(link::connect(addr, KEY, standby, WAIT));
        let mut rejected = vec![];
        let attaching = async {
            loop {
                match rx.recv().await {
                    Some(Input::Attaching(pending, _)) => return Some(pending),
                    Some(Input::Rejected(why)) => rejected.push(why),
                    Some(Input::Exited(..)) | None => return None,
                }
            }
        };
        let pending = tokio::time::timeout(WAIT, attaching).await.ok().flatten();
        let pending = pending.expect("the standby's handshake was kept out");
        assert_eq!(pending.pid, pid);
        let welcome = Welcome {
            pid: 1,
            start_time: 1,
            takeovers: 0,
            pair_started_ms: 0,
        };
        let _halves = pending.welcome(welcome).await.unwrap();
        let linked = connecting.await.unwrap();
        assert!(matches!(linked, Ok(Connected::Linked(..))), "{linked:?}");

        // every evicted stranger and the oversized frame were counted
        let counted = async {
            while !(rejected.iter().any(|r: &String| r.contains("at most"))
                && rejected.iter().filter(|r| r.contains("slots full")).count() >= HANDSHAKES_TOTAL)
            {
                match rx.recv().await {
                    Some(Input::Rejected(why)) => rejected.push(why),
                    Some(_) => {}
                    None => return,
                }
            }
        };
        let all = tokio::time::timeout(WAIT, counted).await.is_ok();
        assert!(all, "not every rejection was counted: {rejected:#?}");
        accept.abort();
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
}
