//! [`ManagerBuilder`]: how a manager's server is started as a child process.

use std::fmt;

use multiproc_transport::{Address, BlockingConnection, Error as TransportError};
use serde_bytes::ByteBuf;

use super::client::ServerAddr;
use super::server::SERVE_READY_ENTRY;
use super::wire::Request;
use super::{Manager, ManagerConfig, ManagerError, Registry};

/// How to start a manager.
#[derive(Debug, Clone)]
pub struct ManagerBuilder {
    config: ManagerConfig,
}

impl ManagerBuilder {
    /// A builder of a server set up as `config`.
    pub(super) fn new(config: ManagerConfig) -> ManagerBuilder {
        ManagerBuilder { config }
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

    /// The configuration, for [`serve_manager`] in a process of your own (a
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
        const WHAT: &str = "cannot start the manager";
        let start = |e: &dyn fmt::Display| ManagerError::Start(e.to_string());
        let (ours, theirs) = multiproc_transport::pipe(true).map_err(|e| match e {
            TransportError::Exhausted(x) => ManagerError::exhausted(WHAT, x),
            e => start(&e),
        })?;
        let entry = crate::runtime::registry::by_name(SERVE_READY_ENTRY)
            .ok_or_else(|| start(&"the manager entry is not registered"))?;
        let process = crate::Process::with_entry(entry, &(self.config.clone(), theirs));
        let name = process.identity().default_name("Manager");
        let mut process = process.named(name);
        crate::runtime::block_on(process.start()).map_err(|e| match e {
            crate::Error::Exhausted { source, .. } => ManagerError::exhausted(WHAT, source),
            e => start(&e),
        })?;
        let mut ours = BlockingConnection::from(ours);
        let address = match ours.recv::<Result<Address, String>>() {
            Ok(Ok(address)) => address,
            Ok(Err(e)) => return Err(ManagerError::Start(e)),
            Err(e) => return Err(start(&format!("the server ended before it listened: {e}"))),
        };
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
}
