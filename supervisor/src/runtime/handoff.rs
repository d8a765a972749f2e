//! How a parent hands a process over to multiproc, and how the process knows it was:
//! the environment markers, the control socket on fd 0, the program to start again,
//! and how its exit status reads. Shared by both start methods and the bootstrap.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use multiproc_core::WaitStatus;

/// Set in a child's environment by its parent: "you were started by multiproc".
pub(crate) const ENV_BOOTSTRAP: &str = "MULTIPROC_BOOTSTRAP";
/// The parent's pid, to detect a parent that died before the child set PDEATHSIG.
pub(crate) const ENV_PARENT_PID: &str = "MULTIPROC_PARENT_PID";

/// Set in the forkserver's environment: "you are the forkserver".
pub(crate) const ENV_FORKSERVER: &str = "MULTIPROC_FORKSERVER";

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
