//! What the table of this process's children shows: Python's `active_children`, and
//! what a snapshot of the tree sees.

use std::sync::atomic::Ordering;

use multiproc_core::{EntryKind, Identity};

use super::children;

/// A live child of this process, as listed by [`active_children`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// Its name.
    pub name: String,
    /// Its identity.
    pub identity: Identity,
    /// Its OS process id.
    pub pid: u32,
    /// Whether it is a daemon.
    pub daemon: bool,
}

/// The children of this process that are still running.
///
/// ```
/// assert!(multiproc_supervisor::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<ChildInfo> {
    children()
        .iter()
        .filter(|c| !c.has_exited())
        .map(|c| ChildInfo {
            name: c.name.clone(),
            identity: c.identity.clone(),
            pid: c.pid,
            daemon: c.daemon,
        })
        .collect()
}

/// A live child as a snapshot of the tree sees it.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub(crate) name: String,
    pub(crate) identity: Identity,
    pub(crate) pid: u32,
    pub(crate) kind: EntryKind,
    /// Asked to stop, and not yet gone.
    pub(crate) stopping: bool,
    /// For an actor: messages waiting in its mailbox, and messages it has handled.
    pub(crate) actor: Option<(u64, u64)>,
}

/// The children of this process that are still running, with what a snapshot shows.
pub(crate) fn observed() -> Vec<Observed> {
    children()
        .iter()
        .filter(|c| !c.has_exited())
        .map(|c| Observed {
            name: c.name.clone(),
            identity: c.identity.clone(),
            pid: c.pid,
            kind: c.kind,
            stopping: c.stop_requested.load(Ordering::Relaxed),
            actor: (c.kind == EntryKind::Actor).then(|| c.figures.read()),
        })
        .collect()
}
