//! Reading a control link: one task reads the ring and the socket and hands each
//! message on; a caller that waits for its reply reads the ring for it while it spins
//! (a [`Claim`]), so the reply does not wait for the reader task to be woken.
//!
//! # Spinning
//!
//! A parent's reader tasks never spin: measured on these 2-CPU VMs, a third busy
//! thread takes the CPU that one end of a round trip needs, and the parent's callers
//! read their own replies. A child's reader spins (yielding to its other tasks, its
//! actor among them) for up to twice the recent gap between the ring emptying and its
//! next message, at most [`SPIN_MAX_US`]: calls that come back to back then find it
//! awake, and an idle link sleeps at once.
//!
//! # Ordering
//!
//! Messages are handed on in the ring's order. A message on the socket is taken when
//! its marker is reached; one written there without a marker (a child's refusal of its
//! Hello, written before the ring is used) when it is read. A caller reading for the
//! reader task takes envelopes only: at anything else it stops and leaves the rest to
//! the task, in order.

use std::collections::VecDeque;
use std::sync::MutexGuard;
use std::sync::TryLockError;
use std::sync::atomic::{Ordering, fence};
use std::time::Instant;

use multiproc_core::spsc::Corruption;
use multiproc_core::wire::{self, EnvelopeRef};
use multiproc_core::{Packet, codec};
use multiproc_transport::{FrameDecoder, FrameError, MAX_FRAME_LEN};

use super::{Link, Peer};
use crate::runtime::ring::{Next, Peek, Rx};

/// The most a child's reader spins before it sleeps, in microseconds.
const SPIN_MAX_US: u64 = 50;
/// The least it spins, while messages come often.
const SPIN_FLOOR_US: u64 = 20;

/// The room a link's socket reader makes up front: twice the 16 KiB a read asks for.
const READ_BUF: usize = 32 << 10;

/// Where a link's reader hands what it reads: the router, which registers itself at
/// link time, so that a link, below it, names no router.
pub(crate) struct Inbox {
    /// An envelope read from the link to `peer`.
    pub(crate) envelope: fn(Peer, &EnvelopeRef<'_>),
    /// A packet read from `link` (named `peer` in logs); one it does not take is
    /// given back, for the link's owner.
    pub(crate) packet: fn(&Link, &str, Packet) -> Option<Packet>,
}

/// The registered inbox; there is one, the router's.
#[linkme::distributed_slice]
pub(crate) static INBOXES: [Inbox];

/// How a link's reader ended.
#[derive(Debug)]
pub(crate) enum LinkEnd {
    /// The peer closed its end.
    Eof,
    /// The socket broke and could not be framed any more.
    Broken(FrameError),
    /// The ring's positions or a record's length cannot be true.
    Corrupt(Corruption),
}

/// What the reader task does after a turn.
enum Turn {
    End(LinkEnd),
    /// Look again at once.
    Again,
    /// Let the runtime's other tasks run, then look again (spinning).
    Yield,
    /// Wait until the caller reading for us lets go.
    Kick,
    /// Sleep until the socket is readable (a doorbell, a frame, its end) or a kick.
    Sleep,
}

/// What the reader keeps between reads, behind the link's read lock.
#[derive(Debug)]
pub(crate) struct ReadState {
    rx: Rx,
    decoder: FrameDecoder,
    /// Messages read from the socket whose markers the ring has not reached yet.
    announced: VecDeque<Vec<u8>>,
    /// The message being handed on, reused.
    msg: Vec<u8>,
    eof: bool,
    /// Running average of the gap between the ring emptying and its next message.
    gap_us: u64,
    idle_since: Option<Instant>,
}

impl ReadState {
    pub(super) fn new(rx: Rx) -> ReadState {
        ReadState {
            rx,
            // Made now: the socket is first read whenever a doorbell or a large
            // message first comes, which may be in the middle of calls that must not
            // allocate (a parent's callers read the ring themselves).
            decoder: FrameDecoder::with_capacity(MAX_FRAME_LEN, READ_BUF),
            announced: VecDeque::new(),
            msg: Vec::new(),
            eof: false,
            gap_us: SPIN_MAX_US / 2,
            idle_since: None,
        }
    }

    /// How long the reader spins after the ring empties: twice the recent gap, at
    /// least [`SPIN_FLOOR_US`] (a caller a few microseconds late must not cost a
    /// doorbell and a wake-up), nothing once the gaps are long.
    fn spin_budget_us(&self) -> u64 {
        if self.gap_us > 2 * SPIN_MAX_US {
            0
        } else {
            (2 * self.gap_us).clamp(SPIN_FLOOR_US, SPIN_MAX_US)
        }
    }

    /// Notes that `took` messages were taken now: the gap since the ring emptied
    /// goes into the average, and the ring is empty from now on.
    fn note(&mut self, took: usize) {
        let now = Instant::now();
        if took > 0
            && let Some(since) = self.idle_since.take()
        {
            let gap = u64::try_from(now.duration_since(since).as_micros())
                .unwrap_or(u64::MAX)
                .min(1_000_000);
            self.gap_us = (3 * self.gap_us + gap) / 4;
        }
        if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
    }
}

impl Link {
    /// Reads messages until the link ends: envelopes go to the inbox, packets the
    /// inbox does not take to `on_packet`.
    pub(crate) async fn read_loop(&self, peer: &str, mut on_packet: impl FnMut(Packet)) -> LinkEnd {
        loop {
            match self.turn(peer, &mut on_packet) {
                Turn::End(end) => return end,
                Turn::Again => {}
                Turn::Yield => tokio::task::yield_now().await,
                Turn::Kick => self.kick.notified().await,
                Turn::Sleep => tokio::select! {
                    readable = self.stream.readable() => {
                        if let Err(e) = readable {
                            return LinkEnd::Broken(FrameError::Io(e));
                        }
                    }
                    () = self.kick.notified() => {}
                },
            }
        }
    }

    /// Waits, without reading, until the socket is readable (a doorbell, a frame, its
    /// end) or a caller that read the ring for the reader task lets go of it with
    /// something left: for a reader task started while its link is read elsewhere
    /// (a start reading its child's answer on its own thread).
    pub(crate) async fn news(&self) {
        tokio::select! {
            _ = self.stream.readable() => {}
            () = self.kick.notified() => {}
        }
    }

    /// Reads what has come, and says what to wait for next.
    fn turn(&self, peer: &str, on_packet: &mut impl FnMut(Packet)) -> Turn {
        let Some(mut rd) = self.try_read() else {
            // A caller reads for us; it kicks us when it lets go. Said before looking
            // once more, so its look after letting go sees it; and a caller asleep on
            // the ring's futex is woken to let go.
            self.reader_waiting.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.try_read().is_none() {
                self.bell.nudge();
                return Turn::Kick;
            }
            self.reader_waiting.store(false, Ordering::SeqCst);
            return Turn::Again;
        };
        if let Some(c) = self.corruption() {
            return Turn::End(LinkEnd::Corrupt(c));
        }
        rd.rx.awake();
        if let Err(e) = self.read_socket(&mut rd, peer, on_packet) {
            return Turn::End(LinkEnd::Broken(e));
        }
        let (took, blocked) = match self.read_ring(&mut rd, peer, &mut Some(on_packet)) {
            Ok(read) => read,
            Err(c) => {
                tracing::error!(peer, error = %c, "a control link's ring is corrupt");
                return Turn::End(LinkEnd::Corrupt(c));
            }
        };
        if rd.eof {
            // Everything the peer published is read: its socket is closed, so no more
            // can come, and no marker waits for a frame that could.
            return Turn::End(LinkEnd::Eof);
        }
        if blocked {
            // Stopped at a marker whose message is still on its way through the
            // socket: nothing behind it can be taken before it comes, and its bytes
            // wake us.
            return Turn::Sleep;
        }
        rd.note(took);
        if self.spin
            && let Some(since) = rd.idle_since
            && (since.elapsed().as_micros() as u64) < rd.spin_budget_us()
        {
            return Turn::Yield;
        }
        if rd.rx.announce_sleep() {
            Turn::Sleep
        } else {
            Turn::Again
        }
    }

    fn try_read(&self) -> Option<MutexGuard<'_, ReadState>> {
        match self.read.try_lock() {
            Ok(rd) => Some(rd),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Reads what the socket has: doorbells, messages announced in the ring (kept
    /// for their markers), messages written without a marker (handed on now).
    fn read_socket(
        &self,
        rd: &mut ReadState,
        peer: &str,
        on_packet: &mut impl FnMut(Packet),
    ) -> Result<(), FrameError> {
        while !rd.eof {
            let mut fds = self.received_fds.lock().unwrap_or_else(|e| e.into_inner());
            match super::fds::recv(&self.stream, rd.decoder.read_buf(), &mut fds) {
                Ok(0) => rd.eof = true,
                Ok(n) => rd.decoder.commit(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FrameError::Io(e)),
            }
        }
        let ReadState {
            decoder, announced, ..
        } = rd;
        loop {
            match decoder.next_frame() {
                Ok(Some([])) => self.on_doorbell(),
                Ok(Some(frame)) if frame[0] & wire::DIRECT != 0 => {
                    self.dispatch(frame, peer, &mut Some(&mut *on_packet))
                }
                Ok(Some(frame)) => announced.push_back(frame.to_vec()),
                Ok(None) => break,
                Err(e @ FrameError::TooLarge { .. }) => {
                    tracing::warn!(peer, error = %e, "skipped an oversized frame on a control link");
                }
                Err(e) => return Err(e),
            }
        }
        if rd.eof {
            rd.decoder.finish()?;
        }
        Ok(())
    }

    /// Hands on what the ring holds, in order, as far as it can: to a marker whose
    /// message has not arrived, or (without `on_packet`, for a caller) to the first
    /// message that is not an envelope. Returns how many it took, and whether it
    /// stopped at something it declined (rather than at the ring's end).
    fn read_ring(
        &self,
        rd: &mut ReadState,
        peer: &str,
        on_packet: &mut Option<&mut dyn FnMut(Packet)>,
    ) -> Result<(usize, bool), Corruption> {
        let mut took = 0;
        loop {
            let ReadState {
                rx,
                msg,
                announced,
                eof,
                ..
            } = &mut *rd;
            let all = on_packet.is_some();
            let markers = all && (!announced.is_empty() || *eof);
            let (next, room) = rx.next(msg, |p| match p {
                Peek::OnSocket => markers,
                Peek::Message(t) => all || t == Some(wire::ENVELOPE),
            })?;
            if room {
                self.ring_for_room();
            }
            match next {
                Next::Empty => return Ok((took, false)),
                Next::Declined => return Ok((took, true)),
                Next::Message => self.dispatch(msg, peer, on_packet),
                Next::OnSocket => match announced.pop_front() {
                    Some(m) => self.dispatch(&m, peer, on_packet),
                    None => {
                        tracing::warn!(
                            peer,
                            "a message announced on a control link was lost with its sender"
                        );
                    }
                },
            }
            took += 1;
        }
    }

    /// Hands one message on: to the inbox, and a packet the inbox leaves to the
    /// link's owner to `on_packet`.
    fn dispatch(&self, msg: &[u8], peer: &str, on_packet: &mut Option<&mut dyn FnMut(Packet)>) {
        let Some(inbox) = INBOXES.first() else {
            return tracing::error!(peer, "no inbox takes what a control link reads");
        };
        match msg.first().map(|t| t & !wire::DIRECT) {
            Some(wire::ENVELOPE) => match EnvelopeRef::parse(msg) {
                Ok(env) => (inbox.envelope)(self.peer(), &env),
                Err(e) => {
                    tracing::warn!(peer, error = %e, "skipped a malformed envelope on a control link");
                }
            },
            Some(wire::PACKET) => match codec::decode::<Packet>(&msg[1..]) {
                Ok(packet) => match ((inbox.packet)(self, peer, packet), on_packet) {
                    (None, _) => {}
                    (Some(packet), Some(on_packet)) => on_packet(packet),
                    (Some(_), None) => tracing::warn!(peer, "a packet was read by a caller"),
                },
                Err(e) => {
                    tracing::warn!(peer, error = %e, "skipped a malformed frame on a control link");
                }
            },
            _ => tracing::warn!(peer, "skipped a message of unknown type on a control link"),
        }
    }

    /// Says that a caller of this process is about to send a call through this link
    /// and read the ring for its reply: the peer need not ring for it. Whoever holds
    /// the read lock next announces sleep again before it lets go.
    pub(crate) fn expect_reply(&self) {
        // A held ring is read by nobody yet: whoever reads it first looks at it anyway.
        if !self.readable.load(Ordering::Acquire) {
            return;
        }
        // Only while holding the reader: whoever holds it next announces sleep again
        // with a fresh look at the ring before it lets go, so clearing it here can only
        // save a doorbell, never lose a message. Without the reader, this could
        // clear the announcement the reader task has just made on its way to sleep.
        if let Some(rd) = self.try_read() {
            rd.rx.awake();
        }
    }

    /// The ring to read for the reader task, while a caller spins; `None` when the
    /// task (or another caller) reads it now.
    pub(crate) fn claim(&self) -> Option<Claim<'_>> {
        if !self.readable.load(Ordering::Acquire) {
            return None;
        }
        let rd = self.try_read()?;
        rd.rx.awake();
        Some(Claim {
            link: self,
            rd: Some(rd),
            left: false,
        })
    }
}

/// A caller reading a link's ring for its reader task; dropping it hands the ring
/// back (and kicks the task if anything was left for it).
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    link: &'a Link,
    rd: Option<MutexGuard<'a, ReadState>>,
    /// Something that is not an envelope waits for the reader task.
    left: bool,
}

impl Claim<'_> {
    /// Sleeps on the ring's futex until a message comes, the reader task wants the
    /// ring, or `timeout` passes; `false` when the caller must let go of the ring (it
    /// holds something for the reader task, or the task wants it).
    pub(crate) fn sleep(&mut self, timeout: std::time::Duration) -> bool {
        if self.left || self.link.reader_waiting.load(Ordering::SeqCst) {
            return false;
        }
        if let Some(rd) = self.rd.as_ref() {
            rd.rx.sleep_futex(timeout);
        }
        self.poll();
        !self.left && !self.link.reader_waiting.load(Ordering::SeqCst)
    }

    /// Hands on the envelopes that have arrived.
    pub(crate) fn poll(&mut self) {
        if self.left {
            return;
        }
        let Some(rd) = self.rd.as_mut() else { return };
        match self.link.read_ring(rd, "a caller's peer", &mut None) {
            Ok((_, declined)) => self.left = declined,
            Err(c) => {
                *self.link.corrupt.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
                self.left = true;
            }
        }
    }
}

impl Claim<'_> {
    /// Hands on everything the ring holds, packets to `on_packet`: for a start that
    /// reads its child's first messages on its own thread, before the link has a
    /// reader task. `false` when it stopped at a message announced on the socket,
    /// which is left to the reader task.
    pub(crate) fn take_all(&mut self, on_packet: &mut dyn FnMut(Packet)) -> bool {
        let Some(rd) = self.rd.as_mut() else {
            return false;
        };
        match self.link.read_ring(rd, "a child", &mut Some(on_packet)) {
            Ok((_, declined)) => self.left = declined,
            Err(c) => {
                *self.link.corrupt.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
                self.left = true;
            }
        }
        !self.left
    }

    /// Whether the link's socket has something to read or has ended (a frame written
    /// without a marker, a doorbell, the peer gone), without reading it.
    pub(crate) fn socket_stirred(&self) -> bool {
        use rustix::event::{PollFd, PollFlags, poll};
        let mut set = [PollFd::new(&self.link.stream, PollFlags::IN)];
        !matches!(
            poll(&mut set, Some(&rustix::event::Timespec::default())),
            Ok(0)
        )
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let Some(rd) = self.rd.take() else { return };
        // The reader task sleeps on the socket: it wants its doorbell again.
        let left = self.left || !rd.rx.announce_sleep();
        drop(rd);
        fence(Ordering::SeqCst);
        if self.link.reader_waiting.swap(false, Ordering::SeqCst) || left {
            self.link.kick.notify_one();
        }
    }
}
