//! `Queue`, `SimpleQueue` and `JoinableQueue` as a pure state machine over encoded
//! items.
//!
//! Items are bytes: producers encode in their own process, so an item that does not
//! encode fails at the `put`, and a `put` is done once the queue holds the bytes (no
//! feeder thread, nothing to flush at exit).
//!
//! # Invariants
//!
//! - An item is delivered once. A `get` hands it out as a *delivery* that the
//!   consumer acknowledges when it has it; a consumer that dies before that gives the
//!   item back, to the front of the queue. An acknowledged item is never handed out
//!   again.
//! - FIFO: items leave in the order they were stored; an item given back by a dead
//!   consumer goes before everything stored after it.
//! - Waits are answered in arrival order, once, unless cancelled (timed out) first.
//! - `unfinished` (a joinable queue's count) goes up when an item is stored and down
//!   at `task_done`; never below zero.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::Identity;
use crate::sync::WaitId;

/// A handed-out item, numbered until its consumer acknowledges it.
pub type DeliveryId = u64;

/// Misuse of a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum QueueError {
    /// More `task_done` calls than items (Python's `ValueError`).
    #[error("task_done() called too many times")]
    TooManyTaskDone,
}

/// An item on its way to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `get` it answers.
    pub wait: WaitId,
    /// Who gets it.
    pub consumer: Identity,
    /// Its number, for the acknowledgement.
    pub id: DeliveryId,
    /// The encoded item.
    pub item: Vec<u8>,
}

/// What an operation completed besides its own answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Items for `get`s that were waiting.
    pub deliveries: Vec<Delivery>,
    /// `put`s that were waiting for room and are now stored.
    pub stored: Vec<WaitId>,
    /// `join`s that now return.
    pub joined: Vec<WaitId>,
}

/// The answer to a `put`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Stored (or handed straight to a waiting consumer).
    Stored,
    /// Queued until there is room.
    Queued,
    /// No room, and the caller would not wait (Python's `queue.Full`).
    Full,
}

/// The answer to a `get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Get {
    /// An item, to acknowledge with its delivery number.
    Item(DeliveryId, Vec<u8>),
    /// Queued until an item comes.
    Queued,
    /// Nothing there, and the caller would not wait (Python's `queue.Empty`).
    Empty,
}

/// The queue.
#[derive(Debug, Clone)]
pub struct Queue {
    maxsize: usize,
    items: VecDeque<Vec<u8>>,
    getters: VecDeque<(WaitId, Identity)>,
    putters: VecDeque<(WaitId, Identity, Vec<u8>)>,
    delivering: BTreeMap<DeliveryId, (Identity, Vec<u8>)>,
    next_delivery: DeliveryId,
    unfinished: usize,
    joiners: Vec<WaitId>,
}

impl Queue {
    /// A queue of at most `maxsize` items (0: unbounded, as in Python).
    pub fn new(maxsize: usize) -> Queue {
        Queue {
            maxsize,
            items: VecDeque::new(),
            getters: VecDeque::new(),
            putters: VecDeque::new(),
            delivering: BTreeMap::new(),
            next_delivery: 1,
            unfinished: 0,
            joiners: Vec::new(),
        }
    }

    /// Items stored now (Python's `qsize`).
    pub fn qsize(&self) -> usize {
        self.items.len()
    }

    /// Python's `empty`.
    pub fn empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Python's `full`.
    pub fn full(&self) -> bool {
        self.maxsize > 0 && self.items.len() >= self.maxsize
    }

    /// Items stored and not yet marked done (a joinable queue's count).
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    /// Items handed out and not yet acknowledged.
    pub fn in_delivery(&self) -> usize {
        self.delivering.len()
    }

    fn has_room(&self) -> bool {
        self.maxsize == 0 || self.items.len() < self.maxsize
    }

    /// Puts an item from `producer`; when there is no room, queues the `put` if
    /// `block`.
    pub fn put(
        &mut self,
        producer: &Identity,
        wait: WaitId,
        item: Vec<u8>,
        block: bool,
    ) -> (Put, Effects) {
        let mut fx = Effects::default();
        if self.getters.is_empty() && !self.has_room() {
            if !block {
                return (Put::Full, fx);
            }
            self.putters.push_back((wait, producer.clone(), item));
            return (Put::Queued, fx);
        }
        self.store(item, false);
        self.serve(&mut fx);
        (Put::Stored, fx)
    }

    fn store(&mut self, item: Vec<u8>, front: bool) {
        if front {
            self.items.push_front(item);
        } else {
            self.unfinished += 1;
            self.items.push_back(item);
        }
    }

    /// Hands items to waiting `get`s, then lets waiting `put`s in while there is room.
    fn serve(&mut self, fx: &mut Effects) {
        loop {
            if let Some(item) = (!self.getters.is_empty())
                .then(|| self.items.pop_front())
                .flatten()
            {
                let (wait, consumer) = self.getters.pop_front().expect("a getter waits");
                let id = self.deliver(&consumer, item.clone());
                fx.deliveries.push(Delivery {
                    wait,
                    consumer,
                    id,
                    item,
                });
                continue;
            }
            if self.has_room()
                && let Some((wait, _, item)) = self.putters.pop_front()
            {
                self.store(item, false);
                fx.stored.push(wait);
                continue;
            }
            break;
        }
    }

    fn deliver(&mut self, consumer: &Identity, item: Vec<u8>) -> DeliveryId {
        let id = self.next_delivery;
        self.next_delivery += 1;
        self.delivering.insert(id, (consumer.clone(), item));
        id
    }

    /// Gets an item for `consumer`; when there is none, queues the `get` if `block`.
    pub fn get(&mut self, consumer: &Identity, wait: WaitId, block: bool) -> (Get, Effects) {
        let mut fx = Effects::default();
        if self.getters.is_empty()
            && let Some(item) = self.items.pop_front()
        {
            let id = self.deliver(consumer, item.clone());
            self.serve(&mut fx);
            return (Get::Item(id, item), fx);
        }
        if !block {
            return (Get::Empty, fx);
        }
        self.getters.push_back((wait, consumer.clone()));
        (Get::Queued, fx)
    }

    /// Hands `consumer` up to `max` more items at once, when nobody else waits for
    /// one: a consumer's prefetch, so that a busy queue costs one request per batch.
    /// They are deliveries like any other (acknowledged one by one, given back if the
    /// consumer dies).
    pub fn take_more(
        &mut self,
        consumer: &Identity,
        max: usize,
    ) -> (Vec<(DeliveryId, Vec<u8>)>, Effects) {
        let mut more = Vec::new();
        while more.len() < max
            && self.getters.is_empty()
            && let Some(item) = self.items.pop_front()
        {
            let id = self.deliver(consumer, item.clone());
            more.push((id, item));
        }
        let mut fx = Effects::default();
        self.serve(&mut fx);
        (more, fx)
    }

    /// The consumer has the item: it will not come back.
    pub fn ack(&mut self, id: DeliveryId) {
        self.delivering.remove(&id);
    }

    /// The consumer could not use a delivered item (it does not decode as the type
    /// that consumer expects): it goes back to the front, for another consumer.
    pub fn give_back(&mut self, id: DeliveryId) -> Effects {
        if let Some((_, item)) = self.delivering.remove(&id) {
            self.store(item, true);
        }
        let mut fx = Effects::default();
        self.serve(&mut fx);
        fx
    }

    /// Forgets a waiting `get` or `put` (its caller timed out); whether it was
    /// waiting. A cancelled `put`'s item is dropped: its producer was told `Full`.
    pub fn cancel(&mut self, wait: WaitId) -> bool {
        let before = self.getters.len() + self.putters.len();
        self.getters.retain(|(w, _)| *w != wait);
        self.putters.retain(|(w, _, _)| *w != wait);
        before != self.getters.len() + self.putters.len()
    }

    /// `process` died: its waiting `get`s and `put`s are forgotten (a blocked `put`
    /// never returned, so its producer never counted on the item), and the items it
    /// was handed but had not acknowledged go back to the front, in order.
    pub fn process_died(&mut self, process: &Identity) -> Effects {
        self.getters.retain(|(_, c)| c != process);
        self.putters.retain(|(_, p, _)| p != process);
        let back: Vec<DeliveryId> = self
            .delivering
            .iter()
            .filter(|(_, (c, _))| c == process)
            .map(|(id, _)| *id)
            .collect();
        for id in back.into_iter().rev() {
            if let Some((_, item)) = self.delivering.remove(&id) {
                self.store(item, true);
            }
        }
        let mut fx = Effects::default();
        self.serve(&mut fx);
        fx
    }

    /// One stored item is done (`JoinableQueue.task_done`), by process `by`.
    ///
    /// # Errors
    ///
    /// [`QueueError::TooManyTaskDone`] when every item is already done.
    pub fn task_done(&mut self, by: &Identity) -> Result<Effects, QueueError> {
        if self.unfinished == 0 {
            return Err(QueueError::TooManyTaskDone);
        }
        self.unfinished -= 1;
        // A joinable queue's consumer does not acknowledge its `get`: `task_done` does,
        // for the oldest item it holds. Until then a consumer that dies gives the item
        // back, so a `join` never waits for work that died with its worker.
        let oldest = self
            .delivering
            .iter()
            .find(|(_, (c, _))| c == by)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.delivering.remove(&id);
        }
        let mut fx = Effects::default();
        if self.unfinished == 0 {
            fx.joined = std::mem::take(&mut self.joiners);
        }
        Ok(fx)
    }

    /// `JoinableQueue.join`: `true` at once when every item is done; else queued.
    pub fn join(&mut self, wait: WaitId) -> bool {
        if self.unfinished == 0 {
            return true;
        }
        self.joiners.push(wait);
        false
    }

    /// Forgets a waiting `join`.
    pub fn cancel_join(&mut self, wait: WaitId) -> bool {
        let before = self.joiners.len();
        self.joiners.retain(|w| *w != wait);
        before != self.joiners.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u32) -> Identity {
        Identity::from_path(vec![n])
    }

    fn item(n: u8) -> Vec<u8> {
        vec![n]
    }

    #[test]
    fn fifo_with_puts_and_gets_that_do_not_wait() {
        let mut q = Queue::new(0);
        for n in 1..=3 {
            assert_eq!(q.put(&p(1), 0, item(n), false).0, Put::Stored);
        }
        assert_eq!(q.qsize(), 3);
        for n in 1..=3 {
            let (Get::Item(id, got), _) = q.get(&p(2), 0, false) else {
                panic!("an item")
            };
            assert_eq!(got, item(n));
            q.ack(id);
        }
        assert_eq!(q.get(&p(2), 0, false).0, Get::Empty);
        assert!(q.empty());
    }

    #[test]
    fn a_full_queue_refuses_or_queues_the_put_and_lets_it_in_on_a_get() {
        let mut q = Queue::new(1);
        q.put(&p(1), 1, item(1), true);
        assert!(q.full());
        assert_eq!(q.put(&p(1), 2, item(2), false).0, Put::Full);
        assert_eq!(q.put(&p(1), 3, item(3), true).0, Put::Queued);
        let (got, fx) = q.get(&p(2), 4, true);
        assert!(matches!(got, Get::Item(_, ref i) if *i == item(1)));
        assert_eq!(fx.stored, vec![3], "the waiting put is in");
        assert!(matches!(q.get(&p(2), 5, true).0, Get::Item(_, ref i) if *i == item(3)));
    }

    #[test]
    fn a_waiting_get_gets_the_next_put_directly() {
        let mut q = Queue::new(0);
        assert_eq!(q.get(&p(2), 7, true).0, Get::Queued);
        let (put, fx) = q.put(&p(1), 8, item(9), true);
        assert_eq!(put, Put::Stored);
        assert_eq!(fx.deliveries.len(), 1);
        assert_eq!(
            (fx.deliveries[0].wait, fx.deliveries[0].item.clone()),
            (7, item(9))
        );
        assert!(q.empty());
    }

    #[test]
    fn a_consumer_that_dies_before_it_has_the_item_gives_it_back_first() {
        let mut q = Queue::new(0);
        for n in 1..=3 {
            q.put(&p(1), 0, item(n), true);
        }
        let (Get::Item(_, _), _) = q.get(&p(2), 0, true) else {
            panic!()
        };
        let (Get::Item(_, _), _) = q.get(&p(2), 0, true) else {
            panic!()
        };
        assert_eq!(q.in_delivery(), 2);
        q.get(&p(3), 5, true); // takes item 3
        q.get(&p(3), 6, true); // waits
        let fx = q.process_died(&p(2));
        assert_eq!(
            q.in_delivery(),
            2,
            "item 1 went to the waiting consumer, item 2 is stored"
        );
        assert_eq!(fx.deliveries.len(), 1);
        assert_eq!(
            (fx.deliveries[0].wait, fx.deliveries[0].item.clone()),
            (6, item(1))
        );
        assert!(matches!(q.get(&p(3), 7, true).0, Get::Item(_, ref i) if *i == item(2)));
    }

    #[test]
    fn an_item_given_back_goes_first() {
        let mut q = Queue::new(0);
        q.put(&p(1), 0, item(1), true);
        q.put(&p(1), 0, item(2), true);
        let (Get::Item(id, _), _) = q.get(&p(2), 0, true) else {
            panic!()
        };
        q.give_back(id);
        assert!(matches!(q.get(&p(3), 0, true).0, Get::Item(_, ref i) if *i == item(1)));
        assert_eq!(q.unfinished(), 2);
    }

    #[test]
    fn a_prefetch_takes_what_is_there_but_never_from_a_waiting_consumer() {
        let mut q = Queue::new(2);
        q.put(&p(1), 0, item(1), true);
        q.put(&p(1), 0, item(2), true);
        q.put(&p(1), 7, item(3), true); // waits for room
        let (Get::Item(_, _), fx) = q.get(&p(2), 0, true) else {
            panic!()
        };
        assert_eq!(fx.stored, vec![7], "the get made room for the waiting put");
        let (more, _) = q.take_more(&p(2), 10);
        assert_eq!(
            more.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>(),
            vec![item(2), item(3)]
        );
        assert_eq!(q.in_delivery(), 3);
        q.get(&p(3), 8, true); // waits
        q.put(&p(1), 0, item(4), true);
        let (more, _) = q.take_more(&p(2), 10);
        assert!(more.is_empty(), "item 4 went to the waiting consumer");
        q.process_died(&p(2));
        assert_eq!(q.qsize(), 3, "the dead consumer's three come back");
    }

    #[test]
    fn an_acknowledged_item_is_never_given_back() {
        let mut q = Queue::new(0);
        q.put(&p(1), 0, item(1), true);
        let (Get::Item(id, _), _) = q.get(&p(2), 0, true) else {
            panic!()
        };
        q.ack(id);
        q.process_died(&p(2));
        assert!(q.empty());
    }

    #[test]
    fn a_dead_producers_blocked_put_and_a_cancelled_wait_are_forgotten() {
        let mut q = Queue::new(1);
        q.put(&p(1), 1, item(1), true);
        q.put(&p(2), 2, item(2), true);
        q.put(&p(3), 3, item(3), true);
        q.process_died(&p(2));
        assert!(q.cancel(3));
        let (_, fx) = q.get(&p(4), 4, true);
        assert!(fx.stored.is_empty());
        assert!(q.empty());
        assert!(!q.cancel(3), "once");
    }

    #[test]
    fn task_done_counts_down_to_join_and_no_further() {
        let mut q = Queue::new(0);
        assert!(q.join(1), "nothing to wait for");
        q.put(&p(1), 0, item(1), true);
        q.put(&p(1), 0, item(2), true);
        assert!(!q.join(2));
        assert!(q.task_done(&p(1)).unwrap().joined.is_empty());
        assert_eq!(q.task_done(&p(1)).unwrap().joined, vec![2]);
        assert_eq!(q.task_done(&p(1)), Err(QueueError::TooManyTaskDone));
        assert_eq!(q.unfinished(), 0);
    }

    #[test]
    fn a_joinable_consumer_that_dies_before_task_done_gives_its_item_back() {
        let mut q = Queue::new(0);
        q.put(&p(1), 0, item(1), true);
        q.put(&p(1), 0, item(2), true);
        q.get(&p(2), 0, true); // not acknowledged: task_done will
        q.get(&p(2), 0, true);
        q.task_done(&p(2)).unwrap(); // item 1 is done
        assert_eq!(q.in_delivery(), 1);
        q.process_died(&p(2));
        assert!(matches!(q.get(&p(3), 0, true).0, Get::Item(_, ref i) if *i == item(2)));
        assert!(!q.join(9), "item 2 is not done yet");
        assert_eq!(q.task_done(&p(3)).unwrap().joined, vec![9]);
    }

    #[test]
    fn an_item_given_back_is_not_counted_twice() {
        let mut q = Queue::new(0);
        q.put(&p(1), 0, item(1), true);
        q.get(&p(2), 0, true);
        q.process_died(&p(2));
        assert_eq!(q.unfinished(), 1);
    }
}
