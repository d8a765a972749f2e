//! A control link: two rings in shared memory between a parent and a child (or two
//! siblings, over a link their parent brokered: `link/sibling.rs`), for the
//! messages, beside one Unix stream socket, the link's life line (its end is how
//! either side learns the other is gone) and the path of what the rings cannot take.
//! Every thread that sends writes, one task reads, and a caller waiting for a reply
//! may read for it.
//!
//! # Writing
//!
//! A sender writes its message into the ring itself, on its own thread: a message
//! does not wait for a writer task to be scheduled (on these VMs, waking a thread on
//! the other CPU costs 15–20 µs). An envelope is laid out straight into the ring, with
//! no encoding buffer. A message over a quarter of the ring goes on the socket,
//! announced by a marker in the ring, so the reader takes it in its place. When the
//! ring is full, the rest is queued and a flusher task moves it into the ring as the
//! reader makes room (the reader rings when it does; the flusher also looks every
//! [`ROOM_POLL`], a bound that holds whatever the peer does); later messages queue
//! behind it, so messages leave in the order they were sent. A message that did not
//! have to queue is in shared memory when `send` returns (its tail published), so it
//! reaches the peer even if this process is killed the next instant.
//!
//! # Waking the reader
//!
//! A reader that finds its ring empty announces that it sleeps and waits for the
//! socket to be readable; a writer that finds that announcement takes it back and
//! writes an empty frame, a *doorbell*, on the socket. So a message costs a system
//! call only when its reader sleeps, and a sleeping reader is an ordinary tokio task
//! in epoll: a thread per link waiting on a futex would cost a parent with a thousand
//! children a thousand threads, and its wake-up a second thread switch per message.
//!
//! # Reading
//!
//! See `link/read.rs`: one task reads; a caller waiting for its reply reads the ring
//! for it while it spins. A message that does not decode costs that one message; a
//! ring whose positions or record lengths cannot be true, and a socket stream that can
//! no longer be framed, end the link.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use multiproc_core::spsc::{Corruption, WriteError};
use multiproc_core::wire::{self, EnvelopeRef};
use multiproc_core::{Packet, codec};
use multiproc_transport::MAX_FRAME_LEN;
use rustix::net::SendFlags;
use tokio::sync::{Notify, oneshot};

use crate::runtime::ring::{Bell, Rings, Rx, Scribble, Tx, Wake};

mod fds;
mod read;
pub(crate) mod sibling;
mod socket;

pub(crate) use socket::Socket;

pub(crate) use read::LinkEnd;

/// How often a writer waiting for room in a full ring looks again, whatever its
/// reader does (a reader that is stopped, or that corrupted the flag, never rings).
const ROOM_POLL: Duration = Duration::from_millis(10);

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

#[derive(Debug)]
struct WriteState {
    tx: Tx,
    /// Messages waiting for room in the ring, from `backlog_at` on: each a `u32`
    /// length and the bytes.
    backlog: Vec<u8>,
    backlog_at: usize,
    /// Bytes for the socket not yet written, from `sock_at` on.
    sock: Vec<u8>,
    sock_at: usize,
    /// Reused for encoding packets, so a send allocates nothing once warm.
    scratch: Vec<u8>,
    /// Flush requests waiting for the backlog and the socket to drain.
    flushes: Vec<oneshot::Sender<()>>,
    /// Descriptors to send with the socket bytes at the offset (in `sock`) each names.
    sock_fds: VecDeque<(usize, Vec<OwnedFd>)>,
}

impl WriteState {
    fn is_idle(&self) -> bool {
        self.backlog_at == self.backlog.len() && self.sock_at == self.sock.len()
    }
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
            write: Mutex::new(WriteState {
                tx,
                backlog: Vec::new(),
                backlog_at: 0,
                sock: Vec::new(),
                sock_at: 0,
                scratch: Vec::new(),
                flushes: Vec::new(),
                sock_fds: VecDeque::new(),
            }),
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

    /// Sends `out`, into the ring at once when nothing is queued.
    pub(crate) fn send(&self, out: Outgoing) -> Result<(), SendError> {
        let mut st = self.state();
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        let st = &mut *st;
        match out {
            Outgoing::Packet(packet) => {
                let mut msg = std::mem::take(&mut st.scratch);
                msg.clear();
                msg.push(wire::PACKET);
                if let Err(e) = codec::encode_into(&packet, &mut msg) {
                    st.scratch = msg;
                    return Err(SendError::Refused(packet, e.to_string()));
                }
                if msg.len() > MAX_FRAME_LEN {
                    let why = format!(
                        "{} bytes is over the frame limit of {MAX_FRAME_LEN}",
                        msg.len()
                    );
                    st.scratch = msg;
                    return Err(SendError::Refused(packet, why));
                }
                let sent = self.put(st, msg.len(), |out| out.copy_from_slice(&msg));
                st.scratch = msg;
                if sent.is_err() {
                    return Err(SendError::Closed);
                }
            }
            Outgoing::Raw(bytes) => self.put_socket_frame(st, &bytes),
            Outgoing::Flush(done) => {
                if st.is_idle() {
                    let _ = done.send(());
                } else {
                    st.flushes.push(done);
                }
            }
        }
        Ok(())
    }

    /// Sends `packet` on the socket, with `fds` attached to its first bytes (a
    /// Unix socket carries descriptors beside bytes, a ring cannot). It is handed on
    /// as soon as it is read, not in the ring's order: what must follow something
    /// else must be ordered by its users.
    pub(crate) fn send_with_fds(
        &self,
        packet: &Packet,
        fds: Vec<OwnedFd>,
    ) -> Result<(), SendError> {
        let mut msg = vec![wire::PACKET | wire::DIRECT];
        if let Err(e) = codec::encode_into(packet, &mut msg) {
            return Err(SendError::Refused(packet.clone(), e.to_string()));
        }
        let mut st = self.state();
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if !fds.is_empty() {
            let at = st.sock.len();
            st.sock_fds.push_back((at, fds));
        }
        self.put_socket_frame(&mut st, &msg);
        Ok(())
    }

    /// Sends an envelope, laid out straight into the ring when nothing is queued.
    pub(crate) fn send_envelope(&self, env: &EnvelopeRef<'_>) -> Result<(), EnvelopeError> {
        let len = env.encoded_len();
        if len > MAX_FRAME_LEN {
            return Err(EnvelopeError::Refused(format!(
                "{len} bytes is over the frame limit of {MAX_FRAME_LEN}"
            )));
        }
        let mut st = self.state();
        if self.is_closed() {
            return Err(EnvelopeError::Closed);
        }
        self.put(&mut st, len, |out| env.write(out))
            .map_err(|_| EnvelopeError::Closed)
    }

    /// Writes one message of `len` bytes that `fill` lays out: into the ring, on the
    /// socket behind a marker when it is too large for the ring, or into the backlog
    /// when something waits there already or the ring is full. `Err` when the link
    /// is broken (closed, or its ring corrupt).
    fn put(&self, st: &mut WriteState, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), ()> {
        if st.backlog_at != st.backlog.len() {
            return self.backlog_with(st, len, fill);
        }
        let room = if len <= st.tx.max_message() {
            st.tx.reserve(len).map(Some)
        } else {
            st.tx.mark_on_socket().map(|wake| {
                // A thread on the futex is not woken by the frame: it must hand the
                // ring to the reader task, which takes the frame.
                if wake == Wake::Futex {
                    st.tx.wake_futex();
                }
                None
            })
        };
        match room {
            Ok(Some(room)) => {
                let wake = st.tx.commit(room, fill);
                self.wake(st, wake);
                Ok(())
            }
            // No doorbell for a marker: the frame itself wakes a reader sleeping on
            // the socket.
            Ok(None) => {
                frame_into(&mut st.sock, len, fill);
                self.write_socket(st);
                Ok(())
            }
            Err(WriteError::Corrupt(c)) => {
                self.broke(c);
                Err(())
            }
            Err(WriteError::Full | WriteError::TooLarge { .. }) => self.backlog_with(st, len, fill),
        }
    }

    fn backlog_with(
        &self,
        st: &mut WriteState,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), ()> {
        if st.backlog_at == st.backlog.len() {
            st.backlog.clear();
            st.backlog_at = 0;
        }
        st.backlog.extend_from_slice(&(len as u32).to_le_bytes());
        let start = st.backlog.len();
        st.backlog.resize(start + len, 0);
        fill(&mut st.backlog[start..]);
        self.backlogged.store(true, Ordering::Release);
        self.queued.notify_one();
        Ok(())
    }

    /// The writer found the reader's position corrupt: the link is over.
    fn broke(&self, c: Corruption) {
        tracing::error!(error = %c, "a control link's ring is corrupt");
        *self.corrupt.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
        self.close();
        self.kick.notify_one();
    }

    /// Wakes the reader as it asked to be.
    fn wake(&self, st: &mut WriteState, wake: Wake) {
        match wake {
            Wake::No => {}
            Wake::Doorbell => self.doorbell(st),
            Wake::Futex => st.tx.wake_futex(),
        }
    }

    /// Rings the peer's doorbell: an empty frame on the socket. Not when bytes wait
    /// for the socket already: the peer has unread bytes then, which wake it.
    fn doorbell(&self, st: &mut WriteState) {
        if st.sock_at != st.sock.len() {
            return;
        }
        // Four bytes go whole or not at all into a Unix stream socket; a full socket
        // has unread bytes that wake the peer anyway.
        match rustix::net::send(
            &self.stream,
            &[0; 4],
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::debug!(error = %e, "control link closed for writing");
                self.closed.store(true, Ordering::Release);
            }
        }
    }

    /// Rings the doorbell for a peer that waits for room in the ring we read.
    pub(crate) fn ring_for_room(&self) {
        let mut st = self.state();
        if !self.is_closed() {
            self.doorbell(&mut st);
        }
    }

    /// A frame written as it is on the socket, behind what waits for it.
    fn put_socket_frame(&self, st: &mut WriteState, bytes: &[u8]) {
        frame_into(&mut st.sock, bytes.len(), |out| out.copy_from_slice(bytes));
        self.write_socket(st);
    }

    /// Writes what waits for the socket, as far as it takes it now; the flusher
    /// writes the rest as it drains, woken here when a sender's bytes had to stay.
    fn write_socket(&self, st: &mut WriteState) {
        if !self.write_socket_now(st) {
            self.queued.notify_one();
        }
    }

    /// Writes what waits for the socket, as far as it takes it now; `false` when some
    /// had to stay. Wakes nobody: the flusher calls it too, and a flusher that woke
    /// itself for the bytes it could not write would spin until the peer read them.
    fn write_socket_now(&self, st: &mut WriteState) -> bool {
        while st.sock_at < st.sock.len() {
            // Bytes up to the next that carry descriptors, which go in a send of
            // their own: the descriptors ride with its first byte.
            let fds_here = st.sock_fds.front().is_some_and(|(at, _)| *at == st.sock_at);
            let end = st
                .sock_fds
                .iter()
                .map(|(at, _)| *at)
                .find(|at| *at > st.sock_at)
                .unwrap_or(st.sock.len());
            let bytes = &st.sock[st.sock_at..end];
            // Straight to the socket, not through `try_write`: tokio's readiness of
            // a fresh link is empty until its reactor has polled.
            let sent = if fds_here {
                let fds: Vec<BorrowedFd<'_>> = st.sock_fds[0].1.iter().map(AsFd::as_fd).collect();
                fds::send(&self.stream, bytes, &fds)
            } else {
                rustix::net::send(&self.stream, bytes, SendFlags::NOSIGNAL)
                    .map_err(std::io::Error::from)
            };
            match sent {
                Ok(n) => {
                    if fds_here && n > 0 {
                        st.sock_fds.pop_front();
                    }
                    st.sock_at += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.backlogged.store(true, Ordering::Release);
                    return false;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "control link closed for writing");
                    self.closed.store(true, Ordering::Release);
                    return true;
                }
            }
        }
        st.sock.clear();
        st.sock_at = 0;
        st.sock_fds.clear();
        true
    }

    /// Ends the link for writing: later sends fail with [`SendError::Closed`], and the
    /// flusher task lets go of the link, so the socket is closed once its last owner
    /// drops it. Called when the link's reader has ended: nothing written after that
    /// could be answered.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // A stored permit, if the flusher is not waiting yet: it cannot miss this.
        self.queued.notify_one();
    }

    /// Closes the link and waits until its flusher task has let go of it, so the
    /// socket is closed with the link's last owner, not whenever the flusher gets
    /// round to it: a child's link is gone by the time its exit is published.
    pub(crate) async fn shut(&self) {
        self.close();
        let flusher = self
            .flusher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(flusher) = flusher {
            let _ = flusher.await;
        }
    }

    /// Moves the backlog into the ring and the socket bytes into the socket as
    /// there is room, until the link is closed.
    ///
    /// The task owns a reference to the link, so it must end for the socket to be
    /// closed: without [`Link::close`], every child ever started would keep one fd.
    async fn flush_loop(self: Arc<Link>) {
        loop {
            self.queued.notified().await;
            loop {
                let waits = {
                    let mut st = self.state();
                    // Closed while messages wait for room: nothing written now could
                    // be answered, and a peer that no longer reads must not keep the
                    // flusher (and the socket) for ever.
                    if self.is_closed() {
                        st.flushes.clear();
                        return;
                    }
                    match self.drain(&mut st) {
                        Err(()) => {
                            st.flushes.clear();
                            return;
                        }
                        Ok(None) => {
                            self.backlogged.store(false, Ordering::Release);
                            for done in st.flushes.drain(..) {
                                let _ = done.send(());
                            }
                            break;
                        }
                        Ok(Some(waits)) => waits,
                    }
                };
                match waits {
                    Waits::Socket => tokio::select! {
                        writable = self.writable() => {
                            if writable.is_err() {
                                self.closed.store(true, Ordering::Release);
                                return;
                            }
                        }
                        () = self.queued.notified() => {}
                    },
                    Waits::Room => tokio::select! {
                        () = tokio::time::sleep(ROOM_POLL) => {}
                        () = self.queued.notified() => {}
                    },
                }
            }
        }
    }

    /// Writes what it can of the socket bytes and the backlog: `None` when all is
    /// written, else what it waits for.
    /// Waits until the socket takes bytes again.
    async fn writable(&self) -> std::io::Result<()> {
        self.stream.writable().await
    }

    fn drain(&self, st: &mut WriteState) -> Result<Option<Waits>, ()> {
        loop {
            self.write_socket_now(st);
            if self.is_closed() {
                return Err(());
            }
            if st.sock_at != st.sock.len() {
                return Ok(Some(Waits::Socket));
            }
            if st.backlog_at == st.backlog.len() {
                st.backlog.clear();
                st.backlog_at = 0;
                return Ok(None);
            }
            let at = st.backlog_at;
            let len = u32::from_le_bytes(
                st.backlog[at..at + 4]
                    .try_into()
                    .expect("a length prefix of four bytes"),
            ) as usize;
            let msg = at + 4..at + 4 + len;
            let written = if len <= st.tx.max_message() {
                let WriteState { tx, backlog, .. } = &mut *st;
                tx.write(&backlog[msg.clone()])
            } else {
                let marked = st.tx.mark_on_socket();
                if marked.is_ok() {
                    let WriteState { sock, backlog, .. } = &mut *st;
                    frame_into(sock, len, |out| out.copy_from_slice(&backlog[msg.clone()]));
                }
                marked.map(|wake| match wake {
                    Wake::Futex => Wake::Futex,
                    _ => Wake::No,
                })
            };
            match written {
                Ok(wake) => {
                    st.backlog_at = msg.end;
                    self.wake(st, wake);
                }
                Err(WriteError::Corrupt(c)) => {
                    self.broke(c);
                    return Err(());
                }
                Err(_) => match st.tx.want_room(len.min(st.tx.max_message())) {
                    Ok(true) => {}
                    Ok(false) => return Ok(Some(Waits::Room)),
                    Err(c) => {
                        self.broke(c);
                        return Err(());
                    }
                },
            }
        }
    }

    /// The reader's doorbell came: a flusher waiting for room looks again.
    fn on_doorbell(&self) {
        if self.backlogged.load(Ordering::Acquire) {
            self.queued.notify_one();
        }
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
    fn take_fds(&self, n: usize) -> Option<Vec<OwnedFd>> {
        let mut fds = self.received_fds.lock().unwrap_or_else(|e| e.into_inner());
        (fds.len() >= n).then(|| fds.drain(..n).collect())
    }

    fn corruption(&self) -> Option<Corruption> {
        *self.corrupt.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Damages the ring this end writes, then rings the peer's doorbell so that it
    /// looks: for tests of what a reader does with corrupt shared memory.
    pub(crate) fn damage_for_test(&self, damage: crate::__private::test_hooks::RingDamage) {
        use crate::__private::test_hooks::RingDamage;
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

/// What the flusher waits for.
enum Waits {
    Socket,
    Room,
}

/// Appends a frame of `len` bytes, which `fill` lays out, to `out`.
fn frame_into(out: &mut Vec<u8>, len: usize, fill: impl FnOnce(&mut [u8])) {
    let mut header = [0u8; 12];
    let n = multiproc_transport::frame::header(len, &mut header);
    out.extend_from_slice(&header[..n]);
    let start = out.len();
    out.resize(start + len, 0);
    fill(&mut out[start..]);
}
