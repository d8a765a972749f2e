//! The forkserver's spare: a child forked ahead of the next request.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;

use super::{Fork, become_child, read_request, write_frame};
use crate::runtime::exit::{EXIT_BOOTSTRAP_FAILED, EXIT_PARENT_GONE};

/// A spare's name in `ps` until its request names it.
const SPARE_NAME: &str = "spare";

/// A child forked ahead of its request, waiting for it: the next request costs the
/// forkserver a message to it instead of a fork, and the fork (a tenth of a start and
/// join, most of it copying the forkserver's page tables) happens while nobody waits.
/// The spare is the forkserver's copy from before the request, as a child forked at the
/// request would be: the forkserver's state does not change between requests.
pub(super) struct Spare {
    pid: u32,
    pidfd: OwnedFd,
    /// Our end of the socket on which the spare waits for its request.
    orders: StdUnixStream,
}

impl Spare {
    /// Readable once the spare has ended.
    pub(super) fn pidfd(&self) -> &OwnedFd {
        &self.pidfd
    }

    /// Hands the spare its request and its control socket; `Err` gives it back when
    /// it is gone.
    pub(super) fn assign(self, fork: &Fork, socket: &OwnedFd) -> Result<(u32, OwnedFd), Spare> {
        match write_frame(&self.orders, fork, &[socket.as_fd()]) {
            Ok(()) => Ok((self.pid, self.pidfd)),
            Err(_) => Err(self),
        }
    }

    /// Ends a spare that will not be used, and reaps it.
    pub(super) fn reap(self) {
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
        let _ = rustix::process::waitid(
            rustix::process::WaitId::PidFd(self.pidfd.as_fd()),
            rustix::process::WaitIdOptions::EXITED,
        );
    }
}

/// Forks a spare; `None` when the system has no room for it now (the next request
/// then forks, and says why if it cannot).
pub(super) fn prefork(
    requests: &StdUnixStream,
    events: &StdUnixStream,
    children: &[(u32, OwnedFd)],
    child_main: fn(u32) -> !,
) -> Option<Spare> {
    let (orders, theirs) = StdUnixStream::pair().ok()?;
    // SAFETY: this process has one thread (this one), so the child gets a consistent
    // copy of every lock and allocator state.
    match unsafe { libc::fork() } {
        0 => {
            // The forkserver's descriptors are not the spare's to keep: close them by
            // number, since the owners live on in the forkserver's frames.
            // SAFETY: these descriptors are open, and no one in this process uses
            // them after this point.
            unsafe {
                libc::close(requests.as_raw_fd());
                libc::close(events.as_raw_fd());
                libc::close(orders.as_raw_fd());
                for (_, pidfd) in children {
                    libc::close(pidfd.as_raw_fd());
                }
            }
            std::mem::forget(orders);
            crate::runtime::title::set(SPARE_NAME);
            // A forkserver that ends (its parent gone) closes its end: nothing to wait for.
            match read_request(&theirs) {
                Ok(Some((fork, mut fds))) => match fds.pop() {
                    Some(socket) => {
                        drop(theirs);
                        become_child(fork, socket, child_main)
                    }
                    // SAFETY: _exit ends this copy without the forkserver's exit path.
                    None => unsafe { libc::_exit(EXIT_BOOTSTRAP_FAILED) },
                },
                _ => {
                    // SAFETY: _exit ends this copy without the forkserver's exit path.
                    unsafe { libc::_exit(EXIT_PARENT_GONE) }
                }
            }
        }
        -1 => None,
        pid => {
            drop(theirs);
            let pid = pid as u32;
            let pidfd = rustix::process::Pid::from_raw(pid as i32)
                .ok_or(rustix::io::Errno::SRCH)
                .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()));
            match pidfd {
                Ok(pidfd) => Some(Spare { pid, pidfd, orders }),
                Err(_) => {
                    // A spare nobody can watch is not kept.
                    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                        let _ = rustix::process::waitpid(
                            Some(p),
                            rustix::process::WaitOptions::empty(),
                        );
                    }
                    None
                }
            }
        }
    }
}
