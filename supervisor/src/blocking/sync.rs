//! The synchronization primitives, blocking: locks, semaphores, `Event`, `Queue`,
//! `Condition` and `Barrier`.

use std::time::Duration;

use crate::runtime::block_on;
use crate::runtime::error::Error;
use crate::runtime::target::Target;
use crate::sync::{Guard, SyncError};

/// The face of a lock or semaphore in shared memory: acquire and release work on the
/// memory directly, with no runtime in between.
macro_rules! shared_semaphore_face {
    ($(#[$doc:meta])* $name:ident) => {
        face!(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
            #[serde(transparent)]
            $name(crate::sync::$name)
        );

        impl $name {
            mirror! {
                /// Acquires a permit; see the async type.
                ///
                /// # Errors
                ///
                /// [`SyncError::OwnerDied`] (acquired, a holder died),
                /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
                pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError>
                    => now(acquire_blocking);

                /// Releases a permit.
                ///
                /// # Errors
                ///
                /// [`SyncError::Misuse`], [`SyncError::OwnerGone`].
                pub fn release(&self) -> Result<(), SyncError>
                    => now(release_blocking);

                /// Holds a permit until the guard is dropped (Python's `with`).
                ///
                /// # Errors
                ///
                /// As `acquire`; a dead holder is `Guard::owner_died`.
                pub fn guard(&self) -> Result<Guard<'_, crate::sync::$name>, SyncError>
                    => now(guard_blocking);
            }
        }
    };
}

shared_semaphore_face!(
    /// A lock any process of the tree can use; see [`crate::Lock`].
    Lock
);
shared_semaphore_face!(
    /// A recursive lock; see [`crate::RLock`].
    RLock
);
shared_semaphore_face!(
    /// A semaphore; see [`crate::Semaphore`].
    Semaphore
);
shared_semaphore_face!(
    /// A bounded semaphore; see [`crate::BoundedSemaphore`].
    BoundedSemaphore
);

impl Lock {
    /// A new lock, hosted by this process.
    ///
    /// # Errors
    ///
    /// See [`crate::Lock::new`]: [`SyncError::Exhausted`] names the limit when the
    /// system has no room for it.
    pub fn new() -> Result<Lock, SyncError> {
        crate::sync::Lock::new().map(Lock)
    }
}

impl RLock {
    /// A new recursive lock, hosted by this process.
    ///
    /// # Errors
    ///
    /// See [`crate::RLock::new`].
    pub fn new() -> Result<RLock, SyncError> {
        crate::sync::RLock::new().map(RLock)
    }
}

impl Semaphore {
    /// A semaphore starting at `value`.
    ///
    /// # Errors
    ///
    /// See [`crate::Semaphore::new`].
    pub fn new(value: usize) -> Result<Semaphore, SyncError> {
        crate::sync::Semaphore::new(value).map(Semaphore)
    }

    mirror! {
        /// Its value now.
        ///
        /// # Errors
        ///
        /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
        pub fn get_value(&self) -> Result<usize, SyncError>
            => now(get_value_blocking);
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore of `value`.
    ///
    /// # Errors
    ///
    /// See [`crate::BoundedSemaphore::new`].
    pub fn new(value: usize) -> Result<BoundedSemaphore, SyncError> {
        crate::sync::BoundedSemaphore::new(value).map(BoundedSemaphore)
    }

    mirror! {
        /// Its value now.
        ///
        /// # Errors
        ///
        /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
        pub fn get_value(&self) -> Result<usize, SyncError>
            => now(get_value_blocking);
    }
}

face!(
    /// An event; see [`crate::Event`].
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(transparent)]
    Event(crate::sync::Event)
);

impl Event {
    /// A new event, clear.
    ///
    /// # Errors
    ///
    /// See [`crate::Event::new`].
    pub fn new() -> Result<Event, SyncError> {
        crate::sync::Event::new().map(Event)
    }
    mirror! {
        /// Sets it.
        ///
        /// # Errors
        ///
        /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
        pub fn set(&self) -> Result<(), SyncError>
            => now(set_blocking);
        /// Clears it.
        ///
        /// # Errors
        ///
        /// As `set`.
        pub fn clear(&self) -> Result<(), SyncError>
            => now(clear_blocking);
        /// Whether it is set.
        ///
        /// # Errors
        ///
        /// As `set`.
        pub fn is_set(&self) -> Result<bool, SyncError>
            => now(is_set_blocking);
        /// Waits until it is set, at most `timeout`.
        ///
        /// # Errors
        ///
        /// As `set`.
        pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, SyncError>
            => now(wait_blocking);
    }
}

face!(
    /// A queue; see [`crate::Queue`].
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    #[serde(transparent, bound = "")]
    Queue<T>(crate::sync::Queue<T>)
);

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
    pub fn new(maxsize: usize) -> Result<Queue<T>, SyncError> {
        crate::sync::Queue::new(maxsize).map(Queue)
    }
    /// Python's `JoinableQueue(maxsize)`; see [`crate::Queue::joinable`].
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::new`].
    pub fn joinable(maxsize: usize) -> Result<Queue<T>, SyncError> {
        crate::sync::Queue::joinable(maxsize).map(Queue)
    }
    mirror! {
        /// Puts an item.
        ///
        /// # Errors
        ///
        /// See [`crate::Queue::put`].
        pub fn put(&self, item: &T, block: bool, timeout: Option<Duration>) -> Result<(), SyncError>
            => now(put_blocking);
    }
    /// Puts an item without waiting.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::put`].
    pub fn put_nowait(&self, item: &T) -> Result<(), SyncError> {
        self.0.put_blocking(item, false, None)
    }
    mirror! {
        /// Nothing to wait for: a put returns once its item is in the queue.
        ///
        /// # Errors
        ///
        /// See [`crate::Queue::flush`].
        pub fn flush(&self) -> Result<(), SyncError> => block;
        /// Gets an item.
        ///
        /// # Errors
        ///
        /// See [`crate::Queue::get`].
        pub fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T, SyncError>
            => now(get_blocking);
    }
    /// Gets an item without waiting.
    ///
    /// # Errors
    ///
    /// See [`crate::Queue::get`].
    pub fn get_nowait(&self) -> Result<T, SyncError> {
        self.0.get_blocking(false, None)
    }
    mirror! {
        /// Items in the queue now.
        ///
        /// # Errors
        ///
        /// See [`crate::Queue::qsize`].
        pub fn qsize(&self) -> Result<usize, SyncError> => block;
        /// Whether it is empty now.
        ///
        /// # Errors
        ///
        /// See [`crate::Queue::qsize`].
        pub fn empty(&self) -> Result<bool, SyncError> => block;
        /// Whether it is full now.
        ///
        /// # Errors
        ///
        /// See [`crate::Queue::qsize`].
        pub fn full(&self) -> Result<bool, SyncError> => block;
        /// This handle puts no more.
        pub fn close(&mut self) => now;
        /// One item is done.
        ///
        /// # Errors
        ///
        /// See [`crate::Queue::task_done`].
        pub fn task_done(&self) -> Result<(), SyncError>
            => now(task_done_blocking);
        /// Waits until every item is done.
        ///
        /// # Errors
        ///
        /// See [`crate::Queue::join`].
        pub fn join(&self) -> Result<(), SyncError>
            => now(join_blocking);
    }
}

face!(
    /// A condition; see [`crate::Condition`]. `acquire`, `release` and `guard` are its
    /// lock's.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(transparent)]
    Condition(crate::sync::Condition)
);

impl Condition {
    /// A condition over a new `RLock` (Python's default).
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::new`].
    pub fn new() -> Result<Condition, SyncError> {
        crate::sync::Condition::new().map(Condition)
    }
    /// A condition over a new plain `Lock`.
    ///
    /// # Errors
    ///
    /// See [`crate::Condition::new`].
    pub fn with_lock() -> Result<Condition, SyncError> {
        crate::sync::Condition::with_lock().map(Condition)
    }
    mirror! {
        /// Acquires it; see the async type.
        ///
        /// # Errors
        ///
        /// [`SyncError::OwnerDied`] (acquired, previous holder dead),
        /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
        pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError> => block;
        /// Releases it.
        ///
        /// # Errors
        ///
        /// [`SyncError::Misuse`], [`SyncError::OwnerGone`].
        pub fn release(&self) -> Result<(), SyncError> => block;
        /// Holds it until the guard is dropped (Python's `with`).
        ///
        /// # Errors
        ///
        /// As `acquire`; a dead previous holder is `Guard::owner_died`.
        pub fn guard(&self) -> Result<Guard<'_, crate::sync::Condition>, SyncError> => block;
        /// Sleeps until notified or `timeout` runs out; whether it was notified.
        ///
        /// # Errors
        ///
        /// See [`crate::Condition::wait`].
        pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, SyncError> => block;
        /// Waits until `predicate` holds.
        ///
        /// # Errors
        ///
        /// See [`crate::Condition::wait_for`].
        pub fn wait_for(&self, predicate: impl FnMut() -> bool, timeout: Option<Duration>)
            -> Result<bool, SyncError> => block;
        /// Wakes up to `n` waiters.
        ///
        /// # Errors
        ///
        /// See [`crate::Condition::notify`].
        pub fn notify(&self, n: usize) -> Result<(), SyncError> => block;
        /// Wakes every waiter.
        ///
        /// # Errors
        ///
        /// See [`crate::Condition::notify`].
        pub fn notify_all(&self) -> Result<(), SyncError> => block;
    }
}

face!(
    /// A barrier; see [`crate::Barrier`].
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(transparent)]
    Barrier(crate::sync::Barrier)
);

impl Barrier {
    /// A barrier for `parties`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::new`].
    pub fn new(parties: usize) -> Result<Barrier, SyncError> {
        crate::sync::Barrier::new(parties).map(Barrier)
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
        crate::sync::Barrier::with_action(parties, f, args).map(Barrier)
    }
    mirror! {
        /// Waits for the other parties; this party's index.
        ///
        /// # Errors
        ///
        /// See [`crate::Barrier::wait`].
        pub fn wait(&self, timeout: Option<Duration>) -> Result<usize, SyncError> => block;
        /// Breaks it.
        ///
        /// # Errors
        ///
        /// See [`crate::Barrier::abort`].
        pub fn abort(&self) -> Result<(), SyncError> => block;
        /// Makes it whole again.
        ///
        /// # Errors
        ///
        /// See [`crate::Barrier::reset`].
        pub fn reset(&self) -> Result<(), SyncError> => block;
    }
    /// Python's `parties`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::info`].
    pub fn parties(&self) -> Result<usize, SyncError> {
        Ok(block_on(self.0.info())?.0)
    }
    /// Python's `n_waiting`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::info`].
    pub fn n_waiting(&self) -> Result<usize, SyncError> {
        Ok(block_on(self.0.info())?.1)
    }
    /// Python's `broken`.
    ///
    /// # Errors
    ///
    /// See [`crate::Barrier::info`].
    pub fn broken(&self) -> Result<bool, SyncError> {
        Ok(block_on(self.0.info())?.2)
    }
}
