//! The rollups behind the dashboards' views: per account and month the resources and tag values
//! that cost most, by name, and one row for the others, exact against sums computed here; and a
//! rewritten month rewrites only the rollup rows that changed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::Path;

use rust_decimal::Decimal;
use sqlx::{PgPool, Row};

use crate::common::*;

const PERIOD: &str = "2017-03";
const NAME: &str =
    "123456789012-aws-billing-detailed-line-items-with-resources-and-tags-2017-03.csv";
const KEPT_BY_NAME: usize = 1000;

/// `once` from `dir` into `db`, every account monitored.
fn once(db: &TestDatabase, dir: &Path) -> String {
    succeeds(dbr_ingest_with(
        &["once"],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("DBR_SOURCE", format!("dir:{}", dir.display())),
            ("DBR_MONITORED_ACCOUNTS", "*".to_owned()),
        ],
    ))
}

/// Per account, the groups by name ranked as the rollups rank them (cost, then name, both
/// descending and ascending), the first [`KEPT_BY_NAME`] by name, the others summed.
type Ranked = BTreeMap<String, (BTreeMap<String, Decimal>, Option<(Decimal, i64)>)>;

fn rank(groups: &BTreeMap<(String, String), Decimal>) -> Ranked {
    let mut by_account: BTreeMap<String, Vec<(&String, Decimal)>> = BTreeMap::new();
    for ((account, name), cost) in groups {
        by_account
            .entry(account.clone())
            .or_default()
            .push((name, *cost));
    }
    by_account
        .into_iter()
        .map(|(account, mut groups)| {
            groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let others = groups.split_off(KEPT_BY_NAME.min(groups.len()));
            let kept = groups.into_iter().map(|(n, c)| (n.clone(), c)).collect();
            let others = (!others.is_empty())
                .then(|| (others.iter().map(|(_, c)| c).sum(), others.len() as i64));
            (account, (kept, others))
        })
        .collect()
}

/// What a view holds, as [`rank`] shapes it: `name` is NULL on the others' row.
async fn stored(pool: &PgPool, sql: &str) -> Ranked {
    let mut ranked = Ranked::new();
    for row in sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap()
    {
        let account: String = row.get(0);
        let name: Option<String> = row.get(1);
        let (cost, count): (Decimal, i64) = (row.get(2), row.get(3));
        let entry = ranked.entry(account).or_default();
        match name {
            Some(name) => {
                assert_eq!(count, 1, "{name}");
                assert!(entry.0.insert(name, cost).is_none());
            }
            None => assert!(entry.1.replace((cost, count)).is_none()),
        }
    }
    ranked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollups_keep_the_costliest_by_name_and_sum_the_others_exactly() {
    // 70,000 resources, more than a report sums in memory at once (so some come in partial
    // rows), each with two usages on two days; costs with many ties, so the ranking's second
    // key decides at the cut. Tag values: 1,500 per account.
    const RESOURCES: u64 = 70_000;
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join(NAME);
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&csv_path).unwrap());
    writeln!(csv, "\"InvoiceID\",\"PayerAccountId\",\"LinkedAccountId\",\"RecordType\",\"RecordId\",\"ProductName\",\"RateId\",\"SubscriptionId\",\"PricingPlanId\",\"UsageType\",\"Operation\",\"AvailabilityZone\",\"ReservedInstance\",\"ItemDescription\",\"UsageStartDate\",\"UsageEndDate\",\"UsageQuantity\",\"BlendedRate\",\"BlendedCost\",\"UnBlendedRate\",\"UnBlendedCost\",\"ResourceId\",\"user:Name\"").unwrap();
    let mut resources: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    let mut tags: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for n in 0..RESOURCES {
        let account = if n % 10 == 0 {
            "111111111111"
        } else {
            "222222222222"
        };
        let product = if n % 3 == 0 {
            "Amazon Simple Storage Service"
        } else {
            "Amazon Elastic Compute Cloud"
        };
        let resource = format!("i-{n:06}");
        let tag = format!("app-{:04}", n % 1500);
        let costs = [
            Decimal::new(((n * 7919) % 5000) as i64, 2),
            Decimal::new(((n * 104_729) % 300) as i64, 4),
        ];
        for (day, (usage_type, cost)) in ["BoxUsage", "EBS:VolumeUsage"]
            .iter()
            .zip(costs)
            .enumerate()
        {
            let day = day + 1;
            writeln!(csv, "\"Estimated\",\"123456789012\",\"{account}\",\"LineItem\",\"1\",\"{product}\",\"1\",\"1\",\"1\",\"{usage_type}\",\"Run\",\"us-east-1a\",\"N\",\"usage\",\"2017-03-0{day} 10:00:00\",\"2017-03-0{day} 11:00:00\",\"1\",\"\",\"{cost}\",\"\",\"{cost}\",\"{resource}\",\"{tag}\"").unwrap();
            *resources
                .entry((account.to_owned(), format!("{resource} {product}")))
                .or_default() += cost;
            *tags.entry((account.to_owned(), tag.clone())).or_default() += cost;
        }
    }
    csv.into_inner().unwrap().sync_all().unwrap();
    zip_with("info-zip", &csv_path);
    std::fs::remove_file(&csv_path).unwrap();
    let db = TestDatabase::new();
    succeeds(dbr_ingest_with(
        &["migrate"],
        &[("DATABASE_URL", db.url.clone())],
    ));
    let output = once(&db, dir.path());
    assert!(output.contains("1 ingested, 0 failed"), "{output}");
    let pool = PgPool::connect(&db.url).await.unwrap();

    let expected = rank(&resources);
    assert!(expected.values().all(|(_, others)| others.is_some()));
    let actual = stored(
        &pool,
        "SELECT linked_account_id, resource_id || ' ' || product_name, unblended_cost, resources
         FROM top_resources",
    )
    .await;
    assert_eq!(actual, expected);
    let expected = rank(&tags);
    let actual = stored(
        &pool,
        "SELECT linked_account_id, tag_value, unblended_cost, tag_values FROM cost_by_tag
         WHERE tag_key = 'user:Name'",
    )
    .await;
    assert_eq!(actual, expected);
    // A rollup stays small: what the others' row stands for is not stored row by row.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM resource_costs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2 * (KEPT_BY_NAME as i64 + 1));
    pool.close().await;
    db.drop_database().await;
}

/// Every row of a rollup table as text, with the transaction that wrote it.
async fn rows_and_writers(pool: &PgPool, table: &str) -> BTreeMap<String, String> {
    let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT t::text, xmin::text FROM {table} t"
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    let count = rows.len();
    let rows: BTreeMap<String, String> = rows.into_iter().collect();
    assert_eq!(rows.len(), count, "{table} has two equal rows");
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_a_month_rewrites_only_the_rollup_rows_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rows: &str| {
        let (csv, expected) = generate(
            dir.path(),
            NAME,
            &[
                "--period",
                PERIOD,
                "--rows",
                rows,
                "--resources",
                "40",
                "--seed",
                "3",
            ],
        );
        zip_with("info-zip", &csv);
        std::fs::remove_file(&csv).unwrap();
        expected
    };
    write("400");
    let db = TestDatabase::new();
    succeeds(dbr_ingest_with(
        &["migrate"],
        &[("DATABASE_URL", db.url.clone())],
    ));
    assert!(once(&db, dir.path()).contains("1 ingested"));
    let pool = PgPool::connect(&db.url).await.unwrap();
    let tables = ["service_daily_costs", "resource_costs", "tag_costs"];
    let mut before = Vec::new();
    for table in tables {
        before.push(rows_and_writers(&pool, table).await);
    }

    // The same line items and 30 more (the generator draws them in the same order): AWS's
    // next version of a month.
    let expected = write("430");
    let zip = dir.path().join(format!("{NAME}.zip"));
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .append(true)
        .open(&zip)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert!(once(&db, dir.path()).contains("1 ingested"));

    for (table, before) in tables.into_iter().zip(before) {
        let after = rows_and_writers(&pool, table).await;
        let old_writers: BTreeSet<&String> = before.values().collect();
        let (mut kept, mut new_writers) = (0, BTreeSet::new());
        // A row the new version left as it was is the row stored before; every other row was
        // written by the new version's transaction.
        for (row, writer) in &after {
            if before.contains_key(row) {
                assert_eq!(
                    before.get(row),
                    Some(writer),
                    "{table}: {row} was written again"
                );
                kept += 1;
            } else {
                assert!(!old_writers.contains(writer), "{table}: {row}");
                new_writers.insert(writer);
            }
        }
        assert_eq!(new_writers.len(), 1, "{table}: {new_writers:?}");
        assert!(kept > 0, "{table}: no row kept");
        assert!(kept < after.len(), "{table}: no row changed");
    }

    // And the month is the new version's, to the last digit.
    let totals: Vec<(String, Decimal)> = sqlx::query_as(
        "SELECT linked_account_id, sum(unblended_cost) FROM daily_costs_by_service GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected: BTreeMap<String, Decimal> = expected["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["linked_account_id"].as_str().unwrap().to_owned(),
                decimal(&a["unblended_cost"]).unwrap(),
            )
        })
        .collect();
    assert_eq!(BTreeMap::from_iter(totals), expected);
    pool.close().await;
    db.drop_database().await;
}

/// Rollups stored before migration 15 (every resource and tag value, some in partial rows) are
/// ranked the way the service ranks them now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_ranks_the_rollups_stored_before() {
    let db = TestDatabase::new();
    let pool = db.migrated_before("0015").await;
    let mut resources: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    let mut tags: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    let account = "111111111111".to_owned();
    // 1,200 resources and tag values, each in two partial rows; ties at every cost.
    for n in 0..1200i64 {
        let resource = format!("i-{n:04}");
        for part in [Decimal::new(n % 7, 0), Decimal::new(n % 5, 1)] {
            for sql in [
                "INSERT INTO resource_costs VALUES ('default', '123456789012', '', '2017-03-01',
                     $1, $2, 'EC2', $3, $3, 1, 1, $3)",
                "INSERT INTO tag_costs VALUES ('default', '123456789012', '', '2017-03-01',
                     $1, 'user:Name', $2, $3, $3, 1, $3)",
            ] {
                sqlx::query(sql)
                    .bind(&account)
                    .bind(&resource)
                    .bind(part)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            *resources
                .entry((account.clone(), format!("{resource} EC2")))
                .or_default() += part;
            *tags.entry((account.clone(), resource.clone())).or_default() += part;
        }
    }
    pool.close().await;
    let store = db.store().await; // applies migration 15
    let pool = store.pool();
    let actual = stored(
        pool,
        "SELECT linked_account_id, resource_id || ' ' || product_name, unblended_cost, resources
         FROM top_resources",
    )
    .await;
    assert_eq!(actual, rank(&resources));
    let actual = stored(
        pool,
        "SELECT linked_account_id, tag_value, unblended_cost, tag_values FROM cost_by_tag",
    )
    .await;
    assert_eq!(actual, rank(&tags));
    pool.close().await;
    db.drop_database().await;
}
