//! Reading one report version for the integrations that want it: each one's statement claimed
//! (on one connection), the report read once with the union of their monitored sets, then each
//! integration's statement replaced with its own accounts' rows, in a transaction of its own.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tracing::Instrument;

use super::{
    FIRST_RETRY_DELAY, Failed, IngestError, IngestReason, Ingested, PollOutcome, READ_ATTEMPTS,
    read_version, why_ingest,
};
use crate::domain::{IntegrationName, Monitored};
use crate::failure::{Classify, FailureKind};
use crate::formats::Version;
use crate::report::aggregate::{MemoryBudget, ReportSums};
use crate::source::Source;
use crate::store::{Claim, Replaced, ReportVersion, Store, StoreError};
use crate::telemetry;

/// An integration that reads in this poll, with the monitored set in force.
pub(super) struct Reader {
    /// (group, member) of the poll's outcomes.
    pub slot: (usize, usize),
    pub integration: IntegrationName,
    pub monitored: Monitored,
    pub fingerprint: String,
}

/// One chosen report version, and the integrations whose ledgers want it read.
pub(super) struct Job<'a> {
    pub source: &'a Source,
    pub location: Arc<str>,
    pub version: Version,
    pub wants: Vec<(Arc<Reader>, IngestReason)>,
}

/// How one chosen report fared for one integration.
pub(super) enum End {
    Ingested(Ingested),
    Failed(Failed),
    Unchanged,
    ClaimedElsewhere,
}

impl End {
    pub fn add_to(self, outcome: &mut PollOutcome) {
        match self {
            End::Ingested(ingested) => outcome.ingested.push(ingested),
            End::Failed(failed) => outcome.failed.push(failed),
            End::Unchanged => outcome.unchanged += 1,
            End::ClaimedElsewhere => outcome.claimed_elsewhere += 1,
        }
    }
}

/// Claims, reads and writes the job's report; one end per integration that wanted it.
pub(super) async fn run(
    job: Job<'_>,
    store: &Store,
    budget: &MemoryBudget,
) -> Vec<((usize, usize), End)> {
    let span = tracing::info_span!(
        "report",
        format = job.version.format.as_str(),
        key = job.version.key,
        payer = %job.version.statement.payer,
        period = %job.version.statement.period,
        etag = job.version.identity,
    );
    job.claim_and_ingest(store, budget).instrument(span).await
}

impl Job<'_> {
    async fn claim_and_ingest(
        &self,
        store: &Store,
        budget: &MemoryBudget,
    ) -> Vec<((usize, usize), End)> {
        let mut ends = Vec::new();
        let mut claim = match store.claims().await {
            Ok(claim) => claim,
            Err(error) => {
                for (reader, _) in &self.wants {
                    ends.push((reader.slot, self.failed(reader, &error)));
                }
                return ends;
            }
        };
        let mut readers = Vec::new();
        for (reader, reason) in &self.wants {
            match self.claim(&mut claim, reader).await {
                Ok(Some(end)) => ends.push((reader.slot, end)),
                Ok(None) => readers.push((reader, *reason)),
                Err(error) => ends.push((reader.slot, self.failed(reader, &error))),
            }
        }
        if readers.is_empty() {
            claim.release().await;
            return ends;
        }
        let monitored = readers
            .iter()
            .skip(1)
            .fold(readers[0].0.monitored.clone(), |all, (reader, _)| {
                all.union(&reader.monitored)
            });
        let started_at = Utc::now();
        let started = Instant::now();
        // Shared with the thread that ranks the rollups while the month is written.
        let read = self.read(&monitored, budget).await.map(Arc::new);
        for (reader, reason) in readers {
            let span =
                tracing::info_span!("integration", integration = %reader.integration, %reason);
            let report = ReportVersion {
                integration: &reader.integration,
                location: &self.location,
                version: &self.version,
                started_at,
            };
            let only = (reader.monitored != monitored).then_some(&reader.monitored);
            let writing = Instant::now();
            let written = match &read {
                Ok(sums) => store
                    .replace_statement(&mut claim, &report, sums, only, &reader.fingerprint)
                    .instrument(span.clone())
                    .await
                    .map(|replaced| (replaced, sums))
                    .map_err(IngestError::from),
                Err(error) => Err(IngestError::Shared {
                    message: error.to_string(),
                    kind: error.kind(),
                }),
            };
            let seconds = started.elapsed().as_secs_f64();
            let _entered = span.enter();
            let end = match written {
                Ok((Replaced::ByCur, _)) => End::Unchanged,
                Ok((Replaced::Statement, sums)) => {
                    // Where a report's time goes: reading (inflate, parse, sum) came before.
                    tracing::debug!(
                        write_seconds = format!("{:.2}", writing.elapsed().as_secs_f64()),
                        "month replaced"
                    );
                    End::Ingested(self.ingested(reader, reason, sums, only, seconds))
                }
                Err(error) => {
                    telemetry::report_failed(&reader.integration, &self.version.statement, seconds);
                    if matches!(error, IngestError::Store(StoreError::SwapTimedOut { .. })) {
                        telemetry::swap_timed_out(&reader.integration);
                    }
                    // A removed integration keeps no ledger either.
                    let removed =
                        matches!(error, IngestError::Store(StoreError::IntegrationRemoved(_)));
                    let recorded = if removed {
                        Ok(())
                    } else {
                        store
                            .record_failure(&report, &error.to_string(), error.kind())
                            .await
                    };
                    if let Err(store_error) = recorded {
                        tracing::error!(%store_error, "could not record the failure");
                    }
                    self.failed(reader, &error)
                }
            };
            ends.push((reader.slot, end));
        }
        claim.release().await;
        ends
    }

    /// Claims the reader's statement and checks its ledger again under the claim (another
    /// replica may have just ingested it): `None` when it is to be read.
    async fn claim(&self, claim: &mut Claim, reader: &Reader) -> Result<Option<End>, StoreError> {
        let statement = &self.version.statement;
        if !claim.try_claim(&reader.integration, statement).await? {
            tracing::info!(integration = %reader.integration, "another replica is ingesting this statement");
            telemetry::report_skipped(&reader.integration, &self.version.statement);
            return Ok(Some(End::ClaimedElsewhere));
        }
        let entry = claim
            .ledger_entry(&reader.integration, &self.location, &self.version.key)
            .await?;
        if why_ingest(entry.as_ref(), &self.version, &reader.fingerprint).is_none() {
            telemetry::report_skipped(&reader.integration, &self.version.statement);
            return Ok(Some(End::Unchanged));
        }
        Ok(None)
    }

    /// Reads the report, again after a stream that broke (up to [`READ_ATTEMPTS`] times).
    async fn read(
        &self,
        monitored: &Monitored,
        budget: &MemoryBudget,
    ) -> Result<ReportSums, IngestError> {
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempt = 1;
        loop {
            match read_version(self.source, &self.version, monitored, budget).await {
                Err(error) if error.kind() == FailureKind::Transient && attempt < READ_ATTEMPTS => {
                    tracing::warn!(%error, attempt, "reading the report failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Logs and counts a report ingested for one integration.
    fn ingested(
        &self,
        reader: &Reader,
        reason: IngestReason,
        sums: &ReportSums,
        only: Option<&Monitored>,
        seconds: f64,
    ) -> Ingested {
        let summary = sums.summary_of(only);
        let (rows, mismatched) = (summary.rows, summary.reconciliation.mismatched);
        tracing::info!(
            line_items = rows.line_items,
            kept = rows.kept,
            dropped_unmonitored = rows.dropped_unmonitored,
            // Sorted runs written to the temporary directory: 0 when the sums fit the budget.
            spilled_runs = sums.runs(),
            // Written and read back: what the spill cost the disk.
            spilled_bytes = sums.spilled_bytes(),
            seconds = format!("{seconds:.2}"),
            "ingested"
        );
        if mismatched > 0 {
            tracing::warn!(
                unreconciled_accounts = mismatched,
                "line items do not add up to AccountTotal"
            );
        }
        if rows.amortized_as_billed > 0 {
            tracing::warn!(
                line_items = rows.amortized_as_billed,
                "line items whose amortized cost column is absent or not a number; counted at their unblended cost"
            );
        }
        if rows.outside_period > 0
            && let Some(first_line) = sums.first_outside_period()
        {
            tracing::warn!(
                line_items = rows.outside_period,
                first_line,
                "line items dated outside the report's month; kept in its month, as AWS's totals are"
            );
        }
        telemetry::report_ingested(
            &reader.integration,
            &self.version.statement,
            rows,
            mismatched,
            seconds,
        );
        Ingested {
            object_key: self.version.key.clone(),
            reason,
            summary,
        }
    }

    /// A report that failed for one integration: logged here, except configuration failures,
    /// which the poll logs once per integration.
    fn failed(&self, reader: &Reader, error: &(impl Classify + fmt::Display)) -> End {
        let kind = error.kind();
        let error = error.to_string();
        if kind == FailureKind::Configuration {
            tracing::debug!(integration = %reader.integration, %error, %kind, "report failed");
        } else {
            tracing::error!(integration = %reader.integration, %error, %kind, "report failed; its month keeps the data it had");
        }
        End::Failed(Failed {
            object_key: self.version.key.clone(),
            error,
            kind,
        })
    }
}
