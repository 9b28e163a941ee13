//! Many integrations in one deployment: each customer's bucket, credentials and monitored
//! accounts side by side, a reseller's bucket shared by two customers, one integration failing
//! while the others go on, replicas sharing the work, and listings narrowed to known payers.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};

use futures_util::StreamExt;
use rust_decimal::Decimal;
use sqlx::{Connection, PgPool};

use crate::common::s3::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};
use crate::common::sts::Sts;
use crate::common::views::expected_monthly;
use crate::common::*;
use dbr_ingest::domain::{AccountId, IntegrationName};
use dbr_ingest::failure::{Classify, FailureKind};
use dbr_ingest::ingest::{IntegrationPolled, Member, PollOutcome, SourceGroup, poll_groups};

const ROLE_KEY: &str = "dbr-test-role-access-key";
const ROLE_SECRET: &str = "dbr-test-role-secret-key";

fn name(text: &str) -> IntegrationName {
    text.parse().unwrap()
}

fn account(text: &str) -> AccountId {
    text.parse().unwrap()
}

/// Runs the binary against `database_url` and the S3 server, with no bucket configured: the
/// integrations table says what to read.
fn run(args: &[&str], database_url: &str, env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("DBR_CONFIG", "/dev/null")
        .env("RUST_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

/// Adds an integration reading `bucket` of the test server.
fn add(db: &str, server: &S3Server, integration: &str, bucket: &str, extra: &[&str]) {
    let mut args = vec![
        "integrations",
        "add",
        integration,
        "--bucket",
        bucket,
        "--endpoint-url",
        &server.endpoint,
        "--force-path-style",
        "--region",
        REGION,
    ];
    args.extend_from_slice(extra);
    succeeds(run(&args, db, &[]));
}

/// (account, period) → unblended cost, as the monthly view shows one integration.
async fn monthly_of(pool: &PgPool, integration: &str) -> BTreeMap<(String, String), Decimal> {
    let rows: Vec<(String, String, Decimal)> = sqlx::query_as(
        "SELECT linked_account_id, to_char(billing_period, 'YYYY-MM'), unblended_cost
         FROM account_monthly_costs WHERE integration = $1",
    )
    .bind(integration)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().map(|(a, p, c)| ((a, p), c)).collect()
}

/// What the generator says the monthly view holds for `accounts` (all when empty).
fn expected_of(reports: &[&Report], accounts: &[&str]) -> BTreeMap<(String, String), Decimal> {
    expected_monthly(reports)
        .into_iter()
        .filter(|((_, account, _), _)| accounts.is_empty() || accounts.contains(&account.as_str()))
        .map(|((_, account, period), value)| ((account, period), value.0))
        .collect()
}

/// Every linked account any contract view shows for `integration`, and usages stored for it
/// that none of its daily rows refers to (there must be none: they may be another's).
async fn visible_to(pool: &PgPool, integration: &str) -> (BTreeSet<String>, i64) {
    let accounts: Vec<String> = sqlx::query_scalar(
        "SELECT linked_account_id FROM account_monthly_costs WHERE integration = $1
         UNION SELECT linked_account_id FROM account_daily_costs WHERE integration = $1
         UNION SELECT linked_account_id FROM account_reconciliation WHERE integration = $1
         UNION SELECT linked_account_id FROM daily_costs_by_service WHERE integration = $1
         UNION SELECT linked_account_id FROM cost_by_tag WHERE integration = $1
         UNION SELECT linked_account_id FROM top_resources WHERE integration = $1
         UNION SELECT \"SubAccountId\" FROM focus_costs WHERE \"x_Integration\" = $1",
    )
    .bind(integration)
    .fetch_all(pool)
    .await
    .unwrap();
    let stray: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM daily_usages u JOIN statements s ON s.version = u.statement_version
         WHERE s.integration = $1 AND NOT EXISTS (
             SELECT 1 FROM daily_costs d
             WHERE d.statement_version = u.statement_version AND d.usage_id = u.usage_id)",
    )
    .bind(integration)
    .fetch_one(pool)
    .await
    .unwrap();
    (accounts.into_iter().collect(), stray)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_read_their_own_buckets_with_their_own_credentials_and_accounts() {
    let server = S3Server::start_with_keys(&[(ROLE_KEY, ROLE_SECRET)]).await;
    let sts = Sts::start(ROLE_KEY, ROLE_SECRET).await;
    server.create_bucket("alpha-billing").await;
    server.create_bucket("beta-billing").await;
    let dir = tempfile::tempdir().unwrap();
    let alpha = report(
        dir.path(),
        "",
        "111111111111",
        "with-resources-and-tags",
        "2017-01",
        &["--accounts", "111111111111,000000000011", "--seed", "1"],
    );
    let beta = report(
        dir.path(),
        "dbr/",
        "333333333333",
        "plain",
        "2017-02",
        &["--accounts", "333333333333,000000000033", "--seed", "2"],
    );
    server
        .put("alpha-billing", &alpha.key, alpha.zip.clone())
        .await;
    server
        .put("beta-billing", &beta.key, beta.zip.clone())
        .await;
    let db = TestDatabase::new();
    let store = db.store().await;
    let url = db.url.as_str();

    add(
        url,
        &server,
        "alpha",
        "alpha-billing",
        &["--monitored", "000000000011"],
    );
    add(
        url,
        &server,
        "beta",
        "beta-billing",
        &[
            "--prefix",
            "dbr/",
            "--role-arn",
            "arn:aws:iam::333333333333:role/billing-reader",
            "--external-id",
            "ext-beta-42",
            "--monitored",
            "*",
        ],
    );
    let taken = run(
        &[
            "integrations",
            "add",
            "alpha",
            "--source",
            "dir:/tmp",
            "--monitored",
            "*",
        ],
        url,
        &[],
    );
    assert!(!taken.status.success());
    assert!(text(&taken.stderr).contains("exists already"), "{taken:?}");

    let sts_env = [("AWS_ENDPOINT_URL_STS", sts.endpoint.clone())];
    let once = succeeds(run(&["once"], url, &sts_env));
    assert!(once.contains("[alpha] 1 ingested, 0 failed"), "{once}");
    assert!(once.contains("[beta] 1 ingested, 0 failed"), "{once}");

    let pool = store.pool();
    assert_eq!(
        monthly_of(pool, "alpha").await,
        expected_of(&[&alpha], &["000000000011"])
    );
    assert_eq!(monthly_of(pool, "beta").await, expected_of(&[&beta], &[]));
    let (seen, stray) = visible_to(pool, "alpha").await;
    assert_eq!(seen, BTreeSet::from(["000000000011".to_owned()]));
    assert_eq!(stray, 0);

    // The role was assumed once, with its external ID, and its credentials read the bucket.
    let assumed = sts.requests();
    assert_eq!(assumed.len(), 1, "{assumed:?}");
    assert_eq!(assumed[0]["Action"], "AssumeRole");
    assert_eq!(
        assumed[0]["RoleArn"],
        "arn:aws:iam::333333333333:role/billing-reader"
    );
    assert_eq!(assumed[0]["ExternalId"], "ext-beta-42");
    assert_eq!(assumed[0]["RoleSessionName"], "dbr-ingest");
    assert_eq!(
        server.used_keys(),
        BTreeSet::from([ACCESS_KEY.to_owned(), ROLE_KEY.to_owned()])
    );

    let listed: serde_json::Value = serde_json::from_str(&succeeds(run(
        &["integrations", "list", "--json"],
        url,
        &[],
    )))
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[0]["name"], "alpha");
    assert_eq!(listed[0]["monitored"], serde_json::json!(["000000000011"]));
    assert_eq!(listed[1]["role"]["external_id"], "ext-beta-42");
    assert_eq!(listed[1]["location"], "s3://beta-billing/dbr/");
    let shown = succeeds(run(&["integrations", "show", "beta"], url, &[]));
    assert!(
        shown.contains("stored      1 statements; reports: 1 ingested"),
        "{shown}"
    );

    let checked = succeeds(run(&["check", "--integration", "beta"], url, &sts_env));
    assert!(
        checked.contains("ok      reading dbr/333333333333"),
        "{checked}"
    );

    // A dashboard reading beta's full grain, its transaction left open, holds locks on beta's
    // partitions alone; alpha's swap below does not wait for it (it would give up after 30
    // tries of 2 s, and `once` fail).
    let mut dashboard = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut dashboard).await.unwrap();
    let rows: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM focus_costs WHERE "x_Integration" = 'beta'"#)
            .fetch_one(&mut dashboard)
            .await
            .unwrap();
    assert!(rows > 0);
    let locked: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
         WHERE l.pid = pg_backend_pid()
           AND c.relname ~ '^(daily_costs|daily_usages|usage_kinds)_[0-9]+$'
         ORDER BY 1",
    )
    .fetch_all(&mut dashboard)
    .await
    .unwrap();
    let beta_version: i64 =
        sqlx::query_scalar("SELECT version FROM statements WHERE integration = 'beta'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(
        locked,
        [
            format!("daily_costs_{beta_version}"),
            format!("daily_usages_{beta_version}"),
            format!("usage_kinds_{beta_version}")
        ]
    );

    // A changed monitored set reads the integration's report again; nothing else changes.
    let updated = succeeds(run(
        &[
            "integrations",
            "update",
            "alpha",
            "--monitored",
            "111111111111,000000000011",
        ],
        url,
        &[],
    ));
    assert!(
        updated.contains("alpha updated: monitored 000000000011 -> 000000000011,111111111111"),
        "{updated}"
    );
    let once = succeeds(run(&["once"], url, &sts_env));
    assert!(
        once.contains(&format!(
            "[alpha] ingested  {} (monitored accounts changed)",
            alpha.key
        )),
        "{once}"
    );
    assert!(
        once.contains("[beta] 0 ingested, 0 failed, 1 unchanged"),
        "{once}"
    );
    assert_eq!(
        monthly_of(pool, "alpha").await,
        expected_of(&[&alpha], &["111111111111", "000000000011"])
    );
    sqlx::query("COMMIT").execute(&mut dashboard).await.unwrap();
    let nothing = run(&["once", "--integration", "gamma"], url, &[]);
    assert!(
        text(&nothing.stderr).contains("there is no integration named gamma"),
        "{nothing:?}"
    );

    // Disabled: not polled, data kept. Removed: its data leaves the views.
    succeeds(run(&["integrations", "disable", "alpha"], url, &[]));
    let once = succeeds(run(&["once"], url, &sts_env));
    assert!(
        !once.contains("[alpha]") && !once.contains("integration alpha"),
        "{once}"
    );
    assert!(!monthly_of(pool, "alpha").await.is_empty());
    let removed = succeeds(run(&["integrations", "remove", "alpha"], url, &[]));
    assert!(removed.contains("1 statements left the views"), "{removed}");
    assert!(monthly_of(pool, "alpha").await.is_empty());
    let partitions: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_partition_tree('daily_costs') WHERE isleaf),
                (SELECT count(*) FROM pg_inherits WHERE inhparent = 'daily_costs'::regclass)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        partitions,
        (1, 1),
        "only beta's month is left, and beta's table"
    );
    assert_eq!(monthly_of(pool, "beta").await, expected_of(&[&beta], &[]));

    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_payer_bucket_is_read_once_and_each_integration_sees_only_its_accounts() {
    let server = S3Server::start().await;
    server.create_bucket("reseller").await;
    let dir = tempfile::tempdir().unwrap();
    let accounts = "222222222222,000000000001,000000000002,000000000003";
    let months: Vec<Report> = ["2017-05", "2017-06"]
        .iter()
        .enumerate()
        .map(|(i, period)| {
            let seed = (i + 5).to_string();
            report(
                dir.path(),
                "",
                "222222222222",
                "with-resources-and-tags",
                period,
                &["--accounts", accounts, "--seed", &seed, "--rows", "600"],
            )
        })
        .collect();
    for month in &months {
        server.put("reseller", &month.key, month.zip.clone()).await;
    }
    let db = TestDatabase::new();
    let store = db.store().await;
    let (a, b) = (name("customer-a"), name("customer-b"));
    register(&store, &a, "reseller", "000000000001").await;
    register(&store, &b, "reseller", "000000000002,000000000003").await;
    let source = server.source("reseller", "").await;
    let members = [&a, &b].map(|integration| Member {
        integration: integration.clone(),
        configured: None,
    });
    let poll = || poll_one_source(&source, &members, &store);

    let first = poll().await;
    for integration in ["customer-a", "customer-b"] {
        assert_eq!(first[integration].ingested.len(), 2, "{first:?}");
    }
    // One listing page and one read per report, for both integrations together.
    assert_eq!(first["customer-a"].s3_requests, 3);
    assert_eq!(first["customer-b"].s3_requests, 0);

    let reports: Vec<&Report> = months.iter().collect();
    let pool = store.pool();
    assert_eq!(
        monthly_of(pool, "customer-a").await,
        expected_of(&reports, &["000000000001"])
    );
    assert_eq!(
        monthly_of(pool, "customer-b").await,
        expected_of(&reports, &["000000000002", "000000000003"])
    );
    for (integration, own) in [
        ("customer-a", vec!["000000000001"]),
        ("customer-b", vec!["000000000002", "000000000003"]),
    ] {
        let (seen, stray) = visible_to(pool, integration).await;
        let own: BTreeSet<String> = own.into_iter().map(String::from).collect();
        assert_eq!(seen, own, "{integration}");
        assert_eq!(stray, 0, "{integration} holds usages of other accounts");
        // The ledger counts each integration's own rows as kept, the others' as dropped.
        let counted: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT rows_read, rows_kept, rows_dropped FROM report_status
             WHERE integration = $1 ORDER BY key",
        )
        .bind(integration)
        .fetch_all(pool)
        .await
        .unwrap();
        for (month, (read, kept, dropped)) in months.iter().zip(counted) {
            let own_items: i64 = month.expected["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| own.contains(a["linked_account_id"].as_str().unwrap()))
                .map(|a| a["line_items"].as_i64().unwrap())
                .sum();
            assert_eq!(kept, own_items, "{integration}");
            assert_eq!(kept + dropped, 600, "{integration}");
            assert!(read >= 600);
        }
    }

    // One customer monitors one more account: only its statements are read again.
    store
        .add_monitored_account(&b, &account("000000000001"), None)
        .await
        .unwrap();
    let second = poll().await;
    assert_eq!(second["customer-a"].unchanged, 2, "{second:?}");
    assert_eq!(second["customer-b"].ingested.len(), 2, "{second:?}");
    assert_eq!(
        monthly_of(pool, "customer-b").await,
        expected_of(&reports, &["000000000001", "000000000002", "000000000003"])
    );
    assert_eq!(
        monthly_of(pool, "customer-a").await,
        expected_of(&reports, &["000000000001"])
    );
    // Both read 000000000001: the status page's months count it once.
    let status = store.status().await.unwrap();
    let mut payer_months: BTreeMap<String, Decimal> = BTreeMap::new();
    for ((_, period), cost) in
        expected_of(&reports, &["000000000001", "000000000002", "000000000003"])
    {
        *payer_months.entry(period).or_default() += cost;
    }
    let shown: BTreeMap<String, Decimal> = status
        .months
        .iter()
        .map(|m| (m.period.format("%Y-%m").to_string(), m.unblended_cost))
        .collect();
    assert_eq!(shown, payer_months);

    // Removed while a poll holds it (planned with its monitored accounts, which the removal
    // took away after): its reports are read, and nothing is stored.
    store.remove_integration(&a).await.unwrap();
    store
        .add_monitored_account(&a, &account("000000000001"), None)
        .await
        .unwrap();
    let third = poll().await;
    assert_eq!(third["customer-a"].failed.len(), 2, "{third:?}");
    assert!(third["customer-a"].failed[0].error.contains("was removed"));
    assert_eq!(third["customer-b"].unchanged, 2, "{third:?}");
    assert!(monthly_of(pool, "customer-a").await.is_empty());
    let ledger: i64 =
        sqlx::query_scalar("SELECT count(*) FROM report_status WHERE integration = 'customer-a'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(ledger, 0, "a removed integration keeps no ledger");

    store.pool().close().await;
    db.drop_database().await;
}

/// Stores an integration reading `bucket` (the tests poll it through a source of their own).
async fn register(
    store: &dbr_ingest::store::Store,
    integration: &IntegrationName,
    bucket: &str,
    monitored: &str,
) {
    let definition = dbr_ingest::integration::Integration {
        name: integration.clone(),
        source: dbr_ingest::integration::IntegrationSource::S3(dbr_ingest::config::S3Settings {
            bucket: bucket.into(),
            prefix: String::new(),
            region: Some(REGION.into()),
            endpoint_url: None,
            force_path_style: true,
            assume_role: None,
            read_timeout: std::time::Duration::from_secs(60),
        }),
        monitored: None,
        enabled: true,
        report_name: None,
    };
    let monitored = dbr_ingest::domain::Monitored::parse(monitored).unwrap();
    store
        .add_integration(&definition, &monitored)
        .await
        .unwrap();
}

/// Polls these integrations of one source; their outcomes by name (panics on an integration
/// that could not be polled).
async fn poll_one_source(
    source: &dbr_ingest::source::Source,
    members: &[Member],
    store: &dbr_ingest::store::Store,
) -> BTreeMap<String, PollOutcome> {
    let group = SourceGroup {
        report_name: None,
        source,
        members: members.to_vec(),
    };
    let polled: Vec<IntegrationPolled> =
        poll_groups(&[group], store, 2, &memory_budget(DEFAULT_BUDGET)).await;
    polled
        .into_iter()
        .map(|p| (p.integration.to_string(), p.outcome.unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_fails_its_integration_alone() {
    let server = S3Server::start().await;
    server.create_bucket("good-billing").await;
    let dir = tempfile::tempdir().unwrap();
    let good = report(
        dir.path(),
        "",
        "444444444444",
        "plain",
        "2017-03",
        &["--seed", "4"],
    );
    server
        .put("good-billing", &good.key, good.zip.clone())
        .await;
    let db = TestDatabase::new();
    let store = db.store().await;
    let url = db.url.as_str();
    let nothing = run(&["once"], url, &[]);
    assert!(!nothing.status.success());
    assert!(
        text(&nothing.stderr).contains("nothing to poll: set DBR_BUCKET"),
        "{nothing:?}"
    );
    add(
        url,
        &server,
        "gone",
        "no-such-bucket",
        &["--monitored", "*"],
    );
    add(url, &server, "good", "good-billing", &["--monitored", "*"]);

    let once = run(&["once"], url, &[]);
    assert!(!once.status.success(), "one integration failed");
    let stdout = text(&once.stdout);
    assert!(
        stdout.contains(
            "failed    integration gone: listing s3://no-such-bucket/: there is no such bucket"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("[good] 1 ingested, 0 failed"), "{stdout}");
    assert_eq!(
        monthly_of(store.pool(), "good").await,
        expected_of(&[&good], &[])
    );
    let checked = run(&["check"], url, &[]);
    assert!(!checked.status.success());
    let report = text(&checked.stdout);
    assert!(report.contains("integration gone:"), "{report}");
    assert!(
        report.contains("FAILED  listing s3://no-such-bucket/"),
        "{report}"
    );
    assert!(report.contains("ok      reading 444444444444"), "{report}");

    // In the library: the failure is the gone one's, with its kind.
    let gone = server.source("no-such-bucket", "").await;
    let fine = server.source("good-billing", "").await;
    let member = |integration: &str| Member {
        integration: name(integration),
        configured: Some(dbr_ingest::domain::Monitored::All),
    };
    let groups = [
        SourceGroup {
            report_name: None,
            source: &gone,
            members: vec![member("gone")],
        },
        SourceGroup {
            report_name: None,
            source: &fine,
            members: vec![member("good")],
        },
    ];
    let polled = poll_groups(&groups, &store, 2, &memory_budget(DEFAULT_BUDGET)).await;
    let error = polled[0].outcome.as_ref().unwrap_err();
    assert_eq!(error.kind(), FailureKind::Configuration, "{error}");
    assert_eq!(polled[1].outcome.as_ref().unwrap().unchanged, 1);

    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_every_integration_without_a_double_ingest() {
    let server = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::new();
    let store = db.store().await;
    let url = db.url.as_str();
    let mut expected = Vec::new();
    for (i, integration) in ["north", "south", "east"].iter().enumerate() {
        let bucket = format!("{integration}-billing");
        server.create_bucket(&bucket).await;
        let payer = format!("55555555555{i}");
        for period in ["2017-07", "2017-08"] {
            let r = report(
                dir.path(),
                "",
                &payer,
                "plain",
                period,
                &["--accounts", &payer, "--seed", &i.to_string()],
            );
            server.put(&bucket, &r.key, r.zip.clone()).await;
            expected.push((integration.to_string(), r));
        }
        add(url, &server, integration, &bucket, &["--monitored", "*"]);
    }
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| run(&["once"], url, &[("DBR_CONCURRENCY", "1".into())]));
        let b = scope.spawn(|| run(&["once"], url, &[("DBR_CONCURRENCY", "1".into())]));
        (succeeds(a.join().unwrap()), succeeds(b.join().unwrap()))
    });
    let ingested_lines = |out: &str, integration: &str| {
        out.lines()
            .filter(|line| line.starts_with(&format!("[{integration}] ingested  ")))
            .count()
    };
    for integration in ["north", "south", "east"] {
        assert_eq!(
            ingested_lines(&a, integration) + ingested_lines(&b, integration),
            2,
            "{integration}: each report once\n{a}\n{b}"
        );
        let reports: Vec<&Report> = expected
            .iter()
            .filter(|(i, _)| i == integration)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(
            monthly_of(store.pool(), integration).await,
            expected_of(&reports, &[])
        );
    }
    let versions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_partition_tree('daily_costs') WHERE isleaf")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(versions, 6, "one version per statement, none written twice");

    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_payers_are_listed_by_prefix_in_a_crowded_bucket() {
    let server = S3Server::start().await;
    server.create_bucket("crowded").await;
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..1500).map(|i| format!("cur/part-{i:05}.csv")).collect();
    let puts = keys
        .iter()
        .map(|key| server.put("crowded", key, vec![b'x']));
    futures_util::stream::iter(puts)
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let first = report(
        dir.path(),
        "",
        "666666666666",
        "plain",
        "2017-04",
        &["--seed", "6"],
    );
    server.put("crowded", &first.key, first.zip.clone()).await;
    let db = TestDatabase::new();
    let store = db.store().await;
    register(&store, &name("crowded"), "crowded", "*").await;
    let source = server.source("crowded", "").await;
    let members = [Member {
        integration: name("crowded"),
        configured: Some(dbr_ingest::domain::Monitored::All),
    }];
    let poll = || async {
        poll_one_source(&source, &members, &store)
            .await
            .remove("crowded")
            .unwrap()
    };

    let whole = poll().await;
    assert_eq!(whole.ingested.len(), 1);
    assert_eq!(whole.ignored, 1500);
    assert_eq!(
        whole.s3_requests,
        1 + 2 + 1,
        "the top level, the crowded folder's two pages of a thousand, one read"
    );

    // The payer is known: only its prefix is listed, a request whatever the bucket holds.
    let rewritten = report(
        dir.path(),
        "",
        "666666666666",
        "plain",
        "2017-04",
        &["--seed", "7"],
    );
    server
        .put("crowded", &rewritten.key, rewritten.zip.clone())
        .await;
    let other_payer = report(
        dir.path(),
        "",
        "777777777777",
        "plain",
        "2017-04",
        &["--seed", "8"],
    );
    server
        .put("crowded", &other_payer.key, other_payer.zip.clone())
        .await;
    let narrow = poll().await;
    assert_eq!(narrow.ingested.len(), 1, "{narrow:?}");
    assert_eq!(narrow.ingested[0].object_key, rewritten.key);
    assert_eq!(narrow.ignored, 0);
    assert_eq!(narrow.s3_requests, 1 + 1);

    // A day later the bucket is listed whole again, and the new payer is found.
    sqlx::query("UPDATE full_listings SET listed_at = listed_at - interval '25 hours'")
        .execute(store.pool())
        .await
        .unwrap();
    let again = poll().await;
    assert_eq!(again.ingested.len(), 1, "{again:?}");
    assert_eq!(again.ingested[0].object_key, other_payer.key);
    assert_eq!(again.s3_requests, 1 + 2 + 1);
    assert_eq!(
        monthly_of(store.pool(), "crowded").await,
        expected_of(&[&rewritten, &other_payer], &[])
    );

    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_polls_every_integration_and_takes_in_new_ones() {
    use crate::common::net::{Daemon, eventually};
    let server = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::new();
    let store = db.store().await;
    let url = db.url.as_str();
    let mut months = Vec::new();
    for (integration, payer) in [("first", "888888888881"), ("second", "888888888882")] {
        server.create_bucket(integration).await;
        let r = report(dir.path(), "", payer, "plain", "2017-10", &["--seed", "3"]);
        server.put(integration, &r.key, r.zip.clone()).await;
        months.push(r);
    }
    add(url, &server, "first", "first", &["--monitored", "*"]);
    add(
        url,
        &server,
        "broken",
        "no-such-bucket",
        &["--monitored", "*"],
    );
    let daemon = Daemon::start(&[
        ("DATABASE_URL", url.to_owned()),
        ("DBR_POLL_INTERVAL", "10s".to_owned()),
        // The broken integration's error, every poll, is expected.
        ("RUST_LOG", "off".to_owned()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]);
    let ingested = |payer: &str, integration: &str| {
        format!("dbr_reports_ingested_total{{payer=\"{payer}\",integration=\"{integration}\"}}")
    };
    let first = ingested("888888888881", "first");
    assert!(
        eventually(30, || async { daemon.metric(&first).await == Some(1.0) }).await,
        "the first integration is ingested"
    );
    assert!(daemon.metric("dbr_poll_errors_total").await.unwrap() >= 1.0);
    let polled = r#"dbr_integration_last_successful_poll_timestamp_seconds{integration="first"}"#;
    assert!(daemon.metric(polled).await.unwrap() > 1.7e9);

    // Added while the daemon runs: the next poll takes it in.
    add(url, &server, "second", "second", &["--monitored", "*"]);
    let second = ingested("888888888882", "second");
    assert!(
        eventually(30, || async { daemon.metric(&second).await == Some(1.0) }).await,
        "the second integration is ingested at the next poll"
    );
    assert_eq!(daemon.metric(&first).await, Some(1.0), "not read twice");
    assert!(daemon.terminate().await);
    assert_eq!(
        monthly_of(store.pool(), "second").await,
        expected_of(&[&months[1]], &[])
    );
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_role_reads_the_contract_views_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let r = report(
        dir.path(),
        "",
        "999999999990",
        // Resources and tags: every contract view has rows.
        "with-resources-and-tags",
        "2017-11",
        &["--accounts", "999999999990,000000000091", "--seed", "9"],
    );
    std::fs::write(bucket.path().join(&r.key), &r.zip).unwrap();
    let db = TestDatabase::new();
    let store = db.store().await;
    let url = db.url.as_str();
    let source = format!("dir:{}", bucket.path().display());
    for (integration, monitored) in [("team-a", "999999999990"), ("team-b", "000000000091")] {
        succeeds(run(
            &[
                "integrations",
                "add",
                integration,
                "--source",
                &source,
                "--monitored",
                monitored,
            ],
            url,
            &[],
        ));
    }
    succeeds(run(&["once"], url, &[]));

    let admin = PgPool::connect(&server_url()).await.unwrap();
    let (everything, team_a) = (
        format!("read_all_{}", db.name),
        format!("read_a_{}", db.name),
    );
    for role in [&everything, &team_a] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'reader'"
        )))
        .execute(&admin)
        .await
        .unwrap();
    }
    let missing = run(&["grant-reader", "nobody_here"], url, &[]);
    assert!(
        text(&missing.stderr).contains("there is no role nobody_here"),
        "{missing:?}"
    );
    succeeds(run(&["grant-reader", &everything], url, &[]));
    let granted = succeeds(run(
        &["grant-reader", &team_a, "--integration", "team-a"],
        url,
        &[],
    ));
    assert!(granted.contains("in schema dbr_team_a"), "{granted}");

    let connect = |role: &str| {
        let url = db.url.replacen("postgres@", &format!("{role}@"), 1) + "?password=reader";
        async move { PgPool::connect(&url).await.unwrap() }
    };
    let integrations = |pool: PgPool, view: &'static str| async move {
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT {} FROM {view} ORDER BY 1",
            dbr_ingest::store::integration_column(view)
        )))
        .fetch_all(&pool)
        .await
    };
    let refused = |result: Result<Vec<String>, sqlx::Error>| {
        result
            .unwrap_err()
            .as_database_error()
            .and_then(|e| e.code())
            .as_deref()
            == Some("42501")
    };
    let reader = connect(&everything).await;
    for view in dbr_ingest::store::contract_view_names() {
        assert_eq!(
            integrations(reader.clone(), view).await.unwrap(),
            ["team-a", "team-b"],
            "{view}"
        );
    }
    for table in [
        "daily_costs",
        "reports",
        "integrations",
        "monitored_accounts",
    ] {
        let read = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
            "SELECT 'x' FROM {table} LIMIT 1"
        )))
        .fetch_all(&reader)
        .await;
        assert!(refused(read), "{table} is not the reader's");
    }
    let one = connect(&team_a).await;
    for view in dbr_ingest::store::contract_view_names() {
        assert_eq!(
            integrations(one.clone(), view).await.unwrap(),
            ["team-a"],
            "{view}"
        );
    }
    assert!(refused(
        integrations(one.clone(), "public.account_monthly_costs").await
    ));

    reader.close().await;
    one.close().await;
    store.pool().close().await;
    db.drop_database().await;
    for role in [&everything, &team_a] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
            .execute(&admin)
            .await
            .unwrap();
    }
}
