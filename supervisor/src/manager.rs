//! Managers: a server process holding shared objects, used through typed proxies
//! from any process, of this tree or of another one (Python's `Manager()`,
//! `BaseManager`, `BaseProxy`).
//!
//! The server listens on an address with an authkey: a fresh abstract Unix socket
//! and a random key for [`Manager::start`], or the address and key you give (TCP
//! for another machine's trees). Each connection is authenticated with CPython's
//! handshake, then carries rmp-serde requests that name a *registered* type or
//! method; nothing on the wire is code. A proxy is a plain serde value (the
//! address, the key, the object's number): pass it to a child, store it in another
//! managed object, send it anywhere. Each thread keeps one connection per manager.
//!
//! Objects are reference-counted, as Python's (`incref`/`decref`), per process: a
//! created or decoded proxy holds one reference (its clones share it), given back
//! when the last clone is dropped, and all of a process's references go when it
//! dies. Encoding a proxy lends its object one reference that the decoding side
//! takes over, so a proxy in flight keeps its object alive. Objects published under
//! a name live as long as the server. `book/src/sharing.md` has the protocol and
//! its failure cases.
//!
//! When the server is gone, every proxy call fails with [`ManagerError::Gone`],
//! including one that was waiting. When a manager run by a supervisor comes back
//! at the same address, proxies reconnect on their next call; those found by
//! name ([`Manager::lookup`]) find their object again if the new server publishes
//! it, the others fail with [`ManagerError::Restarted`].

mod channel;
mod refs;
mod server;
mod wire;

pub(crate) use server::fuzz_request;

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_core::{Exhausted, codec};
use multiproc_transport::{
    Address, BlockingConnection, Error as TransportError, Listener, MAX_FRAME_LEN,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::runtime::registry::Entry;
use wire::{Request, Response};

/// What can go wrong with a manager or a proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The manager's server is gone (exited, killed, or unreachable).
    #[error("the manager is gone: {0}")]
    Gone(String),
    /// Connecting failed (nothing listens there).
    #[error("cannot connect to the manager: {0}")]
    Connect(String),
    /// The authkey handshake failed.
    #[error("authentication with the manager failed: {0}")]
    Auth(String),
    /// No type of that name is registered with the server.
    #[error("no type `{0}` is registered with this manager")]
    UnknownType(String),
    /// The type has no method of that name (Python: `AttributeError`, as a
    /// `RemoteError`).
    #[error("`{typeid}` has no registered method `{method}`")]
    UnknownMethod {
        /// The type.
        typeid: String,
        /// The method asked for.
        method: String,
    },
    /// No object has that number (it was never created here).
    #[error("the manager has no object {0}")]
    UnknownObject(u64),
    /// Nothing was published under that name.
    #[error("nothing is published as `{0}`")]
    UnknownName(String),
    /// A published object of another type than the proxy asked for.
    #[error("`{name}` is a `{found}`, not a `{expected}`")]
    WrongType {
        /// The name.
        name: String,
        /// The type the proxy is for.
        expected: String,
        /// The object's type.
        found: String,
    },
    /// The arguments did not decode as the method's (wrong types over the wire).
    #[error("wrong arguments for `{method}`: {message}")]
    Args {
        /// The method.
        method: String,
        /// What did not decode.
        message: String,
    },
    /// A value did not decode as the proxy's type, or a request as a request.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// A value did not encode.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The manager restarted since this proxy was made, and its object with it.
    #[error("the manager restarted; this proxy's object is gone")]
    Restarted,
    /// A method of a registered type panicked (Python: `RemoteError`).
    #[error("`{typeid}.{method}` failed: {message}")]
    Failed {
        /// The type.
        typeid: String,
        /// The method.
        method: String,
        /// The panic's message.
        message: String,
    },
    /// A list index out of range (Python: `IndexError`).
    #[error("index {index} out of range for a list of {len}")]
    Index {
        /// The index.
        index: i64,
        /// The list's length.
        len: usize,
    },
    /// The queue is empty (a get that would not wait, or waited its timeout out).
    #[error("the queue is empty")]
    Empty,
    /// The queue is full.
    #[error("the queue is full")]
    Full,
    /// Misuse: a release of an unlocked lock, `task_done` too many times.
    #[error("{0}")]
    Misuse(String),
    /// The manager's process could not be started or did not start listening.
    #[error("cannot start the manager: {0}")]
    Start(String),
    /// The system had no room for what the manager or a proxy needed (its process, a
    /// connection, a thread, shared memory); the source names the limit and how to
    /// raise it.
    #[error("{what}: {source}")]
    Exhausted {
        /// What was being done.
        what: String,
        /// The limit.
        #[source]
        source: Exhausted,
    },
}

impl ManagerError {
    fn exhausted(what: &str, source: Exhausted) -> ManagerError {
        ManagerError::Exhausted {
            what: what.to_string(),
            source,
        }
    }
}

impl From<TransportError> for ManagerError {
    fn from(e: TransportError) -> ManagerError {
        match e {
            TransportError::Auth(a) => ManagerError::Auth(a.to_string()),
            TransportError::Decode(d) => ManagerError::Decode(d.to_string()),
            TransportError::Encode(d) => ManagerError::Encode(d.to_string()),
            // Nothing was written (or the oversized frame was skipped): the link goes on.
            TransportError::Frame(f @ multiproc_transport::FrameError::TooLarge { .. }) => {
                ManagerError::Encode(f.to_string())
            }
            TransportError::Exhausted(x) => {
                ManagerError::exhausted("cannot open a connection to the manager", x)
            }
            e => ManagerError::Gone(e.to_string()),
        }
    }
}

// --- registered types ---------------------------------------------------------------

type Make = Box<dyn Fn(&[u8]) -> Result<Box<dyn Any + Send>, ManagerError> + Send + Sync>;
type Method =
    Box<dyn Fn(&mut (dyn Any + Send), &str, &[u8]) -> Result<Vec<u8>, ManagerError> + Send + Sync>;

/// A registered type: how to make one and its methods.
pub(crate) struct UserType {
    make: Make,
    methods: HashMap<String, Method>,
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
    types: HashMap<String, Arc<UserType>>,
    /// Objects made when the server starts, and published under names.
    objects: Vec<(String, String, Vec<u8>)>,
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

fn types_by_type<F: 'static>() -> Result<&'static TypesEntry, ManagerError> {
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

// --- the server ------------------------------------------------------------------

/// How a manager's server is set up: where it listens, its key, and the registered
/// type functions it runs. Give it to [`serve_manager`] (as a supervised child, with
/// `function_child`) or let [`Manager::start`] make one.
#[derive(Clone, Serialize, Deserialize)]
pub struct ManagerConfig {
    address: Address,
    authkey: ByteBuf,
    types: Vec<String>,
}

impl fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerConfig")
            .field("address", &self.address)
            .field("types", &self.types)
            .finish_non_exhaustive()
    }
}

impl ManagerConfig {
    /// A server at `address` with `authkey`.
    pub fn new(address: Address, authkey: &[u8]) -> ManagerConfig {
        ManagerConfig {
            address,
            authkey: ByteBuf::from(authkey.to_vec()),
            types: Vec::new(),
        }
    }

    /// Adds the types that `f` registers (`f` registered with `manager_types!`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`] when `f` is not registered.
    pub fn types<F: Fn(&mut Registry) + 'static>(mut self, f: F) -> Result<Self, ManagerError> {
        let _ = f;
        self.types.push(types_by_type::<F>()?.name.to_string());
        Ok(self)
    }

    fn registry(&self) -> Result<Registry, String> {
        let mut registry = Registry::default();
        for name in &self.types {
            let entry = MANAGER_TYPES
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| format!("manager types `{name}` are not registered here"))?;
            (entry.register)(&mut registry);
        }
        Ok(registry)
    }
}

/// Runs a manager's server in this process, until it is shut down or this process
/// is asked to stop (Python's `get_server().serve_forever()`). Registered, so that
/// it can be a supervised child: `function_child("manager", serve_manager, config)`.
///
/// # Errors
///
/// The address cannot be listened on; a types function is not registered.
pub fn serve_manager(config: ManagerConfig) -> Result<(), String> {
    run_server(config, None)
}

/// As [`serve_manager`], telling `ready` once it listens (or why it cannot).
fn serve_manager_ready(
    config: ManagerConfig,
    ready: multiproc_transport::Connection,
) -> Result<(), String> {
    run_server(config, Some(BlockingConnection::from(ready)))
}

fn run_server(config: ManagerConfig, ready: Option<BlockingConnection>) -> Result<(), String> {
    let started = config.registry().and_then(|registry| {
        let mut listener = Listener::bind(&config.address, Some(&config.authkey))
            .map_err(|e| format!("cannot listen on {}: {e}", config.address))?;
        // A manager link carries requests between multiproc processes: the control
        // links' limit, not a user connection's "no limit but memory".
        listener.set_max_frame_len(MAX_FRAME_LEN);
        Ok((registry, listener))
    });
    if let Some(mut ready) = ready {
        // The address it listens on: a TCP port 0 became a port.
        let said: Result<Address, String> = started
            .as_ref()
            .map(|(_, l)| l.address().clone())
            .map_err(String::clone);
        ready.send(&said).map_err(|e| e.to_string())?;
    }
    let (mut registry, mut listener) = started?;
    let objects = std::mem::take(&mut registry.objects);
    // A registered method's panic is its caller's error (`Failed`), not the
    // server's: it is not printed here.
    crate::runtime::bootstrap::quiet_panics(true);
    let server = Arc::new(server::Server::new(registry));
    for (name, typeid, args) in objects {
        server
            .publish_new(&name, &typeid, &args)
            .map_err(|e| format!("cannot create `{name}`: {e}"))?;
    }
    // Asked to stop (the owner's tree is stopping): stop at once; every object
    // goes with the process, as Python's manager's do at shutdown.
    crate::runtime::handle().spawn(async {
        crate::runtime::stop::wait_for_stop().await;
        std::process::exit(0);
    });
    loop {
        let pending = match listener.accept_pending() {
            Ok(p) => p,
            // One client's trouble (it went away before we accepted, a signal, no
            // file descriptors left for now) is not the server's end.
            Err(TransportError::Io(e)) if accept_can_go_on(&e) => {
                tracing::debug!("a manager's accept failed, and it goes on: {e}");
                continue;
            }
            // The connection stays queued until a descriptor is free: wait a little
            // rather than spin on it.
            Err(TransportError::Exhausted(e)) => {
                tracing::debug!("a manager's accept failed, and it goes on: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(format!("the manager cannot accept: {e}")),
        };
        let server = Arc::clone(&server);
        let spawned = std::thread::Builder::new()
            .name("multiproc-manager".into())
            .spawn(move || match pending.authenticate() {
                Ok(conn) => server.serve(conn),
                Err(e) => tracing::debug!("a manager client failed the handshake: {e}"),
            });
        if let Err(e) = spawned {
            // No thread for this client now: it sees its connection closed.
            match multiproc_transport::exhausted(&e, multiproc_transport::Resource::Task) {
                Some(x) => tracing::warn!("a manager cannot start a thread for a client: {x}"),
                None => tracing::warn!("a manager cannot start a thread for a client: {e}"),
            }
        }
    }
}

/// Whether an `accept` error concerns one client, not the listening socket.
fn accept_can_go_on(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EAGAIN
                | libc::ENOBUFS
                | libc::EPROTO
                | libc::EPERM
        )
    )
}

pub(crate) const SERVE_ENTRY: &str = "multiproc_supervisor::manager::serve_manager";
const SERVE_READY_ENTRY: &str = "multiproc::manager::serve_ready";

// linkme places the entries in a link section; that is all the unsafety there is.
#[allow(unsafe_code)]
#[linkme::distributed_slice(crate::runtime::registry::ENTRIES)]
static SERVE: Entry = Entry {
    name: SERVE_ENTRY,
    kind: multiproc_core::EntryKind::Function,
    type_id: || crate::__private::type_id_of(&serve_manager),
    run: |args| crate::__private::run_function(serve_manager, args),
    task: crate::pool::not_a_task,
};

#[allow(unsafe_code)]
#[linkme::distributed_slice(crate::runtime::registry::ENTRIES)]
static SERVE_READY: Entry = Entry {
    name: SERVE_READY_ENTRY,
    kind: multiproc_core::EntryKind::Function,
    type_id: || crate::__private::type_id_of(&serve_manager_ready),
    run: |args| crate::__private::run_function(serve_manager_ready, args),
    task: crate::pool::not_a_task,
};

// --- the client ------------------------------------------------------------------

/// Where a manager is and the key to it: what every proxy carries.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Target {
    address: Address,
    authkey: ByteBuf,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// A connection of this thread to a manager, and which server incarnation it
/// reached.
struct Link {
    conn: BlockingConnection,
    incarnation: u64,
    /// The rings in shared memory, for a server on this machine.
    fast: Option<channel::Channel>,
    /// Encoding and receiving buffers, reused.
    buf: Vec<u8>,
}

impl Link {
    fn exchange(&mut self, request: &Request) -> Result<Response, ManagerError> {
        let Some(fast) = &self.fast else {
            self.conn.send(request)?;
            return Ok(self.conn.recv::<Response>()?);
        };
        self.buf.clear();
        codec::encode_into(request, &mut self.buf)
            .map_err(|e| ManagerError::Encode(e.to_string()))?;
        fast.send(&self.buf, &mut self.conn)?;
        fast.recv(&mut self.buf, &mut self.conn)?;
        codec::decode(&self.buf).map_err(|e| ManagerError::Decode(e.to_string()))
    }
}

thread_local! {
    static LINKS: RefCell<HashMap<Target, Link>> = RefCell::new(HashMap::new());
}

impl Target {
    /// A new authenticated connection to the server.
    fn open(&self) -> Result<BlockingConnection, ManagerError> {
        let mut conn = multiproc_transport::client(&self.address, Some(&self.authkey)).map_err(
            |e| match e {
                TransportError::Auth(a) => ManagerError::Auth(a.to_string()),
                TransportError::Exhausted(x) => {
                    ManagerError::exhausted("cannot connect to the manager", x)
                }
                e => ManagerError::Connect(format!("{}: {e}", self.address)),
            },
        )?;
        // The manager's own links keep the control links' limit: its server buffers
        // each request whole.
        conn.set_max_frame_len(MAX_FRAME_LEN);
        Ok(conn)
    }

    /// Drops this thread's link, so that the next request connects afresh.
    fn drop_link(&self) {
        let _ = LINKS.try_with(|links| links.borrow_mut().remove(self));
    }

    fn connect(&self) -> Result<Link, ManagerError> {
        let mut conn = self.open()?;
        conn.send(&Request::Hello)?;
        let incarnation = match conn.recv::<Response>()? {
            Response::Hello { incarnation } => incarnation,
            other => return Err(unexpected(&other)),
        };
        let mut link = Link {
            conn,
            incarnation,
            fast: None,
            buf: Vec::new(),
        };
        // A server on this machine (a Unix socket) maps rings of ours; if it cannot
        // (another pid namespace), the socket carries everything.
        if !matches!(self.address, Address::Tcp(_)) {
            let (fast, rings) = channel::Channel::create()?;
            link.conn.send(&Request::Upgrade { rings })?;
            if let Response::Done = link.conn.recv::<Response>()? {
                link.fast = Some(fast);
            }
        }
        Ok(link)
    }

    /// Sends `request` on this thread's link (made, or made again, as needed) and
    /// returns the answer and the server's incarnation. A link that breaks is
    /// dropped, so the next request connects afresh.
    fn ask(&self, request: &Request) -> Result<(Response, u64), ManagerError> {
        self.ask_checked(request, |_| Ok(None))
    }

    /// As [`ask`](Target::ask), after `check` has seen the incarnation of the
    /// server the link reaches: it may replace the request (an object found again
    /// by name) or refuse to send it at all.
    fn ask_checked(
        &self,
        request: &Request,
        check: impl FnOnce(u64) -> Result<Option<Request>, ManagerError>,
    ) -> Result<(Response, u64), ManagerError> {
        let incarnation = self.link_incarnation()?;
        let replaced = check(incarnation)?;
        let request = replaced.as_ref().unwrap_or(request);
        LINKS.with(|links| {
            let mut links = links.borrow_mut();
            let link = links
                .get_mut(self)
                .ok_or_else(|| ManagerError::Gone("the link broke".into()))?;
            match link.exchange(request) {
                Ok(Response::Fault(e)) => Err(e),
                Ok(r) => Ok((r, link.incarnation)),
                Err(e @ (ManagerError::Decode(_) | ManagerError::Encode(_))) => Err(e),
                Err(e) => {
                    links.remove(self);
                    Err(match e {
                        ManagerError::Gone(_) => e,
                        other => ManagerError::Gone(other.to_string()),
                    })
                }
            }
        })
    }

    /// This thread's link to the server (made if needed): the server's incarnation.
    fn link_incarnation(&self) -> Result<u64, ManagerError> {
        LINKS.with(|links| {
            let mut links = links.borrow_mut();
            if let Some(link) = links.get(self) {
                return Ok(link.incarnation);
            }
            let link = self.connect()?;
            let incarnation = link.incarnation;
            links.insert(self.clone(), link);
            Ok(incarnation)
        })
    }
}

fn unexpected(r: &Response) -> ManagerError {
    ManagerError::Decode(format!("unexpected answer {r:?}"))
}

/// Which object a proxy names, in which incarnation of its server.
#[derive(Debug, Clone, Copy)]
struct Resolved {
    id: u64,
    incarnation: u64,
}

/// A proxy to an object of any type (Python's `BaseProxy`): [`call`](Proxy::call)
/// runs one of its registered methods. The typed proxies are built on it.
#[derive(Clone)]
pub struct Proxy {
    target: Target,
    typeid: String,
    /// The name it was looked up by, to find its object again after a restart.
    /// Such a proxy holds no reference: a published object lives as long as its
    /// server.
    name: Option<String>,
    resolved: Arc<Mutex<Resolved>>,
    /// The reference this proxy and its clones hold at the server, given back when
    /// the last of them is dropped (`None`: found by name, or its server was gone).
    #[expect(dead_code, reason = "a guard: its drop gives the reference back")]
    held: Option<Arc<Held>>,
}

/// One reference of this process to an object.
struct Held {
    tx: std::sync::mpsc::Sender<refs::Msg>,
    id: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Queued, never waited for; an error is a server gone, with its objects.
        let _ = self.tx.send(refs::Msg::Op(wire::RefOp::Release(self.id)));
    }
}

/// The reference a proxy decoded here takes for object `id` of `target`'s server
/// incarnation `incarnation` (`None` when that server is not there).
fn hold(target: &Target, id: u64, incarnation: u64) -> Option<Arc<Held>> {
    let link = refs::link(target, Some(incarnation)).ok()?;
    link.tx.send(refs::Msg::Op(refs::decode_op(id))).ok()?;
    Some(Arc::new(Held { tx: link.tx, id }))
}

#[derive(Serialize, Deserialize)]
struct ProxyWire {
    target: Target,
    typeid: String,
    name: Option<String>,
    id: u64,
    incarnation: u64,
}

impl Serialize for Proxy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = *self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        if self.name.is_none() {
            self.lend(r);
        }
        ProxyWire {
            target: self.target.clone(),
            typeid: self.typeid.clone(),
            name: self.name.clone(),
            id: r.id,
            incarnation: r.incarnation,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Proxy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Proxy, D::Error> {
        let w = ProxyWire::deserialize(d)?;
        let held = match w.name {
            None => hold(&w.target, w.id, w.incarnation),
            Some(_) => None,
        };
        Ok(Proxy {
            target: w.target,
            typeid: w.typeid,
            name: w.name,
            resolved: Arc::new(Mutex::new(Resolved {
                id: w.id,
                incarnation: w.incarnation,
            })),
            held,
        })
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = *self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("Proxy")
            .field("typeid", &self.typeid)
            .field("id", &r.id)
            .field("address", &self.target.address)
            .finish()
    }
}

impl Proxy {
    /// Lends the object one reference for this encoding, taken by whoever decodes
    /// it: the object then outlives this proxy until the copy in flight is
    /// decoded. Waited for, so that the credit is there before the bytes are.
    fn lend(&self, r: Resolved) {
        let lent = self
            .target
            .ask_checked(&Request::Lend { id: r.id }, |incarnation| {
                if incarnation == r.incarnation {
                    Ok(None)
                } else {
                    Err(ManagerError::Restarted)
                }
            });
        if let Err(e) = lent {
            // The copy still encodes: its calls will fail as this proxy's would.
            tracing::debug!("a manager proxy encoded without a lent reference: {e}");
        }
    }

    /// Its type's name.
    pub fn typeid(&self) -> &str {
        &self.typeid
    }

    /// Runs `method` with `args` (a tuple for several) on the object; its result.
    ///
    /// # Errors
    ///
    /// [`ManagerError::UnknownMethod`], [`ManagerError::Args`] (the server could not
    /// decode `args` as the method's), [`ManagerError::Decode`] (the result is not
    /// an `R`), [`ManagerError::Gone`], [`ManagerError::Restarted`], and the
    /// method's own errors.
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R, ManagerError> {
        let bytes = self.call_raw(method, args)?;
        codec::decode(&bytes).map_err(|e| ManagerError::Decode(e.to_string()))
    }

    fn call_raw<A: Serialize + ?Sized>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<Vec<u8>, ManagerError> {
        let args =
            ByteBuf::from(codec::encode(args).map_err(|e| ManagerError::Encode(e.to_string()))?);
        let r = *self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        let request = Request::Call {
            id: r.id,
            method: method.to_string(),
            args,
        };
        let (response, _) = self.target.ask_checked(&request, |incarnation| {
            if incarnation == r.incarnation {
                return Ok(None);
            }
            // Another server than the one that made the object (restarted): its
            // objects went with the old one, and an object number here may name
            // another object. One found by name may be there again.
            let Some(name) = &self.name else {
                return Err(ManagerError::Restarted);
            };
            let (id, incarnation) = lookup(&self.target, name, &self.typeid)?;
            *self.resolved.lock().unwrap_or_else(|e| e.into_inner()) = Resolved { id, incarnation };
            let Request::Call { method, args, .. } = &request else {
                unreachable!("built above")
            };
            Ok(Some(Request::Call {
                id,
                method: method.clone(),
                args: args.clone(),
            }))
        })?;
        match response {
            Response::Value(v) => Ok(v.into_vec()),
            other => Err(unexpected(&other)),
        }
    }
}

fn lookup(target: &Target, name: &str, expected: &str) -> Result<(u64, u64), ManagerError> {
    let (response, incarnation) = target.ask(&Request::Lookup {
        name: name.to_string(),
    })?;
    match response {
        Response::Object { id, typeid } if typeid == expected || expected.is_empty() => {
            Ok((id, incarnation))
        }
        Response::Object { typeid, .. } => Err(ManagerError::WrongType {
            name: name.to_string(),
            expected: expected.to_string(),
            found: typeid,
        }),
        other => Err(unexpected(&other)),
    }
}

/// A typed proxy: a [`Proxy`] to an object of one type.
pub trait TypedProxy: Sized {
    /// The manager type it is for (`dict`, `queue`, or a registered name).
    const TYPEID: &'static str;
    /// Wraps a proxy of that type.
    fn from_proxy(proxy: Proxy) -> Self;
    /// The proxy inside.
    fn proxy(&self) -> &Proxy;
}

impl TypedProxy for Proxy {
    const TYPEID: &'static str = "";
    fn from_proxy(proxy: Proxy) -> Self {
        proxy
    }
    fn proxy(&self) -> &Proxy {
        self
    }
}

fn enc<T: Serialize + ?Sized>(v: &T) -> Result<ByteBuf, ManagerError> {
    codec::encode(v)
        .map(ByteBuf::from)
        .map_err(|e| ManagerError::Encode(e.to_string()))
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, ManagerError> {
    codec::decode(b).map_err(|e| ManagerError::Decode(e.to_string()))
}

/// As [`dec`], for a copy of a value that stays in its managed object.
fn peek<T: DeserializeOwned>(b: &[u8]) -> Result<T, ManagerError> {
    refs::sharing(|| dec(b))
}

macro_rules! typed_proxy {
    ($(#[$doc:meta])* $name:ident<$($t:ident),*>, $typeid:literal) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize)]
        #[serde(transparent, bound = "")]
        pub struct $name<$($t),*> {
            proxy: Proxy,
            #[serde(skip)]
            _t: PhantomData<fn($($t),*)>,
        }

        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                $name { proxy: self.proxy.clone(), _t: PhantomData }
            }
        }

        impl<$($t),*> fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.proxy).finish()
            }
        }

        impl<$($t),*> TypedProxy for $name<$($t),*> {
            const TYPEID: &'static str = $typeid;
            fn from_proxy(proxy: Proxy) -> Self {
                $name { proxy, _t: PhantomData }
            }
            fn proxy(&self) -> &Proxy {
                &self.proxy
            }
        }
    };
}

typed_proxy!(
    /// A proxy to a manager's dict (Python's `DictProxy`), keys `K` and values `V`.
    /// Keys are the same key when they encode the same. Use
    /// [`Dynamic`](multiproc_core::Dynamic) for Python's mixed dicts.
    DictProxy<K, V>,
    "dict"
);
typed_proxy!(
    /// A proxy to a manager's list (Python's `ListProxy`).
    ListProxy<T>,
    "list"
);
typed_proxy!(
    /// A proxy to a manager's namespace (Python's `Namespace`): attributes by name,
    /// each of its own type.
    NamespaceProxy<>,
    "namespace"
);
typed_proxy!(
    /// A proxy to a manager's queue (Python's `Manager().Queue()`, a `queue.Queue`).
    QueueProxy<T>,
    "queue"
);
typed_proxy!(
    /// A proxy to a manager's lock (Python's `Manager().Lock()`). It is released when
    /// the connection of the thread that holds it closes, and the next holder is told.
    LockProxy<>,
    "lock"
);
typed_proxy!(
    /// A proxy to a manager's event.
    EventProxy<>,
    "event"
);
typed_proxy!(
    /// A proxy to a manager's value (Python's `Manager().Value()`).
    ValueProxy<T>,
    "value"
);

fn millis(timeout: Option<Duration>) -> Option<u64> {
    timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// `d[k] = v`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn set(&self, k: &K, v: &V) -> Result<(), ManagerError> {
        self.proxy.call("set", &(enc(k)?, enc(v)?))
    }

    /// `d.get(k)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Decode`] (a value of another type).
    pub fn get(&self, k: &K) -> Result<Option<V>, ManagerError> {
        let v: Option<ByteBuf> = self.proxy.call("get", &(enc(k)?,))?;
        v.map(|b| peek(&b)).transpose()
    }

    /// `d.pop(k, None)`.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn remove(&self, k: &K) -> Result<Option<V>, ManagerError> {
        let v: Option<ByteBuf> = self.proxy.call("remove", &(enc(k)?,))?;
        v.map(|b| dec(&b)).transpose()
    }

    /// `k in d`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn contains(&self, k: &K) -> Result<bool, ManagerError> {
        self.proxy.call("contains", &(enc(k)?,))
    }

    /// `len(d)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn len(&self) -> Result<usize, ManagerError> {
        Ok(self.proxy.call::<_, u64>("len", &())? as usize)
    }

    /// Whether it is empty.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// A copy of its items, in insertion order (Python's `d.copy()`, `_getvalue()`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        let items: Vec<(ByteBuf, ByteBuf)> = self.proxy.call("items", &())?;
        items
            .into_iter()
            .map(|(k, v)| Ok((peek(&k)?, peek(&v)?)))
            .collect()
    }

    /// Its keys, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        let keys: Vec<ByteBuf> = self.proxy.call("keys", &())?;
        keys.iter().map(|k| peek(k)).collect()
    }

    /// Adds every pair (Python's `update`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn update(&self, items: &[(K, V)]) -> Result<(), ManagerError> {
        let items = items
            .iter()
            .map(|(k, v)| Ok((enc(k)?, enc(v)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        self.proxy.call("update", &(items,))
    }

    /// Removes everything.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.proxy.call("clear", &())
    }
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// `l.append(v)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn append(&self, v: &T) -> Result<(), ManagerError> {
        self.proxy.call("append", &(enc(v)?,))
    }

    /// `l.extend(vs)`.
    ///
    /// # Errors
    ///
    /// As [`append`](ListProxy::append).
    pub fn extend(&self, vs: &[T]) -> Result<(), ManagerError> {
        let vs = vs.iter().map(enc).collect::<Result<Vec<_>, _>>()?;
        self.proxy.call("extend", &(vs,))
    }

    /// `l[i]` (negative from the end).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Index`], [`ManagerError::Gone`], [`ManagerError::Decode`].
    pub fn get(&self, i: i64) -> Result<T, ManagerError> {
        let v: ByteBuf = self.proxy.call("get", &(i,))?;
        peek(&v)
    }

    /// `l[i] = v`.
    ///
    /// # Errors
    ///
    /// As [`get`](ListProxy::get).
    pub fn set(&self, i: i64, v: &T) -> Result<(), ManagerError> {
        self.proxy.call("set", &(i, enc(v)?))
    }

    /// `l.insert(i, v)`.
    ///
    /// # Errors
    ///
    /// As [`append`](ListProxy::append).
    pub fn insert(&self, i: i64, v: &T) -> Result<(), ManagerError> {
        self.proxy.call("insert", &(i, enc(v)?))
    }

    /// `l.pop(i)` (the last without an index).
    ///
    /// # Errors
    ///
    /// As [`get`](ListProxy::get).
    pub fn pop(&self, i: Option<i64>) -> Result<T, ManagerError> {
        let v: ByteBuf = self.proxy.call("pop", &(i,))?;
        dec(&v)
    }

    /// `len(l)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn len(&self) -> Result<usize, ManagerError> {
        Ok(self.proxy.call::<_, u64>("len", &())? as usize)
    }

    /// Whether it is empty.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// A copy of its items (Python's `l[:]`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Decode`].
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        let items: Vec<ByteBuf> = self.proxy.call("items", &())?;
        items.iter().map(|b| peek(b)).collect()
    }

    /// `l.reverse()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn reverse(&self) -> Result<(), ManagerError> {
        self.proxy.call("reverse", &())
    }
}

impl NamespaceProxy {
    /// `ns.name = v`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn set<T: Serialize>(&self, name: &str, v: &T) -> Result<(), ManagerError> {
        self.proxy.call("set", &(name, enc(v)?))
    }

    /// `getattr(ns, name, None)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Decode`].
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        let v: Option<ByteBuf> = self.proxy.call("get", &(name,))?;
        v.map(|b| peek(&b)).transpose()
    }

    /// `del ns.name`; whether it was there.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn del(&self, name: &str) -> Result<bool, ManagerError> {
        self.proxy.call("del", &(name,))
    }
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// `q.put(item, block, timeout)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Full`], [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn put(
        &self,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), ManagerError> {
        self.proxy
            .call("put", &(enc(item)?, block, millis(timeout)))
    }

    /// `q.get(block, timeout)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Empty`], [`ManagerError::Gone`] (also while waiting),
    /// [`ManagerError::Decode`].
    pub fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T, ManagerError> {
        let v: ByteBuf = self.proxy.call("get", &(block, millis(timeout)))?;
        dec(&v)
    }

    /// `q.qsize()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn qsize(&self) -> Result<usize, ManagerError> {
        Ok(self.proxy.call::<_, u64>("qsize", &())? as usize)
    }

    /// `q.task_done()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Misuse`] for one too many; [`ManagerError::Gone`].
    pub fn task_done(&self) -> Result<(), ManagerError> {
        self.proxy.call("task_done", &())
    }

    /// `q.join()`, at most `timeout`: whether every item was done.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn join(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        self.proxy.call("join", &(millis(timeout),))
    }
}

impl LockProxy {
    /// `lock.acquire(block, timeout)`: whether it was acquired.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Misuse`] with "owner died" when acquired after its holder's
    /// process died holding it (acquired all the same); [`ManagerError::Gone`].
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        let (got, died): (bool, bool) = self.proxy.call("acquire", &(block, millis(timeout)))?;
        if died {
            return Err(ManagerError::Misuse(
                "acquired, but its previous holder died holding it".into(),
            ));
        }
        Ok(got)
    }

    /// `lock.release()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Misuse`] when it is not held; [`ManagerError::Gone`].
    pub fn release(&self) -> Result<(), ManagerError> {
        self.proxy.call("release", &())
    }
}

impl EventProxy {
    /// `e.set()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn set(&self) -> Result<(), ManagerError> {
        self.proxy.call("set", &())
    }

    /// `e.clear()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.proxy.call("clear", &())
    }

    /// `e.is_set()`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        self.proxy.call("is_set", &())
    }

    /// `e.wait(timeout)`: whether it is set.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`] (also while waiting).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        self.proxy.call("wait", &(millis(timeout),))
    }
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// `v.value`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Decode`].
    pub fn get(&self) -> Result<T, ManagerError> {
        let v: ByteBuf = self.proxy.call("get", &())?;
        peek(&v)
    }

    /// `v.value = x`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn set(&self, v: &T) -> Result<(), ManagerError> {
        self.proxy.call("set", &(enc(v)?,))
    }
}

// --- the manager -------------------------------------------------------------------

/// Python's `Manager()` / `BaseManager`: a server process (named `Manager-N`)
/// holding shared objects, or a connection to one elsewhere
/// ([`connect`](Manager::connect)). Dropping a manager that started its server
/// shuts the server down.
#[derive(Debug)]
pub struct Manager {
    target: Target,
    process: Option<crate::Process>,
}

/// How to start a manager.
#[derive(Debug, Clone)]
pub struct ManagerBuilder {
    config: ManagerConfig,
}

impl Manager {
    /// Starts a manager's server as a child process, on a fresh abstract Unix
    /// socket with a random authkey (Python's `Manager()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`].
    pub fn start() -> Result<Manager, ManagerError> {
        Manager::builder().start()
    }

    /// A builder, for an address, a key and registered types.
    pub fn builder() -> ManagerBuilder {
        let mut key = [0u8; 32];
        let _ = rustix::rand::getrandom(&mut key, rustix::rand::GetRandomFlags::empty());
        ManagerBuilder {
            config: ManagerConfig::new(Address::unique_abstract(), &key),
        }
    }

    /// Connects to a manager elsewhere (Python's `BaseManager.connect`), perhaps of
    /// another process tree or machine.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Connect`], [`ManagerError::Auth`] (a wrong key).
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Manager, ManagerError> {
        let target = Target {
            address: address.clone(),
            authkey: ByteBuf::from(authkey.to_vec()),
        };
        target.ask(&Request::Hello)?;
        Ok(Manager {
            target,
            process: None,
        })
    }

    /// As [`connect`](Manager::connect), waiting up to `timeout` for a server that
    /// is not listening yet (one its supervisor is starting or restarting).
    ///
    /// # Errors
    ///
    /// As [`connect`](Manager::connect), once `timeout` has run out.
    pub fn connect_timeout(
        address: &Address,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<Manager, ManagerError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match Manager::connect(address, authkey) {
                Err(ManagerError::Connect(_) | ManagerError::Gone(_))
                    if std::time::Instant::now() + pause < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                out => return out,
            }
        }
    }

    /// Where its server listens.
    pub fn address(&self) -> &Address {
        &self.target.address
    }

    /// Its authkey.
    pub fn authkey(&self) -> &[u8] {
        &self.target.authkey
    }

    /// The server's process, when this manager started it.
    pub fn process(&self) -> Option<&crate::Process> {
        self.process.as_ref()
    }

    /// Creates an object of `typeid` (built-in or registered) from `args`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::UnknownType`], [`ManagerError::Args`], [`ManagerError::Gone`].
    pub fn create<P: TypedProxy, A: Serialize + ?Sized>(
        &self,
        typeid: &str,
        args: &A,
    ) -> Result<P, ManagerError> {
        let args = enc(args)?;
        let mut tries = 0;
        let (response, link) = loop {
            let link = refs::link(&self.target, None)?;
            let request = Request::Create {
                typeid: typeid.to_string(),
                args: args.clone(),
                owner: link.owner,
            };
            let asked = self.target.ask_checked(&request, |incarnation| {
                if incarnation == link.incarnation {
                    Ok(None)
                } else {
                    Err(ManagerError::Restarted)
                }
            });
            match asked {
                // This thread's link and the reference link reach different
                // incarnations of the server (it restarted): both connect afresh.
                Err(ManagerError::Restarted) if tries == 0 => {
                    tries += 1;
                    self.target.drop_link();
                    refs::forget(&self.target);
                }
                Err(ManagerError::Restarted) => {
                    return Err(ManagerError::Gone("the manager keeps restarting".into()));
                }
                other => break (other?.0, link),
            }
        };
        match response {
            Response::Created { id } => Ok(P::from_proxy(Proxy {
                target: self.target.clone(),
                typeid: typeid.to_string(),
                name: None,
                resolved: Arc::new(Mutex::new(Resolved {
                    id,
                    incarnation: link.incarnation,
                })),
                held: Some(Arc::new(Held { tx: link.tx, id })),
            })),
            other => Err(unexpected(&other)),
        }
    }

    /// How many objects the server holds (Python's `_number_of_objects`), once it
    /// has applied every reference this process gave back before the call: a
    /// proxy's drop is otherwise sent in the background.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn object_count(&self) -> Result<usize, ManagerError> {
        refs::flush(&self.target);
        match self.target.ask(&Request::Count)?.0 {
            Response::Count { objects } => Ok(usize::try_from(objects).unwrap_or(usize::MAX)),
            other => Err(unexpected(&other)),
        }
    }

    /// A new dict (Python's `manager.dict()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn dict<K: Serialize, V: Serialize>(&self) -> Result<DictProxy<K, V>, ManagerError> {
        self.create("dict", &(Vec::<(ByteBuf, ByteBuf)>::new(),))
    }

    /// A new list holding `items` (Python's `manager.list(items)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn list<T: Serialize>(&self, items: &[T]) -> Result<ListProxy<T>, ManagerError> {
        let items = items.iter().map(enc).collect::<Result<Vec<_>, _>>()?;
        self.create("list", &(items,))
    }

    /// A new namespace.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn namespace(&self) -> Result<NamespaceProxy, ManagerError> {
        self.create("namespace", &())
    }

    /// A new queue of at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn queue<T: Serialize>(&self, maxsize: usize) -> Result<QueueProxy<T>, ManagerError> {
        self.create("queue", &(maxsize as u64,))
    }

    /// A new lock.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn lock(&self) -> Result<LockProxy, ManagerError> {
        self.create("lock", &())
    }

    /// A new event.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`].
    pub fn event(&self) -> Result<EventProxy, ManagerError> {
        self.create("event", &())
    }

    /// A new value.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Gone`], [`ManagerError::Encode`].
    pub fn value<T: Serialize>(&self, v: &T) -> Result<ValueProxy<T>, ManagerError> {
        self.create("value", &(enc(v)?,))
    }

    /// Publishes `proxy`'s object as `name`, for [`lookup`](Manager::lookup) from
    /// other processes and trees (Python's `register('get_queue', callable=...)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::UnknownObject`], [`ManagerError::Gone`].
    pub fn publish<P: TypedProxy>(&self, name: &str, proxy: &P) -> Result<(), ManagerError> {
        let id = proxy
            .proxy()
            .resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .id;
        match self
            .target
            .ask(&Request::Publish {
                name: name.to_string(),
                id,
            })?
            .0
        {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// The object published as `name`, as a `P` (its type is checked).
    ///
    /// # Errors
    ///
    /// [`ManagerError::UnknownName`], [`ManagerError::WrongType`],
    /// [`ManagerError::Gone`].
    pub fn lookup<P: TypedProxy>(&self, name: &str) -> Result<P, ManagerError> {
        let (response, incarnation) = self.target.ask(&Request::Lookup {
            name: name.to_string(),
        })?;
        match response {
            Response::Object { id, typeid } if P::TYPEID.is_empty() || typeid == P::TYPEID => {
                Ok(P::from_proxy(Proxy {
                    target: self.target.clone(),
                    typeid,
                    name: Some(name.to_string()),
                    resolved: Arc::new(Mutex::new(Resolved { id, incarnation })),
                    held: None,
                }))
            }
            Response::Object { typeid, .. } => Err(ManagerError::WrongType {
                name: name.to_string(),
                expected: P::TYPEID.to_string(),
                found: typeid,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Stops the server this manager started and waits for its process (Python's
    /// `shutdown`); for a connected manager, only forgets it.
    ///
    /// # Errors
    ///
    /// None that matter: a server already gone is shut down.
    pub fn shutdown(mut self) -> Result<(), ManagerError> {
        self.stop();
        Ok(())
    }

    fn stop(&mut self) {
        let Some(process) = self.process.take() else {
            return;
        };
        let _ = self.target.ask(&Request::Shutdown);
        LINKS.with(|links| links.borrow_mut().remove(&self.target));
        let _ = crate::runtime::block_on(process.stop(crate::DEFAULT_SHUTDOWN_TIMEOUT));
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ManagerBuilder {
    /// Listens on `address` (a TCP address serves other machines' trees).
    pub fn address(mut self, address: Address) -> Self {
        self.config.address = address;
        self
    }

    /// Uses `authkey` (Python's `authkey=`).
    pub fn authkey(mut self, authkey: &[u8]) -> Self {
        self.config.authkey = ByteBuf::from(authkey.to_vec());
        self
    }

    /// Adds the types `f` registers (`f` registered with `manager_types!`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`] when `f` is not registered.
    pub fn types<F: Fn(&mut Registry) + 'static>(mut self, f: F) -> Result<Self, ManagerError> {
        self.config = self.config.types(f)?;
        Ok(self)
    }

    /// The configuration, for [`serve_manager`] in a process of your own (a
    /// supervised child, or this process).
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// Starts the server as a child process named `Manager-N`, and waits until it
    /// listens.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`]: the process did not start, or cannot listen;
    /// [`ManagerError::Exhausted`] when the system has no room for its process or
    /// its socket (the message names the limit).
    pub fn start(self) -> Result<Manager, ManagerError> {
        const WHAT: &str = "cannot start the manager";
        let start = |e: &dyn fmt::Display| ManagerError::Start(e.to_string());
        let (ours, theirs) = multiproc_transport::pipe(true).map_err(|e| match e {
            TransportError::Exhausted(x) => ManagerError::exhausted(WHAT, x),
            e => start(&e),
        })?;
        let entry = crate::runtime::registry::by_name(SERVE_READY_ENTRY)
            .ok_or_else(|| start(&"the manager entry is not registered"))?;
        let process = crate::Process::with_entry(entry, &(self.config.clone(), theirs));
        let name = process.identity().default_name("Manager");
        let mut process = process.named(name);
        crate::runtime::block_on(process.start()).map_err(|e| match e {
            crate::Error::Exhausted { source, .. } => ManagerError::exhausted(WHAT, source),
            e => start(&e),
        })?;
        let mut ours = BlockingConnection::from(ours);
        let address = match ours.recv::<Result<Address, String>>() {
            Ok(Ok(address)) => address,
            Ok(Err(e)) => return Err(ManagerError::Start(e)),
            Err(e) => return Err(start(&format!("the server ended before it listened: {e}"))),
        };
        let target = Target {
            address,
            authkey: self.config.authkey.clone(),
        };
        target.ask(&Request::Hello)?;
        Ok(Manager {
            target,
            process: Some(process),
        })
    }
}
