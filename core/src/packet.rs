//! What travels on a control link between a parent and its child.
//!
//! Each packet is one frame. A link opens with [`Packet::Hello`] from the parent and
//! [`Packet::Ready`] (or [`Packet::Rejected`]) from the child; then both sides exchange
//! [`Envelope`]s, the parent may send [`Packet::Stop`], and the child sends its logs and,
//! last, an [`ExitReport`].
//!
//! # Ordering
//!
//! A link is one byte stream, so packets arrive in the order they were sent. Envelopes
//! from one process to another follow one path through the tree, so they too arrive in
//! the order they were sent. Two siblings switch from the path through their parent to
//! a direct link ([`Packet::Sibling`]) behind a fence ([`Packet::SiblingFence`],
//! [`Packet::SiblingOpen`]) that keeps that order.

use serde::{Deserialize, Serialize};

use crate::Identity;

/// The version of this protocol. A child refuses a `Hello` of another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// One frame on a control link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Packet {
    /// Parent → child, first frame: who the child is and what it runs.
    ///
    /// The version and build id come first and are checked before `body` is decoded,
    /// so a child of another version refuses cleanly instead of misreading the rest.
    Hello {
        /// The parent's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The parent's build id (same binary, same registered entries).
        build_id: u64,
        /// An encoded [`Hello`].
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// Child → parent: the child is set up and about to run its entry point.
    Ready {
        /// The child's process id.
        pid: u32,
    },
    /// Child → parent: the child will not run, and why.
    Rejected(BootstrapError),
    /// Either way: a message routed along the tree.
    Envelope(Envelope),
    /// Parent → child: stop gracefully (and stop your own children).
    Stop,
    /// Child → parent: a `tracing` event that happened in a descendant.
    Log(Box<LogRecord>),
    /// Child → parent, last frame: how the entry point ended.
    Exiting(ExitReport),
    /// Child → parent: the child is alive (see `Hello::heartbeat`).
    Heartbeat,
    /// Parent → child: a direct link to a sibling, brokered by the parent. Two
    /// descriptors ride with the frame (`SCM_RIGHTS`): the link's socket end, then the
    /// memory of its rings. The child writes to the sibling through it at once, and
    /// reads from it once [`Packet::SiblingOpen`] says that everything the sibling
    /// routed through the parent has arrived.
    Sibling {
        /// The sibling's identity.
        peer: crate::Identity,
        /// The capacity of each of the link's rings.
        rings: u32,
        /// Which of the two ends of the rings this child is (one child creates, in
        /// the rings' terms, the other opens).
        creator: bool,
    },
    /// Child → parent: from now on this child sends to `peer` over their direct link;
    /// everything it routed to `peer` through the parent was sent before this.
    SiblingFence {
        /// The sibling.
        peer: crate::Identity,
    },
    /// Parent → child: everything `peer` routed to this child through the parent has
    /// been passed on before this, so the direct link from `peer` may be read (sent
    /// also when `peer` has exited, so its last messages are read and its end seen).
    SiblingOpen {
        /// The sibling.
        peer: crate::Identity,
    },
    /// Sibling → sibling, on their direct link's socket: this end found the ring it
    /// reads corrupt and drops the link; the calls in flight on it failed for that,
    /// not because this process exited.
    SiblingBroken,
    /// Child → parent: what a descendant recorded through the `metrics` facade since
    /// its last batch; the root records it again, labelled with the process.
    #[cfg(feature = "metrics")]
    Metrics(Box<MetricBatch>),
}

/// What the child needs to know to start: decoded from [`Packet::Hello`]'s body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The child's identity.
    pub identity: Identity,
    /// The child's name.
    pub name: String,
    /// The parent's name.
    pub parent_name: String,
    /// The parent's identity.
    pub parent_identity: Identity,
    /// Whether the child is a daemon.
    pub daemon: bool,
    /// Kind of entry point.
    pub kind: EntryKind,
    /// The registered name of the entry point.
    pub entry: String,
    /// The encoded arguments of the entry point.
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
    /// How many file descriptors follow the Hello frame (passed with SCM_RIGHTS).
    pub fds: u32,
    /// The most verbose `tracing` level the parent wants forwarded (1 = error … 5 =
    /// trace), or `None` for no forwarding.
    pub log_level: Option<u8>,
    /// Resource limits the child sets on itself before its entry point runs.
    #[serde(default)]
    pub limits: crate::Limits,
    /// How often the child must say it is alive; an actor child does so by itself
    /// between messages.
    #[serde(default)]
    pub heartbeat: Option<std::time::Duration>,
    /// The capacity of each of the link's rings, whose memory is the last of the
    /// descriptors that follow the Hello (not counted in `fds`); `None`: no rings.
    #[serde(default)]
    pub rings: Option<u32>,
}

/// The kind of a registered entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A function run once; the process exits when it returns.
    Function,
    /// An actor: the process serves its mailbox until it is stopped.
    Actor,
}

/// Why a child refused to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The parent speaks another protocol version.
    #[error("protocol version mismatch: parent speaks {parent}, child speaks {child}")]
    ProtocolMismatch {
        /// The parent's version.
        parent: u32,
        /// The child's version.
        child: u32,
    },
    /// The child is not the same build as the parent.
    #[error(
        "build id mismatch: parent is {parent:#x}, child is {child:#x} (was the binary rebuilt while running?)"
    )]
    BuildMismatch {
        /// The parent's build id.
        parent: u64,
        /// The child's build id.
        child: u64,
    },
    /// The entry point is not registered in the child.
    #[error("no {kind:?} entry named `{name}` is registered in this binary")]
    UnknownEntry {
        /// Kind of the entry.
        kind: EntryKind,
        /// Its name.
        name: String,
    },
    /// The Hello or the arguments did not decode.
    #[error("bad bootstrap message: {0}")]
    BadHello(String),
    /// A resource limit could not be set.
    #[error("cannot set a resource limit: {0}")]
    Limits(String),
    /// The actor's `start` failed.
    #[error("the actor failed to start: {0}")]
    ActorStart(String),
    /// The child could not have its runtime's threads or descriptors.
    #[error(transparent)]
    Exhausted(crate::Exhausted),
}

/// A message on its way from one process's address to another's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The destination.
    pub to: Identity,
    /// The sender, where replies go.
    pub from: Identity,
    /// Correlation number: set by the caller, copied into the reply.
    pub corr: u64,
    /// What the envelope carries.
    pub body: Body,
}

/// The content of an [`Envelope`]. Payloads stay encoded until they reach their
/// destination, so routing never needs the user's types and a payload that does not
/// decode is an error for that one message only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// A request that expects a reply.
    Call(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A message that expects none.
    Cast(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The reply to a `Call`.
    Reply(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The call failed on the way or at the destination.
    Fail(RemoteError),
    /// A request to the destination process's own services (the synchronization
    /// primitives and queues it hosts), not to its actor; answered like a `Call`.
    Service(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// Why a call failed somewhere along the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// No running process has this address.
    #[error("no running process has the identity {0}")]
    NoProcess(Identity),
    /// The process at this address hosts no actor.
    #[error("the process with the identity {0} hosts no actor")]
    NoActor(Identity),
    /// The process ended before it replied.
    #[error("the process with the identity {0} exited before replying")]
    Exited(Identity),
    /// The payload did not decode as the actor's message type.
    #[error("the message did not decode at its destination: {0}")]
    Decode(String),
    /// The reply could not be encoded.
    #[error("the reply could not be encoded: {0}")]
    Encode(String),
    /// The actor's handler panicked; the actor's process ends.
    #[error("the actor panicked while handling the message: {0}")]
    Panicked(String),
    /// The direct link to the process (a sibling) broke before it replied: its ring
    /// was found corrupt. The process may still run; later calls go through the
    /// parent.
    #[error("the direct link to the process with the identity {0} broke before it replied")]
    LinkBroken(Identity),
    /// The process runs on another node, and the process that placed it there (which
    /// relays the calls of the rest of the tree) could not reach it: its node is down,
    /// say. Boxed: an envelope stays small.
    #[error(transparent)]
    Node(Box<crate::NodeError>),
}

/// A `tracing` event from a descendant process, with what the root needs to emit it
/// again as it happened: its callsite's metadata, its fields with their types, and the
/// spans it happened in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Level, 1 = error … 5 = trace.
    pub level: u8,
    /// The event's target.
    pub target: String,
    /// The callsite's name (`event src/lib.rs:12` for an event).
    pub name: String,
    /// The module, file and line of the callsite, when known.
    pub module_path: Option<String>,
    /// The source file of the callsite.
    pub file: Option<String>,
    /// The line of the callsite.
    pub line: Option<u32>,
    /// The name of the process where it happened.
    pub process: String,
    /// The event's fields, `message` among them, in the callsite's order.
    pub fields: Vec<LogField>,
    /// The spans the event happened in, outermost first.
    pub spans: Vec<LogSpan>,
    /// The span of the root's caller whose call or pool task the event happened in
    /// (the number the root gave it), if the caller was in one.
    #[serde(default)]
    pub caller: Option<u64>,
}

/// A span of a descendant process, as an event there saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSpan {
    /// The span's name.
    pub name: String,
    /// The span's target.
    pub target: String,
    /// Level, 1 = error … 5 = trace.
    pub level: u8,
    /// Its fields, as recorded so far.
    pub fields: Vec<LogField>,
}

/// One field of an event or span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogField {
    /// The field's name.
    pub name: String,
    /// Its value.
    pub value: LogValue,
}

/// A field's value, with the type `tracing` recorded it as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LogValue {
    /// A string (`record_str`).
    Str(String),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// Anything else, formatted as it was recorded (`Debug`, `Display`, errors).
    Text(String),
}

/// What one process recorded through the `metrics` facade since its last batch.
#[cfg(feature = "metrics")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricBatch {
    /// The name of the process that recorded it.
    pub process: String,
    /// One update per metric that changed.
    pub updates: Vec<MetricUpdate>,
}

/// A change of one metric.
#[cfg(feature = "metrics")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricUpdate {
    /// The metric's name.
    pub name: String,
    /// Its labels, as recorded.
    pub labels: Vec<(String, String)>,
    /// What changed.
    pub change: MetricChange,
}

/// How a metric changed.
#[cfg(feature = "metrics")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetricChange {
    /// A counter grew by this much.
    Counter(u64),
    /// A gauge's value now.
    Gauge(f64),
    /// A histogram's samples, in the order recorded.
    Histogram(Vec<f64>),
}

/// How a child's entry point ended, sent just before it exits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReport {
    /// It returned.
    Normal,
    /// It panicked.
    Panicked {
        /// The panic message.
        message: String,
        /// `file:line:column`, when known.
        location: Option<String>,
    },
    /// It returned an error, or could not start.
    Failed {
        /// The error, formatted.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn packets_round_trip() {
        let env = Envelope {
            to: Identity::from_path(vec![1, 2]),
            from: Identity::root(),
            corr: 7,
            body: Body::Call(vec![1, 2, 3]),
        };
        for p in [
            Packet::Ready { pid: 42 },
            Packet::Stop,
            Packet::Envelope(env),
            Packet::Exiting(ExitReport::Panicked {
                message: "m".into(),
                location: None,
            }),
            Packet::Rejected(BootstrapError::ProtocolMismatch {
                parent: 2,
                child: 1,
            }),
        ] {
            let bytes = codec::encode(&p).unwrap();
            assert_eq!(codec::decode::<Packet>(&bytes).unwrap(), p);
        }
    }
}
