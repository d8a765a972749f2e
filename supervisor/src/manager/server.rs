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

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc_core::codec;
use multiproc_transport::{BlockingConnection, Error as TransportError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use super::channel::Channel;
use super::wire::{RefOp, Request, Response};
use super::{ManagerError, Registry, UserType};

/// A connection's number, to know who holds a lock.
pub(crate) type ConnId = u64;

/// How often a waiting request looks whether its caller is still there.
const WATCH: Duration = Duration::from_millis(50);

/// Who made a request, to watch while it waits.
pub(crate) struct Caller<'a> {
    pub(crate) conn: ConnId,
    pub(crate) link: &'a BlockingConnection,
}

impl Caller<'_> {
    /// Whether the caller's end is closed (its process died, or it hung up).
    fn gone(&self) -> bool {
        super::channel::peer_gone(self.link)
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

fn args<A: DeserializeOwned>(method: &str, bytes: &[u8]) -> Result<A, ManagerError> {
    codec::decode(bytes).map_err(|e| ManagerError::Args {
        method: method.to_string(),
        message: e.to_string(),
    })
}

fn ret<R: Serialize>(r: &R) -> Result<Vec<u8>, ManagerError> {
    codec::encode(r).map_err(|e| ManagerError::Encode(e.to_string()))
}

fn unknown(typeid: &str, method: &str) -> ManagerError {
    ManagerError::UnknownMethod {
        typeid: typeid.to_string(),
        method: method.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` until `ready` gives a value, `deadline` passes (`None`), or the
/// caller goes away (an error).
fn wait_until<'m, S, T>(
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
fn deadline(block: bool, timeout_ms: Option<u64>) -> Option<Instant> {
    if !block {
        return Some(Instant::now());
    }
    timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms))
}

/// A dict that keeps insertion order, keyed by encoded keys.
#[derive(Default)]
struct Dict {
    map: Mutex<OrderedMap>,
}

#[derive(Default)]
struct OrderedMap {
    index: HashMap<ByteBuf, usize>,
    entries: Vec<Option<(ByteBuf, ByteBuf)>>,
}

impl OrderedMap {
    fn set(&mut self, k: ByteBuf, v: ByteBuf) {
        match self.index.get(&k) {
            Some(&i) => self.entries[i] = Some((k, v)),
            None => {
                self.index.insert(k.clone(), self.entries.len());
                self.entries.push(Some((k, v)));
            }
        }
    }

    fn get(&self, k: &ByteBuf) -> Option<&ByteBuf> {
        let i = *self.index.get(k)?;
        self.entries[i].as_ref().map(|(_, v)| v)
    }

    fn remove(&mut self, k: &ByteBuf) -> Option<ByteBuf> {
        let i = self.index.remove(k)?;
        let out = self.entries[i].take().map(|(_, v)| v);
        // Compact when most slots are holes.
        if self.entries.len() > 32 && self.index.len() * 2 < self.entries.len() {
            let live: Vec<(ByteBuf, ByteBuf)> = self.entries.drain(..).flatten().collect();
            self.index.clear();
            for (k, v) in live {
                self.set(k, v);
            }
        }
        out
    }

    fn iter(&self) -> impl Iterator<Item = &(ByteBuf, ByteBuf)> {
        self.entries.iter().flatten()
    }
}

impl Object for Dict {
    fn typeid(&self) -> &str {
        "dict"
    }

    fn call(&self, _: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let mut m = lock(&self.map);
        match method {
            "set" => {
                let (k, v): (ByteBuf, ByteBuf) = args(method, a)?;
                m.set(k, v);
                ret(&())
            }
            "get" => {
                let (k,): (ByteBuf,) = args(method, a)?;
                ret(&m.get(&k))
            }
            "remove" => {
                let (k,): (ByteBuf,) = args(method, a)?;
                ret(&m.remove(&k))
            }
            "contains" => {
                let (k,): (ByteBuf,) = args(method, a)?;
                ret(&m.index.contains_key(&k))
            }
            "len" => ret(&(m.index.len() as u64)),
            "keys" => ret(&m.iter().map(|(k, _)| k).collect::<Vec<_>>()),
            "values" => ret(&m.iter().map(|(_, v)| v).collect::<Vec<_>>()),
            "items" => ret(&m.iter().collect::<Vec<_>>()),
            "clear" => {
                *m = OrderedMap::default();
                ret(&())
            }
            "update" => {
                let (items,): (Vec<(ByteBuf, ByteBuf)>,) = args(method, a)?;
                for (k, v) in items {
                    m.set(k, v);
                }
                ret(&())
            }
            _ => Err(unknown("dict", method)),
        }
    }
}

/// A list of encoded items.
#[derive(Default)]
struct List {
    items: Mutex<Vec<ByteBuf>>,
}

/// Python's index rules: negative from the end; out of range is an error.
fn index(i: i64, len: usize) -> Result<usize, ManagerError> {
    let j = if i < 0 { i + len as i64 } else { i };
    if j < 0 || j as usize >= len {
        return Err(ManagerError::Index { index: i, len });
    }
    Ok(j as usize)
}

impl Object for List {
    fn typeid(&self) -> &str {
        "list"
    }

    fn call(&self, _: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let mut items = lock(&self.items);
        match method {
            "append" => {
                let (v,): (ByteBuf,) = args(method, a)?;
                items.push(v);
                ret(&())
            }
            "extend" => {
                let (vs,): (Vec<ByteBuf>,) = args(method, a)?;
                items.extend(vs);
                ret(&())
            }
            "get" => {
                let (i,): (i64,) = args(method, a)?;
                let j = index(i, items.len())?;
                ret(&items[j])
            }
            "set" => {
                let (i, v): (i64, ByteBuf) = args(method, a)?;
                let j = index(i, items.len())?;
                items[j] = v;
                ret(&())
            }
            "insert" => {
                let (i, v): (i64, ByteBuf) = args(method, a)?;
                let len = items.len() as i64;
                // Python clamps an insert position.
                let j = if i < 0 { (i + len).max(0) } else { i.min(len) };
                items.insert(j as usize, v);
                ret(&())
            }
            "pop" => {
                let (i,): (Option<i64>,) = args(method, a)?;
                let j = index(i.unwrap_or(-1), items.len())?;
                ret(&items.remove(j))
            }
            "len" => ret(&(items.len() as u64)),
            "items" => ret(&*items),
            "reverse" => {
                items.reverse();
                ret(&())
            }
            "clear" => {
                items.clear();
                ret(&())
            }
            _ => Err(unknown("list", method)),
        }
    }
}

/// Attributes by name.
#[derive(Default)]
struct Namespace {
    attrs: Mutex<Vec<(String, ByteBuf)>>,
}

impl Object for Namespace {
    fn typeid(&self) -> &str {
        "namespace"
    }

    fn call(&self, _: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let mut attrs = lock(&self.attrs);
        match method {
            "set" => {
                let (name, v): (String, ByteBuf) = args(method, a)?;
                match attrs.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = v,
                    None => attrs.push((name, v)),
                }
                ret(&())
            }
            "get" => {
                let (name,): (String,) = args(method, a)?;
                ret(&attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| v))
            }
            "del" => {
                let (name,): (String,) = args(method, a)?;
                let before = attrs.len();
                attrs.retain(|(n, _)| *n != name);
                ret(&(attrs.len() != before))
            }
            "items" => ret(&*attrs),
            _ => Err(unknown("namespace", method)),
        }
    }
}

/// Python's `queue.Queue`, which a manager's `Queue()` is.
struct Queue {
    state: Mutex<QueueState>,
    maxsize: usize,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<ByteBuf>,
    unfinished: u64,
}

impl Object for Queue {
    fn typeid(&self) -> &str {
        "queue"
    }

    fn call(&self, caller: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let state = lock(&self.state);
        match method {
            "put" => {
                let (item, block, timeout_ms): (ByteBuf, bool, Option<u64>) = args(method, a)?;
                let full = |s: &mut QueueState| self.maxsize != 0 && s.items.len() >= self.maxsize;
                let (mut state, room) = wait_until(
                    caller,
                    state,
                    &self.not_full,
                    deadline(block, timeout_ms),
                    |s| (!full(s)).then_some(()),
                )?;
                if room.is_none() {
                    return Err(ManagerError::Full);
                }
                state.items.push_back(item);
                state.unfinished += 1;
                self.not_empty.notify_one();
                ret(&())
            }
            "get" => {
                let (block, timeout_ms): (bool, Option<u64>) = args(method, a)?;
                let (_state, item) = wait_until(
                    caller,
                    state,
                    &self.not_empty,
                    deadline(block, timeout_ms),
                    |s| s.items.pop_front(),
                )?;
                let item = item.ok_or(ManagerError::Empty)?;
                self.not_full.notify_one();
                ret(&item)
            }
            "qsize" => ret(&(state.items.len() as u64)),
            "task_done" => {
                let mut state = state;
                if state.unfinished == 0 {
                    return Err(ManagerError::Misuse(
                        "task_done() called too many times".into(),
                    ));
                }
                state.unfinished -= 1;
                if state.unfinished == 0 {
                    self.all_done.notify_all();
                }
                ret(&())
            }
            "join" => {
                let (timeout_ms,): (Option<u64>,) = args(method, a)?;
                let (_state, done) = wait_until(
                    caller,
                    state,
                    &self.all_done,
                    deadline(true, timeout_ms),
                    |s| (s.unfinished == 0).then_some(()),
                )?;
                ret(&done.is_some())
            }
            _ => Err(unknown("queue", method)),
        }
    }
}

/// Python's `threading.Lock`, which a manager's `Lock()` is; released when the
/// connection that holds it closes.
#[derive(Default)]
struct Lock {
    state: Mutex<LockState>,
    free: Condvar,
}

#[derive(Default)]
struct LockState {
    holder: Option<ConnId>,
    /// The last holder's connection closed while it held the lock.
    died: bool,
}

impl Object for Lock {
    fn typeid(&self) -> &str {
        "lock"
    }

    fn call(&self, caller: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let state = lock(&self.state);
        match method {
            "acquire" => {
                let (block, timeout_ms): (bool, Option<u64>) = args(method, a)?;
                let (mut state, got) = wait_until(
                    caller,
                    state,
                    &self.free,
                    deadline(block, timeout_ms),
                    |s| s.holder.is_none().then_some(()),
                )?;
                if got.is_none() {
                    return ret(&(false, false));
                }
                state.holder = Some(caller.conn);
                let died = std::mem::take(&mut state.died);
                ret(&(true, died))
            }
            "release" => {
                let mut state = state;
                if state.holder.take().is_none() {
                    return Err(ManagerError::Misuse("release unlocked lock".into()));
                }
                self.free.notify_one();
                ret(&())
            }
            "locked" => ret(&state.holder.is_some()),
            _ => Err(unknown("lock", method)),
        }
    }

    fn disconnected(&self, conn: ConnId) {
        let mut state = lock(&self.state);
        if state.holder == Some(conn) {
            state.holder = None;
            state.died = true;
            self.free.notify_one();
        }
    }
}

/// Python's `threading.Event`.
#[derive(Default)]
struct Event {
    flag: Mutex<bool>,
    set: Condvar,
}

impl Object for Event {
    fn typeid(&self) -> &str {
        "event"
    }

    fn call(&self, caller: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let mut flag = lock(&self.flag);
        match method {
            "set" => {
                *flag = true;
                self.set.notify_all();
                ret(&())
            }
            "clear" => {
                *flag = false;
                ret(&())
            }
            "is_set" => ret(&*flag),
            "wait" => {
                let (timeout_ms,): (Option<u64>,) = args(method, a)?;
                let (_flag, set) =
                    wait_until(caller, flag, &self.set, deadline(true, timeout_ms), |f| {
                        f.then_some(())
                    })?;
                ret(&set.is_some())
            }
            _ => Err(unknown("event", method)),
        }
    }
}

/// One encoded value.
struct Value {
    value: Mutex<ByteBuf>,
}

impl Object for Value {
    fn typeid(&self) -> &str {
        "value"
    }

    fn call(&self, _: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let mut value = lock(&self.value);
        match method {
            "get" => ret(&*value),
            "set" => {
                let (v,): (ByteBuf,) = args(method, a)?;
                *value = v;
                ret(&())
            }
            _ => Err(unknown("value", method)),
        }
    }
}

/// An object of a user-registered type.
struct User {
    typeid: String,
    ty: Arc<UserType>,
    value: Mutex<Box<dyn Any + Send>>,
}

impl Object for User {
    fn typeid(&self) -> &str {
        &self.typeid
    }

    fn call(&self, _: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let m = self
            .ty
            .methods
            .get(method)
            .ok_or_else(|| unknown(&self.typeid, method))?;
        let mut value = lock(&self.value);
        let out =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m(&mut **value, method, a)));
        out.unwrap_or_else(|panic| {
            Err(ManagerError::Failed {
                typeid: self.typeid.clone(),
                method: method.to_string(),
                message: crate::runtime::bootstrap::panic_message(&*panic),
            })
        })
    }
}

/// One served object and who keeps it.
struct Slot {
    object: Arc<dyn Object>,
    /// References held by live connections (the sum of their counts in `held`).
    held: u64,
    /// Credits of encoded proxies not decoded yet.
    lent: u64,
    /// Published under a name: kept until the server stops.
    pinned: bool,
}

impl Slot {
    fn is_free(&self) -> bool {
        self.held == 0 && self.lent == 0 && !self.pinned
    }
}

/// The objects, and each reference link's references (Python's `id_to_obj` and
/// `id_to_refcount`, with the holders written down so that a dead process's
/// references go with it).
#[derive(Default)]
struct Table {
    slots: HashMap<u64, Slot>,
    /// Reference links (by connection) and how many references each holds, by object.
    held: HashMap<ConnId, HashMap<u64, u64>>,
}

impl Table {
    /// Takes one of `conn`'s references to `id`; the object when it was the last.
    fn release(&mut self, conn: ConnId, id: u64) -> Option<Arc<dyn Object>> {
        let mine = self.held.get_mut(&conn)?;
        let n = mine.get_mut(&id)?;
        *n -= 1;
        if *n == 0 {
            mine.remove(&id);
        }
        let slot = self.slots.get_mut(&id)?;
        slot.held -= 1;
        if slot.is_free() {
            return self.slots.remove(&id).map(|s| s.object);
        }
        None
    }

    /// Gives `conn` a reference to `id`, paid with a lent credit if `credit` and
    /// there is one. An object already freed is not brought back.
    fn take(&mut self, conn: ConnId, id: u64, credit: bool) {
        let Some(mine) = self.held.get_mut(&conn) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        // More decodes than encodes (bytes decoded twice) find no credit: the extra
        // copies hold references of their own, as Python's unpickling increfs.
        if credit && slot.lent > 0 {
            slot.lent -= 1;
        }
        slot.held += 1;
        *mine.entry(id).or_insert(0) += 1;
    }
}

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
                let d = Dict::default();
                {
                    let mut m = lock(&d.map);
                    for (k, v) in items {
                        m.set(k, v);
                    }
                }
                Arc::new(d)
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
                Arc::new(Queue {
                    state: Mutex::default(),
                    maxsize: maxsize as usize,
                    not_empty: Condvar::new(),
                    not_full: Condvar::new(),
                    all_done: Condvar::new(),
                })
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
                            message: crate::runtime::bootstrap::panic_message(&*panic),
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

    fn object(&self, id: u64) -> Result<Arc<dyn Object>, ManagerError> {
        lock(&self.table)
            .slots
            .get(&id)
            .map(|s| Arc::clone(&s.object))
            .ok_or(ManagerError::UnknownObject(id))
    }

    /// Applies a reference link's changes, in order.
    fn refs(&self, conn: ConnId, ops: &[RefOp]) -> Result<(), ManagerError> {
        let mut freed = Vec::new();
        {
            let mut table = lock(&self.table);
            if !table.held.contains_key(&conn) {
                return Err(ManagerError::Misuse(
                    "reference changes on a connection that is not a reference link".into(),
                ));
            }
            for op in ops {
                match *op {
                    RefOp::Accept(id) => table.take(conn, id, true),
                    RefOp::Share(id) => table.take(conn, id, false),
                    RefOp::Release(id) => freed.extend(table.release(conn, id)),
                }
            }
        }
        // Dropped outside the table's lock: a user type's drop may take long, or
        // drop proxies of its own.
        drop(freed);
        Ok(())
    }

    /// `conn` closed: the references it held go, as its process dropping them.
    fn forget(&self, conn: ConnId) {
        let mut freed = Vec::new();
        {
            let mut table = lock(&self.table);
            let Some(mine) = table.held.remove(&conn) else {
                return;
            };
            for (id, n) in mine {
                if let Some(slot) = table.slots.get_mut(&id) {
                    slot.held -= n;
                    if slot.is_free() {
                        freed.extend(table.slots.remove(&id).map(|s| s.object));
                    }
                }
            }
        }
        drop(freed);
    }

    fn handle(&self, caller: &Caller<'_>, request: Request) -> Response {
        let out = match request {
            Request::Hello => Ok(Response::Hello {
                incarnation: self.incarnation,
            }),
            Request::Create {
                typeid,
                args,
                owner,
            } => self
                .create(&typeid, &args, Some(owner))
                .map(|id| Response::Created { id }),
            Request::Owner => {
                lock(&self.table).held.entry(caller.conn).or_default();
                Ok(Response::Owner { conn: caller.conn })
            }
            Request::Lend { id } => match lock(&self.table).slots.get_mut(&id) {
                Some(slot) => {
                    slot.lent += 1;
                    Ok(Response::Done)
                }
                None => Err(ManagerError::UnknownObject(id)),
            },
            Request::Refs { ops } => self.refs(caller.conn, &ops).map(|()| Response::Done),
            Request::Count => Ok(Response::Count {
                objects: lock(&self.table).slots.len() as u64,
            }),
            Request::Call { id, method, args } => self
                .object(id)
                .and_then(|o| o.call(caller, &method, &args))
                .map(|v| Response::Value(ByteBuf::from(v))),
            Request::Publish { name, id } => match lock(&self.table).slots.get_mut(&id) {
                Some(slot) => {
                    // A name is for ever (names are never taken back).
                    slot.pinned = true;
                    lock(&self.names).insert(name, id);
                    Ok(Response::Done)
                }
                None => Err(ManagerError::UnknownObject(id)),
            },
            Request::Lookup { name } => {
                let id = lock(&self.names).get(&name).copied();
                match id {
                    None => Err(ManagerError::UnknownName(name)),
                    Some(id) => self.object(id).map(|o| Response::Object {
                        id,
                        typeid: o.typeid().to_string(),
                    }),
                }
            }
            Request::Shutdown => Ok(Response::Done),
            Request::Upgrade { .. } => {
                Err(ManagerError::Decode("the link is upgraded already".into()))
            }
        };
        out.unwrap_or_else(Response::Fault)
    }

    /// Serves one authenticated connection until it closes.
    pub(crate) fn serve(self: Arc<Self>, mut conn: BlockingConnection) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut fast: Option<Channel> = None;
        let mut buf = Vec::new();
        loop {
            let request = match &fast {
                None => match conn.recv::<Request>() {
                    Ok(r) => Ok(r),
                    Err(TransportError::Decode(e)) => Err(ManagerError::Decode(e.to_string())),
                    Err(_) => break,
                },
                Some(ch) => {
                    if ch.recv(&mut buf, &mut conn).is_err() {
                        break;
                    }
                    codec::decode::<Request>(&buf).map_err(|e| ManagerError::Decode(e.to_string()))
                }
            };
            let (response, shutdown) = match request {
                // A request of another shape: an error for it, the link goes on.
                Err(e) => (Response::Fault(e), false),
                Ok(Request::Upgrade { rings }) if fast.is_none() => match Channel::open(rings) {
                    Ok(ch) => {
                        // Answered on the socket; what follows is in the rings.
                        if conn.send(&Response::Done).is_err() {
                            break;
                        }
                        fast = Some(ch);
                        continue;
                    }
                    Err(e) => (Response::Fault(e), false),
                },
                Ok(request) => {
                    let shutdown = matches!(request, Request::Shutdown);
                    (
                        self.handle(
                            &Caller {
                                conn: id,
                                link: &conn,
                            },
                            request,
                        ),
                        shutdown,
                    )
                }
            };
            let sent = match &fast {
                None => conn.send(&response).map_err(ManagerError::from),
                Some(ch) => {
                    buf.clear();
                    codec::encode_into(&response, &mut buf)
                        .map_err(|e| ManagerError::Encode(e.to_string()))
                        .and_then(|()| ch.send(&buf, &mut conn))
                }
            };
            if sent.is_err() {
                break;
            }
            if shutdown {
                tracing::debug!("manager shut down by its owner");
                std::process::exit(0);
            }
        }
        self.forget(id);
        let objects: Vec<Arc<dyn Object>> = lock(&self.table)
            .slots
            .values()
            .map(|s| Arc::clone(&s.object))
            .collect();
        for o in objects {
            o.disconnected(id);
        }
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
