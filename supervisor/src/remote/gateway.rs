//! A root's gateway: the actor its nodes reach it through, on behalf of the processes
//! it placed there. What the gateway runs is a service's (the far handles' operations,
//! `sync::far`), registered at link time, so this layer names none; the messages of
//! those processes to actors of this tree (far actors, `process::actor`) it hands, as
//! they come, to the relay that knows the nodes (`route`).
//!
//! The gateway is a ractor actor in a process group of multiproc's scope, as the
//! node's agent is: the engine tells every session about it, so a node finds the
//! gateway of each of its roots among the group's members by the session's node id.
//! It is started before a root's first session, so that session's first exchange of
//! groups already names it.

use std::future::Future;
use std::pin::Pin;

use ractor::{ActorProcessingErr, ActorRef};
use ractor_cluster::NodeId;
use tokio::sync::OnceCell;

use multiproc_core::codec;
use multiproc_core::wire::BodyKind;

use super::wire::{AGENT_SCOPE, AgentMsg, ToGateway};

/// The process group of roots' gateways.
const GATEWAY_GROUP: &str = "multiproc.root.gateway";

/// An answer being made: the encoded answer, or `None` to leave the call unanswered.
pub(crate) type Answering = Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>;

/// The service that answers the calls a root's gateway receives.
pub(crate) struct GatewayService {
    /// Answers one encoded call; the gateway runs the answer in a task of its own.
    pub(crate) serve: fn(Vec<u8>) -> Answering,
}

/// The registered service; there is one, the far handles'.
#[linkme::distributed_slice]
pub(crate) static GATEWAY_SERVICES: [GatewayService];

/// Where the gateway hands the messages of the processes this root placed to actors
/// of its tree: the relay that knows this root's nodes (`route`), registered at link
/// time so that the gateway, below the sessions, names none.
pub(crate) struct IntoTree {
    /// Routes the message `payload` of a process on the node `node` (this root's
    /// token there: `token`) to the actor `to`; a call when `corr` is not 0.
    pub(crate) route: fn(&str, u64, &multiproc_core::Identity, &[u8], u64),
}

/// The registered relay; there is one, `route`'s.
#[linkme::distributed_slice]
pub(crate) static INTO_TREE: [IntoTree];

/// The gateway of the root at the other end of `session`, if it is still there.
pub(crate) fn of_session(session: NodeId) -> Option<ActorRef<AgentMsg>> {
    ractor::pg::get_scoped_members(&AGENT_SCOPE.to_string(), &GATEWAY_GROUP.to_string())
        .into_iter()
        .find(|cell| cell.get_id().node() == session)
        .map(ActorRef::<AgentMsg>::from)
}

/// A root's gateway: answers its nodes' calls, each in its own task on the process
/// runtime (a lock's acquire may wait long), and hands the answers of actor calls to
/// their callers. It runs on the engine's thread, beside the sessions that bring it
/// both.
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
            AgentMsg::Cast(bytes) => match codec::decode::<ToGateway>(&bytes) {
                // Straight into the caller's slot, which wakes it: no task between.
                Ok(ToGateway::Answer(a)) => {
                    let kind = if a.fail {
                        BodyKind::Fail
                    } else {
                        BodyKind::Reply
                    };
                    crate::runtime::reply::deliver(a.corr, kind, &a.payload);
                }
                Ok(ToGateway::Actor {
                    node,
                    token,
                    to,
                    payload,
                    corr,
                }) => {
                    if let Some(relay) = INTO_TREE.first() {
                        (relay.route)(&node, token, &to, &payload, corr);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dropped a node's message that does not decode")
                }
            },
            AgentMsg::Call(bytes, reply) => {
                let Some(service) = GATEWAY_SERVICES.first() else {
                    return Ok(());
                };
                let answer = (service.serve)(bytes);
                crate::runtime::handle().spawn(async move {
                    if let Some(bytes) = answer.await {
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
