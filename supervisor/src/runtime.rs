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

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, OnceLock, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use tokio::runtime::{Handle, Runtime};

/// The runtime of this process.
pub(crate) fn handle() -> &'static Handle {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // The affinity mask, not `available_parallelism`: that also reads the cgroup's
        // CPU quota from /proc and /sys, a dozen syscalls on every child's start.
        let cpus = rustix::thread::sched_getaffinity(None).map_or(1, |set| set.count() as usize);
        // A child serves one link and one mailbox; a second worker only costs it a
        // thread. The root serves all its children's links.
        let workers = if crate::bootstrap::is_child() {
            1
        } else {
            cpus.clamp(1, 2)
        };
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(WORKER_NAME)
            .enable_all()
            .build()
            .expect("cannot build the multiproc runtime: the OS refused threads or an epoll fd")
    })
    .handle()
}

/// Runs `fut` to completion on the calling thread, in the context of the process
/// runtime (so timers and sockets created by `fut` are driven by its workers).
///
/// On one of the runtime's own workers (an actor's handler that uses the blocking API)
/// the worker first hands its other tasks to a new thread, so they keep running while
/// it blocks; without that, a child's only worker would wait for itself.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    if thread::current().name() == Some(WORKER_NAME) {
        return tokio::task::block_in_place(|| park_on(fut));
    }
    park_on(fut)
}

const WORKER_NAME: &str = "multiproc-rt";

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
    let _enter = handle().enter();
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on the spawner thread and waits for its result.
pub(crate) async fn on_spawner<R: Send + 'static>(job: impl FnOnce() -> R + Send + 'static) -> R {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("multiproc-spawner".into())
            .spawn(move || {
                let _enter = handle().enter();
                // Lives as long as the process: the sender is in a static.
                for job in rx {
                    job();
                }
            })
            .expect("cannot start the multiproc spawner thread");
        tx
    });
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done_tx.send(job());
    });
    tx.send(job)
        .expect("the spawner thread never exits while the process runs");
    done_rx
        .await
        .expect("the spawner thread runs every job it receives")
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
