//! One poll: list the source, pick the reports to read, and ingest each new or changed one into
//! the store. `once` and `run` both come through here; a report that fails is recorded and the
//! poll goes on with the others.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{StreamExt, stream};
use tracing::Instrument;

use crate::report::aggregate::{Monitored, Month};
use crate::report::key::{self, AccountId, ReportKey};
use crate::report::read::{Expected, Progress, ReadError, read_report};
use crate::source::{ObjectMeta, Source, SourceError};
use crate::store::{LedgerEntry, ReportVersion, Status, Store, StoreError};
use crate::telemetry;

/// Reading a report again after its stream broke (network), before recording a failure.
const READ_ATTEMPTS: u32 = 3;
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Why a poll could not run at all (as opposed to one report failing).
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "no monitored accounts: set DBR_MONITORED_ACCOUNTS (IDs separated by commas, or * for every account), or add some with `dbr-ingest accounts add ID`"
    )]
    NoMonitoredAccounts,
}

/// What one poll did.
#[derive(Debug, Default)]
pub struct PollOutcome {
    pub ingested: Vec<Ingested>,
    pub failed: Vec<Failed>,
    /// Chosen reports whose version was already handled.
    pub unchanged: usize,
    /// Objects that are not DBRs, or DBRs passed over for another of their statement.
    pub ignored: usize,
    /// Reports another replica was ingesting.
    pub claimed_elsewhere: usize,
}

#[derive(Debug)]
pub struct Ingested {
    pub key: ReportKey,
    pub reason: &'static str,
    pub line_items: u64,
    pub kept: u64,
    pub dropped_unmonitored: u64,
    pub accounts: usize,
    pub unreconciled_accounts: usize,
}

#[derive(Debug)]
pub struct Failed {
    pub key: String,
    pub error: String,
}

/// The monitored set in force: every account when the configuration says `*`; else the
/// `monitored_accounts` table, after copying the configuration's accounts into it.
pub async fn monitored_accounts(
    configured: Option<&Monitored>,
    store: &Store,
) -> Result<Monitored, PollError> {
    let configured_ids: Vec<AccountId> = match configured {
        Some(Monitored::All) => return Ok(Monitored::All),
        Some(Monitored::Only(ids)) => ids.iter().cloned().collect(),
        None => Vec::new(),
    };
    store.seed_monitored_accounts(&configured_ids).await?;
    let ids: BTreeSet<AccountId> = store
        .monitored_accounts()
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    if ids.is_empty() {
        return Err(PollError::NoMonitoredAccounts);
    }
    Ok(Monitored::Only(ids))
}

/// Lists the source and ingests every chosen report that is new, changed, or was filtered with
/// another monitored set, at most `concurrency` at once.
pub async fn poll(
    source: &Source,
    store: &Store,
    configured: Option<&Monitored>,
    concurrency: usize,
) -> Result<PollOutcome, PollError> {
    let monitored = monitored_accounts(configured, store).await?;
    let fingerprint = monitored.fingerprint();
    let location = source.location();
    let mut outcome = PollOutcome::default();

    let listing = sort_listing(source.list().await?);
    for (key, reason) in &listing.ignored {
        tracing::debug!(key, reason, "ignored");
    }
    outcome.ignored = listing.ignored.len();

    let ledger = store.ledger(&location).await?;
    let mut jobs = Vec::new();
    for listed in listing.chosen {
        match why_ingest(ledger.get(&listed.object.key), &listed.object, &fingerprint) {
            Some(reason) => jobs.push((listed, reason)),
            None => {
                telemetry::report_skipped(&listed.key);
                outcome.unchanged += 1;
            }
        }
    }
    let poll = Poll {
        source,
        store,
        location: &location,
        monitored: &monitored,
        fingerprint: &fingerprint,
    };
    let mut results = stream::iter(jobs)
        .map(|(listed, reason)| poll.job(listed, reason))
        .buffer_unordered(concurrency.max(1));
    while let Some(result) = results.next().await {
        match result {
            Job::Ingested(ingested) => outcome.ingested.push(ingested),
            Job::Failed(failed) => outcome.failed.push(failed),
            Job::Unchanged => outcome.unchanged += 1,
            Job::ClaimedElsewhere => outcome.claimed_elsewhere += 1,
        }
    }
    Ok(outcome)
}

/// What one poll works with.
struct Poll<'a> {
    source: &'a Source,
    store: &'a Store,
    location: &'a str,
    monitored: &'a Monitored,
    fingerprint: &'a str,
}

/// How one chosen report fared.
enum Job {
    Ingested(Ingested),
    Failed(Failed),
    Unchanged,
    ClaimedElsewhere,
}

impl Poll<'_> {
    /// Claims the report's statement, checks the ledger again (another replica may have just
    /// ingested it), then ingests it or records why not.
    async fn job(&self, Listed { key, object }: Listed, reason: &'static str) -> Job {
        let span = tracing::info_span!(
            "report",
            key = object.key,
            payer = %key.payer,
            period = %key.period,
            etag = object.etag,
            reason
        );
        self.claimed_job(key, object, reason).instrument(span).await
    }

    async fn claimed_job(&self, key: ReportKey, object: ObjectMeta, reason: &'static str) -> Job {
        let failed = |error: String| {
            tracing::error!(%error, "report failed; its month keeps the data it had");
            Job::Failed(Failed {
                key: object.key.clone(),
                error,
            })
        };
        let _claim = match self.store.try_claim(&key).await {
            Ok(Some(claim)) => claim,
            Ok(None) => {
                tracing::info!("another replica is ingesting this statement");
                telemetry::report_skipped(&key);
                return Job::ClaimedElsewhere;
            }
            Err(error) => return failed(error.to_string()),
        };
        match self.store.ledger_entry(self.location, &object.key).await {
            Ok(entry) if why_ingest(entry.as_ref(), &object, self.fingerprint).is_none() => {
                telemetry::report_skipped(&key);
                return Job::Unchanged;
            }
            Ok(_) => {}
            Err(error) => return failed(error.to_string()),
        }
        let report = ReportVersion {
            bucket: self.location,
            object: &object,
            key: &key,
            started_at: Utc::now(),
        };
        let started = Instant::now();
        match ingest(
            self.source,
            self.store,
            &report,
            self.monitored,
            self.fingerprint,
        )
        .await
        {
            Ok(month) => {
                let rows = month.rows();
                let accounts = month.accounts().unwrap_or_default();
                let unreconciled_accounts = accounts
                    .iter()
                    .filter(|a| a.reconciled() == Some(false))
                    .count();
                tracing::info!(
                    line_items = rows.line_items,
                    kept = rows.kept,
                    dropped_unmonitored = rows.dropped_unmonitored,
                    seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
                    "ingested"
                );
                if unreconciled_accounts > 0 {
                    tracing::warn!(
                        unreconciled_accounts,
                        "line items do not add up to AccountTotal"
                    );
                }
                telemetry::report_ingested(
                    &key,
                    rows.line_items,
                    rows.kept,
                    rows.dropped_unmonitored,
                    unreconciled_accounts,
                    started.elapsed().as_secs_f64(),
                );
                Job::Ingested(Ingested {
                    key,
                    reason,
                    line_items: rows.line_items,
                    kept: rows.kept,
                    dropped_unmonitored: rows.dropped_unmonitored,
                    accounts: accounts.len(),
                    unreconciled_accounts,
                })
            }
            Err(error) => {
                telemetry::report_failed(&key, started.elapsed().as_secs_f64());
                let message = error.to_string();
                if let Err(store_error) = self
                    .store
                    .record_failure(&report, &message, error.retryable())
                    .await
                {
                    tracing::error!(%store_error, "could not record the failure");
                }
                failed(message)
            }
        }
    }
}

/// A listed object that is a detailed billing report.
pub struct Listed {
    pub key: ReportKey,
    pub object: ObjectMeta,
}

/// A listing sorted out: one report per statement to consider, and every other object with
/// the reason it is ignored.
pub struct SortedListing {
    pub chosen: Vec<Listed>,
    pub ignored: Vec<(String, String)>,
}

pub fn sort_listing(objects: Vec<ObjectMeta>) -> SortedListing {
    let mut reports = Vec::new();
    let mut ignored = Vec::new();
    for object in objects {
        match ReportKey::parse(&object.key) {
            Ok(key) => reports.push(Listed { key, object }),
            Err(reason) => ignored.push((
                object.key,
                format!("not a detailed billing report: {reason}"),
            )),
        }
    }
    let selection = key::choose(reports);
    ignored.extend(
        selection
            .passed_over
            .into_iter()
            .map(|(listed, reason)| (listed.object.key, reason)),
    );
    SortedListing {
        chosen: selection.ingest,
        ignored,
    }
}

impl AsRef<ReportKey> for Listed {
    fn as_ref(&self) -> &ReportKey {
        &self.key
    }
}

/// Why a chosen report must be read now, or `None` when the ledger says it was handled.
fn why_ingest(
    entry: Option<&LedgerEntry>,
    object: &ObjectMeta,
    fingerprint: &str,
) -> Option<&'static str> {
    let Some(entry) = entry else {
        return Some("new");
    };
    if entry.etag != object.etag || entry.size != object.size {
        return Some("changed");
    }
    match entry.status {
        Status::Ingested if entry.monitored_fingerprint.as_deref() != Some(fingerprint) => {
            Some("monitored accounts changed")
        }
        Status::Ingested => None,
        Status::Failed if entry.retryable => Some("retrying"),
        // The same bytes would fail the same way: wait for AWS to write a new version.
        Status::Failed => None,
        Status::Superseded => Some("chosen again for its statement"),
    }
}

/// Why one report could not be ingested.
#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    /// Whether the same version may succeed later: the network or the database failed, not the
    /// report's content.
    fn retryable(&self) -> bool {
        match self {
            IngestError::Source(_) | IngestError::Store(_) => true,
            IngestError::Read(read) => matches!(read, ReadError::Io(_)),
        }
    }
}

async fn ingest(
    source: &Source,
    store: &Store,
    report: &ReportVersion<'_>,
    monitored: &Monitored,
    fingerprint: &str,
) -> Result<Month, IngestError> {
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempt = 1;
    let month = loop {
        match read(source, report, monitored).await {
            Err(error) if error.retryable() && attempt < READ_ATTEMPTS => {
                tracing::warn!(%error, attempt, "reading the report failed; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            result => break result?,
        }
    };
    store.replace_statement(report, &month, fingerprint).await?;
    Ok(month)
}

async fn read(
    source: &Source,
    report: &ReportVersion<'_>,
    monitored: &Monitored,
) -> Result<Month, IngestError> {
    let body = source.open(report.object).await?;
    let name = report.object.key.rsplit('/').next().unwrap_or_default();
    let expected = Expected {
        zip_member: name.strip_suffix(".zip"),
        payer: Some(report.key.payer.clone()),
        size: Some(report.object.size),
    };
    let progress = Arc::new(Progress::default());
    let month = read_report(body, expected, monitored.clone(), progress.clone()).await;
    telemetry::bytes_read(&progress);
    Ok(month?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(etag: &str) -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            etag: etag.into(),
            size: 10,
            last_modified: None,
        }
    }

    fn entry(status: Status, retryable: bool, fingerprint: &str) -> LedgerEntry {
        LedgerEntry {
            etag: "e1".into(),
            size: 10,
            status,
            retryable,
            monitored_fingerprint: Some(fingerprint.into()),
            error: None,
        }
    }

    #[test]
    fn the_ledger_decides_what_to_read() {
        let fp = "*";
        let cases = [
            (None, "e1", Some("new")),
            (Some(entry(Status::Ingested, false, fp)), "e1", None),
            (
                Some(entry(Status::Ingested, false, fp)),
                "e2",
                Some("changed"),
            ),
            (
                Some(entry(Status::Ingested, false, "2 accounts, crc32 0")),
                "e1",
                Some("monitored accounts changed"),
            ),
            (
                Some(entry(Status::Failed, true, fp)),
                "e1",
                Some("retrying"),
            ),
            (Some(entry(Status::Failed, false, fp)), "e1", None),
            (
                Some(entry(Status::Failed, false, fp)),
                "e2",
                Some("changed"),
            ),
            (
                Some(entry(Status::Superseded, false, fp)),
                "e1",
                Some("chosen again for its statement"),
            ),
        ];
        for (entry, etag, expected) in cases {
            assert_eq!(
                why_ingest(entry.as_ref(), &object(etag), fp),
                expected,
                "{entry:?} {etag}"
            );
        }
    }
}
