//! What the server serves: the [`Object`] trait each built-in or registered type
//! implements (one file each below), who made a request ([`Caller`]), and how a
//! request that waits watches its caller.

mod dict;
mod event;
mod list;
mod lock;
mod namespace;
mod queue;
mod user;
mod value;

pub(super) use dict::Dict;
pub(super) use event::Event;
pub(super) use list::List;
pub(super) use lock::Lock;
pub(super) use namespace::Namespace;
pub(super) use queue::Queue;
pub(super) use user::User;
pub(super) use value::Value;

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc_core::codec;
use multiproc_transport::BlockingConnection;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::manager::error::ManagerError;

/// A connection's number, to know who holds a lock.
pub(crate) type ConnId = u64;

/// How often a waiting request looks whether its caller is still there.
pub(crate) const WATCH: Duration = Duration::from_millis(50);

/// Who made a request, to watch while it waits.
pub(crate) struct Caller<'a> {
    pub(crate) conn: ConnId,
    pub(crate) link: &'a BlockingConnection,
}

impl Caller<'_> {
    /// Whether the caller's end is closed (its process died, or it hung up).
    pub(super) fn gone(&self) -> bool {
        crate::manager::channel::peer_gone(self.link)
    }
}

/// A served object.
pub(crate) trait Object: Send + Sync {
    fn typeid(&self) -> &str;
    fn call(&self, caller: &Caller<'_>, method: &str, args: &[u8])
    -> Result<Vec<u8>, ManagerError>;
    /// The connection `conn` closed: what it held is released.
    fn disconnected(&self, _conn: ConnId) {}
}

pub(super) fn args<A: DeserializeOwned>(method: &str, bytes: &[u8]) -> Result<A, ManagerError> {
    codec::decode(bytes).map_err(|e| ManagerError::Args {
        method: method.to_string(),
        message: e.to_string(),
    })
}

pub(super) fn ret<R: Serialize>(r: &R) -> Result<Vec<u8>, ManagerError> {
    codec::encode(r).map_err(|e| ManagerError::Encode(e.to_string()))
}

pub(super) fn unknown(typeid: &str, method: &str) -> ManagerError {
    ManagerError::UnknownMethod {
        typeid: typeid.to_string(),
        method: method.to_string(),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` until `ready` gives a value, `deadline` passes (`None`), or the
/// caller goes away (an error).
pub(super) fn wait_until<'m, S, T>(
    caller: &Caller<'_>,
    mut guard: MutexGuard<'m, S>,
    cv: &Condvar,
    deadline: Option<Instant>,
    mut ready: impl FnMut(&mut S) -> Option<T>,
) -> Result<(MutexGuard<'m, S>, Option<T>), ManagerError> {
    loop {
        if let Some(t) = ready(&mut guard) {
            return Ok((guard, Some(t)));
        }
        let slice = match deadline {
            None => WATCH,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Ok((guard, None));
                }
                (d - now).min(WATCH)
            }
        };
        guard = cv
            .wait_timeout(guard, slice)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        if caller.gone() {
            return Err(ManagerError::Gone("the caller hung up".into()));
        }
    }
}

/// `block` and a timeout in milliseconds, as a deadline (`None`: for ever).
pub(super) fn deadline(block: bool, timeout_ms: Option<u64>) -> Option<Instant> {
    if !block {
        return Some(Instant::now());
    }
    timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms))
}
