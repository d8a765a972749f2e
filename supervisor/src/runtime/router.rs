//! Moves envelopes along the process tree: to the local actor, down to a child, or up
//! to the parent, and matches replies with the calls that wait for them.
//!
//! Envelopes travel as [`EnvelopeRef`]s, borrowed from the caller or from a link's
//! buffer: routing one allocates nothing (paths up to [`INLINE`](caller::INLINE) levels deep).
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use multiproc_core::wire::{self, BodyKind, EnvelopeRef, PathRef};
use multiproc_core::{Envelope, Hop, Identity, Packet, RemoteError, codec};

mod caller;
pub(crate) mod direct;
mod inbox;
mod sibling;

use caller::Caller;
use direct::{MAX_DIRECT_LINKS, Routed};

use crate::runtime::current::me;
use crate::runtime::link::{EnvelopeError, Link, Outgoing, Peer, SendError};
use crate::runtime::mailbox::Mailbox;
use crate::runtime::reply;

pub(crate) use crate::runtime::reply::PendingReply;

pub(crate) type LinkTx = Arc<Link>;

/// The service that takes the `Service` envelopes delivered to this process (the
/// synchronization primitives' requests and the hosts' watches). Services register
/// themselves at link time, so the router, below them, names none of them.
pub(crate) struct Service {
    /// Handles one envelope, on the thread that delivered it: it must not block.
    pub(crate) serve: fn(Envelope),
}

/// The registered services; one takes every `Service` envelope (there is one today).
#[linkme::distributed_slice]
pub(crate) static SERVICES: [Service];

/// Where an envelope for a child of this process that has no link here goes: a
/// child placed on another node, whose messages the node service relays over its
/// session (registered at link time, as the services are).
pub(crate) struct Placed {
    /// Takes the envelope for child `n` if it is placed elsewhere; `false` if no such
    /// child is known (the router then answers `NoProcess`).
    pub(crate) route: fn(u32, &EnvelopeRef<'_>) -> bool,
}

/// The registered relay of placed children (there is one: the node service's).
#[linkme::distributed_slice]
pub(crate) static PLACED: [Placed];

struct ChildLink {
    tx: LinkTx,
    /// (caller, corr) of calls sent into this link and not yet answered.
    inflight: HashSet<(Caller, u64)>,
}

/// The actor of this process, as far as routing is concerned.
#[derive(Default)]
enum Local {
    /// This process hosts no actor.
    #[default]
    None,
    /// Its mailbox; `running` once the actor took it.
    Mailbox {
        mailbox: Arc<Mailbox>,
        running: bool,
    },
}

#[derive(Default)]
struct Tables {
    parent: Option<LinkTx>,
    children: HashMap<u32, ChildLink>,
    local: Local,
    /// For each child, the children it has a direct link with, brokered here.
    brokered: HashMap<u32, HashSet<u32>>,
}

/// Envelopes this process passed from one of its children to another.
static ROUTED_BETWEEN_CHILDREN: AtomicU64 = AtomicU64::new(0);

/// Whether this process brokers direct links between its children.
static BROKERS: AtomicBool = AtomicBool::new(true);

/// How many envelopes this process passed from one of its children to another.
pub(crate) fn routed_between_children() -> u64 {
    ROUTED_BETWEEN_CHILDREN.load(Ordering::Relaxed)
}

/// Whether this process brokers direct links between its children (it does unless
/// a test or a benchmark turns it off, to measure the routed path).
pub(crate) fn set_brokering(on: bool) {
    BROKERS.store(on, Ordering::Relaxed);
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
    let parent = parent();
    if let Some(link) = parent
        && let Err(SendError::Refused(packet, why)) = link.send(Outgoing::Packet(packet))
    {
        refuse_packet(packet, why);
    }
}

/// A child whose link to its parent waits for the runtime starts both before it
/// sends anything up: the link is in the tables once this returns.
fn serve_parent() {
    if crate::runtime::start_deferred() {
        let _ = crate::runtime::ensure();
    }
}

pub(crate) fn set_parent(tx: LinkTx) {
    tables().parent = Some(tx);
}

/// The link to the parent, if this process has one.
pub(crate) fn parent() -> Option<LinkTx> {
    serve_parent();
    tables().parent.clone()
}

/// This process will host an actor: its mailbox holds messages until it runs.
pub(crate) fn expect_local() {
    tables().local = Local::Mailbox {
        mailbox: Arc::default(),
        running: false,
    };
}

/// The actor runs: its mailbox, with what waited in it.
pub(crate) fn take_local() -> Option<Arc<Mailbox>> {
    match &mut tables().local {
        Local::Mailbox { mailbox, running } => {
            *running = true;
            Some(Arc::clone(mailbox))
        }
        Local::None => None,
    }
}

/// The actor is gone (or never started): later messages are refused. Calls that
/// waited for an actor that never ran are refused now; those queued for one that ran
/// fail as its process exits, as they would have in its mailbox.
pub(crate) fn clear_local() {
    let old = std::mem::take(&mut tables().local);
    if let Local::Mailbox { mailbox, running } = old {
        let waiting = mailbox.close();
        if !running {
            let here = &me().identity;
            for mail in waiting {
                if mail.kind == Some(BodyKind::Call) {
                    let err = RemoteError::NoActor(here.clone());
                    fail(PathRef::Words(&mail.from), here.path(), mail.corr, &err);
                }
            }
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

/// Forgets a child's link and fails the calls that were waiting on it. The children
/// it had direct links with are told to read them to their end (see
/// `router/sibling.rs`), and a later child may be brokered a link anew.
pub(crate) fn remove_child(n: u32, identity: &Identity) {
    let (link, partners) = {
        let mut t = tables();
        let link = t.children.remove(&n);
        let partners = t.brokered.remove(&n).unwrap_or_default();
        let mut links = Vec::new();
        for p in partners {
            if let Some(theirs) = t.brokered.get_mut(&p) {
                theirs.remove(&n);
            }
            if let Some(child) = t.children.get(&p) {
                links.push(Arc::clone(&child.tx));
            }
        }
        (link, links)
    };
    for partner in partners {
        let _ = partner.send(Outgoing::Packet(Packet::SiblingOpen {
            peer: identity.clone(),
        }));
    }
    for (caller, corr) in link.map(|l| l.inflight).unwrap_or_default() {
        route(Envelope {
            to: caller.identity(),
            from: identity.clone(),
            corr,
            body: multiproc_core::Body::Fail(RemoteError::Exited(identity.clone())),
        });
    }
}

/// Registers a call waiting for its reply.
pub(crate) fn expect_reply(corr: u64) -> PendingReply {
    reply::expect(corr)
}

/// Registers a call whose answer `then` takes where it arrives.
pub(crate) fn expect_reply_then(corr: u64, then: reply::Then) {
    reply::expect_then(corr, then);
}

/// Forgets a call that stopped waiting (timed out).
pub(crate) fn forget_reply(corr: u64) {
    reply::forget(corr);
}

/// Sends `payload` (an encoded message) to the actor of the process `to`, here, now
/// (so messages keep the order they came in): a cast, or with `then`, a call whose
/// answer (its kind and payload, as they came) `then` takes where it arrives. What a
/// node's agent does for a root's call or cast, and a root's gateway for a node's.
pub(crate) fn raw_send(to: &Identity, payload: &[u8], then: Option<reply::Then>) {
    let (corr, kind) = match then {
        Some(then) => {
            let corr = next_corr();
            expect_reply_then(corr, then);
            (corr, BodyKind::Call)
        }
        None => (0, BodyKind::Cast),
    };
    send_from_here(to.into(), corr, kind, payload);
}

/// Routes an envelope from this process to `to`, without a span, and without
/// reading replies on the way: an answer, or a message sent on another's behalf.
pub(crate) fn send_from_here(to: PathRef<'_>, corr: u64, kind: BodyKind, payload: &[u8]) {
    route_ref(
        &EnvelopeRef {
            to,
            from: (&me().identity).into(),
            corr,
            kind,
            payload,
            span: None,
        },
        false,
    );
}

/// An envelope read from a link to `peer`: one that comes *up* out of a child, if it
/// is an answer, closes the call that went in.
pub(crate) fn incoming(peer: Peer, env: &EnvelopeRef<'_>) {
    match peer {
        Peer::Child(n) => {
            if matches!(env.kind, BodyKind::Reply | BodyKind::Fail)
                && let Some(link) = tables().children.get_mut(&n)
            {
                link.inflight.remove(&(Caller::new(env.to), env.corr));
            }
            if let Hop::Child(to) = env.next_hop(me().identity.path())
                && to != n
            {
                ROUTED_BETWEEN_CHILDREN.fetch_add(1, Ordering::Relaxed);
                route_ref(env, false);
                // After the envelope: it is ahead of the link's announcement.
                broker(n, to);
                return;
            }
        }
        Peer::Sibling(n) => direct::incoming(n, env),
        Peer::Parent => {}
    }
    route_ref(env, false);
}

/// The identity of this process's child number `n`.
fn child_identity(n: u32) -> Identity {
    let mut path = me().identity.path().to_vec();
    path.push(n);
    Identity::from_path(path)
}

/// Gives children `a` and `b` a direct link, the first time one sends to the
/// other through here (see `router/sibling.rs`), unless either has its
/// [`MAX_DIRECT_LINKS`] already.
fn broker(a: u32, b: u32) {
    if !BROKERS.load(Ordering::Relaxed) {
        return;
    }
    let (to_a, to_b) = {
        let mut t = tables();
        let links = |t: &Tables, n: u32| t.brokered.get(&n).map_or(0, HashSet::len);
        if t.brokered.get(&a).is_some_and(|s| s.contains(&b))
            || links(&t, a) >= MAX_DIRECT_LINKS
            || links(&t, b) >= MAX_DIRECT_LINKS
        {
            return;
        }
        let (Some(ca), Some(cb)) = (t.children.get(&a), t.children.get(&b)) else {
            return;
        };
        let ends = (Arc::clone(&ca.tx), Arc::clone(&cb.tx));
        t.brokered.entry(a).or_default().insert(b);
        t.brokered.entry(b).or_default().insert(a);
        ends
    };
    let ends = (|| -> std::io::Result<_> {
        let (sa, sb) = std::os::unix::net::UnixStream::pair()?;
        let (rings, mem) = crate::runtime::ring::Rings::create(crate::runtime::ring::CAPACITY)
            .map_err(std::io::Error::other)?;
        // This process takes no part in the link: only its children map the rings.
        drop(rings);
        let mem_b = mem.try_clone()?;
        Ok(([sa.into(), mem], [sb.into(), mem_b]))
    })();
    let (fds_a, fds_b) = match ends {
        Ok(ends) => ends,
        Err(e) => {
            tracing::warn!(error = %e, "cannot make a direct link between two children; they stay routed");
            let mut t = tables();
            t.brokered.entry(a).or_default().remove(&b);
            t.brokered.entry(b).or_default().remove(&a);
            return;
        }
    };
    let cap = crate::runtime::ring::CAPACITY as u32;
    let _ = to_a.send_with_fds(
        &Packet::Sibling {
            peer: child_identity(b),
            rings: cap,
            creator: true,
        },
        Vec::from(fds_a),
    );
    let _ = to_b.send_with_fds(
        &Packet::Sibling {
            peer: child_identity(a),
            rings: cap,
            creator: false,
        },
        Vec::from(fds_b),
    );
}

/// Child `n` fenced its direct link to `peer`: everything it routed to `peer`
/// through here is passed on, so `peer` may read the link.
pub(crate) fn sibling_fence(n: u32, peer: &Identity) {
    let to = match multiproc_core::wire::next_hop(me().identity.path(), peer.into()) {
        Hop::Child(m) if peer.path().len() == me().identity.path().len() + 1 => m,
        _ => return,
    };
    let link = {
        let t = tables();
        if !t.brokered.get(&n).is_some_and(|s| s.contains(&to)) {
            return;
        }
        t.children.get(&to).map(|c| Arc::clone(&c.tx))
    };
    if let Some(link) = link {
        let _ = link.send(Outgoing::Packet(Packet::SiblingOpen {
            peer: child_identity(n),
        }));
    }
}

/// As [`incoming`], for an envelope that came as a packet.
pub(crate) fn incoming_owned(peer: Peer, env: Envelope) {
    with_ref(&env, |r| incoming(peer, r));
}

/// Sends an envelope one step closer to its destination (or delivers it here).
pub(crate) fn route(env: Envelope) {
    with_ref(&env, |r| {
        route_ref(r, false);
    });
}

fn with_ref(env: &Envelope, f: impl FnOnce(&EnvelopeRef<'_>)) {
    let mut bytes = Vec::new();
    match wire::write_envelope(env, &mut bytes) {
        Ok(()) => match EnvelopeRef::parse(&bytes) {
            Ok(r) => f(&r),
            Err(e) => tracing::error!(error = %e, "an envelope that does not read back"),
        },
        Err(e) => tracing::error!(error = %e, "an envelope that does not encode"),
    }
}

/// Sends an envelope one step closer to its destination (or delivers it here), and
/// returns the link it went out on. With `polls`, the sender will read that link's
/// ring for the answer itself.
pub(crate) fn route_ref(env: &EnvelopeRef<'_>, polls: bool) -> Option<LinkTx> {
    let hop = env.next_hop(me().identity.path());
    if hop == Hop::Parent {
        serve_parent();
        return route_up(env, polls);
    }
    // Pick the link under the lock, write outside it: a write may be a syscall, and
    // callers or other readers routing should not wait for it.
    let (link, call) = {
        let mut t = tables();
        match hop {
            Hop::Here => {
                drop(t);
                deliver_here(env);
                return None;
            }
            Hop::Child(n) => match t.children.get_mut(&n) {
                Some(child) => {
                    let call = env
                        .kind
                        .expects_answer(env.corr)
                        .then(|| (Caller::new(env.from), env.corr));
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
    let failed = match &link {
        Some(link) => {
            if polls {
                link.expect_reply();
            }
            match link.send_envelope(env) {
                Ok(()) => return Some(Arc::clone(link)),
                Err(e) => e,
            }
        }
        None => {
            // Not a child with a link here: one placed on a node, maybe.
            if let Hop::Child(n) = hop
                && PLACED.first().is_some_and(|p| (p.route)(n, env))
            {
                return None;
            }
            EnvelopeError::Closed
        }
    };
    if let Some((n, key)) = call
        && let Some(child) = tables().children.get_mut(&n)
    {
        child.inflight.remove(&key);
    }
    match failed {
        EnvelopeError::Closed => bounce(env, RemoteError::NoProcess(env.to.to_identity())),
        EnvelopeError::Refused(why) => refuse(env, why),
    }
    None
}

fn parent_link() -> Option<LinkTx> {
    tables().parent.clone()
}

/// Sends an envelope bound up the tree: on the direct link to the sibling it is
/// for, or to the parent.
fn route_up(env: &EnvelopeRef<'_>, polls: bool) -> Option<LinkTx> {
    let failed = match direct::route(env, polls) {
        Routed::Direct(link) => return Some(link),
        Routed::Answered => return None,
        Routed::Refused(why) => EnvelopeError::Refused(why),
        // The sibling table stays locked until the envelope is in the parent's
        // link: a direct link fenced meanwhile would let later messages overtake it.
        Routed::Parent(_fence) => match parent_link() {
            Some(link) => {
                if polls {
                    link.expect_reply();
                }
                match link.send_envelope(env) {
                    Ok(()) => return Some(link),
                    Err(e) => e,
                }
            }
            None => EnvelopeError::Closed,
        },
    };
    match failed {
        EnvelopeError::Closed => bounce(env, RemoteError::NoProcess(env.to.to_identity())),
        EnvelopeError::Refused(why) => refuse(env, why),
    }
    None
}

fn deliver_here(env: &EnvelopeRef<'_>) {
    match env.kind {
        BodyKind::Reply | BodyKind::Fail => reply::deliver(env.corr, env.kind, env.payload),
        BodyKind::Service => match (SERVICES.first(), env.to_envelope()) {
            (Some(service), Ok(env)) => (service.serve)(env),
            (None, _) => bounce(env, RemoteError::NoActor(me().identity.clone())),
            (_, Err(e)) => {
                tracing::warn!(error = %e, "dropped a service request that does not decode")
            }
        },
        BodyKind::Call | BodyKind::Cast => {
            let mailbox = match &tables().local {
                Local::Mailbox { mailbox, .. } => Some(Arc::clone(mailbox)),
                Local::None => None,
            };
            if !mailbox.is_some_and(|m| m.push(env)) {
                bounce(env, RemoteError::NoActor(me().identity.clone()));
            }
        }
    }
}

/// Answers an undeliverable call with `err`; drops anything else, with a log line.
pub(crate) fn bounce(env: &EnvelopeRef<'_>, err: RemoteError) {
    if env.kind.expects_answer(env.corr) || env.kind == BodyKind::Service {
        fail(env.from, me().identity.path(), env.corr, &err);
    } else {
        tracing::debug!(to = %env.to.to_identity(), error = %err, "dropped an undeliverable message");
    }
}

/// As [`bounce`], for an owned envelope.
pub(crate) fn bounce_envelope(env: Envelope, err: RemoteError) {
    with_ref(&env, |r| bounce(r, err));
}

/// Sends `err` as the answer to call `corr` of `to`.
fn fail(to: PathRef<'_>, from: &[u32], corr: u64, err: &RemoteError) {
    let payload = match codec::encode(err) {
        Ok(p) => p,
        Err(e) => return tracing::error!(error = %e, "a failure that does not encode"),
    };
    route_ref(
        &EnvelopeRef {
            to,
            from: PathRef::Words(from),
            corr,
            kind: BodyKind::Fail,
            payload: &payload,
            span: None,
        },
        false,
    );
}

/// An envelope that cannot go on the wire: its caller learns why, if it waits.
fn refuse(env: &EnvelopeRef<'_>, why: String) {
    tracing::warn!(%why, "cannot send an envelope on a control link");
    match env.kind {
        BodyKind::Call | BodyKind::Service => bounce(env, RemoteError::Encode(why)),
        // The reply's caller waits: it learns why from the replier's place.
        BodyKind::Reply => fail(
            env.to,
            &env.from.iter().collect::<Vec<_>>(),
            env.corr,
            &RemoteError::Encode(why),
        ),
        _ => {}
    }
}

/// A packet that cannot go on the wire: its caller learns why, if it waits.
pub(crate) fn refuse_packet(packet: Packet, why: String) {
    tracing::warn!(%why, "cannot send a packet on a control link");
    if let Packet::Envelope(env) = packet {
        with_ref(&env, |r| refuse(r, why));
    }
}
