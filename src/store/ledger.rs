//! The `reports` ledger: per object, the version last seen and its outcome.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use sqlx::PgExecutor;

use super::{Claim, ReportVersion, Store, StoreError, bigint};
use crate::domain::{AccountId, IntegrationName, InvoiceStatus};
use crate::failure::FailureKind;
use crate::formats::Format;
use crate::report::aggregate::RowCounts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its rows are what the views show for its statement.
    Ingested,
    /// It could not be ingested, for a reason of this kind.
    Failed(FailureKind),
    /// Its statement now shows another object (the with-resources variant, or a newer copy).
    Superseded,
}

impl Status {
    fn parse(status: &str, failure_kind: Option<&str>) -> Result<Status, StoreError> {
        let unknown = |value: &str| StoreError::UnknownValue {
            table: "reports",
            value: value.to_owned(),
        };
        match (status, failure_kind) {
            ("ingested", _) => Ok(Status::Ingested),
            ("superseded", _) => Ok(Status::Superseded),
            ("failed", Some(kind)) => FailureKind::parse(kind)
                .map(Status::Failed)
                .ok_or_else(|| unknown(kind)),
            (other, _) => Err(unknown(other)),
        }
    }
}

/// A report an integration read before, to list where its next versions appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownReport {
    pub format: Format,
    pub payer: AccountId,
    /// A CUR's folder (`prefix/report/`); empty for a DBR.
    pub folder: String,
}

fn parse_format(format: &str) -> Result<Format, StoreError> {
    Format::parse(format).ok_or_else(|| StoreError::UnknownValue {
        table: "reports",
        value: format.to_owned(),
    })
}

/// What the ledger remembers of one report version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub etag: String,
    pub size: u64,
    pub status: Status,
    pub monitored_fingerprint: Option<String>,
    pub error: Option<String>,
}

type LedgerRow = (
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn entry(
    (key, etag, size, status, failure_kind, monitored_fingerprint, error): LedgerRow,
) -> Result<(String, LedgerEntry), StoreError> {
    let entry = LedgerEntry {
        etag,
        size: u64::try_from(size).unwrap_or_default(),
        status: Status::parse(&status, failure_kind.as_deref())?,
        monitored_fingerprint,
        error,
    };
    Ok((key, entry))
}

impl Store {
    /// An integration's ledger of one location (`s3://bucket/prefix` or `dir:PATH`), by
    /// object key.
    pub async fn ledger(
        &self,
        integration: &IntegrationName,
        location: &str,
    ) -> Result<HashMap<String, LedgerEntry>, StoreError> {
        let rows: Vec<LedgerRow> = sqlx::query_as(
            "SELECT key, etag, size, status, failure_kind, monitored_fingerprint, error
             FROM reports WHERE integration = $1 AND location = $2",
        )
        .bind(integration.as_str())
        .bind(location)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(entry).collect()
    }

    /// The reports these integrations have read from `location`: each DBR payer, and each
    /// CUR's folder (its report's, above the billing periods').
    pub async fn known_reports(
        &self,
        integrations: &[&IntegrationName],
        location: &str,
    ) -> Result<Vec<KnownReport>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT DISTINCT format, payer_account_id,
                    CASE WHEN format = 'cur' THEN regexp_replace(key, '[^/]*/[^/]*$', '') ELSE '' END
             FROM reports
             WHERE integration = ANY($1) AND location = $2 AND payer_account_id IS NOT NULL",
        )
        .bind(names(integrations))
        .bind(location)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(format, payer, folder)| {
                Ok(KnownReport {
                    format: parse_format(&format)?,
                    payer: payer.parse()?,
                    folder,
                })
            })
            .collect()
    }

    /// When `location` was last listed whole for every one of these integrations (`None` when
    /// one of them never was).
    pub async fn last_full_listing(
        &self,
        integrations: &[&IntegrationName],
        location: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (listed, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*), min(listed_at) FROM full_listings
             WHERE integration = ANY($1) AND location = $2",
        )
        .bind(names(integrations))
        .bind(location)
        .fetch_one(&self.pool)
        .await?;
        Ok(oldest.filter(|_| listed == integrations.len() as i64))
    }

    pub async fn record_full_listing(
        &self,
        integrations: &[&IntegrationName],
        location: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO full_listings (integration, location, listed_at)
             SELECT name, $2, now() FROM UNNEST($1::text[]) AS name
             ON CONFLICT (integration, location) DO UPDATE SET listed_at = EXCLUDED.listed_at",
        )
        .bind(names(integrations))
        .bind(location)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed attempt. The statement's data, if any, stays as it was.
    pub async fn record_failure(
        &self,
        report: &ReportVersion<'_>,
        error: &str,
        kind: FailureKind,
    ) -> Result<(), StoreError> {
        write_entry(&self.pool, report, &Outcome::Failed { error, kind }).await
    }
}

fn names<'a>(integrations: &[&'a IntegrationName]) -> Vec<&'a str> {
    integrations.iter().map(|name| name.as_str()).collect()
}

/// What became of a report version.
pub(super) enum Outcome<'a> {
    Ingested {
        rows: RowCounts,
        invoice_status: InvoiceStatus,
        monitored_fingerprint: &'a str,
    },
    Failed {
        error: &'a str,
        kind: FailureKind,
    },
    /// Read, but its statement's month comes from another format now.
    Superseded,
}

/// Writes the ledger row of `report`: its version, its objects and what became of it.
pub(super) async fn write_entry(
    executor: impl PgExecutor<'_>,
    report: &ReportVersion<'_>,
    outcome: &Outcome<'_>,
) -> Result<(), StoreError> {
    let (status, kind, rows, invoice_status, fingerprint, error) = match outcome {
        Outcome::Ingested {
            rows,
            invoice_status,
            monitored_fingerprint,
        } => (
            "ingested",
            None,
            Some(rows),
            Some(invoice_status.as_str()),
            Some(*monitored_fingerprint),
            None,
        ),
        Outcome::Failed { error, kind } => (
            "failed",
            Some(kind.as_str()),
            None,
            None,
            None,
            Some(*error),
        ),
        Outcome::Superseded => ("superseded", None, None, None, None, None),
    };
    let version = report.version;
    let statement = &version.statement;
    let objects: Vec<serde_json::Value> = version
        .objects()
        .map(|object| serde_json::json!({"key": object.key, "etag": object.etag, "size": object.size}))
        .collect();
    sqlx::query(
        "INSERT INTO reports (location, key, etag, size, last_modified, payer_account_id, billing_period,
                              entity, variant, status, failure_kind, rows_read, rows_kept, rows_dropped,
                              rows_outside_period, invoice_status, monitored_fingerprint, error,
                              started_at, integration, finished_at, format, objects)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                 $19, $20, now(), $21, $22)
         ON CONFLICT (integration, location, key) DO UPDATE SET
             etag = EXCLUDED.etag, size = EXCLUDED.size, last_modified = EXCLUDED.last_modified,
             payer_account_id = EXCLUDED.payer_account_id, variant = EXCLUDED.variant,
             status = EXCLUDED.status, failure_kind = EXCLUDED.failure_kind,
             rows_read = EXCLUDED.rows_read, rows_kept = EXCLUDED.rows_kept,
             rows_dropped = EXCLUDED.rows_dropped,
             rows_outside_period = EXCLUDED.rows_outside_period, invoice_status = EXCLUDED.invoice_status,
             monitored_fingerprint = EXCLUDED.monitored_fingerprint, error = EXCLUDED.error,
             started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
             format = EXCLUDED.format, objects = EXCLUDED.objects",
    )
    .bind(report.location)
    .bind(&version.key)
    .bind(&version.identity)
    .bind(bigint(version.size()))
    .bind(version.last_modified())
    .bind(statement.payer.as_str())
    .bind(statement.period.first_day())
    .bind(statement.entity_str())
    .bind(&version.variant)
    .bind(status)
    .bind(kind)
    .bind(rows.map(|r| bigint(r.line_items + r.footer)))
    .bind(rows.map(|r| bigint(r.kept)))
    .bind(rows.map(|r| bigint(r.dropped_unmonitored)))
    .bind(rows.map(|r| bigint(r.outside_period)))
    .bind(invoice_status)
    .bind(fingerprint)
    .bind(error)
    .bind(report.started_at)
    .bind(report.integration.as_str())
    .bind(version.format.as_str())
    .bind(serde_json::Value::Array(objects))
    .execute(executor)
    .await?;
    Ok(())
}

impl Claim {
    /// An integration's ledger entry of one object, read afresh under the claim (on its
    /// connection).
    pub async fn ledger_entry(
        &mut self,
        integration: &IntegrationName,
        location: &str,
        key: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let row: Option<LedgerRow> = sqlx::query_as(
            "SELECT key, etag, size, status, failure_kind, monitored_fingerprint, error
             FROM reports WHERE integration = $1 AND location = $2 AND key = $3",
        )
        .bind(integration.as_str())
        .bind(location)
        .bind(key)
        .fetch_optional(&mut *self.connection)
        .await?;
        row.map(|row| entry(row).map(|(_, entry)| entry))
            .transpose()
    }
}
