//! `Pool`: Python's `Pool` and `ProcessPoolExecutor`, on supervised worker processes.
//!
//! A pool actor (one task in the process that made the pool) owns the
//! [`Scheduler`](multiproc_core::scheduler::Scheduler), a pure state machine: it feeds
//! it what happens (work submitted, a worker ready, a chunk answered, a worker exited,
//! a timeout due) and carries out what it returns (spawn, dispatch, retire, kill,
//! finish). Workers are child processes running a built-in entry; each has its own
//! link to the pool (two rings in shared memory and a socket), so no worker waits on
//! another's lock and a dead worker takes nothing down with it but the chunk it was
//! running.
//!
//! Callers encode their arguments and decode their results themselves: the actor only
//! moves bytes, so a large `map` costs the actor a few messages, not a million.
//!
//! # Layout
//!
//! - The caller's side: [`Pool`] (here; its `map` family in `map.rs`) and its
//!   [`PoolBuilder`] (`builder.rs`);
//!   `chunk.rs` cuts items into chunks, encodes them and decodes the answers, as
//!   rmp-serde values or, for plain data, as slabs of bytes (`slab.rs`, the bulk path);
//!   `submit.rs` hands the chunks to the actor;
//!   [`AsyncResult`] (`async_result.rs`) and [`Imap`] (`imap.rs`) are the results;
//!   `control.rs` is the weak line they keep to the actor; `error.rs` the errors.
//! - Shared by both sides: `shared.rs`, the pool's lifecycle state (atomics).
//! - The pool's side: `actor.rs`, the scheduler's driver; `launch.rs`, a worker's
//!   start; `channel.rs` and `reader.rs`, the pool's end of a worker's link (writing
//!   tasks, reading answers, by the reader task or by a waiting caller).
//! - The worker's side: `worker.rs`, the loop in the worker process; `port.rs`, its end
//!   of the link; `wire.rs`, what the two ends say; `probe.rs`, how `register!` tells
//!   tasks from entries.
//!
//! # Concurrency
//!
//! One state machine, under one lock: the actor's state (`actor::Core`, the scheduler
//! and the tables of tasks and workers) sits behind a `std::sync::Mutex`, and every
//! input is fed to it under that lock, which is never held across an `.await` or a
//! blocking write (frames go into the worker's ring, or the socket as far as it takes
//! them, the rest to the link's flusher task). A worker's answers are fed to it by
//! whoever reads them: the worker's reader task, or a caller waiting for an answer.
//! The pool's task takes the lock for the inputs that arrive asynchronously (worker
//! events, the mailbox, the next task deadline); a caller submitting a few chunks while
//! the mailbox holds none takes it itself, so an idle worker gets its task without a
//! switch to the pool's task (about 41 -> 31 us per `apply_async`). Everything else a
//! handle asks goes through the mailbox, in order: `Shared::mailed` counts submissions
//! still in it, and while there are any, callers post theirs behind them. The
//! lifecycle state is an atomic beside the lock, so refusing work costs no lock.

mod actor;
mod progress;
pub(crate) use actor::all_workers;
mod async_result;
mod builder;
mod channel;
mod chunk;
mod control;
mod error;
mod imap;
mod launch;
mod map;
mod place;
pub(crate) mod port;
mod probe;
mod reader;
mod remote;
mod report;
mod shared;
mod slab;
mod submit;
pub(crate) mod wire;
mod worker;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc_core::{EntryKind, RestartIntensity, RetryPolicy, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

pub use async_result::AsyncResult;
pub use builder::PoolBuilder;
pub use error::{PoolError, TaskError};
pub use imap::Imap;
pub use probe::{NoPod, NoTarget, NoTask, Probe, ViaPod, ViaTarget, ViaTask};
pub use progress::Progress;
#[cfg(feature = "indicatif")]
pub use progress::progress_bar;
pub use remote::MAX_NODE_FRAME_LEN;
pub use slab::run_slab;

pub use wire::ItemFailure;
pub use worker::{not_a_task, run_task};

use crate::runtime::registry::{self, Entry, PodTask};
use crate::runtime::target::Task;
use chunk::{ReplyTo, decode_chunk};
use control::Control;
use shared::{CLOSED, RUNNING, Shared, TERMINATED};

/// A worker's name, process id and node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// `PoolWorker-N` (or your prefix), by Python's identity rules, wherever it runs.
    pub name: String,
    /// Its process id, on its host.
    pub pid: u32,
    /// The node it runs on ([`PoolBuilder::nodes`]); `None` for this host.
    pub node: Option<String>,
    /// The tasks it has answered (a chunk of a `map` counts once).
    pub tasks_done: u64,
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
            max_rss: None,
            method: StartMethod::Forkserver,
            timeout: None,
            retry: RetryPolicy::default(),
            prefix: "PoolWorker".into(),
            start_intensity: RestartIntensity::default(),
            max_frame_len: multiproc_transport::DEFAULT_MAX_FRAME_LEN,
            nodes: Vec::new(),
        }
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.inner.shared.processes
    }

    /// One item, as one rmp-serde value: a slab would save nothing on one item.
    fn submit_one<A: Serialize, R: DeserializeOwned + Send + 'static>(
        &self,
        entry: &'static str,
        args: A,
    ) -> AsyncResult<R> {
        let (tx, rx) = oneshot::channel();
        let mut slot = Some(tx);
        match self.submit_chunks(entry, std::iter::once(args), 1, None, |_, _| {
            ReplyTo::One(slot.take().expect("one chunk"))
        }) {
            Ok(ids) => {
                let shared = Arc::clone(&self.inner.shared);
                let fut = async move {
                    let outcome = rx.await.map_err(|_| shared.ended_error())?;
                    let mut one = decode_chunk::<R>(outcome, None)?;
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
        match registry::function_by_type::<F>() {
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

    pub(crate) fn task_entry<F: 'static>() -> Result<&'static Entry, PoolError> {
        Ok(registry::function_by_type::<F>()?)
    }

    /// The bulk path's witness for `F`, if its argument and result are plain data:
    /// its chunks then go as slabs.
    pub(crate) fn slab<F: Task<M>, M>(entry: &Entry) -> Option<PodTask> {
        (entry.pod)().and_then(PodTask::check::<F::Args, F::Output>)
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

    fn ctl(&self) -> Control {
        Control {
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

    /// Waits until every worker is up: started, its initializer run, ready for a task.
    ///
    /// A pool is usable as soon as it is made: `Pool::new` returns before any worker
    /// exists, and work submitted meanwhile waits for the first worker, so `map`,
    /// `apply` and the others need no `wait_ready`. It is for what looks at the
    /// workers themselves ([`workers`](Pool::workers), which lists only the ones up
    /// now) or for a program that wants its start-up cost paid before its first task.
    /// A pool whose workers died since is waited for again, until their replacements
    /// are up.
    ///
    /// # Errors
    ///
    /// [`PoolError::Timeout`] when `timeout` passed first (the pool goes on);
    /// [`PoolError::Broken`] when its workers cannot start (the initializer keeps
    /// failing, or the system has no room: then [`PoolError::Exhausted`]);
    /// [`PoolError::Closed`] or [`PoolError::Terminated`] for a pool that no longer
    /// runs; [`PoolError::Interrupted`] on SIGINT.
    pub async fn wait_ready(&self, timeout: Option<Duration>) -> Result<(), PoolError> {
        let (tx, rx) = oneshot::channel();
        // A closed pool that has finished its work ends: it is still closed, not
        // terminated, when the request finds it gone.
        let gone = |shared: &Shared| shared.refusal().unwrap_or_else(|| shared.ended_error());
        if self.inner.tx.send(actor::Request::WaitReady(tx)).is_err() {
            return Err(gone(&self.inner.shared));
        }
        let shared = Arc::clone(&self.inner.shared);
        let ready = async move { rx.await.unwrap_or_else(|_| Err(gone(&shared))) };
        self.interruptible(async move {
            match timeout {
                None => ready.await,
                Some(limit) => {
                    // The process runtime's timer, so that any executor can await this.
                    let sleep = {
                        let _runtime = crate::runtime::handle().enter();
                        tokio::time::sleep(limit)
                    };
                    tokio::select! {
                        got = ready => got,
                        () = sleep => Err(PoolError::Timeout(limit)),
                    }
                }
            }
        })
        .await
    }

    /// The workers alive now, with their names and pids. Right after `Pool::new` there
    /// may be none yet: [`wait_ready`](Pool::wait_ready) first to see them all.
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
