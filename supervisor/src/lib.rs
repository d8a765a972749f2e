//! Processes and trees: the `spawn` start method, the child bootstrap, `Process`,
//! and the per-process runtime that hosts each process's actor and routes messages
//! along the tree.
//!
//! Most users reach this crate through the `multiproc` facade, which re-exports it.
#![doc(test(attr(deny(warnings))))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "multiproc runs on Linux only: it is built on pidfds, PR_SET_PDEATHSIG, memfds, futexes \
     and /proc (see the README)"
);

pub mod blocking;
#[doc(hidden)]
pub mod fuzz;
mod manager;
pub mod node;
pub mod observe;

/// The tree's metrics through the `metrics` facade (feature `metrics`): the names it
/// records under. Install a recorder in the root; children's metrics reach it with
/// a `process` label.
#[cfg(feature = "metrics")]
pub mod metrics {
    pub use crate::runtime::metrics::{
        CALL_DURATION, EXITS, INTENSITY_SHUTDOWNS, LIVE_PROCESSES, MAILBOX_DEPTH, PROCESS_LABEL,
        RESTARTS, STARTS, TASK_DURATION, TASK_QUEUE_WAIT,
    };
}
mod pool;
mod process;
mod remote;
mod runtime;
mod shared;
mod supervision;
mod sync;

/// bytemuck, which [`Pod`] is built on: its derives make a `#[repr(C)]` struct `Pod`.
pub use bytemuck;
pub use manager::{
    DictProxy, EventProxy, ListProxy, LockProxy, Manager, ManagerBuilder, ManagerConfig,
    ManagerError, NamespaceProxy, Proxy, QueueProxy, Registry, TypeRegistration, TypedProxy,
    ValueProxy, serve_manager,
};
pub use multiproc_core::StartMethod;
#[cfg(feature = "indicatif")]
pub use pool::progress_bar;
pub use pool::{
    AsyncResult, Imap, MAX_NODE_FRAME_LEN, Pool, PoolBuilder, PoolError, Progress, TaskError,
    WorkerInfo,
};
pub use process::actor::{Actor, ActorRef, BoxError};
pub use process::{DEFAULT_HANDSHAKE_TIMEOUT, Process, Sentinel};
pub use runtime::bootstrap::init;
pub use runtime::children::{ChildInfo, DEFAULT_SHUTDOWN_TIMEOUT, active_children, stop_children};
pub use runtime::current::{
    CurrentProcess, ParentProcess, cpu_count, current_process, parent_process,
};
pub use runtime::error::{CallError, Error};
pub use runtime::exit::{EXIT_BOOTSTRAP_FAILED, EXIT_INIT_NOT_CALLED, EXIT_PARENT_GONE};
pub use runtime::heartbeat::heartbeat;
pub use runtime::router::direct::{DirectLink, MAX_DIRECT_LINKS, direct_links};
pub use runtime::spawn::Output;
pub use runtime::stop::{stop_requested, wait_for_stop};
pub use runtime::target::{Outcome, Target, Task};
pub use shared::{
    Array, ArrayGuard, Pod, RawArray, RawValue, SharedMemory, SharedMemoryError, SharedMemoryRef,
    Value, ValueGuard,
};
pub use supervision::{
    AdminError, ChildCounts, ChildState, ChildStatus, ChildSupervisorRef, DynamicSupervisor,
    Events, SupervisedRef, Supervisor, SupervisorEvent, SupervisorExit, SupervisorRef, actor_child,
    function_child,
};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, Event, Guard, JoinableQueue, Lock, Queue, RLock, Release,
    Semaphore, SimpleQueue, SyncError, timeout_secs,
};

/// Runs a future to completion on the calling thread, driven by this process's
/// multiproc runtime; the [`blocking`] faces wait on their futures this way.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    runtime::block_on(fut)
}

/// What the facade's registration macros expand to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::manager::{MANAGER_TYPES, TypesEntry};
    pub use crate::pool::{
        ItemFailure, NoPod, NoTarget, NoTask, Probe, ViaPod, ViaTarget, ViaTask, not_a_task,
        run_slab, run_task,
    };
    pub use crate::process::actor::run_actor;
    pub use crate::runtime::bootstrap::init_for_tests;
    pub use crate::runtime::registry::EntryOutcome;
    pub use crate::runtime::registry::{ENTRIES, Entry, PodTask, TaskFn, no_pod, type_id_of};
    pub use crate::runtime::target::run_function;
    pub use linkme;
    pub use multiproc_core::EntryKind;

    /// Winds this process's children down as its exit does (daemons terminated, the
    /// others joined or stopped), now. Only for tests of what an exit does to them.
    pub fn finish_children() {
        crate::runtime::block_on(crate::runtime::children::finish_children());
    }

    /// Hooks for multiproc's own tests, which reach inside to break things on purpose.
    pub mod test_hooks {
        use crate::{Error, PoolError, Process, Task, TaskError};

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

        /// The pid of this process's forkserver, if one runs.
        pub fn forkserver_pid() -> Option<u32> {
            crate::runtime::forkserver::pid()
        }

        /// Makes this process claim `id` as its build id in node sessions, as a
        /// different build of the program would.
        pub fn claim_build_id(id: u64) {
            crate::remote::wire::claim_build_id(id)
        }

        /// Kills this process's forkserver; its pid, if one ran.
        pub fn kill_forkserver() -> Option<u32> {
            crate::runtime::forkserver::kill_forkserver()
        }

        /// Makes the forkservers started from now on relay their children's exits
        /// (`true`), or let the kernel reap their children where it keeps the
        /// statuses for their pidfds (`false`, the default), so tests run both paths.
        pub fn forkserver_relays_exits(relay: bool) {
            crate::runtime::forkserver::relay_exits(relay)
        }

        /// Whether the running forkserver lets the kernel reap its children; `None`
        /// if none runs.
        pub fn forkserver_autoreaps() -> Option<bool> {
            crate::runtime::forkserver::autoreaps()
        }

        /// Kills this process's forkserver right after it answers its next fork
        /// request, before the answer is handled.
        pub fn kill_forkserver_after_next_fork() {
            crate::runtime::forkserver::die_after_next_reply()
        }

        /// Whether `f`'s chunks cross as slabs of plain data (the pool's bulk path): its
        /// registered witness says its argument and result are `Pod`.
        pub fn takes_slabs<F: Task<M>, M>(f: F) -> bool {
            let _ = f;
            crate::pool::Pool::task_entry::<F>()
                .ok()
                .and_then(crate::pool::Pool::slab::<F, M>)
                .is_some()
        }

        /// Sends `f`'s worker in `pool` a chunk of `items` items whose slab is `slab`,
        /// whatever it holds, and waits for the chunk's results.
        ///
        /// # Errors
        ///
        /// `f` is not registered, or the pool's own errors.
        pub fn run_raw_slab<F: Task<M>, M>(
            pool: &crate::blocking::Pool,
            f: F,
            slab: &[u8],
            items: u32,
        ) -> Result<Vec<Result<F::Output, TaskError>>, PoolError> {
            let _ = f;
            crate::block_on(pool.as_async().run_raw_slab::<F, M>(slab, items))
        }

        /// (primitives hosted here, live handles here): for tests of the counting.
        pub fn primitive_counts() -> (usize, usize) {
            crate::sync::__primitive_counts()
        }

        pub use crate::runtime::link::RingDamage;

        /// In a child: damages the ring it writes to its parent as `damage` says and
        /// wakes the parent's reader to look; `false` in the root.
        pub fn damage_uplink(damage: RingDamage) -> bool {
            crate::runtime::router::parent().is_some_and(|link| {
                link.damage_for_test(damage);
                true
            })
        }

        /// What [`damage_pool_ring`] makes a pool worker do at its next answer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum PoolRingDamage {
            /// Write the answer's record whole, then be killed (SIGKILL) before
            /// publishing it.
            DieMidWrite,
            /// Put its answer ring's tail behind its head instead of answering.
            TailBehindHead,
        }

        /// In a pool worker's task: damages the worker's answer ring at the chunk's
        /// answer as `damage` says.
        pub fn damage_pool_ring(damage: PoolRingDamage) {
            use crate::pool::port::Damage;
            crate::pool::port::damage_next_answer(match damage {
                PoolRingDamage::DieMidWrite => Damage::DieMidWrite,
                PoolRingDamage::TailBehindHead => Damage::TailBehindHead,
            });
        }

        /// Whether this process brokers direct links between its children: `false`
        /// keeps calls between siblings routed through it (to measure that path).
        pub fn set_sibling_brokering(on: bool) {
            crate::runtime::router::set_brokering(on);
        }

        /// How many envelopes this process has passed from one of its children to
        /// another: constant while siblings talk over direct links.
        pub fn routed_between_children() -> u64 {
            crate::runtime::router::routed_between_children()
        }

        /// In a child: damages the ring it writes to `sibling` over their direct
        /// link, as `damage` says, and wakes the sibling's reader to look; `false`
        /// when it has no direct link to `sibling`.
        pub fn damage_direct_link(sibling: &multiproc_core::Identity, damage: RingDamage) -> bool {
            crate::runtime::router::direct::damage_for_test(sibling, damage)
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
