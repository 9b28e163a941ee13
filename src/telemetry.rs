//! Logs and metrics, set up once: `tracing` to stderr (human, or JSON lines with
//! `DBR_LOG_FORMAT=json`, level from `RUST_LOG`), and the Prometheus recorder behind `/metrics`.
//! The metric names live here, with their help texts.

use std::io::IsTerminal;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::report::aggregate::RowCounts;
use crate::report::key::ReportKey;
use crate::report::read::Progress;

/// Logs to stderr (through the progress bars, when shown): JSON lines when `json`, else human
/// lines (coloured on a terminal).
pub fn init_logs(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,dbr_ingest=info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::log_writer());
    if json {
        logs.json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Installs the process's metrics recorder; the handle renders `/metrics`.
pub fn init_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0])
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe_counter!(
        "dbr_reports_ingested_total",
        "Report versions ingested, by payer."
    );
    describe_counter!(
        "dbr_reports_skipped_total",
        "Chosen reports not read: unchanged, or claimed by another replica."
    );
    describe_counter!(
        "dbr_reports_failed_total",
        "Report versions that failed, by payer."
    );
    describe_counter!(
        "dbr_rows_read_total",
        "Line items read from ingested reports."
    );
    describe_counter!("dbr_rows_kept_total", "Line items of monitored accounts.");
    describe_counter!(
        "dbr_rows_dropped_total",
        "Line items of accounts not monitored."
    );
    describe_counter!(
        "dbr_bytes_downloaded_total",
        "Bytes of report objects read from the source."
    );
    describe_counter!(
        "dbr_bytes_inflated_total",
        "Bytes of CSV inflated from report objects."
    );
    describe_histogram!(
        "dbr_report_ingest_duration_seconds",
        "Time to ingest one report, read to commit."
    );
    describe_gauge!(
        "dbr_last_successful_poll_timestamp_seconds",
        "When the last poll without error ended (Unix time)."
    );
    describe_gauge!(
        "dbr_reconciliation_mismatches",
        "Accounts whose line items do not add up to their AccountTotal, by payer and period."
    );
    describe_counter!(
        "dbr_poll_errors_total",
        "Polls that could not run (listing, database)."
    );
    Ok(handle)
}

pub fn report_ingested(key: &ReportKey, rows: RowCounts, unreconciled: usize, seconds: f64) {
    let payer = key.payer.to_string();
    counter!("dbr_reports_ingested_total", "payer" => payer.clone()).increment(1);
    counter!("dbr_rows_read_total", "payer" => payer.clone()).increment(rows.line_items);
    counter!("dbr_rows_kept_total", "payer" => payer.clone()).increment(rows.kept);
    counter!("dbr_rows_dropped_total", "payer" => payer.clone())
        .increment(rows.dropped_unmonitored);
    gauge!("dbr_reconciliation_mismatches", "payer" => payer, "period" => key.period.to_string())
        .set(unreconciled as f64);
    histogram!("dbr_report_ingest_duration_seconds").record(seconds);
}

pub fn report_failed(key: &ReportKey, seconds: f64) {
    counter!("dbr_reports_failed_total", "payer" => key.payer.to_string()).increment(1);
    histogram!("dbr_report_ingest_duration_seconds").record(seconds);
}

pub fn report_skipped(key: &ReportKey) {
    counter!("dbr_reports_skipped_total", "payer" => key.payer.to_string()).increment(1);
}

/// Adds what one read of a report transferred.
pub fn bytes_read(progress: &Progress) {
    use std::sync::atomic::Ordering::Relaxed;
    counter!("dbr_bytes_downloaded_total").increment(progress.downloaded.load(Relaxed));
    counter!("dbr_bytes_inflated_total").increment(progress.inflated.load(Relaxed));
}

pub fn poll_succeeded() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    gauge!("dbr_last_successful_poll_timestamp_seconds").set(now.as_secs_f64());
}

pub fn poll_failed() {
    counter!("dbr_poll_errors_total").increment(1);
}
