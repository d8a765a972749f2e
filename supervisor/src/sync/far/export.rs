//! The root's side: the primitives exported to nodes, bound to the lives of the
//! processes placed there, and the gateway's service that runs their operations.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard, OnceLock};

use multiproc_core::codec;
use tokio::sync::watch;

use super::wire::{FarCall, FarError, FarKey, FarOp, FarReply, FarValue, GatewayCall};
use crate::remote::gateway::{Answering, GATEWAY_SERVICES, GatewayService};
use crate::sync::refs::Addr;
use crate::sync::wire::Op;
use crate::sync::{Event, Lock, Queue, SyncError};

/// A real handle the gateway runs operations on.
#[derive(Debug, Clone)]
pub(crate) enum Obj {
    Lock(Lock),
    Event(Event),
    Queue(Queue<()>),
    /// A supervisor's children's addresses, asked through `FarOp::Resolve`.
    Resolver(Resolver),
}

/// Answers, for a supervisor of this tree, what address its child has now (encoded
/// by the supervisor's side, which the primitives do not name).
#[derive(Clone)]
pub(crate) struct Resolver(pub(crate) Arc<ResolveFn>);

/// A resolver's function: (child, wait) → the encoded answer.
pub(crate) type ResolveFn =
    dyn Fn(String, bool) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync;

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

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
    fn addr(&self) -> Option<&Addr> {
        match self {
            Obj::Lock(l) => l.addr(),
            Obj::Event(e) => e.addr(),
            Obj::Queue(q) => q.addr(),
            Obj::Resolver(_) => None,
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
        (Obj::Resolver(r), FarOp::Resolve { child, wait }) => {
            v(FarValue::Item((r.0)(child, wait).await))
        }
        _ => Err(SyncError::Forged),
    }
}

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(GATEWAY_SERVICES)]
static FAR_OPERATIONS: GatewayService = GatewayService {
    serve: serve_gateway_call,
};

/// Runs a far operation a node relayed to this root's gateway; its encoded answer.
fn serve_gateway_call(bytes: Vec<u8>) -> Answering {
    Box::pin(async move {
        let answer = match codec::decode::<GatewayCall>(&bytes) {
            Ok(c) => serve(c.token, &c.call).await,
            Err(e) => Err(FarError::Failed(e.to_string())),
        };
        codec::encode(&answer).ok()
    })
}
