//! Child specifications and supervisor flags, with OTP's defaults and validation.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Backoff, EntryKind, RestartIntensity, Strategy};

/// How long a worker gets to stop before it is killed, unless its spec says otherwise
/// (OTP's default for workers: 5000 ms).
pub const DEFAULT_WORKER_SHUTDOWN: Duration = Duration::from_secs(5);

/// When a child is restarted (OTP's `restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Restart {
    /// Always restarted (the default).
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit (not `Normal`, not `Shutdown`).
    Transient,
    /// Never restarted; its spec is dropped when it ends.
    Temporary,
}

/// How a child is stopped (OTP's `shutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Shutdown {
    /// SIGKILL at once.
    BrutalKill,
    /// Asked to stop, given this long, then killed.
    Timeout(Duration),
    /// Asked to stop and waited for without limit (the default for supervisors, whose
    /// own children need the time).
    Infinity,
}

/// What a child is (OTP's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ChildKind {
    /// A worker process.
    #[default]
    Worker,
    /// A process that supervises children of its own.
    Supervisor,
}

/// How a child process is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum StartMethod {
    /// Execute this binary again (the default): about 1.5 ms to a ready child.
    #[default]
    Spawn,
    /// Fork a single-threaded zygote of this binary, started once: a fraction of a
    /// millisecond to a ready child. The child does not inherit this process's
    /// environment changes made after the forkserver started (set them with
    /// `Process::env`), and its output cannot be captured.
    Forkserver,
}

/// When a supervisor shuts itself down because significant children ended (OTP's
/// `auto_shutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum AutoShutdown {
    /// Never (the default). Significant children are then not allowed.
    #[default]
    Never,
    /// As soon as any significant child ends on its own.
    AnySignificant,
    /// Once every significant child has ended on its own.
    AllSignificant,
}

/// What a supervisor starts in a child: a registered entry point and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartSpec {
    /// A function or an actor.
    pub kind: EntryKind,
    /// Its registered name.
    pub entry: String,
    /// Its encoded arguments.
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
    /// The arguments hold handles to objects of the host that encoded them (a
    /// `Queue`, a `Lock`, a `Value`, …): on a node, the child takes the far encoding
    /// its spec keeps ([`ChildSpec::far`]), and without one it is refused with
    /// `NodeError::NotAcrossNodes`.
    #[serde(default)]
    pub holds_handles: bool,
}

/// One child of a supervisor, as OTP's `child_spec()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSpec {
    /// The child's id, unique among its siblings.
    pub id: String,
    /// What to run.
    pub start: StartSpec,
    /// When to restart it.
    pub restart: Restart,
    /// How to stop it.
    pub shutdown: Shutdown,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Whether its own end may shut its supervisor down (see [`AutoShutdown`]).
    pub significant: bool,
    /// Resource limits for its process.
    #[serde(default)]
    pub limits: crate::Limits,
    /// Rules that override the restart type for particular exit reasons.
    #[serde(default)]
    pub decider: crate::Decider,
    /// If set, the child must show it is alive at least this often, or it is killed
    /// and exits with `ExitReason::Hung`.
    #[serde(default)]
    pub heartbeat: Option<Duration>,
    /// Where the child runs: on this host (`None`), or on a node, and where its
    /// restarts go.
    #[serde(default)]
    pub placement: Option<Placement>,
    /// What the process that made the spec keeps with it for a node and that does
    /// not travel: its arguments encoded for a node, with the handles among them to
    /// export there. Set by the library; a spec decoded elsewhere has none.
    #[serde(skip)]
    pub far: Attached,
}

/// Something a spec carries within its process only (see [`ChildSpec::far`]): no
/// part of the spec's value, so specs compare equal whatever they carry.
#[derive(Clone, Default)]
pub struct Attached(pub Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Attached(..)"
        } else {
            "Attached(None)"
        })
    }
}

impl PartialEq for Attached {
    fn eq(&self, _: &Attached) -> bool {
        true
    }
}

impl Eq for Attached {}

/// Where a supervised child runs when it is placed on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The node's name, as it announces itself.
    pub node: String,
    /// Where a restart goes.
    pub restart: RestartPlacement,
}

/// Where a restarted child goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RestartPlacement {
    /// The same node; while it is down, the restart fails (and counts, and is retried
    /// by the supervisor's backoff), as a local restart that fails does.
    #[default]
    SameNode,
    /// The node it last ran on if it is up, else the first live node (by name) that
    /// the supervisor's process is connected to.
    AnyLiveNode,
}

/// What names a node: its name, or (in `multiproc`) a connected node's handle.
pub trait NodeName {
    /// The node's name.
    fn node_name(&self) -> String;
}

impl NodeName for &str {
    fn node_name(&self) -> String {
        (*self).to_string()
    }
}

impl NodeName for String {
    fn node_name(&self) -> String {
        self.clone()
    }
}

impl ChildSpec {
    /// A permanent worker with the default shutdown timeout.
    pub fn new(id: impl Into<String>, start: StartSpec) -> ChildSpec {
        ChildSpec {
            id: id.into(),
            start,
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(DEFAULT_WORKER_SHUTDOWN),
            kind: ChildKind::Worker,
            significant: false,
            limits: crate::Limits::default(),
            decider: crate::Decider::default(),
            heartbeat: None,
            placement: None,
            far: Attached::default(),
        }
    }

    /// Places the child on `node` (a connected node's handle, or its name); its
    /// restarts go to the same node unless [`restart_on`](ChildSpec::restart_on)
    /// says otherwise.
    pub fn on(mut self, node: impl NodeName) -> ChildSpec {
        let restart = self.placement.map(|p| p.restart).unwrap_or_default();
        self.placement = Some(Placement {
            node: node.node_name(),
            restart,
        });
        self
    }

    /// Where the restarts of a placed child go (no effect on a child of this host).
    pub fn restart_on(mut self, restart: RestartPlacement) -> ChildSpec {
        if let Some(p) = &mut self.placement {
            p.restart = restart;
        }
        self
    }

    /// Checks this spec on its own, like OTP's `check_childspecs/1`.
    ///
    /// # Errors
    ///
    /// A [`SpecError`] naming the field and the bad value.
    ///
    /// ```
    /// use multiproc_core::{ChildSpec, EntryKind, Shutdown, SpecError, StartSpec};
    /// use std::time::Duration;
    /// let start = StartSpec {
    ///     kind: EntryKind::Function,
    ///     entry: "app::work".into(),
    ///     args: vec![],
    ///     holds_handles: false,
    /// };
    /// let mut spec = ChildSpec::new("worker", start);
    /// assert_eq!(spec.validate(), Ok(()));
    /// spec.shutdown = Shutdown::Timeout(Duration::ZERO);
    /// assert!(matches!(spec.validate(), Err(SpecError::InvalidShutdown { .. })));
    /// ```
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.id.is_empty() {
            return Err(SpecError::EmptyId);
        }
        if self.start.entry.is_empty() {
            return Err(SpecError::InvalidStart {
                child: self.id.clone(),
                value: String::new(),
            });
        }
        if let Shutdown::Timeout(d) = self.shutdown
            && d.is_zero()
        {
            return Err(SpecError::InvalidShutdown {
                child: self.id.clone(),
                value: format!(
                    "{:?} (use Shutdown::BrutalKill to kill at once)",
                    self.shutdown
                ),
            });
        }
        if self.significant && self.restart == Restart::Permanent {
            return Err(SpecError::SignificantPermanent {
                child: self.id.clone(),
            });
        }
        Ok(())
    }
}

/// A supervisor's flags: OTP's `sup_flags()` plus backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SupervisorFlags {
    /// Which children restart when one exits.
    pub strategy: Strategy,
    /// How many restarts, in how long, before the supervisor gives up.
    pub intensity: RestartIntensity,
    /// The delay before each restart.
    pub backoff: Backoff,
    /// When significant children end the supervisor.
    pub auto_shutdown: AutoShutdown,
    /// How the supervisor makes its children's processes.
    #[serde(default)]
    pub start_method: StartMethod,
}

impl SupervisorFlags {
    /// Checks the flags and the children together (ids unique, significant children
    /// only with an auto-shutdown policy).
    ///
    /// # Errors
    ///
    /// The first [`SpecError`] found, children in order.
    pub fn validate(&self, children: &[ChildSpec]) -> Result<(), SpecError> {
        self.intensity.validate()?;
        self.backoff.validate()?;
        let mut seen = HashSet::new();
        for child in children {
            child.validate()?;
            if !seen.insert(child.id.as_str()) {
                return Err(SpecError::DuplicateId(child.id.clone()));
            }
            if child.significant && self.auto_shutdown == AutoShutdown::Never {
                return Err(SpecError::SignificantWithoutAutoShutdown {
                    child: child.id.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A child spec or supervisor flags are invalid; names the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A child's id is empty.
    #[error("a child spec has an empty id")]
    EmptyId,
    /// Two children share an id.
    #[error("two children have the id `{0}`")]
    DuplicateId(String),
    /// The start entry is missing.
    #[error("child `{child}`: invalid start `{value}`")]
    InvalidStart {
        /// The child's id.
        child: String,
        /// The bad value.
        value: String,
    },
    /// The shutdown value is invalid.
    #[error("child `{child}`: invalid shutdown {value}")]
    InvalidShutdown {
        /// The child's id.
        child: String,
        /// The bad value.
        value: String,
    },
    /// A permanent child cannot be significant (OTP: it never ends on its own).
    #[error("child `{child}`: a permanent child cannot be significant")]
    SignificantPermanent {
        /// The child's id.
        child: String,
    },
    /// Significant children need an auto-shutdown policy.
    #[error("child `{child}` is significant but the supervisor's auto_shutdown is Never")]
    SignificantWithoutAutoShutdown {
        /// The child's id.
        child: String,
    },
    /// The intensity period is zero.
    #[error("invalid intensity period {0:?}: it must be more than zero")]
    ZeroPeriod(Duration),
    /// The backoff bounds are inverted or its factor is below 1.
    #[error("invalid backoff: {0}")]
    InvalidBackoff(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> ChildSpec {
        ChildSpec::new(
            id,
            StartSpec {
                kind: EntryKind::Function,
                entry: "m::f".into(),
                args: vec![],
                holds_handles: false,
            },
        )
    }

    #[test]
    fn validation_names_the_bad_field() {
        let flags = SupervisorFlags::default();
        let mut empty = spec("a");
        empty.id.clear();
        let mut zero = spec("a");
        zero.shutdown = Shutdown::Timeout(Duration::ZERO);
        let mut sig = spec("a");
        sig.significant = true;
        let mut sig_transient = spec("a");
        sig_transient.significant = true;
        sig_transient.restart = Restart::Transient;
        let cases: Vec<(Vec<ChildSpec>, Result<(), SpecError>)> = vec![
            (vec![spec("a"), spec("b")], Ok(())),
            (
                vec![spec("a"), spec("a")],
                Err(SpecError::DuplicateId("a".into())),
            ),
            (vec![empty], Err(SpecError::EmptyId)),
            (
                vec![sig],
                Err(SpecError::SignificantPermanent { child: "a".into() }),
            ),
            (
                vec![sig_transient],
                Err(SpecError::SignificantWithoutAutoShutdown { child: "a".into() }),
            ),
        ];
        for (children, want) in cases {
            assert_eq!(flags.validate(&children), want, "{children:?}");
        }
        assert!(
            matches!(flags.validate(&[zero]), Err(SpecError::InvalidShutdown { ref child, .. }) if child == "a")
        );
    }

    #[test]
    fn zero_period_is_refused() {
        let flags = SupervisorFlags {
            intensity: RestartIntensity {
                max_restarts: 3,
                within: Duration::ZERO,
            },
            ..SupervisorFlags::default()
        };
        assert_eq!(
            flags.validate(&[]),
            Err(SpecError::ZeroPeriod(Duration::ZERO))
        );
    }
}
