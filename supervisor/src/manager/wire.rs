//! What a proxy asks a manager's server, and the answers: rmp-serde frames on an
//! authenticated connection. Nothing here names code: a request names a registered
//! type, a registered method, an object number or a published name, and arguments
//! that the method decodes as its own types.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::error::ManagerError;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// The first request on a connection: which incarnation of the server this is.
    Hello,
    /// A new object of a registered type; its first reference is held by the
    /// connection `owner` (the creating process's reference link).
    Create {
        typeid: String,
        args: ByteBuf,
        owner: u64,
    },
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
    /// Makes this connection its process's reference link: the references it takes
    /// are its own, and all of them go when it closes.
    Owner,
    /// One credit for an encoded proxy of object `id`, in flight until a decoding
    /// process takes it with [`RefOp::Accept`].
    Lend { id: u64 },
    /// Reference changes, in the order the process made them (on its reference link).
    Refs { ops: Vec<RefOp> },
    /// How many objects the server holds.
    Count,
    /// Stops the server (its owner asks, at `shutdown`).
    Shutdown,
    /// From here on, requests and answers go through the rings in this shared
    /// memory (the client's, on the same machine); the socket stays as the life line.
    Upgrade {
        rings: crate::runtime::shm::SegmentRef,
    },
}

/// One change to a process's references, sent on its reference link.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum RefOp {
    /// A decoded proxy: a reference, paid with a lent credit when there is one.
    Accept(u64),
    /// A proxy decoded from a copy that stays in a managed object (a dict's `get`):
    /// a reference of its own; the stored copy keeps its credit.
    Share(u64),
    /// A proxy dropped.
    Release(u64),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    Hello { incarnation: u64 },
    Owner { conn: u64 },
    Count { objects: u64 },
    Created { id: u64 },
    Value(ByteBuf),
    Object { id: u64, typeid: String },
    Done,
    Fault(ManagerError),
}
