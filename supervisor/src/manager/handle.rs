//! [`Manager`]: a handle on a manager's server (Python's `Manager()` and
//! `BaseManager`), which creates, publishes and looks up its objects, and shuts down
//! the server it started.

use std::sync::Arc;
use std::time::Duration;

use multiproc_transport::Address;
use serde::Serialize;
use serde_bytes::ByteBuf;

use super::client::{LINKS, ServerAddr, unexpected};
use super::error::ManagerError;
use super::proxies::{
    DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy, QueueProxy, ValueProxy,
};
use super::proxy::{Held, Resolved, enc};
use super::proxy::{Proxy, TypedProxy};
use super::refs;
use super::wire::{Request, Response};

/// Python's `Manager()` / `BaseManager`: a server process (named `Manager-N`)
/// holding shared objects, or a connection to one elsewhere
/// ([`connect`](Manager::connect)). Dropping a manager that started its server
/// shuts the server down.
#[derive(Debug)]
pub struct Manager {
    pub(super) target: ServerAddr,
    pub(super) process: Option<crate::process::Process>,
}

impl Manager {
    /// Connects to a manager elsewhere (Python's `BaseManager.connect`), perhaps of
    /// another process tree or machine.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Connect`], [`ManagerError::Auth`] (a wrong key).
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Manager, ManagerError> {
        let target = ServerAddr {
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
    pub fn process(&self) -> Option<&crate::process::Process> {
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
            Response::Created { id } => Ok(P::from_proxy(Proxy::new(
                self.target.clone(),
                typeid.to_string(),
                None,
                Resolved {
                    id,
                    incarnation: link.incarnation,
                },
                Some(Arc::new(Held { tx: link.tx, id })),
            ))),
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
        self.found(name, response, incarnation)
    }

    /// A proxy to what a lookup of `name` found, when it is a `P`.
    pub(super) fn found<P: TypedProxy>(
        &self,
        name: &str,
        response: Response,
        incarnation: u64,
    ) -> Result<P, ManagerError> {
        match response {
            Response::Object { id, typeid } if P::TYPEID.is_empty() || typeid == P::TYPEID => {
                Ok(P::from_proxy(Proxy::new(
                    self.target.clone(),
                    typeid,
                    Some(name.to_string()),
                    Resolved { id, incarnation },
                    None,
                )))
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
        self.forget_links();
        let _ = crate::runtime::block_on(
            process.stop(crate::runtime::children::DEFAULT_SHUTDOWN_TIMEOUT),
        );
    }

    /// Closes this thread's link and this process's idle async links to the server.
    pub(super) fn forget_links(&self) {
        LINKS.with(|links| links.borrow_mut().remove(&self.target));
        super::async_link::forget(&self.target);
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop();
    }
}
