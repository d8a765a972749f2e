//! `AsyncResult`: the result of work submitted without waiting, which can be
//! polled, waited for, taken, cancelled or awaited.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::runtime::spin;

/// The least a blocking wait spins for an answer, in microseconds.
const SPIN_FLOOR_US: u64 = 30;

use super::control::Control;
use super::{PoolError, actor};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The result of work submitted without waiting: Python's `AsyncResult`, and a
/// `ProcessPoolExecutor` future (it can be awaited).
pub struct AsyncResult<R> {
    fut: Option<BoxFuture<Result<R, PoolError>>>,
    out: Option<Result<R, PoolError>>,
    /// Whether the result was a success, once it arrived (it stays known after `get`
    /// takes the result).
    succeeded: Option<bool>,
    taken: bool,
    ctl: Option<Control>,
    task: Option<u64>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.out.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: Send + 'static> AsyncResult<R> {
    pub(super) fn new(
        fut: impl Future<Output = Result<R, PoolError>> + Send + 'static,
        ctl: Option<Control>,
        task: Option<u64>,
    ) -> Self {
        AsyncResult {
            fut: Some(Box::pin(fut)),
            out: None,
            succeeded: None,
            taken: false,
            ctl,
            task,
        }
    }

    pub(super) fn failed(e: PoolError) -> Self {
        AsyncResult {
            fut: None,
            out: Some(Err(e)),
            succeeded: Some(false),
            taken: false,
            ctl: None,
            task: None,
        }
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.out.is_some() || self.taken {
            return Poll::Ready(());
        }
        let fut = self.fut.as_mut().expect("pending results have a future");
        let mut polled = fut.as_mut().poll(cx);
        if polled.is_pending()
            && let Some(ctl) = &self.ctl
        {
            // The answer may be in a worker's ring already: take it rather than wait
            // for the pool's reader task to be scheduled.
            ctl.shared.help();
            polled = fut.as_mut().poll(cx);
        }
        match polled {
            Poll::Ready(r) => {
                self.succeeded = Some(r.is_ok());
                self.out = Some(r);
                self.fut = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the result has arrived.
    pub fn ready(&mut self) -> bool {
        let waker = std::task::Waker::noop();
        self.poll_inner(&mut Context::from_waker(waker)).is_ready()
    }

    /// Spins a little for the answer, taking it out of the workers' rings itself, before
    /// a blocking wait: an answer usually comes within a few microseconds of the
    /// task's start, and a thread that sleeps costs 15–50 µs to wake here. At least
    /// [`SPIN_FLOOR_US`] unless this thread's waits are long, so that a hiccup of a
    /// few microseconds does not cost a sleep (and the spin's adaptive budget, once
    /// fallen to the few microseconds answers take, would).
    pub(crate) fn spin_for_answer(&mut self) {
        if self.ctl.is_none() || self.ready() {
            return;
        }
        let ctl = self.ctl.clone().expect("checked above");
        let _held = ctl.shared.hold();
        let started = std::time::Instant::now();
        // Yielding between looks: a worker on this CPU gets it at once.
        let ready = || {
            let ready = self.ready();
            if !ready {
                std::thread::yield_now();
            }
            ready.then_some(())
        };
        if spin::wait_at_least(started, SPIN_FLOOR_US, ready).is_some() {
            spin::record(started.elapsed());
        }
    }

    /// Whether the task succeeded.
    ///
    /// # Errors
    ///
    /// [`PoolError::NotReady`] before the result has arrived (Python raises
    /// `ValueError`).
    pub fn successful(&mut self) -> Result<bool, PoolError> {
        if !self.ready() {
            return Err(PoolError::NotReady);
        }
        Ok(self.succeeded == Some(true))
    }

    /// Waits until the result has arrived. SIGINT (in the root) ends the wait: the
    /// pool is terminated and the result is [`PoolError::Interrupted`].
    pub async fn wait(&mut self) {
        let Some(ctl) = self.ctl.clone() else {
            return std::future::poll_fn(|cx| self.poll_inner(cx)).await;
        };
        let interrupted = ctl
            .interruptible(
                async {
                    std::future::poll_fn(|cx| self.poll_inner(cx)).await;
                    false
                },
                || true,
            )
            .await;
        if interrupted {
            self.fut = None;
            self.out = Some(Err(PoolError::Interrupted));
            self.succeeded = Some(false);
        }
    }

    /// Waits at most `timeout`; whether the result has arrived.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.wait()).await.is_ok()
    }

    /// Waits for the result and takes it.
    ///
    /// # Errors
    ///
    /// The task's or the pool's error; [`PoolError::Taken`] if an earlier `get` took
    /// the result.
    pub async fn get(&mut self) -> Result<R, PoolError> {
        self.wait().await;
        self.take()
    }

    /// As [`get`](AsyncResult::get), waiting at most `timeout`: then
    /// [`PoolError::Timeout`], and the task goes on (a later `get` can still have it).
    ///
    /// # Errors
    ///
    /// As [`get`](AsyncResult::get), and [`PoolError::Timeout`].
    pub async fn get_timeout(&mut self, timeout: Duration) -> Result<R, PoolError> {
        if !self.wait_timeout(timeout).await {
            return Err(PoolError::Timeout(timeout));
        }
        self.take()
    }

    fn take(&mut self) -> Result<R, PoolError> {
        match self.out.take() {
            Some(r) => {
                self.taken = true;
                r
            }
            None => Err(PoolError::Taken),
        }
    }

    /// Cancels the task if it has not started (`ProcessPoolExecutor`'s
    /// `Future.cancel`); whether it was. A cancelled task fails with
    /// [`TaskError::Cancelled`](crate::TaskError::Cancelled).
    pub async fn cancel(&mut self) -> bool {
        let (Some(ctl), Some(id)) = (&self.ctl, self.task) else {
            return false;
        };
        let Some(tx) = ctl.tx.upgrade() else {
            return false;
        };
        let (reply, rx) = oneshot::channel();
        if tx.send(actor::Request::Cancel(id, reply)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Runs `callback` with the result, or `error_callback` with the error, when it
    /// arrives (Python's `callback` and `error_callback`). They run on the runtime's
    /// threads, as Python's run on the pool's result thread: keep them short. The
    /// returned result is ready once the callback has run.
    pub fn then(
        mut self,
        callback: impl FnOnce(R) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> AsyncResult<()> {
        let (tx, rx) = oneshot::channel();
        crate::runtime::handle().spawn(async move {
            match self.get().await {
                Ok(r) => callback(r),
                Err(e) => error_callback(e),
            }
            let _ = tx.send(());
        });
        AsyncResult::new(
            async move { rx.await.map_err(|_| PoolError::Terminated) },
            None,
            None,
        )
    }
}

impl<R: Send + Unpin + 'static> Future for AsyncResult<R> {
    type Output = Result<R, PoolError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.poll_inner(cx) {
            Poll::Ready(()) => Poll::Ready(this.take()),
            Poll::Pending => Poll::Pending,
        }
    }
}
