//! SIGINT and SIGTERM at the root: stop the whole tree gracefully, then exit 0 (or
//! with `main`'s own status, if `main` returns first).
//!
//! Installed when the root starts its first child, so a program that never starts
//! one keeps the default behaviour. Children ignore SIGINT (a terminal's ^C reaches
//! the whole process group; the root owns it) and keep SIGTERM's default, which is
//! what `Process::terminate` sends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use tokio::sync::watch;

use tokio::signal::unix::{SignalKind, signal};

use crate::runtime;
use crate::runtime::children::{DEFAULT_SHUTDOWN_TIMEOUT, stop_children};
use crate::runtime::current;

/// In the root: on SIGINT or SIGTERM, stop every child (ask, wait, kill) and exit 0.
pub(crate) fn install_root_handlers() {
    static ONCE: Once = Once::new();
    if !current::me().identity.is_root() {
        return;
    }
    ONCE.call_once(|| {
        let _enter = runtime::handle().enter();
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            tracing::warn!("cannot install SIGINT/SIGTERM handlers; the tree will not stop gracefully on signals");
            return;
        };
        runtime::handle().spawn(async move {
            let which = loop {
                tokio::select! {
                    _ = int.recv() => {
                        if TAKERS.load(Ordering::Acquire) > 0 {
                            // Someone waits on a pool: the interrupt is theirs, as
                            // Python raises KeyboardInterrupt where the main thread is.
                            tracing::info!("SIGINT interrupts the pool being waited on");
                            interrupts().send_modify(|n| *n += 1);
                            continue;
                        }
                        break "SIGINT";
                    }
                    _ = term.recv() => break "SIGTERM",
                }
            };
            tracing::info!(signal = which, "stopping the process tree");
            // `wait_for_stop` returns in the root too, so `main` may finish on its own
            // (its exit handler joins the stopping children); whichever ends first
            // ends the process.
            crate::runtime::stop::request();
            stop_children(DEFAULT_SHUTDOWN_TIMEOUT).await;
            crate::runtime::exit::exit_now(0);
        });
    });
}

/// In a child: SIGINT does nothing (the root decides what ^C means for the tree).
///
/// A handler that does nothing, not `SIG_IGN`: a program the child executes gets
/// SIGINT's default back, as a handler is reset by `exec` and `SIG_IGN` is not. A plain
/// `sigaction`, not the runtime's signal driver, so a child needs no runtime for it.
#[allow(unsafe_code, reason = "sigaction, with a handler that does nothing")]
pub(crate) fn ignore_sigint() {
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: the handler is async-signal-safe (it does nothing), and the struct is
    // zeroed (an empty mask) before its fields are set.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut()) != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot ignore SIGINT");
        }
    }
}

/// Waits that SIGINT interrupts instead of stopping the tree.
static TAKERS: AtomicUsize = AtomicUsize::new(0);

fn interrupts() -> &'static watch::Sender<u64> {
    static TX: OnceLock<watch::Sender<u64>> = OnceLock::new();
    TX.get_or_init(|| watch::channel(0).0)
}

/// A claim on SIGINT for as long as it lives: while one exists, SIGINT at the root
/// completes [`Interrupts::wait`] instead of stopping the tree.
pub(crate) struct Interrupts {
    rx: watch::Receiver<u64>,
}

/// A claim on SIGINT, in the root (`None` in a child, which ignores SIGINT).
pub(crate) fn take_interrupts() -> Option<Interrupts> {
    if !current::me().identity.is_root() {
        return None;
    }
    install_root_handlers();
    TAKERS.fetch_add(1, Ordering::AcqRel);
    let mut rx = interrupts().subscribe();
    rx.mark_unchanged();
    Some(Interrupts { rx })
}

impl Interrupts {
    /// Completes on the next SIGINT.
    pub(crate) async fn wait(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        TAKERS.fetch_sub(1, Ordering::AcqRel);
    }
}
