//! The long-running service: a poll at start, then one every interval (plus a random jitter of
//! up to a tenth of it, so replicas started together drift apart), until SIGTERM or SIGINT. Polls
//! never overlap: the next one is scheduled when the last one ends.
//!
//! PostgreSQL may be down at start: the HTTP endpoint is served at once (`/readyz` says 503) and
//! the database is tried again with backoff until it answers; then the polls begin.
//!
//! On a signal the poll in flight is dropped and this process's database statements are ended
//! (a COPY of millions of rows included): their transactions roll back, so their months keep the
//! previous data, and its claims' connections close. The pool is then closed within the grace
//! period.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::Instrument;

use crate::config::Settings;
use crate::domain::IntegrationName;
use crate::ingest::{IntegrationPolled, Sources, poll_integrations};
use crate::status::PollTimes;
use crate::store::Store;

/// Serves the HTTP endpoint and polls every integration (or `only` that one) until a shutdown
/// signal. Fails if the signal handlers cannot be set or the HTTP address cannot be bound.
pub async fn run(
    store: &Store,
    settings: &Settings,
    only: Option<IntegrationName>,
    metrics: PrometheusHandle,
) -> std::io::Result<()> {
    let mut shutdown = Shutdown::listen()?;
    let (stop_http, http_stopped) = tokio::sync::watch::channel(());
    let polls = PollTimes::default();
    let mut servers = Vec::new();
    for (address, what, app) in [
        (
            settings.http_addr,
            "/healthz, /readyz and /metrics",
            crate::http::probes(store.clone(), metrics),
        ),
        (
            settings.status_addr,
            "the status page",
            crate::http::status(store.clone(), polls.clone()),
        ),
    ] {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("address {address}: {e}")))?;
        tracing::info!(%address, "serving {what}");
        let mut stopped = http_stopped.clone();
        servers.push(tokio::spawn(crate::http::serve(
            listener,
            app,
            async move {
                let _ = stopped.changed().await;
            },
        )));
    }
    tokio::select! {
        () = poll_until_stopped(store, settings, only.as_ref(), &polls) => {}
        () = shutdown.requested() => {}
    }
    // Dropping the poll dropped its transactions; ending their statements rolls them back now
    // rather than when a COPY of millions of rows would have finished.
    match tokio::time::timeout(CANCEL_TIMEOUT, store.cancel_in_flight()).await {
        Ok(Ok(0)) => tracing::info!("shutting down"),
        Ok(Ok(ended)) => tracing::info!(
            ended_statements = ended,
            "shutting down: the reports being written were rolled back, their months keep their data"
        ),
        Ok(Err(error)) => {
            tracing::warn!(%error, "shutting down: could not end the database statements in flight")
        }
        Err(_) => tracing::warn!("shutting down: the database did not answer in time"),
    }
    let _ = stop_http.send(());
    for server in servers {
        let _ = server.await;
    }
    if tokio::time::timeout(settings.shutdown_grace, store.pool().close())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?settings.shutdown_grace, "database connections did not close in time");
    }
    Ok(())
}

/// How long stopping waits for the database to end this process's statements.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);
/// The first and the longest pause between attempts to reach the database at start.
const FIRST_DATABASE_RETRY: Duration = Duration::from_secs(1);
const LONGEST_DATABASE_RETRY: Duration = Duration::from_secs(60);

/// Waits for the database, then polls at start and every interval, forever. The integrations
/// are read from the database at every poll, so that one added, changed or disabled takes
/// effect at the next; their sources (S3 clients, roles' credentials) are kept between polls.
async fn poll_until_stopped(
    store: &Store,
    settings: &Settings,
    only: Option<&IntegrationName>,
    polls: &PollTimes,
) {
    wait_for_database(store).await;
    let interval = settings.poll_interval;
    tracing::info!(every = %humantime::format_duration(interval), "polling");
    let mut sources = Sources::new(settings.s3.read_timeout);
    loop {
        let polling = poll(&mut sources, store, settings, only);
        polling.instrument(tracing::info_span!("poll")).await;
        let pause = interval + jitter(interval / 10);
        let ended = chrono::Utc::now();
        polls.polled(
            ended,
            ended + chrono::TimeDelta::from_std(pause).unwrap_or_default(),
        );
        tokio::time::sleep(pause).await;
    }
}

async fn poll(
    sources: &mut Sources,
    store: &Store,
    settings: &Settings,
    only: Option<&IntegrationName>,
) {
    if let Err(error) = store.not_newer().await {
        crate::telemetry::poll_failed();
        tracing::error!(%error, "poll not started");
        return;
    }
    match poll_integrations(sources, store, settings, only).await {
        Ok(polled) => record(polled),
        Err(error) => {
            crate::telemetry::poll_failed();
            tracing::error!(%error, "poll failed");
        }
    }
}

/// Prepares the database (creating it and applying migrations when needed), trying again with
/// exponential backoff until it works; one log line per attempt.
async fn wait_for_database(store: &Store) {
    let mut delay = FIRST_DATABASE_RETRY;
    for attempt in 1u32.. {
        match store.prepare().await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, attempt, retry_in = %humantime::format_duration(delay), "the database is not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(LONGEST_DATABASE_RETRY);
            }
        }
    }
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

/// Logs a poll and counts it: successful when every integration could be listed and planned
/// (its reports may still have failed, one by one), else a poll error per integration that
/// could not.
fn record(polled: Vec<IntegrationPolled>) {
    let (mut ingested, mut failed, mut unchanged, mut claimed_elsewhere) = (0, 0, 0, 0);
    let mut all_polled = true;
    for IntegrationPolled {
        integration,
        outcome,
    } in &polled
    {
        match outcome {
            Ok(outcome) => {
                ingested += outcome.ingested.len();
                failed += outcome.failed.len();
                unchanged += outcome.unchanged;
                claimed_elsewhere += outcome.claimed_elsewhere;
            }
            Err(error) => {
                all_polled = false;
                crate::telemetry::poll_failed();
                tracing::error!(%integration, %error, "poll failed");
            }
        }
    }
    if all_polled {
        crate::telemetry::poll_succeeded();
    }
    tracing::info!(
        integrations = polled.len(),
        ingested,
        failed,
        unchanged,
        claimed_elsewhere,
        "poll done"
    );
}
