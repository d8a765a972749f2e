//! Stop requests: a parent asks this process to stop, and the request travels down.

use std::sync::OnceLock;

use tokio::sync::watch;

fn flag() -> &'static watch::Sender<bool> {
    static STOP: OnceLock<watch::Sender<bool>> = OnceLock::new();
    STOP.get_or_init(|| watch::channel(false).0)
}

/// Marks this process as asked to stop and asks its children to stop too.
pub(crate) fn request() {
    flag().send_replace(true);
    for child in crate::runtime::children::children().iter() {
        child.request_stop();
    }
}

/// Whether this process has been asked to stop (by its parent, or because its parent
/// is gone).
///
/// A long-running function in a child can check this between units of work.
pub fn stop_requested() -> bool {
    *flag().borrow()
}

/// Completes when this process is asked to stop.
///
/// A function run in a child can wait on this to live until its parent (or the tree's
/// root, on SIGINT or SIGTERM) stops it; returning then ends the process with reason
/// `Shutdown`. In the root it completes on SIGINT or SIGTERM (once the root has started
/// a child), while the tree is being stopped.
pub async fn wait_for_stop() {
    let mut rx = flag().subscribe();
    let _ = rx.wait_for(|stopped| *stopped).await;
}
