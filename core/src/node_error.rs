//! What can go wrong between a root and a node, on either side: vocabulary, here so
//! that the runtime's errors can carry it without knowing the node layer.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Why a node turned a root away (the root sees it in [`NodeError::Refused`], the node
/// in `multiproc::node::NodeEvent::Refused`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The session closed before it authenticated: the cookies differ (or the peer is
    /// not a node of this cluster at all).
    #[error("the session did not authenticate: the cookies differ")]
    Cookie,
    /// The two programs are different builds, so their registered entries may differ.
    #[error("different builds: the node runs build {node:#018x}, the root {root:#018x}")]
    Build {
        /// The node's build id.
        node: u64,
        /// The root's build id.
        root: u64,
    },
    /// The TLS handshake failed: one side speaks TLS and the other does not, or a
    /// certificate did not verify (its issuer, its name, its dates).
    #[error("TLS: {message}")]
    Tls {
        /// What failed, as rustls says it.
        message: String,
    },
    /// The two sides speak different versions of multiproc's node requests.
    #[error("different protocol versions: the node speaks {node}, the root {root}")]
    Protocol {
        /// The node's version.
        node: u32,
        /// The root's version.
        root: u32,
    },
}

/// Everything that can go wrong with a node. Plain data: a call relayed for another
/// process carries it back there (inside `RemoteError::Node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node's address could not be reached (nothing listens there, no route).
    #[error("node at {addr} is unreachable: {message}")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// The system's reason.
        message: String,
    },
    /// The address given does not name a socket address.
    #[error("`{addr}` is not a node address (host:port): {message}")]
    BadAddress {
        /// What was given.
        addr: String,
        /// Why it does not resolve.
        message: String,
    },
    /// The node refused this root.
    #[error("node at {addr} refused the connection: {reason}")]
    Refused {
        /// The node's address.
        addr: String,
        /// Why.
        reason: Refusal,
    },
    /// The session did not become ready in time.
    #[error("node at {addr} did not complete the session within {timeout:?}")]
    ConnectTimeout {
        /// The node's address.
        addr: String,
        /// The time allowed.
        timeout: std::time::Duration,
    },
    /// The node died or became unreachable: its session was lost or it missed its
    /// heartbeats. Calls in flight fail with this.
    #[error("node {node} is down ({why})")]
    NodeDown {
        /// The node's name.
        node: String,
        /// What showed it.
        why: String,
    },
    /// The node could not do what was asked (an unknown entry, a spawn that failed on
    /// that host); `message` is its error.
    #[error("node {node} failed: {message}")]
    Remote {
        /// The node's name.
        node: String,
        /// The node's error, formatted there.
        message: String,
    },
    /// Something that cannot cross hosts was asked to (a `Connection` argument, an fd,
    /// a one-machine object).
    #[error("{what} cannot cross to node {node}: it is a one-machine object")]
    NotAcrossNodes {
        /// What.
        what: String,
        /// The node.
        node: String,
    },
    /// A node's settings are incomplete or wrong.
    #[error("node settings: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// A node could not listen on its address.
    #[error("cannot listen on {addr}: {message}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The system's reason.
        message: String,
    },
    /// The cluster engine (`ractor_cluster`) failed to start or answer.
    #[error("the cluster engine failed: {0}")]
    Engine(String),
    /// A request or its answer could not be encoded or decoded.
    #[error("a node message did not encode or decode: {0}")]
    Codec(String),
}
