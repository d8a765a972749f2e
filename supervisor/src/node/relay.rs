//! Far handles' operations over the node session: the node relays what its placed
//! processes ask to the gateway of the root that placed them (`remote/gateway.rs`),
//! and the root's gateway runs it (`sync::far`).

use std::sync::{Arc, Mutex, Weak};

use multiproc_core::{Envelope, codec};
use ractor::rpc::CallResult;

use super::agent::Shared;
use crate::remote::gateway;
use crate::remote::wire::AgentMsg;
use crate::sync::far::{self, FarError, FarReply, GatewayCall};

static NODE: Mutex<Option<Weak<Shared>>> = Mutex::new(None);

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(far::RELAYS)]
static NODE_RELAY: far::Relay = far::Relay { is_node, relay };

/// Makes this process the node that relays its placed processes' far operations.
pub(crate) fn set_node(shared: &Arc<Shared>) {
    *NODE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(shared));
}

fn node() -> Option<Arc<Shared>> {
    NODE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(Weak::upgrade)
}

/// Whether this process serves as a node.
fn is_node() -> bool {
    node().is_some()
}

/// Relays the far operation `call`, asked by `env.from`, to its root; answers it.
fn relay(env: Envelope, call: Vec<u8>) {
    crate::runtime::handle().spawn(async move {
        let reply = relayed(&env, call).await;
        far::answer(&env.from, env.corr, &reply);
    });
}

async fn relayed(env: &Envelope, call: Vec<u8>) -> FarReply {
    let shared = node().ok_or_else(|| FarError::Failed("this node stopped".into()))?;
    let (token, session, mut lost) = shared.root_of(&env.from).ok_or(FarError::NotExported)?;
    let root_down = |why: &str| FarError::NodeDown {
        node: "the root".to_string(),
        why: why.to_string(),
    };
    if *lost.borrow() {
        return Err(root_down("its session was lost"));
    }
    let gateway = gateway::of_session(session)
        // The gateway starts before the root's session: gone, it went with the
        // session (the engine forgets a lost peer's groups before the agent hears
        // of the loss).
        .ok_or_else(|| root_down("its gateway is gone with its session"))?;
    let bytes =
        codec::encode(&GatewayCall { token, call }).map_err(|e| FarError::Failed(e.to_string()))?;
    let answer = tokio::select! {
        r = gateway.call(|port| AgentMsg::Call(bytes, port), None) => r,
        _ = lost.wait_for(|l| *l) => return Err(root_down("its session was lost")),
    };
    match answer {
        Ok(CallResult::Success(bytes)) => {
            codec::decode::<FarReply>(&bytes).map_err(|e| FarError::Failed(e.to_string()))?
        }
        Ok(CallResult::Timeout) => Err(root_down("no answer in time")),
        Ok(CallResult::SenderError) | Err(_) => Err(root_down("session lost")),
    }
}
