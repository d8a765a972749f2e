//! Exits without the forkserver: its children are reaped by the kernel, and their
//! parents read how they ended through their pidfds.
//!
//! A relayed exit costs two wake-ups on the join's path: the forkserver's (to reap the
//! child and write the status) and the parent's relay task's (to hand it to the
//! child's reaper). With `SIGCHLD` ignored in the forkserver, the kernel reaps its
//! children as they end, and since Linux 6.15 keeps each one's status for its pidfd
//! (`PIDFD_GET_INFO` with `PIDFD_INFO_EXIT`): the parent, woken by the pidfd (readable
//! at the exit), reads the status itself, and the forkserver is not woken at all.
//! Where the kernel cannot say (older kernels), the forkserver relays, as before.
#![allow(unsafe_code)]

use std::os::fd::AsFd;

use multiproc_core::WaitStatus;

use super::exit_status_by_pidfd;

/// Whether this kernel reaps a child of a process that ignores `SIGCHLD` and still
/// tells its exit status through the child's pidfd. Asked of one child that ends at
/// once with a status of its own, under the disposition the forkserver will use;
/// `SIGCHLD` is ignored from here on if it does, and left at its default if not.
/// Runs in the forkserver before its first fork, while it has no other thread and no
/// other child.
pub(super) fn probe() -> bool {
    /// A status no child of the forkserver ends with by chance before anyone asks it.
    const PROBE_STATUS: i32 = 42;
    // SAFETY: the forkserver has one thread; the disposition is set back below when
    // the kernel cannot tell.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
    }
    let supported = (|| {
        let (hold, release) = rustix::pipe::pipe().ok()?;
        // SAFETY: one thread, so the child gets a consistent copy of every lock; it
        // only reads a pipe and `_exit`s.
        let pid = match unsafe { libc::fork() } {
            0 => {
                drop(release);
                // Held until the forkserver has its pidfd, so it cannot be reaped and
                // its pid reused before that.
                let _ = rustix::io::read(&hold, &mut [0u8; 1]);
                // SAFETY: ends this copy at once, without the forkserver's exit path.
                unsafe { libc::_exit(PROBE_STATUS) }
            }
            -1 => return None,
            pid => pid,
        };
        drop(hold);
        let pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        drop(release);
        let pidfd = pidfd?;
        let mut set = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        loop {
            match rustix::event::poll(&mut set, None) {
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return None,
                Ok(_) => break,
            }
        }
        // Readable means ended; the status may lag the wake-up by the reap's few
        // instructions on some kernels, so it is asked for a while before it counts
        // as unknown.
        (0..1000).find_map(|_| {
            let got = exit_status_by_pidfd(pidfd.as_fd());
            if got.is_none() {
                std::thread::yield_now();
            }
            got
        })
    })() == Some(WaitStatus::Exited(PROBE_STATUS));
    if !supported {
        // SAFETY: as above.
        unsafe {
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        }
    }
    supported
}

/// In a forked child, before anything else runs: its own children are its to reap
/// (tokio's child reaping, a user's `waitpid`), so `SIGCHLD` goes back to its default.
pub(super) fn restore_sigchld() {
    // SAFETY: the child still has one thread; setting a disposition to its default
    // is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
}
