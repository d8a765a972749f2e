//! What a process runs: its registered entry and its arguments, encoded when the
//! `Process` is made, for this host and, when they hold handles that work there,
//! for a node as well (which one goes is known at `start`, after `on`).

use std::os::fd::OwnedFd;

use multiproc_core::{StartSpec, codec};
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
    /// handles: they cannot go to a node (a spec keeps no far encoding).
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
        let far = farable
            .then(|| {
                let (((far_args, _fds), one_machine), objs) = far::encode_far(|| {
                    crate::sync::handles_in(|| {
                        multiproc_transport::collect_fds(|| codec::encode(args))
                    })
                });
                far_args.ok().map(|args| FarPlan {
                    args,
                    objs,
                    one_machine,
                    named: far::one_machine_types(std::any::type_name::<T>()),
                })
            })
            .flatten();
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

    /// What a supervisor's child spec names, its arguments encoded already.
    pub(super) fn of_start(start: &StartSpec) -> Result<Plan, Error> {
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
