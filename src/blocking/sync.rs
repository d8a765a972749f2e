//! The synchronization primitives, blocking: locks, semaphores, `Event`, `Queue`,
//! `Condition` and `Barrier`.

use std::time::Duration;

use super::block_on;
use crate::{Error, Target};

macro_rules! blocking_semaphore {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub crate::$name);

        impl $name {
            /// Acquires it; see the async type.
            ///
            /// # Errors
            ///
            /// [`crate::SyncError::OwnerDied`] (acquired, previous holder dead),
            /// [`crate::SyncError::OwnerGone`], [`crate::SyncError::Forged`].
            pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, crate::SyncError> {
                block_on(self.0.acquire(block, timeout))
            }

            /// Releases it.
            ///
            /// # Errors
            ///
            /// [`crate::SyncError::Misuse`], [`crate::SyncError::OwnerGone`].
            pub fn release(&self) -> Result<(), crate::SyncError> {
                block_on(self.0.release())
            }

            /// Holds it until the guard is dropped (Python's `with`).
            ///
            /// # Errors
            ///
            /// As `acquire`; a dead previous holder is `Guard::owner_died`.
            pub fn guard(&self) -> Result<crate::Guard<'_, crate::$name>, crate::SyncError> {
                block_on(self.0.guard())
            }
        }
    };
}

/// A mirror of a lock or semaphore in shared memory: acquire and release work on
/// the memory directly, with no runtime in between.
macro_rules! blocking_shared_semaphore {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub crate::$name);

        impl $name {
            /// Acquires a permit; see the async type.
            ///
            /// # Errors
            ///
            /// [`crate::SyncError::OwnerDied`] (acquired, a holder died),
            /// [`crate::SyncError::OwnerGone`], [`crate::SyncError::Forged`].
            pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, crate::SyncError> {
                self.0.acquire_blocking(block, timeout)
            }

            /// Releases a permit.
            ///
            /// # Errors
            ///
            /// [`crate::SyncError::Misuse`], [`crate::SyncError::OwnerGone`].
            pub fn release(&self) -> Result<(), crate::SyncError> {
                self.0.release_blocking()
            }

            /// Holds a permit until the guard is dropped (Python's `with`).
            ///
            /// # Errors
            ///
            /// As `acquire`; a dead holder is `Guard::owner_died`.
            pub fn guard(&self) -> Result<crate::Guard<'_, crate::$name>, crate::SyncError> {
                self.0.guard_blocking()
            }
        }
    };
}

blocking_shared_semaphore!(
    /// A lock any process of the tree can use; see [`crate::Lock`].
    Lock
);
blocking_shared_semaphore!(
    /// A recursive lock; see [`crate::RLock`].
    RLock
);

blocking_shared_semaphore!(
    /// A semaphore; see [`crate::Semaphore`].
    Semaphore
);
blocking_shared_semaphore!(
    /// A bounded semaphore; see [`crate::BoundedSemaphore`].
    BoundedSemaphore
);

impl Lock {
    /// A new lock, hosted by this process.
    ///
    /// # Errors
    ///
    /// See [`crate::Lock::new`]: [`crate::SyncError::Exhausted`] names the limit
    /// when the system has no room for it.
    pub fn new() -> Result<Lock, crate::SyncError> {
        crate::Lock::new().map(Lock)
    }
}

impl RLock {
    /// A new recursive lock, hosted by this process.
    ///
    /// # Errors
    ///
    /// See [`crate::RLock::new`].
    pub fn new() -> Result<RLock, crate::SyncError> {
        crate::RLock::new().map(RLock)
    }
}

impl Semaphore {
    /// A semaphore starting at `value`.
    ///
    /// # Errors
    ///
    /// See [`crate::Semaphore::new`].
    pub fn new(value: usize) -> Result<Semaphore, crate::SyncError> {
        crate::Semaphore::new(value).map(Semaphore)
    }

    /// Its value now.
    ///
    /// # Errors
    ///
    /// [`crate::SyncError::OwnerGone`], [`crate::SyncError::Forged`].
    pub fn get_value(&self) -> Result<usize, crate::SyncError> {
        self.0.get_value_blocking()
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore of `value`.
    ///
    /// # Errors
    ///
    /// See [`crate::BoundedSemaphore::new`].
    pub fn new(value: usize) -> Result<BoundedSemaphore, crate::SyncError> {
        crate::BoundedSemaphore::new(value).map(BoundedSemaphore)
    }
}

/// An event; see [`crate::Event`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Event(pub crate::Event);

impl Event {
    /// A new event, clear.
    ///
    /// # Errors
    ///
    /// See [`crate::Event::new`].
    pub fn new() -> Result<Event, crate::SyncError> {
        crate::Event::new().map(Event)
    }
    /// Sets it.
    ///
    /// # Errors
    ///
    /// [`crate::SyncError::OwnerGone`], [`crate::SyncError::Forged`].
    pub fn set(&self) -> Result<(), crate::SyncError> {
        self.0.set_blocking()
    }
    /// Clears it.
    ///
    /// # Errors
    ///
    /// As `set`.
    pub fn clear(&self) -> Result<(), crate::SyncError> {
        self.0.clear_blocking()
    }
    /// Whether it is set.
    ///
    /// # Errors
    ///
    /// As `set`.
    pub fn is_set(&self) -> Result<bool, crate::SyncError> {
        self.0.is_set_blocking()
    }
    /// Waits until it is set, at most `timeout`.
    ///
    /// # Errors
    ///
    /// As `set`.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, crate::SyncError> {
        self.0.wait_blocking(timeout)
    }
}

/// A queue; see [`crate::Queue`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent, bound = "")]
pub struct Queue<T>(pub crate::Queue<T>);

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue(self.0.clone())
    }
}

/// Python's `JoinableQueue`; see [`crate::JoinableQueue`].
pub type JoinableQueue<T> = Queue<T>;
/// Python's `SimpleQueue`; see [`crate::SimpleQueue`].
pub type SimpleQueue<T> = Queue<T>;

impl<T: serde::Serialize + serde::de::DeserializeOwned> Queue<T> {
    /// A queue of at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::new`].
    pub fn new(maxsize: usize) -> Result<Queue<T>, crate::SyncError> {
        crate::Queue::new(maxsize).map(Queue)
    }
    /// Python's `JoinableQueue(maxsize)`; see [`crate::Queue::joinable`].
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::new`].
    pub fn joinable(maxsize: usize) -> Result<Queue<T>, crate::SyncError> {
        crate::Queue::joinable(maxsize).map(Queue)
    }
    /// Puts an item.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::put`].
    pub fn put(
        &self,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), crate::SyncError> {
        self.0.put_blocking(item, block, timeout)
    }
    /// Puts an item without waiting.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::put`].
    pub fn put_nowait(&self, item: &T) -> Result<(), crate::SyncError> {
        self.0.put_blocking(item, false, None)
    }
    /// Nothing to wait for: a put returns once its item is in the queue.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::flush`].
    pub fn flush(&self) -> Result<(), crate::SyncError> {
        block_on(self.0.flush())
    }
    /// Gets an item.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::get`].
    pub fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T, crate::SyncError> {
        self.0.get_blocking(block, timeout)
    }
    /// Gets an item without waiting.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::get`].
    pub fn get_nowait(&self) -> Result<T, crate::SyncError> {
        self.0.get_blocking(false, None)
    }
    /// Items in the queue now.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::qsize`].
    pub fn qsize(&self) -> Result<usize, crate::SyncError> {
        block_on(self.0.qsize())
    }
    /// Whether it is empty now.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::qsize`].
    pub fn empty(&self) -> Result<bool, crate::SyncError> {
        block_on(self.0.empty())
    }
    /// Whether it is full now.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::qsize`].
    pub fn full(&self) -> Result<bool, crate::SyncError> {
        block_on(self.0.full())
    }
    /// This handle puts no more.
    pub fn close(&mut self) {
        self.0.close()
    }
    /// One item is done.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::task_done`].
    pub fn task_done(&self) -> Result<(), crate::SyncError> {
        self.0.task_done_blocking()
    }
    /// Waits until every item is done.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::join`].
    pub fn join(&self) -> Result<(), crate::SyncError> {
        self.0.join_blocking()
    }
}

blocking_semaphore!(
    /// A condition; see [`crate::Condition`]. `acquire`, `release` and `guard` are its
    /// lock's.
    Condition
);

impl Condition {
    /// A condition over a new `RLock` (Python's default).
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::new`].
    pub fn new() -> Result<Condition, crate::SyncError> {
        crate::Condition::new().map(Condition)
    }
    /// A condition over a new plain `Lock`.
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::new`].
    pub fn with_lock() -> Result<Condition, crate::SyncError> {
        crate::Condition::with_lock().map(Condition)
    }
    /// Sleeps until notified or `timeout` runs out; whether it was notified.
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::wait`].
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, crate::SyncError> {
        block_on(self.0.wait(timeout))
    }
    /// Waits until `predicate` holds.
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::wait_for`].
    pub fn wait_for(
        &self,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, crate::SyncError> {
        block_on(self.0.wait_for(predicate, timeout))
    }
    /// Wakes up to `n` waiters.
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::notify`].
    pub fn notify(&self, n: usize) -> Result<(), crate::SyncError> {
        block_on(self.0.notify(n))
    }
    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::notify`].
    pub fn notify_all(&self) -> Result<(), crate::SyncError> {
        block_on(self.0.notify_all())
    }
}

/// A barrier; see [`crate::Barrier`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Barrier(pub crate::Barrier);

impl Barrier {
    /// A barrier for `parties`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::new`].
    pub fn new(parties: usize) -> Result<Barrier, crate::SyncError> {
        crate::Barrier::new(parties).map(Barrier)
    }
    /// A barrier whose last party runs `f(args)` before all pass.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::with_action`].
    pub fn with_action<F: Target<M>, M>(
        parties: usize,
        f: F,
        args: F::Args,
    ) -> Result<Barrier, Error> {
        crate::Barrier::with_action(parties, f, args).map(Barrier)
    }
    /// Waits for the other parties; this party's index.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::wait`].
    pub fn wait(&self, timeout: Option<Duration>) -> Result<usize, crate::SyncError> {
        block_on(self.0.wait(timeout))
    }
    /// Breaks it.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::abort`].
    pub fn abort(&self) -> Result<(), crate::SyncError> {
        block_on(self.0.abort())
    }
    /// Makes it whole again.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::reset`].
    pub fn reset(&self) -> Result<(), crate::SyncError> {
        block_on(self.0.reset())
    }
    /// Python's `parties`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::info`].
    pub fn parties(&self) -> Result<usize, crate::SyncError> {
        Ok(block_on(self.0.info())?.0)
    }
    /// Python's `n_waiting`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::info`].
    pub fn n_waiting(&self) -> Result<usize, crate::SyncError> {
        Ok(block_on(self.0.info())?.1)
    }
    /// Python's `broken`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::info`].
    pub fn broken(&self) -> Result<bool, crate::SyncError> {
        Ok(block_on(self.0.info())?.2)
    }
}
