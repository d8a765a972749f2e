//! Who made a call that passed through this process: the key of the calls in flight
//! in a link, so that each fails when its link ends.

use multiproc_core::Identity;
use multiproc_core::wire::PathRef;

/// Levels of a caller's identity kept inline in the table of calls in flight.
const INLINE: usize = 8;

/// A caller's identity, inline when it is short (every tree in practice).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Caller {
    Inline(u8, [u32; INLINE]),
    Deep(Box<[u32]>),
}

impl Caller {
    pub(crate) fn new(path: PathRef<'_>) -> Caller {
        if path.len() <= INLINE {
            let mut words = [0; INLINE];
            for (w, n) in words.iter_mut().zip(path.iter()) {
                *w = n;
            }
            Caller::Inline(path.len() as u8, words)
        } else {
            Caller::Deep(path.iter().collect())
        }
    }

    pub(crate) fn identity(&self) -> Identity {
        match self {
            Caller::Inline(len, words) => Identity::from_path(words[..*len as usize].to_vec()),
            Caller::Deep(path) => Identity::from_path(path.to_vec()),
        }
    }
}
