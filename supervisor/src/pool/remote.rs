//! A pool worker on a node: an actor process placed there, driven over the node's
//! remote call path. Each chunk goes out as one actor call carrying the chunk's `RUN`
//! frame and comes back as its `DONE` frame, the same frames a local worker reads from
//! its rings, so the scheduler, the chunks and their decoding are the same for both.
//!
//! A node has no rings or socket shared with the pool: everything rides the node's
//! `ractor_cluster` session, whose frames stop at 16 MiB. The pool cuts chunks to
//! [`MAX_NODE_FRAME_LEN`] when it has nodes, leaving room for the envelopes around them.

use std::sync::Arc;
use std::time::Duration;

use multiproc_core::scheduler::WorkerId;
use multiproc_core::{EntryKind, ExitReason};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::mpsc;

use super::launch::Launch;
use super::report::{Event, Outbox, Reporter, Started};
use super::wire::{self, EXIT, ItemFailure, READY, RUN, SERDE};
use super::worker::{done_head, run_chunk, run_initializer};
use crate::node::Node;
use crate::process::Process;
use crate::process::actor::{Actor, BoxError};
use crate::runtime;
use crate::runtime::panic::quiet_panics;
use crate::runtime::registry::{self, Entry};

/// The largest frame between a pool and its workers when the pool has nodes, either
/// way: `ractor_cluster` refuses a session frame over 16 MiB, and a chunk travels
/// inside a request that wraps it. A chunk is cut to fit; one item over it is
/// [`PoolError::TooLarge`](super::PoolError::TooLarge) naming this limit.
pub const MAX_NODE_FRAME_LEN: usize = 15 << 20;

/// How long a node worker told to exit (the pool closed, or retired it) may take
/// before it is killed: it exits between chunks, so only a stuck one takes this.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The worker actor, hosted by a process on a node.
pub(crate) struct NodeWorker {
    max_frame_len: usize,
}

/// What a node worker is started with: the pool's initializer and frame limit.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct NodeSetup {
    init: Option<(String, Vec<u8>)>,
    max_frame_len: usize,
}

pub(crate) const NODE_WORKER_ENTRY: &str = "multiproc::pool::node_worker";

// linkme places the entry in a link section; that is all the unsafety there is.
#[allow(unsafe_code)]
#[linkme::distributed_slice(crate::runtime::registry::ENTRIES)]
static NODE_WORKER: Entry = Entry {
    name: NODE_WORKER_ENTRY,
    kind: EntryKind::Actor,
    type_id: || std::any::TypeId::of::<NodeWorker>(),
    run: crate::process::actor::run_actor::<NodeWorker>,
    task: super::not_a_task,
    slab: super::not_a_task,
    pod: registry::no_pod,
};

impl Actor for NodeWorker {
    type Args = NodeSetup;
    type Msg = ByteBuf;
    type Reply = ByteBuf;

    async fn start(setup: NodeSetup) -> Result<Self, BoxError> {
        if let Some((name, args)) = setup.init {
            // A task of the user's may block: off the runtime's worker, which serves
            // the process's link.
            tokio::task::spawn_blocking(move || run_initializer(&name, args))
                .await
                .map_err(|e| e.to_string())??;
        }
        quiet_panics(true);
        Ok(NodeWorker {
            max_frame_len: setup.max_frame_len,
        })
    }

    /// Runs a `RUN` frame's chunk; its `DONE` frame, or an empty reply for a frame
    /// that is not a chunk (the pool kills a worker that answers garbage).
    async fn handle(&mut self, frame: ByteBuf) -> ByteBuf {
        let max = self.max_frame_len;
        let answer = tokio::task::spawn_blocking(move || answer(&frame, max)).await;
        ByteBuf::from(answer.unwrap_or_default())
    }
}

/// A chunk's `DONE` frame body (no length prefix, as the pool's reader hands frames
/// on), for a `RUN` frame body.
fn answer(body: &[u8], max: usize) -> Vec<u8> {
    let Ok((header, args)) = wire::split(body) else {
        return Vec::new();
    };
    if header.tag != RUN {
        return Vec::new();
    }
    let mut results = Vec::new();
    let mut failures: Vec<(u32, ItemFailure)> = Vec::new();
    // A node's worker logs to its node's root, which knows nothing of this root's
    // spans: its task carries none.
    let _ = run_chunk(&header, args, None, &mut results, &mut failures);
    let mut head = Vec::new();
    let with_results = match done_head(&mut head, &header, &failures, &results, max, 0) {
        Ok(w) => w,
        Err(_) => return Vec::new(),
    };
    // Under this limit the length prefix is always the short one, 4 bytes.
    let mut out = head.split_off(4);
    if with_results {
        out.extend_from_slice(&results);
    }
    out
}

/// Starts worker `w` on `node` in the background and returns its name, as
/// `launch::launch` does for a local one: its task starts it, passes its chunks and
/// answers, and reports its exit after its last answer.
pub(super) fn launch_on(
    w: WorkerId,
    node: Node,
    launch: Arc<Launch>,
    events: mpsc::UnboundedSender<Event>,
    core: Reporter,
) -> String {
    let setup = NodeSetup {
        init: launch.init.clone(),
        max_frame_len: launch.max_frame_len,
    };
    let entry = registry::by_name(NODE_WORKER_ENTRY).expect("the node worker is registered");
    let process = Process::with_entry(entry, &setup);
    let name = process.identity().default_name(&launch.prefix);
    let mut process = process.named(name.clone()).on(&node);
    let node_name = node.name().to_string();
    runtime::handle().spawn(async move {
        if let Err(e) = process.start().await {
            let reason = match &e {
                crate::runtime::error::Error::Node(multiproc_core::NodeError::NodeDown {
                    node,
                    ..
                }) => ExitReason::NodeDown { node: node.clone() },
                _ => ExitReason::Failed {
                    message: e.to_string(),
                },
            };
            let _ = events.send(Event::Started(w, Err((reason, None))));
            return;
        }
        let worker = process.actor_ref::<NodeWorker>();
        let process = Arc::new(process);
        let (tx, mut rx) = mpsc::unbounded_channel::<Arc<Vec<u8>>>();
        let started = Started {
            process: Arc::clone(&process),
            pid: process.pid().unwrap_or(0),
            node: Some(node_name),
            to_worker: Outbox::Node(tx),
        };
        let ready = wire::finish(wire::start(READY, 0, "", 0, SERDE), usize::MAX)
            .expect("no limit")
            .split_off(4);
        if core.deliver(Event::Started(w, Ok(started))).is_err()
            || core.deliver(Event::Frames(w, vec![ready])).is_err()
        {
            let _ = process.kill();
        }
        let reason = {
            let exit = process.join();
            tokio::pin!(exit);
            loop {
                tokio::select! {
                    biased;
                    frame = rx.recv() => {
                        let Some(frame) = frame else {
                            // The pool is gone: so is what the worker does for it.
                            let _ = process.kill();
                            break (&mut exit).await;
                        };
                        // Under the node frame limit the length prefix is 4 bytes.
                        let body = &frame[4..];
                        match wire::split(body) {
                            Ok((h, _)) if h.tag == EXIT => {
                                break process.stop(EXIT_TIMEOUT).await;
                            }
                            _ => {}
                        }
                        // A failed call (the process died, the node went down) is seen as
                        // the process's exit, which the next turn takes.
                        if let Ok(done) = worker.call(ByteBuf::from(body.to_vec())).await
                            && core.deliver(Event::Frames(w, vec![done.into_vec()])).is_err()
                        {
                            let _ = process.kill();
                        }
                    }
                    reason = &mut exit => break reason,
                }
            }
        };
        let reason = reason.unwrap_or(ExitReason::Killed);
        drop(process);
        let _ = events.send(Event::Exited(w, reason));
    });
    name
}
