//! The daemon's HTTP endpoint: `/` (the status page), `/healthz` (the process answers),
//! `/readyz` (PostgreSQL answers and every migration is applied; 503 otherwise) and `/metrics`
//! (Prometheus text format).

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::status::PollTimes;
use crate::store::Store;

#[derive(Clone)]
struct Endpoint {
    store: Store,
    metrics: PrometheusHandle,
    polls: PollTimes,
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    metrics: PrometheusHandle,
    polls: PollTimes,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "serving /, /healthz, /readyz and /metrics");
    let app = Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(|State(endpoint): State<Endpoint>| async move { endpoint.metrics.render() }),
        )
        .with_state(Endpoint {
            store,
            metrics,
            polls,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn ready(State(endpoint): State<Endpoint>) -> (StatusCode, String) {
    match endpoint.store.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {error}\n"),
        ),
    }
}

async fn status_page(State(endpoint): State<Endpoint>) -> (StatusCode, Html<String>) {
    let now = chrono::Utc::now();
    match crate::status::render(&endpoint.store, endpoint.polls.get(), now).await {
        Ok(page) => (StatusCode::OK, Html(page)),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(format!(
                "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>dbr-ingest status</title></head>\
                 <body><h1>dbr-ingest</h1><p>The database does not answer: {}</p></body></html>",
                crate::status::escape(&crate::secrets::redact(&error.to_string()))
            )),
        ),
    }
}
