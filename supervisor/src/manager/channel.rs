//! A manager link's fast path between processes of one machine: the requests and
//! the answers go through the runtime's rings in shared memory (the same rings as a
//! control link's), and the socket stays as the link's life line (its close is how
//! either side learns the other is gone).
//!
//! A link carries one request at a time and one answer to each, between two plain
//! threads. The reader spins briefly, then sleeps on the ring's futex; the writer
//! wakes it only when it sleeps. A message larger than a quarter of a ring goes on the
//! socket, announced in the ring.

use std::time::{Duration, Instant};

use multiproc_core::spsc::WriteError;
use multiproc_transport::BlockingConnection;
use rustix::event::{PollFd, PollFlags};

use super::error::ManagerError;
use crate::runtime::ring::{AdoptError, Next, Rings, Rx, Tx, Wake};
use crate::runtime::shm::{MapError, SegmentRef};

/// Bytes of each ring: messages up to a quarter of it go in the ring.
const RING: usize = 256 << 10;
/// How long a reader spins before it sleeps. A link's requests come back to back,
/// and the answer to one takes a microsecond or two when both ends run: a fixed
/// spin, unlike the runtime's adaptive one, is not put off by the long idle waits
/// between bursts (the adaptive one took a dict operation from 1 µs to 7 µs).
const SPIN: Duration = Duration::from_micros(50);
/// How often a sleeping reader looks whether the other side is still there.
const WATCH: Duration = Duration::from_millis(50);

/// The error of rings that could not be made or mapped.
fn rings(e: MapError) -> ManagerError {
    match e {
        MapError::Exhausted(source) => ManagerError::Exhausted {
            what: "no shared memory for a manager link".into(),
            source,
        },
        e => ManagerError::Connect(e.to_string()),
    }
}

/// One end of a link's rings.
#[derive(Debug)]
pub(crate) struct Channel {
    tx: Tx,
    rx: Rx,
}

impl Channel {
    /// New rings, made by the client: their place, for the server.
    pub(crate) fn create() -> Result<(Channel, SegmentRef), ManagerError> {
        let (rings, at) = Rings::create_hosted(RING).map_err(rings)?;
        let (tx, rx) = rings.split();
        Ok((Channel { tx, rx }, at))
    }

    /// The server's end of the rings at `at`.
    pub(crate) fn open(at: SegmentRef) -> Result<Channel, ManagerError> {
        let (tx, rx) = Rings::open_hosted(at, RING)
            .map_err(|e| match e {
                AdoptError::Map(e) => rings(e),
                e @ AdoptError::NotRings(_) => ManagerError::Decode(e.to_string()),
            })?
            .split();
        Ok(Channel { tx, rx })
    }

    /// Sends one message (on `socket` if it is too large for the ring).
    pub(crate) fn send(
        &mut self,
        msg: &[u8],
        socket: &mut BlockingConnection,
    ) -> Result<(), ManagerError> {
        if msg.len() > socket.max_frame_len() {
            return Err(ManagerError::Encode(format!(
                "a message of {} bytes is over the link's limit of {}",
                msg.len(),
                socket.max_frame_len()
            )));
        }
        let large = msg.len() > self.tx.max_message();
        let wake = if large {
            self.tx.mark_on_socket()
        } else {
            self.tx.write(msg)
        }
        .map_err(|e| match e {
            // One message at a time: the reader has taken the last one, so a ring
            // that is full or whose positions are wrong is a broken peer.
            WriteError::Corrupt(c) => ManagerError::Gone(c.to_string()),
            e => ManagerError::Gone(e.to_string()),
        })?;
        // Its reader sleeps on the futex, whatever it announced first.
        if wake != Wake::No {
            self.tx.wake_futex();
        }
        // After the announcement: the reader is reading the socket while this
        // writes a message larger than the socket's buffer.
        if large {
            socket.send_bytes(msg)?;
        }
        Ok(())
    }

    /// Receives one message into `out`: it waits, spinning and then sleeping, until
    /// one comes, or the other side's socket closes ([`ManagerError::Gone`]).
    pub(crate) fn recv(
        &mut self,
        out: &mut Vec<u8>,
        socket: &mut BlockingConnection,
    ) -> Result<(), ManagerError> {
        if self.rx.is_empty() && !spin_until(&|| !self.rx.is_empty()) {
            while self.rx.is_empty() {
                self.rx.sleep_futex(WATCH);
                if self.rx.is_empty() && peer_gone(socket) {
                    return Err(ManagerError::Gone("the other end hung up".into()));
                }
            }
        }
        match self.rx.next(out, |_| true) {
            Ok((Next::Message, _)) => Ok(()),
            Ok((Next::OnSocket, _)) => {
                *out = socket.recv_bytes()?;
                Ok(())
            }
            Ok((Next::Empty | Next::Declined, _)) => {
                Err(ManagerError::Gone("a link's ring lost a message".into()))
            }
            Err(c) => Err(ManagerError::Gone(c.to_string())),
        }
    }
}

/// Spins until `arrived` (`true`), or [`SPIN`] has passed (`false`); never on a
/// single CPU, where the writer cannot run while this spins.
fn spin_until(arrived: &dyn Fn() -> bool) -> bool {
    if !crate::runtime::spin::multi_cpu() {
        return false;
    }
    let started = Instant::now();
    while started.elapsed() < SPIN {
        for _ in 0..16 {
            std::hint::spin_loop();
        }
        if arrived() {
            return true;
        }
    }
    false
}

/// Whether the other end of `socket` has closed it.
pub(crate) fn peer_gone(socket: &BlockingConnection) -> bool {
    let Ok(fd) = socket.as_fd() else {
        return true;
    };
    let mut fds = [PollFd::new(&fd, PollFlags::RDHUP)];
    matches!(rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
}
