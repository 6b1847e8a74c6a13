//! The daemon's HTTP endpoints (axum): /healthz (liveness), /readyz (readiness), /metrics (Prometheus text
//! format), /status (JSON) and / (the page of every account's state, src/page.rs, under /status's access rule). All are read-only: GET and HEAD (axum answers HEAD for GET routes without a body);
//! any other method gets 405 with an Allow header, and a request with a body gets 413.
//!
//! The listener is exposed to whatever can reach the port, so connections are bounded: headers must arrive
//! within [`HEADER_READ_TIMEOUT`], a connection lives at most [`CONNECTION_MAX_AGE`], and at most
//! [`MAX_CONNECTIONS`] are served at once (a connection over the cap is closed at once, so half-open
//! connections cannot starve the probes or the reconcile loop). /status shows stack set settings and error
//! text, so it is redacted ([`crate::redact`]) and, with `status_token` set, needs `Authorization: Bearer` (or the
//! page's session cookie, which `GET /?token=...` sets, so a browser can open the page).
//!
//! A browser page of another site can reach a loopback listener by DNS rebinding (its name resolved to
//! 127.0.0.1): every request whose Host is a name other than `localhost` or one of `http_allowed_hosts` is refused
//! (421), so such a page reads nothing. An IP literal is always accepted (probes and scrapers use addresses), and
//! /healthz and /readyz answer any Host.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::metrics::{self, Metrics};
use crate::status::StatusBoard;

/// A client must send its request headers within this long, or the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A keep-alive connection is closed (gracefully) after this long, whatever it does.
pub const CONNECTION_MAX_AGE: Duration = Duration::from_secs(60);
/// Connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long the accept loop pauses after an accept error (out of file descriptors, ...).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub status: Arc<StatusBoard>,
    pub metrics: Arc<Metrics>,
    /// When set, /status requires `Authorization: Bearer <token>` (`status_token`).
    pub status_token: Option<Arc<str>>,
    /// Host names accepted besides IP literals and `localhost` (`http_allowed_hosts`, lower case, no port).
    pub allowed_hosts: Arc<[String]>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .route("/", get(page))
        .layer(middleware::from_fn(refuse_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .with_state(state)
}

/// Serve until `shutdown` resolves; requests in flight then finish (each connection is told to close).
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, max = MAX_CONNECTIONS, "HTTP connection cap reached: closing a new connection");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let age = tokio::time::sleep(CONNECTION_MAX_AGE);
            tokio::pin!(age);
            let mut told = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            debug!(%peer, error = %e, "HTTP connection ended with an error");
                        }
                        break;
                    }
                    () = &mut age, if !told => {
                        told = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    _ = closing.wait_for(|c| *c), if !told => {
                        told = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    closing_tx.send_replace(true);
    // Every connection holds a slot: all slots back means all connections ended.
    let _all = slots.acquire_many(MAX_CONNECTIONS as u32).await;
    Ok(())
}

/// The Host a request names must be this daemon's: an IP literal, `localhost`, or an allowed name. The liveness and
/// readiness probes answer any Host (a probe configured with a name must never restart a healthy daemon; they
/// show nothing).
async fn check_host(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    if let Some(host) = host
        && !host_allowed(&host, &state.allowed_hosts)
    {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host {host:?} is not a name of this daemon: address it by IP, as localhost, or add the name to \
                 http_allowed_hosts\n"
            ),
        )
            .into_response();
    }
    next.run(request).await
}

/// `host[:port]` names this daemon: an IPv4 or bracketed IPv6 literal, `localhost`, or a name in `allowed`.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" || allowed.contains(&name)
}

/// The endpoints take no input: a request with a body is refused before any handler runs.
async fn refuse_bodies(request: Request, next: Next) -> Response {
    let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted\n",
        )
            .into_response();
    }
    next.run(request).await
}

/// Live while the process runs and the runtime answers.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if state.status.is_ready() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        not_ready_reason(&state.status),
    )
        .into_response()
}

/// Why /readyz says no, in one line an operator can act on.
fn not_ready_reason(board: &StatusBoard) -> String {
    let status = board.snapshot();
    if status.shutting_down {
        return "not ready: shutting down\n".into();
    }
    if status.desired_state.applied_sha256.is_none() {
        let why = status
            .desired_state
            .last_load
            .and_then(|l| l.error)
            .unwrap_or_else(|| "not loaded yet".into());
        return format!(
            "not ready: no valid desired state ({}): {why}\n",
            status.desired_state.path.display()
        );
    }
    let pending: Vec<&str> = status
        .deployments
        .iter()
        .filter(|(_, d)| d.passes == 0)
        .map(|(name, _)| name.as_str())
        .collect();
    format!(
        "not ready: waiting for the first pass of {}\n",
        pending.join(", ")
    )
}

async fn metrics_text(State(state): State<HttpState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// The page's session cookie: set by `GET /?token=<status_token>`, it carries a digest of the token (never the
/// token), is sent back only to this host and path (SameSite=Strict, HttpOnly), and lets the page and its
/// refreshes read /status without an Authorization header, which a browser cannot add to a page it opens.
const SESSION_COOKIE: &str = "stacksetd_session";

fn session_value(token: &str) -> String {
    crate::template::sha256_hex(format!("stacksetd-session:{token}").as_bytes())
}

/// The session cookie's value in the request, if any.
fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// With `status_token` set, the answer to a request without it (/status and the page alike).
fn refused(state: &HttpState, headers: &axum::http::HeaderMap, what: &str) -> Option<Response> {
    let token = state.status_token.as_ref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if same_secret(given, token) {
        return None;
    }
    if session_cookie(headers).is_some_and(|c| same_secret(&c, &session_value(token))) {
        return None;
    }
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            format!(
                "{what} needs Authorization: Bearer <status_token> (in a browser: open /?token=<status_token> \
                 once)\n"
            ),
        )
            .into_response(),
    )
}

/// The status document as served: redacted.
fn redacted_status(state: &HttpState) -> serde_json::Value {
    let mut document = serde_json::to_value(state.status.snapshot()).unwrap_or_default();
    crate::redact::status_document(&mut document);
    document
}

async fn status(State(state): State<HttpState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers, "/status") {
        return refusal;
    }
    axum::Json(redacted_status(&state)).into_response()
}

/// The page, from the same redacted document as /status (so it shows nothing /status hides). `/?token=...` with
/// the right token sets the session cookie and redirects to `/` (so the token leaves the address bar).
async fn page(
    State(state): State<HttpState>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let offered = uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "token")
            .map(|(_, value)| value.to_string())
    });
    if let (Some(offered), Some(token)) = (offered, state.status_token.as_ref()) {
        if !same_secret(&offered, token) {
            return (StatusCode::UNAUTHORIZED, "wrong token\n").into_response();
        }
        return (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/".to_string()),
                (
                    header::SET_COOKIE,
                    format!(
                        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                        session_value(token)
                    ),
                ),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
        )
            .into_response();
    }
    if let Some(refusal) = refused(&state, &headers, "/") {
        return refusal;
    }
    let status: crate::status::Status =
        serde_json::from_value(redacted_status(&state)).unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        crate::page::render(&status),
    )
        .into_response()
}

/// Compare a presented token with the configured one in time that does not depend on where they differ
/// (both are hashed first, so their lengths do not show either).
fn same_secret(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn hosts_are_ip_literals_localhost_or_allowed_names() {
        let allowed = vec!["stacksetd.monitoring.svc".to_string()];
        for host in [
            "127.0.0.1:9464",
            "10.1.2.3",
            "[::1]:9464",
            "[fd00::1]",
            "localhost:9464",
            "LocalHost.",
            "stacksetd.monitoring.svc:9464",
            "STACKSETD.monitoring.svc.",
        ] {
            assert!(host_allowed(host, &allowed), "{host}");
        }
        for host in [
            "attacker.example",
            "attacker.example:9464",
            "127.0.0.1.nip.io:9464",
            "localhost.attacker.example",
            "[::1",
            "[not-an-address]:1",
            "monitoring.svc",
            "",
        ] {
            assert!(!host_allowed(host, &allowed), "{host}");
        }
    }
}
