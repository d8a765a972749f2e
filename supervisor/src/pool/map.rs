//! The `map` family of [`Pool`]: `map`, `map_async`, `map_results`, `starmap`,
//! `imap` and `imap_unordered`, each cutting its items into chunks (`chunk.rs`).

use std::collections::VecDeque;
use std::sync::Arc;

use multiproc_core::{Reorder, default_chunksize};
use tokio::sync::mpsc;

use super::chunk::{ReplyTo, decode_chunk, decode_into};
use super::imap::Feed;
use super::{AsyncResult, Imap, Pool, PoolError, TaskError};
use crate::runtime::registry::PodTask;
use crate::runtime::target::Task;

impl Pool {
    /// `f` over every item, results in input order (Python's `map`), in chunks of
    /// Python's default size: `ceil(len / (4 × processes))`.
    ///
    /// # Errors
    ///
    /// The first failed item, as [`PoolError::Task`] with its index; the pool's own
    /// errors otherwise.
    pub async fn map<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
    ) -> Result<Vec<F::Output>, PoolError> {
        let mut r = self.map_async(f, items);
        self.interruptible(r.get()).await
    }

    /// [`map`](Pool::map) with an explicit chunksize (at least 1).
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map), and [`PoolError::Invalid`] for a chunksize of 0.
    pub async fn map_chunked<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
        chunksize: usize,
    ) -> Result<Vec<F::Output>, PoolError> {
        let mut r = self.map_async_chunked(f, items, chunksize);
        self.interruptible(r.get()).await
    }

    /// [`map`](Pool::map), returning at once.
    pub fn map_async<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
    ) -> AsyncResult<Vec<F::Output>> {
        let items = items.into_iter();
        match items.size_hint() {
            // A known length (a range, a Vec, …): encoded straight from the input, with
            // no copy of it.
            (len, Some(max)) if len == max => {
                let chunksize = default_chunksize(len, self.processes()).max(1);
                self.map_items(f, items, len, chunksize)
            }
            _ => {
                let items: Vec<F::Args> = items.collect();
                let chunksize = default_chunksize(items.len(), self.processes()).max(1);
                let len = items.len();
                self.map_items(f, items.into_iter(), len, chunksize)
            }
        }
    }

    /// [`map_chunked`](Pool::map_chunked), returning at once.
    pub fn map_async_chunked<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
        chunksize: usize,
    ) -> AsyncResult<Vec<F::Output>> {
        let items = items.into_iter();
        let len = items.size_hint().0;
        self.map_items(f, items, len, chunksize)
    }

    /// `len` is a capacity hint for the results.
    fn map_items<F: Task<M>, M>(
        &self,
        f: F,
        items: impl Iterator<Item = F::Args>,
        len: usize,
        chunksize: usize,
    ) -> AsyncResult<Vec<F::Output>> {
        let _ = f;
        let entry = match Self::task_entry::<F>() {
            Ok(e) => e,
            Err(e) => return AsyncResult::failed(e),
        };
        let slab = Self::slab::<F, M>(entry);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let plain = slab.map(PodTask::plain);
        let chunks = match self.submit_chunks(entry.name, items, chunksize, plain, |seq, _| {
            ReplyTo::Many(tx.clone(), seq)
        }) {
            Ok(ids) => ids.len(),
            Err(e) => return AsyncResult::failed(e),
        };
        drop(tx);
        let shared = Arc::clone(&self.inner.shared);
        AsyncResult::new(
            async move {
                let mut out = Vec::with_capacity(len);
                let mut order = Reorder::default();
                let mut seen = 0;
                while seen < chunks {
                    let (seq, outcome) = rx.recv().await.ok_or_else(|| shared.ended_error())?;
                    seen += 1;
                    order.insert(seq, outcome);
                    while let Some(outcome) = order.pop() {
                        let start = out.len();
                        decode_into::<F::Output>(outcome, &mut out, start, slab)?;
                    }
                }
                Ok(out)
            },
            Some(self.ctl()),
            None,
        )
    }

    /// `f` over every item, each item's own result in input order: unlike
    /// [`map`](Pool::map) (Python's, which fails as a whole at the first failed item),
    /// a task that fails, panics or loses its worker is an `Err` at its place, and
    /// every other result is kept. Chunks are of Python's default size; the items of a
    /// chunk whose worker died all fail with [`TaskError::WorkerDied`] (a chunksize of
    /// 1 loses no more than the task that was running).
    ///
    /// # Errors
    ///
    /// The pool's own errors only ([`PoolError::Terminated`], an unregistered task,
    /// [`PoolError::Interrupted`], …): a task's failure is its item's `Err`.
    pub async fn map_results<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
    ) -> Result<Vec<Result<F::Output, TaskError>>, PoolError> {
        let items: Vec<F::Args> = items.into_iter().collect();
        let chunksize = default_chunksize(items.len(), self.processes()).max(1);
        self.map_results_chunked(f, items, chunksize).await
    }

    /// [`map_results`](Pool::map_results) with an explicit chunksize (at least 1).
    ///
    /// # Errors
    ///
    /// As [`map_results`](Pool::map_results), and [`PoolError::Invalid`] for a
    /// chunksize of 0.
    pub async fn map_results_chunked<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
        chunksize: usize,
    ) -> Result<Vec<Result<F::Output, TaskError>>, PoolError> {
        let mut r = self.map_results_async(f, items, chunksize);
        self.interruptible(r.get()).await
    }

    fn map_results_async<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
        chunksize: usize,
    ) -> AsyncResult<Vec<Result<F::Output, TaskError>>> {
        let _ = f;
        let entry = match Self::task_entry::<F>() {
            Ok(e) => e,
            Err(e) => return AsyncResult::failed(e),
        };
        let items = items.into_iter();
        let len = items.size_hint().0;
        let slab = Self::slab::<F, M>(entry);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let plain = slab.map(PodTask::plain);
        let sizes: Vec<usize> =
            match self.submit_chunks(entry.name, items, chunksize, plain, |seq, _| {
                ReplyTo::Many(tx.clone(), seq)
            }) {
                Ok(ids) => ids.into_iter().map(|(_, n)| n as usize).collect(),
                Err(e) => return AsyncResult::failed(e),
            };
        drop(tx);
        let shared = Arc::clone(&self.inner.shared);
        AsyncResult::new(
            async move {
                let mut out = Vec::with_capacity(len);
                let mut order = Reorder::default();
                let mut seen = 0;
                let mut next_chunk = 0;
                while seen < sizes.len() {
                    let (seq, outcome) = rx.recv().await.ok_or_else(|| shared.ended_error())?;
                    seen += 1;
                    order.insert(seq, outcome);
                    while let Some(outcome) = order.pop() {
                        let n = sizes[next_chunk];
                        next_chunk += 1;
                        let mut results = decode_chunk::<F::Output>(outcome, slab)?;
                        // A chunk that failed as a whole (its worker died, it timed
                        // out) is one error: each of its items gets it.
                        if results.len() != n {
                            let error = match results.pop() {
                                Some(Err(e)) => e,
                                _ => TaskError::Decode {
                                    message: format!(
                                        "a chunk of {n} items answered with {} results",
                                        results.len() + 1
                                    ),
                                },
                            };
                            results = (0..n).map(|_| Err(error.clone())).collect();
                        }
                        out.extend(results);
                    }
                }
                Ok(out)
            },
            Some(self.ctl()),
            None,
        )
    }

    /// Python's `starmap`: in Rust a function of several arguments already takes them
    /// as one tuple, so this is [`map`](Pool::map) under Python's name.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub async fn starmap<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
    ) -> Result<Vec<F::Output>, PoolError> {
        self.map(f, items).await
    }

    /// Python's `starmap_async`; see [`starmap`](Pool::starmap).
    pub fn starmap_async<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
    ) -> AsyncResult<Vec<F::Output>> {
        self.map_async(f, items)
    }

    /// `f` over a lazily read input, results in input order (Python's `imap`). At most
    /// a bounded window of chunks is in flight, so an endless input takes bounded
    /// memory; the input is read as results are taken.
    pub fn imap<F: Task<M>, M, I>(&self, f: F, items: I, chunksize: usize) -> Imap<F::Output>
    where
        I: IntoIterator<Item = F::Args>,
        I::IntoIter: Send + 'static,
    {
        self.imap_inner(f, items, chunksize, true)
    }

    /// As [`imap`](Pool::imap), with results in completion order (Python's
    /// `imap_unordered`).
    pub fn imap_unordered<F: Task<M>, M, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Imap<F::Output>
    where
        I: IntoIterator<Item = F::Args>,
        I::IntoIter: Send + 'static,
    {
        self.imap_inner(f, items, chunksize, false)
    }

    fn imap_inner<F: Task<M>, M, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> Imap<F::Output>
    where
        I: IntoIterator<Item = F::Args>,
        I::IntoIter: Send + 'static,
    {
        let _ = f;
        let slab = Self::task_entry::<F>()
            .ok()
            .and_then(|entry| Self::slab::<F, M>(entry));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut input = items.into_iter();
        let total = match input.size_hint() {
            (low, Some(high)) if low == high => Some(low),
            _ => None,
        };
        let feed: Feed = {
            let mut buf: Vec<F::Args> = Vec::new();
            let chunk = chunksize.max(1);
            Box::new(move |pool: &Pool, first: usize, chunks: usize| {
                let entry = Self::task_entry::<F>()?;
                buf.clear();
                buf.extend(input.by_ref().take(chunk * chunks));
                let plain = slab.map(PodTask::plain);
                let chunks =
                    pool.submit_chunks(entry.name, buf.drain(..), chunk, plain, |seq, _| {
                        ReplyTo::Many(tx.clone(), first + seq)
                    })?;
                Ok(chunks.into_iter().map(|(_, n)| n as usize).collect())
            })
        };
        let window = (self.processes() * 64).max(128);
        Imap {
            pool: self.clone(),
            feed: Some(feed),
            rx,
            order: if ordered {
                Some(Reorder::default())
            } else {
                None
            },
            sizes: std::collections::HashMap::new(),
            next_index: 0,
            sent: 0,
            received: 0,
            released: 0,
            window,
            chunksize,
            ready: VecDeque::new(),
            decode: decode_chunk::<F::Output>,
            slab,
            done: false,
            items_done: 0,
            total,
            on_progress: None,
        }
    }
}
