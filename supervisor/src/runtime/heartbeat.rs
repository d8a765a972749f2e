//! Heartbeats: a child's interval, the beat it sends, and the parent's watchdog that
//! kills a child that stops beating as hung.

use crate::runtime::current::me;
use std::sync::OnceLock;
use std::time::Duration;

/// The heartbeat interval this child was given, if any.
static HEARTBEAT: OnceLock<Duration> = OnceLock::new();

pub(crate) fn heartbeat_interval() -> Option<Duration> {
    HEARTBEAT.get().copied()
}

/// Sets this child's interval, once, from its Hello.
pub(crate) fn set_interval(interval: Duration) {
    let _ = HEARTBEAT.set(interval);
}

/// Tells this process's parent that it is alive.
///
/// A child started with a heartbeat interval (`Process::heartbeat`,
/// `ChildSpec::heartbeat`) that runs a function must call this at least that often, or
/// it is killed as hung (`ExitReason::Hung`). An actor child beats by itself between
/// messages. In the root, or in a child without an interval, this does nothing.
pub fn heartbeat() {
    if me().parent.is_some() {
        crate::runtime::router::to_parent(multiproc_core::Packet::Heartbeat);
    }
}
