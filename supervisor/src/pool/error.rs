//! The pool's errors: `PoolError` for the pool and its calls, `TaskError` for one
//! task (one item) without a result.

use std::sync::Arc;
use std::time::Duration;

use multiproc_core::{Exhausted, ExitReason};
use serde::Serialize;

use crate::runtime::error::Error;

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
    /// ([`PoolBuilder::max_frame_len`](crate::PoolBuilder::max_frame_len), and at most
    /// [`MAX_NODE_FRAME_LEN`](crate::MAX_NODE_FRAME_LEN) for a pool with nodes,
    /// the cluster engine's session frame limit): no chunk can carry it.
    #[error(
        "an item's arguments take {len} bytes in their frame, over the pool's frame limit of {max} \
         (max_frame_len; for a pool with nodes, at most 15 MiB: the cluster session's frame limit)"
    )]
    TooLarge {
        /// The size of a frame carrying that item alone.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A node of [`PoolBuilder::nodes`](crate::PoolBuilder::nodes) cannot take workers:
    /// not connected from this process (its connection was refused, or never made),
    /// or down.
    #[error("pool node: {0}")]
    Node(#[source] multiproc_core::NodeError),
}

impl From<Error> for PoolError {
    fn from(e: Error) -> Self {
        match e {
            Error::Exhausted { source, .. } => PoolError::Exhausted(source),
            Error::Node(e) => PoolError::Node(e),
            e => PoolError::Entry(Arc::new(e)),
        }
    }
}
