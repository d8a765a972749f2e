//! The vocabulary of multiproc: what things are, with no I/O and no runtime.
//!
//! This crate holds the types every other layer speaks in, and the decisions that can
//! be made without touching the operating system:
//!
//! - [`Identity`] and [`Counter`]: process identities and names, exactly as Python's
//!   `multiprocessing` builds them (`Process-1`, `Process-1:2`, …), and the routing
//!   decision ([`Hop`]) that moves a message along the process tree.
//! - [`ExitReason`]: why a process ended, as data, and Python's `exitcode` for it.
//! - [`Packet`] and [`Envelope`]: what travels on a control link between a parent and
//!   its child.
//! - [`codec`]: the rmp-serde encoding used for every packet and payload; [`wire`]:
//!   how a control link lays out its messages, envelopes in a fixed layout that
//!   routing reads in place; [`spsc`]: where the records of a link's shared-memory
//!   rings go, and what a reader may believe of them.
//! - Supervision decisions: [`ChildSpec`] and [`SupervisorFlags`] with their validation,
//!   [`should_restart`] and [`plan_restart`] (OTP's restart types and strategies),
//!   [`RestartWindow`] (restart intensity) and [`Backoff`] (delays between restarts).
//!   The caller passes the time and the randomness.
//! - [`Exhausted`]: the limit behind a refused file descriptor, mapping or process
//!   ([`ProcessFacts::limit`] and [`MemoryFacts::limit`] decide which, from what the
//!   kernel said).
//!
//! Everything here is deterministic and tested without processes or clocks.
#![doc(test(attr(deny(warnings))))]

mod backoff;
pub mod codec;
mod decider;
mod dynamic;
mod error;
mod exhausted;
mod exit;
#[doc(hidden)]
pub mod fuzz;
mod identity;
mod intensity;
mod limits;
pub mod lock_word;
mod node_error;
mod packet;
mod pool;
pub mod queue;
pub mod ring;
pub mod ring_queue;
pub mod scheduler;
pub mod sem_state;
mod spec;
pub mod spsc;
mod strategy;
pub mod sync;
pub mod wire;

pub use backoff::{Backoff, BackoffState};
pub use decider::{Decider, Directive, ExitMatch};
pub use dynamic::Dynamic;
pub use error::CodecError;
pub use exhausted::{Exhausted, MemoryFacts, MemoryLimit, PidsCgroup, ProcessFacts, ProcessLimit};
pub use exit::{ExitFacts, ExitReason, WaitStatus, exit_reason};
pub use identity::{Counter, Hop, Identity};
pub use intensity::{IntensityExceeded, RestartIntensity, RestartWindow};
pub use limits::{Limit, Limits};
pub use node_error::{NodeError, Refusal};
pub use packet::{
    Body, BootstrapError, EntryKind, Envelope, ExitReport, Hello, LogField, LogRecord, LogSpan,
    LogValue, PROTOCOL_VERSION, Packet, RemoteError,
};
#[cfg(feature = "metrics")]
pub use packet::{MetricBatch, MetricChange, MetricUpdate};
pub use pool::{AfterDeath, ItemFailure, Reorder, RetryPolicy, chunks, default_chunksize};
pub use spec::{
    Attached, AutoShutdown, ChildKind, ChildSpec, DEFAULT_WORKER_SHUTDOWN, NodeName, Placement,
    Restart, RestartPlacement, Shutdown, SpecError, StartMethod, StartSpec, SupervisorFlags,
};
pub use strategy::{RestartPlan, Strategy, plan_restart, should_restart};
