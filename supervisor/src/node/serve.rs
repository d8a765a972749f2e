//! Node mode: this program serving roots.

use std::net::SocketAddr;
use std::sync::Arc;

use ractor::ActorRef;
use ractor_cluster::{NetworkStream, NodeServerMessage};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use super::agent::{Agent, Shared};
use super::config::NodeConfig;
use super::event::{NodeEvent, NodeEvents};
use crate::remote::engine::Engine;
use crate::remote::wire::AgentMsg;
use crate::runtime;
use multiproc_core::{NodeError, Refusal};

/// A running node: its address, its events, and its end.
#[derive(Debug, Clone)]
pub struct Serving {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    addr: SocketAddr,
    events: broadcast::Sender<NodeEvent>,
    shared: Arc<Shared>,
    agent: ActorRef<AgentMsg>,
    accept: tokio::task::JoinHandle<()>,
}

/// Starts node mode: listens on the config's address, admits roots that present its
/// cookie and run the same build, and starts the registered entries they ask for.
/// Runs until [`Serving::shutdown`] or the end of this process.
///
/// # Errors
///
/// [`NodeError::Listen`] when the address cannot be bound, [`NodeError::Engine`]
/// when the cluster engine does not start.
pub async fn serve(config: NodeConfig) -> Result<Serving, NodeError> {
    runtime::ensure().map_err(|e| NodeError::Engine(e.to_string()))?;
    runtime::run(async move {
        let listen_error = |e: std::io::Error| NodeError::Listen {
            addr: config.listen,
            message: e.to_string(),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(listen_error)?;
        let addr = listener.local_addr().map_err(listen_error)?;
        let engine = Engine::start(config.name.clone(), config.cookie.clone()).await?;
        let (events, _) = broadcast::channel(1024);
        let shared = Shared::new(
            config.name.clone(),
            config.grace,
            Arc::clone(&engine),
            events.clone(),
        );
        super::relay::set_node(&shared);
        let (agent, _) = ractor::Actor::spawn(None, Agent, Arc::clone(&shared))
            .await
            .map_err(|e| NodeError::Engine(e.to_string()))?;
        let tls = config.tls.map(tokio_rustls::TlsAcceptor::from);
        let accept = tokio::spawn(accept(listener, engine.server.clone(), tls, events.clone()));
        tracing::info!(node = %config.name, %addr, "serving as a node");
        Ok(Serving {
            inner: Arc::new(Inner {
                name: config.name,
                addr,
                events,
                shared,
                agent,
                accept,
            }),
        })
    })
    .await
}

/// Hands each accepted connection to the engine, which runs its session (the
/// authentication first); with TLS, once its handshake has passed, in a task of its
/// own so that a slow peer holds up no other.
async fn accept(
    listener: TcpListener,
    server: ActorRef<NodeServerMessage>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    events: broadcast::Sender<NodeEvent>,
) {
    loop {
        let Ok((stream, peer_addr)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(local_addr) = stream.local_addr() else {
            continue;
        };
        let Some(tls) = tls.clone() else {
            let opened = NodeServerMessage::ConnectionOpenedExternal {
                stream: Box::new(crate::remote::stream::Buffered::new(stream, peer_addr)),
                is_server: true,
            };
            if server.cast(opened).is_err() {
                return;
            }
            continue;
        };
        let (server, events) = (server.clone(), events.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await;
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return refused_tls(&events, peer_addr, e.to_string()),
                Err(_) => {
                    return refused_tls(
                        &events,
                        peer_addr,
                        format!("no handshake within {TLS_HANDSHAKE_TIMEOUT:?}"),
                    );
                }
            };
            let _ = server.cast(NodeServerMessage::ConnectionOpened {
                stream: Box::new(NetworkStream::TlsServer {
                    peer_addr,
                    local_addr,
                    stream,
                }),
                is_server: true,
            });
        });
    }
}

/// How long a peer has to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn refused_tls(events: &broadcast::Sender<NodeEvent>, peer: SocketAddr, message: String) {
    tracing::warn!(%peer, "refused a peer: TLS: {message}");
    let _ = events.send(NodeEvent::Refused {
        peer: peer.to_string(),
        reason: Refusal::Tls { message },
    });
}

impl Serving {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The address the node listens on (with the port chosen, if 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The node's events from now on.
    pub fn events(&self) -> NodeEvents {
        NodeEvents(self.inner.events.subscribe())
    }

    /// Stops accepting roots, stops everything run here for them, and ends the
    /// node's sessions.
    pub async fn shutdown(self) {
        let inner = Arc::clone(&self.inner);
        runtime::run(async move {
            inner.accept.abort();
            inner.shared.release_all().await;
            inner.agent.stop(None);
            inner.shared.engine.server.stop(None);
        })
        .await;
    }
}
