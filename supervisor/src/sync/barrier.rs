//! `Barrier`: a handle to a barrier that its host serves (the state machine is
//! `multiproc_core::sync`'s), and the action its last party runs.

use std::time::Duration;

use multiproc_core::codec;
use serde::{Deserialize, Serialize};

use super::client::unexpected;
use super::far::{self, FarOp, Side};
use super::host::State;
use super::refs::Addr;
use super::wire::{Answer, Op};
use super::{SyncError, thread_token};

/// Python's `Barrier(parties, action)`: parties wait until all have come; the last
/// runs the action (a registered function), then all pass. A timeout, an `abort`, a
/// failed action or a party that dies while waiting breaks it for everyone
/// ([`SyncError::BrokenBarrier`], with the reason) until `reset`.
///
/// On another node (a process placed with [`Process::on`](crate::Process::on) that
/// got it among its arguments) every operation travels to the process that placed
/// it, which waits there as a party for the far thread: a far party's process that
/// exits while it waits, or whose node is lost, breaks it as a dead party does. When
/// a far party comes last, the action runs in the process that placed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Barrier {
    side: Side<Hosted>,
}

/// A barrier as its handles here carry it: its address, and its action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Hosted {
    addr: Addr,
    action: Option<(String, Vec<u8>)>,
}

far::far_handle!(Barrier, Barrier, |h| &h.addr);

impl Barrier {
    /// Its address at its host; `None` for a far handle.
    pub(super) fn addr(&self) -> Option<&Addr> {
        match &self.side {
            Side::Here(h) => Some(&h.addr),
            Side::Far(_) => None,
        }
    }

    /// The barrier here (a far handle's operations go before they would need it).
    fn here(&self) -> Result<&Hosted, SyncError> {
        match &self.side {
            Side::Here(h) => Ok(h),
            Side::Far(_) => Err(SyncError::Forged),
        }
    }

    /// A barrier for `parties` (at least 1), hosted by this process.
    ///
    /// # Errors
    ///
    /// [`SyncError::Exhausted`] when this process's runtime, which serves its
    /// parties, cannot have its threads or descriptors (the message names the limit).
    pub fn new(parties: usize) -> Result<Barrier, SyncError> {
        crate::runtime::ensure()?;
        Ok(Barrier {
            side: Side::Here(Hosted {
                addr: Addr::new(State::Barrier(multiproc_core::sync::BarrierState::new(
                    parties, false,
                ))),
                action: None,
            }),
        })
    }

    /// A barrier whose last party runs the registered function `f(args)` before all
    /// pass.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Unregistered`] for an unregistered function; an argument that
    /// does not encode is [`crate::Error::Args`]; [`crate::Error::Exhausted`] as for
    /// [`new`](Barrier::new).
    pub fn with_action<F: crate::runtime::target::Target<M>, M>(
        parties: usize,
        f: F,
        args: F::Args,
    ) -> Result<Barrier, crate::runtime::error::Error> {
        let _ = f;
        crate::runtime::ensure()?;
        let entry = crate::runtime::registry::function_by_type::<F>()?;
        let args = codec::encode(&args).map_err(|source| crate::runtime::error::Error::Args {
            name: "barrier action".into(),
            source,
        })?;
        Ok(Barrier {
            side: Side::Here(Hosted {
                addr: Addr::new(State::Barrier(multiproc_core::sync::BarrierState::new(
                    parties, true,
                ))),
                action: Some((entry.name.to_string(), args)),
            }),
        })
    }

    /// Waits for the other parties, at most `timeout`; this party's index (0 for the
    /// first to arrive).
    ///
    /// # Errors
    ///
    /// [`SyncError::BrokenBarrier`] when it breaks, or is broken, with the reason;
    /// [`SyncError::OwnerGone`].
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<usize, SyncError> {
        if let Side::Far(far) = &self.side {
            return far.count(FarOp::BarrierWait { timeout }).await;
        }
        self.wait_as(thread_token(), timeout).await
    }

    /// As [`wait`](Self::wait), for `thread` of this process (the gateway's
    /// stand-in for a far thread).
    pub(super) async fn wait_as(
        &self,
        thread: u64,
        timeout: Option<Duration>,
    ) -> Result<usize, SyncError> {
        use multiproc_core::sync::BarrierBroken;
        let here = self.here()?;
        let op = Op::BarrierWait { thread };
        match here.addr.ask_timeout(op, timeout).await? {
            Some(Answer::Passed(i)) => Ok(i),
            Some(Answer::RunAction(i)) => {
                let ok = here.run_action();
                here.addr.ask(Op::BarrierActionDone { ok }).await?;
                if ok {
                    Ok(i)
                } else {
                    Err(SyncError::BrokenBarrier(BarrierBroken::ActionFailed))
                }
            }
            None => Err(SyncError::BrokenBarrier(BarrierBroken::TimedOut)),
            Some(other) => Err(unexpected(other)),
        }
    }

    /// This process's `threads`, stand-ins for far parties, are gone: if one was
    /// waiting, it breaks, as when a party's process dies.
    pub(super) async fn holders_gone(&self, threads: &[u64]) -> Result<(), SyncError> {
        let threads = threads.to_vec();
        self.here()?.addr.done(Op::HoldersGone { threads }).await
    }
}

impl Hosted {
    fn run_action(&self) -> bool {
        let Some((name, args)) = &self.action else {
            return true;
        };
        let Some(entry) = crate::runtime::registry::by_name(name) else {
            return false;
        };
        let run = entry.run;
        let args = args.clone();
        matches!(
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || run(args))),
            Ok(crate::runtime::registry::EntryOutcome::Returned)
        )
    }
}

impl Barrier {
    /// Breaks it: waiting and future parties fail until `reset`.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`].
    pub async fn abort(&self) -> Result<(), SyncError> {
        match &self.side {
            Side::Far(far) => far.done(FarOp::Abort).await,
            Side::Here(h) => h.addr.done(Op::BarrierAbort).await,
        }
    }

    /// Makes it whole again; parties waiting now fail.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`].
    pub async fn reset(&self) -> Result<(), SyncError> {
        match &self.side {
            Side::Far(far) => far.done(FarOp::Reset).await,
            Side::Here(h) => h.addr.done(Op::BarrierReset).await,
        }
    }

    /// `(parties, n_waiting, broken)`.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`].
    pub async fn info(&self) -> Result<(usize, usize, bool), SyncError> {
        let h = match &self.side {
            Side::Far(far) => return far.info().await,
            Side::Here(h) => h,
        };
        match h.addr.ask(Op::BarrierInfo).await? {
            Answer::BarrierInfo {
                parties,
                n_waiting,
                broken,
            } => Ok((parties, n_waiting, broken)),
            other => Err(unexpected(other)),
        }
    }
}
