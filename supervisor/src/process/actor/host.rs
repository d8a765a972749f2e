//! Hosting an actor in a child: its arguments decoded, `start`, then its mailbox served
//! until the stop, with the heartbeat between messages; a panicking handler fails
//! its one call and ends the process.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use multiproc_core::wire::{BodyKind, PathRef};
use multiproc_core::{BootstrapError, Packet, RemoteError, codec};

use super::{Actor, shrink};
use crate::runtime;
use crate::runtime::logging::carry;
use crate::runtime::mailbox::Mail;
use crate::runtime::registry::EntryOutcome;
use crate::runtime::{router, stop};

/// Polls a future inside `catch_unwind`, so a panicking handler fails its one call,
/// as the handling of a call made in its caller's span (if it carries one).
struct CatchUnwind<F>(F, Option<u64>);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let span = self.1;
        let fut = &mut self.0;
        let poll = || carry::within(span, || Pin::new(fut).poll(cx));
        match std::panic::catch_unwind(AssertUnwindSafe(poll)) {
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
    match CatchUnwind(handling, mail.span).await {
        Ok(r) => {
            crate::runtime::mailbox::handled_one();
            out.clear();
            let encoded = if from_placing_root(&mail.from) {
                super::to_root(|| codec::encode_into(&r, out))
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
