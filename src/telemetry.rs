//! Logs and metrics, set up once: `tracing` to stderr (human, or JSON lines with
//! `DBR_LOG_FORMAT=json`, level from `RUST_LOG`), and the Prometheus recorder behind `/metrics`.
//! The metric names live here, with their help texts.

use std::io::IsTerminal;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::domain::{IntegrationName, StatementId};
use crate::report::aggregate::RowCounts;
use crate::report::read::Progress;
use crate::secrets::Redacting;

/// Without `RUST_LOG`: the service's own information, other crates' warnings, but not the AWS
/// SDK's credential chain, which warns in several lines for every provider that has nothing
/// (instance metadata off EC2) while the error that follows says what is missing, once.
const DEFAULT_LOG_FILTER: &str = "warn,dbr_ingest=info,aws_config=error";

/// Logs to stderr (through the progress bars, when shown): JSON lines when `json`, else human
/// lines (coloured on a terminal).
pub fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_LOG_FILTER.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Redacting(crate::progress::log_writer()));
    if json {
        logs.json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// What a metric's series are labelled with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Labels {
    /// Nothing: exported from the first scrape at zero, so that `rate()` and absence alerts
    /// work from the start.
    Unlabelled,
    /// One integration (and payer): each series appears with its labels when it first counts,
    /// never as an unlabelled zero beside them (a zero timestamp would make an age alert fire
    /// forever).
    PerIntegration,
}

/// Every counter, with its labels and help text.
const COUNTERS: [(&str, Labels, &str); 12] = [
    (
        "dbr_reports_ingested_total",
        Labels::PerIntegration,
        "Report versions ingested, by payer.",
    ),
    (
        "dbr_reports_skipped_total",
        Labels::PerIntegration,
        "Chosen reports not read: unchanged, or claimed by another replica.",
    ),
    (
        "dbr_reports_failed_total",
        Labels::PerIntegration,
        "Report versions that failed, by payer.",
    ),
    (
        "dbr_rows_read_total",
        Labels::PerIntegration,
        "Line items read from ingested reports.",
    ),
    (
        "dbr_rows_kept_total",
        Labels::PerIntegration,
        "Line items of monitored accounts.",
    ),
    (
        "dbr_rows_dropped_total",
        Labels::PerIntegration,
        "Line items of accounts not monitored.",
    ),
    (
        "dbr_bytes_downloaded_total",
        Labels::Unlabelled,
        "Bytes of report objects read from the source.",
    ),
    (
        "dbr_bytes_inflated_total",
        Labels::Unlabelled,
        "Bytes of CSV inflated from report objects.",
    ),
    (
        "dbr_poll_errors_total",
        Labels::Unlabelled,
        "Polls that could not run (listing, database).",
    ),
    (
        "dbr_s3_requests_total",
        Labels::PerIntegration,
        "Requests sent to S3 (listing pages, reports read), by integration.",
    ),
    (
        "dbr_spilled_runs_total",
        Labels::Unlabelled,
        "Sorted runs of daily sums written to the temporary directory by reports that outgrew the memory budget.",
    ),
    (
        "dbr_statement_swap_timeouts_total",
        Labels::PerIntegration,
        "Months not swapped in because other sessions held daily_costs through every try, by integration.",
    ),
];

/// Every gauge, with its labels and help text.
const GAUGES: [(&str, Labels, &str); 3] = [
    (
        "dbr_last_successful_poll_timestamp_seconds",
        Labels::Unlabelled,
        "When the last poll without error ended (Unix time; 0 before the first).",
    ),
    (
        "dbr_integration_last_successful_poll_timestamp_seconds",
        Labels::PerIntegration,
        "When the last poll that could list and plan an integration ended, by integration (Unix time).",
    ),
    (
        "dbr_reconciliation_mismatches",
        Labels::PerIntegration,
        "Accounts whose line items do not add up to their AccountTotal, by payer and period.",
    ),
];

const INGEST_DURATION: &str = "dbr_report_ingest_duration_seconds";

/// Installs the process's metrics recorder; the handle renders `/metrics`.
pub fn init_metrics() -> Result<PrometheusHandle, String> {
    let handle = recorder()?.install_recorder().map_err(|e| e.to_string())?;
    register_metrics();
    Ok(handle)
}

fn recorder() -> Result<PrometheusBuilder, String> {
    PrometheusBuilder::new()
        .set_buckets(&[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0])
        .map_err(|e| e.to_string())
}

/// Describes every metric and exports each counter and gauge at zero.
fn register_metrics() {
    for (name, labels, help) in COUNTERS {
        describe_counter!(name, help);
        if labels == Labels::Unlabelled {
            counter!(name).absolute(0);
        }
    }
    for (name, labels, help) in GAUGES {
        describe_gauge!(name, help);
        if labels == Labels::Unlabelled {
            gauge!(name).set(0.0);
        }
    }
    describe_histogram!(
        INGEST_DURATION,
        "Time to ingest one report, read to commit."
    );
}

/// The labels of a report's series: its payer, and the integration it was read for.
fn report_labels(
    integration: &IntegrationName,
    statement: &StatementId,
) -> [(&'static str, String); 2] {
    [
        ("payer", statement.payer.to_string()),
        ("integration", integration.to_string()),
    ]
}

pub fn report_ingested(
    integration: &IntegrationName,
    statement: &StatementId,
    rows: RowCounts,
    unreconciled: usize,
    seconds: f64,
) {
    let labels = report_labels(integration, statement);
    counter!("dbr_reports_ingested_total", &labels).increment(1);
    counter!("dbr_rows_read_total", &labels).increment(rows.line_items);
    counter!("dbr_rows_kept_total", &labels).increment(rows.kept);
    counter!("dbr_rows_dropped_total", &labels).increment(rows.dropped_unmonitored);
    let [payer, integration] = labels;
    let labels = [payer, ("period", statement.period.to_string()), integration];
    gauge!("dbr_reconciliation_mismatches", &labels).set(unreconciled as f64);
    histogram!(INGEST_DURATION).record(seconds);
}

pub fn report_failed(integration: &IntegrationName, statement: &StatementId, seconds: f64) {
    counter!(
        "dbr_reports_failed_total",
        &report_labels(integration, statement)
    )
    .increment(1);
    histogram!(INGEST_DURATION).record(seconds);
}

pub fn report_skipped(integration: &IntegrationName, statement: &StatementId) {
    counter!(
        "dbr_reports_skipped_total",
        &report_labels(integration, statement)
    )
    .increment(1);
}

/// The swap of a month gave up: dashboards' queries held `daily_costs` through every try.
pub fn swap_timed_out(integration: &IntegrationName) {
    counter!("dbr_statement_swap_timeouts_total", "integration" => integration.to_string())
        .increment(1);
}

/// Adds the requests one poll sent to S3 for an integration.
pub fn s3_requests(integration: &IntegrationName, requests: u64) {
    counter!("dbr_s3_requests_total", "integration" => integration.to_string()).increment(requests);
}

/// An integration was listed and planned: its reports may still have failed, one by one.
pub fn integration_polled(integration: &IntegrationName) {
    gauge!("dbr_integration_last_successful_poll_timestamp_seconds", "integration" => integration.to_string())
        .set(unix_now());
}

/// Adds what one read of a report transferred.
pub fn bytes_read(progress: &Progress) {
    use std::sync::atomic::Ordering::Relaxed;
    counter!("dbr_bytes_downloaded_total").increment(progress.downloaded.load(Relaxed));
    counter!("dbr_bytes_inflated_total").increment(progress.inflated.load(Relaxed));
}

/// Adds the sorted runs a report's daily sums were written out as (none when they fit the budget).
pub fn runs_spilled(runs: usize) {
    counter!("dbr_spilled_runs_total").increment(runs as u64);
}

pub fn poll_succeeded() {
    gauge!("dbr_last_successful_poll_timestamp_seconds").set(unix_now());
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

pub fn poll_failed() {
    counter!("dbr_poll_errors_total").increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabelled_metrics_start_at_zero_and_per_integration_ones_only_with_their_labels() {
        let recorder = recorder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, register_metrics);
        let scrape = handle.render();
        let readme = include_str!("../README.md");
        let documented: Vec<&str> = readme
            .lines()
            .filter(|line| line.trim_start().starts_with("| `dbr_"))
            .flat_map(|line| line.split('`').skip(1).step_by(2))
            .filter(|name| name.starts_with("dbr_") && !name.starts_with(INGEST_DURATION))
            .collect();
        assert_eq!(
            documented.len(),
            COUNTERS.len() + GAUGES.len(),
            "{documented:?}"
        );
        for series in documented {
            let (name, labelled) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.contains("integration")),
                None => (series, false),
            };
            let (_, labels, _) = COUNTERS
                .iter()
                .chain(&GAUGES)
                .find(|(known, _, _)| *known == name)
                .unwrap_or_else(|| panic!("{name} is documented but not exported"));
            assert_eq!(*labels == Labels::PerIntegration, labelled, "{series}");
            let at_zero = scrape.lines().any(|line| line == format!("{name} 0"));
            assert_eq!(
                at_zero, !labelled,
                "{name} at zero without labels:\n{scrape}"
            );
        }
    }
}
