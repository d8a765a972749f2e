//! `PoolBuilder`: a pool's settings, checked, and its start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::time::Duration;

use multiproc_core::scheduler::SchedulerConfig;
use multiproc_core::{RestartIntensity, RetryPolicy, StartMethod, codec};

use super::place::Place;
use super::remote::MAX_NODE_FRAME_LEN;
use super::shared::{RUNNING, Shared};
use super::{Handle, Pool, PoolError, actor, launch};
use crate::runtime::error::Error;
use crate::runtime::registry;
use crate::runtime::target::Target;
use multiproc_core::NodeError;

/// How a pool is set up; [`Pool::builder`] starts one.
#[derive(Debug)]
pub struct PoolBuilder {
    pub(super) processes: Option<usize>,
    pub(super) initializer: Option<Result<(String, Vec<u8>), PoolError>>,
    pub(super) max_tasks: Option<u32>,
    pub(super) max_rss: Option<u64>,
    pub(super) method: StartMethod,
    pub(super) timeout: Option<Duration>,
    pub(super) retry: RetryPolicy,
    pub(super) prefix: String,
    pub(super) start_intensity: RestartIntensity,
    pub(super) max_frame_len: usize,
    /// Nodes and their worker counts, by node name, in the order given.
    pub(super) nodes: Vec<(String, usize)>,
}

impl PoolBuilder {
    /// The number of worker processes (default: [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A registered function each worker runs once before it takes work (Python's
    /// `initializer` and `initargs`). If it fails, the worker exits; when workers keep
    /// failing to start, the pool fails with [`PoolError::Broken`].
    pub fn initializer<F: Target<M>, M>(mut self, f: F, args: F::Args) -> Self {
        let _ = f;
        self.initializer = Some(
            registry::function_by_type::<F>()
                .map_err(PoolError::from)
                .and_then(|e| {
                    codec::encode(&args)
                        .map(|a| (e.name.to_string(), a))
                        .map_err(|e| PoolError::Invalid(format!("initializer arguments: {e}")))
                }),
        );
        self
    }

    /// Replaces a worker after it has run this many tasks (chunks), as Python's
    /// `maxtasksperchild`; the replacement starts while the old one finishes.
    pub fn max_tasks_per_child(mut self, n: u32) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// Replaces a worker whose resident memory (RSS) has passed `bytes` once its
    /// current task (chunk) is done, as Dask's and loky's memory limits do: a task
    /// that leaks, or fragments the heap, costs one worker's restart, not the machine.
    /// The worker measures itself after each chunk (one read of `/proc/self/statm`)
    /// and the pool retires it as it does at `max_tasks_per_child`: its result is
    /// delivered, tasks already sent to it run, and a replacement starts at once.
    /// A task that needs more memory than the machine has is another matter: the
    /// kernel's OOM killer ends its worker mid-task, and the task fails with
    /// [`ExitReason::OutOfMemory`](multiproc_core::ExitReason::OutOfMemory) where the
    /// kernel says so.
    pub fn max_rss_per_child(mut self, bytes: u64) -> Self {
        self.max_rss = Some(bytes);
        self
    }

    /// How workers are started (default: `Forkserver`, as Python 3.14 chose on Linux:
    /// a pool replaces workers, after deaths, timeouts and `max_tasks_per_child`, and a
    /// forked replacement is ready in about half the time of a spawned one).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// How long one item may run; a chunk of `n` items may run `n` times this. A task
    /// past it fails with [`TaskError::Timeout`](crate::TaskError::Timeout), its worker is killed and replaced.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// What happens to a task whose worker dies (default: it fails with
    /// [`TaskError::WorkerDied`](crate::TaskError::WorkerDied); a task that kills 3 workers in a row is quarantined).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The workers' name prefix (default `PoolWorker`, giving `PoolWorker-3`,
    /// `PoolWorker-1:2`, … by the process counter, as Python names them).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many workers may fail to start (exit before their initializer finished)
    /// within a window before the pool gives up (default: 3 in 5 s).
    pub fn start_intensity(mut self, limit: RestartIntensity) -> Self {
        self.start_intensity = limit;
        self
    }

    /// The largest frame between the pool and a worker, either way (default
    /// [`DEFAULT_MAX_FRAME_LEN`](multiproc_transport::DEFAULT_MAX_FRAME_LEN): no limit
    /// but memory, as CPython's pool; at least 64 KiB). Chunks are cut
    /// to fit it; an item whose arguments alone pass it is [`PoolError::TooLarge`],
    /// and a chunk whose results pass it fails with [`TaskError::Encode`](crate::TaskError::Encode).
    pub fn max_frame_len(mut self, max: usize) -> Self {
        self.max_frame_len = max;
        self
    }

    /// Places workers on nodes: `count` workers on each node (connected from this
    /// process with [`node::connect`](crate::node::connect)), named `PoolWorker-N`
    /// as local ones are, each with its node in [`Pool::workers`](crate::Pool::workers).
    /// Without [`processes`](Self::processes) the pool has no local workers; with it,
    /// it has those too.
    ///
    /// A node that dies takes its workers' tasks with it: they fail with
    /// [`TaskError::WorkerDied`](crate::TaskError::WorkerDied) and reason
    /// [`ExitReason::NodeDown`](multiproc_core::ExitReason::NodeDown), or are run again
    /// elsewhere by the [`retry`](Self::retry) policy, and the workers are replaced
    /// on the live places, in proportion to their counts. Chunks travel in the
    /// nodes' sessions, which take frames up to 16 MiB: a pool with nodes cuts its
    /// chunks to [`MAX_NODE_FRAME_LEN`](crate::MAX_NODE_FRAME_LEN) (15 MiB) at most.
    ///
    /// ```no_run
    /// use multiproc_supervisor::{Pool, node};
    /// # multiproc_supervisor::block_on(async {
    /// let a = node::connect("10.0.0.2:4369", "cookie").await?;
    /// let b = node::connect("10.0.0.3:4369", "cookie").await?;
    /// let pool = Pool::builder().nodes([(&a, 2), (&b, 2)]).start()?;
    /// assert_eq!(pool.processes(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn nodes<N: multiproc_core::NodeName>(
        mut self,
        nodes: impl IntoIterator<Item = (N, usize)>,
    ) -> Self {
        self.nodes
            .extend(nodes.into_iter().map(|(n, count)| (n.node_name(), count)));
        self
    }

    /// Starts the pool: its workers start in the background, and work can be submitted
    /// at once.
    ///
    /// # Errors
    ///
    /// [`PoolError::Invalid`] for zero processes, zero `max_tasks_per_child` or zero
    /// `max_rss_per_child`;
    /// [`PoolError::Entry`] for an unregistered initializer, or when this process
    /// cannot start children (see [`Process::start`](crate::Process::start));
    /// [`PoolError::Exhausted`] when it has no room for its own runtime's threads;
    /// [`PoolError::Node`] for a node that is not connected from this process, or is
    /// down; [`PoolError::Invalid`] for a node named twice or given no workers.
    /// Workers start in the background: one the system has no room for fails the
    /// pool's work later, with [`PoolError::Exhausted`] once the start intensity is
    /// spent.
    pub fn start(self) -> Result<Pool, PoolError> {
        let local = match (self.processes, self.nodes.is_empty()) {
            (Some(n), _) => n,
            (None, true) => crate::runtime::current::cpu_count(),
            (None, false) => 0,
        };
        let places = places(local, &self.nodes)?;
        let processes: usize = places.iter().map(|p| p.want).sum();
        if processes == 0 {
            return Err(PoolError::Invalid("processes must be at least 1".into()));
        }
        // A chunk is cut before the scheduler picks its worker: with nodes, every
        // chunk must fit a node session's frame.
        let max_frame_len = if self.nodes.is_empty() {
            self.max_frame_len
        } else {
            self.max_frame_len.min(MAX_NODE_FRAME_LEN)
        };
        if self.max_tasks == Some(0) {
            return Err(PoolError::Invalid(
                "max_tasks_per_child must be at least 1".into(),
            ));
        }
        if self.max_rss == Some(0) {
            return Err(PoolError::Invalid(
                "max_rss_per_child must be at least 1 byte".into(),
            ));
        }
        if self.max_frame_len < MIN_POOL_FRAME_LEN {
            return Err(PoolError::Invalid(format!(
                "max_frame_len {} is under the least a pool works with, {MIN_POOL_FRAME_LEN}",
                self.max_frame_len
            )));
        }
        if self.start_intensity.validate().is_err() {
            return Err(PoolError::Invalid(format!(
                "start_intensity {:?}",
                self.start_intensity
            )));
        }
        crate::runtime::bootstrap::check_init();
        if crate::runtime::current::me().daemon {
            return Err(Error::DaemonWithChildren.into());
        }
        crate::runtime::ensure()?;
        let init = self.initializer.transpose()?;
        let cfg = SchedulerConfig {
            processes,
            max_tasks_per_worker: self.max_tasks,
            task_timeout: self.timeout,
            retry: self.retry,
            start_intensity: self.start_intensity,
        };
        let shared = Arc::new(Shared {
            state: AtomicU8::new(RUNNING),
            next_task: AtomicU64::new(1),
            processes,
            broken: std::sync::Mutex::new(None),
            mailed: std::sync::atomic::AtomicUsize::new(0),
            max_frame_len,
            readers: std::sync::Mutex::new(Vec::new()),
        });
        let (tx, core) = actor::start(
            cfg,
            launch::Launch {
                init,
                max_rss: self.max_rss,
                method: self.method,
                prefix: self.prefix,
                max_frame_len,
                places,
            },
            Arc::clone(&shared),
        );
        Ok(Pool {
            inner: Arc::new(Handle { shared, tx, core }),
        })
    }
}

/// The pool's places: its nodes in the order given, then this host if it has local
/// workers. Each node must be connected and up now: a pool is not built on a node it
/// cannot use.
fn places(local: usize, nodes: &[(String, usize)]) -> Result<Vec<Place>, PoolError> {
    let mut places = Vec::with_capacity(nodes.len() + 1);
    for (name, count) in nodes {
        if *count == 0 {
            return Err(PoolError::Invalid(format!(
                "node {name} is given no workers"
            )));
        }
        if places
            .iter()
            .any(|p: &Place| p.node.as_deref() == Some(name.as_str()))
        {
            return Err(PoolError::Invalid(format!("node {name} is named twice")));
        }
        let node = crate::remote::client::connected(name).ok_or_else(|| {
            PoolError::Node(NodeError::NodeDown {
                node: name.clone(),
                why: "not connected from this process (node::connect it first)".into(),
            })
        })?;
        if let Some(e) = node.down_error() {
            return Err(PoolError::Node(e));
        }
        places.push(Place {
            node: Some(name.clone()),
            want: *count,
        });
    }
    if local > 0 || places.is_empty() {
        places.push(Place {
            node: None,
            want: local,
        });
    }
    Ok(places)
}

/// The least [`PoolBuilder::max_frame_len`] takes: a worker's failure report for a
/// chunk, the headers and the task names must always fit.
pub(crate) const MIN_POOL_FRAME_LEN: usize = 64 << 10;
