//! [`ManagerConfig`]: where a manager's server listens, its key, and the registered
//! type functions it runs.

use std::fmt;

use multiproc_transport::Address;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::error::ManagerError;
use super::type_registry::Registry;
use super::type_registry::{MANAGER_TYPES, types_by_type};

/// How a manager's server is set up: where it listens, its key, and the registered
/// type functions it runs. Give it to [`serve_manager`](crate::serve_manager) (as a supervised child, with
/// `function_child`) or let [`Manager::start`](crate::Manager::start) make one.
#[derive(Clone, Serialize, Deserialize)]
pub struct ManagerConfig {
    pub(super) address: Address,
    pub(super) authkey: ByteBuf,
    types: Vec<String>,
}

impl fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerConfig")
            .field("address", &self.address)
            .field("types", &self.types)
            .finish_non_exhaustive()
    }
}

impl ManagerConfig {
    /// A server at `address` with `authkey`.
    pub fn new(address: Address, authkey: &[u8]) -> ManagerConfig {
        ManagerConfig {
            address,
            authkey: ByteBuf::from(authkey.to_vec()),
            types: Vec::new(),
        }
    }

    /// Adds the types that `f` registers (`f` registered with `manager_types!`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`] when `f` is not registered.
    pub fn types<F: Fn(&mut Registry) + 'static>(mut self, f: F) -> Result<Self, ManagerError> {
        let _ = f;
        self.types.push(types_by_type::<F>()?.name.to_string());
        Ok(self)
    }

    pub(super) fn registry(&self) -> Result<Registry, String> {
        let mut registry = Registry::default();
        for name in &self.types {
            let entry = MANAGER_TYPES
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| format!("manager types `{name}` are not registered here"))?;
            (entry.register)(&mut registry);
        }
        Ok(registry)
    }
}
