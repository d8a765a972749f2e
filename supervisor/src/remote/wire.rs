//! What a root and a node's agent say to each other: serde values, encoded with the
//! project's codec, inside `ractor_cluster`'s serialized casts and calls.

use std::sync::Mutex;

use multiproc_core::{ExitReason, StartSpec};
use ractor::RpcReplyPort;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use serde::{Deserialize, Serialize};

use multiproc_core::Refusal;

/// The version of [`Request`] and [`Reply`]; a Hello with another one is refused.
pub(crate) const NODE_PROTOCOL: u32 = 12;

static CLAIMED_BUILD: Mutex<Option<u64>> = Mutex::new(None);

/// The build id a node announces and a root presents: the executable and its set of
/// registered entries, so both sides run the same entries under the same names.
pub(crate) fn build_id() -> u64 {
    claimed_build_id().unwrap_or_else(crate::runtime::registry::build_id)
}

/// The build id this process claims instead of its own, if a test set one.
fn claimed_build_id() -> Option<u64> {
    *CLAIMED_BUILD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes this process claim `id` as its build id in node sessions (tests of the
/// build check).
pub(crate) fn claim_build_id(id: u64) {
    *CLAIMED_BUILD.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
}

/// The process group (in its own scope) a node's agent joins, where a root finds it.
pub(crate) const AGENT_SCOPE: &str = "multiproc";
pub(crate) const AGENT_GROUP: &str = "multiproc.node.agent";

/// A message to an agent: encoded bytes, one way or with a reply port the engine
/// carries across.
pub(crate) enum AgentMsg {
    Cast(Vec<u8>),
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

impl ractor::Message for AgentMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            AgentMsg::Cast(args) => Ok(SerializedMessage::Cast {
                variant: "cast".to_string(),
                args,
                metadata: None,
            }),
            AgentMsg::Call(args, reply) => Ok(SerializedMessage::Call {
                variant: "call".to_string(),
                args,
                reply,
                metadata: None,
            }),
        }
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match message {
            SerializedMessage::Call { args, reply, .. } => Ok(AgentMsg::Call(args, reply)),
            SerializedMessage::Cast { args, .. } => Ok(AgentMsg::Cast(args)),
            SerializedMessage::CallReply(..) => Err(BoxedDowncastErr),
        }
    }
}

/// A root's request. Every request but `Hello` carries the token `Hello` returned.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Opens a root's use of the node.
    Hello {
        protocol: u32,
        build_id: u64,
        /// The root's engine name, which the node finds among its sessions.
        root: String,
        /// The root process's own name, for the node's logs.
        process: String,
        /// How long the root lets a ping go unanswered (ms); the node counts the root
        /// lost after twice that without a ping, even while the session looks open.
        heartbeat_timeout_ms: u64,
    },
    /// Heartbeat.
    Ping { token: u64 },
    /// Start a registered entry.
    Spawn {
        token: u64,
        name: String,
        /// Its identity in the root's tree.
        identity: multiproc_core::Identity,
        start: StartSpec,
        daemon: bool,
        settings: Settings,
    },
    /// Answer when process `id` exits.
    Watch { token: u64, id: u64 },
    /// Send a signal to process `id`.
    Signal { token: u64, id: u64, signal: i32 },
    /// Stop process `id`, killing it after `timeout_ms`; answer with its exit.
    Stop {
        token: u64,
        id: u64,
        timeout_ms: u64,
    },
    /// A message to the actor process `id` hosts, sent as a cast of the engine: a
    /// call (`corr` is not 0), answered with an [`Answer`] cast to the root's gateway,
    /// or a cast (`corr` is 0).
    Actor {
        token: u64,
        id: u64,
        /// The path, below process `id`, of the process the message is for (empty:
        /// `id` itself): an actor a placed process started in its subtree there.
        below: Vec<u32>,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        corr: u64,
    },
    /// The answer to the call `corr` the node relayed to this root's gateway for one
    /// of its processes ([`ToGateway::Actor`]).
    Answer(Answer),
}

/// What a node casts to a root's gateway.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToGateway {
    /// The answer to the root's actor call `corr` (see [`Request::Actor`]).
    Answer(Answer),
    /// A message from a process the root placed on the node `node` (where the root's
    /// token is `token`) to the actor `to` of the root's tree: a call when `corr` is
    /// not 0, answered with a [`Request::Answer`] cast to the node's agent.
    Actor {
        node: String,
        token: u64,
        to: multiproc_core::Identity,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        corr: u64,
    },
}

/// The answer to an actor call relayed across a session, cast back to the side that
/// asked: from a node to a root's gateway, or from a root's gateway to a node's agent:
/// the actor's reply, or an encoded `RemoteError` (`fail`), for the call `corr` of
/// the side that asked. One cast each way, rather than the engine's call: the engine answers a
/// call through a task it spawns per call, and its reply through one more actor.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub(crate) corr: u64,
    pub(crate) fail: bool,
    #[serde(with = "serde_bytes")]
    pub(crate) payload: Vec<u8>,
}

/// The environment variable that tells a process placed on a node, and its
/// descendants there, where the placed process stands in its root's tree.
pub(crate) const PLACED_ENV: &str = "MULTIPROC_PLACED_AS";

/// Where a process placed on a node stands, on the node and in its root's tree: what
/// a handle of its subtree there becomes when it is sent to that tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PlacedAs {
    /// The node's name.
    pub(crate) node: String,
    /// The agent's number for the process.
    pub(crate) id: u64,
    /// Its identity in the node's tree.
    pub(crate) here: multiproc_core::Identity,
    /// Its identity in its root's tree.
    pub(crate) root: multiproc_core::Identity,
}

impl PlacedAs {
    /// As [`PLACED_ENV`] carries it: the encoded value in hex.
    pub(crate) fn to_env(&self) -> String {
        multiproc_core::codec::encode(self)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// What this process's environment says: whether it (or an ancestor of it on
    /// this host) was placed here by a root. Read once.
    pub(crate) fn of_this_process() -> Option<&'static PlacedAs> {
        static PLACED: std::sync::OnceLock<Option<PlacedAs>> = std::sync::OnceLock::new();
        PLACED
            .get_or_init(|| {
                let hex = std::env::var(PLACED_ENV).ok()?;
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()?;
                multiproc_core::codec::decode(&bytes).ok()
            })
            .as_ref()
    }
}

/// What a placed process starts with besides its entry: what `Process`'s setters
/// made of it at the root, applied by the node as to a process of its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Settings {
    /// Environment variables, as bytes (an `OsString` is bytes on Linux).
    pub(crate) env: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
    pub(crate) limits: multiproc_core::Limits,
    pub(crate) heartbeat: Option<std::time::Duration>,
    pub(crate) method: multiproc_core::StartMethod,
    pub(crate) handshake_timeout: std::time::Duration,
}

/// An agent's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Welcome {
        node: String,
        token: u64,
        pid: u32,
    },
    Refused(Refusal),
    Pong,
    Spawned {
        id: u64,
        pid: u32,
    },
    Exited(ExitReason),
    Done,
    /// What was asked failed there; the node's error, formatted.
    Failed(String),
}

/// A message for an actor placed from another process of the tree, with the handles
/// its far encoding names: the placer, which holds the session, exports them to the
/// actor's process before it sends the message on (see `sync::far::relayed`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Relayed {
    /// A call (else a cast).
    pub(crate) call: bool,
    /// The handles, encoded for this tree (each lends its host a credit, which the
    /// placer's decoding takes back).
    #[serde(with = "serde_bytes")]
    pub(crate) handles: Vec<u8>,
    /// The message, encoded for the node.
    #[serde(with = "serde_bytes")]
    pub(crate) payload: Vec<u8>,
}
