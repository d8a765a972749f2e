//! Writing a control link: a sender writes into the ring itself, and a flusher task
//! moves what had to queue.
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

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc_core::spsc::{Corruption, WriteError};
use multiproc_core::wire::{self, EnvelopeRef};
use multiproc_core::{Packet, codec};
use multiproc_transport::MAX_FRAME_LEN;
use rustix::net::SendFlags;
use tokio::sync::oneshot;

use super::{EnvelopeError, Link, Outgoing, SendError};
use crate::runtime::ring::{Tx, Wake};

/// How often a writer waiting for room in a full ring looks again, whatever its
/// reader does (a reader that is stopped, or that corrupted the flag, never rings).
const ROOM_POLL: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub(super) struct WriteState {
    pub(super) tx: Tx,
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
    pub(super) fn new(tx: Tx) -> WriteState {
        WriteState {
            tx,
            backlog: Vec::new(),
            backlog_at: 0,
            sock: Vec::new(),
            sock_at: 0,
            scratch: Vec::new(),
            flushes: Vec::new(),
            sock_fds: VecDeque::new(),
        }
    }

    fn is_idle(&self) -> bool {
        self.backlog_at == self.backlog.len() && self.sock_at == self.sock.len()
    }
}

impl Link {
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
                super::fds::send(&self.stream, bytes, &fds)
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
    pub(super) async fn flush_loop(self: Arc<Link>) {
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

    /// Waits until the socket takes bytes again.
    async fn writable(&self) -> std::io::Result<()> {
        self.stream.writable().await
    }

    /// Writes what it can of the socket bytes and the backlog: `None` when all is
    /// written, else what it waits for.
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
    pub(super) fn on_doorbell(&self) {
        if self.backlogged.load(Ordering::Acquire) {
            self.queued.notify_one();
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
