//! Operating the daemon: its HTTP endpoint and metrics, readiness following the database,
//! several replicas, a clean stop in the middle of a report, and `check`.

use std::path::Path;

use crate::common::net::{Daemon, Proxy, eventually, free_port, http_get};
use crate::common::s3::S3Server;
use crate::common::*;
use sqlx::{AssertSqlSafe, PgPool};

const BUCKET: &str = "billing";
const PAYER_ID: &str = "111111111111";

/// Uploads a generated report of `PAYER_ID`; returns its key and the generator's totals.
async fn upload(
    server: &S3Server,
    dir: &Path,
    period: &str,
    args: &[&str],
) -> (String, serde_json::Value) {
    let report = report(dir, "", PAYER_ID, "plain", period, args);
    server.put(BUCKET, &report.key, report.zip).await;
    (report.key, report.expected)
}

/// The daemon's environment for this bucket and database.
fn daemon_env(
    server: &S3Server,
    database_url: &str,
    extra: &[(&str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = server.env();
    env.push(("DATABASE_URL", database_url.to_owned()));
    env.push(("DBR_BUCKET", BUCKET.to_owned()));
    env.push(("DBR_MONITORED_ACCOUNTS", "*".to_owned()));
    for (name, value) in extra {
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        env.push((name, value.to_string()));
    }
    env
}

async fn ingested_keys(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT key FROM report_status WHERE status = 'ingested' ORDER BY key")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_an_ingest_and_readiness_follows_the_database_from_the_start() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, january) = upload(
        &server,
        dir.path(),
        "2017-01",
        &["--rows", "300", "--seed", "1"],
    )
    .await;
    let (_, february) = upload(
        &server,
        dir.path(),
        "2017-02",
        &["--rows", "200", "--seed", "2"],
    )
    .await;
    server
        .put(BUCKET, "aws-programmatic-access-test-object", Vec::new())
        .await;
    let db = TestDatabase::new();
    let store = db.store().await;
    // The daemon reaches PostgreSQL through a proxy the test can cut: cut at start.
    let postgres = Proxy::start("127.0.0.1:5432".parse().unwrap(), None).await;
    postgres.down();
    let through_proxy =
        db.url
            .replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", postgres.port), 1);
    let daemon = Daemon::start(&daemon_env(
        &server,
        &through_proxy,
        &[("DBR_POLL_INTERVAL", "1h")],
    ));
    // Up without its database: alive, not ready, and waiting for it rather than exiting.
    let status =
        |path: &'static str| async move { http_get(daemon.http_port, path).await.map(|r| r.0) };
    assert!(eventually(20, || async { status("/healthz").await == Some(200) }).await);
    assert_eq!(status("/readyz").await, Some(503));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        status("/healthz").await,
        Some(200),
        "still up after a few attempts"
    );
    postgres.up().await;

    let ingested = r#"dbr_reports_ingested_total{payer="111111111111",integration="default"}"#;
    assert!(
        eventually(30, || async { daemon.metric(ingested).await == Some(2.0) }).await,
        "two reports ingested"
    );
    let kept =
        january["rows"]["kept"].as_u64().unwrap() + february["rows"]["kept"].as_u64().unwrap();
    assert_eq!(
        daemon
            .metric(r#"dbr_rows_kept_total{payer="111111111111",integration="default"}"#)
            .await,
        Some(kept as f64)
    );
    assert_eq!(
        daemon
            .metric(r#"dbr_rows_dropped_total{payer="111111111111",integration="default"}"#)
            .await,
        Some(0.0)
    );
    assert!(daemon.metric("dbr_bytes_downloaded_total").await.unwrap() > 0.0);
    assert!(daemon.metric("dbr_bytes_inflated_total").await.unwrap() > 0.0);
    assert!(
        eventually(10, || async {
            daemon
                .metric("dbr_last_successful_poll_timestamp_seconds")
                .await
                .unwrap()
                > 1.7e9
        })
        .await
    );
    let polled = r#"dbr_integration_last_successful_poll_timestamp_seconds{integration="default"}"#;
    assert!(daemon.metric(polled).await.unwrap() > 1.7e9);
    // One listing page and two reports read.
    let requests = r#"dbr_s3_requests_total{integration="default"}"#;
    assert!(daemon.metric(requests).await.unwrap() >= 3.0);
    assert_eq!(
        daemon
            .metric("dbr_report_ingest_duration_seconds_count")
            .await,
        Some(2.0)
    );
    assert_eq!(ingested_keys(store.pool()).await.len(), 2);

    assert_eq!(
        http_get(daemon.http_port, "/healthz").await.map(|r| r.0),
        Some(200)
    );
    assert_eq!(
        http_get(daemon.http_port, "/readyz").await.map(|r| r.0),
        Some(200)
    );
    postgres.down();
    let not_ready =
        || async { http_get(daemon.http_port, "/readyz").await.map(|r| r.0) == Some(503) };
    assert!(
        eventually(20, not_ready).await,
        "/readyz says 503 without the database"
    );
    assert_eq!(
        http_get(daemon.http_port, "/healthz").await.map(|r| r.0),
        Some(200),
        "still alive"
    );
    postgres.up().await;
    let ready = || async { http_get(daemon.http_port, "/readyz").await.map(|r| r.0) == Some(200) };
    assert!(
        eventually(30, ready).await,
        "/readyz recovers with the database"
    );

    assert!(daemon.terminate().await, "SIGTERM stops it cleanly");
    store.pool().close().await;
    db.drop_database().await;
}

/// A dashboard's session that holds ACCESS SHARE on `daily_costs` (as a long query on
/// `focus_costs` does) until it is dropped.
async fn hold_daily_costs(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut dashboard = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut dashboard).await.unwrap();
    sqlx::query("LOCK TABLE daily_costs IN ACCESS SHARE MODE")
        .execute(&mut dashboard)
        .await
        .unwrap();
    dashboard
}

/// The ledger's status and failure kind of the report at `key`.
async fn ledger_of(pool: &PgPool, key: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, failure_kind FROM report_status WHERE key = $1")
        .bind(key)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_gives_up_a_swap_that_a_dashboard_blocks_and_records_it_as_transient() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let (key, old) = upload(&server, dir.path(), "2020-05", &["--seed", "5"]).await;
    let db = TestDatabase::new();
    let store = db.store().await;
    let env = daemon_env(&server, &db.url, &[]);
    assert!(dbr_ingest_with(&["once"], &env).status.success());
    upload(&server, dir.path(), "2020-05", &["--seed", "6"]).await;

    let dashboard = hold_daily_costs(&db.url).await;
    let started = std::time::Instant::now();
    let once = tokio::task::spawn_blocking(move || dbr_ingest_with(&["once"], &env))
        .await
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&once.stdout);
    assert!(!once.status.success(), "{stdout}");
    assert!(
        took < std::time::Duration::from_secs(90),
        "once took {took:?}"
    );
    assert!(stdout.contains("held daily_costs"), "{stdout}");
    assert_eq!(
        ledger_of(store.pool(), &key).await,
        ("failed".into(), Some("transient".into()))
    );
    let kept: i64 = sqlx::query_scalar("SELECT sum(line_items)::bigint FROM account_monthly_costs")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(
        kept,
        old["rows"]["kept"].as_i64().unwrap(),
        "the old month stays"
    );
    drop(dashboard);
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_counts_a_blocked_swap_and_ingests_the_month_at_a_later_poll() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = upload(&server, dir.path(), "2020-07", &["--seed", "7"]).await;
    let db = TestDatabase::new();
    let store = db.store().await;
    let daemon = Daemon::start(&daemon_env(
        &server,
        &db.url,
        &[("DBR_POLL_INTERVAL", "10s")],
    ));
    assert!(
        eventually(60, || async {
            ingested_keys(store.pool()).await.len() == 1
        })
        .await
    );

    let dashboard = hold_daily_costs(&db.url).await;
    let (_, new) = upload(&server, dir.path(), "2020-07", &["--seed", "8"]).await;
    let timeouts = r#"dbr_statement_swap_timeouts_total{integration="default"}"#;
    assert!(
        eventually(100, || async { daemon.metric(timeouts).await == Some(1.0) }).await,
        "the swap gave up and was counted"
    );
    // Counted first, then recorded.
    let failed = ("failed".to_owned(), Some("transient".to_owned()));
    assert!(
        eventually(10, || async {
            ledger_of(store.pool(), &key).await == failed
        })
        .await
    );
    assert_eq!(
        http_get(daemon.http_port, "/readyz").await.map(|r| r.0),
        Some(200)
    );
    drop(dashboard);
    let ingested = || async {
        ledger_of(store.pool(), &key).await.0 == "ingested"
            && sqlx::query_scalar::<_, i64>(
                "SELECT sum(line_items)::bigint FROM account_monthly_costs",
            )
            .fetch_one(store.pool())
            .await
            .unwrap()
                == new["rows"]["kept"].as_i64().unwrap()
    };
    assert!(eventually(60, ingested).await, "the next poll swaps it in");
    assert!(daemon.terminate().await);
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_bucket_ingest_every_report_once() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    let mut expected_items = Vec::new();
    for month in 1..=6 {
        let period = format!("2019-{month:02}");
        let (key, expected) = upload(
            &server,
            dir.path(),
            &period,
            &["--rows", "3000", "--seed", &month.to_string()],
        )
        .await;
        keys.push(key);
        let items: i64 = expected["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["line_items"].as_i64().unwrap())
            .sum();
        expected_items.push((period, items));
    }
    keys.sort();
    let db = TestDatabase::new();
    let store = db.store().await;
    let env = daemon_env(&server, &db.url, &[("DBR_POLL_INTERVAL", "10s")]);
    let (first, second) = (Daemon::start(&env), Daemon::start(&env));
    assert!(
        eventually(60, || async { ingested_keys(store.pool()).await == keys }).await,
        "all six ingested"
    );
    // A few more polls: nothing is read again.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let series = r#"dbr_reports_ingested_total{payer="111111111111",integration="default"}"#;
    let a = first.metric(series).await.unwrap_or(0.0);
    let b = second.metric(series).await.unwrap_or(0.0);
    assert_eq!(a + b, 6.0, "each report once between the two ({a} + {b})");
    let items: Vec<(String, i64)> = sqlx::query_as(
        "SELECT to_char(billing_period, 'YYYY-MM'), sum(line_items)::bigint
         FROM account_monthly_costs GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(items, expected_items, "every month whole, none doubled");
    assert!(first.terminate().await && second.terminate().await);
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_report_leaves_its_month_as_it_was() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, old) = upload(
        &server,
        dir.path(),
        "2020-03",
        &["--rows", "200", "--seed", "3"],
    )
    .await;
    // S3 answers slowly, so the new version of the report is still being read at SIGTERM.
    let slow_s3 = Proxy::start(server.address(), Some(64 * 1024)).await;
    let db = TestDatabase::new();
    let store = db.store().await;
    let mut env = daemon_env(&server, &db.url, &[("DBR_POLL_INTERVAL", "10s")]);
    env.retain(|(name, _)| *name != "AWS_ENDPOINT_URL");
    env.push((
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", slow_s3.port),
    ));
    let daemon = Daemon::start(&env);
    let etag_of = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>("SELECT etag FROM report_status WHERE status = 'ingested'")
            .fetch_optional(&pool)
            .await
            .unwrap()
    };
    assert!(
        eventually(30, || async {
            etag_of(store.pool().clone()).await.is_some()
        })
        .await
    );
    let old_etag = etag_of(store.pool().clone()).await.unwrap();
    let first_read = slow_s3.delivered();

    upload(
        &server,
        dir.path(),
        "2020-03",
        &["--rows", "40000", "--seed", "4"],
    )
    .await;
    // The next poll starts reading the new version: 100 kB more have come through S3.
    assert!(eventually(30, || async { slow_s3.delivered() > first_read + 100_000 }).await);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(daemon.terminate().await, "SIGTERM stops it cleanly");

    assert_eq!(
        etag_of(store.pool().clone()).await,
        Some(old_etag),
        "the ledger still has the old version"
    );
    let items: i64 =
        sqlx::query_scalar("SELECT sum(line_items)::bigint FROM account_monthly_costs")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(
        items,
        old["rows"]["kept"].as_i64().unwrap(),
        "the month is the old one, whole"
    );
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_reports_and_ignored_objects_and_explains_failures() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = upload(&server, dir.path(), "2021-05", &["--rows", "50"]).await;
    server
        .put(
            BUCKET,
            "111111111111-aws-billing-csv-2021-05.csv",
            b"x".to_vec(),
        )
        .await;
    server.put(BUCKET, "notes/readme.txt", b"x".to_vec()).await;
    let db = TestDatabase::new();
    let store = db.store().await;
    let check_with = |args: &[&str], extra: &[(&str, &str)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
            .arg("check")
            .args(args)
            .env("DBR_CONFIG", "/dev/null")
            .env("RUST_LOG", "error")
            .envs(
                daemon_env(&server, &db.url, extra)
                    .iter()
                    .map(|(k, v)| (*k, v.as_str())),
            )
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };

    let check = |extra: &[(&str, &str)]| check_with(&[], extra);
    let (ok, text) = check(&[]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("payer 111111111111 2021-05  {key}")),
        "{text}"
    );
    assert!(text.contains("111111111111-aws-billing-csv-2021-05.csv: not a detailed billing report: the monthly report"), "{text}");
    assert!(
        text.contains("notes/readme.txt: not a detailed billing report"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ok      reading {key}: 50 line items, 50 kept, 0 dropped (not monitored), and 7 footer rows; 3 accounts, totals match the report's AccountTotal rows"
        )),
        "{text}"
    );

    // A report `once` would fail (its payer is not the one its name says) fails `check` too,
    // when it is the one read: the smallest, or any with --read-all.
    let other = report(
        dir.path(),
        "",
        "222222222222",
        "plain",
        "2021-06",
        &["--rows", "5"],
    );
    let foreign_key = other.key.replacen("222222222222", PAYER_ID, 1);
    server.put(BUCKET, &foreign_key, other.zip).await;
    let (ok, text) = check(&[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("FAILED  reading {foreign_key}: line 2, column PayerAccountId: payer \"222222222222\" differs from the report's payer 111111111111")),
        "{text}"
    );
    let (ok, text) = check_with(&["--read-all"], &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("ok      reading {key}: 50 line items")),
        "{text}"
    );
    assert!(
        text.contains(&format!("FAILED  reading {foreign_key}")),
        "{text}"
    );

    let (ok, text) = check(&[("DBR_PREFIX", "nothing-here/")]);
    assert!(!ok);
    assert!(
        text.contains("FAILED  no detailed billing report under s3://billing/nothing-here/"),
        "{text}"
    );

    let (ok, text) = check(&[("AWS_SECRET_ACCESS_KEY", "wrong")]);
    assert!(!ok);
    assert!(
        text.contains("the credentials were refused (SignatureDoesNotMatch)"),
        "{text}"
    );

    let (ok, text) = check(&[(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/dbr_no_such_database",
    )]);
    assert!(!ok);
    assert!(
        text.contains("`dbr-ingest migrate` creates the database"),
        "{text}"
    );
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_needs_no_ddl_rights_once_migrated() {
    let db = TestDatabase::new();
    let store = db.store().await; // The owner applies the migrations.
    let role = format!("svc_{}", db.name);
    let admin = sqlx::PgPool::connect(&server_url()).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'hunter2'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    // As the README grants: nothing from PUBLIC, temporary tables (the rollups are staged in
    // them) and DML on the tables.
    for grant in [
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_owned(),
        format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", db.name),
        format!("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {role}", db.name),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(AssertSqlSafe(grant))
            .execute(store.pool())
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let r = report(
        dir.path(),
        "",
        PAYER_ID,
        "plain",
        "2019-07",
        &["--seed", "7"],
    );
    let bucket = tempfile::tempdir().unwrap();
    std::fs::write(bucket.path().join(&r.key), &r.zip).unwrap();
    // A view dropped by hand: the service cannot restore it, and ingests all the same, saying
    // what dashboards miss (`migrate`, the owner's, restores it).
    sqlx::query("DROP VIEW top_resources")
        .execute(store.pool())
        .await
        .unwrap();
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1) + "?password=hunter2";
    let once = std::process::Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
        .args([
            "once",
            "--source",
            &format!("dir:{}", bucket.path().display()),
        ])
        .env("DATABASE_URL", &url)
        .env("DBR_CONFIG", "/dev/null")
        .env("DBR_MONITORED_ACCOUNTS", "*")
        .output()
        .unwrap();
    let output =
        String::from_utf8_lossy(&once.stdout).into_owned() + &String::from_utf8_lossy(&once.stderr);
    assert!(once.status.success(), "{output}");
    assert!(output.contains("1 ingested, 0 failed"), "{output}");
    assert!(output.contains("view top_resources is missing"), "{output}");
    store.pool().close().await;
    db.drop_database().await;
    sqlx::query(AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_large_copy_stops_within_seconds() {
    let db = TestDatabase::new();
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    // Many resources, so many distinct daily rows to COPY.
    let r = report(
        dir.path(),
        "",
        PAYER_ID,
        "with-resources-and-tags",
        "2019-08",
        &["--seed", "8", "--rows", "40000", "--resources", "20000"],
    );
    let bucket = tempfile::tempdir().unwrap();
    std::fs::write(bucket.path().join(&r.key), &r.zip).unwrap();
    // PostgreSQL is reached through a slow link, so the COPY lasts long enough to interrupt.
    let slow_postgres = Proxy::start("127.0.0.1:5432".parse().unwrap(), Some(128 * 1024)).await;
    let url = db.url.replacen(
        "127.0.0.1:5432",
        &format!("127.0.0.1:{}", slow_postgres.port),
        1,
    );
    let daemon = Daemon::start(&[
        ("DATABASE_URL", url),
        ("DBR_SOURCE", format!("dir:{}", bucket.path().display())),
        ("DBR_MONITORED_ACCOUNTS", "*".into()),
    ]);
    let copying = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT FROM pg_stat_activity
                            WHERE datname = current_database() AND query LIKE 'COPY daily_costs%'
                              AND state = 'active')",
        )
        .fetch_one(store.pool())
        .await
        .unwrap()
    };
    assert!(eventually(60, copying).await, "the COPY started");
    let (clean, took) = daemon.terminate_timed().await;
    assert!(clean, "SIGTERM is a clean stop");
    assert!(took.as_secs_f64() < 5.0, "stopped in {took:?}");
    // The proxy passes the closed connection on to PostgreSQL a moment later.
    let ended = || async { !copying().await };
    assert!(
        eventually(5, ended).await,
        "the COPY was ended, not left running"
    );
    let months: i64 = sqlx::query_scalar("SELECT count(*) FROM account_monthly_costs")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(months, 0, "the month was rolled back");
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_printed_in_any_form() {
    let db = TestDatabase::new();
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let r = report(
        dir.path(),
        "",
        PAYER_ID,
        "plain",
        "2019-09",
        &["--seed", "9"],
    );
    let bucket = tempfile::tempdir().unwrap();
    std::fs::write(bucket.path().join(&r.key), &r.zip).unwrap();
    let secrets = [
        "hunter2-db",
        "hunter2-ssl",
        "AWSSECRETKEY0123",
        "SESSIONTOKEN0123",
    ];
    let unreachable = "postgres://u:hunter2-db@127.0.0.1:1/db?sslpassword=hunter2-ssl".to_owned();
    // PostgreSQL here trusts local connections, so the password is sent and ignored.
    let reachable = format!("{}?password=hunter2-db&sslpassword=hunter2-ssl", db.url);
    let config = dir.path().join("broken.toml");
    std::fs::write(
        &config,
        "source = \"s3\"\ndatabase_url = \"postgres://u:hunter2-db@h/d\n",
    )
    .unwrap();
    let source = format!("dir:{}", bucket.path().display());
    for url in [&unreachable, &reachable] {
        for command in ["check", "migrate", "once", "accounts list"] {
            for (level, format) in [("trace", "text"), ("trace", "json"), ("info", "text")] {
                for config_file in ["/dev/null", config.to_str().unwrap()] {
                    let mut args: Vec<&str> = command.split(' ').collect();
                    if command == "check" || command == "once" {
                        args.extend(["--source", &source]);
                    }
                    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
                        .args(&args)
                        .env("DATABASE_URL", url)
                        .env("DBR_CONFIG", config_file)
                        .env("DBR_MONITORED_ACCOUNTS", "*")
                        .env("RUST_LOG", level)
                        .env("DBR_LOG_FORMAT", format)
                        .env("AWS_SECRET_ACCESS_KEY", secrets[2])
                        .env("AWS_SESSION_TOKEN", secrets[3])
                        .output()
                        .unwrap();
                    let printed = String::from_utf8_lossy(&output.stdout).into_owned()
                        + &String::from_utf8_lossy(&output.stderr);
                    for secret in secrets {
                        assert!(
                            !printed.contains(secret),
                            "{command} {level} {format} {config_file} printed {secret}:\n{printed}"
                        );
                    }
                }
            }
        }
    }
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_what_a_directory_holds_besides_files() {
    let db = TestDatabase::new();
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let r = report(
        dir.path(),
        "",
        PAYER_ID,
        "plain",
        "2019-10",
        &["--rows", "20"],
    );
    std::fs::write(bucket.path().join(&r.key), &r.zip).unwrap();
    let outside = dir.path().join(format!(
        "{PAYER_ID}-aws-billing-detailed-line-items-2019-11.csv.zip"
    ));
    std::fs::write(&outside, &r.zip).unwrap();
    let link = format!("{PAYER_ID}-aws-billing-detailed-line-items-2019-11.csv.zip");
    std::os::unix::fs::symlink(&outside, bucket.path().join(&link)).unwrap();
    let fifo = bucket.path().join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
        .args([
            "check",
            "--source",
            &format!("dir:{}", bucket.path().display()),
        ])
        .env("DATABASE_URL", &db.url)
        .env("DBR_CONFIG", "/dev/null")
        .env("DBR_MONITORED_ACCOUNTS", "*")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("ok      listing dir:"), "{text}");
    assert!(
        text.contains(&format!("{link}: a symbolic link (not followed")),
        "{text}"
    );
    assert!(text.contains("pipe: a FIFO, not a regular file"), "{text}");
    assert!(
        text.contains(&format!("ok      reading {}", r.key)),
        "{text}"
    );
    store.pool().close().await;
    db.drop_database().await;
}

/// A database written by the version before partitioning (migrations 1 to 6) keeps its months:
/// migration 7 moves each statement's daily rows into its partitions, usages numbered, and the
/// views show what they showed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_earlier_schema_keeps_its_months() {
    let db = TestDatabase::new();
    let pool = db.migrated_before("0007").await;
    for statement in [
        "INSERT INTO statements VALUES ('111111111111', '', '2017-07-01', 'dir:x', 'k1', 'e1', 'final', now()),
                                       ('111111111111', 'AWSMarketplace', '2017-07-01', 'dir:x', 'k2', 'e2', 'final', now())",
        "INSERT INTO daily_costs VALUES
             ('111111111111', '', '2017-07-01', '222222222222', '2017-07-03', 'Amazon EC2', 'BoxUsage', 'RunInstances', 'us-east-1a', 'i-1', '{\"user:Name\": \"web\"}', 1.25, 1.20, 3, 3),
             ('111111111111', '', '2017-07-01', '222222222222', '2017-07-04', 'Amazon EC2', 'BoxUsage', 'RunInstances', 'us-east-1a', 'i-1', '{\"user:Name\": \"web\"}', 0.50, 0.40, 1, 1),
             ('111111111111', '', '2017-07-01', '333333333333', NULL, 'Tax', '', '', '', '', '{}', 0.10, 0.10, 0, 1),
             ('111111111111', 'AWSMarketplace', '2017-07-01', '222222222222', '2017-07-03', 'Vendor', 'Seat', '', '', '', '{}', 9.99, 9.99, 1, 1)",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let daily = |pool: PgPool| async move {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT concat_ws('|', payer_account_id, linked_account_id, billing_period, usage_date,
                              product_name, unblended_cost, blended_cost, usage_quantity)
             FROM account_daily_costs ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        rows
    };
    let before = daily(pool.clone()).await;
    assert_eq!(before.len(), 4);
    pool.close().await;

    let store = db.store().await; // applies migration 7
    assert_eq!(daily(store.pool().clone()).await, before);
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM daily_costs), (SELECT count(*) FROM daily_usages),
                (SELECT count(*) FROM pg_partition_tree('daily_costs') WHERE isleaf)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        counts,
        (4, 3, 2),
        "daily rows, usages (i-1 once), one partition per statement"
    );
    // Each usage kept what it was through the later migrations (its kind's columns since
    // migration 17): the full grain reads it back.
    let full: Vec<String> = sqlx::query_scalar(
        r#"SELECT concat_ws('|', "SubAccountId", "ChargePeriodStart"::date, "ServiceName",
                            "x_UsageType", "AvailabilityZone", "ResourceId", "Tags"::text,
                            "BilledCost")
           FROM focus_costs WHERE NOT "x_EffectiveCostOfPurchase" ORDER BY 1"#,
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        full,
        [
            r#"222222222222|2017-07-03|Amazon EC2|BoxUsage|us-east-1a|i-1|{"user:Name": "web"}|1.25"#,
            "222222222222|2017-07-03|Vendor|Seat|{}|9.99",
            r#"222222222222|2017-07-04|Amazon EC2|BoxUsage|us-east-1a|i-1|{"user:Name": "web"}|0.50"#,
            "333333333333|2017-07-01|Tax||{}|0.10",
        ]
    );
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_polls_and_escapes_what_came_from_outside() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    upload(
        &server,
        dir.path(),
        "2017-01",
        &["--seed", "1", "--accounts", PAYER_ID],
    )
    .await;
    // A report whose first cost is markup: its error quotes it.
    let name = dbr_name("plain", "2017-02").replacen(PAYER, PAYER_ID, 1);
    let (csv, _) = generate(
        dir.path(),
        &name,
        &[
            "--payer",
            PAYER_ID,
            "--accounts",
            PAYER_ID,
            "--variant",
            "plain",
            "--period",
            "2017-02",
        ],
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<String> = text.split("\r\n").map(String::from).collect();
    let mut fields: Vec<&str> = lines[1].split("\",\"").collect();
    let last = fields.len() - 1;
    fields[last] = "<script>alert(1)</script>\"";
    lines[1] = fields.join("\",\"");
    std::fs::write(&csv, lines.join("\r\n")).unwrap();
    let zip = std::fs::read(zip_with("info-zip", &csv)).unwrap();
    server.put(BUCKET, &format!("{name}.zip"), zip).await;

    let db = TestDatabase::new();
    let store = db.store().await;
    store
        .add_monitored_account(
            &dbr_ingest::domain::IntegrationName::default_name(),
            &PAYER_ID.parse().unwrap(),
            Some("<img src=x onerror=alert(2)>"),
        )
        .await
        .unwrap();
    let mut env = daemon_env(&server, &db.url, &[]);
    env.retain(|(name, _)| *name != "DBR_MONITORED_ACCOUNTS");
    let daemon = Daemon::start(&env);
    let page = || async { http_get(daemon.status_port, "/").await };
    assert!(
        eventually(30, || async {
            page().await.is_some_and(|(status, body)| {
                status == 200 && body.contains("Failed reports") && !body.contains("not yet")
            })
        })
        .await,
        "the page shows the first poll and its failure"
    );
    let (_, body) = page().await.unwrap();
    assert!(body.starts_with("<!DOCTYPE html>"), "{body}");
    assert!(
        !body.contains("<script") && !body.contains("<img"),
        "{body}"
    );
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(
        body.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{body}"
    );
    assert!(body.contains("2017-01 by account"), "{body}");
    assert!(body.contains("<svg"), "{body}");

    // In a real browser: it renders something, and says nothing on its console.
    let url = format!("http://127.0.0.1:{}/", daemon.status_port);
    let shot = tokio::task::spawn_blocking(move || screenshot(&url))
        .await
        .unwrap();
    assert!(shot.console.is_empty(), "console: {:?}", shot.console);
    assert!(
        shot.distinct_bytes > 16,
        "the screenshot is blank ({} distinct byte values)",
        shot.distinct_bytes
    );
    assert!(daemon.terminate().await);
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_are_served_apart_from_the_probes_and_half_sent_requests_are_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // No database answers: the probes and the page say so, promptly.
    let daemon = Daemon::start(&[(
        "DATABASE_URL",
        format!("postgres://postgres@127.0.0.1:{}/none", free_port()),
    )]);
    assert!(
        eventually(20, || async {
            http_get(daemon.http_port, "/healthz").await.is_some()
        })
        .await
    );
    assert_eq!(
        http_get(daemon.http_port, "/").await.map(|r| r.0),
        Some(404),
        "no costs beside the probes"
    );
    assert_eq!(
        http_get(daemon.status_port, "/metrics").await.map(|r| r.0),
        Some(404)
    );
    let started = std::time::Instant::now();
    let (status, body) = http_get(daemon.status_port, "/").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("does not answer"), "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Every connection the server takes at once, each with half a request.
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", daemon.http_port));
    let mut half_sent = Vec::new();
    for _ in 0..dbr_ingest::http::MAX_CONNECTIONS {
        let mut stream = connect().await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
            .await
            .unwrap();
        half_sent.push(stream);
    }
    let queued = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        http_get(daemon.http_port, "/healthz"),
    )
    .await;
    assert!(queued.is_err(), "a connection beyond the bound waits");
    // The header's deadline closes the half-sent ones, and the server answers again.
    let started = std::time::Instant::now();
    for mut stream in half_sent {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            dbr_ingest::http::HEADER_READ_TIMEOUT * 2,
            stream.read_to_end(&mut rest),
        )
        .await;
        assert!(read.is_ok(), "a half-sent request is closed");
    }
    assert!(started.elapsed() < dbr_ingest::http::HEADER_READ_TIMEOUT * 2);
    assert_eq!(
        http_get(daemon.http_port, "/healthz").await.map(|r| r.0),
        Some(200)
    );
    assert!(daemon.terminate().await);
}

/// What headless Chromium made of a page.
struct Screenshot {
    /// Lines the page wrote on the console (an error, a refused resource).
    console: Vec<String>,
    /// Distinct byte values in the PNG's inflated pixel rows: a blank page has a handful.
    distinct_bytes: usize,
}

/// Loads `url` in Debian's Chromium (`chromium`, installed by `.ci/run`), headless, and takes a
/// screenshot.
fn screenshot(url: &str) -> Screenshot {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("page.png");
    let output = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1100,900",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .expect("Debian's chromium: apt-get install chromium (.ci/run does)");
    assert!(output.status.success(), "{output:?}");
    let console = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .map(String::from)
        .collect();
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // The IDAT chunks hold the zlib stream of the pixel rows.
    let mut idat = Vec::new();
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let length = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if &bytes[at + 4..at + 8] == b"IDAT" {
            idat.extend_from_slice(&bytes[at + 8..at + 8 + length]);
        }
        at += 12 + length;
    }
    let mut rows = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut rows)
        .unwrap();
    let distinct = rows.iter().collect::<std::collections::BTreeSet<_>>().len();
    Screenshot {
        console,
        distinct_bytes: distinct,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_daemon_stops_without_claiming_it_rolled_anything_back() {
    let db = TestDatabase::new();
    let store = db.store().await;
    let mut env = example_env(&db.url);
    env.push(("DBR_HTTP_ADDR", format!("127.0.0.1:{}", free_port())));
    env.push(("DBR_STATUS_ADDR", format!("127.0.0.1:{}", free_port())));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
        .arg("run")
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually(60, || async {
            ingested_keys(store.pool()).await.len() == 3
        })
        .await,
        "the example bucket is ingested"
    );
    // Polled, and now waiting for the next poll: nothing is in flight.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = tokio::task::spawn_blocking(move || {
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        (child.wait().unwrap(), stderr)
    })
    .await
    .unwrap();
    let (status, stderr) = output;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(!stderr.contains("rolled back"), "{stderr}");
    store.pool().close().await;
    db.drop_database().await;
}
