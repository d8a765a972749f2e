//! Heartbeats: a child's interval, the beat it sends, and the parent's watchdog that
//! kills a child that stops beating as hung.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use multiproc_core::ExitReason;
use tokio::sync::watch;

use crate::runtime::children::Child;
use crate::runtime::current::me;

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

/// Kills `child` as hung if it goes `interval` without a heartbeat.
///
/// Holds the child weakly, so its pidfd and link are freed with its `Process`, not
/// with this task's next tick.
pub(crate) async fn watchdog(
    child: std::sync::Weak<Child>,
    mut exit: watch::Receiver<Option<ExitReason>>,
    last_beat: Arc<Mutex<tokio::time::Instant>>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval / 4);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = exit.wait_for(Option::is_some) => return,
        }
        let Some(child) = child.upgrade() else { return };
        if child.has_exited() {
            return;
        }
        let last = *last_beat.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() > interval {
            tracing::warn!(child = %child.name, ?interval, "child missed its heartbeat; killing it as hung");
            child.hung.store(true, Ordering::SeqCst);
            let _ = child.signal(rustix::process::Signal::KILL);
            return;
        }
    }
}
