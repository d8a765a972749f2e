//! A manager link's fast path between processes of one machine: the requests and
//! the answers go through two rings in shared memory, and the socket stays as the
//! link's life line (its close is how either side learns the other is gone).
//!
//! A link carries one request at a time and one answer to each, so each ring has
//! one writer and one reader and never holds more than one message: no lock. The
//! reader spins briefly, then sleeps on the ring's futex word; the writer wakes it
//! only when it sleeps. A message larger than a ring goes on the socket, announced
//! in the ring.

#![allow(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use multiproc_transport::BlockingConnection;
use rustix::event::{PollFd, PollFlags};

use super::error::ManagerError;
use crate::runtime::shm::{self, Segment, SegmentRef};

/// Bytes of each ring.
const RING: usize = 256 << 10;
/// Each ring's header: `tail` (the writer's), `head` (the reader's), the futex
/// word and the reader's "asleep" flag, each on its own cache line.
const TAIL: usize = 0;
const HEAD: usize = 64;
const SEQ: usize = 128;
const ASLEEP: usize = 192;
const DATA: usize = 256;
const SIDE: usize = DATA + RING;
/// A length that says "the message is on the socket".
const ON_SOCKET: u32 = u32::MAX;
/// How long a reader spins before it sleeps. A link's requests come back to back,
/// and the answer to one takes a microsecond or two when both ends run: a fixed
/// spin, unlike the runtime's adaptive one, is not put off by the long idle waits
/// between bursts (the adaptive one took a dict operation from 1 µs to 7 µs).
const SPIN: Duration = Duration::from_micros(50);
/// How often a sleeping reader looks whether the other side is still there.
const WATCH: Duration = Duration::from_millis(50);

/// Which ring a side writes: the client writes requests, the server answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Client,
    Server,
}

/// The error of rings that could not be made or mapped.
fn rings(e: crate::runtime::shm::MapError) -> ManagerError {
    match e {
        crate::runtime::shm::MapError::Exhausted(source) => ManagerError::Exhausted {
            what: "no shared memory for a manager link".into(),
            source,
        },
        e => ManagerError::Connect(e.to_string()),
    }
}

/// One end of a link's rings.
pub(crate) struct Channel {
    seg: Arc<Segment>,
    /// Where the ring this end writes starts, and the one it reads.
    tx: usize,
    rx: usize,
}

impl Channel {
    /// New rings, made by the client: their place, for the server.
    pub(crate) fn create() -> Result<(Channel, SegmentRef), ManagerError> {
        let seg = Segment::create("multiproc-manager-link", 2 * SIDE).map_err(rings)?;
        let at = seg.at();
        Ok((Channel::new(Arc::new(seg), Side::Client), at))
    }

    /// The server's end of the rings at `at`.
    pub(crate) fn open(at: SegmentRef) -> Result<Channel, ManagerError> {
        let seg = Segment::open(at).map_err(rings)?;
        if seg.len() != 2 * SIDE {
            return Err(ManagerError::Decode(
                "a link's rings of another size".into(),
            ));
        }
        Ok(Channel::new(Arc::new(seg), Side::Server))
    }

    fn new(seg: Arc<Segment>, side: Side) -> Channel {
        let (tx, rx) = match side {
            Side::Client => (0, SIDE),
            Side::Server => (SIDE, 0),
        };
        Channel { seg, tx, rx }
    }

    /// Sends one message (on `socket` if it is larger than the ring).
    pub(crate) fn send(
        &self,
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
        let tail = self.seg.u64_at(self.tx + TAIL).load(Ordering::Relaxed);
        let head = self.seg.u64_at(self.tx + HEAD).load(Ordering::Acquire);
        // One message at a time: the reader has taken the last one.
        debug_assert_eq!(tail, head, "one message in flight");
        let len = if msg.len() + 4 <= RING {
            msg.len() as u32
        } else {
            ON_SOCKET
        };
        self.write(tail, &len.to_le_bytes());
        if len != ON_SOCKET {
            self.write(tail + 4, msg);
        }
        let end = tail
            + 4
            + if len == ON_SOCKET {
                0
            } else {
                msg.len() as u64
            };
        self.seg
            .u64_at(self.tx + TAIL)
            .store(end, Ordering::Release);
        // The tail's store before the look at the flag; the reader does the reverse.
        fence(Ordering::SeqCst);
        if self.seg.u32_at(self.tx + ASLEEP).load(Ordering::Relaxed) != 0 {
            let seq = self.seg.u32_at(self.tx + SEQ);
            seq.fetch_add(1, Ordering::Release);
            shm::wake(seq, 1);
        }
        // After the announcement: the reader is reading the socket while this
        // writes a message larger than the socket's buffer.
        if len == ON_SOCKET {
            socket.send_bytes(msg)?;
        }
        Ok(())
    }

    /// Receives one message into `out`: it waits, spinning and then sleeping, until
    /// one comes, or the other side's socket closes ([`ManagerError::Gone`]).
    pub(crate) fn recv(
        &self,
        out: &mut Vec<u8>,
        socket: &mut BlockingConnection,
    ) -> Result<(), ManagerError> {
        let head = self.seg.u64_at(self.rx + HEAD).load(Ordering::Relaxed);
        let tail_word = self.seg.u64_at(self.rx + TAIL);
        let arrived = || tail_word.load(Ordering::Acquire) != head;
        if !arrived() && !spin_until(&arrived) {
            self.sleep(&arrived, socket)?;
        }
        let mut len = [0u8; 4];
        self.read(head, &mut len);
        let len = u32::from_le_bytes(len);
        let end = if len == ON_SOCKET {
            *out = socket.recv_bytes()?;
            head + 4
        } else {
            out.clear();
            out.resize(len as usize, 0);
            self.read(head + 4, out);
            head + 4 + u64::from(len)
        };
        // Empty again: both ends start over at the ring's start.
        let _ = end;
        self.seg.u64_at(self.rx + HEAD).store(0, Ordering::Release);
        tail_word.store(0, Ordering::Release);
        Ok(())
    }

    fn sleep(
        &self,
        arrived: &dyn Fn() -> bool,
        socket: &BlockingConnection,
    ) -> Result<(), ManagerError> {
        let seq = self.seg.u32_at(self.rx + SEQ);
        let asleep = self.seg.u32_at(self.rx + ASLEEP);
        loop {
            let seen = seq.load(Ordering::Acquire);
            asleep.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if arrived() {
                asleep.store(0, Ordering::Relaxed);
                return Ok(());
            }
            shm::wait(seq, seen, Some(WATCH));
            asleep.store(0, Ordering::Relaxed);
            if arrived() {
                return Ok(());
            }
            if peer_gone(socket) {
                return Err(ManagerError::Gone("the other end hung up".into()));
            }
        }
    }

    fn write(&self, at: u64, bytes: &[u8]) {
        // SAFETY: this end is the ring's only writer, and the reader does not read
        // past the tail, which is stored after these bytes.
        let data = unsafe { self.seg.bytes_mut(self.tx + DATA, RING) };
        multiproc_core::ring::copy_in(data, at, bytes);
    }

    fn read(&self, at: u64, out: &mut [u8]) {
        // SAFETY: this end is the ring's only reader; the writer wrote these bytes
        // before the tail it stored (read with `Acquire`), and writes no more until
        // this message is taken.
        let data = unsafe { self.seg.bytes_mut(self.rx + DATA, RING) };
        multiproc_core::ring::copy_out(data, at, out);
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
