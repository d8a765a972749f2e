//! Calls from this process waiting for their replies: one slot per call, taken from a
//! pool and given back, so a call allocates nothing once the pool and the table are
//! warm; or, for a call relayed on (a node's agent answering a root), what to do with
//! the answer, run where it arrives.
//!
//! # Invariants
//!
//! - A slot is in the table under its call's correlation number from
//!   [`expect`] until its [`PendingReply`] is dropped; a reply is delivered only into
//!   the slot that still waits for that number, so a late reply for a call that gave
//!   up never lands in the next call that reuses the slot.
//! - An action registered with [`expect_then`] runs once, with the answer, or never
//!   (the answer never came).
//! - Correlation numbers are never reused within a process.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Poll, Waker};

use multiproc_core::wire::BodyKind;
use multiproc_core::{Body, RemoteError, codec};

/// Slots kept for reuse at most: enough for every call a process has in flight at
/// once, in practice.
const POOL_MAX: usize = 256;

#[derive(Debug, Default)]
struct Slot {
    /// Set once the reply is in `inner`: a spinning caller looks here, lock-free.
    ready: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The call this slot waits for; 0 when it waits for none.
    corr: u64,
    outcome: Outcome,
    /// The reply's bytes, reused from call to call.
    buf: Vec<u8>,
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
enum Outcome {
    #[default]
    Waiting,
    Reply,
    Fail(RemoteError),
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What to do with a relayed call's answer: its kind and payload as they came.
pub(crate) type Then = Box<dyn FnOnce(BodyKind, &[u8]) + Send>;

/// Who waits for an answer.
enum Waiter {
    Slot(Arc<Slot>),
    Then(Then),
}

fn table() -> MutexGuard<'static, HashMap<u64, Waiter>> {
    static TABLE: OnceLock<Mutex<HashMap<u64, Waiter>>> = OnceLock::new();
    TABLE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn pool() -> MutexGuard<'static, Vec<Arc<Slot>>> {
    static POOL: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a call waiting for its reply.
pub(crate) fn expect(corr: u64) -> PendingReply {
    let slot = pool().pop().unwrap_or_default();
    slot.lock().corr = corr;
    table().insert(corr, Waiter::Slot(Arc::clone(&slot)));
    PendingReply { slot, corr }
}

/// Registers a call whose answer `then` takes, in the task that reads it, with no
/// task waiting for it.
pub(crate) fn expect_then(corr: u64, then: Then) {
    table().insert(corr, Waiter::Then(then));
}

/// Delivers the answer to call `corr`, if it still waits: a reply's bytes, or a
/// failure's encoding.
pub(crate) fn deliver(corr: u64, kind: BodyKind, payload: &[u8]) {
    // Out of the table's lock before a `then` runs: it may route, and an answer
    // routed to this process is delivered here again.
    let waiter = table().remove(&corr);
    let slot = match waiter {
        Some(Waiter::Slot(slot)) => slot,
        Some(Waiter::Then(then)) => return then(kind, payload),
        None => return,
    };
    let waker = {
        let mut inner = slot.lock();
        if inner.corr != corr {
            return;
        }
        inner.outcome = match kind {
            BodyKind::Reply => {
                inner.buf.clear();
                inner.buf.extend_from_slice(payload);
                Outcome::Reply
            }
            BodyKind::Fail => Outcome::Fail(codec::decode(payload).unwrap_or_else(|e| {
                RemoteError::Decode(format!("a failure that does not decode: {e}"))
            })),
            other => Outcome::Fail(RemoteError::Decode(format!(
                "a {other:?} came back as an answer"
            ))),
        };
        slot.ready.store(true, Ordering::Release);
        inner.waker.take()
    };
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Forgets call `corr` (it gave up waiting).
pub(crate) fn forget(corr: u64) {
    table().remove(&corr);
}

/// The reply a call waits for. Dropping it (a call's future dropped before its reply
/// came) forgets the call and gives the slot back.
#[derive(Debug)]
pub(crate) struct PendingReply {
    slot: Arc<Slot>,
    corr: u64,
}

impl PendingReply {
    /// The answer, read by `f`, if it has come.
    pub(crate) fn take<R>(&self, f: impl FnOnce(Result<&[u8], RemoteError>) -> R) -> Option<R> {
        if !self.slot.ready.load(Ordering::Acquire) {
            return None;
        }
        Some(read(&mut self.slot.lock(), f))
    }

    /// Waits for the answer, and reads it with `f`.
    pub(crate) async fn wait<R>(&self, f: impl FnOnce(Result<&[u8], RemoteError>) -> R) -> R {
        let mut f = Some(f);
        poll_fn(|cx| {
            let mut inner = self.slot.lock();
            if matches!(inner.outcome, Outcome::Waiting) {
                match &inner.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => inner.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            let f = f.take().expect("polled again after it completed");
            Poll::Ready(read(&mut inner, f))
        })
        .await
    }
}

/// The answer as an owned [`Body`] (allocates: for the services' requests, not for
/// actor calls).
impl std::future::Future for PendingReply {
    type Output = Body;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Body> {
        let mut inner = self.slot.lock();
        if matches!(inner.outcome, Outcome::Waiting) {
            match &inner.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inner.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        Poll::Ready(read(&mut inner, |answer| match answer {
            Ok(bytes) => Body::Reply(bytes.to_vec()),
            Err(e) => Body::Fail(e),
        }))
    }
}

fn read<R>(inner: &mut Inner, f: impl FnOnce(Result<&[u8], RemoteError>) -> R) -> R {
    match std::mem::take(&mut inner.outcome) {
        Outcome::Reply => f(Ok(&inner.buf)),
        Outcome::Fail(e) => f(Err(e)),
        Outcome::Waiting => unreachable!("read only once the answer is in"),
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        {
            let mut t = table();
            if t.get(&self.corr)
                .is_some_and(|w| matches!(w, Waiter::Slot(s) if Arc::ptr_eq(s, &self.slot)))
            {
                t.remove(&self.corr);
            }
        }
        {
            let mut inner = self.slot.lock();
            inner.corr = 0;
            inner.outcome = Outcome::Waiting;
            inner.waker = None;
            // A large reply's buffer is not kept for ever.
            if inner.buf.capacity() > 64 << 10 {
                inner.buf = Vec::new();
            }
        }
        self.slot.ready.store(false, Ordering::Release);
        let mut pool = pool();
        if pool.len() < POOL_MAX {
            pool.push(Arc::clone(&self.slot));
        }
    }
}
