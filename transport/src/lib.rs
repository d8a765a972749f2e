//! How bytes and messages move between multiproc processes.
//!
//! ```
//! use multiproc_transport::{Error, pipe};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! let (mut parent, mut child) = pipe(true)?;
//! parent.send(&vec![1, 2, 3]).await?;
//! let got: Vec<i32> = child.recv().await?;
//! child.send(&got.iter().sum::<i32>()).await?;
//! assert_eq!(parent.recv::<i32>().await?, 6);
//! # Ok(())
//! # }
//! ```
//!
//! # Connections
//!
//! [`Connection`] (async) and [`BlockingConnection`] (for threads without a runtime)
//! are Python's `multiprocessing.connection.Connection`: `send`/`recv` carry any serde
//! type encoded with [`multiproc_core::codec`], `send_bytes`/`recv_bytes` raw bytes,
//! and `poll` waits for a message. Both are views of the same state and convert into
//! each other with `From`. A message that does not decode is an [`Error::Decode`] and
//! is consumed, so the link stays usable; a peer that is gone is [`Error::Eof`].
//!
//! # Pipes and waiting
//!
//! [`pipe`] and [`blocking_pipe`] make a connected pair, like Python's `Pipe(duplex)`:
//! a socketpair when duplex, an OS pipe (read end first) when not. [`wait`] and
//! [`blocking_wait`] wait for any of several connections, like
//! `multiprocessing.connection.wait`.
//!
//! # Frames
//!
//! On the wire every message is a [`frame`] in CPython's format: a 4-byte
//! big-endian length (or −1 and an 8-byte length), then the payload. Each link has a
//! maximum frame length: longer outgoing messages are refused with nothing written,
//! longer incoming ones are reported and skipped. A [`Connection`] takes any length by
//! default ([`DEFAULT_MAX_FRAME_LEN`], as CPython), multiproc's control links
//! [`MAX_FRAME_LEN`]; memory is spent as bytes arrive, never on a length prefix.
//! [`FrameDecoder`] is the pure parser; [`FrameReader`] runs it over any `AsyncRead`.
//!
//! # Listeners and clients
//!
//! [`Listener`] and [`client`] connect processes that did not start each other, over
//! TCP or Unix sockets (an [`Address`]), with CPython's authkey handshake
//! ([`auth`]): a CPython `multiprocessing.connection.Client` can talk to a
//! [`Listener`], and [`client`] to a CPython `Listener`.
//!
//! # Exhaustion
//!
//! A descriptor, a mapping or a process that the system refuses for want of room is
//! [`Error::Exhausted`], never a bare errno: [`exhausted`] reads the limit that was
//! reached (`RLIMIT_NOFILE`, `fs.file-max`, `vm.max_map_count`, `RLIMIT_AS`, a cgroup's
//! `pids.max`, …) so that the message names it and says how to raise it.
//!
//! # Passing file descriptors
//!
//! [`send_with_fds`] and [`recv_with_fds`] move fds over a Unix socket. A connection
//! serialized inside [`collect_fds`] travels as an index into the collected fds, and
//! is rebuilt inside [`provide_fds`] in the child; this is how a connection becomes
//! an argument of a child process.
#![doc(test(attr(deny(warnings))))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "multiproc runs on Linux only: it is built on pidfds, PR_SET_PDEATHSIG, memfds, futexes \
     and /proc (see the README)"
);

pub mod auth;
mod connection;
mod endpoint;
mod error;
mod exhaustion;
mod fdpass;
pub mod frame;
#[doc(hidden)]
pub mod fuzz;
mod listener;
mod pipe;
mod wait;

pub use connection::{BlockingConnection, Connection};
pub use error::{Error, Result};
pub use exhaustion::{Resource, exhausted};
pub use fdpass::{
    MAX_FDS_PER_MESSAGE, collect_fds, provide_fds, recv_with_fds, send_with_fds, try_send_with_fds,
};
pub use frame::{DEFAULT_MAX_FRAME_LEN, FrameDecoder, FrameError, FrameReader, MAX_FRAME_LEN};
pub use listener::{Address, Listener, Pending, client, client_with_timeout};
pub use pipe::{blocking_pipe, pipe};
pub use wait::{blocking_wait, wait};
