//! The pool's workers as the actor starts and ends them: where the next one goes (a
//! node or this host), its launch, and a kill.

use std::sync::Arc;

use multiproc_core::ExitReason;
use multiproc_core::scheduler::WorkerId;

use super::{PoolActor, WorkerSlot};
use crate::node::Node;
use crate::pool::launch::launch;
use crate::pool::place::{self, Place};
use crate::pool::remote;
use crate::pool::report::{Event, Reporter};

impl PoolActor {
    pub(super) fn kill(&mut self, w: WorkerId) {
        if let Some(slot) = self.workers.get_mut(&w) {
            match &slot.started {
                Some(s) => {
                    let _ = s.process.kill();
                }
                None => slot.kill_on_start = true,
            }
        }
    }

    pub(super) fn note_lost(&mut self, reason: &ExitReason) {
        if let ExitReason::NodeDown { node } = reason {
            self.lost_nodes.insert(node.clone());
        }
    }

    pub(super) fn spawn(&mut self, w: WorkerId) {
        let node = match self.place() {
            Ok(node) => Some(node),
            Err(e) => {
                let reason = match e {
                    multiproc_core::NodeError::NodeDown { node, .. } => {
                        ExitReason::NodeDown { node }
                    }
                    e => ExitReason::Failed {
                        message: e.to_string(),
                    },
                };
                let _ = self.events.send(Event::Started(w, Err((reason, None))));
                None
            }
        };
        let name = match &node {
            Some(Some(n)) => remote::launch_on(
                w,
                n.clone(),
                Arc::clone(&self.launch),
                self.events.clone(),
                Reporter::new(self.me.clone()),
            ),
            Some(None) => launch(
                w,
                Arc::clone(&self.launch),
                self.events.clone(),
                Reporter::new(self.me.clone()),
                Arc::clone(&self.shared),
            ),
            None => format!("worker {w}"),
        };
        self.workers.insert(
            w,
            WorkerSlot {
                name,
                node: node.flatten().map(|n| n.name().to_string()),
                started: None,
                ready: false,
                kill_on_start: false,
                tasks_done: 0,
            },
        );
    }

    /// Where the next worker goes: `Some(node)`, or `None` for this host (see
    /// `place.rs`); an error when every place is a node that is down.
    fn place(&self) -> Result<Option<Node>, multiproc_core::NodeError> {
        let places = &self.launch.places;
        if let [only] = places.as_slice()
            && only.node.is_none()
        {
            return Ok(None);
        }
        let mut live = vec![0; places.len()];
        for (w, slot) in &self.workers {
            if !self.sched.has_worker(*w) {
                continue;
            }
            if let Some(i) = places.iter().position(|p| p.node == slot.node) {
                live[i] += 1;
            }
        }
        let up = |p: &Place| match &p.node {
            None => true,
            Some(name) => {
                !self.lost_nodes.contains(name)
                    && crate::remote::client::connected(name).is_some_and(|n| n.is_up())
            }
        };
        match place::choose(places, &live, up) {
            Some(i) => match &places[i].node {
                None => Ok(None),
                Some(name) => crate::remote::client::connected(name)
                    .map(Some)
                    .ok_or_else(|| multiproc_core::NodeError::NodeDown {
                        node: name.clone(),
                        why: "not connected from this process".into(),
                    }),
            },
            None => Err(multiproc_core::NodeError::NodeDown {
                node: places
                    .iter()
                    .filter_map(|p| p.node.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                why: "no live node and no local workers to place a worker on".into(),
            }),
        }
    }
}
