//! [`wait`] and [`blocking_wait`]: wait for any of several connections, like Python's
//! `multiprocessing.connection.wait`.

use std::future::poll_fn;
use std::os::fd::BorrowedFd;
use std::task::Poll;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use crate::endpoint::{Endpoint, poll_fds};
use crate::{BlockingConnection, Connection, Result};

/// Waits until at least one of `conns` has a message (or its peer is gone) and returns
/// the indices of all that are ready, in order; an empty list if `timeout` passed first.
///
/// `Some(Duration::ZERO)` checks and returns at once; `None` waits forever. A ready
/// connection's `recv` will not wait.
///
/// # Errors
///
/// [`Error::Closed`](crate::Error::Closed) or [`Error::WriteOnly`](crate::Error::WriteOnly)
/// for a connection that cannot receive, [`Error::NoRuntime`](crate::Error::NoRuntime),
/// or an I/O error.
///
/// # Panics
///
/// With a non-zero timeout, if the runtime has no time driver.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc_transport::{pipe, wait};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), multiproc_transport::Error> {
/// let (mut a1, mut b1) = pipe(true)?;
/// let (mut a2, mut b2) = pipe(true)?;
/// assert!(wait([&mut b1, &mut b2], Some(Duration::ZERO)).await?.is_empty());
/// a2.send(&"second").await?;
/// assert_eq!(wait([&mut b1, &mut b2], None).await?, [1]);
/// a1.send(&"first").await?;
/// assert_eq!(wait([&mut b1, &mut b2], None).await?, [0, 1]);
/// # Ok(())
/// # }
/// ```
pub async fn wait<'a, I>(conns: I, timeout: Option<Duration>) -> Result<Vec<usize>>
where
    I: IntoIterator<Item = &'a mut Connection>,
{
    let mut eps: Vec<&mut Endpoint> = conns.into_iter().map(|c| &mut c.ep).collect();
    let ready = ready_now(&mut eps)?;
    if !ready.is_empty() || timeout.is_some_and(|t| t.is_zero()) {
        return Ok(ready);
    }
    let any = poll_fn(|cx| {
        let mut ready = Vec::new();
        for (i, ep) in eps.iter_mut().enumerate() {
            match ep.poll_ready(cx) {
                Poll::Ready(Ok(())) => ready.push(i),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if ready.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Ok(ready))
        }
    });
    match timeout {
        None => any.await,
        Some(t) => tokio::time::timeout(t, any).await.unwrap_or(Ok(Vec::new())),
    }
}

/// Blocks until at least one of `conns` has a message (or its peer is gone) and
/// returns the indices of all that are ready, in order; an empty list if `timeout`
/// passed first.
///
/// `Some(Duration::ZERO)` checks and returns at once; `None` waits forever.
///
/// # Errors
///
/// [`Error::Closed`](crate::Error::Closed) or [`Error::WriteOnly`](crate::Error::WriteOnly)
/// for a connection that cannot receive, or an I/O error.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc_transport::{blocking_pipe, blocking_wait};
///
/// let (a, mut b) = blocking_pipe(true)?;
/// let (mut c, mut d) = blocking_pipe(false)?;
/// assert!(blocking_wait([&mut b, &mut c], Some(Duration::from_millis(1)))?.is_empty());
/// drop(a);
/// d.send(&0u8)?;
/// assert_eq!(blocking_wait([&mut b, &mut c], None)?, [0, 1]);
/// # Ok::<(), multiproc_transport::Error>(())
/// ```
pub fn blocking_wait<'a, I>(conns: I, timeout: Option<Duration>) -> Result<Vec<usize>>
where
    I: IntoIterator<Item = &'a mut BlockingConnection>,
{
    let mut eps: Vec<&mut Endpoint> = conns.into_iter().map(|c| &mut c.ep).collect();
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let ready = ready_now(&mut eps)?;
        if !ready.is_empty() {
            return Ok(ready);
        }
        let left = match (timeout, deadline) {
            (None, _) | (Some(_), None) => None,
            (Some(_), Some(deadline)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(ready);
                }
                Some(left)
            }
        };
        let fds: Vec<BorrowedFd<'_>> = eps.iter().map(|ep| ep.as_fd()).collect::<Result<_>>()?;
        let mut pollfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        poll_fds(&mut pollfds, left)?;
    }
}

/// Indices of the endpoints a receive would not block on, reading what is available.
fn ready_now(eps: &mut [&mut Endpoint]) -> Result<Vec<usize>> {
    let mut ready = Vec::new();
    for (i, ep) in eps.iter_mut().enumerate() {
        ep.check_read()?;
        if ep.fill()? {
            ready.push(i);
        }
    }
    Ok(ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, blocking_pipe, pipe};

    #[test]
    fn blocking_wait_wakes_when_another_thread_sends() {
        let (_a, mut b) = blocking_pipe(true).unwrap();
        let (mut c, mut d) = blocking_pipe(true).unwrap();
        let (mut go_rx, mut go_tx) = blocking_pipe(false).unwrap();
        let sender = std::thread::spawn(move || {
            // Send only once the waiter has seen that nothing is ready.
            go_rx.recv::<()>().unwrap();
            c.send(&"late").unwrap();
            c
        });
        assert!(
            blocking_wait([&mut b, &mut d], Some(Duration::ZERO))
                .unwrap()
                .is_empty()
        );
        go_tx.send(&()).unwrap();
        assert_eq!(blocking_wait([&mut b, &mut d], None).unwrap(), [1]);
        assert_eq!(d.recv::<String>().unwrap(), "late");
        drop(sender.join().unwrap());
    }

    #[test]
    fn blocking_wait_times_out_with_nothing_ready() {
        let (_a, mut b) = blocking_pipe(true).unwrap();
        let start = Instant::now();
        assert!(
            blocking_wait([&mut b], Some(Duration::from_millis(20)))
                .unwrap()
                .is_empty()
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn a_partial_frame_is_not_ready() {
        let (a, mut b) = blocking_pipe(true).unwrap();
        rustix::io::write(a.as_fd().unwrap(), &[0, 0, 0, 5, 1, 2]).unwrap();
        assert!(
            blocking_wait([&mut b], Some(Duration::from_millis(5)))
                .unwrap()
                .is_empty()
        );
        rustix::io::write(a.as_fd().unwrap(), &[3, 4, 5]).unwrap();
        assert_eq!(blocking_wait([&mut b], None).unwrap(), [0]);
        assert_eq!(b.recv_bytes().unwrap(), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn blocking_wait_refuses_closed_and_write_only_connections() {
        let (mut r, mut w) = blocking_pipe(false).unwrap();
        assert!(matches!(
            blocking_wait([&mut w], None),
            Err(Error::WriteOnly)
        ));
        r.close();
        assert!(matches!(blocking_wait([&mut r], None), Err(Error::Closed)));
    }

    #[test]
    fn no_connections_and_zero_timeout_returns_at_once() {
        assert!(blocking_wait([], Some(Duration::ZERO)).unwrap().is_empty());
    }

    #[tokio::test]
    async fn async_wait_wakes_on_a_message_from_another_task() {
        let (_a, mut b) = pipe(true).unwrap();
        let (mut c, mut d) = pipe(true).unwrap();
        let (mut go_rx, mut go_tx) = pipe(false).unwrap();
        let task = tokio::spawn(async move {
            go_rx.recv::<()>().await.unwrap();
            c.send(&5u8).await.unwrap();
            c
        });
        assert!(
            wait([&mut b, &mut d], Some(Duration::ZERO))
                .await
                .unwrap()
                .is_empty()
        );
        go_tx.send(&()).await.unwrap();
        assert_eq!(wait([&mut b, &mut d], None).await.unwrap(), [1]);
        assert_eq!(d.recv::<u8>().await.unwrap(), 5);
        drop(task.await.unwrap());
        assert_eq!(
            wait([&mut b, &mut d], None).await.unwrap(),
            [1],
            "peer gone is ready"
        );
        assert!(matches!(d.recv::<u8>().await, Err(Error::Eof)));
    }

    #[tokio::test(start_paused = true)]
    async fn async_wait_times_out() {
        let (_a, mut b) = pipe(true).unwrap();
        let got = wait([&mut b], Some(Duration::from_secs(3600)))
            .await
            .unwrap();
        assert!(got.is_empty());
    }
}
