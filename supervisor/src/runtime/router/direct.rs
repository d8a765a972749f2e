//! A child's direct links to its siblings: the table of the links its parent
//! brokered (see `router/sibling.rs` for how one is taken, opened and ended), and
//! how a message bound up the tree goes on one instead of through the parent.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use multiproc_core::Identity;
use multiproc_core::wire::{BodyKind, EnvelopeRef, PathRef};
use tokio::sync::Notify;

use super::caller::Caller;
use crate::runtime::current::me;
use crate::runtime::link::{EnvelopeError, Link, RingDamage};

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
pub(super) struct Direct {
    pub(super) peer: Identity,
    pub(super) link: Arc<Link>,
    /// (caller, corr) of calls sent into this link and not yet answered.
    pub(super) inflight: Mutex<HashSet<(Caller, u64)>>,
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    /// Given once the sibling's routed messages are all in: the reader may start.
    pub(super) opened: Notify,
    /// The sibling said it found the link corrupt: its end is not its exit.
    pub(super) broken_there: AtomicBool,
}

#[derive(Default)]
pub(crate) struct Table {
    /// By the sibling's number (the last of its identity).
    pub(super) links: HashMap<u32, Arc<Direct>>,
    /// Siblings whose `SiblingOpen` came before their link (the link's descriptors
    /// travel on the socket, the open in the ring).
    pub(super) opened_early: HashSet<u32>,
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
pub(super) fn sibling_of(to: PathRef<'_>) -> Option<u32> {
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

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A link that refused a message as closed: later messages go through the parent.
pub(super) fn forget(direct: &Arc<Direct>) {
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

/// For tests: damages the ring this process writes to `sibling`; `false` when it has
/// no direct link to it.
pub(crate) fn damage_for_test(sibling: &Identity, damage: RingDamage) -> bool {
    let direct = sibling_of(sibling.into()).and_then(|n| table().links.get(&n).cloned());
    match direct {
        Some(d) => {
            d.link.damage_for_test(damage);
            true
        }
        None => false,
    }
}
