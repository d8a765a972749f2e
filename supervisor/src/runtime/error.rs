//! Errors of processes, calls and bootstrap.

use std::time::Duration;

use multiproc_core::{BootstrapError, CodecError, Exhausted, ExitReason, RemoteError};
use multiproc_transport::Resource;

/// Everything that can go wrong when creating, starting, stopping or calling a process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Something about the node a process was placed on (see `multiproc::node`): it
    /// is down, it refused, or what was asked cannot cross hosts.
    #[error(transparent)]
    Node(#[from] multiproc_core::NodeError),
    /// `main` does not call `multiproc::init()` first: a process started by multiproc
    /// (a child, or the forkserver) ran it as a new program and reached a call that
    /// starts processes, where it ended instead of starting the program again.
    #[error(
        "`main` did not call `multiproc::init()` first, so a process started by multiproc ran \
         it as a new program; add `multiproc::init();` as the first line of `main`"
    )]
    InitNotCalled,
    /// The child exited before it answered the bootstrap handshake.
    #[error(
        "child {name} exited ({reason}) before completing the multiproc handshake; \
         does `main` call `multiproc::init()` as its first line?"
    )]
    NoHandshake {
        /// The child's name.
        name: String,
        /// How it ended.
        reason: ExitReason,
    },
    /// The child did not answer the bootstrap handshake in time; it was killed.
    #[error(
        "child {name} did not complete the multiproc handshake within {timeout:?} and was killed; \
         does `main` call `multiproc::init()` as its first line?"
    )]
    HandshakeTimeout {
        /// The child's name.
        name: String,
        /// Its process id (it has been killed).
        pid: u32,
        /// The handshake timeout.
        timeout: Duration,
    },
    /// The child refused to start.
    #[error("child {name} refused to start: {source}")]
    Bootstrap {
        /// The child's name.
        name: String,
        /// Why.
        #[source]
        source: BootstrapError,
    },
    /// The function or actor type was not registered.
    #[error(
        "`{type_name}` is not registered as a multiproc entry point; \
         add `multiproc::{macro_name}!({short});` next to its definition"
    )]
    Unregistered {
        /// The full type name of the function or actor.
        type_name: &'static str,
        /// Its short name, for the hint.
        short: String,
        /// The macro that registers it.
        macro_name: &'static str,
    },
    /// A closure was given where a registered function is needed.
    #[error(
        "a closure (`{type_name}`) cannot run in a child process: a child finds its entry \
         point by name; define a `fn` and add `multiproc::register!(name_of_fn);`"
    )]
    Closure {
        /// The closure's type name.
        type_name: &'static str,
    },
    /// The Hello (which carries the encoded arguments) is over the frame limit.
    #[error(
        "the arguments of {name} encode to {len} bytes, over the frame limit of {max}; \
         pass large data through a pipe or shared memory instead"
    )]
    ArgsTooLarge {
        /// The process's name.
        name: String,
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The combination of options is not supported.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// No entry point of that name and kind is registered in this binary.
    #[error("no multiproc entry point named `{0}` is registered in this binary")]
    UnknownEntry(String),
    /// Two entry points were registered under one name.
    #[error("two multiproc entry points are registered as `{0}`")]
    DuplicateEntry(String),
    /// `start` was called twice.
    #[error("cannot start a process twice ({0})")]
    AlreadyStarted(String),
    /// The operation needs a started process.
    #[error("process {0} has not been started")]
    NotStarted(String),
    /// `close` was called while the process runs.
    #[error("cannot close process {0} while it is still running; join or kill it first")]
    StillRunning(String),
    /// The process object was closed.
    #[error("process object {0} is closed")]
    Closed(String),
    /// A daemon process tried to start a child (Python forbids it too).
    #[error("daemonic processes are not allowed to have children")]
    DaemonWithChildren,
    /// The process's own arguments could not be encoded.
    #[error("cannot encode the arguments of {name}: {source}")]
    Args {
        /// The process's name.
        name: String,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// A call or cast failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The system refused a descriptor, memory, a process or a thread for want of
    /// room; the source names the limit that was reached and how to raise it.
    #[error("{what}: {source}")]
    Exhausted {
        /// What we were doing.
        what: &'static str,
        /// The limit.
        #[source]
        source: Exhausted,
    },
    /// The operating system refused.
    #[error("{what}: {source}")]
    Os {
        /// What we were doing.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The error of a call that may create descriptors or memory: [`Error::Exhausted`]
    /// when the system is out of them, else [`Error::Os`].
    pub(crate) fn os(what: &'static str, source: impl Into<std::io::Error>) -> Self {
        Error::refused(what, source.into(), Resource::Fd)
    }

    /// As [`os`](Error::os), for a call that creates a process or a thread, where
    /// `EAGAIN` means no room for another task.
    pub(crate) fn spawning(what: &'static str, source: impl Into<std::io::Error>) -> Self {
        Error::refused(what, source.into(), Resource::Task)
    }

    fn refused(what: &'static str, source: std::io::Error, creating: Resource) -> Self {
        match multiproc_transport::exhausted(&source, creating) {
            Some(source) => Error::Exhausted { what, source },
            None => Error::Os { what, source },
        }
    }
}

/// A call or cast to an actor failed. The message is lost only if it says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The actor runs on another node, which is down or not connected here, or
    /// failed to relay the call. A call in flight when its node dies fails with
    /// [`NodeError::NodeDown`](multiproc_core::NodeError::NodeDown).
    #[error(transparent)]
    Node(#[from] multiproc_core::NodeError),
    /// No reply came within the timeout. The message may still be handled.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The message could not be encoded (nothing was sent).
    #[error("cannot encode the message: {0}")]
    Encode(CodecError),
    /// The message is over the maximum frame length (nothing was sent).
    #[error("message of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The reply did not decode as the expected type.
    #[error("cannot decode the reply: {0}")]
    Decode(CodecError),
    /// The call failed along the tree or at its destination.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// This process is shutting down and cannot route messages any more.
    #[error("this process is shutting down")]
    ShuttingDown,
    /// The supervised child is being restarted (and the caller chose not to wait).
    #[error("the child `{0}` is restarting")]
    Restarting(String),
    /// The supervised child is not running and will not be restarted (stopped,
    /// deleted, or its supervisor ended).
    #[error("the child `{0}` is not running: {1}")]
    NotRunning(String, String),
    /// The child of the parent (its id here) through which a handle from
    /// [`ChildSupervisorRef::child_ref`](crate::ChildSupervisorRef::child_ref)
    /// reaches its own child is not a supervisor on a node made with
    /// [`Supervisor::into_child`](crate::Supervisor::into_child).
    #[error("the child `{0}` is not a supervisor on a node (Supervisor::into_child)")]
    NotHosted(String),
}
