//! The daemon's HTTP API, for Tilt's readiness probe, its buttons, and people: the status
//! page (`GET /`, rendered by [`crate::page`]) and its live event stream (`GET /events`).
//!
//! Routes read the engine's [`Status`] snapshot or send it a [`Command`]; they never touch
//! the engine's state. The event stream reads a broadcast ([`crate::events`]) that never
//! waits for a reader: a client that falls [`crate::events::BUFFER`] events behind is dropped,
//! and so is any connection that accepts no byte for [`WRITE_STALL`] (a client that stopped
//! reading), so a slow client costs a bounded buffer and never slows the engine. The API binds to loopback by default, and two checks keep a web page
//! in the developer's browser from driving it: requests whose `Host` is not a loopback name
//! are refused (DNS rebinding), and so are POSTs that a browser marks as cross-site (an
//! `Origin` that is not loopback, or `Sec-Fetch-Site: cross-site`). Tools like curl and Tilt's
//! probe send neither header and pass.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;

use crate::engine::{Command, Handles};
use crate::events::Message;

/// How long `POST /sync` waits for the sync it asked for. A sync of the sample takes tens of
/// milliseconds; this only bounds a wedged cluster.
const SYNC_REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection that accepts no byte of what it is sent for this long is closed: a browser
/// reads its event stream as it arrives, so only a client that stopped reading gets here.
pub const WRITE_STALL: Duration = Duration::from_secs(5);
/// A comment on an idle event stream, so proxies and browsers keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Every error the API returns, rendered in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("busy: too many requests are queued; try again")]
    Busy,
    #[error("the engine has stopped")]
    Stopped,
    #[error("timed out waiting for the sync")]
    Timeout,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self {
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Busy | ApiError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        };
        (code, format!("{self}\n")).into_response()
    }
}

/// What the routes share: the engine's handles, and a token cancelled at shutdown, which
/// ends the event streams (graceful shutdown waits for every response to finish).
#[derive(Clone)]
pub struct App {
    pub handles: Handles,
    pub closing: CancellationToken,
}

pub fn router(handles: Handles, closing: CancellationToken) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/assets/page.css", get(css))
        .route("/assets/page.js", get(js))
        .route("/events", get(events))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/sync", post(sync))
        .route("/verify", post(verify))
        .route("/metrics", get(metrics))
        .route("/explain", get(explain))
        .layer(middleware::from_fn(guard))
        .with_state(App { handles, closing })
}

/// The listener of the API: connections whose writes stall for [`WRITE_STALL`] fail.
struct StallGuarded(TcpListener);

impl axum::serve::Listener for StallGuarded {
    type Io = Pin<Box<TimeoutStream<TcpStream>>>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let mut io = TimeoutStream::new(io);
        io.set_write_timeout(Some(WRITE_STALL));
        (Box::pin(io), addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Serves until `shutdown` completes; in-flight requests are finished first.
pub async fn serve(
    listener: TcpListener,
    handles: Handles,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = CancellationToken::new();
    let app = router(handles, closing.clone());
    axum::serve(StallGuarded(listener), app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.cancel();
        })
        .await
}

async fn page(State(app): State<App>) -> Response {
    // The snapshot is cloned first: rendering must not hold the engine's status lock.
    let status = app.handles.status.borrow().clone();
    let html = crate::page::render(&status);
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                crate::page::CONTENT_SECURITY_POLICY,
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(html),
    )
        .into_response()
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        crate::page::CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        crate::page::JS,
    )
        .into_response()
}

/// `GET /events`: Server-Sent Events, one per published event (`event: sync`, `id: 7`,
/// `data: {...}`), until the client goes, falls behind, or the daemon stops.
async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    let rx = app.handles.events.subscribe();
    let listening = Listening::new(app.handles.metrics.event_clients.clone());
    let closing = app.closing.clone();
    let stream = futures::stream::unfold((rx, listening), move |(mut rx, listening)| {
        let closing = closing.clone();
        async move {
            let msg: Arc<Message> = tokio::select! {
                m = rx.recv() => match m {
                    Ok(m) => m,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::info!(missed, "an /events client fell behind; dropped");
                        return None;
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = closing.cancelled() => return None,
            };
            let event = sse::Event::default()
                .event(msg.kind.as_str())
                .id(msg.id.to_string())
                .data(&msg.data);
            Some((Ok(event), (rx, listening)))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// Counts an event stream client while its stream lives.
struct Listening(prometheus_client::metrics::gauge::Gauge);

impl Listening {
    fn new(gauge: prometheus_client::metrics::gauge::Gauge) -> Listening {
        gauge.inc();
        Listening(gauge)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn readyz(State(App { handles: h, .. }): State<App>) -> Response {
    let status = h.status.borrow().clone();
    match status.not_ready_reason() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn status(State(App { handles: h, .. }): State<App>) -> Response {
    let status = h.status.borrow().clone();
    let ready = status.not_ready_reason();
    let mut v = serde_json::to_value(&status).unwrap_or_default();
    v["ready"] = serde_json::Value::Bool(ready.is_none());
    v["not_ready_reason"] = ready.map_or(serde_json::Value::Null, serde_json::Value::String);
    Json(v).into_response()
}

async fn sync(
    State(App { handles: h, .. }): State<App>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (tx, rx) = oneshot::channel();
    h.commands
        .try_send(Command::Sync { reply: Some(tx) })
        .map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => ApiError::Busy,
            tokio::sync::mpsc::error::TrySendError::Closed(_) => ApiError::Stopped,
        })?;
    reply(rx, |s| s.ok, &headers).await
}

/// Waits for the engine's or the verifier's answer: 200 when it went well, 422 when not.
/// A form of the status page posted without its script (the browser asks for HTML) is sent
/// back to the page, which shows the result.
async fn reply<T: serde::Serialize>(
    rx: oneshot::Receiver<T>,
    ok: impl Fn(&T) -> bool,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let answer = tokio::time::timeout(SYNC_REPLY_TIMEOUT, rx)
        .await
        .map_err(|_| ApiError::Timeout)?
        .map_err(|_| ApiError::Stopped)?;
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if wants_html {
        return Ok(Redirect::to("/").into_response());
    }
    let code = if ok(&answer) {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((code, Json(answer)).into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
struct VerifyQuery {
    #[serde(default)]
    settle: bool,
}

/// Runs a gateway verification (after any that is running) and returns its report: 200 when
/// it passed, 422 when it failed. With `?settle=true` a failing run is retried within
/// `verify.settle_ms`, as the daemon's own runs after a change are.
async fn verify(
    State(App { handles: h, .. }): State<App>,
    axum::extract::Query(q): axum::extract::Query<VerifyQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (tx, rx) = oneshot::channel();
    h.verify.request("request", Some(tx), q.settle);
    reply(rx, |r| r.ok, &headers).await
}

#[derive(Debug, serde::Deserialize)]
struct ExplainQuery {
    host: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default)]
    port: Option<u32>,
}

fn default_path() -> String {
    "/".into()
}

fn default_method() -> String {
    "GET".into()
}

/// Route simulation over what the last sync read (offline facts only).
async fn explain(
    State(App { handles: h, .. }): State<App>,
    axum::extract::Query(q): axum::extract::Query<ExplainQuery>,
) -> Response {
    let inputs = h.status.borrow().inputs.clone();
    let model =
        crate::analyze::model::Model::build(&inputs.objects, &inputs.others, None, &inputs.ingress);
    let req = crate::analyze::explain::Request {
        host: q.host,
        path: q.path,
        method: q.method.to_ascii_uppercase(),
        headers: Default::default(),
        port: q.port,
    };
    Json(crate::analyze::explain::explain(&model, &req)).into_response()
}

async fn metrics(State(App { handles: h, .. }): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.encode(),
    )
        .into_response()
}

/// DNS-rebinding and cross-site checks for every route.
async fn guard(req: Request, next: Next) -> Result<Response, ApiError> {
    check_request(req.method(), req.headers())?;
    Ok(next.run(req).await)
}

fn check_request(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !is_loopback_authority(host) {
        return Err(ApiError::Forbidden(
            "the Host header must name a loopback address",
        ));
    }
    if method != Method::GET && method != Method::HEAD {
        if headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
        {
            return Err(ApiError::Forbidden("cross-site requests are refused"));
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            // A sandboxed or privacy-sensitive page sends `Origin: null`: not ours either.
            if origin == "null" || !is_loopback_authority(authority) {
                return Err(ApiError::Forbidden(
                    "requests from a web page of another origin are refused",
                ));
            }
        }
    }
    Ok(())
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, _)) => h,
            None => return false,
        }
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                authority
            }
        })
    };
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_authorities() {
        for ok in [
            "127.0.0.1:8787",
            "localhost:8787",
            "localhost",
            "[::1]:8787",
            "127.1.2.3",
            "LOCALHOST:1",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "evil.com:8787",
            "10.0.0.1:8787",
            "",
            "[::2]:1",
            "localhost.evil.com",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8787".parse().unwrap());
        assert!(check_request(&Method::POST, &h).is_ok());
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(check_request(&Method::POST, &h).is_err());
        assert!(check_request(&Method::GET, &h).is_ok());
        h.remove("sec-fetch-site");
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(check_request(&Method::POST, &h).is_err());
        h.insert(header::ORIGIN, "http://localhost:10350".parse().unwrap());
        assert!(check_request(&Method::POST, &h).is_ok());
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(check_request(&Method::POST, &h).is_err());
    }
}
