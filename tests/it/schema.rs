//! The database's schema as operators meet it: processes migrating one database at once, a
//! database migrated by a newer version, contract views dropped by hand, and dashboards' roles
//! that must never read another tenant's costs.

use sqlx::{AssertSqlSafe, PgPool};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_creating_and_migrating_one_database_at_once_all_succeed() {
    for command in ["migrate", "once"] {
        let db = TestDatabase::new();
        let env = example_env(&db.url);
        let runs: Vec<_> = (0..3)
            .map(|_| {
                let env = env.clone();
                std::thread::spawn(move || dbr_ingest_with(&[command], &env))
            })
            .collect();
        for run in runs {
            succeeds(run.join().unwrap());
        }
        db.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_a_newer_version_is_refused_by_every_command() {
    let db = TestDatabase::new();
    let store = db.store().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99, 'from the future', true, '\\x00', 1)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let env = example_env(&db.url);
    for args in [
        &["once"][..],
        &["migrate"],
        &["check"],
        &["accounts", "list"],
        &["integrations", "list"],
    ] {
        let message = fails(dbr_ingest_with(args, &env));
        assert!(
            message.contains("migration 99")
                && message.contains(&format!("up to {}", latest_migration())),
            "{args:?}: {message}"
        );
    }
    let ready = store.ready().await.unwrap_err().to_string();
    assert!(ready.contains("newer dbr-ingest"), "{ready}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM reports")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing was ingested");
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_view_dropped_by_hand_is_reported_and_restored_by_migrate() {
    let db = TestDatabase::new();
    let env = example_env(&db.url);
    succeeds(dbr_ingest_with(&["once"], &env));
    let store = db.store().await;
    let admin = PgPool::connect(&server_url()).await.unwrap();
    let role = format!("reader_{}", db.name);
    sqlx::query(AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'reader'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    succeeds(dbr_ingest_with(
        &["grant-reader", &role, "--integration", "default"],
        &env,
    ));
    // Dropped with the reader schema's view on it.
    sqlx::query("DROP VIEW top_resources CASCADE")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("DROP VIEW cost_by_tag CASCADE")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("CREATE VIEW cost_by_tag AS SELECT 1 AS one")
        .execute(store.pool())
        .await
        .unwrap();

    let check = fails(dbr_ingest_with(&["check"], &env));
    assert!(check.contains("view top_resources is missing"), "{check}");
    assert!(
        check.contains("view cost_by_tag has other columns than the contract's"),
        "{check}"
    );
    assert!(store.ready().await.is_err(), "/readyz says 503");

    let migrated = succeeds(dbr_ingest_with(&["migrate"], &env));
    assert!(migrated.contains("contract views"), "{migrated}");
    store.ready().await.unwrap();
    succeeds(dbr_ingest_with(&["check"], &env));
    let reader_url = db.url.replacen("postgres@", &format!("{role}@"), 1) + "?password=reader";
    let reader = PgPool::connect(&reader_url).await.unwrap();
    for view in dbr_ingest::store::contract_view_names() {
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {view}")))
            .fetch_one(&reader)
            .await
            .unwrap_or_else(|e| panic!("{view}: {e}"));
        assert!(rows > 0, "{view} has the example's rows again");
    }
    reader.close().await;
    store.pool().close().await;
    db.drop_database().await;
    sqlx::query(AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_reader_refuses_what_would_let_one_tenant_read_another() {
    let db = TestDatabase::new();
    let store = db.store().await;
    let env = example_env(&db.url);
    let long = |last: char| format!("{}{last}", "t".repeat(62));
    let (long_1, long_2) = (long('1'), long('2'));
    for integration in ["acme-x", "acme_x", &long_1, &long_2] {
        succeeds(dbr_ingest_with(
            &[
                "integrations",
                "add",
                integration,
                "--source",
                "dir:/tmp",
                "--monitored",
                "*",
            ],
            &env,
        ));
    }
    let admin = PgPool::connect(&server_url()).await.unwrap();
    let role = |what: &str| format!("{what}_{}", db.name);
    let (first, second, long_reader, boss, service) = (
        role("first"),
        role("second"),
        role("long"),
        role("boss"),
        role("service"),
    );
    for (name, options) in [
        (&first, "LOGIN"),
        (&second, "LOGIN"),
        (&long_reader, "LOGIN"),
        (&boss, "SUPERUSER"),
        (&service, "LOGIN"),
    ] {
        sqlx::query(AssertSqlSafe(format!("CREATE ROLE {name} {options}")))
            .execute(&admin)
            .await
            .unwrap();
    }
    sqlx::query(AssertSqlSafe(format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {service}"
    )))
    .execute(store.pool())
    .await
    .unwrap();

    let granted = succeeds(dbr_ingest_with(
        &["grant-reader", &first, "--integration", "acme-x"],
        &env,
    ));
    assert!(granted.contains("schema dbr_acme_x"), "{granted}");
    let refusals = [
        (
            vec![second.as_str(), "--integration", "acme_x"],
            "dbr_acme_x already shows integration acme-x",
        ),
        (
            vec![long_reader.as_str(), "--integration", &long_1],
            "PostgreSQL cuts names at 63",
        ),
        (
            vec![long_reader.as_str(), "--integration", &long_2],
            "PostgreSQL cuts names at 63",
        ),
        (vec!["postgres"], "the role running this command"),
        (vec![boss.as_str()], "is a superuser"),
        (vec![service.as_str()], "can write the service's tables"),
        (
            vec![second.as_str(), "--integration", "acme-y"],
            "there is no integration acme-y",
        ),
    ];
    for (args, reason) in refusals {
        let mut command = vec!["grant-reader"];
        command.extend(args.iter().copied());
        let message = fails(dbr_ingest_with(&command, &env));
        assert!(message.contains(reason), "{command:?}: {message}");
    }
    // Nothing was made for the refused grants, and acme-x's schema still shows acme-x.
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'dbr\\_%' ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(schemas, ["dbr_acme_x"]);
    let shown: String = sqlx::query_scalar("SELECT pg_get_viewdef('dbr_acme_x.report_status')")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(shown.contains("'acme-x'"), "{shown}");
    let search_paths: Vec<String> = sqlx::query_scalar(
        "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting
         WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(
        search_paths
            .iter()
            .all(|path| !path.contains("dbr_") || path == "search_path=dbr_acme_x"),
        "{search_paths:?}"
    );
    let second_reads: bool =
        sqlx::query_scalar("SELECT has_schema_privilege($1, 'dbr_acme_x', 'USAGE')")
            .bind(&second)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(!second_reads);
    // A reader running the service's commands is refused by PostgreSQL, which says why without
    // the line of its own source code that sqlx appends.
    let as_reader = vec![(
        "DATABASE_URL",
        db.url.replacen("postgres@", &format!("{first}@"), 1),
    )];
    let refused = fails(dbr_ingest_with(&["accounts", "list"], &as_reader));
    assert!(refused.contains("permission denied"), "{refused}");
    assert!(!refused.contains(" at line "), "{refused}");

    store.pool().close().await;
    db.drop_database().await;
    for name in [&first, &second, &long_reader, &boss, &service] {
        sqlx::query(AssertSqlSafe(format!("DROP ROLE {name}")))
            .execute(&admin)
            .await
            .unwrap();
    }
}
