//! Passing file descriptors between processes: over a Unix socket with `SCM_RIGHTS`,
//! and inside serialized values so a [`Connection`] can be an argument of a child.
//!
//! # Connections as arguments
//!
//! Serializing a connection inside [`collect_fds`] duplicates its fd into the
//! collector and writes `{fd: index, readable, writable}` in its place. The creator of
//! the child sends the collected fds next to the encoded arguments; the child decodes
//! them inside [`provide_fds`], which hands each index's fd to the connection that
//! names it. Outside those scopes, (de)serializing a connection is an error, and so is
//! serializing one that holds buffered bytes (read ahead, or not yet sent), since they
//! would not travel with the fd. The rebuilt connection has the default maximum frame
//! length.

use std::cell::RefCell;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::endpoint::{Endpoint, wait_fd};
use crate::{BlockingConnection, Connection, Error, Result};

/// The most file descriptors one message can carry (Linux's `SCM_MAX_FD`).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Room for the largest control message.
const CMSG_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE));

/// Sends all of `data` over the Unix stream socket `sock`, with `fds` attached to its
/// first bytes; returns `data.len()`. Works on blocking and non-blocking sockets alike.
///
/// The fds arrive with the first `recv_with_fds` that reads any of `data`.
///
/// # Errors
///
/// [`Error::TooManyFds`] over [`MAX_FDS_PER_MESSAGE`], [`Error::FdsWithoutData`] for
/// fds with empty `data`, [`Error::Eof`] if the peer is gone, or an I/O error.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use multiproc_transport::{recv_with_fds, send_with_fds};
///
/// let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
/// let (r, w) = std::io::pipe().expect("pipe");
/// assert_eq!(send_with_fds(a.as_fd(), b"here", &[w.as_fd()])?, 4);
/// let mut buf = [0u8; 16];
/// let (n, fds) = recv_with_fds(b.as_fd(), &mut buf, 4)?;
/// assert_eq!((&buf[..n], fds.len()), (&b"here"[..], 1));
/// # drop(r);
/// # Ok::<(), multiproc_transport::Error>(())
/// ```
pub fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize> {
    let mut sent = send_first(sock, data, fds, true)?;
    while sent < data.len() {
        match rustix::net::send(sock, &data[sent..], SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(e) => retry_or_fail(sock, PollFlags::OUT, e)?,
        }
    }
    Ok(sent)
}

/// Sends as much of `data` as the socket takes at once, without waiting, with `fds`
/// attached to its first bytes; returns how many bytes went, `0` when the socket had
/// no room (the fds did not go either, and must ride with the first bytes sent later).
///
/// For a message written before its reader exists: a reader that is still to be made
/// cannot drain the socket, so a blocking send there could wait for ever.
///
/// # Errors
///
/// As [`send_with_fds`], except that a full socket is `Ok(0)`, not a wait.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use multiproc_transport::{recv_with_fds, try_send_with_fds};
///
/// let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
/// let (r, w) = std::io::pipe().expect("pipe");
/// assert_eq!(try_send_with_fds(a.as_fd(), b"here", &[w.as_fd()])?, 4);
/// let mut buf = [0u8; 16];
/// let (n, fds) = recv_with_fds(b.as_fd(), &mut buf, 4)?;
/// assert_eq!((&buf[..n], fds.len()), (&b"here"[..], 1));
/// # drop(r);
/// # Ok::<(), multiproc_transport::Error>(())
/// ```
pub fn try_send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<usize> {
    send_first(sock, data, fds, false)
}

/// The first `sendmsg` of `data`, with `fds` attached: what it sent, or, when the
/// socket has no room and `wait` is false, `0`.
fn send_first(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    wait: bool,
) -> Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(Error::TooManyFds {
            count: fds.len(),
            max: MAX_FDS_PER_MESSAGE,
        });
    }
    if data.is_empty() {
        // A stream socket sends nothing for zero bytes, so the fds would not travel.
        return if fds.is_empty() {
            Ok(0)
        } else {
            Err(Error::FdsWithoutData)
        };
    }
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Error::TooManyFds {
            count: fds.len(),
            max: MAX_FDS_PER_MESSAGE,
        });
    }
    let flags = if wait {
        SendFlags::NOSIGNAL
    } else {
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT
    };
    loop {
        match rustix::net::sendmsg(sock, &[IoSlice::new(data)], &mut control, flags) {
            Ok(n) => return Ok(n),
            Err(Errno::AGAIN) if !wait => return Ok(0),
            Err(e) => retry_or_fail(sock, PollFlags::OUT, e)?,
        }
    }
}

/// Receives bytes into `buf` from the Unix stream socket `sock`, with up to `max_fds`
/// file descriptors (capped at [`MAX_FDS_PER_MESSAGE`]) sent alongside them; returns
/// the byte count and the fds, which are close-on-exec. Waits for data even on a
/// non-blocking socket.
///
/// # Errors
///
/// [`Error::Eof`] if the peer is gone, [`Error::FdsTruncated`] if more fds came than
/// `max_fds` (the bytes were received and the fds that fit are closed), or an I/O
/// error.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> Result<(usize, Vec<OwnedFd>)> {
    let max_fds = max_fds.min(MAX_FDS_PER_MESSAGE);
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let room = if max_fds == 0 {
        0
    } else {
        rustix::cmsg_space!(ScmRights(max_fds))
    };
    let mut control = RecvAncillaryBuffer::new(&mut space[..room]);
    let empty = buf.is_empty();
    let msg = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg,
            Err(e) => retry_or_fail(sock, PollFlags::IN, e)?,
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    // The control buffer is rounded up for alignment and may hold a few more fds than
    // asked for: the limit is enforced here, exactly.
    if msg.flags.contains(ReturnFlags::CTRUNC) || fds.len() > max_fds {
        return Err(Error::FdsTruncated { max: max_fds });
    }
    if msg.bytes == 0 && !empty {
        return Err(Error::Eof);
    }
    Ok((msg.bytes, fds))
}

/// Waits out `EAGAIN` and `EINTR`; turns other errors into [`Error`].
fn retry_or_fail(sock: BorrowedFd<'_>, events: PollFlags, e: Errno) -> Result<()> {
    match e {
        Errno::INTR => Ok(()),
        Errno::AGAIN => wait_fd(sock, events, None),
        Errno::PIPE | Errno::CONNRESET => Err(Error::Eof),
        e => Err(e.into()),
    }
}

thread_local! {
    /// The fds collected by the innermost [`collect_fds`] on this thread.
    static COLLECTED: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// The fds offered by the innermost [`provide_fds`] on this thread; `None` once taken.
    static PROVIDED: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Runs `f` (typically an encode) and returns, with its result, the duplicated fds of
/// every connection serialized inside it, in index order.
///
/// # Examples
///
/// ```
/// use multiproc_core::codec;
/// use multiproc_transport::{Connection, blocking_pipe, collect_fds, provide_fds};
///
/// let (mut parent, child_end) = blocking_pipe(true)?;
/// let (bytes, fds) = collect_fds(|| codec::encode(&("job", &child_end)));
/// let bytes = bytes.expect("encodes inside collect_fds");
/// drop(child_end);
/// // ... in the child, with `bytes` and `fds` received from the parent:
/// let (name, conn): (String, Connection) =
///     provide_fds(fds, || codec::decode(&bytes)).expect("decodes inside provide_fds");
/// let mut conn = multiproc_transport::BlockingConnection::from(conn);
/// parent.send(&name)?;
/// assert_eq!(conn.recv::<String>()?, "job");
/// # Ok::<(), multiproc_transport::Error>(())
/// ```
pub fn collect_fds<R>(f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let outer = COLLECTED.with(|c| c.replace(Some(Vec::new())));
    let restore = Restore {
        key: &COLLECTED,
        outer: Some(outer),
    };
    let result = f();
    let fds = restore.finish().unwrap_or_default();
    (result, fds)
}

/// Runs `f` (typically a decode) with `fds` available to the connections deserialized
/// inside it: the connection encoded with index `i` takes `fds[i]`. Fds no connection
/// took are closed when `f` returns.
pub fn provide_fds<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    let offered = fds.into_iter().map(Some).collect();
    let outer = PROVIDED.with(|p| p.replace(Some(offered)));
    let restore = Restore {
        key: &PROVIDED,
        outer: Some(outer),
    };
    let result = f();
    drop(restore.finish());
    result
}

/// Puts back the outer scope's value of a thread-local when a scope ends, even by panic.
struct Restore<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    outer: Option<Option<T>>,
}

impl<T> Restore<T> {
    /// Ends the scope, returning its value.
    fn finish(mut self) -> Option<T> {
        let outer = self.outer.take().unwrap_or_default();
        self.key.with(|cell| cell.replace(outer))
    }
}

impl<T> Drop for Restore<T> {
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            self.key.with(|cell| drop(cell.replace(outer)));
        }
    }
}

/// How a connection is written inside an encoded value.
#[derive(Serialize, Deserialize)]
#[serde(rename = "Connection")]
struct Wire {
    /// Index into the fds sent alongside.
    fd: u32,
    readable: bool,
    writable: bool,
}

fn serialize_endpoint<S: Serializer>(ep: &Endpoint, serializer: S) -> Result<S::Ok, S::Error> {
    let fd = ep.transfer_fd().map_err(S::Error::custom)?;
    let index = COLLECTED.with(|c| -> Result<u32, String> {
        let mut c = c.borrow_mut();
        let Some(collected) = c.as_mut() else {
            return Err(
                "a Connection can only be passed to a child process when the process is \
                        created (serialize it inside collect_fds)"
                    .into(),
            );
        };
        let index =
            u32::try_from(collected.len()).map_err(|_| "too many connections in one value")?;
        let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)
            .map_err(|e| format!("cannot duplicate the fd: {e}"))?;
        collected.push(dup);
        Ok(index)
    });
    Wire {
        fd: index.map_err(S::Error::custom)?,
        readable: ep.is_readable(),
        writable: ep.is_writable(),
    }
    .serialize(serializer)
}

fn deserialize_endpoint<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Endpoint, D::Error> {
    let wire = Wire::deserialize(deserializer)?;
    let fd = PROVIDED.with(|p| -> Result<OwnedFd, String> {
        let mut p = p.borrow_mut();
        let Some(provided) = p.as_mut() else {
            return Err(
                "a Connection can only be received by a child process as it starts \
                        (deserialize it inside provide_fds)"
                    .into(),
            );
        };
        let count = provided.len();
        match provided.get_mut(wire.fd as usize) {
            None => Err(format!(
                "no file descriptor at index {} (only {count} were passed)",
                wire.fd
            )),
            Some(slot) => slot.take().ok_or_else(|| {
                format!("the file descriptor at index {} was already taken", wire.fd)
            }),
        }
    });
    let fd = fd.map_err(D::Error::custom)?;
    Endpoint::new(fd, wire.readable, wire.writable).map_err(D::Error::custom)
}

impl Serialize for Connection {
    /// Inside [`collect_fds`], a duplicate of the fd goes to the collector; elsewhere
    /// this fails.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_endpoint(&self.ep, serializer)
    }
}

impl Serialize for BlockingConnection {
    /// Inside [`collect_fds`], a duplicate of the fd goes to the collector; elsewhere
    /// this fails.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_endpoint(&self.ep, serializer)
    }
}

impl<'de> Deserialize<'de> for Connection {
    /// Inside [`provide_fds`], takes the fd at the encoded index; elsewhere this fails.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_endpoint(deserializer).map(|ep| Connection { ep })
    }
}

impl<'de> Deserialize<'de> for BlockingConnection {
    /// Inside [`provide_fds`], takes the fd at the encoded index; elsewhere this fails.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_endpoint(deserializer).map(|ep| BlockingConnection { ep })
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use multiproc_core::codec;

    use super::*;
    use crate::{FrameError, blocking_pipe, pipe};

    fn socketpair() -> (OwnedFd, OwnedFd) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (a.into(), b.into())
    }

    #[test]
    fn fds_travel_with_their_bytes() {
        let (a, b) = socketpair();
        let (r1, w1) = std::io::pipe().unwrap();
        let (r2, w2) = std::io::pipe().unwrap();
        assert_eq!(
            send_with_fds(a.as_fd(), b"two fds", &[w1.as_fd(), w2.as_fd()]).unwrap(),
            7
        );
        assert_eq!(send_with_fds(a.as_fd(), b"none", &[]).unwrap(), 4);
        let mut buf = [0u8; 7];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf, 8).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"two fds"[..], 2));
        for (fd, (r, msg)) in fds.iter().zip([(&r1, b"one"), (&r2, b"two")]) {
            assert!(
                rustix::io::fcntl_getfd(fd)
                    .unwrap()
                    .contains(rustix::io::FdFlags::CLOEXEC)
            );
            rustix::io::write(fd, msg).unwrap();
            let mut got = [0u8; 3];
            rustix::io::read(r, &mut got).unwrap();
            assert_eq!(&got, msg);
        }
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf, 8).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"none"[..], 0));
    }

    #[test]
    fn recv_waits_on_a_nonblocking_socket() {
        let (a, b) = blocking_pipe(true).unwrap();
        let sender = std::thread::spawn(move || {
            let (_r, w) = std::io::pipe().unwrap();
            send_with_fds(a.as_fd().unwrap(), b"x", &[w.as_fd()]).unwrap();
            a
        });
        let mut buf = [0u8; 1];
        let (n, fds) = recv_with_fds(b.as_fd().unwrap(), &mut buf, 1).unwrap();
        assert_eq!((n, fds.len()), (1, 1));
        drop(sender.join().unwrap());
    }

    #[test]
    fn limits_are_enforced() {
        let (a, b) = socketpair();
        let (_r, w) = std::io::pipe().unwrap();
        let many = vec![w.as_fd(); MAX_FDS_PER_MESSAGE + 1];
        assert!(matches!(
            send_with_fds(a.as_fd(), b"x", &many),
            Err(Error::TooManyFds {
                count: 254,
                max: MAX_FDS_PER_MESSAGE
            })
        ));
        assert!(matches!(
            send_with_fds(a.as_fd(), b"", &[w.as_fd()]),
            Err(Error::FdsWithoutData)
        ));
        send_with_fds(a.as_fd(), b"x", &[w.as_fd(), w.as_fd()]).unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(
            recv_with_fds(b.as_fd(), &mut buf, 1),
            Err(Error::FdsTruncated { max: 1 })
        ));
        drop(a);
        assert!(matches!(
            recv_with_fds(b.as_fd(), &mut buf, 1),
            Err(Error::Eof)
        ));
    }

    #[test]
    fn serializing_a_connection_outside_collect_fds_fails() {
        let (a, _b) = blocking_pipe(true).unwrap();
        let err = codec::encode(&a).unwrap_err().to_string();
        assert!(
            err.contains(
                "a Connection can only be passed to a child process when the process is created"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_connection_round_trips_through_the_codec() {
        let (mut parent, child_end) = blocking_pipe(true).unwrap();
        let (r, w) = blocking_pipe(false).unwrap();
        let (bytes, fds) = collect_fds(|| codec::encode(&(&child_end, "label", &r, &w)));
        let bytes = bytes.unwrap();
        assert_eq!(fds.len(), 3);
        drop((child_end, r, w));

        type Args = (BlockingConnection, String, Connection, BlockingConnection);
        let (mut child, label, r, mut w): Args =
            provide_fds(fds, || codec::decode(&bytes)).unwrap();
        assert_eq!(label, "label");
        assert!(child.is_readable() && child.is_writable());
        assert!(r.is_readable() && !r.is_writable());
        assert!(!w.is_readable() && w.is_writable());

        parent.send(&"to the child").unwrap();
        assert_eq!(child.recv::<String>().unwrap(), "to the child");
        child.send(&"to the parent").unwrap();
        assert_eq!(parent.recv::<String>().unwrap(), "to the parent");
        let mut r = BlockingConnection::from(r);
        w.send(&5u8).unwrap();
        assert_eq!(r.recv::<u8>().unwrap(), 5);
    }

    #[tokio::test]
    async fn an_async_connection_round_trips_through_the_codec() {
        let (mut parent, child_end) = pipe(true).unwrap();
        let (bytes, fds) = collect_fds(|| codec::encode(&child_end));
        drop(child_end);
        let mut child: Connection = provide_fds(fds, || codec::decode(&bytes.unwrap())).unwrap();
        parent.send(&[1u8, 2]).await.unwrap();
        assert_eq!(child.recv::<Vec<u8>>().await.unwrap(), [1, 2]);
    }

    #[test]
    fn deserializing_checks_the_provided_fds() {
        let (a, _b) = blocking_pipe(true).unwrap();
        let wire = |fd| Wire {
            fd,
            readable: true,
            writable: true,
        };

        let one = codec::encode(&wire(0)).unwrap();
        let err = codec::decode::<Connection>(&one).unwrap_err().to_string();
        assert!(err.contains("inside provide_fds"), "{err}");

        let missing = codec::encode(&wire(3)).unwrap();
        let fd = || vec![a.as_fd().unwrap().try_clone_to_owned().unwrap()];
        let err = provide_fds(fd(), || codec::decode::<Connection>(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no file descriptor at index 3 (only 1 were passed)"),
            "{err}"
        );

        let twice = codec::encode(&(wire(0), wire(0))).unwrap();
        let err = provide_fds(fd(), || codec::decode::<(Connection, Connection)>(&twice))
            .unwrap_err()
            .to_string();
        assert!(err.contains("index 0 was already taken"), "{err}");
    }

    #[test]
    fn a_connection_with_buffered_messages_is_refused() {
        let (mut a, mut b) = blocking_pipe(true).unwrap();
        a.send(&1u8).unwrap();
        a.send(&2u8).unwrap();
        assert_eq!(b.recv::<u8>().unwrap(), 1, "reads ahead: 2 is now buffered");
        let (res, fds) = collect_fds(|| codec::encode(&b));
        assert!(res.unwrap_err().to_string().contains("buffered"));
        assert!(fds.is_empty());
    }

    #[test]
    fn scopes_nest_and_are_restored_after_a_panic() {
        let (a, _b) = blocking_pipe(true).unwrap();
        let ((inner, outer_res), outer) = collect_fds(|| {
            let inner = collect_fds(|| codec::encode(&a).map(drop)).1.len();
            (inner, codec::encode(&(&a, &a)).map(drop))
        });
        assert_eq!(inner, 1);
        assert!(outer_res.is_ok());
        assert_eq!(outer.len(), 2, "the inner scope's fd is not the outer's");

        let panicked = std::panic::catch_unwind(|| collect_fds(|| panic!("boom")));
        assert!(panicked.is_err());
        assert!(codec::encode(&a).is_err(), "no collector is left installed");
    }

    #[test]
    fn frame_errors_are_not_confused_with_fd_errors() {
        // A connection rebuilt from an fd gets the default limit, not the sender's.
        let (mut a, b) = blocking_pipe(true).unwrap();
        a.set_max_frame_len(1);
        let (bytes, fds) = collect_fds(|| codec::encode(&a));
        let a2: BlockingConnection = provide_fds(fds, || codec::decode(&bytes.unwrap())).unwrap();
        assert_eq!(a2.max_frame_len(), crate::DEFAULT_MAX_FRAME_LEN);
        assert!(matches!(
            a.send(&"long"),
            Err(Error::Frame(FrameError::TooLarge { .. }))
        ));
        drop(b);
    }
}
