//! The scheduler's vocabulary: the numbers it gives tasks and workers, the actions it
//! returns, how a task ends, and the pool's mode.

use std::time::Duration;

use crate::{ExitReason, IntensityExceeded};

/// A task: one chunk of one job, as the pool numbers it.
pub type TaskId = u64;
/// A worker incarnation; a replacement gets a new one.
pub type WorkerId = u64;

/// Why a task ended without a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The worker running it exited.
    WorkerDied {
        /// The worker.
        worker: WorkerId,
        /// How it ended.
        reason: ExitReason,
    },
    /// It ran past its timeout; its worker was killed.
    Timeout {
        /// The worker that was killed.
        worker: WorkerId,
        /// The time it was allowed.
        limit: Duration,
    },
    /// It killed `deaths` workers in a row and will not run again.
    Quarantined {
        /// Workers it killed.
        deaths: u32,
        /// How the last one ended.
        reason: ExitReason,
    },
    /// It was cancelled before it started.
    Cancelled,
    /// The pool was terminated before it finished.
    Terminated,
    /// Workers kept failing to start; the last one ended so.
    Broken {
        /// How the last worker that failed to start ended.
        reason: ExitReason,
    },
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// Its worker answered (the answer itself, success or error, is the pool's).
    Done,
    /// It failed for this reason.
    Failed(Failure),
}

/// What the pool actor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a worker process with this id.
    Spawn(WorkerId),
    /// Send the task to the worker.
    Dispatch {
        /// To whom.
        worker: WorkerId,
        /// Which.
        task: TaskId,
    },
    /// Tell the worker to exit once it has answered what it was sent.
    Retire(WorkerId),
    /// Kill the worker now (SIGKILL: it hangs, or the pool is terminated).
    Kill(WorkerId),
    /// The task ended.
    Finish(TaskId, Finished),
    /// The pool gave up: workers keep failing to start.
    Broke(IntensityExceeded),
}

/// The pool's lifecycle, as `close`, `terminate` and failures move it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Takes tasks.
    Running,
    /// Takes no new tasks; workers retire when the queue is empty.
    Closed,
    /// Everything was failed and the workers killed.
    Terminated,
    /// Workers kept failing to start; everything was failed.
    Broken,
}
