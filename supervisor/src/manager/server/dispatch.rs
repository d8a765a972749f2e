//! One connection's requests: read (from the socket, or from the rings once the
//! link is upgraded), answered one at a time, and what its close releases.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use multiproc_core::codec;
use multiproc_transport::{BlockingConnection, Error as TransportError};
use serde_bytes::ByteBuf;

use super::object::{Caller, Object, lock};
use super::{Request, Response, Server};
use crate::manager::channel::Channel;
use crate::manager::error::ManagerError;

impl Server {
    pub(super) fn handle(&self, caller: &Caller<'_>, request: Request) -> Response {
        let out = match request {
            Request::Hello => Ok(Response::Hello {
                incarnation: self.incarnation,
            }),
            Request::Create {
                typeid,
                args,
                owner,
            } => self
                .create(&typeid, &args, Some(owner))
                .map(|id| Response::Created { id }),
            Request::Owner => {
                lock(&self.table).held.entry(caller.conn).or_default();
                Ok(Response::Owner { conn: caller.conn })
            }
            Request::Lend { id } => match lock(&self.table).slots.get_mut(&id) {
                Some(slot) => {
                    slot.lent += 1;
                    Ok(Response::Done)
                }
                None => Err(ManagerError::UnknownObject(id)),
            },
            Request::Refs { ops } => self.refs(caller.conn, &ops).map(|()| Response::Done),
            Request::Count => Ok(Response::Count {
                objects: lock(&self.table).slots.len() as u64,
            }),
            Request::Call { id, method, args } => self
                .object(id)
                .and_then(|o| o.call(caller, &method, &args))
                .map(|v| Response::Value(ByteBuf::from(v))),
            Request::Publish { name, id } => match lock(&self.table).slots.get_mut(&id) {
                Some(slot) => {
                    // A name is for ever (names are never taken back).
                    slot.pinned = true;
                    lock(&self.names).insert(name, id);
                    Ok(Response::Done)
                }
                None => Err(ManagerError::UnknownObject(id)),
            },
            Request::Lookup { name } => {
                let id = lock(&self.names).get(&name).copied();
                match id {
                    None => Err(ManagerError::UnknownName(name)),
                    Some(id) => self.object(id).map(|o| Response::Object {
                        id,
                        typeid: o.typeid().to_string(),
                    }),
                }
            }
            Request::Shutdown => Ok(Response::Done),
            Request::Upgrade { .. } => {
                Err(ManagerError::Decode("the link is upgraded already".into()))
            }
        };
        out.unwrap_or_else(Response::Fault)
    }

    /// Serves one authenticated connection until it closes.
    pub(crate) fn serve(self: Arc<Self>, mut conn: BlockingConnection) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut fast: Option<Channel> = None;
        let mut buf = Vec::new();
        loop {
            let request = match &mut fast {
                None => match conn.recv::<Request>() {
                    Ok(r) => Ok(r),
                    Err(TransportError::Decode(e)) => Err(ManagerError::Decode(e.to_string())),
                    Err(_) => break,
                },
                Some(ch) => {
                    if ch.recv(&mut buf, &mut conn).is_err() {
                        break;
                    }
                    codec::decode::<Request>(&buf).map_err(|e| ManagerError::Decode(e.to_string()))
                }
            };
            let (response, shutdown) = match request {
                // A request of another shape: an error for it, the link goes on.
                Err(e) => (Response::Fault(e), false),
                Ok(Request::Upgrade { rings }) if fast.is_none() => match Channel::open(rings) {
                    Ok(ch) => {
                        // Answered on the socket; what follows is in the rings.
                        if conn.send(&Response::Done).is_err() {
                            break;
                        }
                        fast = Some(ch);
                        continue;
                    }
                    Err(e) => (Response::Fault(e), false),
                },
                Ok(request) => {
                    let shutdown = matches!(request, Request::Shutdown);
                    (
                        self.handle(
                            &Caller {
                                conn: id,
                                link: &conn,
                            },
                            request,
                        ),
                        shutdown,
                    )
                }
            };
            let sent = match &mut fast {
                None => conn.send(&response).map_err(ManagerError::from),
                Some(ch) => {
                    buf.clear();
                    codec::encode_into(&response, &mut buf)
                        .map_err(|e| ManagerError::Encode(e.to_string()))
                        .and_then(|()| ch.send(&buf, &mut conn))
                }
            };
            if sent.is_err() {
                break;
            }
            if shutdown {
                tracing::debug!("manager shut down by its owner");
                std::process::exit(0);
            }
        }
        self.forget(id);
        let objects: Vec<Arc<dyn Object>> = lock(&self.table)
            .slots
            .values()
            .map(|s| Arc::clone(&s.object))
            .collect();
        for o in objects {
            o.disconnected(id);
        }
    }
}
