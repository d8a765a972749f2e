//! Far handles' operations over the node session: the node relays what its placed
//! processes ask to the gateway of the root that placed them, and the root's
//! gateway runs it (`sync::far`).
//!
//! The gateway is a ractor actor in a process group of multiproc's scope, as the
//! node's agent is: the engine tells every session about it, so a node finds the
//! gateway of each of its roots among the group's members by the session's node id.
//! It is started before a root's first session, so that session's first exchange of
//! groups already names it.

use std::sync::{Arc, Mutex, Weak};

use multiproc_core::wire::BodyKind;
use multiproc_core::{Envelope, codec};
use ractor::rpc::CallResult;
use ractor::{ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::agent::Shared;
use super::wire::{AGENT_SCOPE, AgentMsg, Answer};
use crate::sync::far::{self, FarError, FarReply};

/// The process group of roots' gateways.
const GATEWAY_GROUP: &str = "multiproc.root.gateway";

/// What a node sends a root's gateway: a far operation and the root's token at the
/// node (the gateway answers only for what it exported to that token).
#[derive(Debug, Serialize, Deserialize)]
struct GatewayCall {
    token: u64,
    #[serde(with = "serde_bytes")]
    call: Vec<u8>,
}

static NODE: Mutex<Option<Weak<Shared>>> = Mutex::new(None);

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
pub(crate) fn is_node() -> bool {
    node().is_some()
}

/// The gateway of the root at the other end of the session `session`, if the engine
/// knows it.
pub(crate) fn gateway_of(session: ractor_cluster::NodeId) -> Option<ActorRef<AgentMsg>> {
    ractor::pg::get_scoped_members(&AGENT_SCOPE.to_string(), &GATEWAY_GROUP.to_string())
        .into_iter()
        .find(|cell| cell.get_id().node() == session)
        .map(ActorRef::<AgentMsg>::from)
}

/// Relays the far operation `call`, asked by `env.from`, to its root; answers it.
pub(crate) fn relay(env: Envelope, call: Vec<u8>) {
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
    // The gateway starts before the root's session: gone, it went with the session
    // (the engine forgets a lost peer's groups before the agent hears of the loss).
    let gateway =
        gateway_of(session).ok_or_else(|| root_down("its gateway is gone with its session"))?;
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

/// A root's gateway: answers far operations from its nodes, each in its own task on
/// the process runtime (a lock's acquire may wait long), and hands the answers of
/// actor calls to their callers. It runs on the engine's thread, beside the sessions
/// that bring it both.
struct Gateway;

impl ractor::Actor for Gateway {
    type Msg = AgentMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<AgentMsg>,
        (): (),
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::join_scoped(
            AGENT_SCOPE.to_string(),
            GATEWAY_GROUP.to_string(),
            vec![myself.get_cell()],
        );
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<AgentMsg>,
        message: AgentMsg,
        (): &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AgentMsg::Cast(bytes) => match codec::decode::<Answer>(&bytes) {
                // Straight into the caller's slot, which wakes it: no task between.
                Ok(a) => {
                    let kind = if a.fail {
                        BodyKind::Fail
                    } else {
                        BodyKind::Reply
                    };
                    crate::runtime::reply::deliver(a.corr, kind, &a.payload);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dropped a node's answer that does not decode")
                }
            },
            AgentMsg::Call(bytes, reply) => {
                crate::runtime::handle().spawn(async move {
                    let answer = match codec::decode::<GatewayCall>(&bytes) {
                        Ok(c) => far::serve(c.token, &c.call).await,
                        Err(e) => Err(FarError::Failed(e.to_string())),
                    };
                    if let Ok(bytes) = codec::encode(&answer) {
                        let _ = reply.send(bytes);
                    }
                });
            }
        }
        Ok(())
    }
}

/// Starts this process's gateway once, on the engine's thread.
pub(crate) async fn ensure_gateway() -> Result<(), multiproc_core::NodeError> {
    static GATEWAY: OnceCell<ActorRef<AgentMsg>> = OnceCell::const_new();
    GATEWAY
        .get_or_try_init(|| async {
            super::engine::on_engine(ractor::Actor::spawn(None, Gateway, ()))
                .await?
                .map(|(a, _)| a)
                .map_err(|e| multiproc_core::NodeError::Engine(e.to_string()))
        })
        .await
        .map(|_| ())
}
