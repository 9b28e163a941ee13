//! Polls: list each integration's source, pick the reports to read, and ingest each new or
//! changed one into the store. `once` and `run` both come through here. Integrations whose
//! sources are equal (a reseller's bucket shared by two customers) share one listing and one
//! read of each report version; each gets its own accounts' rows. A report that fails, or a
//! whole integration that cannot be listed, is recorded, and the others go on.

mod job;
mod plan;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, stream};

use crate::config::Settings;
use crate::domain::{AccountId, IntegrationName, Monitored};
use crate::failure::{Classify, FailureKind};
use crate::formats::cur::ManifestError;
use crate::formats::{Format, Version};
use crate::integration::{Integration, IntegrationSource, by_source};
use crate::report::aggregate::{Grain, MemoryBudget, ReadSummary, ReportIdentity, ReportSums};
use crate::report::read::{Expected, Progress, ReadError, Reading};
use crate::source::{S3Context, Source, SourceError};
use crate::store::{LedgerEntry, Status, Store, StoreError};
use crate::telemetry;

pub use plan::{SortedListing, sort_listing};

/// Reading a report again after its stream broke (network), before recording a failure.
const READ_ATTEMPTS: u32 = 3;
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Sources listed at the same time, beside the reports being read: one slow or throttled
/// bucket does not hold up the others' listings.
const LISTINGS_AT_ONCE: usize = 8;

/// Why an integration could not be polled at all (as opposed to one report failing).
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
    #[error(
        "no monitored accounts: name some with `dbr-ingest integrations update {0} --monitored ID,ID` (or * for every account)"
    )]
    NoMonitoredAccountsOf(IntegrationName),
    /// The listing shared with another integration failed (that one has the cause).
    #[error("{message}")]
    SharedListing { message: String, kind: FailureKind },
    #[error(
        "nothing to poll: set DBR_BUCKET (or s3.bucket, or --source dir:PATH), or add an integration with `dbr-ingest integrations add`"
    )]
    NothingToPoll,
    #[error("there is no integration named {0}: `dbr-ingest integrations list` shows them")]
    NoSuchIntegration(IntegrationName),
    #[error("integration {0} is disabled: `dbr-ingest integrations enable {0}`")]
    Disabled(IntegrationName),
}

impl Classify for PollError {
    fn kind(&self) -> FailureKind {
        match self {
            PollError::Source(error) => error.kind(),
            PollError::Store(error) => error.kind(),
            PollError::SharedListing { kind, .. } => *kind,
            PollError::NoMonitoredAccounts
            | PollError::NoMonitoredAccountsOf(_)
            | PollError::NothingToPoll
            | PollError::NoSuchIntegration(_)
            | PollError::Disabled(_) => FailureKind::Configuration,
        }
    }
}

/// What one poll did for one integration.
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
    /// Requests sent to S3 (listing pages, reports read); a source shared by several
    /// integrations counts for the first of them.
    pub s3_requests: u64,
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

/// How one poll went for one integration.
#[derive(Debug)]
pub struct IntegrationPolled {
    pub integration: IntegrationName,
    pub outcome: Result<PollOutcome, PollError>,
}

/// An integration as a poll sees it: its name and the monitored set its definition names
/// (`*`, the configuration's accounts for `default`, or `None`: its table rows only).
#[derive(Clone, Debug)]
pub struct Member {
    pub integration: IntegrationName,
    pub configured: Option<Monitored>,
}

/// Integrations read through one source.
pub struct SourceGroup<'a> {
    pub source: &'a Source,
    /// The Cost and Usage Report they read, when they name one.
    pub report_name: Option<String>,
    pub members: Vec<Member>,
}

/// The monitored set in force for an integration: every account when its definition says
/// `*`; else its rows of the `monitored_accounts` table, after copying the accounts its
/// configuration names into them (`default` only).
pub async fn monitored_accounts(
    integration: &IntegrationName,
    configured: Option<&Monitored>,
    store: &Store,
) -> Result<Monitored, PollError> {
    let configured_ids: Vec<AccountId> = match configured {
        Some(Monitored::All) => return Ok(Monitored::All),
        Some(Monitored::Only(ids)) => ids.iter().cloned().collect(),
        None => Vec::new(),
    };
    if integration.is_default() {
        store
            .seed_monitored_accounts(integration, &configured_ids)
            .await?;
    }
    let ids: std::collections::BTreeSet<AccountId> = store
        .monitored_accounts(integration)
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    if ids.is_empty() {
        return Err(if integration.is_default() {
            PollError::NoMonitoredAccounts
        } else {
            PollError::NoMonitoredAccountsOf(integration.clone())
        });
    }
    Ok(Monitored::Only(ids))
}

/// The integrations a poll works on: the configuration's (`default`, when it names a bucket
/// or a directory) and the enabled ones of the table; with `only`, that one.
pub async fn integrations_to_poll(
    settings: &Settings,
    store: &Store,
    only: Option<&IntegrationName>,
) -> Result<Vec<Integration>, PollError> {
    let mut integrations: Vec<Integration> =
        Integration::from_settings(settings).into_iter().collect();
    integrations.extend(store.integrations(settings.s3.read_timeout).await?);
    if let Some(name) = only {
        let integration = integrations
            .into_iter()
            .find(|i| &i.name == name)
            .ok_or_else(|| PollError::NoSuchIntegration(name.clone()))?;
        if !integration.enabled {
            return Err(PollError::Disabled(name.clone()));
        }
        return Ok(vec![integration]);
    }
    integrations.retain(|integration| integration.enabled);
    if integrations.is_empty() {
        return Err(PollError::NothingToPoll);
    }
    Ok(integrations)
}

/// Whether a poll would have something to do in a database that does not exist yet, so that
/// `once` refuses before creating one: only the configuration's integration can be polled
/// there, and only with monitored accounts of its own.
pub fn check_before_creating(
    settings: &Settings,
    only: Option<&IntegrationName>,
) -> Result<(), PollError> {
    if let Some(name) = only.filter(|name| !name.is_default()) {
        return Err(PollError::NoSuchIntegration(name.clone()));
    }
    match Integration::from_settings(settings) {
        None => Err(PollError::NothingToPoll),
        Some(integration) if integration.monitored.is_none() => Err(PollError::NoMonitoredAccounts),
        Some(_) => Ok(()),
    }
}

/// Integrations that share a source and read the same reports.
pub struct Grouped {
    pub source: Arc<Source>,
    pub report_name: Option<String>,
    pub members: Vec<Member>,
}

/// The sources of the integrations polled, kept from one poll to the next: an S3 client keeps
/// its connections, and its role's credentials until they are due for a refresh.
pub struct Sources {
    context: S3Context,
    known: Vec<(IntegrationSource, Arc<Source>)>,
}

impl Sources {
    pub fn new(read_timeout: Duration) -> Sources {
        Sources {
            context: S3Context::new(read_timeout),
            known: Vec::new(),
        }
    }

    /// The integrations grouped by source, each group with its source: the one of an earlier
    /// poll when the definition is the same, else a new one. Sources no integration uses any
    /// more are dropped.
    pub async fn group(&mut self, integrations: Vec<Integration>) -> Vec<Grouped> {
        let mut known = Vec::new();
        let mut groups = Vec::new();
        for group in by_source(integrations) {
            let definition = group[0].source.clone();
            let report_name = group[0].report_name.clone();
            let source = match self.known.iter().find(|(d, _)| *d == definition) {
                Some((_, source)) => source.clone(),
                None => Arc::new(Source::for_integration(&definition, &self.context).await),
            };
            known.push((definition, source.clone()));
            let members = group
                .into_iter()
                .map(|i| Member {
                    integration: i.name,
                    configured: i.monitored,
                })
                .collect();
            groups.push(Grouped {
                source,
                report_name,
                members,
            });
        }
        self.known = known;
        groups
    }
}

/// One poll of the integrations to poll (see [`integrations_to_poll`]), each group of them
/// through its source in `sources`: what `once` does, and `run` at every interval.
pub async fn poll_integrations(
    sources: &mut Sources,
    store: &Store,
    settings: &Settings,
    only: Option<&IntegrationName>,
) -> Result<Vec<IntegrationPolled>, PollError> {
    let integrations = integrations_to_poll(settings, store, only).await?;
    let grouped = sources.group(integrations).await;
    let groups: Vec<SourceGroup> = grouped
        .iter()
        .map(|grouped| SourceGroup {
            source: &grouped.source,
            report_name: grouped.report_name.clone(),
            members: grouped.members.clone(),
        })
        .collect();
    Ok(poll_groups(
        &groups,
        store,
        settings.concurrency,
        &settings.memory_budget,
    )
    .await)
}

/// Polls the configuration's integration alone, through `source`: what `once` and `run` do
/// for a deployment of one bucket.
pub async fn poll(
    source: &Source,
    store: &Store,
    configured: Option<&Monitored>,
    concurrency: usize,
    memory_budget: &MemoryBudget,
) -> Result<PollOutcome, PollError> {
    let group = SourceGroup {
        source,
        report_name: None,
        members: vec![Member {
            integration: IntegrationName::default_name(),
            configured: configured.cloned(),
        }],
    };
    let mut polled = poll_groups(&[group], store, concurrency, memory_budget).await;
    polled.pop().expect("one integration polled").outcome
}

/// Polls every group: their listings at most [`LISTINGS_AT_ONCE`] at a time, and as each
/// listing comes in, its reports join the queue of reports to read, at most `concurrency` at
/// once, sharing `memory_budget`. The queue takes one report of each integration group in
/// turn, so a payer with many months does not hold the others back. Returns one outcome per
/// integration, in the order of the groups.
pub async fn poll_groups(
    groups: &[SourceGroup<'_>],
    store: &Store,
    concurrency: usize,
    memory_budget: &MemoryBudget,
) -> Vec<IntegrationPolled> {
    let concurrency = concurrency.max(1);
    let budget = MemoryBudget {
        bytes: memory_budget.bytes / concurrency,
        temp_dir: memory_budget.temp_dir.clone(),
    };
    let requests_before: Vec<u64> = groups.iter().map(|g| g.source.requests()).collect();
    let mut outcomes: Vec<Vec<Result<PollOutcome, PollError>>> = groups
        .iter()
        .map(|g| {
            g.members
                .iter()
                .map(|_| Ok(PollOutcome::default()))
                .collect()
        })
        .collect();
    let mut planning = stream::iter(groups.iter().enumerate())
        .map(|(index, group)| plan::plan(index, group, store))
        .buffer_unordered(LISTINGS_AT_ONCE);
    let mut planning_done = false;
    let mut queue = FairQueue::default();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < concurrency {
            let Some(job) = queue.pop() else { break };
            running.push(job::run(job, store, &budget));
        }
        if planning_done && running.is_empty() {
            break;
        }
        tokio::select! {
            planned = planning.next(), if !planning_done => match planned {
                Some(planned) => {
                    for (member, outcome) in planned.outcomes.into_iter().enumerate() {
                        outcomes[planned.group][member] = outcome;
                    }
                    queue.push(planned.jobs);
                }
                None => planning_done = true,
            },
            Some(ends) = running.next(), if !running.is_empty() => {
                for ((group, member), end) in ends {
                    if let Ok(outcome) = &mut outcomes[group][member] {
                        end.add_to(outcome);
                    }
                }
            }
        }
    }
    let mut polled = Vec::new();
    for ((group, outcomes), before) in groups.iter().zip(outcomes).zip(requests_before) {
        let requests = group.source.requests() - before;
        for (index, (member, mut outcome)) in group.members.iter().zip(outcomes).enumerate() {
            if let Ok(outcome) = &mut outcome {
                if index == 0 {
                    outcome.s3_requests = requests;
                    telemetry::s3_requests(&member.integration, requests);
                }
                log_configuration_failures(&member.integration, &outcome.failed);
                telemetry::integration_polled(&member.integration);
            }
            polled.push(IntegrationPolled {
                integration: member.integration.clone(),
                outcome,
            });
        }
    }
    polled
}

/// Reports to read, taken one group at a time in turn.
struct FairQueue<T> {
    groups: VecDeque<VecDeque<T>>,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue {
            groups: VecDeque::new(),
        }
    }
}

impl<T> FairQueue<T> {
    fn push(&mut self, jobs: Vec<T>) {
        if !jobs.is_empty() {
            self.groups.push_back(jobs.into());
        }
    }

    fn pop(&mut self) -> Option<T> {
        let mut jobs = self.groups.pop_front()?;
        let job = jobs.pop_front();
        if !jobs.is_empty() {
            self.groups.push_back(jobs);
        }
        job
    }
}

/// One line per poll and integration for what an operator must fix (a permission, a missing
/// bucket): the same cause fails every report, and a line per report would bury everything
/// else.
fn log_configuration_failures(integration: &IntegrationName, failed: &[Failed]) {
    let mut configuration = failed
        .iter()
        .filter(|f| f.kind == FailureKind::Configuration);
    if let Some(first) = configuration.next() {
        tracing::error!(
            %integration,
            reports = 1 + configuration.count(),
            first = first.object_key,
            error = first.error,
            "reports failed for a configuration or permission problem; `dbr-ingest check` explains it"
        );
    }
}

/// Why a chosen report is read now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestReason {
    /// Not in the ledger yet.
    New,
    /// Another identity (ETag, CUR assemblyId) or size than the version in the ledger.
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
pub(crate) fn why_ingest(
    entry: Option<&LedgerEntry>,
    version: &Version,
    fingerprint: &str,
) -> Option<IngestReason> {
    let Some(entry) = entry else {
        return Some(IngestReason::New);
    };
    if entry.etag != version.identity || entry.size != version.size() {
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
    /// The read shared with other integrations failed: each of them records this.
    #[error("{message}")]
    Shared { message: String, kind: FailureKind },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(
        "part {part} is named by the manifest but not in the bucket{}: AWS may still be writing the report, the next poll tries again",
        if *.more > 0 { format!(" (and {} more)", .more) } else { String::new() }
    )]
    MissingPart { part: String, more: usize },
}

impl Classify for IngestError {
    fn kind(&self) -> FailureKind {
        match self {
            IngestError::Source(error) => error.kind(),
            IngestError::Read(error) => error.kind(),
            IngestError::Store(error) => error.kind(),
            IngestError::Shared { kind, .. } => *kind,
            IngestError::MissingPart { .. } => FailureKind::Transient,
            IngestError::Manifest(_) => FailureKind::Content,
        }
    }
}

/// Opens the version's objects one after the other and sums them, showing progress while
/// they are read. A part its manifest names that the listing lacks fails the version as
/// transient: AWS may be writing it.
pub async fn read_version(
    source: &Source,
    version: &Version,
    monitored: &Monitored,
    budget: &MemoryBudget,
) -> Result<ReportSums, IngestError> {
    if let Some(missing) = version.missing.first() {
        return Err(IngestError::MissingPart {
            part: missing.clone(),
            more: version.missing.len() - 1,
        });
    }
    let expected = Expected {
        layout: version.format.layout(),
        identity: ReportIdentity {
            payer: Some(version.statement.payer.clone()),
            period: Some(version.statement.period),
            marketplace: version.marketplace,
        },
        grain: Grain::Daily(budget.clone()),
        name_objects: version.format != Format::Dbr,
    };
    let progress = Arc::new(Progress::default());
    let name = version.key.rsplit('/').next().unwrap_or_default();
    let watch = crate::progress::watch(name, Some(version.size()), progress.clone());
    let mut reading = Reading::start(expected, monitored.clone(), progress.clone());
    let mut sent = Ok(());
    for part in &version.parts {
        let body = source.open(&part.object).await?;
        sent = reading
            .object(&part.object.key, part.compression, body)
            .await;
        if sent.is_err() {
            break;
        }
    }
    let sums = reading.finish().await;
    drop(watch);
    telemetry::bytes_read(&progress);
    // A broken archive (bad CRC, truncated) is the cause even if the CSV happened to parse.
    sent?;
    let sums = sums?;
    telemetry::runs_spilled(sums.runs());
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ObjectMeta;
    use crate::formats::dbr::{ListedReport, ReportKey};

    fn version(etag: &str) -> Version {
        let key = "123456789012-aws-billing-detailed-line-items-2017-01.csv.zip";
        Version::of_dbr(ListedReport {
            report: ReportKey::parse(key).unwrap(),
            object: ObjectMeta {
                key: key.into(),
                etag: etag.into(),
                size: 10,
                last_modified: None,
            },
        })
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
    fn the_queue_takes_one_report_of_each_group_in_turn() {
        let mut queue = FairQueue::default();
        queue.push(vec!["big-1", "big-2", "big-3"]);
        queue.push(vec![]);
        queue.push(vec!["small-1"]);
        let mut order = vec![queue.pop().unwrap()];
        // A group whose listing comes in later joins the rotation.
        queue.push(vec!["late-1", "late-2"]);
        order.extend(std::iter::from_fn(|| queue.pop()));
        assert_eq!(
            order,
            ["big-1", "small-1", "big-2", "late-1", "big-3", "late-2"]
        );
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
                why_ingest(entry.as_ref(), &version(etag), fp),
                expected,
                "{entry:?} {etag}"
            );
        }
    }
}
