//! The panic hook: the last panic's message and location, for the exit report of the
//! process, a failed call or a failed task; and quiet mode for pool workers.

use std::any::Any;
use std::sync::Mutex;

use crate::runtime::current;

static PANIC: Mutex<Option<(String, Option<String>)>> = Mutex::new(None);

/// The message and location of the last panic in this process, if any.
static QUIET_PANICS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a panic in this process is only recorded, not printed: a pool worker's
/// task panics are reported to the pool as the task's error, one line each in the
/// caller's hands rather than a traceback per worker on stderr.
pub(crate) fn quiet_panics(quiet: bool) {
    QUIET_PANICS.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn take_panic() -> Option<(String, Option<String>)> {
    PANIC.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

pub(crate) fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        *PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some((message, location));
        if QUIET_PANICS.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        eprintln!("Process {}:", current::me().name);
        default(info);
    }));
}
