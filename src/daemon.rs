//! The long-running service: a poll at start, then one every interval (plus a random jitter of
//! up to a tenth of it, so replicas started together drift apart), until SIGTERM or SIGINT. Polls
//! never overlap: the next one is scheduled when the last one ends.
//!
//! On a signal the poll in flight is dropped: its report transactions roll back (their months
//! keep the previous data) and its claims' connections close. The pool is then closed within the
//! grace period.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::Instrument;

use crate::config::Settings;
use crate::ingest::{PollError, PollOutcome, poll};
use crate::source::Source;
use crate::store::Store;

/// Serves the HTTP endpoint and polls until a shutdown signal. Fails if the signal handlers
/// cannot be set or the HTTP address cannot be bound.
pub async fn run(
    source: &Source,
    store: &Store,
    settings: &Settings,
    metrics: PrometheusHandle,
) -> std::io::Result<()> {
    let mut shutdown = Shutdown::listen()?;
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("HTTP address {}: {e}", settings.http_addr),
            )
        })?;
    let (stop_http, http_stopped) = tokio::sync::watch::channel(());
    let http = tokio::spawn(crate::http::serve(
        listener,
        store.clone(),
        metrics,
        async move {
            let mut stopped = http_stopped;
            let _ = stopped.changed().await;
        },
    ));
    let interval = settings.poll_interval;
    tracing::info!(source = source.location(), every = %humantime::format_duration(interval), "polling");
    loop {
        let polling = poll(
            source,
            store,
            settings.monitored.as_ref(),
            settings.concurrency,
        );
        tokio::select! {
            outcome = polling.instrument(tracing::info_span!("poll")) => record(outcome),
            () = shutdown.requested() => break,
        }
        let pause = interval + jitter(interval / 10);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.requested() => break,
        }
    }
    tracing::info!("shutting down: reports in flight were rolled back");
    let _ = stop_http.send(());
    let _ = http.await;
    if tokio::time::timeout(settings.shutdown_grace, store.pool().close())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?settings.shutdown_grace, "database connections did not close in time");
    }
    Ok(())
}

struct Shutdown {
    terminate: Signal,
    interrupt: Signal,
}

impl Shutdown {
    fn listen() -> std::io::Result<Shutdown> {
        Ok(Shutdown {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn requested(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

fn jitter(at_most: Duration) -> Duration {
    at_most.mul_f64(fastrand::f64())
}

fn record(outcome: Result<PollOutcome, PollError>) {
    match outcome {
        Ok(outcome) => {
            crate::telemetry::poll_succeeded();
            tracing::info!(
                ingested = outcome.ingested.len(),
                failed = outcome.failed.len(),
                unchanged = outcome.unchanged,
                claimed_elsewhere = outcome.claimed_elsewhere,
                ignored = outcome.ignored,
                "poll done"
            )
        }
        Err(error) => {
            crate::telemetry::poll_failed();
            tracing::error!(%error, "poll failed");
        }
    }
}
