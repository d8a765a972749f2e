//! `DynamicSupervisor`: one child spec, many children started on demand.

use std::sync::atomic::{AtomicU64, Ordering};

use multiproc_core::{ChildSpec, SupervisorFlags, codec};

use super::{AdminError, Supervisor, SupervisorRef};
use crate::node::Node;
use crate::runtime::error::Error;

/// One child spec, many children started on demand with their own arguments (Elixir's
/// `DynamicSupervisor`): a `OneForOne` supervisor whose children are made from a
/// template.
#[derive(Debug)]
pub struct DynamicSupervisor {
    sup: SupervisorRef,
    template: ChildSpec,
    next: AtomicU64,
}

impl DynamicSupervisor {
    /// Starts a dynamic supervisor with no children. The strategy is `OneForOne`
    /// whatever `flags` say; `max_children` bounds the children running or restarting.
    ///
    /// # Errors
    ///
    /// [`AdminError::Invalid`] for an invalid template or flags.
    pub async fn start(
        flags: SupervisorFlags,
        template: ChildSpec,
        max_children: Option<usize>,
    ) -> Result<DynamicSupervisor, AdminError> {
        DynamicSupervisor::start_in(None, flags, template, max_children).await
    }

    /// Starts a dynamic supervisor with no children whose own actor runs on `node`
    /// (see [`Supervisor::on`]): its children run there, as children of the process
    /// that hosts it, and are restarted there by it.
    ///
    /// # Errors
    ///
    /// As [`start`](DynamicSupervisor::start); [`AdminError::Start`] with
    /// [`NodeError::NotAcrossNodes`](multiproc_core::NodeError::NotAcrossNodes) for a
    /// template that cannot go there (placed itself, or holding a one-machine
    /// object of this host), and with the node's error when the node is down or
    /// refuses.
    pub async fn start_on(
        node: &Node,
        flags: SupervisorFlags,
        template: ChildSpec,
        max_children: Option<usize>,
    ) -> Result<DynamicSupervisor, AdminError> {
        DynamicSupervisor::start_in(Some(node), flags, template, max_children).await
    }

    async fn start_in(
        node: Option<&Node>,
        flags: SupervisorFlags,
        template: ChildSpec,
        max_children: Option<usize>,
    ) -> Result<DynamicSupervisor, AdminError> {
        let flags = SupervisorFlags {
            strategy: multiproc_core::Strategy::OneForOne,
            ..flags
        };
        flags.validate(std::slice::from_ref(&template))?;
        let mut sup = Supervisor::new(flags);
        if let Some(max) = max_children {
            sup = sup.max_children(max);
        }
        if let Some(node) = node {
            super::placed::travels(template.clone(), node.name())?;
            sup = sup.on(node);
        }
        Ok(DynamicSupervisor {
            sup: sup.start().await?,
            template,
            next: AtomicU64::new(1),
        })
    }

    /// Starts a child from the template with `args` in place of the template's (they
    /// must be the arguments its function or actor takes); returns its id,
    /// `<template id>-<n>`.
    ///
    /// # Errors
    ///
    /// [`AdminError::MaxChildren`], [`AdminError::Start`], [`AdminError::Gone`], or
    /// [`AdminError::Start`] with [`Error::Args`] when `args` do not encode.
    pub async fn start_child<T: serde::Serialize>(&self, args: &T) -> Result<String, AdminError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.template.id);
        // An actor's handle counts too (see `child_spec`).
        let ((encoded, handles), refs) =
            crate::sync::far::farable_in(|| crate::sync::handles_in(|| codec::encode(args)));
        let handles = handles || refs;
        let encoded = encoded.map_err(|source| AdminError::Start {
            id: id.clone(),
            source: Error::Args {
                name: id.clone(),
                source,
            },
        })?;
        let mut spec = self.template.clone();
        spec.far = if handles {
            crate::process::FarSpec::encode(args)
        } else {
            multiproc_core::Attached::default()
        };
        // A template placed on a node: its children take this host's queues, locks
        // and events there as far handles, not its one-machine objects.
        let one_machine = crate::process::FarSpec::of(&spec).and_then(|f| f.one_machine());
        if let (Some(placement), Some(what)) = (&self.template.placement, one_machine) {
            return Err(AdminError::Start {
                id: id.clone(),
                source: multiproc_core::NodeError::NotAcrossNodes {
                    what: format!(
                        "{what} handle among the arguments of {id} (a queue, lock, \
                         semaphore, Condition, Event or Barrier would work)"
                    ),
                    node: placement.node.clone(),
                }
                .into(),
            });
        }
        spec.id = id.clone();
        spec.start.args = encoded;
        spec.start.holds_handles = handles;
        self.sup.start_child(spec).await?;
        Ok(id)
    }

    /// Stops a child and forgets it.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`], [`AdminError::Gone`].
    pub async fn terminate_child(&self, id: &str) -> Result<(), AdminError> {
        self.sup.terminate_child(id).await?;
        match self.sup.delete_child(id).await {
            Ok(()) | Err(AdminError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The supervisor underneath: events, `which_children`, `count_children`,
    /// `shutdown`, `join`.
    pub fn supervisor(&self) -> &SupervisorRef {
        &self.sup
    }
}
