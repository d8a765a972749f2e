//! What travels between a far handle and the root's gateway: the primitive's key, the
//! operation, and its answer or failure.

use std::time::Duration;

use multiproc_core::queue::QueueError;
use multiproc_core::sync::{BarrierBroken, Misuse};
use multiproc_core::{Identity, NodeError};
use serde::{Deserialize, Serialize};

use crate::sync::SyncError;
use crate::sync::refs::Addr;

/// Names a primitive at its root: its host, id and secret (as its handles do).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct FarKey {
    owner: Identity,
    id: u64,
    secret: u64,
}

impl FarKey {
    pub(crate) fn of(addr: &Addr) -> FarKey {
        FarKey {
            owner: addr.owner.clone(),
            id: addr.id,
            secret: addr.secret,
        }
    }

    /// The key of something else its owner serves to nodes (a supervisor).
    pub(crate) fn new(owner: Identity, id: u64, secret: u64) -> FarKey {
        FarKey { owner, id, secret }
    }
}

/// An operation on a far primitive.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FarOp {
    Acquire {
        block: bool,
        timeout: Option<Duration>,
    },
    Release,
    Locked,
    Set,
    Clear,
    IsSet,
    Wait {
        timeout: Option<Duration>,
    },
    Put {
        #[serde(with = "serde_bytes")]
        item: Vec<u8>,
        block: bool,
        timeout: Option<Duration>,
    },
    Get {
        block: bool,
        timeout: Option<Duration>,
    },
    Size,
    TaskDone,
    Join,
    /// A semaphore's value.
    Value,
    Notify {
        n: usize,
    },
    BarrierWait {
        timeout: Option<Duration>,
    },
    Abort,
    Reset,
    Info,
    /// The current address of the child `child` of a supervisor, waiting through
    /// its restart if `wait` (its answer is the supervisor's, encoded: an `Item`).
    Resolve {
        child: String,
        wait: bool,
    },
    /// The process `pid` of the asker's node (a descendant of a placed process, not
    /// placed itself) has ended: what it held is a dead holder's. Its key is none.
    Died,
}

/// What travels from a far handle to the gateway.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FarCall {
    pub(super) key: FarKey,
    /// The asking process's pid on its node: who holds a lock it takes.
    pub(super) pid: u32,
    /// The asking thread there: who owns an `RLock` it takes, or waits on a
    /// condition or barrier.
    pub(super) thread: u64,
    pub(super) op: FarOp,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FarValue {
    Bool(bool),
    Done,
    Item(#[serde(with = "serde_bytes")] Vec<u8>),
    Size {
        size: usize,
        full: bool,
    },
    /// A semaphore's value, a barrier party's index.
    Count(usize),
    Info {
        parties: usize,
        n_waiting: usize,
        broken: bool,
    },
}

/// A far operation's failure, as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum FarError {
    OwnerDied,
    Full,
    Empty,
    Misuse(Misuse),
    Queue(QueueError),
    OwnerGone(Identity),
    TooLarge {
        len: usize,
        capacity: usize,
    },
    Forged,
    Broken(BarrierBroken),
    /// The key was not exported to this node, or its process has exited.
    NotExported,
    NodeDown {
        node: String,
        why: String,
    },
    /// Anything else, formatted where it happened.
    Failed(String),
}

pub(crate) type FarReply = Result<FarValue, FarError>;

impl From<SyncError> for FarError {
    fn from(e: SyncError) -> FarError {
        match e {
            SyncError::OwnerDied => FarError::OwnerDied,
            SyncError::Full => FarError::Full,
            SyncError::Empty => FarError::Empty,
            SyncError::Misuse(m) => FarError::Misuse(m),
            SyncError::Queue(q) => FarError::Queue(q),
            SyncError::OwnerGone(id) => FarError::OwnerGone(id),
            SyncError::TooLarge { len, capacity } => FarError::TooLarge { len, capacity },
            SyncError::Forged => FarError::Forged,
            SyncError::BrokenBarrier(why) => FarError::Broken(why),
            SyncError::Node(NodeError::NodeDown { node, why }) => FarError::NodeDown { node, why },
            e => FarError::Failed(e.to_string()),
        }
    }
}

impl From<FarError> for SyncError {
    fn from(e: FarError) -> SyncError {
        match e {
            FarError::OwnerDied => SyncError::OwnerDied,
            FarError::Full => SyncError::Full,
            FarError::Empty => SyncError::Empty,
            FarError::Misuse(m) => SyncError::Misuse(m),
            FarError::Queue(q) => SyncError::Queue(q),
            FarError::OwnerGone(id) => SyncError::OwnerGone(id),
            FarError::TooLarge { len, capacity } => SyncError::TooLarge { len, capacity },
            FarError::Forged | FarError::NotExported => SyncError::Forged,
            FarError::Broken(why) => SyncError::BrokenBarrier(why),
            FarError::NodeDown { node, why } => SyncError::Node(NodeError::NodeDown { node, why }),
            FarError::Failed(message) => SyncError::Node(NodeError::Remote {
                node: "(the root)".to_string(),
                message,
            }),
        }
    }
}

/// What a node sends a root's gateway: a far operation and the root's token at the
/// node (the gateway answers only for what it exported to that token).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GatewayCall {
    pub(crate) token: u64,
    #[serde(with = "serde_bytes")]
    pub(crate) call: Vec<u8>,
}
