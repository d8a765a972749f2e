//! [`pipe`] and [`blocking_pipe`]: a pair of connected connections, like Python's
//! `multiprocessing.Pipe`.

use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::pipe::PipeFlags;

use crate::endpoint::{Endpoint, Kind};
use crate::{BlockingConnection, Connection, Error, Result};

/// Creates a pair of connected async connections, like Python's `Pipe(duplex)`.
///
/// With `duplex`, both ends send and receive (a Unix stream socketpair). Without it,
/// the first end only receives and the second only sends (an OS pipe), as in Python.
/// Both fds are close-on-exec and non-blocking; no runtime is needed to create them.
///
/// # Errors
///
/// [`Error::Exhausted`] when the system has no descriptors left for the pair (the
/// message names the limit); [`Error::Io`] for any other refusal.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), multiproc_transport::Error> {
/// let (mut reader, mut writer) = multiproc_transport::pipe(false)?;
/// assert!(reader.is_readable() && !reader.is_writable());
/// writer.send(&[1, 2, 3]).await?;
/// assert_eq!(reader.recv::<Vec<u8>>().await?, [1, 2, 3]);
/// # Ok(())
/// # }
/// ```
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    let (a, b) = raw_pair(duplex)?;
    Ok((Connection { ep: a }, Connection { ep: b }))
}

/// Creates a pair of connected blocking connections, like Python's `Pipe(duplex)`.
///
/// See [`pipe`] for what `duplex` means.
///
/// # Errors
///
/// [`Error::Exhausted`] when the system has no descriptors left for the pair (the
/// message names the limit); [`Error::Io`] for any other refusal.
///
/// # Examples
///
/// ```
/// let (mut a, mut b) = multiproc_transport::blocking_pipe(true)?;
/// a.send("hi")?;
/// b.send("there")?;
/// assert_eq!(b.recv::<String>()?, "hi");
/// assert_eq!(a.recv::<String>()?, "there");
/// # Ok::<(), multiproc_transport::Error>(())
/// ```
pub fn blocking_pipe(duplex: bool) -> Result<(BlockingConnection, BlockingConnection)> {
    let (a, b) = raw_pair(duplex)?;
    Ok((BlockingConnection { ep: a }, BlockingConnection { ep: b }))
}

fn raw_pair(duplex: bool) -> Result<(Endpoint, Endpoint)> {
    if duplex {
        let (a, b): (OwnedFd, OwnedFd) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(Error::creating)?;
        Ok((
            Endpoint::with_kind(a, Kind::Socket, true, true),
            Endpoint::with_kind(b, Kind::Socket, true, true),
        ))
    } else {
        let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
            .map_err(Error::creating)?;
        Ok((
            Endpoint::with_kind(r, Kind::Pipe, true, false),
            Endpoint::with_kind(w, Kind::Pipe, false, true),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use rustix::fs::OFlags;
    use rustix::io::FdFlags;

    fn assert_cloexec_nonblocking(c: &BlockingConnection) {
        let fd = c.as_fd().unwrap();
        assert!(
            rustix::io::fcntl_getfd(fd)
                .unwrap()
                .contains(FdFlags::CLOEXEC)
        );
        assert!(
            rustix::fs::fcntl_getfl(fd)
                .unwrap()
                .contains(OFlags::NONBLOCK)
        );
    }

    #[test]
    fn duplex_pipe_is_two_way_and_cloexec() {
        let (mut a, mut b) = blocking_pipe(true).unwrap();
        assert_cloexec_nonblocking(&a);
        assert_cloexec_nonblocking(&b);
        assert!(a.is_readable() && a.is_writable() && b.is_readable() && b.is_writable());
        a.send(&1u8).unwrap();
        b.send(&2u8).unwrap();
        assert_eq!(b.recv::<u8>().unwrap(), 1);
        assert_eq!(a.recv::<u8>().unwrap(), 2);
    }

    #[test]
    fn simplex_pipe_reads_on_the_first_and_writes_on_the_second() {
        let (mut r, mut w) = blocking_pipe(false).unwrap();
        assert_cloexec_nonblocking(&r);
        assert_cloexec_nonblocking(&w);
        assert!(r.is_readable() && !r.is_writable());
        assert!(!w.is_readable() && w.is_writable());
        assert!(matches!(r.send(&1u8), Err(Error::ReadOnly)));
        assert!(matches!(w.recv::<u8>(), Err(Error::WriteOnly)));
        assert!(matches!(
            w.poll(Some(std::time::Duration::ZERO)),
            Err(Error::WriteOnly)
        ));
        w.send_bytes(b"one way").unwrap();
        assert_eq!(r.recv_bytes().unwrap(), b"one way");
    }

    #[test]
    fn writing_to_a_pipe_whose_reader_is_gone_is_eof() {
        let (r, mut w) = blocking_pipe(false).unwrap();
        drop(r);
        // Rust's runtime ignores SIGPIPE, so the write reports EPIPE.
        assert!(matches!(w.send(&1u8), Err(Error::Eof)));
    }

    #[tokio::test]
    async fn async_pipe_needs_no_runtime_to_create() {
        let (a, b) = std::thread::spawn(|| pipe(true).unwrap()).join().unwrap();
        let (mut a, mut b) = (a, b);
        a.send(&"moved into a runtime").await.unwrap();
        assert_eq!(b.recv::<String>().await.unwrap(), "moved into a runtime");
    }
}
