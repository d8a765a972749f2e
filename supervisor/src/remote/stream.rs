//! The TCP stream of a plain (not TLS) node session, handed to the engine as its
//! "external" transport so that its reads are buffered.
//!
//! The engine reads a frame as a `u64` length, then its body, then the next length:
//! on a bare socket that is three `recv`s a message, the last one finding nothing.
//! Through a buffer, one `recv` takes the length and the body together, and reads less
//! than the buffer holds, which tells tokio the socket is drained: the next length
//! waits for the socket's next readiness without a system call. The bytes on the wire
//! are the engine's own; writes go straight to the socket (the engine batches them).
//! With TLS, rustls buffers its records already, and the engine's own path is kept.

use std::net::SocketAddr;

use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream};
use tokio::net::TcpStream;

/// How much one read may take: a few messages, or a large one in few reads.
const READ_BUFFER: usize = 64 << 10;

/// A connected TCP stream and its peer's address, which names the session.
#[derive(Debug)]
pub(crate) struct Buffered {
    stream: TcpStream,
    peer: SocketAddr,
}

impl Buffered {
    /// Wraps a connected stream, with `TCP_NODELAY` set: a request waits for no ACK.
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr) -> Buffered {
        let _ = stream.set_nodelay(true);
        Buffered { stream, peer }
    }
}

impl ClusterBidiStream for Buffered {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let (read, write) = self.stream.into_split();
        (
            Box::new(tokio::io::BufReader::with_capacity(READ_BUFFER, read)),
            Box::new(write),
        )
    }

    /// The engine reports it as the session's `peer_addr`, as it does for its own
    /// streams.
    fn peer_label(&self) -> Option<String> {
        Some(self.peer.to_string())
    }

    fn local_label(&self) -> Option<String> {
        self.stream.local_addr().ok().map(|a| a.to_string())
    }
}
