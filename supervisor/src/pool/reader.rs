//! The pool's reader of a worker's link: one task per worker takes `READY` and `DONE`
//! out of the worker's ring (and off its socket, for a frame behind a marker) and
//! hands them to the actor, until the worker exits.
//!
//! The task never spins: a pool's process serves many workers, and the two threads a
//! task's round trip needs (the caller's and the worker's) already spin; a third
//! busy thread on two CPUs would take the CPU one of them needs. It sleeps in epoll on
//! the socket, and the worker rings its doorbell when it finds it asleep.

use std::collections::VecDeque;

use multiproc_core::ExitReason;
use multiproc_core::scheduler::WorkerId;
use multiproc_transport::FrameDecoder;
use tokio::net::UnixStream;

use super::actor::{self, WeakCore};
use super::channel::Chan;
use super::launch::Event;
use crate::process::Process;
use crate::runtime::ring::{Next, Peek, Rx};

/// What the reader keeps between looks.
struct Reader<'a> {
    w: WorkerId,
    chan: &'a Chan,
    rx: Rx,
    /// The ring can no longer be read (its positions cannot be true).
    ring_broken: bool,
    decoder: FrameDecoder,
    /// Frames read from the socket whose markers the ring has not reached yet.
    announced: VecDeque<Vec<u8>>,
    /// The socket's reading side is open.
    open: bool,
}

/// Reads worker `w`'s answers until it exits; returns how it ended. Whatever it
/// wrote before it died is read and handed on first.
pub(super) async fn read(
    w: WorkerId,
    chan: &Chan,
    rx: Rx,
    stream: &UnixStream,
    process: &Process,
    core: &WeakCore,
    max_frame_len: usize,
) -> ExitReason {
    let mut r = Reader {
        w,
        chan,
        rx,
        ring_broken: false,
        decoder: FrameDecoder::new(max_frame_len),
        announced: VecDeque::new(),
        open: true,
    };
    let exit = process.join();
    tokio::pin!(exit);
    loop {
        let waits_for_socket = r.drain(process, core);
        // Asleep only once the ring is seen empty after saying so: the worker's next
        // record then rings the doorbell.
        if !r.ring_broken && !waits_for_socket && !r.rx.announce_sleep() {
            continue;
        }
        tokio::select! {
            biased;
            readable = stream.readable(), if r.open => {
                r.rx.awake();
                if readable.is_err() {
                    r.open = false;
                    continue;
                }
                match stream.try_read(r.decoder.read_buf()) {
                    Ok(0) => r.open = false,
                    Ok(n) => {
                        r.decoder.commit(n);
                        r.take_frames(process);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => r.open = false,
                }
            }
            reason = &mut exit => {
                r.rx.awake();
                // Take what it wrote before it went: the socket's bytes, then the ring.
                while r.open {
                    match stream.try_read(r.decoder.read_buf()) {
                        Ok(n) if n > 0 => {
                            r.decoder.commit(n);
                            r.take_frames(process);
                        }
                        _ => break,
                    }
                }
                r.drain(process, core);
                return reason.unwrap_or(ExitReason::Killed);
            }
        }
    }
}

impl Reader<'_> {
    /// Hands on what the ring holds, in order; `true` when it stopped at a marker
    /// whose frame has not arrived on the socket yet.
    fn drain(&mut self, process: &Process, core: &WeakCore) -> bool {
        let mut frames = Vec::new();
        let mut waits = false;
        while !self.ring_broken {
            let mut msg = Vec::new();
            let have_frame = !self.announced.is_empty();
            let next = self.rx.next(&mut msg, |peek| match peek {
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
                    frames.extend(self.announced.pop_front());
                }
                Ok((Next::Declined, _)) => {
                    waits = true;
                    break;
                }
                Ok((Next::Empty, _)) => break,
                Err(c) => {
                    tracing::error!(worker = self.w, error = %c, "a pool worker's ring is corrupt; killing it");
                    self.ring_broken = true;
                    let _ = process.kill();
                }
            }
        }
        if !frames.is_empty() && actor::deliver(core, Event::Frames(self.w, frames)).is_err() {
            // The pool is gone: so is what the worker was doing for it.
            let _ = process.kill();
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
    fn take_frames(&mut self, process: &Process) {
        loop {
            match self.decoder.next_frame() {
                Ok(Some([])) => self.chan.on_doorbell(),
                Ok(Some(frame)) => self.announced.push_back(frame.to_vec()),
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(worker = self.w, error = %e, "bad frame from a pool worker; killing it");
                    let _ = process.kill();
                    self.open = false;
                    return;
                }
            }
        }
    }
}
