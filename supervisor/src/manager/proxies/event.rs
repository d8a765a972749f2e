//! [`EventProxy`]: a manager's event.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::manager::proxy::{Proxy, TypedProxy};
use std::time::Duration;

use crate::manager::error::ManagerError;
use crate::manager::proxy::millis;

use super::typed_proxy;

typed_proxy!(
    /// A proxy to a manager's event.
    EventProxy<>,
    "event"
);

impl EventProxy {
    /// `e.set()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn set(&self) -> Result<(), ManagerError> {
        self.proxy.call("set", &())
    }

    /// `e.clear()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.proxy.call("clear", &())
    }

    /// `e.is_set()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        self.proxy.call("is_set", &())
    }

    /// `e.wait(timeout)`: whether it is set.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`] (also while waiting).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        self.proxy.call("wait", &(millis(timeout),))
    }
}

impl EventProxy {
    /// As [`set`](EventProxy::set), from async code.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    pub async fn set_async(&self) -> Result<(), ManagerError> {
        self.proxy.call_async("set", &()).await
    }

    /// As [`clear`](EventProxy::clear), from async code.
    ///
    /// # Errors
    ///
    /// As [`clear`](EventProxy::clear).
    pub async fn clear_async(&self) -> Result<(), ManagerError> {
        self.proxy.call_async("clear", &()).await
    }

    /// As [`is_set`](EventProxy::is_set), from async code.
    ///
    /// # Errors
    ///
    /// As [`is_set`](EventProxy::is_set).
    pub async fn is_set_async(&self) -> Result<bool, ManagerError> {
        self.proxy.call_async("is_set", &()).await
    }

    /// As [`wait`](EventProxy::wait), from async code.
    ///
    /// # Errors
    ///
    /// As [`wait`](EventProxy::wait).
    pub async fn wait_async(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        let args = (millis(timeout),);
        self.proxy.call_async("wait", &args).await
    }
}
