//! How far a `map` or an `imap` has come: [`Progress`], the callback that receives
//! it, and `map_with_progress`.

use super::{Pool, PoolError};
use crate::runtime::target::Task;

/// How far a `map` (or an `imap`) has come, given to its progress callback each
/// time a chunk's results come back.
///
/// # Examples
///
/// ```
/// use multiproc_supervisor::Progress;
///
/// let p = Progress { done: 25, submitted: 60, total: Some(100) };
/// assert_eq!(p.fraction(), Some(0.25));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Items whose results have come back, in any order, failed ones included.
    pub done: usize,
    /// Items handed to the workers so far.
    pub submitted: usize,
    /// Items in all, when known: a `map`'s input, or an `imap`'s when its iterator
    /// says its exact length.
    pub total: Option<usize>,
}

impl Progress {
    /// `done` over `total`, when the total is known (1 for an empty input).
    pub fn fraction(&self) -> Option<f64> {
        self.total.map(|total| {
            if total == 0 {
                1.0
            } else {
                self.done as f64 / total as f64
            }
        })
    }
}

/// A progress callback, as an `Imap` keeps it.
pub(super) type OnProgress = Box<dyn FnMut(Progress) + Send>;

/// Items of input per chunk of `map_with_progress`: small enough that progress moves
/// often, large enough that a chunk is worth its message.
const CHUNK_ITEMS: usize = 8;

impl Pool {
    /// As [`map`](Pool::map) (or [`starmap`](Pool::starmap), whose items are
    /// tuples), calling `on_progress` each time a chunk's results come back, in the
    /// calling task. Results are in input order; the first failed item is the error,
    /// as `map`'s.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub async fn map_with_progress<F: Task<M>, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
        on_progress: impl FnMut(Progress) + Send + 'static,
    ) -> Result<Vec<F::Output>, PoolError> {
        let items: Vec<F::Args> = items.into_iter().collect();
        let total = items.len();
        let chunk = total
            .div_ceil(self.processes().max(1) * 4)
            .clamp(1, CHUNK_ITEMS);
        let mut results = self.imap(f, items, chunk).with_progress(on_progress);
        let mut out = Vec::with_capacity(total);
        while let Some(r) = results.next().await {
            out.push(r?);
        }
        Ok(out)
    }
}

/// Progress as an [`indicatif`] bar shows it: the callback sets the bar's length
/// (when known) and position.
///
/// ```
/// let bar = indicatif::ProgressBar::hidden();
/// let mut show = multiproc_supervisor::progress_bar(bar.clone());
/// show(multiproc_supervisor::Progress { done: 3, submitted: 8, total: Some(10) });
/// assert_eq!((bar.position(), bar.length()), (3, Some(10)));
/// ```
#[cfg(feature = "indicatif")]
pub fn progress_bar(bar: indicatif::ProgressBar) -> impl FnMut(Progress) + Send + 'static {
    move |p: Progress| {
        if let Some(total) = p.total {
            bar.set_length(total as u64);
        }
        bar.set_position(p.done as u64);
        if p.total == Some(p.done) {
            bar.finish();
        }
    }
}
