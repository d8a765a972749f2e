//! Every child's exit, as it is reaped, for whoever watches the whole process (the
//! observer): its name, pid and reason, the moment the reason is known.

use std::sync::OnceLock;

use multiproc_core::ExitReason;
use tokio::sync::broadcast;

/// How many exits a slow watcher may fall behind before it misses the oldest.
const BUFFER: usize = 256;

/// A child of this process that has exited.
#[derive(Debug, Clone)]
pub(crate) struct ChildExit {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) reason: ExitReason,
}

fn feed() -> &'static broadcast::Sender<ChildExit> {
    static FEED: OnceLock<broadcast::Sender<ChildExit>> = OnceLock::new();
    FEED.get_or_init(|| broadcast::channel(BUFFER).0)
}

/// Tells the watchers, if any, that a child exited.
pub(crate) fn publish(exit: impl FnOnce() -> ChildExit) {
    let feed = feed();
    // Nobody watches in most programs: then nothing is built.
    if feed.receiver_count() > 0 {
        let _ = feed.send(exit());
    }
}

/// The exits from now on.
pub(crate) fn watch() -> broadcast::Receiver<ChildExit> {
    feed().subscribe()
}
