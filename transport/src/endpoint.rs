//! The state behind both connection types: the file descriptor, buffers and readiness.
//!
//! Every operation first tries the non-blocking syscall. Only when it would block does
//! the blocking side spin briefly and then sleep in `poll(2)`, and the async side wait
//! on tokio's readiness for the fd (registered with the current runtime on first use).

use std::future::poll_fn;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::FileType;
use rustix::io::Errno;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::frame::{DEFAULT_MAX_FRAME_LEN, FrameDecoder};
use crate::{Error, Result};

mod write;

/// How long a blocking operation retries before sleeping in `poll(2)`. Waking a thread
/// blocked on another CPU costs 15–20 µs on small VMs; a peer that answers within this
/// window is caught by spinning, which brings a round trip to a few microseconds.
const SPIN: Duration = Duration::from_micros(50);

/// `spin_loop` hints between two retries of the syscall. Each hint is tens of
/// nanoseconds; retrying after 4 rather than 32 took a ping-pong of small frames
/// between two spinning processes from 4.8 to 3.7 µs.
const SPIN_BATCH: u32 = 4;

/// The file descriptor, and whether it is registered with a tokio runtime.
enum Fd {
    /// Not registered: blocking use only so far.
    Plain(OwnedFd),
    /// Registered with the reactor of the runtime `runtime`.
    Registered {
        fd: AsyncFd<OwnedFd>,
        runtime: tokio::runtime::Id,
    },
    /// Closed by `close()`.
    Closed,
}

impl Fd {
    fn borrow(&self) -> Result<BorrowedFd<'_>> {
        match self {
            Fd::Plain(fd) => Ok(fd.as_fd()),
            Fd::Registered { fd, .. } => Ok(fd.get_ref().as_fd()),
            Fd::Closed => Err(Error::Closed),
        }
    }
}

/// Which syscalls the fd takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A stream socket: `send` with `MSG_NOSIGNAL`.
    Socket,
    /// One end of a pipe: `write`.
    Pipe,
}

/// One end of a link: the fd, the decoder of incoming frames and the outgoing buffer.
///
/// # Invariants
///
/// - `wbuf[wpos..]` is output not yet written; it always ends on a frame boundary, so a
///   cancelled async send never leaves half a frame behind a later one.
/// - `eof` is set once a read returned 0: frames already buffered still come out.
pub(crate) struct Endpoint {
    fd: Fd,
    kind: Kind,
    readable: bool,
    writable: bool,
    decoder: FrameDecoder,
    eof: bool,
    wbuf: Vec<u8>,
    wpos: usize,
}

impl Endpoint {
    /// Wraps an fd of any origin: checks it is a socket or a pipe and makes it
    /// non-blocking.
    pub(crate) fn new(fd: OwnedFd, readable: bool, writable: bool) -> Result<Self> {
        if !readable && !writable {
            return Err(Error::NoDirection);
        }
        let kind = match FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) {
            FileType::Socket => Kind::Socket,
            FileType::Fifo => Kind::Pipe,
            _ => return Err(Error::NotSocketOrPipe),
        };
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(Self::with_kind(fd, kind, readable, writable))
    }

    /// Wraps an fd known to be non-blocking and of kind `kind`.
    pub(crate) fn with_kind(fd: OwnedFd, kind: Kind, readable: bool, writable: bool) -> Self {
        Endpoint {
            fd: Fd::Plain(fd),
            kind,
            readable,
            writable,
            decoder: FrameDecoder::new(DEFAULT_MAX_FRAME_LEN),
            eof: false,
            wbuf: Vec::new(),
            wpos: 0,
        }
    }

    pub(crate) fn as_fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd.borrow()
    }

    pub(crate) fn into_owned_fd(self) -> Result<OwnedFd> {
        match self.fd {
            Fd::Plain(fd) => Ok(fd),
            Fd::Registered { fd, .. } => Ok(fd.into_inner()),
            Fd::Closed => Err(Error::Closed),
        }
    }

    pub(crate) fn close(&mut self) {
        self.fd = Fd::Closed;
        self.decoder = FrameDecoder::new(self.decoder.max_frame_len());
        self.wbuf = Vec::new();
        self.wpos = 0;
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.fd, Fd::Closed)
    }

    pub(crate) fn is_readable(&self) -> bool {
        self.readable
    }

    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    pub(crate) fn max_frame_len(&self) -> usize {
        self.decoder.max_frame_len()
    }

    pub(crate) fn set_max_frame_len(&mut self, max: usize) {
        self.decoder.set_max_frame_len(max);
    }

    /// The fd to duplicate for a child, refused when bytes would be left behind.
    pub(crate) fn transfer_fd(&self) -> Result<BorrowedFd<'_>, &'static str> {
        if self.is_closed() {
            return Err("a closed Connection cannot be passed to a child process");
        }
        if self.decoder.buffered() > 0 || self.wpos < self.wbuf.len() {
            return Err("a Connection with buffered messages cannot be passed to a child process");
        }
        self.fd
            .borrow()
            .map_err(|_| "a closed Connection cannot be passed to a child process")
    }

    pub(crate) fn check_read(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else if !self.readable {
            Err(Error::WriteOnly)
        } else {
            Ok(())
        }
    }

    pub(crate) fn check_write(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else if !self.writable {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    // ---- reading ----

    /// Reads whatever is available without blocking. Returns whether a receive would
    /// now complete without blocking: a frame or a frame error is ready, or the peer is
    /// gone.
    pub(crate) fn fill(&mut self) -> Result<bool> {
        loop {
            if self.eof || self.decoder.has_next() {
                return Ok(true);
            }
            let fd = self.fd.borrow()?;
            match rustix::io::read(fd, self.decoder.read_buf()) {
                Ok(0) => self.eof = true,
                Ok(n) => self.decoder.commit(n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(false),
                // The peer closed with data of ours unread: it is gone all the same.
                Err(Errno::CONNRESET) => self.eof = true,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Takes the message that [`fill`](Self::fill) found ready.
    pub(crate) fn take(&mut self) -> Result<Range<usize>> {
        if let Some(range) = self.decoder.pop()? {
            return Ok(range);
        }
        self.decoder.finish()?;
        Err(Error::Eof)
    }

    /// A frame returned by [`take`](Self::take).
    pub(crate) fn frame(&self, range: Range<usize>) -> &[u8] {
        self.decoder.frame(range)
    }

    pub(crate) fn recv_blocking(&mut self) -> Result<Range<usize>> {
        self.check_read()?;
        self.block_on_fd(PollFlags::IN, None, Self::fill)?;
        self.take()
    }

    pub(crate) async fn recv_async(&mut self) -> Result<Range<usize>> {
        self.check_read()?;
        poll_fn(|cx| self.poll_ready(cx)).await?;
        self.take()
    }

    pub(crate) fn poll_blocking(&mut self, timeout: Option<Duration>) -> Result<bool> {
        self.check_read()?;
        match timeout {
            Some(t) if t.is_zero() => self.fill(),
            _ => {
                let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
                self.block_on_fd(PollFlags::IN, deadline, Self::fill)
            }
        }
    }

    pub(crate) async fn poll_async(&mut self, timeout: Option<Duration>) -> Result<bool> {
        self.check_read()?;
        if self.fill()? {
            return Ok(true);
        }
        match timeout {
            Some(t) if t.is_zero() => Ok(false),
            None => poll_fn(|cx| self.poll_ready(cx)).await.map(|()| true),
            Some(t) => match tokio::time::timeout(t, poll_fn(|cx| self.poll_ready(cx))).await {
                Ok(ready) => ready.map(|()| true),
                Err(_elapsed) => Ok(false),
            },
        }
    }

    /// Resolves when [`fill`](Self::fill) reports ready, registering the waker otherwise.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            if self.fill()? {
                return Poll::Ready(Ok(()));
            }
            match self.registered()?.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                // Stale readiness: the read above saw EAGAIN. Clearing before the retry
                // cannot lose a wakeup, because the loop reads again afterwards.
                Poll::Ready(Ok(mut guard)) => guard.clear_ready(),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    // ---- waiting ----

    /// Runs `attempt` until it reports done: first directly, then spinning for up to
    /// [`SPIN`], then sleeping in `poll(2)` on `events`. Returns `Ok(false)` once
    /// `deadline` has passed.
    fn block_on_fd(
        &mut self,
        events: PollFlags,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&mut Self) -> Result<bool>,
    ) -> Result<bool> {
        if attempt(self)? {
            return Ok(true);
        }
        let now = Instant::now();
        let mut spin_end = now + SPIN;
        if let Some(deadline) = deadline {
            spin_end = spin_end.min(deadline);
        }
        let mut round = 0u32;
        while Instant::now() < spin_end {
            for _ in 0..SPIN_BATCH {
                std::hint::spin_loop();
            }
            round += 1;
            if round.is_multiple_of(32) {
                // On a machine with few CPUs the peer may be waiting for ours.
                std::thread::yield_now();
            }
            if attempt(self)? {
                return Ok(true);
            }
        }
        loop {
            let timeout = match deadline {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    Some(left)
                }
            };
            wait_fd(self.fd.borrow()?, events, timeout)?;
            if attempt(self)? {
                return Ok(true);
            }
        }
    }

    /// The fd's registration with the current tokio runtime, made on first async use
    /// (and made again if the connection moved to another runtime).
    fn registered(&mut self) -> Result<&AsyncFd<OwnedFd>> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let current = handle.id();
        let is_current = matches!(&self.fd, Fd::Registered { runtime, .. } if *runtime == current);
        if !is_current {
            let fd = match std::mem::replace(&mut self.fd, Fd::Closed) {
                Fd::Plain(fd) => fd,
                Fd::Registered { fd, .. } => fd.into_inner(),
                Fd::Closed => return Err(Error::Closed),
            };
            let interest = match (self.readable, self.writable) {
                (true, true) => Interest::READABLE | Interest::WRITABLE,
                (true, false) => Interest::READABLE,
                _ => Interest::WRITABLE,
            };
            #[allow(
                deprecated,
                reason = "`AsyncFd::register` is the replacement but is `unsafe`, which this \
                          crate denies; for an `OwnedFd` its safety condition (the fd stays \
                          open and the same while registered) always holds \
                          (https://github.com/tokio-rs/tokio/pull/8587)"
            )]
            let registration = AsyncFd::try_with_interest(fd, interest);
            match registration {
                Ok(fd) => {
                    self.fd = Fd::Registered {
                        fd,
                        runtime: current,
                    }
                }
                Err(e) => {
                    let (fd, cause) = e.into_parts();
                    self.fd = Fd::Plain(fd);
                    return Err(Error::Io(cause));
                }
            }
        }
        match &self.fd {
            Fd::Registered { fd, .. } => Ok(fd),
            _ => Err(Error::Closed),
        }
    }

    /// Writes the fields shared by both connection types' `Debug` output.
    pub(crate) fn debug(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct(name);
        match self.fd.borrow() {
            Ok(fd) => d.field("fd", &fd.as_raw_fd()),
            Err(_) => d.field("fd", &"closed"),
        };
        d.field("kind", &self.kind)
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field(
                "async_registered",
                &matches!(self.fd, Fd::Registered { .. }),
            )
            .field("eof", &self.eof)
            .field("buffered_in", &self.decoder.buffered())
            .field("pending_out", &(self.wbuf.len() - self.wpos))
            .field("max_frame_len", &self.max_frame_len())
            .finish()
    }
}
/// Sleeps until `fd` has one of `events` (or an error or hangup), or `timeout` passes.
/// An interrupted sleep returns early; callers retry.
pub(crate) fn wait_fd(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
) -> Result<()> {
    let mut fds = [PollFd::new(&fd, events)];
    poll_fds(&mut fds, timeout)
}

/// `poll(2)` over `fds`, treating `EINTR` as an early return.
pub(crate) fn poll_fds(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> Result<()> {
    // A timeout too large for a timespec is as good as none.
    let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
    match rustix::event::poll(fds, timeout.as_ref()) {
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
