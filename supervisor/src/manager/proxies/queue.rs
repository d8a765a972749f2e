//! [`QueueProxy`]: a manager's queue (Python's `queue.Queue`).

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::manager::proxy::{Proxy, TypedProxy};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use crate::manager::error::ManagerError;
use crate::manager::proxy::{dec, enc, millis};

use super::typed_proxy;

typed_proxy!(
    /// A proxy to a manager's queue (Python's `Manager().Queue()`, a `queue.Queue`).
    QueueProxy<T>,
    "queue"
);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// `q.put(item, block, timeout)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Full`], [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn put(
        &self,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), ManagerError> {
        self.proxy
            .call("put", &(enc(item)?, block, millis(timeout)))
    }

    /// `q.get(block, timeout)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Empty`], [`ManagerError::Gone`] (also while waiting),
    /// [`ManagerError::Decode`].
    pub fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T, ManagerError> {
        let v: ByteBuf = self.proxy.call("get", &(block, millis(timeout)))?;
        dec(&v)
    }

    /// `q.qsize()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn qsize(&self) -> Result<usize, ManagerError> {
        Ok(self.proxy.call::<_, u64>("qsize", &())? as usize)
    }

    /// `q.task_done()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Misuse`] for one too many; [`ManagerError::Gone`].
    pub fn task_done(&self) -> Result<(), ManagerError> {
        self.proxy.call("task_done", &())
    }

    /// `q.join()`, at most `timeout`: whether every item was done.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn join(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        self.proxy.call("join", &(millis(timeout),))
    }
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// As [`put`](QueueProxy::put), from async code.
    ///
    /// # Errors
    ///
    /// As [`put`](QueueProxy::put).
    pub async fn put_async(
        &self,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), ManagerError> {
        let args = (enc(item)?, block, millis(timeout));
        self.proxy.call_async("put", &args).await
    }

    /// As [`get`](QueueProxy::get), from async code.
    ///
    /// # Errors
    ///
    /// As [`get`](QueueProxy::get).
    pub async fn get_async(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<T, ManagerError> {
        let args = (block, millis(timeout));
        let v: ByteBuf = self.proxy.call_async("get", &args).await?;
        dec(&v)
    }

    /// As [`qsize`](QueueProxy::qsize), from async code.
    ///
    /// # Errors
    ///
    /// As [`qsize`](QueueProxy::qsize).
    pub async fn qsize_async(&self) -> Result<usize, ManagerError> {
        Ok(self.proxy.call_async::<_, u64>("qsize", &()).await? as usize)
    }

    /// As [`task_done`](QueueProxy::task_done), from async code.
    ///
    /// # Errors
    ///
    /// As [`task_done`](QueueProxy::task_done).
    pub async fn task_done_async(&self) -> Result<(), ManagerError> {
        self.proxy.call_async("task_done", &()).await
    }

    /// As [`join`](QueueProxy::join), from async code.
    ///
    /// # Errors
    ///
    /// As [`join`](QueueProxy::join).
    pub async fn join_async(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        let args = (millis(timeout),);
        self.proxy.call_async("join", &args).await
    }
}
