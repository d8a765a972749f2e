//! A node's agent: the actor roots talk to. It starts the registered entries a root
//! asks for as this node's own children, and stops them once their root has been
//! unreachable longer than the grace period: no orphans across hosts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_core::wire::BodyKind;
use multiproc_core::{ExitReason, codec};
use ractor::{ActorProcessingErr, ActorRef};
use ractor_cluster::NodeId;
use tokio::sync::broadcast;

use super::event::NodeEvent;

mod roots;
use crate::process::Process;
use crate::remote::engine::Engine;
use crate::remote::wire::{
    self, AGENT_GROUP, AGENT_SCOPE, AgentMsg, Answer, NODE_PROTOCOL, Reply, Request, ToGateway,
};
use multiproc_core::Refusal;

/// What the agent shares with the tasks that answer its requests.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) grace: Duration,
    pub(crate) engine: Arc<Engine>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    roots: Mutex<HashMap<u64, Root>>,
    /// Processes being started, by identity, with their root's token.
    placing: Mutex<HashMap<multiproc_core::Identity, u64>>,
    /// Calls of placed processes to actors of their roots' trees, waiting for their
    /// answers: the root's token, by the relay's correlation number.
    relayed: Mutex<HashMap<u64, u64>>,
    next: AtomicU64,
}

struct Root {
    /// The root's engine name (its session's peer name).
    engine_name: String,
    /// The root's process name, for events and logs.
    process: String,
    session: NodeId,
    /// The root's gateway, where the answers of its actor calls go.
    gateway: ActorRef<AgentMsg>,
    lost: bool,
    /// Turns true when the root is lost: far operations relayed to it fail then.
    lost_tx: tokio::sync::watch::Sender<bool>,
    /// When the root last pinged.
    pinged: tokio::time::Instant,
    procs: HashMap<u64, Arc<Process>>,
}

impl Shared {
    pub(crate) fn new(
        name: String,
        grace: Duration,
        engine: Arc<Engine>,
        events: broadcast::Sender<NodeEvent>,
    ) -> Arc<Shared> {
        // Tokens only tell roots apart (the cookie is what admits them); starting from
        // the clock keeps a restarted node from honouring a token of its previous life.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Arc::new(Shared {
            name,
            grace,
            engine,
            events,
            roots: Mutex::new(HashMap::new()),
            placing: Mutex::new(HashMap::new()),
            relayed: Mutex::new(HashMap::new()),
            next: AtomicU64::new(seed | 1),
        })
    }

    fn placing(&self) -> std::sync::MutexGuard<'_, HashMap<multiproc_core::Identity, u64>> {
        self.placing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn roots(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Root>> {
        self.roots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn process(&self, token: u64, id: u64) -> Result<Arc<Process>, Reply> {
        let roots = self.roots();
        let root = roots
            .get(&token)
            .ok_or_else(|| Reply::Failed("unknown root (no Hello, or released)".into()))?;
        root.procs
            .get(&id)
            .cloned()
            .ok_or_else(|| Reply::Failed(format!("no process {id} here")))
    }

    /// The process `id` of the root `token`, and that root's gateway.
    fn actor(&self, token: u64, id: u64) -> Option<(multiproc_core::Identity, ActorRef<AgentMsg>)> {
        let roots = self.roots();
        let root = roots.get(&token)?;
        let p = root.procs.get(&id)?;
        Some((p.identity().clone(), root.gateway.clone()))
    }

    /// The root whose placed process `from` is (or descends from): its token, its
    /// session, and a watch that turns true when it is lost.
    pub(crate) fn root_of(
        &self,
        from: &multiproc_core::Identity,
    ) -> Option<(u64, NodeId, tokio::sync::watch::Receiver<bool>)> {
        let placing = self
            .placing()
            .iter()
            .find(|(id, _)| from.path().starts_with(id.path()))
            .map(|(_, &token)| token);
        let roots = self.roots();
        roots.iter().find_map(|(&token, root)| {
            (placing == Some(token)
                || root
                    .procs
                    .values()
                    .any(|p| from.path().starts_with(p.identity().path())))
            .then(|| (token, root.session, root.lost_tx.subscribe()))
        })
    }

    fn relayed(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.relayed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The gateway of the root `token`, unless that root is lost.
    pub(crate) fn gateway(&self, token: u64) -> Option<ActorRef<AgentMsg>> {
        let roots = self.roots();
        roots
            .get(&token)
            .filter(|r| !r.lost)
            .map(|r| r.gateway.clone())
    }

    /// Records the relayed call `corr` to the root `token`: it fails with `NodeDown`
    /// if that root is lost first. `false` if it is lost already.
    pub(crate) fn relaying(&self, corr: u64, token: u64) -> bool {
        let roots = self.roots();
        if roots.get(&token).is_none_or(|r| r.lost) {
            return false;
        }
        self.relayed().insert(corr, token);
        true
    }

    /// The relayed call `corr` was answered (or could not go); `false` if it was not
    /// waiting (failed already, or not a relayed call).
    pub(crate) fn answered(&self, corr: u64) -> bool {
        self.relayed().remove(&corr).is_some()
    }

    async fn answer(self: &Arc<Self>, request: Request) -> Reply {
        match request {
            Request::Hello {
                protocol,
                build_id,
                root,
                process,
                heartbeat_timeout_ms,
            } => {
                let silence = Duration::from_millis(heartbeat_timeout_ms.max(1)) * 2;
                self.hello(protocol, build_id, root, process, silence).await
            }
            Request::Ping { token } => match self.roots().get_mut(&token) {
                // A root this node gave up on is told so: both sides agree it is
                // gone, and it connects again.
                Some(root) if root.lost => Reply::Failed("this node lost the root".into()),
                Some(root) => {
                    root.pinged = tokio::time::Instant::now();
                    Reply::Pong
                }
                None => Reply::Failed("unknown root (no Hello, or released)".into()),
            },
            Request::Spawn {
                token,
                name,
                identity: in_root,
                start,
                daemon,
                settings,
            } => {
                if !self.roots().contains_key(&token) {
                    return Reply::Failed("unknown root (no Hello, or released)".into());
                }
                let id = self.next.fetch_add(1, Ordering::Relaxed);
                let mut p = placed(Process::from_start(&start), settings)
                    .named(name)
                    .daemon(daemon)
                    .supervised();
                let placed_as = wire::PlacedAs {
                    node: self.name.clone(),
                    id,
                    here: p.identity().clone(),
                    root: in_root,
                };
                p = p.env(wire::PLACED_ENV, placed_as.to_env());
                // It may use a far handle before `start` returns: its root is known
                // by its identity from now on.
                let identity = p.identity().clone();
                self.placing().insert(identity.clone(), token);
                let started = p.start().await;
                let placing = || self.placing().remove(&identity);
                if let Err(e) = started {
                    placing();
                    return Reply::Failed(e.to_string());
                }
                let pid = p.pid().unwrap_or(0);
                let p = Arc::new(p);
                let mut roots = self.roots();
                let reply = match roots.get_mut(&token) {
                    Some(root) => {
                        root.procs.insert(id, p);
                        Reply::Spawned { id, pid }
                    }
                    None => {
                        // Released while it started: it has no root left to serve.
                        drop(roots);
                        let _ = p.kill();
                        Reply::Failed("root released".into())
                    }
                };
                placing();
                reply
            }
            Request::Watch { token, id } => match self.process(token, id) {
                Ok(p) => {
                    let reason = p.join().await.unwrap_or(ExitReason::Killed);
                    if let Some(root) = self.roots().get_mut(&token) {
                        root.procs.remove(&id);
                    }
                    Reply::Exited(reason)
                }
                Err(reply) => reply,
            },
            Request::Signal { token, id, signal } => match self.process(token, id) {
                Ok(p) => {
                    let sent = if signal == libc::SIGKILL {
                        p.kill()
                    } else {
                        p.terminate()
                    };
                    match sent {
                        Ok(()) => Reply::Done,
                        Err(e) => Reply::Failed(e.to_string()),
                    }
                }
                Err(reply) => reply,
            },
            // Routed as they arrive, in `handle`.
            Request::Actor { .. } | Request::Answer(_) => {
                Reply::Failed("an actor message out of order".into())
            }
            Request::Stop {
                token,
                id,
                timeout_ms,
            } => match self.process(token, id) {
                Ok(p) => match p.stop(Duration::from_millis(timeout_ms)).await {
                    Ok(r) => Reply::Exited(r),
                    Err(e) => Reply::Failed(e.to_string()),
                },
                Err(reply) => reply,
            },
        }
    }

    async fn hello(
        self: &Arc<Self>,
        protocol: u32,
        build_id: u64,
        root: String,
        process: String,
        silence: Duration,
    ) -> Reply {
        let refusal = if protocol != NODE_PROTOCOL {
            Some(Refusal::Protocol {
                node: NODE_PROTOCOL,
                root: protocol,
            })
        } else if build_id != wire::build_id() {
            Some(Refusal::Build {
                node: wire::build_id(),
                root: build_id,
            })
        } else {
            None
        };
        if let Some(reason) = refusal {
            tracing::warn!(root = %process, "refused a root: {reason}");
            let _ = self.events.send(NodeEvent::Refused {
                peer: process,
                reason: reason.clone(),
            });
            return Reply::Refused(reason);
        }
        let session = match self.engine.sessions().await {
            // The engine announces a node's name as `name@host`. The newest session of
            // that name: an older one may linger from before a partition.
            Ok(sessions) => sessions
                .into_iter()
                .filter_map(|(id, s)| {
                    s.peer_name
                        .as_ref()
                        .and_then(|n| n.name.strip_prefix(root.as_str()))
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('@'))
                        .then_some(id)
                })
                .max(),
            Err(e) => return Reply::Failed(e.to_string()),
        };
        let Some(session) = session else {
            return Reply::Failed(format!("no session from {root}"));
        };
        // The root started it before its session: the engine announced it before the
        // session was ready, so before this Hello.
        let Some(gateway) = crate::remote::gateway::of_session(session) else {
            return Reply::Failed(format!("no gateway from {root}"));
        };
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        self.roots().insert(
            token,
            Root {
                engine_name: root,
                process: process.clone(),
                session,
                gateway,
                lost: false,
                lost_tx: tokio::sync::watch::channel(false).0,
                pinged: tokio::time::Instant::now(),
                procs: HashMap::new(),
            },
        );
        tokio::spawn(Arc::clone(self).watch_silence(token, silence));
        tracing::info!(root = %process, "a root connected");
        let _ = self.events.send(NodeEvent::RootConnected { root: process });
        Reply::Welcome {
            node: self.name.clone(),
            token,
            pid: std::process::id(),
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("name", &self.name).finish()
    }
}

/// The agent's actor. An actor's message is routed as it arrives, in place: a cast
/// and the call after it reach the actor in that order, as on one host, and a call's
/// answer goes back to the root from the task that reads it off the actor's link,
/// with no task of its own. Every other request is answered in its own task, so a
/// long `Watch` never holds up the next request.
pub(crate) struct Agent;

impl ractor::Actor for Agent {
    type Msg = AgentMsg;
    type State = Arc<Shared>;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<AgentMsg>,
        shared: Arc<Shared>,
    ) -> Result<Arc<Shared>, ActorProcessingErr> {
        tokio::spawn(Arc::clone(&shared).follow_sessions(shared.engine.events.subscribe()));
        ractor::pg::join_scoped(
            AGENT_SCOPE.to_string(),
            AGENT_GROUP.to_string(),
            vec![myself.get_cell()],
        );
        Ok(shared)
    }

    async fn handle(
        &self,
        _: ActorRef<AgentMsg>,
        message: AgentMsg,
        shared: &mut Arc<Shared>,
    ) -> Result<(), ActorProcessingErr> {
        let (bytes, reply) = match message {
            AgentMsg::Call(bytes, reply) => (bytes, Some(reply)),
            AgentMsg::Cast(bytes) => (bytes, None),
        };
        let request = codec::decode::<Request>(&bytes);
        if let Ok(Request::Actor {
            token,
            id,
            below,
            payload,
            corr,
        }) = &request
        {
            route_actor(shared, *token, *id, below, payload, *corr);
            return Ok(());
        }
        if let Ok(Request::Answer(a)) = &request {
            // Only into a relayed call's action: a root's answer has nothing to do
            // with this process's own calls.
            if !shared.answered(a.corr) {
                return Ok(());
            }
            let kind = if a.fail {
                BodyKind::Fail
            } else {
                BodyKind::Reply
            };
            crate::runtime::reply::deliver(a.corr, kind, &a.payload);
            return Ok(());
        }
        let Some(reply) = reply else {
            return Ok(());
        };
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            let answer = match request {
                Ok(request) => shared.answer(request).await,
                Err(e) => Reply::Failed(format!("undecodable request: {e}")),
            };
            if let Ok(bytes) = codec::encode(&answer) {
                let _ = reply.send(bytes);
            }
        });
        Ok(())
    }
}

/// Hands a root's message to the actor process `id`, or the one at `below` in its
/// subtree; for a call (`corr` not 0), its answer goes back to the root's gateway as
/// it comes off the actor's link.
fn route_actor(shared: &Shared, token: u64, id: u64, below: &[u32], payload: &[u8], corr: u64) {
    let Some((placed, gateway)) = shared.actor(token, id) else {
        // The node does not know the process (not started, or joined and gone): the
        // root names it in the error.
        if corr != 0
            && let Some(gateway) = shared.gateway(token)
            && let Ok(payload) = codec::encode(&multiproc_core::RemoteError::NoProcess(
                crate::runtime::current::me().identity.clone(),
            ))
        {
            answer_root(&gateway, corr, BodyKind::Fail, &payload);
        }
        return;
    };
    // Only below a process of this root: `below` cannot climb out of its subtree.
    let to = multiproc_core::Identity::from_path([placed.path(), below].concat());
    let then = (corr != 0).then(|| -> crate::runtime::reply::Then {
        Box::new(move |kind, payload| answer_root(&gateway, corr, kind, payload))
    });
    crate::runtime::router::raw_send(&to, payload, then);
}

/// Casts the answer to a root's call `corr` to its gateway.
fn answer_root(gateway: &ActorRef<AgentMsg>, corr: u64, kind: BodyKind, payload: &[u8]) {
    let answer = ToGateway::Answer(Answer {
        corr,
        fail: kind != BodyKind::Reply,
        payload: payload.to_vec(),
    });
    match codec::encode(&answer) {
        // A root whose session is gone has no one waiting.
        Ok(bytes) => {
            let _ = gateway.cast(AgentMsg::Cast(bytes));
        }
        Err(e) => tracing::warn!(error = %e, "an actor's answer did not encode"),
    }
}

/// A process started for a root, with the settings its root gave it.
fn placed(mut p: Process, settings: wire::Settings) -> Process {
    use std::os::unix::ffi::OsStringExt;
    p = p
        .limits(settings.limits)
        .start_method(settings.method)
        .handshake_timeout(settings.handshake_timeout);
    if let Some(interval) = settings.heartbeat {
        p = p.heartbeat(interval);
    }
    for (k, v) in settings.env {
        p = p.env(
            std::ffi::OsString::from_vec(k.into_vec()),
            std::ffi::OsString::from_vec(v.into_vec()),
        );
    }
    p
}
