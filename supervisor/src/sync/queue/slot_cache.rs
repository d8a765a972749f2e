//! Which slot of each queue this thread took from: a consumer's takings are kept per
//! slot, so a thread that gets again from a queue finds its slot without the queue's
//! lock.

use std::sync::{Arc, Weak};

use crate::runtime::shm::Segment;

thread_local! {
    /// This thread's slot in each queue it took from.
    static SLOT: std::cell::RefCell<SlotCache> = std::cell::RefCell::new(SlotCache::default());
}

/// Fewest entries of a [`SlotCache`] at which it is pruned.
const SLOT_CACHE_PRUNE_MIN: usize = 64;

/// A thread's slots, by the address of the queue's mapping in this process. Each
/// entry's `Weak` keeps that address from being reused by another mapping while the
/// entry exists, and tells a dropped queue's entry from a live one: a thread that
/// takes from many short-lived queues would otherwise keep an entry for each of them
/// for ever.
#[derive(Default)]
struct SlotCache {
    slots: std::collections::HashMap<usize, (Weak<Segment>, u32)>,
    /// Dropped queues' entries are pruned when the cache grows to this size, which then
    /// doubles the live entries: amortized, an insert stays O(1).
    prune_at: usize,
}

/// This thread's slot in the queue whose memory is `seg`, if it took from it before.
pub(super) fn get(seg: &Arc<Segment>) -> Option<u32> {
    let key = Arc::as_ptr(seg).addr();
    SLOT.with(|s| s.borrow().slots.get(&key).map(|&(_, slot)| slot))
}

/// Remembers this thread's slot in the queue whose memory is `seg`.
pub(super) fn put(seg: &Arc<Segment>, slot: u32) {
    SLOT.with(|s| {
        let mut cache = s.borrow_mut();
        let key = Arc::as_ptr(seg).addr();
        cache.slots.insert(key, (Arc::downgrade(seg), slot));
        if cache.slots.len() >= cache.prune_at {
            cache.slots.retain(|_, (seg, _)| seg.strong_count() > 0);
            cache.prune_at = (2 * cache.slots.len()).max(SLOT_CACHE_PRUNE_MIN);
        }
    });
}
