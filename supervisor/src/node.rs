//! Nodes: the same program on other hosts, started in node mode, on which a root
//! starts registered entries.
//!
//! The engine is `ractor_cluster`: its node servers own the TCP sessions, the cookie
//! authentication and the transport; multiproc's requests ride inside its remote
//! actor messages. A node runs one agent actor ([`agent`]), which a connected root
//! finds through `ractor`'s process groups once the session is ready. Nothing here
//! speaks a protocol of its own on a socket.
//!
//! - [`serve`] turns this program into a node ([`NodeConfig`]); [`Serving`] is its
//!   handle.
//! - [`connect`] reaches a node by address and returns a [`Node`];
//!   [`Process::on`](crate::Process::on) places a process there.
//! - [`NodeError`] is everything that can go wrong, on either side.

pub(crate) mod agent;
mod client;
mod config;
mod engine;
mod error;
pub(crate) mod remote;
mod serve;
mod wire;

pub use client::{ConnectOptions, Node, connect, connect_with};
pub use config::{DEFAULT_GRACE, NodeConfig};
pub use error::{NodeError, Refusal};
pub use serve::{NodeEvent, NodeEvents, Serving, serve};

/// The build id a node announces and a root presents: the executable and its set of
/// registered entries, so both sides run the same entries under the same names.
pub(crate) fn build_id() -> u64 {
    agent::claimed_build_id().unwrap_or_else(crate::runtime::registry::build_id)
}
