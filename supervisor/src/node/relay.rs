//! Far handles' operations over the node session: the node relays what its placed
//! processes ask to the gateway of the root that placed them (`remote/gateway.rs`),
//! and the root's gateway runs it (`sync::far`); their messages to actors of the
//! root's tree likewise, which the gateway routes into that tree.

use std::sync::{Arc, Mutex, Weak};

use multiproc_core::wire::BodyKind;
use multiproc_core::{Envelope, Identity, NodeError, RemoteError, codec};
use ractor::rpc::CallResult;

use super::agent::Shared;
use crate::remote::gateway;
use crate::remote::wire::{AgentMsg, ToGateway};
use crate::runtime::router;
use crate::sync::far::{self, FarError, FarReply, GatewayCall};

static NODE: Mutex<Option<Weak<Shared>>> = Mutex::new(None);

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(far::RELAYS)]
static NODE_RELAY: far::Relay = far::Relay {
    is_node,
    relay,
    relay_actor,
};

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

/// Relays a message of `env.from` (a process a root placed here, or one of its
/// descendants) to the actor `to` of that root's tree, as it comes: a cast to the
/// root's gateway on the session, which keeps the order of the messages. A call's
/// answer comes back as a cast to the agent, which delivers it to the caller where
/// it arrives; it fails with `NodeDown` if the root is lost first.
fn relay_actor(env: Envelope, to: Identity, payload: Vec<u8>) {
    if let Err(e) = relay_to_root(&env, to, payload) {
        answer_actor(
            &env.from,
            env.corr,
            BodyKind::Fail,
            &codec::encode(&e).unwrap_or_default(),
        );
    }
}

fn relay_to_root(env: &Envelope, to: Identity, payload: Vec<u8>) -> Result<(), RemoteError> {
    let root_down = |why: &str| {
        RemoteError::Node(Box::new(NodeError::NodeDown {
            node: "the root".to_string(),
            why: why.to_string(),
        }))
    };
    let shared = node().ok_or_else(|| root_down("this node stopped"))?;
    let Some((token, _, _)) = shared.root_of(&env.from) else {
        return Err(root_down(
            "no root placed this process here, or it was released",
        ));
    };
    let gateway = shared
        .gateway(token)
        .ok_or_else(|| root_down("its session was lost"))?;
    let corr = if env.corr == 0 {
        0
    } else {
        let corr = router::next_corr();
        let (caller, asked) = (env.from.clone(), env.corr);
        router::expect_reply_then(
            corr,
            Box::new(move |kind, payload| answer_actor(&caller, asked, kind, payload)),
        );
        if !shared.relaying(corr, token) {
            router::forget_reply(corr);
            return Err(root_down("its session was lost"));
        }
        corr
    };
    let message = ToGateway::Actor {
        node: shared.name.clone(),
        token,
        to,
        payload,
        corr,
    };
    let sent = codec::encode(&message)
        .map_err(|e| RemoteError::Encode(e.to_string()))
        .and_then(|bytes| {
            gateway
                .cast(AgentMsg::Cast(bytes))
                .map_err(|_| root_down("its session was lost"))
        });
    if sent.is_err() && corr != 0 {
        let _ = shared.answered(corr);
        router::forget_reply(corr);
    }
    sent
}

/// Sends the answer to the call `corr` of `caller`.
fn answer_actor(caller: &Identity, corr: u64, kind: BodyKind, payload: &[u8]) {
    if corr == 0 {
        return;
    }
    router::send_from_here(caller.into(), corr, kind, payload);
}
