//! A supervisor whose own actor runs on a node (`Supervisor::on`): the placing side.
//! The supervisor runs there in a placed process (`hosted.rs`); here its
//! `SupervisorRef` calls that process's actor, a task brings its events back into the
//! same [`Hub`] a local supervisor feeds, and its end is the supervisor's `ShutDown`
//! event, or else the end of that process.

use std::time::Duration;

use multiproc_core::{ChildSpec, ExitReason, NodeError, RemoteError, SupervisorFlags};
use serde::Serialize;
use tokio::sync::watch;

use super::event::Hub;
use super::hosted::{Admin, HOSTED_ENTRY, Hosted, Reply, Request, Setup};
use super::relay::Delivery;
use super::{AdminError, ChildCounts, ChildStatus, SupervisorEvent, SupervisorExit};
use crate::node::Node;
use crate::process::FarSpec;
use crate::process::Process;
use crate::process::actor::ActorRef;
use crate::runtime;
use crate::runtime::error::{CallError, Error};
use crate::runtime::registry;
use crate::sync::Queue;
use crate::sync::far::Carry;

/// How long the events still on their way may take once the supervisor's process
/// has exited on a live node: its last event is put before it exits, so only a
/// process killed before its end waits this long.
const LINGER: Duration = Duration::from_secs(1);

/// The placing side's handle to a supervisor on a node; a `SupervisedRef` of it
/// carries it to the other processes of the placing tree, whose calls to the
/// hosting actor go through the placing process (`remote/route.rs`).
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    actor: ActorRef<Hosted>,
    node: String,
}

impl Placed {
    /// The supervisor hosted by `actor` on `node`.
    pub(super) fn of(actor: ActorRef<Hosted>, node: String) -> Placed {
        Placed { actor, node }
    }

    /// The hosting process's address: what tells one incarnation from the next.
    pub(super) fn addr(&self) -> &multiproc_core::Identity {
        self.actor.addr()
    }

    /// The node's name.
    pub(super) fn node(&self) -> &str {
        &self.node
    }

    /// The hosting actor's handle and the node's name, as they travel.
    pub(super) fn parts(&self) -> (&ActorRef<Hosted>, &str) {
        (&self.actor, &self.node)
    }

    pub(super) fn from_parts(actor: ActorRef<Hosted>, node: String) -> Placed {
        Placed { actor, node }
    }

    async fn call(&self, request: Request) -> Result<Reply, AdminError> {
        self.actor.call(request).await.map_err(|e| match e {
            CallError::Node(e) => AdminError::Node(e),
            // Its process has exited: so has the supervisor.
            _ => AdminError::Gone,
        })
    }

    fn done(&self, reply: Reply) -> Result<(), AdminError> {
        match reply {
            Reply::Done(r) => r.map_err(|refusal| refusal.into_error(&self.node)),
            other => Err(unexpected(&self.node, &other)),
        }
    }

    pub(super) async fn which_children(&self) -> Result<Vec<ChildStatus>, AdminError> {
        match self.call(Request::Which).await? {
            Reply::Which(mut children) => {
                for c in &mut children {
                    c.node.get_or_insert_with(|| self.node.clone());
                }
                Ok(children)
            }
            other => self.done(other).map(|()| Vec::new()),
        }
    }

    pub(super) async fn count_children(&self) -> Result<ChildCounts, AdminError> {
        match self.call(Request::Count).await? {
            Reply::Count(counts) => Ok(counts),
            other => self.done(other).map(|()| ChildCounts::default()),
        }
    }

    pub(super) async fn start_child(&self, spec: ChildSpec) -> Result<(), AdminError> {
        let (spec, carry) = travels(spec, &self.node)?;
        let reply = self.call(Request::Start(spec, carry)).await?;
        self.done(reply)
    }

    pub(super) async fn admin(&self, admin: Admin) -> Result<(), AdminError> {
        let reply = self.call(Request::Admin(admin)).await?;
        self.done(reply)
    }

    /// Asks the supervisor to stop its children and end; a supervisor already gone
    /// (its node down among others) has nothing left to stop.
    pub(super) async fn shutdown(&self) {
        let _ = self.call(Request::Shutdown).await;
    }
}

impl Placed {
    /// A message for one of the supervisor's children, encoded for its host, with
    /// the handles it names when they go with the request.
    pub(super) fn encode<M: Serialize>(&self, msg: &M) -> Result<ForChild, CallError> {
        let (payload, carry) = self.actor.encode_for(msg)?;
        Ok(ForChild { payload, carry })
    }

    /// Sends `payload` (an [`encode`](Placed::encode)d message) to the supervisor's
    /// actor child `id`, through the actor hosting the supervisor; the child's reply,
    /// or why none came.
    pub(super) async fn to_child(
        &self,
        id: &str,
        msg: ForChild,
        send: Delivery,
    ) -> Result<Vec<u8>, CallError> {
        self.through(id, msg, send).await.map_err(|e| match e {
            // Its process has exited, or is exiting with its actor stopped (after a
            // shutdown, until the process is gone): so has the supervisor.
            CallError::Remote(
                RemoteError::NoProcess(_) | RemoteError::Exited(_) | RemoteError::NoActor(_),
            ) => CallError::NotRunning(id.to_string(), "its supervisor ended".into()),
            e => e,
        })
    }

    /// As [`to_child`](Placed::to_child), with the hosting process's own end as it
    /// came: a nested supervisor's next incarnation may take the message if this
    /// one never got it (`NoProcess`).
    pub(super) async fn through(
        &self,
        id: &str,
        msg: ForChild,
        send: Delivery,
    ) -> Result<Vec<u8>, CallError> {
        let request = Request::Child {
            id: id.to_string(),
            payload: msg.payload,
            send,
            carry: msg.carry,
        };
        let reply = self.actor.call(request).await?;
        match reply {
            Reply::Child(out) => out.map_err(|miss| miss.into_error(id, &self.node)),
            other => Err(CallError::Node(NodeError::Remote {
                node: self.node.clone(),
                message: format!("unexpected answer from the supervisor: {other:?}"),
            })),
        }
    }
}

/// A message for a child of a supervisor on a node, as [`Placed::encode`] makes it.
pub(super) struct ForChild {
    payload: Vec<u8>,
    carry: Carry,
}

fn unexpected(node: &str, reply: &Reply) -> AdminError {
    AdminError::Node(NodeError::Remote {
        node: node.to_string(),
        message: format!("unexpected answer from the supervisor: {reply:?}"),
    })
}

/// A child spec as it goes to `node`: its arguments encoded for a node, with the
/// handles they name to export with it (see `process::FarSpec`). Refuses one that
/// cannot go: whose arguments hold a one-machine object, or that has no far
/// encoding here (it was decoded from another process), or that is placed on a node
/// itself (the supervisor there has no session of its own).
pub(super) fn travels(mut spec: ChildSpec, node: &str) -> Result<(ChildSpec, Carry), AdminError> {
    let id = spec.id.clone();
    let refuse = |what: String| AdminError::Start {
        id: id.clone(),
        source: NodeError::NotAcrossNodes {
            what,
            node: node.to_string(),
        }
        .into(),
    };
    if let Some(p) = &spec.placement {
        return Err(refuse(format!(
            "the child {id}, placed on node {}, of a supervisor running on a node",
            p.node
        )));
    }
    if !spec.start.holds_handles {
        return Ok((spec, Carry::default()));
    }
    let Some(far) = FarSpec::of(&spec) else {
        return Err(refuse(format!(
            "a Queue, Lock, Event, Value, Array, SharedMemory or ActorRef handle among the \
             arguments of {id}, whose spec was made in another process"
        )));
    };
    if let Some(what) = far.one_machine() {
        return Err(refuse(format!(
            "{what} handle among the arguments of {id} (a queue, lock, semaphore, \
             Condition, Event or Barrier would work)"
        )));
    }
    // Its local encoding lent credits that no process decodes (see `sync::refs`).
    far.reclaim_once();
    let carry = Carry(far.objs());
    spec.start.args = far.args().to_vec();
    spec.start.holds_handles = false;
    spec.far = multiproc_core::Attached::default();
    Ok((spec, carry))
}

/// What a supervisor hosted on `node` starts with, and the queue of this process its
/// events come back on (a far handle there): its children's specs, made fit to
/// travel, carry the handles their arguments name. `id` names the spec that a
/// failure here is told of.
pub(super) fn hosting(
    node: &Node,
    flags: SupervisorFlags,
    children: Vec<ChildSpec>,
    max_children: Option<usize>,
    name: String,
    id: &str,
) -> Result<(Setup, Queue<SupervisorEvent>), AdminError> {
    flags.validate(&children)?;
    let mut carried = Vec::new();
    let children = children
        .into_iter()
        .map(|c| {
            let (c, carry) = travels(c, node.name())?;
            carried.extend(carry.0);
            Ok(c)
        })
        .collect::<Result<Vec<_>, AdminError>>()?;
    let failed = |source: Error| AdminError::Start {
        id: id.to_string(),
        source,
    };
    runtime::ensure().map_err(failed)?;
    let queue = Queue::<SupervisorEvent>::new(0).map_err(|e| {
        failed(Error::os(
            "cannot make the queue that brings a supervisor's events from its node",
            std::io::Error::other(e),
        ))
    })?;
    let setup = Setup {
        flags,
        children,
        max_children,
        name,
        events: Some(queue.clone()),
        carry: Carry(carried),
    };
    Ok((setup, queue))
}

/// Starts a supervisor with these settings on `node`: its process is placed there
/// and starts the children; `events` and `done` are then fed from there.
pub(super) async fn start(
    node: &Node,
    flags: SupervisorFlags,
    children: Vec<ChildSpec>,
    max_children: Option<usize>,
    name: String,
    events: Hub,
    done: watch::Sender<Option<SupervisorExit>>,
) -> Result<Placed, AdminError> {
    let first = children.first().map(|c| c.id.clone()).unwrap_or_default();
    let (setup, queue) = hosting(node, flags, children, max_children, name, &first)?;
    let entry = registry::by_name(HOSTED_ENTRY).expect("the hosted supervisor is a built-in");
    let mut process = Process::with_entry(entry, &setup).on(node);
    let token = node.inner.token;
    let node = node.name().to_string();
    runtime::run(async move {
        process
            .start()
            .await
            .map_err(|source| AdminError::Start { id: first, source })?;
        let actor = process.actor_ref::<Hosted>();
        runtime::handle().spawn(pump(process, queue, events, done, node.clone(), token));
        Ok(Placed { actor, node })
    })
    .await
}

/// Brings the supervisor's events into `hub`, each with its node, until the
/// supervisor's end or its process's; then reports the end.
async fn pump(
    process: Process,
    queue: Queue<SupervisorEvent>,
    hub: Hub,
    done: watch::Sender<Option<SupervisorExit>>,
    node: String,
    token: u64,
) {
    // Each child's pid there: what a killed one held of the handles exported with
    // the supervisor is freed as a dead holder's, as for a placed process.
    let mut pids = std::collections::HashMap::new();
    let mut pass = async |event: SupervisorEvent| {
        match &event {
            SupervisorEvent::ChildStarted { id, pid, .. }
            | SupervisorEvent::Restarted { id, pid, .. } => {
                pids.insert(id.clone(), *pid);
            }
            SupervisorEvent::ChildExited { id, .. } => {
                if let Some(pid) = pids.remove(id) {
                    crate::sync::far::died(token, pid).await;
                }
            }
            _ => {}
        }
        let event = with_node(event, &node);
        if let SupervisorEvent::ShutDown { reason } = &event {
            // Sent before the end is, as a local supervisor does (see `Events`).
            hub.send(event.clone());
            done.send_replace(Some(reason.clone()));
            return;
        }
        hub.send(event);
    };
    let ended = || done.borrow().is_some();
    let exit = process.join();
    tokio::pin!(exit);
    let reason = loop {
        tokio::select! {
            biased;
            reason = &mut exit => break reason,
            event = queue.get(true, None) => match event {
                Ok(event) => pass(event).await,
                Err(_) => break (&mut exit).await,
            },
        }
    };
    let reason = reason.unwrap_or(ExitReason::Killed);
    // What was sent before the process exited may still be on its way, unless the
    // node is gone.
    let linger = !matches!(reason, ExitReason::NodeDown { .. });
    while !ended() {
        match queue.get(linger, linger.then_some(LINGER)).await {
            Ok(event) => pass(event).await,
            Err(_) => break,
        }
    }
    if !ended() {
        let exit = SupervisorExit::Lost { reason };
        hub.send(SupervisorEvent::ShutDown {
            reason: exit.clone(),
        });
        done.send_replace(Some(exit));
    }
}

/// `event` as seen here: a child that runs on the supervisor's host runs on `node`.
fn with_node(event: SupervisorEvent, node: &str) -> SupervisorEvent {
    match event {
        SupervisorEvent::ChildStarted {
            id,
            name,
            pid,
            node: None,
        } => SupervisorEvent::ChildStarted {
            id,
            name,
            pid,
            node: Some(node.to_string()),
        },
        SupervisorEvent::Restarted {
            id,
            name,
            pid,
            node: None,
        } => SupervisorEvent::Restarted {
            id,
            name,
            pid,
            node: Some(node.to_string()),
        },
        other => other,
    }
}
