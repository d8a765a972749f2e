//! Actors: the one mailbox a child process serves, and typed handles to call it.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use multiproc_core::{Body, BootstrapError, Envelope, Identity, Packet, RemoteError, codec};
use multiproc_transport::MAX_FRAME_LEN;
use ractor::ActorProcessingErr;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::runtime;
use crate::runtime::current::me;
use crate::runtime::error::CallError;
use crate::runtime::registry::EntryOutcome;
use crate::runtime::{router, stop};

/// An error type for actors' fallible start.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An actor a child process can host: state plus a handler for its messages.
///
/// The process serves its mailbox one message at a time, in arrival order, until it is
/// asked to stop. A message is a `call` (the handler's return value goes back to the
/// caller) or a `cast` (it is dropped).
///
/// ```
/// use multiproc_supervisor::{Actor, BoxError};
///
/// struct Counter(u64);
///
/// impl Actor for Counter {
///     type Args = u64;
///     type Msg = u64;
///     type Reply = u64;
///
///     async fn start(first: u64) -> Result<Self, BoxError> {
///         Ok(Counter(first))
///     }
///
///     async fn handle(&mut self, add: u64) -> u64 {
///         self.0 += add;
///         self.0
///     }
/// }
///
/// // Hosted in a child, it serves calls; here, driven directly:
/// let mut c = multiproc_supervisor::block_on(Counter::start(1)).unwrap();
/// assert_eq!(multiproc_supervisor::block_on(c.handle(2)), 3);
/// ```
pub trait Actor: Sized + Send + 'static {
    /// What the actor is started with.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// What it receives.
    type Msg: Serialize + DeserializeOwned + Send + 'static;
    /// What it answers to calls.
    type Reply: Serialize + DeserializeOwned + Send + 'static;

    /// Builds the actor in its process. An error ends the process (reason
    /// `Failed`).
    fn start(args: Self::Args) -> impl Future<Output = Result<Self, BoxError>> + Send;

    /// Handles one message.
    fn handle(&mut self, msg: Self::Msg) -> impl Future<Output = Self::Reply> + Send;

    /// Runs when the actor is stopped, before its process exits.
    fn stopping(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The address of an actor of type `A` in some process of the tree.
///
/// A plain value: clone it, send it to another process as an argument or inside a
/// message, and call the actor from there; messages are routed along the tree.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ActorRef<A> {
    addr: Identity,
    #[serde(skip)]
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef {
            addr: self.addr.clone(),
            _actor: PhantomData,
        }
    }
}

impl<A> PartialEq for ActorRef<A> {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
    }
}

impl<A> Eq for ActorRef<A> {}

impl<A> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorRef")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Room for the envelope around a payload.
const ENVELOPE_OVERHEAD: usize = 256;

impl<A: Actor> ActorRef<A> {
    pub(crate) fn new(addr: Identity) -> Self {
        ActorRef {
            addr,
            _actor: PhantomData,
        }
    }

    /// The actor of type `A` hosted by the process with this identity (as
    /// `ChildStatus::identity` gives it for a supervised child). Nothing is checked
    /// until a call: a wrong address fails with `NoProcess`, `NoActor` or `Decode`.
    pub fn at(addr: Identity) -> Self {
        ActorRef::new(addr)
    }

    /// The address (the identity of the hosting process).
    pub fn addr(&self) -> &Identity {
        &self.addr
    }

    /// Sends `msg` and waits for the reply.
    ///
    /// There is no timeout, but no hang either: if the process exits before it
    /// replies, the call fails with `RemoteError::Exited`.
    ///
    /// # Errors
    ///
    /// [`CallError::Encode`] / [`CallError::TooLarge`] (nothing sent),
    /// [`CallError::Remote`] (no such process, no actor, the message did not decode,
    /// the handler panicked, the process exited), [`CallError::Decode`].
    pub async fn call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        let (corr, mut rx) = self.send_call(&msg)?;
        // Spinning briefly for the reply saves the wake-up of this thread, which costs
        // more than the round trip itself (see `runtime::spin`). Never on the
        // runtime's own workers: they are what delivers the reply.
        let started = std::time::Instant::now();
        let spun = if runtime::on_worker() {
            None
        } else {
            runtime::spin::wait(started, || rx.try_recv().ok())
        };
        let body = match spun {
            Some(body) => body,
            None => rx.await.map_err(|_| CallError::ShuttingDown)?,
        };
        runtime::spin::record(started.elapsed());
        reply::<A>(body, corr)
    }

    /// Like [`call`](ActorRef::call), but gives up after `timeout` with
    /// [`CallError::Timeout`]. The message may still be handled.
    ///
    /// # Errors
    ///
    /// As [`call`](ActorRef::call), plus [`CallError::Timeout`].
    pub async fn call_timeout(
        &self,
        msg: A::Msg,
        timeout: Duration,
    ) -> Result<A::Reply, CallError> {
        let (corr, rx) = self.send_call(&msg)?;
        let waited = runtime::run(async move { tokio::time::timeout(timeout, rx).await }).await;
        match waited {
            Ok(Ok(body)) => reply::<A>(body, corr),
            Ok(Err(_)) => Err(CallError::ShuttingDown),
            Err(_) => {
                router::forget_reply(corr);
                Err(CallError::Timeout(timeout))
            }
        }
    }

    /// Sends `msg` without waiting for anything. Delivery is not confirmed: a cast to
    /// a process that is gone is dropped.
    ///
    /// # Errors
    ///
    /// [`CallError::Encode`] / [`CallError::TooLarge`] (nothing sent).
    pub fn cast(&self, msg: A::Msg) -> Result<(), CallError> {
        let payload = encode_payload(&msg)?;
        router::route(Envelope {
            to: self.addr.clone(),
            from: me().identity.clone(),
            corr: 0,
            body: Body::Cast(payload),
        });
        Ok(())
    }

    fn send_call(&self, msg: &A::Msg) -> Result<(u64, router::PendingReply), CallError> {
        let payload = encode_payload(msg)?;
        let corr = router::next_corr();
        let rx = router::expect_reply(corr);
        router::route(Envelope {
            to: self.addr.clone(),
            from: me().identity.clone(),
            corr,
            body: Body::Call(payload),
        });
        Ok((corr, rx))
    }
}

fn encode_payload<T: Serialize>(msg: &T) -> Result<Vec<u8>, CallError> {
    let payload = codec::encode(msg).map_err(CallError::Encode)?;
    let max = MAX_FRAME_LEN - ENVELOPE_OVERHEAD;
    if payload.len() > max {
        return Err(CallError::TooLarge {
            len: payload.len(),
            max,
        });
    }
    Ok(payload)
}

fn reply<A: Actor>(body: Body, _corr: u64) -> Result<A::Reply, CallError> {
    match body {
        Body::Reply(bytes) => codec::decode(&bytes).map_err(CallError::Decode),
        Body::Fail(e) => Err(CallError::Remote(e)),
        Body::Call(_) | Body::Cast(_) | Body::Service(_) => Err(CallError::Remote(
            RemoteError::Decode("a request came back as a reply".into()),
        )),
    }
}

/// What the process's mailbox holds.
enum HostMsg {
    /// A message for the user's actor.
    Envelope(Envelope),
    /// Time to tell the parent the mailbox is being served (heartbeat).
    Beat,
}

/// The ractor actor that owns the user's actor and serves the process's mailbox.
struct Host<A>(PhantomData<fn() -> A>);

impl<A: Actor> ractor::Actor for Host<A> {
    type Msg = HostMsg;
    type State = A;
    type Arguments = A;

    async fn pre_start(
        &self,
        _: ractor::ActorRef<HostMsg>,
        actor: A,
    ) -> Result<A, ActorProcessingErr> {
        Ok(actor)
    }

    async fn handle(
        &self,
        _: ractor::ActorRef<HostMsg>,
        msg: HostMsg,
        actor: &mut A,
    ) -> Result<(), ActorProcessingErr> {
        let env = match msg {
            HostMsg::Envelope(env) => env,
            // Handled only between messages: a handler stuck on one stops the beats.
            HostMsg::Beat => {
                crate::runtime::heartbeat::heartbeat();
                return Ok(());
            }
        };
        let (payload, is_call) = match env.body {
            Body::Call(p) => (p, true),
            Body::Cast(p) => (p, false),
            Body::Reply(_) | Body::Fail(_) | Body::Service(_) => return Ok(()),
        };
        let answer = |body| {
            if is_call {
                router::route(Envelope {
                    to: env.from.clone(),
                    from: env.to.clone(),
                    corr: env.corr,
                    body,
                });
            }
        };
        let msg: A::Msg = match codec::decode(&payload) {
            Ok(m) => m,
            Err(e) => {
                if !is_call {
                    tracing::warn!(error = %e, "dropped a cast that did not decode");
                }
                answer(Body::Fail(RemoteError::Decode(e.to_string())));
                return Ok(());
            }
        };
        match CatchUnwind(Box::pin(actor.handle(msg))).await {
            Ok(r) => match codec::encode(&r) {
                Ok(bytes) => answer(Body::Reply(bytes)),
                Err(e) => answer(Body::Fail(RemoteError::Encode(e.to_string()))),
            },
            Err(panic) => {
                let message = crate::runtime::panic::panic_message(&*panic);
                answer(Body::Fail(RemoteError::Panicked(message.clone())));
                return Err(message.into());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ractor::ActorRef<HostMsg>,
        actor: &mut A,
    ) -> Result<(), ActorProcessingErr> {
        actor.stopping().await;
        Ok(())
    }
}

/// Polls a future inside `catch_unwind`, so a panicking handler fails its one call.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(move || fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Runs actor `A` in this child process until it is asked to stop. Called (through
/// the registry) by the bootstrap.
#[doc(hidden)]
pub fn run_actor<A: Actor>(args: Vec<u8>) -> EntryOutcome {
    runtime::block_on(host::<A>(args))
}

async fn host<A: Actor>(args: Vec<u8>) -> EntryOutcome {
    let outcome = serve::<A>(args).await;
    router::clear_local();
    outcome
}

async fn serve<A: Actor>(args: Vec<u8>) -> EntryOutcome {
    let failed = |message: String| {
        router::to_parent(Packet::Rejected(BootstrapError::ActorStart(
            message.clone(),
        )));
        EntryOutcome::Failed(message)
    };
    let args: A::Args = match codec::decode(&args) {
        Ok(a) => a,
        Err(e) => return failed(format!("bad arguments: {e}")),
    };
    let actor = match A::start(args).await {
        Ok(a) => a,
        Err(e) => return failed(e.to_string()),
    };
    let (cell, join) = match ractor::Actor::spawn(None, Host::<A>(PhantomData), actor).await {
        Ok(spawned) => spawned,
        Err(e) => return failed(format!("cannot start the actor: {e}")),
    };
    let mailbox = cell.clone();
    router::set_local(Box::new(move |env| {
        mailbox.cast(HostMsg::Envelope(env)).map_err(|e| match e {
            ractor::MessagingErr::SendErr(HostMsg::Envelope(env)) => Some(env),
            _ => None,
        })
    }));
    router::to_parent(Packet::Ready {
        pid: std::process::id(),
    });
    if let Some(interval) = crate::runtime::heartbeat::heartbeat_interval() {
        let beats = cell.clone();
        tokio::spawn(async move {
            // Three beats per interval: one late beat is not a hang.
            let mut tick = tokio::time::interval(interval / 3);
            loop {
                tick.tick().await;
                if beats.cast(HostMsg::Beat).is_err() {
                    return;
                }
            }
        });
    }
    let mut join = join;
    tokio::select! {
        () = stop::wait_for_stop() => {
            cell.stop(None);
            let _ = (&mut join).await;
            EntryOutcome::Returned
        }
        _ = &mut join => {
            match crate::runtime::panic::take_panic() {
                Some((message, location)) => EntryOutcome::Panicked { message, location },
                None => EntryOutcome::Failed("the actor stopped".into()),
            }
        }
    }
}
