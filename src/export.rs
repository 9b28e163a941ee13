//! `dbr-ingest export focus`: one month of `focus_costs` as FOCUS 1.2 files that other FinOps
//! tools read, a file per integration and billing account (never one mixing integrations that
//! read the same payer; one payer's month is estimated or final throughout, as FOCUS's rules on
//! InvoiceId want of a file), streamed from the database to disk in bounded memory, with a JSON
//! manifest giving each file's rows, bytes and SHA-256.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Acquire;
use tokio::io::AsyncWriteExt;

use crate::domain::{IntegrationName, Period};
use crate::store::{Store, StoreError};

/// The FOCUS version `focus_costs` follows.
pub const FOCUS_VERSION: &str = "1.2";

/// What an export wrote: the manifest, as written beside the files.
#[derive(Debug, Serialize)]
pub struct Manifest {
    pub focus_version: &'static str,
    pub dataset: &'static str,
    pub period: String,
    pub format: &'static str,
    pub files: Vec<ExportedFile>,
}

#[derive(Debug, Serialize)]
pub struct ExportedFile {
    pub integration: String,
    pub billing_account_id: String,
    /// The file's name, in the manifest's directory.
    pub file: String,
    /// Charge rows (the header line not counted).
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading focus_costs: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes `period`'s rows of `focus_costs` as CSV into `out`: a file per integration and payer
/// with a statement that month (of `integration` alone, when given), then the manifest. All
/// files read one snapshot of the database. Each file appears whole or not at all: it is
/// written beside under a `.part` name and renamed once complete.
pub async fn export_focus(
    store: &Store,
    period: Period,
    integration: Option<&IntegrationName>,
    out: &Path,
) -> Result<Manifest, ExportError> {
    tokio::fs::create_dir_all(out)
        .await
        .map_err(|source| write_error(out, source))?;
    let mut connection = store.pool().acquire().await.map_err(StoreError::from)?;
    let mut tx = connection.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let statements: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT integration, payer_account_id FROM statements
         WHERE billing_period = $1 AND ($2::text IS NULL OR integration = $2)
         ORDER BY 1, 2",
    )
    .bind(period.first_day())
    .bind(integration.map(IntegrationName::as_str))
    .fetch_all(&mut *tx)
    .await?;
    let columns = select_list(&mut tx).await?;
    let mut files = Vec::new();
    for (integration, payer) in statements {
        let file = format!("focus-{period}-{integration}-{payer}.csv");
        // COPY takes no parameters: the period is a date, and integration names and account
        // IDs are letters, digits, - and _ (checked where they are parsed and stored), quoted
        // all the same.
        let statement = format!(
            r#"COPY (SELECT {columns} FROM focus_costs
                     WHERE "BillingPeriodStart" = '{}'::timestamptz
                       AND "x_Integration" = '{}' AND "BillingAccountId" = '{}')
               TO STDOUT WITH (FORMAT csv, HEADER)"#,
            period.first_day(),
            integration.replace('\'', "''"),
            payer.replace('\'', "''")
        );
        let mut stream = tx.copy_out_raw(&statement).await?;
        let path = out.join(&file);
        let part = out.join(format!("{file}.part"));
        let mut writer = create(&part).await?;
        let (mut digest, mut records, mut bytes) = (Sha256::new(), CsvRecords::default(), 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            writer
                .write_all(&chunk)
                .await
                .map_err(|source| write_error(&part, source))?;
            digest.update(&chunk);
            records.count(&chunk);
            bytes += chunk.len() as u64;
        }
        drop(stream);
        finish(writer, &part, &path).await?;
        files.push(ExportedFile {
            integration,
            billing_account_id: payer,
            file,
            rows: records.complete().saturating_sub(1),
            bytes,
            sha256: hex(&digest.finalize()),
        });
    }
    tx.commit().await?;
    let manifest = Manifest {
        focus_version: FOCUS_VERSION,
        dataset: "CostAndUsage",
        period: period.to_string(),
        format: "csv",
        files,
    };
    let name = match integration {
        Some(integration) => format!("focus-{period}-{integration}-manifest.json"),
        None => format!("focus-{period}-manifest.json"),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    let (path, part) = (out.join(&name), out.join(format!("{name}.part")));
    let mut writer = create(&part).await?;
    writer
        .write_all(&json)
        .await
        .map_err(|source| write_error(&part, source))?;
    finish(writer, &part, &path).await?;
    Ok(manifest)
}

/// `focus_costs`' columns in order, each decimal written with at least one decimal place
/// (`1.0`, not `1`): the same number, which a reader inferring types from CSV values (as the
/// FOCUS validator does) cannot take for an integer.
async fn select_list(tx: &mut sqlx::PgConnection) -> Result<String, ExportError> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = 'focus_costs' ORDER BY ordinal_position",
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(columns
        .iter()
        .map(|(name, data_type)| {
            let name = format!("\"{}\"", name.replace('"', "\"\""));
            if data_type == "numeric" {
                format!("round({name}, greatest(scale({name}), 1)) AS {name}")
            } else {
                name
            }
        })
        .collect::<Vec<_>>()
        .join(", "))
}

/// A file being written under its `.part` name; [`finish`] gives it its own.
async fn create(part: &Path) -> Result<tokio::io::BufWriter<tokio::fs::File>, ExportError> {
    tokio::fs::File::create(part)
        .await
        .map(tokio::io::BufWriter::new)
        .map_err(|source| write_error(part, source))
}

/// Flushes and syncs `part`, then renames it `path`.
async fn finish(
    mut writer: tokio::io::BufWriter<tokio::fs::File>,
    part: &Path,
    path: &Path,
) -> Result<(), ExportError> {
    writer
        .flush()
        .await
        .map_err(|source| write_error(part, source))?;
    writer
        .get_ref()
        .sync_all()
        .await
        .map_err(|source| write_error(part, source))?;
    tokio::fs::rename(part, path)
        .await
        .map_err(|source| write_error(path, source))
}

fn write_error(path: &Path, source: std::io::Error) -> ExportError {
    ExportError::Write {
        path: path.to_owned(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Counts the records of CSV as PostgreSQL writes it, chunk by chunk: a line end inside a
/// quoted field (a description with a line break) ends no record.
#[derive(Debug, Default)]
struct CsvRecords {
    complete: u64,
    quoted: bool,
}

impl CsvRecords {
    fn count(&mut self, mut bytes: &[u8]) {
        while let Some(at) = memchr::memchr2(b'"', b'\n', bytes) {
            match bytes[at] {
                b'"' => self.quoted = !self.quoted,
                _ if !self.quoted => self.complete += 1,
                _ => {}
            }
            bytes = &bytes[at + 1..];
        }
    }

    fn complete(&self) -> u64 {
        self.complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_across_chunks_and_quoted_line_ends() {
        let csv = "a,b\n1,\"two\nlines, \"\"quoted\"\"\"\n3,4\n";
        for split in 0..csv.len() {
            let mut records = CsvRecords::default();
            records.count(&csv.as_bytes()[..split]);
            records.count(&csv.as_bytes()[split..]);
            assert_eq!(records.complete(), 3, "split at {split}");
        }
    }
}
