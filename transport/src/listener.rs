//! `Listener` and `Client`: connections between processes that did not start each
//! other, over TCP or Unix sockets, with CPython's authkey handshake.
//!
//! The frames and the handshake are CPython's `multiprocessing.connection`, so a
//! CPython `Client(address, authkey=...)` can talk to a [`Listener`] here, and
//! [`Client`] to a CPython `Listener`, with `send_bytes` and `recv_bytes`.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{self, HANDSHAKE_TIMEOUT};
use crate::{BlockingConnection, DEFAULT_MAX_FRAME_LEN, Error, Result};

/// Where a listener listens, as Python's address families.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// `AF_INET`/`AF_INET6`: Python's `("host", port)`.
    Tcp(SocketAddr),
    /// `AF_UNIX` with a path: Python's `"/path/to/socket"`.
    Unix(PathBuf),
    /// A Linux abstract Unix socket (Python's `"\0name"`): it has no file, so none
    /// is left behind.
    Abstract(Vec<u8>),
}

impl Address {
    /// The first TCP address `host:port` resolves to.
    ///
    /// # Errors
    ///
    /// [`Error::Address`] when it resolves to nothing.
    pub fn tcp(addr: impl ToSocketAddrs + fmt::Debug) -> Result<Address> {
        addr.to_socket_addrs()
            .map_err(|e| Error::Address(format!("{addr:?}: {e}")))?
            .next()
            .map(Address::Tcp)
            .ok_or_else(|| Error::Address(format!("{addr:?} resolves to no address")))
    }

    /// A new abstract Unix address, unique to this process (Python's default
    /// `Listener()` address is a random socket file; an abstract one needs none).
    pub fn unique_abstract() -> Address {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut random = [0u8; 8];
        let _ = rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty());
        Address::Abstract(
            format!(
                "multiproc-{}-{}-{:016x}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed),
                u64::from_le_bytes(random)
            )
            .into_bytes(),
        )
    }

    fn unix(&self) -> Result<Option<UnixAddr>> {
        match self {
            Address::Tcp(_) => Ok(None),
            Address::Unix(path) => UnixAddr::from_pathname(path)
                .map(Some)
                .map_err(|e| Error::Address(format!("{}: {e}", path.display()))),
            Address::Abstract(name) => UnixAddr::from_abstract_name(name)
                .map(Some)
                .map_err(|e| Error::Address(format!("abstract socket: {e}"))),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Abstract(name) => write!(f, "\\0{}", String::from_utf8_lossy(name)),
        }
    }
}

enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
    Closed,
}

/// Python's `multiprocessing.connection.Listener`: accepts connections, each
/// authenticated with the authkey when there is one.
pub struct Listener {
    socket: Socket,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
    max_frame_len: usize,
    last_accepted: Option<String>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .field("max_frame_len", &self.max_frame_len)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Listens on `address` (a TCP port 0 takes a free port; see
    /// [`address`](Listener::address)). With an `authkey`, every accepted
    /// connection must pass the handshake.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] (the address is in use, the path's directory is missing),
    /// [`Error::Address`], [`Error::Exhausted`] (no descriptor left for the socket).
    pub fn bind(address: &Address, authkey: Option<&[u8]>) -> Result<Listener> {
        let (socket, address) = match address {
            Address::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(Error::creating)?;
                let bound = Address::Tcp(l.local_addr()?);
                (Socket::Tcp(l), bound)
            }
            other => {
                let addr = other.unix()?.expect("a Unix address");
                (
                    Socket::Unix(UnixListener::bind_addr(&addr).map_err(Error::creating)?),
                    other.clone(),
                )
            }
        };
        Ok(Listener {
            socket,
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            last_accepted: None,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Where the last accepted connection came from (Python's `last_accepted`).
    pub fn last_accepted(&self) -> Option<&str> {
        self.last_accepted.as_deref()
    }

    /// How long a connecting peer gets to complete the handshake
    /// ([`HANDSHAKE_TIMEOUT`] by default): one that says nothing is dropped after it.
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// The maximum frame length of the connections it accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Sets the maximum frame length of the connections it accepts from now on
    /// (default [`DEFAULT_MAX_FRAME_LEN`]: no limit but memory, as CPython's
    /// `Listener`). A peer's frame over it is refused with
    /// [`FrameError::TooLarge`](crate::FrameError::TooLarge) as soon as its header
    /// arrives, before any of its bytes are stored; see
    /// [`BlockingConnection::set_max_frame_len`]. The handshake has its own limit of
    /// 256 bytes whatever this is.
    pub fn set_max_frame_len(&mut self, max: usize) {
        self.max_frame_len = max;
    }

    /// Waits for a connection and authenticates it: this side challenges first,
    /// then answers the peer's challenge.
    ///
    /// # Errors
    ///
    /// [`Error::Auth`] for a peer that fails the handshake (the connection is
    /// closed, and nothing it sent is delivered); [`Error::Frame`] for a handshake
    /// message over 256 bytes; [`Error::Closed`] after [`close`](Listener::close).
    pub fn accept(&mut self) -> Result<BlockingConnection> {
        self.accept_pending()?.authenticate()
    }

    /// Waits for a connection and returns it before the handshake, which
    /// [`Pending::authenticate`] runs: a server authenticates each peer on its own
    /// thread, so that a peer that says nothing holds up nobody else.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]; [`Error::Exhausted`] when no descriptor is left for the
    /// connection (the listener goes on); [`Error::Closed`] after
    /// [`close`](Listener::close).
    pub fn accept_pending(&mut self) -> Result<Pending> {
        let (fd, from): (OwnedFd, String) = match &self.socket {
            Socket::Tcp(l) => {
                let (s, from) = l.accept().map_err(Error::creating)?;
                s.set_nodelay(true)?;
                (s.into(), from.to_string())
            }
            Socket::Unix(l) => {
                let (s, from) = l.accept().map_err(Error::creating)?;
                (s.into(), format!("{from:?}"))
            }
            Socket::Closed => return Err(Error::Closed),
        };
        self.last_accepted = Some(from);
        Ok(Pending {
            conn: BlockingConnection::from_owned_fd(fd, true, true)?
                .with_max_frame_len(self.max_frame_len),
            authkey: self.authkey.clone(),
            timeout: self.handshake_timeout,
        })
    }

    /// Stops listening (Python's `close`); a Unix socket's file is removed.
    pub fn close(&mut self) {
        self.socket = Socket::Closed;
        if let Address::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !matches!(self.socket, Socket::Closed) {
            self.close();
        }
    }
}

/// An accepted connection before its handshake.
#[derive(Debug)]
pub struct Pending {
    conn: BlockingConnection,
    authkey: Option<Vec<u8>>,
    timeout: Duration,
}

impl Pending {
    /// Runs the handshake (when the listener has an authkey): this side challenges
    /// first, then answers the peer's challenge.
    ///
    /// # Errors
    ///
    /// As [`Listener::accept`].
    pub fn authenticate(mut self) -> Result<BlockingConnection> {
        if let Some(key) = &self.authkey {
            auth::deliver_challenge(&mut self.conn, key, self.timeout)?;
            auth::answer_challenge(&mut self.conn, key, self.timeout)?;
        }
        Ok(self.conn)
    }
}

/// Python's `multiprocessing.connection.Client`: connects to `address` and, with
/// an `authkey`, answers the listener's challenge, then challenges it.
///
/// The connection takes frames of any length ([`DEFAULT_MAX_FRAME_LEN`]), as
/// CPython's; chain [`with_max_frame_len`](BlockingConnection::with_max_frame_len) to
/// set a limit, which covers every message since none is read before the first `recv`.
///
/// # Errors
///
/// [`Error::Io`] (nobody listens there), [`Error::Exhausted`] (no descriptor left
/// for the socket), [`Error::Auth`] (a wrong key on either side:
/// [`AuthError::Rejected`](crate::auth::AuthError::Rejected) when the listener
/// refused ours).
pub fn client(address: &Address, authkey: Option<&[u8]>) -> Result<BlockingConnection> {
    client_with_timeout(address, authkey, HANDSHAKE_TIMEOUT)
}

/// [`client`], with the time the listener gets to complete the handshake.
///
/// # Errors
///
/// As [`client`]; [`AuthError::Timeout`](crate::auth::AuthError::Timeout).
pub fn client_with_timeout(
    address: &Address,
    authkey: Option<&[u8]>,
    timeout: Duration,
) -> Result<BlockingConnection> {
    let fd: OwnedFd = match address {
        Address::Tcp(a) => {
            let s = TcpStream::connect(a).map_err(Error::creating)?;
            s.set_nodelay(true)?;
            s.into()
        }
        other => {
            let addr = other.unix()?.expect("a Unix address");
            UnixStream::connect_addr(&addr)
                .map_err(Error::creating)?
                .into()
        }
    };
    let mut conn = BlockingConnection::from_owned_fd(fd, true, true)?;
    if let Some(key) = authkey {
        auth::answer_challenge(&mut conn, key, timeout)?;
        auth::deliver_challenge(&mut conn, key, timeout)?;
    }
    Ok(conn)
}
