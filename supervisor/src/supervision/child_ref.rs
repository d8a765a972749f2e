//! `SupervisedRef`: a stable handle to a supervised actor child, which follows it
//! across its restarts.

use tokio::sync::oneshot;

use super::SupervisorRef;
use super::message::Msg;
use crate::process::actor::Actor;
use crate::runtime;
use crate::runtime::error::CallError;

/// A stable handle to a supervised actor child, across its restarts: each call goes to
/// the child's current process.
///
/// A call made while the child is restarting waits for the new incarnation (up to
/// 1024 callers per child; more get [`CallError::Restarting`]), and fails with
/// [`CallError::NotRunning`] if the child is stopped instead;
/// [`try_call`](SupervisedRef::try_call) does not wait. A call already inside a process that dies
/// fails with `RemoteError::Exited`, and is not repeated: the message may have had
/// effects.
#[derive(Debug)]
pub struct SupervisedRef<A> {
    pub(super) sup: SupervisorRef,
    pub(super) id: String,
    pub(super) _actor: std::marker::PhantomData<fn() -> A>,
}

impl<A> Clone for SupervisedRef<A> {
    fn clone(&self) -> Self {
        SupervisedRef {
            sup: self.sup.clone(),
            id: self.id.clone(),
            _actor: std::marker::PhantomData,
        }
    }
}

impl<A: Actor> SupervisedRef<A> {
    async fn current(&self, wait: bool) -> Result<crate::process::actor::ActorRef<A>, CallError> {
        let (tx, rx) = oneshot::channel();
        let gone = || CallError::NotRunning(self.id.clone(), "its supervisor ended".into());
        // The child's address is one of the node's tree, which this process cannot
        // reach by it.
        let cell = self.sup.local().map_err(|placed| {
            CallError::Node(multiproc_core::NodeError::NotAcrossNodes {
                what: format!(
                    "a SupervisedRef to the child {} of a supervisor running on a node",
                    self.id
                ),
                node: placed.node().to_string(),
            })
        })?;
        cell.cast(Msg::Resolve {
            id: self.id.clone(),
            wait,
            reply: tx,
        })
        .map_err(|_| gone())?;
        let identity = rx.await.map_err(|_| gone())??;
        Ok(crate::process::actor::ActorRef::at(identity))
    }

    /// Calls the child, waiting through a restart if there is one.
    ///
    /// # Errors
    ///
    /// [`CallError::NotRunning`], [`CallError::Restarting`] (too many waiting), and
    /// those of [`ActorRef::call`](crate::ActorRef::call).
    pub async fn call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        self.current(true).await?.call(msg).await
    }

    /// Like [`call`](SupervisedRef::call), within `timeout` in all (the wait for a
    /// restart included).
    ///
    /// # Errors
    ///
    /// As [`call`](SupervisedRef::call), plus [`CallError::Timeout`].
    pub async fn call_timeout(
        &self,
        msg: A::Msg,
        timeout: std::time::Duration,
    ) -> Result<A::Reply, CallError> {
        let this = self.clone();
        runtime::run(async move {
            tokio::time::timeout(timeout, this.call(msg))
                .await
                .unwrap_or(Err(CallError::Timeout(timeout)))
        })
        .await
    }

    /// Calls the child only if it runs now.
    ///
    /// # Errors
    ///
    /// [`CallError::Restarting`] while it restarts; as [`call`](SupervisedRef::call).
    pub async fn try_call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        self.current(false).await?.call(msg).await
    }
}
