//! A handle on a node (`Far`), and the way of its operations: up the node's tree to
//! the node program, relayed from there to the root's gateway, and answered back.

use multiproc_core::{Body, Envelope, Identity, NodeError, RemoteError, codec};

use super::wire::{FarCall, FarError, FarKey, FarOp, FarReply, FarValue};
use crate::runtime::current::me;
use crate::runtime::router;
use crate::sync::SyncError;
use crate::sync::wire::{Op, Request};

/// How a node program relays the far operations of the processes it runs to their
/// roots. Node mode registers it at link time: the primitives, below it, name no
/// node.
pub(crate) struct Relay {
    /// Whether this process serves as a node.
    pub(crate) is_node: fn() -> bool,
    /// Relays the far operation `call`, asked by the envelope's sender, to its root,
    /// and answers it.
    pub(crate) relay: fn(Envelope, Vec<u8>),
    /// Relays a message of the envelope's sender to the actor `to` of its root's
    /// tree; a call's answer goes back to the sender.
    pub(crate) relay_actor: fn(Envelope, Identity, Vec<u8>),
}

/// The registered relay; there is one, node mode's.
#[linkme::distributed_slice]
pub(crate) static RELAYS: [Relay];

/// A handle on a node: its operations travel to the root's gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Far {
    pub(super) key: FarKey,
    /// The handle as its root's tree encodes it, lending nothing: what it becomes
    /// when a message takes it back there.
    pub(super) home: Vec<u8>,
}

impl Far {
    /// Runs `op` at the root's gateway.
    pub(crate) async fn ask(&self, op: FarOp) -> Result<FarValue, SyncError> {
        let call = FarCall {
            key: self.key.clone(),
            pid: crate::runtime::shm::my_pid(),
            thread: crate::sync::thread_token(),
            op,
        };
        up(&call).await
    }

    pub(crate) async fn bool(&self, op: FarOp) -> Result<bool, SyncError> {
        match self.ask(op).await? {
            FarValue::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn done(&self, op: FarOp) -> Result<(), SyncError> {
        match self.ask(op).await? {
            FarValue::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn item(&self, op: FarOp) -> Result<Vec<u8>, SyncError> {
        match self.ask(op).await? {
            FarValue::Item(bytes) => Ok(bytes),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn count(&self, op: FarOp) -> Result<usize, SyncError> {
        match self.ask(op).await? {
            FarValue::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// A barrier's `(parties, n_waiting, broken)`.
    pub(crate) async fn info(&self) -> Result<(usize, usize, bool), SyncError> {
        match self.ask(FarOp::Info).await? {
            FarValue::Info {
                parties,
                n_waiting,
                broken,
            } => Ok((parties, n_waiting, broken)),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn size(&self) -> Result<(usize, bool), SyncError> {
        match self.ask(FarOp::Size).await? {
            FarValue::Size { size, full } => Ok((size, full)),
            other => Err(unexpected(other)),
        }
    }
}

/// The children of this process that asked far operations: each one's end is told to
/// the gateway (see `watch_child`).
fn watched() -> std::sync::MutexGuard<'static, std::collections::HashSet<Identity>> {
    static WATCHED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<Identity>>> =
        std::sync::OnceLock::new();
    WATCHED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// `from` asked a far operation through this process: if it is a child of this one,
/// its end is told to the root's gateway. The gateway sees a placed process end, not
/// its descendants, so what a descendant killed while holding a lock is freed as a
/// dead holder's only then: its parent here is the one to see it end.
fn watch_child(from: &Identity) {
    if watched().contains(from) {
        return;
    }
    let found = crate::runtime::children::children()
        .iter()
        .find(|c| c.identity == *from)
        .map(|c| (c.pid, c.exit.clone()));
    let Some((pid, mut exit)) = found else {
        return;
    };
    if !watched().insert(from.clone()) {
        return;
    }
    let from = from.clone();
    crate::runtime::handle().spawn(async move {
        crate::runtime::children::wait_exit(&mut exit).await;
        watched().remove(&from);
        let call = FarCall {
            key: FarKey::new(me().identity.clone(), 0, 0),
            pid,
            thread: 0,
            op: FarOp::Died,
        };
        // Lost with the root's session, there is nothing left to free.
        let _ = up(&call).await;
    });
}

/// Sends `call` up the node's tree, to the root's gateway; its answer.
async fn up(call: &FarCall) -> Result<FarValue, SyncError> {
    let call = codec::encode(call).map_err(SyncError::Encode)?;
    let request = Request {
        prim: 0,
        secret: 0,
        op: Op::Far(call),
    };
    let bytes = codec::encode(&request).map_err(SyncError::Encode)?;
    let Some(up) = me().parent.as_ref().map(|p| p.identity.clone()) else {
        return Err(not_on_node());
    };
    let corr = router::next_corr();
    let rx = router::expect_reply(corr);
    router::route(Envelope {
        to: up,
        from: me().identity.clone(),
        corr,
        body: Body::Service(bytes),
    });
    match rx.await {
        Body::Reply(bytes) => codec::decode::<FarReply>(&bytes)
            .map_err(SyncError::Decode)?
            .map_err(SyncError::from),
        Body::Fail(e) => Err(SyncError::Remote(e)),
        _ => Err(SyncError::Remote(RemoteError::Decode(
            "a request came back".into(),
        ))),
    }
}

fn unexpected(value: FarValue) -> SyncError {
    SyncError::Remote(RemoteError::Decode(format!(
        "unexpected far answer {value:?}"
    )))
}

fn not_on_node() -> SyncError {
    SyncError::Node(NodeError::Remote {
        node: "(none)".to_string(),
        message: "a far handle used outside the node tree it was sent to".to_string(),
    })
}

/// A far operation reached this process, on its way to the node program: the
/// node relays it, any other process passes it to its parent.
pub(crate) fn forward(env: Envelope, call: Vec<u8>) {
    if let Some(node) = RELAYS.first().filter(|r| (r.is_node)()) {
        return (node.relay)(env, call);
    }
    watch_child(&env.from);
    match me().parent.as_ref() {
        Some(parent) => {
            let request = Request {
                prim: 0,
                secret: 0,
                op: Op::Far(call),
            };
            let Ok(bytes) = codec::encode(&request) else {
                return;
            };
            router::route(Envelope {
                to: parent.identity.clone(),
                from: env.from,
                corr: env.corr,
                body: Body::Service(bytes),
            });
        }
        None => answer(&env.from, env.corr, &Err(FarError::from(not_on_node()))),
    }
}

/// Sends a message of this process (on a node) to the actor `to` of its root's
/// tree, up the node's tree: a call's answer comes back as `corr`'s. `false` if
/// this process has no parent to send it through.
pub(crate) fn actor_up(
    to: &Identity,
    payload: Vec<u8>,
    corr: u64,
) -> Result<bool, multiproc_core::CodecError> {
    let Some(up) = me().parent.as_ref().map(|p| p.identity.clone()) else {
        return Ok(false);
    };
    let request = Request {
        prim: 0,
        secret: 0,
        op: Op::FarActor {
            to: to.clone(),
            payload,
        },
    };
    router::route(Envelope {
        to: up,
        from: me().identity.clone(),
        corr,
        body: Body::Service(codec::encode(&request)?),
    });
    Ok(true)
}

/// A message to an actor of a root's tree reached this process, on its way up to
/// the node program: the node relays it, any other process passes it on as it came.
pub(crate) fn forward_actor(env: Envelope, to: Identity, payload: Vec<u8>) {
    if let Some(node) = RELAYS.first().filter(|r| (r.is_node)()) {
        return (node.relay_actor)(env, to, payload);
    }
    match me().parent.as_ref() {
        Some(parent) => router::route(Envelope {
            to: parent.identity.clone(),
            ..env
        }),
        // Decoded in a tree that is on no node: its address may mean another
        // process here.
        None => router::bounce_envelope(
            env,
            RemoteError::Node(Box::new(NodeError::NotAcrossNodes {
                what: format!("the handle of the actor {to}, sent to a node"),
                node: "this host".to_string(),
            })),
        ),
    }
}

/// Sends a far operation's answer to the process that asked.
pub(crate) fn answer(to: &Identity, corr: u64, reply: &FarReply) {
    let body = match codec::encode(reply) {
        Ok(bytes) => Body::Reply(bytes),
        Err(e) => Body::Fail(RemoteError::Encode(e.to_string())),
    };
    router::route(Envelope {
        to: to.clone(),
        from: me().identity.clone(),
        corr,
        body,
    });
}
