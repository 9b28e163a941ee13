//! Replacing a statement (payer, billing entity, month) with a report version's costs: one
//! transaction, so readers see the old month or the new one, never a mix or an empty month.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{Postgres, Transaction};

use super::ledger::{Outcome, write_entry};
use super::{Store, StoreError, bigint, lock_name};
use crate::domain::StatementId;
use crate::report::aggregate::{AccountMonth, Amounts, DailyCost, ReportSums};
use crate::report::key::ListedReport;
use crate::report::rows::RecordType;

/// COPY data is sent in pieces of about this size.
const COPY_CHUNK: usize = 1 << 20;

/// One version of one report object being ingested: where it was listed, and what it is.
pub struct ReportVersion<'a> {
    /// The source's location: `s3://bucket/prefix` or `dir:PATH`.
    pub location: &'a str,
    pub listed: &'a ListedReport,
    pub started_at: DateTime<Utc>,
}

impl Store {
    /// Makes `sums` what the views show for the report's statement, and records the version as
    /// ingested (any other object that fed the statement becomes `superseded`). All or nothing.
    pub async fn replace_statement(
        &self,
        report: &ReportVersion<'_>,
        sums: &ReportSums,
        monitored_fingerprint: &str,
    ) -> Result<(), StoreError> {
        let id = report.listed.report.statement();
        let statement = id.columns();
        let object = &report.listed.object;
        let invoice_status = sums.invoice_status();
        let mut tx = self.pool.begin().await?;
        // Writers of one statement queue here rather than interleave, claimed or not.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(lock_name("write", &id))
            .execute(&mut *tx)
            .await?;
        // Cascades to the statement's daily costs, account months and footer totals.
        sqlx::query("DELETE FROM statements WHERE payer_account_id = $1 AND entity = $2 AND billing_period = $3")
            .bind(statement.payer)
            .bind(statement.entity)
            .bind(statement.period)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO statements (payer_account_id, entity, billing_period, location, key, etag, invoice_status, ingested_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now())",
        )
        .bind(statement.payer)
        .bind(statement.entity)
        .bind(statement.period)
        .bind(report.location)
        .bind(&object.key)
        .bind(&object.etag)
        .bind(invoice_status.as_str())
        .execute(&mut *tx)
        .await?;
        copy_daily_costs(&mut tx, &statement, sums.daily_costs()).await?;
        insert_account_months(&mut tx, &statement, sums).await?;
        insert_report_totals(&mut tx, &statement, sums).await?;
        sqlx::query(
            "UPDATE reports SET status = 'superseded'
             WHERE payer_account_id = $1 AND entity = $2 AND billing_period = $3 AND status = 'ingested'
               AND (location, key) <> ($4, $5)",
        )
        .bind(statement.payer)
        .bind(statement.entity)
        .bind(statement.period)
        .bind(report.location)
        .bind(&object.key)
        .execute(&mut *tx)
        .await?;
        let outcome = Outcome::Ingested {
            rows: sums.rows(),
            invoice_status,
            monitored_fingerprint,
        };
        write_entry(&mut *tx, report, &outcome).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A statement's key columns, as bound in every statement's query.
struct Statement<'a> {
    payer: &'a str,
    entity: &'a str,
    period: chrono::NaiveDate,
}

impl StatementId {
    fn columns(&self) -> Statement<'_> {
        Statement {
            payer: self.payer.as_str(),
            entity: self.entity_str(),
            period: self.period.first_day(),
        }
    }
}

/// Bulk-loads the daily sums with COPY (text format): row-by-row inserts are what made earlier
/// ingesters take hours.
async fn copy_daily_costs(
    tx: &mut Transaction<'_, Postgres>,
    statement: &Statement<'_>,
    costs: impl Iterator<Item = DailyCost<'_>>,
) -> Result<(), StoreError> {
    let mut copy = tx
        .copy_in_raw(
            "COPY daily_costs (payer_account_id, entity, billing_period, linked_account_id, usage_date,
                               product_name, usage_type, operation, availability_zone, resource_id, tags,
                               unblended_cost, blended_cost, usage_quantity, line_items) FROM STDIN",
        )
        .await?;
    let mut buffer = String::with_capacity(COPY_CHUNK + 4096);
    let mut tags = Vec::new();
    for cost in costs {
        let usage = &cost.usage;
        write_tags_json(&mut tags, &usage.tags);
        let tags = std::str::from_utf8(&tags).expect("JSON is UTF-8");
        let day = cost.day.map(|d| d.to_string());
        let period = statement.period.to_string();
        let fields = [
            Some(statement.payer),
            Some(statement.entity),
            Some(period.as_str()),
            Some(cost.account.as_str()),
            day.as_deref(),
            Some(usage.product),
            Some(usage.usage_type),
            Some(usage.operation),
            Some(usage.availability_zone),
            Some(usage.resource_id),
            Some(tags),
        ];
        for field in fields {
            match field {
                Some(text) => escape_copy_text(&mut buffer, text),
                None => buffer.push_str("\\N"),
            }
            buffer.push('\t');
        }
        let sums = &cost.sums;
        write_decimal(&mut buffer, sums.unblended_cost);
        write_decimal(&mut buffer, sums.blended_cost);
        write_decimal(&mut buffer, sums.usage_quantity);
        writeln!(buffer, "{}", sums.line_items).expect("writing to a String");
        if buffer.len() >= COPY_CHUNK {
            copy.send(buffer.as_bytes()).await?;
            buffer.clear();
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer.as_bytes()).await?;
    }
    copy.finish().await?;
    Ok(())
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

fn write_decimal(buffer: &mut String, value: Decimal) {
    write!(buffer, "{value}\t").expect("writing to a String");
}

/// COPY's text format: backslash, tab, newline and carriage return are escaped.
fn escape_copy_text(buffer: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => buffer.push_str("\\\\"),
            '\t' => buffer.push_str("\\t"),
            '\n' => buffer.push_str("\\n"),
            '\r' => buffer.push_str("\\r"),
            c => buffer.push(c),
        }
    }
}

async fn insert_account_months(
    tx: &mut Transaction<'_, Postgres>,
    statement: &Statement<'_>,
    sums: &ReportSums,
) -> Result<(), StoreError> {
    let accounts = sums.accounts();
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
    sqlx::query(
        "INSERT INTO account_months (payer_account_id, entity, billing_period, linked_account_id,
                                     unblended_cost, blended_cost, usage_quantity, line_items,
                                     account_total_unblended, account_total_blended)
         SELECT $1, $2, $3, * FROM UNNEST($4::text[], $5::numeric[], $6::numeric[], $7::numeric[],
                                          $8::bigint[], $9::numeric[], $10::numeric[])",
    )
    .bind(statement.payer)
    .bind(statement.entity)
    .bind(statement.period)
    .bind(&ids)
    .bind(column(|a| a.sums.unblended_cost))
    .bind(column(|a| a.sums.blended_cost))
    .bind(column(|a| a.sums.usage_quantity))
    .bind(&line_items)
    .bind(totals(|t| t.unblended_cost))
    .bind(totals(|t| t.blended_cost))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_report_totals(
    tx: &mut Transaction<'_, Postgres>,
    statement: &Statement<'_>,
    sums: &ReportSums,
) -> Result<(), StoreError> {
    let footer = sums.footer();
    let mut rows: Vec<(&str, &str, &Amounts)> = Vec::new();
    if let Some(rounding) = &footer.rounding {
        rows.push((RecordType::Rounding.as_str(), "", rounding));
    }
    for (invoice, total) in &footer.invoice_totals {
        rows.push((RecordType::InvoiceTotal.as_str(), invoice, total));
    }
    if let Some(total) = &footer.statement_total {
        rows.push((RecordType::StatementTotal.as_str(), "", total));
    }
    let record_types: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let invoices: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let unblended: Vec<Decimal> = rows.iter().map(|r| r.2.unblended_cost).collect();
    let blended: Vec<Decimal> = rows.iter().map(|r| r.2.blended_cost).collect();
    sqlx::query(
        "INSERT INTO report_totals (payer_account_id, entity, billing_period, record_type, invoice_id,
                                    unblended_cost, blended_cost)
         SELECT $1, $2, $3, * FROM UNNEST($4::text[], $5::text[], $6::numeric[], $7::numeric[])",
    )
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

    #[test]
    fn copy_text_is_escaped() {
        let mut buffer = String::new();
        escape_copy_text(&mut buffer, "a\tb\\c\nd\re é");
        assert_eq!(buffer, "a\\tb\\\\c\\nd\\re é");
    }
}
