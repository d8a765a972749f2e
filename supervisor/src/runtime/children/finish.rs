//! What becomes of this process's children when it exits (Python's exit handler), or
//! when its tree is stopped.

use std::panic::catch_unwind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use multiproc_core::EntryKind;

use super::{Child, children};
use crate::runtime::{self, exit};

/// How long a child asked to stop gets before it is killed, when stopping a tree.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Stops every child of this process: asks each (and, through it, its own children)
/// to stop, waits up to `timeout`, then kills those still running. Returns once all
/// have exited.
///
/// The shutdown the root performs on SIGINT or SIGTERM, for programs (and test
/// harnesses) that want it without a signal: a failed test's children, say, which
/// would otherwise be joined at exit.
///
/// ```
/// # multiproc_supervisor::block_on(async {
/// multiproc_supervisor::stop_children(std::time::Duration::from_secs(1)).await;
/// assert!(multiproc_supervisor::active_children().is_empty());
/// # });
/// ```
pub async fn stop_children(timeout: Duration) {
    let all: Vec<Arc<Child>> = children().clone();
    runtime::run(async move {
        for c in &all {
            c.request_stop();
        }
        for c in &all {
            c.stop(timeout).await;
        }
    })
    .await;
}

/// Children of this process that are not in its table: those it placed on other
/// nodes. Declared here, filled by the layer that places them, so that the exit
/// handler finishes them with the local ones without knowing of nodes.
pub(crate) struct FinishElsewhere {
    /// Whether any such child is still running.
    pub(crate) running: fn() -> bool,
    /// Finishes them as [`finish_children`] finishes local ones.
    pub(crate) finish: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

#[linkme::distributed_slice]
pub(crate) static FINISH_ELSEWHERE: [FinishElsewhere];

fn running_elsewhere() -> bool {
    FINISH_ELSEWHERE.iter().any(|f| (f.running)())
}

/// Set once this process has begun to wind its children down for exit: supervisors
/// then let their children go instead of restarting them.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Whether this process is winding its children down for exit.
pub(crate) fn is_exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}

/// What every process does before it exits, as Python's exit handler: daemon children
/// are terminated (SIGTERM, then SIGKILL after [`DEFAULT_SHUTDOWN_TIMEOUT`]), the others
/// are joined, except supervised children and actors, which serve until they are
/// stopped and so are stopped (joining them would wait forever).
pub(crate) async fn finish_children() {
    EXITING.store(true, Ordering::SeqCst);
    let all: Vec<Arc<Child>> = children().clone();
    let stops = |c: &Child| !c.daemon && (c.supervised || c.kind == EntryKind::Actor);
    // Every signal and request goes out before the first wait, so the children wind
    // down together and the exit takes the slowest one's time, not the sum. A daemon
    // is not asked: it need not look at `wait_for_stop`, and Python does not ask.
    for c in &all {
        if c.daemon {
            let _ = c.signal(rustix::process::Signal::TERM);
        } else if stops(c) {
            c.request_stop();
        }
    }
    let elsewhere: Vec<_> = FINISH_ELSEWHERE
        .iter()
        .map(|f| runtime::handle().spawn((f.finish)()))
        .collect();
    for c in &all {
        if c.daemon || stops(c) {
            c.kill_after(DEFAULT_SHUTDOWN_TIMEOUT).await;
        } else {
            c.wait().await;
        }
    }
    for f in elsewhere {
        let _ = f.await;
    }
}
/// Joins non-daemon children and terminates daemon ones when the process exits normally
/// (returning from `main` or `std::process::exit`), as Python's exit handler does.
pub(crate) fn register_exit_handler() {
    static ONCE: Once = Once::new();
    extern "C" fn on_exit() {
        if exit::EXITING.swap(true, Ordering::SeqCst) {
            return;
        }
        exit::take_exit_lock();
        if children().is_empty() && !running_elsewhere() {
            return;
        }
        // The main thread's thread-locals (tokio's context among them) are gone by
        // now, so wait on a plain channel while the runtime's workers do the work.
        // Never unwind into libc.
        let _ = catch_unwind(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            runtime::handle().spawn(async move {
                finish_children().await;
                let _ = tx.send(());
            });
            let _ = rx.recv();
        });
    }
    // `on_exit` never unwinds (it catches panics).
    ONCE.call_once(|| exit::at_exit(on_exit));
}
