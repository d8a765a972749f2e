//! [`ValueProxy`]: a manager's value, encoded.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::manager::{Proxy, TypedProxy};
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use crate::manager::ManagerError;
use crate::manager::proxy::{enc, peek};

use super::typed_proxy;

typed_proxy!(
    /// A proxy to a manager's value (Python's `Manager().Value()`).
    ValueProxy<T>,
    "value"
);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// `v.value`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Decode`].
    pub fn get(&self) -> Result<T, ManagerError> {
        let v: ByteBuf = self.proxy.call("get", &())?;
        peek(&v)
    }

    /// `v.value = x`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn set(&self, v: &T) -> Result<(), ManagerError> {
        self.proxy.call("set", &(enc(v)?,))
    }
}
