//! This process's `ractor_cluster` node servers and the session events they report.
//!
//! A root needs a node server of its own to open sessions (the engine's sessions are
//! symmetric): one per cookie, started on first use, listening on loopback only (its
//! own listener takes nothing from outside). A node has one, fed by the node's own
//! listener.
//!
//! A root's node servers, their sessions and the engine's actors for the nodes run
//! on one thread of their own, not on the process runtime's workers: a message
//! crosses four of the engine's tasks each way, and on two workers each hop may wake
//! the other worker to steal it (three to five thread wake-ups a call, measured). On
//! one thread the hops are plain polls: a call wakes that thread once to send and once
//! for the answer. A node's server stays on its process runtime, beside the links to
//! the children it relays to.

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

/// The name of the thread that runs a root's node servers.
const ENGINE_THREAD: &str = "multiproc-node";

/// The runtime of a root's node servers, on a thread of its own, started on first
/// use and kept for the life of the process (as the node servers are).
fn engine_runtime() -> Result<&'static tokio::runtime::Handle, NodeError> {
    static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(handle) = RUNTIME.get() {
        return Ok(handle);
    }
    let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = RUNTIME.get() {
        return Ok(handle);
    }
    let failed =
        |e: std::io::Error| NodeError::Engine(format!("cannot start {ENGINE_THREAD}: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name(ENGINE_THREAD.into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))
        .map_err(failed)?;
    Ok(RUNTIME.get_or_init(|| handle))
}

/// Runs `fut` on the runtime of the root's node servers and waits for it.
pub(crate) async fn on_engine<F>(fut: F) -> Result<F::Output, NodeError>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    engine_runtime()?
        .spawn(fut)
        .await
        .map_err(|e| NodeError::Engine(e.to_string()))
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
    let engine = on_engine(Engine::start(name, cookie.to_string())).await??;
    engines.insert(cookie.to_string(), Arc::clone(&engine));
    Ok(engine)
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}
