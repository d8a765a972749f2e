//! The per-process runtime: what every process that uses multiproc runs, below the
//! services (processes and actors, supervision, pools, synchronization, shared
//! memory, managers), and knowing nothing of them.
//!
//! - [`bootstrap`]: `init()`, and a child's life from its handshake to its exit;
//!   [`spawn`] and [`forkserver`], the start methods; [`registry`], the entry points a
//!   child can run by name.
//! - [`error`]: what can go wrong starting, stopping or calling a process.
//! - [`current`]: who this process is; [`signals`] and [`stop`]: how it is asked to end.
//! - [`link`] and [`router`]: the control links to the parent and children, and the
//!   routing of envelopes along the tree; [`ring`]: the shared-memory rings a link
//!   carries its messages in; [`reply`]: calls waiting for their replies;
//!   [`mailbox`]: the hosted actor's mailbox.
//! - [`uplink`]: a child's link to its parent, served at once or once first needed.
//! - [`title`]: a child's name in `ps` and `top`.
//! - [`executor`]: the tokio runtime and the spawner thread; [`logging`]: forwarding
//!   a child's logs to its parent; [`shm`]: shared memory segments passed between
//!   processes.

pub(crate) mod bootstrap;
pub(crate) mod children;
pub(crate) mod current;
pub(crate) mod error;
mod executor;
pub(crate) mod exit;
#[cfg(feature = "observer")]
pub(crate) mod exits;
pub(crate) mod forkserver;
pub(crate) mod handoff;
pub(crate) mod heartbeat;
pub(crate) mod link;
pub(crate) mod logging;
pub(crate) mod mailbox;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
pub(crate) mod oom;
pub(crate) mod panic;
mod parked;
pub(crate) mod registry;
pub(crate) mod reply;
pub(crate) mod ring;
pub(crate) mod router;
pub(crate) mod shm;
pub(crate) mod signals;
pub(crate) mod spawn;
pub(crate) mod stop;
pub(crate) mod title;
pub(crate) mod uplink;

pub(crate) use executor::{
    block_on, cancel_deferred_start, defer_start, ensure, handle, on_spawner, on_spawner_thread,
    on_worker, run, spin, start_deferred,
};
pub(crate) use parked::spawn_parked;
