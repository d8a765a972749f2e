//! A link's socket, in the runtime's epoll for reading only.
//!
//! tokio registers its own sockets for reading and writing, edge-triggered, and the
//! kernel signals a Unix socket writable each time its peer reads what it sent: every
//! doorbell a process rang would wake it again once its peer took it, for nothing (a
//! wake-up per message each way on a busy link). A link writes its socket without
//! waiting, and waits for room on it only when a large frame fills it, so it is
//! registered for reading, and waiting for room registers a duplicate for that wait.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A link's socket, nonblocking, in the process runtime's epoll for reading.
#[derive(Debug)]
pub(crate) struct Socket(AsyncFd<UnixStream>);

impl Socket {
    /// Registers `sock` with the runtime of the caller's context for reading.
    #[allow(unsafe_code, reason = "an AsyncFd registers a raw descriptor")]
    pub(crate) fn new(sock: UnixStream) -> io::Result<Socket> {
        sock.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns the socket, which stays open, as the same
        // descriptor, until the AsyncFd is dropped (after its deregistration).
        let fd = unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) }?;
        Ok(Socket(fd))
    }

    /// Waits until the socket is readable (or ended), without reading it; the
    /// readiness stays until a read in [`try_read`](Socket::try_read) finds nothing.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.0.readable().await.map(drop)
    }

    /// Runs the read `f` if the socket may be readable; a `WouldBlock` from it clears
    /// the readiness.
    pub(crate) fn try_read<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.0.try_io(Interest::READABLE, |_| f())
    }

    /// Waits until the socket takes bytes again: a duplicate of it, registered for
    /// writing for this wait alone (the kernel reports a writable socket at once).
    #[allow(unsafe_code, reason = "an AsyncFd registers a raw descriptor")]
    pub(crate) async fn writable(&self) -> io::Result<()> {
        let dup = self.0.get_ref().try_clone()?;
        // SAFETY: the duplicate is owned by the AsyncFd, which keeps it open until it
        // is dropped, after deregistration; nothing else uses this descriptor.
        let watch = unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }?;
        watch.writable().await.map(drop)
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.get_ref().as_fd()
    }
}
