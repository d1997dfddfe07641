//! What someone on the path between two peers sees: a client and a server session over real
//! loopback TCP, through a proxy that forwards every byte both ways and keeps a copy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nm_wire::frame::{read_frame, write_frame};
use nm_wire::session::{Connected, Protocol, Received, accept, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const P: Protocol = Protocol {
    label: "nm-test",
    version: 1,
};
const T: Duration = Duration::from_secs(10);
const SECRET_TO_SERVER: &str = "token=s3cr3t-ha-token-4711 run payroll-db-server";
const SECRET_TO_CLIENT: &str = "stop server-name-alpha-secret-0042 now";

type Tape = Arc<Mutex<Vec<u8>>>;

/// Copies `from` into `to`, appending every byte to `tape`, until either side closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    tape: Tape,
) {
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                tape.lock().expect("tape").extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A proxy in front of `upstream` for one connection; returns its address and both tapes.
async fn recording_proxy(upstream: std::net::SocketAddr) -> (std::net::SocketAddr, Tape, Tape) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (up_tape, down_tape) = (Tape::default(), Tape::default());
    let (up, down) = (up_tape.clone(), down_tape.clone());
    tokio::spawn(async move {
        let (client, _) = l.accept().await.expect("accept");
        let server = TcpStream::connect(upstream)
            .await
            .expect("connect upstream");
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        tokio::join!(pump(cr, sw, up), pump(sr, cw, down));
    });
    (addr, up_tape, down_tape)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_recording_on_the_path_holds_no_plaintext_of_a_sealed_frame() {
    let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (proxy, up, down) = recording_proxy(server.local_addr().expect("addr")).await;
    let client = tokio::spawn(async move {
        connect::<String, _>(proxy, P, b"cluster key", &"client".to_owned(), T).await
    });
    let (s, _) = server.accept().await.expect("accept");
    let pending = accept::<String>(s, P, b"cluster key", T)
        .await
        .expect("handshake");
    let (mut sr, mut sw) = pending
        .welcome(&"server".to_owned())
        .await
        .expect("welcome");
    let Connected::Linked(mut cr, mut cw, _) = client.await.expect("join").expect("connect") else {
        panic!("refused");
    };

    cw.send(&SECRET_TO_SERVER.to_owned()).await.expect("send");
    sw.send(&SECRET_TO_CLIENT.to_owned()).await.expect("send");
    assert_eq!(
        sr.recv::<String>().await.expect("recv"),
        Received::Msg(SECRET_TO_SERVER.to_owned())
    );
    assert_eq!(
        cr.recv::<String>().await.expect("recv"),
        Received::Msg(SECRET_TO_CLIENT.to_owned())
    );

    let (up, down) = (
        up.lock().expect("tape").clone(),
        down.lock().expect("tape").clone(),
    );
    assert!(
        !up.is_empty() && !down.is_empty(),
        "the proxy saw the traffic"
    );
    for tape in [&up, &down] {
        assert!(!contains(tape, SECRET_TO_SERVER), "plaintext on the path");
        assert!(!contains(tape, SECRET_TO_CLIENT), "plaintext on the path");
        assert!(!contains(tape, "s3cr3t"), "part of a secret on the path");
        assert!(
            !contains(tape, "server-name-alpha"),
            "part of a secret on the path"
        );
    }
}

#[tokio::test]
async fn a_sealed_frame_with_one_byte_changed_on_the_path_is_refused() {
    let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = server.local_addr().expect("addr");
    // a proxy that forwards the handshake, then changes the last byte of what follows
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let (client, _) = l.accept().await.expect("accept");
        let upstream = TcpStream::connect(upstream).await.expect("connect");
        let (mut cr, cw) = client.into_split();
        let (sr, mut sw) = upstream.into_split();
        let down = tokio::spawn(pump(sr, cw, Tape::default()));
        // the hello is the client's first frame: forward it untouched
        let hello = read_frame(&mut cr).await.expect("hello");
        write_frame(&mut sw, &hello).await.expect("forward");
        // then the first sealed frame, with its last byte changed, then the next one as it is
        let mut sealed = read_frame(&mut cr).await.expect("sealed");
        let last = sealed.len() - 1;
        sealed[last] ^= 0x01;
        write_frame(&mut sw, &sealed).await.expect("forward");
        let next = read_frame(&mut cr).await.expect("sealed");
        write_frame(&mut sw, &next).await.expect("forward");
        let _ = down.await;
    });
    let client = tokio::spawn(async move {
        connect::<String, _>(proxy, P, b"cluster key", &"client".to_owned(), T).await
    });
    let (s, _) = server.accept().await.expect("accept");
    let pending = accept::<String>(s, P, b"cluster key", T)
        .await
        .expect("handshake");
    let (mut sr, _sw) = pending
        .welcome(&"server".to_owned())
        .await
        .expect("welcome");
    let Connected::Linked(_cr, mut cw, _) = client.await.expect("join").expect("connect") else {
        panic!("refused");
    };
    cw.send(&"promote".to_owned()).await.expect("send");
    cw.send(&"promote".to_owned()).await.expect("send");
    assert!(matches!(
        sr.recv::<String>().await.expect("recv"),
        Received::Rejected(ref r) if r.contains("authentication")
    ));
    // the refused frame did not advance the sequence: the next one (2) is out of sequence
    assert!(matches!(
        sr.recv::<String>().await.expect("recv"),
        Received::Rejected(ref r) if r.contains("sequence")
    ));
}
