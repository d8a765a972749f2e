//! The tree's counters, gauges and histograms, through the `metrics` facade (feature
//! `metrics`).
//!
//! The root records into whatever recorder its program installed. A child has no
//! recorder of its own (its program's `main` never runs there), so it installs one
//! that keeps what it records and sends it up its control link in batches
//! ([`Packet::Metrics`](multiproc_core::Packet::Metrics)): counters as their growth, gauges as their last value,
//! histograms as their samples. Intermediate processes pass batches up unchanged; the
//! root records them again with a `process` label naming where they happened, so a
//! child's metrics (the library's, and its own code's) land in the root's recorder.
//!
//! Here are the metrics' names and the hooks the rest of the crate calls; the child's
//! forwarding recorder, and what becomes of a batch from a child, are
//! `metrics/forward.rs`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Gauge, Label};
use multiproc_core::ExitReason;

use crate::runtime::current::me;

mod forward;

pub(crate) use forward::{flush, from_child, install_forwarder};

/// Supervised children started, first starts and restarts alike; labels
/// `supervisor`, `child`.
pub const STARTS: &str = "multiproc_starts_total";
/// Supervised children restarted; labels `supervisor`, `child`.
pub const RESTARTS: &str = "multiproc_restarts_total";
/// Child processes that ended, by the kind of their exit reason; label `reason`.
pub const EXITS: &str = "multiproc_exits_total";
/// Supervisors that gave up because their children restarted too often; label
/// `supervisor`.
pub const INTENSITY_SHUTDOWNS: &str = "multiproc_intensity_shutdowns_total";
/// Children of a process that run now.
pub const LIVE_PROCESSES: &str = "multiproc_live_processes";
/// Messages waiting in an actor's mailbox.
pub const MAILBOX_DEPTH: &str = "multiproc_mailbox_depth";
/// An actor call's round trip, seen by its caller, in seconds.
pub const CALL_DURATION: &str = "multiproc_call_duration_seconds";
/// A pool task's time from its submission to its result, in seconds (a chunk of a
/// `map` is one task).
pub const TASK_DURATION: &str = "multiproc_task_duration_seconds";
/// A pool task's wait from its submission until a worker is sent it, in seconds.
pub const TASK_QUEUE_WAIT: &str = "multiproc_task_queue_wait_seconds";

/// The label a child's metrics gain in the root.
pub const PROCESS_LABEL: &str = "process";

/// The kind of an exit reason, as its label.
pub(crate) fn reason_kind(reason: &ExitReason) -> &'static str {
    match reason {
        ExitReason::Normal => "normal",
        ExitReason::Shutdown => "shutdown",
        ExitReason::Exited(_) => "exited",
        ExitReason::Panicked { .. } => "panic",
        ExitReason::Failed { .. } => "error",
        ExitReason::Signaled(_) => "signaled",
        ExitReason::Killed => "killed",
        ExitReason::Hung => "hung",
        ExitReason::OutOfMemory => "oom",
        ExitReason::LimitExceeded { .. } => "limit",
        ExitReason::ForkserverLost => "forkserver_lost",
        ExitReason::NodeDown { .. } => "node_down",
        _ => "other",
    }
}

/// A child of this process started.
pub(crate) fn child_started() {
    metrics::gauge!(LIVE_PROCESSES).increment(1.0);
}

/// A child of this process, named `name`, ended with `reason`. Its mailbox depth, if
/// it hosted an actor, is no longer anything.
pub(crate) fn child_exited(name: &str, reason: &ExitReason) {
    metrics::gauge!(LIVE_PROCESSES).decrement(1.0);
    metrics::counter!(EXITS, "reason" => reason_kind(reason)).increment(1);
    if me().identity.is_root() {
        metrics::gauge!(MAILBOX_DEPTH, PROCESS_LABEL => name.to_string()).set(0.0);
        metrics::gauge!(LIVE_PROCESSES, PROCESS_LABEL => name.to_string()).set(0.0);
    }
}

/// A supervisor started child `child` (again, when `restart`).
pub(crate) fn supervised_start(supervisor: &str, child: &str, restart: bool) {
    let labels = vec![
        Label::new("supervisor", supervisor.to_string()),
        Label::new("child", child.to_string()),
    ];
    if restart {
        metrics::counter!(RESTARTS, labels.clone()).increment(1);
    }
    metrics::counter!(STARTS, labels).increment(1);
}

/// A supervisor gave up: its children restarted too often.
pub(crate) fn intensity_shutdown(supervisor: &str) {
    metrics::counter!(INTENSITY_SHUTDOWNS, "supervisor" => supervisor.to_string()).increment(1);
}

/// An actor call took `took`, from its send to its reply.
pub(crate) fn call_took(took: Duration) {
    metrics::histogram!(CALL_DURATION).record(took.as_secs_f64());
}

/// A pool task waited `waited` for a worker.
pub(crate) fn task_waited(waited: Duration) {
    metrics::histogram!(TASK_QUEUE_WAIT).record(waited.as_secs_f64());
}

/// A pool task took `took`, from its submission to its result.
pub(crate) fn task_took(took: Duration) {
    metrics::histogram!(TASK_DURATION).record(took.as_secs_f64());
}

/// This process's actor has `depth` messages waiting. An actor runs in a child only,
/// where the forwarding recorder is installed before the mailbox exists, so the
/// gauge is registered once.
pub(crate) fn mailbox_depth(depth: usize) {
    static GAUGE: OnceLock<Gauge> = OnceLock::new();
    GAUGE
        .get_or_init(|| metrics::gauge!(MAILBOX_DEPTH))
        .set(depth as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_reason_has_a_kind() {
        assert_eq!(reason_kind(&ExitReason::Hung), "hung");
        assert_eq!(reason_kind(&ExitReason::OutOfMemory), "oom");
        assert_eq!(
            reason_kind(&ExitReason::NodeDown { node: "n".into() }),
            "node_down"
        );
        assert_eq!(
            reason_kind(&ExitReason::Panicked {
                message: String::new(),
                location: None
            }),
            "panic"
        );
    }
}
