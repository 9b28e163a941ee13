//! What a poll reads for the integrations of one source: one listing for all of them (between
//! full listings, only the prefixes of the payers they know), one report chosen per statement,
//! and for each report the integrations whose ledger says it must be read.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{TimeDelta, Utc};

use super::job::{Job, Reader};
use super::{Member, PollError, PollOutcome, SourceGroup, why_ingest};
use crate::domain::{AccountId, IntegrationName};
use crate::failure::Classify;
use crate::report::key::{self, ListedReport, ReportKey, payer_key_start};
use crate::source::{Listing, Source};
use crate::store::{LedgerEntry, Store};
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
    let listing = sort_listing(listing);
    for (key, reason) in &listing.ignored {
        tracing::debug!(key, reason, "ignored");
    }
    for (reader, _) in &readers {
        if let Ok(outcome) = &mut planned.outcomes[reader.slot.1] {
            outcome.ignored = listing.ignored.len();
        }
    }
    for listed in listing.chosen {
        let mut wants = Vec::new();
        for (reader, ledger) in &readers {
            match why_ingest(
                ledger.get(&listed.object.key),
                &listed.object,
                &reader.fingerprint,
            ) {
                Some(reason) => wants.push((reader.clone(), reason)),
                None => {
                    telemetry::report_skipped(&reader.integration, &listed.report);
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
                listed,
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
/// payer is known yet), else only the key prefixes of the payers they have read before.
async fn list(
    source: &Source,
    location: &str,
    integrations: &[&IntegrationName],
    store: &Store,
) -> Result<Listing, PollError> {
    let payers: BTreeSet<AccountId> = if source.lists_by_request() {
        let listed_whole = store.last_full_listing(integrations, location).await?;
        let due = listed_whole.is_none_or(|at| Utc::now() - at >= FULL_LISTING_EVERY);
        if due {
            BTreeSet::new()
        } else {
            store.known_payers(integrations, location).await?
        }
    } else {
        BTreeSet::new()
    };
    if payers.is_empty() {
        let listing = source.list().await?;
        store.record_full_listing(integrations, location).await?;
        return Ok(listing);
    }
    let starts: Vec<String> = payers.iter().map(payer_key_start).collect();
    tracing::debug!(
        payers = starts.len(),
        "listing the known payers' reports only"
    );
    Ok(source.list_within(Some(&starts)).await?)
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
