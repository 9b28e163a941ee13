//! Cost and Usage Reports (CUR 1.0) through a real S3 protocol server into PostgreSQL: every
//! contract view checked to the digit against an independent computation over the parts
//! (`tests/tools/cur_sums.py`, Python's decimal), for buckets written by koku-nise and by our own
//! generator (`tests/tools/gen_cur.py`: every line item type, both versioning modes, zip and
//! gzip parts, restatements); versions replacing each other; bad input refused clearly; and one
//! source per month when a payer has a DBR and a CUR.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use futures_util::StreamExt;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgPool;

use crate::common::s3::S3Server;
use crate::common::*;
use dbr_ingest::domain::{IntegrationName, Monitored};
use dbr_ingest::ingest::{IngestReason, Member, PollOutcome, SourceGroup, poll, poll_groups};
use dbr_ingest::source::Source;
use dbr_ingest::store::Store;

const BUCKET: &str = "billing";
const PREFIX: &str = "cur/";
const PAYER_A: &str = "111122223333";
const PAYER_B: &str = "222233334444";
const ACCOUNTS_A: &str = "111122223333,444455556666,077788889999";

struct Setup {
    server: S3Server,
    db: TestDatabase,
    store: Store,
    /// What is in the bucket, as files: the generators write here, then it is uploaded.
    bucket: tempfile::TempDir,
    source: Source,
}

async fn setup() -> Setup {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let db = TestDatabase::new();
    let store = db.store().await;
    let source = server.source(BUCKET, PREFIX).await;
    Setup {
        server,
        db,
        store,
        bucket: tempfile::tempdir().unwrap(),
        source,
    }
}

/// Runs `gen_cur.py` into `bucket` for one report's month (`[report, period, payer, accounts]`),
/// with more of its flags in `more` (`--parts 2 --seed 3`); returns the manifest's key.
fn gen_cur(bucket: &Path, month: [&str; 4], more: &str) -> String {
    let [report, period, payer, accounts] = month;
    let output = Command::new("python3")
        .arg(tools().join("gen_cur.py"))
        .arg(bucket)
        .args(["--prefix", PREFIX, "--report", report, "--period", period])
        .args(["--payer", payer, "--accounts", accounts])
        .args(more.split_whitespace())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).trim().to_owned()
}

/// Payer A's hourly report of May 2024.
const HOURLY_A: [&str; 4] = ["hourly", "2024-05", PAYER_A, ACCOUNTS_A];

/// The independent sums of the parts `manifest` names, for the `monitored` accounts.
fn independent(bucket: &Path, manifest: &str, monitored: &str) -> Value {
    let output = Command::new("python3")
        .arg(tools().join("cur_sums.py"))
        .arg(bucket)
        .arg(manifest)
        .arg(monitored)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

impl Setup {
    /// Uploads every file of the bucket directory that the server does not hold yet, or all.
    async fn upload(&self) {
        for path in files(self.bucket.path()) {
            let key = path
                .strip_prefix(self.bucket.path())
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            self.server
                .put(BUCKET, &key, std::fs::read(&path).unwrap())
                .await;
        }
    }

    async fn poll(&self, monitored: &str) -> PollOutcome {
        poll(
            &self.source,
            &self.store,
            Some(&Monitored::parse(monitored).unwrap()),
            2,
            &memory_budget(DEFAULT_BUDGET),
        )
        .await
        .unwrap()
    }

    /// Makes the next poll list the bucket whole, as it does once a day.
    async fn a_day_later(&self) {
        sqlx::query("UPDATE full_listings SET listed_at = listed_at - interval '1 day'")
            .execute(self.pool())
            .await
            .unwrap();
    }

    fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    async fn finish(self) {
        self.store.pool().close().await;
        self.db.drop_database().await;
    }
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// A table of decimal sums keyed by text, as cur_sums.py prints them.
fn sums(table: &Value) -> BTreeMap<String, Decimal> {
    table
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| (key.clone(), decimal(value).unwrap().normalize()))
        .collect()
}

async fn query_sums(
    pool: &PgPool,
    sql: &str,
    payer: &str,
    period: &str,
) -> BTreeMap<String, Decimal> {
    let rows: Vec<(String, Decimal)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(payer)
        .bind(format!("{period}-01"))
        .fetch_all(pool)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(key, sum)| (key, sum.normalize()))
        .collect()
}

/// Every contract view's sums for one payer's month equal the independent computation's.
async fn assert_views_hold(pool: &PgPool, payer: &str, period: &str, expected: &Value) {
    let month = "payer_account_id = $1 AND billing_period = $2::date";
    let accounts: Vec<(String, Decimal, Decimal, Decimal, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT linked_account_id, unblended_cost, blended_cost, amortized_cost, line_items
             FROM account_monthly_costs WHERE {month} ORDER BY 1"
        )))
        .bind(payer)
        .bind(format!("{period}-01"))
        .fetch_all(pool)
        .await
        .unwrap();
    let expected_accounts = expected["accounts"].as_object().unwrap();
    assert_eq!(
        accounts.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
        expected_accounts
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "{payer} {period}: accounts"
    );
    for (account, unblended, blended, amortized, line_items) in &accounts {
        let e = &expected_accounts[account];
        assert_eq!(
            Some(*amortized),
            decimal(&e["amortized_cost"]),
            "{account} amortized"
        );
        assert_eq!(
            Some(*unblended),
            decimal(&e["unblended_cost"]),
            "{account} unblended"
        );
        assert_eq!(
            Some(*blended),
            decimal(&e["blended_cost"]),
            "{account} blended"
        );
        assert_eq!(
            *line_items,
            e["line_items"].as_i64().unwrap(),
            "{account} line items"
        );
    }
    // One of the independent sums, per account.
    let per_account = |field: &str| -> BTreeMap<String, Decimal> {
        expected_accounts
            .iter()
            .map(|(account, e)| (account.clone(), decimal(&e[field]).unwrap().normalize()))
            .collect()
    };
    let (totals, amortized) = (per_account("unblended_cost"), per_account("amortized_cost"));
    for (view, sql) in [
        (
            "focus_costs' EffectiveCost",
            r#"SELECT "SubAccountId", sum("EffectiveCost") FROM focus_costs WHERE "BillingAccountId" = $1 AND "BillingPeriodStart" = $2::date GROUP BY 1"#.to_owned(),
        ),
        (
            "daily_costs_by_service's amortized_cost",
            format!("SELECT linked_account_id, sum(amortized_cost) FROM daily_costs_by_service WHERE {month} GROUP BY 1"),
        ),
    ] {
        assert_eq!(query_sums(pool, &sql, payer, period).await, amortized, "{view}");
    }
    for (view, sql) in [
        (
            "daily_costs_by_service",
            format!(
                "SELECT linked_account_id, sum(unblended_cost) FROM daily_costs_by_service WHERE {month} GROUP BY 1"
            ),
        ),
        (
            "focus_costs",
            r#"SELECT "SubAccountId", sum("BilledCost") FROM focus_costs WHERE "BillingAccountId" = $1 AND "BillingPeriodStart" = $2::date GROUP BY 1"#
                .to_owned(),
        ),
    ] {
        assert_eq!(
            query_sums(pool, &sql, payer, period).await,
            totals,
            "{view}"
        );
    }
    for (view, key, table) in [
        ("account_daily_costs", "usage_date", "days"),
        ("top_resources", "resource_id", "resources"),
        ("cost_by_tag", "tag_key || ' ' || tag_value", "tags"),
    ] {
        let sql = format!(
            "SELECT linked_account_id || ' ' || {key}, sum(unblended_cost) FROM {view}
             WHERE {month} GROUP BY 1"
        );
        let stored = query_sums(pool, &sql, payer, period).await;
        assert_eq!(stored, sums(&expected[table]), "{view}");
    }
}

/// The ledger's row of a version: status, failure kind, etag (the assemblyId) and error.
async fn ledger(pool: &PgPool, key: &str) -> (String, Option<String>, String, Option<String>) {
    sqlx::query_as(
        "SELECT status, failure_kind, etag, error FROM report_status WHERE key = $1 AND format = 'cur'",
    )
    .bind(key)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cur_months_are_exact_in_every_view_and_a_new_version_replaces_the_month() {
    let s = setup().await;
    let bucket = s.bucket.path();
    // Payer A: create-new mode, three gzip parts, every line item type, estimated.
    let a = gen_cur(
        bucket,
        HOURLY_A,
        "--parts 3 --packing gz --mode create --rows 400 --seed 1",
    );
    // Payer B: overwrite mode, two zip parts, final.
    let b = gen_cur(
        bucket,
        ["daily", "2024-06", PAYER_B, "222233334444,555566667777"],
        "--parts 2 --packing zip --mode overwrite --final --seed 2",
    );
    s.upload().await;
    let monitored = "111122223333,444455556666,077788889999,555566667777";
    let outcome = s.poll(monitored).await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(ingested_keys(&outcome), [b.as_str(), a.as_str()]);
    assert_views_hold(
        s.pool(),
        PAYER_A,
        "2024-05",
        &independent(bucket, &a, monitored),
    )
    .await;
    assert_views_hold(
        s.pool(),
        PAYER_B,
        "2024-06",
        &independent(bucket, &b, monitored),
    )
    .await;
    let statuses: Vec<(String, String)> = sqlx::query_as(
        "SELECT payer_account_id, invoice_status FROM account_monthly_costs GROUP BY 1, 2 ORDER BY 1",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(
        statuses,
        [
            (PAYER_A.into(), "estimated".into()),
            (PAYER_B.into(), "final".into())
        ]
    );
    // An unknown line item type is usage, and kept as AWS wrote it in the full grain.
    let kept: Vec<(String, Option<String>)> = sqlx::query_as(
        r#"SELECT DISTINCT "x_ChargeCategory", "x_LineItemType" FROM focus_costs WHERE "x_LineItemType" = 'FutureLineItemType'"#,
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(kept, [("usage".into(), Some("FutureLineItemType".into()))]);

    // Nothing changed: nothing read.
    let again = s.poll(monitored).await;
    assert!(again.ingested.is_empty() && again.failed.is_empty());
    assert_eq!(again.unchanged, 2);

    // AWS delivers the month again (a restatement after it closed, say): a new assembly, the
    // old one's folder left behind. The month is replaced, never added to.
    let (_, _, first_assembly, _) = ledger(s.pool(), &a).await;
    let restated = gen_cur(
        bucket,
        HOURLY_A,
        "--parts 2 --packing gz --mode create --rows 150 --final --seed 7",
    );
    assert_eq!(restated, a);
    s.upload().await;
    // A month rewritten many times over: 1,200 objects of earlier assemblies in its folder.
    let earlier = (0..40).flat_map(|assembly| {
        (0..30).map(move |part| {
            format!("cur/hourly/20240501-20240601/old-{assembly:02}/hourly-{part}.csv.gz")
        })
    });
    futures_util::stream::iter(earlier)
        .map(|key| {
            let server = &s.server;
            async move { server.put(BUCKET, &key, b"x".to_vec()).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let outcome = s.poll(monitored).await;
    assert_eq!(outcome.ingested.len(), 1, "{:?}", outcome.failed);
    assert_eq!(outcome.ingested[0].reason, IngestReason::Changed);
    // Where the known reports are: each report's folder, the report's own objects in each
    // billing period's folder; then the two manifests (the upload wrote both again), the
    // folder of the parts the new one names, and its two parts. The earlier assemblies are
    // not even listed.
    assert_eq!(outcome.s3_requests, 2 + 2 + 2 + 1 + 2);
    assert_eq!(
        outcome.ignored, 2,
        "the overwritten report's parts beside its manifest, read through it"
    );
    assert_views_hold(
        s.pool(),
        PAYER_A,
        "2024-05",
        &independent(bucket, &a, monitored),
    )
    .await;
    let (status, _, assembly, _) = ledger(s.pool(), &a).await;
    assert_eq!(status, "ingested");
    assert_ne!(assembly, first_assembly);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cur_versions_fail_clearly_and_the_month_keeps_what_it_showed() {
    let s = setup().await;
    let bucket = s.bucket.path();
    let manifest = gen_cur(bucket, HOURLY_A, "--parts 2 --mode overwrite");
    s.upload().await;
    let monitored = ACCOUNTS_A;
    assert_eq!(s.poll(monitored).await.ingested.len(), 1);
    let good = independent(bucket, &manifest, monitored);
    let manifest_path = bucket.join(&manifest);
    let part = |n: usize| format!("cur/hourly/20240501-20240601/hourly-{n}.csv.gz");

    // A part the manifest names is not there yet: transient, tried again at the next poll.
    let mut json: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    json["assemblyId"] = "second".into();
    json["reportKeys"]
        .as_array_mut()
        .unwrap()
        .push(format!("/{}", part(3)).into());
    std::fs::write(&manifest_path, json.to_string()).unwrap();
    s.upload().await;
    let failed = s.poll(monitored).await.failed;
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].error.contains(&format!(
            "part {} is named by the manifest but not in the bucket",
            part(3)
        )),
        "{}",
        failed[0].error
    );
    assert_eq!(
        ledger(s.pool(), &manifest).await.1.as_deref(),
        Some("transient")
    );
    assert_views_hold(s.pool(), PAYER_A, "2024-05", &good).await;

    // Broken content, each a content failure naming the object (and line), the month kept.
    let header_without_type = {
        let csv = "bill/PayerAccountId,lineItem/UsageAccountId,lineItem/UnblendedCost\n111122223333,111122223333,1\n";
        gzip(csv.as_bytes())
    };
    let truncated = {
        let whole = std::fs::read(bucket.join(part(1))).unwrap();
        whole[..whole.len() / 2].to_vec()
    };
    let cases: [(&str, Vec<u8>, String); 3] = [
        (
            "truncated gzip",
            truncated,
            format!("{}: not a gzip stream, or a broken one", part(3)),
        ),
        (
            "header without the line item type",
            header_without_type,
            format!(
                "{}: line 1: not a Cost and Usage Report: the header lacks lineItem/LineItemType",
                part(3)
            ),
        ),
        (
            "not gzip at all",
            b"plain text".to_vec(),
            format!("{}: not a gzip stream", part(3)),
        ),
    ];
    for (n, (what, bytes, expected)) in cases.into_iter().enumerate() {
        json["assemblyId"] = format!("broken-{n}").into();
        std::fs::write(&manifest_path, json.to_string()).unwrap();
        std::fs::write(bucket.join(part(3)), &bytes).unwrap();
        s.upload().await;
        let failed = s.poll(monitored).await.failed;
        assert_eq!(failed.len(), 1, "{what}");
        assert!(
            failed[0].error.contains(&expected),
            "{what}: {}",
            failed[0].error
        );
        assert_eq!(
            ledger(s.pool(), &manifest).await.1.as_deref(),
            Some("content"),
            "{what}"
        );
        assert_views_hold(s.pool(), PAYER_A, "2024-05", &good).await;
        // The same bytes are not read again.
        assert_eq!(s.poll(monitored).await.unchanged, 1, "{what}");
    }

    // A manifest that is not one: refused, naming it; nothing else changes.
    std::fs::write(&manifest_path, "{\"assemblyId\": \"x\"").unwrap();
    s.upload().await;
    let failed = s.poll(monitored).await.failed;
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .error
            .starts_with(&format!("manifest {manifest} is not a CUR manifest")),
        "{}",
        failed[0].error
    );
    assert_views_hold(s.pool(), PAYER_A, "2024-05", &good).await;
    s.finish().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payers_month_comes_from_its_cur_alone_once_there_is_one() {
    let s = setup().await;
    let bucket = s.bucket.path();
    // Years of DBR first: AWS's own statement and a marketplace one, same payer and month.
    let dbr_dir = tempfile::tempdir().unwrap();
    for (variant, seed) in [("plain", "4"), ("with-resources-and-tags", "5")] {
        let args = ["--accounts", ACCOUNTS_A, "--seed", seed];
        let r = report(dbr_dir.path(), PREFIX, PAYER_A, variant, "2024-05", &args);
        let key = if variant == "plain" {
            r.key
                .replace("line-items-2024", "line-items-AWSMarketplace-2024")
        } else {
            r.key.clone()
        };
        s.server.put(BUCKET, &key, r.zip.clone()).await;
    }
    let monitored = "111122223333,444455556666,077788889999";
    let first = s.poll(monitored).await;
    assert_eq!(first.ingested.len(), 2, "{:?}", first.failed);
    let dbr_statements: i64 =
        sqlx::query_scalar("SELECT count(*) FROM statements WHERE format = 'dbr'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(dbr_statements, 2);

    // The CUR of the same payer and month arrives: it alone feeds the views from now on. (A
    // new report in a bucket read before is found by the next full listing, within a day.)
    let manifest = gen_cur(bucket, HOURLY_A, "--seed 3");
    s.upload().await;
    s.a_day_later().await;
    let outcome = s.poll(monitored).await;
    assert_eq!(ingested_keys(&outcome), [manifest.as_str()], "{outcome:?}");
    let shown = independent(bucket, &manifest, monitored);
    assert_views_hold(s.pool(), PAYER_A, "2024-05", &shown).await;
    let statements: Vec<(String, String)> =
        sqlx::query_as("SELECT entity, format FROM statements ORDER BY 1")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(statements, [(String::new(), "cur".to_owned())]);
    let dbr: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT status FROM report_status WHERE format = 'dbr'")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(dbr, ["superseded"]);
    // The DBR are not read again, however often the bucket is polled.
    let again = s.poll(monitored).await;
    assert!(
        again.ingested.is_empty() && again.failed.is_empty(),
        "{again:?}"
    );

    // A second CUR report of the same payer (a daily one beside the hourly one), found by the
    // next full listing: neither is read until the integration names one, and the month keeps
    // what it showed.
    gen_cur(
        bucket,
        ["daily", "2024-05", PAYER_A, ACCOUNTS_A],
        "--seed 4",
    );
    gen_cur(bucket, HOURLY_A, "--seed 9");
    s.upload().await;
    s.a_day_later().await;
    let outcome = s.poll(monitored).await;
    assert!(
        outcome.ingested.is_empty() && outcome.failed.is_empty(),
        "{outcome:?}"
    );
    assert_views_hold(s.pool(), PAYER_A, "2024-05", &shown).await;

    // Once the integration names one, that one is read; the other stays ignored.
    let group = SourceGroup {
        source: &s.source,
        report_name: Some("hourly".into()),
        members: vec![Member {
            integration: IntegrationName::default_name(),
            configured: Some(Monitored::parse(monitored).unwrap()),
        }],
    };
    let polled = poll_groups(&[group], &s.store, 2, &memory_budget(DEFAULT_BUDGET)).await;
    let outcome = polled[0].outcome.as_ref().unwrap();
    assert_eq!(ingested_keys(outcome), [manifest.as_str()], "{outcome:?}");
    assert_views_hold(
        s.pool(),
        PAYER_A,
        "2024-05",
        &independent(bucket, &manifest, monitored),
    )
    .await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_written_by_koku_nise_is_read_exactly() {
    let s = setup().await;
    let bucket = s.bucket.path();
    let manifest = nise(bucket, "2024-05-01", "2024-05-06");
    s.upload().await;
    let monitored = "111122223333,444455556666";
    let outcome = s.poll(monitored).await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(outcome.ingested.len(), 1);
    assert_views_hold(
        s.pool(),
        PAYER_A,
        "2024-05",
        &independent(bucket, &manifest, monitored),
    )
    .await;
    s.finish().await;
}

/// Writes a CUR month with koku-nise (the generator koku is tested with) into `bucket` under
/// [`PREFIX`], for 12-digit accounts (its default ones have 13), in parts of 500 rows.
fn nise(bucket: &Path, start: &str, end: &str) -> String {
    let work = tempfile::tempdir().unwrap();
    let generators = [
        "EC2Generator",
        "S3Generator",
        "EBSGenerator",
        "RDSGenerator",
        "DataTransferGenerator",
        "Route53Generator",
        "VPCGenerator",
    ];
    let mut yaml = String::from("generators:\n");
    for generator in generators {
        yaml.push_str(&format!(
            "  - {generator}:\n      start_date: {start}\n      end_date: {end}\n"
        ));
    }
    yaml.push_str(&format!(
        "accounts:\n  payer: {PAYER_A}\n  user:\n    - {PAYER_A}\n    - 444455556666\n    - 077788889999\n"
    ));
    let static_file = work.path().join("static.yml");
    std::fs::write(&static_file, yaml).unwrap();
    let output = Command::new(nise_command())
        .current_dir(work.path())
        .args(["report", "aws", "--static-report-file"])
        .arg(&static_file)
        .arg("--aws-s3-bucket-name")
        .arg(bucket)
        .args([
            "--aws-s3-report-name",
            "nise",
            "--aws-s3-report-prefix",
            "cur",
            "--file-row-limit",
            "500",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", nise_command().display()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let manifests: Vec<_> = files(bucket)
        .into_iter()
        .filter(|p| p.to_str().unwrap().ends_with("-Manifest.json"))
        .map(|p| p.strip_prefix(bucket).unwrap().to_str().unwrap().to_owned())
        .filter(|key| dbr_ingest::formats::cur::ManifestKey::parse(key).is_some())
        .collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    manifests[0].clone()
}

/// koku-nise's command: `NISE` when set; else the virtual environment `.ci/run` makes in
/// `target/nise`, made here when missing.
fn nise_command() -> std::path::PathBuf {
    if let Ok(nise) = std::env::var("NISE") {
        return nise.into();
    }
    static MADE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _made = MADE.lock().unwrap();
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nise");
    let nise = venv.join("bin/nise");
    if !nise.exists() {
        let status = Command::new(tools().join("install-nise.sh"))
            .arg(&venv)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "installing koku-nise into {}",
            venv.display()
        );
    }
    nise
}

#[test]
fn summarize_reads_a_manifest_with_its_parts_or_a_part_alone() {
    let bucket = tempfile::tempdir().unwrap();
    let manifest = gen_cur(
        bucket.path(),
        HOURLY_A,
        "--parts 3 --packing zip --mode create --seed 11",
    );
    let expected = independent(bucket.path(), &manifest, "*");
    let summary = summarize_json(&bucket.path().join(&manifest), &[]);
    assert_eq!(summary["report"]["format"], "cur");
    assert_eq!(summary["report"]["variant"], "hourly");
    assert_eq!(summary["report"]["identified_by"], "manifest");
    assert_eq!(summary["report"]["payer_account_id"], PAYER_A);
    assert_eq!(summary["report"]["billing_period"], "2024-05");
    let accounts = summary["accounts"].as_array().unwrap();
    assert_eq!(
        accounts.len(),
        expected["accounts"].as_object().unwrap().len()
    );
    for account in accounts {
        let e = &expected["accounts"][account["linked_account_id"].as_str().unwrap()];
        for field in ["unblended_cost", "blended_cost", "amortized_cost"] {
            assert_eq!(decimal(&account[field]), decimal(&e[field]), "{field}");
        }
        assert_eq!(account["line_items"], e["line_items"]);
        assert_eq!(account["reconciled"], Value::Null);
    }

    // One part alone, gzip, told from a DBR by its header.
    let parts = gen_cur(
        bucket.path(),
        ["daily", "2024-06", PAYER_B, PAYER_B],
        "--parts 1 --mode overwrite --seed 12",
    );
    let part = bucket
        .path()
        .join(Path::new(&parts).with_file_name("daily-1.csv.gz"));
    let summary = summarize_json(&part, &[]);
    assert_eq!(summary["report"]["format"], "cur");
    assert_eq!(summary["report"]["identified_by"], "content");
    assert_eq!(summary["report"]["payer_account_id"], PAYER_B);
    let expected = independent(bucket.path(), &parts, PAYER_B);
    assert_eq!(
        decimal(&summary["accounts"][0]["unblended_cost"]),
        decimal(&expected["accounts"][PAYER_B]["unblended_cost"])
    );
    // The README's example: the bundled CUR month.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cur/billing");
    let manifest = "cur/hourly/20240501-20240601/hourly-Manifest.json";
    let summary = summarize_json(&examples.join(manifest), &[]);
    let expected = independent(&examples, manifest, "*");
    for account in summary["accounts"].as_array().unwrap() {
        let e = &expected["accounts"][account["linked_account_id"].as_str().unwrap()];
        assert_eq!(
            decimal(&account["unblended_cost"]),
            decimal(&e["unblended_cost"])
        );
    }
}
