//! Processes and trees: the `spawn` start method, the child bootstrap, `Process`,
//! and the per-process runtime that hosts each process's actor and routes messages
//! along the tree.
//!
//! Most users reach this crate through the `multiproc` facade, which re-exports it.
#![doc(test(attr(deny(warnings))))]

#[doc(hidden)]
pub mod fuzz;
mod manager;
mod pool;
mod process;
mod runtime;
mod shared;
mod supervision;
mod sync;

pub use manager::{
    DictProxy, EventProxy, ListProxy, LockProxy, Manager, ManagerBuilder, ManagerConfig,
    ManagerError, NamespaceProxy, Proxy, QueueProxy, Registry, TypeRegistration, TypedProxy,
    ValueProxy, serve_manager,
};
pub use multiproc_core::StartMethod;
pub use pool::{AsyncResult, Imap, Pool, PoolBuilder, PoolError, TaskError, WorkerInfo};
pub use process::actor::{Actor, ActorRef, BoxError};
pub use process::target::{Outcome, Target, Task};
pub use process::{DEFAULT_HANDSHAKE_TIMEOUT, Process, Sentinel};
pub use runtime::bootstrap::init;
pub use runtime::children::{ChildInfo, DEFAULT_SHUTDOWN_TIMEOUT, active_children, stop_children};
pub use runtime::current::{
    CurrentProcess, ParentProcess, cpu_count, current_process, parent_process,
};
pub use runtime::error::{CallError, Error};
pub use runtime::exit::{EXIT_BOOTSTRAP_FAILED, EXIT_INIT_NOT_CALLED, EXIT_PARENT_GONE};
pub use runtime::heartbeat::heartbeat;
pub use runtime::spawn::Output;
pub use runtime::stop::{stop_requested, wait_for_stop};
pub use shared::{
    Array, ArrayGuard, Pod, RawArray, RawValue, SharedMemory, SharedMemoryError, SharedMemoryRef,
    Value, ValueGuard,
};
pub use supervision::{
    AdminError, ChildCounts, ChildState, ChildStatus, DynamicSupervisor, Events, SupervisedRef,
    Supervisor, SupervisorEvent, SupervisorExit, SupervisorRef, actor_child, function_child,
};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, Event, Guard, JoinableQueue, Lock, Queue, RLock, Release,
    Semaphore, SimpleQueue, SyncError, timeout_secs,
};

/// Runs a future to completion on the calling thread, driven by this process's
/// multiproc runtime. The facade's `blocking` API is built on it.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    runtime::block_on(fut)
}

/// What the facade's registration macros expand to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::manager::{MANAGER_TYPES, TypesEntry};
    pub use crate::pool::{
        ItemFailure, NoTarget, NoTask, Probe, ViaTarget, ViaTask, not_a_task, run_task,
    };
    pub use crate::process::actor::run_actor;
    pub use crate::runtime::registry::EntryOutcome;
    pub use crate::runtime::registry::{ENTRIES, Entry, TaskFn};
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
        crate::runtime::block_on(crate::runtime::children::finish_children());
    }

    /// Hooks for multiproc's own tests, which reach inside to break things on purpose.
    pub mod test_hooks {
        use crate::{Error, Process};

        /// `p` with a Hello that claims another protocol version and build id.
        pub fn hello_versions(p: Process, protocol: u32, build_id: u64) -> Process {
            p.hello_versions(protocol, build_id)
        }

        /// Writes `bytes` as one frame on `p`'s control link, bypassing the codec.
        ///
        /// # Errors
        ///
        /// `p` was not started, or was closed.
        pub fn send_raw_frame(p: &Process, bytes: Vec<u8>) -> Result<(), Error> {
            p.send_raw_frame(bytes)
        }

        /// Kills this process's forkserver; its pid, if one ran.
        pub fn kill_forkserver() -> Option<u32> {
            crate::runtime::forkserver::kill_forkserver()
        }

        /// Kills this process's forkserver right after it answers its next fork
        /// request, before the answer is handled.
        pub fn kill_forkserver_after_next_fork() {
            crate::runtime::forkserver::die_after_next_reply()
        }

        /// (primitives hosted here, live handles here): for tests of the counting.
        pub fn primitive_counts() -> (usize, usize) {
            crate::sync::__primitive_counts()
        }

        /// What [`damage_uplink`] does to this child's ring to its parent.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum RingDamage {
            /// The ring's tail behind its head.
            TailBehindHead,
            /// The ring's tail more than a ring ahead of its head.
            TailPastRing,
            /// A record whose length runs past the ring.
            LengthPastRing,
        }

        /// In a child: damages the ring it writes to its parent as `damage` says and
        /// wakes the parent's reader to look; `false` in the root.
        pub fn damage_uplink(damage: RingDamage) -> bool {
            crate::runtime::router::parent().is_some_and(|link| {
                link.damage_for_test(damage);
                true
            })
        }

        /// In a child: writes a whole record into the ring to its parent but is
        /// killed (SIGKILL) before it publishes the record's tail. Never returns in
        /// a child; returns in the root.
        pub fn die_mid_ring_write() {
            if let Some(link) = crate::runtime::router::parent() {
                link.die_mid_write_for_test();
            }
        }
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
