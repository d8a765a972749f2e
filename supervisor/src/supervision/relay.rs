//! A `SupervisedRef`'s message to a child of a supervisor on a node: a process of
//! the placing root's tree sends it, already encoded as the child's type's, to the actor hosting the supervisor
//! there (`hosted.rs`), which forwards it to the child's current process, in its own
//! tree, and answers with the child's reply as it came: later, from a task of its
//! own, so that the hosting actor serves the next request meanwhile.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use multiproc_core::wire::{BodyKind, PathRef};
use multiproc_core::{Identity, NodeError, RemoteError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::SupervisorRef;
use crate::runtime;
use crate::runtime::error::CallError;
use crate::runtime::reply::PendingReply;
use crate::runtime::router;

/// How many times a call looks the child up again when the address it got has no
/// process (the child was restarted since): the message never reached anyone, so
/// sending it again is safe.
pub(super) const MAX_TRIES: u32 = 5;

/// How a forwarded message goes to the child.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Delivery {
    /// A call, waiting through a restart with `wait`, given up after `timeout`.
    Call {
        wait: bool,
        timeout: Option<Duration>,
    },
    /// A cast, once the child runs; answered as soon as it is sent.
    Cast,
}

/// Why a forwarded message reached no child, as it crosses back.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Miss {
    NotRunning(String),
    Restarting,
    Timeout(Duration),
    Remote(RemoteError),
    Node(NodeError),
    Other(String),
}

impl Miss {
    fn of(e: CallError) -> Miss {
        match e {
            CallError::NotRunning(_, why) => Miss::NotRunning(why),
            CallError::Restarting(_) => Miss::Restarting,
            CallError::Timeout(t) => Miss::Timeout(t),
            CallError::Remote(e) => Miss::Remote(e),
            CallError::Node(e) => Miss::Node(e),
            e => Miss::Other(e.to_string()),
        }
    }

    /// The error of a call to the child `id` of the supervisor on `node`.
    pub(super) fn into_error(self, id: &str, node: &str) -> CallError {
        match self {
            Miss::NotRunning(why) => CallError::NotRunning(id.to_string(), why),
            Miss::Restarting => CallError::Restarting(id.to_string()),
            Miss::Timeout(t) => CallError::Timeout(t),
            Miss::Remote(e) => CallError::Remote(e),
            Miss::Node(e) => CallError::Node(e),
            Miss::Other(message) => CallError::Node(NodeError::Remote {
                node: node.to_string(),
                message,
            }),
        }
    }
}

/// A forwarded message waiting in its child's lane, and what takes its outcome:
/// the child's reply, encoded (empty for a cast), or why none came.
pub(super) struct Job {
    payload: Vec<u8>,
    send: Delivery,
    /// When a call's timeout runs out, counted from its arrival.
    deadline: Option<Instant>,
    answer: Box<dyn FnOnce(Result<Vec<u8>, Miss>) + Send>,
}

impl Job {
    pub(super) fn new(
        payload: Vec<u8>,
        send: Delivery,
        answer: impl FnOnce(Result<Vec<u8>, Miss>) + Send + 'static,
    ) -> Job {
        let deadline = match &send {
            Delivery::Call {
                timeout: Some(t), ..
            } => Some(Instant::now() + *t),
            _ => None,
        };
        Job {
            payload,
            send,
            deadline,
            answer: Box::new(answer),
        }
    }
}

/// The children's lanes: the messages for one child are sent to it one after the
/// other, in the order they came (a message waits for its child's address, through
/// a restart, before the next one is sent), while their answers are awaited apart,
/// so that a slow call holds up neither another child nor the next call to the same
/// one. A lane is there while it has messages, served by a task of its own.
#[derive(Clone, Default)]
pub(super) struct Lanes(Arc<Mutex<HashMap<String, VecDeque<Job>>>>);

impl Lanes {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, VecDeque<Job>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `job` for the child `id` of `sup` at the end of its lane.
    pub(super) fn push(&self, sup: &SupervisorRef, id: String, job: Job) {
        let mut lanes = self.lock();
        if let Some(lane) = lanes.get_mut(&id) {
            lane.push_back(job);
            return;
        }
        lanes.insert(id.clone(), VecDeque::from([job]));
        drop(lanes);
        runtime::handle().spawn(self.clone().serve(sup.clone(), id));
    }

    /// Sends the lane's messages in order until it is empty; then it is gone.
    async fn serve(self, sup: SupervisorRef, id: String) {
        loop {
            let job = {
                let mut lanes = self.lock();
                let Some(lane) = lanes.get_mut(&id) else {
                    return;
                };
                match lane.pop_front() {
                    Some(job) => job,
                    None => {
                        lanes.remove(&id);
                        return;
                    }
                }
            };
            to_child(&sup, &id, job).await;
        }
    }
}

/// Sends `job`'s message to the child `id` of `sup` once it has its address; a
/// call's answer is then awaited by a task of its own.
async fn to_child(sup: &SupervisorRef, id: &str, job: Job) {
    let Job {
        payload,
        send,
        deadline,
        answer,
    } = job;
    let (wait, timeout) = match send {
        Delivery::Cast => {
            let sent = sup.resolve(id, true).await.map(|addr| {
                router::send_from_here((&addr).into(), 0, BodyKind::Cast, &payload);
                Vec::new()
            });
            return answer(sent.map_err(Miss::of));
        }
        Delivery::Call { wait, timeout } => (wait, timeout),
    };
    let within = |d: Option<Instant>| async move {
        match d {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let timed_out = move || Miss::Timeout(timeout.unwrap_or_default());
    let addr = tokio::select! {
        found = sup.resolve(id, wait) => match found {
            Ok(addr) => addr,
            Err(e) => return answer(Err(Miss::of(e))),
        },
        () = within(deadline) => return answer(Err(timed_out())),
    };
    let pending = send_call(&addr, &payload);
    let (sup, id) = (sup.clone(), id.to_string());
    runtime::handle().spawn(async move {
        let out = tokio::select! {
            out = call_child(&sup, &id, &payload, wait, addr, pending) => out.map_err(Miss::of),
            () = within(deadline) => Err(timed_out()),
        };
        answer(out);
    });
}

/// Awaits the answer of a call already sent to `addr`, as a local `SupervisedRef`
/// calls: sent again to the child's new address when that one had no process, never
/// repeated once it reached one.
async fn call_child(
    sup: &SupervisorRef,
    id: &str,
    payload: &[u8],
    wait: bool,
    mut addr: Identity,
    mut pending: PendingReply,
) -> Result<Vec<u8>, CallError> {
    for tries in 1.. {
        match pending.wait(|answer| answer.map(<[u8]>::to_vec)).await {
            Err(RemoteError::NoProcess(_)) if tries < MAX_TRIES => {}
            out => return out.map_err(CallError::Remote),
        }
        let failed = addr;
        addr = sup.resolve(id, wait).await?;
        if addr == failed {
            // The supervisor has not seen that exit yet: give it time to.
            tokio::time::sleep(Duration::from_millis(5 << tries)).await;
        }
        pending = send_call(&addr, payload);
    }
    unreachable!("the loop returns by its last try")
}

/// Sends a call of the actor of the process `to`, with an encoded message; the
/// wait for its encoded reply.
fn send_call(to: &Identity, payload: &[u8]) -> PendingReply {
    let corr = router::next_corr();
    // Before the message leaves: the answer may come before anyone looks.
    let pending = router::expect_reply(corr);
    router::send_from_here(PathRef::from(to), corr, BodyKind::Call, payload);
    pending
}
