//! A chunk: how items are cut into chunks and encoded into frames (rmp-serde values,
//! or a slab of plain data: `slab.rs`), where a chunk's outcome goes, and how its
//! answer decodes into results. Handing chunks to the
//! pool's actor is `submit.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use super::slab::Plain;
use super::wire::{self, ItemFailure};
use super::{PoolError, TaskError};
use crate::runtime::logging::carry::Carried;
use crate::runtime::registry::PodTask;

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
    /// Its hold on its caller's span, until its records are replayed.
    pub carried: Option<Carried>,
}

/// Cuts items into chunks and encodes each into its `RUN` frame: as one slab of plain
/// data when the task has a checked [`PodTask`] witness, else one rmp-serde value per
/// item.
///
/// A chunk ends at `chunksize` items, or once its arguments take
/// [`wire::CHUNK_BYTES`], or before an item that would take it past the pool's frame
/// limit: Python's chunksize is an upper bound, so big items never make a frame too large to
/// send.
pub(super) struct Chunker<'a, A, R> {
    entry: &'a str,
    next_task: &'a AtomicU64,
    reply: R,
    max: usize,
    /// The largest header this entry can have, so a chunk is cut before its frame
    /// could pass the limit, whatever its id and count turn out to be.
    header_max: usize,
    /// What a chunk's arguments may take.
    room: usize,
    /// What a chunk's arguments take before it is cut.
    target: usize,
    chunksize: u32,
    /// The bulk path's cast, when chunks go as slabs.
    slab: Option<Plain<A>>,
    /// The serde arguments of the chunk being filled, encoded one after the other.
    body: Vec<u8>,
    /// The arguments of the slab being filled, cast to bytes when it closes.
    plain: Vec<A>,
    count: u32,
    /// Each chunk closed: its task id and item count, in input order.
    closed: Vec<(u64, u32)>,
    /// The caller's span, which each chunk carries.
    carried: Option<Carried>,
}

impl<'a, A: Serialize, R: FnMut(usize, u64) -> ReplyTo> Chunker<'a, A, R> {
    /// `reply(seq, id)` says where the outcome of the `seq`th chunk, task `id`, goes;
    /// with `slab`, chunks go as slabs; each carries `carried`, its caller's span.
    pub(super) fn new(
        entry: &'a str,
        chunksize: usize,
        max_frame_len: usize,
        next_task: &'a AtomicU64,
        slab: Option<Plain<A>>,
        reply: R,
        carried: Option<Carried>,
    ) -> Self {
        let header_max = wire::start_run(u64::MAX, entry, u32::MAX, wire::SLAB, u64::MAX).len() - 4;
        let room = max_frame_len.saturating_sub(header_max);
        Chunker {
            entry,
            next_task,
            reply,
            max: max_frame_len,
            header_max,
            room,
            target: wire::CHUNK_BYTES.min(room),
            chunksize: u32::try_from(chunksize).unwrap_or(u32::MAX),
            slab,
            body: Vec::new(),
            plain: Vec::new(),
            count: 0,
            closed: Vec::new(),
            carried,
        }
    }

    /// Takes items from `items` until a chunk is complete, and pushes it onto
    /// `tasks` (with, for serde values, the chunk that an item did not fit beside);
    /// returns the bytes of the frames pushed, or `None` once the input is exhausted,
    /// the chunk being filled left for [`finish`](Chunker::finish).
    pub(super) fn fill(
        &mut self,
        items: &mut impl Iterator<Item = A>,
        tasks: &mut Vec<NewTask>,
    ) -> Result<Option<usize>, PoolError> {
        let Some(size) = self.slab.as_ref().map(|plain| plain.size) else {
            for item in items {
                let pushed = self.push_serde(item, tasks)?;
                if pushed > 0 {
                    return Ok(Some(pushed));
                }
            }
            return Ok(None);
        };
        // A slab's length follows from its count, so a whole chunk is taken at once:
        // one `extend`, which for a range or a `Vec` is a tight loop, not a check per
        // item.
        let fit = self.room / size;
        let per = (self.chunksize as usize)
            .min(self.target.div_ceil(size))
            .min(fit)
            .max(1);
        self.plain.extend(items.take(per - self.plain.len()));
        if fit == 0 && !self.plain.is_empty() {
            return Err(self.too_large(size));
        }
        self.count = u32::try_from(self.plain.len()).expect("at most the chunksize");
        if self.plain.len() < per {
            return Ok(None);
        }
        Ok(Some(self.close(tasks)))
    }

    /// Adds a serde item; pushes onto `tasks` the chunk it completed, or the one it did
    /// not fit beside, and returns the bytes of the frames pushed.
    fn push_serde(&mut self, item: A, tasks: &mut Vec<NewTask>) -> Result<usize, PoolError> {
        let mark = self.body.len();
        item.serialize(&mut rmp_serde::Serializer::new(&mut self.body).with_struct_map())
            .map_err(|e| {
                PoolError::Invalid(format!(
                    "arguments do not encode as `{}`: {e}",
                    std::any::type_name::<A>()
                ))
            })?;
        self.count += 1;
        let mut pushed = 0;
        if self.body.len() > self.room {
            if self.count == 1 {
                return Err(self.too_large(self.body.len()));
            }
            // It does not fit beside the others: it starts the next chunk.
            let carried = self.body.split_off(mark);
            self.count -= 1;
            pushed += self.close(tasks);
            self.body = carried;
            self.count = 1;
            if self.body.len() > self.room {
                return Err(self.too_large(self.body.len()));
            }
        }
        if self.count >= self.chunksize || self.body.len() >= self.target {
            pushed += self.close(tasks);
        }
        Ok(pushed)
    }

    /// Closes the last chunk, if it has items; returns every chunk's task id and item
    /// count, in input order.
    pub(super) fn finish(mut self, tasks: &mut Vec<NewTask>) -> Vec<(u64, u32)> {
        if self.count > 0 {
            self.close(tasks);
        }
        self.closed
    }

    /// Turns the chunk being filled into a task; returns its frame's length.
    fn close(&mut self, tasks: &mut Vec<NewTask>) -> usize {
        let id = self.next_task.fetch_add(1, Ordering::Relaxed);
        let span = self.carried.as_ref().map_or(0, Carried::number);
        let frame = match &self.slab {
            Some(plain) => {
                let mut frame = wire::start_run(id, self.entry, self.count, wire::SLAB, span);
                frame.reserve(self.plain.len() * plain.size);
                plain
                    .encode(&self.plain, &mut frame)
                    .expect("the witness was checked for these arguments");
                self.plain.clear();
                frame
            }
            None => {
                let mut frame = wire::start_run(id, self.entry, self.count, wire::SERDE, span);
                frame.extend_from_slice(&self.body);
                self.body.clear();
                frame
            }
        };
        let frame = wire::finish(frame, self.max).expect("cut to fit the limit");
        let len = frame.len();
        let seq = self.closed.len();
        self.closed.push((id, self.count));
        tasks.push(NewTask {
            id,
            items: self.count,
            frame: Arc::new(frame),
            reply: (self.reply)(seq, id),
            carried: self.carried.clone(),
        });
        self.count = 0;
        len
    }

    fn too_large(&self, body_len: usize) -> PoolError {
        PoolError::TooLarge {
            len: body_len + self.header_max,
            max: self.max,
        }
    }
}

/// Decodes a chunk's answer into one result per item; `slab` is the task's witness,
/// checked for `R`, which reads an answer sent as a slab.
pub(super) fn decode_chunk<R: DeserializeOwned + 'static>(
    outcome: ChunkOutcome,
    slab: Option<PodTask>,
) -> Result<Vec<Result<R, TaskError>>, PoolError> {
    let done = match outcome {
        Ok(done) => done,
        Err(ChunkFailure::Pool(e)) => return Err(e),
        Err(ChunkFailure::Task(e)) => return Ok(vec![Err(e)]),
    };
    let (header, failures, rest) = split_done(&done)?;
    let items = header.items;
    if header.codec == wire::SLAB {
        // A malformed slab is the whole chunk's error, item by item, as a chunk
        // whose worker died.
        let oks = match read_slab(slab, items, &failures, rest) {
            Ok(oks) => oks,
            Err(message) => {
                let e = TaskError::Decode { message };
                return Ok((0..items).map(|_| Err(e.clone())).collect());
            }
        };
        let mut oks = oks.into_iter();
        let mut failures = failures.into_iter().peekable();
        return Ok((0..items)
            .map(|i| match failures.next_if(|(at, _)| *at == i) {
                Some((_, f)) => Err(item_error(f)),
                None => Ok(oks.next().expect("counted by read_slab")),
            })
            .collect());
    }
    let mut de = rmp_serde::Deserializer::from_read_ref(rest);
    let mut failures = failures.into_iter().peekable();
    let mut out = Vec::with_capacity(items as usize);
    for i in 0..items {
        if let Some((_, f)) = failures.next_if(|(at, _)| *at == i) {
            out.push(Err(item_error(f)));
            continue;
        }
        out.push(R::deserialize(&mut de).map_err(|e| TaskError::Decode {
            message: format!("as `{}`: {e}", std::any::type_name::<R>()),
        }));
    }
    Ok(out)
}

/// The successful results of a slab answer, after checking that its failures are in
/// order and in range and that it holds one value for each other item.
fn read_slab<R: 'static>(
    slab: Option<PodTask>,
    items: u32,
    failures: &Failures,
    bytes: &[u8],
) -> Result<Vec<R>, String> {
    let mut next = 0;
    for (at, _) in failures {
        if *at < next || *at >= items {
            return Err(format!(
                "a failure of item {at} out of order, or out of {items}"
            ));
        }
        next = at + 1;
    }
    let count = items as usize - failures.len();
    if count == 0 && bytes.is_empty() {
        // Every item failed: there is nothing to read, even without a witness (a slab
        // sent to a task that takes none is answered so).
        return Ok(Vec::new());
    }
    let w = slab.ok_or("a slab answer to a chunk sent as rmp-serde values")?;
    let mut oks = Vec::with_capacity(count);
    w.decode(bytes, count, &mut oks)?;
    Ok(oks)
}

/// Decodes a chunk's answer straight into `out` (a `map`): the first failure is the
/// error, with its index in the input. `slab` is as for [`decode_chunk`].
pub(super) fn decode_into<R: DeserializeOwned + 'static>(
    outcome: ChunkOutcome,
    out: &mut Vec<R>,
    start: usize,
    slab: Option<PodTask>,
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
    let (header, failures, rest) = split_done(&done)?;
    let items = header.items;
    if let Some((at, f)) = failures.into_iter().next() {
        return Err(PoolError::Task {
            index: start + at as usize,
            error: item_error(f),
        });
    }
    if header.codec == wire::SLAB {
        let decoded = match slab {
            Some(w) => w.decode(rest, items as usize, out),
            None => Err("a slab answer to a chunk sent as rmp-serde values".into()),
        };
        return decoded.map_err(|message| PoolError::Task {
            index: start,
            error: TaskError::Decode { message },
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

fn split_done(done: &Done) -> Result<(wire::Header, Failures, &[u8]), PoolError> {
    let bad = |message: String| PoolError::Task {
        index: 0,
        error: TaskError::Decode { message },
    };
    let (header, mut rest) = wire::split(&done.frame).map_err(bad)?;
    let failures: Failures = wire::take(&mut rest).map_err(bad)?;
    Ok((header, failures, rest))
}

fn item_error(f: ItemFailure) -> TaskError {
    match f {
        ItemFailure::Panicked { message, location } => TaskError::Panicked { message, location },
        ItemFailure::Args { message } => TaskError::Args { message },
        ItemFailure::Encode { message } => TaskError::Encode { message },
        ItemFailure::NotATask { name } => TaskError::NotATask { name },
    }
}

#[cfg(test)]
mod tests {
    use multiproc_core::codec;

    use super::*;

    /// A chunk's `DONE` body, sent as a slab.
    fn done(items: u32, failures: &[u32], slab: &[u64]) -> ChunkOutcome {
        let failures: Failures = failures.iter().map(|&at| (at, panicked())).collect();
        let mut frame = wire::start(wire::DONE, 1, "", items, wire::SLAB);
        codec::encode_into(&failures, &mut frame).unwrap();
        frame.extend_from_slice(bytemuck::cast_slice(slab));
        Ok(Done {
            frame: frame[4..].to_vec(),
        })
    }

    fn panicked() -> ItemFailure {
        ItemFailure::Panicked {
            message: "no".into(),
            location: None,
        }
    }

    fn witness() -> Option<PodTask> {
        PodTask::of::<u64, u64>()
    }

    #[test]
    fn a_slab_answer_decodes_around_its_failures() {
        let r = decode_chunk::<u64>(done(3, &[1], &[10, 30]), witness()).unwrap();
        assert!(
            matches!(r[..], [Ok(10), Err(TaskError::Panicked { .. }), Ok(30)]),
            "{r:?}"
        );
        let mut out = vec![1];
        decode_into::<u64>(done(2, &[], &[5, 6]), &mut out, 1, witness()).unwrap();
        assert_eq!(out, [1, 5, 6]);
        let e = decode_into::<u64>(done(3, &[1], &[10, 30]), &mut out, 100, witness());
        assert!(
            matches!(
                e,
                Err(PoolError::Task {
                    index: 101,
                    error: TaskError::Panicked { .. }
                })
            ),
            "{e:?}"
        );
        // Every item failed: nothing to read, witness or not.
        let r = decode_chunk::<u64>(done(2, &[0, 1], &[]), None).unwrap();
        assert!(r.iter().all(Result::is_err), "{r:?}");
    }

    #[test]
    fn a_malformed_slab_answer_is_a_decode_error_for_its_chunk() {
        // (items, failed items, slab, witness)
        type Case = (u32, &'static [u32], &'static [u64], Option<PodTask>);
        let cases: [Case; 6] = [
            (3, &[], &[1, 2], witness()),              // one result short
            (1, &[], &[1, 2], witness()),              // one too many
            (2, &[1, 0], &[], witness()),              // failures out of order
            (2, &[5], &[1], witness()),                // a failure out of range
            (1, &[], &[1], None),                      // no witness to read it
            (1, &[], &[1], PodTask::of::<u32, u32>()), // another type's witness
        ];
        for (items, failures, slab, w) in cases {
            let r = decode_chunk::<u64>(done(items, failures, slab), w).unwrap();
            assert_eq!(r.len(), items as usize);
            assert!(
                r.iter().all(|e| matches!(e, Err(TaskError::Decode { .. }))),
                "{items} {failures:?} {slab:?}: {r:?}"
            );
            if failures.is_empty() {
                let mut out = Vec::new();
                let e = decode_into::<u64>(done(items, failures, slab), &mut out, 7, w);
                assert!(
                    matches!(
                        e,
                        Err(PoolError::Task {
                            index: 7,
                            error: TaskError::Decode { .. }
                        })
                    ),
                    "{e:?}"
                );
                assert!(out.is_empty());
            }
        }
        // A slab cut inside a value.
        let mut outcome = done(1, &[], &[1]).unwrap();
        outcome.frame.pop();
        let r = decode_chunk::<u64>(Ok(outcome), witness()).unwrap();
        assert!(matches!(r[..], [Err(TaskError::Decode { .. })]), "{r:?}");
    }
}
