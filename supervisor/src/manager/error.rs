//! The manager's error: what a manager, its server or a proxy call can fail with.

use multiproc_core::Exhausted;
use multiproc_transport::Error as TransportError;
use serde::{Deserialize, Serialize};

/// What can go wrong with a manager or a proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The manager's server is gone (exited, killed, or unreachable).
    #[error("the manager is gone: {0}")]
    Gone(String),
    /// Connecting failed (nothing listens there).
    #[error("cannot connect to the manager: {0}")]
    Connect(String),
    /// The authkey handshake failed.
    #[error("authentication with the manager failed: {0}")]
    Auth(String),
    /// No type of that name is registered with the server.
    #[error("no type `{0}` is registered with this manager")]
    UnknownType(String),
    /// The type has no method of that name (Python: `AttributeError`, as a
    /// `RemoteError`).
    #[error("`{typeid}` has no registered method `{method}`")]
    UnknownMethod {
        /// The type.
        typeid: String,
        /// The method asked for.
        method: String,
    },
    /// No object has that number (it was never created here).
    #[error("the manager has no object {0}")]
    UnknownObject(u64),
    /// Nothing was published under that name.
    #[error("nothing is published as `{0}`")]
    UnknownName(String),
    /// A published object of another type than the proxy asked for.
    #[error("`{name}` is a `{found}`, not a `{expected}`")]
    WrongType {
        /// The name.
        name: String,
        /// The type the proxy is for.
        expected: String,
        /// The object's type.
        found: String,
    },
    /// The arguments did not decode as the method's (wrong types over the wire).
    #[error("wrong arguments for `{method}`: {message}")]
    Args {
        /// The method.
        method: String,
        /// What did not decode.
        message: String,
    },
    /// A value did not decode as the proxy's type, or a request as a request.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// A value did not encode.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The manager restarted since this proxy was made, and its object with it.
    #[error("the manager restarted; this proxy's object is gone")]
    Restarted,
    /// A method of a registered type panicked (Python: `RemoteError`).
    #[error("`{typeid}.{method}` failed: {message}")]
    Failed {
        /// The type.
        typeid: String,
        /// The method.
        method: String,
        /// The panic's message.
        message: String,
    },
    /// A list index out of range (Python: `IndexError`).
    #[error("index {index} out of range for a list of {len}")]
    Index {
        /// The index.
        index: i64,
        /// The list's length.
        len: usize,
    },
    /// The queue is empty (a get that would not wait, or waited its timeout out).
    #[error("the queue is empty")]
    Empty,
    /// The queue is full.
    #[error("the queue is full")]
    Full,
    /// Misuse: a release of an unlocked lock, `task_done` too many times.
    #[error("{0}")]
    Misuse(String),
    /// The manager's process could not be started or did not start listening.
    #[error("cannot start the manager: {0}")]
    Start(String),
    /// The system had no room for what the manager or a proxy needed (its process, a
    /// connection, a thread, shared memory); the source names the limit and how to
    /// raise it.
    #[error("{what}: {source}")]
    Exhausted {
        /// What was being done.
        what: String,
        /// The limit.
        #[source]
        source: Exhausted,
    },
}

impl ManagerError {
    pub(crate) fn exhausted(what: &str, source: Exhausted) -> ManagerError {
        ManagerError::Exhausted {
            what: what.to_string(),
            source,
        }
    }
}

impl From<TransportError> for ManagerError {
    fn from(e: TransportError) -> ManagerError {
        match e {
            TransportError::Auth(a) => ManagerError::Auth(a.to_string()),
            TransportError::Decode(d) => ManagerError::Decode(d.to_string()),
            TransportError::Encode(d) => ManagerError::Encode(d.to_string()),
            // Nothing was written (or the oversized frame was skipped): the link goes on.
            TransportError::Frame(f @ multiproc_transport::FrameError::TooLarge { .. }) => {
                ManagerError::Encode(f.to_string())
            }
            TransportError::Exhausted(x) => {
                ManagerError::exhausted("cannot open a connection to the manager", x)
            }
            e => ManagerError::Gone(e.to_string()),
        }
    }
}
