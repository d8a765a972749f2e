//! The table of entry points (functions and actors) a child can be asked to run.
//!
//! Entries are registered at link time with `linkme` (no code runs before `main`), by
//! the facade's `register!` and `register_actor!` macros. The parent finds an entry by
//! the Rust type of the function item or actor (a `TypeId`), and sends its name; the
//! child finds it by name.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use multiproc_core::EntryKind;
use multiproc_core::ItemFailure;

use crate::runtime::error::Error;

/// A registered entry point. Built by the facade's macros; not for direct use.
#[doc(hidden)]
#[derive(Debug)]
pub struct Entry {
    /// The stable name sent to the child: `module::path::item`.
    pub name: &'static str,
    /// Function or actor.
    pub kind: EntryKind,
    /// The `TypeId` of the function item or actor type.
    pub type_id: fn() -> TypeId,
    /// Runs the entry in the child from its encoded arguments.
    pub run: fn(Vec<u8>) -> EntryOutcome,
    /// Runs a chunk of the entry as a pool task, in a pool worker.
    pub task: TaskFn,
    /// Runs a chunk of the entry sent as a slab of plain data (the pool's bulk path).
    pub slab: TaskFn,
    /// The witness that the entry is a task whose argument and result are plain data
    /// ([`Pod`](crate::Pod)), which lets a caller send it slabs; `None` otherwise.
    pub pod: fn() -> Option<PodTask>,
}

#[doc(hidden)]
#[linkme::distributed_slice]
pub static ENTRIES: [Entry];

struct Index {
    by_type: HashMap<TypeId, &'static Entry>,
    by_name: HashMap<&'static str, &'static Entry>,
    duplicate: Option<&'static str>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut idx = Index {
            by_type: HashMap::new(),
            by_name: HashMap::new(),
            duplicate: None,
        };
        for e in ENTRIES.iter() {
            idx.by_type.insert((e.type_id)(), e);
            if idx.by_name.insert(e.name, e).is_some() {
                idx.duplicate = Some(e.name);
            }
        }
        idx
    })
}

/// Finds the entry registered for the function `F`, which must be a `fn` item (or a
/// closure that captures nothing): what a closure captured cannot go to another
/// process, so capturing is refused when the call is compiled.
pub(crate) fn function_by_type<F: 'static>() -> Result<&'static Entry, Error> {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a closure that captures variables cannot run in another process: the child \
             is this program started again and finds its function by name, so it must be \
             a `fn` item registered with `multiproc::register!(name)`, taking what the \
             closure captured as its arguments"
        )
    };
    by_type::<F>(EntryKind::Function)
}

/// Finds the entry registered for the type `T` (a function item or an actor type).
pub(crate) fn by_type<T: 'static>(kind: EntryKind) -> Result<&'static Entry, Error> {
    let idx = index();
    if let Some(dup) = idx.duplicate {
        return Err(Error::DuplicateEntry(dup.to_string()));
    }
    match idx.by_type.get(&TypeId::of::<T>()) {
        Some(e) if e.kind == kind => Ok(e),
        _ => {
            let type_name = std::any::type_name::<T>();
            if type_name.contains("{{closure}}") {
                return Err(Error::Closure { type_name });
            }
            let short = type_name
                .rsplit("::")
                .next()
                .unwrap_or(type_name)
                .to_string();
            let macro_name = match kind {
                EntryKind::Function => "register",
                EntryKind::Actor => "register_actor",
            };
            Err(Error::Unregistered {
                type_name,
                short,
                macro_name,
            })
        }
    }
}

/// Works out, once, what every child looks up at its start (the table by name, the
/// build id, which reads the executable's metadata): called in the forkserver, whose
/// children inherit it instead of each doing it again.
pub(crate) fn warm() {
    let _ = index();
    let _ = build_id();
}

/// Finds an entry by its registered name.
pub(crate) fn by_name(name: &str) -> Option<&'static Entry> {
    index().by_name.get(name).copied()
}

/// An id of this build: the executable file and the set of registered entries.
///
/// A child re-executes `/proc/self/exe`, so it is the same file unless the parent had
/// to fall back to its path and the file was replaced meanwhile; the check catches that.
pub(crate) fn build_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        let mut h = std::hash::DefaultHasher::new();
        if let Ok(meta) = std::fs::metadata("/proc/self/exe") {
            use std::os::unix::fs::MetadataExt;
            (
                meta.dev(),
                meta.ino(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec(),
            )
                .hash(&mut h);
        }
        let mut names: Vec<&str> = ENTRIES.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.hash(&mut h);
        h.finish()
    })
}

/// How a child's entry point ended.
#[doc(hidden)]
#[derive(Debug)]
pub enum EntryOutcome {
    /// It returned.
    Returned,
    /// It returned an error, or could not start.
    Failed(String),
    /// It panicked.
    Panicked {
        /// The panic message.
        message: String,
        /// Where.
        location: Option<String>,
    },
}

/// Runs one chunk of a registered task. Built by `register!`; not for direct use.
pub type TaskFn =
    fn(args: &[u8], items: u32, out: &mut Vec<u8>, failures: &mut Vec<(u32, ItemFailure)>);

/// A witness that a registered task's argument and result are plain data
/// ([`Pod`](crate::Pod)), so a pool can send its chunks as slabs of bytes. Made by the
/// pool (`PodTask::of`, in `pool/slab.rs`, which reads it too) for `register!`; not
/// for direct use.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct PodTask {
    pub(crate) args: TypeId,
    pub(crate) output: TypeId,
    pub(crate) args_size: usize,
    pub(crate) output_size: usize,
    /// Appends the bytes of a `Vec` of the arguments to a slab.
    pub(crate) encode: fn(&dyn Any, &mut Vec<u8>) -> Result<(), String>,
    /// Appends the values of a slab of results to a `Vec` of them.
    pub(crate) decode: fn(&[u8], &mut dyn Any) -> Result<(), String>,
}

/// The `pod` of an entry that is not a task of plain data.
pub fn no_pod() -> Option<PodTask> {
    None
}

/// The `TypeId` of a value's type (a function item's unique type).
pub fn type_id_of<T: 'static>(_: &T) -> std::any::TypeId {
    std::any::TypeId::of::<T>()
}
