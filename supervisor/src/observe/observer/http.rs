//! The observer's HTTP side: one connection's requests, the token check, the routes
//! and the body of a server-sent event stream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{broadcast, mpsc, watch};

use super::feed::Feed;

/// The page and what it loads, built into the binary: nothing is fetched from
/// elsewhere.
const PAGE_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/app.js");
const PAGE_CSS: &str = include_str!("page/app.css");

/// The page may load its own script and style and talk to this server, nothing else.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// How often an idle stream says it is alive, so that proxies keep it open and a
/// closed page is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Frames waiting for one slow stream's connection.
const STREAM_QUEUE: usize = 16;

type Body = BoxBody<Bytes, Infallible>;

/// What every connection shares.
#[derive(Debug)]
pub(super) struct Ctx {
    pub(super) feed: Arc<Feed>,
    pub(super) token: Option<String>,
    pub(super) local: SocketAddr,
    pub(super) stop: watch::Receiver<bool>,
}

/// Answers one request.
pub(super) async fn handle(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
) -> Result<Response<Body>, Infallible> {
    Ok(route(&req, &ctx).await)
}

async fn route(req: &Request<Incoming>, ctx: &Ctx) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut res = error(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    if !host_allowed(req, ctx.local) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "this observer answers to a loopback host name only",
        );
    }
    let path = req.uri().path();
    // The page's script and style hold no data: the page that loads them was
    // authorized, and it cannot pass its token on to them.
    match path {
        "/app.js" => return asset(PAGE_JS, "text/javascript; charset=utf-8"),
        "/app.css" => return asset(PAGE_CSS, "text/css; charset=utf-8"),
        _ => {}
    }
    if !authorized(req, ctx.token.as_deref()) {
        let mut res = error(StatusCode::UNAUTHORIZED, "a valid token is required");
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"multiproc observer\""),
        );
        return res;
    }
    match path {
        "/" | "/index.html" => {
            let mut res = asset(PAGE_HTML, "text/html; charset=utf-8");
            res.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_POLICY),
            );
            res
        }
        "/api/snapshot" => {
            let snap = crate::observe::snapshot().await;
            json(ctx.feed.render(&snap))
        }
        "/api/history" => match query(req, "name") {
            None => json(ctx.feed.history(None).unwrap_or_default()),
            Some(name) => match ctx.feed.history(Some(&name)) {
                Some(body) => json(body),
                None => error(
                    StatusCode::NOT_FOUND,
                    &format!("no figures of a process named {name:?}"),
                ),
            },
        },
        "/api/events" => stream(ctx),
        _ => error(StatusCode::NOT_FOUND, &format!("no such page: {path}")),
    }
}

/// Whether the request names this server by a loopback name, when it listens on a
/// loopback address: a page elsewhere that rebinds its own host name to 127.0.0.1
/// (DNS rebinding) reaches the port, but with its own name in `Host`.
fn host_allowed(req: &Request<Incoming>, local: SocketAddr) -> bool {
    if !local.ip().is_loopback() {
        return true;
    }
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the request carries the token, when there is one: `Authorization: Bearer
/// TOKEN`, or `?token=TOKEN` (for the page, and for `EventSource`, which sends no
/// headers).
fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    let given = bearer.map(str::to_owned).or_else(|| query(req, "token"));
    given.is_some_and(|given| same(given.as_bytes(), token.as_bytes()))
}

/// Compares in a time that does not depend on where the two differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of `name` in the query string. Tokens and process names hold no
/// characters that need escaping but `:`, which may come as `%3A`.
fn query(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.replace("%3A", ":").replace("%3a", ":"))
    })
}

fn asset(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

fn json(body: Bytes) -> Response<Body> {
    let mut res = Response::new(Full::new(body).boxed());
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message, "status": status.as_u16() });
    let mut res = json(Bytes::from(body.to_string()));
    *res.status_mut() = status;
    res
}

/// `/api/events`: the frames that bring the page up to date, then the live ones,
/// until the page goes or the observer stops.
fn stream(ctx: &Ctx) -> Response<Body> {
    let (first, mut live) = ctx.feed.subscribe();
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let mut stop = ctx.stop.clone();
    tokio::spawn(async move {
        // A reconnecting `EventSource` waits this long (ms) before it tries again.
        if tx
            .send(Bytes::from_static(b"retry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        for frame in first {
            if tx.send(frame).await.is_err() {
                return;
            }
        }
        let mut quiet = tokio::time::interval(KEEP_ALIVE);
        quiet.reset();
        loop {
            let frame = tokio::select! {
                _ = stop.changed() => return,
                () = tx.closed() => return,
                got = live.recv() => match got {
                    Ok(frame) => frame,
                    // Behind: the next snapshot brings the page up to date.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = quiet.tick() => Bytes::from_static(b": alive\n\n"),
            };
            quiet.reset();
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    let mut res = Response::new(BodyExt::boxed(Stream(rx)));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A body that yields what its channel receives, and ends when the channel does.
#[derive(Debug)]
struct Stream(mpsc::Receiver<Bytes>);

impl http_body::Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|got| got.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_by_their_whole_bytes() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3creT"));
        assert!(!same(b"s3cret", b"s3cre"));
        assert!(!same(b"", b"x"));
    }
}
