//! The `reports` ledger: per object, the version last seen and its outcome.

use std::collections::HashMap;

use sqlx::PgExecutor;

use super::{ReportVersion, Store, StoreError, bigint};
use crate::report::aggregate::RowCounts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its rows are what the views show for its statement.
    Ingested,
    Failed,
    /// Its statement now shows another object (the with-resources variant, or a newer copy).
    Superseded,
}

impl Status {
    fn parse(text: &str) -> Result<Status, StoreError> {
        match text {
            "ingested" => Ok(Status::Ingested),
            "failed" => Ok(Status::Failed),
            "superseded" => Ok(Status::Superseded),
            other => Err(StoreError::Invalid(format!(
                "unknown report status {other:?}"
            ))),
        }
    }
}

/// What the ledger remembers of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub etag: String,
    pub size: u64,
    pub status: Status,
    pub retryable: bool,
    pub monitored_fingerprint: Option<String>,
    pub error: Option<String>,
}

type LedgerRow = (
    String,
    String,
    i64,
    String,
    bool,
    Option<String>,
    Option<String>,
);

fn entry(
    (key, etag, size, status, retryable, monitored_fingerprint, error): LedgerRow,
) -> Result<(String, LedgerEntry), StoreError> {
    let entry = LedgerEntry {
        etag,
        size: u64::try_from(size).unwrap_or_default(),
        status: Status::parse(&status)?,
        retryable,
        monitored_fingerprint,
        error,
    };
    Ok((key, entry))
}

impl Store {
    /// The ledger of one bucket (or directory), by object key.
    pub async fn ledger(&self, bucket: &str) -> Result<HashMap<String, LedgerEntry>, StoreError> {
        let rows: Vec<LedgerRow> = sqlx::query_as(
            "SELECT key, etag, size, status, retryable, monitored_fingerprint, error FROM reports WHERE bucket = $1",
        )
        .bind(bucket)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(entry).collect()
    }

    /// The ledger entry of one object, read afresh.
    pub async fn ledger_entry(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let row: Option<LedgerRow> = sqlx::query_as(
            "SELECT key, etag, size, status, retryable, monitored_fingerprint, error
             FROM reports WHERE bucket = $1 AND key = $2",
        )
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| entry(row).map(|(_, entry)| entry))
            .transpose()
    }

    /// Records a failed attempt. The statement's data, if any, stays as it was.
    pub async fn record_failure(
        &self,
        report: &ReportVersion<'_>,
        error: &str,
        retryable: bool,
    ) -> Result<(), StoreError> {
        write_entry(&self.pool, report, &Outcome::Failed { error, retryable }).await
    }
}

/// What became of a report version.
pub(super) enum Outcome<'a> {
    Ingested {
        rows: RowCounts,
        invoice_status: &'a str,
        monitored_fingerprint: &'a str,
    },
    Failed {
        error: &'a str,
        retryable: bool,
    },
}

/// Writes the ledger row of `report`'s object: its version and what became of it.
pub(super) async fn write_entry(
    executor: impl PgExecutor<'_>,
    report: &ReportVersion<'_>,
    outcome: &Outcome<'_>,
) -> Result<(), StoreError> {
    let (status, retryable, rows, invoice_status, fingerprint, error) = match outcome {
        Outcome::Ingested {
            rows,
            invoice_status,
            monitored_fingerprint,
        } => (
            "ingested",
            false,
            Some(rows),
            Some(*invoice_status),
            Some(*monitored_fingerprint),
            None,
        ),
        Outcome::Failed { error, retryable } => {
            ("failed", *retryable, None, None, None, Some(*error))
        }
    };
    sqlx::query(
        "INSERT INTO reports (bucket, key, etag, size, last_modified, payer_account_id, billing_period,
                              entity, variant, status, retryable, rows_read, rows_kept, rows_dropped,
                              invoice_status, monitored_fingerprint, error, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, now())
         ON CONFLICT (bucket, key) DO UPDATE SET
             etag = EXCLUDED.etag, size = EXCLUDED.size, last_modified = EXCLUDED.last_modified,
             status = EXCLUDED.status, retryable = EXCLUDED.retryable,
             rows_read = EXCLUDED.rows_read, rows_kept = EXCLUDED.rows_kept,
             rows_dropped = EXCLUDED.rows_dropped, invoice_status = EXCLUDED.invoice_status,
             monitored_fingerprint = EXCLUDED.monitored_fingerprint, error = EXCLUDED.error,
             started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at",
    )
    .bind(report.bucket)
    .bind(&report.object.key)
    .bind(&report.object.etag)
    .bind(bigint(report.object.size))
    .bind(report.object.last_modified)
    .bind(report.key.payer.as_str())
    .bind(report.key.period.first_day())
    .bind(report.key.entity.as_deref().unwrap_or(""))
    .bind(report.key.variant.as_str())
    .bind(status)
    .bind(retryable)
    .bind(rows.map(|r| bigint(r.line_items + r.footer)))
    .bind(rows.map(|r| bigint(r.kept)))
    .bind(rows.map(|r| bigint(r.dropped_unmonitored)))
    .bind(invoice_status)
    .bind(fingerprint)
    .bind(error)
    .bind(report.started_at)
    .execute(executor)
    .await?;
    Ok(())
}
