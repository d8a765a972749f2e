//! A root's side: connecting to a node, and the [`Node`] handle that places processes
//! there.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use multiproc_core::codec;
use ractor::ActorRef;
use ractor::rpc::CallResult;
use ractor_cluster::NodeId;
use tokio::sync::{broadcast, watch};

use super::engine::{self, Engine, SessionEvent};
use super::gateway;
use super::wire::{self, AGENT_GROUP, AGENT_SCOPE, AgentMsg, NODE_PROTOCOL, Reply, Request};
use crate::runtime;
use multiproc_core::{NodeError, Refusal};

/// What must hear of a session's end: the relay of the calls the rest of the tree
/// sent through it (`route`), registered at link time so that the session, below
/// the relay, names nothing above it.
pub(crate) struct SessionEnd {
    /// Told the node's name, this process's token there, and why the session ended.
    pub(crate) ended: fn(&str, u64, &str),
}

#[linkme::distributed_slice]
pub(crate) static SESSION_ENDS: [SessionEnd];

fn session_ended(name: &str, token: u64, why: &str) {
    for end in SESSION_ENDS {
        (end.ended)(name, token, why);
    }
}

/// The nodes this process is connected to, by name: a connection lasts until
/// [`Node::disconnect`], as in Erlang, so handles and child specs that name a node
/// (an actor's address, `ChildSpec::on`) find it without holding it.
fn registry() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, Node>> {
    static NODES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Node>>> =
        std::sync::OnceLock::new();
    NODES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The node named `name` this process is connected to, if any (it may be down).
pub(crate) fn connected(name: &str) -> Option<Node> {
    registry().get(name).cloned()
}

/// The live nodes this process is connected to, by name.
pub(crate) fn live_nodes() -> Vec<Node> {
    let mut nodes: Vec<Node> = registry().values().filter(|n| n.is_up()).cloned().collect();
    nodes.sort_by(|a, b| a.name().cmp(b.name()));
    nodes
}

/// How a root connects to a node and watches it.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// How long the session may take to open, authenticate and answer the Hello.
    pub timeout: Duration,
    /// How often the root pings the node's agent.
    pub heartbeat: Duration,
    /// How long a ping may go unanswered before the node is declared down. The
    /// engine's session loss (a closed or reset TCP connection) is seen at once; this
    /// bound is for a node that is silent (partition, frozen host).
    pub heartbeat_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: Duration::from_secs(5),
            heartbeat: Duration::from_millis(200),
            heartbeat_timeout: Duration::from_millis(800),
        }
    }
}

/// A node this root is connected to: where [`Process::on`](crate::Process::on) places
/// processes. Cloning it is cheap; every clone is the same session, which lasts
/// until [`disconnect`](Node::disconnect) or the node is down (dropping the handles
/// does not close it).
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) name: String,
    addr: SocketAddr,
    pid: u32,
    pub(crate) token: u64,
    agent: ActorRef<AgentMsg>,
    /// `Some(why)` once the node is down; never goes back to `None`.
    pub(crate) down: watch::Receiver<Option<String>>,
    down_tx: watch::Sender<Option<String>>,
    session: ractor::ActorCell,
    _engine: Arc<Engine>,
}

impl Node {
    /// The node's announced name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The node program's process id, on its host.
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// Whether the node is still reachable as far as this root knows.
    pub fn is_up(&self) -> bool {
        self.inner.down.borrow().is_none()
    }

    /// Waits until the node is down; returns what showed it.
    pub async fn down(&self) -> NodeError {
        let mut down = self.inner.down.clone();
        let why = match down.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => "the root's watch ended".to_string(),
        };
        NodeError::NodeDown {
            node: self.inner.name.clone(),
            why,
        }
    }

    /// Closes this root's session with the node; the node stops what it runs for this
    /// root after its grace period.
    pub fn disconnect(&self) {
        let mut nodes = registry();
        if nodes
            .get(&self.inner.name)
            .is_some_and(|n| Arc::ptr_eq(&n.inner, &self.inner))
        {
            nodes.remove(&self.inner.name);
        }
        drop(nodes);
        self.inner.session.stop(Some("disconnect".to_string()));
    }

    pub(crate) fn down_error(&self) -> Option<NodeError> {
        self.inner
            .down
            .borrow()
            .clone()
            .map(|why| NodeError::NodeDown {
                node: self.inner.name.clone(),
                why,
            })
    }

    /// Sends `request` to the node's agent now, expecting no answer.
    pub(crate) fn cast(&self, request: &Request) -> Result<(), NodeError> {
        let bytes = codec::encode(request).map_err(|e| NodeError::Codec(e.to_string()))?;
        self.inner
            .agent
            .cast(AgentMsg::Cast(bytes))
            .map_err(|_| NodeError::NodeDown {
                node: self.inner.name.clone(),
                why: "session lost".into(),
            })
    }

    /// Sends `request` to the node's agent and waits for its answer, or for the node to
    /// go down. Runs on the process runtime.
    pub(crate) async fn call(&self, request: &Request) -> Result<Reply, NodeError> {
        call(
            &self.inner.agent,
            &self.inner.name,
            request,
            None,
            &self.inner.down_tx,
        )
        .await
    }
}

impl multiproc_core::NodeName for &Node {
    fn node_name(&self) -> String {
        self.name().to_string()
    }
}

async fn call(
    agent: &ActorRef<AgentMsg>,
    node: &str,
    request: &Request,
    timeout: Option<Duration>,
    down_tx: &watch::Sender<Option<String>>,
) -> Result<Reply, NodeError> {
    let mut down = down_tx.subscribe();
    let bytes = codec::encode(request).map_err(|e| NodeError::Codec(e.to_string()))?;
    let node_down = |why: String| NodeError::NodeDown {
        node: node.to_string(),
        why,
    };
    let answer = tokio::select! {
        r = agent.call(|port| AgentMsg::Call(bytes, port), timeout) => r,
        why = down.wait_for(Option::is_some) => {
            let why = why.map(|w| w.clone().unwrap_or_default()).unwrap_or_default();
            return Err(node_down(why));
        }
    };
    let why = match answer {
        Ok(CallResult::Success(bytes)) => {
            return codec::decode::<Reply>(&bytes).map_err(|e| NodeError::Codec(e.to_string()));
        }
        Ok(CallResult::Timeout) => "no answer in time".to_string(),
        Ok(CallResult::SenderError) | Err(_) => "session lost".to_string(),
    };
    // A call that lost its session proves the node down: say so before the session
    // events do, so no one sees an exit of `NodeDown` from a node still `is_up`.
    mark_down(down_tx, &why);
    Err(node_down(why))
}

fn mark_down(down: &watch::Sender<Option<String>>, why: &str) {
    down.send_if_modified(|d| {
        let first = d.is_none();
        if first {
            *d = Some(why.to_string());
        }
        first
    });
}

/// Connects to the node at `addr` (`host:port`) with `cookie`, with the default
/// [`ConnectOptions`].
///
/// # Errors
///
/// [`NodeError::BadAddress`], [`NodeError::Unreachable`], [`NodeError::Refused`]
/// (wrong cookie, different build), [`NodeError::ConnectTimeout`],
/// [`NodeError::Engine`].
pub async fn connect(addr: &str, cookie: &str) -> Result<Node, NodeError> {
    connect_with(addr, cookie, ConnectOptions::default()).await
}

/// As [`connect`], with `options`.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_with(
    addr: &str,
    cookie: &str,
    options: ConnectOptions,
) -> Result<Node, NodeError> {
    connect_over(addr, cookie, options, None).await
}

/// Connects to the node at `addr` over TLS: `config` says which certificates this
/// root trusts (and which it presents, if the node asks for one), `server_name` the
/// name the node's certificate must carry. The cookie is checked as with
/// [`connect`], inside the encrypted session.
///
/// ```no_run
/// use std::sync::Arc;
/// use multiproc_supervisor::node::{self, rustls};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut trusted = rustls::RootCertStore::empty();
/// # let ca_der: rustls::pki_types::CertificateDer<'static> = Vec::new().into();
/// trusted.add(ca_der)?; // the authority that issued the nodes' certificates
/// let config = rustls::ClientConfig::builder()
///     .with_root_certificates(trusted)
///     .with_no_client_auth();
/// let node = node::connect_tls("10.0.0.7:7070", "s3cret", Arc::new(config), "worker-a.example")
///     .await?;
/// assert!(node.is_up());
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`connect`]; [`NodeError::Refused`] with [`Refusal::Tls`] when the handshake
/// fails (a plain node, a certificate that does not verify);
/// [`NodeError::Config`] when `server_name` is not a DNS name or an IP address.
pub async fn connect_tls(
    addr: &str,
    cookie: &str,
    config: Arc<tokio_rustls::rustls::ClientConfig>,
    server_name: &str,
) -> Result<Node, NodeError> {
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| NodeError::Config {
            message: format!("`{server_name}` is not a TLS server name: {e}"),
        })?;
    let tls = tokio_rustls::TlsConnector::from(config);
    connect_over(addr, cookie, ConnectOptions::default(), Some((tls, name))).await
}

type Tls = (
    tokio_rustls::TlsConnector,
    tokio_rustls::rustls::pki_types::ServerName<'static>,
);

async fn connect_over(
    addr: &str,
    cookie: &str,
    options: ConnectOptions,
    tls: Option<Tls>,
) -> Result<Node, NodeError> {
    runtime::ensure().map_err(|e| NodeError::Engine(e.to_string()))?;
    let (addr_text, cookie) = (addr.to_string(), cookie.to_string());
    runtime::run(async move {
        let addr = tokio::net::lookup_host(&addr_text)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| NodeError::BadAddress {
                addr: addr_text.clone(),
                message: "does not resolve".into(),
            })?;
        // One session per node, as the engine keeps: a second connect to a node this
        // process is connected to is the same connection.
        let same = registry()
            .values()
            .find(|n| n.addr() == addr && n.is_up())
            .cloned();
        if let Some(node) = same {
            return Ok(node);
        }
        let engine = engine::for_cookie(&cookie).await?;
        // Before the session: its first exchange of groups names the gateway.
        gateway::ensure_gateway().await?;
        let events = engine.events.subscribe();
        let plain = tls.is_none();
        // On the engine's thread: the session's socket is in that runtime's epoll.
        let server = engine.server.clone();
        let opened = engine::on_engine(async move {
            match tls {
                None => {
                    let stream = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(ractor_cluster::ClientConnectErr::Socket)?;
                    let stream = Box::new(super::stream::Buffered::new(stream, addr));
                    ractor_cluster::client_connect_external(&server, stream).await
                }
                Some((connector, name)) => {
                    ractor_cluster::client_connect_enc(&server, addr, connector, name).await
                }
            }
        })
        .await?;
        opened.map_err(|e| match e {
            ractor_cluster::ClientConnectErr::Encryption(io) => NodeError::Refused {
                addr: addr_text.clone(),
                reason: Refusal::Tls {
                    message: io.to_string(),
                },
            },
            ractor_cluster::ClientConnectErr::Socket(io) => NodeError::Unreachable {
                addr: addr_text.clone(),
                message: io.to_string(),
            },
            other => NodeError::Unreachable {
                addr: addr_text.clone(),
                message: other.to_string(),
            },
        })?;
        let session = tokio::time::timeout(options.timeout, ready(events, addr))
            .await
            .map_err(|_| NodeError::ConnectTimeout {
                addr: addr_text.clone(),
                timeout: options.timeout,
            })?;
        let session = match session {
            Ok(session) => session,
            // A session that closes before it authenticates: the cookies differ, or
            // the node speaks TLS to a plain root; ask which.
            Err(Refusal::Cookie) if plain && speaks_tls(addr).await => {
                return Err(NodeError::Refused {
                    addr: addr_text,
                    reason: Refusal::Tls {
                        message: "the node requires TLS (connect with connect_tls)".into(),
                    },
                });
            }
            Err(reason) => {
                return Err(NodeError::Refused {
                    addr: addr_text,
                    reason,
                });
            }
        };
        let agent =
            ractor::pg::get_scoped_members(&AGENT_SCOPE.to_string(), &AGENT_GROUP.to_string())
                .into_iter()
                .find(|cell| cell.get_id().node() == session.node_id)
                .map(ActorRef::<AgentMsg>::from)
                .ok_or_else(|| NodeError::Refused {
                    addr: addr_text.clone(),
                    reason: Refusal::Protocol {
                        node: 0,
                        root: NODE_PROTOCOL,
                    },
                })?;
        let (down_tx, down_rx) = watch::channel(None);
        let me = crate::runtime::current::me();
        let hello = Request::Hello {
            protocol: NODE_PROTOCOL,
            build_id: wire::build_id(),
            root: engine.name.clone(),
            process: me.name.clone(),
            heartbeat_timeout_ms: options.heartbeat_timeout.as_millis() as u64,
        };
        let reply = call(&agent, &addr_text, &hello, Some(options.timeout), &down_tx).await?;
        let (name, token, pid) = match reply {
            Reply::Welcome { node, token, pid } => (node, token, pid),
            Reply::Refused(reason) => {
                session.actor.stop(Some("refused".to_string()));
                return Err(NodeError::Refused {
                    addr: addr_text,
                    reason,
                });
            }
            other => {
                return Err(NodeError::Remote {
                    node: addr_text,
                    message: format!("unexpected answer to Hello: {other:?}"),
                });
            }
        };
        tokio::spawn(watch_node(
            Arc::clone(&engine),
            session.node_id,
            session.actor.get_cell(),
            agent.clone(),
            name.clone(),
            token,
            options,
            down_tx.clone(),
        ));
        let node = Node {
            inner: Arc::new(Inner {
                name,
                addr,
                pid,
                token,
                agent,
                down: down_rx,
                down_tx,
                session: session.actor.get_cell(),
                _engine: engine,
            }),
        };
        registry().insert(node.inner.name.clone(), node.clone());
        Ok(node)
    })
    .await
}

/// Whether the server at `addr` answers a malformed TLS record with a TLS alert: a
/// node that serves TLS does, a plain node never sends those bytes.
async fn speaks_tls(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        // A handshake record with nothing in it.
        stream
            .write_all(&[0x16, 0x03, 0x01, 0x00, 0x00])
            .await
            .ok()?;
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.ok()?;
        // An alert record, TLS 1.x.
        Some(head == [0x15, 0x03])
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Waits for the session to `addr` to be ready; a session that closes before it
/// authenticated was refused its cookie.
async fn ready(
    mut events: broadcast::Receiver<SessionEvent>,
    addr: SocketAddr,
) -> Result<engine::Info, Refusal> {
    let ours = |s: &engine::Info| !s.is_server && s.peer_addr == addr.to_string();
    let mut authenticated = false;
    loop {
        match events.recv().await {
            Ok(SessionEvent::Authenticated(s)) if ours(&s) => authenticated = true,
            Ok(SessionEvent::Ready(s)) if ours(&s) => return Ok(s),
            Ok(SessionEvent::Disconnected(s)) if ours(&s) && !authenticated => {
                return Err(Refusal::Cookie);
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return Err(Refusal::Cookie),
        }
    }
}

/// Declares the node down when its session closes or its agent misses a heartbeat;
/// ends when every handle to the node is gone.
#[allow(clippy::too_many_arguments)]
async fn watch_node(
    engine: Arc<Engine>,
    node_id: NodeId,
    session: ractor::ActorCell,
    agent: ActorRef<AgentMsg>,
    name: String,
    token: u64,
    options: ConnectOptions,
    down: watch::Sender<Option<String>>,
) {
    let mut events = engine.events.subscribe();
    let mut tick = tokio::time::interval(options.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = loop {
        tokio::select! {
            _ = down.closed() => {
                // Every handle is gone (disconnected): what the rest of the tree
                // relayed through this session has no answer coming.
                session_ended(&name, token, "disconnected");
                return;
            }
            event = events.recv() => match event {
                Ok(SessionEvent::Disconnected(s)) if s.node_id == node_id => {
                    break "session lost".to_string();
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break "engine stopped".to_string(),
            },
            _ = tick.tick() => {
                let ping = Request::Ping { token };
                let pong = tokio::time::timeout(
                    options.heartbeat_timeout,
                    call(&agent, &name, &ping, None, &down),
                );
                match pong.await {
                    Ok(Ok(Reply::Pong)) => {}
                    Ok(Ok(other)) => break format!("heartbeat refused: {other:?}"),
                    Ok(Err(e)) => break format!("heartbeat failed: {e}"),
                    Err(_) => break format!("missed its heartbeat ({:?})", options.heartbeat_timeout),
                }
            }
        }
    };
    tracing::warn!(node = %name, "node down: {why}");
    mark_down(&down, &why);
    session_ended(&name, token, &why);
    // Fails the calls in flight on the session now, not when TCP gives up.
    session.stop(Some("node down".to_string()));
}
