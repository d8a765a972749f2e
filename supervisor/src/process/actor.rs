//! Actors: the one mailbox a child process serves, and typed handles to call it.
//!
//! The actor is hosted by one task that takes the runtime's mailbox of recycled
//! buffers, not by a ractor actor: ractor boxes every message, and the path from
//! `ActorRef::call` to the handler and back allocates nothing once warm.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use multiproc_core::wire::{BodyKind, EnvelopeRef};
use multiproc_core::{Identity, RemoteError, codec};
use multiproc_transport::MAX_FRAME_LEN;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::remote::placed::{self, OnNode};
use crate::runtime;
use crate::runtime::current::me;
use crate::runtime::error::CallError;
use crate::runtime::logging::carry::{self, Carried};
use crate::runtime::router;

mod far;
mod host;

pub(crate) use host::defer_reply;
pub use host::run_actor;

use crate::sync::far::Carry;
use crate::sync::far::way::{self, for_node};
use far::{Reach, not_across, remote_payload};

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
/// message, and call the actor from there; messages are routed along the tree. The
/// handle of an actor placed on a node works so too, from any process of this tree:
/// its messages go through the process that placed it, which holds the session and
/// exports to the actor's process the queues, locks and events they hold. And
/// a handle of this tree, sent to a process placed on a node, works there (and in its
/// descendants there) through the placing process's gateway, and in an actor of
/// this tree on another node that it sends the handle to in a message; in the
/// arguments of a process that node places itself elsewhere, its calls fail with
/// `NodeError::NotAcrossNodes`. The handle of an actor that a placed process started
/// on its node, sent to this tree in a message, works here too (and from other
/// nodes), through the process that placed it; [`node`](ActorRef::node) names its
/// node.
#[derive(Serialize, Deserialize)]
#[serde(bound = "", into = "far::Wire", from = "far::Wire")]
pub struct ActorRef<A> {
    addr: Identity,
    /// Where the actor runs when it is on another node.
    #[serde(default)]
    on: Option<OnNode>,
    /// Whether its address is one in this process's tree (see `far`).
    #[serde(default)]
    reach: Reach,
    #[serde(skip)]
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef {
            addr: self.addr.clone(),
            on: self.on.clone(),
            reach: self.reach,
            _actor: PhantomData,
        }
    }
}

impl<A> From<ActorRef<A>> for far::Wire {
    fn from(r: ActorRef<A>) -> far::Wire {
        far::wire(r.addr, r.on, r.reach)
    }
}

impl<A> From<far::Wire> for ActorRef<A> {
    fn from(w: far::Wire) -> ActorRef<A> {
        let (addr, on, reach) = w.arrived();
        ActorRef {
            addr,
            on,
            reach,
            _actor: PhantomData,
        }
    }
}

impl<A> PartialEq for ActorRef<A> {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr && self.on == other.on
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

/// A call sent: the wait for its answer.
pub(crate) type SentCall<A> =
    Pin<Box<dyn Future<Output = Result<<A as Actor>::Reply, CallError>> + Send>>;

/// The least a caller spins for its reply (unless its calls are long): a round trip
/// takes about 1.5 µs when both ends run, and a sleep and a wake-up 20–50 µs on these
/// VMs, so a hiccup of a few microseconds on the other side must not cost one.
const SPIN_FLOOR_US: u64 = 20;

/// How long a blocking caller sleeps on its link's futex before it looks whether
/// the link's reader task wants the ring (it also wakes the caller when it does).
const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// Room for the envelope around a payload.
const ENVELOPE_OVERHEAD: usize = 256;

impl<A: Actor> ActorRef<A> {
    pub(crate) fn new(addr: Identity) -> Self {
        ActorRef {
            addr,
            on: None,
            reach: Reach::Here,
            _actor: PhantomData,
        }
    }

    /// The actor hosted by the process number `id` of the node `node`, known here
    /// as `addr`.
    pub(crate) fn on_node(addr: Identity, node: String, id: u64) -> Self {
        ActorRef {
            addr,
            on: Some(OnNode { node, id }),
            reach: Reach::Here,
            _actor: PhantomData,
        }
    }

    /// The actor hosted by the process `addr` of the tree of the root that placed
    /// this process on its node: its messages go through that root's gateway.
    pub(crate) fn by_root(addr: Identity) -> Self {
        ActorRef {
            addr,
            on: None,
            reach: Reach::ByRoot,
            _actor: PhantomData,
        }
    }

    /// The name of the node the actor runs on; `None` for this host.
    pub fn node(&self) -> Option<&str> {
        self.on.as_ref().map(|o| o.node.as_str())
    }

    /// Fails a call with a handle of a tree this process has no way to (see `far`),
    /// which would otherwise reach whatever process has that address in this one.
    fn check_here(&self) -> Result<(), CallError> {
        if self.reach != Reach::Lost {
            return Ok(());
        }
        Err(multiproc_core::NodeError::NotAcrossNodes {
            what: format!(
                "the handle of the actor {} of another host's process tree",
                self.addr
            ),
            node: self.node().unwrap_or("this node").to_string(),
        }
        .into())
    }

    /// Where a message to this actor of the root's tree, sent from a node, ends up:
    /// an actor the root's tree placed on a node gets it as it left here.
    fn onward(&self) -> way::Onward {
        match self.on {
            Some(_) => way::Onward::Placed,
            None => way::Onward::Tree,
        }
    }

    /// Where the actor runs, if on a node this process placed it on: this process
    /// holds the session, and calls go straight to it. Any other process of the
    /// tree sends them to this one, along the tree, as to a local actor.
    fn placed_here(&self) -> Option<&OnNode> {
        self.on.as_ref().filter(|_| {
            self.addr
                .path()
                .split_last()
                .is_some_and(|(_, up)| up == me().identity.path())
        })
    }

    /// A call to the actor on another node; the message is encoded before anything
    /// waits, so no reference to it is held across the wait.
    async fn remote(&self, on: &OnNode, payload: Vec<u8>) -> Result<A::Reply, CallError> {
        placed::actor_call(&self.addr, on, payload, reply::<A>).await
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
        self.call_with(msg, false).await
    }

    /// [`call`](ActorRef::call) from a plain thread that may sleep until the reply
    /// comes: the blocking API's call.
    pub(crate) fn call_blocking(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        runtime::block_on(self.call_with(msg, true))
    }

    /// With `may_sleep`, the calling thread is all this future runs on: after its
    /// spin, it sleeps on the link's futex rather than waiting for the link's reader
    /// task to wake it, one thread wake-up less per call.
    async fn call_with(&self, msg: A::Msg, may_sleep: bool) -> Result<A::Reply, CallError> {
        self.check_here()?;
        if self.reach == Reach::ByRoot {
            let payload = far::payload(&msg, self.onward())?;
            drop(msg);
            return far::call::<A>(&self.addr, payload, None).await;
        }
        #[cfg(feature = "metrics")]
        let sent = std::time::Instant::now();
        if let Some(on) = self.placed_here() {
            let payload = remote_payload(&msg, on)?;
            drop(msg);
            let out = self.remote(on, payload).await;
            #[cfg(feature = "metrics")]
            crate::runtime::metrics::call_took(sent.elapsed());
            return out;
        }
        // Spinning briefly for the reply saves the wake-up of this thread, which costs
        // more than the round trip itself (see `runtime::spin`); reading the link's
        // ring meanwhile saves the wake-up of its reader task. Never on the runtime's
        // own workers: they are what delivers the reply.
        let polls = !runtime::on_worker();
        // Held until the reply: the records the call caused come up before it.
        let (pending, link, _carried) = self.send(&msg, BodyKind::Call, polls)?;
        let pending = pending.expect("a call has a reply to wait for");
        let started = std::time::Instant::now();
        let mut answer = None;
        if polls {
            let mut claim = link.as_ref().and_then(|l| l.claim());
            answer = runtime::spin::wait_at_least(started, SPIN_FLOOR_US, || {
                if let Some(claim) = claim.as_mut() {
                    claim.poll();
                }
                pending.take(reply::<A>)
            });
            if let Some(claim) = claim.as_mut().filter(|_| may_sleep) {
                while answer.is_none() && claim.sleep(SLEEP_SLICE) {
                    answer = pending.take(reply::<A>);
                }
                answer = answer.or_else(|| pending.take(reply::<A>));
            }
        }
        let out = match answer {
            Some(out) => out,
            None => pending.wait(reply::<A>).await,
        };
        runtime::spin::record(started.elapsed());
        #[cfg(feature = "metrics")]
        crate::runtime::metrics::call_took(sent.elapsed());
        out
    }

    /// A call of `msg`, sent now (the message is only borrowed, for a caller that
    /// may send it again: a supervised child's handle, when the address had no
    /// process); the future waits for its answer.
    pub(crate) fn call_sent(&self, msg: &A::Msg) -> Result<SentCall<A>, CallError> {
        self.check_here()?;
        if self.reach == Reach::ByRoot {
            let payload = far::payload(msg, self.onward())?;
            let addr = self.addr.clone();
            return Ok(Box::pin(async move {
                far::call::<A>(&addr, payload, None).await
            }));
        }
        if let Some(on) = self.placed_here() {
            let payload = remote_payload(msg, on)?;
            let (me, on) = (self.clone(), on.clone());
            return Ok(Box::pin(async move { me.remote(&on, payload).await }));
        }
        let (pending, _, carried) = self.send(msg, BodyKind::Call, false)?;
        let pending = pending.expect("a call has a reply to wait for");
        Ok(Box::pin(async move {
            let _carried = carried;
            pending.wait(reply::<A>).await
        }))
    }

    /// `msg` encoded as a call or cast of this actor would carry it, for one that goes
    /// inside another message to the same process (a supervisor hosted there
    /// forwards it to one of its children): for a process placed on a node, handles
    /// in it are exported to that process, or refused, as in [`call`](ActorRef::call).
    /// From another process than the placer, they are encoded far and returned, to
    /// go with the outer message (a [`Carry`] in it), which the placer exports.
    pub(crate) fn encode_for<M: Serialize>(&self, msg: &M) -> Result<(Vec<u8>, Carry), CallError> {
        self.check_here()?;
        if self.reach == Reach::ByRoot {
            // On a node, for an actor of the root's tree: as its own call would go.
            return Ok((far::payload(msg, self.onward())?, Carry::default()));
        }
        match (self.placed_here(), &self.on) {
            (Some(on), _) => Ok((remote_payload(msg, on)?, Carry::default())),
            (None, Some(on)) => {
                let ((payload, one_machine), objs) = crate::sync::far::encode_far(|| {
                    crate::sync::handles_in(|| for_node(|| codec::encode(msg)))
                });
                if one_machine {
                    return Err(not_across(on));
                }
                Ok((payload.map_err(CallError::Encode)?, Carry(objs)))
            }
            (None, None) => Ok((
                codec::encode(msg).map_err(CallError::Encode)?,
                Carry::default(),
            )),
        }
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
        self.check_here()?;
        if self.reach == Reach::ByRoot {
            let payload = far::payload(&msg, self.onward())?;
            drop(msg);
            return far::call::<A>(&self.addr, payload, Some(timeout)).await;
        }
        if let Some(on) = self.placed_here() {
            let payload = remote_payload(&msg, on)?;
            drop(msg);
            let (me, on) = (self.clone(), on.clone());
            return runtime::run(async move {
                match tokio::time::timeout(timeout, me.remote(&on, payload)).await {
                    Ok(reply) => reply,
                    Err(_) => Err(CallError::Timeout(timeout)),
                }
            })
            .await;
        }
        #[cfg(feature = "metrics")]
        let sent = std::time::Instant::now();
        let (pending, _, carried) = self.send(&msg, BodyKind::Call, false)?;
        let pending = pending.expect("a call has a reply to wait for");
        runtime::run(async move {
            let _carried = carried;
            match tokio::time::timeout(timeout, pending.wait(reply::<A>)).await {
                Ok(out) => {
                    #[cfg(feature = "metrics")]
                    crate::runtime::metrics::call_took(sent.elapsed());
                    out
                }
                Err(_) => Err(CallError::Timeout(timeout)),
            }
        })
        .await
    }

    /// Sends `msg` without waiting for anything. Delivery is not confirmed: a cast to
    /// a process that is gone is dropped.
    ///
    /// # Errors
    ///
    /// [`CallError::Encode`] / [`CallError::TooLarge`] (nothing sent).
    pub fn cast(&self, msg: A::Msg) -> Result<(), CallError> {
        self.check_here()?;
        if self.reach == Reach::ByRoot {
            return far::cast(&self.addr, &msg, self.onward());
        }
        if let Some(on) = self.placed_here() {
            // As a local cast: sent now, in order with the calls that follow, not
            // confirmed.
            let payload = remote_payload(&msg, on)?;
            return placed::actor_cast(on, payload);
        }
        self.send(&msg, BodyKind::Cast, false).map(|_| ())
    }

    /// Encodes `msg` into this thread's buffer and routes it; a call's reply to wait
    /// for, the link it went out on, and its hold on its caller's span.
    #[allow(clippy::type_complexity, reason = "three parts, each named where used")]
    fn send(
        &self,
        msg: &A::Msg,
        kind: BodyKind,
        polls: bool,
    ) -> Result<
        (
            Option<router::PendingReply>,
            Option<router::LinkTx>,
            Option<Carried>,
        ),
        CallError,
    > {
        ENCODED.with_borrow_mut(|payload| {
            payload.clear();
            let mut wire_kind = kind;
            match &self.on {
                None => codec::encode_into(msg, payload).map_err(CallError::Encode)?,
                // For a node, by way of the process that placed it there.
                Some(on) => {
                    // A `Carry` (handles of a message inside this one) counts as
                    // farable only: its handles go to the placer as well.
                    let ((encoded, handles), carries) = crate::sync::far::farable_in(|| {
                        crate::sync::handles_in(|| for_node(|| codec::encode_into(msg, payload)))
                    });
                    encoded.map_err(CallError::Encode)?;
                    if handles || carries {
                        // Its handles go to the placer too, which exports them.
                        *payload = far::relayed(msg, on, kind == BodyKind::Call)?;
                        wire_kind = BodyKind::Service;
                    }
                }
            }
            let max = MAX_FRAME_LEN - ENVELOPE_OVERHEAD;
            if payload.len() > max {
                let len = payload.len();
                shrink(payload);
                return Err(CallError::TooLarge { len, max });
            }
            let (corr, pending, carried) = match kind {
                BodyKind::Call => {
                    let corr = router::next_corr();
                    (corr, Some(router::expect_reply(corr)), carry::current())
                }
                _ => (0, None, None),
            };
            let link = router::route_ref(
                &EnvelopeRef {
                    to: (&self.addr).into(),
                    from: (&me().identity).into(),
                    corr,
                    kind: wire_kind,
                    payload,
                    span: carried.as_ref().map(Carried::number),
                },
                polls,
            );
            shrink(payload);
            Ok((pending, link, carried))
        })
    }
}

thread_local! {
    /// Where this thread encodes the messages it sends, reused.
    static ENCODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Lets go of a buffer grown for a large message.
fn shrink(buf: &mut Vec<u8>) {
    if buf.capacity() > 1 << 20 {
        *buf = Vec::new();
    }
}

fn reply<A: Actor>(answer: Result<&[u8], RemoteError>) -> Result<A::Reply, CallError> {
    match answer {
        Ok(bytes) => codec::decode(bytes).map_err(CallError::Decode),
        // Relayed by the process that placed the actor: the same error as a call
        // made there.
        Err(RemoteError::Node(e)) => Err(CallError::Node(*e)),
        Err(e) => Err(CallError::Remote(e)),
    }
}
