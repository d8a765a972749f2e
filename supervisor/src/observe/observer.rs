//! The live observer: an HTTP server in the root that shows the tree in a browser,
//! updating as it changes, and serves the same as JSON and server-sent events.
//!
//! # Layout
//!
//! - This file sets an observer up ([`ObserverBuilder`]), starts it and accepts its
//!   connections; [`ObserverHandle`] stops it.
//! - `feed.rs` takes the snapshots and reads the events, `history.rs` keeps the
//!   figures over time, `json.rs` renders them, `http.rs` answers the requests, and
//!   `page/` is the page, built into the binary.
//!
//! # Concurrency
//!
//! Two tasks on the process runtime, the feed and the accept loop, and one task per
//! connection (and per live stream); all of them end when the handle says stop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

mod feed;
mod history;
mod http;
mod json;

use feed::Feed;
use http::Ctx;

/// Where an observer listens unless told otherwise: port 7878 of the loopback
/// interface, which only this host can reach.
pub const DEFAULT_OBSERVER_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7878));
/// How often the observer takes a snapshot of the tree.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How far back the observer keeps each process's figures.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(5 * 60);

/// Connections served at once; more wait in the listener's backlog.
const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most samples kept of one process, whatever the interval and the window.
const MAX_SAMPLES: usize = 10_000;
/// The longest token accepted.
const MAX_TOKEN_LEN: usize = 256;

/// Why an observer did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObserverError {
    /// The observer serves the tree from its root; this process is a child.
    #[error("the observer runs in the root process only, and {name} is a child")]
    NotRoot {
        /// This process's name.
        name: String,
    },
    /// Something else listens on the address.
    #[error("cannot serve the observer on {addr}: the address is already in use")]
    AddressInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address could not be listened on for another reason.
    #[error("cannot serve the observer on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// An address other hosts can reach, with no token to keep them out.
    #[error(
        "refusing to serve the observer on {addr}, which is not a loopback address, without a token"
    )]
    RemoteWithoutToken {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The token is empty, too long, or holds characters a URL would have to escape.
    #[error(
        "the observer's token must be 1 to {MAX_TOKEN_LEN} characters of A-Z, a-z, 0-9, `-`, `.`, `_` or `~`"
    )]
    InvalidToken,
    /// A setting out of range: the field and its value.
    #[error("invalid observer setting {field}: {value}")]
    InvalidSetting {
        /// The setting.
        field: &'static str,
        /// Its value, formatted.
        value: String,
    },
    /// The process runtime could not be started.
    #[error("the process runtime did not start: {0}")]
    Runtime(String),
}

/// The live observer of the tree. Start one with [`Observer::builder`] (or
/// [`Observer::serve`] for the defaults), in the root process.
///
/// It serves, on a loopback address unless told otherwise:
///
/// - `/`: a page that shows the tree, each process's state, restarts, last exit,
///   memory and CPU with their last minutes, and a log of exits and restarts as they
///   happen;
/// - `/api/snapshot`: the tree now, as JSON;
/// - `/api/events`: server-sent events: the tree every interval, and each exit and
///   supervision event the moment it happens;
/// - `/api/history` (`?name=NAME` for one process): each process's figures over the
///   last minutes.
///
/// # Examples
///
/// ```
/// use multiproc_supervisor::observe::Observer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let observer = Observer::builder()
///     .bind("127.0.0.1:0".parse()?)
///     .token("s3cret")
///     .serve()
///     .await?;
/// assert!(observer.local_addr().ip().is_loopback());
/// assert!(observer.url().ends_with("/?token=s3cret"));
/// observer.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub enum Observer {}

impl Observer {
    /// An observer's settings, to change before [`ObserverBuilder::serve`].
    pub fn builder() -> ObserverBuilder {
        ObserverBuilder {
            addr: DEFAULT_OBSERVER_ADDR,
            title: None,
            token: None,
            interval: DEFAULT_SAMPLE_INTERVAL,
            history: DEFAULT_HISTORY,
        }
    }

    /// Starts an observer on `addr`, with no token and the default settings.
    ///
    /// # Errors
    ///
    /// As [`ObserverBuilder::serve`].
    pub async fn serve(addr: SocketAddr) -> Result<ObserverHandle, ObserverError> {
        Observer::builder().bind(addr).serve().await
    }
}

/// An observer's settings.
#[derive(Clone)]
pub struct ObserverBuilder {
    addr: SocketAddr,
    title: Option<String>,
    token: Option<String>,
    interval: Duration,
    history: Duration,
}

impl std::fmt::Debug for ObserverBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverBuilder")
            .field("addr", &self.addr)
            .field("title", &self.title)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("interval", &self.interval)
            .field("history", &self.history)
            .finish()
    }
}

impl ObserverBuilder {
    /// Listens on `addr` ([`DEFAULT_OBSERVER_ADDR`] unless set; port 0 for any free
    /// port). An address that is not a loopback one needs a [`token`](Self::token).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Requires `token` of every request but for the page's script and style: as
    /// `Authorization: Bearer TOKEN`, or `?token=TOKEN` in the URL (which
    /// [`ObserverHandle::url`] gives). Others get `401 Unauthorized`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Names the program on the page (its program name, as `ps` shows it in the
    /// children's titles, unless set): the service's name, say.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Takes a snapshot every `interval` ([`DEFAULT_SAMPLE_INTERVAL`] unless set).
    pub fn sample_every(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Keeps each process's figures over the last `window` ([`DEFAULT_HISTORY`] unless
    /// set; at most 10 000 samples).
    pub fn history(mut self, window: Duration) -> Self {
        self.history = window;
        self
    }

    fn validate(&self) -> Result<(), ObserverError> {
        if let Some(token) = &self.token {
            let fine = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
            if token.is_empty() || token.len() > MAX_TOKEN_LEN || !token.chars().all(fine) {
                return Err(ObserverError::InvalidToken);
            }
        } else if !self.addr.ip().is_loopback() {
            return Err(ObserverError::RemoteWithoutToken { addr: self.addr });
        }
        if self.interval.is_zero() {
            return Err(ObserverError::InvalidSetting {
                field: "sample_every",
                value: format!("{:?}", self.interval),
            });
        }
        if self.history < self.interval {
            return Err(ObserverError::InvalidSetting {
                field: "history",
                value: format!("{:?}, shorter than the interval", self.history),
            });
        }
        Ok(())
    }

    /// Starts the observer: listens, and takes its first snapshot. It runs on the
    /// process's runtime until its handle is shut down or dropped.
    ///
    /// # Errors
    ///
    /// [`ObserverError::NotRoot`] in a child process, [`ObserverError::AddressInUse`]
    /// or [`ObserverError::Bind`] when the address cannot be listened on,
    /// [`ObserverError::RemoteWithoutToken`] for an address other hosts can reach and
    /// no token, [`ObserverError::InvalidToken`] and
    /// [`ObserverError::InvalidSetting`] for bad settings.
    pub async fn serve(self) -> Result<ObserverHandle, ObserverError> {
        let me = crate::runtime::current::me();
        if me.parent.is_some() {
            return Err(ObserverError::NotRoot {
                name: me.name.clone(),
            });
        }
        self.validate()?;
        crate::runtime::ensure().map_err(|e| ObserverError::Runtime(e.to_string()))?;
        crate::runtime::run(self.start()).await
    }

    /// Binds and starts the tasks, on the process runtime.
    async fn start(self) -> Result<ObserverHandle, ObserverError> {
        let addr = self.addr;
        let bind_error = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::AddrInUse => ObserverError::AddressInUse { addr },
            _ => ObserverError::Bind { addr, source },
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let samples = (self.history.as_secs_f64() / self.interval.as_secs_f64()).ceil();
        let samples = (samples as usize).clamp(1, MAX_SAMPLES);
        let title = self
            .title
            .clone()
            .unwrap_or_else(|| crate::runtime::title::program().to_string());
        let feed = Arc::new(Feed::new(title, self.interval, samples));
        let (stop_tx, stop) = watch::channel(false);
        let sampler = tokio::spawn(feed::run(Arc::clone(&feed), stop.clone()));
        let ctx = Arc::new(Ctx {
            feed,
            token: self.token.clone(),
            local,
            stop: stop.clone(),
        });
        let accept = tokio::spawn(accept(listener, ctx, stop));
        tracing::info!(addr = %local, "observer serving");
        Ok(ObserverHandle {
            addr: local,
            token: self.token,
            stop: stop_tx,
            tasks: vec![sampler, accept],
        })
    }
}

/// A running observer: its address, and its end. Dropping it stops the observer too,
/// without waiting.
pub struct ObserverHandle {
    addr: SocketAddr,
    token: Option<String>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ObserverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ObserverHandle {
    /// The address it listens on (with the port the system chose, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL, with the token in it when there is one.
    pub fn url(&self) -> String {
        let host = match self.addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let mut url = format!("http://{host}:{}/", self.addr.port());
        if let Some(token) = &self.token {
            url.push_str("?token=");
            url.push_str(token);
        }
        url
    }

    /// Stops the observer: it stops listening, closes its connections and live
    /// streams, and forgets what it kept.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for ObserverHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Accepts connections until `stop`, each served in a task of its own; at the stop,
/// ends them all.
async fn accept(listener: TcpListener, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            got = listener.accept(), if connections.len() < MAX_CONNECTIONS => match got {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&ctx)));
                }
                Err(e) => {
                    // Out of descriptors, most likely: give the others time to close
                    // theirs rather than spin on the same error.
                    tracing::warn!(error = %e, "observer: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, ctx: Arc<Ctx>) {
    let service = service_fn(move |req| http::handle(req, Arc::clone(&ctx)));
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
