//! Starting a process: here, with a Hello and a spawn or fork request that its
//! handshake answers, or on a node, with its arguments for there and the handles
//! among them exported.

use std::os::unix::ffi::OsStringExt;

use multiproc_core::{EntryKind, Hello, NodeError};
use serde_bytes::ByteBuf;

use super::plan::Plan;
use super::{Process, State};
use crate::remote::client::Node;
use crate::remote::placed;
use crate::remote::wire::Settings;
use crate::runtime;
use crate::runtime::children::start_child;
use crate::runtime::error::Error;
use crate::runtime::{bootstrap, current, spawn};

impl Process {
    /// Starts the child and waits until it has answered the handshake: for an actor,
    /// until its `start` has succeeded.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`], [`Error::Closed`], [`Error::Unregistered`] (with the
    /// macro to add), [`Error::InitNotCalled`] (the child's `main`, or the
    /// forkserver's, skipped `init()`), [`Error::Bootstrap`] (version or build mismatch),
    /// [`Error::NoHandshake`] / [`Error::HandshakeTimeout`] (the child never reached
    /// `init()`), [`Error::DaemonWithChildren`], [`Error::Exhausted`] when the system
    /// has no room for the process, its socket or a thread (the error names the limit:
    /// a cgroup's `pids.max`, `RLIMIT_NOFILE`, …), [`Error::Os`].
    pub async fn start(&mut self) -> Result<(), Error> {
        self.start_with(Place::Task).await
    }

    /// As [`start`](Self::start), run where it is polled: for a caller that polls it
    /// to its end, as the blocking API does. Spawned as a task, the start costs a
    /// wake-up of a runtime worker and one back, a tenth of a forkserver start.
    pub(crate) async fn start_in_place(&mut self) -> Result<(), Error> {
        self.start_with(Place::Here).await
    }

    async fn start_with(&mut self, place: Place) -> Result<(), Error> {
        match self.state {
            State::Created => {}
            State::Started(_) | State::Remote(_) => {
                return Err(Error::AlreadyStarted(self.name.clone()));
            }
            State::Closed => return Err(Error::Closed(self.name.clone())),
        }
        let Some(plan) = self.plan.take() else {
            return Err(Error::AlreadyStarted(self.name.clone()));
        };
        if let Some(node) = self.node.clone() {
            return self.start_on(&node, plan?).await;
        }
        bootstrap::check_init();
        if current::me().daemon {
            return Err(Error::DaemonWithChildren);
        }
        let plan = plan?;
        // Room for the rest of the Hello (names, identities) around the arguments.
        const HELLO_OVERHEAD: usize = 4096;
        let max = multiproc_transport::MAX_FRAME_LEN - HELLO_OVERHEAD;
        if plan.args.len() > max {
            return Err(Error::ArgsTooLarge {
                name: self.name.clone(),
                len: plan.args.len(),
                max,
            });
        }
        let me = current::me();
        let hello = Hello {
            identity: self.identity.clone(),
            name: self.name.clone(),
            parent_name: me.name.clone(),
            parent_identity: me.identity.clone(),
            daemon: self.daemon,
            kind: plan.entry.kind,
            entry: plan.entry.name.to_string(),
            args: plan.args,
            fds: plan.fds.len() as u32,
            log_level: crate::runtime::logging::forward_level(),
            limits: self.limits,
            heartbeat: self.heartbeat,
            // The spawn makes the link's rings.
            rings: None,
        };
        let request = spawn::Request {
            name: self.name.clone(),
            hello,
            fds: plan.fds,
            env: std::mem::take(&mut self.env),
            capture: self.capture,
            handshake_timeout: self.handshake_timeout,
            daemon: self.daemon,
            versions: self.versions,
            supervised: self.supervised,
            method: self.method,
        };
        runtime::ensure()?;
        // Polled where it runs, the start has this thread to itself: it reads the
        // child's answer itself (see `start_child`).
        let here = place == Place::Here;
        let started = async move {
            let child = start_child(request, here).await?;
            // Once a child exists, the root stops its tree on a signal and this process
            // finishes its children at exit; in the same task, so a dropped `start` does
            // not leave a child without them.
            crate::runtime::signals::install_root_handlers();
            crate::runtime::children::register_exit_handler();
            Ok::<_, Error>(child)
        };
        let child = match place {
            Place::Here => started.await?,
            Place::Task => runtime::run(started).await?,
        };
        self.state = State::Started(child);
        Ok(())
    }

    async fn start_on(&mut self, node: &Node, plan: Plan) -> Result<(), Error> {
        if !plan.fds.is_empty() {
            return Err(NodeError::NotAcrossNodes {
                what: format!("a Connection or fd among the arguments of {}", self.name),
                node: node.name().to_string(),
            }
            .into());
        }
        if self.capture {
            return Err(NodeError::NotAcrossNodes {
                what: format!(
                    "the captured output of {}: a placed process writes to its node's",
                    self.name
                ),
                node: node.name().to_string(),
            }
            .into());
        }
        if plan.spec_handles {
            return Err(NodeError::NotAcrossNodes {
                what: format!(
                    "a handle to an object of this host among the arguments of {}, a \
                     supervised child whose spec was made in another process (its far \
                     encoding stays with the process that made it)",
                    self.name
                ),
                node: node.name().to_string(),
            }
            .into());
        }
        let (args, objs, one_machine, named) = match plan.far {
            Some(far) => {
                // The handles' local encoding lent one credit each to their hosts
                // (see `sync::refs`); those bytes never leave, so take them back
                // (once for a spec's, which every restart starts again).
                if far.reclaim_now() {
                    crate::sync::far::reclaim(&far.objs);
                }
                (far.args, far.objs, far.one_machine, far.named)
            }
            None => (plan.args, Vec::new(), plan.one_machine, String::new()),
        };
        if one_machine {
            let what = if named.is_empty() {
                "a Value, Array or SharedMemory handle, or a SupervisedRef from a ChildSupervisorRef,".to_string()
            } else {
                format!("{named} handle")
            };
            return Err(NodeError::NotAcrossNodes {
                what: format!(
                    "{what} among the arguments of {} (a queue, lock, semaphore, \
                     Condition, Event or Barrier would work)",
                    self.name
                ),
                node: node.name().to_string(),
            }
            .into());
        }
        let start = multiproc_core::StartSpec {
            kind: plan.entry.kind,
            entry: plan.entry.name.to_string(),
            args,
            holds_handles: false,
        };
        let exported = crate::sync::far::export(objs, node.inner.token);
        let settings = Settings {
            env: std::mem::take(&mut self.env)
                .into_iter()
                .map(|(k, v)| (ByteBuf::from(k.into_vec()), ByteBuf::from(v.into_vec())))
                .collect(),
            limits: self.limits,
            heartbeat: self.heartbeat,
            method: self.method,
            handshake_timeout: self.handshake_timeout,
        };
        let ending = if self.daemon || self.supervised || plan.entry.kind == EntryKind::Actor {
            placed::Ending::Stop
        } else {
            placed::Ending::Join
        };
        let child = placed::start(
            node,
            &self.identity,
            self.name.clone(),
            start,
            self.daemon,
            ending,
            settings,
        )
        .await?;
        // The exit finishes it as it finishes a local child.
        crate::runtime::children::register_exit_handler();
        exported.bind(child.pid, child.exit.clone());
        self.state = State::Remote(child);
        Ok(())
    }
}

/// Where a start runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In a task of its own, which a dropped caller cannot cut short.
    Task,
    /// Where it is polled, by a caller that polls it to its end.
    Here,
}
