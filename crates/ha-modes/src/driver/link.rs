//! The peer link: each node listens on its `[ha] listen` address and dials its peer's. A node's
//! requests travel on the connection it dialled and are answered there, so each direction has
//! its own request/answer stream. Both are sessions of [`nm_wire::session`] under the cluster
//! key; the handshake also checks that the other side is the configured peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nm_wire::admission::{self, Admission, Gate};
use nm_wire::frame;
use nm_wire::session::{self, Connected, Protocol, Received};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use super::Event;
use crate::core::{Op, PeerLeave, PeerState};
use crate::mode::Status;
use crate::report::HaReport;

/// The peer's authenticated sessions served at once, outside the handshake pool: its current
/// one and one it abandoned when it redialled (a fenced machine sends no FIN). A newer session
/// closes the oldest, so the peer always gets through; strangers never hold one of these.
const SESSIONS: usize = 2;

pub(crate) const PROTOCOL: Protocol = Protocol {
    label: "nm-ha",
    version: 2, // 2: sealed frames are encrypted (ChaCha20-Poly1305)
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
                    let got = rx.recv::<Reply>().await.map_err(|e| {
                        if frame::is_rejected_frame(&e) {
                            let _ = events.send(Event::Rejected(format!("{}: {e}", cfg.peer_addr)));
                        }
                        e.to_string()
                    })?;
                    match got {
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
///
/// A connection handshakes in a bounded pool ([`nm_wire::admission`]: per source address and in
/// total, a newcomer evicting the oldest of the busiest source) within
/// [`admission::handshake_deadline`] of the heartbeat; once authenticated as the peer, its
/// session leaves that pool for one of [`SESSIONS`] slots of its own. Every connection or frame
/// refused on the way is reported as [`Event::Rejected`].
pub(crate) async fn server(
    cfg: LinkConfig,
    listener: TcpListener,
    events: mpsc::UnboundedSender<Event>,
    report: watch::Receiver<HaReport>,
    mine: watch::Receiver<PeerState>,
) {
    let deadline = admission::handshake_deadline(cfg.heartbeat);
    serve_listener(cfg, listener, deadline, events, report, mine).await;
}

/// [`server`] with the handshake deadline given (tests give strangers all the time they want).
pub(crate) async fn serve_listener(
    cfg: LinkConfig,
    listener: TcpListener,
    deadline: Duration,
    events: mpsc::UnboundedSender<Event>,
    report: watch::Receiver<HaReport>,
    mine: watch::Receiver<PeerState>,
) {
    let handshakes = Gate::handshakes();
    let sessions = Gate::new(SESSIONS, SESSIONS);
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
        let (slot, evicted) = handshakes.admit(from.ip());
        if let Some(e) = evicted {
            let _ = events.send(Event::Rejected(format!(
                "{}: handshake slots full: its oldest unauthenticated connection closed",
                e.source
            )));
        }
        let cfg = cfg.clone();
        let events = events.clone();
        let (report, mine, sessions) = (report.clone(), mine.clone(), sessions.clone());
        tokio::spawn(async move {
            let link = Accepting {
                cfg: &cfg,
                events: &events,
                report: &report,
                mine: &mine,
                sessions: &sessions,
            };
            if let Err(why) = link.serve(stream, from, slot, deadline).await {
                let _ = events.send(Event::Rejected(format!("{from}: {why}")));
            }
        });
    }
}

/// What serving one connection needs.
struct Accepting<'a> {
    cfg: &'a LinkConfig,
    events: &'a mpsc::UnboundedSender<Event>,
    report: &'a watch::Receiver<HaReport>,
    mine: &'a watch::Receiver<PeerState>,
    sessions: &'a Gate,
}

impl Accepting<'_> {
    /// Handshakes in `slot`, then serves the authenticated peer in a session slot. `Err` is a
    /// rejected connection or frame; `Ok` an ordinary end (closed, evicted by a newer session).
    async fn serve(
        &self,
        stream: tokio::net::TcpStream,
        from: SocketAddr,
        mut slot: Admission,
        deadline: Duration,
    ) -> Result<(), String> {
        let cfg = self.cfg;
        let accepted = slot
            .hold(session::accept::<Identity>(
                stream, PROTOCOL, &cfg.key, deadline,
            ))
            .await;
        let pending = match accepted {
            // a newer connection took the slot (counted when it did)
            None => return Ok(()),
            Some(Ok(p)) => p,
            // every connection that did not authenticate is counted, whatever it did: closed,
            // stalled past the deadline, garbage, an oversized frame, another key (the standby
            // port counts the same; a daemon restarting mid-handshake adds one, harmlessly)
            Some(Err(e)) => return Err(format!("handshake: {e}")),
        };
        // authenticated: the handshake slot goes back at once
        drop(slot);
        self.session(pending, from).await
    }

    async fn session(
        &self,
        pending: session::Pending<Identity>,
        from: SocketAddr,
    ) -> Result<(), String> {
        let cfg = self.cfg;
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
        // the peer's session takes a slot of its own, never one a stranger can hold; a newer
        // one closes the oldest (the peer redialled: it no longer reads the old one)
        let (mut slot, _) = self.sessions.admit(from.ip());
        let (rx, tx) = pending.welcome(&me).await.map_err(|e| e.to_string())?;
        slot.hold(self.requests(rx, tx)).await.unwrap_or(Ok(()))
    }

    /// Answers the peer's requests until the session ends.
    async fn requests(
        &self,
        mut rx: session::Receiver,
        mut tx: session::Sender,
    ) -> Result<(), String> {
        let (cfg, events, mine) = (self.cfg, self.events, self.mine);
        // the peer exchanges every heartbeat: a session silent for twice the peer timeout is
        // dead (a fenced machine sends no FIN) and gives its session slot back
        let idle = 2 * cfg.peer_timeout;
        loop {
            let request = match tokio::time::timeout(idle, rx.recv::<Request>()).await {
                Ok(Ok(Received::Msg(r))) => r,
                Ok(Ok(Received::Rejected(why))) => {
                    let _ = events.send(Event::Rejected(why));
                    continue;
                }
                // a length prefix out of bounds: the stream is out of step, and the frame counts
                Ok(Err(e)) if frame::is_rejected_frame(&e) => return Err(e.to_string()),
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
                        // answer once the HA-managed servers are down, so the peer's next step
                        // is safe
                        result = wait_not_primary(self.report.clone(), cfg.stop_wait)
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

#[cfg(test)]
mod tests {
    //! Strangers against the HA listener: real sockets, no timing. Strangers get all the time
    //! they want (an hour's handshake deadline), so only the admission policy lets the peer in.
    use nm_wire::admission::HANDSHAKES_TOTAL;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    use super::*;
    use crate::mode::Mode;

    const KEY: &[u8] = b"cluster key";
    /// A deadline on conditions, never reached when the code works.
    const WAIT: Duration = Duration::from_secs(20);

    fn state(node: &str) -> PeerState {
        PeerState {
            node: node.into(),
            incarnation: 1,
            mode: Mode::Default,
            status: Status::Running,
            peerdown: false,
            started: true,
            ha_idle_failed_startup: false,
            promoting: false,
            claims_done: 0,
            seq: 1,
            up_ms: 0,
        }
    }

    async fn stranger(to: SocketAddr, source: u8) -> TcpStream {
        nm_wire::testing::stranger(to, source, WAIT).await
    }

    #[tokio::test]
    async fn strangers_holding_every_handshake_slot_neither_keep_the_peer_out_nor_close_its_session()
     {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = LinkConfig {
            me: "node1".into(),
            peer: "node2".into(),
            peer_addr: addr, // unused: no client runs
            key: Arc::new(KEY.to_vec()),
            heartbeat: Duration::from_millis(100),
            peer_timeout: Duration::from_secs(3600),
            stop_wait: Duration::from_secs(1),
        };
        let (events, mut seen) = mpsc::unbounded_channel();
        let (_report_tx, report) = watch::channel(HaReport::unconfigured("node1"));
        let (_mine_tx, mine) = watch::channel(state("node1"));
        let server = tokio::spawn(serve_listener(
            cfg,
            listener,
            Duration::from_secs(3600),
            events,
            report,
            mine,
        ));

        // idle strangers from five addresses (the peer's own among them), twice the pool
        let mut held = vec![];
        for i in 0..2 * HANDSHAKES_TOTAL {
            held.push(stranger(addr, 1 + (i % 5) as u8).await);
        }
        // and garbage: a frame claiming 4 GiB, and a hello that does not decode
        let mut huge = stranger(addr, 6).await;
        huge.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let mut garbage = stranger(addr, 7).await;
        garbage
            .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
            .await
            .unwrap();

        let me = Identity {
            node: "node2".into(),
            peer: "node1".into(),
        };
        let linked = session::connect::<Identity, _>(addr, PROTOCOL, KEY, &me, WAIT).await;
        let Ok(Connected::Linked(mut rx, mut tx, them)) = linked else {
            panic!("the peer was kept out: {linked:?}");
        };
        assert_eq!(them.node, "node1");

        // more strangers, after the session is up: it is not in their pool
        for i in 0..2 * HANDSHAKES_TOTAL {
            held.push(stranger(addr, 1 + (i % 3) as u8).await);
        }
        tx.send(&Request::Exchange(state("node2"))).await.unwrap();
        let reply = tokio::time::timeout(WAIT, rx.recv::<Reply>())
            .await
            .unwrap();
        assert!(
            matches!(reply, Ok(Received::Msg(Reply::State(ref s))) if s.node == "node1"),
            "{reply:?}"
        );

        // the garbage and every evicted stranger were counted
        let mut rejected = vec![];
        let counted = async {
            while !(rejected.iter().any(|r: &String| r.contains("at most"))
                && rejected.iter().any(|r| r.contains("malformed"))
                && rejected.iter().filter(|r| r.contains("slots full")).count()
                    >= 2 * HANDSHAKES_TOTAL)
            {
                match seen.recv().await {
                    Some(Event::Rejected(why)) => rejected.push(why),
                    Some(_) => {}
                    None => return,
                }
            }
        };
        let all = tokio::time::timeout(WAIT, counted).await.is_ok();
        assert!(all, "not every rejection was counted: {rejected:#?}");
        server.abort();
    }

    mod fuzz {
        //! The link's message decoders over arbitrary bytes and mutated valid messages: an
        //! error or a message, never a panic, never an allocation beyond the codec's limit.
        use nm_wire::codec::{self, MAX_FRAME};
        use proptest::prelude::*;

        use super::*;

        fn decode_all(b: &[u8]) {
            let _ = codec::decode::<Request>(b);
            let _ = codec::decode::<Reply>(b);
            let _ = codec::decode::<Identity>(b);
        }

        fn valid() -> Vec<Vec<u8>> {
            vec![
                codec::encode(&Request::Exchange(state("node2"))),
                codec::encode(&Request::Promote {
                    incarnation: 3,
                    claim: 4,
                }),
                codec::encode(&Reply::Op(Err("no".into()))),
                codec::encode(&Reply::State(state("node1"))),
                codec::encode(&Identity {
                    node: "node1".into(),
                    peer: "node2".into(),
                }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_never_panic_a_link_decoder(
                b in proptest::collection::vec(any::<u8>(), 0..MAX_FRAME + 64),
            ) {
                decode_all(&b);
            }

            #[test]
            fn mutated_link_messages_never_panic_a_decoder(
                which in 0usize..5,
                flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
                cut in any::<usize>(),
            ) {
                decode_all(&nm_wire::testing::mutate(valid().swap_remove(which), &flips, cut));
            }
        }
    }
}
