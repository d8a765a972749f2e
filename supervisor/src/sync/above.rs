//! Requests for services above the primitives that ride the hosts' envelopes: a
//! process reaches another process's service (a supervised child's address,
//! `supervision`) the way a handle reaches its primitive's host, along the tree.
//! The service registers itself at link time, so the primitives name none.

use multiproc_core::{Body, Envelope, Identity, RemoteError, codec};

use super::wire::{Op, Request};
use crate::runtime::current::me;
use crate::runtime::router;

/// A service above the primitives.
pub(crate) struct Above {
    /// Handles one request (the envelope it came in, and its bytes), on the thread
    /// that delivered it: it must not block, and it answers with
    /// [`router::route`] to the envelope's sender and correlation.
    pub(crate) serve: fn(Envelope, Vec<u8>),
}

/// The registered service; there is one, the supervised children's addresses.
#[linkme::distributed_slice]
pub(crate) static ABOVE: [Above];

/// Hands a request that reached this process to the registered service.
pub(super) fn serve(env: Envelope, bytes: Vec<u8>) {
    match ABOVE.first() {
        Some(above) => (above.serve)(env, bytes),
        None => {
            let me = me().identity.clone();
            router::bounce_envelope(env, RemoteError::NoActor(me));
        }
    }
}

/// Asks the service above the primitives in process `host` with `request`; its
/// answer's bytes.
///
/// # Errors
///
/// The router's: `NoProcess` when `host` is gone, `Exited` when it ends first.
pub(crate) async fn ask_above(host: Identity, request: Vec<u8>) -> Result<Vec<u8>, RemoteError> {
    let request = Request {
        prim: 0,
        secret: 0,
        op: Op::Above(request),
    };
    let bytes = codec::encode(&request).map_err(|e| RemoteError::Encode(e.to_string()))?;
    let corr = router::next_corr();
    // Before the request leaves: the answer may come before this task looks.
    let pending = router::expect_reply(corr);
    router::route(Envelope {
        to: host,
        from: me().identity.clone(),
        corr,
        body: Body::Service(bytes),
    });
    match pending.await {
        Body::Reply(bytes) => Ok(bytes),
        Body::Fail(e) => Err(e),
        _ => Err(RemoteError::Decode("a request came back".into())),
    }
}
