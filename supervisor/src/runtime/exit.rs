//! Ending the process: the statuses a process started by multiproc exits with, and
//! one exit at a time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status of a child whose bootstrap failed (bad Hello, version or build
/// mismatch, unknown entry): the parent learns the details from the handshake.
pub const EXIT_BOOTSTRAP_FAILED: i32 = 78;
/// Exit status of a child whose parent was gone before or while it ran.
pub const EXIT_PARENT_GONE: i32 = 79;
/// Exit status of a process started by multiproc (a child or the forkserver) whose
/// `main` reached a library call that starts processes without calling `init()`: it
/// ends there rather than start the program again as a new root. Its parent reports
/// [`Error::InitNotCalled`](crate::Error::InitNotCalled).
pub const EXIT_INIT_NOT_CALLED: i32 = 77;

/// Set once the process has begun to exit; later exit paths stand aside.
pub(crate) static EXITING: AtomicBool = AtomicBool::new(false);
/// Taken, and never released, by the thread that ends the process, so two threads
/// never run `exit` at once (glibc's `exit` is not safe to race).
static EXIT_LOCK: Mutex<()> = Mutex::new(());

pub(crate) fn take_exit_lock() {
    std::mem::forget(EXIT_LOCK.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Ends the process with `code`, unless another thread is already ending it (then
/// this thread waits for the end).
pub(crate) fn exit_now(code: i32) -> ! {
    take_exit_lock();
    EXITING.store(true, Ordering::SeqCst);
    std::process::exit(code)
}

/// The library's own work for the end of a process, in the order registered.
static HOOKS: Mutex<Vec<extern "C" fn()>> = Mutex::new(Vec::new());

/// Registers work of the library's own that must run when the process ends: by
/// `atexit` when it ends through `exit`, and by [`exit_child`], which ends a child
/// without the program's `atexit` handlers. A hook must never unwind.
#[allow(unsafe_code, reason = "atexit")]
pub(crate) fn at_exit(hook: extern "C" fn()) {
    HOOKS.lock().unwrap_or_else(|e| e.into_inner()).push(hook);
    // SAFETY: `hook` is an `extern "C" fn()` that never unwinds (a requirement of
    // this function) and touches only process-global state that outlives `exit`.
    unsafe {
        libc::atexit(hook);
    }
}

/// Ends a child whose entry has finished and been reported, as Python ends its
/// children (`os._exit` after its own exit functions and a flush of the standard
/// streams): its own children are finished by then, the library's exit work
/// ([`at_exit`]) is run here, and the program's `atexit` handlers and library
/// destructors belong to the root, not to every copy of it. They would also cost the
/// child's exit: each page they write is a copy-on-write fault of the forked image.
#[allow(
    unsafe_code,
    reason = "fflush and _exit, to end without the exit handlers"
)]
pub(crate) fn exit_child(code: i32) -> ! {
    use std::io::Write;
    take_exit_lock();
    EXITING.store(true, Ordering::SeqCst);
    let hooks: Vec<_> = HOOKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Last registered first, as `exit` runs them.
    for hook in hooks.into_iter().rev() {
        hook();
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: fflush(NULL) flushes every C stream; _exit ends the process at once.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(code)
    }
}
