//! How a parent hands a process over to multiproc, and how the process knows it was:
//! the environment markers, the control socket on fd 0, the program to start again,
//! and how its exit status reads. Shared by both start methods and the bootstrap.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};

use multiproc_core::WaitStatus;

/// Set in a child's environment by its parent: "you were started by multiproc".
pub(crate) const ENV_BOOTSTRAP: &str = "MULTIPROC_BOOTSTRAP";
/// The parent's pid, to detect a parent that died before the child set PDEATHSIG.
pub(crate) const ENV_PARENT_PID: &str = "MULTIPROC_PARENT_PID";

/// Set in the forkserver's environment: "you are the forkserver".
pub(crate) const ENV_FORKSERVER: &str = "MULTIPROC_FORKSERVER";

/// Set in a child's environment by a parent that runs under a test harness: "become
/// the child before `main`". The harness's `main` is not the user's and never calls
/// `init()`; it would run every test again in every child instead.
pub(crate) const ENV_EARLY: &str = "MULTIPROC_EARLY";

/// Whether the children of this process must become themselves before `main`: set by
/// `#[multiproc::test]`, and in every child started that way, so grandchildren too.
static EARLY_CHILDREN: AtomicBool = AtomicBool::new(false);

/// From now on, children of this process become themselves before `main`.
pub(crate) fn start_children_early() {
    EARLY_CHILDREN.store(true, Ordering::Relaxed);
}

/// Marks `cmd`, a child or forkserver about to be executed, for an early start if
/// this process starts its children so.
pub(crate) fn mark_early(cmd: &mut std::process::Command) {
    if EARLY_CHILDREN.load(Ordering::Relaxed) {
        cmd.env(ENV_EARLY, "1");
    }
}

/// Moves the control socket off fd 0 and puts `/dev/null` there, as Python does for
/// its children's stdin.
pub(crate) fn take_control_socket() -> std::io::Result<OwnedFd> {
    let ctl = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?;
    let devnull = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&devnull)?;
    Ok(ctl)
}

/// The executable to start again: `/proc/self/exe`, or `current_exe()` without /proc.
pub(crate) fn executable() -> std::io::Result<std::path::PathBuf> {
    if std::path::Path::new("/proc/self/exe").exists() {
        Ok(std::path::PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe()
    }
}

/// Decodes a child's exit status.
pub(crate) fn wait_status(status: ExitStatus) -> WaitStatus {
    match (status.code(), status.signal()) {
        (Some(code), _) => WaitStatus::Exited(code),
        (None, Some(sig)) => WaitStatus::Signaled(sig),
        (None, None) => WaitStatus::Exited(-1),
    }
}
