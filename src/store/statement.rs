//! Replacing a statement (payer, billing entity, month) with a report version's costs: one
//! transaction, so readers see the old month or the new one, never a mix or an empty month.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::encode::IsNull;
use sqlx::postgres::{PgArgumentBuffer, PgCopyIn};
use sqlx::{Acquire, AssertSqlSafe, Encode, PgConnection, Postgres, Transaction};

mod kinds;
mod rollups;

use kinds::KindIds;

use super::ledger::{Outcome, write_entry};
use super::{Claim, Store, StoreError, bigint, lock_name};
use crate::domain::{IntegrationName, Monitored, StatementId};
use crate::formats::{Format, Version};
use crate::report::aggregate::{AccountMonth, Amounts, ReportSums, Sums};
use crate::report::dimensions::ChargeCategory;

/// COPY data is sent in pieces of about this size.
const COPY_CHUNK: usize = 1 << 20;

/// One report version being ingested for one integration: where it was listed, and what it
/// is.
pub struct ReportVersion<'a> {
    pub integration: &'a IntegrationName,
    /// The source's location: `s3://bucket/prefix` or `dir:PATH`.
    pub location: &'a str,
    pub version: &'a Version,
    pub started_at: DateTime<Utc>,
}

/// What replacing a statement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// The version is what the views show for its statement.
    Statement,
    /// A DBR whose month a CUR delivers now: nothing written, the DBR is recorded superseded.
    ByCur,
}

impl Store {
    /// Makes `sums` what the views show for the report's statement in its integration, and
    /// records the version as ingested (any other object that fed the statement becomes
    /// `superseded`). All or nothing. With `only`, the sums were read for several integrations
    /// at once, and only these accounts' rows (and the usages they refer to) are this one's.
    ///
    /// The daily sums go into a partition of their own, which the views cannot see until it is
    /// swapped in for the old version's at the end, so the month is never half written and
    /// the old rows leave nothing to vacuum.
    pub async fn replace_statement(
        &self,
        claim: &mut Claim,
        report: &ReportVersion<'_>,
        sums: &Arc<ReportSums>,
        only: Option<&Monitored>,
        monitored_fingerprint: &str,
    ) -> Result<Replaced, StoreError> {
        let mut tx = claim.connection.begin().await?;
        let written = write_statement(&mut tx, report, sums, only, monitored_fingerprint).await;
        match written {
            Ok(replaced) => {
                tx.commit().await?;
                Ok(replaced)
            }
            // Rolled back here, not when the transaction is dropped: sqlx sends that rollback
            // only with the connection's next query, and until then the rows written (the
            // ledger's among them) stay locked, so recording the failure would wait forever.
            Err(error) => {
                tx.rollback().await?;
                Err(error)
            }
        }
    }
}

/// The body of [`Store::replace_statement`], in its transaction, up to the commit.
async fn write_statement(
    tx: &mut Transaction<'_, Postgres>,
    report: &ReportVersion<'_>,
    sums: &Arc<ReportSums>,
    only: Option<&Monitored>,
    monitored_fingerprint: &str,
) -> Result<Replaced, StoreError> {
    let version = report.version;
    let id = &version.statement;
    let statement = id.columns(report.integration);
    let invoice_status = sums.invoice_status();
    // Writers of one month of a payer queue here rather than interleave, claimed or not, DBR
    // entities and CUR alike: which of them the month shows is decided in here.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(lock_name("write", report.integration, &id.month()))
        .execute(&mut **tx)
        .await?;
    // An integration removed while its report was read stores nothing: its row is held
    // until the commit, so a removal waits for this write and then takes it away too.
    if !report.integration.is_default() {
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM integrations WHERE name = $1 FOR SHARE")
                .bind(report.integration.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::IntegrationRemoved(report.integration.clone()));
        }
    }
    match version.format {
        Format::Dbr if month_from_cur(tx, &statement).await? => {
            tracing::info!("its month comes from a Cost and Usage Report now; nothing written");
            write_entry(&mut **tx, report, &Outcome::Superseded).await?;
            return Ok(Replaced::ByCur);
        }
        Format::Dbr => {}
        Format::Cur => remove_dbr_entities(tx, &statement).await?,
    }
    let ranked = rollups::Ranked::start(sums.clone(), only.cloned());
    let new_version: i64 = sqlx::query_scalar("SELECT new_daily_partitions($1)")
        .bind(statement.integration)
        .fetch_one(&mut **tx)
        .await?;
    copy_daily_costs(tx, new_version, sums, only).await?;
    copy_usages(tx, new_version, sums, only).await?;
    let old_version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM statements
             WHERE integration = $1 AND payer_account_id = $2 AND entity = $3 AND billing_period = $4
             FOR UPDATE",
        )
        .bind(statement.integration)
        .bind(statement.payer)
        .bind(statement.entity)
        .bind(statement.period)
        .fetch_optional(&mut **tx)
        .await?;
    sqlx::query(
            "INSERT INTO statements (payer_account_id, entity, billing_period, location, key, etag, invoice_status, ingested_at, version, integration, format)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8, $9, $10)
             ON CONFLICT (integration, payer_account_id, entity, billing_period) DO UPDATE SET
                 location = excluded.location, key = excluded.key, etag = excluded.etag,
                 invoice_status = excluded.invoice_status, ingested_at = excluded.ingested_at,
                 version = excluded.version, format = excluded.format",
        )
        .bind(statement.payer)
        .bind(statement.entity)
        .bind(statement.period)
        .bind(report.location)
        .bind(&version.key)
        .bind(&version.identity)
        .bind(invoice_status.as_str())
        .bind(new_version)
        .bind(statement.integration)
        .bind(version.format.as_str())
        .execute(&mut **tx)
        .await?;
    delete_statement_rows(tx, &statement, &STATEMENT_ROWS).await?;
    insert_account_months(tx, &statement, sums, only).await?;
    insert_report_totals(tx, &statement, sums).await?;
    rollups::replace(tx, &statement, sums, only, ranked, old_version.is_some()).await?;
    sqlx::query(
            "UPDATE reports SET status = 'superseded'
             WHERE integration = $1 AND payer_account_id = $2 AND entity = $3 AND billing_period = $4
               AND status = 'ingested' AND (location, key) <> ($5, $6)",
        )
        .bind(statement.integration)
        .bind(statement.payer)
        .bind(statement.entity)
        .bind(statement.period)
        .bind(report.location)
        .bind(&version.key)
        .execute(&mut **tx)
        .await?;
    let outcome = Outcome::Ingested {
        rows: sums.rows_of(only),
        invoice_status,
        monitored_fingerprint,
    };
    write_entry(&mut **tx, report, &outcome).await?;
    // Last: the swap's lock on the integration's daily tables is held until the commit right
    // after it.
    swap_partition(tx, &statement, new_version, old_version).await?;
    Ok(Replaced::Statement)
}

/// A statement's rows beside its partitions and its rollups: one row per account and a few
/// footer rows, written again whole when it is replaced.
const STATEMENT_ROWS: [&str; 2] = ["account_months", "report_totals"];

/// Deletes a statement's rows in `tables`.
async fn delete_statement_rows(
    tx: &mut Transaction<'_, Postgres>,
    statement: &Statement<'_>,
    tables: &[&str],
) -> Result<(), StoreError> {
    for table in tables {
        let delete = format!(
            "DELETE FROM {table}
             WHERE integration = $1 AND payer_account_id = $2 AND entity = $3 AND billing_period = $4"
        );
        statement.execute(tx, delete).await?;
    }
    Ok(())
}

/// Whether a CUR delivers the statement's month (of its payer, in its integration).
async fn month_from_cur(
    tx: &mut Transaction<'_, Postgres>,
    statement: &Statement<'_>,
) -> Result<bool, StoreError> {
    let cur: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM statements
         WHERE integration = $1 AND payer_account_id = $2 AND billing_period = $3 AND format = 'cur'",
    )
    .bind(statement.integration)
    .bind(statement.payer)
    .bind(statement.period)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(cur.is_some())
}

/// A CUR holds every billing entity's line items: the month's DBR statements of other
/// entities than AWS's leave the views with it (AWS's own is replaced by the CUR's statement),
/// and their reports are recorded superseded.
async fn remove_dbr_entities(
    tx: &mut Transaction<'_, Postgres>,
    statement: &Statement<'_>,
) -> Result<(), StoreError> {
    let versions: Vec<(String, i64)> = sqlx::query_as(
        "DELETE FROM statements
         WHERE integration = $1 AND payer_account_id = $2 AND billing_period = $3 AND entity <> ''
         RETURNING entity, version",
    )
    .bind(statement.integration)
    .bind(statement.payer)
    .bind(statement.period)
    .fetch_all(&mut **tx)
    .await?;
    for (entity, version) in versions {
        let other = Statement {
            entity: &entity,
            ..*statement
        };
        delete_statement_rows(tx, &other, &STATEMENT_ROWS).await?;
        delete_statement_rows(tx, &other, &rollups::TABLES).await?;
        sqlx::query("SELECT drop_daily_partitions($1, $2)")
            .bind(statement.integration)
            .bind(version)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(
        "UPDATE reports SET status = 'superseded'
         WHERE integration = $1 AND payer_account_id = $2 AND billing_period = $3
           AND format = 'dbr' AND status = 'ingested'",
    )
    .bind(statement.integration)
    .bind(statement.payer)
    .bind(statement.period)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How long one try of the swap waits for queries running on the integration's daily tables,
/// and how many tries it makes before the report fails (to be tried again at the next poll).
/// Queries arriving while it waits wait behind it, so this is also the longest a dashboard
/// waits for a swap.
const SWAP_LOCK_TIMEOUT: &str = "2s";
const SWAP_TRIES: u32 = 30;

/// Swaps the new version's partitions in for the old one's, trying again while running
/// queries hold the tables for longer than [`SWAP_LOCK_TIMEOUT`].
async fn swap_partition(
    tx: &mut Transaction<'_, Postgres>,
    statement: &Statement<'_>,
    version: i64,
    old_version: Option<i64>,
) -> Result<(), StoreError> {
    let mut tries = 0;
    loop {
        let mut attempt = tx.begin().await?; // a savepoint: a timed-out try is rolled back alone
        sqlx::query(AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"
        )))
        .execute(&mut *attempt)
        .await?;
        let swapped = sqlx::query("SELECT swap_daily_partitions($1, $2, $3)")
            .bind(statement.integration)
            .bind(version)
            .bind(old_version)
            .execute(&mut *attempt)
            .await;
        match swapped {
            Ok(_) => {
                attempt.commit().await?;
                return Ok(());
            }
            Err(error) if super::sqlstate(&error).as_deref() == Some(LOCK_NOT_AVAILABLE) => {
                attempt.rollback().await?;
                tries += 1;
                if tries == SWAP_TRIES {
                    return Err(StoreError::SwapTimedOut {
                        tries,
                        each: SWAP_LOCK_TIMEOUT,
                    });
                }
                tracing::info!(
                    tries,
                    "dashboard queries hold daily_costs; trying the swap again"
                );
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(50..250))).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// SQLSTATE of a lock that `lock_timeout` gave up on.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// An integration's statement's key columns, as bound in every statement's query.
#[derive(Clone, Copy)]
struct Statement<'a> {
    integration: &'a str,
    payer: &'a str,
    entity: &'a str,
    period: chrono::NaiveDate,
}

impl<'a> Statement<'a> {
    /// Runs `sql`, a statement of the statement's rows, with its key columns bound as $1 to $4.
    async fn execute(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        sql: String,
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(sql))
            .bind(self.integration)
            .bind(self.payer)
            .bind(self.entity)
            .bind(self.period)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

impl StatementId {
    fn columns<'a>(&'a self, integration: &'a IntegrationName) -> Statement<'a> {
        Statement {
            integration: integration.as_str(),
            payer: self.payer.as_str(),
            entity: self.entity_str(),
            period: self.period.first_day(),
        }
    }
}

/// Bulk-loads the report's usages into the version's partitions with COPY: each kind once, in a
/// first pass over the usages, then each usage with its kind's id (see [`kinds`]). Binary
/// format like every COPY here: PostgreSQL took 8.0-8.3 s to parse a hostile month's 2.45 M
/// (wide) usages as text, 6.5-6.7 s in binary, and no field needs escaping. `FREEZE`: the
/// partitions were created in this transaction, so their rows can be written frozen and
/// all-visible, and the first queries after the swap do not rewrite every page to set hint
/// bits, nor does vacuum ever need to freeze them. With `only`, just those accounts' usages.
async fn copy_usages(
    tx: &mut Transaction<'_, Postgres>,
    version: i64,
    sums: &ReportSums,
    only: Option<&Monitored>,
) -> Result<(), StoreError> {
    let prices = sums.list_prices();
    let statement = format!(
        "COPY usage_kinds_{version} (kind_id, product_name, usage_type, operation,
                                     availability_zone, invoice_id, item_description,
                                     charge_category, region, purchase_option, line_item_type,
                                     pricing_unit, list_unit_price)
         FROM STDIN WITH (FORMAT binary, FREEZE)"
    );
    let mut copy = CopyRows::start(tx, &statement).await?;
    let (mut usages, mut kinds) = (sums.usages(), KindIds::default());
    while let Some(usage) = usages.next() {
        let usage = usage?;
        if only.is_some_and(|only| !only.contains(usage.account)) {
            continue;
        }
        let usage = &usage.usage;
        let kind = kinds.id_of(usage);
        if !kind.new {
            continue;
        }
        copy.binary_row(13);
        copy.binary_field(&stored_id(kind.id))?;
        for field in [
            usage.product,
            usage.usage_type,
            usage.operation,
            usage.availability_zone,
            usage.invoice_id,
            usage.item_description,
            usage.charge_category.as_str(),
            &usage.region(),
            usage.purchase_option().as_str(),
            usage.line_item_type,
            &usage.pricing_unit(),
        ] {
            copy.binary_field(&field)?;
        }
        copy.binary_field(&prices.of(usage))?;
        copy.row_written().await?;
    }
    copy.finish().await?;

    let statement = format!(
        "COPY daily_usages_{version} (usage_id, kind_id, resource_id, tags)
         FROM STDIN WITH (FORMAT binary, FREEZE)"
    );
    let mut copy = CopyRows::start(tx, &statement).await?;
    let (mut usages, mut kinds, mut tags) = (sums.usages(), KindIds::default(), Vec::new());
    while let Some(usage) = usages.next() {
        let usage = usage?;
        if only.is_some_and(|only| !only.contains(usage.account)) {
            continue;
        }
        let (id, usage) = (usage.id, &usage.usage);
        copy.binary_row(4);
        copy.binary_field(&stored_id(id))?;
        copy.binary_field(&stored_id(kinds.id_of(usage).id))?;
        copy.binary_field(&usage.resource_id)?;
        write_tags_json(&mut tags, &usage.tags);
        copy.jsonb_field(&tags);
        copy.row_written().await?;
    }
    copy.finish().await
}

/// A usage's or a kind's id as stored (`bigint`): ids count usages, far below 2^63.
fn stored_id(id: u64) -> i64 {
    i64::try_from(id).expect("usage and kind ids are below 2^63")
}

/// Bulk-loads the daily sums into the version's partition with COPY, in binary format: the
/// rows are ids, dates and numbers, which PostgreSQL takes a third faster in binary than
/// parsed from text (0.6 s instead of 0.85 s for 1.2 M rows here), and which are cheaper to
/// encode than to print. Row-by-row inserts are what made earlier ingesters take hours.
///
/// With `only`, just those accounts' rows.
async fn copy_daily_costs(
    tx: &mut Transaction<'_, Postgres>,
    version: i64,
    sums: &ReportSums,
    only: Option<&Monitored>,
) -> Result<(), StoreError> {
    let statement = format!(
        "COPY daily_costs_{version} (linked_account_id, usage_date, usage_id, unblended_cost,
                                     blended_cost, usage_quantity, line_items, amortized_cost)
         FROM STDIN WITH (FORMAT binary, FREEZE)"
    );
    let mut copy = CopyRows::start(tx, &statement).await?;
    for cost in sums.daily_costs()? {
        let cost = cost?;
        if only.is_some_and(|only| !only.contains(cost.account)) {
            continue;
        }
        let sums = &cost.sums;
        copy.binary_row(8);
        copy.binary_field(&cost.account.as_str())?;
        copy.binary_field(&cost.day)?;
        copy.binary_field(&stored_id(cost.usage))?;
        copy.binary_field(&sums.unblended_cost)?;
        copy.binary_field(&sums.blended_cost)?;
        copy.binary_field(&sums.usage_quantity)?;
        copy.binary_field(&bigint(sums.line_items))?;
        copy.binary_field(&sums.amortized_cost)?;
        copy.row_written().await?;
    }
    copy.finish().await
}

/// COPY data in binary format, written row by row into a buffer, sent in pieces of about
/// [`COPY_CHUNK`] bytes.
struct CopyRows<'c> {
    copy: PgCopyIn<&'c mut PgConnection>,
    /// sqlx's buffer for query parameters, so that its encoders write binary fields.
    buffer: PgArgumentBuffer,
}

impl<'c> CopyRows<'c> {
    async fn start(
        tx: &'c mut Transaction<'_, Postgres>,
        statement: &str,
    ) -> Result<CopyRows<'c>, StoreError> {
        let mut buffer = PgArgumentBuffer::default();
        buffer.reserve(COPY_CHUNK + 4096);
        // The signature, no flags, no header extension.
        buffer.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buffer.extend_from_slice(&0i32.to_be_bytes());
        buffer.extend_from_slice(&0i32.to_be_bytes());
        Ok(CopyRows {
            copy: tx.copy_in_raw(statement).await?,
            buffer,
        })
    }

    /// A row of `fields` fields begins.
    fn binary_row(&mut self, fields: i16) {
        self.buffer.extend_from_slice(&fields.to_be_bytes());
    }

    /// One field, its length, then its value as sqlx sends it for a parameter.
    fn binary_field<'q, T: Encode<'q, Postgres>>(&mut self, value: &T) -> Result<(), StoreError> {
        let at = self.buffer.len();
        self.buffer.extend_from_slice(&[0; 4]);
        let length = match value
            .encode_by_ref(&mut self.buffer)
            .map_err(sqlx::Error::Encode)?
        {
            IsNull::Yes => -1,
            IsNull::No => i32::try_from(self.buffer.len() - at - 4).expect("a field below 2 GiB"),
        };
        self.buffer[at..at + 4].copy_from_slice(&length.to_be_bytes());
        Ok(())
    }

    /// A `jsonb` field: its length, then jsonb's binary form, a version byte (1) and the
    /// JSON text.
    fn jsonb_field(&mut self, json: &[u8]) {
        let length = i32::try_from(json.len() + 1).expect("a field below 2 GiB");
        self.buffer.extend_from_slice(&length.to_be_bytes());
        self.buffer.push(1);
        self.buffer.extend_from_slice(json);
    }

    /// The costs, the usage quantity (when `quantity`), the line items and
    /// the amortized cost.
    fn sums_fields(&mut self, sums: &Sums, quantity: bool) -> Result<(), StoreError> {
        self.binary_field(&sums.unblended_cost)?;
        self.binary_field(&sums.blended_cost)?;
        if quantity {
            self.binary_field(&sums.usage_quantity)?;
        }
        self.binary_field(&bigint(sums.line_items))?;
        self.binary_field(&sums.amortized_cost)
    }

    /// Sends the buffer once it holds a piece's worth of rows.
    async fn row_written(&mut self) -> Result<(), StoreError> {
        if self.buffer.len() >= COPY_CHUNK {
            self.copy.send(self.buffer.as_slice()).await?;
            self.buffer.clear();
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<(), StoreError> {
        // The trailer.
        self.buffer.extend_from_slice(&(-1i16).to_be_bytes());
        self.copy.send(self.buffer.as_slice()).await?;
        self.copy.finish().await?;
        Ok(())
    }
}

/// `{"user:Name":"web",…}`, written into `json` without a map built per row. Tag names are
/// unique: the header names each column once.
fn write_tags_json(json: &mut Vec<u8>, tags: &[(&str, &str)]) {
    json.clear();
    json.push(b'{');
    for (i, (name, value)) in tags.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        serde_json::to_writer(&mut *json, name).expect("writing to a Vec");
        json.push(b':');
        serde_json::to_writer(&mut *json, value).expect("writing to a Vec");
    }
    json.push(b'}');
}

async fn insert_account_months(
    tx: &mut Transaction<'_, Postgres>,
    statement: &Statement<'_>,
    sums: &ReportSums,
    only: Option<&Monitored>,
) -> Result<(), StoreError> {
    let accounts = sums.accounts_of(only);
    let ids: Vec<&str> = accounts.iter().map(|a| a.account.as_str()).collect();
    let column =
        |f: fn(&AccountMonth) -> Decimal| -> Vec<Decimal> { accounts.iter().map(f).collect() };
    let totals = |f: fn(&Amounts) -> Decimal| -> Vec<Option<Decimal>> {
        accounts
            .iter()
            .map(|a| a.account_total.as_ref().map(f))
            .collect()
    };
    let line_items: Vec<i64> = accounts.iter().map(|a| bigint(a.sums.line_items)).collect();
    let category = |category: ChargeCategory| -> Vec<Option<Decimal>> {
        accounts
            .iter()
            .map(|a| a.by_category.map(|costs| costs[category.index()]))
            .collect()
    };
    let mut query = sqlx::query(
        "INSERT INTO account_months (integration, payer_account_id, entity, billing_period,
                                     linked_account_id, unblended_cost, blended_cost,
                                     usage_quantity, line_items, account_total_unblended,
                                     account_total_blended, usage_cost, fee_cost, tax_cost,
                                     credit_cost, refund_cost, ri_fee_cost, support_cost,
                                     marketplace_cost, amortized_cost, invoice_status)
         SELECT $1, $2, $3, $4, *, $21 FROM UNNEST($5::text[], $6::numeric[], $7::numeric[],
                                              $8::numeric[], $9::bigint[], $10::numeric[],
                                              $11::numeric[], $12::numeric[], $13::numeric[],
                                              $14::numeric[], $15::numeric[], $16::numeric[],
                                              $17::numeric[], $18::numeric[], $19::numeric[],
                                              $20::numeric[])",
    )
    .bind(statement.integration)
    .bind(statement.payer)
    .bind(statement.entity)
    .bind(statement.period)
    .bind(&ids)
    .bind(column(|a| a.sums.unblended_cost))
    .bind(column(|a| a.sums.blended_cost))
    .bind(column(|a| a.sums.usage_quantity))
    .bind(&line_items)
    .bind(totals(|t| t.unblended_cost))
    .bind(totals(|t| t.blended_cost));
    // In the order of the columns above, which is ChargeCategory::ALL's.
    for each in ChargeCategory::ALL {
        query = query.bind(category(each));
    }
    query = query
        .bind(column(|a| a.sums.amortized_cost))
        .bind(sums.invoice_status().as_str());
    query.execute(&mut **tx).await?;
    Ok(())
}

async fn insert_report_totals(
    tx: &mut Transaction<'_, Postgres>,
    statement: &Statement<'_>,
    sums: &ReportSums,
) -> Result<(), StoreError> {
    let rows = sums.footer().payer_rows();
    let record_types: Vec<&str> = rows.iter().map(|r| r.record_type).collect();
    let invoices: Vec<&str> = rows.iter().map(|r| r.invoice_id).collect();
    let unblended: Vec<Decimal> = rows.iter().map(|r| r.amounts.unblended_cost).collect();
    let blended: Vec<Decimal> = rows.iter().map(|r| r.amounts.blended_cost).collect();
    sqlx::query(
        "INSERT INTO report_totals (integration, payer_account_id, entity, billing_period,
                                    record_type, invoice_id, unblended_cost, blended_cost)
         SELECT $1, $2, $3, $4, * FROM UNNEST($5::text[], $6::text[], $7::numeric[],
                                              $8::numeric[])",
    )
    .bind(statement.integration)
    .bind(statement.payer)
    .bind(statement.entity)
    .bind(statement.period)
    .bind(&record_types)
    .bind(&invoices)
    .bind(&unblended)
    .bind(&blended)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_a_json_object() {
        let mut json = Vec::new();
        write_tags_json(
            &mut json,
            &[("user:Name", "web \"front\""), ("aws:createdBy", "é\\x")],
        );
        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"user:Name": "web \"front\"", "aws:createdBy": "é\\x"})
        );
        write_tags_json(&mut json, &[]);
        assert_eq!(json, b"{}");
    }
}
