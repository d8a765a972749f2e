//! A queue kept in shared memory: the items in a [`Ring`], and, per consumer
//! process, a copy of what it took and has not finished, so that a consumer that
//! dies loses nothing.
//!
//! Every function here runs under the queue's lock (held by whoever calls it), on
//! plain memory: [`Counters`] and the rings' bytes. A consumer gets a [`Taken`]
//! record (its *slot*) the first time it takes an item: each thread of a process
//! its own for a plain queue (whose slot's flag says whether that thread's last
//! `get` has returned), the whole process one for a joinable queue (whose
//! `task_done` may come from any of its threads). What a slot keeps:
//!
//! - for a plain queue, the item of a `get` until the caller has it (the caller
//!   says so by clearing its slot's `pending` flag, a word outside this memory,
//!   with no lock): an item is never lost between the ring and the caller;
//! - for a joinable queue, every item taken and not yet `task_done`: when the
//!   consumer dies, its unfinished items go back to the front of the queue, for
//!   another consumer, and `join` never waits for work that died with a worker.
//!
//! An item too large for the slot's ring is not kept (it cannot be given back); a
//! joinable queue then counts it done if its consumer dies ([`Died::lost`]).

use crate::queue::QueueError;
use crate::ring::{Cursor, Ring, RingError};

/// The queue's counters (under its lock).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// The items.
    pub ring: Cursor,
    /// Items put and not yet `task_done` (a joinable queue).
    pub unfinished: u64,
}

/// What one consumer took and has not finished (under the queue's lock): a
/// process, or one thread of it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Taken {
    /// The process, 0 for a free slot.
    pub pid: u32,
    /// The thread of that process, or 0 for all of its threads.
    pub thread: u32,
    /// Items taken that did not fit the slot's ring.
    pub unrecorded: u64,
    /// Copies of the items taken.
    pub ring: Cursor,
}

/// Why a put failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// `maxsize` items are queued, or the ring has no room now.
    #[error("the queue is full")]
    Full,
    /// The item is larger than the queue's ring.
    #[error(transparent)]
    TooLarge(RingError),
}

/// A queue's memory, borrowed under its lock.
#[derive(Debug)]
pub struct RingQueue<'a> {
    /// The counters.
    pub counters: &'a mut Counters,
    /// The items' bytes.
    pub data: &'a mut [u8],
    /// At most this many items queued (0: no limit but room).
    pub maxsize: u64,
    /// Whether `task_done` finishes what `get` takes.
    pub joinable: bool,
}

/// A consumer's slot, borrowed under the queue's lock.
#[derive(Debug)]
pub struct Slot<'a> {
    /// Its record.
    pub taken: &'a mut Taken,
    /// Its ring's bytes.
    pub data: &'a mut [u8],
}

/// What a death gave back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Died {
    /// Items back at the front of the queue.
    pub returned: u64,
    /// Items of a joinable queue that could not be given back, counted done.
    pub lost: u64,
    /// Whether `unfinished` reached 0 (wake the joiners).
    pub joined: bool,
}

impl RingQueue<'_> {
    fn ring(&mut self) -> Ring<'_> {
        Ring::new(&mut self.counters.ring, self.data)
    }

    /// Items queued.
    pub fn qsize(&self) -> u64 {
        self.counters.ring.count
    }

    /// Whether a put would find the queue full now.
    pub fn full(&self) -> bool {
        self.maxsize != 0 && self.qsize() >= self.maxsize
    }

    /// Puts an item at the back.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`], [`PutError::TooLarge`]; nothing changes.
    pub fn put(&mut self, item: &[u8]) -> Result<(), PutError> {
        if self.full() {
            return Err(PutError::Full);
        }
        match self.ring().push(item) {
            Ok(()) => {}
            Err(RingError::Full) => return Err(PutError::Full),
            Err(e) => return Err(PutError::TooLarge(e)),
        }
        self.counters.unfinished += 1;
        Ok(())
    }

    /// Takes the front item into `out`, for the consumer of `slot`; `false` when the
    /// queue is empty. `pending` is the slot's flag: a plain queue's slot forgets
    /// what it kept once its flag was cleared (the caller had it). The caller sets
    /// the flag after this returns `true`.
    pub fn get(&mut self, out: &mut Vec<u8>, slot: Option<Slot<'_>>, pending: bool) -> bool {
        if !self.ring().pop(out) {
            return false;
        }
        if let Some(slot) = slot {
            let mut kept = Ring::new(&mut slot.taken.ring, slot.data);
            if !self.joinable && !pending {
                kept.clear();
                slot.taken.unrecorded = 0;
            }
            if kept.push(out).is_err() {
                slot.taken.unrecorded += 1;
            }
        }
        true
    }

    /// Gives back an item just taken (it did not decode): to the front again, and
    /// out of the slot it was copied to (its newest record).
    pub fn give_back(&mut self, item: &[u8], slot: Option<Slot<'_>>) {
        if let Some(slot) = slot {
            // The newest record is this item: the slot keeps the older ones.
            let mut kept = Ring::new(&mut slot.taken.ring, slot.data);
            let mut older = Vec::new();
            let mut record = Vec::new();
            let mut n = kept.count();
            if n > 0 {
                while n > 1 && kept.pop(&mut record) {
                    older.push(std::mem::take(&mut record));
                    n -= 1;
                }
                kept.clear();
                for r in &older {
                    let _ = kept.push(r);
                }
            } else {
                slot.taken.unrecorded = slot.taken.unrecorded.saturating_sub(1);
            }
        }
        // It came out of this ring a moment ago under the same lock: it fits.
        let _ = self.ring().push_front(item);
    }

    /// `task_done`, by the consumer of `slot` (or by a process that took nothing).
    /// Returns whether `unfinished` reached 0.
    ///
    /// # Errors
    ///
    /// [`QueueError::TooManyTaskDone`].
    pub fn task_done(&mut self, slot: Option<Slot<'_>>) -> Result<bool, QueueError> {
        if self.counters.unfinished == 0 {
            return Err(QueueError::TooManyTaskDone);
        }
        self.counters.unfinished -= 1;
        if let Some(slot) = slot {
            let mut kept = Ring::new(&mut slot.taken.ring, slot.data);
            let mut done = Vec::new();
            if !kept.pop(&mut done) {
                slot.taken.unrecorded = slot.taken.unrecorded.saturating_sub(1);
            }
        }
        Ok(self.counters.unfinished == 0)
    }

    /// The consumer of `slot` died: what it kept goes back to the front of the
    /// queue, in its order (for a plain queue, only if its flag was still
    /// `pending`), and the slot is free again.
    pub fn consumer_died(&mut self, slot: Slot<'_>, pending: bool) -> Died {
        let mut died = Died::default();
        let mut kept = Ring::new(&mut slot.taken.ring, slot.data);
        let mut items = Vec::new();
        let mut record = Vec::new();
        if self.joinable || pending {
            while kept.pop(&mut record) {
                items.push(std::mem::take(&mut record));
            }
        }
        for item in items.iter().rev() {
            if self.ring().push_front(item).is_ok() {
                died.returned += 1;
            } else {
                died.lost += 1;
            }
        }
        if self.joinable {
            died.lost += slot.taken.unrecorded;
            // Lost items are done: nobody will finish them.
            let before = self.counters.unfinished;
            self.counters.unfinished = before.saturating_sub(died.lost);
            died.joined = before != 0 && self.counters.unfinished == 0;
        }
        *slot.taken = Taken::default();
        died
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem {
        counters: Counters,
        data: Vec<u8>,
        slots: Vec<(Taken, Vec<u8>)>,
    }

    impl Mem {
        fn new(cap: usize, slot_cap: usize) -> Mem {
            Mem {
                counters: Counters::default(),
                data: vec![0; cap],
                slots: (0..2)
                    .map(|_| (Taken::default(), vec![0; slot_cap]))
                    .collect(),
            }
        }

        fn q(&mut self, maxsize: u64, joinable: bool) -> (RingQueue<'_>, Vec<Slot<'_>>) {
            let slots = self
                .slots
                .iter_mut()
                .map(|(taken, data)| Slot { taken, data })
                .collect();
            (
                RingQueue {
                    counters: &mut self.counters,
                    data: &mut self.data,
                    maxsize,
                    joinable,
                },
                slots,
            )
        }
    }

    fn take<'s>(slots: &'s mut [Slot<'_>], i: usize) -> Option<Slot<'s>> {
        let s = &mut slots[i];
        Some(Slot {
            taken: s.taken,
            data: s.data,
        })
    }

    #[test]
    fn maxsize_makes_it_full() {
        let mut mem = Mem::new(256, 64);
        let (mut q, _) = mem.q(2, false);
        q.put(b"a").unwrap();
        q.put(b"b").unwrap();
        assert!(q.full());
        assert_eq!(q.put(b"c"), Err(PutError::Full));
        assert_eq!(q.qsize(), 2);
    }

    #[test]
    fn a_consumer_that_dies_with_its_get_pending_gives_the_item_back() {
        let mut mem = Mem::new(256, 64);
        let (mut q, mut slots) = mem.q(0, false);
        q.put(b"a").unwrap();
        q.put(b"b").unwrap();
        let mut out = Vec::new();
        assert!(q.get(&mut out, take(&mut slots, 0), false));
        assert_eq!(out, b"a");
        // Dies before it cleared its flag: "a" comes back, first.
        let died = q.consumer_died(take(&mut slots, 0).unwrap(), true);
        assert_eq!(died.returned, 1);
        assert!(q.get(&mut out, take(&mut slots, 1), false));
        assert_eq!(out, b"a");
    }

    #[test]
    fn an_item_the_caller_had_is_not_given_back() {
        let mut mem = Mem::new(256, 64);
        let (mut q, mut slots) = mem.q(0, false);
        q.put(b"a").unwrap();
        let mut out = Vec::new();
        assert!(q.get(&mut out, take(&mut slots, 0), false));
        // The flag was cleared: the caller had it.
        let died = q.consumer_died(take(&mut slots, 0).unwrap(), false);
        assert_eq!(died, Died::default());
        assert_eq!(q.qsize(), 0);
    }

    #[test]
    fn a_plain_slot_keeps_only_the_gets_not_yet_returned() {
        let mut mem = Mem::new(256, 64);
        let (mut q, mut slots) = mem.q(0, false);
        for i in 0..3u8 {
            q.put(&[i]).unwrap();
        }
        let mut out = Vec::new();
        // Two gets returned (flag cleared before each next one), then a third.
        assert!(q.get(&mut out, take(&mut slots, 0), false));
        assert!(q.get(&mut out, take(&mut slots, 0), false));
        assert!(q.get(&mut out, take(&mut slots, 0), false));
        let died = q.consumer_died(take(&mut slots, 0).unwrap(), true);
        assert_eq!(died.returned, 1);
        assert!(q.get(&mut out, None, false));
        assert_eq!(out, [2]);
    }

    #[test]
    fn a_dead_workers_unfinished_items_go_back_and_join_still_ends() {
        let mut mem = Mem::new(256, 64);
        let (mut q, mut slots) = mem.q(0, true);
        for i in 0..4u8 {
            q.put(&[i]).unwrap();
        }
        let mut out = Vec::new();
        assert!(q.get(&mut out, take(&mut slots, 0), false));
        assert!(q.get(&mut out, take(&mut slots, 0), false));
        assert_eq!(q.task_done(take(&mut slots, 0)), Ok(false)); // item 0
        // Worker 0 dies holding item 1: it goes back in front of 2 and 3.
        let died = q.consumer_died(take(&mut slots, 0).unwrap(), false);
        assert_eq!((died.returned, died.lost, died.joined), (1, 0, false));
        for want in 1..4u8 {
            assert!(q.get(&mut out, take(&mut slots, 1), false));
            assert_eq!(out, [want]);
            let last = want == 3;
            assert_eq!(q.task_done(take(&mut slots, 1)), Ok(last));
        }
        assert_eq!(
            q.task_done(take(&mut slots, 1)),
            Err(QueueError::TooManyTaskDone)
        );
    }

    #[test]
    fn an_item_too_large_to_keep_is_counted_done_when_its_consumer_dies() {
        let mut mem = Mem::new(256, 8);
        let (mut q, mut slots) = mem.q(0, true);
        q.put(&[7; 20]).unwrap();
        let mut out = Vec::new();
        assert!(q.get(&mut out, take(&mut slots, 0), false));
        let died = q.consumer_died(take(&mut slots, 0).unwrap(), false);
        assert_eq!((died.returned, died.lost, died.joined), (0, 1, true));
        assert_eq!(q.counters.unfinished, 0);
    }

    #[test]
    fn task_done_by_a_process_that_took_nothing_counts() {
        let mut mem = Mem::new(256, 64);
        let (mut q, _) = mem.q(0, true);
        q.put(b"x").unwrap();
        assert_eq!(q.task_done(None), Ok(true));
        assert_eq!(q.task_done(None), Err(QueueError::TooManyTaskDone));
    }

    #[test]
    fn an_item_given_back_leaves_the_slot_and_comes_first() {
        let mut mem = Mem::new(256, 64);
        let (mut q, mut slots) = mem.q(0, true);
        q.put(b"a").unwrap();
        q.put(b"b").unwrap();
        q.put(b"c").unwrap();
        let mut out = Vec::new();
        assert!(q.get(&mut out, take(&mut slots, 0), false));
        assert!(q.get(&mut out, take(&mut slots, 0), false));
        let b = out.clone();
        q.give_back(&b, take(&mut slots, 0));
        // The slot keeps "a" only; "b" is in front again.
        let died = q.consumer_died(take(&mut slots, 0).unwrap(), false);
        assert_eq!(died.returned, 1);
        for want in [b"a", b"b", b"c"] {
            assert!(q.get(&mut out, None, false));
            assert_eq!(out, want);
        }
    }
}
