//! The daemon's HTTP endpoint: `/healthz` (the process answers), `/readyz` (PostgreSQL answers and
//! every migration is applied; 503 otherwise) and `/metrics` (Prometheus text format).

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::store::Store;

#[derive(Clone)]
struct Endpoint {
    store: Store,
    metrics: PrometheusHandle,
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(|State(endpoint): State<Endpoint>| async move { endpoint.metrics.render() }),
        )
        .with_state(Endpoint { store, metrics });
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
