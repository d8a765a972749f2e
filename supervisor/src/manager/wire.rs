//! What a proxy asks a manager's server, and the answers: rmp-serde frames on an
//! authenticated connection. Nothing here names code: a request names a registered
//! type, a registered method, an object number or a published name, and arguments
//! that the method decodes as its own types.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::ManagerError;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// The first request on a connection: which incarnation of the server this is.
    Hello,
    /// A new object of a registered type.
    Create { typeid: String, args: ByteBuf },
    /// A method of an object.
    Call {
        id: u64,
        method: String,
        args: ByteBuf,
    },
    /// Gives an object a name other trees can look it up by.
    Publish { name: String, id: u64 },
    /// The object published under a name.
    Lookup { name: String },
    /// Stops the server (its owner asks, at `shutdown`).
    Shutdown,
    /// From here on, requests and answers go through the rings in this shared
    /// memory (the client's, on the same machine); the socket stays as the life line.
    Upgrade { rings: crate::shm::SegmentRef },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    Hello { incarnation: u64 },
    Created { id: u64 },
    Value(ByteBuf),
    Object { id: u64, typeid: String },
    Done,
    Fault(ManagerError),
}
