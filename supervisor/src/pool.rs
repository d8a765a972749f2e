//! `Pool`: Python's `Pool` and `ProcessPoolExecutor`, on supervised worker processes.
//!
//! A pool actor (one task in the process that made the pool) owns the
//! [`Scheduler`](multiproc_core::scheduler::Scheduler), a pure state machine: it feeds
//! it what happens (work submitted, a worker ready, a chunk answered, a worker exited,
//! a timeout due) and carries out what it returns (spawn, dispatch, retire, kill,
//! finish). Workers are child processes running a built-in entry; each has its own
//! socket to the pool, so no worker waits on another's lock and a dead worker takes
//! nothing down with it but the chunk it was running.
//!
//! Callers encode their arguments and decode their results themselves: the actor only
//! moves bytes, so a large `map` costs the actor a few messages, not a million.

mod actor;
pub(crate) mod wire;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use multiproc_core::scheduler::SchedulerConfig;
use multiproc_core::{
    EntryKind, Exhausted, ExitReason, Reorder, RestartIntensity, RetryPolicy, StartMethod, codec,
    default_chunksize,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

pub use wire::ItemFailure;
pub use worker::{NoTarget, NoTask, Probe, TaskFn, ViaTarget, ViaTask, not_a_task, run_task};

use crate::runtime::registry::{self, Entry};
use crate::{Error, Target, Task};

/// Why one task (one item) has no result.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; its worker lives on.
    #[error("task panicked{}: {message}", at(location))]
    Panicked {
        /// The panic message.
        message: String,
        /// `file:line:column`, when known.
        location: Option<String>,
    },
    /// The worker running the task exited (killed, crashed, or called `exit`).
    #[error("worker {worker} (pid {pid}) died running the task: {reason}")]
    WorkerDied {
        /// The worker's name.
        worker: String,
        /// Its process id.
        pid: u32,
        /// How it ended.
        reason: ExitReason,
    },
    /// The task ran past the pool's task timeout; its worker was killed and replaced.
    #[error("task ran past its timeout of {limit:?}; worker {worker} (pid {pid}) was killed")]
    Timeout {
        /// The worker that was killed.
        worker: String,
        /// Its process id.
        pid: u32,
        /// The time the task was allowed.
        limit: Duration,
    },
    /// The task killed `deaths` workers in a row and was given up as poison.
    #[error("task quarantined after it killed {deaths} workers in a row (last: {reason})")]
    Quarantined {
        /// Workers it killed.
        deaths: u32,
        /// How the last one ended.
        reason: ExitReason,
    },
    /// The arguments did not decode as the function's (a call by name with the wrong
    /// types).
    #[error("bad arguments: {message}")]
    Args {
        /// The decoder's message.
        message: String,
    },
    /// The task's result could not be encoded.
    #[error("the result does not encode: {message}")]
    Encode {
        /// The encoder's message.
        message: String,
    },
    /// The result could not be decoded as the type asked for.
    #[error("the result does not decode: {message}")]
    Decode {
        /// The decoder's message.
        message: String,
    },
    /// The entry exists but is not a task (its result is not a serde value).
    #[error("`{name}` is not a pool task")]
    NotATask {
        /// The entry.
        name: String,
    },
    /// The task was cancelled before it started.
    #[error("task cancelled")]
    Cancelled,
}

fn at(location: &Option<String>) -> String {
    location
        .as_ref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default()
}

/// Everything that can go wrong with a pool.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A task failed; `index` is its position in the input (0 for `apply`).
    #[error("task {index} failed: {error}")]
    Task {
        /// The item's position.
        index: usize,
        /// Why.
        #[source]
        error: TaskError,
    },
    /// The function is not registered (or not usable as a task).
    #[error(transparent)]
    Entry(Arc<Error>),
    /// No task of that name is registered (a call by name).
    #[error("no task named `{0}` is registered; add `multiproc::register!` next to it")]
    UnknownTask(String),
    /// A setting is out of range (zero processes, a chunksize of 0, …).
    #[error("invalid pool setting: {0}")]
    Invalid(String),
    /// The pool was closed: it takes no new work.
    #[error("the pool is closed")]
    Closed,
    /// `join` needs `close` or `terminate` first.
    #[error("the pool is still running; call close() or terminate() before join()")]
    NotClosed,
    /// The pool was terminated before the work finished.
    #[error("the pool was terminated")]
    Terminated,
    /// SIGINT (Ctrl-C) arrived while waiting; the pool was terminated.
    #[error("interrupted (SIGINT); the pool was terminated")]
    Interrupted,
    /// Workers kept failing to start (a failing initializer); the pool gave up.
    #[error("pool broken: its workers keep failing to start; the last one ended with: {reason}")]
    Broken {
        /// How the last worker that failed to start ended (the initializer's panic or
        /// error).
        reason: ExitReason,
    },
    /// Workers could not be started because the system had no room for them (a
    /// cgroup's `pids.max`, `RLIMIT_NOFILE`, …): the pool gave up, as for
    /// [`Broken`](PoolError::Broken). The source names the limit and how to raise it.
    #[error("the pool's workers cannot be started: {0}")]
    Exhausted(#[source] Exhausted),
    /// `get` or `wait` timed out; the task goes on.
    #[error("timed out after {0:?} waiting for the result; the task goes on")]
    Timeout(Duration),
    /// The result was already taken by an earlier `get`.
    #[error("the result was already taken")]
    Taken,
    /// `successful` before the result is ready.
    #[error("the result is not ready")]
    NotReady,
    /// One item's arguments are over the pool's frame limit
    /// ([`PoolBuilder::max_frame_len`]): no chunk can carry it.
    #[error(
        "an item's arguments take {len} bytes in their frame, over the pool's max_frame_len of {max}"
    )]
    TooLarge {
        /// The size of a frame carrying that item alone.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl From<Error> for PoolError {
    fn from(e: Error) -> Self {
        match e {
            Error::Exhausted { source, .. } => PoolError::Exhausted(source),
            e => PoolError::Entry(Arc::new(e)),
        }
    }
}

/// A worker's name and process id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// `PoolWorker-N` (or your prefix), by Python's identity rules.
    pub name: String,
    /// Its process id.
    pub pid: u32,
}

/// How a pool is set up; [`Pool::builder`] starts one.
#[derive(Debug)]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<Result<(String, Vec<u8>), PoolError>>,
    max_tasks: Option<u32>,
    method: StartMethod,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    prefix: String,
    start_intensity: RestartIntensity,
    max_frame_len: usize,
}

impl PoolBuilder {
    /// The number of worker processes (default: [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A registered function each worker runs once before it takes work (Python's
    /// `initializer` and `initargs`). If it fails, the worker exits; when workers keep
    /// failing to start, the pool fails with [`PoolError::Broken`].
    pub fn initializer<F: Target<M>, M>(mut self, f: F, args: F::Args) -> Self {
        let _ = f;
        self.initializer = Some(
            registry::by_type::<F>(EntryKind::Function)
                .map_err(PoolError::from)
                .and_then(|e| {
                    codec::encode(&args)
                        .map(|a| (e.name.to_string(), a))
                        .map_err(|e| PoolError::Invalid(format!("initializer arguments: {e}")))
                }),
        );
        self
    }

    /// Replaces a worker after it has run this many tasks (chunks), as Python's
    /// `maxtasksperchild`; the replacement starts while the old one finishes.
    pub fn max_tasks_per_child(mut self, n: u32) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// How workers are started (default: `Forkserver`, as Python 3.14 chose on Linux:
    /// a pool replaces workers, after deaths, timeouts and `max_tasks_per_child`, and a
    /// forked replacement is ready in about half the time of a spawned one).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// How long one item may run; a chunk of `n` items may run `n` times this. A task
    /// past it fails with [`TaskError::Timeout`], its worker is killed and replaced.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// What happens to a task whose worker dies (default: it fails with
    /// [`TaskError::WorkerDied`]; a task that kills 3 workers in a row is quarantined).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The workers' name prefix (default `PoolWorker`, giving `PoolWorker-3`,
    /// `PoolWorker-1:2`, … by the process counter, as Python names them).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many workers may fail to start (exit before their initializer finished)
    /// within a window before the pool gives up (default: 3 in 5 s).
    pub fn start_intensity(mut self, limit: RestartIntensity) -> Self {
        self.start_intensity = limit;
        self
    }

    /// The largest frame between the pool and a worker, either way (default
    /// [`DEFAULT_MAX_FRAME_LEN`](multiproc_transport::DEFAULT_MAX_FRAME_LEN): no limit
    /// but memory, as CPython's pool; at least 64 KiB). Chunks are cut
    /// to fit it; an item whose arguments alone pass it is [`PoolError::TooLarge`],
    /// and a chunk whose results pass it fails with [`TaskError::Encode`].
    pub fn max_frame_len(mut self, max: usize) -> Self {
        self.max_frame_len = max;
        self
    }

    /// Starts the pool: its workers start in the background, and work can be submitted
    /// at once.
    ///
    /// # Errors
    ///
    /// [`PoolError::Invalid`] for zero processes or zero `max_tasks_per_child`;
    /// [`PoolError::Entry`] for an unregistered initializer, or when this process
    /// cannot start children (see [`Process::start`](crate::Process::start));
    /// [`PoolError::Exhausted`] when it has no room for its own runtime's threads.
    /// Workers start in the background: one the system has no room for fails the
    /// pool's work later, with [`PoolError::Exhausted`] once the start intensity is
    /// spent.
    pub fn start(self) -> Result<Pool, PoolError> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes == 0 {
            return Err(PoolError::Invalid("processes must be at least 1".into()));
        }
        if self.max_tasks == Some(0) {
            return Err(PoolError::Invalid(
                "max_tasks_per_child must be at least 1".into(),
            ));
        }
        if self.max_frame_len < MIN_POOL_FRAME_LEN {
            return Err(PoolError::Invalid(format!(
                "max_frame_len {} is under the least a pool works with, {MIN_POOL_FRAME_LEN}",
                self.max_frame_len
            )));
        }
        if self.start_intensity.validate().is_err() {
            return Err(PoolError::Invalid(format!(
                "start_intensity {:?}",
                self.start_intensity
            )));
        }
        crate::runtime::bootstrap::check_init();
        if crate::runtime::current::me().daemon {
            return Err(Error::DaemonWithChildren.into());
        }
        crate::runtime::ensure()?;
        let init = self.initializer.transpose()?;
        let cfg = SchedulerConfig {
            processes,
            max_tasks_per_worker: self.max_tasks,
            task_timeout: self.timeout,
            retry: self.retry,
            start_intensity: self.start_intensity,
        };
        let shared = Arc::new(Shared {
            state: AtomicU8::new(RUNNING),
            next_task: AtomicU64::new(1),
            processes,
            broken: std::sync::Mutex::new(None),
            mailed: std::sync::atomic::AtomicUsize::new(0),
            max_frame_len: self.max_frame_len,
        });
        let (tx, core) = actor::start(
            cfg,
            actor::Launch {
                init,
                method: self.method,
                prefix: self.prefix,
                max_frame_len: self.max_frame_len,
            },
            Arc::clone(&shared),
        );
        Ok(Pool {
            inner: Arc::new(Handle { shared, tx, core }),
        })
    }
}

const RUNNING: u8 = 0;
const CLOSED: u8 = 1;
const TERMINATED: u8 = 2;

/// The least [`PoolBuilder::max_frame_len`] takes: a worker's failure report for a
/// chunk, the headers and the task names must always fit.
pub(crate) const MIN_POOL_FRAME_LEN: usize = 64 << 10;
const INTERRUPTED: u8 = 3;
const BROKEN: u8 = 4;

/// What the handles and the actor share.
pub(crate) struct Shared {
    state: AtomicU8,
    next_task: AtomicU64,
    processes: usize,
    /// Why the pool gave up, once it has.
    broken: std::sync::Mutex<Option<PoolError>>,
    /// Submissions sent to the actor's mailbox and not yet handled.
    mailed: std::sync::atomic::AtomicUsize,
    /// The pool link's frame limit.
    max_frame_len: usize,
}

impl Shared {
    /// The error for work refused in the current state, if any.
    fn refusal(&self) -> Option<PoolError> {
        match self.state.load(Ordering::Acquire) {
            RUNNING => None,
            CLOSED => Some(PoolError::Closed),
            TERMINATED => Some(PoolError::Terminated),
            INTERRUPTED => Some(PoolError::Interrupted),
            _ => Some(self.broken_error()),
        }
    }

    /// The error for a task the pool failed as a whole.
    fn ended_error(&self) -> PoolError {
        match self.state.load(Ordering::Acquire) {
            INTERRUPTED => PoolError::Interrupted,
            BROKEN => self.broken_error(),
            _ => PoolError::Terminated,
        }
    }

    fn broken_error(&self) -> PoolError {
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or(PoolError::Broken {
                reason: ExitReason::Normal,
            })
    }
}

/// The handle's side: the actor's mailbox, closed (and the pool closed with it) when
/// the last handle goes.
struct Handle {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<actor::Request>,
    core: actor::Core,
}

/// A pool of worker processes.
///
/// Clones share the pool. Dropping the last clone *closes* the pool rather than
/// terminating it (Python's `with Pool()` terminates and silently drops pending work):
/// every task already submitted still runs and its [`AsyncResult`] still completes,
/// then the workers exit. [`terminate`](Pool::terminate) is the way to abandon work,
/// and every pending result then fails with [`PoolError::Terminated`] — nothing is
/// ever left waiting. When the program itself exits, its workers are stopped.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Handle>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.inner.shared.processes)
            .finish_non_exhaustive()
    }
}

/// A submitted chunk's raw answer: the body of its `DONE` frame, decoded by the caller.
pub(crate) struct Done {
    frame: Vec<u8>,
}

/// What a chunk comes to: its answer, or why it has none.
pub(crate) type Outcome = Result<Done, ChunkFailure>;

/// Why a whole chunk failed.
#[derive(Debug, Clone)]
pub(crate) enum ChunkFailure {
    Task(TaskError),
    Pool(PoolError),
}

/// Where a chunk's outcome goes.
pub(crate) enum ReplyTo {
    One(oneshot::Sender<Outcome>),
    Many(mpsc::UnboundedSender<(usize, Outcome)>, usize),
}

impl ReplyTo {
    pub(crate) fn send(self, outcome: Outcome) {
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
    /// A pool of `processes` workers with the default settings.
    ///
    /// # Errors
    ///
    /// See [`PoolBuilder::start`].
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        Pool::builder().processes(processes).start()
    }

    /// A builder for the pool's settings.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            initializer: None,
            max_tasks: None,
            method: StartMethod::Forkserver,
            timeout: None,
            retry: RetryPolicy::default(),
            prefix: "PoolWorker".into(),
            start_intensity: RestartIntensity::default(),
            max_frame_len: multiproc_transport::DEFAULT_MAX_FRAME_LEN,
        }
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.inner.shared.processes
    }

    /// Encodes chunks of `items` into frames and hands them to the actor; returns each
    /// chunk's task id and item count, in input order.
    ///
    /// A chunk ends at `chunksize` items, or once its arguments take
    /// [`wire::CHUNK_BYTES`], or before an item that would take it past the pool's
    /// frame limit: Python's chunksize is a most, so big items never make a frame too
    /// large to send.
    fn submit_chunks<A: Serialize>(
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

    fn submit_one<A: Serialize, R: DeserializeOwned + Send + 'static>(
        &self,
        entry: &'static str,
        args: A,
    ) -> AsyncResult<R> {
        let (tx, rx) = oneshot::channel();
        let mut slot = Some(tx);
        match self.submit_chunks(entry, std::iter::once(args), 1, |_, _| {
            ReplyTo::One(slot.take().expect("one chunk"))
        }) {
            Ok(ids) => {
                let shared = Arc::clone(&self.inner.shared);
                let fut = async move {
                    let outcome = rx.await.map_err(|_| shared.ended_error())?;
                    let mut one = decode_chunk::<R>(outcome)?;
                    one.pop()
                        .expect("one item")
                        .map_err(|error| PoolError::Task { index: 0, error })
                };
                AsyncResult::new(fut, Some(self.ctl()), Some(ids[0].0))
            }
            Err(e) => AsyncResult::failed(e),
        }
    }

    /// Runs `f(args)` in a worker and returns the result (Python's `apply`).
    ///
    /// # Errors
    ///
    /// [`PoolError::Task`] when the task failed; the pool's own errors otherwise.
    pub async fn apply<F: Task<M>, M>(&self, f: F, args: F::Args) -> Result<F::Output, PoolError> {
        let mut r = self.apply_async(f, args);
        self.interruptible(r.get()).await
    }

    /// Submits `f(args)` and returns at once (Python's `apply_async`).
    pub fn apply_async<F: Task<M>, M>(&self, f: F, args: F::Args) -> AsyncResult<F::Output> {
        let _ = f;
        match registry::by_type::<F>(EntryKind::Function) {
            Ok(entry) => self.submit_one(entry.name, args),
            Err(e) => AsyncResult::failed(e.into()),
        }
    }

    /// Submits a task: [`apply_async`](Pool::apply_async) under
    /// `ProcessPoolExecutor`'s name. The result can be awaited, and cancelled while it
    /// has not started.
    pub fn submit<F: Task<M>, M>(&self, f: F, args: F::Args) -> AsyncResult<F::Output> {
        self.apply_async(f, args)
    }

    /// Calls a registered task by its name (`module::path::function`, as `register!`
    /// names it), with arguments and result types chosen by the caller and checked
    /// only on the wire: a mismatch is [`TaskError::Args`] or [`TaskError::Decode`].
    pub fn apply_by_name<A: Serialize, R: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
        args: A,
    ) -> AsyncResult<R> {
        match registry::by_name(name) {
            Some(entry) if entry.kind == EntryKind::Function => self.submit_one(entry.name, args),
            _ => AsyncResult::failed(PoolError::UnknownTask(name.to_string())),
        }
    }

    fn task_entry<F: 'static>() -> Result<&'static Entry, PoolError> {
        Ok(registry::by_type::<F>(EntryKind::Function)?)
    }

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
        let (tx, mut rx) = mpsc::unbounded_channel();
        let chunks = match self.submit_chunks(entry.name, items, chunksize, |seq, _| {
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
                        decode_into::<F::Output>(outcome, &mut out, start)?;
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
        let (tx, rx) = mpsc::unbounded_channel();
        let feed: Feed = {
            let mut input = items.into_iter();
            let mut buf: Vec<F::Args> = Vec::new();
            let chunk = chunksize.max(1);
            Box::new(move |pool: &Pool, first: usize, chunks: usize| {
                let entry = Self::task_entry::<F>()?;
                buf.clear();
                buf.extend(input.by_ref().take(chunk * chunks));
                let chunks = pool.submit_chunks(entry.name, buf.drain(..), chunk, |seq, _| {
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
            done: false,
        }
    }

    /// Stops taking work; the workers exit once every submitted task has finished.
    pub fn close(&self) {
        let _ = self.inner.shared.state.compare_exchange(
            RUNNING,
            CLOSED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        let _ = self.inner.tx.send(actor::Request::Close);
    }

    /// Fails every pending task with [`PoolError::Terminated`], kills the workers and
    /// waits until they are gone.
    pub async fn terminate(&self) {
        self.end(TERMINATED);
        let _ = self.join_inner().await;
    }

    fn end(&self, how: u8) {
        self.ctl().end(how);
    }

    fn ctl(&self) -> Ctl {
        Ctl {
            shared: Arc::clone(&self.inner.shared),
            tx: self.inner.tx.downgrade(),
        }
    }

    /// Waits for the workers to exit, after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate).
    ///
    /// # Errors
    ///
    /// [`PoolError::NotClosed`] while the pool still runs (Python raises
    /// `ValueError`), [`PoolError::Interrupted`] on SIGINT.
    pub async fn join(&self) -> Result<(), PoolError> {
        if self.inner.shared.state.load(Ordering::Acquire) == RUNNING {
            return Err(PoolError::NotClosed);
        }
        self.interruptible(self.join_inner()).await
    }

    async fn join_inner(&self) -> Result<(), PoolError> {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(actor::Request::Join(tx)).is_ok() {
            let _ = rx.await;
        }
        Ok(())
    }

    /// The workers alive now, with their names and pids.
    pub async fn workers(&self) -> Vec<WorkerInfo> {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(actor::Request::Workers(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    async fn interruptible<T>(
        &self,
        fut: impl Future<Output = Result<T, PoolError>>,
    ) -> Result<T, PoolError> {
        self.ctl()
            .interruptible(fut, || Err(PoolError::Interrupted))
            .await
    }
}

/// Decodes a chunk's answer into one result per item.
fn decode_chunk<R: DeserializeOwned>(
    outcome: Outcome,
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
fn decode_into<R: DeserializeOwned>(
    outcome: Outcome,
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

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The result of work submitted without waiting: Python's `AsyncResult`, and a
/// `ProcessPoolExecutor` future (it can be awaited).
pub struct AsyncResult<R> {
    fut: Option<BoxFuture<Result<R, PoolError>>>,
    out: Option<Result<R, PoolError>>,
    /// Whether the result was a success, once it arrived (it stays known after `get`
    /// takes the result).
    succeeded: Option<bool>,
    taken: bool,
    ctl: Option<Ctl>,
    task: Option<u64>,
}

/// A weak line to the pool actor: enough to cancel a task or terminate the pool on
/// SIGINT, without keeping a dropped pool open.
#[derive(Clone)]
struct Ctl {
    shared: Arc<Shared>,
    tx: mpsc::WeakUnboundedSender<actor::Request>,
}

impl Ctl {
    fn end(&self, how: u8) {
        let _ = self
            .shared
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now == RUNNING || now == CLOSED).then_some(how)
            });
        if let Some(tx) = self.tx.upgrade() {
            let _ = tx.send(actor::Request::Terminate);
        }
    }

    /// Runs `fut`; SIGINT (in the root) terminates the pool and fails it with
    /// [`PoolError::Interrupted`] instead.
    async fn interruptible<T>(
        &self,
        fut: impl Future<Output = T>,
        interrupted: impl FnOnce() -> T,
    ) -> T {
        let Some(mut interrupt) = crate::runtime::signals::take_interrupts() else {
            return fut.await;
        };
        tokio::select! {
            biased;
            r = fut => r,
            _ = interrupt.wait() => {
                self.end(INTERRUPTED);
                interrupted()
            }
        }
    }
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.out.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: Send + 'static> AsyncResult<R> {
    fn new(
        fut: impl Future<Output = Result<R, PoolError>> + Send + 'static,
        ctl: Option<Ctl>,
        task: Option<u64>,
    ) -> Self {
        AsyncResult {
            fut: Some(Box::pin(fut)),
            out: None,
            succeeded: None,
            taken: false,
            ctl,
            task,
        }
    }

    fn failed(e: PoolError) -> Self {
        AsyncResult {
            fut: None,
            out: Some(Err(e)),
            succeeded: Some(false),
            taken: false,
            ctl: None,
            task: None,
        }
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.out.is_some() || self.taken {
            return Poll::Ready(());
        }
        let fut = self.fut.as_mut().expect("pending results have a future");
        match fut.as_mut().poll(cx) {
            Poll::Ready(r) => {
                self.succeeded = Some(r.is_ok());
                self.out = Some(r);
                self.fut = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the result has arrived.
    pub fn ready(&mut self) -> bool {
        let waker = std::task::Waker::noop();
        self.poll_inner(&mut Context::from_waker(waker)).is_ready()
    }

    /// Whether the task succeeded.
    ///
    /// # Errors
    ///
    /// [`PoolError::NotReady`] before the result has arrived (Python raises
    /// `ValueError`).
    pub fn successful(&mut self) -> Result<bool, PoolError> {
        if !self.ready() {
            return Err(PoolError::NotReady);
        }
        Ok(self.succeeded == Some(true))
    }

    /// Waits until the result has arrived. SIGINT (in the root) ends the wait: the
    /// pool is terminated and the result is [`PoolError::Interrupted`].
    pub async fn wait(&mut self) {
        let Some(ctl) = self.ctl.clone() else {
            return std::future::poll_fn(|cx| self.poll_inner(cx)).await;
        };
        let interrupted = ctl
            .interruptible(
                async {
                    std::future::poll_fn(|cx| self.poll_inner(cx)).await;
                    false
                },
                || true,
            )
            .await;
        if interrupted {
            self.fut = None;
            self.out = Some(Err(PoolError::Interrupted));
            self.succeeded = Some(false);
        }
    }

    /// Waits at most `timeout`; whether the result has arrived.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.wait()).await.is_ok()
    }

    /// Waits for the result and takes it.
    ///
    /// # Errors
    ///
    /// The task's or the pool's error; [`PoolError::Taken`] if an earlier `get` took
    /// the result.
    pub async fn get(&mut self) -> Result<R, PoolError> {
        self.wait().await;
        self.take()
    }

    /// As [`get`](AsyncResult::get), waiting at most `timeout`: then
    /// [`PoolError::Timeout`], and the task goes on (a later `get` can still have it).
    ///
    /// # Errors
    ///
    /// As [`get`](AsyncResult::get), and [`PoolError::Timeout`].
    pub async fn get_timeout(&mut self, timeout: Duration) -> Result<R, PoolError> {
        if !self.wait_timeout(timeout).await {
            return Err(PoolError::Timeout(timeout));
        }
        self.take()
    }

    fn take(&mut self) -> Result<R, PoolError> {
        match self.out.take() {
            Some(r) => {
                self.taken = true;
                r
            }
            None => Err(PoolError::Taken),
        }
    }

    /// Cancels the task if it has not started (`ProcessPoolExecutor`'s
    /// `Future.cancel`); whether it was. A cancelled task fails with
    /// [`TaskError::Cancelled`].
    pub async fn cancel(&mut self) -> bool {
        let (Some(ctl), Some(id)) = (&self.ctl, self.task) else {
            return false;
        };
        let Some(tx) = ctl.tx.upgrade() else {
            return false;
        };
        let (reply, rx) = oneshot::channel();
        if tx.send(actor::Request::Cancel(id, reply)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Runs `callback` with the result, or `error_callback` with the error, when it
    /// arrives (Python's `callback` and `error_callback`). They run on the runtime's
    /// threads, as Python's run on the pool's result thread: keep them short. The
    /// returned result is ready once the callback has run.
    pub fn then(
        mut self,
        callback: impl FnOnce(R) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> AsyncResult<()> {
        let (tx, rx) = oneshot::channel();
        crate::runtime::handle().spawn(async move {
            match self.get().await {
                Ok(r) => callback(r),
                Err(e) => error_callback(e),
            }
            let _ = tx.send(());
        });
        AsyncResult::new(
            async move { rx.await.map_err(|_| PoolError::Terminated) },
            None,
            None,
        )
    }
}

impl<R: Send + Unpin + 'static> Future for AsyncResult<R> {
    type Output = Result<R, PoolError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.poll_inner(cx) {
            Poll::Ready(()) => Poll::Ready(this.take()),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Submits up to `chunks` chunks numbered from `first`; returns their sizes (none: the
/// input is exhausted).
type Feed = Box<dyn FnMut(&Pool, usize, usize) -> Result<Vec<usize>, PoolError> + Send>;
type DecodeChunk<R> = fn(Outcome) -> Result<Vec<Result<R, TaskError>>, PoolError>;

/// The results of [`Pool::imap`] or [`Pool::imap_unordered`], taken with
/// [`next`](Imap::next) (an `Iterator` in the blocking API).
pub struct Imap<R> {
    pool: Pool,
    feed: Option<Feed>,
    rx: mpsc::UnboundedReceiver<(usize, Outcome)>,
    order: Option<Reorder<(usize, Outcome)>>,
    /// Each chunk in flight: the input index of its first item, and how many it has
    /// (chunks are cut by size too, so neither follows from the chunksize).
    sizes: std::collections::HashMap<usize, (usize, usize)>,
    /// The input index of the next chunk's first item.
    next_index: usize,
    sent: usize,
    received: usize,
    released: usize,
    window: usize,
    chunksize: usize,
    ready: VecDeque<Result<R, PoolError>>,
    decode: DecodeChunk<R>,
    done: bool,
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
            let (seq, outcome) = match self.rx.recv().await {
                Some(x) => x,
                None => {
                    self.done = true;
                    return Some(Err(self.pool.inner.shared.ended_error()));
                }
            };
            self.received += 1;
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
                    other => match (self.decode)(other) {
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
