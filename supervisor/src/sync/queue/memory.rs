//! A queue's memory: every process that uses the queue maps its segment and puts and
//! gets there directly, with no message when nobody has to wait. The host keeps what
//! memory cannot: it watches the processes that mapped the segment and gives back
//! what a dead consumer had taken (see `host::process_died`).
//!
//! The ring is plain memory changed under the queue's lock: borrowing it is
//! `unsafe`, and each borrow says which lock makes it exclusive.

#![allow(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc_core::ring_queue::{Counters, Died, PutError, RingQueue, Slot, Taken};

use super::slot_cache;
use crate::runtime::shm::{self, Segment};
use crate::sync::host::Watched;
use crate::sync::lock::LockWord;
use crate::sync::mapped::{genuine, init};
use crate::sync::park::{self, Attempt, Park};
use crate::sync::{SyncError, thread_token};

/// A queue in shared memory: a [`RingQueue`] under a [`LockWord`], and three words
/// to sleep on (items came, room came, all done), each with a mark that someone
/// may sleep on it, so that nobody makes a system call to wake nobody.
#[derive(Debug)]
pub(crate) struct QueueMem {
    seg: Arc<Segment>,
    lock: LockWord,
    maxsize: u64,
    joinable: bool,
    capacity: usize,
}

/// "mp-queue".
pub(crate) const QUEUE_MAGIC: u64 = u64::from_le_bytes(*b"mp-queue");
const MAXSIZE_AT: usize = 16;
const JOINABLE_AT: usize = 24;
const CAPACITY_AT: usize = 32;
const QUEUE_LOCK_AT: usize = 64;
/// Sleep words, and beside each a mark that someone may sleep on it, a cache line
/// apart.
const ITEMS_SEQ_AT: usize = 128;
const ROOM_SEQ_AT: usize = 192;
const DONE_SEQ_AT: usize = 256;
const SLEEPERS: usize = 4;
/// Items queued, mirrored outside the lock for waiters that spin.
const QSIZE_AT: usize = 320;
const COUNTERS_AT: usize = 384;
/// Each slot's `pending` flag (an `AtomicU32`).
const PENDING_AT: usize = 512;
const SLOTS_AT: usize = 1024;
const SLOT_LEN: usize = 64;
/// Consumer processes whose takings are kept; more consumers work, unprotected.
const SLOTS: usize = 48;
/// Bytes of each slot's ring: the items one consumer holds unfinished.
const SLOT_BYTES: usize = 16 << 10;
const SLOT_DATA_AT: usize = 4096;
const DATA_AT: usize = SLOT_DATA_AT + SLOTS * SLOT_BYTES;
const NO_SLOT: u32 = u32::MAX;
const FULL: u32 = u32::MAX - 1;

const _: () = assert!(PENDING_AT + 4 * SLOTS <= SLOTS_AT);
const _: () = assert!(SLOTS_AT + SLOTS * SLOT_LEN <= SLOT_DATA_AT);
const _: () = assert!(std::mem::size_of::<Taken>() <= SLOT_LEN);
const _: () = assert!(COUNTERS_AT + std::mem::size_of::<Counters>() <= PENDING_AT);

/// Bytes of a queue's ring: room for one item of the largest frame the transport
/// takes, and as many small ones. Memory is only used where items have been.
pub(crate) const QUEUE_CAPACITY: usize = 2 * multiproc_transport::MAX_FRAME_LEN;

/// What a sleeper waits for.
#[derive(Clone, Copy)]
enum Sleep {
    Items,
    Room,
    Done,
}

impl Sleep {
    fn seq_at(self) -> usize {
        match self {
            Sleep::Items => ITEMS_SEQ_AT,
            Sleep::Room => ROOM_SEQ_AT,
            Sleep::Done => DONE_SEQ_AT,
        }
    }
}

/// Who to wake once the lock is let go.
#[derive(Default)]
struct Wakes {
    items: u32,
    room: bool,
    done: bool,
}

/// An outcome of a queue operation that may wait: done, or what to wait for.
enum Step<R, W> {
    Done(R),
    Wait(W),
}

impl QueueMem {
    /// A new queue's memory, hosted here.
    pub(crate) fn create(
        maxsize: u64,
        joinable: bool,
        capacity: usize,
        secret: u64,
    ) -> Result<Arc<QueueMem>, SyncError> {
        let seg = Segment::create("multiproc-queue", DATA_AT + capacity)?;
        let seg = shm::host(seg);
        seg.u64_at(MAXSIZE_AT).store(maxsize, Ordering::Relaxed);
        seg.u32_at(JOINABLE_AT)
            .store(u32::from(joinable), Ordering::Relaxed);
        seg.u64_at(CAPACITY_AT)
            .store(capacity as u64, Ordering::Relaxed);
        init(&seg, QUEUE_MAGIC, secret);
        QueueMem::open(seg, secret).ok_or(SyncError::Forged)
    }

    /// The queue in `seg`, if it is one, for handles with `secret`.
    pub(crate) fn open(seg: Arc<Segment>, secret: u64) -> Option<Arc<QueueMem>> {
        if !genuine(&seg, QUEUE_MAGIC, secret) {
            return None;
        }
        let capacity = usize::try_from(seg.u64_at(CAPACITY_AT).load(Ordering::Relaxed)).ok()?;
        if seg.len() != DATA_AT.checked_add(capacity)? {
            return None;
        }
        Some(Arc::new(QueueMem {
            lock: LockWord::new(Arc::clone(&seg), QUEUE_LOCK_AT),
            maxsize: seg.u64_at(MAXSIZE_AT).load(Ordering::Relaxed),
            joinable: seg.u32_at(JOINABLE_AT).load(Ordering::Relaxed) != 0,
            capacity,
            seg,
        }))
    }

    /// Runs `f` on the queue under its lock, then wakes whom it asks to. A holder
    /// that died holding the lock left the queue as it was before its operation (the
    /// counters are written last), so its death changes nothing here.
    fn locked<R>(
        &self,
        host: &multiproc_core::Identity,
        f: impl FnOnce(&mut RingQueue<'_>, &mut Slots<'_>, &mut Wakes) -> R,
    ) -> Result<R, SyncError> {
        match self.lock.lock(None, host) {
            Ok(_) | Err(SyncError::OwnerDied) => {}
            Err(e) => return Err(e),
        }
        let mut wakes = Wakes::default();
        let out = {
            // SAFETY: the queue's lock is held, in every process that touches these
            // bytes; the references end with this block, before the unlock.
            let counters = unsafe { self.seg.pod_mut::<Counters>(COUNTERS_AT) };
            let data = unsafe { self.seg.bytes_mut(DATA_AT, self.capacity) };
            let mut q = RingQueue {
                counters,
                data,
                maxsize: self.maxsize,
                joinable: self.joinable,
            };
            let mut slots = Slots { mem: self };
            let out = f(&mut q, &mut slots, &mut wakes);
            self.seg
                .u64_at(QSIZE_AT)
                .store(q.qsize(), Ordering::Relaxed);
            // Sleepers say so under this lock; wake only where some may sleep, and
            // then all of them (the mark is cleared here, and each that must wait
            // again sets it again), so a sleeper that died leaves no mark behind.
            let seq = |s: Sleep, want: bool| {
                want && self
                    .seg
                    .u32_at(s.seq_at() + SLEEPERS)
                    .swap(0, Ordering::Relaxed)
                    != 0
                    && {
                        self.seg.u32_at(s.seq_at()).fetch_add(1, Ordering::Release);
                        true
                    }
            };
            wakes.items = if seq(Sleep::Items, wakes.items > 0) {
                u32::MAX
            } else {
                0
            };
            wakes.room = seq(Sleep::Room, wakes.room);
            wakes.done = seq(Sleep::Done, wakes.done);
            out
        };
        self.lock.unlock()?;
        if wakes.items > 0 {
            shm::wake(self.seg.u32_at(ITEMS_SEQ_AT), wakes.items);
        }
        if wakes.room {
            shm::wake(self.seg.u32_at(ROOM_SEQ_AT), u32::MAX);
        }
        if wakes.done {
            shm::wake(self.seg.u32_at(DONE_SEQ_AT), u32::MAX);
        }
        Ok(out)
    }

    /// One attempt under the lock: done, or (marked as a sleeper, with the word's
    /// value read under the lock) where to sleep; once `expired`, `timed_out`.
    fn attempt<R>(
        &self,
        host: &multiproc_core::Identity,
        expired: bool,
        timed_out: impl Fn() -> R,
        attempt: impl FnOnce(&mut RingQueue<'_>, &mut Slots<'_>, &mut Wakes) -> Step<R, Sleep>,
    ) -> Result<Attempt<R>, SyncError> {
        self.locked(host, |q, slots, wakes| match attempt(q, slots, wakes) {
            Step::Done(r) => Attempt::Ready(r),
            Step::Wait(_) if expired => Attempt::Ready(timed_out()),
            Step::Wait(s) => {
                self.seg
                    .u32_at(s.seq_at() + SLEEPERS)
                    .store(1, Ordering::Relaxed);
                // Read under the lock, with the mark set: a change after this unlock
                // bumps the word, so the sleep returns at once instead of missing it.
                Attempt::Park(Park {
                    seg: Arc::clone(&self.seg),
                    at: s.seq_at(),
                    seen: self.seg.u32_at(s.seq_at()).load(Ordering::Acquire),
                })
            }
        })
    }

    /// Puts an encoded item: `Ok(false)` when the queue stayed full (`block` false,
    /// or `timeout` ran out).
    ///
    /// # Errors
    ///
    /// [`SyncError::TooLarge`]; [`SyncError::OwnerGone`] (found while waiting).
    pub(crate) fn put(
        &self,
        item: &[u8],
        block: bool,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        let timeout = if block { timeout } else { Some(Duration::ZERO) };
        park::block_until(park::deadline(timeout), host, |expired| {
            self.put_once(item, expired, host)
        })?
    }

    /// As a blocking [`put`](QueueMem::put), from an async task; cancel-safe: the
    /// item is in the queue only if the future completed with `Ok(true)`.
    pub(crate) async fn put_async(
        &self,
        item: &[u8],
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        park::wait_until(park::deadline(timeout), host, |expired| {
            self.put_once(item, expired, host)
        })
        .await?
    }

    fn put_once(
        &self,
        item: &[u8],
        expired: bool,
        host: &multiproc_core::Identity,
    ) -> Result<Attempt<Result<bool, SyncError>>, SyncError> {
        self.attempt(
            host,
            expired,
            || Ok(false),
            |q, _, wakes| match q.put(item) {
                Ok(()) => {
                    wakes.items = 1;
                    Step::Done(Ok(true))
                }
                Err(PutError::Full) => Step::Wait(Sleep::Room),
                Err(PutError::TooLarge(_)) => Step::Done(Err(SyncError::TooLarge {
                    len: item.len(),
                    capacity: self.capacity,
                })),
            },
        )
    }

    /// Takes an item into `out`: `Ok(false)` when the queue stayed empty. The item
    /// is kept in this process's slot until [`delivered`](QueueMem::delivered) (a
    /// plain queue) or `task_done` (a joinable one).
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`] (found while waiting).
    pub(crate) fn get(
        &self,
        out: &mut Vec<u8>,
        block: bool,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        let timeout = if block { timeout } else { Some(Duration::ZERO) };
        park::block_until(park::deadline(timeout), host, |expired| {
            self.get_once(out, expired, host)
        })
    }

    /// As a blocking [`get`](QueueMem::get), from an async task; cancel-safe: an
    /// item is taken only by the attempt that returns it, on the caller's task, so a
    /// dropped future takes none.
    pub(crate) async fn get_async(
        &self,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        park::wait_until(park::deadline(timeout), host, |expired| {
            self.get_once(out, expired, host)
        })
        .await
    }

    fn get_once(
        &self,
        out: &mut Vec<u8>,
        expired: bool,
        host: &multiproc_core::Identity,
    ) -> Result<Attempt<bool>, SyncError> {
        self.attempt(
            host,
            expired,
            || false,
            |q, slots, wakes| {
                let slot = slots.mine(true);
                let pending = slot.is_some_and(|i| slots.pending(i).load(Ordering::Relaxed) != 0);
                if q.get(out, slot.map(|i| slots.slot(i)), pending) {
                    if let Some(i) = slot {
                        slots.pending(i).store(1, Ordering::Relaxed);
                    }
                    wakes.room = true;
                    Step::Done(true)
                } else {
                    Step::Wait(Sleep::Items)
                }
            },
        )
    }

    /// The caller has the item of its last `get` of a plain queue: it is not given
    /// back if this process dies now.
    pub(crate) fn delivered(&self) {
        // The slot is this thread's own (a plain queue's are per thread), so no other
        // `get` is changing it now.
        let i = cached_slot(self);
        if (i as usize) < SLOTS {
            self.seg
                .u32_at(PENDING_AT + 4 * i as usize)
                .store(0, Ordering::Release);
        }
    }

    /// Gives back an item just taken that did not decode.
    pub(crate) fn give_back(
        &self,
        item: &[u8],
        host: &multiproc_core::Identity,
    ) -> Result<(), SyncError> {
        self.locked(host, |q, slots, wakes| {
            let slot = slots.mine(false);
            q.give_back(item, slot.map(|i| slots.slot(i)));
            wakes.items = 1;
        })
    }

    /// `task_done`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Queue`] for one too many.
    pub(crate) fn task_done(&self, host: &multiproc_core::Identity) -> Result<(), SyncError> {
        self.locked(host, |q, slots, wakes| {
            let slot = slots.mine(false);
            let joined = q.task_done(slot.map(|i| slots.slot(i)))?;
            wakes.done = joined;
            Ok(())
        })?
    }

    /// Waits until every item put is done: whether it was (`timeout` may run out).
    pub(crate) fn join(
        &self,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        park::block_until(park::deadline(timeout), host, |expired| {
            self.join_once(expired, host)
        })
    }

    /// As [`join`](QueueMem::join), from an async task.
    pub(crate) async fn join_async(
        &self,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        park::wait_until(park::deadline(timeout), host, |expired| {
            self.join_once(expired, host)
        })
        .await
    }

    fn join_once(
        &self,
        expired: bool,
        host: &multiproc_core::Identity,
    ) -> Result<Attempt<bool>, SyncError> {
        self.attempt(
            host,
            expired,
            || false,
            |q, _, _| {
                if q.counters.unfinished == 0 {
                    Step::Done(true)
                } else {
                    Step::Wait(Sleep::Done)
                }
            },
        )
    }

    /// Where its memory is.
    pub(crate) fn at(&self) -> crate::runtime::shm::SegmentRef {
        self.seg.at()
    }

    /// Whether `task_done` finishes what `get` takes.
    pub(crate) fn joinable(&self) -> bool {
        self.joinable
    }

    /// `(qsize, full)`.
    pub(crate) fn size(&self) -> (usize, bool) {
        let n = self.seg.u64_at(QSIZE_AT).load(Ordering::Relaxed);
        (n as usize, self.maxsize != 0 && n >= self.maxsize)
    }

    /// Process `pid` died (the host's news): frees the lock if it held it, and gives
    /// back what its slot kept.
    pub(crate) fn consumer_died(&self, pid: u32, host: &multiproc_core::Identity) -> Died {
        self.lock.holder_died(pid);
        self.locked(host, |q, slots, wakes| {
            let mut all = Died::default();
            for i in slots.of_process(pid) {
                let pending = slots.pending(i).swap(0, Ordering::Relaxed) != 0;
                let died = q.consumer_died(slots.slot(i), pending);
                all.returned += died.returned;
                all.lost += died.lost;
                all.joined |= died.joined;
            }
            wakes.items = if all.returned > 0 { u32::MAX } else { 0 };
            wakes.done = all.joined;
            all
        })
        .unwrap_or_default()
    }
}

/// The host gives back what a dead consumer had taken.
impl Watched for Arc<QueueMem> {
    fn process_died(&self, pid: u32, host: &multiproc_core::Identity) {
        let (q, host) = (Arc::clone(self), host.clone());
        // Taking the queue's lock may wait for another process.
        crate::runtime::handle().spawn_blocking(move || {
            let died = q.consumer_died(pid, &host);
            if died.lost > 0 {
                tracing::warn!(
                    pid,
                    lost = died.lost,
                    "a consumer died holding queue items too large to keep; they count as done"
                );
            }
        });
    }
}

/// The slots of a queue, under its lock.
struct Slots<'a> {
    mem: &'a QueueMem,
}

impl Slots<'_> {
    fn taken(&self, i: usize) -> *mut Taken {
        // SAFETY (of every use): under the queue's lock.
        unsafe { self.mem.seg.pod_mut::<Taken>(SLOTS_AT + i * SLOT_LEN) as *mut Taken }
    }

    fn pending(&self, i: usize) -> &AtomicU32 {
        self.mem.seg.u32_at(PENDING_AT + 4 * i)
    }

    fn slot(&mut self, i: usize) -> Slot<'_> {
        // SAFETY: under the queue's lock; one slot is borrowed at a time (`&mut self`).
        unsafe {
            Slot {
                taken: &mut *self.taken(i),
                data: self
                    .mem
                    .seg
                    .bytes_mut(SLOT_DATA_AT + i * SLOT_BYTES, SLOT_BYTES),
            }
        }
    }

    fn find(&self, pid: u32, thread: u32) -> Option<usize> {
        (0..SLOTS).find(|&i| {
            // SAFETY: under the queue's lock.
            let t = unsafe { *self.taken(i) };
            t.pid == pid && t.thread == thread
        })
    }

    /// Every slot of process `pid`.
    fn of_process(&self, pid: u32) -> Vec<usize> {
        // SAFETY: under the queue's lock.
        (0..SLOTS)
            .filter(|&i| unsafe { (*self.taken(i)).pid } == pid)
            .collect()
    }

    /// The calling consumer's slot; with `claim`, a free one is made its own. A
    /// plain queue's consumer is a thread (its flag is its last `get`'s); a joinable
    /// queue's is the process (its threads share their `task_done`s).
    fn mine(&mut self, claim: bool) -> Option<usize> {
        match cached_slot(self.mem) {
            FULL => return None,
            NO_SLOT => {}
            i => return Some(i as usize),
        }
        let me = shm::my_pid();
        let thread = if self.mem.joinable {
            0
        } else {
            // Never 0: 0 is "every thread".
            (thread_token() as u32).max(1)
        };
        if let Some(i) = self.find(me, thread) {
            cache_slot(self.mem, i as u32);
            return Some(i);
        }
        if !claim {
            return None;
        }
        match self.find(0, 0) {
            Some(i) => {
                // SAFETY: under the queue's lock.
                unsafe {
                    *self.taken(i) = Taken {
                        pid: me,
                        thread,
                        ..Taken::default()
                    }
                };
                self.pending(i).store(0, Ordering::Relaxed);
                cache_slot(self.mem, i as u32);
                Some(i)
            }
            None => {
                cache_slot(self.mem, FULL);
                None
            }
        }
    }
}

fn cached_slot(mem: &QueueMem) -> u32 {
    slot_cache::get(&mem.seg).unwrap_or(NO_SLOT)
}

fn cache_slot(mem: &QueueMem, slot: u32) {
    slot_cache::put(&mem.seg, slot);
}
