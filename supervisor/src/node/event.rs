//! What happens on a node, in order, as its [`Serving`](super::Serving) reports it.

use multiproc_core::Refusal;
use tokio::sync::broadcast;

/// What happened on a node, in order; see [`Serving::events`](super::Serving::events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A root passed the checks (cookie, build, protocol).
    RootConnected {
        /// The root process's name.
        root: String,
    },
    /// A peer was turned away.
    Refused {
        /// The root's name, or the peer's address when it never said its name.
        peer: String,
        /// Why.
        reason: Refusal,
    },
    /// A root's session was lost; what it runs here stops after the grace period.
    RootLost {
        /// The root process's name.
        root: String,
        /// How many of its processes ran here.
        running: usize,
    },
    /// The grace period of a lost root ended: what it ran here was stopped.
    Released {
        /// The root process's name.
        root: String,
        /// How many processes were stopped.
        stopped: usize,
    },
}

impl std::fmt::Display for NodeEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeEvent::RootConnected { root } => write!(f, "root {root} connected"),
            NodeEvent::Refused { peer, reason } => write!(f, "refused {peer}: {reason}"),
            NodeEvent::RootLost { root, running } => {
                write!(f, "lost root {root} ({running} running)")
            }
            NodeEvent::Released { root, stopped } => {
                write!(f, "released root {root} ({stopped} stopped)")
            }
        }
    }
}

/// A node's events, from the moment [`Serving::events`](super::Serving::events) was called.
#[derive(Debug)]
pub struct NodeEvents(pub(super) broadcast::Receiver<NodeEvent>);

impl NodeEvents {
    /// The next event; `None` once the node has shut down.
    pub async fn next(&mut self) -> Option<NodeEvent> {
        loop {
            match self.0.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
