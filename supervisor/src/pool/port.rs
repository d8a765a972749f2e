//! The worker's end of its link to the pool: the rings (see `channel.rs`) and the
//! socket, read and written by the worker's one thread.
//!
//! # Spinning
//!
//! After its ring empties, the worker spins for about twice the recent gap before
//! the next task, at least [`SPIN_FLOOR_US`] and at most [`SPIN_MAX_US`], and not at
//! all once the gaps are long: tasks that come back to back find it awake (the
//! caller's spin for the answer is the other end of that round trip), and an idle
//! worker sleeps at once. It sleeps in `poll` on its socket, not on the ring's futex,
//! so one sleep sees a doorbell, a frame behind a marker, and the pool's end (the
//! socket's end, or `shutdown` when the worker is asked to stop).

use std::cell::Cell;
use std::io::{IoSlice, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use multiproc_core::spsc::WriteError;
use multiproc_transport::FrameDecoder;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{RecvFlags, SendFlags};

use crate::runtime::ring::{Next, Rx, Scribble, Tx, Wake};

/// The most the worker spins before it sleeps, in microseconds.
const SPIN_MAX_US: u64 = 50;
/// The least it spins while tasks come often.
const SPIN_FLOOR_US: u64 = 20;
/// Past this average gap between tasks, in microseconds, the worker does not spin:
/// it is idle. Far above the spin itself: while a caller's wait for its answer ends
/// in a sleep (its own adaptive spin, a wake-up of 50–100 µs on a busy machine), the
/// gaps are that long, and a worker that stopped spinning then would add a wake-up
/// of its own to every task, which keeps the gaps long: both ends would stay slow.
const IDLE_US: u64 = 500;
/// How often a worker waiting for room in its answer ring looks again, whatever the
/// pool does.
const ROOM_POLL: Duration = Duration::from_millis(10);

/// What a test makes the worker do to its answer ring at its next answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Write the answer's record whole but be killed before publishing it.
    DieMidWrite,
    /// Put the ring's tail behind its head instead of answering.
    TailBehindHead,
}

thread_local! {
    static DAMAGE: Cell<Option<Damage>> = const { Cell::new(None) };
}

/// Makes this worker damage its answer ring at its next answer (called by a task,
/// which runs on the worker's thread).
pub(crate) fn damage_next_answer(damage: Damage) {
    DAMAGE.with(|d| d.set(Some(damage)));
}

/// What [`Port::recv`] found.
pub(super) enum Got {
    /// A frame, from the ring.
    Ring,
    /// A frame behind a marker, for [`Port::take_frame`].
    Socket,
    /// The end of input: the pool is gone, or the worker was asked to stop.
    End,
}

pub(super) struct Port {
    sock: UnixStream,
    tx: Tx,
    rx: Rx,
    decoder: FrameDecoder,
    eof: bool,
    /// Set when the worker is asked to stop: it ends after the task it runs.
    stopping: Arc<AtomicBool>,
    spin: bool,
    /// Running average of the gap between the ring emptying and the next task.
    gap_us: u64,
}

impl Port {
    pub(super) fn new(
        sock: UnixStream,
        tx: Tx,
        rx: Rx,
        max: usize,
        stopping: Arc<AtomicBool>,
    ) -> Port {
        Port {
            sock,
            tx,
            rx,
            decoder: FrameDecoder::new(max),
            eof: false,
            stopping,
            spin: crate::runtime::spin::multi_cpu(),
            gap_us: SPIN_MAX_US / 2,
        }
    }

    /// Waits for the pool's next frame: a frame from the ring is copied into `out`; a
    /// frame behind a marker stays in the socket's decoder, for [`take_frame`]
    /// (a big chunk is not copied once more).
    ///
    /// [`take_frame`]: Port::take_frame
    pub(super) fn recv(&mut self, out: &mut Vec<u8>) -> Result<Got, String> {
        let mut idle_since = None;
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return Ok(Got::End);
            }
            let (next, room) = self
                .rx
                .next(out, |_| true)
                .map_err(|c| format!("pool ring: {c}"))?;
            if room {
                self.doorbell();
            }
            let got = match next {
                Next::Message => Got::Ring,
                Next::OnSocket => {
                    if !self.wait_socket_frame()? {
                        return Ok(Got::End);
                    }
                    Got::Socket
                }
                Next::Empty | Next::Declined => {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if self.spin_for(since) {
                        continue;
                    }
                    if self.rx.announce_sleep() {
                        let awake = self.sleep(None);
                        self.rx.awake();
                        if !awake? {
                            return Ok(Got::End);
                        }
                    }
                    continue;
                }
            };
            if let Some(since) = idle_since {
                let gap = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.gap_us = (3 * self.gap_us + gap.min(1_000_000)) / 4;
            }
            return Ok(got);
        }
    }

    /// The frame behind the marker [`recv`](Port::recv) reached, out of the socket's
    /// decoder.
    pub(super) fn take_frame(&mut self) -> Result<&[u8], String> {
        self.decoder
            .next_frame()
            .map_err(|e| format!("pool socket: {e}"))?
            .ok_or_else(|| "pool socket: no frame behind the marker".to_string())
    }

    /// Spins until something is in the ring or the budget from `since` runs out.
    fn spin_for(&self, since: Instant) -> bool {
        if !self.spin || self.gap_us > IDLE_US {
            return false;
        }
        let until =
            since + Duration::from_micros((2 * self.gap_us).clamp(SPIN_FLOOR_US, SPIN_MAX_US));
        while Instant::now() < until {
            if !self.rx.is_empty() {
                return true;
            }
            // Yield, not pause: the caller this worker answers is often put on the
            // same CPU by the scheduler's wake-up path, and a spin that kept it off
            // the CPU would cost the whole budget per task.
            std::thread::yield_now();
        }
        false
    }

    /// Sleeps until the socket is readable (or `timeout` passes), then takes what it
    /// has; `false` at its end.
    fn sleep(&mut self, timeout: Option<Duration>) -> Result<bool, String> {
        let ts = timeout.map(|t| Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        let mut fds = [PollFd::new(&self.sock, PollFlags::IN)];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("pool socket: {e}")),
        }
        self.take_socket()?;
        Ok(!self.eof)
    }

    /// Reads what the socket has now; the doorbells at the decoder's front are
    /// dropped, frames kept in it for their markers.
    fn take_socket(&mut self) -> Result<(), String> {
        while !self.eof {
            match rustix::net::recv(&self.sock, self.decoder.read_buf(), RecvFlags::DONTWAIT) {
                Ok((0, _)) => self.eof = true,
                Ok((n, _)) => self.decoder.commit(n),
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::CONNRESET) => self.eof = true,
                Err(e) => return Err(format!("pool socket: {e}")),
            }
        }
        self.skip_doorbells()
    }

    fn skip_doorbells(&mut self) -> Result<(), String> {
        while self.decoder.next_is_empty() {
            self.decoder
                .next_frame()
                .map_err(|e| format!("pool socket: {e}"))?;
        }
        Ok(())
    }

    /// Waits until the frame behind a marker is whole in the decoder; `false` at the
    /// socket's end.
    fn wait_socket_frame(&mut self) -> Result<bool, String> {
        loop {
            self.skip_doorbells()?;
            if self.decoder.has_next() {
                return Ok(true);
            }
            if !self.sleep(None)? {
                return Ok(false);
            }
        }
    }

    /// Rings the pool's doorbell: its reader sleeps, or it waits for room.
    fn doorbell(&self) {
        let _ = rustix::net::send(
            &self.sock,
            &[0; 4],
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        );
    }

    /// Sends a frame whose first part, `head`, holds its length prefix and whose
    /// `tail` follows from where it is: laid out in the ring when it fits, else on
    /// the socket behind a marker.
    pub(super) fn send(&mut self, head: &[u8], tail: &[u8]) -> std::io::Result<()> {
        if let Some(damage) = DAMAGE.with(Cell::take) {
            return self.damage(damage, head);
        }
        // A frame small enough for the ring has a 4-byte prefix.
        let len = head.len() - 4 + tail.len();
        if len <= self.tx.max_message() {
            loop {
                match self.tx.reserve(len) {
                    Ok(room) => {
                        let wake = self.tx.commit(room, |out| {
                            let (h, t) = out.split_at_mut(head.len() - 4);
                            h.copy_from_slice(&head[4..]);
                            t.copy_from_slice(tail);
                        });
                        if wake != Wake::No {
                            self.doorbell();
                        }
                        return Ok(());
                    }
                    Err(WriteError::Corrupt(c)) => {
                        return Err(std::io::Error::other(c.to_string()));
                    }
                    Err(_) => self.wait_room(len)?,
                }
            }
        }
        loop {
            // No doorbell: the frame itself wakes a reader asleep on the socket.
            match self.tx.mark_on_socket() {
                Ok(_) => break,
                Err(WriteError::Corrupt(c)) => return Err(std::io::Error::other(c.to_string())),
                Err(_) => self.wait_room(0)?,
            }
        }
        write_both(&mut self.sock, head, tail)
    }

    /// Waits until the pool has taken enough of the answer ring for `len` bytes.
    fn wait_room(&mut self, len: usize) -> std::io::Result<()> {
        match self.tx.want_room(len) {
            Ok(true) => Ok(()),
            Ok(false) => match self.sleep(Some(ROOM_POLL)) {
                Ok(true) => Ok(()),
                Ok(false) => Err(std::io::ErrorKind::BrokenPipe.into()),
                Err(e) => Err(std::io::Error::other(e)),
            },
            Err(c) => Err(std::io::Error::other(c.to_string())),
        }
    }

    fn damage(&mut self, damage: Damage, head: &[u8]) -> std::io::Result<()> {
        match damage {
            Damage::DieMidWrite => {
                self.tx.write_unpublished_for_test(&head[4..]);
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
                loop {
                    std::thread::park();
                }
            }
            Damage::TailBehindHead => {
                self.tx.scribble_for_test(Scribble::TailBehindHead);
                self.doorbell();
                Ok(())
            }
        }
    }
}

/// Writes `head` then `tail`, in as few system calls as the socket takes.
fn write_both(sock: &mut UnixStream, mut head: &[u8], mut tail: &[u8]) -> std::io::Result<()> {
    while !head.is_empty() {
        match sock.write_vectored(&[IoSlice::new(head), IoSlice::new(tail)]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) if n < head.len() => head = &head[n..],
            Ok(n) => {
                tail = &tail[n - head.len()..];
                head = &[];
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    sock.write_all(tail)
}
