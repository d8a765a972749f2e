//! Supervisors, blocking: `SupervisorRef`, `SupervisedRef`, `DynamicSupervisor` and the
//! event stream.

use std::time::Duration;

use super::block_on;
use crate::CallError;

/// A running supervisor, with blocking methods; see [`crate::SupervisorRef`].
#[derive(Debug, Clone)]
pub struct SupervisorRef(pub crate::SupervisorRef);

impl SupervisorRef {
    /// Validates and starts `supervisor`; see [`crate::Supervisor::start`].
    ///
    /// # Errors
    ///
    /// As [`crate::Supervisor::start`].
    pub fn start(supervisor: crate::Supervisor) -> Result<SupervisorRef, crate::AdminError> {
        block_on(supervisor.start()).map(SupervisorRef)
    }

    /// The children; see [`crate::SupervisorRef::which_children`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::which_children`].
    pub fn which_children(&self) -> Result<Vec<crate::ChildStatus>, crate::AdminError> {
        block_on(self.0.which_children())
    }

    /// Counts; see [`crate::SupervisorRef::count_children`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::count_children`].
    pub fn count_children(&self) -> Result<crate::ChildCounts, crate::AdminError> {
        block_on(self.0.count_children())
    }

    /// Adds and starts a child; see [`crate::SupervisorRef::start_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::start_child`].
    pub fn start_child(&self, spec: crate::ChildSpec) -> Result<(), crate::AdminError> {
        block_on(self.0.start_child(spec))
    }

    /// Stops a child; see [`crate::SupervisorRef::terminate_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::terminate_child`].
    pub fn terminate_child(&self, id: &str) -> Result<(), crate::AdminError> {
        block_on(self.0.terminate_child(id))
    }

    /// Starts a stopped child again; see [`crate::SupervisorRef::restart_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::restart_child`].
    pub fn restart_child(&self, id: &str) -> Result<(), crate::AdminError> {
        block_on(self.0.restart_child(id))
    }

    /// Forgets a stopped child; see [`crate::SupervisorRef::delete_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisorRef::delete_child`].
    pub fn delete_child(&self, id: &str) -> Result<(), crate::AdminError> {
        block_on(self.0.delete_child(id))
    }

    /// Stops everything and ends the supervisor.
    pub fn shutdown(&self) -> crate::SupervisorExit {
        block_on(self.0.shutdown())
    }

    /// Waits for the supervisor to end.
    pub fn join(&self) -> crate::SupervisorExit {
        block_on(self.0.join())
    }

    /// A stream of events from now on.
    pub fn events(&self) -> Events {
        Events(self.0.events())
    }

    /// A stable handle to the actor child `id`; see [`crate::SupervisedRef`].
    pub fn child_ref<A: crate::Actor>(&self, id: &str) -> SupervisedRef<A> {
        SupervisedRef(self.0.child_ref(id))
    }
}

/// A stable handle to a supervised actor child, with blocking calls; see
/// [`crate::SupervisedRef`].
#[derive(Debug)]
pub struct SupervisedRef<A>(pub crate::SupervisedRef<A>);

impl<A: crate::Actor> SupervisedRef<A> {
    /// Calls the child, waiting through a restart.
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisedRef::call`].
    pub fn call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        block_on(self.0.call(msg))
    }

    /// Calls within `timeout` in all.
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisedRef::call_timeout`].
    pub fn call_timeout(&self, msg: A::Msg, timeout: Duration) -> Result<A::Reply, CallError> {
        block_on(self.0.call_timeout(msg, timeout))
    }

    /// Calls only if the child runs now.
    ///
    /// # Errors
    ///
    /// As [`crate::SupervisedRef::try_call`].
    pub fn try_call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        block_on(self.0.try_call(msg))
    }
}

/// A supervisor's events, read by blocking; see [`crate::Events`].
#[derive(Debug)]
pub struct Events(pub crate::Events);

impl Iterator for Events {
    type Item = crate::SupervisorEvent;

    /// Blocks for the next event; `None` once the supervisor has ended.
    fn next(&mut self) -> Option<crate::SupervisorEvent> {
        block_on(self.0.next())
    }
}

/// Runs `supervisor` as this process's work until the process is asked to stop or the
/// supervisor gives up; see [`crate::Supervisor::run`].
///
/// # Errors
///
/// As [`crate::Supervisor::run`].
pub fn run_supervisor(supervisor: crate::Supervisor) -> Result<(), crate::AdminError> {
    block_on(supervisor.run())
}

/// A dynamic supervisor, with blocking methods; see [`crate::DynamicSupervisor`].
#[derive(Debug)]
pub struct DynamicSupervisor(pub crate::DynamicSupervisor);

impl DynamicSupervisor {
    /// Starts it; see [`crate::DynamicSupervisor::start`].
    ///
    /// # Errors
    ///
    /// As [`crate::DynamicSupervisor::start`].
    pub fn start(
        flags: crate::SupervisorFlags,
        template: crate::ChildSpec,
        max_children: Option<usize>,
    ) -> Result<DynamicSupervisor, crate::AdminError> {
        block_on(crate::DynamicSupervisor::start(
            flags,
            template,
            max_children,
        ))
        .map(DynamicSupervisor)
    }

    /// Starts a child with `args`; see [`crate::DynamicSupervisor::start_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::DynamicSupervisor::start_child`].
    pub fn start_child<T: serde::Serialize>(&self, args: &T) -> Result<String, crate::AdminError> {
        block_on(self.0.start_child(args))
    }

    /// Stops and forgets a child; see [`crate::DynamicSupervisor::terminate_child`].
    ///
    /// # Errors
    ///
    /// As [`crate::DynamicSupervisor::terminate_child`].
    pub fn terminate_child(&self, id: &str) -> Result<(), crate::AdminError> {
        block_on(self.0.terminate_child(id))
    }

    /// The supervisor underneath, with blocking methods.
    pub fn supervisor(&self) -> SupervisorRef {
        SupervisorRef(self.0.supervisor().clone())
    }
}
