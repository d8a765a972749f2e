//! What a control link's reader hands on, and to whom: envelopes to the router, the
//! packets of direct links between siblings to their installation, and the rest back
//! to the link's owner.

use multiproc_core::Packet;

use super::sibling;
use crate::runtime::link::{INBOXES, Inbox, Link, Peer};
use crate::runtime::router;

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(INBOXES)]
static ROUTER: Inbox = Inbox {
    envelope: router::incoming,
    packet,
};

/// A packet read from `link`: taken if it is the router's, else given back.
fn packet(link: &Link, peer: &str, packet: Packet) -> Option<Packet> {
    match packet {
        Packet::Envelope(env) => router::incoming_owned(link.peer(), env),
        Packet::Sibling {
            peer: sibling,
            rings,
            creator,
        } if link.peer() == Peer::Parent => match link.take_fds(2) {
            Some(fds) => sibling::install(sibling, rings, creator, fds),
            None => tracing::warn!(
                peer,
                "a sibling link came without its descriptors; calls stay routed"
            ),
        },
        Packet::SiblingOpen { peer: sibling } if link.peer() == Peer::Parent => {
            sibling::open(&sibling)
        }
        Packet::SiblingFence { peer: sibling } => {
            if let Peer::Child(n) = link.peer() {
                router::sibling_fence(n, &sibling);
            }
        }
        packet => return Some(packet),
    }
    None
}
