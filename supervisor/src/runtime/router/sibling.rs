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

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use multiproc_core::{Body, Envelope, Identity, Packet, RemoteError};
use multiproc_transport::FrameError;
use tokio::sync::Notify;

use super::direct::{Direct, forget, lock, sibling_of, table};
use crate::runtime::current::me;
use crate::runtime::link::{Link, LinkEnd, Peer};
use crate::runtime::ring::Rings;
use crate::runtime::router;

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
    let stream = crate::runtime::link::Socket::new(sock)?;
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
