//! The blocking API: the async API, mirrored for scripts and Python-style code.
//!
//! Each call blocks the calling thread while the process's multiproc runtime does the
//! work, so it can be used from plain threads and `main` without any async runtime.

mod pool;
mod process;
mod supervision;
mod sync;

pub use pool::{AsyncResult, Imap, Pool, PoolBuilder};
pub use process::{ActorRef, Process, stop_children, wait_for_stop};
pub use supervision::{DynamicSupervisor, Events, SupervisedRef, SupervisorRef, run_supervisor};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Queue, RLock, Semaphore,
    SimpleQueue,
};

/// Shared memory needs no runtime: these are the same types as at the crate's root.
pub use crate::{
    Array, ArrayGuard, Pod, RawArray, RawValue, SharedMemory, SharedMemoryError, SharedMemoryRef,
    Value, ValueGuard,
};
pub use multiproc_transport::{
    BlockingConnection as Connection, blocking_pipe as pipe, blocking_wait as wait,
};

fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    multiproc_supervisor::block_on(fut)
}
