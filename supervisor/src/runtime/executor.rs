//! The per-process runtime: one tokio runtime and one spawner thread, for the life of
//! the process.
//!
//! Every OS process that uses multiproc gets one multi-thread tokio runtime, built on
//! first use and never dropped, so the tasks that serve control links keep running
//! whatever the user's own runtimes do. The blocking API drives futures with
//! [`block_on`], which parks the calling thread while this runtime's workers do the
//! I/O; it therefore works from plain threads and from inside other runtimes.
//!
//! Children are spawned on one dedicated, long-lived thread: `PR_SET_PDEATHSIG` fires
//! when the *thread* that spawned a child exits, and tokio's blocking-pool threads exit
//! when idle, which would kill children seconds after a quiet spell.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use tokio::runtime::{Handle, Runtime};

use crate::runtime::error::Error;

static RT: OnceLock<Runtime> = OnceLock::new();

/// The runtime of this process.
///
/// # Panics
///
/// When it cannot be built. The entry points that need it and can report an error
/// (`init()` in a child, `Process::start`, `Pool::new`, `Supervisor::start`,
/// `Condition::new`, `Barrier::new`) call [`ensure`] first, so this only happens to a
/// root whose first use of the runtime has no error to return.
pub(crate) fn handle() -> &'static Handle {
    match ensure() {
        Ok(handle) => handle,
        Err(e) => panic!("{e}"),
    }
}

/// The runtime of this process, built on first use; an error names the limit that
/// refused its threads or descriptors, and the next call tries again.
///
/// A start deferred with [`defer_start`] runs once, right after the build, before any
/// caller (but the deferred start itself) gets the runtime.
pub(crate) fn ensure() -> Result<&'static Handle, Error> {
    if let Some(rt) = RT.get()
        && (!DEFERRED.load(Ordering::Acquire) || IN_DEFERRED.with(Cell::get))
    {
        return Ok(rt.handle());
    }
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let handle = match RT.get() {
        Some(rt) => rt.handle(),
        None => {
            let rt = build()?;
            RT.get_or_init(|| rt).handle()
        }
    };
    let start = DEFERRED_START
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(start) = start {
        IN_DEFERRED.with(|d| d.set(true));
        start(handle);
        IN_DEFERRED.with(|d| d.set(false));
        DEFERRED.store(false, Ordering::Release);
    }
    Ok(handle)
}

/// What must start with the runtime, given it once it is built.
type DeferredStart = Box<dyn FnOnce(&'static Handle) + Send>;

static DEFERRED_START: Mutex<Option<DeferredStart>> = Mutex::new(None);
/// A start waits for the runtime: callers of [`ensure`] wait for it too.
static DEFERRED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread runs the deferred start, which may itself ask for the runtime.
    static IN_DEFERRED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `start` when the runtime is first needed, before anyone else uses it: a
/// child whose work never needs a runtime never pays for one (its threads, its
/// epoll, its exit with a second thread to kill).
pub(crate) fn defer_start(start: DeferredStart) {
    *DEFERRED_START.lock().unwrap_or_else(|e| e.into_inner()) = Some(start);
    DEFERRED.store(true, Ordering::Release);
}

/// Whether a start waits for the runtime to be built.
pub(crate) fn start_deferred() -> bool {
    DEFERRED.load(Ordering::Acquire)
}

/// Drops a deferred start that has not run, so a later build does not run it.
pub(crate) fn cancel_deferred_start() {
    DEFERRED_START
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    DEFERRED.store(false, Ordering::Release);
}

fn build() -> Result<Runtime, Error> {
    const WHAT: &str = "cannot build this process's multiproc runtime";
    // The affinity mask, not `available_parallelism`: that also reads the cgroup's
    // CPU quota from /proc and /sys, a dozen syscalls on every child's start.
    let cpus = rustix::thread::sched_getaffinity(None).map_or(1, |set| set.count() as usize);
    // A child serves one link and one mailbox; a second worker only costs it a
    // thread. The root serves all its children's links.
    let workers = if crate::runtime::current::is_child() {
        1
    } else {
        cpus.clamp(1, 2)
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(workers)
        .thread_name(WORKER_NAME)
        .enable_all();
    // tokio panics, rather than returning an error, when the OS refuses its first
    // worker thread; the panic's message (which the panic hook has printed) is all
    // that is left of the error.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.build())) {
        Ok(built) => built.map_err(|e| Error::spawning(WHAT, e)),
        Err(panic) => Err(Error::spawning(
            WHAT,
            thread_error(&crate::runtime::panic::panic_message(&*panic)),
        )),
    }
}

/// The OS error in a panic message that ends with `(os error N)`.
fn thread_error(message: &str) -> std::io::Error {
    message
        .rsplit_once("(os error ")
        .and_then(|(_, n)| n.trim_end_matches(')').parse().ok())
        .map_or_else(
            || std::io::Error::other(message.to_string()),
            std::io::Error::from_raw_os_error,
        )
}

/// Runs `fut` to completion on the calling thread, in the context of the process
/// runtime (so timers and sockets created by `fut` are driven by its workers).
///
/// On one of the runtime's own workers (an actor's handler that uses the blocking API)
/// the worker first hands its other tasks to a new thread, so they keep running while
/// it blocks; without that, a child's only worker would wait for itself.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    if on_worker() {
        return tokio::task::block_in_place(|| park_on(fut));
    }
    park_on(fut)
}

const WORKER_NAME: &str = "multiproc-rt";

/// Whether the calling thread is one of the process runtime's workers.
pub(crate) fn on_worker() -> bool {
    thread::current().name() == Some(WORKER_NAME)
}

/// Adaptive spinning: how long a thread polls for a result before it sleeps.
///
/// Waking a thread that sleeps on the other CPU costs 15–20 µs on these VMs, more than
/// a whole round trip to a child takes when nobody sleeps. So a thread that waits for a
/// result first polls for it for a while. How long adapts, per thread, to how long its
/// recent waits took: twice their running average, up to [`SPIN_MAX`],
/// and nothing once the average is well past that (joins, timeouts, idle links). With
/// one CPU there is no spinning at all: the other end cannot run while we spin.
pub(crate) mod spin {
    use std::cell::Cell;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// The most a thread spins before it sleeps, in microseconds.
    const SPIN_MAX: u64 = 60;

    thread_local! {
        /// Running average of this thread's recent waits, in microseconds.
        static AVERAGE: Cell<u64> = const { Cell::new(SPIN_MAX / 2) };
    }

    /// Whether this process may run on more than one CPU (spinning helps only then).
    pub(crate) fn multi_cpu() -> bool {
        enabled()
    }

    fn enabled() -> bool {
        static MULTI_CPU: OnceLock<bool> = OnceLock::new();
        *MULTI_CPU.get_or_init(|| {
            rustix::thread::sched_getaffinity(None).is_ok_and(|set| set.count() > 1)
        })
    }

    fn budget(floor: u64) -> Duration {
        let average = AVERAGE.with(Cell::get);
        if !enabled() || average > 2 * SPIN_MAX {
            return Duration::ZERO;
        }
        Duration::from_micros((2 * average).clamp(floor.min(SPIN_MAX), SPIN_MAX))
    }

    /// Records how long a wait took, start to result.
    pub(crate) fn record(waited: Duration) {
        let us = u64::try_from(waited.as_micros())
            .unwrap_or(u64::MAX)
            .min(1_000_000);
        AVERAGE.with(|a| a.set((3 * a.get() + us) / 4));
    }

    /// Polls `ready` until it returns `Some` or this thread's budget runs out.
    pub(crate) fn wait<T>(started: Instant, ready: impl FnMut() -> Option<T>) -> Option<T> {
        wait_at_least(started, 0, ready)
    }

    /// As [`wait`], with a budget of at least `floor_us` microseconds unless this
    /// thread's waits are long: for waits whose result usually comes within a few
    /// microseconds, where a short hiccup on the other side must not cost a sleep
    /// and a wake-up (tens of microseconds here).
    pub(crate) fn wait_at_least<T>(
        started: Instant,
        floor_us: u64,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let until = started + budget(floor_us);
        while Instant::now() < until {
            for _ in 0..32 {
                std::hint::spin_loop();
            }
            if let Some(out) = ready() {
                return Some(out);
            }
        }
        None
    }
}

fn park_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    thread_local! {
        /// This thread's waker, made once: a blocking call allocates nothing.
        static WAKER: Waker = Waker::from(Arc::new(Unpark(thread::current())));
    }
    let _enter = handle().enter();
    let waker = WAKER
        .try_with(Waker::clone)
        .unwrap_or_else(|_| Waker::from(Arc::new(Unpark(thread::current()))));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
        return out;
    }
    let started = std::time::Instant::now();
    if let Some(out) = spin::wait(started, || match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }) {
        spin::record(started.elapsed());
        return out;
    }
    loop {
        thread::park();
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            spin::record(started.elapsed());
            return out;
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

const SPAWNER_NAME: &str = "multiproc-spawner";

/// Whether the calling thread is the spawner thread.
pub(crate) fn on_spawner_thread() -> bool {
    thread::current().name() == Some(SPAWNER_NAME)
}

/// Runs `job` on the spawner thread and waits for its result.
///
/// # Errors
///
/// [`Error::Exhausted`] (or [`Error::Os`]) when the spawner thread cannot be
/// started; the next call tries again.
pub(crate) async fn on_spawner<R: Send + 'static>(
    job: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Error> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done_tx.send(job());
    });
    spawner()?
        .send(job)
        .expect("the spawner thread never exits while the process runs");
    Ok(done_rx
        .await
        .expect("the spawner thread runs every job it receives"))
}

/// The spawner thread's queue, the thread started on first use.
fn spawner() -> Result<mpsc::Sender<Job>, Error> {
    static SPAWNER: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);
    let mut spawner = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = &*spawner {
        return Ok(tx.clone());
    }
    let handle = ensure()?;
    let (tx, rx) = mpsc::channel::<Job>();
    thread::Builder::new()
        .name(SPAWNER_NAME.into())
        .spawn(move || {
            let _enter = handle.enter();
            // Lives as long as the process: the sender is in a static.
            for job in rx {
                job();
            }
        })
        .map_err(|e| Error::spawning("cannot start the multiproc spawner thread", e))?;
    *spawner = Some(tx.clone());
    Ok(tx)
}

/// Runs `fut` on the process runtime and waits for it from any executor, so timers
/// and sockets inside never depend on the caller's runtime.
pub(crate) async fn run<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match handle().spawn(fut).await {
        Ok(out) => out,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
