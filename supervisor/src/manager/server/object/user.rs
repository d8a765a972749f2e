//! An object of a registered type: its methods are the registered ones, and a
//! panic in one is its caller's error.

use std::any::Any;
use std::sync::{Arc, Mutex};

use super::{Caller, Object, lock, unknown};
use crate::manager::error::ManagerError;
use crate::manager::type_registry::UserType;

/// An object of a user-registered type.
pub(crate) struct User {
    pub(crate) typeid: String,
    pub(crate) ty: Arc<UserType>,
    pub(crate) value: Mutex<Box<dyn Any + Send>>,
}

impl Object for User {
    fn typeid(&self) -> &str {
        &self.typeid
    }

    fn call(&self, _: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let m = self
            .ty
            .methods
            .get(method)
            .ok_or_else(|| unknown(&self.typeid, method))?;
        let mut value = lock(&self.value);
        let out =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m(&mut **value, method, a)));
        out.unwrap_or_else(|panic| {
            Err(ManagerError::Failed {
                typeid: self.typeid.clone(),
                method: method.to_string(),
                message: crate::runtime::panic::panic_message(&*panic),
            })
        })
    }
}
