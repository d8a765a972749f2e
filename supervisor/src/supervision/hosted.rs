//! The actor that hosts a supervisor in a process placed on a node: it runs the
//! supervisor there, so that its children are that process's children and their
//! restarts never cross the network; it answers the placing process's admin calls
//! and sends the supervisor's events up to it through a queue.
//!
//! What travels, both ways: the supervisor's setup (flags, child specs, the queue),
//! the [`Request`]s and their [`Reply`]s, and an [`AdminError`] as a [`Refusal`]. A
//! `SupervisedRef`'s message to a child is a request too, forwarded by `relay.rs`.

use multiproc_core::{ChildSpec, EntryKind, NodeError, SpecError, SupervisorFlags};
use serde::{Deserialize, Serialize};

use super::relay::{Delivery, Job, Lanes, Miss};
use super::{
    AdminError, ChildCounts, ChildStatus, Events, Supervisor, SupervisorEvent, SupervisorExit,
    SupervisorRef,
};
use crate::process::actor::{Actor, BoxError, defer_reply};
use crate::runtime;
use crate::runtime::registry::{self, Entry};
use crate::sync::Queue;
use crate::sync::far::Carry;

/// The registered name of the hosting actor: a built-in, present in every build.
pub(super) const HOSTED_ENTRY: &str = "multiproc::supervision::hosted";

// linkme places the entry in a link section; that is all the unsafety there is.
#[allow(unsafe_code)]
#[linkme::distributed_slice(crate::runtime::registry::ENTRIES)]
static HOSTED: Entry = Entry {
    name: HOSTED_ENTRY,
    kind: EntryKind::Actor,
    type_id: || std::any::TypeId::of::<Hosted>(),
    run: crate::process::actor::run_actor::<Hosted>,
    task: crate::pool::not_a_task,
    slab: crate::pool::not_a_task,
    pod: registry::no_pod,
};

/// What the hosting actor is started with: the supervisor to run, and where its
/// events go.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Setup {
    pub(super) flags: SupervisorFlags,
    pub(super) children: Vec<ChildSpec>,
    pub(super) max_children: Option<usize>,
    pub(super) name: String,
    /// A queue of the placing process, reached from the node through its gateway
    /// (for a supervisor child, `Supervisor::into_child`, exported again with each
    /// incarnation); `None` sends nowhere.
    pub(super) events: Option<Queue<SupervisorEvent>>,
    /// The handles the children's arguments name, exported with the setup (bound
    /// to the hosting process's life).
    pub(super) carry: Carry,
}

/// An admin request that names a child and answers done or refused.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Admin {
    Terminate(String),
    Restart(String),
    Delete(String),
}

/// A call to the hosting actor.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Request {
    Which,
    Count,
    /// A spec, and the handles its arguments name (exported with the message).
    Start(ChildSpec, Carry),
    Admin(Admin),
    /// Stops the children and ends the supervisor; answered once its last event has
    /// gone up.
    Shutdown,
    /// A `SupervisedRef`'s message for the actor child `id`, encoded as its type's,
    /// and the handles it names (exported with the request, when it comes from
    /// another process than the placer).
    Child {
        id: String,
        payload: Vec<u8>,
        send: Delivery,
        carry: Carry,
    },
}

/// The hosting actor's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Reply {
    Which(Vec<ChildStatus>),
    Count(ChildCounts),
    Done(Result<(), Refusal>),
    /// The child's reply, encoded (empty for a cast).
    Child(Result<Vec<u8>, Miss>),
}

/// An [`AdminError`] as it crosses: the reason a child could not start is the text
/// the node gave it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Refusal {
    NotFound(String),
    AlreadyPresent(String),
    AlreadyStarted(String),
    Running(String),
    Restarting(String),
    Invalid(SpecError),
    Start { id: String, message: String },
    Gone,
    Node(NodeError),
    MaxChildren(usize),
    Escalated(SupervisorExit),
    NotRunning { id: String, why: String },
    NotHosted(String),
}

impl Refusal {
    fn of(e: AdminError) -> Refusal {
        match e {
            AdminError::NotFound(id) => Refusal::NotFound(id),
            AdminError::AlreadyPresent(id) => Refusal::AlreadyPresent(id),
            AdminError::AlreadyStarted(id) => Refusal::AlreadyStarted(id),
            AdminError::Running(id) => Refusal::Running(id),
            AdminError::Restarting(id) => Refusal::Restarting(id),
            AdminError::Invalid(e) => Refusal::Invalid(e),
            AdminError::Start { id, source } => Refusal::Start {
                id,
                message: source.to_string(),
            },
            AdminError::Gone => Refusal::Gone,
            AdminError::Node(e) => Refusal::Node(e),
            AdminError::MaxChildren(max) => Refusal::MaxChildren(max),
            AdminError::Escalated(exit) => Refusal::Escalated(exit),
            AdminError::NotRunning { id, why } => Refusal::NotRunning { id, why },
            AdminError::NotHosted(id) => Refusal::NotHosted(id),
        }
    }

    /// The error the placing process reports, for a refusal of the supervisor on
    /// `node`.
    pub(super) fn into_error(self, node: &str) -> AdminError {
        match self {
            Refusal::NotFound(id) => AdminError::NotFound(id),
            Refusal::AlreadyPresent(id) => AdminError::AlreadyPresent(id),
            Refusal::AlreadyStarted(id) => AdminError::AlreadyStarted(id),
            Refusal::Running(id) => AdminError::Running(id),
            Refusal::Restarting(id) => AdminError::Restarting(id),
            Refusal::Invalid(e) => AdminError::Invalid(e),
            Refusal::Start { id, message } => AdminError::Start {
                id,
                source: NodeError::Remote {
                    node: node.to_string(),
                    message,
                }
                .into(),
            },
            Refusal::Gone => AdminError::Gone,
            Refusal::Node(e) => AdminError::Node(e),
            Refusal::MaxChildren(max) => AdminError::MaxChildren(max),
            Refusal::Escalated(exit) => AdminError::Escalated(exit),
            Refusal::NotRunning { id, why } => AdminError::NotRunning { id, why },
            Refusal::NotHosted(id) => AdminError::NotHosted(id),
        }
    }
}

/// The hosting actor: the supervisor it runs, and the task that sends its events up.
pub(super) struct Hosted {
    sup: SupervisorRef,
    forward: Option<tokio::task::JoinHandle<()>>,
    lanes: Lanes,
}

impl Hosted {
    /// Ends the supervisor and waits until its last event has gone up.
    async fn finish(&mut self) {
        self.sup.shutdown().await;
        if let Some(forward) = self.forward.take() {
            let _ = forward.await;
        }
    }
}

impl Actor for Hosted {
    type Args = Setup;
    type Msg = Request;
    type Reply = Reply;

    async fn start(setup: Setup) -> Result<Self, BoxError> {
        let mut sup = Supervisor::new(setup.flags).name(setup.name);
        if let Some(max) = setup.max_children {
            sup = sup.max_children(max);
        }
        for child in setup.children {
            sup = sup.child(child);
        }
        let events = sup.events();
        let sup = sup.start().await.map_err(|e| e.to_string())?;
        let forward = runtime::handle().spawn(forward(events, setup.events));
        Ok(Hosted {
            sup,
            forward: Some(forward),
            lanes: Lanes::default(),
        })
    }

    async fn handle(&mut self, request: Request) -> Reply {
        let done = |r: Result<(), AdminError>| Reply::Done(r.map_err(Refusal::of));
        match request {
            Request::Which => match self.sup.which_children().await {
                Ok(children) => Reply::Which(children),
                Err(e) => done(Err(e)),
            },
            Request::Count => match self.sup.count_children().await {
                Ok(counts) => Reply::Count(counts),
                Err(e) => done(Err(e)),
            },
            Request::Start(spec, _) => done(self.sup.start_child(spec).await),
            Request::Admin(Admin::Terminate(id)) => done(self.sup.terminate_child(&id).await),
            Request::Admin(Admin::Restart(id)) => done(self.sup.restart_child(&id).await),
            Request::Admin(Admin::Delete(id)) => done(self.sup.delete_child(&id).await),
            Request::Shutdown => {
                self.finish().await;
                done(Ok(()))
            }
            Request::Child {
                id, payload, send, ..
            } => {
                // Answered from the child's lane, once its reply comes: the next
                // request is served meanwhile. (Sent as a cast, nobody waits.)
                let deferred = defer_reply();
                let job = Job::new(payload, send, move |out| {
                    if let Some(deferred) = deferred {
                        deferred.answer(&Reply::Child(out));
                    }
                });
                self.lanes.push(&self.sup, id, job);
                // Not sent: the lane answers.
                Reply::Child(Ok(Vec::new()))
            }
        }
    }

    async fn stopping(&mut self) {
        self.finish().await;
    }
}

/// Sends each event up (if anyone listens), in order, until the supervisor's end;
/// then ends the process that hosts it, as a local supervisor's end ends its
/// [`Supervisor::run`].
async fn forward(mut events: Events, up: Option<Queue<SupervisorEvent>>) {
    let mut sending = up.is_some();
    while let Some(event) = events.next().await {
        let last = matches!(event, SupervisorEvent::ShutDown { .. });
        // A put fails when the placing process is gone: nobody is left to tell, and
        // the node stops this process after its grace period.
        if let Some(up) = up.as_ref().filter(|_| sending) {
            sending = up.put(&event, true, None).await.is_ok();
        }
        if last {
            break;
        }
    }
    crate::runtime::stop::request();
}
