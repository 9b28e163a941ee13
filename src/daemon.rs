//! The long-running service: a poll at start, then one every interval, until SIGTERM or SIGINT.
//! A signal during a poll drops the report in flight: its transaction is rolled back, so its
//! month keeps the previous data.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::ingest::{PollError, poll};
use crate::report::aggregate::Monitored;
use crate::source::Source;
use crate::store::Store;

/// Polls until a shutdown signal. Returns an error only if the signal handlers cannot be set.
pub async fn run(
    source: &Source,
    store: &Store,
    configured: Option<&Monitored>,
    interval: Duration,
) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut ticks = tokio::time::interval(interval);
    // A poll longer than the interval is not followed by a burst of catch-up polls.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(source = source.location(), every = %humantime::format_duration(interval), "polling");
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
        let span = tracing::info_span!("poll");
        tokio::select! {
            outcome = tracing::Instrument::instrument(poll(source, store, configured), span) => log(outcome),
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("shutting down");
    Ok(())
}

fn log(outcome: Result<crate::ingest::PollOutcome, PollError>) {
    match outcome {
        Ok(outcome) => tracing::info!(
            ingested = outcome.ingested.len(),
            failed = outcome.failed.len(),
            unchanged = outcome.unchanged,
            ignored = outcome.ignored,
            "poll done"
        ),
        Err(error) => tracing::error!(%error, "poll failed"),
    }
}
