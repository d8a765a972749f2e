//! A supervised child's handle away from its supervisor's process: how it names the
//! supervisor, and how it asks it where the child runs now.
//!
//! From another process of the tree the question travels along the tree to the
//! supervisor's process, as a request of the hosts' envelopes (`sync::above`), and
//! is answered by a task there. From a process placed on a node it goes to the
//! placing root's gateway (`sync::far`): the root exported a resolver of the
//! supervisor with the placed process's arguments, bound to its life, as it exports
//! a lock.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, OnceLock};

use multiproc_core::{Body, CodecError, Envelope, Identity, NodeError, RemoteError, codec};
use serde::{Deserialize, Serialize};

use super::SupervisorRef;
use super::handle::running_numbered;
use super::placed::Placed;
use crate::runtime;
use crate::runtime::current::me;
use crate::runtime::error::CallError;
use crate::runtime::router;
use crate::sync::SyncError;
use crate::sync::far::{FarKey, FarOp, Resolver, Side};

/// Names a supervisor of another process: that process, the supervisor's number
/// there, and a secret, so that a forged or stale key reaches no other supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Key {
    host: Identity,
    number: u64,
    secret: u64,
}

impl Key {
    pub(super) fn far_key(&self) -> FarKey {
        FarKey::new(self.host.clone(), self.number, self.secret)
    }
}

/// What a handle asks the supervisor's process.
#[derive(Serialize, Deserialize)]
struct Ask {
    number: u64,
    secret: u64,
    child: String,
    wait: bool,
}

/// The supervisor's answer, as it travels.
#[derive(Serialize, Deserialize)]
enum Answer {
    Running(Identity),
    Restarting,
    NotRunning(String),
}

/// Where the supervisor runs, seen from the handle.
#[derive(Debug, Clone)]
pub(super) enum Sup {
    /// In this process.
    Here(SupervisorRef),
    /// In another process of this tree (`Side::Here`), or of the tree of the root
    /// that placed this process on its node (`Side::Far`).
    Away(Side<Key>),
    /// On a node, placed by another process of this tree: reached through the actor
    /// hosting it there, by way of that process.
    Node(Placed),
    /// A supervisor on a node that the supervisor of this process restarts
    /// (`Supervisor::into_child`): each call finds its current incarnation first.
    Nested(super::ChildSupervisorRef),
}

/// The address of child `id` of the supervisor `sup`, wherever it runs.
pub(super) async fn resolve(sup: &Sup, id: &str, wait: bool) -> Result<Identity, CallError> {
    match sup {
        Sup::Here(sup) => sup.resolve(id, wait).await,
        Sup::Away(side) => resolve_away(side, id, wait).await,
        // Its children's addresses are the node's: messages go through the
        // hosting actor instead, which resolves them there.
        Sup::Node(placed) => Err(CallError::NotRunning(
            id.to_string(),
            format!("its supervisor runs on node {}", placed.node()),
        )),
        Sup::Nested(nested) => Err(CallError::NotRunning(
            id.to_string(),
            format!("its supervisor {} runs on a node", nested.id()),
        )),
    }
}

/// The secret of this process's supervisor numbered `number`.
fn secret_of(number: u64) -> u64 {
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut h = KEYS.get_or_init(Default::default).build_hasher();
    h.write_u64(number);
    h.finish()
}

/// The key of a supervisor of this process; `None` for one running on a node.
pub(super) fn key_of(sup: &SupervisorRef) -> Option<Key> {
    let number = sup.number()?;
    Some(Key {
        host: me().identity.clone(),
        number,
        secret: secret_of(number),
    })
}

fn answer_of(found: Result<Identity, CallError>) -> Answer {
    match found {
        Ok(addr) => Answer::Running(addr),
        Err(CallError::Restarting(_)) => Answer::Restarting,
        Err(CallError::NotRunning(_, why)) => Answer::NotRunning(why),
        Err(e) => Answer::NotRunning(e.to_string()),
    }
}

fn found(child: &str, answer: Answer) -> Result<Identity, CallError> {
    match answer {
        Answer::Running(addr) => Ok(addr),
        Answer::Restarting => Err(CallError::Restarting(child.to_string())),
        Answer::NotRunning(why) => Err(CallError::NotRunning(child.to_string(), why)),
    }
}

/// Answers `ask` in the supervisor's process.
async fn answer(ask: Ask) -> Answer {
    let sup = running_numbered(ask.number).filter(|_| ask.secret == secret_of(ask.number));
    match sup {
        Some(sup) => answer_of(sup.resolve(&ask.child, ask.wait).await),
        // Ended, or never ran here: a running supervisor's key would match.
        None => Answer::NotRunning("its supervisor ended".into()),
    }
}

/// The address of child `child` of the supervisor `side` names.
async fn resolve_away(side: &Side<Key>, child: &str, wait: bool) -> Result<Identity, CallError> {
    let bytes = match side {
        Side::Here(key) if key.host == me().identity => {
            let ask = Ask {
                number: key.number,
                secret: key.secret,
                child: child.to_string(),
                wait,
            };
            return found(child, answer(ask).await);
        }
        Side::Here(key) => {
            let ask = Ask {
                number: key.number,
                secret: key.secret,
                child: child.to_string(),
                wait,
            };
            let ask = codec::encode(&ask).map_err(CallError::Encode)?;
            crate::sync::ask_above(key.host.clone(), ask)
                .await
                .map_err(|e| host_failed(child, e))?
        }
        Side::Far(far) => far
            .item(FarOp::Resolve {
                child: child.to_string(),
                wait,
            })
            .await
            .map_err(|e| gateway_failed(child, e))?,
    };
    found(child, codec::decode(&bytes).map_err(CallError::Decode)?)
}

fn host_failed(child: &str, e: RemoteError) -> CallError {
    match e {
        RemoteError::NoProcess(host) | RemoteError::Exited(host) => CallError::NotRunning(
            child.to_string(),
            format!("its supervisor's process {host} has exited"),
        ),
        e => CallError::Remote(e),
    }
}

fn gateway_failed(child: &str, e: SyncError) -> CallError {
    match e {
        SyncError::Node(e) => CallError::Node(e),
        // Withdrawn: the placed process that got it ended, or its node went down.
        SyncError::Forged => CallError::NotRunning(
            child.to_string(),
            "its supervisor is not served to this process any more".into(),
        ),
        SyncError::Remote(e) => CallError::Remote(e),
        e => CallError::Node(NodeError::Remote {
            node: "the root".to_string(),
            message: e.to_string(),
        }),
    }
}

/// What the root's gateway runs for a node's handle of `sup`, named `key` in this
/// tree: `sup`'s answer, encoded.
pub(super) fn resolver(sup: Sup, key: &Key) -> Resolver {
    Resolver {
        resolve: Arc::new(move |child, wait| {
            let sup = sup.clone();
            Box::pin(async move {
                let answer = answer_of(resolve(&sup, &child, wait).await);
                codec::encode(&answer).unwrap_or_default()
            })
        }),
        // A key is a plain struct, whose encoding cannot fail.
        named: codec::encode(key).unwrap_or_default(),
    }
}

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(crate::sync::far::relayed::RESOLVER_OF)]
static RESOLVER_OF: crate::sync::far::relayed::ResolverOf =
    crate::sync::far::relayed::ResolverOf { make: resolver_of };

/// The resolver of the supervisor `named` names, for a placer that relays a message
/// from another process of the tree: it asks the supervisor's process, as any
/// handle away from it does.
fn resolver_of(named: &[u8]) -> Result<(FarKey, Resolver), CodecError> {
    let key: Key = codec::decode(named)?;
    Ok((
        key.far_key(),
        resolver(Sup::Away(Side::Here(key.clone())), &key),
    ))
}

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(crate::sync::ABOVE)]
static SUPERVISED: crate::sync::Above = crate::sync::Above { serve };

/// A handle's question reached this process: answered by a task, since a child
/// that restarts is waited for.
fn serve(env: Envelope, bytes: Vec<u8>) {
    let ask: Ask = match codec::decode(&bytes) {
        Ok(ask) => ask,
        Err(e) => return router::bounce_envelope(env, RemoteError::Decode(e.to_string())),
    };
    runtime::handle().spawn(async move {
        let body = match codec::encode(&answer(ask).await) {
            Ok(bytes) => Body::Reply(bytes),
            Err(e) => Body::Fail(RemoteError::Encode(e.to_string())),
        };
        router::route(Envelope {
            to: env.from,
            from: me().identity.clone(),
            corr: env.corr,
            body,
        });
    });
}
