//! The service against a real S3 protocol server (s3s-fs on 127.0.0.1) and a real PostgreSQL: what
//! a poll ingests, skips, replaces and refuses, as dashboards see it through the views.

use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::common::s3::S3Server;
use crate::common::views::*;
use crate::common::*;
use dbr_ingest::domain::Monitored;
use dbr_ingest::ingest::{IngestReason, PollOutcome, poll};
use dbr_ingest::source::Source;
use dbr_ingest::store::Store;

const BUCKET: &str = "billing";

struct Setup {
    server: S3Server,
    db: TestDatabase,
    store: Store,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let db = TestDatabase::new();
    let store = db.store().await;
    Setup {
        server,
        db,
        store,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Setup {
    async fn upload(&self, report: &Report) {
        self.server
            .put(BUCKET, &report.key, report.zip.clone())
            .await;
    }

    async fn poll(&self, source: &Source, monitored: &Monitored) -> PollOutcome {
        self.poll_within(source, monitored, DEFAULT_BUDGET).await
    }

    async fn poll_within(
        &self,
        source: &Source,
        monitored: &Monitored,
        budget: usize,
    ) -> PollOutcome {
        poll(
            source,
            &self.store,
            Some(monitored),
            2,
            &memory_budget(budget),
        )
        .await
        .unwrap()
    }

    async fn finish(self) {
        self.store.pool().close().await;
        self.db.drop_database().await;
    }
}

/// The configuration's integration, the only one of these tests.
fn default() -> dbr_ingest::domain::IntegrationName {
    dbr_ingest::domain::IntegrationName::default_name()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_is_ingested_once_and_then_kept_in_step() {
    let s = setup().await;
    let dir = s.dir.path();
    let prefix = "dbr/";
    let a1 = report(
        dir,
        prefix,
        "111111111111",
        "with-resources-and-tags",
        "2017-01",
        &["--seed", "1"],
    );
    // The plain variant of the same statement: must not be counted again.
    let a1_plain = report(
        dir,
        prefix,
        "111111111111",
        "plain",
        "2017-01",
        &["--seed", "1"],
    );
    let a2 = report(
        dir,
        prefix,
        "111111111111",
        "plain",
        "2017-02",
        &["--seed", "2", "--invoice", "estimated"],
    );
    let b1 = report(
        dir,
        prefix,
        "222222222222",
        "with-resources-and-tags",
        "2017-01",
        &["--seed", "3", "--billing", "single"],
    );
    // Outside the prefix: never listed.
    let outside = report(
        dir,
        "other/",
        "333333333333",
        "plain",
        "2017-01",
        &["--seed", "4"],
    );
    for r in [&a1, &a1_plain, &a2, &b1, &outside] {
        s.upload(r).await;
    }
    for junk in [
        "dbr/111111111111-aws-billing-csv-2017-01.csv",
        "dbr/aws-programmatic-access-test-object",
        "dbr/cur/20170101-20170201/manifest.json",
        "dbr/111111111111-aws-billing-detailed-line-items-2017-13.csv.zip",
    ] {
        s.server.put(BUCKET, junk, b"not a report".to_vec()).await;
    }
    let source = s.server.source(BUCKET, prefix).await;

    let first = s.poll(&source, &Monitored::All).await;
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    let mut expected_keys = [a1.key.as_str(), a2.key.as_str(), b1.key.as_str()];
    expected_keys.sort();
    assert_eq!(ingested_keys(&first), expected_keys);
    assert_eq!(
        first.ignored, 4,
        "three non-DBR objects and the plain variant; the billing period's folder of a CUR named \
         cur is listed for that report's objects alone, and holds none"
    );
    assert_monthly(
        &monthly_costs(s.store.pool()).await,
        &expected_monthly(&[&a1, &a2, &b1]),
    );

    // Nothing changed: nothing is read, nothing moves.
    let second = s.poll(&source, &Monitored::All).await;
    assert!(second.ingested.is_empty() && second.failed.is_empty());
    assert_eq!(second.unchanged, 3);
    assert_monthly(
        &monthly_costs(s.store.pool()).await,
        &expected_monthly(&[&a1, &a2, &b1]),
    );

    // AWS rewrites February: exactly that month is replaced, not added to.
    let a2_new = Report {
        key: a2.key.clone(),
        ..report(
            dir,
            prefix,
            "111111111111",
            "plain",
            "2017-02",
            &["--seed", "22", "--rows", "450"],
        )
    };
    s.upload(&a2_new).await;
    let third = s.poll(&source, &Monitored::All).await;
    assert_eq!(ingested_keys(&third), [a2.key.as_str()]);
    assert_eq!(third.ingested[0].reason, IngestReason::Changed);
    assert_monthly(
        &monthly_costs(s.store.pool()).await,
        &expected_monthly(&[&a1, &a2_new, &b1]),
    );

    let statuses: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT key, status, rows_kept FROM report_status ORDER BY key")
            .fetch_all(s.store.pool())
            .await
            .unwrap();
    assert_eq!(statuses.len(), 3);
    assert!(statuses.iter().all(|(_, status, _)| status == "ingested"));
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_follows_pages_past_a_thousand_objects() {
    let s = setup().await;
    let dir = s.dir.path();
    let reports: Vec<Report> = ["2016-01", "2016-02"]
        .iter()
        .enumerate()
        .map(|(i, period)| {
            report(
                dir,
                "",
                "111111111111",
                "plain",
                period,
                &["--seed", &i.to_string()],
            )
        })
        .collect();
    // Keys sort after the reports' and before them, so each lands on another page.
    for batch in (0..1100).collect::<Vec<_>>().chunks(20) {
        let mut uploads = tokio::task::JoinSet::new();
        for &i in batch {
            let client = s.server.client.clone();
            uploads.spawn(async move {
                let prefix = if i % 2 == 0 { "000" } else { "zzz" };
                let request = client
                    .put_object()
                    .bucket(BUCKET)
                    .key(format!("{prefix}-note-{i:04}.txt"));
                request.body(b"x".to_vec().into()).send().await.unwrap();
            });
        }
        uploads.join_all().await;
    }
    for r in &reports {
        s.upload(r).await;
    }
    let first_page = s
        .server
        .client
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert_eq!(
        first_page.is_truncated(),
        Some(true),
        "the server pages its listings"
    );
    let source = s.server.source(BUCKET, "").await;
    let outcome = s.poll(&source, &Monitored::All).await;
    assert_eq!(outcome.ingested.len(), 2);
    assert_eq!(outcome.ignored, 1100);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_monitored_set_reingests_what_it_affects() {
    let s = setup().await;
    let dir = s.dir.path();
    let accounts = "111111111111,222222222222,333333333333";
    let only_one = report(
        dir,
        "",
        "111111111111",
        "plain",
        "2017-05",
        &["--accounts", accounts, "--monitored", "222222222222"],
    );
    s.upload(&only_one).await;
    let source = s.server.source(BUCKET, "").await;
    let configured = Monitored::parse("222222222222").unwrap();
    let first = s.poll(&source, &configured).await;
    assert_eq!(first.ingested.len(), 1);
    assert!(first.ingested[0].summary.rows.dropped_unmonitored > 0);
    assert_monthly(
        &monthly_costs(s.store.pool()).await,
        &expected_monthly(&[&only_one]),
    );

    // An account added to the table joins the configured one: the report is read again.
    s.store
        .add_monitored_account(&default(), &"333333333333".parse().unwrap(), Some("team c"))
        .await
        .unwrap();
    let second = s.poll(&source, &configured).await;
    assert_eq!(second.ingested.len(), 1);
    assert_eq!(
        second.ingested[0].reason,
        IngestReason::MonitoredAccountsChanged
    );
    let two = Report {
        expected: generate(
            dir,
            "again.csv",
            &[
                "--payer",
                "111111111111",
                "--variant",
                "plain",
                "--period",
                "2017-05",
                "--rows",
                "300",
                "--accounts",
                accounts,
                "--monitored",
                "222222222222,333333333333",
            ],
        )
        .1,
        ..only_one
    };
    assert_monthly(
        &monthly_costs(s.store.pool()).await,
        &expected_monthly(&[&two]),
    );

    // The same set again: nothing to do.
    assert!(s.poll(&source, &configured).await.ingested.is_empty());
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_report_fails_alone_and_keeps_the_previous_month() {
    let s = setup().await;
    let dir = s.dir.path();
    let good = report(
        dir,
        "",
        "111111111111",
        "plain",
        "2017-03",
        &["--seed", "5"],
    );
    let other = report(
        dir,
        "",
        "111111111111",
        "plain",
        "2017-04",
        &["--seed", "6"],
    );
    s.upload(&good).await;
    let source = s.server.source(BUCKET, "").await;
    assert_eq!(s.poll(&source, &Monitored::All).await.ingested.len(), 1);

    // The file is overwritten with a truncated copy, and another month arrives.
    s.server
        .put(BUCKET, &good.key, good.zip[..good.zip.len() / 2].to_vec())
        .await;
    s.upload(&other).await;
    let outcome = s.poll(&source, &Monitored::All).await;
    assert_eq!(
        ingested_keys(&outcome),
        [other.key.as_str()],
        "the other report goes on"
    );
    assert_eq!(outcome.failed.len(), 1);
    assert!(
        outcome.failed[0].error.contains("truncated"),
        "{}",
        outcome.failed[0].error
    );
    assert_monthly(
        &monthly_costs(s.store.pool()).await,
        &expected_monthly(&[&good, &other]),
    );
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM report_status WHERE key = $1")
            .bind(&good.key)
            .fetch_one(s.store.pool())
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(error.unwrap().contains("truncated"));

    // The same broken bytes are not read again; a good version is.
    assert!(s.poll(&source, &Monitored::All).await.failed.is_empty());
    s.upload(&good).await;
    assert_eq!(
        ingested_keys(&s.poll(&source, &Monitored::All).await),
        [good.key.as_str()]
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_partial_or_empty_month() {
    readers_see_one_version_or_the_other(&["--rows", "500"], &["--rows", "3000"], DEFAULT_BUDGET)
        .await;
}

/// Most line items their own daily key, summed within a budget far too small for them (so the
/// sums are merged from runs on disk while they are copied), replaced again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_partial_month_at_high_cardinality() {
    let many_keys = ["--rows", "40000", "--resources", "20000"];
    readers_see_one_version_or_the_other(&["--rows", "20000"], &many_keys, 256 << 10).await;
}

/// A report of 30,000 line items over 20,000 resources: far more distinct daily keys than a
/// small memory budget holds.
fn many_keys(dir: &std::path::Path, period: &str, seed: &str) -> Report {
    report(
        dir,
        "",
        "111111111111",
        "with-resources-and-tags",
        period,
        &["--seed", seed, "--rows", "30000", "--resources", "20000"],
    )
}

/// The daily rows of a report whose distinct keys far exceed the memory budget are those of
/// the same report summed in memory, to the last digit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_beyond_the_memory_budget_stores_the_rows_of_one_within_it() {
    let s = setup().await;
    let r = many_keys(s.dir.path(), "2017-07", "9");
    s.upload(&r).await;
    let source = s.server.source(BUCKET, "").await;
    let in_memory = TestDatabase::new();
    let in_memory_store = in_memory.store().await;
    // Each daily key as text, partial sums (of different generations of usages) added up:
    // numeric keeps the scale it was given, so this compares exactly.
    let rows = |pool: PgPool| async move {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT concat_ws('|', linked_account_id, usage_date, product_name, usage_type, operation,
                              availability_zone, resource_id, tags, sum(unblended_cost),
                              sum(blended_cost), sum(usage_quantity), sum(line_items))
             FROM daily_costs JOIN daily_usages USING (statement_version, usage_id)
                  JOIN usage_kinds USING (statement_version, kind_id)
             GROUP BY linked_account_id, usage_date, product_name, usage_type, operation,
                      availability_zone, resource_id, tags
             ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        rows
    };
    let spilled = s.poll_within(&source, &Monitored::All, 256 << 10).await;
    assert_eq!(spilled.ingested.len(), 1, "{:?}", spilled.failed);
    let kept = poll(
        &source,
        &in_memory_store,
        Some(&Monitored::All),
        1,
        &memory_budget(DEFAULT_BUDGET),
    )
    .await
    .unwrap();
    assert_eq!(kept.ingested.len(), 1);
    let (spilled, kept) = (
        rows(s.store.pool().clone()).await,
        rows(in_memory_store.pool().clone()).await,
    );
    assert!(
        spilled.len() > 15_000,
        "{} daily rows: far beyond 256 KiB",
        spilled.len()
    );
    assert_eq!(spilled, kept);
    assert_monthly(
        &monthly_costs(s.store.pool()).await,
        &expected_monthly(&[&r]),
    );
    in_memory_store.pool().close().await;
    in_memory.drop_database().await;
    s.finish().await;
}

/// A temporary directory that fills up while the sums spill: the report fails as transient,
/// its error says which directory, and the month keeps what it had. The directory is a 64 KiB
/// tmpfs (the tests run as root, as CI does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_temporary_directory_is_named_and_the_report_retried() {
    let s = setup().await;
    let r = many_keys(s.dir.path(), "2017-08", "8");
    s.upload(&r).await;
    let tiny = s.dir.path().join("tiny-tmpfs");
    std::fs::create_dir(&tiny).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&tiny)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs needs root, as CI has");
    let source = s.server.source(BUCKET, "").await;
    let budget = dbr_ingest::report::aggregate::MemoryBudget {
        bytes: 256 << 10,
        temp_dir: tiny.clone(),
    };
    let outcome = poll(&source, &s.store, Some(&Monitored::All), 1, &budget).await;
    let unmounted = std::process::Command::new("umount").arg(&tiny).status();
    let outcome = outcome.unwrap();
    assert!(unmounted.unwrap().success());
    assert_eq!(outcome.failed.len(), 1, "{outcome:?}");
    let failed = &outcome.failed[0];
    assert_eq!(failed.kind, dbr_ingest::failure::FailureKind::Transient);
    assert!(
        failed.error.contains(&tiny.display().to_string())
            && failed.error.contains("No space left on device"),
        "{}",
        failed.error
    );
    s.finish().await;
}

/// Replaces one month by one of two versions in turn while a reader sums the monthly and the
/// daily view in one query: it must see one version or the other whole, never a mix or
/// nothing; no partition of an old version may remain.
async fn readers_see_one_version_or_the_other(small: &[&str], large: &[&str], budget: usize) {
    let s = setup().await;
    let dir = s.dir.path();
    let version = |seed: &str, rows: &[&str]| {
        let mut args = vec!["--seed", seed];
        args.extend_from_slice(rows);
        report(
            dir,
            "",
            "111111111111",
            "with-resources-and-tags",
            "2017-07",
            &args,
        )
    };
    let small = version("7", small);
    let large = Report {
        key: small.key.clone(),
        ..version("8", large)
    };
    let totals = |r: &Report| -> (i64, Decimal) {
        let cost = r.expected["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| decimal(&a["unblended_cost"]).unwrap())
            .sum();
        (r.expected["rows"]["kept"].as_i64().unwrap(), cost)
    };
    let allowed = [totals(&small), totals(&large)];
    s.upload(&small).await;
    let source = s.server.source(BUCKET, "").await;
    s.poll_within(&source, &Monitored::All, budget).await;

    let pool = s.store.pool().clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // One statement, one snapshot of both views.
                let (items, cost): (Option<i64>, Option<Decimal>) = sqlx::query_as(
                    "SELECT (SELECT sum(line_items)::bigint FROM account_monthly_costs),
                            (SELECT sum(unblended_cost) FROM account_daily_costs)",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                seen.push((items.unwrap_or(0), cost.unwrap_or_default()));
            }
            seen
        })
    };
    for round in 0..6 {
        let next = if round % 2 == 0 { &large } else { &small };
        s.upload(next).await;
        let outcome = s.poll_within(&source, &Monitored::All, budget).await;
        assert_eq!(outcome.ingested.len(), 1, "{:?}", outcome.failed);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.await.unwrap();
    assert!(
        seen.len() > 10,
        "the reader ran during the replacements ({} reads)",
        seen.len()
    );
    let odd: Vec<_> = seen.iter().filter(|n| !allowed.contains(n)).collect();
    assert!(
        odd.is_empty(),
        "a reader saw {odd:?}, not one of {allowed:?}"
    );
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class
         WHERE relname ~ '^(daily_costs|daily_usages|usage_kinds)_[0-9]+$' AND relkind = 'r'
         ORDER BY 1",
    )
    .fetch_all(s.store.pool())
    .await
    .unwrap();
    let current: i64 = sqlx::query_scalar("SELECT version FROM statements")
        .fetch_one(s.store.pool())
        .await
        .unwrap();
    assert_eq!(
        partitions,
        [
            format!("daily_costs_{current}"),
            format!("daily_usages_{current}"),
            format!("usage_kinds_{current}")
        ],
        "only the current version's partitions are left"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_polls_once_and_manages_accounts() {
    let s = setup().await;
    let dir = s.dir.path();
    let r = report(
        dir,
        "in/",
        "111111111111",
        "plain",
        "2017-09",
        &["--seed", "9"],
    );
    s.upload(&r).await;
    let run = |args: &[&str], monitored: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dbr-ingest"));
        command
            .args(args)
            .env("DATABASE_URL", &s.db.url)
            .env("DBR_BUCKET", BUCKET)
            .env("DBR_PREFIX", "in/")
            .env("DBR_CONFIG", "/dev/null")
            .env("RUST_LOG", "warn")
            .envs(s.server.env());
        if let Some(monitored) = monitored {
            command.env("DBR_MONITORED_ACCOUNTS", monitored);
        }
        command.output().unwrap()
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    let refused = run(&["once"], None);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("no monitored accounts"),
        "{}",
        text(&refused.stderr)
    );

    let added = run(&["accounts", "add", "123456789012", "--name", "prod"], None);
    assert!(added.status.success(), "{}", text(&added.stderr));
    let listed = run(&["accounts", "list"], None);
    assert!(
        text(&listed.stdout).contains("123456789012"),
        "{}",
        text(&listed.stdout)
    );

    let once = run(&["once"], None);
    assert!(once.status.success(), "{}", text(&once.stderr));
    assert!(
        text(&once.stdout).contains(&format!("ingested  {}", r.key)),
        "{}",
        text(&once.stdout)
    );
    assert!(
        text(&once.stdout).contains("totals match the report's AccountTotal rows"),
        "{}",
        text(&once.stdout)
    );
    assert!(
        text(&once.stdout).contains(
            "1 ingested, 0 failed, 0 unchanged, 0 claimed by another process, 0 other objects ignored"
        ),
        "{}",
        text(&once.stdout)
    );

    // A report without footer has nothing to reconcile with, and says so.
    let bare = report(
        dir,
        "in/",
        "111111111111",
        "plain",
        "2017-10",
        &["--seed", "10", "--footer", "none"],
    );
    s.upload(&bare).await;
    let once = run(&["once"], None);
    assert!(
        text(&once.stdout)
            .lines()
            .any(|line| line.starts_with(&format!("ingested  {}", bare.key))
                && line.ends_with("1 account, no AccountTotal rows to check against")),
        "{}",
        text(&once.stdout)
    );

    // Two processes share the work; each says how much the other took.
    let more: Vec<Report> = (1..=6)
        .map(|month| {
            report(
                dir,
                "in/",
                "111111111111",
                "plain",
                &format!("2018-{month:02}"),
                &["--seed", &month.to_string(), "--rows", "3000"],
            )
        })
        .collect();
    for r in &more {
        s.upload(r).await;
    }
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| run(&["once"], Some("*")));
        let b = scope.spawn(|| run(&["once"], Some("*")));
        (a.join().unwrap(), b.join().unwrap())
    });
    let counts = |output: &std::process::Output| -> (u64, u64, u64) {
        let summary = text(&output.stdout);
        let last = summary.lines().last().unwrap_or_default().to_owned();
        let number = |label: &str| -> u64 {
            let before = last.split(label).next().unwrap();
            before
                .rsplit(' ')
                .find(|w| !w.is_empty())
                .unwrap()
                .parse()
                .unwrap()
        };
        (
            number(" ingested"),
            number(" unchanged"),
            number(" claimed by another process"),
        )
    };
    let ((ingested_a, unchanged_a, claimed_a), (ingested_b, unchanged_b, claimed_b)) =
        (counts(&a), counts(&b));
    // The monitored set changed to *, so the two older reports are read again too: 8 in all.
    assert_eq!(
        ingested_a + ingested_b,
        8,
        "{} {}",
        text(&a.stdout),
        text(&b.stdout)
    );
    assert_eq!(
        ingested_a + unchanged_a + claimed_a,
        8,
        "{}",
        text(&a.stdout)
    );
    assert_eq!(
        ingested_b + unchanged_b + claimed_b,
        8,
        "{}",
        text(&b.stdout)
    );

    // A broken version makes `once` exit non-zero.
    s.server
        .put(BUCKET, &r.key, b"PK\x03\x04broken".to_vec())
        .await;
    let failed = run(&["once"], Some("*"));
    assert!(!failed.status.success());
    assert!(
        text(&failed.stdout).contains("failed"),
        "{}",
        text(&failed.stdout)
    );

    let removed = run(&["accounts", "remove", "123456789012"], None);
    assert!(
        text(&removed.stdout).contains("removed"),
        "{}",
        text(&removed.stdout)
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_accounts_are_kept_in_the_table() {
    use dbr_ingest::ingest::monitored_accounts;
    let db = TestDatabase::new();
    let store = db.store().await;
    let ids = |m: Monitored| match m {
        Monitored::Only(ids) => ids.into_iter().map(|id| id.to_string()).collect::<Vec<_>>(),
        Monitored::All => vec!["*".to_owned()],
    };
    let configured = Monitored::parse("111111111111,222222222222").unwrap();
    let set = monitored_accounts(&default(), Some(&configured), &store)
        .await
        .unwrap();
    assert_eq!(ids(set), ["111111111111", "222222222222"]);
    store
        .add_monitored_account(&default(), &"333333333333".parse().unwrap(), None)
        .await
        .unwrap();
    // The configuration drops one account: it leaves the table; the one added by command stays.
    let configured = Monitored::parse("222222222222").unwrap();
    let set = monitored_accounts(&default(), Some(&configured), &store)
        .await
        .unwrap();
    assert_eq!(ids(set), ["222222222222", "333333333333"]);
    // Nothing configured: the table alone.
    assert_eq!(
        ids(monitored_accounts(&default(), None, &store).await.unwrap()),
        ["333333333333"]
    );
    let origins: Vec<String> = store
        .monitored_accounts(&default())
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.origin)
        .collect();
    assert_eq!(origins, ["command"]);
    assert_eq!(
        ids(
            monitored_accounts(&default(), Some(&Monitored::All), &store)
                .await
                .unwrap()
        ),
        ["*"]
    );
    store
        .remove_monitored_account(&default(), &"333333333333".parse().unwrap())
        .await
        .unwrap();
    assert!(
        monitored_accounts(&default(), None, &store).await.is_err(),
        "no account at all is refused"
    );
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_with_resources_report_supersedes_the_plain_one_of_its_month() {
    let s = setup().await;
    let dir = s.dir.path();
    let plain = report(
        dir,
        "",
        "111111111111",
        "plain",
        "2017-11",
        &["--seed", "11"],
    );
    s.upload(&plain).await;
    let source = s.server.source(BUCKET, "").await;
    assert_eq!(
        ingested_keys(&s.poll(&source, &Monitored::All).await),
        [plain.key.as_str()]
    );

    // AWS starts writing the variant with resources and tags (same line items, here new ones).
    let tagged = report(
        dir,
        "",
        "111111111111",
        "with-resources-and-tags",
        "2017-11",
        &["--seed", "12"],
    );
    s.upload(&tagged).await;
    let outcome = s.poll(&source, &Monitored::All).await;
    assert_eq!(ingested_keys(&outcome), [tagged.key.as_str()]);
    assert_eq!(outcome.ignored, 1, "the plain report is passed over");
    // Tags are stored as JSON objects, their values whole (commas, accents).
    let values: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT t.value FROM daily_usages, jsonb_each_text(tags) AS t ORDER BY 1",
    )
    .fetch_all(s.store.pool())
    .await
    .unwrap();
    assert_eq!(values, ["batch, nightly", "db", "web", "équipe-données"]);
    // Usages share their kinds: each kind stored once per version, every usage's kind there.
    let (kinds, distinct_kinds, usages, orphans): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM usage_kinds),
                (SELECT count(DISTINCT (statement_version, product_name, usage_type, operation,
                                        availability_zone, invoice_id, item_description,
                                        charge_category, region, purchase_option,
                                        line_item_type, pricing_unit, list_unit_price))
                 FROM usage_kinds),
                (SELECT count(*) FROM daily_usages),
                (SELECT count(*) FROM daily_usages u WHERE NOT EXISTS (
                     SELECT FROM usage_kinds k
                     WHERE k.statement_version = u.statement_version AND k.kind_id = u.kind_id))",
    )
    .fetch_one(s.store.pool())
    .await
    .unwrap();
    assert_eq!((kinds, orphans), (distinct_kinds, 0));
    assert!(kinds * 4 < usages, "{kinds} kinds for {usages} usages");
    assert_monthly(
        &monthly_costs(s.store.pool()).await,
        &expected_monthly(&[&tagged]),
    );
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT key, status FROM report_status ORDER BY key")
            .fetch_all(s.store.pool())
            .await
            .unwrap();
    assert_eq!(
        statuses,
        [
            (plain.key.clone(), "superseded".to_owned()),
            (tagged.key.clone(), "ingested".to_owned())
        ]
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_failures_wait_for_a_new_version_and_odd_dates_are_counted() {
    use dbr_ingest::failure::FailureKind;
    let s = setup().await;
    let dir = s.dir.path();
    let name = "111111111111-aws-billing-detailed-line-items-2017-06.csv";
    let key = format!("{name}.zip");
    let header = "InvoiceID,PayerAccountId,LinkedAccountId,RecordType,ProductName,UsageType,Operation,AvailabilityZone,UsageStartDate,UsageQuantity,BlendedCost,UnBlendedCost\n";
    let upload = |rows: String| {
        let csv = tempfile::tempdir_in(dir).unwrap().keep().join(name);
        std::fs::write(&csv, format!("{header}{rows}")).unwrap();
        std::fs::read(zip_with("info-zip", &csv)).unwrap()
    };
    let source = s.server.source(BUCKET, "").await;
    let poll_and_expect = |kind: Option<FailureKind>, fragment: &'static str| {
        let (s, source) = (&s, &source);
        async move {
            let outcome = s.poll(source, &Monitored::All).await;
            let failed: Vec<_> = outcome.failed.iter().map(|f| (f.kind, &f.error)).collect();
            match kind {
                Some(kind) => {
                    assert_eq!(failed.len(), 1, "{failed:?}");
                    assert_eq!(failed[0].0, kind, "{failed:?}");
                    assert!(failed[0].1.contains(fragment), "{failed:?}");
                }
                None => assert!(
                    failed.is_empty() && outcome.ingested.is_empty(),
                    "{outcome:?}"
                ),
            }
            outcome
        }
    };

    // Every day's sum fits rust_decimal; the month's does not.
    let overflowing: String = (1..=8)
        .map(|day| format!("1,111111111111,222222222222,LineItem,EC2,Box,Run,,2017-06-{day:02} 00:00:00,1,9999999999999999999999999999,1\n"))
        .collect();
    s.server.put(BUCKET, &key, upload(overflowing)).await;
    poll_and_expect(Some(FailureKind::Content), "28 significant digits").await;
    let unchanged = poll_and_expect(None, "").await;
    assert_eq!(unchanged.unchanged, 1, "the same bytes are not read again");

    // A new version that parses, but holds a byte PostgreSQL refuses: also the content's fault.
    let nul = "1,111111111111,222222222222,LineItem,EC2\0,Box,Run,,2017-06-01 00:00:00,1,1,1\n"
        .to_owned();
    s.server.put(BUCKET, &key, upload(nul)).await;
    poll_and_expect(Some(FailureKind::Content), "").await;
    poll_and_expect(None, "").await;
    let kind: String = sqlx::query_scalar("SELECT failure_kind FROM report_status WHERE key = $1")
        .bind(&key)
        .fetch_one(s.store.pool())
        .await
        .unwrap();
    assert_eq!(kind, "content");

    // A good version is read as soon as AWS writes it. A line item dated in the month before is
    // kept in this month, and counted.
    let good = "1,111111111111,222222222222,LineItem,EC2,Box,Run,,2017-06-01 00:00:00,1,1.5,1.25\n\
                1,111111111111,222222222222,LineItem,EC2,Box,Run,,2017-05-31 23:00:00,1,1,1\n"
        .to_owned();
    s.server.put(BUCKET, &key, upload(good)).await;
    let outcome = s.poll(&source, &Monitored::All).await;
    assert_eq!(ingested_keys(&outcome), [key.as_str()]);
    let (outside, kind): (Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT rows_outside_period, failure_kind FROM report_status WHERE key = $1",
    )
    .bind(&key)
    .fetch_one(s.store.pool())
    .await
    .unwrap();
    assert_eq!((outside, kind), (Some(1), None));
    s.finish().await;
}
