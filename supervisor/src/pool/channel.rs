//! The pool's end of a worker's link: two rings in shared memory (the runtime's
//! `ring.rs`, as a control link's), one carrying `RUN` and `EXIT` to the worker and
//! one carrying `READY` and `DONE` back, beside the worker's socket, which stays the
//! life line and carries what the rings cannot take.
//!
//! # Writing
//!
//! Whoever dispatches a task (often the caller's own thread, under the actor's lock)
//! copies its frame's body into the ring: no writer task is woken on the way. A frame
//! over a quarter of the ring (a big chunk) goes on the socket behind a marker, from
//! where it is (the actor keeps it for retries anyway), as far as the socket takes it
//! at once; the flusher task writes the rest. Frames that find the ring full wait in
//! order in `unsent`, and the flusher moves them in as the worker makes room (it rings
//! the pool's doorbell when it does; the flusher also looks every [`ROOM_POLL`]).
//!
//! # Waking
//!
//! A worker sleeps in `poll` on its socket, so a writer that finds it asleep writes a
//! doorbell there (an empty frame), unless bytes for the socket are pending, which
//! wake it anyway. The pool's reader task sleeps in epoll on the same socket and is
//! woken the same way by the worker.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use multiproc_core::spsc::{Corruption, WriteError};
use rustix::net::SendFlags;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::Notify;

use crate::process::Process;
use crate::runtime::ring::{Tx, Wake};

/// Bytes of each of a worker link's rings: a window of small chunks (64 at most, the
/// scheduler's `MAX_WINDOW`) fits many times over; frames over a quarter go on the
/// socket.
pub(crate) const CAPACITY: usize = 128 << 10;

/// How often a flusher waiting for room looks again, whatever the worker does.
const ROOM_POLL: Duration = Duration::from_millis(10);

/// The pool's writing end of a worker's link.
pub(super) struct Chan {
    stream: Arc<UnixStream>,
    process: Arc<Process>,
    write: Mutex<WriteState>,
    /// Wakes the flusher.
    queued: Notify,
    closed: AtomicBool,
}

struct WriteState {
    tx: Tx,
    /// Frames waiting for room in the ring, in order.
    unsent: VecDeque<Arc<Vec<u8>>>,
    /// Frames whose markers are in the ring, owed to the socket from their offset.
    sock: VecDeque<(Arc<Vec<u8>>, usize)>,
}

/// What the flusher waits for.
enum Waits {
    Socket,
    Room,
}

impl Chan {
    pub(super) fn new(stream: Arc<UnixStream>, process: Arc<Process>, tx: Tx) -> Arc<Chan> {
        Arc::new(Chan {
            stream,
            process,
            write: Mutex::new(WriteState {
                tx,
                unsent: VecDeque::new(),
                sock: VecDeque::new(),
            }),
            queued: Notify::new(),
            closed: AtomicBool::new(false),
        })
    }

    fn state(&self) -> MutexGuard<'_, WriteState> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sends a finished frame (length prefix and body): into the ring at once when
    /// nothing waits before it.
    pub(super) fn send(&self, frame: Arc<Vec<u8>>) {
        let mut st = self.state();
        if self.is_closed() {
            return;
        }
        if st.unsent.is_empty() {
            match self.put(&mut st, &frame) {
                Ok(true) => {
                    // The socket did not take all of a big frame: the rest is the
                    // flusher's.
                    if !st.sock.is_empty() {
                        self.queued.notify_one();
                    }
                    return;
                }
                Ok(false) => {}
                Err(c) => return self.broke(c),
            }
        }
        st.unsent.push_back(frame);
        self.queued.notify_one();
    }

    /// Writes one frame into the ring, or its marker and then the frame on the
    /// socket; `false` when the ring has no room for it now.
    fn put(&self, st: &mut WriteState, frame: &Arc<Vec<u8>>) -> Result<bool, Corruption> {
        // Frames small enough for the ring have a 4-byte prefix (the long form starts
        // at 2 GiB).
        let body = frame.len().saturating_sub(4);
        let wake = if body <= st.tx.max_message() {
            match st.tx.reserve(body) {
                Ok(room) => st.tx.commit(room, |out| out.copy_from_slice(&frame[4..])),
                Err(WriteError::Corrupt(c)) => return Err(c),
                Err(_) => return Ok(false),
            }
        } else {
            match st.tx.mark_on_socket() {
                // No doorbell: the frame itself wakes a worker asleep on the socket.
                Ok(_) => {
                    st.sock.push_back((Arc::clone(frame), 0));
                    self.write_socket(st);
                    return Ok(true);
                }
                Err(WriteError::Corrupt(c)) => return Err(c),
                Err(_) => return Ok(false),
            }
        };
        if wake != Wake::No {
            self.doorbell(st);
        }
        Ok(true)
    }

    /// The worker wrote over the ring's positions: it is killed, and its tasks fail
    /// (or are retried) as its death says.
    fn broke(&self, c: Corruption) {
        tracing::error!(error = %c, "a pool worker's ring is corrupt; killing it");
        self.closed.store(true, Ordering::Release);
        self.queued.notify_one();
        let _ = self.process.kill();
    }

    /// Writes an empty frame, unless socket bytes are pending (they wake the worker).
    fn doorbell(&self, st: &WriteState) {
        if !st.sock.is_empty() {
            return;
        }
        // Four bytes go whole or not at all; a full socket has unread bytes that wake
        // the worker anyway.
        let _ = rustix::net::send(
            &*self.stream,
            &[0; 4],
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        );
    }

    /// Rings the worker's doorbell: it waits for room in the ring the pool reads.
    pub(super) fn ring_for_room(&self) {
        let st = self.state();
        if !self.is_closed() {
            self.doorbell(&st);
        }
    }

    /// The worker rang: a flusher waiting for room looks again.
    pub(super) fn on_doorbell(&self) {
        self.queued.notify_one();
    }

    fn write_socket(&self, st: &mut WriteState) {
        while let Some((frame, at)) = st.sock.front_mut() {
            match rustix::net::send(
                &*self.stream,
                &frame[*at..],
                SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
            ) {
                Ok(n) => {
                    *at += n;
                    if *at == frame.len() {
                        st.sock.pop_front();
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return,
                Err(rustix::io::Errno::INTR) => {}
                // The worker is gone; its exit is on its way to the actor.
                Err(_) => {
                    self.closed.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }

    /// Writes what waits for the socket; `WouldBlock` while some is left.
    fn write_pending(&self) -> std::io::Result<()> {
        let mut st = self.state();
        self.write_socket(&mut st);
        if self.is_closed() || st.sock.is_empty() {
            Ok(())
        } else {
            Err(std::io::ErrorKind::WouldBlock.into())
        }
    }

    /// Lets the flusher go: nothing more is written to a worker that has exited.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.queued.notify_one();
    }

    /// Moves waiting frames into the ring and pending bytes into the socket as there
    /// is room, until the link is closed.
    pub(super) async fn flush_loop(self: Arc<Chan>) {
        loop {
            self.queued.notified().await;
            loop {
                let waits = {
                    let mut st = self.state();
                    if self.is_closed() {
                        return;
                    }
                    match self.drain(&mut st) {
                        Err(()) => return,
                        Ok(None) => break,
                        Ok(Some(waits)) => waits,
                    }
                };
                match waits {
                    // Through tokio's `async_io`, which clears the socket's readiness
                    // when a write finds it full: the writes are not tokio's own, and
                    // `writable()` alone would stay ready and spin on EAGAIN.
                    Waits::Socket => tokio::select! {
                        wrote = self.stream.async_io(Interest::WRITABLE, || self.write_pending()) => {
                            if wrote.is_err() {
                                self.close();
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

    fn drain(&self, st: &mut WriteState) -> Result<Option<Waits>, ()> {
        loop {
            self.write_socket(st);
            if self.is_closed() {
                return Err(());
            }
            if !st.sock.is_empty() {
                return Ok(Some(Waits::Socket));
            }
            let Some(frame) = st.unsent.front().cloned() else {
                return Ok(None);
            };
            match self.put(st, &frame) {
                Ok(true) => {
                    st.unsent.pop_front();
                }
                Ok(false) => {
                    let len = frame.len().saturating_sub(4).min(st.tx.max_message());
                    match st.tx.want_room(len) {
                        Ok(true) => {}
                        Ok(false) => return Ok(Some(Waits::Room)),
                        Err(c) => {
                            self.broke(c);
                            return Err(());
                        }
                    }
                }
                Err(c) => {
                    self.broke(c);
                    return Err(());
                }
            }
        }
    }
}
