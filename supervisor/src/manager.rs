//! Managers: a server process holding shared objects, used through typed proxies
//! from any process, of this tree or of another one (Python's `Manager()`,
//! `BaseManager`, `BaseProxy`).
//!
//! The server listens on an address with an authkey: a fresh abstract Unix socket
//! and a random key for [`Manager::start`], or the address and key you give (TCP
//! for another machine's trees). Each connection is authenticated with CPython's
//! handshake, then carries rmp-serde requests that name a *registered* type or
//! method; nothing on the wire is code. A proxy is a plain serde value (the
//! address, the key, the object's number): pass it to a child, store it in another
//! managed object, send it anywhere. Each thread keeps one connection per manager.
//!
//! Objects are reference-counted, as Python's (`incref`/`decref`), per process: a
//! created or decoded proxy holds one reference (its clones share it), given back
//! when the last clone is dropped, and all of a process's references go when it
//! dies. Encoding a proxy lends its object one reference that the decoding side
//! takes over, so a proxy in flight keeps its object alive. Objects published under
//! a name live as long as the server. `book/src/sharing.md` has the protocol and
//! its failure cases.
//!
//! When the server is gone, every proxy call fails with [`ManagerError::Gone`],
//! including one that was waiting. When a manager run by a supervisor comes back
//! at the same address, proxies reconnect on their next call; those found by
//! name ([`Manager::lookup`]) find their object again if the new server publishes
//! it, the others fail with [`ManagerError::Restarted`].
//!
//! Every blocking method has an `_async` twin for async code
//! ([`Manager::start_async`], [`DictProxy::get_async`], …), on the same proxies:
//! each async call has a connection of its own while it runs, and a future dropped
//! before its answer takes nothing at the server.

mod async_handle;
mod async_link;
mod builder;
pub(crate) use builder::servers_among;
mod channel;
mod client;
mod config;
mod error;
mod handle;
mod proxies;
mod proxy;
mod refs;
mod server;
mod type_registry;
mod wire;

pub use builder::ManagerBuilder;
pub use config::ManagerConfig;
pub use error::ManagerError;
pub use handle::Manager;
pub use proxies::{
    DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy, QueueProxy, ValueProxy,
};
pub use proxy::{Proxy, TypedProxy};
pub(crate) use server::fuzz_request;
pub use server::serve_manager;
pub use type_registry::{MANAGER_TYPES, Registry, TypeRegistration, TypesEntry};
