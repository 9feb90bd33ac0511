//! The HTTP routes of the operations server (axum).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

#[derive(Clone)]
struct AppState {
    snapshots: watch::Receiver<Arc<str>>,
    metrics: Option<PrometheusHandle>,
}

/// The routes of the operations server, for a node ([`super::Ops::serve`]) or a whole local
/// cluster (the `cluster` example serves its children's merged snapshots with it):
///
/// - `GET /` the web view, `GET /app.js`, `GET /style.css`: every asset is compiled into the
///   binary; the page makes no request to any other origin;
/// - `GET /snapshot`: the latest [`super::ClusterSnapshot`] as JSON (`snapshots`' value);
/// - `GET /events`: server-sent events, one `snapshot` event with that JSON now and at every
///   change (keep-alive comments every 15 s);
/// - `GET /metrics`: the Prometheus text format of `metrics`; 404 when `None`.
pub fn router(snapshots: watch::Receiver<Arc<str>>, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/snapshot", get(snapshot))
        .route("/events", get(events))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { snapshots, metrics })
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn snapshot(State(state): State<AppState>) -> Response {
    let json = state.snapshots.borrow().clone();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json.to_string(),
    )
        .into_response()
}

async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut receiver = state.snapshots.clone();
    receiver.mark_changed();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        let json = receiver.borrow_and_update().clone();
        let event = Event::default().event("snapshot").data(json.as_ref());
        Some((Ok(event), receiver))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    match state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no metrics here: scrape each node").into_response(),
    }
}
