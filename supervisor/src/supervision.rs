//! `Supervisor`: OTP's supervisor over OS processes, as one actor in the supervising
//! process.
//!
//! The decisions (restart or not, which siblings, how many restarts are too many, how
//! long to wait) are pure functions of `multiproc-core`; this actor only acts on them:
//! it starts and stops processes, watches them exit, keeps the children's states and
//! reports every step as a [`SupervisorEvent`].
//!
//! # Invariants
//!
//! - Children start in spec order, each answering its handshake before the next
//!   starts; they stop in reverse order.
//! - Each child slot has an incarnation number, bumped whenever the supervisor stops,
//!   replaces or forgets its process: an exit or a due restart that names an older
//!   incarnation is stale and ignored.
//! - A restart that fails is retried by a message to the actor itself, after a
//!   backoff, so requests (a shutdown among them) are handled in between.
//!
//! # Layout
//!
//! - [`Supervisor`] (`supervisor.rs`) sets a supervisor up and starts it;
//!   [`SupervisorRef`] (`handle.rs`) is its admin API; [`SupervisedRef`]
//!   (`child_ref.rs`) follows one actor child across restarts;
//!   [`DynamicSupervisor`] (`dynamic.rs`) makes children from one template.
//! - `message.rs` is what those handles send; `actor.rs` is the one actor that
//!   receives it; `state.rs` is the state it owns and what it does, one `slot.rs`
//!   per child.
//! - `child.rs` makes child specs; `event.rs`, `status.rs` and `error.rs` are what
//!   the supervisor reports.
//! - A supervisor on a node ([`Supervisor::on`]): `hosted.rs` is the built-in actor
//!   that runs it in a process placed there; `placed.rs` is this side, the calls of
//!   its [`SupervisorRef`] and the task that brings its events back; `relay.rs`
//!   forwards a [`SupervisedRef`]'s messages to a child there.
//! - A supervisor on a node as the child of one here ([`Supervisor::into_child`]):
//!   `nested.rs` makes its spec (the hosting process, placed) and
//!   [`ChildSupervisorRef`], the parent's handle that follows its restarts.
//!
//! # Concurrency
//!
//! One actor owns all of a supervisor's state; handles only send it messages and await
//! the replies (OTP's `gen_server`). The tasks it spawns (one exit watcher per child,
//! one timer per pending restart) own nothing: they send it a message too, tagged with
//! the child's incarnation, so the actor alone decides whether it is still current.

mod actor;
mod away;
mod child;
mod child_ref;
mod dynamic;
mod error;
mod event;
mod handle;
mod hosted;
mod message;
mod nested;
mod placed;
mod relay;
mod slot;
mod state;
mod status;
mod supervisor;

pub use child::{actor_child, function_child};
pub use child_ref::SupervisedRef;
pub use dynamic::DynamicSupervisor;
pub use error::AdminError;
pub use event::{Events, SupervisorEvent, SupervisorExit};
pub use handle::SupervisorRef;
pub(crate) use handle::running;
pub use nested::ChildSupervisorRef;
pub use status::{ChildCounts, ChildState, ChildStatus};
pub use supervisor::Supervisor;
