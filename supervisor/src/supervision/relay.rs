//! A `SupervisedRef`'s message to a child of a supervisor on a node: the root sends
//! it, already encoded as the child's type's, to the actor hosting the supervisor
//! there (`hosted.rs`), which forwards it to the child's current process, in its own
//! tree, and answers with the child's reply as it came.

use std::time::Duration;

use multiproc_core::wire::{BodyKind, PathRef};
use multiproc_core::{Identity, NodeError, RemoteError};
use serde::{Deserialize, Serialize};

use super::SupervisorRef;
use crate::runtime::error::CallError;
use crate::runtime::router;

/// How many times a call looks the child up again when the address it got has no
/// process (the child was restarted since): the message never reached anyone, so
/// sending it again is safe.
pub(super) const MAX_TRIES: u32 = 5;

/// How a forwarded message goes to the child.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Delivery {
    /// A call, waiting through a restart with `wait`, given up after `timeout`.
    Call {
        wait: bool,
        timeout: Option<Duration>,
    },
    /// A cast, once the child runs; answered as soon as it is sent.
    Cast,
}

/// Why a forwarded message reached no child, as it crosses back.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Miss {
    NotRunning(String),
    Restarting,
    Timeout(Duration),
    Remote(RemoteError),
    Node(NodeError),
    Other(String),
}

impl Miss {
    fn of(e: CallError) -> Miss {
        match e {
            CallError::NotRunning(_, why) => Miss::NotRunning(why),
            CallError::Restarting(_) => Miss::Restarting,
            CallError::Timeout(t) => Miss::Timeout(t),
            CallError::Remote(e) => Miss::Remote(e),
            CallError::Node(e) => Miss::Node(e),
            e => Miss::Other(e.to_string()),
        }
    }

    /// The error of a call to the child `id` of the supervisor on `node`.
    pub(super) fn into_error(self, id: &str, node: &str) -> CallError {
        match self {
            Miss::NotRunning(why) => CallError::NotRunning(id.to_string(), why),
            Miss::Restarting => CallError::Restarting(id.to_string()),
            Miss::Timeout(t) => CallError::Timeout(t),
            Miss::Remote(e) => CallError::Remote(e),
            Miss::Node(e) => CallError::Node(e),
            Miss::Other(message) => CallError::Node(NodeError::Remote {
                node: node.to_string(),
                message,
            }),
        }
    }
}

/// On the supervisor's host: sends `payload` to the child `id` of `sup`; a call's
/// answer is the child's reply, encoded.
pub(super) async fn to_child(
    sup: &SupervisorRef,
    id: &str,
    payload: &[u8],
    send: Delivery,
) -> Result<Vec<u8>, Miss> {
    let out = match send {
        Delivery::Cast => sup.resolve(id, true).await.map(|addr| {
            router::send_from_here((&addr).into(), 0, BodyKind::Cast, payload);
            Vec::new()
        }),
        Delivery::Call { wait, timeout } => {
            let call = call_child(sup, id, payload, wait);
            match timeout {
                None => call.await,
                Some(t) => tokio::time::timeout(t, call)
                    .await
                    .unwrap_or(Err(CallError::Timeout(t))),
            }
        }
    };
    out.map_err(Miss::of)
}

/// As a local `SupervisedRef` calls: looked up again when the address had no
/// process, never repeated once it reached one.
async fn call_child(
    sup: &SupervisorRef,
    id: &str,
    payload: &[u8],
    wait: bool,
) -> Result<Vec<u8>, CallError> {
    let mut failed: Option<Identity> = None;
    for tries in 1.. {
        let addr = sup.resolve(id, wait).await?;
        if failed.as_ref() == Some(&addr) {
            // The supervisor has not seen that exit yet: give it time to.
            tokio::time::sleep(Duration::from_millis(5 << tries)).await;
        }
        match call_raw(&addr, payload).await {
            Err(RemoteError::NoProcess(_)) if tries < MAX_TRIES => failed = Some(addr),
            out => return out.map_err(CallError::Remote),
        }
    }
    unreachable!("the loop returns by its last try")
}

/// Calls the actor of the process `to` with an encoded message; its encoded reply.
async fn call_raw(to: &Identity, payload: &[u8]) -> Result<Vec<u8>, RemoteError> {
    let corr = router::next_corr();
    // Before the message leaves: the answer may come before this task looks.
    let pending = router::expect_reply(corr);
    router::send_from_here(PathRef::from(to), corr, BodyKind::Call, payload);
    pending.wait(|answer| answer.map(<[u8]>::to_vec)).await
}
