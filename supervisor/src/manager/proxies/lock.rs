//! [`LockProxy`]: a manager's lock.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::manager::proxy::{Proxy, TypedProxy};
use std::time::Duration;

use crate::manager::async_link::AsyncLink;
use crate::manager::error::ManagerError;
use crate::manager::proxy::{dec, enc, millis};

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

impl LockProxy {
    /// As [`acquire`](LockProxy::acquire), from async code. The lock is held
    /// through the connection that acquired it, which this proxy and its clones keep
    /// until [`release_async`](LockProxy::release_async): dropping the last of them
    /// while it is held closes that connection, which releases the lock and tells
    /// the next holder, as a holder's death does. A future dropped while it waits
    /// takes nothing.
    ///
    /// # Errors
    ///
    /// As [`acquire`](LockProxy::acquire).
    pub async fn acquire_async(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<bool, ManagerError> {
        let args = enc(&(block, millis(timeout)))?;
        let target = &self.proxy.target;
        let mut link = AsyncLink::take(target).await?;
        let answer = self.proxy.call_on(&mut link, "acquire", args).await;
        let (got, died): (bool, bool) = match answer.and_then(|bytes| dec(&bytes)) {
            Ok(out) => out,
            Err(e) => {
                link.give_back(target);
                return Err(e);
            }
        };
        if got {
            let before = self
                .proxy
                .holding
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace(link);
            // A link kept by an earlier acquire, released since by a blocking call:
            // it holds nothing now.
            if let Some(before) = before {
                before.give_back(target);
            }
        } else {
            link.give_back(target);
        }
        if died {
            return Err(ManagerError::Misuse(
                "acquired, but its previous holder died holding it".into(),
            ));
        }
        Ok(got)
    }

    /// As [`release`](LockProxy::release), from async code, through the
    /// connection that acquired it when it was acquired by
    /// [`acquire_async`](LockProxy::acquire_async).
    ///
    /// # Errors
    ///
    /// As [`release`](LockProxy::release).
    pub async fn release_async(&self) -> Result<(), ManagerError> {
        let target = &self.proxy.target;
        let kept = self
            .proxy
            .holding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let mut link = match kept {
            Some(link) => link,
            None => AsyncLink::take(target).await?,
        };
        let answer = self.proxy.call_on(&mut link, "release", enc(&())?).await;
        link.give_back(target);
        dec(&answer?)
    }
}
