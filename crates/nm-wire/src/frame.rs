//! Length-prefixed frames (a big-endian `u32`, then the bytes) and nonces.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::codec::MAX_FRAME;

/// Writes one frame.
///
/// # Errors
/// Any I/O error of the stream.
///
/// # Panics
/// When `bytes` is longer than 4 GiB (our frames are a few KiB at most).
pub async fn write_frame(w: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).expect("frames are small");
    let mut buf = Vec::with_capacity(4 + bytes.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
    w.write_all(&buf).await
}

/// Reads one frame.
///
/// # Errors
/// Any I/O error (`UnexpectedEof` when the peer closed the stream); `InvalidData` when the length
/// prefix exceeds [`MAX_FRAME`]: nothing more can be read from this stream.
pub async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> io::Result<Vec<u8>> {
    let len = r.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes (at most {MAX_FRAME})"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Whether a read error is the other side's fault (a length prefix out of bounds: a rejected
/// frame, to be counted as such) rather than the stream failing or closing.
#[must_use]
pub fn is_rejected_frame(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
}

/// 32 random bytes from the kernel.
///
/// # Errors
/// When the kernel has no randomness to give (`getrandom` failed).
pub fn nonce() -> io::Result<[u8; 32]> {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn read_all(mut bytes: &[u8]) -> Vec<io::Result<Vec<u8>>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = vec![];
            loop {
                let r = read_frame(&mut bytes).await;
                let end = r.is_err();
                out.push(r);
                if end {
                    return out;
                }
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_read_as_frames_never_panic_and_never_exceed_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..9000),
        ) {
            for r in read_all(&bytes) {
                match r {
                    Ok(f) => prop_assert!(f.len() <= MAX_FRAME),
                    Err(e) => prop_assert!(
                        is_rejected_frame(&e) || e.kind() == io::ErrorKind::UnexpectedEof
                    ),
                }
            }
        }

        #[test]
        fn a_length_prefix_beyond_the_limit_is_a_rejected_frame(len in (MAX_FRAME as u32 + 1)..) {
            let r = read_all(&len.to_be_bytes()).remove(0);
            prop_assert!(r.is_err_and(|e| is_rejected_frame(&e)));
        }
    }
}
