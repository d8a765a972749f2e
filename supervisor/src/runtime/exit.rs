//! Ending the process: one exit at a time, and the exit handler that joins or stops
//! this process's children as Python's does.
#![allow(unsafe_code)]

use std::panic::catch_unwind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use crate::runtime::{self, children};

/// Set once the process has begun to exit; later exit paths stand aside.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Taken, and never released, by the thread that ends the process, so two threads
/// never run `exit` at once (glibc's `exit` is not safe to race).
static EXIT_LOCK: Mutex<()> = Mutex::new(());

fn take_exit_lock() {
    std::mem::forget(EXIT_LOCK.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Ends the process with `code`, unless another thread is already ending it (then
/// this thread waits for the end).
pub(crate) fn exit_now(code: i32) -> ! {
    take_exit_lock();
    EXITING.store(true, Ordering::SeqCst);
    std::process::exit(code)
}

/// Joins non-daemon children and terminates daemon ones when the process exits normally
/// (returning from `main` or `std::process::exit`), as Python's exit handler does.
pub(crate) fn register_exit_handler() {
    static ONCE: Once = Once::new();
    extern "C" fn on_exit() {
        if EXITING.swap(true, Ordering::SeqCst) {
            return;
        }
        take_exit_lock();
        if children::children().is_empty() {
            return;
        }
        // The main thread's thread-locals (tokio's context among them) are gone by
        // now, so wait on a plain channel while the runtime's workers do the work.
        // Never unwind into libc.
        let _ = catch_unwind(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            runtime::handle().spawn(async move {
                children::finish_children().await;
                let _ = tx.send(());
            });
            let _ = rx.recv();
        });
    }
    ONCE.call_once(|| {
        // SAFETY: `on_exit` is an `extern "C" fn()` that never unwinds (it catches
        // panics) and only touches process-global state that outlives `exit`.
        unsafe {
            libc::atexit(on_exit);
        }
    });
}
