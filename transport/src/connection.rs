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
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::{FrameError, blocking_pipe, pipe};

    /// Writes raw bytes to a connection's fd, bypassing framing.
    fn raw_write(c: &BlockingConnection, bytes: &[u8]) {
        let mut done = 0;
        while done < bytes.len() {
            done += rustix::io::write(c.as_fd().unwrap(), &bytes[done..]).unwrap();
        }
    }

    /// Polls a future once with a waker that does nothing.
    fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
        let mut fut = pin!(fut);
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn connections_are_send_sync_and_static() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Connection>();
        assert_send_sync::<BlockingConnection>();
    }

    #[test]
    fn blocking_round_trips_between_threads() {
        let (mut a, mut b) = blocking_pipe(true).unwrap();
        let echo = std::thread::spawn(move || {
            loop {
                match b.recv::<(u32, String)>() {
                    Ok((n, s)) => b.send(&(n * 2, s)).unwrap(),
                    Err(Error::Eof) => return,
                    Err(e) => panic!("{e}"),
                }
            }
        });
        for n in 0..1000u32 {
            a.send(&(n, format!("msg {n}"))).unwrap();
            assert_eq!(
                a.recv::<(u32, String)>().unwrap(),
                (n * 2, format!("msg {n}"))
            );
        }
        a.close();
        echo.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_round_trips_between_tasks() {
        let (mut a, mut b) = pipe(true).unwrap();
        let echo = tokio::spawn(async move {
            while let Ok(n) = b.recv::<u64>().await {
                b.send(&(n + 1)).await.unwrap();
            }
        });
        for n in 0..1000u64 {
            a.send(&n).await.unwrap();
            assert_eq!(a.recv::<u64>().await.unwrap(), n + 1);
        }
        drop(a);
        echo.await.unwrap();
    }

    #[test]
    fn big_messages_cross_both_kinds_of_pipe() {
        for duplex in [true, false] {
            let (mut r, mut w) = blocking_pipe(duplex).unwrap();
            let big: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
            let expected = big.clone();
            let writer = std::thread::spawn(move || {
                w.send_bytes(&big).unwrap();
                w.send(&big).unwrap();
                w.send_bytes(b"small").unwrap();
            });
            assert_eq!(r.recv_bytes().unwrap(), expected);
            assert_eq!(r.recv::<Vec<u8>>().unwrap(), expected);
            assert_eq!(r.recv_bytes().unwrap(), b"small");
            writer.join().unwrap();
        }
    }

    #[tokio::test]
    async fn async_big_messages_interleave_with_a_blocking_peer() {
        let (mut a, b) = pipe(true).unwrap();
        let mut b = BlockingConnection::from(b);
        let big = vec![0x5Au8; 2_000_000];
        let expected = big.clone();
        let peer = std::thread::spawn(move || {
            let got = b.recv_bytes().unwrap();
            b.send_bytes(&got).unwrap();
        });
        a.send_bytes(&big).await.unwrap();
        assert_eq!(a.recv_bytes().await.unwrap(), expected);
        tokio::task::spawn_blocking(move || peer.join().unwrap())
            .await
            .unwrap();
    }

    #[test]
    fn undecodable_message_is_consumed_and_the_next_arrives() {
        let (mut a, mut b) = blocking_pipe(true).unwrap();
        a.send(&"text").unwrap();
        a.send(&(1u8, 2u8)).unwrap();
        let err = b.recv::<u64>().unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
        assert_eq!(b.recv::<(u8, u8)>().unwrap(), (1, 2));
    }

    #[test]
    fn garbage_on_the_wire_gives_typed_errors_then_the_valid_message() {
        let (a, mut b) = blocking_pipe(true).unwrap();
        b.set_max_frame_len(64);
        let mut bytes = Vec::new();
        // A valid length prefix whose payload is a reserved msgpack byte.
        bytes.extend_from_slice(&[0, 0, 0, 3, 0xC1, 0xC1, 0xC1]);
        // A frame over the receiver's limit, payload included.
        bytes.extend_from_slice(&100i32.to_be_bytes());
        bytes.extend_from_slice(&[0xEE; 100]);
        // A frame that is valid msgpack, of another type than expected.
        let text = multiproc_core::codec::encode("not a pair").unwrap();
        bytes.extend_from_slice(&(text.len() as i32).to_be_bytes());
        bytes.extend_from_slice(&text);
        // Finally a valid message.
        let good = multiproc_core::codec::encode(&(7u8, "ok")).unwrap();
        bytes.extend_from_slice(&(good.len() as i32).to_be_bytes());
        bytes.extend_from_slice(&good);
        raw_write(&a, &bytes);

        assert!(matches!(b.recv::<(u8, String)>(), Err(Error::Decode(_))));
        assert!(matches!(
            b.recv::<(u8, String)>(),
            Err(Error::Frame(FrameError::TooLarge { len: 100, max: 64 }))
        ));
        assert!(matches!(b.recv::<(u8, String)>(), Err(Error::Decode(_))));
        assert_eq!(b.recv::<(u8, String)>().unwrap(), (7, "ok".to_string()));
    }

    #[test]
    fn bad_length_prefix_is_fatal() {
        let (a, mut b) = blocking_pipe(true).unwrap();
        raw_write(&a, &(-2i32).to_be_bytes());
        for _ in 0..2 {
            assert!(matches!(
                b.recv_bytes(),
                Err(Error::Frame(FrameError::BadLength(-2)))
            ));
        }
    }

    #[test]
    fn peer_gone_after_messages_delivers_them_then_eof() {
        let (mut a, mut b) = blocking_pipe(true).unwrap();
        a.send(&1u8).unwrap();
        a.send(&2u8).unwrap();
        drop(a);
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        assert_eq!(b.recv::<u8>().unwrap(), 1);
        assert_eq!(b.recv::<u8>().unwrap(), 2);
        assert!(b.poll(None).unwrap(), "eof is ready");
        assert!(matches!(b.recv::<u8>(), Err(Error::Eof)));
        assert!(matches!(b.recv::<u8>(), Err(Error::Eof)));
    }

    #[test]
    fn peer_gone_mid_frame_is_truncated_then_eof() {
        let (a, mut b) = blocking_pipe(true).unwrap();
        raw_write(&a, &[0, 0, 0, 10, 1, 2, 3]);
        drop(a);
        assert!(matches!(
            b.recv_bytes(),
            Err(Error::Frame(FrameError::Truncated {
                expected: 10,
                got: 3
            }))
        ));
        assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
    }

    #[test]
    fn send_to_a_closed_peer_is_eof() {
        let (mut a, b) = blocking_pipe(true).unwrap();
        drop(b);
        assert!(matches!(a.send(&1u8), Err(Error::Eof)));
        assert!(matches!(a.send_bytes(&vec![0; 100_000]), Err(Error::Eof)));
    }

    #[tokio::test]
    async fn async_send_to_a_closed_peer_is_eof() {
        let (mut a, b) = pipe(true).unwrap();
        drop(b);
        assert!(matches!(a.send(&1u8).await, Err(Error::Eof)));
    }

    #[test]
    fn oversized_outgoing_message_writes_nothing() {
        let (mut a, mut b) = blocking_pipe(true).unwrap();
        a.set_max_frame_len(10);
        assert_eq!(a.max_frame_len(), 10);
        let err = a.send_bytes(&[0; 11]).unwrap_err();
        assert!(matches!(
            err,
            Error::Frame(FrameError::TooLarge { len: 11, max: 10 })
        ));
        let err = a.send(&"a string longer than ten bytes").unwrap_err();
        assert!(matches!(
            err,
            Error::Frame(FrameError::TooLarge { max: 10, .. })
        ));
        let err = a.send_bytes(&vec![0; 1 << 20]).unwrap_err();
        assert!(matches!(
            err,
            Error::Frame(FrameError::TooLarge { max: 10, .. })
        ));
        assert!(
            !b.poll(Some(Duration::ZERO)).unwrap(),
            "nothing was written"
        );
        a.send(&"fits").unwrap();
        assert_eq!(b.recv::<String>().unwrap(), "fits");
    }

    #[test]
    fn unencodable_value_writes_nothing() {
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        let (mut a, mut b) = blocking_pipe(true).unwrap();
        assert!(matches!(a.send(&Fails), Err(Error::Encode(_))));
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    }

    #[test]
    fn operations_after_close_are_closed_errors() {
        let (mut a, _b) = blocking_pipe(true).unwrap();
        assert!(!a.is_closed());
        a.close();
        a.close();
        assert!(a.is_closed());
        assert!(
            a.is_readable() && a.is_writable(),
            "direction is kept, as in Python"
        );
        assert!(matches!(a.send(&1u8), Err(Error::Closed)));
        assert!(matches!(a.recv::<u8>(), Err(Error::Closed)));
        assert!(matches!(a.poll(None), Err(Error::Closed)));
        assert!(matches!(a.as_fd(), Err(Error::Closed)));
        assert!(matches!(a.into_owned_fd(), Err(Error::Closed)));
    }

    #[tokio::test]
    async fn async_operations_after_close_are_closed_errors() {
        let (mut a, _b) = pipe(true).unwrap();
        a.close();
        assert!(a.is_closed());
        assert!(matches!(a.send(&1u8).await, Err(Error::Closed)));
        assert!(matches!(a.recv_bytes().await, Err(Error::Closed)));
        assert!(matches!(
            a.poll(Some(Duration::ZERO)).await,
            Err(Error::Closed)
        ));
    }

    #[test]
    fn poll_reports_readiness_and_times_out() {
        let (mut a, mut b) = blocking_pipe(true).unwrap();
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
        let start = std::time::Instant::now();
        assert!(!b.poll(Some(Duration::from_millis(10))).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(10));
        a.send(&()).unwrap();
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        assert!(b.poll(None).unwrap(), "still ready: poll does not consume");
        b.recv::<()>().unwrap();
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    }

    #[test]
    fn poll_wakes_for_a_message_sent_by_another_thread() {
        let (mut a, mut b) = blocking_pipe(true).unwrap();
        let (mut go_tx, mut go_rx) = blocking_pipe(true).unwrap();
        let t = std::thread::spawn(move || {
            go_rx.recv::<()>().unwrap();
            a.send(&9u8).unwrap();
            a
        });
        go_tx.send(&()).unwrap();
        assert!(b.poll(None).unwrap());
        assert_eq!(b.recv::<u8>().unwrap(), 9);
        drop(t.join().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn async_poll_times_out_and_wakes() {
        let (mut a, mut b) = pipe(true).unwrap();
        assert!(!b.poll(Some(Duration::ZERO)).await.unwrap());
        assert!(!b.poll(Some(Duration::from_secs(60))).await.unwrap());
        a.send(&1u8).await.unwrap();
        assert!(b.poll(Some(Duration::from_secs(60))).await.unwrap());
        assert!(b.poll(None).await.unwrap());
        assert_eq!(b.recv::<u8>().await.unwrap(), 1);
    }

    #[test]
    fn recv_bytes_into_reuses_the_buffer() {
        let (mut a, mut b) = blocking_pipe(true).unwrap();
        let mut buf = Vec::with_capacity(1024);
        let ptr = buf.as_ptr();
        for msg in [&b"first"[..], b"second, longer", b""] {
            a.send_bytes(msg).unwrap();
            b.recv_bytes_into(&mut buf).unwrap();
            assert_eq!(buf, msg);
            assert_eq!(buf.as_ptr(), ptr, "no reallocation");
        }
    }

    #[tokio::test]
    async fn views_convert_without_losing_buffered_messages() {
        let (a, b) = blocking_pipe(true).unwrap();
        let (mut a, mut b) = (a, Connection::from(b));
        a.send(&1u8).unwrap();
        a.send(&2u8).unwrap();
        assert_eq!(b.recv::<u8>().await.unwrap(), 1);
        let mut b = BlockingConnection::from(b);
        assert_eq!(
            b.recv::<u8>().unwrap(),
            2,
            "read ahead while async, received blocking"
        );
        let mut b = Connection::from(b);
        a.send(&3u8).unwrap();
        assert_eq!(b.recv::<u8>().await.unwrap(), 3);
    }

    #[test]
    fn an_async_connection_moves_between_runtimes() {
        let (mut a, mut b) = pipe(true).unwrap();
        for round in 0..3u8 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let echo = async {
                    let n: u8 = b.recv().await.unwrap();
                    b.send(&(n + 1)).await.unwrap();
                };
                let ask = async {
                    a.send(&round).await.unwrap();
                    a.recv::<u8>().await.unwrap()
                };
                let ((), got) = tokio::join!(echo, ask);
                assert_eq!(got, round + 1);
            });
        }
    }

    #[test]
    fn async_recv_outside_a_runtime_is_an_error_not_a_panic() {
        let (mut a, mut b) = pipe(true).unwrap();
        // Sending succeeds without ever waiting, so it needs no runtime.
        assert!(matches!(poll_once(a.send(&1u8)), Poll::Ready(Ok(()))));
        assert!(matches!(poll_once(b.recv::<u8>()), Poll::Ready(Ok(1))));
        assert!(matches!(
            poll_once(b.recv::<u8>()),
            Poll::Ready(Err(Error::NoRuntime))
        ));
    }

    #[tokio::test]
    async fn cancelled_sends_never_tear_frames() {
        let (mut a, b) = pipe(true).unwrap();
        let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        // Nobody reads yet: the big send fills the socket buffer and is dropped half-way.
        assert!(poll_once(a.send_bytes(&big)).is_pending());
        // This one cannot write any of its bytes, so dropping it unsends it.
        assert!(poll_once(a.send(&"dropped")).is_pending());
        let expected = big.clone();
        let reader = std::thread::spawn(move || {
            let mut b = BlockingConnection::from(b);
            assert_eq!(b.recv_bytes().unwrap(), expected);
            assert_eq!(b.recv::<String>().unwrap(), "kept");
        });
        a.send(&"kept").await.unwrap();
        tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
    }

    #[test]
    fn fds_round_trip_through_the_accessors() {
        let (a, b) = blocking_pipe(true).unwrap();
        let fd = a.into_owned_fd().unwrap();
        let mut a = Connection::from_owned_fd(fd, true, true)
            .map(BlockingConnection::from)
            .unwrap();
        let mut b = b;
        a.send(&"still works").unwrap();
        assert_eq!(b.recv::<String>().unwrap(), "still works");
    }

    #[test]
    fn from_owned_fd_checks_its_arguments() {
        let (a, _b) = blocking_pipe(true).unwrap();
        let fd = a.into_owned_fd().unwrap();
        assert!(matches!(
            BlockingConnection::from_owned_fd(fd, false, false),
            Err(Error::NoDirection)
        ));
        let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        assert!(matches!(
            BlockingConnection::from_owned_fd(null, true, true),
            Err(Error::NotSocketOrPipe)
        ));
        let (r, _w) = std::io::pipe().unwrap();
        let r = BlockingConnection::from_owned_fd(r.into(), true, false).unwrap();
        assert!(r.is_readable() && !r.is_writable());
    }

    #[test]
    fn debug_shows_state_but_not_payload() {
        let (mut a, b) = blocking_pipe(true).unwrap();
        a.send_bytes(&[0xAB; 3]).unwrap();
        let mut b = Connection::from(b);
        b.set_max_frame_len(1000);
        let s = format!("{b:?}");
        assert!(s.starts_with("Connection {"), "{s}");
        assert!(s.contains("max_frame_len: 1000"), "{s}");
        assert!(!s.contains("171"), "{s}");
        a.close();
        assert!(format!("{a:?}").contains("fd: \"closed\""));
    }
}
