//! [`ManagerBuilder`]: how a manager's server is started as a child process, and
//! [`Manager::start`], which starts one with a fresh address and key.

use multiproc_transport::{Address, BlockingConnection, Connection, Error as TransportError};
use serde_bytes::ByteBuf;

use super::async_link::AsyncLink;
use super::client::ServerAddr;
use super::config::ManagerConfig;
use super::error::ManagerError;
use super::handle::Manager;
use super::server::SERVE_READY_ENTRY;
use super::type_registry::Registry;
use super::wire::Request;

/// How to start a manager.
#[derive(Debug, Clone)]
pub struct ManagerBuilder {
    config: ManagerConfig,
}

impl Manager {
    /// Starts a manager's server as a child process, on a fresh abstract Unix
    /// socket with a random authkey (Python's `Manager()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`].
    pub fn start() -> Result<Manager, ManagerError> {
        Manager::builder().start()
    }

    /// A builder, for an address, a key and registered types.
    pub fn builder() -> ManagerBuilder {
        let mut key = [0u8; 32];
        let _ = rustix::rand::getrandom(&mut key, rustix::rand::GetRandomFlags::empty());
        ManagerBuilder {
            config: ManagerConfig::new(Address::unique_abstract(), &key),
        }
    }
}

impl ManagerBuilder {
    /// Listens on `address` (a TCP address serves other machines' trees).
    pub fn address(mut self, address: Address) -> Self {
        self.config.address = address;
        self
    }

    /// Uses `authkey` (Python's `authkey=`).
    pub fn authkey(mut self, authkey: &[u8]) -> Self {
        self.config.authkey = ByteBuf::from(authkey.to_vec());
        self
    }

    /// Adds the types `f` registers (`f` registered with `manager_types!`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`] when `f` is not registered.
    pub fn types<F: Fn(&mut Registry) + 'static>(mut self, f: F) -> Result<Self, ManagerError> {
        self.config = self.config.types(f)?;
        Ok(self)
    }

    /// The configuration, for [`serve_manager`](crate::serve_manager) in a process of your own (a
    /// supervised child, or this process).
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// Starts the server as a child process named `Manager-N`, and waits until it
    /// listens.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`]: the process did not start, or cannot listen;
    /// [`ManagerError::Exhausted`] when the system has no room for its process or
    /// its socket (the message names the limit).
    pub fn start(self) -> Result<Manager, ManagerError> {
        let (mut process, ours) = self.process()?;
        crate::runtime::block_on(process.start()).map_err(not_started)?;
        servers().push(process.identity().clone());
        let mut ours = BlockingConnection::from(ours);
        let address = listening(ours.recv::<Result<Address, String>>())?;
        let target = ServerAddr {
            address,
            authkey: self.config.authkey.clone(),
        };
        target.ask(&Request::Hello)?;
        Ok(Manager {
            target,
            process: Some(process),
        })
    }

    /// As [`start`](ManagerBuilder::start), from async code.
    ///
    /// # Errors
    ///
    /// As [`start`](ManagerBuilder::start).
    pub async fn start_async(self) -> Result<Manager, ManagerError> {
        let (mut process, mut ours) = self.process()?;
        process.start().await.map_err(not_started)?;
        servers().push(process.identity().clone());
        let address = listening(ours.recv::<Result<Address, String>>().await)?;
        let target = ServerAddr {
            address,
            authkey: self.config.authkey.clone(),
        };
        // The Hello of a connect: the server answers, with the key given.
        AsyncLink::take(&target).await?.give_back(&target);
        Ok(Manager {
            target,
            process: Some(process),
        })
    }

    /// The server's process, not started, and our end of the pipe on which it says
    /// where it listens.
    fn process(&self) -> Result<(crate::process::Process, Connection), ManagerError> {
        let (ours, theirs) = multiproc_transport::pipe(true).map_err(|e| match e {
            TransportError::Exhausted(x) => ManagerError::exhausted(NOT_STARTED, x),
            e => ManagerError::Start(e.to_string()),
        })?;
        let entry = crate::runtime::registry::by_name(SERVE_READY_ENTRY)
            .ok_or_else(|| ManagerError::Start("the manager entry is not registered".into()))?;
        let process = crate::process::Process::with_entry(entry, &(self.config.clone(), theirs));
        let name = process.identity().default_name("Manager");
        Ok((process.named(name), ours))
    }
}

const NOT_STARTED: &str = "cannot start the manager";

/// The error of a server process that did not start.
fn not_started(e: crate::runtime::error::Error) -> ManagerError {
    match e {
        crate::runtime::error::Error::Exhausted { source, .. } => {
            ManagerError::exhausted(NOT_STARTED, source)
        }
        e => ManagerError::Start(e.to_string()),
    }
}

/// Where the server said it listens, or why it cannot.
fn listening(
    said: Result<Result<Address, String>, TransportError>,
) -> Result<Address, ManagerError> {
    match said {
        Ok(Ok(address)) => Ok(address),
        Ok(Err(e)) => Err(ManagerError::Start(e)),
        Err(e) => Err(ManagerError::Start(format!(
            "the server ended before it listened: {e}"
        ))),
    }
}

/// The identities of the manager servers this process started, for a snapshot of the
/// tree to tell them from other children.
fn servers() -> std::sync::MutexGuard<'static, Vec<multiproc_core::Identity>> {
    static SERVERS: std::sync::Mutex<Vec<multiproc_core::Identity>> =
        std::sync::Mutex::new(Vec::new());
    SERVERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which of `live` (the identities of this process's live children) are manager
/// servers; forgets the servers that are no longer among them.
pub(crate) fn servers_among(live: &[multiproc_core::Identity]) -> Vec<multiproc_core::Identity> {
    let mut list = servers();
    list.retain(|id| live.contains(id));
    list.clone()
}
