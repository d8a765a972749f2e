//! The pool's reader of a worker's link: one task per worker takes `READY` and `DONE`
//! out of the worker's ring (and off its socket, for a frame behind a marker) and
//! hands them to the actor, until the worker exits.
//!
//! The task never spins: a pool's process serves many workers, and the two threads a
//! task's round trip needs (the caller's and the worker's) already spin; a third
//! busy thread on two CPUs would take the CPU one of them needs. It sleeps in epoll on
//! the socket, and the worker rings its doorbell when it finds it asleep.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use multiproc_core::ExitReason;
use multiproc_core::scheduler::WorkerId;
use multiproc_transport::FrameDecoder;
use tokio::net::UnixStream;

use super::channel::Chan;
use super::report::{Event, Reporter};
use crate::process::Process;
use crate::runtime::ring::{Next, Peek, Rx};

/// A worker's reading end, shared by its reader task and by the callers that wait
/// for answers: a caller spinning for its answer takes it out of the ring itself
/// (see [`WorkerReader::help`]), so the answer does not wait for the reader task to
/// be scheduled (15–50 µs on these VMs when both CPUs are busy).
pub(super) struct WorkerReader {
    w: WorkerId,
    chan: Arc<Chan>,
    process: Arc<Process>,
    core: Reporter,
    state: Mutex<ReadState>,
}

/// What the reader keeps between looks, behind its lock: whoever holds it hands the
/// worker's answers on, in the ring's order.
struct ReadState {
    rx: Rx,
    /// The ring can no longer be read (its positions cannot be true).
    ring_broken: bool,
    decoder: FrameDecoder,
    /// Frames read from the socket whose markers the ring has not reached yet.
    announced: VecDeque<Vec<u8>>,
    /// The socket's reading side is open.
    open: bool,
}

impl WorkerReader {
    pub(super) fn new(
        w: WorkerId,
        chan: Arc<Chan>,
        process: Arc<Process>,
        core: Reporter,
        rx: Rx,
        max_frame_len: usize,
    ) -> Arc<WorkerReader> {
        Arc::new(WorkerReader {
            w,
            chan,
            process,
            core,
            state: Mutex::new(ReadState {
                rx,
                ring_broken: false,
                decoder: FrameDecoder::new(max_frame_len),
                announced: VecDeque::new(),
                open: true,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ReadState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands on whatever answers the ring holds, unless another thread is at it: for
    /// callers waiting for an answer. It leaves the reader task's sleep alone: the
    /// worker rings for the first record after the task said it sleeps, and the task
    /// then finds the ring empty and sleeps again.
    pub(super) fn help(&self) {
        if let Ok(mut st) = self.state.try_lock() {
            self.drain(&mut st);
        }
    }

    /// Takes the ring over from the reader task for a while: the worker stops ringing
    /// the task's doorbell (a system call in the worker, and a third thread woken on
    /// two CPUs, for every answer), since a caller spinning in [`help`] reads for
    /// it. Ended by [`release`](WorkerReader::release), which must follow.
    ///
    /// [`help`]: WorkerReader::help
    pub(super) fn hold(&self) {
        if let Ok(st) = self.state.try_lock() {
            st.rx.awake();
        }
    }

    /// Gives the ring back to the reader task: what is in it is handed on, and the
    /// task's sleep announced again, so the worker's next answer wakes it.
    pub(super) fn release(&self) {
        let mut st = self.lock();
        loop {
            let waits_for_socket = self.drain(&mut st);
            if st.ring_broken || waits_for_socket || st.rx.announce_sleep() {
                return;
            }
        }
    }

    /// Reads the worker's answers until it exits; returns how it ended. Whatever it
    /// wrote before it died is read and handed on first.
    pub(super) async fn run(&self, stream: &UnixStream) -> ExitReason {
        let exit = self.process.join();
        tokio::pin!(exit);
        loop {
            let open = {
                let mut st = self.lock();
                let waits_for_socket = self.drain(&mut st);
                // Asleep only once the ring is seen empty after saying so: the
                // worker's next record then rings the doorbell.
                if !st.ring_broken && !waits_for_socket && !st.rx.announce_sleep() {
                    continue;
                }
                st.open
            };
            tokio::select! {
                biased;
                readable = stream.readable(), if open => {
                    let mut st = self.lock();
                    st.rx.awake();
                    if readable.is_err() {
                        st.open = false;
                        continue;
                    }
                    match stream.try_read(st.decoder.read_buf()) {
                        Ok(0) => st.open = false,
                        Ok(n) => {
                            st.decoder.commit(n);
                            self.take_frames(&mut st);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => st.open = false,
                    }
                }
                reason = &mut exit => {
                    let mut st = self.lock();
                    st.rx.awake();
                    // Take what it wrote before it went: the socket's bytes, then the
                    // ring.
                    while st.open {
                        match stream.try_read(st.decoder.read_buf()) {
                            Ok(n) if n > 0 => {
                                st.decoder.commit(n);
                                self.take_frames(&mut st);
                            }
                            _ => break,
                        }
                    }
                    self.drain(&mut st);
                    return reason.unwrap_or(ExitReason::Killed);
                }
            }
        }
    }

    /// Hands on what the ring holds, in order; `true` when it stopped at a marker
    /// whose frame has not arrived on the socket yet.
    fn drain(&self, st: &mut ReadState) -> bool {
        let mut frames = Vec::new();
        let mut waits = false;
        while !st.ring_broken {
            let mut msg = Vec::new();
            let have_frame = !st.announced.is_empty();
            let next = st.rx.next(&mut msg, |peek| match peek {
                Peek::OnSocket => have_frame,
                Peek::Message(_) => true,
            });
            match next {
                Ok((Next::Message, room)) => {
                    self.room(room);
                    frames.push(msg);
                }
                Ok((Next::OnSocket, room)) => {
                    self.room(room);
                    frames.extend(st.announced.pop_front());
                }
                Ok((Next::Declined, _)) => {
                    waits = true;
                    break;
                }
                Ok((Next::Empty, _)) => break,
                Err(c) => {
                    tracing::error!(worker = self.w, error = %c, "a pool worker's ring is corrupt; killing it");
                    st.ring_broken = true;
                    let _ = self.process.kill();
                }
            }
        }
        if !frames.is_empty() && self.core.deliver(Event::Frames(self.w, frames)).is_err() {
            // The pool is gone: so is what the worker was doing for it.
            let _ = self.process.kill();
        }
        waits
    }

    fn room(&self, room: bool) {
        if room {
            self.chan.ring_for_room();
        }
    }

    /// Takes the socket's complete frames: doorbells (the worker made room, or wrote
    /// into a ring we slept on) and frames announced by markers.
    fn take_frames(&self, st: &mut ReadState) {
        loop {
            match st.decoder.next_frame() {
                Ok(Some([])) => self.chan.on_doorbell(),
                Ok(Some(frame)) => {
                    let frame = frame.to_vec();
                    st.announced.push_back(frame);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(worker = self.w, error = %e, "bad frame from a pool worker; killing it");
                    let _ = self.process.kill();
                    st.open = false;
                    return;
                }
            }
        }
    }
}
