//! Submitting work: a caller's items cut into chunks (`chunk.rs`) and handed to the
//! pool's actor, a batch at a time, some straight from the caller's thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use tokio::sync::oneshot;

use super::chunk::{Chunker, NewTask, ReplyTo, decode_chunk};
use super::slab::Plain;
use super::{Pool, PoolError, TaskError, actor, wire};
use crate::runtime::target::Task;

/// Chunks go to the actor in batches of about this many bytes, so the workers start on
/// the first while the caller encodes the rest.
const BATCH: usize = 256 * 1024;

/// A batch of at most this many tasks is dispatched from the caller's thread, under the
/// actor's lock: an idle worker then gets its task without a switch to the actor's
/// thread. Bigger batches go through the mailbox, so the actor's thread is never kept
/// waiting on the lock.
const DIRECT: usize = 16;

impl Pool {
    /// Encodes chunks of `items` into frames (see [`Chunker`]; as slabs with `slab`)
    /// and hands them to the actor; returns each chunk's task id and item count, in
    /// input order.
    pub(super) fn submit_chunks<A: Serialize>(
        &self,
        entry: &'static str,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
        slab: Option<Plain<A>>,
        reply: impl FnMut(usize, u64) -> ReplyTo,
    ) -> Result<Vec<(u64, u32)>, PoolError> {
        if chunksize == 0 {
            return Err(PoolError::Invalid("chunksize must be at least 1".into()));
        }
        if let Some(refused) = self.inner.shared.refusal() {
            return Err(refused);
        }
        let shared = &self.inner.shared;
        let mut chunker = Chunker::new(
            entry,
            chunksize,
            shared.max_frame_len,
            &shared.next_task,
            slab,
            reply,
            crate::runtime::logging::carry::current(),
        );
        let mut tasks = Vec::new();
        let mut batched = 0;
        let mut items = items.into_iter();
        while let Some(pushed) = chunker.fill(&mut items, &mut tasks)? {
            batched += pushed;
            if batched >= BATCH {
                self.hand_over(std::mem::take(&mut tasks))?;
                batched = 0;
            }
        }
        let chunks = chunker.finish(&mut tasks);
        if !tasks.is_empty() {
            self.hand_over(tasks)?;
        }
        Ok(chunks)
    }

    /// Gives tasks to the actor: a few straight from this thread, the rest through its
    /// mailbox. Once anything is in the mailbox, everything goes there, which keeps
    /// submissions in order.
    fn hand_over(&self, tasks: Vec<NewTask>) -> Result<(), PoolError> {
        let shared = &self.inner.shared;
        if tasks.len() <= DIRECT && shared.mailed.load(Ordering::Acquire) == 0 {
            actor::submit(&self.inner.core, tasks);
            return Ok(());
        }
        shared.mailed.fetch_add(1, Ordering::AcqRel);
        self.inner
            .tx
            .send(actor::Request::Submit(tasks))
            .map_err(|_| {
                shared.mailed.fetch_sub(1, Ordering::AcqRel);
                shared.ended_error()
            })
    }
}

impl Pool {
    /// Sends `F`'s worker a chunk of `items` items whose slab is `slab`, whatever it
    /// holds, and decodes the answer: for tests of what a worker does with a malformed
    /// slab.
    pub(crate) async fn run_raw_slab<F: Task<M>, M>(
        &self,
        slab: &[u8],
        items: u32,
    ) -> Result<Vec<Result<F::Output, TaskError>>, PoolError> {
        let entry = Self::task_entry::<F>()?;
        let shared = &self.inner.shared;
        let id = shared.next_task.fetch_add(1, Ordering::Relaxed);
        let mut frame = wire::start(wire::RUN, id, entry.name, items, wire::SLAB);
        frame.extend_from_slice(slab);
        let max = shared.max_frame_len;
        let frame = wire::finish(frame, max).map_err(|len| PoolError::TooLarge { len, max })?;
        let (tx, rx) = oneshot::channel();
        self.hand_over(vec![NewTask {
            id,
            items,
            frame: Arc::new(frame),
            reply: ReplyTo::One(tx),
            carried: None,
        }])?;
        let outcome = rx.await.map_err(|_| shared.ended_error())?;
        decode_chunk::<F::Output>(outcome, Self::slab::<F, M>(entry))
    }
}
