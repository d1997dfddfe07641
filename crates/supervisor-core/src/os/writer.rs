//! The ordered writer: blocking disk work (`fsync`, `rename`, `unlink`) on a thread of its own,
//! so a current-thread runtime that also carries heartbeats and link traffic never blocks on a
//! stalled disk.
//!
//! Jobs run one at a time, in the order they were submitted (the order of the
//! [`OrderedWriter::submit`] calls, not of the awaits), so "persist A, then B" holds across the
//! queue. A driver that must not act before a write is durable awaits the write's future: its
//! task waits, the runtime's thread goes on with other tasks.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// A handle to a writer thread. Clones share the thread and its order; the thread ends once
/// every handle is dropped and the jobs already queued have run.
#[derive(Clone)]
pub struct OrderedWriter {
    tx: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
}

impl std::fmt::Debug for OrderedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderedWriter")
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl OrderedWriter {
    /// Starts a writer thread named `name`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(name: &str) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })?;
        Ok(Self {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Queues `work` behind every job submitted before it and returns a future of its result.
    /// The work runs whether or not the future is awaited (or dropped): submitting is the
    /// commitment, awaiting only waits for it.
    ///
    /// The future fails with [`io::ErrorKind::BrokenPipe`] when the writer thread is gone (a job
    /// panicked); the work may then not have run.
    pub fn submit<T, F>(&self, work: F) -> impl Future<Output = io::Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let queued = self.queued.clone();
        queued.fetch_add(1, Ordering::SeqCst);
        let done = queued.clone();
        let job: Job = Box::new(move || {
            let result = work();
            done.fetch_sub(1, Ordering::SeqCst);
            let _ = reply.send(result);
        });
        let sent = self.tx.send(job).is_ok();
        if !sent {
            queued.fetch_sub(1, Ordering::SeqCst);
        }
        async move {
            if !sent {
                return Err(gone());
            }
            rx.await.unwrap_or_else(|_| Err(gone()))
        }
    }

    /// Jobs submitted and not finished yet (the one running included).
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Holds the writer: every job submitted after this call waits until the returned [`Stall`]
    /// is dropped. For tests: a disk that stops answering.
    #[must_use]
    pub fn stall(&self) -> Stall {
        let (release, held) = mpsc::channel::<()>();
        let _ = self.tx.send(Box::new(move || {
            let _ = held.recv(); // returns when the Stall (the only sender) is dropped
        }));
        Stall { _release: release }
    }
}

/// Holds an [`OrderedWriter`] until dropped (see [`OrderedWriter::stall`]).
#[derive(Debug)]
pub struct Stall {
    _release: mpsc::Sender<()>,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the disk writer thread is gone")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_submission_order_off_the_runtime_thread() {
        let w = OrderedWriter::start("test-writer").unwrap();
        let me = std::thread::current().id();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stall = w.stall();
        let futures: Vec<_> = (0..5)
            .map(|i| {
                let log = log.clone();
                w.submit(move || {
                    assert_ne!(std::thread::current().id(), me);
                    log.lock().unwrap().push(i);
                    Ok(i)
                })
            })
            .collect();
        assert_eq!(w.queued(), 5);
        assert!(log.lock().unwrap().is_empty(), "held by the stall");
        drop(stall);
        // awaited in reverse: the order is the submission's
        for (i, f) in futures.into_iter().enumerate().rev() {
            assert_eq!(f.await.unwrap(), i);
        }
        assert_eq!(*log.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(w.queued(), 0);
    }

    #[tokio::test]
    async fn a_job_that_panics_fails_its_future_and_later_ones() {
        let w = OrderedWriter::start("test-writer").unwrap();
        let bad = w.submit(|| -> io::Result<()> { panic!("boom") });
        assert_eq!(bad.await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        let later = w.submit(|| Ok(1));
        assert_eq!(later.await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
