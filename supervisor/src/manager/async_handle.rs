//! [`Manager`]'s async methods: the blocking ones' twins, with an `_async` suffix
//! (the blocking ones came first and keep their names), for async code that must not
//! block its runtime's threads. They go through this process's async links.

use std::sync::Arc;
use std::time::Duration;

use multiproc_transport::Address;
use serde::Serialize;
use serde_bytes::ByteBuf;

use super::async_link::{self, AsyncLink};
use super::client::{ServerAddr, unexpected};
use super::error::ManagerError;
use super::handle::Manager;
use super::proxies::{
    DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy, QueueProxy, ValueProxy,
};
use super::proxy::{Held, Resolved, enc};
use super::proxy::{Proxy, TypedProxy};
use super::refs;
use super::wire::{Request, Response};

impl Manager {
    /// As [`start`](Manager::start), from async code.
    ///
    /// # Errors
    ///
    /// As [`start`](Manager::start).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_supervisor::{Manager, ManagerError};
    ///
    /// # fn main() -> Result<(), ManagerError> {
    /// multiproc_supervisor::init();
    /// multiproc_supervisor::block_on(async {
    ///     let manager = Manager::start_async().await?;
    ///     let d = manager.dict_async::<String, i64>().await?;
    ///     d.set_async(&"a".to_string(), &1).await?;
    ///     assert_eq!(d.get_async(&"a".to_string()).await?, Some(1));
    ///     manager.shutdown_async().await
    /// })
    /// # }
    /// ```
    pub async fn start_async() -> Result<Manager, ManagerError> {
        Manager::builder().start_async().await
    }

    /// As [`connect`](Manager::connect), from async code.
    ///
    /// # Errors
    ///
    /// As [`connect`](Manager::connect).
    pub async fn connect_async(address: &Address, authkey: &[u8]) -> Result<Manager, ManagerError> {
        let target = ServerAddr {
            address: address.clone(),
            authkey: ByteBuf::from(authkey.to_vec()),
        };
        AsyncLink::take(&target).await?.give_back(&target);
        Ok(Manager {
            target,
            process: None,
        })
    }

    /// As [`create`](Manager::create), from async code.
    ///
    /// # Errors
    ///
    /// As [`create`](Manager::create).
    pub async fn create_async<P: TypedProxy, A: Serialize + ?Sized>(
        &self,
        typeid: &str,
        args: &A,
    ) -> Result<P, ManagerError> {
        let args = enc(args)?;
        let mut tries = 0;
        loop {
            // The reference link may connect (a blocking handshake) the first time.
            let server = self.target.clone();
            let owner = tokio::task::spawn_blocking(move || refs::link(&server, None))
                .await
                .map_err(|e| ManagerError::Connect(format!("the connecting task failed: {e}")))??;
            let mut link = AsyncLink::take(&self.target).await?;
            if link.incarnation != owner.incarnation {
                // The reference link and this one reach different incarnations of
                // the server (it restarted): both connect afresh, once.
                if tries > 0 {
                    return Err(ManagerError::Gone("the manager keeps restarting".into()));
                }
                tries += 1;
                async_link::forget(&self.target);
                refs::forget(&self.target);
                continue;
            }
            let request = Request::Create {
                typeid: typeid.to_string(),
                args: args.clone(),
                owner: owner.owner,
            };
            let asked = link.ask(&request).await;
            let incarnation = link.incarnation;
            link.give_back(&self.target);
            return match asked? {
                Response::Created { id } => Ok(P::from_proxy(Proxy::new(
                    self.target.clone(),
                    typeid.to_string(),
                    None,
                    Resolved { id, incarnation },
                    Some(Arc::new(Held { tx: owner.tx, id })),
                ))),
                other => Err(unexpected(&other)),
            };
        }
    }

    /// Sends `request` on an async link of this process; the answer and the
    /// incarnation of the server that gave it.
    async fn ask_async(&self, request: &Request) -> Result<(Response, u64), ManagerError> {
        let mut link = AsyncLink::take(&self.target).await?;
        let asked = link.ask(request).await;
        let incarnation = link.incarnation;
        link.give_back(&self.target);
        Ok((asked?, incarnation))
    }

    /// As [`object_count`](Manager::object_count), from async code.
    ///
    /// # Errors
    ///
    /// As [`object_count`](Manager::object_count).
    pub async fn object_count_async(&self) -> Result<usize, ManagerError> {
        let server = self.target.clone();
        tokio::task::spawn_blocking(move || refs::flush(&server))
            .await
            .map_err(|e| ManagerError::Gone(format!("the flushing task failed: {e}")))?;
        match self.ask_async(&Request::Count).await?.0 {
            Response::Count { objects } => Ok(usize::try_from(objects).unwrap_or(usize::MAX)),
            other => Err(unexpected(&other)),
        }
    }

    /// As [`dict`](Manager::dict), from async code.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub async fn dict_async<K: Serialize, V: Serialize>(
        &self,
    ) -> Result<DictProxy<K, V>, ManagerError> {
        self.create_async("dict", &(Vec::<(ByteBuf, ByteBuf)>::new(),))
            .await
    }

    /// As [`list`](Manager::list), from async code.
    ///
    /// # Errors
    ///
    /// As [`list`](Manager::list).
    pub async fn list_async<T: Serialize>(
        &self,
        items: &[T],
    ) -> Result<ListProxy<T>, ManagerError> {
        let items = items.iter().map(enc).collect::<Result<Vec<_>, _>>()?;
        self.create_async("list", &(items,)).await
    }

    /// As [`namespace`](Manager::namespace), from async code.
    ///
    /// # Errors
    ///
    /// As [`namespace`](Manager::namespace).
    pub async fn namespace_async(&self) -> Result<NamespaceProxy, ManagerError> {
        self.create_async("namespace", &()).await
    }

    /// As [`queue`](Manager::queue), from async code.
    ///
    /// # Errors
    ///
    /// As [`queue`](Manager::queue).
    pub async fn queue_async<T: Serialize>(
        &self,
        maxsize: usize,
    ) -> Result<QueueProxy<T>, ManagerError> {
        self.create_async("queue", &(maxsize as u64,)).await
    }

    /// As [`lock`](Manager::lock), from async code.
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub async fn lock_async(&self) -> Result<LockProxy, ManagerError> {
        self.create_async("lock", &()).await
    }

    /// As [`event`](Manager::event), from async code.
    ///
    /// # Errors
    ///
    /// As [`event`](Manager::event).
    pub async fn event_async(&self) -> Result<EventProxy, ManagerError> {
        self.create_async("event", &()).await
    }

    /// As [`value`](Manager::value), from async code.
    ///
    /// # Errors
    ///
    /// As [`value`](Manager::value).
    pub async fn value_async<T: Serialize>(&self, v: &T) -> Result<ValueProxy<T>, ManagerError> {
        let v = enc(v)?;
        self.create_async("value", &(v,)).await
    }

    /// As [`publish`](Manager::publish), from async code.
    ///
    /// # Errors
    ///
    /// As [`publish`](Manager::publish).
    pub async fn publish_async<P: TypedProxy>(
        &self,
        name: &str,
        proxy: &P,
    ) -> Result<(), ManagerError> {
        let id = proxy
            .proxy()
            .resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .id;
        let request = Request::Publish {
            name: name.to_string(),
            id,
        };
        match self.ask_async(&request).await?.0 {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// As [`lookup`](Manager::lookup), from async code.
    ///
    /// # Errors
    ///
    /// As [`lookup`](Manager::lookup).
    pub async fn lookup_async<P: TypedProxy>(&self, name: &str) -> Result<P, ManagerError> {
        let request = Request::Lookup {
            name: name.to_string(),
        };
        let (response, incarnation) = self.ask_async(&request).await?;
        self.found(name, response, incarnation)
    }

    /// As [`shutdown`](Manager::shutdown), from async code.
    ///
    /// # Errors
    ///
    /// As [`shutdown`](Manager::shutdown).
    pub async fn shutdown_async(mut self) -> Result<(), ManagerError> {
        let Some(process) = self.process.take() else {
            return Ok(());
        };
        let _ = self.ask_async(&Request::Shutdown).await;
        self.forget_links();
        let _ = process
            .stop(crate::runtime::children::DEFAULT_SHUTDOWN_TIMEOUT)
            .await;
        Ok(())
    }

    /// As [`connect_timeout`](Manager::connect_timeout), from async code.
    ///
    /// # Errors
    ///
    /// As [`connect_timeout`](Manager::connect_timeout).
    pub async fn connect_timeout_async(
        address: &Address,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<Manager, ManagerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match Manager::connect_async(address, authkey).await {
                Err(ManagerError::Connect(_) | ManagerError::Gone(_))
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                out => return out,
            }
        }
    }
}
