//! What an operator meets from a fresh clone: the README's examples on the bundled bucket, the
//! bundled data as honest as the README says, and the commands' answers to what people type
//! (IDs missing a digit, relative paths, credentials in an endpoint URL).

use std::path::Path;
use std::process::Output;

use sqlx::{AssertSqlSafe, PgPool};

use crate::common::*;

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary in `dir` (the README's commands run from the repository's root).
fn run_in(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

/// Every SQL statement of the README's `sql` blocks that reads (a `SELECT`).
fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let mut queries = Vec::new();
    let mut block: Option<String> = None;
    for line in readme.lines() {
        match (&mut block, line.trim_start()) {
            (None, "```sql") => block = Some(String::new()),
            (Some(sql), "```") => {
                for statement in sql.split(';') {
                    let code: String = statement
                        .lines()
                        .filter(|line| !line.trim_start().starts_with("--"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    if code.trim_start().starts_with("SELECT") {
                        queries.push(code.trim().to_owned());
                    }
                }
                block = None;
            }
            (Some(sql), _) => {
                sql.push_str(line);
                sql.push('\n');
            }
            (None, _) => {}
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_query_returns_rows_on_the_example_bucket() {
    let db = TestDatabase::new();
    let once = succeeds(run_in(repository(), &["once"], &example_env(&db.url)));
    assert!(once.contains("3 ingested, 0 failed"), "{once}");
    let pool = PgPool::connect(&db.url).await.unwrap();
    let queries = readme_queries();
    assert!(queries.len() >= 9, "{queries:?}");
    for query in queries {
        let rows = sqlx::query(AssertSqlSafe(query.clone()))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert!(!rows.is_empty(), "no rows on the example bucket:\n{query}");
    }
    pool.close().await;
    db.drop_database().await;
}

#[test]
fn both_variants_of_an_example_month_hold_the_same_line_items() {
    let bucket = repository().join("examples/bucket");
    let summary = |variant: &str| {
        let name = format!("111111111111-aws-billing-detailed-line-items{variant}-2017-01.csv.zip");
        summarize_json(&bucket.join(name), &[])
    };
    let (plain, with_resources) = (summary(""), summary("-with-resources-and-tags"));
    assert_eq!(plain["rows"], with_resources["rows"]);
    assert_eq!(plain["accounts"], with_resources["accounts"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_ids_missing_a_digit_are_refused_where_operators_type_them() {
    let db = TestDatabase::new();
    let env = vec![("DATABASE_URL", db.url.clone())];
    let root = repository();
    for args in [
        &["accounts", "add", "13328811177", "--name", "prod"][..],
        &["accounts", "remove", "13328811177"],
        &[
            "integrations",
            "add",
            "acme",
            "--source",
            "dir:examples/bucket",
            "--monitored",
            "013328811177,13328811177",
        ],
    ] {
        let message = fails(run_in(root, args, &env));
        assert!(
            message.contains(
                "\"13328811177\" is not an AWS account ID: those have 12 digits, it has 11"
            ),
            "{args:?}: {message}"
        );
    }
    let mut configured = example_env(&db.url);
    configured.push(("DBR_MONITORED_ACCOUNTS", "11111111111".into()));
    let message = fails(run_in(root, &["once"], &configured));
    assert!(message.contains("has 11"), "{message}");
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_directory_is_stored_absolute() {
    let db = TestDatabase::new();
    let env = vec![("DATABASE_URL", db.url.clone())];
    succeeds(run_in(
        repository(),
        &[
            "integrations",
            "add",
            "local",
            "--source",
            "dir:examples/bucket",
            "--monitored",
            "*",
        ],
        &env,
    ));
    let elsewhere = tempfile::tempdir().unwrap();
    let shown = succeeds(run_in(
        elsewhere.path(),
        &["integrations", "show", "local"],
        &env,
    ));
    let absolute = repository().join("examples/bucket");
    assert!(
        shown.contains(&format!("dir:{}", absolute.display())),
        "{shown}"
    );
    let once = succeeds(run_in(
        elsewhere.path(),
        &["once", "--integration", "local"],
        &env,
    ));
    assert!(once.contains("3 ingested, 0 failed"), "{once}");
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_an_endpoint_url_are_never_printed() {
    let db = TestDatabase::new();
    let endpoint = "http://AKIAENDPOINTKEY9:endpoint-secret-42@127.0.0.1:1";
    let env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_MAX_ATTEMPTS", "1".to_owned()),
        ("RUST_LOG", "trace".to_owned()),
    ];
    let root = repository();
    let added = succeeds(run_in(
        root,
        &[
            "integrations",
            "add",
            "acme",
            "--bucket",
            "billing",
            "--endpoint-url",
            endpoint,
            "--force-path-style",
            "--monitored",
            "*",
        ],
        &env,
    ));
    let mut printed = added;
    for args in [
        &["integrations", "list"][..],
        &["integrations", "list", "--json"],
        &["integrations", "show", "acme"],
        &["integrations", "update", "acme", "--prefix", "dbr/"],
        &["check", "--integration", "acme"],
        &["once", "--integration", "acme"],
    ] {
        let output = run_in(root, args, &env);
        printed += &(text(&output.stdout) + &text(&output.stderr));
    }
    let mut configured = env.clone();
    configured.extend([
        ("DBR_BUCKET", "billing".to_owned()),
        ("DBR_S3_ENDPOINT_URL", endpoint.to_owned()),
        ("DBR_MONITORED_ACCOUNTS", "*".to_owned()),
    ]);
    let check = run_in(root, &["check"], &configured);
    printed += &(text(&check.stdout) + &text(&check.stderr));
    assert!(printed.contains("127.0.0.1:1"), "{printed}");
    for secret in ["endpoint-secret-42", "AKIAENDPOINTKEY9"] {
        assert!(!printed.contains(secret), "printed {secret}:\n{printed}");
    }
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_in_one_line_that_the_region_or_the_credentials_are_missing() {
    let db = TestDatabase::new();
    db.store().await.pool().close().await;
    let home = tempfile::tempdir().unwrap();
    let check = |region: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dbr-ingest"));
        command
            .arg("check")
            .env("DATABASE_URL", &db.url)
            .env("DBR_CONFIG", "/dev/null")
            .env("DBR_BUCKET", "billing")
            .env("DBR_MONITORED_ACCOUNTS", "*")
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("RUST_LOG");
        for variable in [
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ] {
            command.env_remove(variable);
        }
        if let Some(region) = region {
            command.env("AWS_REGION", region);
        }
        fails(command.output().unwrap())
    };
    for (region, says) in [
        (None, "no AWS region: set AWS_REGION or DBR_S3_REGION"),
        (Some("eu-west-1"), "no AWS credentials found"),
    ] {
        let printed = check(region);
        assert_eq!(printed.matches(says).count(), 1, "{printed}");
        for noise in ["DispatchFailure", "ConnectorError", "WARN", "IMDS"] {
            assert!(!printed.contains(noise), "{noise} in:\n{printed}");
        }
    }
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_say_what_they_did_and_check_their_input_before_creating_a_database() {
    let db = TestDatabase::new();
    let root = repository();
    let database = vec![("DATABASE_URL", db.url.clone())];
    let exists = || async {
        let admin = PgPool::connect(&server_url()).await.unwrap();
        let found: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&db.name)
                .fetch_one(&admin)
                .await
                .unwrap();
        admin.close().await;
        found
    };
    let mut unmonitored = database.clone();
    unmonitored.push(("DBR_SOURCE", "dir:examples/bucket".into()));
    let refused = fails(run_in(root, &["once"], &unmonitored));
    assert!(refused.contains("no monitored accounts"), "{refused}");
    assert!(!exists().await, "once created the database before refusing");

    let migrated = succeeds(run_in(root, &["migrate"], &database));
    assert!(migrated.contains("created database"), "{migrated}");
    assert!(
        migrated.contains(&format!("applied migrations 1 to {}", latest_migration())),
        "{migrated}"
    );
    let again = succeeds(run_in(root, &["migrate"], &database));
    assert!(again.contains("was up to date"), "{again}");

    let once = succeeds(run_in(root, &["once"], &example_env(&db.url)));
    assert!(!once.contains("S3 requests"), "a directory: {once}");
    assert!(
        once.contains("300 line items, 207 kept, 93 dropped (not monitored), and 7 footer rows"),
        "{once}"
    );

    let mut configured = example_env(&db.url);
    configured.push(("DBR_MONITORED_ACCOUNTS", "111111111111".into()));
    let add = |name: &str| {
        succeeds(run_in(
            root,
            &["accounts", "add", "333333333333", "--name", name],
            &configured,
        ))
    };
    assert!(add("prod").contains("333333333333 added"));
    let renamed = add("production");
    assert!(
        renamed.contains("was already monitored; renamed from \"prod\" to \"production\""),
        "{renamed}"
    );
    assert!(add("production").contains("was already monitored\n"));
    let removed = succeeds(run_in(
        root,
        &["accounts", "remove", "111111111111"],
        &configured,
    ));
    assert!(
        removed.contains("is in the configuration too: the next poll adds it again"),
        "{removed}"
    );
    let help = succeeds(run_in(root, &["grant-reader", "--help"], &database));
    assert!(
        help.contains("An existing PostgreSQL role of the dashboard"),
        "{help}"
    );
    db.drop_database().await;
}
