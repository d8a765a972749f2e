//! Python's `multiprocessing`, rebuilt in Rust as an actor-style supervision framework.
//!
//! Every OS process hosts one actor with a mailbox. A process tree spawns child
//! processes, names them exactly as Python does (`Process-1`, `Process-1:2`, …) and
//! watches them; messages are serde types. Processes are for *isolation*: crash-prone
//! or untrusted code, hard timeouts (a hung process can be killed, a hung thread
//! cannot), and leaks that only a restart cures.
//!
//! # A first program
//!
//! ```no_run
//! use multiproc::blocking::Process;
//!
//! fn greet(name: String) {
//!     println!("hello {name}");
//! }
//! multiproc::register!(greet);
//!
//! #[multiproc::main] // calls multiproc::init() first: in a child, it runs the child
//! fn main() -> Result<(), multiproc::Error> {
//!     let mut p = Process::new(greet, "bob".to_string());
//!     p.start()?;
//!     let reason = p.join()?;
//!     assert_eq!(reason.exit_code(), 0);
//!     Ok(())
//! }
//! ```
//!
//! # The tour
//!
//! - **`init()`** must be the first line of `main`; [`#[multiproc::main]`](main) puts
//!   it there (and, on an `async fn main`, builds the tokio runtime after it). Children
//!   are this same program, started again (the `spawn` start method); `init()` is where
//!   they branch off and it never returns in a child. It is Python's `if __name__ == '__main__':` guard.
//! - **Entry points are registered** by name at link time: functions with
//!   [`register!`], actors with [`register_actor!`]. Starting something unregistered
//!   is an error that names the macro to add.
//! - **[`Process`]** runs a function or hosts an actor in a child: `start`, `join`,
//!   `is_alive`, `pid`, `exit_code` (Python's convention), [`ExitReason`] (the same as
//!   data), `terminate`, `kill`, `stop`, `close`. [`current_process`],
//!   [`parent_process`], [`active_children`], [`cpu_count`].
//! - **Actors**: a child hosting an [`Actor`] serves its mailbox; any process of the
//!   tree holding an [`ActorRef`] can `call` or `cast` to it.
//! - **Pipes**: [`pipe`] returns two [`Connection`]s; a connection can be passed to a
//!   child as an argument of its function.
//! - **Supervision** (OTP's semantics over OS processes): a [`Supervisor`] starts
//!   [`ChildSpec`]s in order, restarts them by [`Strategy`] and [`Restart`] type, gives
//!   up when restarts exceed its [`RestartIntensity`], waits a [`Backoff`] between
//!   restarts, and reports each step as a [`SupervisorEvent`].
//! - **Pools**: a [`Pool`] runs registered [`Task`] functions in worker processes, with
//!   Python's `map`, `imap`, `apply_async` and `ProcessPoolExecutor`'s `submit`; a dead,
//!   hung or panicking task is a typed [`TaskError`], never a hang. A task of plain data
//!   ([`Pod`]: numbers, arrays, `#[repr(C)]` structs deriving [`bytemuck`]'s `Pod`) gets
//!   its chunks as slabs of bytes, not one serde value per item.
//! - **Queues and locks**: [`Queue`], [`Lock`], [`RLock`], [`Semaphore`],
//!   [`BoundedSemaphore`], [`Condition`], [`Event`] and [`Barrier`], usable from any
//!   process of the tree through handles that are plain values; a process that dies
//!   holding one releases it. Their constructors return `Result`.
//! - **Running out is an error, not a panic**: a descriptor, a mapping, a process or a
//!   thread the system has no room for is an [`Exhausted`] inside the area's error
//!   ([`SyncError::Exhausted`], [`Error::Exhausted`], …), naming the limit that was
//!   reached (`RLIMIT_NOFILE`, a cgroup's `pids.max`, …), its value and how to raise
//!   it.
//! - **No orphans**: however the root dies, its descendants die with it; SIGINT or
//!   SIGTERM at the root stops the whole tree gracefully.
//! - **Seeing the tree**: [`observe::snapshot`] is every process with its kind, state,
//!   restarts, last exit, memory and CPU; with the feature `observer`,
//!   `observe::Observer` serves it live over HTTP: a page that shows the tree as it
//!   changes, JSON, and server-sent events.
//! - **Async first, blocking too**: every operation is `async`; [`blocking`] mirrors
//!   the API for scripts and for code written in Python's style.
#![doc(test(attr(deny(warnings))))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "multiproc runs on Linux only: it is built on pidfds, PR_SET_PDEATHSIG, memfds, futexes \
     and /proc (see the README)"
);

pub use multiproc_core::Dynamic;
pub use multiproc_core::RetryPolicy;
pub use multiproc_core::{
    AutoShutdown, Backoff, ChildKind, ChildSpec, Decider, Directive, ExitMatch, ExitReason,
    Identity, Limit, Limits, NodeName, Placement, RemoteError, Restart, RestartIntensity,
    RestartPlacement, Shutdown, SpecError, Strategy, SupervisorFlags, codec,
};
pub use multiproc_core::{
    BootstrapError, Exhausted, MemoryLimit, PidsCgroup, ProcessFacts, ProcessLimit,
};
/// bytemuck, which [`Pod`] is built on: its derives make a `#[repr(C)]` struct `Pod`,
/// with `#[bytemuck(crate = "multiproc::bytemuck")]` so that they find it here.
pub use multiproc_supervisor::bytemuck;
/// A progress callback that moves an `indicatif` bar (feature `indicatif`).
#[cfg(feature = "indicatif")]
pub use multiproc_supervisor::progress_bar;
pub use multiproc_supervisor::{
    Actor, ActorRef, BoxError, CallError, ChildInfo, CurrentProcess, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT, DirectLink, EXIT_BOOTSTRAP_FAILED, EXIT_INIT_NOT_CALLED,
    EXIT_PARENT_GONE, Error, MAX_DIRECT_LINKS, Output, ParentProcess, Process, Sentinel,
    StartMethod, Target, active_children, cpu_count, current_process, direct_links, heartbeat,
    init, parent_process, stop_children, stop_requested, wait_for_stop,
};
pub use multiproc_supervisor::{
    AdminError, ChildCounts, ChildState, ChildStatus, ChildSupervisorRef, DynamicSupervisor,
    Events, SupervisedRef, Supervisor, SupervisorEvent, SupervisorExit, SupervisorRef, actor_child,
    function_child,
};
pub use multiproc_supervisor::{
    Array, ArrayGuard, Pod, RawArray, RawValue, SharedMemory, SharedMemoryError, SharedMemoryRef,
    Value, ValueGuard,
};
pub use multiproc_supervisor::{
    AsyncResult, Imap, MAX_NODE_FRAME_LEN, Pool, PoolBuilder, PoolError, Progress, Task, TaskError,
    WorkerInfo,
};
pub use multiproc_supervisor::{
    Barrier, BoundedSemaphore, Condition, Event, Guard, JoinableQueue, Lock, Queue, RLock, Release,
    Semaphore, SimpleQueue, SyncError, timeout_secs,
};
pub use multiproc_supervisor::{
    DictProxy, EventProxy, ListProxy, LockProxy, Manager, ManagerBuilder, ManagerConfig,
    ManagerError, NamespaceProxy, Proxy, QueueProxy, Registry, TypeRegistration, TypedProxy,
    ValueProxy, serve_manager,
};
pub use multiproc_transport::{
    Connection, DEFAULT_MAX_FRAME_LEN, FrameError, MAX_FRAME_LEN, pipe, wait,
};

/// The errors inside [`SyncError`] (also at the crate's root).
pub mod sync {
    pub use multiproc_core::queue::QueueError;
    pub use multiproc_core::sync::{BarrierBroken, Misuse};
}

/// What [`SyncError::Misuse`], [`SyncError::BrokenBarrier`] and [`SyncError::Queue`]
/// hold, here for the everyday `match`: `Err(SyncError::Misuse(Misuse::NotOwner))`.
pub use multiproc_core::queue::QueueError;
pub use multiproc_core::sync::{BarrierBroken, Misuse};

/// Python's `multiprocessing.connection`: connections between processes that did
/// not start each other, wire-compatible with CPython's (frames and the authkey
/// handshake), and the transport's errors.
///
/// ```
/// use multiproc::connection::{Address, Listener, client};
///
/// # fn main() -> Result<(), multiproc::connection::Error> {
/// let mut listener = Listener::bind(&Address::tcp("127.0.0.1:0")?, Some(b"secret"))?;
/// let address = listener.address().clone();
/// let peer = std::thread::spawn(move || -> Result<(), multiproc::connection::Error> {
///     let mut conn = client(&address, Some(b"secret"))?;
///     conn.send_bytes(b"hello")
/// });
/// let mut conn = listener.accept()?;
/// assert_eq!(conn.recv_bytes()?, b"hello");
/// # peer.join().unwrap()?;
/// # Ok(())
/// # }
/// ```
pub mod connection {
    pub use multiproc_transport::auth::{AuthError, HANDSHAKE_TIMEOUT};
    pub use multiproc_transport::{
        Address, BlockingConnection, Connection, Error, Listener, blocking_wait, client,
        client_with_timeout, wait,
    };
}

#[doc(inline)]
pub use multiproc_supervisor::blocking;

#[doc(inline)]
pub use multiproc_supervisor::node;

#[cfg(feature = "metrics")]
pub use multiproc_supervisor::metrics;
#[doc(inline)]
pub use multiproc_supervisor::observe;

/// The names most programs need, async: processes, actors, pools, pipes and the
/// errors a program matches.
///
/// ```no_run
/// use multiproc::prelude::*;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// multiproc::register!(square);
///
/// #[multiproc::main]
/// async fn main() -> Result<(), PoolError> {
///     let pool = Pool::new(2)?;
///     for (i, r) in pool.map_results(square, 0..4).await?.into_iter().enumerate() {
///         match r {
///             Ok(v) => println!("{i}: {v}"),
///             Err(TaskError::WorkerDied { reason, .. }) => println!("{i}: died, {reason}"),
///             Err(e) => println!("{i}: {e}"),
///         }
///     }
///     Ok(())
/// }
/// ```
pub mod prelude {
    pub use crate::{
        Actor, ActorRef, CallError, Connection, Error, ExitReason, Misuse, Pool, PoolError,
        Process, SyncError, TaskError, current_process, init, pipe,
    };
}

/// Registers functions that child processes can run.
///
/// Each function takes serde arguments (one value, a tuple of several, or none) and
/// returns `()` or `Result<(), E>` with `E: Display`, to be a process's entry point, or
/// a serde value, to be a pool [`Task`]; the macro records what the function can be,
/// including whether its argument and result are [`Pod`], which lets a pool send its
/// chunks as slabs of bytes.
///
/// ```
/// fn add(a: i32, b: i32) -> Result<(), String> {
///     if a + b > 10 { Err("too big".into()) } else { Ok(()) }
/// }
/// multiproc::register!(add);
/// ```
#[macro_export]
macro_rules! register {
    ($($f:path),+ $(,)?) => {
        $(
            const _: () = {
                #[$crate::__private::linkme::distributed_slice($crate::__private::ENTRIES)]
                #[linkme(crate = $crate::__private::linkme)]
                static ENTRY: $crate::__private::Entry = $crate::__private::Entry {
                    name: concat!(module_path!(), "::", stringify!($f)),
                    kind: $crate::__private::EntryKind::Function,
                    type_id: || $crate::__private::type_id_of(&$f),
                    run: |args| {
                        #[allow(unused_imports)]
                        use $crate::__private::{NoTarget as _, ViaTarget as _};
                        (&&$crate::__private::Probe($f)).entry_run(args)
                    },
                    task: |args, items, out, failures| {
                        #[allow(unused_imports)]
                        use $crate::__private::{NoTask as _, ViaTask as _};
                        (&&$crate::__private::Probe($f)).entry_task(args, items, out, failures)
                    },
                    slab: |args, items, out, failures| {
                        #[allow(unused_imports)]
                        use $crate::__private::{NoPod as _, ViaPod as _};
                        (&&$crate::__private::Probe($f)).entry_slab(args, items, out, failures)
                    },
                    pod: || {
                        #[allow(unused_imports)]
                        use $crate::__private::{NoPod as _, ViaPod as _};
                        (&&$crate::__private::Probe($f)).entry_pod()
                    },
                };
            };
        )+
    };
}

/// Registers functions that add types to a manager's [`Registry`], so that a
/// manager's server (another process) can run them by name
/// ([`ManagerBuilder::types`]).
///
/// ```
/// use multiproc::Registry;
///
/// struct Counter(i64);
///
/// fn counter_types(r: &mut Registry) {
///     r.register("Counter", |start: i64| Counter(start))
///         .method("add", |c: &mut Counter, by: i64| {
///             c.0 += by;
///             c.0
///         });
/// }
/// multiproc::manager_types!(counter_types);
/// ```
#[macro_export]
macro_rules! manager_types {
    ($($f:path),+ $(,)?) => {
        $(
            const _: () = {
                #[$crate::__private::linkme::distributed_slice($crate::__private::MANAGER_TYPES)]
                #[linkme(crate = $crate::__private::linkme)]
                static TYPES: $crate::__private::TypesEntry = $crate::__private::TypesEntry {
                    name: concat!(module_path!(), "::", stringify!($f)),
                    type_id: || $crate::__private::type_id_of(&$f),
                    register: $f,
                };
            };
        )+
    };
}

/// Registers actor types that child processes can host.
///
/// ```
/// use multiproc::{Actor, BoxError};
/// struct Echo;
/// impl Actor for Echo {
///     type Args = ();
///     type Msg = String;
///     type Reply = String;
///     async fn start((): ()) -> Result<Self, BoxError> { Ok(Echo) }
///     async fn handle(&mut self, msg: String) -> String { msg }
/// }
/// multiproc::register_actor!(Echo);
/// ```
#[macro_export]
macro_rules! register_actor {
    ($($a:ty),+ $(,)?) => {
        $(
            const _: () = {
                #[$crate::__private::linkme::distributed_slice($crate::__private::ENTRIES)]
                #[linkme(crate = $crate::__private::linkme)]
                static ENTRY: $crate::__private::Entry = $crate::__private::Entry {
                    name: concat!(module_path!(), "::", stringify!($a)),
                    kind: $crate::__private::EntryKind::Actor,
                    type_id: || ::std::any::TypeId::of::<$a>(),
                    run: $crate::__private::run_actor::<$a>,
                    task: $crate::__private::not_a_task,
                    slab: $crate::__private::not_a_task,
                    pod: $crate::__private::no_pod,
                };
            };
        )+
    };
}

/// Makes `main` a multiproc program's `main`: it calls [`init()`] first and, for an
/// `async fn main`, then runs the body on a tokio runtime built for it.
///
/// `#[tokio::main]` cannot be used: its runtime's threads would start before `init()`
/// runs, and in a child `init()` must come first (it runs the child there and never
/// returns). This attribute builds the runtime only once `init()` has returned, that
/// is, in the root. A child started from such a program runs its function, never
/// `main`'s body.
///
/// ```no_run
/// use multiproc::Process;
///
/// fn greet(name: String) {
///     println!("hello {name}");
/// }
/// multiproc::register!(greet);
///
/// #[multiproc::main]
/// async fn main() -> Result<(), multiproc::Error> {
///     let mut p = Process::new(greet, "bob".to_string());
///     p.start().await?;
///     p.join().await?;
///     Ok(())
/// }
/// ```
///
/// An `async fn main` gets a multi-threaded runtime (every driver enabled); options
/// choose another: `#[multiproc::main(flavor = "current_thread")]`,
/// `#[multiproc::main(worker_threads = 2)]`. On a plain `fn main` the attribute only
/// adds the `init()` call, and options are an error.
///
/// What it refuses, each with a message that says why: an unknown option or flavor,
/// ```compile_fail
/// #[multiproc::main(flavor = "single")] // expected "multi_thread" or "current_thread"
/// async fn main() {}
/// ```
/// ```compile_fail
/// #[multiproc::main(threads = 2)] // unknown option
/// async fn main() {}
/// ```
/// no worker threads, or worker threads on a runtime that has none,
/// ```compile_fail
/// #[multiproc::main(worker_threads = 0)] // must be at least 1
/// async fn main() {}
/// ```
/// ```compile_fail
/// #[multiproc::main(flavor = "current_thread", worker_threads = 2)]
/// async fn main() {}
/// ```
/// options on a `main` that builds no runtime, and a `main` with arguments.
/// ```compile_fail
/// #[multiproc::main(flavor = "current_thread")] // `flavor` is for an `async fn main`
/// fn main() {}
/// ```
/// ```compile_fail
/// #[multiproc::main] // `main` takes no arguments
/// fn main(args: Vec<String>) {}
/// ```
pub use multiproc_macros::main;

/// A `#[test]` that may start processes, in a crate's ordinary tests (the standard
/// harness, `cargo test`).
///
/// A child is this same test program started again, and a test harness's `main` is
/// not yours: it never calls [`init()`], and would run your tests again in every child.
/// Under this attribute the test first makes its children become themselves before
/// the harness's `main` runs (from the program's constructors, where multiproc already
/// ties a child to its parent), so a child runs its function and nothing else.
///
/// ```no_run
/// # #![allow(unused_imports)] // a doctest is built without its #[test] functions
/// use multiproc::blocking::Process;
///
/// fn exit_with(code: i32) {
///     std::process::exit(code);
/// }
/// multiproc::register!(exit_with);
///
/// #[multiproc::test]
/// fn a_child_exits_with_its_code() {
///     let mut p = Process::new(exit_with, 3);
///     p.start().unwrap();
///     p.join().unwrap();
///     assert_eq!(p.exit_code(), Some(3));
/// }
/// ```
///
/// An `async fn` test runs on a runtime built for it, with the options of
/// [`macro@main`] (`flavor`, `worker_threads`); the default is multi-threaded, unlike
/// `#[tokio::test]`, so that a blocking call inside it does not stall the children's
/// links. The test may return a `Result`, as any test.
///
/// Every test of a program that starts processes must carry the attribute, or call
/// `multiproc::init()` first in a harness of its own (`harness = false`, as
/// multiproc's own tests do); the book's "Testing" chapter shows both.
///
/// It refuses what `#[multiproc::main]` refuses, and a test with arguments:
/// ```compile_fail
/// #[multiproc::test] // a test takes no arguments
/// fn t(n: u32) {}
/// ```
/// ```compile_fail
/// #[multiproc::test(flavor = "current_thread")] // `flavor` is for an `async fn`
/// fn t() {}
/// ```
pub use multiproc_macros::test;

#[doc(hidden)]
pub mod __private {
    pub use multiproc_supervisor::__private::*;
    pub use tokio;
}

/// The README and the book's chapters, doctested: `cargo test --doc` fails on a wrong
/// snippet. Excerpts of examples are `rust,ignore` here and compiled as examples.
#[cfg(doctest)]
mod book {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../book/src/introduction.md")]
    struct Introduction;
    #[doc = include_str!("../book/src/quick-start.md")]
    struct QuickStart;
    #[doc = include_str!("../book/src/processes.md")]
    struct Processes;
    #[doc = include_str!("../book/src/messages.md")]
    struct Messages;
    #[doc = include_str!("../book/src/supervision.md")]
    struct Supervision;
    #[doc = include_str!("../book/src/pool.md")]
    struct Pool;
    #[doc = include_str!("../book/src/sync.md")]
    struct Sync;
    #[doc = include_str!("../book/src/sharing.md")]
    struct Sharing;
    #[doc = include_str!("../book/src/observe.md")]
    struct Observe;
    #[doc = include_str!("../book/src/testing.md")]
    struct Testing;
    #[doc = include_str!("../book/src/architecture.md")]
    struct Architecture;
    #[doc = include_str!("../book/src/semantics.md")]
    struct Semantics;
    #[doc = include_str!("../book/src/glossary.md")]
    struct Glossary;
    #[doc = include_str!("../book/src/changelog.md")]
    struct Changelog;
}
