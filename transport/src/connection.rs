//! [`Connection`] and [`BlockingConnection`]: message links like Python's
//! `multiprocessing.connection.Connection`, in an async and a blocking flavour.

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::endpoint::Endpoint;
use crate::{Error, Result};

/// An async message link to another process, like Python's
/// `multiprocessing.connection.Connection`.
///
/// Messages are [frames](crate::frame) in CPython's format. [`send`](Self::send) and
/// [`recv`](Self::recv) carry any serde type, encoded with [`multiproc_core::codec`];
/// [`send_bytes`](Self::send_bytes) and [`recv_bytes`](Self::recv_bytes) carry raw bytes.
/// The fd is registered with the current tokio runtime on the first async operation,
/// so a `Connection` can be made anywhere and moved into a runtime later.
/// [`BlockingConnection`] is the same link for threads without a runtime; `From`
/// converts between the two without a syscall.
///
/// # Examples
///
/// ```
/// use multiproc_transport::{Error, pipe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let (mut a, mut b) = pipe(true)?;
/// a.send(&("ping", 1)).await?;
/// let (word, n): (String, i32) = b.recv().await?;
/// assert_eq!((word.as_str(), n), ("ping", 1));
///
/// a.close();
/// assert!(matches!(b.recv::<i32>().await, Err(Error::Eof)));
/// # Ok(())
/// # }
/// ```
///
/// # Cancel safety
///
/// [`recv`](Self::recv), [`recv_bytes`](Self::recv_bytes),
/// [`recv_bytes_into`](Self::recv_bytes_into) and [`poll`](Self::poll) are cancel safe:
/// bytes already read stay buffered and no message is lost. If a
/// [`send`](Self::send) or [`send_bytes`](Self::send_bytes) future is dropped before it
/// completes, either none of its message was written, or the rest of it is written at
/// the start of the next send: the peer never sees a torn frame.
///
/// # Panics
///
/// The async methods panic if the runtime has no I/O driver, and
/// [`poll`](Self::poll) with a non-zero timeout if it has no time driver.
pub struct Connection {
    pub(crate) ep: Endpoint,
}

/// A blocking message link to another process: the [`Connection`] API for threads
/// without a tokio runtime.
///
/// A blocking operation that would wait first retries for a few tens of microseconds,
/// then sleeps in `poll(2)`; a peer that answers quickly is caught without the cost of
/// a wakeup.
///
/// # Examples
///
/// ```
/// use multiproc_transport::blocking_pipe;
///
/// let (mut a, mut b) = blocking_pipe(true)?;
/// let echo = std::thread::spawn(move || -> Result<(), multiproc_transport::Error> {
///     let n: u64 = b.recv()?;
///     b.send(&(n + 1))
/// });
/// a.send(&41u64)?;
/// assert_eq!(a.recv::<u64>()?, 42);
/// echo.join().expect("echo thread panicked")?;
/// # Ok::<(), multiproc_transport::Error>(())
/// ```
pub struct BlockingConnection {
    pub(crate) ep: Endpoint,
}

/// The methods that only read or set the shared state, the same in both views.
macro_rules! state_methods {
    () => {
        /// Closes this end (idempotent). The peer sees the end of the stream once every
        /// copy of the fd is closed; output not yet written is dropped.
        pub fn close(&mut self) {
            self.ep.close();
        }

        /// Whether [`close`](Self::close) was called.
        pub fn is_closed(&self) -> bool {
            self.ep.is_closed()
        }

        /// Whether this end can receive (false for the write end of a one-way pipe).
        pub fn is_readable(&self) -> bool {
            self.ep.is_readable()
        }

        /// Whether this end can send (false for the read end of a one-way pipe).
        pub fn is_writable(&self) -> bool {
            self.ep.is_writable()
        }

        /// The maximum frame length, for both directions.
        pub fn max_frame_len(&self) -> usize {
            self.ep.max_frame_len()
        }

        /// Sets the maximum frame length, for both directions (default
        /// [`DEFAULT_MAX_FRAME_LEN`](crate::DEFAULT_MAX_FRAME_LEN): no limit but
        /// memory, as CPython). A longer outgoing message is refused with
        /// [`FrameError::TooLarge`](crate::FrameError::TooLarge) and nothing written; a
        /// longer incoming one is reported with the same error as soon as its header
        /// arrives, and its bytes are then dropped unread as they come, so the messages
        /// after it still arrive. It applies from the next frame received, so setting
        /// it before the first `recv` covers everything the peer sends.
        pub fn set_max_frame_len(&mut self, max: usize) {
            self.ep.set_max_frame_len(max);
        }

        /// This connection with a maximum frame length of `max`; see
        /// [`set_max_frame_len`](Self::set_max_frame_len).
        #[must_use]
        pub fn with_max_frame_len(mut self, max: usize) -> Self {
            self.set_max_frame_len(max);
            self
        }
    };
}

impl Connection {
    /// Wraps a connected stream socket or one end of a pipe, as received from a parent
    /// process. The fd is made non-blocking.
    ///
    /// # Errors
    ///
    /// [`Error::NoDirection`] when neither `readable` nor `writable`,
    /// [`Error::NotSocketOrPipe`] for other fds, or an I/O error.
    pub fn from_owned_fd(fd: OwnedFd, readable: bool, writable: bool) -> Result<Self> {
        Endpoint::new(fd, readable, writable).map(|ep| Connection { ep })
    }

    /// Gives the fd back (non-blocking, deregistered from tokio). Buffered bytes are lost.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection was closed.
    pub fn into_owned_fd(self) -> Result<OwnedFd> {
        self.ep.into_owned_fd()
    }

    /// Borrows the fd.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection was closed.
    pub fn as_fd(&self) -> Result<BorrowedFd<'_>> {
        self.ep.as_fd()
    }

    /// Sends one message, `value` encoded with [`multiproc_core::codec`].
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] or [`Error::Frame`] (over the maximum frame length) with
    /// nothing written; [`Error::Eof`] if the peer is gone; [`Error::Closed`],
    /// [`Error::ReadOnly`], [`Error::NoRuntime`] or an I/O error.
    pub async fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.ep.send_async(value).await
    }

    /// Receives one message and decodes it as a `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the message is not a `T` (it is consumed; the next `recv`
    /// gets the next message); [`Error::Frame`] for an oversized frame (skipped) or a
    /// broken stream; [`Error::Eof`] when the peer is gone and no message is left;
    /// [`Error::Closed`], [`Error::WriteOnly`], [`Error::NoRuntime`] or an I/O error.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), multiproc_transport::Error> {
    /// let (mut a, mut b) = multiproc_transport::pipe(true)?;
    /// a.send("not a number").await?;
    /// a.send(&7u32).await?;
    /// assert!(matches!(b.recv::<u32>().await, Err(multiproc_transport::Error::Decode(_))));
    /// assert_eq!(b.recv::<u32>().await?, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let range = self.ep.recv_async().await?;
        multiproc_core::codec::decode(self.ep.frame(range)).map_err(Error::Decode)
    }

    /// Sends `payload` as one message, as is.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), without [`Error::Encode`].
    pub async fn send_bytes(&mut self, payload: &[u8]) -> Result<()> {
        self.ep.send_bytes_async(payload).await
    }

    /// Receives one message as bytes.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), without [`Error::Decode`].
    pub async fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        let range = self.ep.recv_async().await?;
        Ok(self.ep.frame(range).to_vec())
    }

    /// Receives one message into `buf` (cleared first), reusing its allocation.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Self::recv_bytes); `buf` is then empty.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), multiproc_transport::Error> {
    /// let (mut a, mut b) = multiproc_transport::pipe(false)?;
    /// let mut buf = Vec::with_capacity(64);
    /// b.send_bytes(b"hello").await?;
    /// a.recv_bytes_into(&mut buf).await?;
    /// assert_eq!(buf, b"hello");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_bytes_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        let range = self.ep.recv_async().await?;
        buf.extend_from_slice(self.ep.frame(range));
        Ok(())
    }

    /// Waits until a message (or the end of the stream) can be received without
    /// blocking; returns `false` if `timeout` passed first. `Some(Duration::ZERO)`
    /// checks and returns at once; `None` waits forever.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::WriteOnly`], [`Error::NoRuntime`] or an I/O error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), multiproc_transport::Error> {
    /// let (mut a, mut b) = multiproc_transport::pipe(true)?;
    /// assert!(!b.poll(Some(Duration::ZERO)).await?);
    /// a.send(&1u8).await?;
    /// assert!(b.poll(None).await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn poll(&mut self, timeout: Option<Duration>) -> Result<bool> {
        self.ep.poll_async(timeout).await
    }

    state_methods!();
}

impl BlockingConnection {
    /// Wraps a connected stream socket or one end of a pipe, as received from a parent
    /// process. The fd is made non-blocking.
    ///
    /// # Errors
    ///
    /// [`Error::NoDirection`] when neither `readable` nor `writable`,
    /// [`Error::NotSocketOrPipe`] for other fds, or an I/O error.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_transport::BlockingConnection;
    ///
    /// let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    /// let mut a = BlockingConnection::from_owned_fd(a.into(), true, true)?;
    /// let mut b = BlockingConnection::from_owned_fd(b.into(), true, true)?;
    /// a.send_bytes(b"raw")?;
    /// assert_eq!(b.recv_bytes()?, b"raw");
    /// # Ok::<(), multiproc_transport::Error>(())
    /// ```
    pub fn from_owned_fd(fd: OwnedFd, readable: bool, writable: bool) -> Result<Self> {
        Endpoint::new(fd, readable, writable).map(|ep| BlockingConnection { ep })
    }

    /// Gives the fd back (non-blocking, deregistered from tokio). Buffered bytes are lost.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection was closed.
    pub fn into_owned_fd(self) -> Result<OwnedFd> {
        self.ep.into_owned_fd()
    }

    /// Borrows the fd.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection was closed.
    pub fn as_fd(&self) -> Result<BorrowedFd<'_>> {
        self.ep.as_fd()
    }

    /// Sends one message, `value` encoded with [`multiproc_core::codec`].
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] or [`Error::Frame`] (over the maximum frame length) with
    /// nothing written; [`Error::Eof`] if the peer is gone; [`Error::Closed`],
    /// [`Error::ReadOnly`] or an I/O error.
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.ep.send_blocking(value)
    }

    /// Receives one message and decodes it as a `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the message is not a `T` (it is consumed; the next `recv`
    /// gets the next message); [`Error::Frame`] for an oversized frame (skipped) or a
    /// broken stream; [`Error::Eof`] when the peer is gone and no message is left;
    /// [`Error::Closed`], [`Error::WriteOnly`] or an I/O error.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let range = self.ep.recv_blocking()?;
        multiproc_core::codec::decode(self.ep.frame(range)).map_err(Error::Decode)
    }

    /// Sends `payload` as one message, as is.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), without [`Error::Encode`].
    pub fn send_bytes(&mut self, payload: &[u8]) -> Result<()> {
        self.ep.send_bytes_blocking(payload)
    }

    /// Receives one message as bytes.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), without [`Error::Decode`].
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        let range = self.ep.recv_blocking()?;
        Ok(self.ep.frame(range).to_vec())
    }

    /// Receives one message into `buf` (cleared first), reusing its allocation.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Self::recv_bytes); `buf` is then empty.
    pub fn recv_bytes_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        let range = self.ep.recv_blocking()?;
        buf.extend_from_slice(self.ep.frame(range));
        Ok(())
    }

    /// Waits until a message (or the end of the stream) can be received without
    /// blocking; returns `false` if `timeout` passed first. `Some(Duration::ZERO)`
    /// checks and returns at once; `None` waits forever.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::WriteOnly`] or an I/O error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (a, mut b) = multiproc_transport::blocking_pipe(true)?;
    /// assert!(!b.poll(Some(Duration::from_millis(1)))?);
    /// drop(a);
    /// assert!(b.poll(None)?, "the end of the stream is ready too");
    /// # Ok::<(), multiproc_transport::Error>(())
    /// ```
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool> {
        self.ep.poll_blocking(timeout)
    }

    state_methods!();
}

impl From<BlockingConnection> for Connection {
    /// The same link, async; buffered bytes and settings carry over.
    fn from(c: BlockingConnection) -> Self {
        Connection { ep: c.ep }
    }
}

impl From<Connection> for BlockingConnection {
    /// The same link, blocking; buffered bytes and settings carry over.
    fn from(c: Connection) -> Self {
        BlockingConnection { ep: c.ep }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ep.debug("Connection", f)
    }
}

impl fmt::Debug for BlockingConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ep.debug("BlockingConnection", f)
    }
}

#[cfg(test)]
mod tests;
