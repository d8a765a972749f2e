//! The error type of the transport.

use multiproc_core::{CodecError, Exhausted};

use crate::FrameError;

/// A transport operation failed.
///
/// Only [`Error::Frame`] with [`FrameError::BadLength`] or [`FrameError::Truncated`],
/// [`Error::Io`] and [`Error::Eof`] leave a connection unusable; after the other errors
/// the next message can still be sent or received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer closed its end: nothing more will arrive, or nothing more can be sent.
    #[error("the peer closed the connection")]
    Eof,
    /// This end was closed with `close()`; make a new connection.
    #[error("the connection is closed")]
    Closed,
    /// `send` was called on the read-only end of a one-way pipe.
    #[error("the connection is read-only: send on the other end of the pipe")]
    ReadOnly,
    /// `recv` or `poll` was called on the write-only end of a one-way pipe.
    #[error("the connection is write-only: receive on the other end of the pipe")]
    WriteOnly,
    /// A frame was over the maximum length or malformed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A received message did not decode as the requested type; it was consumed.
    #[error("cannot decode the received message")]
    Decode(#[source] CodecError),
    /// A message to send could not be encoded; nothing was sent.
    #[error("cannot encode the message to send")]
    Encode(#[source] CodecError),
    /// A connection must be readable, writable or both.
    #[error("a connection must be readable, writable or both")]
    NoDirection,
    /// The file descriptor is neither a socket nor a pipe.
    #[error("a connection needs a socket or a pipe file descriptor")]
    NotSocketOrPipe,
    /// An async operation ran outside a tokio runtime.
    #[error("an async connection needs a tokio runtime; use a BlockingConnection outside one")]
    NoRuntime,
    /// More file descriptors than one message can carry.
    #[error("cannot pass {count} file descriptors in one message (the limit is {max})")]
    TooManyFds {
        /// How many were given.
        count: usize,
        /// The limit, [`MAX_FDS_PER_MESSAGE`](crate::MAX_FDS_PER_MESSAGE).
        max: usize,
    },
    /// File descriptors were given with no data byte to carry them.
    #[error("file descriptors need at least one byte of data to travel with")]
    FdsWithoutData,
    /// The peer sent more file descriptors than the receiver had room for; the extra
    /// ones were closed by the kernel and the link is out of step.
    #[error("the peer sent more than {max} file descriptors in one message")]
    FdsTruncated {
        /// How many the receiver had room for.
        max: usize,
    },
    /// The authkey handshake failed (CPython's `AuthenticationError`).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// An address that names nothing this side can listen on or connect to.
    #[error("bad address: {0}")]
    Address(String),
    /// The system refused a descriptor for want of room (`EMFILE`, `ENFILE`,
    /// `ENOMEM`): the message names the limit and how to raise it.
    #[error(transparent)]
    Exhausted(#[from] Exhausted),
    /// The operating system reported an error.
    #[error("i/o error on the connection")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The error for a call that creates a descriptor: [`Error::Exhausted`] when the
    /// system is out of them (or of memory), else [`Error::Io`].
    pub(crate) fn creating(e: impl Into<std::io::Error>) -> Error {
        let e = e.into();
        match crate::exhausted(&e, crate::Resource::Fd) {
            Some(x) => Error::Exhausted(x),
            None => Error::Io(e),
        }
    }
}

/// The result type of the transport.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rustix::io::Errno> for Error {
    fn from(errno: rustix::io::Errno) -> Self {
        Error::Io(errno.into())
    }
}

impl From<Error> for std::io::Error {
    /// For callers in `std::io` contexts: OS errors come back as they were, the end of
    /// the stream as [`UnexpectedEof`](std::io::ErrorKind::UnexpectedEof), the rest as
    /// [`std::io::Error::other`] with the transport error inside.
    fn from(e: Error) -> Self {
        match e {
            Error::Io(io) | Error::Frame(FrameError::Io(io)) => io,
            Error::Eof => std::io::Error::new(std::io::ErrorKind::UnexpectedEof, Error::Eof),
            e => std::io::Error::other(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let all = [
            Error::Eof,
            Error::Closed,
            Error::ReadOnly,
            Error::WriteOnly,
            Error::Frame(FrameError::BadLength(-2)),
            Error::NoDirection,
            Error::NotSocketOrPipe,
            Error::NoRuntime,
            Error::TooManyFds {
                count: 300,
                max: 253,
            },
            Error::FdsWithoutData,
            Error::FdsTruncated { max: 1 },
            Error::Exhausted(Exhausted::SystemFiles { max: None }),
            Error::Io(std::io::ErrorKind::Other.into()),
        ];
        for e in all {
            let s = e.to_string();
            assert!(s.starts_with(|c: char| c.is_lowercase()), "{s}");
            assert!(!s.ends_with('.'), "{s}");
        }
    }

    #[test]
    fn codec_errors_keep_their_cause_as_source() {
        let cause = multiproc_core::codec::decode::<u8>(b"\xc1").unwrap_err();
        let e = Error::Decode(cause);
        let source = std::error::Error::source(&e).expect("decode error has a source");
        assert!(source.to_string().contains("u8"), "{source}");
    }

    #[test]
    fn converts_to_std_io_error_keeping_the_kind() {
        let io = std::io::Error::from(Error::Io(std::io::ErrorKind::PermissionDenied.into()));
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
        let io = std::io::Error::from(Error::Eof);
        assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
        let io = std::io::Error::from(Error::ReadOnly);
        assert_eq!(io.to_string(), Error::ReadOnly.to_string());
    }

    #[test]
    fn a_descriptor_the_system_has_no_room_for_is_exhaustion() {
        let e = Error::creating(rustix::io::Errno::MFILE);
        assert!(
            matches!(e, Error::Exhausted(Exhausted::OpenFiles { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("RLIMIT_NOFILE"), "{e}");
        let e = Error::creating(rustix::io::Errno::ACCESS);
        assert!(matches!(e, Error::Io(_)), "{e:?}");
    }

    #[test]
    fn errno_converts_to_io() {
        let e = Error::from(rustix::io::Errno::BADF);
        assert!(matches!(e, Error::Io(ref io) if io.raw_os_error() == Some(9)));
    }
}
