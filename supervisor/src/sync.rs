//! Locks, semaphores, events and queues that every process of the tree can use, and
//! that survive the death of whoever holds them.
//!
//! A primitive lives in the process that created it, as a pure state machine of
//! `multiproc_core` served by that process (see `host`). Its handle is a plain serde
//! value: pass it to a child as an argument, or inside a message, and use it there;
//! requests travel along the tree as `Service` envelopes. A handle names its
//! primitive by an id *and* a random secret, so a forged or corrupted handle reaches
//! nothing (`SyncError::Forged`). When the host process is gone, every request fails
//! with `SyncError::OwnerGone`: nothing blocks for ever.

mod host;
mod park;
mod refs;
mod shared;
mod wire;

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc_core::semstate::{RLockState, SemState};
use multiproc_core::sync::SemKind;
use multiproc_core::{Body, CodecError, Envelope, Exhausted, Identity, RemoteError, codec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub(crate) use host::{State, secret, serve};
pub(crate) use refs::Addr;
use wire::{Answer, Fault, Op, Request};

use crate::runtime::current::me;
use crate::runtime::router;

/// What can go wrong with a lock, semaphore, event or queue.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Misuse, with Python's meaning: a release too many, a release by a thread that
    /// does not own an `RLock`.
    #[error(transparent)]
    Misuse(#[from] multiproc_core::sync::SyncError),
    /// `task_done` called more times than items were put.
    #[error(transparent)]
    Queue(#[from] multiproc_core::queue::QueueError),
    /// Acquired, but the previous holder died holding it: what it protected may be
    /// half-updated. The caller holds the lock now (as with a robust mutex's
    /// `EOWNERDEAD`).
    #[error("acquired, but its previous holder died holding it")]
    OwnerDied,
    /// The process that hosted this primitive has exited.
    #[error("the process {0} that hosted this primitive has exited")]
    OwnerGone(Identity),
    /// The handle names no primitive of its host (forged, corrupted, or of another
    /// kind).
    #[error("this handle does not name a primitive of its host process")]
    Forged,
    /// The queue is full (a put that would not wait, or waited its timeout out).
    #[error("the queue is full")]
    Full,
    /// The queue is empty (a get that would not wait, or waited its timeout out).
    #[error("the queue is empty")]
    Empty,
    /// This handle was closed: it puts no more.
    #[error("the queue is closed")]
    Closed,
    /// The item does not encode.
    #[error("the item does not encode: {0}")]
    Encode(CodecError),
    /// The item does not decode as this queue's type; it was given back, for a
    /// consumer of the right type.
    #[error("the item does not decode: {0}")]
    Decode(CodecError),
    /// The request failed on the way.
    #[error(transparent)]
    Remote(RemoteError),
    /// The item is larger than the queue can ever hold.
    #[error("an item of {len} bytes is larger than the queue's {capacity} bytes")]
    TooLarge {
        /// The encoded item's length.
        len: usize,
        /// The queue's capacity in bytes.
        capacity: usize,
    },
    /// The system has no room for the primitive: no descriptor for its shared memory,
    /// no memory, no thread. The limit's message says which limit, its value, and how
    /// to raise it.
    #[error(transparent)]
    Exhausted(Exhausted),
    /// The system refused shared memory otherwise (to create or to map a segment).
    #[error("shared memory: {0}")]
    Memory(String),
}

impl From<crate::runtime::shm::MapError> for SyncError {
    /// A segment that is gone is the caller's to name; this is for creating one.
    fn from(e: crate::runtime::shm::MapError) -> SyncError {
        match e {
            crate::runtime::shm::MapError::Exhausted(x) => SyncError::Exhausted(x),
            e => SyncError::Memory(e.to_string()),
        }
    }
}

impl From<crate::Error> for SyncError {
    /// For a primitive that needs this process's runtime: it may not get its threads.
    fn from(e: crate::Error) -> SyncError {
        match e {
            crate::Error::Exhausted { source, .. } => SyncError::Exhausted(source),
            e => SyncError::Memory(e.to_string()),
        }
    }
}

/// How many primitives this process hosts, and how many handles of primitives (its
/// own or others') are alive in it. For tests of their lifetime.
#[doc(hidden)]
pub fn __primitive_counts() -> (usize, usize) {
    (host::hosted(), refs::live_handles())
}

/// This thread's number, for owners (`RLock`) and holders.
pub(crate) fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: Cell<u64> = const { Cell::new(0) };
    }
    TOKEN.with(|t| {
        if t.get() == 0 {
            t.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

impl Addr {
    fn new(state: State) -> Addr {
        Addr::new_with(state, host::secret(), None)
    }

    /// A new primitive hosted here, with its first handle; `seg` is its shared
    /// memory, freed with it.
    pub(crate) fn new_with(
        state: State,
        secret: u64,
        seg: Option<crate::runtime::shm::SegmentRef>,
    ) -> Addr {
        let id = host::create(state, secret, seg);
        Addr::created(me().identity.clone(), id, secret)
    }

    /// Routes `op` to the host under correlation `corr` (0: no answer wanted).
    fn route(&self, op: Op, corr: u64) -> Result<(), SyncError> {
        let request = Request {
            prim: self.id,
            secret: self.secret,
            op,
        };
        let bytes = codec::encode(&request).map_err(SyncError::Encode)?;
        router::route(Envelope {
            to: self.owner.clone(),
            from: me().identity.clone(),
            corr,
            body: Body::Service(bytes),
        });
        Ok(())
    }

    fn send(&self, op: Op) -> Result<(u64, router::PendingReply), SyncError> {
        let corr = router::next_corr();
        let rx = router::expect_reply(corr);
        if let Err(e) = self.route(op, corr) {
            router::forget_reply(corr);
            return Err(e);
        }
        Ok((corr, rx))
    }

    fn answer(&self, body: Result<Body, oneshot::error::RecvError>) -> Result<Answer, SyncError> {
        match body {
            Ok(Body::Reply(bytes)) => {
                match codec::decode::<Answer>(&bytes).map_err(SyncError::Decode)? {
                    Answer::Fault(Fault::Sync(e)) => Err(e.into()),
                    Answer::Fault(Fault::Forged | Fault::WrongKind) => Err(SyncError::Forged),
                    answer => Ok(answer),
                }
            }
            Ok(Body::Fail(RemoteError::Exited(_) | RemoteError::NoProcess(_))) => {
                Err(SyncError::OwnerGone(self.owner.clone()))
            }
            Ok(Body::Fail(e)) => Err(SyncError::Remote(e)),
            Ok(_) => Err(SyncError::Remote(RemoteError::Decode(
                "a request came back".into(),
            ))),
            Err(_) => Err(SyncError::OwnerGone(self.owner.clone())),
        }
    }

    /// Maps the shared memory of a primitive of this host (a `Lock`, a queue).
    fn map(
        &self,
        seg: crate::runtime::shm::SegmentRef,
    ) -> Result<std::sync::Arc<crate::runtime::shm::Segment>, SyncError> {
        self.mapped_here(seg);
        crate::runtime::shm::mapped(seg).map_err(|e| match e {
            crate::runtime::shm::MapError::Gone => SyncError::OwnerGone(self.owner.clone()),
            e => SyncError::from(e),
        })
    }

    /// Tells the host that this process uses its primitive's shared memory, so that
    /// it watches this process and clears what it holds if it dies.
    async fn attach(&self) -> Result<(), SyncError> {
        self.done(Op::Attach {
            pid: crate::runtime::shm::my_pid(),
        })
        .await
    }

    /// Asks, expecting `Done`.
    async fn done(&self, op: Op) -> Result<(), SyncError> {
        match self.ask(op).await? {
            Answer::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn ask(&self, op: Op) -> Result<Answer, SyncError> {
        let (_, rx) = self.send(op)?;
        self.answer(rx.await)
    }

    /// Asks, waiting at most `timeout`; `Ok(None)` when the wait was cancelled.
    ///
    /// Cancel-safe: if the future is dropped while the host still has the wait, a
    /// task takes the wait back, and gives back the lock if it was granted meanwhile
    /// (see [`Abandoned`]).
    async fn ask_timeout(
        &self,
        op: Op,
        timeout: Option<Duration>,
    ) -> Result<Option<Answer>, SyncError> {
        let thread = op.thread();
        let (corr, rx) = self.send(op)?;
        // The receiver lives in the guard, so that an answer already on its way when
        // the future is dropped is still received, by the guard's task.
        let mut pending = Abandoned {
            wait: Some((self.clone(), rx)),
            corr,
            thread,
        };
        let rx = &mut pending.wait.as_mut().expect("set above").1;
        let answer = match timeout {
            None => self.answer(rx.await),
            Some(timeout) => match tokio::time::timeout(timeout, &mut *rx).await {
                Ok(body) => self.answer(body),
                // Timed out: take the wait back. If it was granted meanwhile, the
                // grant is already on its way (it left the host before this answer),
                // so take it.
                Err(_) => match self.ask(Op::Cancel { corr }).await? {
                    Answer::Cancelled(true) => {
                        router::forget_reply(corr);
                        pending.wait = None;
                        return Ok(None);
                    }
                    _ => self.answer(rx.await),
                },
            },
        };
        pending.wait = None;
        answer.map(Some)
    }
}

/// A host-served wait whose future was dropped before its answer came: on drop, a
/// task on the process runtime asks the host to forget it, and if the host had
/// already answered with the lock (an acquire granted, a condition wait woken),
/// releases it, so that an abandoned wait never leaves a lock held by nobody.
struct Abandoned {
    wait: Option<(Addr, router::PendingReply)>,
    corr: u64,
    thread: Option<u64>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some((addr, rx)) = self.wait.take() else {
            return;
        };
        let (corr, thread) = (self.corr, self.thread);
        crate::runtime::handle().spawn(async move {
            match addr.ask(Op::Cancel { corr }).await {
                Ok(Answer::Cancelled(true)) | Err(_) => {
                    router::forget_reply(corr);
                    return;
                }
                Ok(_) => {}
            }
            let granted = matches!(
                addr.answer(rx.await),
                Ok(Answer::Acquired { .. } | Answer::Woken { .. }) | Err(SyncError::OwnerDied)
            );
            if granted && let Some(thread) = thread {
                let _ = addr.ask(Op::Release { thread }).await;
            }
        });
    }
}

/// A wait time as Python takes it: `None` for ever; a negative one means 0.
pub fn timeout_secs(secs: Option<f64>) -> Option<Duration> {
    secs.map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
}

fn acquired(answer: Option<Answer>) -> Result<bool, SyncError> {
    match answer {
        None | Some(Answer::WouldBlock) => Ok(false),
        Some(Answer::Acquired { owner_died: true }) => Err(SyncError::OwnerDied),
        Some(Answer::Acquired { owner_died: false }) => Ok(true),
        Some(other) => Err(unexpected(other)),
    }
}

fn unexpected(answer: Answer) -> SyncError {
    SyncError::Remote(RemoteError::Decode(format!("unexpected answer {answer:?}")))
}

macro_rules! semaphore_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            addr: Addr,
        }

        impl $name {
            /// Acquires it (Python's `acquire(block, timeout)`): `Ok(false)` when it
            /// would block and `block` is false, or `timeout` ran out (`timeout` is
            /// ignored when `block` is false).
            ///
            /// # Errors
            ///
            /// [`SyncError::OwnerDied`] when it *was* acquired but its previous holder
            /// died holding it; [`SyncError::OwnerGone`] when its host has exited;
            /// [`SyncError::Forged`].
            pub async fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError> {
                let op = Op::Acquire { thread: thread_token(), block };
                let timeout = if block { timeout } else { None };
                acquired(self.addr.ask_timeout(op, timeout).await?)
            }

            /// Releases it.
            ///
            /// # Errors
            ///
            /// [`SyncError::Misuse`] (see the type), [`SyncError::OwnerGone`].
            pub async fn release(&self) -> Result<(), SyncError> {
                self.addr.done(Op::Release { thread: thread_token() }).await
            }

            /// Acquires it for as long as the guard lives (Python's `with lock:`).
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire), except that a dead previous holder is
            /// [`Guard::owner_died`], not an error.
            pub async fn guard(&self) -> Result<Guard<'_, Self>, SyncError> {
                Guard::acquired(self, self.acquire(true, None).await)
            }
        }

        impl Release for $name {
            fn release_now(&self) {
                let _ = crate::runtime::block_on(self.release());
            }
        }
    };
}

/// A semaphore whose state is in shared memory (see `shared::SemMem`): a permit
/// that is free is taken with no message; its host watches every process that
/// uses it and gives back the permits of one that dies.
macro_rules! shared_semaphore {
    ($(#[$doc:meta])* $name:ident, $bounded:expr) => {
        $(#[$doc])*
        ///
        /// Its state is in shared memory: a free permit costs no message. The process
        /// that created it hosts it: when a process dies holding permits they come
        /// back, and the next acquirer is told ([`SyncError::OwnerDied`]).
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            mem: Mapped<shared::SemMem>,
        }

        impl $name {
            /// A new one of `value` permits, hosted by this process.
            ///
            /// # Errors
            ///
            /// [`SyncError::Exhausted`] when the system has no descriptor or memory
            /// left for its shared memory (the message names the limit);
            /// [`SyncError::Memory`] when it refuses otherwise.
            pub fn new(value: usize) -> Result<$name, SyncError> {
                Ok($name {
                    mem: Mapped::create(
                        "multiproc-semaphore",
                        shared::guarded_len::<SemState>(),
                        shared::SEM_MAGIC,
                        |seg| shared::SemMem::init(seg, SemState::new(value as u64, $bounded)),
                        |sem| State::Semaphore(sem.clone()),
                    )?,
                })
            }

            /// Its memory, mapped (the host told, so that it can give back this
            /// process's permits).
            async fn sem(&self) -> Result<&shared::SemMem, SyncError> {
                self.mem.attached(shared::SEM_MAGIC, shared::SemMem::new).await
            }

            fn sem_blocking(&self) -> Result<&shared::SemMem, SyncError> {
                self.mem.attached_blocking(shared::SEM_MAGIC, shared::SemMem::new)
            }

            /// Acquires a permit (Python's `acquire(block, timeout)`): `Ok(false)`
            /// when it would block and `block` is false, or `timeout` ran out.
            /// Cancel-safe: a future dropped before it completes holds no permit.
            ///
            /// # Errors
            ///
            /// [`SyncError::OwnerDied`] when it *was* acquired but a holder died
            /// holding permits since the last acquire; [`SyncError::OwnerGone`];
            /// [`SyncError::Forged`].
            pub async fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError> {
                let sem = self.sem().await?;
                let owner = &self.mem.addr.owner;
                if sem.acquire(Some(Duration::ZERO), owner)? {
                    return Ok(true);
                }
                if !block {
                    return Ok(false);
                }
                sem.acquire_async(timeout, owner).await
            }

            /// As [`acquire`](Self::acquire), from a thread that may block.
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire).
            pub fn acquire_blocking(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError> {
                let timeout = if block { timeout } else { Some(Duration::ZERO) };
                self.sem_blocking()?.acquire(timeout, &self.mem.addr.owner)
            }

            /// Releases a permit (any process may).
            ///
            /// # Errors
            ///
            /// [`SyncError::Misuse`] past a bounded semaphore's value;
            /// [`SyncError::OwnerGone`].
            pub async fn release(&self) -> Result<(), SyncError> {
                self.sem().await?.release(&self.mem.addr.owner)
            }

            /// As [`release`](Self::release), from a thread that may block.
            ///
            /// # Errors
            ///
            /// As [`release`](Self::release).
            pub fn release_blocking(&self) -> Result<(), SyncError> {
                self.sem_blocking()?.release(&self.mem.addr.owner)
            }

            /// Its value now (Python's `get_value`).
            ///
            /// # Errors
            ///
            /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
            pub async fn get_value(&self) -> Result<usize, SyncError> {
                Ok(self.sem().await?.value(&self.mem.addr.owner)? as usize)
            }

            /// As [`get_value`](Self::get_value), from a thread that may block.
            ///
            /// # Errors
            ///
            /// As [`get_value`](Self::get_value).
            pub fn get_value_blocking(&self) -> Result<usize, SyncError> {
                Ok(self.sem_blocking()?.value(&self.mem.addr.owner)? as usize)
            }

            /// Acquires a permit for as long as the guard lives.
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire), except that a dead holder is
            /// [`Guard::owner_died`], not an error.
            pub async fn guard(&self) -> Result<Guard<'_, Self>, SyncError> {
                Guard::acquired(self, self.acquire(true, None).await)
            }

            /// As [`guard`](Self::guard), from a thread that may block.
            ///
            /// # Errors
            ///
            /// As [`guard`](Self::guard).
            pub fn guard_blocking(&self) -> Result<Guard<'_, Self>, SyncError> {
                Guard::acquired(self, self.acquire_blocking(true, None))
            }
        }

        impl Release for $name {
            fn release_now(&self) {
                let _ = self.release_blocking();
            }
        }
    };
}

shared_semaphore!(
    /// Python's `Semaphore(value)`: releases may raise the value past its start.
    Semaphore,
    false
);
shared_semaphore!(
    /// Python's `BoundedSemaphore(value)`: a release past the start value is
    /// [`SyncError::Misuse`].
    BoundedSemaphore,
    true
);
semaphore_type!(
    /// Python's `Condition`: a lock (an `RLock` unless made with
    /// [`Condition::with_lock`]) that waiters give up while they sleep. `acquire`,
    /// `release` and `guard` are the lock's.
    Condition
);

impl Condition {
    /// A condition over a new `RLock` (Python's default), hosted by this process.
    ///
    /// # Errors
    ///
    /// [`SyncError::Exhausted`] when this process's runtime, which serves its
    /// waiters, cannot have its threads or descriptors (the message names the limit).
    pub fn new() -> Result<Condition, SyncError> {
        Condition::over(SemKind::RLock)
    }

    /// A condition over a new plain `Lock`.
    ///
    /// # Errors
    ///
    /// As [`new`](Condition::new).
    pub fn with_lock() -> Result<Condition, SyncError> {
        Condition::over(SemKind::Lock)
    }

    fn over(kind: SemKind) -> Result<Condition, SyncError> {
        crate::runtime::ensure()?;
        Ok(Condition {
            addr: Addr::new(State::Condition(multiproc_core::sync::Condition::new(kind))),
        })
    }

    /// Gives the lock up, sleeps until notified or `timeout` runs out, and takes the
    /// lock back (at the depth it had); whether it was notified.
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] without the lock; [`SyncError::OwnerDied`] (notified or
    /// not, the lock is held again, but a holder died meanwhile);
    /// [`SyncError::OwnerGone`].
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool, SyncError> {
        let op = Op::CondWait {
            thread: thread_token(),
        };
        match self.addr.ask_timeout(op, timeout).await? {
            Some(Answer::Woken {
                owner_died: true, ..
            }) => Err(SyncError::OwnerDied),
            Some(Answer::Woken { notified, .. }) => Ok(notified),
            Some(other) => Err(unexpected(other)),
            None => Err(unexpected(Answer::Cancelled(true))),
        }
    }

    /// Waits until `predicate` holds, at most `timeout` in all (Python's
    /// `wait_for`); the predicate's last value.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    pub async fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            if predicate() {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => {
                    let now = tokio::time::Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    Some(d - now)
                }
                None => None,
            };
            self.wait(left).await?;
        }
    }

    /// Wakes up to `n` waiters (they return once they have the lock back).
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] without the lock; [`SyncError::OwnerGone`].
    pub async fn notify(&self, n: usize) -> Result<(), SyncError> {
        self.addr
            .done(Op::CondNotify {
                thread: thread_token(),
                n,
            })
            .await
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// As [`notify`](Condition::notify).
    pub async fn notify_all(&self) -> Result<(), SyncError> {
        self.notify(usize::MAX).await
    }
}

/// Python's `Barrier(parties, action)`: parties wait until all have come; the last
/// runs the action (a registered function), then all pass. A timeout, an `abort`, a
/// failed action or a party that dies while waiting breaks it for everyone
/// ([`SyncError::Misuse`] with `BrokenBarrier`) until `reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    addr: Addr,
    action: Option<(String, Vec<u8>)>,
}

impl Barrier {
    /// A barrier for `parties` (at least 1), hosted by this process.
    ///
    /// # Errors
    ///
    /// [`SyncError::Exhausted`] when this process's runtime, which serves its
    /// parties, cannot have its threads or descriptors (the message names the limit).
    pub fn new(parties: usize) -> Result<Barrier, SyncError> {
        crate::runtime::ensure()?;
        Ok(Barrier {
            addr: Addr::new(State::Barrier(multiproc_core::sync::Barrier::new(
                parties, false,
            ))),
            action: None,
        })
    }

    /// A barrier whose last party runs the registered function `f(args)` before all
    /// pass.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Unregistered`] for an unregistered function; an argument that
    /// does not encode is [`crate::Error::Args`]; [`crate::Error::Exhausted`] as for
    /// [`new`](Barrier::new).
    pub fn with_action<F: crate::Target<M>, M>(
        parties: usize,
        f: F,
        args: F::Args,
    ) -> Result<Barrier, crate::Error> {
        let _ = f;
        crate::runtime::ensure()?;
        let entry = crate::runtime::registry::by_type::<F>(multiproc_core::EntryKind::Function)?;
        let args = codec::encode(&args).map_err(|source| crate::Error::Args {
            name: "barrier action".into(),
            source,
        })?;
        Ok(Barrier {
            addr: Addr::new(State::Barrier(multiproc_core::sync::Barrier::new(
                parties, true,
            ))),
            action: Some((entry.name.to_string(), args)),
        })
    }

    /// Waits for the other parties, at most `timeout`; this party's index (0 for the
    /// first to arrive).
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] (`BrokenBarrier`) when it breaks, or is broken;
    /// [`SyncError::OwnerGone`].
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<usize, SyncError> {
        let broken = || SyncError::Misuse(multiproc_core::sync::SyncError::BrokenBarrier);
        let op = Op::BarrierWait {
            thread: thread_token(),
        };
        match self.addr.ask_timeout(op, timeout).await? {
            Some(Answer::Passed(i)) => Ok(i),
            Some(Answer::RunAction(i)) => {
                let ok = self.run_action();
                self.addr.ask(Op::BarrierActionDone { ok }).await?;
                if ok { Ok(i) } else { Err(broken()) }
            }
            None => Err(broken()),
            Some(other) => Err(unexpected(other)),
        }
    }

    fn run_action(&self) -> bool {
        let Some((name, args)) = &self.action else {
            return true;
        };
        let Some(entry) = crate::runtime::registry::by_name(name) else {
            return false;
        };
        let run = entry.run;
        let args = args.clone();
        matches!(
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || run(args))),
            Ok(crate::runtime::bootstrap::EntryOutcome::Returned)
        )
    }

    /// Breaks it: waiting and future parties fail until `reset`.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`].
    pub async fn abort(&self) -> Result<(), SyncError> {
        self.addr.done(Op::BarrierAbort).await
    }

    /// Makes it whole again; parties waiting now fail.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`].
    pub async fn reset(&self) -> Result<(), SyncError> {
        self.addr.done(Op::BarrierReset).await
    }

    /// `(parties, n_waiting, broken)`.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`].
    pub async fn info(&self) -> Result<(usize, usize, bool), SyncError> {
        match self.addr.ask(Op::BarrierInfo).await? {
            Answer::BarrierInfo {
                parties,
                n_waiting,
                broken,
            } => Ok((parties, n_waiting, broken)),
            other => Err(unexpected(other)),
        }
    }
}

/// Python's `multiprocessing.Lock`: one holder; any process or thread may release
/// it. Releasing an unlocked lock is [`SyncError::Misuse`].
///
/// Its state is one word in shared memory, so taking and releasing it costs no
/// message and, when nobody waits, no system call: the word holds the holder's pid,
/// and a waiter sleeps on it (a futex). The process that created it hosts it: it
/// watches every process that uses the lock, and when the holder dies it frees the
/// lock and the next acquirer is told ([`SyncError::OwnerDied`]). A waiter that
/// finds the host gone gets [`SyncError::OwnerGone`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    mem: Mapped<shared::LockWord>,
}

/// A primitive whose state is in a segment of shared memory: its address at its
/// host, where its memory is, and (once this process has mapped it) its word.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
struct Mapped<W> {
    addr: Addr,
    seg: crate::runtime::shm::SegmentRef,
    #[serde(skip)]
    word: std::sync::OnceLock<W>,
}

impl<W> fmt::Debug for Mapped<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapped")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<W> PartialEq for Mapped<W> {
    fn eq(&self, other: &Mapped<W>) -> bool {
        self.addr == other.addr && self.seg == other.seg
    }
}

impl<W> Eq for Mapped<W> {}

impl<W> Mapped<W> {
    /// A new segment of `len` bytes of kind `magic`, hosted here; `word` makes the
    /// word on it and `state` what the host keeps.
    fn create(
        name: &str,
        len: usize,
        magic: u64,
        word: impl FnOnce(std::sync::Arc<crate::runtime::shm::Segment>) -> W,
        state: impl FnOnce(&W) -> State,
    ) -> Result<Mapped<W>, SyncError> {
        let seg = crate::runtime::shm::Segment::create(name, len)?;
        let seg = crate::runtime::shm::host(seg);
        let secret = host::secret();
        shared::init(&seg, magic, secret);
        let at = seg.at();
        let word = word(seg);
        Ok(Mapped {
            addr: Addr::new_with(state(&word), secret, Some(at)),
            seg: at,
            word: std::sync::OnceLock::from(word),
        })
    }

    /// Maps the segment, which must be of kind `magic` and for this handle's
    /// secret, and makes its word (not kept: see `keep`).
    fn open(
        &self,
        magic: u64,
        word: impl FnOnce(std::sync::Arc<crate::runtime::shm::Segment>) -> W,
    ) -> Result<W, SyncError> {
        let seg = self.addr.map(self.seg)?;
        if !shared::genuine(&seg, magic, self.addr.secret) {
            return Err(SyncError::Forged);
        }
        Ok(word(seg))
    }

    /// Keeps the word mapped for this handle.
    fn keep(&self, word: W) -> &W {
        self.word.get_or_init(|| word)
    }

    /// The word, mapped; the first time in a process, the host is told who uses it,
    /// so that it watches this process and clears what it holds if it dies.
    async fn attached(
        &self,
        magic: u64,
        word: impl FnOnce(std::sync::Arc<crate::runtime::shm::Segment>) -> W,
    ) -> Result<&W, SyncError> {
        if let Some(w) = self.word.get() {
            return Ok(w);
        }
        let w = self.open(magic, word)?;
        self.addr.attach().await?;
        Ok(self.keep(w))
    }

    /// As `attached`, from a thread that may block.
    fn attached_blocking(
        &self,
        magic: u64,
        word: impl FnOnce(std::sync::Arc<crate::runtime::shm::Segment>) -> W,
    ) -> Result<&W, SyncError> {
        match self.word.get() {
            Some(w) => Ok(w),
            None => crate::runtime::block_on(self.attached(magic, word)),
        }
    }
}

impl Lock {
    /// A new lock, hosted by this process.
    ///
    /// # Errors
    ///
    /// [`SyncError::Exhausted`] when the system has no descriptor or memory left for
    /// its shared memory (the message names the limit: `RLIMIT_NOFILE`,
    /// `vm.max_map_count`, …); [`SyncError::Memory`] when it refuses otherwise.
    ///
    /// ```
    /// multiproc_supervisor::init();
    /// let lock = multiproc_supervisor::Lock::new()?;
    /// assert!(lock.acquire_blocking(false, None)?);
    /// lock.release_blocking()?;
    /// # Ok::<(), multiproc_supervisor::SyncError>(())
    /// ```
    pub fn new() -> Result<Lock, SyncError> {
        Ok(Lock {
            mem: Mapped::create(
                "multiproc-lock",
                shared::LOCK_LEN,
                shared::LOCK_MAGIC,
                lock_word,
                |word| State::Lock(word.clone()),
            )?,
        })
    }

    /// The word, mapped; the first time in a process, the host is told who uses it
    /// (so that it can free the lock if this process dies holding it).
    async fn word(&self) -> Result<&shared::LockWord, SyncError> {
        self.mem.attached(shared::LOCK_MAGIC, lock_word).await
    }

    /// As `word`, from a thread that may block.
    fn word_blocking(&self) -> Result<&shared::LockWord, SyncError> {
        self.mem.attached_blocking(shared::LOCK_MAGIC, lock_word)
    }

    /// Acquires it (Python's `acquire(block, timeout)`): `Ok(false)` when it would
    /// block and `block` is false, or `timeout` ran out (`timeout` is ignored when
    /// `block` is false). Cancel-safe: a future dropped before it completes has not
    /// taken the lock.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerDied`] when it *was* acquired but its previous holder died
    /// holding it; [`SyncError::OwnerGone`] when its host has exited;
    /// [`SyncError::Forged`].
    pub async fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError> {
        let word = self.word().await?;
        if let Some(owner_died) = word.try_lock() {
            return if owner_died {
                Err(SyncError::OwnerDied)
            } else {
                Ok(true)
            };
        }
        if !block {
            return Ok(false);
        }
        word.lock_async(timeout, &self.mem.addr.owner).await
    }

    /// Acquires it from a thread that may block: the same as
    /// [`acquire`](Lock::acquire), without a runtime in between.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Lock::acquire).
    pub fn acquire_blocking(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        let word = self.word_blocking()?;
        if !block {
            return match word.try_lock() {
                Some(true) => Err(SyncError::OwnerDied),
                Some(false) => Ok(true),
                None => Ok(false),
            };
        }
        word.lock(timeout, &self.mem.addr.owner)
    }

    /// Releases it.
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] when it is not held; [`SyncError::OwnerGone`] when this
    /// process never used it and its host has exited.
    pub async fn release(&self) -> Result<(), SyncError> {
        self.word().await?.unlock()
    }

    /// Releases it from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`release`](Lock::release).
    pub fn release_blocking(&self) -> Result<(), SyncError> {
        self.word_blocking()?.unlock()
    }

    /// Whether it is held now (by anyone).
    ///
    /// # Errors
    ///
    /// As [`release`](Lock::release).
    pub async fn locked(&self) -> Result<bool, SyncError> {
        Ok(self.word().await?.is_locked())
    }

    /// Acquires it for as long as the guard lives (Python's `with lock:`).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Lock::acquire), except that a dead previous holder is
    /// [`Guard::owner_died`], not an error.
    pub async fn guard(&self) -> Result<Guard<'_, Self>, SyncError> {
        Guard::acquired(self, self.acquire(true, None).await)
    }

    /// As [`guard`](Lock::guard), from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`guard`](Lock::guard).
    pub fn guard_blocking(&self) -> Result<Guard<'_, Self>, SyncError> {
        Guard::acquired(self, self.acquire_blocking(true, None))
    }
}

/// A lock's word in its segment.
fn lock_word(seg: std::sync::Arc<crate::runtime::shm::Segment>) -> shared::LockWord {
    shared::LockWord::new(seg, shared::LOCK_WORD_AT)
}

impl Release for Lock {
    fn release_now(&self) {
        let _ = self.release_blocking();
    }
}

/// Python's `RLock`: recursive, owned by one thread of one process; a release by
/// any other is [`SyncError::Misuse`].
///
/// Its state (owner and depth) is in shared memory under a lock word: taking it
/// free, or again, costs no message. The process that created it hosts it: when
/// its owner's process dies, the host frees it and the next acquirer is told
/// ([`SyncError::OwnerDied`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RLock {
    mem: Mapped<shared::RLockMem>,
}

impl RLock {
    /// A new recursive lock, hosted by this process.
    ///
    /// # Errors
    ///
    /// As [`Lock::new`].
    pub fn new() -> Result<RLock, SyncError> {
        Ok(RLock {
            mem: Mapped::create(
                "multiproc-rlock",
                shared::guarded_len::<RLockState>(),
                shared::RLOCK_MAGIC,
                |seg| shared::RLockMem::init(seg, RLockState::default()),
                |r| State::RLock(r.clone()),
            )?,
        })
    }

    async fn state(&self) -> Result<&shared::RLockMem, SyncError> {
        self.mem
            .attached(shared::RLOCK_MAGIC, shared::RLockMem::new)
            .await
    }

    fn state_blocking(&self) -> Result<&shared::RLockMem, SyncError> {
        self.mem
            .attached_blocking(shared::RLOCK_MAGIC, shared::RLockMem::new)
    }

    /// This thread, as an owner (never 0).
    fn me() -> u32 {
        (thread_token() as u32).max(1)
    }

    /// Acquires it (Python's `acquire(block, timeout)`): `Ok(false)` when it would
    /// block and `block` is false, or `timeout` ran out. An async task's owner is
    /// the thread that polls it when it calls `acquire`. Cancel-safe: a future
    /// dropped before it completes has not taken the lock.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerDied`] when it *was* acquired but its previous owner died
    /// holding it; [`SyncError::OwnerGone`]; [`SyncError::Forged`].
    pub async fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError> {
        let state = self.state().await?;
        let me = RLock::me();
        let owner = &self.mem.addr.owner;
        if state.acquire(me, Some(Duration::ZERO), owner)? {
            return Ok(true);
        }
        if !block {
            return Ok(false);
        }
        state.acquire_async(me, timeout, owner).await
    }

    /// As [`acquire`](RLock::acquire), from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`acquire`](RLock::acquire).
    pub fn acquire_blocking(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        let timeout = if block { timeout } else { Some(Duration::ZERO) };
        self.state_blocking()?
            .acquire(RLock::me(), timeout, &self.mem.addr.owner)
    }

    /// Releases it once.
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] when this thread does not own it; [`SyncError::OwnerGone`].
    pub async fn release(&self) -> Result<(), SyncError> {
        self.state()
            .await?
            .release(RLock::me(), &self.mem.addr.owner)
    }

    /// As [`release`](RLock::release), from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`release`](RLock::release).
    pub fn release_blocking(&self) -> Result<(), SyncError> {
        self.state_blocking()?
            .release(RLock::me(), &self.mem.addr.owner)
    }

    /// Acquires it for as long as the guard lives (Python's `with rlock:`).
    ///
    /// # Errors
    ///
    /// As [`acquire`](RLock::acquire), except that a dead previous owner is
    /// [`Guard::owner_died`], not an error.
    pub async fn guard(&self) -> Result<Guard<'_, Self>, SyncError> {
        Guard::acquired(self, self.acquire(true, None).await)
    }

    /// As [`guard`](RLock::guard), from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`guard`](RLock::guard).
    pub fn guard_blocking(&self) -> Result<Guard<'_, Self>, SyncError> {
        Guard::acquired(self, self.acquire_blocking(true, None))
    }
}

impl Release for RLock {
    fn release_now(&self) {
        let _ = self.release_blocking();
    }
}

/// Something a [`Guard`] releases.
pub trait Release {
    /// Releases it, blocking, ignoring errors (for `Drop`).
    fn release_now(&self);
}

/// Holds a lock or semaphore until dropped.
#[derive(Debug)]
pub struct Guard<'a, P: Release> {
    prim: &'a P,
    owner_died: bool,
}

impl<'a, P: Release> Guard<'a, P> {
    /// The guard of an acquire that blocked until it had `prim`: a dead previous
    /// holder is `owner_died`, not an error.
    fn acquired(prim: &'a P, acquire: Result<bool, SyncError>) -> Result<Guard<'a, P>, SyncError> {
        let owner_died = match acquire {
            Ok(_) => false,
            Err(SyncError::OwnerDied) => true,
            Err(e) => return Err(e),
        };
        Ok(Guard { prim, owner_died })
    }

    /// Whether the previous holder died holding it.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl<P: Release> Drop for Guard<'_, P> {
    fn drop(&mut self) {
        self.prim.release_now();
    }
}

/// Python's `Event`: a flag processes wait for. It is a word in shared memory:
/// `set`, `clear` and `is_set` are one atomic operation each, and a waiter sleeps on
/// the word (a futex). A waiter that finds the process that created it gone gets
/// [`SyncError::OwnerGone`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    mem: Mapped<shared::EventWord>,
}

impl Event {
    /// A new event, clear, hosted by this process.
    ///
    /// # Errors
    ///
    /// As [`Lock::new`].
    pub fn new() -> Result<Event, SyncError> {
        Ok(Event {
            mem: Mapped::create(
                "multiproc-event",
                shared::EVENT_LEN,
                shared::EVENT_MAGIC,
                shared::EventWord::new,
                |_| State::Mapped,
            )?,
        })
    }

    /// The word, mapped (an event needs no watching: nobody holds it).
    fn word(&self) -> Result<&shared::EventWord, SyncError> {
        if let Some(w) = self.mem.word.get() {
            return Ok(w);
        }
        let w = self.mem.open(shared::EVENT_MAGIC, shared::EventWord::new)?;
        Ok(self.mem.keep(w))
    }

    /// Sets it; every waiter returns `true`.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`] (mapping it after its host exited),
    /// [`SyncError::Forged`].
    pub async fn set(&self) -> Result<(), SyncError> {
        self.set_blocking()
    }

    /// As [`set`](Event::set), without a runtime (it never waits).
    ///
    /// # Errors
    ///
    /// As [`set`](Event::set).
    pub fn set_blocking(&self) -> Result<(), SyncError> {
        self.word()?.set();
        Ok(())
    }

    /// Clears it.
    ///
    /// # Errors
    ///
    /// As [`set`](Event::set).
    pub async fn clear(&self) -> Result<(), SyncError> {
        self.clear_blocking()
    }

    /// As [`clear`](Event::clear), without a runtime.
    ///
    /// # Errors
    ///
    /// As [`set`](Event::set).
    pub fn clear_blocking(&self) -> Result<(), SyncError> {
        self.word()?.clear();
        Ok(())
    }

    /// Whether it is set.
    ///
    /// # Errors
    ///
    /// As [`set`](Event::set).
    pub async fn is_set(&self) -> Result<bool, SyncError> {
        self.is_set_blocking()
    }

    /// As [`is_set`](Event::is_set), without a runtime.
    ///
    /// # Errors
    ///
    /// As [`set`](Event::set).
    pub fn is_set_blocking(&self) -> Result<bool, SyncError> {
        Ok(self.word()?.is_set())
    }

    /// Waits until it is set, at most `timeout`: whether it was set (Python's
    /// `wait`, which is `true` also when a `clear` followed the `set`).
    /// Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`] (also while waiting), [`SyncError::Forged`].
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool, SyncError> {
        let word = self.word()?;
        if word.is_set() {
            return Ok(true);
        }
        word.wait_async(timeout, &self.mem.addr.owner).await
    }

    /// As [`wait`](Event::wait), from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`wait`](Event::wait).
    pub fn wait_blocking(&self, timeout: Option<Duration>) -> Result<bool, SyncError> {
        self.word()?.wait(timeout, &self.mem.addr.owner)
    }
}

/// Python's `Queue(maxsize)` of `T`, in shared memory.
///
/// Items are encoded by the producer (an item that does not encode fails its
/// `put`) and copied into a ring in a memfd that every process using the queue
/// maps; a consumer copies them out and decodes them. A put or a get that need not
/// wait is a few hundred nanoseconds and no message; a waiter spins briefly, then
/// sleeps on a futex. There is no feeder thread: when `put` returns the item is in
/// the queue, so a producer can exit at once.
///
/// The process that created the queue hosts it: it watches every process that
/// uses it, and when one dies, what that process had taken and not yet received
/// (or, for a joinable queue, not yet marked `task_done`) goes back to the front of
/// the queue. So an item is delivered once even when a consumer dies in the middle
/// of a `get`, and a joinable queue's `join` never waits for work that died with a
/// worker. A waiter that finds the host gone gets [`SyncError::OwnerGone`].
///
/// An unbounded queue (`maxsize` 0) holds up to 32 MiB of encoded items; a put
/// beyond that waits for room, as a bounded queue's does.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Queue<T> {
    addr: Addr,
    seg: crate::runtime::shm::SegmentRef,
    #[serde(skip)]
    closed: bool,
    /// The queue's memory, once this process has mapped it.
    #[serde(skip)]
    mem: std::sync::OnceLock<std::sync::Arc<shared::QueueMem>>,
    #[serde(skip)]
    _item: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            addr: self.addr.clone(),
            seg: self.seg,
            closed: self.closed,
            mem: self.mem.clone(),
            _item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Encoding and copying buffers, reused by this thread's puts and gets.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue of at most `maxsize` items (0: unbounded), hosted by this process.
    ///
    /// # Errors
    ///
    /// [`SyncError::Exhausted`] when the system has no descriptor or memory left for
    /// its shared memory (the message names the limit); [`SyncError::Memory`] when it
    /// refuses otherwise.
    pub fn new(maxsize: usize) -> Result<Queue<T>, SyncError> {
        Queue::create(maxsize, false)
    }

    /// Python's `JoinableQueue(maxsize)`: a `get` is not final until its
    /// `task_done`, so an item whose consumer dies before `task_done` goes back to
    /// the queue, and `join` never waits for work that died with its worker.
    ///
    /// # Errors
    ///
    /// As [`new`](Queue::new).
    pub fn joinable(maxsize: usize) -> Result<Queue<T>, SyncError> {
        Queue::create(maxsize, true)
    }

    fn create(maxsize: usize, joinable: bool) -> Result<Queue<T>, SyncError> {
        let secret = host::secret();
        let mem =
            shared::QueueMem::create(maxsize as u64, joinable, shared::QUEUE_CAPACITY, secret)?;
        let addr = Addr::new_with(
            State::SharedQueue(std::sync::Arc::clone(&mem)),
            secret,
            Some(mem.at()),
        );
        Ok(Queue {
            addr,
            seg: mem.at(),
            closed: false,
            mem: std::sync::OnceLock::from(mem),
            _item: PhantomData,
        })
    }

    /// The queue's memory, mapped; the first time in a process, the host is told
    /// who uses it (so that it can give back what this process took if it dies).
    async fn mem(&self) -> Result<&shared::QueueMem, SyncError> {
        if let Some(m) = self.mem.get() {
            return Ok(m);
        }
        let seg = self.addr.map(self.seg)?;
        let mem = shared::QueueMem::open(seg, self.addr.secret).ok_or(SyncError::Forged)?;
        self.addr.attach().await?;
        Ok(self.mem.get_or_init(|| mem))
    }

    /// As `mem`, from a thread that may block.
    fn mem_blocking(&self) -> Result<&shared::QueueMem, SyncError> {
        match self.mem.get() {
            Some(m) => Ok(m),
            None => crate::runtime::block_on(self.mem()),
        }
    }

    fn owner(&self) -> &Identity {
        &self.addr.owner
    }

    /// Puts an item (Python's `put(obj, block, timeout)`).
    ///
    /// # Errors
    ///
    /// [`SyncError::Full`] when it would block and `block` is false, or `timeout`
    /// ran out; [`SyncError::Encode`]; [`SyncError::TooLarge`];
    /// [`SyncError::Closed`]; [`SyncError::OwnerGone`]; [`SyncError::Forged`].
    pub async fn put(
        &self,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), SyncError> {
        let mem = self.mem().await?;
        if self.put_with(mem, item, false, None)? {
            return Ok(());
        }
        if !block {
            return Err(SyncError::Full);
        }
        let bytes = codec::encode(item).map_err(SyncError::Encode)?;
        if mem.put_async(&bytes, timeout, self.owner()).await? {
            Ok(())
        } else {
            Err(SyncError::Full)
        }
    }

    /// Encodes `item` into this thread's buffer and puts it; whether it went in.
    fn put_with(
        &self,
        mem: &shared::QueueMem,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        if self.closed {
            return Err(SyncError::Closed);
        }
        BUFFER.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            codec::encode_into(item, &mut buf).map_err(SyncError::Encode)?;
            mem.put(&buf, block, timeout, self.owner())
        })
    }

    /// Puts an item from a thread that may block: as [`put`](Queue::put), with no
    /// runtime in between.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put).
    pub fn put_blocking(
        &self,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), SyncError> {
        let mem = self.mem_blocking()?;
        if self.put_with(mem, item, block, timeout)? {
            Ok(())
        } else {
            Err(SyncError::Full)
        }
    }

    /// Nothing to wait for: a put returns once its item is in the queue. (Kept for
    /// code written against queues whose puts were sent ahead.)
    ///
    /// # Errors
    ///
    /// None today.
    pub async fn flush(&self) -> Result<(), SyncError> {
        Ok(())
    }

    /// `put(item, false, None)`.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put).
    pub async fn put_nowait(&self, item: &T) -> Result<(), SyncError> {
        self.put(item, false, None).await
    }

    /// Gets an item (Python's `get(block, timeout)`).
    ///
    /// # Errors
    ///
    /// [`SyncError::Empty`] when it would block and `block` is false, or `timeout`
    /// ran out; [`SyncError::Decode`] (the item goes back to the front of the
    /// queue); [`SyncError::OwnerGone`]; [`SyncError::Forged`].
    pub async fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T, SyncError> {
        let mem = self.mem().await?;
        let mut bytes = Vec::new();
        if !mem.get(&mut bytes, false, None, self.owner())? {
            if !block {
                return Err(SyncError::Empty);
            }
            if !mem.get_async(&mut bytes, timeout, self.owner()).await? {
                return Err(SyncError::Empty);
            }
        }
        // Decoded (and marked delivered) in the same poll as the take, on the same
        // thread, whose slot kept the item.
        self.decode(mem, &bytes)
    }

    /// Decodes an item just taken; one that does not decode goes back.
    fn decode(&self, mem: &shared::QueueMem, bytes: &[u8]) -> Result<T, SyncError> {
        match codec::decode::<T>(bytes) {
            Ok(value) => {
                // From here on the item is the caller's (a joinable queue's is until
                // its `task_done`).
                if !mem.joinable() {
                    mem.delivered();
                }
                Ok(value)
            }
            Err(e) => {
                mem.give_back(bytes, self.owner())?;
                Err(SyncError::Decode(e))
            }
        }
    }

    /// Gets an item from a thread that may block: as [`get`](Queue::get), with no
    /// runtime in between.
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get).
    pub fn get_blocking(&self, block: bool, timeout: Option<Duration>) -> Result<T, SyncError> {
        let mem = self.mem_blocking()?;
        BUFFER.with(|buf| {
            let mut buf = buf.borrow_mut();
            if !mem.get(&mut buf, block, timeout, self.owner())? {
                return Err(SyncError::Empty);
            }
            self.decode(mem, &buf)
        })
    }

    /// `get(false, None)`.
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get).
    pub async fn get_nowait(&self) -> Result<T, SyncError> {
        self.get(false, None).await
    }

    /// Items in the queue now.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`], [`SyncError::Forged`] (mapping it).
    pub async fn qsize(&self) -> Result<usize, SyncError> {
        Ok(self.mem().await?.size().0)
    }

    /// Whether it is empty now.
    ///
    /// # Errors
    ///
    /// As [`qsize`](Queue::qsize).
    pub async fn empty(&self) -> Result<bool, SyncError> {
        Ok(self.mem().await?.size().0 == 0)
    }

    /// Whether it is full now.
    ///
    /// # Errors
    ///
    /// As [`qsize`](Queue::qsize).
    pub async fn full(&self) -> Result<bool, SyncError> {
        Ok(self.mem().await?.size().1)
    }

    /// This handle puts no more (Python's `close`); other handles are not affected.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// One item is done (`JoinableQueue.task_done`).
    ///
    /// # Errors
    ///
    /// [`SyncError::Queue`] when called more times than items were put;
    /// [`SyncError::OwnerGone`].
    pub async fn task_done(&self) -> Result<(), SyncError> {
        self.mem().await?.task_done(self.owner())
    }

    /// `task_done` from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`task_done`](Queue::task_done).
    pub fn task_done_blocking(&self) -> Result<(), SyncError> {
        self.mem_blocking()?.task_done(self.owner())
    }

    /// Waits until every item put has been marked done (`JoinableQueue.join`).
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`] (also while waiting).
    pub async fn join(&self) -> Result<(), SyncError> {
        let mem = self.mem().await?;
        if mem.join(Some(Duration::ZERO), self.owner())? {
            return Ok(());
        }
        mem.join_async(None, self.owner()).await.map(|_| ())
    }

    /// `join` from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`join`](Queue::join).
    pub fn join_blocking(&self) -> Result<(), SyncError> {
        self.mem_blocking()?.join(None, self.owner()).map(|_| ())
    }
}

/// Python's `JoinableQueue`: a [`Queue`] made with [`Queue::joinable`].
pub type JoinableQueue<T> = Queue<T>;

/// Python's `SimpleQueue`: an unbounded [`Queue`].
pub type SimpleQueue<T> = Queue<T>;
