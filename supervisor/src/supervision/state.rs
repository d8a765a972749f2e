//! The supervisor's state and what it does: start, stop and restart children by the
//! decisions of `multiproc-core`, and answer the admin requests.

use std::collections::VecDeque;
use std::time::Duration;

use multiproc_core::{
    AutoShutdown, ChildKind, ChildSpec, Directive, ExitReason, Restart, RestartWindow, Shutdown,
    SupervisorFlags, plan_restart, should_restart,
};
use ractor::ActorRef as CellRef;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::hosted::{HOSTED_ENTRY, Hosted};
use super::message::Msg;
use super::placed::Placed;
use super::slot::{Slot, next_incarnation, random_unit};
use super::{AdminError, ChildCounts, ChildState, ChildStatus, SupervisorEvent, SupervisorExit};
use crate::process::Process;
use crate::runtime::error::CallError;
use crate::runtime::error::Error;

/// Calls that may wait for one child's restart before more are refused.
const MAX_WAITERS: usize = 1024;

/// `Shutdown::Infinity`, as a timeout nobody reaches.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(super) struct State {
    pub(super) flags: SupervisorFlags,
    pub(super) slots: Vec<Slot>,
    pub(super) window: RestartWindow,
    pub(super) epoch: Instant,
    pub(super) events: super::event::Hub,
    pub(super) myself: Option<CellRef<Msg>>,
    pub(super) done: watch::Sender<Option<SupervisorExit>>,
    pub(super) max_children: Option<usize>,
    /// The `supervisor` label of its metrics.
    pub(super) name: String,
}

impl State {
    pub(super) fn emit(&self, event: SupervisorEvent) {
        match &event {
            SupervisorEvent::ChildExited { reason, .. } if !reason.is_normal() => {
                tracing::warn!(supervisor = %self.name, ?event, "supervisor")
            }
            SupervisorEvent::RestartFailed { .. } | SupervisorEvent::IntensityExceeded { .. } => {
                tracing::error!(supervisor = %self.name, ?event, "supervisor")
            }
            _ => tracing::info!(supervisor = %self.name, ?event, "supervisor"),
        }
        #[cfg(feature = "metrics")]
        match &event {
            SupervisorEvent::ChildStarted { id, .. } => {
                crate::runtime::metrics::supervised_start(&self.name, id, false)
            }
            SupervisorEvent::Restarted { id, .. } => {
                crate::runtime::metrics::supervised_start(&self.name, id, true)
            }
            SupervisorEvent::IntensityExceeded { .. } => {
                crate::runtime::metrics::intensity_shutdown(&self.name)
            }
            _ => {}
        }
        self.events.send(event);
    }

    /// Fails the calls waiting for slot `i` to run again.
    pub(super) fn release_waiters(&mut self, i: usize, why: &str) {
        let id = self.slots[i].spec.id.clone();
        for waiter in self.slots[i].waiters.drain(..) {
            let _ = waiter.send(Err(CallError::NotRunning(id.clone(), why.to_string())));
        }
    }

    /// The identity of a running child; with `wait`, a restarting child's next one.
    pub(super) fn resolve(
        &mut self,
        id: &str,
        wait: bool,
        reply: oneshot::Sender<Result<multiproc_core::Identity, CallError>>,
    ) {
        let Some(i) = self.index(id) else {
            let _ = reply.send(Err(CallError::NotRunning(
                id.to_string(),
                "no child has this id".into(),
            )));
            return;
        };
        let slot = &mut self.slots[i];
        match slot.state {
            ChildState::Running => {
                let _ = reply.send(
                    slot.identity
                        .clone()
                        .ok_or_else(|| CallError::Restarting(id.to_string())),
                );
            }
            ChildState::Restarting if wait && slot.waiters.len() < MAX_WAITERS => {
                slot.waiters.push(reply)
            }
            ChildState::Restarting => {
                let _ = reply.send(Err(CallError::Restarting(id.to_string())));
            }
            ChildState::Stopped => {
                let _ = reply.send(Err(CallError::NotRunning(
                    id.to_string(),
                    "it is stopped".into(),
                )));
            }
        }
    }

    pub(super) fn index(&self, id: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.spec.id == id)
    }

    /// Starts slot `i`'s process and a task that reports its exit.
    pub(super) async fn start_slot(&mut self, i: usize, restart: bool) -> Result<(), Error> {
        let spec = &self.slots[i].spec;
        let mut process = Process::from_spec(spec)
            .supervised()
            .limits(spec.limits)
            .start_method(self.flags.start_method);
        if let Some(interval) = spec.heartbeat {
            process = process.heartbeat(interval);
        }
        let node = match &spec.placement {
            Some(placement) => {
                let node =
                    crate::remote::place::place(placement, self.slots[i].node.as_deref(), restart)?;
                process = process.on(&node);
                Some(node.name().to_string())
            }
            None => None,
        };
        process.start().await?;
        let slot = &mut self.slots[i];
        slot.node = node;
        slot.restarts += u32::from(restart);
        slot.incarnation = next_incarnation();
        slot.state = ChildState::Running;
        slot.started_at = Instant::now();
        slot.name = Some(process.name().to_string());
        slot.identity = Some(process.identity().clone());
        let (id, name, pid) = (
            slot.spec.id.clone(),
            process.name().to_string(),
            process.pid().unwrap_or(0),
        );
        let node = process.node().map(|n| n.name().to_string());
        if let (Some(me), Ok(sentinel)) = (self.myself.clone(), process.sentinel()) {
            watch_exit(me, id.clone(), slot.incarnation, sentinel);
        }
        slot.process = Some(process);
        for waiter in slot.waiters.drain(..) {
            let _ = waiter.send(Ok(slot.identity.clone().expect("set just above")));
        }
        self.emit(if restart {
            SupervisorEvent::Restarted {
                id,
                name,
                pid,
                node,
            }
        } else {
            SupervisorEvent::ChildStarted {
                id,
                name,
                pid,
                node,
            }
        });
        Ok(())
    }

    /// Stops slot `i` by its shutdown policy and waits for it.
    pub(super) async fn stop_slot(&mut self, i: usize) {
        self.release_waiters(i, "it was stopped");
        let slot = &mut self.slots[i];
        slot.incarnation = next_incarnation();
        slot.state = ChildState::Stopped;
        let Some(process) = slot.process.take() else {
            return;
        };
        let reason = match slot.spec.shutdown {
            Shutdown::BrutalKill => {
                let _ = process.kill();
                process.join().await.ok()
            }
            Shutdown::Timeout(d) => process.stop(d).await.ok(),
            Shutdown::Infinity => process.stop(FOREVER).await.ok(),
        };
        let id = slot.spec.id.clone();
        if let Some(reason) = reason {
            self.emit(SupervisorEvent::ChildExited { id, reason });
        }
    }

    /// Stops every child, last started first.
    pub(super) async fn stop_all(&mut self) {
        for i in (0..self.slots.len()).rev() {
            self.stop_slot(i).await;
        }
    }

    pub(super) fn now(&self) -> Duration {
        Instant::now().duration_since(self.epoch)
    }

    /// Counts a restart; `false` if that was one too many (the supervisor then ends).
    pub(super) async fn count_restart(&mut self) -> bool {
        match self.window.add(self.flags.intensity, self.now()) {
            Ok(()) => true,
            Err(e) => {
                self.emit(SupervisorEvent::IntensityExceeded {
                    restarts: e.restarts,
                    max: e.max,
                    within: e.within,
                });
                self.finish(SupervisorExit::IntensityExceeded).await;
                false
            }
        }
    }

    pub(super) async fn finish(&mut self, exit: SupervisorExit) {
        for i in 0..self.slots.len() {
            self.release_waiters(i, "its supervisor ended");
        }
        self.stop_all().await;
        self.emit(SupervisorEvent::ShutDown {
            reason: exit.clone(),
        });
        self.done.send_replace(Some(exit));
        if let Some(me) = &self.myself {
            me.stop(None);
        }
    }

    pub(super) fn schedule(&self, due: Vec<(String, u64)>, delay: Duration, ran_for: Duration) {
        let Some(me) = self.myself.clone() else {
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.cast(Msg::RestartDue { due, ran_for });
        });
    }

    pub(super) async fn on_exit(&mut self, id: String, incarnation: u64, reason: ExitReason) {
        let Some(i) = self.index(&id) else { return };
        if self.slots[i].incarnation != incarnation || self.slots[i].state != ChildState::Running {
            return;
        }
        let ran_for = self.slots[i].started_at.elapsed();
        self.slots[i].process = None;
        self.slots[i].state = ChildState::Stopped;
        self.slots[i].last_exit = Some(reason.clone());
        self.emit(SupervisorEvent::ChildExited {
            id: id.clone(),
            reason: reason.clone(),
        });
        let spec = &self.slots[i].spec;
        if crate::runtime::children::is_exiting() || crate::runtime::stop::stop_requested() {
            // The process is ending (or asked to): its children are going for good.
            return;
        }
        let directive =
            spec.decider
                .decide(&reason)
                .unwrap_or(if should_restart(spec.restart, &reason) {
                    Directive::Restart
                } else {
                    Directive::Stop
                });
        if directive == Directive::Escalate {
            self.finish(SupervisorExit::Escalated { id, reason }).await;
            return;
        }
        // A temporary child is never restarted, whatever its decider says.
        if directive == Directive::Stop || spec.restart == Restart::Temporary {
            let significant = spec.significant;
            self.release_waiters(i, "it ended and is not restarted");
            if self.slots[i].spec.restart == Restart::Temporary {
                self.slots.remove(i);
            }
            if significant && self.auto_shutdown_due() {
                self.finish(SupervisorExit::AutoShutdown).await;
            }
            return;
        }
        if !self.count_restart().await {
            return;
        }
        let restarts: Vec<Restart> = self.slots.iter().map(|s| s.spec.restart).collect();
        let plan = plan_restart(self.flags.strategy, &restarts, i);
        for &j in &plan.stop {
            self.stop_slot(j).await;
        }
        let ids: Vec<String> = plan
            .restart
            .iter()
            .map(|&j| self.slots[j].spec.id.clone())
            .collect();
        let mut dropped: Vec<usize> = plan.drop;
        dropped.sort_unstable_by(|a, b| b.cmp(a));
        for j in dropped {
            self.slots.remove(j);
        }
        // Without a delay, the first attempt runs now rather than through a timer and
        // the mailbox; a failed attempt is still retried through the mailbox.
        match self.mark_restarting(ids, ran_for) {
            Some((due, delay)) if delay.is_zero() => self.on_restart_due(due, ran_for).await,
            Some((due, delay)) => self.schedule(due, delay, ran_for),
            None => {}
        }
    }

    /// Marks `ids` as restarting and schedules their start after the first one's
    /// backoff delay.
    pub(super) fn restart_later(&mut self, ids: Vec<String>, ran_for: Duration) {
        if let Some((due, delay)) = self.mark_restarting(ids, ran_for) {
            self.schedule(due, delay, ran_for);
        }
    }

    /// Marks `ids` as restarting; returns them with their incarnations, and the delay
    /// before their restart.
    pub(super) fn mark_restarting(
        &mut self,
        ids: Vec<String>,
        ran_for: Duration,
    ) -> Option<(Vec<(String, u64)>, Duration)> {
        let first = ids.first().and_then(|id| self.index(id))?;
        let delay =
            self.slots[first]
                .backoff
                .next_delay(&self.flags.backoff, ran_for, random_unit());
        let mut due = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(j) = self.index(&id) {
                self.slots[j].state = ChildState::Restarting;
                self.slots[j].incarnation = next_incarnation();
                due.push((id.clone(), self.slots[j].incarnation));
                self.emit(SupervisorEvent::Restarting { id, delay });
            }
        }
        Some((due, delay))
    }

    pub(super) async fn on_restart_due(&mut self, due: Vec<(String, u64)>, ran_for: Duration) {
        // A child stopped, restarted or deleted meanwhile has another incarnation.
        let mut pending: VecDeque<String> = due
            .into_iter()
            .filter(|(id, inc)| {
                self.index(id).is_some_and(|i| {
                    self.slots[i].incarnation == *inc
                        && self.slots[i].state == ChildState::Restarting
                })
            })
            .map(|(id, _)| id)
            .collect();
        while let Some(id) = pending.pop_front() {
            let Some(i) = self.index(&id) else { continue };
            if let Err(e) = self.start_slot(i, true).await {
                self.emit(SupervisorEvent::RestartFailed {
                    id: id.clone(),
                    error: e.to_string(),
                });
                if !self.count_restart().await {
                    return;
                }
                pending.push_front(id);
                self.restart_later(pending.into(), ran_for);
                return;
            }
        }
    }

    pub(super) fn auto_shutdown_due(&self) -> bool {
        match self.flags.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => !self
                .slots
                .iter()
                .any(|s| s.spec.significant && s.state != ChildState::Stopped),
        }
    }

    pub(super) fn which(&self) -> Vec<ChildStatus> {
        self.slots
            .iter()
            .map(|s| ChildStatus {
                id: s.spec.id.clone(),
                name: s.name.clone(),
                identity: s.identity.clone(),
                pid: s
                    .process
                    .as_ref()
                    .and_then(Process::pid)
                    .filter(|_| s.state == ChildState::Running),
                state: s.state,
                kind: s.spec.kind,
                node: s.node.clone(),
                restarts: s.restarts,
                last_exit: s.last_exit.clone(),
            })
            .collect()
    }

    pub(super) fn count(&self) -> ChildCounts {
        ChildCounts {
            specs: self.slots.len(),
            active: self
                .slots
                .iter()
                .filter(|s| s.state == ChildState::Running)
                .count(),
            supervisors: self
                .slots
                .iter()
                .filter(|s| s.spec.kind == ChildKind::Supervisor)
                .count(),
            workers: self
                .slots
                .iter()
                .filter(|s| s.spec.kind == ChildKind::Worker)
                .count(),
        }
    }

    pub(super) async fn admin_start(&mut self, spec: ChildSpec) -> Result<(), AdminError> {
        if let Some(i) = self.index(&spec.id) {
            return Err(match self.slots[i].state {
                ChildState::Running => AdminError::AlreadyStarted(spec.id),
                _ => AdminError::AlreadyPresent(spec.id),
            });
        }
        if let Some(max) = self.max_children {
            let live = self
                .slots
                .iter()
                .filter(|s| s.state != ChildState::Stopped)
                .count();
            if live >= max {
                return Err(AdminError::MaxChildren(max));
            }
        }
        let mut all: Vec<ChildSpec> = self.slots.iter().map(|s| s.spec.clone()).collect();
        all.push(spec.clone());
        self.flags.validate(&all)?;
        self.slots.push(Slot::new(spec));
        let i = self.slots.len() - 1;
        if let Err(source) = self.start_slot(i, false).await {
            let id = self.slots.remove(i).spec.id;
            return Err(AdminError::Start { id, source });
        }
        Ok(())
    }

    pub(super) async fn admin_terminate(&mut self, id: String) -> Result<(), AdminError> {
        let i = self.index(&id).ok_or(AdminError::NotFound(id))?;
        self.stop_slot(i).await;
        if self.slots[i].spec.restart == Restart::Temporary {
            self.slots.remove(i);
        }
        Ok(())
    }

    /// The slot of a stopped child, or OTP's error for one that is not.
    pub(super) fn stopped(&self, id: &str) -> Result<usize, AdminError> {
        let i = self
            .index(id)
            .ok_or_else(|| AdminError::NotFound(id.to_string()))?;
        match self.slots[i].state {
            ChildState::Running => Err(AdminError::Running(id.to_string())),
            ChildState::Restarting => Err(AdminError::Restarting(id.to_string())),
            ChildState::Stopped => Ok(i),
        }
    }

    pub(super) async fn admin_restart(&mut self, id: String) -> Result<(), AdminError> {
        let i = self.stopped(&id)?;
        self.start_slot(i, true)
            .await
            .map_err(|source| AdminError::Start { id, source })
    }

    pub(super) fn admin_delete(&mut self, id: String) -> Result<(), AdminError> {
        let i = self.stopped(&id)?;
        self.slots.remove(i);
        Ok(())
    }

    /// The running incarnation of the supervisor child `id` on its node, as a
    /// `ChildSupervisorRef` calls it.
    pub(super) fn hosted(&self, id: String) -> Result<Placed, AdminError> {
        let not_running = |id: String, why: &str| AdminError::NotRunning {
            id,
            why: why.to_string(),
        };
        let Some(i) = self.index(&id) else {
            return Err(not_running(id, "no child has this id"));
        };
        let slot = &self.slots[i];
        if slot.spec.start.entry != HOSTED_ENTRY {
            return Err(AdminError::NotHosted(id));
        }
        match (slot.state, &slot.process, &slot.node) {
            (ChildState::Running, Some(process), Some(node)) => {
                Ok(Placed::of(process.actor_ref::<Hosted>(), node.clone()))
            }
            // A running child has its process, and `into_child` placed it: only a
            // restarting one lacks them.
            (ChildState::Running | ChildState::Restarting, ..) => Err(AdminError::Restarting(id)),
            (ChildState::Stopped, ..) => Err(not_running(id, "it is stopped")),
        }
    }
}

impl State {
    /// What the spec of the supervisor child `id` keeps here, whatever its state: its
    /// events' way back (`nested.rs`).
    pub(super) fn nest(&self, id: String) -> Result<multiproc_core::Attached, AdminError> {
        let Some(i) = self.index(&id) else {
            return Err(AdminError::NotRunning {
                id,
                why: "no child has this id".into(),
            });
        };
        let spec = &self.slots[i].spec;
        if spec.start.entry != HOSTED_ENTRY {
            return Err(AdminError::NotHosted(id));
        }
        Ok(spec.far.clone())
    }
}

pub(super) fn watch_exit(
    me: CellRef<Msg>,
    id: String,
    incarnation: u64,
    sentinel: crate::process::Sentinel,
) {
    tokio::spawn(async move {
        let reason = sentinel.wait().await;
        let _ = me.cast(Msg::Exited {
            id,
            incarnation,
            reason,
        });
    });
}
