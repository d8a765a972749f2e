//! A chunk: how items are cut into chunks and encoded into frames, where a chunk's
//! outcome goes, and how its answer decodes into results.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use super::wire::{self, ItemFailure};
use super::{Pool, PoolError, TaskError, actor};

/// A submitted chunk's raw answer: the body of its `DONE` frame, decoded by the caller.
pub(crate) struct Done {
    pub(super) frame: Vec<u8>,
}

/// What a chunk comes to: its answer, or why it has none.
pub(crate) type ChunkOutcome = Result<Done, ChunkFailure>;

/// Why a whole chunk failed.
#[derive(Debug, Clone)]
pub(crate) enum ChunkFailure {
    Task(TaskError),
    Pool(PoolError),
}

/// Where a chunk's outcome goes.
pub(crate) enum ReplyTo {
    One(oneshot::Sender<ChunkOutcome>),
    Many(mpsc::UnboundedSender<(usize, ChunkOutcome)>, usize),
}

impl ReplyTo {
    pub(crate) fn send(self, outcome: ChunkOutcome) {
        match self {
            ReplyTo::One(tx) => {
                let _ = tx.send(outcome);
            }
            ReplyTo::Many(tx, seq) => {
                let _ = tx.send((seq, outcome));
            }
        }
    }
}

/// A chunk ready for the actor.
pub(crate) struct NewTask {
    pub id: u64,
    pub items: u32,
    pub frame: Arc<Vec<u8>>,
    pub reply: ReplyTo,
}

impl Pool {
    /// Encodes chunks of `items` into frames and hands them to the actor; returns each
    /// chunk's task id and item count, in input order.
    ///
    /// A chunk ends at `chunksize` items, or once its arguments take
    /// [`wire::CHUNK_BYTES`], or before an item that would take it past the pool's
    /// frame limit: Python's chunksize is a most, so big items never make a frame too
    /// large to send.
    pub(super) fn submit_chunks<A: Serialize>(
        &self,
        entry: &'static str,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
        mut reply: impl FnMut(usize, u64) -> ReplyTo,
    ) -> Result<Vec<(u64, u32)>, PoolError> {
        if chunksize == 0 {
            return Err(PoolError::Invalid("chunksize must be at least 1".into()));
        }
        if let Some(refused) = self.inner.shared.refusal() {
            return Err(refused);
        }
        // Chunks go to the actor in batches of about this many bytes, so the workers
        // start on the first while the caller encodes the rest.
        const BATCH: usize = 256 * 1024;
        let max = self.inner.shared.max_frame_len;
        // The largest header this entry can have, so a chunk is cut before its frame
        // could pass the limit, whatever its id and count turn out to be.
        let header_max = wire::start(wire::RUN, u64::MAX, entry, u32::MAX).len() - 4;
        let room = max.saturating_sub(header_max);
        let target = wire::CHUNK_BYTES.min(room);
        let chunksize = u32::try_from(chunksize).unwrap_or(u32::MAX);
        let mut done = Vec::new();
        let mut tasks = Vec::new();
        let mut batched = 0;
        // A few tasks are dispatched from this thread, under the actor's lock: an idle
        // worker then gets its task without a switch to the actor's thread. Big
        // batches go through the mailbox, so the actor's thread is never kept waiting
        // on the lock; and once anything is in the mailbox, everything goes there,
        // which keeps submissions in order.
        const DIRECT: usize = 16;
        let send = |tasks: Vec<NewTask>| -> Result<(), PoolError> {
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
        };
        // Turns the encoded arguments of `count` items into a task.
        let mut close = |body: &[u8], count: u32, tasks: &mut Vec<NewTask>| {
            let id = self.inner.shared.next_task.fetch_add(1, Ordering::Relaxed);
            let mut frame = wire::start(wire::RUN, id, entry, count);
            frame.extend_from_slice(body);
            let frame = wire::finish(frame, max).expect("cut to fit the limit");
            let seq = done.len();
            let len = frame.len();
            done.push((id, count));
            tasks.push(NewTask {
                id,
                items: count,
                frame: Arc::new(frame),
                reply: reply(seq, id),
            });
            len
        };
        let too_large = |body_len: usize| PoolError::TooLarge {
            len: body_len + header_max,
            max,
        };
        // The arguments of the chunk being filled, encoded one after the other.
        let mut body = Vec::new();
        let mut count = 0u32;
        for item in items {
            let mark = body.len();
            item.serialize(&mut rmp_serde::Serializer::new(&mut body).with_struct_map())
                .map_err(|e| {
                    PoolError::Invalid(format!(
                        "arguments do not encode as `{}`: {e}",
                        std::any::type_name::<A>()
                    ))
                })?;
            count += 1;
            if body.len() > room {
                if count == 1 {
                    return Err(too_large(body.len()));
                }
                // It does not fit beside the others: it starts the next chunk.
                let carried = body.split_off(mark);
                batched += close(&body, count - 1, &mut tasks);
                body = carried;
                count = 1;
                if body.len() > room {
                    return Err(too_large(body.len()));
                }
            }
            if count >= chunksize || body.len() >= target {
                batched += close(&body, count, &mut tasks);
                body.clear();
                count = 0;
            }
            if batched >= BATCH {
                send(std::mem::take(&mut tasks))?;
                batched = 0;
            }
        }
        if count > 0 {
            close(&body, count, &mut tasks);
        }
        if !tasks.is_empty() {
            send(tasks)?;
        }
        Ok(done)
    }
}

/// Decodes a chunk's answer into one result per item.
pub(super) fn decode_chunk<R: DeserializeOwned>(
    outcome: ChunkOutcome,
) -> Result<Vec<Result<R, TaskError>>, PoolError> {
    let done = match outcome {
        Ok(done) => done,
        Err(ChunkFailure::Pool(e)) => return Err(e),
        Err(ChunkFailure::Task(e)) => return Ok(vec![Err(e)]),
    };
    let (items, failures, rest) = split_done(&done)?;
    let mut de = rmp_serde::Deserializer::from_read_ref(rest);
    let mut failures = failures.into_iter().peekable();
    let mut out = Vec::with_capacity(items as usize);
    for i in 0..items {
        if failures.peek().is_some_and(|(at, _)| *at == i) {
            let (_, f) = failures.next().expect("peeked");
            out.push(Err(item_error(f)));
            continue;
        }
        out.push(R::deserialize(&mut de).map_err(|e| TaskError::Decode {
            message: format!("as `{}`: {e}", std::any::type_name::<R>()),
        }));
    }
    Ok(out)
}

/// Decodes a chunk's answer straight into `out` (a `map`): the first failure is the
/// error, with its index in the input.
pub(super) fn decode_into<R: DeserializeOwned>(
    outcome: ChunkOutcome,
    out: &mut Vec<R>,
    start: usize,
) -> Result<(), PoolError> {
    let done = match outcome {
        Ok(done) => done,
        Err(ChunkFailure::Pool(e)) => return Err(e),
        Err(ChunkFailure::Task(error)) => {
            return Err(PoolError::Task {
                index: start,
                error,
            });
        }
    };
    let (items, failures, rest) = split_done(&done)?;
    if let Some((at, f)) = failures.into_iter().next() {
        return Err(PoolError::Task {
            index: start + at as usize,
            error: item_error(f),
        });
    }
    let mut de = rmp_serde::Deserializer::from_read_ref(rest);
    for i in 0..items {
        let r = R::deserialize(&mut de).map_err(|e| PoolError::Task {
            index: start + i as usize,
            error: TaskError::Decode {
                message: format!("as `{}`: {e}", std::any::type_name::<R>()),
            },
        })?;
        out.push(r);
    }
    Ok(())
}

type Failures = Vec<(u32, ItemFailure)>;

fn split_done(done: &Done) -> Result<(u32, Failures, &[u8]), PoolError> {
    let bad = |message: String| PoolError::Task {
        index: 0,
        error: TaskError::Decode { message },
    };
    let (header, mut rest) = wire::split(&done.frame).map_err(bad)?;
    let failures: Failures = wire::take(&mut rest).map_err(bad)?;
    Ok((header.items, failures, rest))
}

fn item_error(f: ItemFailure) -> TaskError {
    match f {
        ItemFailure::Panicked { message, location } => TaskError::Panicked { message, location },
        ItemFailure::Args { message } => TaskError::Args { message },
        ItemFailure::Encode { message } => TaskError::Encode { message },
        ItemFailure::NotATask { name } => TaskError::NotATask { name },
    }
}
