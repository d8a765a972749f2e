//! Nodes: the same program on other hosts, started in node mode, on which a root
//! starts registered entries.
//!
//! The engine is `ractor_cluster`: its node servers own the TCP sessions, the cookie
//! authentication and the transport; multiproc's requests ride inside its remote
//! actor messages. A node runs one agent actor (`agent`), which a connected root
//! finds through `ractor`'s process groups once the session is ready. Nothing here
//! speaks a protocol of its own on a socket.
//!
//! - [`serve`] turns this program into a node ([`NodeConfig`]); [`Serving`] is its
//!   handle.
//! - [`connect`] reaches a node by address and returns a [`Node`];
//!   [`Process::on`](crate::Process::on) places a process there.
//! - [`NodeError`] is everything that can go wrong, on either side.
//!
//! Here is node mode, above the processes it starts; the root's side (connecting, the
//! `Node` handle, what is placed on a node) is `crate::remote`, below them, and
//! re-exported here.

mod agent;
mod config;
mod event;
mod relay;
mod serve;

pub use config::{DEFAULT_GRACE, NodeConfig};
pub use event::{NodeEvent, NodeEvents};
pub use multiproc_core::{NodeError, Refusal};
pub use serve::{Serving, serve};

pub use crate::remote::client::{ConnectOptions, Node, connect, connect_tls, connect_with};
/// The TLS library nodes use (rustls), for [`NodeConfig::tls`] and [`connect_tls`]:
/// its `ServerConfig` and `ClientConfig`, certificates and keys.
pub use tokio_rustls::rustls;

/// With this variable set to `host:port`, `init()` makes the program a node: it serves
/// there until SIGTERM or SIGINT, then exits; it never returns into `main`.
pub const ENV_NODE_LISTEN: &str = "MULTIPROC_NODE_LISTEN";
/// The node's name in node mode by the environment (default: the host's name).
pub const ENV_NODE_NAME: &str = "MULTIPROC_NODE_NAME";
/// The cookie in node mode by the environment; required with [`ENV_NODE_LISTEN`].
pub const ENV_NODE_COOKIE: &str = "MULTIPROC_NODE_COOKIE";

// `init()` runs it in a program started fresh, without the runtime naming this
// layer. linkme places the entry in a link section; that is all the unsafety there is.
#[allow(unsafe_code)]
#[linkme::distributed_slice(crate::runtime::bootstrap::FRESH_START)]
static NODE_MODE: fn() = serve_from_env;

/// Node mode by the environment, for `init()`: returns at once unless
/// [`ENV_NODE_LISTEN`] is set; otherwise serves, then exits (status 0 after a stop,
/// 2 when the settings are wrong or the node cannot start, with the error on stderr).
pub(crate) fn serve_from_env() {
    let Some(listen) = std::env::var_os(ENV_NODE_LISTEN) else {
        return;
    };
    let code = match serve_until_stopped(&listen.to_string_lossy()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multiproc node mode: {e}");
            2
        }
    };
    std::process::exit(code);
}

fn serve_until_stopped(listen: &str) -> Result<(), NodeError> {
    let addr = listen.parse().map_err(|e| NodeError::BadAddress {
        addr: listen.to_string(),
        message: format!("{ENV_NODE_LISTEN}: {e}"),
    })?;
    let cookie = std::env::var(ENV_NODE_COOKIE).map_err(|_| NodeError::Config {
        message: format!("{ENV_NODE_COOKIE} must be set with {ENV_NODE_LISTEN}"),
    })?;
    let name = std::env::var(ENV_NODE_NAME).unwrap_or_else(|_| crate::remote::engine::hostname());
    // SIGTERM and SIGINT end the node as they end a root's tree.
    crate::runtime::signals::install_root_handlers();
    let serving = crate::runtime::block_on(serve(NodeConfig::new(name, addr, cookie)))?;
    println!(
        "multiproc node {} listening on {}",
        serving.name(),
        serving.addr()
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());
    crate::runtime::block_on(crate::runtime::stop::wait_for_stop());
    crate::runtime::block_on(serving.shutdown());
    Ok(())
}
