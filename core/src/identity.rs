//! Process identities and names, following Python's `multiprocessing` exactly.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The identity of a process in its tree: its parent's identity plus one number.
///
/// The root process has the empty identity and is named `MainProcess`. The k-th
/// process object created by a process with identity `(a, b)` has identity `(a, b, k)`
/// and the default name `Process-a:b:k`. The identity is also the process's address:
/// messages are routed along it (see [`Identity::next_hop`]).
///
/// ```
/// use multiproc_core::Identity;
/// let root = Identity::root();
/// let child = root.child(1).child(2);
/// assert_eq!(child.default_name("Process"), "Process-1:2");
/// assert_eq!(root.name_or_main("Process"), "MainProcess");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Identity(Vec<u32>);

impl Identity {
    /// The identity of the root process (`MainProcess`).
    pub fn root() -> Self {
        Identity(Vec::new())
    }

    /// Builds an identity from its numbers, outermost first.
    pub fn from_path(path: Vec<u32>) -> Self {
        Identity(path)
    }

    /// The numbers of this identity, outermost first.
    pub fn path(&self) -> &[u32] {
        &self.0
    }

    /// Whether this is the root process.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The identity of this process's `n`-th child.
    pub fn child(&self, n: u32) -> Identity {
        let mut path = self.0.clone();
        path.push(n);
        Identity(path)
    }

    /// The identity of this process's parent, or `None` for the root.
    pub fn parent(&self) -> Option<Identity> {
        let (_, rest) = self.0.split_last()?;
        Some(Identity(rest.to_vec()))
    }

    /// The default name of a process with this identity: `<prefix>-N1:N2:…`.
    pub fn default_name(&self, prefix: &str) -> String {
        format!("{prefix}-{self}")
    }

    /// `MainProcess` for the root, the default name otherwise.
    pub fn name_or_main(&self, prefix: &str) -> String {
        if self.is_root() {
            "MainProcess".to_string()
        } else {
            self.default_name(prefix)
        }
    }

    /// Where a message for `to` goes next when it is in the process `self`.
    ///
    /// ```
    /// use multiproc_core::{Hop, Identity};
    /// let me = Identity::from_path(vec![1]);
    /// assert_eq!(me.next_hop(&Identity::from_path(vec![1])), Hop::Here);
    /// assert_eq!(me.next_hop(&Identity::from_path(vec![1, 3, 2])), Hop::Child(3));
    /// assert_eq!(me.next_hop(&Identity::from_path(vec![2])), Hop::Parent);
    /// assert_eq!(Identity::root().next_hop(&Identity::from_path(vec![2])), Hop::Child(2));
    /// ```
    pub fn next_hop(&self, to: &Identity) -> Hop {
        crate::wire::next_hop(&self.0, to.into())
    }
}

impl fmt::Display for Identity {
    /// Writes the numbers joined by `:`, as in Python's default names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

/// The next step of a message on its way along the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// The message is for this process.
    Here,
    /// The message goes down to the child with this number.
    Child(u32),
    /// The message goes up to the parent.
    Parent,
    /// There is no such address (only possible at the root: the address is not in any
    /// tree).
    Nowhere,
}

/// The per-process counter that numbers process objects: 1, 2, 3, …
///
/// It advances each time a process object is *created*, whether or not it is ever
/// started and whether or not it is given a custom name, exactly as Python's
/// `_process_counter`. Every process starts its own counter at 1.
///
/// ```
/// use multiproc_core::Counter;
/// let mut c = Counter::new();
/// assert_eq!((c.next(), c.next(), c.next()), (1, 2, 3));
/// ```
#[derive(Debug, Clone)]
pub struct Counter {
    next: u32,
}

impl Counter {
    /// A counter whose first number is 1.
    pub const fn new() -> Self {
        Counter { next: 1 }
    }

    /// Takes the next number.
    #[allow(clippy::should_implement_trait)] // never ends, so not an Iterator
    pub fn next(&mut self) -> u32 {
        let n = self.next;
        self.next += 1;
        n
    }
}

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_python() {
        let cases: &[(&[u32], &str)] = &[
            (&[1], "Process-1"),
            (&[1, 2], "Process-1:2"),
            (&[2, 1, 1], "Process-2:1:1"),
        ];
        for (path, name) in cases {
            assert_eq!(
                Identity::from_path(path.to_vec()).default_name("Process"),
                *name
            );
        }
        assert_eq!(
            Identity::from_path(vec![3]).default_name("PoolWorker"),
            "PoolWorker-3"
        );
    }

    #[test]
    fn routing_table() {
        let id = |p: &[u32]| Identity::from_path(p.to_vec());
        let cases: &[(&[u32], &[u32], Hop)] = &[
            (&[], &[], Hop::Here),
            (&[], &[4, 1], Hop::Child(4)),
            (&[1, 2], &[1, 2], Hop::Here),
            (&[1, 2], &[1, 2, 7], Hop::Child(7)),
            (&[1, 2], &[1], Hop::Parent),
            (&[1, 2], &[1, 3], Hop::Parent),
            (&[1, 2], &[], Hop::Parent),
            (&[1], &[2, 1], Hop::Parent),
        ];
        for (me, to, hop) in cases {
            assert_eq!(id(me).next_hop(&id(to)), *hop, "{me:?} -> {to:?}");
        }
    }

    #[test]
    fn parent_of_root_is_none() {
        assert_eq!(Identity::root().parent(), None);
        assert_eq!(
            Identity::from_path(vec![1, 2]).parent(),
            Some(Identity::from_path(vec![1]))
        );
    }
}
