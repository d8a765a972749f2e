//! A manager's server process: it listens, accepts each client on a thread of its
//! own (the authkey handshake runs there, so a silent peer holds up nobody), and
//! hands the authenticated connection to [`Server::serve`]. Also the entries that
//! let a child process run it.

use std::sync::Arc;
use std::time::Duration;

use multiproc_transport::{
    Address, BlockingConnection, Error as TransportError, Listener, MAX_FRAME_LEN,
};

use super::Server;
use crate::manager::config::ManagerConfig;
use crate::runtime::registry::Entry;

/// Runs a manager's server in this process, until it is shut down or this process
/// is asked to stop (Python's `get_server().serve_forever()`). Registered, so that
/// it can be a supervised child: `function_child("manager", serve_manager, config)`.
///
/// # Errors
///
/// The address cannot be listened on; a types function is not registered.
pub fn serve_manager(config: ManagerConfig) -> Result<(), String> {
    run_server(config, None)
}

/// As [`serve_manager`], telling `ready` once it listens (or why it cannot).
fn serve_manager_ready(
    config: ManagerConfig,
    ready: multiproc_transport::Connection,
) -> Result<(), String> {
    run_server(config, Some(BlockingConnection::from(ready)))
}

fn run_server(config: ManagerConfig, ready: Option<BlockingConnection>) -> Result<(), String> {
    let started = config.registry().and_then(|registry| {
        let mut listener = Listener::bind(&config.address, Some(&config.authkey))
            .map_err(|e| format!("cannot listen on {}: {e}", config.address))?;
        // A manager link carries requests between multiproc processes: the control
        // links' limit, not a user connection's "no limit but memory".
        listener.set_max_frame_len(MAX_FRAME_LEN);
        Ok((registry, listener))
    });
    if let Some(mut ready) = ready {
        // The address it listens on: a TCP port 0 became a port.
        let said: Result<Address, String> = started
            .as_ref()
            .map(|(_, l)| l.address().clone())
            .map_err(String::clone);
        ready.send(&said).map_err(|e| e.to_string())?;
    }
    let (mut registry, mut listener) = started?;
    let objects = std::mem::take(&mut registry.objects);
    // A registered method's panic is its caller's error (`Failed`), not the
    // server's: it is not printed here.
    crate::runtime::panic::quiet_panics(true);
    let server = Arc::new(Server::new(registry));
    for (name, typeid, args) in objects {
        server
            .publish_new(&name, &typeid, &args)
            .map_err(|e| format!("cannot create `{name}`: {e}"))?;
    }
    // Asked to stop (the owner's tree is stopping): stop at once; every object
    // goes with the process, as Python's manager's do at shutdown.
    crate::runtime::handle().spawn(async {
        crate::runtime::stop::wait_for_stop().await;
        std::process::exit(0);
    });
    loop {
        let pending = match listener.accept_pending() {
            Ok(p) => p,
            // One client's trouble (it went away before we accepted, a signal, no
            // file descriptors left for now) is not the server's end.
            Err(TransportError::Io(e)) if accept_can_go_on(&e) => {
                tracing::debug!("a manager's accept failed, and it goes on: {e}");
                continue;
            }
            // The connection stays queued until a descriptor is free: wait a little
            // rather than spin on it.
            Err(TransportError::Exhausted(e)) => {
                tracing::debug!("a manager's accept failed, and it goes on: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(format!("the manager cannot accept: {e}")),
        };
        let server = Arc::clone(&server);
        let spawned = std::thread::Builder::new()
            .name("multiproc-manager".into())
            .spawn(move || match pending.authenticate() {
                Ok(conn) => server.serve(conn),
                Err(e) => tracing::debug!("a manager client failed the handshake: {e}"),
            });
        if let Err(e) = spawned {
            // No thread for this client now: it sees its connection closed.
            match multiproc_transport::exhausted(&e, multiproc_transport::Resource::Task) {
                Some(x) => tracing::warn!("a manager cannot start a thread for a client: {x}"),
                None => tracing::warn!("a manager cannot start a thread for a client: {e}"),
            }
        }
    }
}

/// Whether an `accept` error concerns one client, not the listening socket.
fn accept_can_go_on(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EAGAIN
                | libc::ENOBUFS
                | libc::EPROTO
                | libc::EPERM
        )
    )
}

pub(crate) const SERVE_ENTRY: &str = "multiproc_supervisor::manager::serve_manager";
pub(crate) const SERVE_READY_ENTRY: &str = "multiproc::manager::serve_ready";

// linkme places the entries in a link section; that is all the unsafety there is.
#[allow(unsafe_code)]
#[linkme::distributed_slice(crate::runtime::registry::ENTRIES)]
static SERVE: Entry = Entry {
    name: SERVE_ENTRY,
    kind: multiproc_core::EntryKind::Function,
    type_id: || crate::runtime::registry::type_id_of(&serve_manager),
    run: |args| crate::runtime::target::run_function(serve_manager, args),
    task: crate::pool::not_a_task,
    slab: crate::pool::not_a_task,
    pod: crate::runtime::registry::no_pod,
};

#[allow(unsafe_code)]
#[linkme::distributed_slice(crate::runtime::registry::ENTRIES)]
static SERVE_READY: Entry = Entry {
    name: SERVE_READY_ENTRY,
    kind: multiproc_core::EntryKind::Function,
    type_id: || crate::runtime::registry::type_id_of(&serve_manager_ready),
    run: |args| crate::runtime::target::run_function(serve_manager_ready, args),
    task: crate::pool::not_a_task,
    slab: crate::pool::not_a_task,
    pod: crate::runtime::registry::no_pod,
};
