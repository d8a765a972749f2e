//! Processes and trees: the `spawn` start method, the child bootstrap, `Process`,
//! and the per-process runtime that hosts each process's actor and routes messages
//! along the tree.
//!
//! Most users reach this crate through the `multiproc` facade, which re-exports it.
#![doc(test(attr(deny(warnings))))]

mod actor;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod manager;
mod pool;
mod primitives;
mod process;
mod runtime;
mod sharedctypes;
mod supervision;
mod target;

pub use actor::{Actor, ActorRef, BoxError};
pub use error::{CallError, Error};
pub use manager::{
    DictProxy, EventProxy, ListProxy, LockProxy, Manager, ManagerBuilder, ManagerConfig,
    ManagerError, NamespaceProxy, Proxy, QueueProxy, Registry, TypeRegistration, TypedProxy,
    ValueProxy, serve_manager,
};
pub use multiproc_core::StartMethod;
pub use pool::{AsyncResult, Imap, Pool, PoolBuilder, PoolError, TaskError, WorkerInfo};
pub use primitives::{
    Barrier, BoundedSemaphore, Condition, Event, Guard, JoinableQueue, Lock, Queue, RLock, Release,
    Semaphore, SimpleQueue, SyncError, timeout_secs,
};
pub use process::{
    ChildInfo, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, Output, Process, Sentinel,
    active_children, stop_children,
};
pub use runtime::bootstrap::{EXIT_BOOTSTRAP_FAILED, EXIT_INIT_NOT_CALLED, EXIT_PARENT_GONE, init};
pub use runtime::current::{
    CurrentProcess, ParentProcess, cpu_count, current_process, heartbeat, parent_process,
};
pub use runtime::stop::{stop_requested, wait_for_stop};
pub use sharedctypes::{
    Array, ArrayGuard, Pod, RawArray, RawValue, SharedMemory, SharedMemoryError, SharedMemoryRef,
    Value, ValueGuard,
};
pub use supervision::{
    AdminError, ChildCounts, ChildState, ChildStatus, DynamicSupervisor, Events, SupervisedRef,
    Supervisor, SupervisorEvent, SupervisorExit, SupervisorRef, actor_child, function_child,
};
pub use target::{Outcome, Target, Task};

/// Runs a future to completion on the calling thread, driven by this process's
/// multiproc runtime. The facade's `blocking` API is built on it.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    runtime::block_on(fut)
}

/// What the facade's registration macros expand to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::actor::run_actor;
    pub use crate::manager::{MANAGER_TYPES, TypesEntry};
    pub use crate::pool::{
        ItemFailure, NoTarget, NoTask, Probe, TaskFn, ViaTarget, ViaTask, not_a_task, run_task,
    };
    pub use crate::primitives::__primitive_counts;
    pub use crate::runtime::bootstrap::EntryOutcome;
    pub use crate::runtime::forkserver::__kill_forkserver;
    pub use crate::runtime::registry::{ENTRIES, Entry};
    pub use linkme;
    pub use multiproc_core::EntryKind;

    /// Runs a registered function from its encoded arguments.
    pub fn run_function<F: crate::Target<M>, M>(f: F, args: Vec<u8>) -> EntryOutcome {
        match multiproc_core::codec::decode::<F::Args>(&args) {
            Ok(args) => match f.call(args) {
                Ok(()) => EntryOutcome::Returned,
                Err(message) => EntryOutcome::Failed(message),
            },
            Err(e) => EntryOutcome::Failed(format!("bad arguments: {e}")),
        }
    }

    /// Winds this process's children down as its exit does (daemons terminated, the
    /// others joined or stopped), now. Only for tests of what an exit does to them.
    pub fn finish_children() {
        crate::runtime::block_on(crate::process::finish_children());
    }

    /// The `TypeId` of a value's type (a function item's unique type).
    pub fn type_id_of<T: 'static>(_: &T) -> std::any::TypeId {
        std::any::TypeId::of::<T>()
    }
}

#[cfg(test)]
mod tests {
    /// Handles cross threads and tasks: checked at compile time.
    #[test]
    fn handles_are_send_sync_and_static() {
        fn check<T: Send + Sync + 'static>() {}
        struct Nothing;
        check::<crate::Process>();
        check::<crate::Sentinel>();
        check::<crate::ActorRef<Nothing>>();
        check::<crate::Error>();
        check::<crate::CallError>();
    }
}
