//! A control link: one Unix stream socket between a parent and a child, shared by
//! every thread that sends on it and one task that reads it.
//!
//! # Writing
//!
//! A sender encodes its packet and writes it to the socket itself, on its own thread,
//! when nothing is queued: a message does not wait for a writer task to be scheduled
//! (on these VMs, waking a thread on the other CPU costs 15–20 µs). When the socket is
//! full, the rest is queued and a flusher task writes it as the socket drains; later
//! packets queue behind it, so packets leave in the order they were sent. A packet
//! that did not have to queue is in the kernel when `send` returns, so it reaches the
//! peer even if this process is killed the next instant.
//!
//! # Reading
//!
//! One task reads frames, into one reused buffer, and hands each decoded packet on. It
//! does not spin before sleeping in epoll: measured on these 2-CPU VMs, a reader that
//! polled for 20–200 µs after each frame made call round trips slower, because a
//! third busy thread takes the CPU one end of the round trip needs. The thread that
//! waits for a reply spins instead (`runtime::spin`).
//! A frame that does not decode, or one over the frame limit, is logged and skipped: it
//! costs that one message, never the link. Only a stream that can no longer be framed
//! (a negative length, an end in the middle of a frame, an I/O error) ends the link.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use multiproc_core::{Packet, codec};
use multiproc_transport::{FrameDecoder, FrameError, MAX_FRAME_LEN};
use rustix::net::SendFlags;
use tokio::net::UnixStream;
use tokio::sync::{Notify, oneshot};

/// What can be sent on a link.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A packet, encoded by the sender.
    Packet(Packet),
    /// Bytes framed as they are; only for tests that feed a link garbage.
    Raw(Vec<u8>),
    /// Answered once everything sent before it has been written.
    Flush(oneshot::Sender<()>),
}

/// Why a send did not happen.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The link is closed; here is what was to be sent.
    Closed(Outgoing),
    /// The packet cannot go on the wire (it does not encode, or it is over the frame
    /// limit); nothing was written.
    Refused(Packet, String),
}

/// One end of a control link.
#[derive(Debug)]
pub(crate) struct Link {
    stream: UnixStream,
    write: Mutex<WriteState>,
    queued: Notify,
    closed: AtomicBool,
    /// The flusher task, until [`Link::shut`] waits for it.
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct WriteState {
    /// Bytes accepted but not yet written, from `written` on.
    queue: Vec<u8>,
    written: usize,
    /// Reused for encoding, so a send allocates nothing once warm.
    scratch: Vec<u8>,
    /// Flush requests waiting for the queue to drain.
    flushes: Vec<oneshot::Sender<()>>,
}

impl WriteState {
    fn is_idle(&self) -> bool {
        self.written == self.queue.len()
    }
}

impl Link {
    /// Wraps a connected socket (registered with the process runtime) and starts its
    /// flusher task.
    pub(crate) fn new(stream: UnixStream) -> Arc<Link> {
        let link = Arc::new(Link {
            stream,
            write: Mutex::new(WriteState::default()),
            queued: Notify::new(),
            closed: AtomicBool::new(false),
            flusher: Mutex::new(None),
        });
        let flusher = crate::runtime::handle().spawn(Arc::clone(&link).flush_loop());
        *link.flusher.lock().unwrap_or_else(|e| e.into_inner()) = Some(flusher);
        link
    }

    fn state(&self) -> MutexGuard<'_, WriteState> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `out`, writing it at once when nothing is queued.
    pub(crate) fn send(&self, out: Outgoing) -> Result<(), SendError> {
        let mut st = self.state();
        if self.closed.load(Ordering::Acquire) {
            return Err(SendError::Closed(out));
        }
        let st = &mut *st;
        st.scratch.clear();
        match out {
            Outgoing::Packet(packet) => {
                st.scratch.extend_from_slice(&[0; 4]);
                if let Err(e) = codec::encode_into(&packet, &mut st.scratch) {
                    return Err(SendError::Refused(packet, e.to_string()));
                }
                let len = st.scratch.len() - 4;
                if len > MAX_FRAME_LEN {
                    let why = format!("{len} bytes is over the frame limit of {MAX_FRAME_LEN}");
                    return Err(SendError::Refused(packet, why));
                }
                st.scratch[..4].copy_from_slice(&(len as u32).to_be_bytes());
            }
            Outgoing::Raw(bytes) => {
                let mut header = [0u8; 12];
                let n = multiproc_transport::frame::header(bytes.len(), &mut header);
                st.scratch.extend_from_slice(&header[..n]);
                st.scratch.extend_from_slice(&bytes);
            }
            Outgoing::Flush(done) => {
                if st.is_idle() {
                    let _ = done.send(());
                } else {
                    st.flushes.push(done);
                }
                return Ok(());
            }
        }
        let mut from = 0;
        if st.is_idle() {
            while from < st.scratch.len() {
                // Straight to the socket, not through `try_write`: tokio's readiness of
                // a fresh link is empty until its reactor has polled, and a packet queued
                // then waits for the flusher. A process killed meanwhile loses it, even
                // though it went on to do things its peer saw (a `Claim` lost that way
                // kept a primitive alive for ever).
                match rustix::net::send(&self.stream, &st.scratch[from..], SendFlags::NOSIGNAL)
                    .map_err(std::io::Error::from)
                {
                    Ok(n) => from += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "control link closed for writing");
                        self.closed.store(true, Ordering::Release);
                        return Ok(());
                    }
                }
            }
            if from == st.scratch.len() {
                return Ok(());
            }
            st.queue.clear();
            st.written = 0;
        }
        let WriteState { queue, scratch, .. } = st;
        queue.extend_from_slice(&scratch[from..]);
        self.queued.notify_one();
        Ok(())
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

    /// Writes what senders queued, as the socket drains, until the link is closed.
    ///
    /// The task owns a reference to the link, so it must end for the socket to be
    /// closed: without [`Link::close`], every child ever started would keep one fd.
    async fn flush_loop(self: Arc<Link>) {
        loop {
            self.queued.notified().await;
            if self.closed.load(Ordering::Acquire) {
                self.state().flushes.clear();
                return;
            }
            loop {
                {
                    let mut st = self.state();
                    let st = &mut *st;
                    // Closed while bytes wait for room: nothing written now could be
                    // answered, and a peer that no longer reads must not keep the
                    // flusher (and the socket) for ever.
                    if self.closed.load(Ordering::Acquire) {
                        st.flushes.clear();
                        return;
                    }
                    while !st.is_idle() {
                        match self.stream.try_write(&st.queue[st.written..]) {
                            Ok(n) => st.written += n,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) => {
                                tracing::debug!(error = %e, "control link closed for writing");
                                self.closed.store(true, Ordering::Release);
                                st.flushes.clear();
                                return;
                            }
                        }
                    }
                    if st.is_idle() {
                        st.queue.clear();
                        st.written = 0;
                        for done in st.flushes.drain(..) {
                            let _ = done.send(());
                        }
                        break;
                    }
                }
                tokio::select! {
                    writable = self.stream.writable() => {
                        if writable.is_err() {
                            self.closed.store(true, Ordering::Release);
                            return;
                        }
                    }
                    // A close (or more bytes queued): look again.
                    () = self.queued.notified() => {}
                }
            }
        }
    }

    /// Reads packets and hands each to `on_packet` until the link ends.
    pub(crate) async fn read_loop(&self, peer: &str, mut on_packet: impl FnMut(Packet)) -> LinkEnd {
        let mut decoder = FrameDecoder::new(MAX_FRAME_LEN);
        loop {
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => match codec::decode::<Packet>(frame) {
                        Ok(packet) => on_packet(packet),
                        Err(e) => {
                            tracing::warn!(peer, error = %e, "skipped a malformed frame on a control link")
                        }
                    },
                    Ok(None) => break,
                    Err(e @ FrameError::TooLarge { .. }) => {
                        tracing::warn!(peer, error = %e, "skipped an oversized frame on a control link");
                    }
                    Err(e) => return LinkEnd::Broken(e),
                }
            }
            match self.stream.try_read(decoder.read_buf()) {
                Ok(0) => {
                    return match decoder.finish() {
                        Ok(()) => LinkEnd::Eof,
                        Err(e) => LinkEnd::Broken(e),
                    };
                }
                Ok(n) => decoder.commit(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if let Err(e) = self.stream.readable().await {
                        return LinkEnd::Broken(FrameError::Io(e));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return LinkEnd::Broken(FrameError::Io(e)),
            }
        }
    }
}

/// How a link's reader ended.
#[derive(Debug)]
pub(crate) enum LinkEnd {
    /// The peer closed its end.
    Eof,
    /// The stream broke and could not be framed any more.
    Broken(FrameError),
}
