//! The manager's server: objects by number, served one thread per connection (as
//! Python's), each request a registered method of a registered type.
//!
//! Built-in objects keep their contents as encoded bytes: the server never decodes
//! a key or a value, so it needs none of the proxies' types, and two keys are the
//! same key when they encode the same. A request that waits (a queue's `get`, a
//! lock's `acquire`) waits on its own connection's thread, and gives up when that
//! connection's process goes away, so a dead waiter takes nothing. A lock held
//! through a connection that closes is released, and its next holder is told.
//!
//! Each object has a count of references, written down by holder: each process's
//! reference link holds its own, and an object is dropped when no link holds it, no
//! lent credit (a proxy encoded, not yet decoded) is left, and no name pins it. A
//! link that closes gives back all it held (Python's server keeps them for ever).

mod accept;
mod dispatch;
mod object;
mod table;

pub(crate) use accept::SERVE_READY_ENTRY;
pub use accept::serve_manager;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use multiproc_core::codec;
use serde_bytes::ByteBuf;

use super::error::ManagerError;
use super::type_registry::Registry;
use super::wire::{RefOp, Request, Response};
use object::{
    Caller, ConnId, Dict, Event, List, Lock, Namespace, Object, Queue, User, Value, args, lock,
};
use table::{Slot, Table};

/// The server's state, shared by its connections' threads.
pub(crate) struct Server {
    table: Mutex<Table>,
    names: Mutex<HashMap<String, u64>>,
    next_id: AtomicU64,
    next_conn: AtomicU64,
    registry: Registry,
    incarnation: u64,
}

impl Server {
    pub(crate) fn new(registry: Registry) -> Server {
        Server {
            table: Mutex::default(),
            names: Mutex::default(),
            next_id: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            registry,
            incarnation: crate::sync::secret(),
        }
    }

    /// Creates an object whose first reference is `owner`'s (`None`: pinned, for
    /// one published at start).
    fn create(&self, typeid: &str, a: &[u8], owner: Option<ConnId>) -> Result<u64, ManagerError> {
        if let Some(owner) = owner
            && !lock(&self.table).held.contains_key(&owner)
        {
            // Its process's reference link closed (the process is going away): an
            // object made now would have nobody to free it.
            return Err(ManagerError::Gone(
                "the creating process's reference link is closed".into(),
            ));
        }
        let object: Arc<dyn Object> = match typeid {
            "dict" => {
                let (items,): (Vec<(ByteBuf, ByteBuf)>,) = args("dict", a)?;
                Arc::new(Dict::new(items))
            }
            "list" => {
                let (items,): (Vec<ByteBuf>,) = args("list", a)?;
                Arc::new(List {
                    items: Mutex::new(items),
                })
            }
            "namespace" => Arc::new(Namespace::default()),
            "queue" => {
                let (maxsize,): (u64,) = args("queue", a)?;
                Arc::new(Queue::new(maxsize as usize))
            }
            "lock" => Arc::new(Lock::default()),
            "event" => Arc::new(Event::default()),
            "value" => {
                let (v,): (ByteBuf,) = args("value", a)?;
                Arc::new(Value {
                    value: Mutex::new(v),
                })
            }
            other => {
                let ty = self
                    .registry
                    .types
                    .get(other)
                    .ok_or_else(|| ManagerError::UnknownType(other.to_string()))?;
                let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (ty.make)(a)))
                    .unwrap_or_else(|panic| {
                        Err(ManagerError::Failed {
                            typeid: other.to_string(),
                            method: "new".into(),
                            message: crate::runtime::panic::panic_message(&*panic),
                        })
                    })?;
                Arc::new(User {
                    typeid: other.to_string(),
                    ty: Arc::clone(ty),
                    value: Mutex::new(value),
                })
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut table = lock(&self.table);
        let slot = Slot {
            object,
            held: u64::from(owner.is_some()),
            lent: 0,
            pinned: owner.is_none(),
        };
        if let Some(owner) = owner {
            let Some(mine) = table.held.get_mut(&owner) else {
                // It closed while the object was being made.
                return Err(ManagerError::Gone(
                    "the creating process's reference link is closed".into(),
                ));
            };
            mine.insert(id, 1);
        }
        table.slots.insert(id, slot);
        Ok(id)
    }

    /// Creates an object and publishes it as `name`.
    pub(crate) fn publish_new(
        &self,
        name: &str,
        typeid: &str,
        a: &[u8],
    ) -> Result<(), ManagerError> {
        let id = self.create(typeid, a, None)?;
        lock(&self.names).insert(name.to_string(), id);
        Ok(())
    }

    pub(super) fn object(&self, id: u64) -> Result<Arc<dyn Object>, ManagerError> {
        lock(&self.table)
            .slots
            .get(&id)
            .map(|s| Arc::clone(&s.object))
            .ok_or(ManagerError::UnknownObject(id))
    }
}

/// The manager fuzz target's body: decodes `bytes` as [`Server::serve`] decodes a
/// request, and serves it on a new server holding one object of each built-in type
/// (numbered 1 to 7: dict, list, namespace, queue, lock, event, value; the queue holds
/// one item and is full), for a caller that has hung up, so that a request that
/// waits gives up within [`WATCH`].
///
/// # Errors
///
/// [`ManagerError::Decode`] for bytes that are not a request, else the fault the
/// server answered with.
pub(crate) fn fuzz_request(bytes: &[u8]) -> Result<(), ManagerError> {
    let request =
        codec::decode::<Request>(bytes).map_err(|e| ManagerError::Decode(e.to_string()))?;
    let item = || ByteBuf::from(vec![0x2a]);
    let seed: [(&str, Result<Vec<u8>, _>); 7] = [
        ("dict", codec::encode(&(vec![(item(), item())],))),
        ("list", codec::encode(&(vec![item()],))),
        ("namespace", codec::encode(&())),
        ("queue", codec::encode(&(1u64,))),
        ("lock", codec::encode(&())),
        ("event", codec::encode(&())),
        ("value", codec::encode(&(item(),))),
    ];
    let server = Server::new(Registry::default());
    for (typeid, a) in seed {
        // Pinned: nothing in the fuzzed request may free the seed objects.
        server.create(
            typeid,
            &a.map_err(|e| ManagerError::Encode(e.to_string()))?,
            None,
        )?;
    }
    let (ours, theirs) = multiproc_transport::blocking_pipe(true)?;
    drop(theirs);
    let caller = Caller {
        conn: 1,
        link: &ours,
    };
    let put = codec::encode(&(item(), false, None::<u64>))
        .map_err(|e| ManagerError::Encode(e.to_string()))?;
    server.object(4)?.call(&caller, "put", &put)?;
    match server.handle(&caller, request) {
        Response::Fault(e) => Err(e),
        _ => Ok(()),
    }
}
