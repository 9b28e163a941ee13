//! Helpers shared by the integration tests: generate reports with the independent Python
//! generator, zip them with real writers, run the built binary.

pub mod faults;
pub mod net;
pub mod s3;
pub mod sts;
pub mod views;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;
use serde_json::Value;

pub const PAYER: &str = "123456789012";

pub fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools")
}

pub fn real_samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real")
}

/// The DBR object name for the generator's defaults.
pub fn dbr_name(variant: &str, period: &str) -> String {
    match variant {
        "plain" => format!("{PAYER}-aws-billing-detailed-line-items-{period}.csv"),
        _ => {
            format!("{PAYER}-aws-billing-detailed-line-items-with-resources-and-tags-{period}.csv")
        }
    }
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Writes a report CSV named `name` into `dir` with the generator and returns its path and
/// the totals the generator computed.
pub fn generate(dir: &Path, name: &str, args: &[&str]) -> (PathBuf, Value) {
    let csv = dir.join(name);
    let expected = dir.join(format!("{name}.expected.json"));
    run(Command::new("python3")
        .arg(tools().join("gen_dbr.py"))
        .arg("--out")
        .arg(&csv)
        .arg("--expected")
        .arg(&expected)
        .args(args));
    let expected = serde_json::from_slice(&std::fs::read(&expected).unwrap()).unwrap();
    (csv, expected)
}

/// The default memory budget, or a small one to make the daily sums spill.
pub fn memory_budget(bytes: usize) -> dbr_ingest::report::aggregate::MemoryBudget {
    dbr_ingest::report::aggregate::MemoryBudget {
        bytes,
        temp_dir: std::env::temp_dir(),
    }
}

pub const DEFAULT_BUDGET: usize = 64 << 20;

/// A zipped report made by the generator, and the totals it computed.
pub struct Report {
    pub key: String,
    pub zip: Vec<u8>,
    pub expected: Value,
}

/// Generates `<payer>-aws-billing-detailed-line-items…-<period>.csv.zip` under `prefix`.
pub fn report(
    dir: &Path,
    prefix: &str,
    payer: &str,
    variant: &str,
    period: &str,
    args: &[&str],
) -> Report {
    let name = dbr_name(variant, period).replacen(PAYER, payer, 1);
    let case = tempfile::tempdir_in(dir).unwrap().keep();
    let mut all = vec![
        "--payer",
        payer,
        "--variant",
        variant,
        "--period",
        period,
        "--rows",
        "300",
    ];
    all.extend_from_slice(args);
    let (csv, expected) = generate(&case, &name, &all);
    let zip = std::fs::read(zip_with("info-zip-pipe", &csv)).unwrap();
    Report {
        key: format!("{prefix}{name}.zip"),
        zip,
        expected,
    }
}

/// The ZIP writers the tests cover: Python's zipfile in each layout, and Info-ZIP.
pub const WRITERS: &[&str] = &[
    "header",
    "header-zip64",
    "stream",
    "stream-zip64",
    "stored",
    "info-zip",
    "info-zip-pipe",
];

/// Zips `csv` into `<csv>.zip` with one of [`WRITERS`]; the member keeps the CSV's name
/// (Info-ZIP from a pipe names it `-`).
pub fn zip_with(writer: &str, csv: &Path) -> PathBuf {
    let zip = PathBuf::from(format!("{}.zip", csv.display()));
    let _ = std::fs::remove_file(&zip);
    match writer {
        "info-zip" => {
            run(Command::new("zip").arg("-q").arg("-j").arg(&zip).arg(csv));
        }
        "info-zip-pipe" => {
            // `zip - -` writes to a pipe: it cannot seek, so it writes a ZIP64 data descriptor.
            let script = format!(
                "zip -q - - < '{}' | cat > '{}'",
                csv.display(),
                zip.display()
            );
            run(Command::new("sh").arg("-c").arg(script));
        }
        mode => {
            run(Command::new("python3")
                .arg(tools().join("zip_report.py"))
                .arg(mode)
                .arg(csv)
                .arg(&zip));
        }
    }
    zip
}

/// Runs `dbr-ingest` with these arguments.
pub fn dbr_ingest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A command's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stdout of a command that must succeed.
pub fn succeeds(output: Output) -> String {
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// What a command that must fail said (stderr, then stdout: `check` reports on stdout).
pub fn fails(output: Output) -> String {
    assert!(
        !output.status.success(),
        "succeeded:\n{}",
        text(&output.stdout)
    );
    text(&output.stderr) + &text(&output.stdout)
}

/// The README's first command's environment: the example configuration (the bundled bucket
/// and its monitored accounts), into `url`.
pub fn example_env(url: &str) -> Vec<(&'static str, String)> {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    vec![
        ("DATABASE_URL", url.to_owned()),
        ("DBR_CONFIG", config.display().to_string()),
    ]
}

/// Runs `dbr-ingest` with these arguments and environment (no configuration file unless the
/// environment names one).
pub fn dbr_ingest_with(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
        .args(args)
        .env("DBR_CONFIG", "/dev/null")
        .env("RUST_LOG", "error")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `summarize --json` of one file; panics if it fails.
pub fn summarize_json(file: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["summarize", "--json", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = dbr_ingest(&args);
    assert!(
        output.status.success(),
        "summarize {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `summarize` of one file that must fail: returns its stderr.
pub fn summarize_error(file: &Path) -> String {
    let output = dbr_ingest(&["summarize", "--json", file.to_str().unwrap()]);
    assert!(
        !output.status.success(),
        "summarize {} succeeded",
        file.display()
    );
    assert!(output.stdout.is_empty());
    String::from_utf8(output.stderr).unwrap()
}

pub fn decimal(value: &Value) -> Option<Decimal> {
    value.as_str().map(|s| Decimal::from_str(s).unwrap())
}

/// Compares a summary with the generator's totals: amounts as decimals (scale may differ).
pub fn assert_totals(actual: &Value, expected: &Value, context: &str) {
    for field in [
        "payer_account_id",
        "billing_period",
        "variant",
        "invoice_status",
    ] {
        assert_eq!(
            actual["report"][field], expected["report"][field],
            "{context}: report.{field}"
        );
    }
    for field in ["line_items", "kept", "dropped_unmonitored"] {
        assert_eq!(
            actual["rows"][field], expected["rows"][field],
            "{context}: rows.{field}"
        );
    }
    let (actual, expected) = (
        actual["accounts"].as_array().unwrap(),
        expected["accounts"].as_array().unwrap(),
    );
    assert_eq!(
        actual.len(),
        expected.len(),
        "{context}: accounts {actual:?}"
    );
    for (a, e) in actual.iter().zip(expected) {
        let id = &e["linked_account_id"];
        assert_eq!(a["linked_account_id"], *id, "{context}");
        for field in [
            "unblended_cost",
            "blended_cost",
            "usage_quantity",
            "account_total_unblended",
        ] {
            assert_eq!(
                decimal(&a[field]),
                decimal(&e[field]),
                "{context}: account {id} {field}"
            );
        }
        for field in ["line_items", "reconciled"] {
            assert_eq!(a[field], e[field], "{context}: account {id} {field}");
        }
    }
}

/// A database of its own for one test, created by the store on first connection.
pub struct TestDatabase {
    pub url: String,
    pub name: String,
}

impl TestDatabase {
    pub fn new() -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let test = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("dbr_test_{}_{test}_{nanos}", std::process::id());
        TestDatabase {
            url: format!("{}/{name}", server_url()),
            name,
        }
    }

    pub async fn store(&self) -> dbr_ingest::store::Store {
        dbr_ingest::store::Store::connect(&secrecy::SecretString::from(self.url.clone()), 2)
            .await
            .unwrap()
    }

    /// Creates the database with the migrations whose files sort before `first_left_out`
    /// (`"0007"`): a database an earlier version wrote.
    pub async fn migrated_before(&self, first_left_out: &str) -> sqlx::PgPool {
        use sqlx::migrate::{MigrateDatabase, Migrator};
        sqlx::Postgres::create_database(&self.url).await.unwrap();
        let earlier = tempfile::tempdir().unwrap();
        let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for entry in std::fs::read_dir(&migrations).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if name.as_str() < first_left_out {
                std::fs::copy(&path, earlier.path().join(name)).unwrap();
            }
        }
        let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
        Migrator::new(earlier.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        pool
    }

    /// Drops the database (tests call it at their end; a failed test leaves its database to look at).
    pub async fn drop_database(self) {
        use sqlx::migrate::MigrateDatabase;
        sqlx::Postgres::force_drop_database(&self.url)
            .await
            .unwrap_or_else(|e| panic!("dropping {}: {e}", self.name));
    }
}

/// The PostgreSQL server the tests use: `TEST_DATABASE_SERVER`, else the local one.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The number of the latest migration this version knows (the files in `migrations/`).
pub fn latest_migration() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count()
}

/// The keys of the reports a poll ingested, sorted.
pub fn ingested_keys(outcome: &dbr_ingest::ingest::PollOutcome) -> Vec<&str> {
    let mut keys: Vec<&str> = outcome
        .ingested
        .iter()
        .map(|i| i.object_key.as_str())
        .collect();
    keys.sort();
    keys
}
