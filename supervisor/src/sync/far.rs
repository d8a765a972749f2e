//! Queues, locks and events used from another node, through the process that placed
//! the user there.
//!
//! A process on a node shares no memory with the host of a primitive, so its handle
//! is *far*: it names the primitive (`FarKey`) and every operation travels. The
//! operation goes up the node's tree to the node program (each process forwards it
//! to its parent), the node relays it over the node session to the *gateway* of the
//! root that placed the process (`node/relay.rs`), and the gateway runs it on a
//! real handle of the primitive, in the root, as any local user would.
//!
//! # Export
//!
//! A process started with [`Process::on`](crate::Process::on) has its arguments
//! encoded twice when they hold such a handle: for here, and *far*. In the far
//! encoding a handle is its key only (no handle is lent, see `refs`), and a real
//! clone of it is collected; `start_on` gives the clones to the gateway, bound to
//! the placed process and its node's token. The gateway answers a node only for the
//! keys exported to it, and drops them when the placed process exits.
//!
//! # Death
//!
//! A lock taken by the gateway for a far process is held by the root in the lock's
//! word. When the placed process exits holding it, or its node goes down, the
//! gateway frees it as a dead holder's: the next acquirer gets `OwnerDied`. An
//! operation waiting at the gateway when its process exits is cancelled (every
//! wait here is cancel-safe). On the node, an operation in flight when the root is
//! lost fails with `SyncError::Node(NodeError::NodeDown { .. })`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use multiproc_core::queue::QueueError;
use multiproc_core::sync::Misuse;
use multiproc_core::{Body, Envelope, Identity, NodeError, RemoteError, codec};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::wire::{Op, Request};
use super::{Event, Lock, Queue, SyncError};
use crate::runtime::current::me;
use crate::runtime::router;

/// Names a primitive at its root: its host, id and secret (as its handles do).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct FarKey {
    owner: Identity,
    id: u64,
    secret: u64,
}

impl FarKey {
    pub(super) fn of(addr: &super::Addr) -> FarKey {
        FarKey {
            owner: addr.owner.clone(),
            id: addr.id,
            secret: addr.secret,
        }
    }
}

/// A handle on a node: its operations travel to the root's gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Far {
    key: FarKey,
}

/// A handle here, or far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Side<H> {
    Here(H),
    Far(Far),
}

#[derive(Serialize)]
enum WireRef<'a, H> {
    Here(&'a H),
    Far(&'a FarKey),
}

#[derive(Deserialize)]
enum Wire<H> {
    Here(H),
    Far(FarKey),
}

/// A real handle the gateway runs operations on.
#[derive(Debug, Clone)]
pub(crate) enum Obj {
    Lock(Lock),
    Event(Event),
    Queue(Queue<()>),
}

/// What a far encoding collected.
struct Collect {
    objs: Vec<(FarKey, Obj)>,
}

thread_local! {
    static COLLECT: RefCell<Option<Collect>> = const { RefCell::new(None) };
    /// Handles this thread serialized that a far encoding would carry.
    static FARABLE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Whether this thread is encoding for a node (a handle to a one-machine object
/// lends nothing then: those bytes never reach a process of this tree).
pub(crate) fn encoding_far() -> bool {
    COLLECT.with(|c| c.borrow().is_some())
}

/// Runs `f` (an encoding) and says whether it serialized a handle that can be
/// used from a node.
pub(crate) fn farable_in<R>(f: impl FnOnce() -> R) -> (R, bool) {
    let before = FARABLE.get();
    let out = f();
    (out, FARABLE.get() != before)
}

/// The one-machine types named in `type_name` (the arguments' type), for the error
/// that refuses them: "a Value or RLock". Empty when the type does not tell (a
/// handle inside a struct of the caller's).
pub(crate) fn one_machine_types(type_name: &str) -> String {
    const ONE_MACHINE: [&str; 8] = [
        "Value",
        "Array",
        "SharedMemory",
        "RLock",
        "BoundedSemaphore",
        "Semaphore",
        "Condition",
        "Barrier",
    ];
    // Path segments of the type's name: `multiproc_supervisor::shared::value::Value<u64>`.
    let words: Vec<&str> = type_name
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .collect();
    let found: Vec<&str> = ONE_MACHINE
        .into_iter()
        .filter(|t| words.contains(t))
        .collect();
    let list = match found.as_slice() {
        [] => return String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    };
    let article = if list.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {list}")
}

/// Runs `f` (an encoding) in the far encoding: the handles it meets are encoded as
/// keys, and their clones are returned, to export.
pub(crate) fn encode_far<R>(f: impl FnOnce() -> R) -> (R, Vec<(FarKey, Obj)>) {
    let outer = COLLECT.with(|c| c.replace(Some(Collect { objs: Vec::new() })));
    let out = f();
    let collected = COLLECT.with(|c| c.replace(outer));
    (out, collected.map(|c| c.objs).unwrap_or_default())
}

pub(super) fn serialize<H: Serialize, S: serde::Serializer>(
    side: &Side<H>,
    export: impl FnOnce() -> (FarKey, Obj),
    s: S,
) -> Result<S::Ok, S::Error> {
    match side {
        Side::Far(far) => WireRef::<H>::Far(&far.key).serialize(s),
        Side::Here(here) => {
            let far = COLLECT.with(|c| {
                c.borrow_mut().as_mut().map(|c| {
                    let (key, obj) = export();
                    c.objs.push((key.clone(), obj));
                    key
                })
            });
            match far {
                Some(key) => WireRef::<H>::Far(&key).serialize(s),
                None => {
                    FARABLE.set(FARABLE.get() + 1);
                    WireRef::Here(here).serialize(s)
                }
            }
        }
    }
}

pub(super) fn deserialize<'de, H: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Side<H>, D::Error> {
    Ok(match Wire::<H>::deserialize(d)? {
        Wire::Here(h) => Side::Here(h),
        Wire::Far(key) => Side::Far(Far { key }),
    })
}

/// An operation on a far primitive.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FarOp {
    Acquire {
        block: bool,
        timeout: Option<Duration>,
    },
    Release,
    Locked,
    Set,
    Clear,
    IsSet,
    Wait {
        timeout: Option<Duration>,
    },
    Put {
        #[serde(with = "serde_bytes")]
        item: Vec<u8>,
        block: bool,
        timeout: Option<Duration>,
    },
    Get {
        block: bool,
        timeout: Option<Duration>,
    },
    Size,
    TaskDone,
    Join,
}

/// What travels from a far handle to the gateway.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FarCall {
    key: FarKey,
    /// The asking process's pid on its node: who holds a lock it takes.
    pid: u32,
    op: FarOp,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FarValue {
    Bool(bool),
    Done,
    Item(#[serde(with = "serde_bytes")] Vec<u8>),
    Size { size: usize, full: bool },
}

/// A far operation's failure, as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum FarError {
    OwnerDied,
    Full,
    Empty,
    Misuse(Misuse),
    Queue(QueueError),
    OwnerGone(Identity),
    TooLarge {
        len: usize,
        capacity: usize,
    },
    Forged,
    /// The key was not exported to this node, or its process has exited.
    NotExported,
    NodeDown {
        node: String,
        why: String,
    },
    /// Anything else, formatted where it happened.
    Failed(String),
}

pub(crate) type FarReply = Result<FarValue, FarError>;

impl From<SyncError> for FarError {
    fn from(e: SyncError) -> FarError {
        match e {
            SyncError::OwnerDied => FarError::OwnerDied,
            SyncError::Full => FarError::Full,
            SyncError::Empty => FarError::Empty,
            SyncError::Misuse(m) => FarError::Misuse(m),
            SyncError::Queue(q) => FarError::Queue(q),
            SyncError::OwnerGone(id) => FarError::OwnerGone(id),
            SyncError::TooLarge { len, capacity } => FarError::TooLarge { len, capacity },
            SyncError::Forged => FarError::Forged,
            SyncError::Node(NodeError::NodeDown { node, why }) => FarError::NodeDown { node, why },
            e => FarError::Failed(e.to_string()),
        }
    }
}

impl From<FarError> for SyncError {
    fn from(e: FarError) -> SyncError {
        match e {
            FarError::OwnerDied => SyncError::OwnerDied,
            FarError::Full => SyncError::Full,
            FarError::Empty => SyncError::Empty,
            FarError::Misuse(m) => SyncError::Misuse(m),
            FarError::Queue(q) => SyncError::Queue(q),
            FarError::OwnerGone(id) => SyncError::OwnerGone(id),
            FarError::TooLarge { len, capacity } => SyncError::TooLarge { len, capacity },
            FarError::Forged | FarError::NotExported => SyncError::Forged,
            FarError::NodeDown { node, why } => SyncError::Node(NodeError::NodeDown { node, why }),
            FarError::Failed(message) => SyncError::Node(NodeError::Remote {
                node: "(the root)".to_string(),
                message,
            }),
        }
    }
}

// ---------------------------------------------------------------------------------
// The far side: a handle on a node.

impl Far {
    /// Runs `op` at the root's gateway.
    pub(super) async fn ask(&self, op: FarOp) -> Result<FarValue, SyncError> {
        let call = FarCall {
            key: self.key.clone(),
            pid: crate::runtime::shm::my_pid(),
            op,
        };
        let call = codec::encode(&call).map_err(SyncError::Encode)?;
        let request = Request {
            prim: 0,
            secret: 0,
            op: Op::Far(call),
        };
        let bytes = codec::encode(&request).map_err(SyncError::Encode)?;
        let Some(up) = me().parent.as_ref().map(|p| p.identity.clone()) else {
            return Err(not_on_node());
        };
        let corr = router::next_corr();
        let rx = router::expect_reply(corr);
        router::route(Envelope {
            to: up,
            from: me().identity.clone(),
            corr,
            body: Body::Service(bytes),
        });
        match rx.await {
            Body::Reply(bytes) => codec::decode::<FarReply>(&bytes)
                .map_err(SyncError::Decode)?
                .map_err(SyncError::from),
            Body::Fail(e) => Err(SyncError::Remote(e)),
            _ => Err(SyncError::Remote(RemoteError::Decode(
                "a request came back".into(),
            ))),
        }
    }

    pub(super) async fn bool(&self, op: FarOp) -> Result<bool, SyncError> {
        match self.ask(op).await? {
            FarValue::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn done(&self, op: FarOp) -> Result<(), SyncError> {
        match self.ask(op).await? {
            FarValue::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn item(&self, op: FarOp) -> Result<Vec<u8>, SyncError> {
        match self.ask(op).await? {
            FarValue::Item(bytes) => Ok(bytes),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn size(&self) -> Result<(usize, bool), SyncError> {
        match self.ask(FarOp::Size).await? {
            FarValue::Size { size, full } => Ok((size, full)),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(value: FarValue) -> SyncError {
    SyncError::Remote(RemoteError::Decode(format!(
        "unexpected far answer {value:?}"
    )))
}

fn not_on_node() -> SyncError {
    SyncError::Node(NodeError::Remote {
        node: "(none)".to_string(),
        message: "a far handle used outside the node tree it was sent to".to_string(),
    })
}

/// A far operation reached this process, on its way to the node program: the
/// node relays it, any other process passes it to its parent.
pub(super) fn forward(env: Envelope, call: Vec<u8>) {
    if crate::node::relay::is_node() {
        crate::node::relay::relay(env, call);
        return;
    }
    match me().parent.as_ref() {
        Some(parent) => {
            let request = Request {
                prim: 0,
                secret: 0,
                op: Op::Far(call),
            };
            let Ok(bytes) = codec::encode(&request) else {
                return;
            };
            router::route(Envelope {
                to: parent.identity.clone(),
                from: env.from,
                corr: env.corr,
                body: Body::Service(bytes),
            });
        }
        None => answer(&env.from, env.corr, &Err(FarError::from(not_on_node()))),
    }
}

/// Sends a far operation's answer to the process that asked.
pub(crate) fn answer(to: &Identity, corr: u64, reply: &FarReply) {
    let body = match codec::encode(reply) {
        Ok(bytes) => Body::Reply(bytes),
        Err(e) => Body::Fail(RemoteError::Encode(e.to_string())),
    };
    router::route(Envelope {
        to: to.clone(),
        from: me().identity.clone(),
        corr,
        body,
    });
}

// ---------------------------------------------------------------------------------
// The gateway, in the root.

/// A primitive exported to one node (by its token there).
struct Entry {
    obj: Obj,
    /// The placed processes it was exported with, still running.
    bindings: usize,
    /// The far pid that holds it (a lock taken through the gateway).
    held: Option<u32>,
    /// Turns true when the entry goes: the operations waiting on it stop.
    gone: watch::Sender<bool>,
}

fn exports() -> MutexGuard<'static, HashMap<(FarKey, u64), Entry>> {
    static EXPORTS: OnceLock<Mutex<HashMap<(FarKey, u64), Entry>>> = OnceLock::new();
    EXPORTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

impl Obj {
    fn addr(&self) -> Option<&super::Addr> {
        match self {
            Obj::Lock(l) => l.addr(),
            Obj::Event(e) => e.addr(),
            Obj::Queue(q) => q.addr(),
        }
    }
}

/// Takes back the credits that the local encoding of `objs` lent their hosts.
pub(crate) fn reclaim(objs: &[(FarKey, Obj)]) {
    for (_, obj) in objs {
        if let Some(addr) = obj.addr() {
            addr.tell(Op::Claim);
        }
    }
}

/// Primitives exported to a node for a process about to start there: exported
/// before it starts (it may use them at once), bound to its exit once it runs, and
/// withdrawn if it does not start.
#[derive(Debug)]
pub(crate) struct Exported {
    keys: Vec<FarKey>,
    token: u64,
}

/// Exports `objs` to the node of `token`.
pub(crate) fn export(objs: Vec<(FarKey, Obj)>, token: u64) -> Exported {
    let keys: Vec<FarKey> = objs.iter().map(|(k, _)| k.clone()).collect();
    let mut exports = exports();
    for (key, obj) in objs {
        exports
            .entry((key, token))
            .or_insert_with(|| Entry {
                obj,
                bindings: 0,
                held: None,
                gone: watch::channel(false).0,
            })
            .bindings += 1;
    }
    Exported { keys, token }
}

impl Exported {
    /// Keeps the export while the placed process (`pid` on its node) runs: when
    /// `exit` resolves, frees a lock it held (all locks held there if its node went
    /// down) and withdraws the export.
    pub(crate) fn bind(
        mut self,
        pid: u32,
        mut exit: watch::Receiver<Option<multiproc_core::ExitReason>>,
    ) {
        if self.keys.is_empty() {
            return;
        }
        let (keys, token) = (std::mem::take(&mut self.keys), self.token);
        crate::runtime::handle().spawn(async move {
            let reason = crate::runtime::children::wait_exit(&mut exit).await;
            let node_down = matches!(reason, multiproc_core::ExitReason::NodeDown { .. });
            for obj in withdraw(keys, token, |held| node_down || held == pid) {
                if let Obj::Lock(lock) = obj {
                    lock.holder_gone().await;
                }
            }
        });
    }
}

impl Drop for Exported {
    fn drop(&mut self) {
        // Not started: nothing ran there to hold anything.
        let _ = withdraw(std::mem::take(&mut self.keys), self.token, |_| false);
    }
}

/// Withdraws one binding of each key; the primitives whose far holder `died` (by
/// its pid) are returned, no longer held, for the caller to free.
fn withdraw(keys: Vec<FarKey>, token: u64, died: impl Fn(u32) -> bool) -> Vec<Obj> {
    let mut freed = Vec::new();
    let mut exports = exports();
    for key in keys {
        let k = (key, token);
        let Some(entry) = exports.get_mut(&k) else {
            continue;
        };
        entry.bindings -= 1;
        if entry.held.is_some_and(&died) {
            entry.held = None;
            freed.push(entry.obj.clone());
        }
        if entry.bindings == 0
            && let Some(entry) = exports.remove(&k)
        {
            let _ = entry.gone.send(true);
        }
    }
    freed
}

/// Runs a far operation that came from the node of `token`.
pub(crate) async fn serve(token: u64, call: &[u8]) -> FarReply {
    let call: FarCall = codec::decode(call).map_err(|e| FarError::Failed(e.to_string()))?;
    let k = (call.key, token);
    let (obj, mut gone) = {
        let exports = exports();
        let entry = exports.get(&k).ok_or(FarError::NotExported)?;
        (entry.obj.clone(), entry.gone.subscribe())
    };
    let op = run(&obj, call.op);
    let value = tokio::select! {
        v = op => v,
        _ = gone.wait_for(|g| *g) => return Err(FarError::NotExported),
    };
    let took = matches!(
        (&obj, &value),
        (
            Obj::Lock(_),
            Ok(Took::Lock(true)) | Err(SyncError::OwnerDied)
        )
    );
    let released = matches!((&obj, &value), (Obj::Lock(_), Ok(Took::Released)));
    if took || released {
        let left = {
            let mut exports = exports();
            match exports.get_mut(&k) {
                Some(entry) => {
                    entry.held = took.then_some(call.pid);
                    false
                }
                None => took,
            }
        };
        if left {
            // The process left while it took the lock: it holds nothing.
            if let Obj::Lock(lock) = &obj {
                lock.holder_gone().await;
            }
            return Err(FarError::NotExported);
        }
    }
    value.map(Took::value).map_err(FarError::from)
}

/// An operation's outcome, before it travels.
enum Took {
    Lock(bool),
    Released,
    Value(FarValue),
}

impl Took {
    fn value(self) -> FarValue {
        match self {
            Took::Lock(b) => FarValue::Bool(b),
            Took::Released => FarValue::Done,
            Took::Value(v) => v,
        }
    }
}

async fn run(obj: &Obj, op: FarOp) -> Result<Took, SyncError> {
    let v = |v| Ok(Took::Value(v));
    match (obj, op) {
        (Obj::Lock(l), FarOp::Acquire { block, timeout }) => {
            l.acquire(block, timeout).await.map(Took::Lock)
        }
        (Obj::Lock(l), FarOp::Release) => l.release().await.map(|()| Took::Released),
        (Obj::Lock(l), FarOp::Locked) => v(FarValue::Bool(l.locked().await?)),
        (Obj::Event(e), FarOp::Set) => e.set().await.map(|()| Took::Value(FarValue::Done)),
        (Obj::Event(e), FarOp::Clear) => e.clear().await.map(|()| Took::Value(FarValue::Done)),
        (Obj::Event(e), FarOp::IsSet) => v(FarValue::Bool(e.is_set().await?)),
        (Obj::Event(e), FarOp::Wait { timeout }) => v(FarValue::Bool(e.wait(timeout).await?)),
        (
            Obj::Queue(q),
            FarOp::Put {
                item,
                block,
                timeout,
            },
        ) => q
            .put_raw(&item, block, timeout)
            .await
            .map(|()| Took::Value(FarValue::Done)),
        (Obj::Queue(q), FarOp::Get { block, timeout }) => {
            v(FarValue::Item(q.get_raw(block, timeout).await?))
        }
        (Obj::Queue(q), FarOp::Size) => {
            let (size, full) = q.size_raw().await?;
            v(FarValue::Size { size, full })
        }
        (Obj::Queue(q), FarOp::TaskDone) => {
            q.task_done().await.map(|()| Took::Value(FarValue::Done))
        }
        (Obj::Queue(q), FarOp::Join) => q.join().await.map(|()| Took::Value(FarValue::Done)),
        _ => Err(SyncError::Forged),
    }
}

#[cfg(test)]
mod tests {
    use super::one_machine_types;

    #[test]
    fn the_refusal_names_the_one_machine_types_of_the_arguments() {
        for (type_name, named) in [
            (
                "(multiproc_supervisor::sync::lock::Lock, multiproc_supervisor::shared::value::Value<u64>)",
                "a Value",
            ),
            (
                "(multiproc_supervisor::shared::array::Array<u8>, multiproc_supervisor::sync::rlock::RLock)",
                "an Array or RLock",
            ),
            (
                "multiproc_supervisor::sync::semaphore::BoundedSemaphore",
                "a BoundedSemaphore",
            ),
            ("my_crate::Job", ""),
        ] {
            assert_eq!(one_machine_types(type_name), named, "{type_name}");
        }
    }
}
