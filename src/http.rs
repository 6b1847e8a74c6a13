//! The daemon's HTTP endpoints (axum): /healthz (liveness), /readyz (readiness), /metrics (Prometheus text
//! format) and /status (JSON). All are read-only: GET and HEAD (axum answers HEAD for GET routes without a body);
//! any other method gets 405 with an Allow header.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;
use tokio::net::TcpListener;

use crate::metrics;
use crate::status::StatusBoard;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub status: Arc<StatusBoard>,
    pub registry: Registry,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .with_state(state)
}

/// Serve until `shutdown` resolves; requests in flight then finish.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
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
    match metrics::encode(&state.registry) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn status(State(state): State<HttpState>) -> Response {
    axum::Json(state.status.snapshot()).into_response()
}
