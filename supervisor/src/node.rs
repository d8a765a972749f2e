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

pub(crate) mod agent;
mod client;
mod config;
mod engine;
pub(crate) mod placed;
pub(crate) mod relay;
pub(crate) mod remote;
mod serve;
mod stream;
mod wire;

pub(crate) use client::connected;
pub use client::{ConnectOptions, Node, connect, connect_tls, connect_with};
pub use config::{DEFAULT_GRACE, NodeConfig};
pub use multiproc_core::{NodeError, Refusal};
pub use serve::{NodeEvent, NodeEvents, Serving, serve};
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
    let name = std::env::var(ENV_NODE_NAME).unwrap_or_else(|_| engine::hostname());
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

/// Where a supervised child with `placement` starts: its node at the first start;
/// at a restart, by its restart placement (`last` is where it ran).
pub(crate) fn place(
    placement: &multiproc_core::Placement,
    last: Option<&str>,
    restart: bool,
) -> Result<Node, NodeError> {
    use multiproc_core::RestartPlacement;
    let up = |name: &str| client::connected(name).filter(Node::is_up);
    let down = |name: &str| NodeError::NodeDown {
        node: name.to_string(),
        why: match client::connected(name) {
            Some(node) => node
                .down_error()
                .map_or_else(String::new, |e| e.to_string()),
            None => "not connected from this process".to_string(),
        },
    };
    if !restart || placement.restart == RestartPlacement::SameNode {
        return up(&placement.node).ok_or_else(|| down(&placement.node));
    }
    let last = last.unwrap_or(&placement.node);
    up(last)
        .or_else(|| client::live_nodes().into_iter().next())
        .ok_or_else(|| NodeError::NodeDown {
            node: last.to_string(),
            why: "no live node to restart on".to_string(),
        })
}

impl multiproc_core::NodeName for &Node {
    fn node_name(&self) -> String {
        self.name().to_string()
    }
}

/// The build id a node announces and a root presents: the executable and its set of
/// registered entries, so both sides run the same entries under the same names.
pub(crate) fn build_id() -> u64 {
    agent::claimed_build_id().unwrap_or_else(crate::runtime::registry::build_id)
}
