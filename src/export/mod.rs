//! `dbr-ingest export focus`: one month of `focus_costs` as FOCUS 1.2 files that other FinOps
//! tools read, a file per integration and billing account (never one mixing integrations that
//! read the same payer; one payer's month is estimated or final throughout, as FOCUS's rules on
//! InvoiceId want of a file), streamed from the database to disk in bounded memory, with a JSON
//! manifest giving each file's rows, bytes and SHA-256. Parquet (the default, as AWS's own FOCUS
//! exports) keeps each column's type; CSV is what a spreadsheet opens.
//!
//! Each file is one `COPY … TO STDOUT` read by this task and handed, chunk by chunk through a
//! short queue, to an encoder on a blocking thread ([`csv::CsvFile`], [`parquet::ParquetFile`]),
//! so that the database produces the next rows while the encoder writes the last ones.

mod csv;
mod parquet;

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Acquire;

use crate::domain::{IntegrationName, Period};
use crate::store::{Store, StoreError};

/// The FOCUS version `focus_costs` follows.
pub const FOCUS_VERSION: &str = "1.2";

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Typed columns: decimals exact, timestamps in UTC, IDs as strings.
    Parquet,
    /// A header line, then one line per charge.
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
        }
    }
}

/// What an export wrote: the manifest, as written beside the files.
#[derive(Debug, Serialize)]
pub struct Manifest {
    pub focus_version: &'static str,
    pub dataset: &'static str,
    pub period: String,
    pub format: Format,
    pub files: Vec<ExportedFile>,
}

#[derive(Debug, Serialize)]
pub struct ExportedFile {
    pub integration: String,
    pub billing_account_id: String,
    /// The file's name, in the manifest's directory.
    pub file: String,
    /// Charge rows (a CSV's header line not counted).
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
    /// A value Parquet's types cannot hold exactly: refused, never rounded.
    #[error("{}, row {row}, column {column}: {value} {reason}", .path.display())]
    Unrepresentable {
        path: PathBuf,
        row: u64,
        column: String,
        value: String,
        reason: String,
    },
    /// COPY's text output not as PostgreSQL documents it.
    #[error("{}, row {row}: unexpected COPY output from the database: {reason}", .path.display())]
    Copy {
        path: PathBuf,
        row: u64,
        reason: String,
    },
}

/// One column of `focus_costs`, and how it is read and written.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `numeric`: written exactly, as Parquet's DECIMAL of the file's largest scale.
    Decimal,
    /// `timestamptz`, read as microseconds since the epoch (UTC).
    Timestamp,
    Boolean,
    /// Text, and what is read as text (the tags' JSON).
    Text,
}

/// `columns` as a select list, each as `read` gives its kind: an expression in which `{name}`
/// stands for the column's quoted name.
fn select_list(columns: &[Column], read: impl Fn(Kind) -> &'static str) -> String {
    columns
        .iter()
        .map(|column| {
            let quoted = format!("\"{}\"", column.name.replace('"', "\"\""));
            read(column.kind).replace("{name}", &quoted)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `period`'s rows of `focus_costs` as `format` into `out`: a file per integration and
/// payer with a statement that month (of `integration` alone, when given), then the manifest.
/// Each file is read in one snapshot, in a transaction of its own: a transaction holds the
/// locks of every partition it read until it ends, and one per file keeps them to those of one
/// integration. Each file appears whole or not at all: it is written beside under a `.part`
/// name and renamed once complete.
pub async fn export_focus(
    store: &Store,
    period: Period,
    integration: Option<&IntegrationName>,
    format: Format,
    out: &Path,
) -> Result<Manifest, ExportError> {
    tokio::fs::create_dir_all(out)
        .await
        .map_err(|source| write_error(out, source))?;
    let mut connection = store.pool().acquire().await.map_err(StoreError::from)?;
    let statements: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT integration, payer_account_id FROM statements
         WHERE billing_period = $1 AND ($2::text IS NULL OR integration = $2)
         ORDER BY 1, 2",
    )
    .bind(period.first_day())
    .bind(integration.map(IntegrationName::as_str))
    .fetch_all(&mut *connection)
    .await?;
    let columns = columns(&mut connection).await?;
    let mut files = Vec::new();
    for (integration, payer) in statements {
        let mut tx = connection.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let file = format!(
            "focus-{period}-{integration}-{payer}.{}",
            format.extension()
        );
        // COPY takes no parameters: the period is a date, and integration names and account
        // IDs are letters, digits, - and _ (checked where they are parsed and stored), quoted
        // all the same.
        let rows = format!(
            r#"FROM focus_costs WHERE "BillingPeriodStart" = '{}'::timestamptz
                 AND {} = '{}' AND "BillingAccountId" = '{}'"#,
            period.first_day(),
            crate::store::integration_column("focus_costs"),
            integration.replace('\'', "''"),
            payer.replace('\'', "''")
        );
        let (path, part) = (out.join(&file), out.join(format!("{file}.part")));
        let written = async {
            match format {
                Format::Csv => {
                    let copy = format!(
                        "COPY (SELECT {} {rows}) TO STDOUT WITH (FORMAT csv, HEADER)",
                        csv::select_list(&columns)
                    );
                    let encoder = csv::CsvFile::new(create(&part)?, &part);
                    copy_into(&mut tx, &copy, encoder, &part).await
                }
                Format::Parquet => {
                    let scales = parquet::scales(&mut tx, &columns, &rows, &part).await?;
                    let copy = format!(
                        "COPY (SELECT {} {rows}) TO STDOUT",
                        parquet::select_list(&columns)
                    );
                    let encoder =
                        parquet::ParquetFile::new(create(&part)?, &columns, &scales, &part)?;
                    copy_into(&mut tx, &copy, encoder, &part).await
                }
            }
        }
        .await;
        // A file that failed leaves nothing behind, not even its part.
        let written = written.inspect_err(|_| {
            let _ = std::fs::remove_file(&part);
        })?;
        tx.commit().await?;
        finish(&part, &path)?;
        files.push(ExportedFile {
            integration,
            billing_account_id: payer,
            file,
            rows: written.rows,
            bytes: written.bytes,
            sha256: hex(&written.sha256),
        });
    }
    let manifest = Manifest {
        focus_version: FOCUS_VERSION,
        dataset: "CostAndUsage",
        period: period.to_string(),
        format,
        files,
    };
    let name = match integration {
        Some(integration) => format!("focus-{period}-{integration}-manifest.json"),
        None => format!("focus-{period}-manifest.json"),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    let (path, part) = (out.join(&name), out.join(format!("{name}.part")));
    let mut writer = create(&part)?;
    writer
        .write_all(&json)
        .map_err(|source| write_error(&part, source))?;
    writer
        .into_written(0)
        .map_err(|source| write_error(&part, source))?;
    finish(&part, &path)?;
    Ok(manifest)
}

/// `focus_costs`' columns, in order.
async fn columns(tx: &mut sqlx::PgConnection) -> Result<Vec<Column>, ExportError> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = 'focus_costs' ORDER BY ordinal_position",
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(columns
        .into_iter()
        .map(|(name, data_type)| {
            let kind = match data_type.as_str() {
                "numeric" => Kind::Decimal,
                "timestamp with time zone" => Kind::Timestamp,
                "boolean" => Kind::Boolean,
                _ => Kind::Text,
            };
            Column { name, kind }
        })
        .collect())
}

/// An encoder of one file: given COPY's output chunk by chunk, on a blocking thread.
trait Encoder: Send + 'static {
    fn chunk(&mut self, bytes: &[u8]) -> Result<(), ExportError>;
    fn finish(self) -> Result<Written, ExportError>;
}

/// A file written whole and synced, not yet renamed.
struct Written {
    rows: u64,
    bytes: u64,
    sha256: Vec<u8>,
}

/// Runs `copy` and feeds its output to `encoder` on a blocking thread, through a queue of a few
/// chunks: memory stays bounded whatever the month's size.
async fn copy_into<E: Encoder>(
    tx: &mut sqlx::PgConnection,
    copy: &str,
    mut encoder: E,
    part: &Path,
) -> Result<Written, ExportError> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
    let encoding = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = receiver.blocking_recv() {
            encoder.chunk(&chunk)?;
        }
        encoder.finish()
    });
    let mut stream = tx.copy_out_raw(copy).await?;
    let mut read = Ok(());
    while let Some(chunk) = stream.next().await {
        match chunk {
            // A closed queue means the encoder failed: its error is the one to report.
            Ok(chunk) => {
                if sender.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                read = Err(error);
                break;
            }
        }
    }
    drop(stream);
    drop(sender);
    let written = encoding.await.map_err(|error| ExportError::Write {
        path: part.to_owned(),
        source: std::io::Error::other(error),
    })?;
    read?;
    written
}

/// A file's bytes on their way to disk, counted and hashed for the manifest.
struct Hashed {
    file: std::io::BufWriter<std::fs::File>,
    digest: Sha256,
    bytes: u64,
}

impl Hashed {
    /// Flushes and syncs the file: complete on disk before it is renamed.
    fn into_written(self, rows: u64) -> std::io::Result<Written> {
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(Written {
            rows,
            bytes: self.bytes,
            sha256: self.digest.finalize().to_vec(),
        })
    }
}

impl Write for Hashed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buf)?;
        self.digest.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A file being written under its `.part` name; [`finish`] gives it its own.
fn create(part: &Path) -> Result<Hashed, ExportError> {
    let file = std::fs::File::create(part).map_err(|source| write_error(part, source))?;
    Ok(Hashed {
        file: std::io::BufWriter::with_capacity(1 << 20, file),
        digest: Sha256::new(),
        bytes: 0,
    })
}

/// Gives the complete `part` its own name, `path`.
fn finish(part: &Path, path: &Path) -> Result<(), ExportError> {
    std::fs::rename(part, path).map_err(|source| write_error(path, source))
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
