//! This process's `ractor_cluster` node servers and the session events they report.
//!
//! A root needs a node server of its own to open sessions (the engine's sessions are
//! symmetric): one per cookie, started on first use, listening on loopback only (its
//! own listener takes nothing from outside). A node has one, fed by the node's own
//! listener.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeId, NodeServer, NodeServerMessage};
use tokio::sync::broadcast;

use multiproc_core::NodeError;

/// A session's state change, as the engine reports it.
#[derive(Debug, Clone)]
pub(crate) enum SessionEvent {
    Authenticated(Info),
    Ready(Info),
    Disconnected(Info),
}

pub(crate) type Info = NodeServerSessionInformation;

/// A running node server and its events.
pub(crate) struct Engine {
    pub(crate) server: ActorRef<NodeServerMessage>,
    pub(crate) events: broadcast::Sender<SessionEvent>,
    pub(crate) name: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("name", &self.name).finish()
    }
}

struct Forward(broadcast::Sender<SessionEvent>);

impl NodeEventSubscription for Forward {
    fn node_session_opened(&self, _: Info) {}

    fn node_session_disconnected(&self, ses: Info) {
        let _ = self.0.send(SessionEvent::Disconnected(ses));
    }

    fn node_session_authenticated(&self, ses: Info) {
        let _ = self.0.send(SessionEvent::Authenticated(ses));
    }

    fn node_session_ready(&self, ses: Info) {
        let _ = self.0.send(SessionEvent::Ready(ses));
    }
}

impl Engine {
    /// Starts a node server named `name` that accepts `cookie`. Must run on the
    /// process runtime.
    pub(crate) async fn start(name: String, cookie: String) -> Result<Arc<Engine>, NodeError> {
        let server = NodeServer::new(
            0,
            cookie,
            name.clone(),
            hostname(),
            None,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(Ipv4Addr::LOCALHOST.into());
        let (server, _) = ractor::Actor::spawn(None, server, ())
            .await
            .map_err(|e| NodeError::Engine(e.to_string()))?;
        let (events, _) = broadcast::channel(1024);
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "multiproc".to_string(),
                subscription: Box::new(Forward(events.clone())),
            })
            .map_err(|e| NodeError::Engine(e.to_string()))?;
        Ok(Arc::new(Engine {
            server,
            events,
            name,
        }))
    }

    /// The sessions the server holds now.
    pub(crate) async fn sessions(&self) -> Result<HashMap<NodeId, Info>, NodeError> {
        match self
            .server
            .call(NodeServerMessage::GetSessions, Some(Duration::from_secs(5)))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(s)) => Ok(s),
            Ok(_) => Err(NodeError::Engine("the node server did not answer".into())),
            Err(e) => Err(NodeError::Engine(e.to_string())),
        }
    }
}

/// The root's node server for `cookie`, started on first use.
pub(crate) async fn for_cookie(cookie: &str) -> Result<Arc<Engine>, NodeError> {
    static ENGINES: OnceLock<tokio::sync::Mutex<HashMap<String, Arc<Engine>>>> = OnceLock::new();
    let mut engines = ENGINES.get_or_init(Default::default).lock().await;
    if let Some(e) = engines.get(cookie) {
        return Ok(Arc::clone(e));
    }
    let me = crate::runtime::current::me();
    // Unique among the roots a node may see (the engine adds `@host`): the name
    // identifies the root's session.
    let name = format!("{}/{}/{}", me.name, std::process::id(), engines.len());
    let engine = Engine::start(name, cookie.to_string()).await?;
    engines.insert(cookie.to_string(), Arc::clone(&engine));
    Ok(engine)
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}
