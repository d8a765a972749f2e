//! The mailbox of the actor a process hosts: calls and casts in arrival order, each
//! in a buffer that goes back to the mailbox once handled, so a message allocates
//! nothing once the mailbox is warm.
//!
//! It exists from the moment the process knows it will host an actor, so messages
//! that arrive while the actor starts wait in it, in order.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};

use multiproc_core::wire::{BodyKind, EnvelopeRef};
use tokio::sync::Notify;

use crate::runtime::ring::ActorFigures;

/// Buffers kept for reuse at most, so a burst does not keep its memory for ever.
const SPARE_MAX: usize = 1024;

/// Where this process, a child, shows its parent its actor's figures.
static FIGURES: OnceLock<ActorFigures> = OnceLock::new();

/// Shows this process's actor figures to its parent through `figures` (set once, by
/// the child's bootstrap).
pub(crate) fn show_figures(figures: ActorFigures) {
    let _ = FIGURES.set(figures);
}

/// Counts a message the actor's handler has returned from: before its reply goes,
/// so that a caller who has the reply sees it counted.
pub(crate) fn handled_one() {
    if let Some(f) = FIGURES.get() {
        f.handled_one();
    }
}

fn depth(depth: usize) {
    if let Some(f) = FIGURES.get() {
        f.set_depth(depth);
    }
    #[cfg(feature = "metrics")]
    crate::runtime::metrics::mailbox_depth(depth);
}

/// One message for the actor.
#[derive(Debug, Default)]
pub(crate) struct Mail {
    /// `Call` or `Cast`.
    pub(crate) kind: Option<BodyKind>,
    /// The sender's identity, where the answer goes.
    pub(crate) from: Vec<u32>,
    pub(crate) corr: u64,
    /// The message, still encoded.
    pub(crate) payload: Vec<u8>,
    /// The caller's span, for a call made in one.
    pub(crate) span: Option<u64>,
}

/// An actor's mailbox.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    queue: Mutex<Queue>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    mails: VecDeque<Mail>,
    spare: Vec<Mail>,
    closed: bool,
}

impl Mailbox {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a call or cast in the mailbox; `false` when it is closed.
    pub(crate) fn push(&self, env: &EnvelopeRef<'_>) -> bool {
        {
            let mut q = self.queue();
            if q.closed {
                return false;
            }
            let mut mail = q.spare.pop().unwrap_or_default();
            mail.kind = Some(env.kind);
            mail.from.clear();
            mail.from.extend(env.from.iter());
            mail.corr = env.corr;
            mail.span = env.span;
            mail.payload.clear();
            mail.payload.extend_from_slice(env.payload);
            q.mails.push_back(mail);
            depth(q.mails.len());
        }
        // A stored permit when the actor is busy: it cannot miss this one.
        self.arrived.notify_one();
        true
    }

    /// The next message; `None` once the mailbox is closed.
    pub(crate) async fn recv(&self) -> Option<Mail> {
        loop {
            {
                let mut q = self.queue();
                if let Some(mail) = q.mails.pop_front() {
                    depth(q.mails.len());
                    return Some(mail);
                }
                if q.closed {
                    return None;
                }
            }
            self.arrived.notified().await;
        }
    }

    /// Gives a handled message's buffers back.
    pub(crate) fn recycle(&self, mut mail: Mail) {
        let mut q = self.queue();
        if q.spare.len() < SPARE_MAX && mail.payload.capacity() <= 64 << 10 {
            mail.kind = None;
            q.spare.push(mail);
        }
    }

    /// Closes the mailbox: later messages are refused. Returns those that waited.
    pub(crate) fn close(&self) -> Vec<Mail> {
        let mut q = self.queue();
        q.closed = true;
        q.spare.clear();
        let waiting = q.mails.drain(..).collect();
        drop(q);
        self.arrived.notify_one();
        waiting
    }
}
