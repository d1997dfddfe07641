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

/// The most a log stream reads (and holds) at once.
const CHUNK: u64 = 64 << 10;

/// How much of a file `tail` reads back at most.
const MAX_TAIL_BYTES: u64 = 16 << 20;

/// The answer for a log route: streamed in [`CHUNK`]s, so a reader holds one chunk at a time
/// whatever it asked for. `slot` (a log-read slot of the listener) is held until the body ends.
pub(crate) async fn serve(
    path: PathBuf,
    tail: Option<usize>,
    follow: bool,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let start = match tokio::task::spawn_blocking({
        let path = path.clone();
        move || tail_start(&path, tail)
    })
    .await
    {
        Ok(Ok(v)) => v,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => (0, 0),
        Ok(Err(e)) => return error(format!("cannot read {}: {e}", path.display())),
        Err(e) => return error(format!("cannot read {}: {e}", path.display())),
    };
    let (from, len) = start;
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    let body = if follow {
        Body::from_stream(with_slot(follow_stream(path, from), slot))
    } else {
        Body::from_stream(with_slot(range_stream(path, from, len), slot))
    };
    (text, body).into_response()
}

fn error(error: String) -> Response {
    let body = nm_api::ErrorBody { error };
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// `stream`, holding `slot` until it ends or is dropped (the client went away).
fn with_slot<S: futures_util::Stream + Send + 'static>(
    stream: S,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> impl futures_util::Stream<Item = S::Item> + Send + 'static {
    stream.map(move |item| {
        let _held = &slot;
        item
    })
}

/// Where the last `tail` lines of `path` start (the last 16 MiB if `None`), and its length: read
/// backwards in chunks, never more than one held.
fn tail_start(path: &Path, tail: Option<usize>) -> std::io::Result<(u64, u64)> {
    let mut f = supervisor_core::os::open_read_nofollow(path)?;
    let len = f.metadata()?.len();
    let floor = len.saturating_sub(MAX_TAIL_BYTES);
    let Some(n) = tail else {
        return Ok((floor, len));
    };
    if n == 0 {
        return Ok((len, len));
    }
    // a final newline ends the last line; it does not start another
    let mut end = len;
    let mut seen = 0;
    let mut buf = vec![0u8; usize::try_from(CHUNK).unwrap_or(1 << 16)];
    let mut skip_final = true;
    while end > floor {
        let from = end.saturating_sub(CHUNK).max(floor);
        let chunk = &mut buf[..usize::try_from(end - from).unwrap_or(0)];
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(chunk)?;
        for (i, b) in chunk.iter().enumerate().rev() {
            let at = from + i as u64;
            if skip_final {
                skip_final = false;
                if at + 1 == len && *b == b'\n' {
                    continue;
                }
            }
            if *b == b'\n' {
                seen += 1;
                if seen == n {
                    return Ok((at + 1, len));
                }
            }
        }
        end = from;
    }
    Ok((floor, len))
}

/// The bytes of `path` from `from` to `to`, in chunks.
fn range_stream(
    path: PathBuf,
    from: u64,
    to: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::try_unfold((None::<std::fs::File>, from), move |(file, at)| {
        let path = path.clone();
        async move {
            if at >= to {
                return Ok(None);
            }
            let want = (to - at).min(CHUNK);
            let (file, bytes) = tokio::task::spawn_blocking(move || {
                let mut f = match file {
                    Some(f) => f,
                    None => {
                        let mut f = supervisor_core::os::open_read_nofollow(&path)?;
                        f.seek(SeekFrom::Start(at))?;
                        f
                    }
                };
                let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
                f.by_ref().take(want).read_to_end(&mut buf)?;
                Ok::<_, std::io::Error>((f, buf))
            })
            .await
            .map_err(std::io::Error::other)??;
            if bytes.is_empty() {
                return Ok(None); // truncated meanwhile
            }
            let next = at + bytes.len() as u64;
            Ok(Some((Bytes::from(bytes), (Some(file), next))))
        }
    })
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
    let mut f = supervisor_core::os::open_read_nofollow(path)?;
    let len = f.metadata()?.len();
    if len < *offset {
        *offset = 0; // truncated by rotation
    }
    f.seek(SeekFrom::Start(*offset))?;
    let mut buf = Vec::new();
    f.take((len - *offset).min(CHUNK)).read_to_end(&mut buf)?;
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

    fn tail(p: &Path, n: Option<usize>) -> Vec<u8> {
        let (from, len) = tail_start(p, n).unwrap();
        let all = std::fs::read(p).unwrap();
        all[usize::try_from(from).unwrap()..usize::try_from(len).unwrap()].to_vec()
    }

    #[test]
    fn tail_returns_the_last_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&p, Some(2)), b"b\nc\n");
        assert_eq!(tail(&p, Some(10)), b"a\nb\nc\n");
        assert_eq!(tail_start(&p, None).unwrap(), (0, 6));
        assert_eq!(tail(&p, Some(0)), b"");
        std::fs::write(&p, "a\nb").unwrap();
        assert_eq!(tail(&p, Some(1)), b"b");
        assert_eq!(tail(&p, Some(2)), b"a\nb");
        std::fs::write(&p, "\n\n").unwrap();
        assert_eq!(tail(&p, Some(1)), b"\n");
        std::fs::write(&p, "").unwrap();
        assert_eq!(tail(&p, Some(3)), b"");
    }

    #[test]
    fn tail_reads_back_across_chunks_and_stops_at_16_mib() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.log");
        // lines longer than a chunk, so the search crosses chunk boundaries
        let line = |c: u8| {
            let mut l = vec![c; 100_000];
            l.push(b'\n');
            l
        };
        let text: Vec<u8> = (b'a'..=b'e').flat_map(line).collect();
        std::fs::write(&p, &text).unwrap();
        assert_eq!(tail(&p, Some(2)), [line(b'd'), line(b'e')].concat());
        assert_eq!(tail(&p, Some(5)), text);
        // one 17 MiB line: only its last 16 MiB are served
        std::fs::write(&p, vec![b'x'; 17 << 20]).unwrap();
        assert_eq!(tail_start(&p, Some(1)).unwrap(), (1 << 20, 17 << 20));
        assert_eq!(tail_start(&p, None).unwrap(), (1 << 20, 17 << 20));
    }

    #[tokio::test]
    async fn a_range_is_streamed_in_bounded_chunks() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.log");
        let text: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &text).unwrap();
        let chunks: Vec<Bytes> = range_stream(p.clone(), 10, 250_000)
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert!(chunks.iter().all(|c| c.len() as u64 <= CHUNK));
        assert_eq!(chunks.concat(), text[10..250_000]);
    }
}
