//! Hosting an actor in a child: its arguments decoded, `start`, then its mailbox served
//! until the stop, with the heartbeat between messages; a panicking handler fails
//! its one call and ends the process. A handler may take its call's answer with it
//! ([`defer_reply`]) and send it later, from a task of its own, so that a call whose
//! answer waits on another process does not hold the mailbox up.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use multiproc_core::wire::{BodyKind, PathRef};
use multiproc_core::{BootstrapError, Packet, RemoteError, codec};
use serde::Serialize;

use super::{Actor, shrink};
use crate::runtime;
use crate::runtime::logging::carry;
use crate::runtime::mailbox::Mail;
use crate::runtime::registry::EntryOutcome;
use crate::runtime::{router, stop};

/// Where the answer to the call being handled goes: its caller and correlation.
struct Caller {
    to: Vec<u32>,
    corr: u64,
}

/// A deferred answer's meeting point: the hosting loop brings the caller once the
/// handler has returned, the handler's task the answer, whichever comes first waits
/// there for the other.
enum Slot {
    Open,
    Caller(Caller),
    Answer(BodyKind, Vec<u8>),
    Sent,
}

type SharedSlot = Arc<Mutex<Slot>>;

fn lock(slot: &SharedSlot) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a call being handled stands with its answer, on the thread that polls its
/// handler.
enum Offer {
    /// A cast, or nothing polled.
    None,
    /// A call whose answer the handler may take; whether it goes to the root's
    /// tree ([`from_placing_root`]).
    Open { to_root: bool },
    /// Taken: the handler answers through this slot.
    Taken(SharedSlot),
}

thread_local! {
    static HANDLING: RefCell<Offer> = const { RefCell::new(Offer::None) };
}

/// The answer to the call the running handler is handling, to send later: the
/// hosting loop then sends none when the handler returns (what it returns is
/// dropped). `None` for a cast, or outside a handler's poll.
pub(crate) fn defer_reply() -> Option<Deferred> {
    HANDLING.with_borrow_mut(|offer| match offer {
        Offer::Open { to_root } => {
            let to_root = *to_root;
            let slot: SharedSlot = Arc::new(Mutex::new(Slot::Open));
            *offer = Offer::Taken(slot.clone());
            Some(Deferred {
                slot: Some(slot),
                to_root,
            })
        }
        _ => None,
    })
}

/// A call's answer taken out of its handler: sent by [`answer`](Deferred::answer),
/// or, if dropped unsent, a failure, so that no caller waits for nothing.
pub(crate) struct Deferred {
    slot: Option<SharedSlot>,
    /// The answer goes to the root's tree.
    to_root: bool,
}

impl Deferred {
    /// Sends `reply` to the caller, as the hosting loop would have.
    pub(crate) fn answer<R: Serialize>(mut self, reply: &R) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let encoded = if self.to_root {
            crate::sync::far::way::to_root(|| codec::encode(reply))
        } else {
            codec::encode(reply)
        };
        match encoded {
            Ok(bytes) => deliver(&slot, BodyKind::Reply, bytes),
            Err(e) => deliver(
                &slot,
                BodyKind::Fail,
                failure(RemoteError::Encode(e.to_string())),
            ),
        }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let e = RemoteError::Panicked("the answer to this call was dropped unsent".into());
            deliver(&slot, BodyKind::Fail, failure(e));
        }
    }
}

fn failure(e: RemoteError) -> Vec<u8> {
    codec::encode(&e).unwrap_or_default()
}

/// The handler's side: sends the answer if the caller is known, else leaves it.
fn deliver(slot: &SharedSlot, kind: BodyKind, payload: Vec<u8>) {
    let mut guard = lock(slot);
    let caller = match std::mem::replace(&mut *guard, Slot::Sent) {
        Slot::Caller(caller) => caller,
        Slot::Open => {
            *guard = Slot::Answer(kind, payload);
            return;
        }
        other => {
            *guard = other;
            return;
        }
    };
    drop(guard);
    router::send_from_here(PathRef::Words(&caller.to), caller.corr, kind, &payload);
}

/// The hosting loop's side, once the handler returned: sends an answer already
/// given, else leaves the caller for it.
fn await_answer(slot: &SharedSlot, mail: &Mail) {
    let mut guard = lock(slot);
    match std::mem::replace(&mut *guard, Slot::Sent) {
        Slot::Answer(kind, payload) => {
            drop(guard);
            router::send_from_here(PathRef::Words(&mail.from), mail.corr, kind, &payload);
        }
        Slot::Open => {
            *guard = Slot::Caller(Caller {
                to: mail.from.clone(),
                corr: mail.corr,
            });
        }
        other => *guard = other,
    }
}

/// Polls a future inside `catch_unwind`, so a panicking handler fails its one call,
/// as the handling of a call made in its caller's span (if it carries one); while
/// it is polled, its call's answer may be taken ([`defer_reply`]).
struct CatchUnwind<F>(F, Option<u64>, Offer);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let span = self.1;
        let offer = std::mem::replace(&mut self.2, Offer::None);
        let outer = HANDLING.replace(offer);
        let fut = &mut self.0;
        let poll = || carry::within(span, || Pin::new(fut).poll(cx));
        let polled = std::panic::catch_unwind(AssertUnwindSafe(poll));
        self.2 = HANDLING.replace(outer);
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Handles one message: decodes it, runs the handler, answers a call. `Err` with the
/// panic's message when the handler panicked (its call is answered first).
async fn handle_one<A: Actor>(actor: &mut A, mail: &Mail, out: &mut Vec<u8>) -> Result<(), String> {
    let is_call = mail.kind == Some(BodyKind::Call);
    let answer = |kind: BodyKind, payload: &[u8]| {
        if is_call {
            router::send_from_here(PathRef::Words(&mail.from), mail.corr, kind, payload);
        }
    };
    let fail = |e: RemoteError| {
        if let Ok(bytes) = codec::encode(&e) {
            answer(BodyKind::Fail, &bytes);
        }
    };
    let msg: A::Msg = match codec::decode(&mail.payload) {
        Ok(m) => m,
        Err(e) => {
            if !is_call {
                tracing::warn!(error = %e, "dropped a cast that did not decode");
            }
            fail(RemoteError::Decode(e.to_string()));
            return Ok(());
        }
    };
    let handling = std::pin::pin!(actor.handle(msg));
    let to_root = from_placing_root(&mail.from);
    let offer = if is_call {
        Offer::Open { to_root }
    } else {
        Offer::None
    };
    let mut catching = CatchUnwind(handling, mail.span, offer);
    let handled = (&mut catching).await;
    match (handled, &catching.2) {
        (Ok(_), Offer::Taken(slot)) => {
            await_answer(slot, mail);
            crate::runtime::mailbox::handled_one();
            Ok(())
        }
        (handled, _) => answered(handled, to_root, &answer, &fail, out),
    }
}

/// The hosting loop's answer to a call its handler did not take the answer of.
fn answered<R: Serialize>(
    handled: Result<R, Box<dyn Any + Send>>,
    to_root: bool,
    answer: &impl Fn(BodyKind, &[u8]),
    fail: &impl Fn(RemoteError),
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match handled {
        Ok(r) => {
            crate::runtime::mailbox::handled_one();
            out.clear();
            let encoded = if to_root {
                crate::sync::far::way::to_root(|| codec::encode_into(&r, out))
            } else {
                codec::encode_into(&r, out)
            };
            match encoded {
                Ok(()) => answer(BodyKind::Reply, out),
                Err(e) => fail(RemoteError::Encode(e.to_string())),
            }
            shrink(out);
            Ok(())
        }
        Err(panic) => {
            let message = crate::runtime::panic::panic_message(&*panic);
            fail(RemoteError::Panicked(message.clone()));
            Err(message)
        }
    }
}

/// Whether a call came from the root that placed this process (or its ancestor) on
/// this node: the node's agent hands such calls to it, and nothing else of the node
/// program calls into a placed subtree. Its reply goes to that root's tree.
fn from_placing_root(from: &[u32]) -> bool {
    crate::remote::wire::PlacedAs::of_this_process()
        .and_then(|placed| placed.here.path().split_last())
        .is_some_and(|(_, agent)| agent == from)
}

/// Runs actor `A` in this child process until it is asked to stop. Called (through
/// the registry) by the bootstrap.
#[doc(hidden)]
pub fn run_actor<A: Actor>(args: Vec<u8>) -> EntryOutcome {
    // Decoded on this thread, where the descriptors that came with the Hello are
    // provided: a `Connection` among the arguments takes its own there.
    let args = codec::decode::<A::Args>(&args).map_err(|e| format!("bad arguments: {e}"));
    // A task on the runtime's worker, beside the link's reader: a message goes from
    // one to the other without waking a thread.
    runtime::block_on(runtime::run(host::<A>(args)))
}

async fn host<A: Actor>(args: Result<A::Args, String>) -> EntryOutcome {
    let outcome = serve::<A>(args).await;
    router::clear_local();
    outcome
}

async fn serve<A: Actor>(args: Result<A::Args, String>) -> EntryOutcome {
    let failed = |message: String| {
        router::to_parent(Packet::Rejected(BootstrapError::ActorStart(
            message.clone(),
        )));
        EntryOutcome::Failed(message)
    };
    let args = match args {
        Ok(a) => a,
        Err(e) => return failed(e),
    };
    let mut actor = match A::start(args).await {
        Ok(a) => a,
        Err(e) => return failed(e.to_string()),
    };
    let Some(mailbox) = router::take_local() else {
        return failed("this process has no mailbox for an actor".into());
    };
    router::to_parent(Packet::Ready {
        pid: std::process::id(),
    });
    // Three beats per interval: one late beat is not a hang. Beats are sent only
    // between messages: a handler stuck on one stops them.
    let mut beats = crate::runtime::heartbeat::heartbeat_interval()
        .map(|interval| tokio::time::interval(interval / 3));
    let mut stop = std::pin::pin!(stop::wait_for_stop());
    let mut out = Vec::new();
    loop {
        let mail = tokio::select! {
            biased;
            () = &mut stop => {
                actor.stopping().await;
                return EntryOutcome::Returned;
            }
            () = beat(&mut beats) => {
                crate::runtime::heartbeat::heartbeat();
                continue;
            }
            mail = mailbox.recv() => match mail {
                Some(mail) => mail,
                None => return EntryOutcome::Failed("the actor's mailbox closed".into()),
            },
        };
        let handled = handle_one(&mut actor, &mail, &mut out).await;
        mailbox.recycle(mail);
        if let Err(message) = handled {
            // As OTP's `handle_call` crashing: the process ends; `stopping` does not run.
            let (message, location) =
                crate::runtime::panic::take_panic().unwrap_or((message, None));
            return EntryOutcome::Panicked { message, location };
        }
    }
}

/// The next heartbeat, or never.
async fn beat(beats: &mut Option<tokio::time::Interval>) {
    match beats {
        Some(beats) => {
            beats.tick().await;
        }
        None => std::future::pending().await,
    }
}
