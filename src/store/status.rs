//! What the status page shows, read from the contract views and the ledger in one snapshot.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::{Store, StoreError};

/// The reports of one integration, by what became of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationReports {
    pub integration: String,
    pub ingested: i64,
    pub failed: i64,
    pub superseded: i64,
    /// Line items kept and dropped by the reports the views show.
    pub rows_kept: i64,
    pub rows_dropped: i64,
    pub last_ingested_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedReport {
    pub integration: String,
    pub key: String,
    pub failure_kind: String,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// One month of every integration's costs, each payer's account counted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Month {
    pub period: NaiveDate,
    pub unblended_cost: Decimal,
    /// Accounts whose month is still estimated.
    pub estimated_accounts: i64,
    pub accounts: i64,
    /// The formats its statements come from: `DBR`, `CUR`, or both (for different payers).
    pub sources: String,
}

/// One account's cost in the latest month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCost {
    pub integration: String,
    pub account: String,
    /// Its name in `monitored_accounts`, when it has one.
    pub name: Option<String>,
    pub unblended_cost: Decimal,
    pub invoice_status: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    pub reconciled: i64,
    pub mismatched: i64,
    /// Account months of reports without a footer.
    pub without_total: i64,
}

/// Everything the status page shows from the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusData {
    pub integrations: Vec<IntegrationReports>,
    /// The latest failures, newest first.
    pub failures: Vec<FailedReport>,
    /// The last twelve months that have costs, oldest first.
    pub months: Vec<Month>,
    pub reconciliation: Reconciliation,
    /// The latest month with costs, and its accounts by cost, highest first.
    pub latest: Option<(NaiveDate, Vec<AccountCost>)>,
}

/// Failures the page lists.
const FAILURES_SHOWN: i64 = 20;
/// Accounts the page shows bars for.
const ACCOUNTS_SHOWN: i64 = 20;

impl Store {
    /// Reads what the status page shows, in one read-only transaction (one snapshot).
    pub async fn status(&self) -> Result<StatusData, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let integrations =
            sqlx::query_as::<_, (String, i64, i64, i64, i64, i64, Option<DateTime<Utc>>)>(
                "SELECT integration,
                    count(*) FILTER (WHERE status = 'ingested'),
                    count(*) FILTER (WHERE status = 'failed'),
                    count(*) FILTER (WHERE status = 'superseded'),
                    coalesce(sum(rows_kept) FILTER (WHERE status = 'ingested'), 0)::bigint,
                    coalesce(sum(rows_dropped) FILTER (WHERE status = 'ingested'), 0)::bigint,
                    max(ingested_at) FILTER (WHERE status = 'ingested')
             FROM report_status GROUP BY integration ORDER BY integration",
            )
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(
                |(integration, ingested, failed, superseded, rows_kept, rows_dropped, last)| {
                    IntegrationReports {
                        integration,
                        ingested,
                        failed,
                        superseded,
                        rows_kept,
                        rows_dropped,
                        last_ingested_at: last,
                    }
                },
            )
            .collect();
        let failures = sqlx::query_as::<_, (String, String, String, String, DateTime<Utc>)>(
            "SELECT integration, key, coalesce(failure_kind, ''), coalesce(error, ''), ingested_at
             FROM report_status WHERE status = 'failed'
             ORDER BY ingested_at DESC, integration, key LIMIT $1",
        )
        .bind(FAILURES_SHOWN)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(integration, key, failure_kind, error, at)| FailedReport {
            integration,
            key,
            failure_kind,
            error,
            at,
        })
        .collect();
        // Integrations reading the same payer each have its accounts' rows: an account's
        // month counts once, whichever integrations read it.
        let mut months: Vec<Month> = sqlx::query_as::<_, (NaiveDate, Decimal, i64, i64)>(
            "SELECT billing_period, sum(unblended_cost),
                    count(*) FILTER (WHERE invoice_status = 'estimated'), count(*)
             FROM (SELECT DISTINCT ON (payer_account_id, linked_account_id, billing_period)
                          billing_period, unblended_cost, invoice_status
                   FROM account_monthly_costs
                   ORDER BY payer_account_id, linked_account_id, billing_period, integration)
                  AS accounts
             GROUP BY billing_period ORDER BY billing_period DESC LIMIT 12",
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(
            |(period, unblended_cost, estimated_accounts, accounts)| Month {
                period,
                unblended_cost,
                estimated_accounts,
                accounts,
                sources: String::new(),
            },
        )
        .collect();
        months.reverse();
        let sources: Vec<(NaiveDate, String)> = sqlx::query_as(
            "SELECT billing_period, string_agg(DISTINCT upper(format), ' and ')
             FROM statements GROUP BY billing_period",
        )
        .fetch_all(&mut *tx)
        .await?;
        for month in &mut months {
            if let Some((_, formats)) = sources.iter().find(|(period, _)| *period == month.period) {
                month.sources.clone_from(formats);
            }
        }
        let (reconciled, mismatched, without_total): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE reconciled), count(*) FILTER (WHERE NOT reconciled),
                    count(*) FILTER (WHERE reconciled IS NULL)
             FROM account_reconciliation",
        )
        .fetch_one(&mut *tx)
        .await?;
        let latest = match months.last().map(|m| m.period) {
            Some(period) => {
                let accounts =
                    sqlx::query_as::<_, (String, String, Option<String>, Decimal, String)>(
                        "SELECT integration, linked_account_id, account_name, sum(unblended_cost),
                            CASE WHEN bool_or(invoice_status = 'estimated') THEN 'estimated'
                                 ELSE 'final' END
                     FROM account_monthly_costs
                     WHERE billing_period = $1
                     GROUP BY integration, linked_account_id, account_name
                     ORDER BY 4 DESC, 1, 2 LIMIT $2",
                    )
                    .bind(period)
                    .bind(ACCOUNTS_SHOWN)
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(
                        |(integration, account, name, unblended_cost, invoice_status)| {
                            AccountCost {
                                integration,
                                account,
                                name,
                                unblended_cost,
                                invoice_status,
                            }
                        },
                    )
                    .collect();
                Some((period, accounts))
            }
            None => None,
        };
        tx.commit().await?;
        Ok(StatusData {
            integrations,
            failures,
            months,
            reconciliation: Reconciliation {
                reconciled,
                mismatched,
                without_total,
            },
            latest,
        })
    }
}
