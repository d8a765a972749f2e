//! [`Proxy`]: a serde value naming one object of a manager (Python's `BaseProxy`),
//! the reference it holds there, and [`TypedProxy`], which the typed proxies
//! implement.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_core::codec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::async_link::AsyncLink;
use super::client::{ServerAddr, unexpected};
use super::error::ManagerError;
use super::refs;
use super::wire::{self, Request, Response};

/// Which object a proxy names, in which incarnation of its server.
#[derive(Debug, Clone, Copy)]
pub(super) struct Resolved {
    pub(super) id: u64,
    pub(super) incarnation: u64,
}

/// A proxy to an object of any type (Python's `BaseProxy`): [`call`](Proxy::call)
/// runs one of its registered methods. The typed proxies are built on it.
#[derive(Clone)]
pub struct Proxy {
    pub(super) target: ServerAddr,
    pub(super) typeid: String,
    /// The name it was looked up by, to find its object again after a restart.
    /// Such a proxy holds no reference: a published object lives as long as its
    /// server.
    pub(super) name: Option<String>,
    pub(super) resolved: Arc<Mutex<Resolved>>,
    /// The reference this proxy and its clones hold at the server, given back when
    /// the last of them is dropped (`None`: found by name, or its server was gone).
    #[expect(dead_code, reason = "a guard: its drop gives the reference back")]
    pub(super) held: Option<Arc<Held>>,
    /// The async link through which this proxy's lock was acquired, kept out of the
    /// idle ones until the release: a lock is its connection's, and an idle link may
    /// be closed by another task's cancelled call.
    pub(super) holding: Arc<Mutex<Option<AsyncLink>>>,
}

/// One reference of this process to an object.
pub(super) struct Held {
    pub(super) tx: std::sync::mpsc::Sender<refs::Msg>,
    pub(super) id: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Queued, never waited for; an error is a server gone, with its objects.
        let _ = self.tx.send(refs::Msg::Op(wire::RefOp::Release(self.id)));
    }
}

/// The reference a proxy decoded here takes for object `id` of `target`'s server
/// incarnation `incarnation` (`None` when that server is not there).
fn hold(target: &ServerAddr, id: u64, incarnation: u64) -> Option<Arc<Held>> {
    let link = refs::link(target, Some(incarnation)).ok()?;
    link.tx.send(refs::Msg::Op(refs::decode_op(id))).ok()?;
    Some(Arc::new(Held { tx: link.tx, id }))
}

#[derive(Serialize, Deserialize)]
struct ProxyWire {
    target: ServerAddr,
    typeid: String,
    name: Option<String>,
    id: u64,
    incarnation: u64,
}

impl Serialize for Proxy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = *self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        if self.name.is_none() {
            self.lend(r);
        }
        ProxyWire {
            target: self.target.clone(),
            typeid: self.typeid.clone(),
            name: self.name.clone(),
            id: r.id,
            incarnation: r.incarnation,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Proxy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Proxy, D::Error> {
        let w = ProxyWire::deserialize(d)?;
        let held = match w.name {
            None => hold(&w.target, w.id, w.incarnation),
            Some(_) => None,
        };
        Ok(Proxy::new(
            w.target,
            w.typeid,
            w.name,
            Resolved {
                id: w.id,
                incarnation: w.incarnation,
            },
            held,
        ))
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = *self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("Proxy")
            .field("typeid", &self.typeid)
            .field("id", &r.id)
            .field("address", &self.target.address)
            .finish()
    }
}

impl Proxy {
    /// A proxy to `resolved` at `target`, holding `held`.
    pub(super) fn new(
        target: ServerAddr,
        typeid: String,
        name: Option<String>,
        resolved: Resolved,
        held: Option<Arc<Held>>,
    ) -> Proxy {
        Proxy {
            target,
            typeid,
            name,
            resolved: Arc::new(Mutex::new(resolved)),
            held,
            holding: Arc::default(),
        }
    }

    /// Lends the object one reference for this encoding, taken by whoever decodes
    /// it: the object then outlives this proxy until the copy in flight is
    /// decoded. Waited for, so that the credit is there before the bytes are.
    fn lend(&self, r: Resolved) {
        let lent = self
            .target
            .ask_checked(&Request::Lend { id: r.id }, |incarnation| {
                if incarnation == r.incarnation {
                    Ok(None)
                } else {
                    Err(ManagerError::Restarted)
                }
            });
        if let Err(e) = lent {
            // The copy still encodes: its calls will fail as this proxy's would.
            tracing::debug!("a manager proxy encoded without a lent reference: {e}");
        }
    }

    /// Its type's name.
    pub fn typeid(&self) -> &str {
        &self.typeid
    }

    /// Runs `method` with `args` (a tuple for several) on the object; its result.
    ///
    /// # Errors
    ///
    /// [`ManagerError::UnknownMethod`], [`ManagerError::Args`] (the server could not
    /// decode `args` as the method's), [`ManagerError::Decode`] (the result is not
    /// an `R`), [`ManagerError::Gone`], [`ManagerError::Restarted`], and the
    /// method's own errors.
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R, ManagerError> {
        let bytes = self.call_raw(method, args)?;
        codec::decode(&bytes).map_err(|e| ManagerError::Decode(e.to_string()))
    }

    fn call_raw<A: Serialize + ?Sized>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<Vec<u8>, ManagerError> {
        let args =
            ByteBuf::from(codec::encode(args).map_err(|e| ManagerError::Encode(e.to_string()))?);
        let r = *self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        let request = Request::Call {
            id: r.id,
            method: method.to_string(),
            args,
        };
        let (response, _) = self.target.ask_checked(&request, |incarnation| {
            if incarnation == r.incarnation {
                return Ok(None);
            }
            // Another server than the one that made the object (restarted): its
            // objects went with the old one, and an object number here may name
            // another object. One found by name may be there again.
            let Some(name) = &self.name else {
                return Err(ManagerError::Restarted);
            };
            let (id, incarnation) = lookup(&self.target, name, &self.typeid)?;
            *self.resolved.lock().unwrap_or_else(|e| e.into_inner()) = Resolved { id, incarnation };
            let Request::Call { method, args, .. } = &request else {
                unreachable!("built above")
            };
            Ok(Some(Request::Call {
                id,
                method: method.clone(),
                args: args.clone(),
            }))
        })?;
        match response {
            Response::Value(v) => Ok(v.into_vec()),
            other => Err(unexpected(&other)),
        }
    }
}

impl Proxy {
    /// As [`call`](Proxy::call), from async code: the call has a connection of its
    /// own while it runs, and a future dropped before the answer closes it (a
    /// waiting request then gives up at the server, and takes nothing).
    ///
    /// # Errors
    ///
    /// As [`call`](Proxy::call).
    pub async fn call_async<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R, ManagerError> {
        let args = enc(args)?;
        let mut link = AsyncLink::take(&self.target).await?;
        let out = self.call_on(&mut link, method, args).await;
        link.give_back(&self.target);
        dec(&out?)
    }

    /// Runs `method` on `link`; an object found by name is found again first when
    /// the link reaches another incarnation of its server.
    pub(super) async fn call_on(
        &self,
        link: &mut AsyncLink,
        method: &str,
        args: ByteBuf,
    ) -> Result<Vec<u8>, ManagerError> {
        let mut r = *self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        if link.incarnation != r.incarnation {
            // As in `call_raw`: the object went with the old server, unless found
            // by name and published again.
            let Some(name) = &self.name else {
                return Err(ManagerError::Restarted);
            };
            let response = link
                .ask(&Request::Lookup {
                    name: name.to_string(),
                })
                .await?;
            let (id, incarnation) = found(name, &self.typeid, response, link.incarnation)?;
            r = Resolved { id, incarnation };
            *self.resolved.lock().unwrap_or_else(|e| e.into_inner()) = r;
        }
        let request = Request::Call {
            id: r.id,
            method: method.to_string(),
            args,
        };
        match link.ask(&request).await? {
            Response::Value(v) => Ok(v.into_vec()),
            other => Err(unexpected(&other)),
        }
    }
}

fn lookup(target: &ServerAddr, name: &str, expected: &str) -> Result<(u64, u64), ManagerError> {
    let (response, incarnation) = target.ask(&Request::Lookup {
        name: name.to_string(),
    })?;
    found(name, expected, response, incarnation)
}

/// The object a lookup of `name` found, when it is an `expected` (any, when empty):
/// its number and its server's incarnation.
fn found(
    name: &str,
    expected: &str,
    response: Response,
    incarnation: u64,
) -> Result<(u64, u64), ManagerError> {
    match response {
        Response::Object { id, typeid } if typeid == expected || expected.is_empty() => {
            Ok((id, incarnation))
        }
        Response::Object { typeid, .. } => Err(ManagerError::WrongType {
            name: name.to_string(),
            expected: expected.to_string(),
            found: typeid,
        }),
        other => Err(unexpected(&other)),
    }
}

/// A typed proxy: a [`Proxy`] to an object of one type.
pub trait TypedProxy: Sized {
    /// The manager type it is for (`dict`, `queue`, or a registered name).
    const TYPEID: &'static str;
    /// Wraps a proxy of that type.
    fn from_proxy(proxy: Proxy) -> Self;
    /// The proxy inside.
    fn proxy(&self) -> &Proxy;
}

impl TypedProxy for Proxy {
    const TYPEID: &'static str = "";
    fn from_proxy(proxy: Proxy) -> Self {
        proxy
    }
    fn proxy(&self) -> &Proxy {
        self
    }
}

pub(super) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<ByteBuf, ManagerError> {
    codec::encode(v)
        .map(ByteBuf::from)
        .map_err(|e| ManagerError::Encode(e.to_string()))
}

pub(super) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, ManagerError> {
    codec::decode(b).map_err(|e| ManagerError::Decode(e.to_string()))
}

/// As [`dec`], for a copy of a value that stays in its managed object.
pub(super) fn peek<T: DeserializeOwned>(b: &[u8]) -> Result<T, ManagerError> {
    refs::sharing(|| dec(b))
}

pub(super) fn millis(timeout: Option<Duration>) -> Option<u64> {
    timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
}
