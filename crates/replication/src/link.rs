//! The standby link: length-prefixed frames on a TCP stream, a handshake that authenticates both
//! sides under the node's standby key, then sealed frames (HMAC tag over direction, sequence
//! number and body). A sealed frame that fails its tag, its sequence or decoding is dropped and
//! reported as [`LinkEvent::Rejected`], never acted on; a frame whose length is out of bounds
//! closes the link (the stream is no longer in step).

use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::core::{ActiveInfo, Pid};
use nm_wire::codec::{self, Tag};
use nm_wire::frame::{nonce, read_frame, write_frame};

/// The link protocol's version; a peer speaking another one is refused.
const VERSION: u16 = 1;

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

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("malformed handshake frame: {0}")]
    Malformed(String),
    #[error("protocol version {0}, this node manager speaks {VERSION}")]
    Version(u16),
    #[error("the peer failed authentication (not the same standby.key)")]
    BadTag,
}

#[derive(Debug, Serialize, Deserialize)]
struct Challenge {
    version: u16,
    nonce: [u8; 32],
}

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    version: u16,
    nonce: [u8; 32],
    pid: Pid,
    start_time: u64,
    tag: Tag,
}

#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Welcome {
        pid: Pid,
        start_time: u64,
        takeovers: u64,
        pair_started_ms: u64,
        tag: Tag,
    },
    Refused {
        reason: String,
        tag: Tag,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    seq: u64,
    body: Vec<u8>,
    tag: Tag,
}

const TO_STANDBY: &[u8] = b"active->standby";
const TO_ACTIVE: &[u8] = b"standby->active";

/// The sending half of an authenticated link.
#[derive(Debug)]
pub(crate) struct LinkWriter {
    w: OwnedWriteHalf,
    session: Tag,
    dir: &'static [u8],
    seq: u64,
}

impl LinkWriter {
    /// Seals and sends one message.
    pub(crate) async fn send(&mut self, msg: Msg) -> io::Result<()> {
        self.seq += 1;
        let body = codec::encode(&msg);
        let seq = self.seq.to_be_bytes();
        let tag = codec::mac(&self.session, &[self.dir, &seq, &body]);
        write_frame(
            &mut self.w,
            &codec::encode(&Sealed {
                seq: self.seq,
                body,
                tag,
            }),
        )
        .await
    }
}

/// The receiving half of an authenticated link.
#[derive(Debug)]
pub(crate) struct LinkReader {
    r: OwnedReadHalf,
    session: Tag,
    dir: &'static [u8],
    seq: u64,
}

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
            let event = match read_frame(&mut self.r).await {
                Ok(frame) => self.open(&frame),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    LinkEvent::Closed("closed by the peer".into())
                }
                Err(e) => LinkEvent::Closed(e.to_string()),
            };
            let closed = matches!(event, LinkEvent::Closed(_));
            if tx.send((id, event)).is_err() || closed {
                return;
            }
        }
    }

    fn open(&mut self, frame: &[u8]) -> LinkEvent {
        let sealed: Sealed = match codec::decode(frame) {
            Ok(s) => s,
            Err(e) => return LinkEvent::Rejected(format!("undecodable frame: {e}")),
        };
        let seq = sealed.seq.to_be_bytes();
        if !codec::verify(&self.session, &[self.dir, &seq, &sealed.body], &sealed.tag) {
            return LinkEvent::Rejected("frame failed authentication".into());
        }
        if sealed.seq != self.seq + 1 {
            return LinkEvent::Rejected(format!(
                "frame out of sequence ({} after {})",
                sealed.seq, self.seq
            ));
        }
        self.seq = sealed.seq;
        match codec::decode(&sealed.body) {
            Ok(msg) => LinkEvent::Msg(msg),
            Err(e) => LinkEvent::Rejected(format!("undecodable message: {e}")),
        }
    }
}

/// A standby that authenticated itself, waiting for the active's answer.
#[derive(Debug)]
pub(crate) struct Pending {
    stream: TcpStream,
    key: Vec<u8>,
    ours: [u8; 32],
    theirs: [u8; 32],
    /// The standby's PID, as it claims (checked by the caller against `/proc`).
    pub(crate) pid: Pid,
    /// The standby's start time, as it claims.
    pub(crate) start_time: u64,
}

/// What the active tells a standby it accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Welcome {
    pub(crate) pid: Pid,
    pub(crate) start_time: u64,
    pub(crate) takeovers: u64,
    pub(crate) pair_started_ms: u64,
}

impl Welcome {
    fn parts(&self) -> [[u8; 8]; 4] {
        [
            i64::from(self.pid).to_be_bytes(),
            self.start_time.to_be_bytes(),
            self.takeovers.to_be_bytes(),
            self.pair_started_ms.to_be_bytes(),
        ]
    }
}

/// Active side: challenge a connecting standby and check its answer.
pub(crate) async fn accept(
    mut stream: TcpStream,
    key: &[u8],
    timeout: Duration,
) -> Result<Pending, HandshakeError> {
    let ours = nonce()?;
    let run = async {
        write_frame(
            &mut stream,
            &codec::encode(&Challenge {
                version: VERSION,
                nonce: ours,
            }),
        )
        .await?;
        let hello: Hello =
            codec::decode(&read_frame(&mut stream).await?).map_err(HandshakeError::Malformed)?;
        if hello.version != VERSION {
            return Err(HandshakeError::Version(hello.version));
        }
        let ok = codec::verify(
            key,
            &[
                b"nm-standby-hello",
                &ours,
                &hello.nonce,
                &i64::from(hello.pid).to_be_bytes(),
                &hello.start_time.to_be_bytes(),
            ],
            &hello.tag,
        );
        if !ok {
            return Err(HandshakeError::BadTag);
        }
        Ok(hello)
    };
    let hello = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))??;
    Ok(Pending {
        stream,
        key: key.to_vec(),
        ours,
        theirs: hello.nonce,
        pid: hello.pid,
        start_time: hello.start_time,
    })
}

impl Pending {
    /// Accepts the standby: sends the authenticated welcome and returns the link's halves.
    pub(crate) async fn welcome(
        mut self,
        me: Welcome,
    ) -> Result<(LinkReader, LinkWriter), HandshakeError> {
        let p = me.parts();
        let tag = codec::mac(
            &self.key,
            &[
                b"nm-standby-welcome",
                &self.ours,
                &self.theirs,
                &p[0],
                &p[1],
                &p[2],
                &p[3],
            ],
        );
        let answer = Answer::Welcome {
            pid: me.pid,
            start_time: me.start_time,
            takeovers: me.takeovers,
            pair_started_ms: me.pair_started_ms,
            tag,
        };
        write_frame(&mut self.stream, &codec::encode(&answer)).await?;
        let session = session(&self.key, &self.ours, &self.theirs);
        Ok(halves(self.stream, session, TO_STANDBY, TO_ACTIVE))
    }

    /// Refuses the standby with a reason it can log.
    pub(crate) async fn refuse(mut self, reason: &str) {
        let tag = codec::mac(
            &self.key,
            &[
                b"nm-standby-refused",
                &self.ours,
                &self.theirs,
                reason.as_bytes(),
            ],
        );
        let answer = Answer::Refused {
            reason: reason.to_owned(),
            tag,
        };
        let _ = write_frame(&mut self.stream, &codec::encode(&answer)).await;
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
    let run = async {
        let mut stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let challenge: Challenge =
            codec::decode(&read_frame(&mut stream).await?).map_err(HandshakeError::Malformed)?;
        if challenge.version != VERSION {
            return Err(HandshakeError::Version(challenge.version));
        }
        let ours = nonce()?;
        let tag = codec::mac(
            key,
            &[
                b"nm-standby-hello",
                &challenge.nonce,
                &ours,
                &i64::from(me.0).to_be_bytes(),
                &me.1.to_be_bytes(),
            ],
        );
        let hello = Hello {
            version: VERSION,
            nonce: ours,
            pid: me.0,
            start_time: me.1,
            tag,
        };
        write_frame(&mut stream, &codec::encode(&hello)).await?;
        let answer: Answer =
            codec::decode(&read_frame(&mut stream).await?).map_err(HandshakeError::Malformed)?;
        match answer {
            Answer::Welcome {
                pid,
                start_time,
                takeovers,
                pair_started_ms,
                tag,
            } => {
                let w = Welcome {
                    pid,
                    start_time,
                    takeovers,
                    pair_started_ms,
                };
                let p = w.parts();
                let parts: [&[u8]; 7] = [
                    b"nm-standby-welcome",
                    &challenge.nonce,
                    &ours,
                    &p[0],
                    &p[1],
                    &p[2],
                    &p[3],
                ];
                if !codec::verify(key, &parts, &tag) {
                    return Err(HandshakeError::BadTag);
                }
                let session = session(key, &challenge.nonce, &ours);
                let (r, w) = halves(stream, session, TO_ACTIVE, TO_STANDBY);
                Ok(Connected::Linked(
                    r,
                    w,
                    ActiveInfo {
                        pid,
                        start_time,
                        takeovers,
                        pair_started_ms,
                    },
                ))
            }
            Answer::Refused { reason, tag } => {
                let parts: [&[u8]; 4] = [
                    b"nm-standby-refused",
                    &challenge.nonce,
                    &ours,
                    reason.as_bytes(),
                ];
                if !codec::verify(key, &parts, &tag) {
                    return Err(HandshakeError::BadTag);
                }
                Ok(Connected::Refused(reason))
            }
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
}

fn session(key: &[u8], active_nonce: &[u8; 32], standby_nonce: &[u8; 32]) -> Tag {
    codec::mac(key, &[b"nm-standby-session", active_nonce, standby_nonce])
}

fn halves(
    stream: TcpStream,
    session: Tag,
    send: &'static [u8],
    recv: &'static [u8],
) -> (LinkReader, LinkWriter) {
    let (r, w) = stream.into_split();
    (
        LinkReader {
            r,
            session,
            dir: recv,
            seq: 0,
        },
        LinkWriter {
            w,
            session,
            dir: send,
            seq: 0,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

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
        drop(aw);
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

    #[tokio::test]
    async fn forged_replayed_and_garbage_frames_are_rejected_not_acted_on() {
        let (pending, standby) = pair(b"k", b"k").await;
        let (ar, _aw) = pending.unwrap().welcome(welcome()).await.unwrap();
        let Connected::Linked(_sr, sw, _) = standby.await.unwrap().unwrap() else {
            panic!("not linked");
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        ar.spawn((), tx);
        let mut w = sw.w;
        // garbage, then a frame sealed with the wrong session, then a replay of seq 1 twice
        write_frame(&mut w, b"\xff\xff\xff").await.unwrap();
        let body = codec::encode(&Msg::Shutdown);
        let forged = Sealed {
            seq: 1,
            tag: codec::mac(b"guess", &[TO_ACTIVE, &1u64.to_be_bytes(), &body]),
            body: body.clone(),
        };
        write_frame(&mut w, &codec::encode(&forged)).await.unwrap();
        let good = Sealed {
            seq: 1,
            tag: codec::mac(&sw.session, &[TO_ACTIVE, &1u64.to_be_bytes(), &body]),
            body,
        };
        write_frame(&mut w, &codec::encode(&good)).await.unwrap();
        write_frame(&mut w, &codec::encode(&good)).await.unwrap();
        let mut seen = vec![];
        for _ in 0..4 {
            let ((), e) = rx.recv().await.unwrap();
            seen.push(e);
        }
        assert!(matches!(seen[0], LinkEvent::Rejected(ref r) if r.contains("undecodable")));
        assert!(matches!(seen[1], LinkEvent::Rejected(ref r) if r.contains("authentication")));
        assert!(matches!(seen[2], LinkEvent::Msg(Msg::Shutdown)));
        assert!(matches!(seen[3], LinkEvent::Rejected(ref r) if r.contains("sequence")));
        // an oversized length closes the link
        w.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let ((), e) = rx.recv().await.unwrap();
        assert!(matches!(e, LinkEvent::Closed(ref r) if r.contains("at most")));
    }
}
