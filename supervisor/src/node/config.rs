//! How a node is started.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a node keeps running what it started for a root it can no longer reach.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// A node's settings, for [`serve`](crate::node::serve).
///
/// ```
/// use multiproc_supervisor::node::NodeConfig;
/// let config = NodeConfig::new("worker-a", "127.0.0.1:7070".parse().unwrap(), "s3cret")
///     .grace(std::time::Duration::from_secs(2));
/// assert_eq!(config.name(), "worker-a");
/// ```
#[derive(Clone)]
pub struct NodeConfig {
    pub(crate) name: String,
    pub(crate) listen: SocketAddr,
    pub(crate) cookie: String,
    pub(crate) grace: Duration,
    pub(crate) tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cookie is a secret: never in logs.
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("grace", &self.grace)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// A node named `name` (announced to roots), listening on `listen` (port 0 picks
    /// a free one; [`Serving::addr`](crate::node::Serving::addr) tells which),
    /// accepting only peers that present `cookie`.
    pub fn new(name: impl Into<String>, listen: SocketAddr, cookie: impl Into<String>) -> Self {
        NodeConfig {
            name: name.into(),
            listen,
            cookie: cookie.into(),
            grace: DEFAULT_GRACE,
            tls: None,
        }
    }

    /// Serves over TLS with `config` (its certificate chain and key; with a client
    /// certificate verifier, roots must present a certificate too). Roots connect
    /// with [`connect_tls`](crate::node::connect_tls); a plain root is refused
    /// ([`Refusal::Tls`](crate::node::Refusal::Tls)). The cookie is still checked,
    /// inside the encrypted session.
    pub fn tls(mut self, config: Arc<tokio_rustls::rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// How long the node keeps what it runs for a root after losing that root's
    /// session, before stopping it (default [`DEFAULT_GRACE`]): no orphans across
    /// hosts.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}
