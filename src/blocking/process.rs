//! `Process` and `ActorRef`, blocking: starting, joining and calling child processes.

use std::ffi::OsString;
use std::time::Duration;

use super::block_on;
use crate::{Actor, CallError, Error, ExitReason, Identity, Output, Target};

/// A child process, with blocking methods; see [`crate::Process`].
#[derive(Debug)]
pub struct Process(crate::Process);

impl Process {
    /// A process that will run the registered function `target` with `args`.
    pub fn new<F, M>(target: F, args: F::Args) -> Process
    where
        F: Target<M>,
    {
        Process(crate::Process::new(target, args))
    }

    /// A process that will host the registered actor `A`.
    pub fn actor<A: Actor>(args: A::Args) -> Process {
        Process(crate::Process::actor::<A>(args))
    }

    /// Sets the name.
    pub fn named(self, name: impl Into<String>) -> Self {
        Process(self.0.named(name))
    }

    /// Makes the process a daemon (or not).
    pub fn daemon(self, daemon: bool) -> Self {
        Process(self.0.daemon(daemon))
    }

    /// Sets an environment variable for the child.
    pub fn env(self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        Process(self.0.env(key, value))
    }

    /// Captures stdout and stderr; see [`crate::Process::capture_output`].
    pub fn capture_output(self) -> Self {
        Process(self.0.capture_output())
    }

    /// Sets resource limits; see [`crate::Process::limits`].
    pub fn limits(self, limits: crate::Limits) -> Self {
        Process(self.0.limits(limits))
    }

    /// Chooses how the child is made; see [`crate::Process::start_method`].
    pub fn start_method(self, method: crate::StartMethod) -> Self {
        Process(self.0.start_method(method))
    }

    /// Requires heartbeats; see [`crate::Process::heartbeat`].
    pub fn heartbeat(self, interval: Duration) -> Self {
        Process(self.0.heartbeat(interval))
    }

    /// Sets the handshake timeout.
    pub fn handshake_timeout(self, timeout: Duration) -> Self {
        Process(self.0.handshake_timeout(timeout))
    }

    /// The name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The identity.
    pub fn identity(&self) -> &Identity {
        self.0.identity()
    }

    /// Whether it is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.0.is_daemon()
    }

    /// The OS process id, once started.
    pub fn pid(&self) -> Option<u32> {
        self.0.pid()
    }

    /// Whether it runs.
    pub fn is_alive(&self) -> bool {
        self.0.is_alive()
    }

    /// Why it ended, once it has.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.0.exit_reason()
    }

    /// Python's `exitcode`.
    pub fn exit_code(&self) -> Option<i32> {
        self.0.exit_code()
    }

    /// Captured output, once joined.
    pub fn output(&self) -> Option<Output> {
        self.0.output()
    }

    /// A handle to the actor it hosts.
    pub fn actor_ref<A: Actor>(&self) -> ActorRef<A> {
        ActorRef(self.0.actor_ref())
    }

    /// Starts it; see [`crate::Process::start`].
    ///
    /// # Errors
    ///
    /// As [`crate::Process::start`].
    pub fn start(&mut self) -> Result<(), Error> {
        block_on(self.0.start())
    }

    /// Waits for it to exit.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::join`].
    pub fn join(&self) -> Result<ExitReason, Error> {
        block_on(self.0.join())
    }

    /// Waits at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::join_timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<ExitReason>, Error> {
        block_on(self.0.join_timeout(timeout))
    }

    /// Sends SIGTERM.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::terminate`].
    pub fn terminate(&self) -> Result<(), Error> {
        self.0.terminate()
    }

    /// Sends SIGKILL.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::kill`].
    pub fn kill(&self) -> Result<(), Error> {
        self.0.kill()
    }

    /// Asks it to stop, then kills it after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::stop`].
    pub fn stop(&self, timeout: Duration) -> Result<ExitReason, Error> {
        block_on(self.0.stop(timeout))
    }

    /// Releases the process object.
    ///
    /// # Errors
    ///
    /// As [`crate::Process::close`].
    pub fn close(&mut self) -> Result<(), Error> {
        self.0.close()
    }

    /// The async process object.
    pub fn into_async(self) -> crate::Process {
        self.0
    }

    /// Borrows the async process object.
    pub fn as_async(&self) -> &crate::Process {
        &self.0
    }
}

impl From<crate::Process> for Process {
    fn from(p: crate::Process) -> Self {
        Process(p)
    }
}

/// The address of an actor, with blocking calls; see [`crate::ActorRef`].
#[derive(Debug)]
pub struct ActorRef<A>(pub crate::ActorRef<A>);

impl<A> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef(self.0.clone())
    }
}

impl<A: Actor> ActorRef<A> {
    /// Sends `msg` and waits for the reply.
    ///
    /// # Errors
    ///
    /// As [`crate::ActorRef::call`].
    pub fn call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        self.0.call_blocking(msg)
    }

    /// Sends `msg` and waits at most `timeout` for the reply.
    ///
    /// # Errors
    ///
    /// As [`crate::ActorRef::call_timeout`].
    pub fn call_timeout(&self, msg: A::Msg, timeout: Duration) -> Result<A::Reply, CallError> {
        block_on(self.0.call_timeout(msg, timeout))
    }

    /// Sends `msg` without waiting.
    ///
    /// # Errors
    ///
    /// As [`crate::ActorRef::cast`].
    pub fn cast(&self, msg: A::Msg) -> Result<(), CallError> {
        self.0.cast(msg)
    }
}

/// Blocks until this process is asked to stop; see [`crate::wait_for_stop`].
pub fn wait_for_stop() {
    block_on(crate::wait_for_stop());
}

/// Stops every child of this process (ask, wait up to `timeout`, kill); see
/// [`crate::stop_children`].
pub fn stop_children(timeout: Duration) {
    block_on(crate::stop_children(timeout));
}
