//! Direct links between siblings: a child's table of the links its parent brokered
//! to its brothers and sisters, and how messages switch onto them without
//! overtaking those already routed through the parent.
//!
//! # Brokering
//!
//! The first time a parent passes a message from one child to another (see
//! `router::incoming`), it makes a socket pair and a pair of rings and sends each
//! child its ends in a [`Packet::Sibling`], with `SCM_RIGHTS`. A parent brokers at
//! most [`MAX_DIRECT_LINKS`] links per child; past that, messages stay routed.
//!
//! # The fence
//!
//! Messages from one process to another arrive in the order they were sent. A
//! message sent on the direct link must not overtake those still on their way
//! through the parent, so:
//!
//! - a child that receives its end starts *writing* to its sibling through it at
//!   once, and sends [`Packet::SiblingFence`] up to the parent, in the same critical
//!   section as every routing decision: what it routed through the parent went up
//!   before the fence, what follows goes direct;
//! - the parent passes the fence to the sibling as [`Packet::SiblingOpen`], behind
//!   every message it passed on from the child before;
//! - a child *reads* a direct link only once its `SiblingOpen` came: by then every
//!   routed message from that sibling has been handed on.
//!
//! A parent whose child exits sends `SiblingOpen` for it to each of its partners, so
//! a link whose far end never fenced is still read to its end.
//!
//! # Ends
//!
//! When a link ends (the sibling exited: its socket's end; or the ring is found
//! corrupt) the survivor drops it, and the calls it sent into it and that are still
//! unanswered fail: [`RemoteError::Exited`] for an exit, as for a call routed to a
//! process that exits, [`RemoteError::LinkBroken`] for a corrupt ring. Later messages
//! to that sibling are routed through the parent.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use multiproc_core::wire::{BodyKind, EnvelopeRef, PathRef};
use multiproc_core::{Body, Envelope, Identity, Packet, RemoteError};
use multiproc_transport::FrameError;
use tokio::sync::Notify;

use super::{EnvelopeError, Link, LinkEnd, Peer};
use crate::runtime::current::me;
use crate::runtime::ring::Rings;
use crate::runtime::router::{self, Caller};

/// The most direct links a process has: past it, calls to other siblings stay
/// routed through the parent. Each link costs two descriptors, two tasks and 128 KiB
/// of shared memory (mostly untouched).
pub const MAX_DIRECT_LINKS: usize = 32;

/// A direct link to a sibling, as [`direct_links`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectLink {
    /// The sibling at its other end.
    pub sibling: Identity,
    /// Messages this process sent through it.
    pub sent: u64,
    /// Messages this process received through it.
    pub received: u64,
}

/// The direct links of this process to its siblings, brokered by its parent the
/// first time it passed a message between them. Empty in the root, and in a
/// process that has not talked with a sibling.
///
/// ```
/// // The root has no siblings.
/// assert!(multiproc_supervisor::direct_links().is_empty());
/// ```
pub fn direct_links() -> Vec<DirectLink> {
    let mut links: Vec<DirectLink> = table()
        .links
        .values()
        .map(|d| DirectLink {
            sibling: d.peer.clone(),
            sent: d.sent.load(Ordering::Relaxed),
            received: d.received.load(Ordering::Relaxed),
        })
        .collect();
    links.sort_by(|a, b| a.sibling.path().cmp(b.sibling.path()));
    links
}

/// One direct link.
#[derive(Debug)]
struct Direct {
    peer: Identity,
    link: Arc<Link>,
    /// (caller, corr) of calls sent into this link and not yet answered.
    inflight: Mutex<HashSet<(Caller, u64)>>,
    sent: AtomicU64,
    received: AtomicU64,
    /// Given once the sibling's routed messages are all in: the reader may start.
    opened: Notify,
    /// The sibling said it found the link corrupt: its end is not its exit.
    broken_there: AtomicBool,
}

#[derive(Default)]
pub(crate) struct Table {
    /// By the sibling's number (the last of its identity).
    links: HashMap<u32, Arc<Direct>>,
    /// Siblings whose `SiblingOpen` came before their link (the link's descriptors
    /// travel on the socket, the open in the ring).
    opened_early: HashSet<u32>,
}

/// The table of links. Held across every decision to route a message up, and the
/// send that follows: that is what orders a link's fence after the messages routed
/// before it.
pub(crate) fn table() -> MutexGuard<'static, Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The sibling whose subtree holds `to`, if `to` is under a sibling of this process.
fn sibling_of(to: PathRef<'_>) -> Option<u32> {
    let mine = me().identity.path();
    let (&n, parent) = mine.split_last()?;
    let under_parent =
        to.len() > parent.len() && parent.iter().enumerate().all(|(i, &p)| to.get(i) == p);
    if !under_parent {
        return None;
    }
    let sibling = to.get(parent.len());
    (sibling != n).then_some(sibling)
}

impl Table {
    /// The direct link to the sibling that `to` is under, if there is one.
    fn for_dest(&self, to: PathRef<'_>) -> Option<Arc<Direct>> {
        if self.links.is_empty() {
            return None;
        }
        self.links.get(&sibling_of(to)?).cloned()
    }
}

/// What [`route`] did with a message.
pub(crate) enum Routed {
    /// It went on a direct link; a caller may read the link for its answer.
    Direct(Arc<Link>),
    /// No direct link: the caller routes it through the parent, holding the table.
    Parent(MutexGuard<'static, Table>),
    /// A direct link refused it (over the frame limit).
    Refused(String),
    /// Its call was already answered (failed) as its link ended.
    Answered,
}

/// Sends `env`, bound up the tree, on the direct link to the sibling it is for, if
/// there is one.
pub(crate) fn route(env: &EnvelopeRef<'_>, polls: bool) -> Routed {
    let t = table();
    let Some(direct) = t.for_dest(env.to) else {
        return Routed::Parent(t);
    };
    drop(t);
    let call = env
        .kind
        .expects_answer(env.corr)
        .then(|| (Caller::new(env.from), env.corr));
    if let Some(key) = &call {
        lock(&direct.inflight).insert(key.clone());
    }
    if polls {
        direct.link.expect_reply();
    }
    match direct.link.send_envelope(env) {
        Ok(()) => {
            direct.sent.fetch_add(1, Ordering::Relaxed);
            Routed::Direct(Arc::clone(&direct.link))
        }
        Err(e) => {
            // Unless its end already answered the call, the message goes the long way.
            let ours = call.is_none_or(|key| lock(&direct.inflight).remove(&key));
            match e {
                EnvelopeError::Refused(why) => Routed::Refused(why),
                EnvelopeError::Closed if ours => {
                    forget(&direct);
                    route(env, polls)
                }
                EnvelopeError::Closed => Routed::Answered,
            }
        }
    }
}

/// An envelope read from the direct link to sibling `n`: an answer closes its call.
pub(crate) fn incoming(n: u32, env: &EnvelopeRef<'_>) {
    let Some(direct) = table().links.get(&n).cloned() else {
        return;
    };
    direct.received.fetch_add(1, Ordering::Relaxed);
    if matches!(env.kind, BodyKind::Reply | BodyKind::Fail) {
        lock(&direct.inflight).remove(&(Caller::new(env.to), env.corr));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the link to `peer` that the parent brokered: `fds` are its socket's end
/// and its rings. Fences it at once (see the module's doc).
pub(crate) fn install(peer: Identity, rings: u32, creator: bool, fds: Vec<OwnedFd>) {
    let Some(n) =
        sibling_of((&peer).into()).filter(|_| peer.path().len() == me().identity.path().len())
    else {
        tracing::warn!(%peer, "a direct link to a process that is not a sibling; ignored");
        return;
    };
    let direct = match link_from(n, rings, creator, fds) {
        Ok(link) => Arc::new(Direct {
            peer: peer.clone(),
            link,
            inflight: Mutex::default(),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            opened: Notify::new(),
            broken_there: AtomicBool::new(false),
        }),
        Err(e) => {
            // Fenced all the same, or the sibling would never read its end: it then
            // finds ours closed, and its calls in flight on it fail as if this
            // process had exited (they went nowhere). Ours stay routed.
            tracing::warn!(%peer, error = %e, "cannot take a direct link; calls stay routed");
            let _t = table();
            router::to_parent(Packet::SiblingFence { peer });
            return;
        }
    };
    let mut t = table();
    if let Some(old) = t.links.insert(n, Arc::clone(&direct)) {
        // Read to its end, so its calls in flight are answered.
        old.link.close();
        old.link.release();
        old.opened.notify_one();
    }
    if t.opened_early.remove(&n) {
        direct.link.release();
        direct.opened.notify_one();
    }
    // Under the table's lock, as every routing decision: what was routed up before
    // is ahead of the fence, what comes after goes direct.
    router::to_parent(Packet::SiblingFence { peer: peer.clone() });
    drop(t);
    let name = format!("sibling {peer}");
    crate::runtime::handle().spawn(async move {
        direct.opened.notified().await;
        let end = direct
            .link
            .read_loop(&name, |packet| match packet {
                Packet::SiblingBroken => direct.broken_there.store(true, Ordering::Release),
                packet => {
                    tracing::warn!(peer = %name, ?packet, "unexpected packet on a direct link")
                }
            })
            .await;
        ended(n, direct, end).await;
    });
}

/// The link's ends made into a link that is written at once and read once opened.
fn link_from(n: u32, cap: u32, creator: bool, fds: Vec<OwnedFd>) -> std::io::Result<Arc<Link>> {
    let mut fds = fds.into_iter();
    let (Some(sock), Some(mem)) = (fds.next(), fds.next()) else {
        return Err(std::io::Error::other(
            "a direct link needs a socket and its rings",
        ));
    };
    let rings = Rings::adopt_side(&mem, cap as usize, creator).map_err(std::io::Error::other)?;
    let sock = std::os::unix::net::UnixStream::from(sock);
    let _enter = crate::runtime::handle().enter();
    let stream = super::Socket::new(sock)?;
    let (tx, rx) = rings.split();
    // Its reader spins a little, as a child's link to its parent: calls between
    // siblings come back to back as well.
    let link = Link::from_parts(stream, tx, rx, Peer::Sibling(n), true);
    link.hold();
    Ok(link)
}

/// The parent says every message `peer` routed here has been handed on: the link
/// from it may be read.
pub(crate) fn open(peer: &Identity) {
    let Some(n) = sibling_of(peer.into()) else {
        return;
    };
    let mut t = table();
    match t.links.get(&n) {
        Some(direct) => {
            direct.link.release();
            direct.opened.notify_one();
        }
        None => {
            t.opened_early.insert(n);
        }
    }
}

/// A link that refused a message as closed: later messages go through the parent.
fn forget(direct: &Arc<Direct>) {
    let mut t = table();
    let n = t
        .links
        .iter()
        .find(|(_, d)| Arc::ptr_eq(d, direct))
        .map(|(n, _)| *n);
    if let Some(n) = n {
        t.links.remove(&n);
    }
}

/// The link to sibling `n` ended: drop it, and fail the calls still waiting on it.
async fn ended(n: u32, direct: Arc<Direct>, end: LinkEnd) {
    forget(&direct);
    let err = match &end {
        // The socket's end, or its reset by a peer killed with bytes unread: it exited.
        LinkEnd::Eof | LinkEnd::Broken(FrameError::Io(_))
            if !direct.broken_there.load(Ordering::Acquire) =>
        {
            RemoteError::Exited(direct.peer.clone())
        }
        LinkEnd::Eof | LinkEnd::Broken(FrameError::Io(_)) => {
            RemoteError::LinkBroken(direct.peer.clone())
        }
        LinkEnd::Broken(_) | LinkEnd::Corrupt(_) => {
            tracing::error!(sibling = %direct.peer, ?end, "a direct link broke; calls to the sibling go through the parent");
            // Its calls in flight fail for the link, not for an exit: say so before
            // the socket's end says the rest.
            let _ = direct
                .link
                .send_with_fds(&Packet::SiblingBroken, Vec::new());
            RemoteError::LinkBroken(direct.peer.clone())
        }
    };
    direct.link.shut().await;
    tracing::debug!(sibling = n, ?end, "a direct link ended");
    let waiting: Vec<_> = lock(&direct.inflight).drain().collect();
    for (caller, corr) in waiting {
        router::route(Envelope {
            to: caller.identity(),
            from: direct.peer.clone(),
            corr,
            body: Body::Fail(err.clone()),
        });
    }
}

/// For tests: damages the ring this process writes to `sibling`; `false` when it has
/// no direct link to it.
pub(crate) fn damage_for_test(
    sibling: &Identity,
    damage: crate::__private::test_hooks::RingDamage,
) -> bool {
    let direct = sibling_of(sibling.into()).and_then(|n| table().links.get(&n).cloned());
    match direct {
        Some(d) => {
            d.link.damage_for_test(damage);
            true
        }
        None => false,
    }
}
