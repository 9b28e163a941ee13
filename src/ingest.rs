//! One poll: list the source, pick the reports to read, and ingest each new or changed one into
//! the store. `once` and `run` both come through here; a report that fails is recorded and the
//! poll goes on with the others.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{StreamExt, stream};
use tracing::Instrument;

use crate::domain::{AccountId, Monitored, ObjectMeta};
use crate::failure::{Classify, FailureKind};
use crate::report::aggregate::{Grain, MemoryBudget, ReadSummary, ReportIdentity, ReportSums};
use crate::report::key::{self, ListedReport, ReportKey};
use crate::report::read::{Expected, Progress, ReadError, read_report};
use crate::source::{Listing, Source, SourceError};
use crate::store::{Claim, LedgerEntry, ReportVersion, Status, Store, StoreError};
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

impl Classify for PollError {
    fn kind(&self) -> FailureKind {
        match self {
            PollError::Source(error) => error.kind(),
            PollError::Store(error) => error.kind(),
            PollError::NoMonitoredAccounts => FailureKind::Configuration,
        }
    }
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
    pub object_key: String,
    pub reason: IngestReason,
    pub summary: ReadSummary,
}

#[derive(Debug)]
pub struct Failed {
    pub object_key: String,
    pub error: String,
    pub kind: FailureKind,
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
/// another monitored set, at most `concurrency` at once, sharing `memory_budget` between them.
pub async fn poll(
    source: &Source,
    store: &Store,
    configured: Option<&Monitored>,
    concurrency: usize,
    memory_budget: &MemoryBudget,
) -> Result<PollOutcome, PollError> {
    let concurrency = concurrency.max(1);
    let budget = MemoryBudget {
        bytes: memory_budget.bytes / concurrency,
        temp_dir: memory_budget.temp_dir.clone(),
    };
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
                telemetry::report_skipped(&listed.report);
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
        budget: &budget,
    };
    let mut results = stream::iter(jobs)
        .map(|(listed, reason)| poll.job(listed, reason))
        .buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        match result {
            Job::Ingested(ingested) => outcome.ingested.push(ingested),
            Job::Failed(failed) => outcome.failed.push(failed),
            Job::Unchanged => outcome.unchanged += 1,
            Job::ClaimedElsewhere => outcome.claimed_elsewhere += 1,
        }
    }
    log_configuration_failures(&outcome.failed);
    Ok(outcome)
}

/// One line per poll for what an operator must fix (a permission, a missing bucket): the same
/// cause fails every report, and a line per report would bury everything else.
fn log_configuration_failures(failed: &[Failed]) {
    let mut configuration = failed
        .iter()
        .filter(|f| f.kind == FailureKind::Configuration);
    if let Some(first) = configuration.next() {
        tracing::error!(
            reports = 1 + configuration.count(),
            first = first.object_key,
            error = first.error,
            "reports failed for a configuration or permission problem; `dbr-ingest check` explains it"
        );
    }
}

/// What one poll works with.
struct Poll<'a> {
    source: &'a Source,
    store: &'a Store,
    location: &'a str,
    monitored: &'a Monitored,
    fingerprint: &'a str,
    /// Each report's share of the memory budget.
    budget: &'a MemoryBudget,
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
    async fn job(&self, listed: ListedReport, reason: IngestReason) -> Job {
        let span = tracing::info_span!(
            "report",
            key = listed.object.key,
            payer = %listed.report.payer,
            period = %listed.report.period,
            etag = listed.object.etag,
            %reason
        );
        self.claim_and_ingest(listed, reason).instrument(span).await
    }

    async fn claim_and_ingest(&self, listed: ListedReport, reason: IngestReason) -> Job {
        let mut claim = match self.store.try_claim(&listed.report.statement()).await {
            Ok(Some(claim)) => claim,
            Ok(None) => {
                tracing::info!("another replica is ingesting this statement");
                telemetry::report_skipped(&listed.report);
                return Job::ClaimedElsewhere;
            }
            Err(error) => return failed(&listed, &error),
        };
        match self.still_to_ingest(&mut claim, &listed.object).await {
            Ok(true) => self.ingest_and_record(&mut claim, listed, reason).await,
            Ok(false) => {
                telemetry::report_skipped(&listed.report);
                Job::Unchanged
            }
            Err(error) => failed(&listed, &error),
        }
    }

    /// Whether the ledger, read afresh under the claim, still says the object must be read.
    async fn still_to_ingest(
        &self,
        claim: &mut Claim,
        object: &ObjectMeta,
    ) -> Result<bool, StoreError> {
        let entry = claim.ledger_entry(self.location, &object.key).await?;
        Ok(why_ingest(entry.as_ref(), object, self.fingerprint).is_some())
    }

    async fn ingest_and_record(
        &self,
        claim: &mut Claim,
        listed: ListedReport,
        reason: IngestReason,
    ) -> Job {
        let report = ReportVersion {
            location: self.location,
            listed: &listed,
            started_at: Utc::now(),
        };
        let started = Instant::now();
        let ingested = ingest(self, claim, &report).await;
        let seconds = started.elapsed().as_secs_f64();
        match ingested {
            Ok(sums) => Job::Ingested(record_ingested(&listed, reason, &sums, seconds)),
            Err(error) => {
                telemetry::report_failed(&listed.report, seconds);
                if let Err(store_error) = self
                    .store
                    .record_failure(&report, &error.to_string(), error.kind())
                    .await
                {
                    tracing::error!(%store_error, "could not record the failure");
                }
                failed(&listed, &error)
            }
        }
    }
}

/// Logs and counts an ingested report.
fn record_ingested(
    listed: &ListedReport,
    reason: IngestReason,
    sums: &ReportSums,
    seconds: f64,
) -> Ingested {
    let summary = sums.summary();
    let (rows, mismatched) = (summary.rows, summary.reconciliation.mismatched);
    tracing::info!(
        line_items = rows.line_items,
        kept = rows.kept,
        dropped_unmonitored = rows.dropped_unmonitored,
        // Sorted runs written to the temporary directory: 0 when the sums fit the budget.
        spilled_runs = sums.runs(),
        seconds = format!("{seconds:.2}"),
        "ingested"
    );
    if mismatched > 0 {
        tracing::warn!(
            unreconciled_accounts = mismatched,
            "line items do not add up to AccountTotal"
        );
    }
    if let Some(first_line) = sums.first_outside_period() {
        tracing::warn!(
            line_items = rows.outside_period,
            first_line,
            "line items dated outside the report's month; kept in its month, as AWS's totals are"
        );
    }
    telemetry::report_ingested(&listed.report, rows, mismatched, seconds);
    Ingested {
        object_key: listed.object.key.clone(),
        reason,
        summary,
    }
}

/// A report that failed: logged here, except configuration failures, which the poll logs once.
fn failed(listed: &ListedReport, error: &(impl Classify + fmt::Display)) -> Job {
    let kind = error.kind();
    let error = error.to_string();
    if kind == FailureKind::Configuration {
        tracing::debug!(%error, %kind, "report failed");
    } else {
        tracing::error!(%error, %kind, "report failed; its month keeps the data it had");
    }
    Job::Failed(Failed {
        object_key: listed.object.key.clone(),
        error,
        kind,
    })
}

/// A listing sorted out: one report per statement to consider, and every other object with
/// the reason it is ignored.
pub struct SortedListing {
    pub chosen: Vec<ListedReport>,
    pub ignored: Vec<(String, String)>,
}

pub fn sort_listing(listing: Listing) -> SortedListing {
    let mut reports = Vec::new();
    let mut ignored = listing.passed_over;
    for object in listing.objects {
        match ReportKey::parse(&object.key) {
            Ok(report) => reports.push(ListedReport { report, object }),
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

/// Why a chosen report is read now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestReason {
    /// Not in the ledger yet.
    New,
    /// Another ETag or size than the version in the ledger.
    Changed,
    /// Ingested with another monitored set than the one in force.
    MonitoredAccountsChanged,
    /// The last attempt failed for a reason that may have passed.
    Retrying,
    /// Its statement showed another object, which is gone or no longer chosen.
    ChosenAgain,
}

impl fmt::Display for IngestReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IngestReason::New => "new",
            IngestReason::Changed => "changed",
            IngestReason::MonitoredAccountsChanged => "monitored accounts changed",
            IngestReason::Retrying => "retrying",
            IngestReason::ChosenAgain => "chosen again for its statement",
        })
    }
}

/// Why a chosen report must be read now, or `None` when the ledger says it was handled.
fn why_ingest(
    entry: Option<&LedgerEntry>,
    object: &ObjectMeta,
    fingerprint: &str,
) -> Option<IngestReason> {
    let Some(entry) = entry else {
        return Some(IngestReason::New);
    };
    if entry.etag != object.etag || entry.size != object.size {
        return Some(IngestReason::Changed);
    }
    match entry.status {
        Status::Ingested if entry.monitored_fingerprint.as_deref() != Some(fingerprint) => {
            Some(IngestReason::MonitoredAccountsChanged)
        }
        Status::Ingested => None,
        Status::Failed(kind) if kind.retried() => Some(IngestReason::Retrying),
        // The same bytes would fail the same way: wait for AWS to write a new version.
        Status::Failed(_) => None,
        Status::Superseded => Some(IngestReason::ChosenAgain),
    }
}

/// Why one report could not be ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for IngestError {
    fn kind(&self) -> FailureKind {
        match self {
            IngestError::Source(error) => error.kind(),
            IngestError::Read(error) => error.kind(),
            IngestError::Store(error) => error.kind(),
        }
    }
}

async fn ingest(
    poll: &Poll<'_>,
    claim: &mut Claim,
    report: &ReportVersion<'_>,
) -> Result<ReportSums, IngestError> {
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempt = 1;
    let sums = loop {
        match read_object(poll.source, report.listed, poll.monitored, poll.budget).await {
            Err(error) if error.kind() == FailureKind::Transient && attempt < READ_ATTEMPTS => {
                tracing::warn!(%error, attempt, "reading the report failed; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            result => break result?,
        }
    };
    let writing = Instant::now();
    poll.store
        .replace_statement(claim, report, &sums, poll.fingerprint)
        .await?;
    // Where a report's time goes: reading (inflate, parse, sum) came before this.
    tracing::debug!(
        write_seconds = format!("{:.2}", writing.elapsed().as_secs_f64()),
        "month replaced"
    );
    Ok(sums)
}

/// Opens the listed object and sums it, showing progress while it is read.
pub async fn read_object(
    source: &Source,
    listed: &ListedReport,
    monitored: &Monitored,
    budget: &MemoryBudget,
) -> Result<ReportSums, IngestError> {
    let object = &listed.object;
    let body = source.open(object).await?;
    let expected = Expected {
        zip_member: object.file_name().strip_suffix(".zip"),
        identity: ReportIdentity {
            payer: Some(listed.report.payer.clone()),
            period: Some(listed.report.period),
        },
        grain: Grain::Daily(budget.clone()),
    };
    let progress = Arc::new(Progress::default());
    let watch = crate::progress::watch(object.file_name(), Some(object.size), progress.clone());
    let sums = read_report(body, &expected, monitored.clone(), progress.clone()).await;
    drop(watch);
    telemetry::bytes_read(&progress);
    if let Ok(sums) = &sums {
        telemetry::runs_spilled(sums.runs());
    }
    Ok(sums?)
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

    fn entry(status: Status, fingerprint: &str) -> LedgerEntry {
        LedgerEntry {
            etag: "e1".into(),
            size: 10,
            status,
            monitored_fingerprint: Some(fingerprint.into()),
            error: None,
        }
    }

    #[test]
    fn the_ledger_decides_what_to_read() {
        use FailureKind::*;
        use IngestReason::*;
        let fp = "*";
        let cases = [
            (None, "e1", Some(New)),
            (Some(entry(Status::Ingested, fp)), "e1", None),
            (Some(entry(Status::Ingested, fp)), "e2", Some(Changed)),
            (
                Some(entry(Status::Ingested, "2 accounts, crc32 0")),
                "e1",
                Some(MonitoredAccountsChanged),
            ),
            (
                Some(entry(Status::Failed(Transient), fp)),
                "e1",
                Some(Retrying),
            ),
            (
                Some(entry(Status::Failed(Configuration), fp)),
                "e1",
                Some(Retrying),
            ),
            (Some(entry(Status::Failed(Content), fp)), "e1", None),
            (
                Some(entry(Status::Failed(Content), fp)),
                "e2",
                Some(Changed),
            ),
            (Some(entry(Status::Superseded, fp)), "e1", Some(ChosenAgain)),
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
