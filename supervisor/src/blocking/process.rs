//! `Process` and `ActorRef`, blocking: starting, joining and calling child processes.

use std::ffi::OsString;
use std::time::Duration;

use multiproc_core::{ExitReason, Identity, Limits, StartMethod};

use crate::process::actor::Actor;
use crate::remote::client::Node;
use crate::runtime::block_on;
use crate::runtime::error::{CallError, Error};
use crate::runtime::spawn::Output;
use crate::runtime::target::Target;

face!(
    /// A child process, with blocking methods; see [`crate::Process`].
    #[derive(Debug)]
    Process(crate::process::Process)
);

impl Process {
    /// A process that will run the registered function `target` with `args`.
    pub fn new<F, M>(target: F, args: F::Args) -> Process
    where
        F: Target<M>,
    {
        Process(crate::process::Process::new(target, args))
    }

    /// A process that will host the registered actor `A`.
    pub fn actor<A: Actor>(args: A::Args) -> Process {
        Process(crate::process::Process::actor::<A>(args))
    }

    mirror! {
        /// Sets the name.
        pub fn named(self, name: impl Into<String>) -> Self => wrap;

        /// Makes the process a daemon (or not).
        pub fn daemon(self, daemon: bool) -> Self => wrap;

        /// Sets an environment variable for the child.
        pub fn env(self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self => wrap;

        /// Captures stdout and stderr; see [`crate::Process::capture_output`].
        pub fn capture_output(self) -> Self => wrap;

        /// Sets resource limits; see [`crate::Process::limits`].
        pub fn limits(self, limits: Limits) -> Self => wrap;

        /// Chooses how the child is made; see [`crate::Process::start_method`].
        pub fn start_method(self, method: StartMethod) -> Self => wrap;

        /// Requires heartbeats; see [`crate::Process::heartbeat`].
        pub fn heartbeat(self, interval: Duration) -> Self => wrap;

        /// Sets the handshake timeout.
        pub fn handshake_timeout(self, timeout: Duration) -> Self => wrap;

        /// Places it on a node; see [`crate::Process::on`].
        pub fn on(self, node: &Node) -> Self => wrap;

        /// The node it is placed on; `None` for this host.
        pub fn node(&self) -> Option<&Node> => now;

        /// The name.
        pub fn name(&self) -> &str => now;

        /// The identity.
        pub fn identity(&self) -> &Identity => now;

        /// Whether it is a daemon.
        pub fn is_daemon(&self) -> bool => now;

        /// The OS process id, once started.
        pub fn pid(&self) -> Option<u32> => now;

        /// Whether it runs.
        pub fn is_alive(&self) -> bool => now;

        /// Why it ended, once it has.
        pub fn exit_reason(&self) -> Option<ExitReason> => now;

        /// Python's `exitcode`.
        pub fn exit_code(&self) -> Option<i32> => now;

        /// Captured output, once joined.
        pub fn output(&self) -> Option<Output> => now;

        /// A handle to the actor it hosts.
        pub fn actor_ref[A: Actor](&self) -> ActorRef<A> => wrap;

        /// Starts it; see [`crate::Process::start`].
        ///
        /// # Errors
        ///
        /// As [`crate::Process::start`].
        pub fn start(&mut self) -> Result<(), Error> => block(start_in_place);

        /// Waits for it to exit.
        ///
        /// # Errors
        ///
        /// As [`crate::Process::join`].
        pub fn join(&self) -> Result<ExitReason, Error> => block;

        /// Waits at most `timeout`.
        ///
        /// # Errors
        ///
        /// As [`crate::Process::join_timeout`].
        pub fn join_timeout(&self, timeout: Duration) -> Result<Option<ExitReason>, Error> => block;

        /// Sends SIGTERM.
        ///
        /// # Errors
        ///
        /// As [`crate::Process::terminate`].
        pub fn terminate(&self) -> Result<(), Error> => now;

        /// Sends SIGKILL.
        ///
        /// # Errors
        ///
        /// As [`crate::Process::kill`].
        pub fn kill(&self) -> Result<(), Error> => now;

        /// Asks it to stop, then kills it after `timeout`.
        ///
        /// # Errors
        ///
        /// As [`crate::Process::stop`].
        pub fn stop(&self, timeout: Duration) -> Result<ExitReason, Error> => block;

        /// Releases the process object.
        ///
        /// # Errors
        ///
        /// As [`crate::Process::close`].
        pub fn close(&mut self) -> Result<(), Error> => now;
    }
}

face!(
    /// The address of an actor, with blocking calls; see [`crate::ActorRef`].
    ///
    /// The async handle is what travels between processes: `ActorRef::from(handle)`
    /// turns a received one into a blocking one.
    #[derive(Debug)]
    ActorRef<A>(crate::process::actor::ActorRef<A>)
);

impl<A> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef(self.0.clone())
    }
}

impl<A: Actor> ActorRef<A> {
    mirror! {
        /// Sends `msg` and waits for the reply.
        ///
        /// # Errors
        ///
        /// As [`crate::ActorRef::call`].
        pub fn call(&self, msg: A::Msg) -> Result<A::Reply, CallError> => now(call_blocking);

        /// Sends `msg` and waits at most `timeout` for the reply.
        ///
        /// # Errors
        ///
        /// As [`crate::ActorRef::call_timeout`].
        pub fn call_timeout(&self, msg: A::Msg, timeout: Duration) -> Result<A::Reply, CallError> => block;

        /// Sends `msg` without waiting.
        ///
        /// # Errors
        ///
        /// As [`crate::ActorRef::cast`].
        pub fn cast(&self, msg: A::Msg) -> Result<(), CallError> => now;
    }
}

/// Blocks until this process is asked to stop; see [`crate::wait_for_stop`].
pub fn wait_for_stop() {
    block_on(crate::runtime::stop::wait_for_stop());
}

/// Stops every child of this process (ask, wait up to `timeout`, kill); see
/// [`crate::stop_children`].
pub fn stop_children(timeout: Duration) {
    block_on(crate::runtime::children::stop_children(timeout));
}
