//! `Imap`: the results of `imap` and `imap_unordered`, with the input read as they
//! are taken, in a bounded window of chunks.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use multiproc_core::Reorder;
use tokio::sync::mpsc;

use super::chunk::{ChunkFailure, ChunkOutcome};
use super::progress::{OnProgress, Progress};
use super::{Pool, PoolError, TaskError};
use crate::runtime::registry::PodTask;

/// Submits up to `chunks` chunks numbered from `first`; returns their sizes (none: the
/// input is exhausted).
pub(super) type Feed = Box<dyn FnMut(&Pool, usize, usize) -> Result<Vec<usize>, PoolError> + Send>;
pub(super) type DecodeChunk<R> =
    fn(ChunkOutcome, Option<PodTask>) -> Result<Vec<Result<R, TaskError>>, PoolError>;

/// The results of [`Pool::imap`] or [`Pool::imap_unordered`], taken with
/// [`next`](Imap::next) (an `Iterator` in the blocking API).
pub struct Imap<R> {
    pub(super) pool: Pool,
    pub(super) feed: Option<Feed>,
    pub(super) rx: mpsc::UnboundedReceiver<(usize, ChunkOutcome)>,
    pub(super) order: Option<Reorder<(usize, ChunkOutcome)>>,
    /// Each chunk in flight: the input index of its first item, and how many it has
    /// (chunks are cut by size too, so neither follows from the chunksize).
    pub(super) sizes: std::collections::HashMap<usize, (usize, usize)>,
    /// The input index of the next chunk's first item.
    pub(super) next_index: usize,
    pub(super) sent: usize,
    pub(super) received: usize,
    pub(super) released: usize,
    pub(super) window: usize,
    pub(super) chunksize: usize,
    pub(super) ready: VecDeque<Result<R, PoolError>>,
    pub(super) decode: DecodeChunk<R>,
    /// The bulk path's witness, which reads answers sent as slabs.
    pub(super) slab: Option<PodTask>,
    pub(super) done: bool,
    /// Items whose chunk came back, and the input's length when it said it.
    pub(super) items_done: usize,
    pub(super) total: Option<usize>,
    pub(super) on_progress: Option<OnProgress>,
}

impl<R> fmt::Debug for Imap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("in_flight", &(self.sent - self.released))
            .finish_non_exhaustive()
    }
}

impl<R: Send + 'static> Imap<R> {
    /// How many chunks may be in flight at once.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Calls `on_progress` each time a chunk's results come back, from the task that
    /// takes the results (inside [`next`](Imap::next)).
    pub fn with_progress(mut self, on_progress: impl FnMut(Progress) + Send + 'static) -> Self {
        self.on_progress = Some(Box::new(on_progress));
        self
    }

    /// How far the results have come.
    pub fn progress(&self) -> Progress {
        Progress {
            done: self.items_done,
            submitted: self.next_index,
            total: self.total,
        }
    }

    /// The next result: `None` when the input is exhausted and every result taken.
    /// After a pool-wide error (terminated, interrupted, broken) that error is the
    /// last item.
    pub async fn next(&mut self) -> Option<Result<R, PoolError>> {
        // A result already here needs no wait, so nothing to interrupt.
        if let Some(r) = self.ready.pop_front() {
            return Some(r);
        }
        let ctl = self.pool.ctl();
        ctl.interruptible(self.next_inner(), || Some(Err(PoolError::Interrupted)))
            .await
    }

    /// As [`next`](Imap::next), waiting at most `timeout` (Python's
    /// `IMapIterator.next(timeout)`): `Some(Err(PoolError::Timeout))` when no result
    /// came in time. The wait is cancel-safe: nothing is lost, and the result that
    /// did not come in time is the next one taken.
    pub async fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R, PoolError>> {
        match tokio::time::timeout(timeout, self.next()).await {
            Ok(next) => next,
            Err(_) => Some(Err(PoolError::Timeout(timeout))),
        }
    }

    async fn next_inner(&mut self) -> Option<Result<R, PoolError>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            if self.done {
                return None;
            }
            if self.chunksize == 0 {
                self.done = true;
                return Some(Err(PoolError::Invalid(
                    "chunksize must be at least 1".into(),
                )));
            }
            // Refill in batches, when half the window has come back: one submission
            // for many chunks.
            let in_flight = self.sent - self.released;
            if in_flight <= self.window / 2
                && let Some(feed) = self.feed.as_mut()
            {
                match feed(&self.pool, self.sent, self.window - in_flight) {
                    Ok(sizes) if sizes.is_empty() => self.feed = None,
                    Ok(sizes) => {
                        for items in sizes {
                            self.sizes.insert(self.sent, (self.next_index, items));
                            self.next_index += items;
                            self.sent += 1;
                        }
                    }
                    Err(e) => {
                        self.feed = None;
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            if self.sent == self.received {
                self.done = true;
                return None;
            }
            let shared = &self.pool.inner.shared;
            let rx = &mut self.rx;
            let next = std::future::poll_fn(|cx| match rx.poll_recv(cx) {
                std::task::Poll::Pending => {
                    shared.help();
                    rx.poll_recv(cx)
                }
                ready => ready,
            });
            let (seq, outcome) = match next.await {
                Some(x) => x,
                None => {
                    self.done = true;
                    return Some(Err(self.pool.inner.shared.ended_error()));
                }
            };
            self.received += 1;
            self.items_done += self.sizes.get(&seq).map_or(1, |&(_, items)| items);
            let progress = self.progress();
            if let Some(report) = self.on_progress.as_mut() {
                report(progress);
            }
            let outcomes = match self.order.as_mut() {
                Some(order) => {
                    order.insert(seq, (seq, outcome));
                    std::iter::from_fn(|| order.pop()).collect::<Vec<_>>()
                }
                None => vec![(seq, outcome)],
            };
            self.released += outcomes.len();
            for (seq, outcome) in outcomes {
                let (start, items) = self.sizes.remove(&seq).unwrap_or((0, 1));
                let task_error = |(i, error): (usize, TaskError)| PoolError::Task {
                    index: start + i,
                    error,
                };
                match outcome {
                    Err(ChunkFailure::Task(e)) => {
                        // The whole chunk failed (its worker died): one error per item.
                        self.ready
                            .extend((0..items).map(|i| Err(task_error((i, e.clone())))));
                    }
                    other => match (self.decode)(other, self.slab) {
                        Ok(items) => self.ready.extend(
                            items
                                .into_iter()
                                .enumerate()
                                .map(|(i, r)| r.map_err(|e| task_error((i, e)))),
                        ),
                        Err(e) => {
                            self.ready.push_back(Err(e));
                            self.done = true;
                            self.feed = None;
                        }
                    },
                }
            }
        }
    }
}
