//! [`NamespaceProxy`]: a manager's namespace, attributes by name.

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
    /// A proxy to a manager's namespace (Python's `Namespace`): attributes by name,
    /// each of its own type.
    NamespaceProxy<>,
    "namespace"
);

impl NamespaceProxy {
    /// `ns.name = v`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn set<T: Serialize>(&self, name: &str, v: &T) -> Result<(), ManagerError> {
        self.proxy.call("set", &(name, enc(v)?))
    }

    /// `getattr(ns, name, None)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Decode`].
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        let v: Option<ByteBuf> = self.proxy.call("get", &(name,))?;
        v.map(|b| peek(&b)).transpose()
    }

    /// `del ns.name`; whether it was there.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn del(&self, name: &str) -> Result<bool, ManagerError> {
        self.proxy.call("del", &(name,))
    }
}

impl NamespaceProxy {
    /// As [`set`](NamespaceProxy::set), from async code.
    ///
    /// # Errors
    ///
    /// As [`set`](NamespaceProxy::set).
    pub async fn set_async<T: Serialize>(&self, name: &str, v: &T) -> Result<(), ManagerError> {
        let args = (name, enc(v)?);
        self.proxy.call_async("set", &args).await
    }

    /// As [`get`](NamespaceProxy::get), from async code.
    ///
    /// # Errors
    ///
    /// As [`get`](NamespaceProxy::get).
    pub async fn get_async<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, ManagerError> {
        let v: Option<ByteBuf> = self.proxy.call_async("get", &(name,)).await?;
        v.map(|b| peek(&b)).transpose()
    }

    /// As [`del`](NamespaceProxy::del), from async code.
    ///
    /// # Errors
    ///
    /// As [`del`](NamespaceProxy::del).
    pub async fn del_async(&self, name: &str) -> Result<bool, ManagerError> {
        self.proxy.call_async("del", &(name,)).await
    }
}
