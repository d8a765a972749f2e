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
//! - [`codec`]: the rmp-serde encoding used for every packet and payload.
//!
//! Everything here is deterministic and tested without processes or clocks.
#![doc(test(attr(deny(warnings))))]

pub mod codec;
mod error;
mod exit;
mod identity;
mod packet;

pub use error::CodecError;
pub use exit::{ExitReason, WaitStatus, exit_reason};
pub use identity::{Counter, Hop, Identity};
pub use packet::{
    Body, BootstrapError, EntryKind, Envelope, ExitReport, Hello, LogRecord, PROTOCOL_VERSION,
    Packet, RemoteError,
};
