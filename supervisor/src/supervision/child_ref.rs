//! `SupervisedRef`: a stable handle to a supervised actor child, which follows it
//! across its restarts, from any process of the tree or placed on a node.

use std::marker::PhantomData;
use std::time::Duration;

use super::away::{self, Key, Sup, resolve};
use super::hosted::Hosted;
use super::placed::Placed;
use super::relay::{Delivery, MAX_TRIES};
use super::{ChildSupervisorRef, SupervisorRef};
use crate::process::actor::{Actor, ActorRef};
use crate::runtime;
use crate::runtime::error::CallError;
use crate::sync::far::{self, Side};
use multiproc_core::{Identity, RemoteError, codec};
use serde::{Deserialize, Serialize};

/// A stable handle to a supervised actor child, across its restarts: each call goes to
/// the child's current process.
///
/// A call made while the child is restarting waits for the new incarnation (up to
/// 1024 callers per child; more get [`CallError::Restarting`]), and fails with
/// [`CallError::NotRunning`] if the child is stopped instead;
/// [`try_call`](SupervisedRef::try_call) does not wait. A call already inside a process that dies
/// fails with `RemoteError::Exited`, and is not repeated: the message may have had
/// effects.
///
/// A plain value: put it in a child's arguments, a placed process's (its calls then
/// go through the placing root's gateway), or a message to an actor of this tree.
/// Each call asks the supervisor where the child runs now (away from the
/// supervisor's process, that is one more round trip to it), so a call made after a
/// restart reaches the new incarnation; when the address it got has no process any
/// more (the child was restarted meanwhile), the message reached nobody, and it asks
/// again and sends it there.
///
/// Of a supervisor running on a node ([`Supervisor::on`](crate::Supervisor::on)),
/// it works in the process that placed the supervisor and in the other processes of
/// its tree on this host (in a child's arguments, in a message): each message goes,
/// encoded there, to the actor hosting the supervisor on the node (by way of the
/// placing process), which forwards it to the child, in order for one child but
/// without waiting for another's answer, and fails with [`CallError::Node`] once
/// the node is down. It works on the root's nodes too (in a placed process's
/// arguments, in a message to a placed actor): its messages go through the root,
/// which relays them to the actor hosting the supervisor, on that node or another;
/// a far handle in such a message is refused with `NodeError::NotAcrossNodes`, as
/// any far handle sent on from a node.
///
/// Of a supervisor on a node that a supervisor of this process restarts
/// ([`ChildSupervisorRef::child_ref`]), each message first asks the parent where the
/// nested supervisor runs now, then goes as above to the actor hosting it there:
/// it follows the child's restarts and the nested supervisor's, to another node
/// among them. Such a handle works in the parent's process only; sent anywhere, it
/// is refused (`NotAcrossNodes` to a node).
pub struct SupervisedRef<A> {
    sup: Sup,
    id: String,
    _actor: PhantomData<fn() -> A>,
}

impl<A> std::fmt::Debug for SupervisedRef<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisedRef")
            .field("sup", &self.sup)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<A> Clone for SupervisedRef<A> {
    fn clone(&self) -> Self {
        SupervisedRef {
            sup: self.sup.clone(),
            id: self.id.clone(),
            _actor: PhantomData,
        }
    }
}

impl<A> SupervisedRef<A> {
    pub(super) fn new(sup: Sup, id: String) -> Self {
        SupervisedRef {
            sup,
            id,
            _actor: PhantomData,
        }
    }

    /// The child's id in its supervisor.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The supervisor's handle, when it runs on a node: messages then go through the
    /// actor hosting it there.
    fn placed(&self) -> Option<&Placed> {
        match &self.sup {
            Sup::Here(sup) => sup.local().err(),
            Sup::Node(placed) => Some(placed),
            Sup::Away(_) | Sup::Nested(_) => None,
        }
    }
}

impl<A: Actor> SupervisedRef<A> {
    /// The child's actor at `addr`, as this process reaches it.
    fn actor(&self, addr: Identity) -> ActorRef<A> {
        match &self.sup {
            Sup::Away(Side::Far(_)) => ActorRef::by_root(addr),
            _ => ActorRef::at(addr),
        }
    }

    /// A call through the supervisor on a node: the child's reply, decoded here.
    async fn call_placed(
        &self,
        placed: &Placed,
        msg: A::Msg,
        wait: bool,
        timeout: Option<Duration>,
    ) -> Result<A::Reply, CallError> {
        let payload = placed.encode(&msg)?;
        drop(msg);
        let send = Delivery::Call { wait, timeout };
        let reply = placed.to_child(&self.id, payload, send).await?;
        codec::decode(&reply).map_err(CallError::Decode)
    }

    /// The child's current actor, as its supervisor says.
    async fn current(&self, wait: bool) -> Result<ActorRef<A>, CallError> {
        Ok(self.actor(resolve(&self.sup, &self.id, wait).await?))
    }

    /// A call through the current incarnation of the nested supervisor that has
    /// the child.
    async fn call_nested(
        &self,
        nested: &ChildSupervisorRef,
        msg: A::Msg,
        wait: bool,
        timeout: Option<Duration>,
    ) -> Result<A::Reply, CallError> {
        let send = || Delivery::Call { wait, timeout };
        let reply = nested.to_child(&self.id, msg, send, wait).await?;
        codec::decode(&reply).map_err(CallError::Decode)
    }

    async fn call_with(&self, msg: A::Msg, wait: bool) -> Result<A::Reply, CallError> {
        if let Sup::Nested(nested) = &self.sup {
            return self.call_nested(nested, msg, wait, None).await;
        }
        if let Some(placed) = self.placed() {
            return self.call_placed(placed, msg, wait, None).await;
        }
        let mut failed: Option<Identity> = None;
        for tries in 1.. {
            let actor = self.current(wait).await?;
            if failed.as_ref() == Some(actor.addr()) {
                // The supervisor has not seen that exit yet: give it time to.
                tokio::time::sleep(Duration::from_millis(5 << tries)).await;
            }
            let out = actor.call_sent(&msg)?.await;
            match out {
                Err(CallError::Remote(RemoteError::NoProcess(_))) if tries < MAX_TRIES => {
                    failed = Some(actor.addr().clone());
                }
                // `Exited` among them: the message may have had effects there.
                out => return out,
            }
        }
        unreachable!("the loop returns by its last try")
    }

    /// Calls the child, waiting through a restart if there is one.
    ///
    /// # Errors
    ///
    /// [`CallError::NotRunning`] (the child is stopped, or its supervisor ended),
    /// [`CallError::Restarting`] (too many waiting), [`CallError::Node`] (from a
    /// node: its session with the root is down), and those of
    /// [`ActorRef::call`](crate::ActorRef::call).
    pub async fn call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        self.call_with(msg, true).await
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
        timeout: Duration,
    ) -> Result<A::Reply, CallError> {
        let this = self.clone();
        runtime::run(async move {
            // The supervisor on a node gives up as well, and serves the next.
            let call = async {
                match (&this.sup, this.placed()) {
                    (Sup::Nested(nested), _) => {
                        this.call_nested(nested, msg, true, Some(timeout)).await
                    }
                    (_, Some(placed)) => this.call_placed(placed, msg, true, Some(timeout)).await,
                    (_, None) => this.call(msg).await,
                }
            };
            tokio::time::timeout(timeout, call)
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
        self.call_with(msg, false).await
    }

    /// Sends `msg` to the child's current process without waiting for an answer: it
    /// asks the supervisor where the child runs (waiting through a restart), so that
    /// a cast after a restart reaches the new incarnation. Delivery is not confirmed.
    ///
    /// # Errors
    ///
    /// [`CallError::NotRunning`], [`CallError::Restarting`] (too many waiting),
    /// [`CallError::Node`], and those of [`ActorRef::cast`](crate::ActorRef::cast).
    pub async fn cast(&self, msg: A::Msg) -> Result<(), CallError> {
        if let Sup::Nested(nested) = &self.sup {
            let send = || Delivery::Cast;
            return nested.to_child(&self.id, msg, send, true).await.map(drop);
        }
        if let Some(placed) = self.placed() {
            let payload = placed.encode(&msg)?;
            drop(msg);
            return placed
                .to_child(&self.id, payload, Delivery::Cast)
                .await
                .map(drop);
        }
        self.current(true).await?.cast(msg)
    }
}

impl SupervisorRef {
    /// A stable handle to the actor child `id`, across its restarts.
    pub fn child_ref<A: Actor>(&self, id: &str) -> SupervisedRef<A> {
        SupervisedRef::new(Sup::Here(self.clone()), id.to_string())
    }
}

/// The supervisor as it travels in this tree: see `sync::far` for its two
/// encodings.
struct SupWire<'a>(&'a Sup);

impl Serialize for SupWire<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let side = match self.0 {
            Sup::Here(sup) => match away::key_of(sup) {
                Some(key) => Side::Here(key),
                None => unreachable!("a supervisor on a node travels as `WireRef::Node`"),
            },
            Sup::Away(side) => side.clone(),
            Sup::Node(_) => unreachable!("a supervisor on a node travels as `WireRef::Node`"),
            Sup::Nested(_) => unreachable!("a nested supervisor's child's handle does not travel"),
        };
        if matches!(side, Side::Here(_))
            && crate::sync::far::way::encoding_for_node()
            && !far::encoding_far()
        {
            // In a message to an actor placed on a node, which has no export to
            // answer it there: the message is refused, as one with a lock.
            crate::sync::note_handle();
        }
        let export = || {
            let Side::Here(key) = &side else {
                unreachable!("a far handle is never exported again")
            };
            (
                key.far_key(),
                far::Obj::Resolver(away::resolver(self.0.clone(), key)),
            )
        };
        far::serialize(&side, export, s)
    }
}

/// A supervised child's handle as it travels: of a supervisor of this host, or of
/// one on a node, by the handle of the actor hosting it there.
#[derive(Serialize)]
enum WireRef<'a> {
    Tree {
        sup: SupWire<'a>,
        id: &'a str,
    },
    Node {
        hosted: &'a ActorRef<Hosted>,
        node: &'a str,
        id: &'a str,
    },
}

#[derive(Deserialize)]
enum Wire {
    Tree {
        #[serde(deserialize_with = "far::deserialize")]
        sup: Side<Key>,
        id: String,
    },
    Node {
        hosted: ActorRef<Hosted>,
        node: String,
        id: String,
    },
}

impl<A> Serialize for SupervisedRef<A> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Sup::Nested(nested) = &self.sup {
            if crate::sync::far::way::encoding_for_node() || far::encoding_far() {
                // Refused as a one-machine handle: `NotAcrossNodes`.
                crate::sync::note_handle();
            }
            // Its calls ask the parent's actor, which only this process reaches.
            return Err(serde::ser::Error::custom(format!(
                "a SupervisedRef to the child {} of the supervisor child {} works only in \
                 its parent's process",
                self.id,
                nested.id()
            )));
        }
        let Some(placed) = self.placed() else {
            return WireRef::Tree {
                sup: SupWire(&self.sup),
                id: &self.id,
            }
            .serialize(s);
        };
        // To a node, its hosting actor's handle is the root's, reached through it
        // (`Reach::ByRoot`), as any actor the root placed.
        let (hosted, node) = placed.parts();
        WireRef::Node {
            hosted,
            node,
            id: &self.id,
        }
        .serialize(s)
    }
}

impl<'de, A> Deserialize<'de> for SupervisedRef<A> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Wire::deserialize(d)? {
            Wire::Tree { sup, id } => SupervisedRef::new(Sup::Away(sup), id),
            Wire::Node { hosted, node, id } => {
                SupervisedRef::new(Sup::Node(Placed::from_parts(hosted, node)), id)
            }
        })
    }
}
