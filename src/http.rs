//! The daemon's HTTP endpoints, on two addresses: the probes and metrics (`/healthz`: the
//! process answers; `/readyz`: PostgreSQL answers with the schema this version needs, 503
//! otherwise; `/metrics`: Prometheus text format), and the status page (`/`), which shows
//! costs and account names and so has an address of its own, local by default.
//!
//! Both hold each connection to a deadline for its request's header and serve a bounded number
//! of connections at once: a client that sends half a request, or opens thousands, cannot
//! exhaust the process.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::status::PollTimes;
use crate::store::Store;

/// How long a client may take to send a request's header (from its first byte, or from the
/// connection's last answer), before the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once on each address; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 64;
/// How long the status page waits for the database before saying it does not answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct Probes {
    store: Store,
    metrics: PrometheusHandle,
}

#[derive(Clone)]
struct StatusPage {
    store: Store,
    polls: PollTimes,
}

/// The probes and metrics, for `http_addr`.
pub fn probes(store: Store, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(|State(probes): State<Probes>| async move { probes.metrics.render() }),
        )
        .with_state(Probes { store, metrics })
}

/// The status page, for `status_addr`.
pub fn status(store: Store, polls: PollTimes) -> Router {
    Router::new()
        .route("/", get(status_page))
        .with_state(StatusPage { store, polls })
}

/// Serves `app` on `listener` until `shutdown` completes, then stops taking connections and
/// lets those open finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stopping, stop) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        };
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A connection reset before it was accepted, or out of file descriptors for a
                // moment: the listener itself is fine.
                Err(error) => {
                    tracing::debug!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
        });
    }
    let _ = stopping.send(());
    // Every connection gives its slot back when it is done.
    let _ = tokio::time::timeout(
        HEADER_READ_TIMEOUT,
        slots.acquire_many(u32::try_from(MAX_CONNECTIONS).expect("small")),
    )
    .await;
    Ok(())
}

async fn ready(State(probes): State<Probes>) -> (StatusCode, String) {
    match probes.store.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {error}\n"),
        ),
    }
}

async fn status_page(State(page): State<StatusPage>) -> (StatusCode, Html<String>) {
    let now = chrono::Utc::now();
    let rendered = tokio::time::timeout(
        STATUS_TIMEOUT,
        crate::status::render(&page.store, page.polls.get(), now),
    )
    .await;
    let error = match rendered {
        Ok(Ok(page)) => return (StatusCode::OK, Html(page)),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {STATUS_TIMEOUT:?}"),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>dbr-ingest status</title></head>\
             <body><h1>dbr-ingest</h1><p>The database does not answer: {}</p></body></html>",
            crate::status::escape(&crate::secrets::redact(&error))
        )),
    )
}
