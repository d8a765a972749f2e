//! The types a manager's server can serve beside the built-in ones, and their
//! methods: what [`Registry`] (Python's `BaseManager.register`) collects, and the
//! `manager_types!` entries that let a server process find the functions that fill it.
//! Not the runtime's registry of entry points, which names functions a child runs.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use multiproc_core::codec;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ManagerError;

type Make = Box<dyn Fn(&[u8]) -> Result<Box<dyn Any + Send>, ManagerError> + Send + Sync>;
type Method =
    Box<dyn Fn(&mut (dyn Any + Send), &str, &[u8]) -> Result<Vec<u8>, ManagerError> + Send + Sync>;

/// A registered type: how to make one and its methods.
pub(crate) struct UserType {
    pub(super) make: Make,
    pub(super) methods: HashMap<String, Method>,
}

/// The types a manager's server can create, beside the built-in ones (Python's
/// `BaseManager.register`). Only these, and only their registered methods, can be
/// reached from the wire.
///
/// ```
/// use multiproc_supervisor::Registry;
///
/// #[derive(Default)]
/// struct Counter(i64);
///
/// fn types(r: &mut Registry) {
///     r.register("Counter", |start: i64| Counter(start))
///         .method("add", |c: &mut Counter, by: i64| {
///             c.0 += by;
///             c.0
///         })
///         .method("get", |c: &mut Counter, (): ()| c.0);
/// }
/// # let mut r = Registry::default();
/// # types(&mut r);
/// ```
#[derive(Default)]
pub struct Registry {
    pub(super) types: HashMap<String, Arc<UserType>>,
    /// Objects made when the server starts, and published under names.
    pub(super) objects: Vec<(String, String, Vec<u8>)>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("types", &self.types.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Adds methods to a type being registered.
pub struct TypeRegistration<'r, T> {
    ty: &'r mut UserType,
    _t: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for TypeRegistration<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypeRegistration").finish_non_exhaustive()
    }
}

impl Registry {
    /// Registers `typeid`, made by `make` from the creator's arguments.
    ///
    /// # Panics
    ///
    /// When `typeid` is one of the built-in types (`dict`, `list`, `namespace`,
    /// `queue`, `lock`, `event`, `value`).
    pub fn register<T, A>(
        &mut self,
        typeid: &str,
        make: impl Fn(A) -> T + Send + Sync + 'static,
    ) -> TypeRegistration<'_, T>
    where
        T: Send + 'static,
        A: DeserializeOwned,
    {
        assert!(
            !BUILT_IN.contains(&typeid),
            "`{typeid}` is a built-in manager type"
        );
        let name = typeid.to_string();
        let ty = UserType {
            make: Box::new(move |bytes| {
                let args: A = codec::decode(bytes).map_err(|e| ManagerError::Args {
                    method: format!("{name}()"),
                    message: e.to_string(),
                })?;
                Ok(Box::new(make(args)) as Box<dyn Any + Send>)
            }),
            methods: HashMap::new(),
        };
        let slot = self
            .types
            .entry(typeid.to_string())
            .or_insert_with(|| Arc::new(ty));
        TypeRegistration {
            ty: Arc::get_mut(slot).expect("registered once, before serving"),
            _t: PhantomData,
        }
    }
}

impl Registry {
    /// Creates an object of `typeid` from `args` each time the server starts, and
    /// publishes it as `name` (Python's `register('get_queue', callable=...)`): a
    /// manager restarted by its supervisor has it again, and proxies found by that
    /// name reach the new one.
    ///
    /// # Panics
    ///
    /// When `args` does not encode.
    pub fn object<A: Serialize + ?Sized>(
        &mut self,
        name: &str,
        typeid: &str,
        args: &A,
    ) -> &mut Self {
        let args = codec::encode(args).expect("the arguments of a published object encode");
        self.objects
            .push((name.to_string(), typeid.to_string(), args));
        self
    }
}

impl<T: Send + 'static> TypeRegistration<'_, T> {
    /// Registers a method: `f(object, args)`; `args` is decoded from the caller's
    /// (a tuple for several), and the result encoded back.
    pub fn method<A, R>(
        self,
        name: &str,
        f: impl Fn(&mut T, A) -> R + Send + Sync + 'static,
    ) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        self.ty.methods.insert(
            name.to_string(),
            Box::new(move |object, method, bytes| {
                let object = object
                    .downcast_mut::<T>()
                    .ok_or_else(|| ManagerError::Decode("an object of another type".into()))?;
                let args: A = codec::decode(bytes).map_err(|e| ManagerError::Args {
                    method: method.to_string(),
                    message: e.to_string(),
                })?;
                codec::encode(&f(object, args)).map_err(|e| ManagerError::Encode(e.to_string()))
            }),
        );
        self
    }
}

const BUILT_IN: [&str; 7] = [
    "dict",
    "list",
    "namespace",
    "queue",
    "lock",
    "event",
    "value",
];

/// A function that registers types with a [`Registry`], registered with the
/// facade's `manager_types!` macro so that a manager's server (another process)
/// can run it by name. Not for direct use.
#[doc(hidden)]
#[derive(Debug)]
pub struct TypesEntry {
    /// The function's stable name.
    pub name: &'static str,
    /// The `TypeId` of the function item.
    pub type_id: fn() -> TypeId,
    /// The function.
    pub register: fn(&mut Registry),
}

#[doc(hidden)]
#[linkme::distributed_slice]
pub static MANAGER_TYPES: [TypesEntry];

pub(super) fn types_by_type<F: 'static>() -> Result<&'static TypesEntry, ManagerError> {
    MANAGER_TYPES
        .iter()
        .find(|e| (e.type_id)() == TypeId::of::<F>())
        .ok_or_else(|| {
            ManagerError::Start(format!(
                "`{}` is not registered: add `multiproc::manager_types!(...)` for it",
                std::any::type_name::<F>()
            ))
        })
}
