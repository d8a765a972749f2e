//! [`ValueProxy`]: a manager's value, encoded.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::manager::proxy::{Proxy, TypedProxy};
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use crate::manager::error::ManagerError;
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

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// As [`get`](ValueProxy::get), from async code.
    ///
    /// # Errors
    ///
    /// As [`get`](ValueProxy::get).
    pub async fn get_async(&self) -> Result<T, ManagerError> {
        let v: ByteBuf = self.proxy.call_async("get", &()).await?;
        peek(&v)
    }

    /// As [`set`](ValueProxy::set), from async code.
    ///
    /// # Errors
    ///
    /// As [`set`](ValueProxy::set).
    pub async fn set_async(&self, v: &T) -> Result<(), ManagerError> {
        let args = (enc(v)?,);
        self.proxy.call_async("set", &args).await
    }
}
