//! The standby link: an [`nm_wire::session`] on a loopback TCP stream under the node's
//! `standby.key`. The standby (client) says who it is (PID and start time, checked by the active
//! against `/proc`); the active answers with a welcome (who it is, the pair's takeovers and start)
//! or a refusal with its reason. Then sealed frames both ways: a frame that fails its tag, its
//! sequence or decoding is dropped and reported as [`LinkEvent::Rejected`], never acted on; a
//! frame whose length is out of bounds closes the link (the stream is no longer in step).

use std::io;
use std::time::Duration;

use nm_wire::session::{self, Protocol, Received};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub(crate) use nm_wire::session::HandshakeError;

use crate::core::{ActiveInfo, Pid};

/// The link protocol; a peer speaking another version is refused.
const PROTOCOL: Protocol = Protocol {
    label: "nm-standby",
    version: 3, // 3: sealed frames are encrypted (ChaCha20-Poly1305)
};

/// An authenticated message on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Msg {
    /// "I am alive", both ways.
    Heartbeat,
    /// Active to standby: the pair is stopping; terminate, do not take over.
    Shutdown,
}

/// What a link's reader task reports.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// An authenticated message.
    Msg(Msg),
    /// A frame that failed authentication, sequence or decoding: dropped.
    Rejected(String),
    /// The link is gone.
    Closed(String),
}

/// Who a standby says it is.
#[derive(Debug, Serialize, Deserialize)]
struct StandbyId {
    pid: Pid,
    start_time: u64,
}

/// What the active tells a standby it accepts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Welcome {
    pub(crate) pid: Pid,
    pub(crate) start_time: u64,
    pub(crate) takeovers: u64,
    pub(crate) pair_started_ms: u64,
}

/// The sending half of an authenticated link.
#[derive(Debug)]
pub(crate) struct LinkWriter(session::Sender);

impl LinkWriter {
    /// Seals and sends one message.
    pub(crate) async fn send(&mut self, msg: Msg) -> io::Result<()> {
        self.0.send(&msg).await
    }
}

/// The receiving half of an authenticated link.
#[derive(Debug)]
pub(crate) struct LinkReader(session::Receiver);

impl LinkReader {
    /// Spawns [`LinkReader::run`] as a task of its own.
    pub(crate) fn spawn<T: Copy + Send + 'static>(
        self,
        id: T,
        tx: mpsc::UnboundedSender<(T, LinkEvent)>,
    ) {
        tokio::spawn(self.run(id, tx));
    }

    /// Reads the link and reports each frame as `(id, event)` until the link closes (the last
    /// event is always `Closed`) or the receiver is gone.
    pub(crate) async fn run<T: Copy>(mut self, id: T, tx: mpsc::UnboundedSender<(T, LinkEvent)>) {
        loop {
            let event = match self.0.recv::<Msg>().await {
                Ok(Received::Msg(m)) => LinkEvent::Msg(m),
                Ok(Received::Rejected(why)) => LinkEvent::Rejected(why),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    LinkEvent::Closed("closed by the peer".into())
                }
                // a length prefix out of bounds: a rejected frame (counted), and the end
                Err(e) if nm_wire::frame::is_rejected_frame(&e) => {
                    if tx.send((id, LinkEvent::Rejected(e.to_string()))).is_err() {
                        return;
                    }
                    LinkEvent::Closed(e.to_string())
                }
                Err(e) => LinkEvent::Closed(e.to_string()),
            };
            let closed = matches!(event, LinkEvent::Closed(_));
            if tx.send((id, event)).is_err() || closed {
                return;
            }
        }
    }
}

/// A standby that authenticated itself, waiting for the active's answer.
#[derive(Debug)]
pub(crate) struct Pending {
    inner: session::Pending<StandbyId>,
    /// The standby's PID, as it claims (checked by the caller against `/proc`).
    pub(crate) pid: Pid,
    /// The standby's start time, as it claims.
    pub(crate) start_time: u64,
}

/// Active side: challenge a connecting standby and check its answer.
pub(crate) async fn accept(
    stream: TcpStream,
    key: &[u8],
    timeout: Duration,
) -> Result<Pending, HandshakeError> {
    let inner = session::accept::<StandbyId>(stream, PROTOCOL, key, timeout).await?;
    Ok(Pending {
        pid: inner.peer.pid,
        start_time: inner.peer.start_time,
        inner,
    })
}

impl Pending {
    /// Accepts the standby: sends the authenticated welcome and returns the link's halves.
    pub(crate) async fn welcome(
        self,
        me: Welcome,
    ) -> Result<(LinkReader, LinkWriter), HandshakeError> {
        let (r, w) = self.inner.welcome(&me).await?;
        Ok((LinkReader(r), LinkWriter(w)))
    }

    /// Refuses the standby with a reason it can log.
    pub(crate) async fn refuse(self, reason: &str) {
        self.inner.refuse(reason).await;
    }
}

/// What a standby's connection attempt ended with.
#[derive(Debug)]
pub(crate) enum Connected {
    /// Linked to this active.
    Linked(LinkReader, LinkWriter, ActiveInfo),
    /// The active refused us, for this reason.
    Refused(String),
}

/// Standby side: connect to the active and authenticate both ways.
pub(crate) async fn connect(
    addr: std::net::SocketAddr,
    key: &[u8],
    me: (Pid, u64),
    timeout: Duration,
) -> Result<Connected, HandshakeError> {
    let id = StandbyId {
        pid: me.0,
        start_time: me.1,
    };
    match session::connect::<Welcome, _>(addr, PROTOCOL, key, &id, timeout).await? {
        session::Connected::Linked(r, w, active) => Ok(Connected::Linked(
            LinkReader(r),
            LinkWriter(w),
            ActiveInfo {
                pid: active.pid,
                start_time: active.start_time,
                takeovers: active.takeovers,
                pair_started_ms: active.pair_started_ms,
            },
        )),
        session::Connected::Refused(why) => Ok(Connected::Refused(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    async fn pair(
        active_key: &'static [u8],
        standby_key: &'static [u8],
    ) -> (
        Result<Pending, HandshakeError>,
        tokio::task::JoinHandle<Result<Connected, HandshakeError>>,
    ) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let standby = tokio::spawn(async move { connect(addr, standby_key, (7, 70), T).await });
        let (s, _) = l.accept().await.unwrap();
        (accept(s, active_key, T).await, standby)
    }

    fn welcome() -> Welcome {
        Welcome {
            pid: 1,
            start_time: 10,
            takeovers: 3,
            pair_started_ms: 99,
        }
    }

    #[tokio::test]
    async fn both_sides_authenticate_and_exchange_sealed_messages() {
        let (pending, standby) = pair(b"k", b"k").await;
        let pending = pending.unwrap();
        assert_eq!((pending.pid, pending.start_time), (7, 70));
        let (ar, mut aw) = pending.welcome(welcome()).await.unwrap();
        let Connected::Linked(sr, mut sw, info) = standby.await.unwrap().unwrap() else {
            panic!("not linked");
        };
        assert_eq!((info.pid, info.takeovers, info.pair_started_ms), (1, 3, 99));
        let (tx, mut rx) = mpsc::unbounded_channel();
        ar.spawn('a', tx.clone());
        sr.spawn('s', tx);
        aw.send(Msg::Shutdown).await.unwrap();
        sw.send(Msg::Heartbeat).await.unwrap();
        let mut got = [rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        got.sort_by_key(|(id, _)| *id);
        assert!(matches!(got[0], ('a', LinkEvent::Msg(Msg::Heartbeat))));
        assert!(matches!(got[1], ('s', LinkEvent::Msg(Msg::Shutdown))));
        // a closed link is the reader's last event
        drop(aw);
        let (id, ev) = rx.recv().await.unwrap();
        assert!(matches!((id, ev), ('s', LinkEvent::Closed(_))));
        drop(sw);
    }

    #[tokio::test]
    async fn a_standby_with_another_key_is_refused_by_the_active() {
        let (pending, _standby) = pair(b"k", b"other").await;
        assert!(matches!(pending, Err(HandshakeError::BadTag)));
    }

    #[tokio::test]
    async fn a_refusal_reaches_the_standby_with_its_reason() {
        let (pending, standby) = pair(b"k", b"k").await;
        pending.unwrap().refuse("standby 5 already watches").await;
        match standby.await.unwrap().unwrap() {
            Connected::Refused(r) => assert_eq!(r, "standby 5 already watches"),
            Connected::Linked(..) => panic!("linked"),
        }
    }

    mod fuzz {
        //! The standby link's message decoders over arbitrary bytes and mutated valid messages:
        //! an error or a message, never a panic, never an allocation beyond the codec's limit.
        use nm_wire::codec::{self, MAX_FRAME};
        use proptest::prelude::*;

        use super::*;

        fn decode_all(b: &[u8]) {
            let _ = codec::decode::<Msg>(b);
            let _ = codec::decode::<StandbyId>(b);
            let _ = codec::decode::<Welcome>(b);
        }

        fn valid() -> Vec<Vec<u8>> {
            vec![
                codec::encode(&Msg::Heartbeat),
                codec::encode(&StandbyId {
                    pid: 7,
                    start_time: 70,
                }),
                codec::encode(&welcome()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_never_panic_a_standby_link_decoder(
                b in proptest::collection::vec(any::<u8>(), 0..MAX_FRAME + 64),
            ) {
                decode_all(&b);
            }

            #[test]
            fn mutated_standby_link_messages_never_panic_a_decoder(
                which in 0usize..3,
                flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
                cut in any::<usize>(),
            ) {
                decode_all(&nm_wire::testing::mutate(valid().swap_remove(which), &flips, cut));
            }
        }
    }
}
