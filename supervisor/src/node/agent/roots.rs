//! The roots a node serves, lost and released: a root whose session closed, or that
//! fell silent, is lost; what the node ran for it is stopped once the grace period
//! has passed without the root coming back (no orphans across hosts).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use multiproc_core::wire::BodyKind;
use multiproc_core::{Refusal, codec};
use ractor_cluster::NodeId;
use tokio::sync::broadcast;

use super::{Root, Shared};
use crate::node::event::NodeEvent;
use crate::remote::engine::SessionEvent;

impl Shared {
    /// Follows the engine's sessions: a session that closes before authenticating is
    /// a refused cookie; a root's session that closes starts its grace period.
    pub(super) async fn follow_sessions(
        self: Arc<Self>,
        mut events: broadcast::Receiver<SessionEvent>,
    ) {
        let mut authenticated = HashSet::new();
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            match event {
                SessionEvent::Authenticated(s) => {
                    authenticated.insert(s.node_id);
                }
                SessionEvent::Ready(_) => {}
                SessionEvent::Disconnected(s) => {
                    if !authenticated.remove(&s.node_id) {
                        if s.is_server {
                            tracing::warn!(peer = %s.peer_addr, "refused a peer: wrong cookie");
                            let _ = self.events.send(NodeEvent::Refused {
                                peer: s.peer_addr.clone(),
                                reason: Refusal::Cookie,
                            });
                        }
                        continue;
                    }
                    self.session_lost(s.node_id);
                }
            }
        }
    }

    /// Counts the root `token` lost once it has not pinged for `silence`: a
    /// partition leaves its TCP session open here for as long as TCP keeps trying,
    /// and the node must not wait for that to stop what it runs for the root.
    pub(super) async fn watch_silence(self: Arc<Self>, token: u64, silence: Duration) {
        loop {
            let deadline = match self.roots().get(&token) {
                Some(root) if !root.lost => root.pinged + silence,
                _ => return,
            };
            if tokio::time::Instant::now() < deadline {
                tokio::time::sleep_until(deadline).await;
                continue;
            }
            let session = self.roots().get(&token).map(|r| r.session);
            tracing::warn!("a root sent no heartbeat for {silence:?}: counted lost");
            self.lose(|t, _| t == token);
            // Closes the stale session, so that a root that comes back opens a fresh
            // one.
            if let (Some(session), Ok(sessions)) = (session, self.engine.sessions().await)
                && let Some(info) = sessions.get(&session)
            {
                info.actor.stop(Some("root silent".to_string()));
            }
            return;
        }
    }

    fn session_lost(self: &Arc<Self>, session: NodeId) {
        self.lose(|_, root| root.session == session);
    }

    /// Counts the roots that `which` picks lost: what they run here stops after the
    /// grace period.
    fn lose(self: &Arc<Self>, which: impl Fn(u64, &Root) -> bool) {
        let mut failed = Vec::new();
        let mut roots = self.roots();
        for (&token, root) in roots.iter_mut().filter(|(t, r)| which(**t, r)) {
            if root.lost {
                continue;
            }
            root.lost = true;
            let _ = root.lost_tx.send(true);
            // Its relayed calls have no answer coming.
            self.relayed().retain(|&corr, t| {
                let keep = *t != token;
                if !keep {
                    failed.push(corr);
                }
                keep
            });
            tracing::warn!(
                root = %root.process,
                running = root.procs.len(),
                "lost a root's session; its processes stop after {:?}",
                self.grace
            );
            let _ = self.events.send(NodeEvent::RootLost {
                root: root.process.clone(),
                running: root.procs.len(),
            });
            let me = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(me.grace).await;
                me.release(token).await;
            });
        }
        drop(roots);
        // Outside the tables' locks: an answer routes.
        let e = multiproc_core::RemoteError::Node(Box::new(multiproc_core::NodeError::NodeDown {
            node: "the root".to_string(),
            why: "its session was lost".to_string(),
        }));
        let down = codec::encode(&e).unwrap_or_default();
        for corr in failed {
            crate::runtime::reply::deliver(corr, BodyKind::Fail, &down);
        }
    }

    /// Stops everything the root `token` still runs here and forgets the root.
    async fn release(&self, token: u64) {
        let Some(root) = self.roots().remove(&token) else {
            return;
        };
        let stopped = root.procs.len();
        for p in root.procs.values() {
            let _ = p.stop(Duration::from_secs(1)).await;
        }
        tracing::warn!(root = %root.process, engine = %root.engine_name, stopped, "released a lost root");
        let _ = self.events.send(NodeEvent::Released {
            root: root.process,
            stopped,
        });
    }

    /// Stops everything every root runs here (the node is shutting down).
    pub(crate) async fn release_all(&self) {
        let tokens: Vec<u64> = self.roots().keys().copied().collect();
        for token in tokens {
            self.release(token).await;
        }
    }
}
