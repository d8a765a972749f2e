//! `Pool`, blocking: its builder, its calls, `AsyncResult` and `Imap`.

use std::time::Duration;

use multiproc_core::{RestartIntensity, RetryPolicy, StartMethod};

use crate::pool::{PoolError, TaskError, WorkerInfo};
use crate::runtime::block_on;
use crate::runtime::target::{Target, Task};

face!(
    /// A pool of worker processes, with blocking methods; see [`crate::Pool`].
    ///
    /// Every wait here is interrupted by SIGINT (Ctrl-C) in the root: the pool is
    /// terminated and the call returns [`PoolError::Interrupted`].
    #[derive(Debug, Clone)]
    Pool(crate::pool::Pool)
);

face!(
    /// Result of work submitted without waiting; see [`crate::AsyncResult`].
    #[derive(Debug)]
    AsyncResult<R>(crate::pool::AsyncResult<R>)
);

face!(
    /// Results of `imap` and `imap_unordered`, as an iterator; see [`crate::Imap`].
    #[derive(Debug)]
    Imap<R>(crate::pool::Imap<R>)
);

face!(
    /// A pool's settings; see [`crate::PoolBuilder`].
    #[derive(Debug)]
    PoolBuilder(crate::pool::PoolBuilder)
);

impl PoolBuilder {
    mirror! {
        /// The number of worker processes (default: [`crate::cpu_count`]).
        pub fn processes(self, n: usize) -> Self => wrap;
        /// A registered function each worker runs first.
        pub fn initializer[F: Target<M>, M](self, f: F, args: F::Args) -> Self => wrap;
        /// Replace a worker after this many tasks.
        pub fn max_tasks_per_child(self, n: u32) -> Self => wrap;
        /// Replaces a worker whose resident memory passed `bytes`; see
        /// [`crate::PoolBuilder::max_rss_per_child`].
        pub fn max_rss_per_child(self, bytes: u64) -> Self => wrap;
        /// How workers are started.
        pub fn start_method(self, method: StartMethod) -> Self => wrap;
        /// How long one item may run.
        pub fn task_timeout(self, limit: Duration) -> Self => wrap;
        /// Retry and quarantine of tasks whose worker died.
        pub fn retry(self, policy: RetryPolicy) -> Self => wrap;
        /// The workers' name prefix.
        pub fn name_prefix(self, prefix: impl Into<String>) -> Self => wrap;
        /// The largest frame between the pool and a worker.
        pub fn max_frame_len(self, max: usize) -> Self => wrap;
        /// How many failed worker starts are too many.
        pub fn start_intensity(self, limit: RestartIntensity) -> Self => wrap;
        /// Workers on nodes: `count` on each.
        pub fn nodes[N: multiproc_core::NodeName](self, nodes: impl IntoIterator<Item = (N, usize)>) -> Self => wrap;
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
        crate::pool::Pool::new(processes).map(Pool)
    }
    /// A builder for the pool's settings.
    pub fn builder() -> PoolBuilder {
        PoolBuilder(crate::pool::Pool::builder())
    }
    mirror! {
        /// The number of worker processes.
        pub fn processes(&self) -> usize => now;
        /// Runs `f(args)` in a worker and returns its result.
        ///
        /// # Errors
        ///
        /// See [`crate::Pool::apply`].
        pub fn apply[F: Task<M>, M](&self, f: F, args: F::Args) -> Result<F::Output, PoolError> => block;
        /// Submits `f(args)`.
        pub fn apply_async[F: Task<M>, M](&self, f: F, args: F::Args) -> AsyncResult<F::Output> => wrap;
        /// Submits `f(args)` (`ProcessPoolExecutor.submit`).
        pub fn submit[F: Task<M>, M](&self, f: F, args: F::Args) -> AsyncResult<F::Output> => wrap;
        /// Submits a task by its registered name.
        pub fn apply_by_name[A: serde::Serialize, R: serde::de::DeserializeOwned + Send + 'static](
            &self,
            name: &str,
            args: A
        ) -> AsyncResult<R> => wrap;
        /// `f` over every item, in order, in chunks of Python's default size.
        ///
        /// # Errors
        ///
        /// See [`crate::Pool::map`].
        pub fn map[F: Task<M>, M](
            &self,
            f: F,
            items: impl IntoIterator<Item = F::Args>
        ) -> Result<Vec<F::Output>, PoolError> => block;
        /// `map` with an explicit chunksize.
        ///
        /// # Errors
        ///
        /// See [`crate::Pool::map_chunked`].
        pub fn map_chunked[F: Task<M>, M](
            &self,
            f: F,
            items: impl IntoIterator<Item = F::Args>,
            chunksize: usize
        ) -> Result<Vec<F::Output>, PoolError> => block;
        /// `map`, returning at once.
        pub fn map_async[F: Task<M>, M](
            &self,
            f: F,
            items: impl IntoIterator<Item = F::Args>
        ) -> AsyncResult<Vec<F::Output>> => wrap;
        /// `map_chunked`, returning at once.
        pub fn map_async_chunked[F: Task<M>, M](
            &self,
            f: F,
            items: impl IntoIterator<Item = F::Args>,
            chunksize: usize
        ) -> AsyncResult<Vec<F::Output>> => wrap;
        /// `f` over every item, each item's own `Result` in input order.
        ///
        /// # Errors
        ///
        /// See [`crate::Pool::map_results`].
        pub fn map_results[F: Task<M>, M](
            &self,
            f: F,
            items: impl IntoIterator<Item = F::Args>
        ) -> Result<Vec<Result<F::Output, TaskError>>, PoolError> => block;
        /// `map_results` with an explicit chunksize.
        ///
        /// # Errors
        ///
        /// See [`crate::Pool::map_results_chunked`].
        pub fn map_results_chunked[F: Task<M>, M](
            &self,
            f: F,
            items: impl IntoIterator<Item = F::Args>,
            chunksize: usize
        ) -> Result<Vec<Result<F::Output, TaskError>>, PoolError> => block;
        /// Python's `starmap`: `map` over argument tuples.
        ///
        /// # Errors
        ///
        /// See [`crate::Pool::map`].
        pub fn starmap[F: Task<M>, M](
            &self,
            f: F,
            items: impl IntoIterator<Item = F::Args>
        ) -> Result<Vec<F::Output>, PoolError> => block;
        /// `map`, calling `on_progress` as chunks come back; see
        /// [`crate::Pool::map_with_progress`].
        pub fn map_with_progress[F: Task<M>, M](
            &self,
            f: F,
            items: impl IntoIterator<Item = F::Args>,
            on_progress: impl FnMut(crate::pool::Progress) + Send + 'static
        ) -> Result<Vec<F::Output>, PoolError> => block;
        /// Python's `starmap_async`.
        pub fn starmap_async[F: Task<M>, M](
            &self,
            f: F,
            items: impl IntoIterator<Item = F::Args>
        ) -> AsyncResult<Vec<F::Output>> => wrap;
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
    mirror! {
        /// Takes no new work; workers exit once the submitted work is done.
        pub fn close(&self) => now;
        /// Fails pending work, kills the workers and waits for them.
        pub fn terminate(&self) => block;
        /// Waits for the workers to exit after `close` or `terminate`.
        ///
        /// # Errors
        ///
        /// See [`crate::Pool::join`].
        pub fn join(&self) -> Result<(), PoolError> => block;
        /// The workers alive now (maybe none yet right after `Pool::new`; see
        /// [`wait_ready`](Pool::wait_ready)).
        pub fn workers(&self) -> Vec<WorkerInfo> => block;
        /// Waits until every worker is up; `map`, `apply` and the others need not.
        ///
        /// # Errors
        ///
        /// See [`crate::Pool::wait_ready`].
        pub fn wait_ready(&self, timeout: Option<Duration>) -> Result<(), PoolError> => block;
    }
}

impl<R: Send + 'static> AsyncResult<R> {
    mirror! {
        /// Whether the result has arrived.
        pub fn ready(&mut self) -> bool => now;
        /// Whether the task succeeded.
        ///
        /// # Errors
        ///
        /// [`PoolError::NotReady`] before the result has arrived.
        pub fn successful(&mut self) -> Result<bool, PoolError> => now;
    }
    /// Waits for the result, at most `timeout` if one is given; whether it arrived.
    pub fn wait(&mut self, timeout: Option<Duration>) -> bool {
        match timeout {
            Some(t) => block_on(self.0.wait_timeout(t)),
            None => {
                self.0.spin_for_answer();
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
            None => {
                self.0.spin_for_answer();
                block_on(self.0.get())
            }
        }
    }
    mirror! {
        /// Cancels the task if it has not started; whether it was.
        pub fn cancel(&mut self) -> bool => block;
        /// Runs a callback with the result or the error, when it arrives.
        pub fn then(
            self,
            callback: impl FnOnce(R) + Send + 'static,
            error_callback: impl FnOnce(PoolError) + Send + 'static
        ) -> AsyncResult<()> => wrap;
    }
}

impl<R: Send + 'static> Imap<R> {
    /// Calls `on_progress` each time a chunk's results come back; see
    /// [`crate::Imap::with_progress`].
    pub fn with_progress(
        self,
        on_progress: impl FnMut(crate::pool::Progress) + Send + 'static,
    ) -> Self {
        Imap(self.0.with_progress(on_progress))
    }

    /// How far the results have come; see [`crate::Imap::progress`].
    pub fn progress(&self) -> crate::pool::Progress {
        self.0.progress()
    }

    mirror! {
        /// The next result, waiting at most `timeout` (Python's `next(timeout)`):
        /// `Some(Err(PoolError::Timeout))` when none came in time; the iterator goes on.
        pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R, PoolError>> => block;
    }
}

impl<R: Send + 'static> Iterator for Imap<R> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        block_on(self.0.next())
    }
}
