//! [`ListProxy`]: a manager's list, items encoded.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::manager::{Proxy, TypedProxy};
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use crate::manager::ManagerError;
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
