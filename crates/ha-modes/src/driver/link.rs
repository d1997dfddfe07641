//! The peer link: each node listens on its `[ha] listen` address and dials its peer's. A node's
//! requests travel on the connection it dialled and are answered there, so each direction has
//! its own request/answer stream. Both are sessions of [`nm_wire::session`] under the cluster
//! key; the handshake also checks that the other side is the configured peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nm_wire::session::{self, Connected, Protocol, Received};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use super::Event;
use crate::core::{Op, PeerLeave, PeerState};
use crate::mode::Status;
use crate::report::HaReport;

/// Connections served at once (handshakes included).
const MAX_CONNECTIONS: usize = 8;

pub(crate) const PROTOCOL: Protocol = Protocol {
    label: "nm-ha",
    version: 1,
};

/// Who a side says it is, in the handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) node: String,
    pub(crate) peer: String,
}

/// A request on the link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Request {
    /// "Here is my state; send me yours."
    Exchange(PeerState),
    /// "May I become primary?"
    Promote { incarnation: u64, claim: u64 },
    /// "Here is my state; run this command on your node" (a step of `ha start` / `ha stop`).
    Op { op: Op, state: PeerState },
    /// "I am leaving (a planned stop); my HA-managed servers are stopped" (appended last: the
    /// variants before keep their numbers on the wire).
    Leave(PeerLeave),
}

/// Its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Reply {
    State(PeerState),
    Promote(bool),
    /// The command's outcome: the node's state afterwards, or why it was refused.
    Op(Result<PeerState, String>),
    /// A leave taken (`Ok`), or why it was refused (stale).
    Left(Result<(), String>),
}

/// A request of ours for the peer, with where its answer goes.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) request: Request,
    pub(crate) timeout: Duration,
    pub(crate) reply: oneshot::Sender<Result<Reply, String>>,
}

/// Everything the link tasks need.
#[derive(Debug, Clone)]
pub(crate) struct LinkConfig {
    pub(crate) me: String,
    pub(crate) peer: String,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) key: Arc<Vec<u8>>,
    pub(crate) heartbeat: Duration,
    pub(crate) peer_timeout: Duration,
    /// How long a stop of the HA-managed servers may take.
    pub(crate) stop_wait: Duration,
}

/// Dials the peer, keeps the connection, exchanges states every heartbeat and carries our
/// requests. Ends when `outbox` closes.
pub(crate) async fn client(
    cfg: LinkConfig,
    mine: watch::Receiver<PeerState>,
    mut outbox: mpsc::Receiver<Outgoing>,
    events: mpsc::UnboundedSender<Event>,
) {
    let me = Identity {
        node: cfg.me.clone(),
        peer: cfg.peer.clone(),
    };
    let mut logged_down = false;
    // a request that arrived while the link was down: it gets the next connection attempt
    let mut pending: Option<Outgoing> = None;
    loop {
        let linked = session::connect::<Identity, _>(
            cfg.peer_addr,
            PROTOCOL,
            &cfg.key,
            &me,
            cfg.peer_timeout,
        )
        .await;
        // a link, or why there is none (the reason answers a request that waited for it)
        let down = match linked {
            Ok(Connected::Linked(rx, tx, them)) if them.node == cfg.peer && them.peer == cfg.me => {
                tracing::info!(peer = %cfg.peer, addr = %cfg.peer_addr, "HA link to the peer up");
                logged_down = false;
                Ok((rx, tx))
            }
            Ok(Connected::Linked(_, _, them)) => {
                let why = format!(
                    "{} answers as node {:?} (peer of {:?}), not as {:?}",
                    cfg.peer_addr, them.node, them.peer, cfg.peer
                );
                let _ = events.send(Event::Rejected(why.clone()));
                Err(why)
            }
            Ok(Connected::Refused(why)) => {
                let why = format!("the peer refused us: {why}");
                let _ = events.send(Event::Rejected(why.clone()));
                Err(why)
            }
            Err(e) => {
                if matches!(
                    e,
                    session::HandshakeError::BadTag
                        | session::HandshakeError::Malformed(_)
                        | session::HandshakeError::Version { .. }
                ) {
                    let _ = events.send(Event::Rejected(format!("{}: {e}", cfg.peer_addr)));
                } else if !logged_down {
                    tracing::info!(peer = %cfg.peer, addr = %cfg.peer_addr, error = %e, "HA link to the peer down; retrying");
                    logged_down = true;
                }
                Err(e.to_string())
            }
        };
        let (mut rx, mut tx) = match down {
            Ok(link) => link,
            Err(why) => {
                match fail_wait(&cfg, &mut outbox, pending.take(), &why).await {
                    Wait::Closed => return,
                    Wait::Retry => {}
                    Wait::Request(o) => pending = Some(o),
                }
                continue;
            }
        };
        let mut tick = tokio::time::interval(cfg.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (request, timeout, reply) = match pending.take() {
                Some(o) => (o.request, o.timeout, Some(o.reply)),
                None => tokio::select! {
                    _ = tick.tick() => (Request::Exchange(mine.borrow().clone()), cfg.peer_timeout, None),
                    out = outbox.recv() => match out {
                        Some(o) => (o.request, o.timeout, Some(o.reply)),
                        None => return,
                    },
                },
            };
            if reply.as_ref().is_some_and(oneshot::Sender::is_closed) {
                continue; // its asker gave up waiting: a late step must not run
            }
            let exchange = async {
                tx.send(&request).await.map_err(|e| e.to_string())?;
                loop {
                    match rx.recv::<Reply>().await.map_err(|e| e.to_string())? {
                        Received::Msg(r) => return Ok(r),
                        Received::Rejected(why) => {
                            let _ = events.send(Event::Rejected(why));
                        }
                    }
                }
            };
            let result = tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
            if let Ok(Reply::State(s) | Reply::Op(Ok(s))) = &result {
                let _ = events.send(Event::Peer(s.clone()));
            }
            let failed = result.as_ref().err().cloned();
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
            if let Some(why) = failed {
                tracing::info!(peer = %cfg.peer, error = %why, "HA link to the peer lost; reconnecting");
                break;
            }
        }
    }
}

/// What ended a wait after a failed connection.
enum Wait {
    /// A heartbeat passed: try again.
    Retry,
    /// A request came: try again now, for it.
    Request(Outgoing),
    /// The outbox closed: the driver is gone.
    Closed,
}

/// After a failed connection: answers the request that was waiting for it (`failed`) with the
/// reason, then waits a heartbeat, or less if a new request comes.
async fn fail_wait(
    cfg: &LinkConfig,
    outbox: &mut mpsc::Receiver<Outgoing>,
    failed: Option<Outgoing>,
    why: &str,
) -> Wait {
    if let Some(o) = failed {
        let _ = o.reply.send(Err(format!(
            "the peer {} does not communicate: {why}",
            cfg.peer
        )));
    }
    tokio::select! {
        () = tokio::time::sleep(cfg.heartbeat) => Wait::Retry,
        out = outbox.recv() => out.map_or(Wait::Closed, Wait::Request),
    }
}

/// Accepts the peer's connections and answers its requests.
pub(crate) async fn server(
    cfg: LinkConfig,
    listener: TcpListener,
    events: mpsc::UnboundedSender<Event>,
    report: watch::Receiver<HaReport>,
    mine: watch::Receiver<PeerState>,
) {
    // the peer needs one connection; a few more cover reconnects while an old one lingers
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // e.g. out of file descriptors: do not spin
                tracing::warn!(error = %e, "HA link: accept failed");
                tokio::time::sleep(cfg.heartbeat).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let _ = events.send(Event::Rejected(format!(
                "{from}: more than {MAX_CONNECTIONS} connections at once: dropped"
            )));
            continue;
        };
        let cfg = cfg.clone();
        let events = events.clone();
        let (report, mine) = (report.clone(), mine.clone());
        tokio::spawn(async move {
            if let Err(why) = serve(&cfg, stream, &events, &report, &mine).await {
                let _ = events.send(Event::Rejected(format!("{from}: {why}")));
            }
            drop(slot);
        });
    }
}

async fn serve(
    cfg: &LinkConfig,
    stream: tokio::net::TcpStream,
    events: &mpsc::UnboundedSender<Event>,
    report: &watch::Receiver<HaReport>,
    mine: &watch::Receiver<PeerState>,
) -> Result<(), String> {
    let pending =
        match session::accept::<Identity>(stream, PROTOCOL, &cfg.key, cfg.peer_timeout).await {
            Ok(p) => p,
            // a peer that went away mid-handshake is not a bad frame
            Err(e @ (session::HandshakeError::Io(_) | session::HandshakeError::Timeout(_))) => {
                tracing::debug!(error = %e, "HA link: handshake not finished");
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
    if pending.peer.node != cfg.peer || pending.peer.peer != cfg.me {
        let why = format!(
            "node {:?} (peer of {:?}) is not this node's peer {:?}",
            pending.peer.node, pending.peer.peer, cfg.peer
        );
        pending.refuse(&why).await;
        return Err(why);
    }
    let me = Identity {
        node: cfg.me.clone(),
        peer: cfg.peer.clone(),
    };
    let (mut rx, mut tx) = pending.welcome(&me).await.map_err(|e| e.to_string())?;
    // the peer exchanges every heartbeat: a session silent for twice the peer timeout is dead (a
    // fenced machine sends no FIN) and gives its connection slot back
    let idle = 2 * cfg.peer_timeout;
    loop {
        let request = match tokio::time::timeout(idle, rx.recv::<Request>()).await {
            Ok(Ok(Received::Msg(r))) => r,
            Ok(Ok(Received::Rejected(why))) => {
                let _ = events.send(Event::Rejected(why));
                continue;
            }
            // the peer closed, the link broke or went silent: it redials
            Ok(Err(_)) | Err(_) => return Ok(()),
        };
        let reply = match request {
            // answered here with what the driver last published: a heartbeat never waits on
            // the driver (which may wait for a write of ha.json to be durable before it
            // publishes)
            Request::Exchange(state) => {
                if events.send(Event::Peer(state)).is_err() {
                    return Ok(()); // the driver has ended
                }
                Reply::State(mine.borrow().clone())
            }
            Request::Promote { incarnation, claim } => {
                let (tx_p, rx_p) = oneshot::channel();
                let _ = events.send(Event::PromoteRequest {
                    incarnation,
                    claim,
                    reply: tx_p,
                });
                Reply::Promote(rx_p.await.unwrap_or(false))
            }
            Request::Leave(leave) => {
                // not taken in as a report first: the core checks its incarnation before
                let (tx_l, rx_l) = oneshot::channel();
                let _ = events.send(Event::PeerLeft { leave, reply: tx_l });
                Reply::Left(
                    rx_l.await
                        .unwrap_or_else(|_| Err("the HA manager stopped".into())),
                )
            }
            Request::Op { op, state } => {
                // the command is checked against our state as of now, not a heartbeat ago
                let _ = events.send(Event::Peer(state));
                let (tx_op, rx_op) = oneshot::channel();
                let _ = events.send(Event::Remote { op, reply: tx_op });
                let mut result = rx_op
                    .await
                    .unwrap_or_else(|_| Err("the HA manager stopped".into()));
                if result.is_ok() && stops(op) {
                    // answer once the HA-managed servers are down, so the peer's next step is safe
                    result = wait_not_primary(report.clone(), cfg.stop_wait)
                        .await
                        .and(result);
                }
                Reply::Op(result)
            }
        };
        if tx.send(&reply).await.is_err() {
            return Ok(());
        }
    }
}

/// Whether `op` stops the HA-managed servers here.
pub(crate) fn stops(op: Op) -> bool {
    matches!(op, Op::Stop | Op::Mode(crate::mode::Mode::Locked))
}

/// Waits until this node is not primary (its HA-managed servers are down).
///
/// # Errors
/// When that takes longer than `timeout`, or the HA manager is gone.
pub(crate) async fn wait_not_primary(
    mut report: watch::Receiver<HaReport>,
    timeout: Duration,
) -> Result<(), String> {
    let wait = report.wait_for(|r| r.local.status != Some(Status::Primary));
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err("the HA manager stopped".into()),
        Err(_) => Err(format!(
            "the HA-managed servers still run after {timeout:?}"
        )),
    }
}
