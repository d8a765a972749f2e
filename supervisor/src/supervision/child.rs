//! Child specs for registered functions and actors, checked for what a restart
//! could not hand over again.

use multiproc_core::{ChildSpec, EntryKind, StartSpec, codec};

use crate::process::actor::Actor;
use crate::runtime::error::Error;
use crate::runtime::registry;
use crate::runtime::target::Target;

/// A child spec for the registered function `f` with `args`.
///
/// # Errors
///
/// [`Error::Unregistered`] or [`Error::Closure`] for an unregistered `f`;
/// [`Error::Args`] if the arguments do not encode, or hold a `Connection` (a restarted
/// child could not get it again).
pub fn function_child<F, M>(id: impl Into<String>, f: F, args: F::Args) -> Result<ChildSpec, Error>
where
    F: Target<M>,
{
    let _ = f;
    let entry = registry::function_by_type::<F>()?;
    child_spec(id.into(), entry, &args)
}

/// A child spec for the registered actor `A` started with `args`.
///
/// # Errors
///
/// As [`function_child`].
pub fn actor_child<A: Actor>(id: impl Into<String>, args: A::Args) -> Result<ChildSpec, Error> {
    let entry = registry::by_type::<A>(EntryKind::Actor)?;
    child_spec(id.into(), entry, &args)
}

pub(super) fn child_spec<T: serde::Serialize>(
    id: String,
    entry: &'static registry::Entry,
    args: &T,
) -> Result<ChildSpec, Error> {
    // An actor's handle counts too: this tree's address would mean another process
    // on a node.
    let (((encoded, fds), handles), refs) = crate::sync::far::farable_in(|| {
        crate::sync::handles_in(|| multiproc_transport::collect_fds(|| codec::encode(args)))
    });
    let holds_handles = handles || refs;
    // Encoded for a node as well, should the spec be placed on one (`on` comes
    // after): kept with the spec, in this process.
    let far = if holds_handles {
        crate::process::FarSpec::encode(args)
    } else {
        multiproc_core::Attached::default()
    };
    let args = encoded.map_err(|source| Error::Args {
        name: id.clone(),
        source,
    })?;
    if !fds.is_empty() {
        return Err(Error::Args {
            name: id,
            source: multiproc_core::CodecError::Encode {
                type_name: std::any::type_name::<T>(),
                message: "a supervised child cannot take a Connection: a restart could not hand it over again".into(),
            },
        });
    }
    let mut spec = ChildSpec::new(
        id,
        StartSpec {
            kind: entry.kind,
            entry: entry.name.to_string(),
            args,
            holds_handles,
        },
    );
    spec.far = far;
    Ok(spec)
}
