//! The root's side: the primitives exported to nodes, bound to the lives of the
//! processes placed there, and the gateway's service that runs their operations.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use multiproc_core::codec;
use tokio::sync::watch;

use super::ops::{Hold, run};
pub(crate) use super::ops::{Obj, Resolver};
use super::owner;
use super::wire::{FarCall, FarError, FarKey, FarOp, FarReply, FarValue, GatewayCall};
use crate::remote::gateway::{Answering, GATEWAY_SERVICES, GatewayService};
use crate::sync::wire::Op;

/// A primitive exported to one node (by its token there).
struct Entry {
    obj: Obj,
    /// The placed processes it was exported with, still running.
    bindings: usize,
    /// What far processes hold of it, by pid (see `Obj::note`).
    held: HashMap<u32, u32>,
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
                held: HashMap::new(),
                gone: watch::channel(false).0,
            })
            .bindings += 1;
    }
    Exported { keys, token }
}

/// The keys exported for a message to an actor placed on a node, by the node's
/// token and the actor's pid there: bound once to the actor's exit, however many
/// messages carry them.
fn bound() -> MutexGuard<'static, std::collections::HashSet<(FarKey, u64, u32)>> {
    static BOUND: OnceLock<Mutex<std::collections::HashSet<(FarKey, u64, u32)>>> = OnceLock::new();
    BOUND
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Exports `objs`, met in a message to the actor that runs as `pid` on the node of
/// `token`, for as long as that process runs (until `exit` says it ended); the
/// ones already exported to it stay as they are.
pub(crate) fn export_to_running(
    objs: Vec<(FarKey, Obj)>,
    token: u64,
    pid: u32,
    exit: watch::Receiver<Option<multiproc_core::ExitReason>>,
) {
    let fresh: Vec<(FarKey, Obj)> = {
        let mut bound = bound();
        objs.into_iter()
            .filter(|(k, _)| bound.insert((k.clone(), token, pid)))
            .collect()
    };
    if !fresh.is_empty() {
        export(fresh, token).bind(pid, exit);
    }
}

impl Exported {
    /// Keeps the export while the placed process (`pid` on its node) runs: when
    /// `exit` resolves, frees what it held (what every process there held if its
    /// node went down) as a dead holder's, and withdraws the export.
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
            let stand_ins = owner::forget(token, (!node_down).then_some(pid));
            // Told before their waits are dropped: a barrier breaks for a dead party.
            let served: Vec<Obj> = {
                let exports = exports();
                keys.iter()
                    .filter_map(|k| exports.get(&(k.clone(), token)))
                    .map(|e| e.obj.clone())
                    .filter(Obj::host_served)
                    .collect()
            };
            for obj in served {
                obj.gone(&stand_ins, 0).await;
            }
            bound().retain(|(_, t, p)| !(*t == token && (node_down || *p == pid)));
            for (obj, units) in withdraw(keys, token, |held| node_down || held == pid) {
                obj.gone(&stand_ins, units).await;
            }
        });
    }
}

/// The far process `pid` on the node of `token` has ended while what it used stays
/// exported (a child of a supervisor there, restarted under the same export): frees
/// what it held as a dead holder's, as its export's end would.
pub(crate) async fn died(token: u64, pid: u32) {
    let stand_ins = owner::forget(token, Some(pid));
    let found: Vec<(Obj, u32)> = exports()
        .iter_mut()
        .filter(|((_, t), _)| *t == token)
        .map(|(_, entry)| (entry.obj.clone(), entry.held.remove(&pid).unwrap_or(0)))
        .collect();
    for (obj, units) in found {
        obj.gone(&stand_ins, units).await;
    }
}

impl Drop for Exported {
    fn drop(&mut self) {
        // Not started: nothing ran there to hold anything.
        let _ = withdraw(std::mem::take(&mut self.keys), self.token, |_| false);
    }
}

/// Withdraws one binding of each key; returns each primitive with what the far
/// processes that `died` (by pid) held of it (every far process, for a key whose
/// last binding this is), no longer counted, for the caller to free.
fn withdraw(keys: Vec<FarKey>, token: u64, died: impl Fn(u32) -> bool) -> Vec<(Obj, u32)> {
    let mut found = Vec::new();
    let mut exports = exports();
    for key in keys {
        let k = (key, token);
        let Some(entry) = exports.get_mut(&k) else {
            continue;
        };
        entry.bindings -= 1;
        // Its last binding gone, no process there can use it any more: what any of
        // them holds (a descendant of the bound process, a child of a supervisor
        // there whose exit was not seen) is a dead holder's.
        let last = entry.bindings == 0;
        let mut units = 0;
        entry.held.retain(|&pid, &mut n| {
            let dead = last || died(pid);
            if dead {
                units += n;
            }
            !dead
        });
        found.push((entry.obj.clone(), units));
        if entry.bindings == 0
            && let Some(entry) = exports.remove(&k)
        {
            let _ = entry.gone.send(true);
        }
    }
    found
}

/// Runs a far operation that came from the node of `token`.
pub(crate) async fn serve(token: u64, call: &[u8]) -> FarReply {
    let call: FarCall = codec::decode(call).map_err(|e| FarError::Failed(e.to_string()))?;
    if let FarOp::Died = call.op {
        died(token, call.pid).await;
        return Ok(FarValue::Done);
    }
    let k = (call.key, token);
    let (obj, mut gone) = {
        let exports = exports();
        let entry = exports.get(&k).ok_or(FarError::NotExported)?;
        (entry.obj.clone(), entry.gone.subscribe())
    };
    let me = owner::stand_in(token, call.pid, call.thread);
    let (value, hold) = tokio::select! {
        v = run(&obj, call.op, me) => v,
        _ = gone.wait_for(|g| *g) => return Err(FarError::NotExported),
    };
    if hold != Hold::Same {
        // Its process may have ended while this ran (its stand-ins are forgotten
        // then), though another process of its node keeps the export.
        let ended = !owner::stands_in(token, call.pid, call.thread, me);
        let left = {
            let mut exports = exports();
            match exports.get_mut(&k) {
                Some(entry) if !ended => {
                    obj.note(&mut entry.held, call.pid, hold);
                    false
                }
                _ => hold == Hold::Took,
            }
        };
        if left {
            // The process left while it took the lock: it holds nothing.
            obj.gone(&[me], 1).await;
            return Err(FarError::NotExported);
        }
    }
    value.map_err(FarError::from)
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
