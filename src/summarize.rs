//! `dbr-ingest summarize`: reads local report files (a DBR, a CUR part, or a CUR manifest with
//! the parts it names) through the same stages as the daemon and prints per-account totals and
//! their reconciliation, as text or one JSON document per file.
//! It keeps only what it prints (per-account sums), so its memory does not grow with the
//! report's key count; the text of usage fields, which it does not keep, is not checked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncReadExt;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::domain::{AccountId, Monitored, Period};
use crate::formats;
use crate::formats::cur::{self, MAX_MANIFEST_BYTES, Manifest, ManifestError, ManifestKey};
use crate::formats::dbr::{self, NotDbr, ReportKey, Variant};
use crate::report::aggregate::{AccountMonth, Grain, ReportIdentity, ReportSums};
use crate::report::read::{Compression, Expected, Progress, ReadError, Reading, read_report};

/// Why a file could not be summarized.
#[derive(Debug, thiserror::Error)]
pub enum SummarizeError {
    #[error("cannot open: {0}")]
    Open(#[source] std::io::Error),
    #[error("not a detailed billing report: {0}")]
    NotADbr(#[source] NotDbr),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("the report has no rows to take the payer from")]
    NoPayer,
    #[error("the report has no dated line items to take the billing period from")]
    NoPeriod,
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("manifest larger than {} MiB", MAX_MANIFEST_BYTES >> 20)]
    LargeManifest,
    #[error("part {part} of the manifest is not at {}", .path.display())]
    NoPart { part: String, path: PathBuf },
}

/// What the report is, from its file name when that is a DBR name, else from its content.
#[derive(Debug, Serialize)]
pub struct ReportJson {
    /// `dbr` or `cur`.
    pub format: &'static str,
    pub payer_account_id: String,
    pub billing_period: String,
    /// A DBR's `plain` or `with-resources-and-tags`; a CUR's report name (`cur` for a part).
    pub variant: String,
    pub entity: Option<String>,
    pub invoice_status: &'static str,
    /// `name`, `content` or `manifest`: where payer and period were taken from.
    pub identified_by: &'static str,
}

#[derive(Debug, Serialize)]
pub struct RowsJson {
    pub line_items: u64,
    pub kept: u64,
    pub dropped_unmonitored: u64,
    pub footer: u64,
    /// Kept line items dated outside the report's billing period.
    pub outside_period: u64,
}

#[derive(Debug, Serialize)]
pub struct AccountJson {
    pub linked_account_id: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub unblended_cost: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub blended_cost: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub amortized_cost: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub usage_quantity: Decimal,
    pub line_items: u64,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub account_total_unblended: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub account_total_blended: Option<Decimal>,
    /// `null` when the report has no `AccountTotal` row for the account.
    pub reconciled: Option<bool>,
}

/// The summary of one file, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub file: String,
    pub report: ReportJson,
    pub rows: RowsJson,
    pub accounts: Vec<AccountJson>,
}

/// Summarizes every file; prints each summary as it is ready and each failure as one line on
/// stderr. Returns whether every file was summarized.
pub async fn run(files: &[impl AsRef<Path>], monitored: &Monitored, json: bool) -> bool {
    let mut all_ok = true;
    for file in files {
        let file = file.as_ref();
        match summarize_file(file, monitored).await {
            Ok(summary) => {
                let mut out = std::io::stdout().lock();
                let printed = if json {
                    serde_json::to_writer(&mut out, &summary)
                        .map_err(std::io::Error::from)
                        .and_then(|()| writeln!(out))
                } else {
                    write_text(&mut out, &summary)
                };
                if let Err(error) = printed {
                    eprintln!("dbr-ingest: writing the summary: {error}");
                    return false;
                }
            }
            Err(error) => {
                eprintln!("dbr-ingest: {}: {error}", file.display());
                all_ok = false;
            }
        }
    }
    all_ok
}

/// Reads one local report file and summarizes it: a CUR manifest (`…-Manifest.json`) with its
/// parts, a DBR (`.csv.zip` or `.csv`), or a CUR part (`.csv.gz`, `.csv.zip` or `.csv`, told
/// from a DBR by its header).
pub async fn summarize_file(path: &Path, monitored: &Monitored) -> Result<Summary, SummarizeError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with("-Manifest.json") {
        return summarize_manifest(path, monitored).await;
    }
    let named = identify_by_name(&name)?;
    let object = tokio::fs::File::open(path)
        .await
        .map_err(SummarizeError::Open)?;
    if named.is_none() {
        tracing::warn!(file = %path.display(), "not a DBR file name: payer and period are taken from the content");
    }
    let size = object.metadata().await.ok().map(|m| m.len());
    let expected = Expected {
        layout: if named.is_some() {
            &dbr::LAYOUT
        } else {
            &formats::EITHER
        },
        identity: ReportIdentity {
            payer: named.as_ref().map(|key| key.payer.clone()),
            period: named.as_ref().map(|key| key.period),
            marketplace: named.as_ref().is_some_and(|key| key.is_marketplace()),
        },
        // Only what is printed: memory stays constant whatever the report's key count.
        grain: Grain::Accounts,
        name_objects: false,
    };
    let compression = if name.ends_with(".zip") {
        Compression::Zip
    } else if name.ends_with(".gz") {
        Compression::Gzip
    } else {
        Compression::Sniff
    };
    let progress = Arc::new(Progress::default());
    let watch = crate::progress::watch(&name, size, progress.clone());
    let sums = read_report(
        object,
        &name,
        compression,
        expected,
        monitored.clone(),
        progress,
    )
    .await;
    drop(watch);
    summarize(path, named.as_ref().map(Named::Dbr), &sums?)
}

/// Reads a CUR manifest and the parts it names, found beside it as AWS lays them out (under
/// the billing period's folder), and summarizes them as one report.
async fn summarize_manifest(path: &Path, monitored: &Monitored) -> Result<Summary, SummarizeError> {
    let mut bytes = Vec::new();
    tokio::fs::File::open(path)
        .await
        .map_err(SummarizeError::Open)?
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(SummarizeError::Open)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(SummarizeError::LargeManifest);
    }
    let key = path.to_string_lossy();
    let from_path = ManifestKey::parse(&key);
    let manifest = Manifest::parse(&key, from_path.as_ref(), &bytes, "")?;
    let named = from_path
        .or(manifest.named.clone())
        .ok_or(SummarizeError::NoPeriod)?;
    let expected = Expected {
        layout: &cur::LAYOUT,
        identity: ReportIdentity {
            payer: Some(manifest.payer.clone()),
            period: Some(named.period),
            marketplace: false,
        },
        grain: Grain::Accounts,
        name_objects: true,
    };
    let progress = Arc::new(Progress::default());
    let watch = crate::progress::watch(&named.report, None, progress.clone());
    let mut reading = Reading::start(expected, monitored.clone(), progress);
    let mut sent = Ok(());
    for part in &manifest.parts {
        let local = local_part(path, part);
        let file = tokio::fs::File::open(&local)
            .await
            .map_err(|_| SummarizeError::NoPart {
                part: part.clone(),
                path: local.clone(),
            })?;
        let compression = cur::part_compression(part).expect("checked when parsed");
        sent = reading.object(part, compression, file).await;
        if sent.is_err() {
            break;
        }
    }
    let sums = reading.finish().await;
    drop(watch);
    sent?;
    let sums = sums?;
    summarize(path, Some(Named::Manifest(&manifest, &named)), &sums)
}

/// Where a part's key lies beside a local copy of its manifest: under the folder of the
/// billing period (`YYYYMMDD-YYYYMMDD`) the manifest is in, else beside the manifest.
fn local_part(manifest: &Path, part: &str) -> PathBuf {
    let segments: Vec<&str> = part.split('/').collect();
    let range = segments
        .iter()
        .position(|segment| cur::is_period_folder(segment));
    if let Some(range) = range {
        for folder in manifest.ancestors().skip(1) {
            if folder
                .file_name()
                .is_some_and(|name| name == segments[range])
            {
                return segments[range + 1..]
                    .iter()
                    .fold(folder.to_path_buf(), |path, segment| path.join(segment));
            }
        }
    }
    let file = segments.last().copied().unwrap_or_default();
    manifest.with_file_name(file)
}

/// The report's identity from a file name: `Ok(None)` when the name says nothing (the content
/// will), an error when it names another kind of AWS report.
fn identify_by_name(name: &str) -> Result<Option<ReportKey>, SummarizeError> {
    match ReportKey::parse(name) {
        Ok(key) => Ok(Some(key)),
        // A bare CSV extract of a DBR: its name is a DBR name but for the `.zip`.
        Err(NotDbr::NotZipped) => Ok(ReportKey::parse(&format!("{name}.zip")).ok()),
        Err(
            reason @ (NotDbr::MonthlyReport
            | NotDbr::CostAllocationReport
            | NotDbr::AccessTestObject
            | NotDbr::Folder),
        ) => Err(SummarizeError::NotADbr(reason)),
        Err(_) => Ok(None),
    }
}

/// Where a summary's payer and period come from: the file's name, its manifest, or (`None`)
/// its content.
enum Named<'a> {
    Dbr(&'a ReportKey),
    Manifest(&'a Manifest, &'a ManifestKey),
}

fn summarize(
    path: &Path,
    named: Option<Named<'_>>,
    sums: &ReportSums,
) -> Result<Summary, SummarizeError> {
    let (payer, period, variant, entity, identified_by): (
        AccountId,
        Period,
        &str,
        Option<String>,
        _,
    ) = match named {
        Some(Named::Dbr(key)) => (
            key.payer.clone(),
            key.period,
            key.variant.as_str(),
            key.entity.clone(),
            "name",
        ),
        Some(Named::Manifest(manifest, key)) => (
            manifest.payer.clone(),
            key.period,
            key.report.as_str(),
            None,
            "manifest",
        ),
        None => {
            let payer = sums.payer().cloned().ok_or(SummarizeError::NoPayer)?;
            let period = sums.busiest_period().ok_or(SummarizeError::NoPeriod)?;
            let variant = if sums.is_cur() {
                "cur"
            } else if sums.has_resources() {
                Variant::WithResourcesAndTags.as_str()
            } else {
                Variant::Plain.as_str()
            };
            (payer, period, variant, None, "content")
        }
    };
    let rows = sums.rows();
    let accounts = sums
        .accounts()
        .into_iter()
        .map(|account: AccountMonth| AccountJson {
            reconciled: account.reconciled(),
            linked_account_id: account.account.to_string(),
            unblended_cost: account.sums.unblended_cost,
            blended_cost: account.sums.blended_cost,
            amortized_cost: account.sums.amortized_cost,
            usage_quantity: account.sums.usage_quantity,
            line_items: account.sums.line_items,
            account_total_unblended: account.account_total.map(|t| t.unblended_cost),
            account_total_blended: account.account_total.map(|t| t.blended_cost),
        })
        .collect();
    Ok(Summary {
        file: path.display().to_string(),
        report: ReportJson {
            format: if sums.is_cur() { "cur" } else { "dbr" },
            payer_account_id: payer.to_string(),
            billing_period: period.to_string(),
            variant: variant.to_owned(),
            entity,
            invoice_status: sums.invoice_status().as_str(),
            identified_by,
        },
        rows: RowsJson {
            line_items: rows.line_items,
            kept: rows.kept,
            dropped_unmonitored: rows.dropped_unmonitored,
            footer: rows.footer,
            outside_period: rows.outside_period,
        },
        accounts,
    })
}

fn write_text(out: &mut impl Write, summary: &Summary) -> std::io::Result<()> {
    let report = &summary.report;
    writeln!(out, "{}", summary.file)?;
    writeln!(
        out,
        "  payer {}  period {}  {}{}  invoice {}",
        report.payer_account_id,
        report.billing_period,
        report.variant,
        report
            .entity
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default(),
        report.invoice_status,
    )?;
    let rows = &summary.rows;
    writeln!(
        out,
        "  {} line items: {} kept, {} dropped (account not monitored); {} footer rows",
        rows.line_items, rows.kept, rows.dropped_unmonitored, rows.footer
    )?;
    if rows.outside_period > 0 {
        writeln!(
            out,
            "  {} kept line items are dated outside the billing period",
            rows.outside_period
        )?;
    }
    writeln!(
        out,
        "  {:<14} {:>20} {:>20} {:>20} {:>10} {:>20}  reconciled",
        "account", "unblended cost", "blended cost", "usage quantity", "items", "AccountTotal"
    )?;
    for account in &summary.accounts {
        let total = account
            .account_total_unblended
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into());
        let reconciled = match account.reconciled {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "no total",
        };
        writeln!(
            out,
            "  {:<14} {:>20} {:>20} {:>20} {:>10} {:>20}  {}",
            account.linked_account_id,
            account.unblended_cost,
            account.blended_cost,
            account.usage_quantity,
            account.line_items,
            total,
            reconciled
        )?;
    }
    Ok(())
}
