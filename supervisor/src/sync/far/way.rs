//! Which way the encoding on this thread goes: to a node, from a node to its root's
//! tree, or the decoding of what came from that tree. Handles of every kind (an
//! actor's, a queue's, a lock's) read it to encode themselves for where they land;
//! it lives here, below the processes and actors that set it, so that a primitive's
//! handle can read it too.

use std::cell::Cell;

/// Where a message from a node to its root's tree ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Onward {
    /// In a process of the root's tree, which decodes it.
    Tree,
    /// In a process that tree placed on a node: the root passes it on undecoded.
    Placed,
}

thread_local! {
    /// This thread encodes a message for a node.
    static FOR_NODE: Cell<bool> = const { Cell::new(false) };
    /// This thread encodes a message from a node to its root's tree, going there.
    static TO_ROOT: Cell<Option<Onward>> = const { Cell::new(None) };
    /// This thread decodes a reply or a queue item that came from its root's tree.
    static FROM_ROOT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with `cell` set to `value`, then as it was, even if `f` is nested.
fn with<T: Copy + 'static, R>(
    cell: &'static std::thread::LocalKey<Cell<T>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    let outer = cell.replace(value);
    let out = f();
    cell.set(outer);
    out
}

/// Runs `f`, an encoding of a reply or queue item that goes from this node to its
/// root's tree, where any process may decode it.
pub(crate) fn to_root<R>(f: impl FnOnce() -> R) -> R {
    toward(Onward::Tree, f)
}

/// Runs `f`, an encoding of a message from this node to its root's tree, to end up
/// as `onward` says.
pub(crate) fn toward<R>(onward: Onward, f: impl FnOnce() -> R) -> R {
    with(&TO_ROOT, Some(onward), f)
}

/// Runs `f`, a decoding of a reply or queue item that came from the root's tree to
/// this node, encoded as for a process of that tree.
pub(crate) fn from_root<R>(f: impl FnOnce() -> R) -> R {
    with(&FROM_ROOT, true, f)
}

/// Runs `f`, an encoding of a message that goes to a node.
pub(crate) fn for_node<R>(f: impl FnOnce() -> R) -> R {
    with(&FOR_NODE, true, f)
}

/// Whether this thread encodes a message for a node now.
pub(crate) fn encoding_for_node() -> bool {
    FOR_NODE.get()
}

/// Where the message this thread encodes from a node to its root's tree ends up, if
/// it encodes one.
pub(crate) fn going_to_root() -> Option<Onward> {
    TO_ROOT.get()
}

/// Whether this thread decodes what came from its root's tree.
pub(crate) fn coming_from_root() -> bool {
    FROM_ROOT.get()
}

/// Whether this thread encodes a message from this node that the root's tree decodes:
/// a far handle of that tree in it goes home.
pub(crate) fn going_home() -> bool {
    TO_ROOT.get() == Some(Onward::Tree) && !FOR_NODE.get() && !super::encoding_far()
}
