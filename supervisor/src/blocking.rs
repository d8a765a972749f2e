//! The blocking API: one blocking face per async type, for scripts and Python-style code.
//!
//! Each call blocks the calling thread while the process's multiproc runtime does the
//! work, so it can be used from plain threads and `main` without any async runtime.
//!
//! Every face is built the same way: a newtype over the async value, which is
//! private, with `From` both ways, `as_async` and `into_async`. So a value moves
//! between the two APIs without copying, and the async type's own methods never
//! show through the face:
//!
//! ```
//! use multiproc_supervisor::blocking::Event;
//!
//! multiproc_supervisor::init();
//! let event = Event::new()?;
//! event.set()?;
//! let shared: multiproc_supervisor::Event = event.into_async();
//! let event = Event::from(shared);
//! assert!(event.is_set()?);
//! # Ok::<(), multiproc_supervisor::SyncError>(())
//! ```

/// Declares the blocking face `$name` of the async type `$inner`: a newtype whose
/// field stays private, so that the face is the one blocking way in, whatever the
/// async type grows; `From` both ways and `as_async` / `into_async` cross over.
macro_rules! face {
    ($(#[$attr:meta])* $name:ident $(<$g:ident>)? ($inner:ty)) => {
        $(#[$attr])*
        pub struct $name$(<$g>)?($inner);

        impl$(<$g>)? From<$inner> for $name$(<$g>)? {
            fn from(inner: $inner) -> Self {
                $name(inner)
            }
        }

        impl$(<$g>)? From<$name$(<$g>)?> for $inner {
            fn from(face: $name$(<$g>)?) -> Self {
                face.0
            }
        }

        impl$(<$g>)? $name$(<$g>)? {
            /// Borrows the async value underneath.
            pub fn as_async(&self) -> &$inner {
                &self.0
            }

            /// The async value underneath.
            pub fn into_async(self) -> $inner {
                self.0
            }
        }
    };
}

/// Mirrors methods of the async value onto its face, one line each, generics in
/// `[]`. How the face calls the method of the same name (or the one in parentheses):
/// `block` waits for its future on the calling thread, `now` returns what it returns
/// (it does not wait, or it is already the thread-blocking path), and `wrap` returns
/// the blocking face of what it returns.
macro_rules! mirror {
    () => {};
    // A receiver is forwarded with a `self` written next to it, so that the body's
    // `self` comes from the same expansion as the signature's (`self` is hygienic).
    ($(#[$doc:meta])* pub fn $name:ident $([$($g:tt)*])? (&self $(, $arg:ident: $ty:ty)* $(,)?)
        $(-> $ret:ty)? => $how:ident $(($inner:ident))?; $($rest:tt)*) => {
        mirror!(@fn [$(#[$doc])*] $name [$($($g)*)?] [&self] self [$($arg: $ty),*] [$($ret)?]
            $how $($inner)? ($name));
        mirror!($($rest)*);
    };
    ($(#[$doc:meta])* pub fn $name:ident $([$($g:tt)*])? (&mut self $(, $arg:ident: $ty:ty)* $(,)?)
        $(-> $ret:ty)? => $how:ident $(($inner:ident))?; $($rest:tt)*) => {
        mirror!(@fn [$(#[$doc])*] $name [$($($g)*)?] [&mut self] self [$($arg: $ty),*] [$($ret)?]
            $how $($inner)? ($name));
        mirror!($($rest)*);
    };
    ($(#[$doc:meta])* pub fn $name:ident $([$($g:tt)*])? (self $(, $arg:ident: $ty:ty)* $(,)?)
        $(-> $ret:ty)? => $how:ident $(($inner:ident))?; $($rest:tt)*) => {
        mirror!(@fn [$(#[$doc])*] $name [$($($g)*)?] [self] self [$($arg: $ty),*] [$($ret)?]
            $how $($inner)? ($name));
        mirror!($($rest)*);
    };
    // The inner method: the one named in parentheses, else the face's own name.
    (@fn [$($doc:tt)*] $name:ident [$($g:tt)*] [$($recv:tt)*] $s:ident [$($arg:ident: $ty:ty),*]
        [$($ret:ty)?] $how:ident $inner:ident ($_same:ident)) => {
        mirror!(@fn [$($doc)*] $name [$($g)*] [$($recv)*] $s [$($arg: $ty),*] [$($ret)?] $how ($inner));
    };
    (@fn [$($doc:tt)*] $name:ident [$($g:tt)*] [$($recv:tt)*] $s:ident [$($arg:ident: $ty:ty),*]
        [$($ret:ty)?] $how:ident ($inner:ident)) => {
        $($doc)*
        pub fn $name<$($g)*>($($recv)* $(, $arg: $ty)*) $(-> $ret)? {
            mirror!(@$how $s.0.$inner($($arg),*))
        }
    };
    (@block $call:expr) => {
        $crate::runtime::block_on($call)
    };
    (@now $call:expr) => {
        $call
    };
    (@wrap $call:expr) => {
        From::from($call)
    };
}

mod pool;
mod process;
mod supervision;
mod sync;

pub use pool::{AsyncResult, Imap, Pool, PoolBuilder};

/// A snapshot of the running tree, blocking; see [`crate::observe`].
pub mod observe {
    pub use crate::observe::{ProcessInfo, ProcessKind, ProcessState, Snapshot};

    /// A snapshot of the tree below (and including) this process; see
    /// [`crate::observe::snapshot`].
    ///
    /// ```
    /// let snap = multiproc_supervisor::blocking::observe::snapshot();
    /// assert_eq!(snap.processes[0].pid, Some(std::process::id()));
    /// ```
    pub fn snapshot() -> Snapshot {
        crate::runtime::block_on(crate::observe::snapshot())
    }

    #[cfg(feature = "observer")]
    pub use crate::observe::{
        DEFAULT_HISTORY, DEFAULT_OBSERVER_ADDR, DEFAULT_SAMPLE_INTERVAL, Observer, ObserverBuilder,
        ObserverError, ObserverHandle,
    };

    /// Starts an observer, blocking until it listens; see
    /// [`crate::observe::ObserverBuilder::serve`].
    ///
    /// ```
    /// use multiproc_supervisor::blocking::observe::{self, Observer};
    ///
    /// let observer = observe::serve(Observer::builder().bind("127.0.0.1:0".parse()?))?;
    /// assert!(observer.url().starts_with("http://127.0.0.1:"));
    /// observe::shutdown(observer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`crate::observe::ObserverBuilder::serve`].
    #[cfg(feature = "observer")]
    pub fn serve(builder: ObserverBuilder) -> Result<ObserverHandle, ObserverError> {
        crate::runtime::block_on(builder.serve())
    }

    /// Stops an observer and waits until it has; see
    /// [`crate::observe::ObserverHandle::shutdown`].
    #[cfg(feature = "observer")]
    pub fn shutdown(observer: ObserverHandle) {
        crate::runtime::block_on(observer.shutdown())
    }
}
pub use observe::snapshot;

/// Nodes, blocking; see [`crate::node`].
pub mod node {
    pub use crate::node::{
        ConnectOptions, Node, NodeConfig, NodeError, NodeEvent, NodeEvents, Refusal, Serving,
        rustls,
    };
    use crate::runtime::block_on;

    /// Starts node mode; see [`crate::node::serve`].
    ///
    /// # Errors
    ///
    /// As [`crate::node::serve`].
    pub fn serve(config: NodeConfig) -> Result<Serving, NodeError> {
        block_on(crate::node::serve(config))
    }

    /// Connects to a node; see [`crate::node::connect`].
    ///
    /// # Errors
    ///
    /// As [`crate::node::connect`].
    pub fn connect(addr: &str, cookie: &str) -> Result<Node, NodeError> {
        block_on(crate::node::connect(addr, cookie))
    }

    /// Connects to a node with `options`; see [`crate::node::connect_with`].
    ///
    /// # Errors
    ///
    /// As [`crate::node::connect`].
    pub fn connect_with(
        addr: &str,
        cookie: &str,
        options: ConnectOptions,
    ) -> Result<Node, NodeError> {
        block_on(crate::node::connect_with(addr, cookie, options))
    }

    /// Connects to a node over TLS; see [`crate::node::connect_tls`].
    ///
    /// # Errors
    ///
    /// As [`crate::node::connect_tls`].
    pub fn connect_tls(
        addr: &str,
        cookie: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<Node, NodeError> {
        block_on(crate::node::connect_tls(addr, cookie, config, server_name))
    }

    /// Waits until `node` is down; what showed it. See [`Node::down`].
    pub fn wait_down(node: &Node) -> NodeError {
        block_on(node.down())
    }

    /// The next event of a node; `None` once it has shut down.
    pub fn next_event(events: &mut NodeEvents) -> Option<NodeEvent> {
        block_on(events.next())
    }

    /// Shuts a node down; see [`Serving::shutdown`].
    pub fn shutdown(serving: Serving) {
        block_on(serving.shutdown())
    }
}
pub use process::{ActorRef, Process, stop_children, wait_for_stop};
pub use supervision::{
    ChildSupervisorRef, DynamicSupervisor, Events, SupervisedRef, SupervisorRef, run_supervisor,
};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Queue, RLock, Semaphore,
    SimpleQueue,
};

/// Shared memory needs no runtime: these are the same types as at the crate's root.
pub use crate::shared::{
    Array, ArrayGuard, Pod, RawArray, RawValue, SharedMemory, SharedMemoryError, SharedMemoryRef,
    Value, ValueGuard,
};
pub use multiproc_transport::{
    BlockingConnection as Connection, blocking_pipe as pipe, blocking_wait as wait,
};
