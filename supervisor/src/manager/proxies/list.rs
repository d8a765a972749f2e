//! [`ListProxy`]: a manager's list, items encoded.

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
    /// A proxy to a manager's list (Python's `ListProxy`).
    ListProxy<T>,
    "list"
);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// `l.append(v)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn append(&self, v: &T) -> Result<(), ManagerError> {
        self.proxy.call("append", &(enc(v)?,))
    }

    /// `l.extend(vs)`.
    ///
    /// # Errors
    ///
    /// As [`append`](ListProxy::append).
    pub fn extend(&self, vs: &[T]) -> Result<(), ManagerError> {
        let vs = vs.iter().map(enc).collect::<Result<Vec<_>, _>>()?;
        self.proxy.call("extend", &(vs,))
    }

    /// `l[i]` (negative from the end).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Index`], [`ManagerError::Gone`], [`ManagerError::Decode`].
    pub fn get(&self, i: i64) -> Result<T, ManagerError> {
        let v: ByteBuf = self.proxy.call("get", &(i,))?;
        peek(&v)
    }

    /// `l[i] = v`.
    ///
    /// # Errors
    ///
    /// As [`get`](ListProxy::get).
    pub fn set(&self, i: i64, v: &T) -> Result<(), ManagerError> {
        self.proxy.call("set", &(i, enc(v)?))
    }

    /// `l.insert(i, v)`.
    ///
    /// # Errors
    ///
    /// As [`append`](ListProxy::append).
    pub fn insert(&self, i: i64, v: &T) -> Result<(), ManagerError> {
        self.proxy.call("insert", &(i, enc(v)?))
    }

    /// `l.pop(i)` (the last without an index).
    ///
    /// # Errors
    ///
    /// As [`get`](ListProxy::get).
    pub fn pop(&self, i: Option<i64>) -> Result<T, ManagerError> {
        let v: ByteBuf = self.proxy.call("pop", &(i,))?;
        dec(&v)
    }

    /// `len(l)`.
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

    /// A copy of its items (Python's `l[:]`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Decode`].
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        let items: Vec<ByteBuf> = self.proxy.call("items", &())?;
        items.iter().map(|b| peek(b)).collect()
    }

    /// `l.reverse()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn reverse(&self) -> Result<(), ManagerError> {
        self.proxy.call("reverse", &())
    }
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// As [`append`](ListProxy::append), from async code.
    ///
    /// # Errors
    ///
    /// As [`append`](ListProxy::append).
    pub async fn append_async(&self, v: &T) -> Result<(), ManagerError> {
        let args = (enc(v)?,);
        self.proxy.call_async("append", &args).await
    }

    /// As [`extend`](ListProxy::extend), from async code.
    ///
    /// # Errors
    ///
    /// As [`extend`](ListProxy::extend).
    pub async fn extend_async(&self, vs: &[T]) -> Result<(), ManagerError> {
        let vs = vs.iter().map(enc).collect::<Result<Vec<_>, _>>()?;
        self.proxy.call_async("extend", &(vs,)).await
    }

    /// As [`get`](ListProxy::get), from async code.
    ///
    /// # Errors
    ///
    /// As [`get`](ListProxy::get).
    pub async fn get_async(&self, i: i64) -> Result<T, ManagerError> {
        let v: ByteBuf = self.proxy.call_async("get", &(i,)).await?;
        peek(&v)
    }

    /// As [`set`](ListProxy::set), from async code.
    ///
    /// # Errors
    ///
    /// As [`set`](ListProxy::set).
    pub async fn set_async(&self, i: i64, v: &T) -> Result<(), ManagerError> {
        let args = (i, enc(v)?);
        self.proxy.call_async("set", &args).await
    }

    /// As [`insert`](ListProxy::insert), from async code.
    ///
    /// # Errors
    ///
    /// As [`insert`](ListProxy::insert).
    pub async fn insert_async(&self, i: i64, v: &T) -> Result<(), ManagerError> {
        let args = (i, enc(v)?);
        self.proxy.call_async("insert", &args).await
    }

    /// As [`pop`](ListProxy::pop), from async code.
    ///
    /// # Errors
    ///
    /// As [`pop`](ListProxy::pop).
    pub async fn pop_async(&self, i: Option<i64>) -> Result<T, ManagerError> {
        let v: ByteBuf = self.proxy.call_async("pop", &(i,)).await?;
        dec(&v)
    }

    /// As [`len`](ListProxy::len), from async code.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn len_async(&self) -> Result<usize, ManagerError> {
        Ok(self.proxy.call_async::<_, u64>("len", &()).await? as usize)
    }

    /// As [`to_vec`](ListProxy::to_vec), from async code.
    ///
    /// # Errors
    ///
    /// As [`to_vec`](ListProxy::to_vec).
    pub async fn to_vec_async(&self) -> Result<Vec<T>, ManagerError> {
        let items: Vec<ByteBuf> = self.proxy.call_async("items", &()).await?;
        items.iter().map(|b| peek(b)).collect()
    }

    /// As [`reverse`](ListProxy::reverse), from async code.
    ///
    /// # Errors
    ///
    /// As [`reverse`](ListProxy::reverse).
    pub async fn reverse_async(&self) -> Result<(), ManagerError> {
        self.proxy.call_async("reverse", &()).await
    }
}
