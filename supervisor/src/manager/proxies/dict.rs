//! [`DictProxy`]: a manager's dict, keys and values encoded.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::manager::proxy::{Proxy, TypedProxy};
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use crate::manager::error::ManagerError;
use crate::manager::proxy::{dec, enc, peek};

use super::typed_proxy;

typed_proxy!(
    /// A proxy to a manager's dict (Python's `DictProxy`), keys `K` and values `V`.
    /// Keys are the same key when they encode the same. Use
    /// [`Dynamic`](multiproc_core::Dynamic) for Python's mixed dicts.
    DictProxy<K, V>,
    "dict"
);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// `d[k] = v`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn set(&self, k: &K, v: &V) -> Result<(), ManagerError> {
        self.proxy.call("set", &(enc(k)?, enc(v)?))
    }

    /// `d.get(k)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Decode`] (a value of another type).
    pub fn get(&self, k: &K) -> Result<Option<V>, ManagerError> {
        let v: Option<ByteBuf> = self.proxy.call("get", &(enc(k)?,))?;
        v.map(|b| peek(&b)).transpose()
    }

    /// `d.pop(k, None)`.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn remove(&self, k: &K) -> Result<Option<V>, ManagerError> {
        let v: Option<ByteBuf> = self.proxy.call("remove", &(enc(k)?,))?;
        v.map(|b| dec(&b)).transpose()
    }

    /// `k in d`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn contains(&self, k: &K) -> Result<bool, ManagerError> {
        self.proxy.call("contains", &(enc(k)?,))
    }

    /// `len(d)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn len(&self) -> Result<usize, ManagerError> {
        Ok(self.proxy.call::<_, u64>("len", &())? as usize)
    }

    /// Whether it is empty.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// A copy of its items, in insertion order (Python's `d.copy()`, `_getvalue()`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        let items: Vec<(ByteBuf, ByteBuf)> = self.proxy.call("items", &())?;
        items
            .into_iter()
            .map(|(k, v)| Ok((peek(&k)?, peek(&v)?)))
            .collect()
    }

    /// Its keys, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        let keys: Vec<ByteBuf> = self.proxy.call("keys", &())?;
        keys.iter().map(|k| peek(k)).collect()
    }

    /// Adds every pair (Python's `update`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn update(&self, items: &[(K, V)]) -> Result<(), ManagerError> {
        let items = items
            .iter()
            .map(|(k, v)| Ok((enc(k)?, enc(v)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        self.proxy.call("update", &(items,))
    }

    /// Removes everything.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.proxy.call("clear", &())
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// As [`set`](DictProxy::set), from async code.
    ///
    /// # Errors
    ///
    /// As [`set`](DictProxy::set).
    pub async fn set_async(&self, k: &K, v: &V) -> Result<(), ManagerError> {
        let args = (enc(k)?, enc(v)?);
        self.proxy.call_async("set", &args).await
    }

    /// As [`get`](DictProxy::get), from async code.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub async fn get_async(&self, k: &K) -> Result<Option<V>, ManagerError> {
        let args = (enc(k)?,);
        let v: Option<ByteBuf> = self.proxy.call_async("get", &args).await?;
        v.map(|b| peek(&b)).transpose()
    }

    /// As [`remove`](DictProxy::remove), from async code.
    ///
    /// # Errors
    ///
    /// As [`remove`](DictProxy::remove).
    pub async fn remove_async(&self, k: &K) -> Result<Option<V>, ManagerError> {
        let args = (enc(k)?,);
        let v: Option<ByteBuf> = self.proxy.call_async("remove", &args).await?;
        v.map(|b| dec(&b)).transpose()
    }

    /// As [`contains`](DictProxy::contains), from async code.
    ///
    /// # Errors
    ///
    /// As [`contains`](DictProxy::contains).
    pub async fn contains_async(&self, k: &K) -> Result<bool, ManagerError> {
        let args = (enc(k)?,);
        self.proxy.call_async("contains", &args).await
    }

    /// As [`len`](DictProxy::len), from async code.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn len_async(&self) -> Result<usize, ManagerError> {
        Ok(self.proxy.call_async::<_, u64>("len", &()).await? as usize)
    }

    /// As [`items`](DictProxy::items), from async code.
    ///
    /// # Errors
    ///
    /// As [`items`](DictProxy::items).
    pub async fn items_async(&self) -> Result<Vec<(K, V)>, ManagerError> {
        let items: Vec<(ByteBuf, ByteBuf)> = self.proxy.call_async("items", &()).await?;
        items
            .into_iter()
            .map(|(k, v)| Ok((peek(&k)?, peek(&v)?)))
            .collect()
    }

    /// As [`keys`](DictProxy::keys), from async code.
    ///
    /// # Errors
    ///
    /// As [`keys`](DictProxy::keys).
    pub async fn keys_async(&self) -> Result<Vec<K>, ManagerError> {
        let keys: Vec<ByteBuf> = self.proxy.call_async("keys", &()).await?;
        keys.iter().map(|k| peek(k)).collect()
    }

    /// As [`update`](DictProxy::update), from async code.
    ///
    /// # Errors
    ///
    /// As [`update`](DictProxy::update).
    pub async fn update_async(&self, items: &[(K, V)]) -> Result<(), ManagerError> {
        let items = items
            .iter()
            .map(|(k, v)| Ok((enc(k)?, enc(v)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        self.proxy.call_async("update", &(items,)).await
    }

    /// As [`clear`](DictProxy::clear), from async code.
    ///
    /// # Errors
    ///
    /// As [`clear`](DictProxy::clear).
    pub async fn clear_async(&self) -> Result<(), ManagerError> {
        self.proxy.call_async("clear", &()).await
    }
}
