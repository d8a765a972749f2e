//! What a process runs: its registered entry and its arguments, encoded when the
//! `Process` is made, for this host and, when they hold handles that work there,
//! for a node as well (which one goes is known at `start`, after `on`).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use multiproc_core::{Attached, ChildSpec, codec};
use serde::Serialize;

use crate::runtime::error::Error;
use crate::runtime::registry::{self, Entry};
use crate::sync::far::{self, FarKey, Obj};

/// A registered entry and its encoded arguments.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) entry: &'static Entry,
    pub(super) args: Vec<u8>,
    pub(super) fds: Vec<OwnedFd>,
    /// The arguments hold a handle to a one-machine object.
    pub(super) one_machine: bool,
    /// The arguments, encoded by a supervisor's child spec for this host, hold
    /// handles, and the spec keeps no far encoding (it was decoded here from
    /// another process): they cannot go to a node.
    pub(super) spec_handles: bool,
    /// The arguments encoded for a node, when they hold handles that work there
    /// through the gateway (`sync::far`).
    pub(super) far: Option<FarPlan>,
}

/// The arguments as a node gets them: far handles, and the real ones to export.
#[derive(Debug)]
pub(super) struct FarPlan {
    pub(super) args: Vec<u8>,
    /// The handles to export, in the order the far encoding met them.
    pub(super) objs: Vec<(FarKey, Obj)>,
    /// The far encoding still holds a handle to a one-machine object.
    pub(super) one_machine: bool,
    /// Which, as far as the arguments' type tells.
    pub(super) named: String,
    /// For a spec's arguments, started again at each restart: set once the credits
    /// their local encoding lent are taken back (they are lent once).
    pub(super) reclaimed: Option<Arc<AtomicBool>>,
}

impl FarPlan {
    /// Whether the credits lent by the local encoding are to be taken back now.
    pub(super) fn reclaim_now(&self) -> bool {
        self.reclaimed
            .as_ref()
            .is_none_or(|done| !done.swap(true, Ordering::AcqRel))
    }
}

/// A child spec's arguments encoded for a node, kept with the spec (in
/// [`ChildSpec::far`]) for as long as it can be started: each start on a node
/// exports the handles again, bound to that incarnation.
#[derive(Debug)]
pub(crate) struct FarSpec {
    args: Vec<u8>,
    objs: Vec<(FarKey, Obj)>,
    one_machine: bool,
    named: String,
    reclaimed: Arc<AtomicBool>,
    /// What the spec's maker keeps alive with it, here (see [`FarSpec::keeping`]).
    kept: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl FarSpec {
    /// `args` encoded for a node, if they hold handles that a node sees otherwise.
    pub(crate) fn encode<T: Serialize>(args: &T) -> Attached {
        Attached(far_plan(args).map(|p| {
            Arc::new(FarSpec {
                args: p.args,
                objs: p.objs,
                one_machine: p.one_machine,
                named: p.named,
                reclaimed: Arc::default(),
                kept: None,
            }) as Arc<dyn std::any::Any + Send + Sync>
        }))
    }

    /// `far` (a spec's [`FarSpec::encode`]), keeping `kept` alive as long as a
    /// clone of the spec lives: what serves the spec's incarnations from here.
    pub(crate) fn keeping(
        far: &Attached,
        kept: Arc<dyn std::any::Any + Send + Sync>,
    ) -> Option<Attached> {
        let f = far.0.as_ref()?.downcast_ref::<FarSpec>()?;
        Some(Attached(Some(Arc::new(FarSpec {
            args: f.args.clone(),
            objs: f.objs.clone(),
            one_machine: f.one_machine,
            named: f.named.clone(),
            reclaimed: f.reclaimed.clone(),
            kept: Some(kept),
        }))))
    }

    /// What [`keeping`](FarSpec::keeping) attached.
    pub(crate) fn kept(&self) -> Option<&Arc<dyn std::any::Any + Send + Sync>> {
        self.kept.as_ref()
    }

    /// The far encoding `spec` keeps, if any.
    pub(crate) fn of(spec: &ChildSpec) -> Option<&FarSpec> {
        spec.far.0.as_ref()?.downcast_ref::<FarSpec>()
    }

    /// The arguments for a node.
    pub(crate) fn args(&self) -> &[u8] {
        &self.args
    }

    /// The handles to export with them.
    pub(crate) fn objs(&self) -> Vec<(FarKey, Obj)> {
        self.objs.clone()
    }

    /// The one-machine handles they still hold, named as far as the type tells
    /// (`None` when they hold none).
    pub(crate) fn one_machine(&self) -> Option<String> {
        self.one_machine.then(|| {
            if self.named.is_empty() {
                "a Value, Array or SharedMemory".into()
            } else {
                self.named.clone()
            }
        })
    }

    /// Takes back, once, the credits that the spec's local encoding lent.
    pub(crate) fn reclaim_once(&self) {
        if !self.reclaimed.swap(true, Ordering::AcqRel) {
            far::reclaim(&self.objs);
        }
    }
}

/// `args` encoded for a node: their handles as keys, with clones of them to export.
fn far_plan<T: Serialize>(args: &T) -> Option<FarPlan> {
    let (((far_args, _fds), one_machine), objs) = far::encode_far(|| {
        crate::sync::handles_in(|| multiproc_transport::collect_fds(|| codec::encode(args)))
    });
    far_args.ok().map(|args| FarPlan {
        args,
        objs,
        one_machine,
        named: far::one_machine_types(std::any::type_name::<T>()),
        reclaimed: None,
    })
}

impl Plan {
    /// `entry` run with `args`, encoded for this host and, when they hold handles
    /// that work from a node, for a node; `name` is the process's, for the error.
    pub(super) fn encode<T: Serialize>(
        entry: &'static Entry,
        args: &T,
        name: &str,
    ) -> Result<Plan, Error> {
        let (((encoded, fds), one_machine), farable) = far::farable_in(|| {
            crate::sync::handles_in(|| multiproc_transport::collect_fds(|| codec::encode(args)))
        });
        // Handles that work from a node are encoded for one as well: which
        // encoding goes is known at `start`, after `on`.
        let far = farable.then(|| far_plan(args)).flatten();
        match encoded {
            Ok(args) => Ok(Plan {
                entry,
                args,
                fds,
                one_machine,
                spec_handles: false,
                far,
            }),
            Err(source) => Err(Error::Args {
                name: name.to_string(),
                source,
            }),
        }
    }

    /// What a supervisor's child spec names, its arguments encoded already (for a
    /// node too, when the spec keeps them so).
    pub(super) fn of_spec(spec: &ChildSpec) -> Result<Plan, Error> {
        let far = FarSpec::of(spec).map(|f| FarPlan {
            args: f.args.clone(),
            objs: f.objs.clone(),
            one_machine: f.one_machine,
            named: f.named.clone(),
            reclaimed: Some(f.reclaimed.clone()),
        });
        // Handles with a far encoding can go to a node; only those without cannot.
        let mut plan = Plan::of_start(&spec.start)?;
        plan.spec_handles &= far.is_none();
        plan.far = far;
        Ok(plan)
    }

    /// What a bare start spec names (a node's, started for its root).
    pub(super) fn of_start(start: &multiproc_core::StartSpec) -> Result<Plan, Error> {
        registry::by_name(&start.entry)
            .filter(|e| e.kind == start.kind)
            .map(|entry| Plan {
                entry,
                args: start.args.clone(),
                fds: Vec::new(),
                one_machine: false,
                spec_handles: start.holds_handles,
                far: None,
            })
            .ok_or_else(|| Error::UnknownEntry(start.entry.clone()))
    }
}
