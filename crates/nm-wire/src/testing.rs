//! Helpers for the tests of crates that run an nm-wire listener or decode its frames (feature
//! `testing`): one copy instead of one per link.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// A connection from `127.0.0.{source}` to `to`, returned once the listener has accepted it (it
/// sent the first handshake frame, or closed the connection), within `wait`.
///
/// # Panics
/// When the socket cannot be bound or connected, or nothing is accepted within `wait`: a test
/// failure.
pub async fn stranger(to: SocketAddr, source: u8, wait: Duration) -> TcpStream {
    let s = TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::from(([127, 0, 0, source], 0)))
        .expect("bind a loopback source address");
    let mut c = s.connect(to).await.expect("connect");
    let mut first = [0u8; 1];
    let _ = tokio::time::timeout(wait, c.read(&mut first))
        .await
        .expect("the listener accepts every connection");
    c
}

/// `bytes` with each `(index, value)` of `flips` written at `index` modulo its length, then cut
/// to `cut` modulo its length plus one: a frame damaged on the path.
#[must_use]
pub fn mutate(mut bytes: Vec<u8>, flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for &(i, v) in flips {
        let n = bytes.len();
        if n > 0 {
            bytes[i % n] = v;
        }
    }
    bytes.truncate(cut % (bytes.len() + 1));
    bytes
}
