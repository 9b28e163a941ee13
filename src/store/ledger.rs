//! The `reports` ledger: per object, the version last seen and its outcome.

use std::collections::HashMap;

use super::{ReportVersion, Store, StoreError};

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

impl Store {
    /// The ledger of one bucket (or directory), by object key.
    pub async fn ledger(&self, bucket: &str) -> Result<HashMap<String, LedgerEntry>, StoreError> {
        let rows: Vec<LedgerRow> = sqlx::query_as(
            "SELECT key, etag, size, status, retryable, monitored_fingerprint, error FROM reports WHERE bucket = $1",
        )
        .bind(bucket)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(key, etag, size, status, retryable, monitored_fingerprint, error)| {
                    let entry = LedgerEntry {
                        etag,
                        size: u64::try_from(size).unwrap_or_default(),
                        status: Status::parse(&status)?,
                        retryable,
                        monitored_fingerprint,
                        error,
                    };
                    Ok((key, entry))
                },
            )
            .collect()
    }

    /// Records a failed attempt. The statement's data, if any, stays as it was.
    pub async fn record_failure(
        &self,
        report: &ReportVersion<'_>,
        error: &str,
        retryable: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO reports (bucket, key, etag, size, last_modified, payer_account_id, billing_period,
                                  entity, variant, status, retryable, error, started_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'failed', $10, $11, $12, now())
             ON CONFLICT (bucket, key) DO UPDATE SET
                 etag = EXCLUDED.etag, size = EXCLUDED.size, last_modified = EXCLUDED.last_modified,
                 status = 'failed', retryable = EXCLUDED.retryable, error = EXCLUDED.error,
                 rows_read = NULL, rows_kept = NULL, rows_dropped = NULL, invoice_status = NULL,
                 monitored_fingerprint = NULL,
                 started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at",
        )
        .bind(report.bucket)
        .bind(&report.object.key)
        .bind(&report.object.etag)
        .bind(i64::try_from(report.object.size).unwrap_or(i64::MAX))
        .bind(report.object.last_modified)
        .bind(report.key.payer.as_str())
        .bind(report.key.period.first_day())
        .bind(report.key.entity.as_deref().unwrap_or(""))
        .bind(report.key.variant.as_str())
        .bind(retryable)
        .bind(error)
        .bind(report.started_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
