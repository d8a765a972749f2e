//! The host side: every process serves the primitives it created, from `Service`
//! envelopes, with the pure state machines of `multiproc_core::sync` and `queue`.
//!
//! Requests are handled where they are delivered (on the link reader, or the caller's
//! own thread for a primitive of its own process): each is a few map operations. A
//! process that holds or waits on a primitive here is *watched*: the host sends it a
//! `Watch` request that is never answered, and the router fails that request with
//! `Exited` when the process ends, however it ends. That is the host's news of a death.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, OnceLock};

use multiproc_core::sync::{
    Acquire, Arrive, BarrierOutcome, BarrierState, ConditionState, Grant, Holder, WaitId, Woken,
};
use multiproc_core::{Body, Envelope, Identity, RemoteError, codec};

use multiproc_core::sync::Misuse;

use super::wire::{Answer, Fault, Op, Request};
use crate::runtime;
use crate::runtime::current::me;
use crate::runtime::router;

pub(crate) enum State {
    /// A primitive whose state is all in shared memory, with no holder to watch
    /// (an `Event`): the host keeps its memory, and answers nothing.
    Mapped,
    /// A primitive in shared memory that processes hold parts of (a lock, a
    /// semaphore's permits, a queue's items taken): the host clears what a dead
    /// one held.
    Watched(Box<dyn Watched>),
    Condition(ConditionState),
    Barrier(BarrierState),
}

/// A primitive in shared memory, as its host sees it: the host knows no layout, it
/// only passes on the news that a process that mapped it died. So the host depends
/// on no primitive, and each primitive's file says what a death does to it.
pub(crate) trait Watched: Send {
    /// Process `pid`, which mapped the primitive, died: clear what it held. Called
    /// with the host locked: what may wait for another process (taking a lock in
    /// shared memory) must go to a blocking task.
    fn process_died(&self, pid: u32, host: &Identity);
}

struct Slot {
    secret: u64,
    state: State,
    /// The processes that hold a handle of it (see `refs`).
    holders: HashSet<Identity>,
    /// Handles encoded and not yet decoded; may go below zero (see `refs`).
    lent: i64,
    /// Its shared memory, if any, kept open here until it is freed.
    seg: Option<crate::runtime::shm::SegmentRef>,
}

#[derive(Default)]
struct Host {
    prims: HashMap<u64, Slot>,
    next_id: u64,
    /// Waits by the call that asked: (caller, corr) → (primitive, wait).
    waits: HashMap<(Identity, u64), (u64, WaitId)>,
    /// The call to answer when a wait completes.
    routes: HashMap<WaitId, (Identity, u64)>,
    next_wait: WaitId,
    watched: HashSet<Identity>,
    /// The pids of processes that mapped a shared-memory primitive of this host.
    pids: HashMap<Identity, u32>,
}

fn host() -> MutexGuard<'static, Host> {
    static HOST: OnceLock<Mutex<Host>> = OnceLock::new();
    HOST.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A new primitive hosted here, for handles with `secret`, held by this process
/// (which makes its first handle); returns its id. `seg` is its shared memory, freed
/// with it.
pub(crate) fn create(
    state: State,
    secret: u64,
    seg: Option<crate::runtime::shm::SegmentRef>,
) -> u64 {
    let mut h = host();
    h.next_id += 1;
    let id = h.next_id;
    h.prims.insert(
        id,
        Slot {
            secret,
            state,
            holders: HashSet::from([me().identity.clone()]),
            lent: 0,
            seg,
        },
    );
    id
}

/// Primitives hosted here and not yet freed: for tests of the counting.
pub(crate) fn hosted() -> usize {
    host().prims.len()
}

/// An unguessable number, so a handle cannot be forged or mistaken for another.
pub(crate) fn secret() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Answers to send once the host is unlocked.
type Replies = Vec<(Identity, u64, Answer)>;

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(router::SERVICES)]
static PRIMITIVES: router::Service = router::Service { serve };

/// Handles a `Service` envelope delivered to this process.
fn serve(env: Envelope) {
    let Body::Service(bytes) = &env.body else {
        return;
    };
    let request: Request = match codec::decode(bytes) {
        Ok(r) => r,
        Err(e) => {
            return router::bounce_envelope(env, RemoteError::Decode(e.to_string()));
        }
    };
    if matches!(request.op, Op::Watch) {
        // Never answered: the router answers it with `Exited` when this process ends.
        return;
    }
    match request.op {
        Op::Far(call) => return super::far::forward(env, call),
        Op::FarActor { to, payload } => return super::far::forward_actor(env, to, payload),
        Op::Above(bytes) => return super::above::serve(env, bytes),
        _ => {}
    }
    let mut replies: Replies = Vec::new();
    let mut watch = None;
    {
        let mut h = host();
        let answer = h.handle(&env.from, env.corr, request, &mut replies, &mut watch);
        // Correlation 0: the sender does not wait for an answer (an acknowledgement).
        if let Some(answer) = answer.filter(|_| env.corr != 0) {
            replies.push((env.from.clone(), env.corr, answer));
        }
    }
    if let Some(process) = watch {
        start_watch(process);
    }
    send(replies);
}

fn send(replies: Replies) {
    let from = me().identity.clone();
    for (to, corr, answer) in replies {
        let body = match codec::encode(&answer) {
            Ok(bytes) => Body::Reply(bytes),
            Err(e) => Body::Fail(RemoteError::Encode(e.to_string())),
        };
        router::route(Envelope {
            to,
            from: from.clone(),
            corr,
            body,
        });
    }
}

/// Watches `process` (see the module documentation).
fn start_watch(process: Identity) {
    let corr = router::next_corr();
    let rx = router::expect_reply(corr);
    let request = Request {
        prim: 0,
        secret: 0,
        op: Op::Watch,
    };
    let Ok(bytes) = codec::encode(&request) else {
        return;
    };
    router::route(Envelope {
        to: process.clone(),
        from: me().identity.clone(),
        corr,
        body: Body::Service(bytes),
    });
    runtime::handle().spawn(async move {
        // Any answer means the process is gone: `Exited`, or `NoProcess` if it was
        // gone before the watch arrived.
        let _ = rx.await;
        process_died(&process);
    });
}

/// `process` ended: everything it held is released, its waits forgotten.
fn process_died(process: &Identity) {
    let mut replies: Replies = Vec::new();
    {
        let mut h = host();
        h.watched.remove(process);
        let pid = h.pids.remove(process);
        let ids: Vec<u64> = h.prims.keys().copied().collect();
        for id in ids {
            let grants = match &mut h.prims.get_mut(&id).expect("listed").state {
                State::Watched(w) => {
                    if let Some(pid) = pid {
                        w.process_died(pid, &me().identity);
                    }
                    Wakeups::Grants(Vec::new())
                }
                State::Mapped => Wakeups::Grants(Vec::new()),
                State::Condition(c) => Wakeups::Cond(c.process_died(process)),
                State::Barrier(b) => Wakeups::Barrier(b.process_died(process)),
            };
            h.complete(grants, &mut replies);
        }
        h.waits.retain(|(caller, _), _| caller != process);
        h.routes.retain(|_, (caller, _)| caller != process);
        // A dead process holds no handle any more.
        let held: Vec<u64> = h
            .prims
            .iter_mut()
            .filter_map(|(id, slot)| slot.holders.remove(process).then_some(*id))
            .collect();
        for id in held {
            h.free_if_unused(id);
        }
    }
    send(replies);
}

/// The answer to an acquire; `None` while it waits.
fn acquired(a: Acquire) -> Option<Answer> {
    match a {
        Acquire::Granted { owner_died } => Some(Answer::Acquired { owner_died }),
        Acquire::Queued => None,
        Acquire::WouldBlock => Some(Answer::WouldBlock),
    }
}

/// The waits that a change of state completed, to be answered (see `Host::complete`).
enum Wakeups {
    Grants(Vec<Grant>),
    Cond((Vec<Grant>, Vec<Woken>)),
    Barrier(Vec<(WaitId, BarrierOutcome)>),
}

impl Host {
    /// Frees primitive `id` if no process holds a handle of it and none is in flight:
    /// its state, and its shared memory (the segment's fd here, its mapping).
    fn free_if_unused(&mut self, id: u64) {
        let unused = self
            .prims
            .get(&id)
            .is_some_and(|s| s.holders.is_empty() && s.lent <= 0);
        if !unused {
            return;
        }
        let Some(slot) = self.prims.remove(&id) else {
            return;
        };
        let waits: Vec<WaitId> = self
            .waits
            .iter()
            .filter(|(_, (prim, _))| *prim == id)
            .map(|(_, (_, wait))| *wait)
            .collect();
        for wait in waits {
            self.done(wait);
        }
        if let Some(seg) = slot.seg {
            crate::runtime::shm::forget(seg);
        }
    }

    fn done(&mut self, wait: WaitId) -> Option<(Identity, u64)> {
        let route = self.routes.remove(&wait)?;
        self.waits.remove(&route);
        Some(route)
    }

    fn complete(&mut self, outcome: Wakeups, replies: &mut Replies) {
        match outcome {
            Wakeups::Grants(grants) => {
                for g in grants {
                    if let Some((to, corr)) = self.done(g.wait) {
                        replies.push((
                            to,
                            corr,
                            Answer::Acquired {
                                owner_died: g.owner_died,
                            },
                        ));
                    }
                }
            }
            Wakeups::Cond((grants, woken)) => {
                self.complete(Wakeups::Grants(grants), replies);
                for w in woken {
                    if let Some((to, corr)) = self.done(w.wait) {
                        replies.push((
                            to,
                            corr,
                            Answer::Woken {
                                notified: w.notified,
                                owner_died: w.owner_died,
                            },
                        ));
                    }
                }
            }
            Wakeups::Barrier(outcomes) => {
                for (wait, outcome) in outcomes {
                    if let Some((to, corr)) = self.done(wait) {
                        let answer = match outcome {
                            BarrierOutcome::Passed(i) => Answer::Passed(i),
                            BarrierOutcome::Broken(why) => Answer::Fault(Fault::Broken(why)),
                        };
                        replies.push((to, corr, answer));
                    }
                }
            }
        }
    }

    /// Handles one request; `None` when its answer waits.
    ///
    /// # Protocol
    ///
    /// A request names its primitive by id *and* secret, or is `Forged`. Its sender
    /// is watched from its first request on (see the module documentation). Then:
    /// handle counting (`Lend`, `Claim`, `Detach`, see `refs`), the cancel of a wait
    /// that timed out, or an operation of the primitive's own kind.
    fn handle(
        &mut self,
        from: &Identity,
        corr: u64,
        request: Request,
        replies: &mut Replies,
        watch: &mut Option<Identity>,
    ) -> Option<Answer> {
        let id = request.prim;
        match self.prims.get(&id) {
            Some(slot) if slot.secret == request.secret => {}
            _ => return Some(Answer::Fault(Fault::Forged)),
        }
        if !self.watched.contains(from) && *from != me().identity {
            self.watched.insert(from.clone());
            *watch = Some(from.clone());
        }
        match request.op {
            op @ (Op::Lend | Op::Claim | Op::Detach) => Some(self.count(id, from, op)),
            Op::Cancel { corr: asked } => {
                Some(Answer::Cancelled(self.cancel(id, from, asked, replies)))
            }
            Op::HoldersGone { threads } => {
                self.holders_gone(id, from, &threads, replies);
                Some(Answer::Done)
            }
            op => self.operate(id, from, corr, op, replies),
        }
    }

    /// A handle of primitive `id` was lent, claimed or dropped by `from` (see `refs`).
    fn count(&mut self, id: u64, from: &Identity, op: Op) -> Answer {
        let slot = self.prims.get_mut(&id).expect("checked");
        match op {
            Op::Lend => slot.lent += 1,
            Op::Claim => {
                slot.lent -= 1;
                slot.holders.insert(from.clone());
            }
            _ => {
                slot.holders.remove(from);
            }
        }
        self.free_if_unused(id);
        Answer::Done
    }

    /// Forgets the wait that `from`'s call `asked` made on primitive `id`: whether it
    /// was still waiting (else its answer is already on its way).
    fn cancel(&mut self, id: u64, from: &Identity, asked: u64, replies: &mut Replies) -> bool {
        let Some((prim, wait)) = self.waits.get(&(from.clone(), asked)).copied() else {
            return false;
        };
        if prim != id {
            return false;
        }
        let state = &mut self.prims.get_mut(&id).expect("checked").state;
        let (gone, wakeups) = match state {
            State::Mapped | State::Watched(_) => (false, None),
            // A condition wait that times out still takes the lock back before it
            // returns: it stays, and is answered `Woken`.
            State::Condition(c) => (false, Some(Wakeups::Cond(c.time_out(wait)))),
            // A barrier wait that times out breaks the barrier for all.
            State::Barrier(b) => {
                let outcomes = b.time_out(wait);
                let mine = outcomes.iter().any(|(w, _)| *w == wait);
                (
                    mine,
                    Some(Wakeups::Barrier(
                        outcomes.into_iter().filter(|(w, _)| *w != wait).collect(),
                    )),
                )
            }
        };
        if gone {
            self.done(wait);
        }
        if let Some(wakeups) = wakeups {
            self.complete(wakeups, replies);
        }
        gone
    }

    /// `from`'s threads `threads` died (see `Op::HoldersGone`): what they held of
    /// primitive `id` is freed, a barrier they waited on breaks, and their waits are
    /// answered `Cancelled` (to the gateway, which waits for them in their stead).
    fn holders_gone(&mut self, id: u64, from: &Identity, threads: &[u64], replies: &mut Replies) {
        let dead = |h: &Holder| h.process == *from && threads.contains(&h.thread);
        let state = &mut self.prims.get_mut(&id).expect("checked").state;
        let (wakeups, forgotten) = match state {
            State::Condition(c) => {
                let (grants, woken, forgotten) = c.holders_died(dead);
                (Wakeups::Cond((grants, woken)), forgotten)
            }
            State::Barrier(b) => (Wakeups::Barrier(b.holders_died(dead)), Vec::new()),
            State::Mapped | State::Watched(_) => return,
        };
        for wait in forgotten {
            if let Some((to, corr)) = self.done(wait) {
                replies.push((to, corr, Answer::Cancelled(true)));
            }
        }
        self.complete(wakeups, replies);
    }

    /// An operation of primitive `id`'s own kind; `None` when its answer waits, and
    /// then the wait is registered, to be answered when a change completes it.
    fn operate(
        &mut self,
        id: u64,
        from: &Identity,
        corr: u64,
        op: Op,
        replies: &mut Replies,
    ) -> Option<Answer> {
        // A wait number for this request; it is registered (to be answered later)
        // only if the request has to wait, which most do not.
        self.next_wait += 1;
        let wait = self.next_wait;
        let state = &mut self.prims.get_mut(&id).expect("checked").state;
        let (answer, wakeups) = match state {
            State::Condition(c) => condition_op(c, from, wait, op),
            State::Barrier(b) => barrier_op(b, from, wait, op),
            State::Watched(_) => match op {
                Op::Attach { pid } => {
                    self.pids.insert(from.clone(), pid);
                    (Some(Answer::Done), None)
                }
                _ => wrong_kind(),
            },
            State::Mapped => wrong_kind(),
        };
        if answer.is_none() {
            self.waits.insert((from.clone(), corr), (id, wait));
            self.routes.insert(wait, (from.clone(), corr));
        }
        if let Some(wakeups) = wakeups {
            self.complete(wakeups, replies);
        }
        answer
    }
}

/// What an operation came to: its answer (`None` while it waits), and the waits of
/// others that it completed.
type Handled = (Option<Answer>, Option<Wakeups>);

fn wrong_kind() -> Handled {
    (Some(Answer::Fault(Fault::WrongKind)), None)
}

fn misuse(e: Misuse) -> Handled {
    (Some(Answer::Fault(Fault::Sync(e))), None)
}

/// The caller's thread `thread`, as a holder.
fn holder(from: &Identity, thread: u64) -> Holder {
    Holder {
        process: from.clone(),
        thread,
    }
}

/// A condition's operations: its lock's, `wait` and `notify`.
fn condition_op(c: &mut ConditionState, from: &Identity, wait: WaitId, op: Op) -> Handled {
    match op {
        Op::Acquire { thread, block } => (
            acquired(c.acquire(&holder(from, thread), wait, block)),
            None,
        ),
        Op::Release { thread } => match c.release(&holder(from, thread)) {
            Ok(out) => (Some(Answer::Done), Some(Wakeups::Cond(out))),
            Err(e) => misuse(e),
        },
        Op::CondWait { thread } => match c.wait(&holder(from, thread), wait) {
            Ok(out) => (None, Some(Wakeups::Cond(out))),
            Err(e) => misuse(e),
        },
        Op::CondNotify { thread, n } => match c.notify(&holder(from, thread), n) {
            Ok(()) => (Some(Answer::Done), None),
            Err(e) => misuse(e),
        },
        _ => wrong_kind(),
    }
}

/// A barrier's operations: `wait` (and the action's end), `abort`, `reset`, and
/// what it is now.
fn barrier_op(b: &mut BarrierState, from: &Identity, wait: WaitId, op: Op) -> Handled {
    match op {
        Op::BarrierWait { thread } => match b.wait(&holder(from, thread), wait) {
            Ok(Arrive::Queued) => (None, None),
            Ok(Arrive::RunAction(i)) => (Some(Answer::RunAction(i)), None),
            Ok(Arrive::Released(mut outcomes)) => {
                let mine = outcomes
                    .iter()
                    .position(|(w, _)| *w == wait)
                    .map(|p| outcomes.remove(p));
                let answer = match mine {
                    Some((_, BarrierOutcome::Passed(i))) => Answer::Passed(i),
                    Some((_, BarrierOutcome::Broken(why))) => Answer::Fault(Fault::Broken(why)),
                    None => Answer::Fault(Fault::WrongKind),
                };
                (Some(answer), Some(Wakeups::Barrier(outcomes)))
            }
            Err(why) => (Some(Answer::Fault(Fault::Broken(why))), None),
        },
        Op::BarrierActionDone { ok } => (
            Some(Answer::Done),
            Some(Wakeups::Barrier(b.action_done(ok))),
        ),
        Op::BarrierAbort => (Some(Answer::Done), Some(Wakeups::Barrier(b.abort()))),
        Op::BarrierReset => (Some(Answer::Done), Some(Wakeups::Barrier(b.reset()))),
        Op::BarrierInfo => (
            Some(Answer::BarrierInfo {
                parties: b.parties(),
                n_waiting: b.n_waiting(),
                broken: b.broken(),
            }),
            None,
        ),
        _ => wrong_kind(),
    }
}
