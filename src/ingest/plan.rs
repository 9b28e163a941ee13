//! What a poll reads for the integrations of one source: one listing for all of them (between
//! full listings, only the prefixes of the payers they know), one report chosen per statement,
//! and for each report the integrations whose ledger says it must be read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use futures_util::{StreamExt, stream};

use super::job::{Job, Reader};
use super::{Failed, IngestError, Member, PollError, PollOutcome, SourceGroup, why_ingest};
use crate::domain::{AccountId, IntegrationName, ObjectMeta, Period};
use crate::failure::Classify;
use crate::formats::cur::{MAX_MANIFEST_BYTES, Manifest, ManifestError, ManifestKey};
use crate::formats::dbr::payer_key_start;
use crate::formats::{self, Format, Version};
use crate::source::{Listing, Source, SourceError};
use crate::store::{KnownReport, LedgerEntry, Store};
use crate::telemetry;

/// How often a source is listed whole, even when its payers are known: a payer whose reports
/// appear in a bucket read before is found within this time.
const FULL_LISTING_EVERY: TimeDelta = TimeDelta::hours(24);

/// A group's plan: each member's outcome so far (its failure, when it cannot be polled), and
/// the reports to read.
pub(super) struct Planned<'a> {
    pub group: usize,
    pub outcomes: Vec<Result<PollOutcome, PollError>>,
    pub jobs: Vec<Job<'a>>,
}

/// Lists the group's source once and decides what each of its integrations reads.
pub(super) async fn plan<'a>(
    group: usize,
    sources: &'a SourceGroup<'a>,
    store: &Store,
) -> Planned<'a> {
    let source = sources.source;
    let location: Arc<str> = source.location().into();
    let mut outcomes = Vec::new();
    let mut readers = Vec::new();
    for (index, member) in sources.members.iter().enumerate() {
        match ready(member, &location, store).await {
            Ok((monitored, ledger)) => {
                readers.push((
                    Arc::new(Reader {
                        slot: (group, index),
                        integration: member.integration.clone(),
                        fingerprint: monitored.fingerprint(),
                        monitored,
                    }),
                    ledger,
                ));
                outcomes.push(Ok(PollOutcome::default()));
            }
            // Reported by the caller with the integration's outcome.
            Err(error) => outcomes.push(Err(error)),
        }
    }
    let mut planned = Planned {
        group,
        outcomes,
        jobs: Vec::new(),
    };
    if readers.is_empty() {
        return planned;
    }
    let names: Vec<&IntegrationName> = readers.iter().map(|(r, _)| &r.integration).collect();
    let listing = match list(source, &location, &names, store).await {
        Ok(listing) => listing,
        Err(error) => {
            let kind = error.kind();
            let message = error.to_string();
            let mut error = Some(error);
            for (reader, _) in &readers {
                planned.outcomes[reader.slot.1] = Err(match error.take() {
                    Some(first) => first,
                    None => PollError::SharedListing {
                        message: message.clone(),
                        kind,
                    },
                });
            }
            return planned;
        }
    };
    let listing = sort_listing(source, listing, sources.report_name.as_deref()).await;
    for (key, reason) in &listing.ignored {
        tracing::debug!(key, reason, "ignored");
    }
    for (key, error) in &listing.unreadable {
        tracing::error!(key, %error, kind = %error.kind(), "the report's manifest cannot be read; its month keeps the data it had");
    }
    for (reader, _) in &readers {
        if let Ok(outcome) = &mut planned.outcomes[reader.slot.1] {
            outcome.ignored = listing.ignored.len();
            outcome
                .failed
                .extend(listing.unreadable.iter().map(|(key, error)| Failed {
                    object_key: key.clone(),
                    error: error.to_string(),
                    kind: error.kind(),
                }));
        }
    }
    for version in listing.chosen {
        let mut wants = Vec::new();
        for (reader, ledger) in &readers {
            match why_ingest(ledger.get(&version.key), &version, &reader.fingerprint) {
                Some(reason) => wants.push((reader.clone(), reason)),
                None => {
                    telemetry::report_skipped(&reader.integration, &version.statement);
                    if let Ok(outcome) = &mut planned.outcomes[reader.slot.1] {
                        outcome.unchanged += 1;
                    }
                }
            }
        }
        if !wants.is_empty() {
            planned.jobs.push(Job {
                source,
                location: location.clone(),
                version,
                wants,
            });
        }
    }
    planned
}

/// A member's monitored set and ledger, or why it cannot be polled.
async fn ready(
    member: &Member,
    location: &str,
    store: &Store,
) -> Result<(crate::domain::Monitored, HashMap<String, LedgerEntry>), PollError> {
    let monitored =
        super::monitored_accounts(&member.integration, member.configured.as_ref(), store).await?;
    let ledger = store.ledger(&member.integration, location).await?;
    Ok((monitored, ledger))
}

/// Lists the source for these integrations: whole when it is due (or costs nothing, or no
/// report is known yet), else only where the reports they have read before are (a DBR
/// payer's key prefix, a CUR's folder), where AWS writes those reports' new versions.
async fn list(
    source: &Source,
    location: &str,
    integrations: &[&IntegrationName],
    store: &Store,
) -> Result<Listing, PollError> {
    let starts: BTreeSet<String> = if source.lists_by_request() {
        let listed_whole = store.last_full_listing(integrations, location).await?;
        let due = listed_whole.is_none_or(|at| Utc::now() - at >= FULL_LISTING_EVERY);
        if due {
            BTreeSet::new()
        } else {
            let known = store.known_reports(integrations, location).await?;
            known
                .iter()
                .filter_map(|known| listing_start(known, source.prefix()))
                .collect()
        }
    } else {
        BTreeSet::new()
    };
    if starts.is_empty() {
        let listing = source.list(formats::look_in).await?;
        store.record_full_listing(integrations, location).await?;
        return Ok(listing);
    }
    tracing::debug!(
        starts = starts.len(),
        "listing where the known reports are only"
    );
    let starts: Vec<String> = starts.into_iter().collect();
    Ok(source.list_within(Some(&starts), formats::look_in).await?)
}

/// Where a known report's new versions appear, after the source's prefix.
fn listing_start(known: &KnownReport, prefix: &str) -> Option<String> {
    match known.format {
        Format::Dbr => Some(payer_key_start(&known.payer)),
        Format::Cur => known.folder.strip_prefix(prefix).map(str::to_owned),
    }
}

/// A listing sorted out: one report version per statement to consider, every other object
/// with the reason it is ignored, and the manifests that could not be read.
pub struct SortedListing {
    pub chosen: Vec<Version>,
    pub ignored: Vec<(String, String)>,
    pub unreadable: Vec<(String, IngestError)>,
}

/// Sorts a listing of `source` out (reading the CUR manifests in it): one version per
/// statement. With `report_name`, the CUR reports of other names are ignored. A month of a
/// payer that a CUR delivers comes from that CUR alone; its DBR are ignored. Two CUR reports
/// for the same payer and month are both ignored, so that neither doubles the other.
pub async fn sort_listing(
    source: &Source,
    listing: Listing,
    report_name: Option<&str>,
) -> SortedListing {
    let recognised = formats::recognise(listing);
    let mut sorted = SortedListing {
        chosen: Vec::new(),
        ignored: recognised.ignored,
        unreadable: Vec::new(),
    };
    let mut read = Vec::new();
    for (named, object) in &recognised.manifests {
        if let Some(wanted) = report_name.filter(|&wanted| wanted != named.report) {
            let reason = format!(
                "the Cost and Usage Report {}, not the integration's {wanted} (report_name)",
                named.report
            );
            sorted.ignored.push((object.key.clone(), reason));
            continue;
        }
        match manifest(source, named, object).await {
            Ok(manifest) => read.push((named, object, manifest)),
            Err(error) => sorted.unreadable.push((object.key.clone(), error)),
        }
    }
    let listed = &recognised.objects;
    let parts: Vec<_> = stream::iter(&read)
        .map(|(_, _, manifest)| unlisted_parts(source, manifest, listed))
        .buffered(MANIFESTS_AT_ONCE)
        .collect()
        .await;
    let mut cur = Vec::new();
    for ((named, object, manifest), parts) in read.iter().zip(parts) {
        match parts {
            Ok(parts) => cur.push(manifest.version(named, object, |key| {
                listed.get(key).or_else(|| parts.get(key)).cloned()
            })),
            Err(error) => sorted.unreadable.push((object.key.clone(), error.into())),
        }
    }
    let mut reports: BTreeMap<(AccountId, Period), BTreeSet<String>> = BTreeMap::new();
    for version in &cur {
        let month = (version.statement.payer.clone(), version.statement.period);
        reports
            .entry(month)
            .or_default()
            .insert(version.variant.clone());
    }
    let month = |version: &Version| (version.statement.payer.clone(), version.statement.period);
    for version in cur {
        match &reports[&month(&version)] {
            names if names.len() > 1 => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let reason = format!(
                    "{} has Cost and Usage Reports {}: neither is read until the integration names one (report_name)",
                    version.statement,
                    names.join(" and ")
                );
                sorted.ignored.push((version.key, reason));
            }
            _ => sorted.chosen.push(version),
        }
    }
    for listed in recognised.dbr {
        let version = Version::of_dbr(listed);
        match reports.get(&month(&version)) {
            Some(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let reason = format!(
                    "payer {} {} comes from the Cost and Usage Report {}",
                    version.statement.payer,
                    version.statement.period,
                    names.join(" and ")
                );
                sorted.ignored.push((version.key, reason));
            }
            None => sorted.chosen.push(version),
        }
    }
    sorted
}

/// Manifests whose parts are listed at once.
const MANIFESTS_AT_ONCE: usize = 8;

/// The objects in the folders of a manifest's parts that the listing did not reach (an
/// assembly's folder: see `formats::cur::look_in`), by key. A directory was listed whole.
async fn unlisted_parts(
    source: &Source,
    manifest: &Manifest,
    listed: &HashMap<String, ObjectMeta>,
) -> Result<HashMap<String, ObjectMeta>, SourceError> {
    let folders: BTreeSet<String> = manifest
        .parts
        .iter()
        .filter(|&key| !listed.contains_key(key))
        .filter_map(|key| key.rsplit_once('/'))
        .filter_map(|(folder, _)| folder.strip_prefix(source.prefix()))
        .map(|folder| format!("{folder}/"))
        .collect();
    if folders.is_empty() || !source.lists_by_request() {
        return Ok(HashMap::new());
    }
    let folders: Vec<String> = folders.into_iter().collect();
    let listing = source.list_within(Some(&folders), formats::look_in).await?;
    Ok(listing
        .objects
        .into_iter()
        .map(|object| (object.key.clone(), object))
        .collect())
}

/// The manifest `object`, read (at most [`MAX_MANIFEST_BYTES`]) and parsed.
async fn manifest(
    source: &Source,
    named: &ManifestKey,
    object: &ObjectMeta,
) -> Result<Manifest, IngestError> {
    let bytes = source.read_small(object, MAX_MANIFEST_BYTES).await?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::NotAManifest {
            key: object.key.clone(),
            reason: format!("larger than {} MiB", MAX_MANIFEST_BYTES >> 20),
        }
        .into());
    }
    Ok(Manifest::parse(
        &object.key,
        Some(named),
        &bytes,
        source.prefix(),
    )?)
}
