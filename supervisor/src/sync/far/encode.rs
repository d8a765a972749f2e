//! A handle's two encodings: for a process of this tree (the handle itself), and far,
//! for a process placed on a node (the primitive's key, with a real clone collected
//! to export).

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use super::export::Obj;
use super::forward::Far;
use super::wire::FarKey;

/// A handle here, or far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Side<H> {
    Here(H),
    Far(Far),
}
#[derive(Serialize)]
enum WireRef<'a, H> {
    Here(&'a H),
    Far(&'a FarKey, #[serde(with = "serde_bytes")] &'a [u8]),
    Home(#[serde(with = "serde_bytes")] &'a [u8]),
}

#[derive(Deserialize)]
enum Wire<H> {
    Here(H),
    /// The key, and the handle as its root's tree encodes it (see `Far::home`).
    Far(FarKey, #[serde(with = "serde_bytes")] Vec<u8>),
    /// A far handle back in its root's tree: the handle there.
    Home(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// What a far encoding collected.
struct Collect {
    objs: Vec<(FarKey, Obj)>,
}

thread_local! {
    static COLLECT: RefCell<Option<Collect>> = const { RefCell::new(None) };
    /// Handles this thread serialized that a far encoding would carry.
    static FARABLE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}
/// Whether this thread is encoding for a node (a handle to a one-machine object
/// lends nothing then: those bytes never reach a process of this tree).
pub(crate) fn encoding_far() -> bool {
    COLLECT.with(|c| c.borrow().is_some())
}

/// Counts a value serialized that a far encoding would carry differently (an actor's
/// handle): the arguments that hold one are encoded for a node as well.
pub(crate) fn farable() {
    FARABLE.set(FARABLE.get() + 1);
}

/// Runs `f` (an encoding) and says whether it serialized a handle that can be
/// used from a node.
pub(crate) fn farable_in<R>(f: impl FnOnce() -> R) -> (R, bool) {
    let before = FARABLE.get();
    let out = f();
    (out, FARABLE.get() != before)
}

/// The one-machine types named in `type_name` (the arguments' type), for the error
/// that refuses them: "a Value or Array". Empty when the type does not tell (a
/// handle inside a struct of the caller's).
pub(crate) fn one_machine_types(type_name: &str) -> String {
    const ONE_MACHINE: [&str; 3] = ["Value", "Array", "SharedMemory"];
    // Path segments of the type's name: `multiproc_supervisor::shared::value::Value<u64>`.
    let words: Vec<&str> = type_name
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .collect();
    let found: Vec<&str> = ONE_MACHINE
        .into_iter()
        .filter(|t| words.contains(t))
        .collect();
    let list = match found.as_slice() {
        [] => return String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    };
    let article = if list.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {list}")
}

/// Runs `f` (an encoding) in the far encoding: the handles it meets are encoded as
/// keys, and their clones are returned, to export.
pub(crate) fn encode_far<R>(f: impl FnOnce() -> R) -> (R, Vec<(FarKey, Obj)>) {
    let outer = COLLECT.with(|c| c.replace(Some(Collect { objs: Vec::new() })));
    let out = f();
    let collected = COLLECT.with(|c| c.replace(outer));
    (out, collected.map(|c| c.objs).unwrap_or_default())
}

/// Handles exported with a far encoding that does not hold them as values: those
/// named by a child spec's arguments, already encoded for a node, that go with it.
/// A unit on the wire; in a far encoding, its handles are collected to export with
/// the rest.
#[derive(Debug, Clone, Default)]
pub(crate) struct Carry(pub(crate) Vec<(FarKey, Obj)>);

impl Serialize for Carry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let collected = COLLECT.with(|c| {
            c.borrow_mut()
                .as_mut()
                .map(|c| c.objs.extend(self.0.iter().cloned()))
                .is_some()
        });
        if !collected && !self.0.is_empty() {
            // Encoded for here, it is encoded for a node as well (see `farable`).
            farable();
        }
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for Carry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Carry, D::Error> {
        <()>::deserialize(d)?;
        Ok(Carry::default())
    }
}

pub(crate) fn serialize<H: Serialize, S: serde::Serializer>(
    side: &Side<H>,
    export: impl FnOnce() -> (FarKey, Obj),
    s: S,
) -> Result<S::Ok, S::Error> {
    match side {
        // Back in the tree it came from, it is the handle it was there.
        Side::Far(far) if super::way::going_home() => WireRef::<H>::Home(&far.home).serialize(s),
        // Within the node's tree it stays far, through the same gateway. Its key
        // means something to this node's session with its root only: counted as a
        // one-machine handle, it goes to no other node.
        Side::Far(far) => {
            crate::sync::refs::note_handle();
            WireRef::<H>::Far(&far.key, &far.home).serialize(s)
        }
        Side::Here(here) => {
            let far = COLLECT.with(|c| {
                c.borrow_mut().as_mut().map(|c| {
                    let (key, obj) = export();
                    c.objs.push((key.clone(), obj));
                    key
                })
            });
            match far {
                Some(key) => {
                    // Encoded far, it lends nothing: decoded at home, it lends as it
                    // claims (`refs::claimed_unlent`).
                    let home = crate::sync::refs::uncounted(|| multiproc_core::codec::encode(here))
                        .map_err(serde::ser::Error::custom)?;
                    WireRef::<H>::Far(&key, &home).serialize(s)
                }
                None => {
                    FARABLE.set(FARABLE.get() + 1);
                    WireRef::Here(here).serialize(s)
                }
            }
        }
    }
}

pub(crate) fn deserialize<'de, H: serde::de::DeserializeOwned, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Side<H>, D::Error> {
    Ok(match Wire::<H>::deserialize(d)? {
        Wire::Here(h) => Side::Here(h),
        Wire::Far(key, home) => Side::Far(Far { key, home }),
        Wire::Home(home) => Side::Here(
            crate::sync::refs::claimed_unlent(|| multiproc_core::codec::decode::<H>(&home))
                .map_err(serde::de::Error::custom)?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::one_machine_types;

    #[test]
    fn the_refusal_names_the_one_machine_types_of_the_arguments() {
        for (type_name, named) in [
            (
                "(multiproc_supervisor::sync::lock::Lock, multiproc_supervisor::shared::value::Value<u64>)",
                "a Value",
            ),
            (
                "(multiproc_supervisor::shared::array::Array<u8>, multiproc_supervisor::sync::rlock::RLock)",
                "an Array",
            ),
            (
                "(multiproc_supervisor::shared::value::Value<u8>, multiproc_supervisor::shared::array::Array<u8>)",
                "a Value or Array",
            ),
            (
                "multiproc_supervisor::sync::semaphore::BoundedSemaphore",
                "",
            ),
            ("my_crate::Job", ""),
        ] {
            assert_eq!(one_machine_types(type_name), named, "{type_name}");
        }
    }
}
