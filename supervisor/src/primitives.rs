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
mod shared;
mod wire;

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_core::queue::Queue as QueueState;
use multiproc_core::sync::{Event as EventState, Sem, SemKind};
use multiproc_core::{Body, CodecError, Envelope, Identity, RemoteError, codec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use host::State;
pub(crate) use host::serve;
use wire::{Answer, Fault, Op, Request};

use crate::current::me;
use crate::router;

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
    /// The system refused shared memory (to create or to map a segment).
    #[error("shared memory: {0}")]
    Memory(String),
}

/// Where a primitive lives, and the secret that proves a handle genuine.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Addr {
    owner: Identity,
    id: u64,
    secret: u64,
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Addr")
            .field("owner", &self.owner)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// This thread's number, for owners (`RLock`) and holders.
fn thread_token() -> u64 {
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
        Addr::new_with(state, host::secret())
    }

    fn new_with(state: State, secret: u64) -> Addr {
        let id = host::create(state, secret);
        Addr {
            owner: me().identity.clone(),
            id,
            secret,
        }
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

    fn send(&self, op: Op) -> Result<(u64, oneshot::Receiver<Body>), SyncError> {
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
                    Answer::Fault(Fault::Queue(e)) => Err(e.into()),
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

    /// Sends a request nobody waits for: correlation 0 asks for no answer. Used for
    /// acknowledgements, which need no reply: envelopes on one path keep their order,
    /// so it reaches the host before anything this process asks afterwards.
    fn tell(&self, op: Op) -> Result<(), SyncError> {
        self.route(op, 0)
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
    async fn ask_timeout(
        &self,
        op: Op,
        timeout: Option<Duration>,
    ) -> Result<Option<Answer>, SyncError> {
        let (corr, mut rx) = self.send(op)?;
        let Some(timeout) = timeout else {
            return self.answer(rx.await).map(Some);
        };
        if let Ok(body) = tokio::time::timeout(timeout, &mut rx).await {
            return self.answer(body).map(Some);
        }
        // Timed out: take the wait back. If it was granted meanwhile, the grant is
        // already on its way (it left the host before this answer), so take it.
        match self.ask(Op::Cancel { corr }).await? {
            Answer::Cancelled(true) => {
                router::forget_reply(corr);
                Ok(None)
            }
            _ => self.answer(rx.await).map(Some),
        }
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
                let owner_died = match self.acquire(true, None).await {
                    Ok(_) => false,
                    Err(SyncError::OwnerDied) => true,
                    Err(e) => return Err(e),
                };
                Ok(Guard { prim: self, owner_died })
            }
        }

        impl Release for $name {
            fn release_now(&self) {
                let _ = crate::runtime::block_on(self.release());
            }
        }
    };
}

semaphore_type!(
    /// Python's `RLock`: recursive, owned by one thread of one process; a release by
    /// any other is [`SyncError::Misuse`].
    RLock
);
semaphore_type!(
    /// Python's `Semaphore(value)`: releases may raise the value past its start.
    Semaphore
);
semaphore_type!(
    /// Python's `BoundedSemaphore(value)`: a release past the start value is
    /// [`SyncError::Misuse`].
    BoundedSemaphore
);
semaphore_type!(
    /// Python's `Condition`: a lock (an `RLock` unless made with
    /// [`Condition::with_lock`]) that waiters give up while they sleep. `acquire`,
    /// `release` and `guard` are the lock's.
    Condition
);

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl Condition {
    /// A condition over a new `RLock` (Python's default), hosted by this process.
    pub fn new() -> Condition {
        Condition {
            addr: Addr::new(State::Condition(multiproc_core::sync::Condition::new(
                SemKind::RLock,
            ))),
        }
    }

    /// A condition over a new plain `Lock`.
    pub fn with_lock() -> Condition {
        Condition {
            addr: Addr::new(State::Condition(multiproc_core::sync::Condition::new(
                SemKind::Lock,
            ))),
        }
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
    pub fn new(parties: usize) -> Barrier {
        Barrier {
            addr: Addr::new(State::Barrier(multiproc_core::sync::Barrier::new(
                parties, false,
            ))),
            action: None,
        }
    }

    /// A barrier whose last party runs the registered function `f(args)` before all
    /// pass.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Unregistered`] for an unregistered function; an argument that
    /// does not encode is [`crate::Error::Args`].
    pub fn with_action<F: crate::Target<M>, M>(
        parties: usize,
        f: F,
        args: F::Args,
    ) -> Result<Barrier, crate::Error> {
        let _ = f;
        let entry = crate::registry::by_type::<F>(multiproc_core::EntryKind::Function)?;
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
        let Some(entry) = crate::registry::by_name(name) else {
            return false;
        };
        let run = entry.run;
        let args = args.clone();
        matches!(
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || run(args))),
            Ok(crate::bootstrap::EntryOutcome::Returned)
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
#[derive(Clone, Serialize, Deserialize)]
pub struct Lock {
    addr: Addr,
    seg: crate::shm::SegmentRef,
    /// The word, once this process has mapped it.
    #[serde(skip)]
    word: std::sync::OnceLock<shared::LockWord>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Lock {
    fn eq(&self, other: &Lock) -> bool {
        self.addr == other.addr && self.seg == other.seg
    }
}

impl Eq for Lock {}

impl Lock {
    /// A new lock, hosted by this process.
    ///
    /// # Panics
    ///
    /// When the system refuses shared memory (no memory, no file descriptors).
    pub fn new() -> Lock {
        Lock::try_new().expect("a lock's shared memory")
    }

    /// A new lock, hosted by this process.
    ///
    /// # Errors
    ///
    /// [`SyncError::Memory`] when the system refuses shared memory.
    pub fn try_new() -> Result<Lock, SyncError> {
        let seg = crate::shm::Segment::create("multiproc-lock", shared::LOCK_LEN)
            .map_err(|e| SyncError::Memory(e.to_string()))?;
        let seg = crate::shm::host(seg);
        let secret = host::secret();
        shared::init(&seg, shared::LOCK_MAGIC, secret);
        let word = shared::LockWord::new(std::sync::Arc::clone(&seg), shared::LOCK_WORD_AT);
        let addr = Addr::new_with(State::Lock(word.clone()), secret);
        Ok(Lock {
            addr,
            seg: seg.at(),
            word: std::sync::OnceLock::from(word),
        })
    }

    /// Maps the word (no host involved): the segment must be this lock's.
    fn open(&self) -> Result<shared::LockWord, SyncError> {
        let seg = crate::shm::mapped(self.seg).map_err(|e| match e {
            crate::shm::MapError::Gone => SyncError::OwnerGone(self.addr.owner.clone()),
            crate::shm::MapError::Io(e) => SyncError::Memory(e.to_string()),
        })?;
        if !shared::genuine(&seg, shared::LOCK_MAGIC, self.addr.secret) {
            return Err(SyncError::Forged);
        }
        Ok(shared::LockWord::new(seg, shared::LOCK_WORD_AT))
    }

    /// The word, mapped; the first time in a process, the host is told who uses it
    /// (so that it can free the lock if this process dies holding it).
    async fn word(&self) -> Result<&shared::LockWord, SyncError> {
        if let Some(w) = self.word.get() {
            return Ok(w);
        }
        let w = self.open()?;
        self.addr
            .done(Op::Attach {
                pid: crate::shm::my_pid(),
            })
            .await?;
        Ok(self.word.get_or_init(|| w))
    }

    /// As `word`, from a thread that may block.
    fn word_blocking(&self) -> Result<&shared::LockWord, SyncError> {
        match self.word.get() {
            Some(w) => Ok(w),
            None => crate::runtime::block_on(self.word()),
        }
    }

    /// Acquires it (Python's `acquire(block, timeout)`): `Ok(false)` when it would
    /// block and `block` is false, or `timeout` ran out (`timeout` is ignored when
    /// `block` is false). The wait itself happens on a blocking thread.
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
        let word = word.clone();
        let owner = self.addr.owner.clone();
        crate::runtime::handle()
            .spawn_blocking(move || word.lock(timeout, &owner))
            .await
            .unwrap_or_else(|e| Err(SyncError::Memory(format!("the waiting thread failed: {e}"))))
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
        word.lock(timeout, &self.addr.owner)
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
        let owner_died = match self.acquire(true, None).await {
            Ok(_) => false,
            Err(SyncError::OwnerDied) => true,
            Err(e) => return Err(e),
        };
        Ok(Guard {
            prim: self,
            owner_died,
        })
    }

    /// As [`guard`](Lock::guard), from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`guard`](Lock::guard).
    pub fn guard_blocking(&self) -> Result<Guard<'_, Self>, SyncError> {
        let owner_died = match self.acquire_blocking(true, None) {
            Ok(_) => false,
            Err(SyncError::OwnerDied) => true,
            Err(e) => return Err(e),
        };
        Ok(Guard {
            prim: self,
            owner_died,
        })
    }
}

impl Release for Lock {
    fn release_now(&self) {
        let _ = self.release_blocking();
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

impl RLock {
    /// A new recursive lock, hosted by this process.
    pub fn new() -> RLock {
        RLock {
            addr: Addr::new(State::Sem(Sem::new(SemKind::RLock, 1))),
        }
    }
}

impl Default for RLock {
    fn default() -> Self {
        RLock::new()
    }
}

impl Semaphore {
    /// A semaphore starting at `value`, hosted by this process.
    pub fn new(value: usize) -> Semaphore {
        Semaphore {
            addr: Addr::new(State::Sem(Sem::new(SemKind::Semaphore, value))),
        }
    }

    /// Its value now (Python's `get_value`).
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
    pub async fn get_value(&self) -> Result<usize, SyncError> {
        match self.addr.ask(Op::Value).await? {
            Answer::Value(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore of `value`, hosted by this process.
    pub fn new(value: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            addr: Addr::new(State::Sem(Sem::new(SemKind::Bounded, value))),
        }
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

impl<P: Release> Guard<'_, P> {
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

/// Python's `Event`: a flag processes wait for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    addr: Addr,
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl Event {
    /// A new event, clear, hosted by this process.
    pub fn new() -> Event {
        Event {
            addr: Addr::new(State::Event(EventState::default())),
        }
    }

    /// Sets it; every waiter returns `true`.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
    pub async fn set(&self) -> Result<(), SyncError> {
        self.addr.done(Op::EventSet).await
    }

    /// Clears it.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
    pub async fn clear(&self) -> Result<(), SyncError> {
        self.addr.done(Op::EventClear).await
    }

    /// Whether it is set.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
    pub async fn is_set(&self) -> Result<bool, SyncError> {
        match self.addr.ask(Op::EventIsSet).await? {
            Answer::Flag(f) => Ok(f),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until it is set, at most `timeout`; whether it is set.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`] (also while waiting), [`SyncError::Forged`].
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool, SyncError> {
        match self.addr.ask_timeout(Op::EventWait, timeout).await? {
            None => Ok(false),
            Some(Answer::Flag(f)) => Ok(f),
            Some(other) => Err(unexpected(other)),
        }
    }
}

/// Python's `Queue(maxsize)` of `T`: items are encoded by the producer (an item that
/// does not encode fails its `put`), held by the host process, and decoded by the
/// consumer. There is no feeder thread: a put to a bounded queue returns once the
/// host holds the item; a put to an unbounded queue (which never has to wait for
/// room) returns once the item is on its way, in order, with up to 64 answers
/// outstanding; a failure is then the next put's error, and [`flush`](Queue::flush)
/// waits for them all. Either way a producer can exit at once: its link is flushed
/// at exit. An item is delivered once, even when a consumer dies in the middle of a
/// `get`; a `get` takes up to 15 more items when they are there (see
/// [`get`](Queue::get)).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Queue<T> {
    addr: Addr,
    /// A joinable queue's `get` is acknowledged by the `task_done` that follows it.
    joinable: bool,
    #[serde(skip)]
    closed: bool,
    /// Items this process took ahead (shared by the handle's clones here).
    #[serde(skip)]
    prefetched: Arc<Prefetched>,
    /// An unbounded queue's puts do not wait for their answers (see `put`).
    #[serde(default)]
    unbounded: bool,
    /// Answers of puts not yet seen, oldest first.
    #[serde(skip)]
    unanswered: Arc<Mutex<VecDeque<oneshot::Receiver<Body>>>>,
    #[serde(skip)]
    _item: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            addr: self.addr.clone(),
            joinable: self.joinable,
            closed: self.closed,
            prefetched: Arc::clone(&self.prefetched),
            unbounded: self.unbounded,
            unanswered: Arc::clone(&self.unanswered),
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

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue of at most `maxsize` items (0: unbounded), hosted by this process.
    pub fn new(maxsize: usize) -> Queue<T> {
        Queue {
            addr: Addr::new(State::Queue(QueueState::new(maxsize))),
            joinable: false,
            closed: false,
            prefetched: Arc::default(),
            unbounded: maxsize == 0,
            unanswered: Arc::default(),
            _item: PhantomData,
        }
    }

    /// Python's `JoinableQueue(maxsize)`: a `get` is not final until its
    /// `task_done`, so an item whose consumer dies before `task_done` goes back to
    /// the queue, and `join` never waits for work that died with its worker.
    pub fn joinable(maxsize: usize) -> Queue<T> {
        Queue {
            joinable: true,
            ..Queue::new(maxsize)
        }
    }

    /// Puts an item (Python's `put(obj, block, timeout)`).
    ///
    /// # Errors
    ///
    /// [`SyncError::Full`] when it would block and `block` is false, or `timeout`
    /// ran out; [`SyncError::Encode`]; [`SyncError::Closed`];
    /// [`SyncError::OwnerGone`]; [`SyncError::Forged`].
    pub async fn put(
        &self,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), SyncError> {
        if self.closed {
            return Err(SyncError::Closed);
        }
        let bytes = codec::encode(item).map_err(SyncError::Encode)?;
        let op = Op::Put {
            item: bytes.into(),
            block,
        };
        if self.unbounded {
            // An unbounded queue never makes a put wait, so the put need not wait for
            // its answer: the item is on its way, in order, behind this process's
            // earlier requests. Answers are checked as they come; a failure (the host
            // gone, a forged handle) is this put's error, and `flush` waits for all.
            self.settle(false).await?;
            let (_, rx) = self.addr.send(op)?;
            let backlog = {
                let mut unanswered = self.unanswered.lock().unwrap_or_else(|e| e.into_inner());
                unanswered.push_back(rx);
                unanswered.len()
            };
            if backlog > PUT_WINDOW {
                self.settle_one().await?;
            }
            return Ok(());
        }
        let timeout = if block { timeout } else { None };
        match self.addr.ask_timeout(op, timeout).await? {
            Some(Answer::Stored) => Ok(()),
            None | Some(Answer::Full) => Err(SyncError::Full),
            Some(other) => Err(unexpected(other)),
        }
    }

    /// Waits until every put made through this process's handles has been stored.
    ///
    /// # Errors
    ///
    /// The first put that failed ([`SyncError::OwnerGone`], [`SyncError::Forged`]).
    pub async fn flush(&self) -> Result<(), SyncError> {
        self.settle(true).await
    }

    /// Checks the answers of earlier puts: those that came (all, if `wait`).
    async fn settle(&self, wait: bool) -> Result<(), SyncError> {
        loop {
            let next = {
                let mut unanswered = self.unanswered.lock().unwrap_or_else(|e| e.into_inner());
                match unanswered.front_mut() {
                    None => return Ok(()),
                    Some(rx) => match rx.try_recv() {
                        Ok(body) => {
                            unanswered.pop_front();
                            Some(body)
                        }
                        Err(oneshot::error::TryRecvError::Empty) if !wait => return Ok(()),
                        Err(oneshot::error::TryRecvError::Empty) => None,
                        Err(oneshot::error::TryRecvError::Closed) => {
                            unanswered.pop_front();
                            return Err(SyncError::OwnerGone(self.addr.owner.clone()));
                        }
                    },
                }
            };
            match next {
                Some(body) => stored(self.addr.answer(Ok(body)))?,
                None => self.settle_one().await?,
            }
        }
    }

    /// Waits for the oldest unanswered put.
    async fn settle_one(&self) -> Result<(), SyncError> {
        let rx = self
            .unanswered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        match rx {
            Some(rx) => stored(self.addr.answer(rx.await)),
            None => Ok(()),
        }
    }

    /// `put(item, false, None)`.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put).
    pub async fn put_nowait(&self, item: &T) -> Result<(), SyncError> {
        self.put(item, false, None).await
    }

    /// Gets an item (Python's `get(block, timeout)`). When more items are there and
    /// no other consumer waits, up to 15 more come with it and are kept in this
    /// process for the next `get`s (they are not counted by `qsize` any more, and go
    /// back to the queue if this process dies or drops every handle).
    ///
    /// # Errors
    ///
    /// [`SyncError::Empty`] when it would block and `block` is false, or `timeout`
    /// ran out; [`SyncError::Decode`] (the item goes back to the queue);
    /// [`SyncError::OwnerGone`]; [`SyncError::Forged`].
    pub async fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T, SyncError> {
        let (delivery, item) = match self.prefetched.pop() {
            Some(next) => next,
            None => {
                let timeout = if block { timeout } else { None };
                let op = Op::Get {
                    block,
                    more: PREFETCH,
                };
                match self.addr.ask_timeout(op, timeout).await? {
                    Some(Answer::Items(items)) => {
                        let mut items = items.into_iter();
                        let first = items.next().ok_or_else(|| unexpected(Answer::Empty))?;
                        self.prefetched.keep(&self.addr, items);
                        first
                    }
                    Some(Answer::Item { delivery, item }) => (delivery, item),
                    None | Some(Answer::Empty) => return Err(SyncError::Empty),
                    Some(other) => return Err(unexpected(other)),
                }
            }
        };
        match codec::decode::<T>(&item) {
            Ok(value) => {
                // Acknowledged before it is returned: from here on, the item is this
                // consumer's. (A joinable queue's `task_done` acknowledges.)
                if !self.joinable {
                    self.addr.tell(Op::Ack { delivery })?;
                }
                Ok(value)
            }
            Err(e) => {
                self.addr.ask(Op::GiveBack { delivery }).await?;
                Err(SyncError::Decode(e))
            }
        }
    }

    /// `get(false, None)`.
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get).
    pub async fn get_nowait(&self) -> Result<T, SyncError> {
        self.get(false, None).await
    }

    async fn size(&self) -> Result<(usize, bool), SyncError> {
        match self.addr.ask(Op::QSize).await? {
            Answer::Size { qsize, full } => Ok((qsize, full)),
            other => Err(unexpected(other)),
        }
    }

    /// Items in the queue now.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
    pub async fn qsize(&self) -> Result<usize, SyncError> {
        Ok(self.size().await?.0)
    }

    /// Whether it is empty now.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
    pub async fn empty(&self) -> Result<bool, SyncError> {
        Ok(self.size().await?.0 == 0)
    }

    /// Whether it is full now.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
    pub async fn full(&self) -> Result<bool, SyncError> {
        Ok(self.size().await?.1)
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
        self.addr.done(Op::TaskDone).await
    }

    /// Waits until every item put has been marked done (`JoinableQueue.join`).
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`] (also while waiting).
    pub async fn join(&self) -> Result<(), SyncError> {
        self.addr.done(Op::Join).await
    }
}

/// How many puts to an unbounded queue may be on their way before a put waits for
/// the oldest answer.
const PUT_WINDOW: usize = 64;

fn stored(answer: Result<Answer, SyncError>) -> Result<(), SyncError> {
    match answer? {
        Answer::Stored => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// How many items a `get` takes beyond the one it returns, when they are there and
/// no other consumer waits: a busy queue then costs one request per batch.
const PREFETCH: u32 = 15;

/// Items a process took ahead of its `get`s. They are deliveries to this process:
/// if it dies they go back to the queue, and if every handle here is dropped first
/// they are given back.
#[derive(Default)]
struct Prefetched {
    inner: Mutex<(Option<Addr>, VecDeque<Delivered>)>,
}

/// An item handed to this process: its delivery number and its bytes.
type Delivered = (u64, serde_bytes::ByteBuf);

impl Prefetched {
    fn pop(&self) -> Option<Delivered> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .pop_front()
    }

    fn keep(&self, addr: &Addr, items: impl Iterator<Item = Delivered>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.get_or_insert_with(|| addr.clone());
        inner.1.extend(items);
    }
}

impl Drop for Prefetched {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(addr) = &inner.0 {
            for (delivery, _) in inner.1.drain(..) {
                let _ = addr.tell(Op::GiveBack { delivery });
            }
        }
    }
}

/// Python's `JoinableQueue`: a [`Queue`] made with [`Queue::joinable`].
pub type JoinableQueue<T> = Queue<T>;

/// Python's `SimpleQueue`: an unbounded [`Queue`].
pub type SimpleQueue<T> = Queue<T>;
