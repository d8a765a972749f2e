//! The blocking API: the async API, mirrored for scripts and Python-style code.
//!
//! Each call blocks the calling thread while the process's multiproc runtime does the
//! work, so it can be used from plain threads and `main` without any async runtime.

use std::ffi::OsString;
use std::time::Duration;

use crate::{Actor, CallError, Error, ExitReason, Identity, Output, Target};

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

/// A child process, with blocking methods; see [`crate::Process`].
#[derive(Debug)]
pub struct Process(crate::Process);

impl Process {
    /// A process that will run the registered function `target` with `args`.
    pub fn new<F, M>(target: F, args: F::Args) -> Process
    where
        F: Target<M>,
    {
        Process(crate::Process::new(target, args))
    }

    /// A process that will host the registered actor `A`.
    pub fn actor<A: Actor>(args: A::Args) -> Process {
        Process(crate::Process::actor::<A>(args))
    }

    /// Sets the name.
    pub fn named(self, name: impl Into<String>) -> Self {
        Process(self.0.named(name))
    }

    /// Makes the process a daemon (or not).
    pub fn daemon(self, daemon: bool) -> Self {
        Process(self.0.daemon(daemon))
    }

    /// Sets an environment variable for the child.
    pub fn env(self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        Process(self.0.env(key, value))
    }

    /// Captures stdout and stderr; see [`crate::Process::capture_output`].
    pub fn capture_output(self) -> Self {
        Process(self.0.capture_output())
    }

    /// Sets resource limits; see [`crate::Process::limits`].
    pub fn limits(self, limits: crate::Limits) -> Self {
        Process(self.0.limits(limits))
    }

    /// Chooses how the child is made; see [`crate::Process::start_method`].
    pub fn start_method(self, method: crate::StartMethod) -> Self {
        Process(self.0.start_method(method))
    }

    /// Requires heartbeats; see [`crate::Process::heartbeat`].
    pub fn heartbeat(self, interval: Duration) -> Self {
        Process(self.0.heartbeat(interval))
    }

    /// Sets the handshake timeout.
    pub fn handshake_timeout(self, timeout: Duration) -> Self {
        Process(self.0.handshake_timeout(timeout))
    }

    /// The name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The identity.
    pub fn identity(&self) -> &Identity {
        self.0.identity()
    }

    /// Whether it is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.0.is_daemon()
    }

    /// The OS process id, once started.
    pub fn pid(&self) -> Option<u32> {
        self.0.pid()
    }

    /// Whether it runs.
    pub fn is_alive(&self) -> bool {
        self.0.is_alive()
    }

    /// Why it ended, once it has.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.0.exit_reason()
    }

    /// Python's `exitcode`.
    pub fn exit_code(&self) -> Option<i32> {
        self.0.exit_code()
    }

    /// Captured output, once joined.
    pub fn output(&self) -> Option<Output> {
        self.0.output()
    }

    /// A handle to the actor it hosts.
    pub fn actor_ref<A: Actor>(&self) -> ActorRef<A> {
        ActorRef(self.0.actor_ref())
    }

    /// Starts it; see [`crate::Process::start`].
    ///
    /// # Errors
    ///
    /// As [`crate::Process::start`].
    pub fn start(&mut self) -> Result<(), Error> {
        block_on(self.0.start())
    }

    /// Waits for it to exit.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::join`].
    pub fn join(&self) -> Result<ExitReason, Error> {
        block_on(self.0.join())
    }

    /// Waits at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::join_timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<ExitReason>, Error> {
        block_on(self.0.join_timeout(timeout))
    }

    /// Sends SIGTERM.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::terminate`].
    pub fn terminate(&self) -> Result<(), Error> {
        self.0.terminate()
    }

    /// Sends SIGKILL.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::kill`].
    pub fn kill(&self) -> Result<(), Error> {
        self.0.kill()
    }

    /// Asks it to stop, then kills it after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::stop`].
    pub fn stop(&self, timeout: Duration) -> Result<ExitReason, Error> {
        block_on(self.0.stop(timeout))
    }

    /// Releases the process object.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::close`].
    pub fn close(&mut self) -> Result<(), Error> {
        self.0.close()
    }

    /// The async process object.
    pub fn into_async(self) -> crate::Process {
        self.0
    }

    /// Borrows the async process object.
    pub fn as_async(&self) -> &crate::Process {
        &self.0
    }
}

impl From<crate::Process> for Process {
    fn from(p: crate::Process) -> Self {
        Process(p)
    }
}

/// The address of an actor, with blocking calls; see [`crate::ActorRef`].
#[derive(Debug)]
pub struct ActorRef<A>(pub crate::ActorRef<A>);

impl<A> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef(self.0.clone())
    }
}

impl<A: Actor> ActorRef<A> {
    /// Sends `msg` and waits for the reply.
    ///
    /// # Errors
    ///
    /// As [`crate::ActorRef::call`].
    pub fn call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        block_on(self.0.call(msg))
    }

    /// Sends `msg` and waits at most `timeout` for the reply.
    ///
    /// # Errors
    ///
    /// As [`crate::ActorRef::call_timeout`].
    pub fn call_timeout(&self, msg: A::Msg, timeout: Duration) -> Result<A::Reply, CallError> {
        block_on(self.0.call_timeout(msg, timeout))
    }

    /// Sends `msg` without waiting.
    ///
    /// # Errors
    ///
    /// As [`crate::ActorRef::cast`].
    pub fn cast(&self, msg: A::Msg) -> Result<(), CallError> {
        self.0.cast(msg)
    }
}

/// Blocks until this process is asked to stop; see [`crate::wait_for_stop`].
pub fn wait_for_stop() {
    block_on(crate::wait_for_stop());
}

/// Stops every child of this process (ask, wait up to `timeout`, kill); see
/// [`crate::stop_children`].
pub fn stop_children(timeout: Duration) {
    block_on(crate::stop_children(timeout));
}

/// A running supervisor, with blocking methods; see [`crate::SupervisorRef`].
#[derive(Debug, Clone)]
pub struct SupervisorRef(pub crate::SupervisorRef);

impl SupervisorRef {
    /// Validates and starts `supervisor`; see [`crate::Supervisor::start`].
    ///
    /// # Errors
    ///
    /// As [`crate::Supervisor::start`].
    pub fn start(supervisor: crate::Supervisor) -> Result<SupervisorRef, crate::AdminError> {
        block_on(supervisor.start()).map(SupervisorRef)
    }

    /// The children; see [`crate::SupervisorRef::which_children`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::which_children`].
    pub fn which_children(&self) -> Result<Vec<crate::ChildStatus>, crate::AdminError> {
        block_on(self.0.which_children())
    }

    /// Counts; see [`crate::SupervisorRef::count_children`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::count_children`].
    pub fn count_children(&self) -> Result<crate::ChildCounts, crate::AdminError> {
        block_on(self.0.count_children())
    }

    /// Adds and starts a child; see [`crate::SupervisorRef::start_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::start_child`].
    pub fn start_child(&self, spec: crate::ChildSpec) -> Result<(), crate::AdminError> {
        block_on(self.0.start_child(spec))
    }

    /// Stops a child; see [`crate::SupervisorRef::terminate_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::terminate_child`].
    pub fn terminate_child(&self, id: &str) -> Result<(), crate::AdminError> {
        block_on(self.0.terminate_child(id))
    }

    /// Starts a stopped child again; see [`crate::SupervisorRef::restart_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::restart_child`].
    pub fn restart_child(&self, id: &str) -> Result<(), crate::AdminError> {
        block_on(self.0.restart_child(id))
    }

    /// Forgets a stopped child; see [`crate::SupervisorRef::delete_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::delete_child`].
    pub fn delete_child(&self, id: &str) -> Result<(), crate::AdminError> {
        block_on(self.0.delete_child(id))
    }

    /// Stops everything and ends the supervisor.
    pub fn shutdown(&self) -> crate::SupervisorExit {
        block_on(self.0.shutdown())
    }

    /// Waits for the supervisor to end.
    pub fn join(&self) -> crate::SupervisorExit {
        block_on(self.0.join())
    }

    /// A stream of events from now on.
    pub fn events(&self) -> Events {
        Events(self.0.events())
    }

    /// A stable handle to the actor child `id`; see [`crate::SupervisedRef`].
    pub fn child_ref<A: crate::Actor>(&self, id: &str) -> SupervisedRef<A> {
        SupervisedRef(self.0.child_ref(id))
    }
}

/// A stable handle to a supervised actor child, with blocking calls; see
/// [`crate::SupervisedRef`].
#[derive(Debug)]
pub struct SupervisedRef<A>(pub crate::SupervisedRef<A>);

impl<A: crate::Actor> SupervisedRef<A> {
    /// Calls the child, waiting through a restart.
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisedRef::call`].
    pub fn call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        block_on(self.0.call(msg))
    }

    /// Calls within `timeout` in all.
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisedRef::call_timeout`].
    pub fn call_timeout(&self, msg: A::Msg, timeout: Duration) -> Result<A::Reply, CallError> {
        block_on(self.0.call_timeout(msg, timeout))
    }

    /// Calls only if the child runs now.
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisedRef::try_call`].
    pub fn try_call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        block_on(self.0.try_call(msg))
    }
}

/// A supervisor's events, read by blocking; see [`crate::Events`].
#[derive(Debug)]
pub struct Events(pub crate::Events);

impl Iterator for Events {
    type Item = crate::SupervisorEvent;

    /// Blocks for the next event; `None` once the supervisor has ended.
    fn next(&mut self) -> Option<crate::SupervisorEvent> {
        block_on(self.0.next())
    }
}

/// Runs `supervisor` as this process's work until the process is asked to stop or the
/// supervisor gives up; see [`crate::Supervisor::run`].
///
/// # Errors
///
/// As [`crate::Supervisor::run`].
pub fn run_supervisor(supervisor: crate::Supervisor) -> Result<(), crate::AdminError> {
    block_on(supervisor.run())
}

/// A dynamic supervisor, with blocking methods; see [`crate::DynamicSupervisor`].
#[derive(Debug)]
pub struct DynamicSupervisor(pub crate::DynamicSupervisor);

impl DynamicSupervisor {
    /// Starts it; see [`crate::DynamicSupervisor::start`].
    ///
    /// # Errors
    ///
    /// As [`crate::DynamicSupervisor::start`].
    pub fn start(
        flags: crate::SupervisorFlags,
        template: crate::ChildSpec,
        max_children: Option<usize>,
    ) -> Result<DynamicSupervisor, crate::AdminError> {
        block_on(crate::DynamicSupervisor::start(
            flags,
            template,
            max_children,
        ))
        .map(DynamicSupervisor)
    }

    /// Starts a child with `args`; see [`crate::DynamicSupervisor::start_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::DynamicSupervisor::start_child`].
    pub fn start_child<T: serde::Serialize>(&self, args: &T) -> Result<String, crate::AdminError> {
        block_on(self.0.start_child(args))
    }

    /// Stops and forgets a child; see [`crate::DynamicSupervisor::terminate_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::DynamicSupervisor::terminate_child`].
    pub fn terminate_child(&self, id: &str) -> Result<(), crate::AdminError> {
        block_on(self.0.terminate_child(id))
    }

    /// The supervisor underneath, with blocking methods.
    pub fn supervisor(&self) -> SupervisorRef {
        SupervisorRef(self.0.supervisor().clone())
    }
}

/// A pool of worker processes, with blocking methods; see [`crate::Pool`].
///
/// Every wait here is interrupted by SIGINT (Ctrl-C) in the root: the pool is
/// terminated and the call returns [`PoolError::Interrupted`].
#[derive(Debug, Clone)]
pub struct Pool(pub crate::Pool);

/// Result of work submitted without waiting; see [`crate::AsyncResult`].
#[derive(Debug)]
pub struct AsyncResult<R>(pub crate::AsyncResult<R>);

/// Results of `imap` and `imap_unordered`, as an iterator; see [`crate::Imap`].
#[derive(Debug)]
pub struct Imap<R>(pub crate::Imap<R>);

/// A pool's settings; see [`crate::PoolBuilder`].
#[derive(Debug)]
pub struct PoolBuilder(pub crate::PoolBuilder);

use crate::{PoolError, StartMethod, Task};

impl PoolBuilder {
    /// The number of worker processes (default: [`crate::cpu_count`]).
    pub fn processes(self, n: usize) -> Self {
        PoolBuilder(self.0.processes(n))
    }
    /// A registered function each worker runs first.
    pub fn initializer<F: Target<M>, M>(self, f: F, args: F::Args) -> Self {
        PoolBuilder(self.0.initializer(f, args))
    }
    /// Replace a worker after this many tasks.
    pub fn max_tasks_per_child(self, n: u32) -> Self {
        PoolBuilder(self.0.max_tasks_per_child(n))
    }
    /// How workers are started.
    pub fn start_method(self, method: StartMethod) -> Self {
        PoolBuilder(self.0.start_method(method))
    }
    /// How long one item may run.
    pub fn task_timeout(self, limit: Duration) -> Self {
        PoolBuilder(self.0.task_timeout(limit))
    }
    /// Retry and quarantine of tasks whose worker died.
    pub fn retry(self, policy: crate::RetryPolicy) -> Self {
        PoolBuilder(self.0.retry(policy))
    }
    /// The workers' name prefix.
    pub fn name_prefix(self, prefix: impl Into<String>) -> Self {
        PoolBuilder(self.0.name_prefix(prefix))
    }
    /// The largest frame between the pool and a worker.
    pub fn max_frame_len(self, max: usize) -> Self {
        PoolBuilder(self.0.max_frame_len(max))
    }
    /// How many failed worker starts are too many.
    pub fn start_intensity(self, limit: crate::RestartIntensity) -> Self {
        PoolBuilder(self.0.start_intensity(limit))
    }
    /// Starts the pool.
    ///
    /// # Errors
    ///
    /// See [`crate::PoolBuilder::start`].
    pub fn start(self) -> Result<Pool, PoolError> {
        self.0.start().map(Pool)
    }
}

impl Pool {
    /// A pool of `processes` workers with the default settings.
    ///
    /// # Errors
    ///
    /// See [`crate::PoolBuilder::start`].
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        crate::Pool::new(processes).map(Pool)
    }
    /// A builder for the pool's settings.
    pub fn builder() -> PoolBuilder {
        PoolBuilder(crate::Pool::builder())
    }
    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.0.processes()
    }
    /// Runs `f(args)` in a worker and returns its result.
    ///
    /// # Errors
    ///
    /// See [`crate::Pool::apply`].
    pub fn apply<F: Task<M>, M>(&self, f: F, args: F::Args) -> Result<F::Output, PoolError> {
        block_on(self.0.apply(f, args))
    }
    /// Submits `f(args)`.
    pub fn apply_async<F: Task<M>, M>(&self, f: F, args: F::Args) -> AsyncResult<F::Output> {
        AsyncResult(self.0.apply_async(f, args))
    }
    /// Submits `f(args)` (`ProcessPoolExecutor.submit`).
    pub fn submit<F: Task<M>, M>(&self, f: F, args: F::Args) -> AsyncResult<F::Output> {
        AsyncResult(self.0.submit(f, args))
    }
    /// Submits a task by its registered name.
    pub fn apply_by_name<A: serde::Serialize, R: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
        args: A,
    ) -> AsyncResult<R> {
        AsyncResult(self.0.apply_by_name(name, args))
    }
    /// `f` over every item, in order, in chunks of Python's default size.
    ///
    /// # Errors
    ///
    /// See [`crate::Pool::map`].
    pub fn map<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
    ) -> Result<Vec<F::Output>, PoolError> {
        block_on(self.0.map(f, items))
    }
    /// `map` with an explicit chunksize.
    ///
    /// # Errors
    ///
    /// See [`crate::Pool::map_chunked`].
    pub fn map_chunked<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
        chunksize: usize,
    ) -> Result<Vec<F::Output>, PoolError> {
        block_on(self.0.map_chunked(f, items, chunksize))
    }
    /// `map`, returning at once.
    pub fn map_async<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
    ) -> AsyncResult<Vec<F::Output>> {
        AsyncResult(self.0.map_async(f, items))
    }
    /// `map_chunked`, returning at once.
    pub fn map_async_chunked<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
        chunksize: usize,
    ) -> AsyncResult<Vec<F::Output>> {
        AsyncResult(self.0.map_async_chunked(f, items, chunksize))
    }
    /// Python's `starmap`: `map` over argument tuples.
    ///
    /// # Errors
    ///
    /// See [`crate::Pool::map`].
    pub fn starmap<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
    ) -> Result<Vec<F::Output>, PoolError> {
        block_on(self.0.starmap(f, items))
    }
    /// Python's `starmap_async`.
    pub fn starmap_async<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
    ) -> AsyncResult<Vec<F::Output>> {
        AsyncResult(self.0.starmap_async(f, items))
    }
    /// Lazy `map` with results in input order.
    pub fn imap<F: Task<M>, M, I>(&self, f: F, items: I, chunksize: usize) -> Imap<F::Output>
    where
        I: IntoIterator<Item = F::Args>,
        I::IntoIter: Send + 'static,
    {
        Imap(self.0.imap(f, items, chunksize))
    }
    /// Lazy `map` with results in completion order.
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
        Imap(self.0.imap_unordered(f, items, chunksize))
    }
    /// Takes no new work; workers exit once the submitted work is done.
    pub fn close(&self) {
        self.0.close()
    }
    /// Fails pending work, kills the workers and waits for them.
    pub fn terminate(&self) {
        block_on(self.0.terminate())
    }
    /// Waits for the workers to exit after `close` or `terminate`.
    ///
    /// # Errors
    ///
    /// See [`crate::Pool::join`].
    pub fn join(&self) -> Result<(), PoolError> {
        block_on(self.0.join())
    }
    /// The workers alive now.
    pub fn workers(&self) -> Vec<crate::WorkerInfo> {
        block_on(self.0.workers())
    }
}

impl<R: Send + 'static> AsyncResult<R> {
    /// Whether the result has arrived.
    pub fn ready(&mut self) -> bool {
        self.0.ready()
    }
    /// Whether the task succeeded.
    ///
    /// # Errors
    ///
    /// [`PoolError::NotReady`] before the result has arrived.
    pub fn successful(&mut self) -> Result<bool, PoolError> {
        self.0.successful()
    }
    /// Waits for the result, at most `timeout` if one is given; whether it arrived.
    pub fn wait(&mut self, timeout: Option<Duration>) -> bool {
        match timeout {
            Some(t) => block_on(self.0.wait_timeout(t)),
            None => {
                block_on(self.0.wait());
                true
            }
        }
    }
    /// Waits for the result (at most `timeout`, if given) and takes it; a timeout
    /// leaves the task running.
    ///
    /// # Errors
    ///
    /// See [`crate::AsyncResult::get`], and [`PoolError::Timeout`].
    pub fn get(&mut self, timeout: Option<Duration>) -> Result<R, PoolError> {
        match timeout {
            Some(t) => block_on(self.0.get_timeout(t)),
            None => block_on(self.0.get()),
        }
    }
    /// Cancels the task if it has not started; whether it was.
    pub fn cancel(&mut self) -> bool {
        block_on(self.0.cancel())
    }
    /// Runs a callback with the result or the error, when it arrives.
    pub fn then(
        self,
        callback: impl FnOnce(R) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> AsyncResult<()> {
        AsyncResult(self.0.then(callback, error_callback))
    }
}

impl<R: Send + 'static> Iterator for Imap<R> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        block_on(self.0.next())
    }
}

macro_rules! blocking_semaphore {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub crate::$name);

        impl $name {
            /// Acquires it; see the async type.
            ///
            /// # Errors
            ///
            /// [`crate::SyncError::OwnerDied`] (acquired, previous holder dead),
            /// [`crate::SyncError::OwnerGone`], [`crate::SyncError::Forged`].
            pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, crate::SyncError> {
                block_on(self.0.acquire(block, timeout))
            }

            /// Releases it.
            ///
            /// # Errors
            ///
            /// [`crate::SyncError::Misuse`], [`crate::SyncError::OwnerGone`].
            pub fn release(&self) -> Result<(), crate::SyncError> {
                block_on(self.0.release())
            }

            /// Holds it until the guard is dropped (Python's `with`).
            ///
            /// # Errors
            ///
            /// As `acquire`; a dead previous holder is `Guard::owner_died`.
            pub fn guard(&self) -> Result<crate::Guard<'_, crate::$name>, crate::SyncError> {
                block_on(self.0.guard())
            }
        }
    };
}

/// A mirror of a lock or semaphore in shared memory: acquire and release work on
/// the memory directly, with no runtime in between.
macro_rules! blocking_shared_semaphore {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub crate::$name);

        impl $name {
            /// Acquires a permit; see the async type.
            ///
            /// # Errors
            ///
            /// [`crate::SyncError::OwnerDied`] (acquired, a holder died),
            /// [`crate::SyncError::OwnerGone`], [`crate::SyncError::Forged`].
            pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, crate::SyncError> {
                self.0.acquire_blocking(block, timeout)
            }

            /// Releases a permit.
            ///
            /// # Errors
            ///
            /// [`crate::SyncError::Misuse`], [`crate::SyncError::OwnerGone`].
            pub fn release(&self) -> Result<(), crate::SyncError> {
                self.0.release_blocking()
            }

            /// Holds a permit until the guard is dropped (Python's `with`).
            ///
            /// # Errors
            ///
            /// As `acquire`; a dead holder is `Guard::owner_died`.
            pub fn guard(&self) -> Result<crate::Guard<'_, crate::$name>, crate::SyncError> {
                self.0.guard_blocking()
            }
        }
    };
}

blocking_shared_semaphore!(
    /// A lock any process of the tree can use; see [`crate::Lock`].
    Lock
);
blocking_shared_semaphore!(
    /// A recursive lock; see [`crate::RLock`].
    RLock
);

blocking_shared_semaphore!(
    /// A semaphore; see [`crate::Semaphore`].
    Semaphore
);
blocking_shared_semaphore!(
    /// A bounded semaphore; see [`crate::BoundedSemaphore`].
    BoundedSemaphore
);

impl Lock {
    /// A new lock, hosted by this process.
    ///
    /// # Errors
    ///
    /// See [`crate::Lock::new`]: [`crate::SyncError::Exhausted`] names the limit
    /// when the system has no room for it.
    pub fn new() -> Result<Lock, crate::SyncError> {
        crate::Lock::new().map(Lock)
    }
}

impl RLock {
    /// A new recursive lock, hosted by this process.
    ///
    /// # Errors
    ///
    /// See [`crate::RLock::new`].
    pub fn new() -> Result<RLock, crate::SyncError> {
        crate::RLock::new().map(RLock)
    }
}

impl Semaphore {
    /// A semaphore starting at `value`.
    ///
    /// # Errors
    ///
    /// See [`crate::Semaphore::new`].
    pub fn new(value: usize) -> Result<Semaphore, crate::SyncError> {
        crate::Semaphore::new(value).map(Semaphore)
    }

    /// Its value now.
    ///
    /// # Errors
    ///
    /// [`crate::SyncError::OwnerGone`], [`crate::SyncError::Forged`].
    pub fn get_value(&self) -> Result<usize, crate::SyncError> {
        self.0.get_value_blocking()
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore of `value`.
    ///
    /// # Errors
    ///
    /// See [`crate::BoundedSemaphore::new`].
    pub fn new(value: usize) -> Result<BoundedSemaphore, crate::SyncError> {
        crate::BoundedSemaphore::new(value).map(BoundedSemaphore)
    }
}

/// An event; see [`crate::Event`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Event(pub crate::Event);

impl Event {
    /// A new event, clear.
    ///
    /// # Errors
    ///
    /// See [`crate::Event::new`].
    pub fn new() -> Result<Event, crate::SyncError> {
        crate::Event::new().map(Event)
    }
    /// Sets it.
    ///
    /// # Errors
    ///
    /// [`crate::SyncError::OwnerGone`], [`crate::SyncError::Forged`].
    pub fn set(&self) -> Result<(), crate::SyncError> {
        self.0.set_blocking()
    }
    /// Clears it.
    ///
    /// # Errors
    ///
    /// As `set`.
    pub fn clear(&self) -> Result<(), crate::SyncError> {
        self.0.clear_blocking()
    }
    /// Whether it is set.
    ///
    /// # Errors
    ///
    /// As `set`.
    pub fn is_set(&self) -> Result<bool, crate::SyncError> {
        self.0.is_set_blocking()
    }
    /// Waits until it is set, at most `timeout`.
    ///
    /// # Errors
    ///
    /// As `set`.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, crate::SyncError> {
        self.0.wait_blocking(timeout)
    }
}

/// A queue; see [`crate::Queue`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent, bound = "")]
pub struct Queue<T>(pub crate::Queue<T>);

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue(self.0.clone())
    }
}

/// Python's `JoinableQueue`; see [`crate::JoinableQueue`].
pub type JoinableQueue<T> = Queue<T>;
/// Python's `SimpleQueue`; see [`crate::SimpleQueue`].
pub type SimpleQueue<T> = Queue<T>;

impl<T: serde::Serialize + serde::de::DeserializeOwned> Queue<T> {
    /// A queue of at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::new`].
    pub fn new(maxsize: usize) -> Result<Queue<T>, crate::SyncError> {
        crate::Queue::new(maxsize).map(Queue)
    }
    /// Python's `JoinableQueue(maxsize)`; see [`crate::Queue::joinable`].
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::new`].
    pub fn joinable(maxsize: usize) -> Result<Queue<T>, crate::SyncError> {
        crate::Queue::joinable(maxsize).map(Queue)
    }
    /// Puts an item.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::put`].
    pub fn put(
        &self,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), crate::SyncError> {
        self.0.put_blocking(item, block, timeout)
    }
    /// Puts an item without waiting.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::put`].
    pub fn put_nowait(&self, item: &T) -> Result<(), crate::SyncError> {
        self.0.put_blocking(item, false, None)
    }
    /// Nothing to wait for: a put returns once its item is in the queue.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::flush`].
    pub fn flush(&self) -> Result<(), crate::SyncError> {
        block_on(self.0.flush())
    }
    /// Gets an item.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::get`].
    pub fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T, crate::SyncError> {
        self.0.get_blocking(block, timeout)
    }
    /// Gets an item without waiting.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::get`].
    pub fn get_nowait(&self) -> Result<T, crate::SyncError> {
        self.0.get_blocking(false, None)
    }
    /// Items in the queue now.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::qsize`].
    pub fn qsize(&self) -> Result<usize, crate::SyncError> {
        block_on(self.0.qsize())
    }
    /// Whether it is empty now.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::qsize`].
    pub fn empty(&self) -> Result<bool, crate::SyncError> {
        block_on(self.0.empty())
    }
    /// Whether it is full now.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::qsize`].
    pub fn full(&self) -> Result<bool, crate::SyncError> {
        block_on(self.0.full())
    }
    /// This handle puts no more.
    pub fn close(&mut self) {
        self.0.close()
    }
    /// One item is done.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::task_done`].
    pub fn task_done(&self) -> Result<(), crate::SyncError> {
        self.0.task_done_blocking()
    }
    /// Waits until every item is done.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::join`].
    pub fn join(&self) -> Result<(), crate::SyncError> {
        self.0.join_blocking()
    }
}

blocking_semaphore!(
    /// A condition; see [`crate::Condition`]. `acquire`, `release` and `guard` are its
    /// lock's.
    Condition
);

impl Condition {
    /// A condition over a new `RLock` (Python's default).
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::new`].
    pub fn new() -> Result<Condition, crate::SyncError> {
        crate::Condition::new().map(Condition)
    }
    /// A condition over a new plain `Lock`.
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::new`].
    pub fn with_lock() -> Result<Condition, crate::SyncError> {
        crate::Condition::with_lock().map(Condition)
    }
    /// Sleeps until notified or `timeout` runs out; whether it was notified.
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::wait`].
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, crate::SyncError> {
        block_on(self.0.wait(timeout))
    }
    /// Waits until `predicate` holds.
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::wait_for`].
    pub fn wait_for(
        &self,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, crate::SyncError> {
        block_on(self.0.wait_for(predicate, timeout))
    }
    /// Wakes up to `n` waiters.
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::notify`].
    pub fn notify(&self, n: usize) -> Result<(), crate::SyncError> {
        block_on(self.0.notify(n))
    }
    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::notify`].
    pub fn notify_all(&self) -> Result<(), crate::SyncError> {
        block_on(self.0.notify_all())
    }
}

/// A barrier; see [`crate::Barrier`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Barrier(pub crate::Barrier);

impl Barrier {
    /// A barrier for `parties`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::new`].
    pub fn new(parties: usize) -> Result<Barrier, crate::SyncError> {
        crate::Barrier::new(parties).map(Barrier)
    }
    /// A barrier whose last party runs `f(args)` before all pass.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::with_action`].
    pub fn with_action<F: Target<M>, M>(
        parties: usize,
        f: F,
        args: F::Args,
    ) -> Result<Barrier, Error> {
        crate::Barrier::with_action(parties, f, args).map(Barrier)
    }
    /// Waits for the other parties; this party's index.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::wait`].
    pub fn wait(&self, timeout: Option<Duration>) -> Result<usize, crate::SyncError> {
        block_on(self.0.wait(timeout))
    }
    /// Breaks it.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::abort`].
    pub fn abort(&self) -> Result<(), crate::SyncError> {
        block_on(self.0.abort())
    }
    /// Makes it whole again.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::reset`].
    pub fn reset(&self) -> Result<(), crate::SyncError> {
        block_on(self.0.reset())
    }
    /// Python's `parties`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::info`].
    pub fn parties(&self) -> Result<usize, crate::SyncError> {
        Ok(block_on(self.0.info())?.0)
    }
    /// Python's `n_waiting`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::info`].
    pub fn n_waiting(&self) -> Result<usize, crate::SyncError> {
        Ok(block_on(self.0.info())?.1)
    }
    /// Python's `broken`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::info`].
    pub fn broken(&self) -> Result<bool, crate::SyncError> {
        Ok(block_on(self.0.info())?.2)
    }
}
