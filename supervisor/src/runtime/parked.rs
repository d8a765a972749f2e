//! Tasks that start on the calling thread and go to the runtime's workers only when
//! first woken.
//!
//! `tokio::spawn` from a thread outside the runtime wakes a worker to poll the new
//! task, even when all that poll does is register for an event that comes much later.
//! A blocking start spawns such a task for every child (the one that serves the
//! child's link, which first waits for news), so on an idle machine that worker's
//! wake-up (an interrupt to a halted CPU) is a measurable part of a short child's
//! start and join. A parked task is polled once right here instead, and handed to the
//! runtime by the first wake-up of the waker that poll registered: by then there is
//! work for the worker, and the wake-up that brings the news is the one that runs it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

enum State {
    /// The first poll runs on the starting thread; `woken` if its waker was woken
    /// meanwhile (the task is then spawned at once).
    Polling { woken: bool },
    /// Waiting for its first wake-up.
    Parked(Task),
    /// Handed to the runtime, or finished in its first poll.
    Gone,
}

struct Parked {
    state: Mutex<State>,
    handle: Handle,
}

impl Parked {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = self.state();
        match std::mem::replace(&mut *state, State::Gone) {
            State::Polling { .. } => *state = State::Polling { woken: true },
            State::Parked(task) => {
                drop(state);
                // From then on the task's own waker is tokio's: this one is dropped
                // by the resources that held it as they are polled anew.
                self.handle.spawn(task);
            }
            State::Gone => {}
        }
    }
}

/// Polls `task` once on this thread (inside the process runtime's context), and
/// spawns it on the runtime when it is first woken. A task that completes in that
/// poll is never spawned. The receiver completes when the task has finished, or has
/// been dropped unfinished (with the runtime).
///
/// While parked, the task is owned by the wakers its poll left with the resources it
/// waits on; they must be ones that wake it (or are dropped) eventually, as a link's
/// socket does at the link's end.
pub(crate) fn spawn_parked(
    task: impl Future<Output = ()> + Send + 'static,
) -> oneshot::Receiver<()> {
    let (done_tx, done) = oneshot::channel();
    let handle = crate::runtime::handle();
    let _in_runtime = handle.enter();
    let parked = Arc::new(Parked {
        state: Mutex::new(State::Polling { woken: false }),
        handle: handle.clone(),
    });
    let mut task: Task = Box::pin(async move {
        task.await;
        let _ = done_tx.send(());
    });
    let waker = Waker::from(Arc::clone(&parked));
    if task.as_mut().poll(&mut Context::from_waker(&waker)) == Poll::Ready(()) {
        *parked.state() = State::Gone;
        return done;
    }
    let mut state = parked.state();
    if matches!(*state, State::Polling { woken: true }) {
        *state = State::Gone;
        drop(state);
        parked.handle.spawn(task);
    } else {
        *state = State::Parked(task);
    }
    done
}
