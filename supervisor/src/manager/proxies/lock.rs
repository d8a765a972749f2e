//! [`LockProxy`]: a manager's lock.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::manager::{Proxy, TypedProxy};
use std::time::Duration;

use crate::manager::ManagerError;
use crate::manager::proxy::millis;

use super::typed_proxy;

typed_proxy!(
    /// A proxy to a manager's lock (Python's `Manager().Lock()`). It is released when
    /// the connection of the thread that holds it closes, and the next holder is told.
    LockProxy<>,
    "lock"
);

impl LockProxy {
    /// `lock.acquire(block, timeout)`: whether it was acquired.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Misuse`] with "owner died" when acquired after its holder's
    /// process died holding it (acquired all the same); [`ManagerError::Gone`].
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        let (got, died): (bool, bool) = self.proxy.call("acquire", &(block, millis(timeout)))?;
        if died {
            return Err(ManagerError::Misuse(
                "acquired, but its previous holder died holding it".into(),
            ));
        }
        Ok(got)
    }

    /// `lock.release()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Misuse`] when it is not held; [`ManagerError::Gone`].
    pub fn release(&self) -> Result<(), ManagerError> {
        self.proxy.call("release", &())
    }
}
