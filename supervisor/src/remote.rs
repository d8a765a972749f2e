//! Other hosts, as this process reaches them: its sessions with nodes (the [`Node`]
//! handle, `connect`), the engine and the wire that a root and a node share, the
//! processes and actors placed on a node, and the root's gateway through which a
//! node reaches back.
//!
//! Node mode, the other end (a program serving roots), is `crate::node`, above the
//! processes it starts there; this layer is below them, since a [`Process`] can be
//! placed on a node and an [`ActorRef`] can name an actor there.
//!
//! [`Node`]: client::Node
//! [`Process`]: crate::process::Process
//! [`ActorRef`]: crate::process::actor::ActorRef

pub(crate) mod client;
pub(crate) mod engine;
pub(crate) mod gateway;
pub(crate) mod place;
pub(crate) mod placed;
pub(crate) mod route;
pub(crate) mod stream;
pub(crate) mod wire;
