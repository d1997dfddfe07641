//! Serving log files: the last N lines, and with `follow` everything appended afterwards, woken
//! by inotify (no polling). A file truncated by rotation is read again from its start.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};

/// The most a follow stream reads at once.
const FOLLOW_CHUNK: u64 = 1 << 20;

/// How much of a file `tail` reads back at most.
const MAX_TAIL_BYTES: u64 = 16 << 20;

/// The answer for a log route.
pub(crate) async fn serve(path: PathBuf, tail: Option<usize>, follow: bool) -> Response {
    let start = match tokio::task::spawn_blocking({
        let path = path.clone();
        move || read_tail(&path, tail)
    })
    .await
    {
        Ok(Ok(v)) => v,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound && follow => (Vec::new(), 0),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
        Ok(Err(e)) => {
            let body = nm_api::ErrorBody {
                error: format!("cannot read {}: {e}", path.display()),
            };
            return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let (head, offset) = start;
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !follow {
        return (text, head).into_response();
    }
    let first =
        futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(Bytes::from(head)) });
    let rest = follow_stream(path, offset);
    (text, Body::from_stream(first.chain(rest))).into_response()
}

/// The last `tail` lines of `path` (all of it if `None`, up to 16 MiB), and the file length read
/// up to.
fn read_tail(path: &Path, tail: Option<usize>) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(MAX_TAIL_BYTES);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.by_ref().take(len - from).read_to_end(&mut buf)?;
    if let Some(n) = tail {
        let mut cut = buf.len();
        let body = if buf.ends_with(b"\n") {
            &buf[..buf.len() - 1]
        } else {
            &buf[..]
        };
        let mut seen = 0;
        for (i, b) in body.iter().enumerate().rev() {
            if *b == b'\n' {
                seen += 1;
                if seen == n {
                    cut = i + 1;
                    break;
                }
            }
        }
        let start = if seen == n { cut } else { 0 };
        let start = if n == 0 { buf.len() } else { start };
        buf.drain(..start);
    }
    Ok((buf, len))
}

/// Bytes appended to `path` after `offset`, as they come.
fn follow_stream(
    path: PathBuf,
    offset: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(16);
    tokio::spawn(async move {
        let inotify = match Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if let Err(e) = inotify.watches().add(
            &path,
            WatchMask::MODIFY | WatchMask::ATTRIB | WatchMask::MOVE_SELF,
        ) {
            let _ = tx.send(Err(e)).await;
            return;
        }
        let Ok(mut events) = inotify.into_event_stream([0u8; 1024]) else {
            return;
        };
        let mut offset = offset;
        loop {
            // catch up in bounded chunks, then wait for the next write
            loop {
                match read_from(&path, &mut offset) {
                    Ok(bytes) if bytes.is_empty() => break,
                    Ok(bytes) => {
                        if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                            return; // the client went away
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            tokio::select! {
                ev = events.next() => if ev.is_none() { return },
                () = tx.closed() => return,
            }
        }
    });
    tokio_stream_from(rx)
}

fn read_from(path: &Path, offset: &mut u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len < *offset {
        *offset = 0; // truncated by rotation
    }
    f.seek(SeekFrom::Start(*offset))?;
    let mut buf = Vec::new();
    f.take((len - *offset).min(FOLLOW_CHUNK))
        .read_to_end(&mut buf)?;
    *offset += buf.len() as u64;
    Ok(buf)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_the_last_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(read_tail(&p, Some(2)).unwrap().0, b"b\nc\n");
        assert_eq!(read_tail(&p, Some(10)).unwrap().0, b"a\nb\nc\n");
        assert_eq!(read_tail(&p, None).unwrap(), (b"a\nb\nc\n".to_vec(), 6));
        assert_eq!(read_tail(&p, Some(0)).unwrap().0, b"");
        std::fs::write(&p, "a\nb").unwrap();
        assert_eq!(read_tail(&p, Some(1)).unwrap().0, b"b");
    }
}
