//! A link's rings: two single-producer, single-consumer byte rings in one memfd that
//! both ends map (a control link's, handed to the child with its Hello; a manager
//! link's, opened by the server through `/proc`), with the flags that tell a writer whether its reader sleeps and a
//! reader whether its writer waits for room. Where records go, and what a reader may
//! believe of them, is core's `spsc`; how a sleeper is woken is the user's choice (a
//! futex on `seq`, or a byte on a socket).
//!
//! # Ordering
//!
//! A writer stores a record's bytes, then its tail (`Release`); a reader loads the
//! tail (`Acquire`) before it reads the bytes, copies them out, and only then stores
//! its head (`Release`), so a writer never reuses bytes the reader is copying. A
//! record whose tail is published is in shared memory: the reader sees it even if
//! the writer dies the next instant. A record whose tail is not published does not
//! exist.
//!
//! Sleeping is Dekker's handshake on two words: the reader stores `asleep = 1`, then
//! (after a `SeqCst` fence) looks at the tail once more; the writer stores its tail,
//! then (after a fence) looks at `asleep`, and the one that swaps it back to 0 wakes
//! the reader. One of the two always sees the other's store, so a message never
//! waits for a reader that sleeps on. `want_room` works the same way the other way
//! round, for a writer that found the ring full.

#![allow(unsafe_code)]

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

use multiproc_core::spsc::{
    self, Corruption, HEADER, Kind, Layout, RingAt, Seen, Side, WriteError,
};

use crate::runtime::shm::{self, MapError, Segment, SegmentRef};

/// Bytes of each of a control link's rings. Messages over a quarter of it go on the
/// socket; an idle link touches a page or two of it.
pub(crate) const CAPACITY: usize = 64 << 10;

/// The words in a link's shared memory where a child's actor says how many messages
/// wait in its mailbox and how many it has handled: a store per message in the child,
/// two loads for a snapshot in the parent, no message on the link. A child may write
/// anything there; the parent only shows it.
#[derive(Debug, Clone)]
pub(crate) struct ActorFigures {
    seg: Arc<Segment>,
}

impl ActorFigures {
    pub(crate) fn set_depth(&self, depth: usize) {
        self.seg
            .u64_at(Layout::MAILBOX_DEPTH)
            .store(depth as u64, Ordering::Relaxed);
    }

    pub(crate) fn handled_one(&self) {
        let handled = self.seg.u64_at(Layout::HANDLED);
        // One writer: a load and a store, not a locked add.
        handled.store(handled.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Messages waiting, and messages handled.
    pub(crate) fn read(&self) -> (u64, u64) {
        (
            self.seg
                .u64_at(Layout::MAILBOX_DEPTH)
                .load(Ordering::Relaxed),
            self.seg.u64_at(Layout::HANDLED).load(Ordering::Relaxed),
        )
    }
}

/// Why a peer's rings cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdoptError {
    /// The memory could not be mapped.
    #[error(transparent)]
    Map(#[from] MapError),
    /// It is not a link's rings of the size the Hello said.
    #[error("the link's shared memory is not a pair of rings of {0} bytes")]
    NotRings(usize),
}

/// Both rings of a link, mapped; split into this end's writer and reader.
#[derive(Debug)]
pub(crate) struct Rings {
    seg: Arc<Segment>,
    layout: Layout,
    side: Side,
}

impl Rings {
    /// New rings of `cap` bytes each, made by the parent: the fd to hand the child.
    pub(crate) fn create(cap: usize) -> Result<(Rings, OwnedFd), MapError> {
        let layout = Layout::new(cap).expect("a valid ring capacity");
        let (seg, fd) = Segment::create_for_peer("multiproc-link", layout.len())?;
        Ok((Rings::init(seg, layout), fd))
    }

    /// New rings of `cap` bytes each that another process opens by their place
    /// (through `/proc`, while this process keeps them): for links whose peer is not
    /// a child, and gets no descriptor from us.
    pub(crate) fn create_hosted(cap: usize) -> Result<(Rings, SegmentRef), MapError> {
        let layout = Layout::new(cap).expect("a valid ring capacity");
        let seg = Segment::create("multiproc-rings", layout.len())?;
        let at = seg.at();
        Ok((Rings::init(seg, layout), at))
    }

    /// The other end of hosted rings of `cap` bytes each, at `at`.
    pub(crate) fn open_hosted(at: SegmentRef, cap: usize) -> Result<Rings, AdoptError> {
        let layout = Layout::new(cap).ok_or(AdoptError::NotRings(cap))?;
        if at.len != layout.len() as u64 {
            return Err(AdoptError::NotRings(cap));
        }
        Rings::opened(Segment::open(at)?, layout)
    }

    fn init(seg: Segment, layout: Layout) -> Rings {
        seg.u64_at(0).store(Layout::MAGIC, Ordering::Relaxed);
        // Neither reader listens yet: each end's first message wakes the other.
        for side in [Side::Creator, Side::Opener] {
            seg.u32_at(layout.ring(side).asleep)
                .store(ON_DOORBELL, Ordering::Relaxed);
        }
        Rings {
            seg: Arc::new(seg),
            layout,
            side: Side::Creator,
        }
    }

    fn opened(seg: Segment, layout: Layout) -> Result<Rings, AdoptError> {
        if seg.u64_at(0).load(Ordering::Relaxed) != Layout::MAGIC {
            return Err(AdoptError::NotRings(layout.capacity()));
        }
        Ok(Rings {
            seg: Arc::new(seg),
            layout,
            side: Side::Opener,
        })
    }

    /// The other end of rings of `cap` bytes each, handed over as `fd`.
    pub(crate) fn adopt(fd: &OwnedFd, cap: usize) -> Result<Rings, AdoptError> {
        let layout = Layout::new(cap).ok_or(AdoptError::NotRings(cap))?;
        let seg = Segment::adopt(fd, layout.len()).map_err(|e| match e {
            MapError::Gone => AdoptError::NotRings(cap),
            e => AdoptError::Map(e),
        })?;
        Rings::opened(seg, layout)
    }

    /// One end of rings of `cap` bytes each, handed over as `fd` to both ends of a
    /// link its maker does not take part in (a direct link between two siblings):
    /// `creator` says which.
    pub(crate) fn adopt_side(fd: &OwnedFd, cap: usize, creator: bool) -> Result<Rings, AdoptError> {
        let mut rings = Rings::adopt(fd, cap)?;
        if creator {
            rings.side = Side::Creator;
        }
        Ok(rings)
    }

    /// The figures of the actor hosted by the process at the opening end (a child,
    /// on its link to its parent): written there, read at the creating end.
    pub(crate) fn actor_figures(&self) -> ActorFigures {
        ActorFigures {
            seg: Arc::clone(&self.seg),
        }
    }

    /// This end's writer (of the ring it writes) and reader (of the other).
    pub(crate) fn split(self) -> (Tx, Rx) {
        let other = match self.side {
            Side::Creator => Side::Opener,
            Side::Opener => Side::Creator,
        };
        let cap = self.layout.capacity();
        let tx_at = self.layout.ring(self.side);
        let rx_at = self.layout.ring(other);
        // Each end starts where the ring is now: a ring handed over with records in
        // it (the parent's first packets) is read from its start.
        let tail = self.seg.u64_at(tx_at.tail).load(Ordering::Acquire);
        let head = self.seg.u64_at(rx_at.head).load(Ordering::Acquire);
        (
            Tx {
                ring: Ring::new(Arc::clone(&self.seg), tx_at, cap),
                tail,
            },
            Rx {
                ring: Ring::new(self.seg, rx_at, cap),
                head,
            },
        )
    }
}

/// One ring's words and buffer.
#[derive(Debug)]
struct Ring {
    seg: Arc<Segment>,
    at: RingAt,
    cap: usize,
}

impl Ring {
    fn new(seg: Arc<Segment>, at: RingAt, cap: usize) -> Ring {
        Ring { seg, at, cap }
    }

    fn tail(&self) -> &AtomicU64 {
        self.seg.u64_at(self.at.tail)
    }

    fn head(&self) -> &AtomicU64 {
        self.seg.u64_at(self.at.head)
    }

    fn asleep(&self) -> &AtomicU32 {
        self.seg.u32_at(self.at.asleep)
    }

    fn want_room(&self) -> &AtomicU32 {
        self.seg.u32_at(self.at.want_room)
    }

    fn seq(&self) -> &AtomicU32 {
        self.seg.u32_at(self.at.seq)
    }

    /// The byte at position `pos` (modulo the capacity), and `len` after it, which
    /// must not cross the buffer's end.
    fn ptr(&self, pos: u64, len: usize) -> *mut u8 {
        let offset = (pos % self.cap as u64) as usize;
        assert!(offset + len <= self.cap, "a record inside the buffer");
        // SAFETY: `data + offset + len` is inside the mapping (checked above and by
        // the layout, whose length the segment has).
        unsafe { self.seg.as_mut_ptr().add(self.at.data + offset) }
    }
}

/// Room found in a ring for one message.
#[derive(Debug)]
pub(crate) struct Reserved {
    plan: spsc::Plan,
    len: usize,
}

/// Whether, and how, a writer must wake its reader: the reader had announced that it
/// sleeps, and this writer took the announcement back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Wake {
    /// The reader is awake.
    No,
    /// It sleeps on something else (a task in epoll: a byte on its socket wakes it).
    Doorbell,
    /// A thread sleeps on the ring's futex: [`Tx::wake_futex`].
    Futex,
}

/// The values of `asleep`: how the reader sleeps.
const AWAKE: u32 = 0;
const ON_DOORBELL: u32 = 1;
const ON_FUTEX: u32 = 2;

/// The writing end of a ring. Not shared: its owner serializes the writes.
#[derive(Debug)]
pub(crate) struct Tx {
    ring: Ring,
    /// Our own copy of the tail: what the shared word says is only for the reader.
    tail: u64,
}

impl Tx {
    /// The largest message the ring takes.
    pub(crate) fn max_message(&self) -> usize {
        spsc::max_payload(self.ring.cap)
    }

    /// Finds room for a message of `len` bytes, to [`commit`](Tx::commit).
    ///
    /// # Errors
    ///
    /// As core's `spsc::plan`: full, too large, or a reader's position that cannot
    /// be true.
    pub(crate) fn reserve(&self, len: usize) -> Result<Reserved, WriteError> {
        Ok(Reserved {
            plan: self.plan(len)?,
            len,
        })
    }

    /// Writes the message whose room was `reserved`: `fill` lays it out in the ring
    /// itself, then it is published.
    pub(crate) fn commit(&mut self, reserved: Reserved, fill: impl FnOnce(&mut [u8])) -> Wake {
        let Reserved { plan, len } = reserved;
        let at = self.ring.ptr(plan.at, HEADER + len);
        // SAFETY: the plan puts these bytes between our tail and the reader's head
        // plus the capacity: the reader reads none of them before we publish, so we
        // are their only user. Only plain bytes are written.
        let payload = unsafe { std::slice::from_raw_parts_mut(at.add(HEADER), len) };
        fill(payload);
        self.publish(plan, len as u32, Kind::Message)
    }

    /// Writes a message.
    ///
    /// # Errors
    ///
    /// As [`reserve`](Tx::reserve); nothing is written then.
    pub(crate) fn write(&mut self, msg: &[u8]) -> Result<Wake, WriteError> {
        let reserved = self.reserve(msg.len())?;
        Ok(self.commit(reserved, |out| out.copy_from_slice(msg)))
    }

    /// Writes a marker: the next message is on the socket.
    ///
    /// # Errors
    ///
    /// As [`reserve`](Tx::reserve).
    pub(crate) fn mark_on_socket(&mut self) -> Result<Wake, WriteError> {
        let plan = self.plan(0)?;
        Ok(self.publish(plan, 0, Kind::OnSocket))
    }

    fn plan(&self, len: usize) -> Result<spsc::Plan, WriteError> {
        let head = self.ring.head().load(Ordering::Acquire);
        spsc::plan(self.ring.cap, head, self.tail, len)
    }

    fn publish(&mut self, plan: spsc::Plan, len: u32, kind: Kind) -> Wake {
        if let Some(pad) = plan.pad {
            self.put_header(pad, spsc::header(0, Kind::Padding));
        }
        self.put_header(plan.at, spsc::header(len, kind));
        self.tail = plan.end;
        self.ring.tail().store(plan.end, Ordering::Release);
        // The tail's store before the look at `asleep`; the reader does the reverse.
        fence(Ordering::SeqCst);
        let asleep = self.ring.asleep();
        if asleep.load(Ordering::Relaxed) == AWAKE {
            return Wake::No;
        }
        match asleep.swap(AWAKE, Ordering::AcqRel) {
            AWAKE => Wake::No,
            ON_FUTEX => {
                self.ring.seq().fetch_add(1, Ordering::Release);
                Wake::Futex
            }
            // A doorbell for anything else: a bad value written by the peer costs a
            // byte, never a lost wake-up.
            _ => Wake::Doorbell,
        }
    }

    fn put_header(&self, pos: u64, header: [u8; HEADER]) {
        let at = self.ring.ptr(pos, HEADER);
        // SAFETY: as in `write_with`: unpublished bytes of ours.
        unsafe { std::ptr::copy_nonoverlapping(header.as_ptr(), at, HEADER) };
    }

    /// Announces that this writer waits for room; `true` if there is room now after
    /// all (the announcement is taken back then).
    ///
    /// # Errors
    ///
    /// The reader's position cannot be true.
    pub(crate) fn want_room(&self, len: usize) -> Result<bool, Corruption> {
        self.ring.want_room().store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        match self.plan(len) {
            Ok(_) => {
                self.ring.want_room().store(0, Ordering::Relaxed);
                Ok(true)
            }
            Err(WriteError::Corrupt(c)) => Err(c),
            Err(_) => Ok(false),
        }
    }

    /// Wakes a reader sleeping on its futex (after a write that said [`Wake`]).
    pub(crate) fn wake_futex(&self) {
        shm::wake(self.ring.seq(), 1);
    }
}

/// What a reader found at its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing.
    Empty,
    /// A message, now in the caller's buffer.
    Message,
    /// A marker: the next message is on the socket.
    OnSocket,
    /// Something the caller did not accept: left where it is.
    Declined,
}

/// What a reader is about to take, for it to accept or decline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peek {
    /// A message whose first byte is this.
    Message(Option<u8>),
    /// A marker.
    OnSocket,
}

/// The reading end of a ring. Not shared: its owner serializes the reads.
#[derive(Debug)]
pub(crate) struct Rx {
    ring: Ring,
    /// Our own copy of the head, the only one we trust.
    head: u64,
}

impl Rx {
    /// Takes the next record, if `accept` takes it: a message is copied into `out`.
    /// Padding is skipped. The second value says whether the writer waits for room
    /// and must be woken.
    ///
    /// # Errors
    ///
    /// The ring's positions or the record's header cannot be true: nothing more can
    /// be read from it.
    pub(crate) fn next(
        &mut self,
        out: &mut Vec<u8>,
        accept: impl FnOnce(Peek) -> bool,
    ) -> Result<(Next, bool), Corruption> {
        loop {
            let tail = self.ring.tail().load(Ordering::Acquire);
            if tail == self.head {
                return Ok((Next::Empty, false));
            }
            spsc::check(self.ring.cap, self.head, tail)?;
            let mut header = [0u8; HEADER];
            let at = self.ring.ptr(self.head, HEADER);
            // SAFETY: published bytes inside the mapping; copied out, never borrowed,
            // since a misbehaving writer may change them while we read.
            unsafe { std::ptr::copy_nonoverlapping(at, header.as_mut_ptr(), HEADER) };
            let (found, next) = match spsc::seen(self.ring.cap, self.head, tail, header)? {
                Seen::Padding { next } => {
                    self.head = next;
                    continue;
                }
                Seen::OnSocket { next } => {
                    if !accept(Peek::OnSocket) {
                        return Ok((Next::Declined, false));
                    }
                    (Next::OnSocket, next)
                }
                Seen::Message { at, len, next } => {
                    let src = self.ring.ptr(at, len);
                    // SAFETY: as for the header; `len` bytes checked to be inside.
                    let first = (len > 0).then(|| unsafe { *src });
                    if !accept(Peek::Message(first)) {
                        return Ok((Next::Declined, false));
                    }
                    out.clear();
                    out.reserve(len);
                    // SAFETY: `out` has room for `len` bytes, now initialized by the
                    // copy; the source is as for the header.
                    unsafe {
                        std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), len);
                        out.set_len(len);
                    }
                    (Next::Message, next)
                }
            };
            self.head = next;
            self.ring.head().store(next, Ordering::Release);
            // The head's store before the look at `want_room`; the writer does the
            // reverse.
            fence(Ordering::SeqCst);
            let want = self.ring.want_room();
            let room = want.load(Ordering::Relaxed) != 0 && want.swap(0, Ordering::AcqRel) != 0;
            return Ok((found, room));
        }
    }

    /// Whether nothing is waiting (or the positions are corrupt, which the next read
    /// reports).
    pub(crate) fn is_empty(&self) -> bool {
        self.ring.tail().load(Ordering::Acquire) == self.head
    }

    /// Announces that this reader is about to sleep (a task in epoll, to be woken by
    /// a doorbell) and wants to be woken; `false` (announcement taken back) when
    /// something has arrived after all.
    pub(crate) fn announce_sleep(&self) -> bool {
        self.announce(ON_DOORBELL)
    }

    fn announce(&self, how: u32) -> bool {
        self.ring.asleep().store(how, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.is_empty() {
            return true;
        }
        self.ring.asleep().store(AWAKE, Ordering::Relaxed);
        false
    }

    /// Takes back an announcement of sleep: the reader is awake and looks by itself.
    pub(crate) fn awake(&self) {
        self.ring.asleep().store(AWAKE, Ordering::Relaxed);
    }

    /// Sleeps on the ring's futex until a writer wakes it, [`Rx::nudge`] does, or
    /// `timeout` passes (spurious wake-ups happen): for readers on plain threads.
    pub(crate) fn sleep_futex(&self, timeout: Duration) {
        let seq = self.ring.seq();
        let seen = seq.load(Ordering::Acquire);
        if self.announce(ON_FUTEX) {
            shm::wait(seq, seen, Some(timeout));
        }
        self.awake();
    }

    /// A handle on this ring's sleep words, usable without the reader.
    pub(crate) fn bell(&self) -> Bell {
        Bell {
            seg: Arc::clone(&self.ring.seg),
            seq: self.ring.at.seq,
        }
    }
}

/// The futex word of a ring's reader, for the threads of the reading process that
/// do not hold the reader.
#[derive(Debug)]
pub(crate) struct Bell {
    seg: Arc<Segment>,
    seq: usize,
}

impl Bell {
    /// Wakes a thread of this process sleeping in [`Rx::sleep_futex`] (another
    /// reader wants the ring).
    pub(crate) fn nudge(&self) {
        let seq = self.seg.u32_at(self.seq);
        seq.fetch_add(1, Ordering::Release);
        shm::wake(seq, 1);
    }
}

/// What a test scribbles on a ring's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scribble {
    /// The writer's position behind the reader's.
    TailBehindHead,
    /// The writer's position two rings ahead of the reader's.
    TailPastRing,
}

impl Tx {
    /// Scribbles over the ring's shared tail, for tests of what a reader does with
    /// corrupt memory.
    pub(crate) fn scribble_for_test(&mut self, what: Scribble) {
        let head = self.ring.head().load(Ordering::Acquire);
        let tail = match what {
            Scribble::TailBehindHead => head.wrapping_sub(8),
            Scribble::TailPastRing => head + 2 * self.ring.cap as u64,
        };
        self.ring.tail().store(tail, Ordering::Release);
    }

    /// Writes a record header claiming `len` bytes and publishes it, for tests of
    /// what a reader does with a length that runs past the ring.
    pub(crate) fn publish_bad_length_for_test(&mut self, len: u32) {
        let Ok(plan) = self.plan(0) else { return };
        let _ = self.publish(plan, len, Kind::Message);
    }

    /// Writes a whole record of `msg` but does not publish its tail: what a writer
    /// killed in the middle of its write leaves behind.
    pub(crate) fn write_unpublished_for_test(&mut self, msg: &[u8]) {
        let Ok(plan) = self.plan(msg.len()) else {
            return;
        };
        let at = self.ring.ptr(plan.at, HEADER + msg.len());
        let header = spsc::header(msg.len() as u32, Kind::Message);
        // SAFETY: as in `write_with`: unpublished bytes of ours.
        unsafe {
            std::ptr::copy_nonoverlapping(header.as_ptr(), at, HEADER);
            std::ptr::copy_nonoverlapping(msg.as_ptr(), at.add(HEADER), msg.len());
        }
    }
}
