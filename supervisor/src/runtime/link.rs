//! A control link: two rings in shared memory between a parent and a child (or two
//! siblings, over a link their parent brokered: `router/sibling.rs`), for the
//! messages, beside one Unix stream socket, the link's life line (its end is how
//! either side learns the other is gone) and the path of what the rings cannot take.
//! Every thread that sends writes, one task reads, and a caller waiting for a reply
//! may read for it.
//!
//! # Writing
//!
//! See `link/write.rs`: a sender writes into the ring itself, on its own thread, and
//! rings the reader's doorbell on the socket only when the reader sleeps.
//!
//! # Reading
//!
//! See `link/read.rs`: one task reads, and hands what it reads to the router through
//! an inbox the router registers; a caller waiting for its reply reads the ring for it
//! while it spins. A message that does not decode costs that one message; a
//! ring whose positions or record lengths cannot be true, and a socket stream that can
//! no longer be framed, end the link.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use multiproc_core::Packet;
use multiproc_core::spsc::Corruption;
use multiproc_core::wire;
use rustix::net::SendFlags;
use tokio::sync::{Notify, oneshot};

use crate::runtime::ring::{Bell, Rings, Rx, Scribble, Tx};

mod fds;
mod read;
mod socket;
mod write;

pub(crate) use socket::Socket;

pub(crate) use read::{INBOXES, Inbox, LinkEnd};
use write::WriteState;

/// What can be sent on a link.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A packet, encoded by the sender.
    Packet(Packet),
    /// Bytes framed as they are, on the socket; only for tests that feed a link
    /// garbage.
    Raw(Vec<u8>),
    /// Answered once everything sent before it has been written.
    Flush(oneshot::Sender<()>),
}

/// Why a send did not happen.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The link is closed.
    Closed,
    /// The packet cannot go on the wire (it does not encode, or it is over the frame
    /// limit); nothing was written.
    Refused(Packet, String),
}

/// Why an envelope was not sent.
#[derive(Debug)]
pub(crate) enum EnvelopeError {
    /// The link is closed.
    Closed,
    /// Over the frame limit.
    Refused(String),
}

/// Where the messages read from a link come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// This process's parent.
    Parent,
    /// Child number `n` of this process.
    Child(u32),
    /// Child number `n` of this process's parent, over a direct link.
    Sibling(u32),
}

/// One end of a control link.
#[derive(Debug)]
pub(crate) struct Link {
    stream: Socket,
    peer: Peer,
    /// Whether the reader spins a little before it sleeps (a child's link to its
    /// parent, where calls come back to back; never in a parent, whose callers read
    /// their own replies).
    spin: bool,
    write: Mutex<WriteState>,
    read: Mutex<read::ReadState>,
    /// The sleep words of the ring this end reads.
    bell: Bell,
    /// Wakes the flusher.
    queued: Notify,
    /// Wakes the reader task, when a caller that read for it lets go.
    kick: Notify,
    /// The reader task found the ring taken by a caller and waits for a kick.
    reader_waiting: AtomicBool,
    /// Messages wait in the backlog or bytes for the socket: the flusher has work.
    backlogged: AtomicBool,
    closed: AtomicBool,
    /// What the writer found corrupt in the reader's position; the reader ends with it.
    corrupt: Mutex<Option<Corruption>>,
    /// The flusher task, until [`Link::shut`] waits for it.
    flusher: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    /// Whether the ring may be read: a direct link to a sibling is written at once
    /// but read only once the parent says the sibling's routed messages are in.
    readable: AtomicBool,
    /// Descriptors received on the socket, for the packets that announced them.
    received_fds: Mutex<VecDeque<OwnedFd>>,
}

impl Link {
    /// Wraps a connected socket (registered with the process runtime) and this end
    /// of the link's rings, and starts its flusher task.
    pub(crate) fn new(stream: Socket, rings: Rings, peer: Peer, spin: bool) -> Arc<Link> {
        let (tx, rx) = rings.split();
        Link::from_parts(stream, tx, rx, peer, spin)
    }

    /// As [`Link::new`], with rings already split (and written to, or read from, before
    /// the link was served: a child's early messages to its parent).
    pub(crate) fn from_parts(stream: Socket, tx: Tx, rx: Rx, peer: Peer, spin: bool) -> Arc<Link> {
        let bell = rx.bell();
        let link = Arc::new(Link {
            stream,
            peer,
            spin: spin && crate::runtime::spin::multi_cpu(),
            write: Mutex::new(WriteState::new(tx)),
            read: Mutex::new(read::ReadState::new(rx)),
            bell,
            queued: Notify::new(),
            kick: Notify::new(),
            reader_waiting: AtomicBool::new(false),
            backlogged: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            corrupt: Mutex::new(None),
            flusher: Mutex::new(None),
            readable: AtomicBool::new(true),
            received_fds: Mutex::new(VecDeque::new()),
        });
        // Parked: it first waits for a message that does not fit, which most links
        // never send, and a worker woken to see it wait costs every start a wake-up.
        let flusher = crate::runtime::spawn_parked(Arc::clone(&link).flush_loop());
        *link.flusher.lock().unwrap_or_else(|e| e.into_inner()) = Some(flusher);
        link
    }

    fn state(&self) -> MutexGuard<'_, WriteState> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the link is closed for writing.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether the peer has closed its end of the socket.
    pub(crate) fn peer_hung_up(&self) -> bool {
        use rustix::event::{PollFd, PollFlags};
        let mut fds = [PollFd::new(&self.stream, PollFlags::RDHUP)];
        matches!(rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())), Ok(n) if n > 0)
            && fds[0]
                .revents()
                .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
    }

    /// Where the messages read from it come from.
    pub(crate) fn peer(&self) -> Peer {
        self.peer
    }

    /// Holds the ring unread (callers do not read it for their replies) until
    /// [`Link::release`].
    pub(crate) fn hold(&self) {
        self.readable.store(false, Ordering::Release);
    }

    /// Lets the ring be read.
    pub(crate) fn release(&self) {
        self.readable.store(true, Ordering::Release);
    }

    /// The next `n` descriptors received on the socket, in the order they came;
    /// `None` (and none taken) when fewer came.
    pub(crate) fn take_fds(&self, n: usize) -> Option<Vec<OwnedFd>> {
        let mut fds = self.received_fds.lock().unwrap_or_else(|e| e.into_inner());
        (fds.len() >= n).then(|| fds.drain(..n).collect())
    }

    fn corruption(&self) -> Option<Corruption> {
        *self.corrupt.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Damages the ring this end writes, then rings the peer's doorbell so that it
    /// looks: for tests of what a reader does with corrupt shared memory.
    pub(crate) fn damage_for_test(&self, damage: RingDamage) {
        let mut st = self.state();
        match damage {
            RingDamage::TailBehindHead => st.tx.scribble_for_test(Scribble::TailBehindHead),
            RingDamage::TailPastRing => st.tx.scribble_for_test(Scribble::TailPastRing),
            RingDamage::LengthPastRing => st.tx.publish_bad_length_for_test(u32::MAX),
        }
        let _ = rustix::net::send(&self.stream, &[0; 4], SendFlags::NOSIGNAL);
    }

    /// Writes a whole message into the ring, then SIGKILLs this process before the
    /// message's tail is published: what a writer killed in the middle of a write
    /// leaves behind.
    pub(crate) fn die_mid_write_for_test(&self) {
        let mut st = self.state();
        st.tx.write_unpublished_for_test(&[wire::PACKET, 0xc0]);
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        loop {
            std::thread::park();
        }
    }
}

/// What a test does to the ring a link writes, to see what its reader makes of
/// corrupt shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RingDamage {
    /// The ring's tail behind its head.
    TailBehindHead,
    /// The ring's tail more than a ring ahead of its head.
    TailPastRing,
    /// A record whose length runs past the ring.
    LengthPastRing,
}
