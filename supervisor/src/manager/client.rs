//! A thread's links to managers: where a manager is ([`ServerAddr`]), the connection
//! each thread keeps to it (as Python's proxies keep one per thread), and the
//! request and answer that go on it, reconnecting after a broken link.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use multiproc_core::codec;
use multiproc_transport::{Address, BlockingConnection, Error as TransportError, MAX_FRAME_LEN};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::channel;
use super::error::ManagerError;
use super::wire::{Request, Response};

/// Where a manager is and the key to it: what every proxy carries.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) struct ServerAddr {
    pub(super) address: Address,
    pub(super) authkey: ByteBuf,
}

impl fmt::Debug for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAddr")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// A connection of this thread to a manager, and which server incarnation it
/// reached.
pub(super) struct CallLink {
    conn: BlockingConnection,
    incarnation: u64,
    /// The rings in shared memory, for a server on this machine.
    fast: Option<channel::Channel>,
    /// Encoding and receiving buffers, reused.
    buf: Vec<u8>,
}

impl CallLink {
    fn exchange(&mut self, request: &Request) -> Result<Response, ManagerError> {
        let Some(fast) = &mut self.fast else {
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
    pub(super) static LINKS: RefCell<HashMap<ServerAddr, CallLink>> = RefCell::new(HashMap::new());
}

impl ServerAddr {
    /// A new authenticated connection to the server.
    pub(super) fn open(&self) -> Result<BlockingConnection, ManagerError> {
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
    pub(super) fn drop_link(&self) {
        let _ = LINKS.try_with(|links| links.borrow_mut().remove(self));
    }

    fn connect(&self) -> Result<CallLink, ManagerError> {
        let mut conn = self.open()?;
        conn.send(&Request::Hello)?;
        let incarnation = match conn.recv::<Response>()? {
            Response::Hello { incarnation } => incarnation,
            other => return Err(unexpected(&other)),
        };
        let mut link = CallLink {
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
    pub(super) fn ask(&self, request: &Request) -> Result<(Response, u64), ManagerError> {
        self.ask_checked(request, |_| Ok(None))
    }

    /// As [`ask`](ServerAddr::ask), after `check` has seen the incarnation of the
    /// server the link reaches: it may replace the request (an object found again
    /// by name) or refuse to send it at all.
    pub(super) fn ask_checked(
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

pub(super) fn unexpected(r: &Response) -> ManagerError {
    ManagerError::Decode(format!("unexpected answer {r:?}"))
}
