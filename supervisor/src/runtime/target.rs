//! Functions a child process can run: any `fn` of serde arguments, once registered.

use std::fmt::Display;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::runtime::registry::EntryOutcome;

/// A function that a [`Process`](crate::Process) can run in a child.
///
/// Implemented for every `fn` item of up to six arguments that are serde types, whose
/// return type is `()` or `Result<(), E>` with `E: Display`. A one-argument function
/// takes its argument as is; a function of several takes a tuple; one of none takes
/// `()`. `M` only tells the implementations apart.
///
/// A closure cannot be a target: the child is this program started again, and finds
/// its function by the name `multiproc::register!` gave it;
/// what a closure captured lives only in the parent's memory. A capturing closure is a
/// compile error that says so (when the program is built: it is found when the call is
/// compiled, so `cargo check` does not report it).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a function a child process can run",
    label = "not a registered `fn` of serde arguments",
    note = "a child process runs a `fn` item registered with `multiproc::register!(name)`, found by name in the child (this program, started again); its argument is one serde value, a tuple of several, or `()`, and it returns `()` or `Result<(), E: Display>`",
    note = "a closure cannot cross a process boundary: what it captured lives only in this process's memory; pass it as an argument instead"
)]
pub trait Target<M>: Send + 'static {
    /// The arguments, as one serde value.
    type Args: Serialize + DeserializeOwned;
    /// Calls the function.
    fn call(self, args: Self::Args) -> Result<(), String>;
}

/// What a target function may return.
pub trait Outcome {
    /// `Err` with a message when the function failed.
    fn into_result(self) -> Result<(), String>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> Outcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

impl<F, R> Target<fn() -> R> for F
where
    F: Fn() -> R + Send + 'static,
    R: Outcome,
{
    type Args = ();
    fn call(self, (): ()) -> Result<(), String> {
        self().into_result()
    }
}

impl<F, R, A> Target<fn(A) -> R> for F
where
    F: Fn(A) -> R + Send + 'static,
    R: Outcome,
    A: Serialize + DeserializeOwned,
{
    type Args = A;
    fn call(self, a: A) -> Result<(), String> {
        self(a).into_result()
    }
}

macro_rules! tuple_target {
    ($($t:ident),+) => {
        impl<F, R, $($t),+> Target<fn($($t),+) -> R> for F
        where
            F: Fn($($t),+) -> R + Send + 'static,
            R: Outcome,
            $($t: Serialize + DeserializeOwned),+
        {
            type Args = ($($t,)+);
            #[allow(non_snake_case)]
            fn call(self, ($($t,)+): Self::Args) -> Result<(), String> {
                self($($t),+).into_result()
            }
        }
    };
}

tuple_target!(A, B);
tuple_target!(A, B, C);
tuple_target!(A, B, C, D);
tuple_target!(A, B, C, D, E);
tuple_target!(A, B, C, D, G, H);

/// A function a [`Pool`](crate::Pool) can run in its workers.
///
/// Implemented for every `fn` item of up to six serde arguments whose return value is a
/// serde type. As with [`Target`], a one-argument function takes its argument as is, a
/// function of several a tuple. A task that returns `Result<T, E>` gets its `Result`
/// back as a value, with your error type intact; a task that panics fails with
/// [`TaskError::Panicked`](crate::TaskError::Panicked).
///
/// As with [`Target`], a closure cannot be a task.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a function a pool can run",
    label = "not a registered `fn` of serde arguments and result",
    note = "a pool's worker runs a `fn` item registered with `multiproc::register!(name)`, found by name in the worker (another process); its argument is one serde value, a tuple of several, or `()`, and its result a serde value",
    note = "a closure cannot cross a process boundary: what it captured lives only in this process's memory; pass it as an argument instead"
)]
pub trait Task<M>: Send + Sync + 'static {
    /// The arguments, as one serde value.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// What it returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Calls the function.
    fn call(self, args: Self::Args) -> Self::Output;
}

impl<F, R> Task<fn() -> R> for F
where
    F: Fn() -> R + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    type Args = ();
    type Output = R;
    fn call(self, (): ()) -> R {
        self()
    }
}

impl<F, R, A> Task<fn(A) -> R> for F
where
    F: Fn(A) -> R + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
{
    type Args = A;
    type Output = R;
    fn call(self, a: A) -> R {
        self(a)
    }
}

macro_rules! tuple_task {
    ($($t:ident),+) => {
        impl<F, R, $($t),+> Task<fn($($t),+) -> R> for F
        where
            F: Fn($($t),+) -> R + Send + Sync + 'static,
            R: Serialize + DeserializeOwned + Send + 'static,
            $($t: Serialize + DeserializeOwned + Send + 'static),+
        {
            type Args = ($($t,)+);
            type Output = R;
            #[allow(non_snake_case)]
            fn call(self, ($($t,)+): Self::Args) -> R {
                self($($t),+)
            }
        }
    };
}

tuple_task!(A, B);
tuple_task!(A, B, C);
tuple_task!(A, B, C, D);
tuple_task!(A, B, C, D, E);
tuple_task!(A, B, C, D, G, H);

/// Runs a registered function from its encoded arguments.
pub fn run_function<F: Target<M>, M>(f: F, args: Vec<u8>) -> EntryOutcome {
    match multiproc_core::codec::decode::<F::Args>(&args) {
        Ok(args) => match f.call(args) {
            Ok(()) => EntryOutcome::Returned,
            Err(message) => EntryOutcome::Failed(message),
        },
        Err(e) => EntryOutcome::Failed(format!("bad arguments: {e}")),
    }
}
