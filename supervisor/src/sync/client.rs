//! The handle side of the host protocol: a request routed to the primitive's host,
//! its answer read, and waits that stay cancel-safe when their future is dropped.

use std::time::Duration;

use multiproc_core::{Body, Envelope, RemoteError, codec};

use super::SyncError;
use super::host::{self, State};
use super::refs::Addr;
use super::wire::{Answer, Fault, Op, Request};
use crate::runtime::current::me;
use crate::runtime::router;

impl Addr {
    pub(super) fn new(state: State) -> Addr {
        Addr::new_with(state, host::secret(), None)
    }

    /// A new primitive hosted here, with its first handle; `seg` is its shared
    /// memory, freed with it.
    pub(crate) fn new_with(
        state: State,
        secret: u64,
        seg: Option<crate::runtime::shm::SegmentRef>,
    ) -> Addr {
        let id = host::create(state, secret, seg);
        Addr::created(me().identity.clone(), id, secret)
    }

    /// Routes `op` to the host under correlation `corr` (0: no answer wanted).
    pub(super) fn route(&self, op: Op, corr: u64) -> Result<(), SyncError> {
        let request = Request {
            prim: self.id,
            secret: self.secret,
            op,
        };
        let bytes = codec::encode(&request).map_err(SyncError::Encode)?;
        router::route(Envelope {
            to: self.owner.clone(),
            from: me().identity.clone(),
            corr,
            body: Body::Service(bytes),
        });
        Ok(())
    }

    pub(super) fn send(&self, op: Op) -> Result<(u64, router::PendingReply), SyncError> {
        let corr = router::next_corr();
        let rx = router::expect_reply(corr);
        if let Err(e) = self.route(op, corr) {
            router::forget_reply(corr);
            return Err(e);
        }
        Ok((corr, rx))
    }

    pub(super) fn answer(&self, body: Body) -> Result<Answer, SyncError> {
        match body {
            Body::Reply(bytes) => {
                match codec::decode::<Answer>(&bytes).map_err(SyncError::Decode)? {
                    Answer::Fault(Fault::Sync(e)) => Err(e.into()),
                    Answer::Fault(Fault::Broken(why)) => Err(SyncError::BrokenBarrier(why)),
                    Answer::Fault(Fault::Forged | Fault::WrongKind) => Err(SyncError::Forged),
                    answer => Ok(answer),
                }
            }
            Body::Fail(RemoteError::Exited(_) | RemoteError::NoProcess(_)) => {
                Err(SyncError::OwnerGone(self.owner.clone()))
            }
            Body::Fail(e) => Err(SyncError::Remote(e)),
            _ => Err(SyncError::Remote(RemoteError::Decode(
                "a request came back".into(),
            ))),
        }
    }

    /// Maps the shared memory of a primitive of this host (a `Lock`, a queue).
    pub(super) fn map(
        &self,
        seg: crate::runtime::shm::SegmentRef,
    ) -> Result<std::sync::Arc<crate::runtime::shm::Segment>, SyncError> {
        self.mapped_here(seg);
        crate::runtime::shm::mapped(seg).map_err(|e| match e {
            crate::runtime::shm::MapError::Gone => SyncError::OwnerGone(self.owner.clone()),
            e => SyncError::from(e),
        })
    }

    /// Tells the host that this process uses its primitive's shared memory, so that
    /// it watches this process and clears what it holds if it dies.
    pub(super) async fn attach(&self) -> Result<(), SyncError> {
        self.done(Op::Attach {
            pid: crate::runtime::shm::my_pid(),
        })
        .await
    }

    /// Asks, expecting `Done`.
    pub(super) async fn done(&self, op: Op) -> Result<(), SyncError> {
        match self.ask(op).await? {
            Answer::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn ask(&self, op: Op) -> Result<Answer, SyncError> {
        let (_, rx) = self.send(op)?;
        self.answer(rx.await)
    }

    /// Asks, waiting at most `timeout`; `Ok(None)` when the wait was cancelled.
    ///
    /// Cancel-safe: if the future is dropped while the host still has the wait, a
    /// task takes the wait back, and gives back the lock if it was granted meanwhile
    /// (see [`Abandoned`]).
    pub(super) async fn ask_timeout(
        &self,
        op: Op,
        timeout: Option<Duration>,
    ) -> Result<Option<Answer>, SyncError> {
        let thread = op.thread();
        let (corr, rx) = self.send(op)?;
        // The receiver lives in the guard, so that an answer already on its way when
        // the future is dropped is still received, by the guard's task.
        let mut pending = Abandoned {
            wait: Some((self.clone(), rx)),
            corr,
            thread,
        };
        let rx = &mut pending.wait.as_mut().expect("set above").1;
        let answer = match timeout {
            None => self.answer(rx.await),
            Some(timeout) => match tokio::time::timeout(timeout, &mut *rx).await {
                Ok(body) => self.answer(body),
                // Timed out: take the wait back. If it was granted meanwhile, the
                // grant is already on its way (it left the host before this answer),
                // so take it.
                Err(_) => match self.ask(Op::Cancel { corr }).await? {
                    Answer::Cancelled(true) => {
                        router::forget_reply(corr);
                        pending.wait = None;
                        return Ok(None);
                    }
                    _ => self.answer(rx.await),
                },
            },
        };
        pending.wait = None;
        answer.map(Some)
    }
}

/// A host-served wait whose future was dropped before its answer came: on drop, a
/// task on the process runtime asks the host to forget it, and if the host had
/// already answered with the lock (an acquire granted, a condition wait woken),
/// releases it, so that an abandoned wait never leaves a lock held by nobody.
struct Abandoned {
    wait: Option<(Addr, router::PendingReply)>,
    corr: u64,
    thread: Option<u64>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some((addr, rx)) = self.wait.take() else {
            return;
        };
        let (corr, thread) = (self.corr, self.thread);
        crate::runtime::handle().spawn(async move {
            match addr.ask(Op::Cancel { corr }).await {
                Ok(Answer::Cancelled(true)) | Err(_) => {
                    router::forget_reply(corr);
                    return;
                }
                Ok(_) => {}
            }
            let granted = matches!(
                addr.answer(rx.await),
                Ok(Answer::Acquired { .. } | Answer::Woken { .. }) | Err(SyncError::OwnerDied)
            );
            if granted && let Some(thread) = thread {
                let _ = addr.ask(Op::Release { thread }).await;
            }
        });
    }
}

pub(super) fn acquired(answer: Option<Answer>) -> Result<bool, SyncError> {
    match answer {
        None | Some(Answer::WouldBlock) => Ok(false),
        Some(Answer::Acquired { owner_died: true }) => Err(SyncError::OwnerDied),
        Some(Answer::Acquired { owner_died: false }) => Ok(true),
        Some(other) => Err(unexpected(other)),
    }
}

pub(super) fn unexpected(answer: Answer) -> SyncError {
    SyncError::Remote(RemoteError::Decode(format!("unexpected answer {answer:?}")))
}
