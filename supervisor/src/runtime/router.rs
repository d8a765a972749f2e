//! Moves envelopes along the process tree: to the local actor, down to a child, or up
//! to the parent, and matches replies with the calls that wait for them.
//!
//! # Invariants
//!
//! - Every call that enters a child's link is remembered until its reply comes back
//!   out of that link. When the link ends (the child exited), each call still
//!   remembered fails with `RemoteError::Exited`, so no caller waits for a reply that
//!   cannot come.
//! - A call that cannot be delivered (no such process, no actor there) is answered
//!   with a `Fail` envelope at once. A cast or reply that cannot be delivered is
//!   dropped and logged: nobody waits for it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use std::sync::Arc;

use multiproc_core::{Body, Envelope, Hop, Identity, Packet, RemoteError};
use tokio::sync::oneshot;

use crate::runtime::current::me;
use crate::runtime::link::{self, Link, Outgoing, SendError};

pub(crate) type LinkTx = Arc<Link>;

/// Puts an envelope in the local actor's mailbox; gives it back if the mailbox is
/// closed (`None` if it was lost on the way).
pub(crate) type LocalMailbox = Box<dyn Fn(Envelope) -> Result<(), Option<Envelope>> + Send>;

struct ChildLink {
    tx: LinkTx,
    /// (caller, corr) of calls sent into this link and not yet answered.
    inflight: HashSet<(Identity, u64)>,
}

/// The actor of this process, as far as routing is concerned.
#[derive(Default)]
enum Local {
    /// This process hosts no actor.
    #[default]
    None,
    /// The actor is starting: messages wait here, in order, until it can take them.
    Starting(Vec<Envelope>),
    /// The actor's mailbox.
    Running(LocalMailbox),
}

#[derive(Default)]
struct Tables {
    parent: Option<LinkTx>,
    children: HashMap<u32, ChildLink>,
    local: Local,
}

/// Calls from this process waiting for their replies. Apart from the tables, so a
/// caller registering its call never waits for a reader that is routing.
fn pending() -> MutexGuard<'static, HashMap<u64, oneshot::Sender<Body>>> {
    static PENDING: OnceLock<Mutex<HashMap<u64, oneshot::Sender<Body>>>> = OnceLock::new();
    PENDING
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn tables() -> MutexGuard<'static, Tables> {
    static TABLES: OnceLock<Mutex<Tables>> = OnceLock::new();
    TABLES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A fresh correlation number for a call from this process.
pub(crate) fn next_corr() -> u64 {
    static CORR: AtomicU64 = AtomicU64::new(1);
    CORR.fetch_add(1, Ordering::Relaxed)
}

/// Sends a packet up to the parent, if this process has one.
pub(crate) fn to_parent(packet: Packet) {
    let parent = tables().parent.clone();
    if let Some(link) = parent {
        let _ = link.send(Outgoing::Packet(packet));
    }
}

pub(crate) fn set_parent(tx: LinkTx) {
    tables().parent = Some(tx);
}

/// This process will host an actor: hold its messages until it runs.
pub(crate) fn expect_local() {
    tables().local = Local::Starting(Vec::new());
}

/// The actor runs: deliver what waited, then everything else as it comes.
pub(crate) fn set_local(mailbox: LocalMailbox) {
    let mut t = tables();
    let waiting = match std::mem::replace(&mut t.local, Local::None) {
        Local::Starting(waiting) => waiting,
        _ => Vec::new(),
    };
    let mut refused = Vec::new();
    for env in waiting {
        if let Err(Some(env)) = mailbox(env) {
            refused.push(env);
        }
    }
    t.local = Local::Running(mailbox);
    drop(t);
    for env in refused {
        let to = env.to.clone();
        bounce(env, RemoteError::NoActor(to));
    }
}

/// The actor is gone (or never started): refuse what waited and what comes.
pub(crate) fn clear_local() {
    let old = std::mem::replace(&mut tables().local, Local::None);
    if let Local::Starting(waiting) = old {
        for env in waiting {
            let to = env.to.clone();
            bounce(env, RemoteError::NoActor(to));
        }
    }
}

pub(crate) fn add_child(n: u32, tx: LinkTx) {
    tables().children.insert(
        n,
        ChildLink {
            tx,
            inflight: HashSet::new(),
        },
    );
}

/// Forgets a child's link and fails the calls that were waiting on it.
pub(crate) fn remove_child(n: u32, identity: &Identity) {
    let link = tables().children.remove(&n);
    for (caller, corr) in link.map(|l| l.inflight).unwrap_or_default() {
        route(Envelope {
            to: caller,
            from: identity.clone(),
            corr,
            body: Body::Fail(RemoteError::Exited(identity.clone())),
        });
    }
}

/// Registers a call waiting for its reply.
pub(crate) fn expect_reply(corr: u64) -> PendingReply {
    let (tx, rx) = oneshot::channel();
    pending().insert(corr, tx);
    PendingReply { corr, rx }
}

/// The reply a call waits for. Dropping it (a call's future dropped before its reply
/// came) forgets the call, so that a reply that never comes leaves no entry behind.
#[derive(Debug)]
pub(crate) struct PendingReply {
    corr: u64,
    rx: oneshot::Receiver<Body>,
}

impl PendingReply {
    /// The reply, if it has come.
    pub(crate) fn try_recv(&mut self) -> Result<Body, oneshot::error::TryRecvError> {
        self.rx.try_recv()
    }
}

impl std::future::Future for PendingReply {
    type Output = Result<Body, oneshot::error::RecvError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx).poll(cx)
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        // Already gone once the reply was delivered; correlations are never reused.
        forget_reply(self.corr);
    }
}

/// Forgets a call that stopped waiting (timed out).
pub(crate) fn forget_reply(corr: u64) {
    pending().remove(&corr);
}

/// Called by a parent-side link reader for each envelope that comes *up* out of child
/// `n`: a reply leaving the child closes the call that went in.
pub(crate) fn from_child(n: u32, env: Envelope) {
    if matches!(env.body, Body::Reply(_) | Body::Fail(_))
        && let Some(link) = tables().children.get_mut(&n)
    {
        link.inflight.remove(&(env.to.clone(), env.corr));
    }
    route(env);
}

/// Sends an envelope one step closer to its destination (or delivers it here).
pub(crate) fn route(env: Envelope) {
    let hop = me().identity.next_hop(&env.to);
    // Pick the link under the lock, write outside it: a write is a syscall, and callers
    // registering replies or other readers routing should not wait for it.
    let (link, call) = {
        let mut t = tables();
        match hop {
            Hop::Here => return deliver_here(t, env),
            Hop::Child(n) => match t.children.get_mut(&n) {
                Some(child) => {
                    // A service request with correlation 0 expects no answer.
                    let call = (matches!(env.body, Body::Call(_))
                        || matches!(env.body, Body::Service(_)) && env.corr != 0)
                        .then(|| (env.from.clone(), env.corr));
                    if let Some(key) = &call {
                        child.inflight.insert(key.clone());
                    }
                    (Some(Arc::clone(&child.tx)), call.map(|key| (n, key)))
                }
                None => (None, None),
            },
            Hop::Parent => (t.parent.clone(), None),
            Hop::Nowhere => (None, None),
        }
    };
    let packet = Outgoing::Packet(Packet::Envelope(env));
    let failed = match link {
        Some(link) => match link.send(packet) {
            Ok(()) => return,
            Err(e) => e,
        },
        None => SendError::Closed(packet),
    };
    if let Some((n, key)) = call
        && let Some(child) = tables().children.get_mut(&n)
    {
        child.inflight.remove(&key);
    }
    match failed {
        SendError::Closed(Outgoing::Packet(Packet::Envelope(env))) => {
            let to = env.to.clone();
            bounce(env, RemoteError::NoProcess(to));
        }
        SendError::Refused(packet, why) => link::refuse(packet, why),
        SendError::Closed(_) => {}
    }
}

fn deliver_here(mut t: MutexGuard<'static, Tables>, env: Envelope) {
    match env.body {
        Body::Reply(_) | Body::Fail(_) => {
            drop(t);
            if let Some(waiter) = pending().remove(&env.corr) {
                let _ = waiter.send(env.body);
            }
        }
        Body::Service(_) => {
            drop(t);
            crate::sync::serve(env);
        }
        Body::Call(_) | Body::Cast(_) => {
            let refused = match &mut t.local {
                Local::Running(mailbox) => match mailbox(env) {
                    Err(Some(env)) => env,
                    _ => return,
                },
                Local::Starting(waiting) => return waiting.push(env),
                Local::None => env,
            };
            drop(t);
            let to = refused.to.clone();
            bounce(refused, RemoteError::NoActor(to));
        }
    }
}

/// Answers an undeliverable call with `err`; drops anything else, with a log line.
pub(crate) fn bounce(env: Envelope, err: RemoteError) {
    match env.body {
        Body::Call(_) | Body::Service(_) => route(Envelope {
            to: env.from,
            from: me().identity.clone(),
            corr: env.corr,
            body: Body::Fail(err),
        }),
        _ => tracing::debug!(to = %env.to, error = %err, "dropped an undeliverable message"),
    }
}
