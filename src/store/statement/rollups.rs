//! A statement's rollups: per account, day and service; and per account and month the resources
//! and tag values that cost most, with one row for the others. They are plain tables, not
//! partitions per version like the full grain: a dashboard's query over every integration would
//! then plan and lock every statement's partitions (README, "Rollups").
//!
//! So that rewriting a month (AWS rewrites the current one several times a day) does not leave
//! a dead row for every row of the month, the new rows of a statement already stored are
//! written out of sight first, into temporary tables, and then only the rows that differ are
//! deleted and inserted: a row whose columns are all the same stays as it is.

use std::sync::Arc;

use sqlx::{AssertSqlSafe, Postgres, Transaction};
use tokio::sync::mpsc;

use super::{CopyRows, Statement, bigint};
use crate::domain::Monitored;
use crate::report::aggregate::{DailyCostsError, GroupBy, GroupRow, Groups, ReportSums};
use crate::store::StoreError;

/// One rollup table, beyond the statement's columns: the columns that name a row, then the sums.
struct Rollup {
    table: &'static str,
    /// The account first.
    keys: &'static [&'static str],
    sums: &'static [&'static str],
    /// For the ranked rollups (the groups that cost most by name, one row for the others), the
    /// column saying how many groups a row stands for.
    count: Option<&'static str>,
}

/// The sums of the rollups that have a usage quantity, in their columns' order.
const SUMS: &[&str] = &[
    "unblended_cost",
    "blended_cost",
    "usage_quantity",
    "line_items",
    "amortized_cost",
];

const SERVICE_DAYS: Rollup = Rollup {
    table: "service_daily_costs",
    keys: &[
        "linked_account_id",
        "usage_date",
        "product_name",
        "region",
        "charge_category",
        "purchase_option",
    ],
    sums: SUMS,
    count: None,
};

const RESOURCES: Rollup = Rollup {
    table: "resource_costs",
    keys: &["linked_account_id", "resource_id", "product_name"],
    sums: SUMS,
    count: Some("resources"),
};

const TAGS: Rollup = Rollup {
    table: "tag_costs",
    keys: &["linked_account_id", "tag_key", "tag_value"],
    sums: &[
        "unblended_cost",
        "blended_cost",
        "line_items",
        "amortized_cost",
    ],
    count: Some("tag_values"),
};

/// The rollup tables, for whoever deletes a statement's rows.
pub(super) const TABLES: [&str; 3] = [SERVICE_DAYS.table, RESOURCES.table, TAGS.table];

impl Rollup {
    /// The temporary table the new rows are written to: the columns it takes from the report,
    /// emptied at every commit. Made once per connection.
    fn staging(&self) -> String {
        format!(
            "CREATE TEMPORARY TABLE IF NOT EXISTS new_{table} ON COMMIT DELETE ROWS AS
             SELECT {columns} FROM {table} WITH NO DATA;",
            table = self.table,
            columns = self.staged_columns(),
        )
    }

    /// The columns that name a row, then the values compared.
    fn columns(&self) -> Vec<&'static str> {
        [self.keys, self.sums, self.count.as_slice()].concat()
    }

    fn staged_columns(&self) -> String {
        self.columns().join(", ")
    }

    /// COPY into the staging table, or (`direct`) straight into the table, the statement's
    /// columns first.
    fn copy(&self, direct: bool) -> String {
        let (table, columns) = (self.table, self.staged_columns());
        if direct {
            format!(
                "COPY {table} (integration, payer_account_id, entity, billing_period, {columns})
                 FROM STDIN WITH (FORMAT binary)"
            )
        } else {
            format!("COPY pg_temp.new_{table} ({columns}) FROM STDIN WITH (FORMAT binary)")
        }
    }

    /// Makes the staged rows the statement's: deletes the stored rows that are not among them
    /// and inserts those that are not stored. Both sides are read as they were before the statement
    /// began (one snapshot for the whole `WITH`), so a changed row is deleted and inserted, and
    /// an unchanged one neither. Rows compare by their binary images (`record_image_eq`): the
    /// same numbers written with another scale are another row, two NULLs the same.
    fn replace(&self) -> String {
        let table = self.table;
        let values = &self.columns()[self.keys.len()..];
        let columns = self.staged_columns();
        let same_keys: Vec<String> = self.keys.iter().map(|k| format!("n.{k} = o.{k}")).collect();
        let same_keys = same_keys.join(" AND ");
        let image = |alias: &str| {
            let fields: Vec<String> = values.iter().map(|v| format!("{alias}.{v}")).collect();
            format!("ROW({})", fields.join(", "))
        };
        let same = format!(
            "{same_keys} AND record_image_eq({}, {})",
            image("n"),
            image("o")
        );
        let this_statement =
            "(o.integration, o.payer_account_id, o.entity, o.billing_period) = ($1, $2, $3, $4)";
        format!(
            "WITH gone AS (DELETE FROM {table} o
                           WHERE {this_statement}
                             AND NOT EXISTS (SELECT FROM pg_temp.new_{table} n WHERE {same}))
             INSERT INTO {table} (integration, payer_account_id, entity, billing_period, {columns})
             SELECT $1, $2, $3, $4, {columns} FROM pg_temp.new_{table} n
             WHERE NOT EXISTS (SELECT FROM {table} o WHERE {this_statement} AND {same})"
        )
    }
}

/// Rows of a ranked rollup on their way from the thread that ranks them.
type RankedRows = mpsc::Receiver<Result<GroupRow, DailyCostsError>>;

/// The ranked rollups' rows (resources, then tag values), ranked on a thread of their own
/// while the statement's daily sums and usages are copied. Those copies keep PostgreSQL busy
/// on one core and this process on part of the other; ranking after them took a hostile
/// month (2.4 M resources) 5 s more on one core.
pub(super) struct Ranked {
    resources: RankedRows,
    tags: RankedRows,
    /// The thread, to pass on its panic (its rows would end early, as if there were no more).
    ranking: tokio::task::JoinHandle<()>,
}

/// Ranked rows waiting for the copy into their rollup: the ranking holds them, no more.
const RANKED_AHEAD: usize = 1024;

impl Ranked {
    /// Starts ranking the report's groups (of `only` these accounts, all when `None`). Once
    /// the `Ranked` is dropped the thread stops at its next row; the sums the ranking works
    /// on are kept until then.
    pub(super) fn start(sums: Arc<ReportSums>, only: Option<Monitored>) -> Ranked {
        let (resource_rows, resources) = mpsc::channel(RANKED_AHEAD);
        let (tag_rows, tags) = mpsc::channel(RANKED_AHEAD);
        let ranking = tokio::task::spawn_blocking(move || {
            let only = only.as_ref();
            // Both summed before either is handed out: the resources' rows wait for the
            // copies before them, and the tags' ranking need not.
            let resources = sums.groups(GroupBy::Resource, only);
            let tags = sums.groups(GroupBy::Tag, only);
            if send_all(resources, resource_rows) {
                send_all(tags, tag_rows);
            }
        });
        Ranked {
            resources,
            tags,
            ranking,
        }
    }
}

/// Sends the groups' rows (or the error that ends them) until one is refused (`false`: the
/// receiver is gone), then ends them: the sender goes.
fn send_all(
    groups: Result<Groups, DailyCostsError>,
    rows: mpsc::Sender<Result<GroupRow, DailyCostsError>>,
) -> bool {
    match groups {
        Ok(groups) => groups
            .into_iter()
            .all(|row| rows.blocking_send(row).is_ok()),
        Err(error) => rows.blocking_send(Err(error)).is_ok(),
    }
}

/// Replaces the statement's rollups with the report's (with `only`, just those accounts'; the
/// ranked ones as `ranked` has them). A statement seen for the first time (not `stored`) has no
/// rows to compare with: its rows are copied straight into the tables, and the staging tables
/// are left alone (a transaction that does not touch them does not empty them at its commit
/// either).
pub(super) async fn replace(
    tx: &mut Transaction<'_, Postgres>,
    statement: &Statement<'_>,
    sums: &ReportSums,
    only: Option<&Monitored>,
    ranked: Ranked,
    stored: bool,
) -> Result<(), StoreError> {
    if stored {
        let staging: String = [SERVICE_DAYS, RESOURCES, TAGS]
            .iter()
            .map(Rollup::staging)
            .collect();
        // Quiet: every transaction after a connection's first says the tables exist.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SET LOCAL client_min_messages = warning; {staging}"
        )))
        .execute(&mut **tx)
        .await?;
    }
    let direct = (!stored).then_some(statement);
    let wanted = |account| only.is_none_or(|only| only.contains(account));

    let mut rows = CopyRows::start(tx, &SERVICE_DAYS.copy(direct.is_some())).await?;
    for day in sums.service_days()? {
        let day = day?;
        if !wanted(day.account) {
            continue;
        }
        let service = sums.service(day.usage);
        begin_row(&mut rows, 11, direct)?;
        rows.binary_field(&day.account.as_str())?;
        rows.binary_field(&day.day.unwrap_or(statement.period))?;
        rows.binary_field(&service.product.as_str())?;
        rows.binary_field(&service.region.as_str())?;
        rows.binary_field(&service.charge_category.as_str())?;
        rows.binary_field(&service.purchase_option.as_str())?;
        rows.sums_fields(&day.sums, true)?;
        rows.row_written().await?;
    }
    rows.finish().await?;

    let Ranked {
        resources,
        tags,
        ranking,
    } = ranked;
    for (rollup, mut ranked) in [(&RESOURCES, resources), (&TAGS, tags)] {
        let quantity = rollup.sums.contains(&"usage_quantity");
        let mut rows = CopyRows::start(tx, &rollup.copy(direct.is_some())).await?;
        while let Some(group) = ranked.recv().await {
            let group = group?;
            let [first, second] = &group.key;
            begin_row(&mut rows, if quantity { 9 } else { 8 }, direct)?;
            rows.binary_field(&group.account.as_str())?;
            rows.binary_field(&first.as_str())?;
            rows.binary_field(&second.as_str())?;
            rows.sums_fields(&group.sums, quantity)?;
            rows.binary_field(&bigint(group.groups))?;
            rows.row_written().await?;
        }
        rows.finish().await?;
    }
    if let Err(error) = ranking.await
        && error.is_panic()
    {
        std::panic::resume_unwind(error.into_panic());
    }

    if stored {
        for rollup in [SERVICE_DAYS, RESOURCES, TAGS] {
            statement.execute(tx, rollup.replace()).await?;
        }
    }
    Ok(())
}

/// A COPY row of `fields` fields beyond the statement's, which come first when the row goes
/// straight into its table (`direct`).
fn begin_row(
    rows: &mut CopyRows<'_>,
    fields: i16,
    direct: Option<&Statement<'_>>,
) -> Result<(), StoreError> {
    let Some(statement) = direct else {
        rows.binary_row(fields);
        return Ok(());
    };
    rows.binary_row(fields + 4);
    rows.binary_field(&statement.integration)?;
    rows.binary_field(&statement.payer)?;
    rows.binary_field(&statement.entity)?;
    rows.binary_field(&statement.period)
}
