//! Helpers shared by the integration tests: generate reports with the independent Python
//! generator, zip them with real writers, run the built binary.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;

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
