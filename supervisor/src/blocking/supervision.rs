//! Supervisors, blocking: `SupervisorRef`, `SupervisedRef`, `DynamicSupervisor` and the
//! event stream.

use std::time::Duration;

use multiproc_core::{ChildSpec, SupervisorFlags};

use crate::process::actor::Actor;
use crate::runtime::block_on;
use crate::runtime::error::CallError;
use crate::supervision::{
    AdminError, ChildCounts, ChildStatus, Supervisor, SupervisorEvent, SupervisorExit,
};

face!(
    /// A running supervisor, with blocking methods; see [`crate::SupervisorRef`].
    #[derive(Debug, Clone)]
    SupervisorRef(crate::supervision::SupervisorRef)
);

impl SupervisorRef {
    /// Validates and starts `supervisor`; see [`crate::Supervisor::start`].
    ///
    /// # Errors
    ///
    /// As [`crate::Supervisor::start`].
    pub fn start(supervisor: Supervisor) -> Result<SupervisorRef, AdminError> {
        block_on(supervisor.start()).map(SupervisorRef)
    }

    /// The node its own actor runs on; see [`crate::SupervisorRef::node`].
    pub fn node(&self) -> Option<&str> {
        self.0.node()
    }

    mirror! {
        /// The children; see [`crate::SupervisorRef::which_children`].
        ///
        /// # Errors
        ///
        /// As [`crate::SupervisorRef::which_children`].
        pub fn which_children(&self) -> Result<Vec<ChildStatus>, AdminError> => block;

        /// Counts; see [`crate::SupervisorRef::count_children`].
        ///
        /// # Errors
        ///
        /// As [`crate::SupervisorRef::count_children`].
        pub fn count_children(&self) -> Result<ChildCounts, AdminError> => block;

        /// Adds and starts a child; see [`crate::SupervisorRef::start_child`].
        ///
        /// # Errors
        ///
        /// As [`crate::SupervisorRef::start_child`].
        pub fn start_child(&self, spec: ChildSpec) -> Result<(), AdminError> => block;

        /// Stops a child; see [`crate::SupervisorRef::terminate_child`].
        ///
        /// # Errors
        ///
        /// As [`crate::SupervisorRef::terminate_child`].
        pub fn terminate_child(&self, id: &str) -> Result<(), AdminError> => block;

        /// Starts a stopped child again; see [`crate::SupervisorRef::restart_child`].
        ///
        /// # Errors
        ///
        /// As [`crate::SupervisorRef::restart_child`].
        pub fn restart_child(&self, id: &str) -> Result<(), AdminError> => block;

        /// Forgets a stopped child; see [`crate::SupervisorRef::delete_child`].
        ///
        /// # Errors
        ///
        /// As [`crate::SupervisorRef::delete_child`].
        pub fn delete_child(&self, id: &str) -> Result<(), AdminError> => block;

        /// Stops everything and ends the supervisor.
        pub fn shutdown(&self) -> SupervisorExit => block;

        /// Waits for the supervisor to end.
        pub fn join(&self) -> SupervisorExit => block;

        /// A stream of events from now on.
        pub fn events(&self) -> Events => wrap;

        /// A stream of the events since the start (the last 1024), then the new ones;
        /// see [`crate::SupervisorRef::events_from_start`].
        pub fn events_from_start(&self) -> Events => wrap;

        /// A stable handle to the actor child `id`; see [`crate::SupervisedRef`].
        pub fn child_ref[A: Actor](&self, id: &str) -> SupervisedRef<A> => wrap;

        /// The handle of the supervisor child `id` on a node, across its restarts;
        /// see [`crate::ChildSupervisorRef`].
        pub fn child_supervisor(&self, id: &str) -> ChildSupervisorRef => wrap;
    }
}

face!(
    /// A supervisor on a node, child of a supervisor here that restarts it, with
    /// blocking calls; see [`crate::ChildSupervisorRef`].
    #[derive(Debug, Clone)]
    ChildSupervisorRef(crate::supervision::ChildSupervisorRef)
);

impl ChildSupervisorRef {
    /// Its id in its parent.
    pub fn id(&self) -> &str {
        self.0.id()
    }

    /// A stream of the nested supervisor's events across its incarnations; see
    /// [`crate::ChildSupervisorRef::events`].
    ///
    /// # Errors
    ///
    /// As [`crate::ChildSupervisorRef::events`].
    pub fn events(&self) -> Result<Events, AdminError> {
        crate::runtime::block_on(self.0.events()).map(Events::from)
    }

    mirror! {
        /// The nested supervisor's children; see
        /// [`crate::ChildSupervisorRef::which_children`].
        ///
        /// # Errors
        ///
        /// As [`crate::ChildSupervisorRef::which_children`].
        pub fn which_children(&self) -> Result<Vec<ChildStatus>, AdminError> => block;

        /// Counts; see [`crate::ChildSupervisorRef::count_children`].
        ///
        /// # Errors
        ///
        /// As [`crate::ChildSupervisorRef::count_children`].
        pub fn count_children(&self) -> Result<ChildCounts, AdminError> => block;

        /// Adds and starts a child there; see
        /// [`crate::ChildSupervisorRef::start_child`].
        ///
        /// # Errors
        ///
        /// As [`crate::ChildSupervisorRef::start_child`].
        pub fn start_child(&self, spec: ChildSpec) -> Result<(), AdminError> => block;

        /// Stops a child there; see [`crate::ChildSupervisorRef::terminate_child`].
        ///
        /// # Errors
        ///
        /// As [`crate::ChildSupervisorRef::terminate_child`].
        pub fn terminate_child(&self, id: &str) -> Result<(), AdminError> => block;

        /// Starts a stopped child there again; see
        /// [`crate::ChildSupervisorRef::restart_child`].
        ///
        /// # Errors
        ///
        /// As [`crate::ChildSupervisorRef::restart_child`].
        pub fn restart_child(&self, id: &str) -> Result<(), AdminError> => block;

        /// Forgets a stopped child there; see
        /// [`crate::ChildSupervisorRef::delete_child`].
        ///
        /// # Errors
        ///
        /// As [`crate::ChildSupervisorRef::delete_child`].
        pub fn delete_child(&self, id: &str) -> Result<(), AdminError> => block;

        /// Waits until the nested supervisor is gone for good (stopped, deleted,
        /// or its parent ended); see [`crate::ChildSupervisorRef::join`] for what
        /// each outcome returns.
        pub fn join(&self) -> SupervisorExit => block;

        /// A stable handle to the nested supervisor's actor child `id`, across its
        /// restarts and the nested supervisor's; see
        /// [`crate::ChildSupervisorRef::child_ref`].
        pub fn child_ref[A: Actor](&self, id: &str) -> SupervisedRef<A> => wrap;
    }
}

face!(
    /// A stable handle to a supervised actor child, with blocking calls; see
    /// [`crate::SupervisedRef`].
    ///
    /// The async handle is what travels between processes:
    /// `SupervisedRef::from(handle)` turns a received one into a blocking one.
    #[derive(Debug)]
    SupervisedRef<A>(crate::supervision::SupervisedRef<A>)
);

impl<A: Actor> SupervisedRef<A> {
    mirror! {
        /// Calls the child, waiting through a restart.
        ///
        /// # Errors
        ///
        /// As [`crate::SupervisedRef::call`].
        pub fn call(&self, msg: A::Msg) -> Result<A::Reply, CallError> => block;

        /// Calls within `timeout` in all.
        ///
        /// # Errors
        ///
        /// As [`crate::SupervisedRef::call_timeout`].
        pub fn call_timeout(&self, msg: A::Msg, timeout: Duration) -> Result<A::Reply, CallError> => block;

        /// Calls only if the child runs now.
        ///
        /// # Errors
        ///
        /// As [`crate::SupervisedRef::try_call`].
        pub fn try_call(&self, msg: A::Msg) -> Result<A::Reply, CallError> => block;

        /// Casts to the child's current process.
        ///
        /// # Errors
        ///
        /// As [`crate::SupervisedRef::cast`].
        pub fn cast(&self, msg: A::Msg) -> Result<(), CallError> => block;
    }
}

face!(
    /// A supervisor's events, read by blocking; the same subscription as
    /// [`crate::Events`], which `Events::from` converts either way.
    ///
    /// From a running supervisor: [`SupervisorRef::events`] (from now on) or
    /// [`SupervisorRef::events_from_start`]; before the start,
    /// `Events::from(supervisor.events())`. As an iterator it ends after the
    /// supervisor's last event (`ShutDown`); [`recv_timeout`](Events::recv_timeout)
    /// and [`try_recv`](Events::try_recv) never wait longer than asked.
    #[derive(Debug)]
    Events(crate::supervision::Events)
);

impl Events {
    /// Blocks for the next event; `None` once the supervisor has ended and every event
    /// was read.
    pub fn recv(&mut self) -> Option<SupervisorEvent> {
        block_on(self.0.next())
    }

    mirror! {
        /// The next event, waiting at most `timeout`.
        ///
        /// # Errors
        ///
        /// `Timeout` when none came in time; `Disconnected` once the supervisor has
        /// ended and every event was read.
        pub fn recv_timeout(&mut self, timeout: Duration) -> Result<SupervisorEvent, std::sync::mpsc::RecvTimeoutError> => block;

        /// The next event already sent, without waiting.
        ///
        /// # Errors
        ///
        /// `Empty` when none is there yet; `Disconnected` once the supervisor has ended
        /// and every event was read.
        pub fn try_recv(&mut self) -> Result<SupervisorEvent, std::sync::mpsc::TryRecvError> => now;
    }
}

impl Iterator for Events {
    type Item = SupervisorEvent;

    /// Blocks for the next event; `None` once the supervisor has ended.
    fn next(&mut self) -> Option<SupervisorEvent> {
        self.recv()
    }
}

/// Runs `supervisor` as this process's work until the process is asked to stop or the
/// supervisor gives up; see [`crate::Supervisor::run`].
///
/// # Errors
///
/// As [`crate::Supervisor::run`].
pub fn run_supervisor(supervisor: Supervisor) -> Result<(), AdminError> {
    block_on(supervisor.run())
}

face!(
    /// A dynamic supervisor, with blocking methods; see [`crate::DynamicSupervisor`].
    #[derive(Debug)]
    DynamicSupervisor(crate::supervision::DynamicSupervisor)
);

impl DynamicSupervisor {
    /// Starts it; see [`crate::DynamicSupervisor::start`].
    ///
    /// # Errors
    ///
    /// As [`crate::DynamicSupervisor::start`].
    pub fn start(
        flags: SupervisorFlags,
        template: ChildSpec,
        max_children: Option<usize>,
    ) -> Result<DynamicSupervisor, AdminError> {
        block_on(crate::supervision::DynamicSupervisor::start(
            flags,
            template,
            max_children,
        ))
        .map(DynamicSupervisor)
    }

    /// Starts it with its own actor on `node`; see
    /// [`crate::DynamicSupervisor::start_on`].
    ///
    /// # Errors
    ///
    /// As [`crate::DynamicSupervisor::start_on`].
    pub fn start_on(
        node: &crate::node::Node,
        flags: SupervisorFlags,
        template: ChildSpec,
        max_children: Option<usize>,
    ) -> Result<DynamicSupervisor, AdminError> {
        block_on(crate::supervision::DynamicSupervisor::start_on(
            node,
            flags,
            template,
            max_children,
        ))
        .map(DynamicSupervisor)
    }

    mirror! {
        /// Starts a child with `args`; see [`crate::DynamicSupervisor::start_child`].
        ///
        /// # Errors
        ///
        /// As [`crate::DynamicSupervisor::start_child`].
        pub fn start_child[T: serde::Serialize](&self, args: &T) -> Result<String, AdminError> => block;

        /// Stops and forgets a child; see [`crate::DynamicSupervisor::terminate_child`].
        ///
        /// # Errors
        ///
        /// As [`crate::DynamicSupervisor::terminate_child`].
        pub fn terminate_child(&self, id: &str) -> Result<(), AdminError> => block;
    }

    /// The supervisor underneath, with blocking methods.
    pub fn supervisor(&self) -> SupervisorRef {
        SupervisorRef(self.0.supervisor().clone())
    }
}
