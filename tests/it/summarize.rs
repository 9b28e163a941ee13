//! `dbr-ingest summarize` end to end: reports written by an independent generator, zipped by real
//! ZIP writers, must give the generator's totals to the last decimal; broken archives must fail
//! with a message naming the file and the cause.

use std::path::Path;

use crate::common::*;
use serde_json::{Value, json};

/// A plain (no resources and tags) report of `period`, as CSV, with the generator's totals.
fn plain_csv(dir: &Path, period: &str, args: &[&str]) -> (std::path::PathBuf, Value) {
    let mut all = vec!["--variant", "plain", "--period", period];
    all.extend_from_slice(args);
    generate(dir, &dbr_name("plain", period), &all)
}

#[test]
fn every_format_variant_gives_the_independent_totals() {
    let dir = tempfile::tempdir().unwrap();
    let variants: &[&[&str]] = &[
        &["--variant", "with-resources-and-tags"],
        &["--variant", "plain"],
        &[
            "--variant",
            "with-resources-and-tags",
            "--billing",
            "single",
        ],
        &["--variant", "plain", "--billing", "single", "--eol", "lf"],
        &["--header", "unquoted", "--eol", "lf", "--empty", "bare"],
        &[
            "--preamble",
            "--tags",
            "user:Name,user:name,aws:createdBy,user:a/b.c:d",
        ],
        &["--date-sep", "/", "--invoice", "estimated"],
        &["--footer", "none", "--tags", ""],
    ];
    for (i, args) in variants.iter().enumerate() {
        let variant = if args.contains(&"plain") {
            "plain"
        } else {
            "with-resources-and-tags"
        };
        let period = format!("2017-{:02}", i + 1);
        let seed = (i + 10).to_string();
        let mut all_args = args.to_vec();
        all_args.extend(["--period", &period, "--seed", &seed, "--rows", "400"]);
        let case = dir.path().join(i.to_string());
        std::fs::create_dir(&case).unwrap();
        let (csv, expected) = generate(&case, &dbr_name(variant, &period), &all_args);
        let writer = WRITERS[i % WRITERS.len()];
        let zip = zip_with(writer, &csv);
        assert_totals(
            &summarize_json(&zip, &[]),
            &expected,
            &format!("{args:?} zipped by {writer}"),
        );
        assert_totals(
            &summarize_json(&csv, &[]),
            &expected,
            &format!("{args:?} as bare CSV"),
        );
    }
}

#[test]
fn every_zip_writer_is_read_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, expected) = generate(
        dir.path(),
        &dbr_name("with-resources-and-tags", "2016-02"),
        &["--rows", "3000", "--period", "2016-02"],
    );
    for writer in WRITERS {
        let zip = zip_with(writer, &csv);
        assert_totals(&summarize_json(&zip, &[]), &expected, writer);
    }
}

#[test]
fn unmonitored_accounts_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let monitored = "000987654321,555555555555";
    let (csv, expected) = plain_csv(dir.path(), "2017-05", &["--monitored", monitored]);
    let summary = summarize_json(&zip_with("header", &csv), &["--monitored", monitored]);
    assert_totals(&summary, &expected, "monitored subset");
    assert!(summary["rows"]["dropped_unmonitored"].as_u64().unwrap() > 0);
    let listed: Vec<_> = summary["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["linked_account_id"].clone())
        .collect();
    assert_eq!(listed, [json!("000987654321"), json!("555555555555")]);
}

#[test]
fn an_account_total_off_by_a_cent_is_not_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, expected) = plain_csv(dir.path(), "2017-06", &["--off-by-a-cent", "555555555555"]);
    let summary = summarize_json(&csv, &[]);
    assert_totals(&summary, &expected, "off by a cent");
    let reconciled: Vec<_> = summary["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reconciled"].clone())
        .collect();
    assert_eq!(reconciled, [json!(true), json!(true), json!(false)]);
}

fn account(summary: &Value, id: &str) -> Value {
    summary["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["linked_account_id"] == id)
        .unwrap()
        .clone()
}

#[test]
fn real_samples_give_the_right_answer() {
    let samples = real_samples();
    // (file stem, account, unblended, blended, usage, line items), summed independently.
    let cases = [
        (
            "photon-model__52c478a85__",
            "123456789",
            "0.00000001",
            "0.00000001",
            "0.00000071",
            3,
        ),
        (
            "photon-model__52c478a85__",
            "555555555",
            "0",
            "0",
            "0.00000025",
            1,
        ),
        (
            "photon-model__71e0defdb__",
            "123456789",
            "12.00000002",
            "23.16000002",
            "0.00268918",
            11,
        ),
        (
            "photon-model__71e0defdb__",
            "555555555",
            "0",
            "0",
            "0.00000025",
            1,
        ),
        (
            "photon-model__e0a5b84e8__",
            "123456789",
            "0.00000001",
            "3.72000001",
            "0.00268889",
            6,
        ),
    ];
    for (stem, id, unblended, blended, usage, items) in cases {
        let name = format!(
            "{stem}123456789-aws-billing-detailed-line-items-with-resources-and-tags-2016-09.csv"
        );
        for file in [name.clone(), format!("{name}.zip")] {
            let summary = summarize_json(&samples.join(&file), &[]);
            assert_eq!(summary["report"]["payer_account_id"], "123456789");
            assert_eq!(summary["report"]["billing_period"], "2016-09");
            let account = account(&summary, id);
            let context = format!("{file} {id}");
            assert_eq!(
                decimal(&account["unblended_cost"]),
                decimal(&json!(unblended)),
                "{context}"
            );
            assert_eq!(
                decimal(&account["blended_cost"]),
                decimal(&json!(blended)),
                "{context}"
            );
            assert_eq!(
                decimal(&account["usage_quantity"]),
                decimal(&json!(usage)),
                "{context}"
            );
            assert_eq!(account["line_items"], items, "{context}");
            // The fixture's authors invented the footer totals: they do not match.
            assert_eq!(account["reconciled"], false, "{context}");
        }
    }
    let scopely = summarize_json(
        &samples.join("scopely-details__detailed_with_tags.csv"),
        &[],
    );
    assert_eq!(scopely["report"]["payer_account_id"], "123456789012");
    assert_eq!(scopely["report"]["billing_period"], "2014-09");
    let account = account(&scopely, "095669871260");
    assert_eq!(
        decimal(&account["unblended_cost"]),
        decimal(&json!("0.08805964"))
    );
    assert_eq!(
        decimal(&account["usage_quantity"]),
        decimal(&json!("29.00003866"))
    );
    assert_eq!(account["line_items"], 8);
    assert_eq!(
        account["reconciled"],
        Value::Null,
        "no footer, nothing to reconcile with"
    );

    let monthly = summarize_error(&samples.join("rjeczalik-interfaces__testdata__aws-billing.csv"));
    assert!(
        monthly.contains("rjeczalik-interfaces__testdata__aws-billing.csv"),
        "{monthly}"
    );
    assert!(
        monthly.contains("not a detailed billing report"),
        "{monthly}"
    );
}

#[test]
fn a_monthly_report_is_refused_by_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let monthly = dir
        .path()
        .join(format!("{PAYER}-aws-billing-csv-2017-01.csv"));
    std::fs::copy(
        real_samples().join("rjeczalik-interfaces__testdata__aws-billing.csv"),
        &monthly,
    )
    .unwrap();
    let error = summarize_error(&monthly);
    assert!(
        error.contains("not a detailed billing report: the monthly report"),
        "{error}"
    );
}

/// A change to an archive's bytes.
type Edit = Box<dyn FnOnce(&mut Vec<u8>)>;

/// A copy of `zip` with `edit` applied, named like the original.
fn broken_copy(zip: &Path, dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let mut bytes = std::fs::read(zip).unwrap();
    edit(&mut bytes);
    let copy = dir.join(zip.file_name().unwrap());
    std::fs::write(&copy, bytes).unwrap();
    copy
}

#[test]
fn broken_archives_fail_naming_file_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let name = dbr_name("with-resources-and-tags", "2017-08");
    let (csv, _) = generate(
        dir.path(),
        &name,
        &["--rows", "2000", "--period", "2017-08"],
    );
    for writer in ["header", "stream-zip64", "stored"] {
        let zip = zip_with(writer, &csv);
        let bytes = std::fs::read(&zip).unwrap();
        let data_start = 30 + name.len() + 20; // past the local header and any ZIP64 field
        let middle = bytes.len() / 2;
        let cases: Vec<(&str, Edit, &[&str])> = vec![
            (
                "corrupt",
                Box::new(move |b: &mut Vec<u8>| b[middle] ^= 0x55),
                &["CRC-32 mismatch", "size mismatch", "corrupt"],
            ),
            (
                "truncated",
                Box::new(move |b: &mut Vec<u8>| b.truncate(middle)),
                &["truncated"],
            ),
            (
                "cut before the central directory",
                Box::new(|b: &mut Vec<u8>| {
                    let central = b.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
                    b.truncate(central);
                }),
                &["truncated"],
            ),
            (
                "not a zip",
                Box::new(|b: &mut Vec<u8>| b.splice(0..4, *b"XXXX").for_each(drop)),
                &["not a zip archive"],
            ),
            (
                "encrypted flag",
                Box::new(|b: &mut Vec<u8>| b[6] |= 1),
                &["encrypted"],
            ),
            (
                "bzip2 method",
                Box::new(|b: &mut Vec<u8>| b[8] = 12),
                &["compression method 12 (bzip2)"],
            ),
            (
                "empty",
                Box::new(|b: &mut Vec<u8>| {
                    *b = b"PK\x05\x06".iter().copied().chain([0; 18]).collect()
                }),
                &["holds no member"],
            ),
            (
                "header cut",
                Box::new(move |b: &mut Vec<u8>| b.truncate(data_start - 30)),
                &["truncated"],
            ),
        ];
        for (what, edit, causes) in cases {
            let case = dir
                .path()
                .join(format!("{writer}-{}", what.replace(' ', "-")));
            std::fs::create_dir(&case).unwrap();
            let broken = broken_copy(&zip, &case, edit);
            let error = summarize_error(&broken);
            let context = format!("{what} ({writer}): {error}");
            assert_eq!(error.lines().count(), 1, "{context}");
            assert!(error.contains(broken.to_str().unwrap()), "{context}");
            assert!(
                causes.iter().any(|cause| error.contains(cause)),
                "{context}"
            );
        }
        assert!(!bytes.is_empty());
    }
}

#[test]
fn more_than_one_member_names_the_extra_one() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, _) = plain_csv(dir.path(), "2017-09", &[]);
    let zip = zip_with("two-members", &csv);
    let error = summarize_error(&zip);
    assert!(
        error.contains("more than one member: \"extra.csv\""),
        "{error}"
    );
}

#[test]
fn a_real_zip_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, _) = plain_csv(dir.path(), "2017-10", &[]);
    let zip = dir.path().join(format!(
        "{}.zip",
        csv.file_name().unwrap().to_str().unwrap()
    ));
    let status = std::process::Command::new("zip")
        .args(["-q", "-j", "-P", "secret"])
        .arg(&zip)
        .arg(&csv)
        .status()
        .unwrap();
    assert!(status.success());
    let error = summarize_error(&zip);
    assert!(error.contains("is encrypted"), "{error}");
}

#[test]
fn a_payer_other_than_the_name_says_rejects_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, _) = plain_csv(dir.path(), "2017-11", &["--payer", "999999999999"]);
    let zip = zip_with("stream", &csv);
    let error = summarize_error(&zip);
    assert!(error.contains("line 2, column PayerAccountId: payer \"999999999999\" differs from the report's payer 123456789012"), "{error}");
}

#[test]
fn a_malformed_row_names_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, _) = plain_csv(dir.path(), "2017-12", &["--eol", "crlf", "--preamble"]);
    let mut lines: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .split_inclusive("\r\n")
        .map(str::to_owned)
        .collect();
    // Line 10 (1-based) is a line item: its UnBlendedCost is the last field.
    let line = &mut lines[9];
    let cut = line.rfind(",\"").unwrap();
    line.replace_range(cut.., ",\"12.3.4\"\r\n");
    std::fs::write(&csv, lines.concat()).unwrap();
    let error = summarize_error(&zip_with("info-zip-pipe", &csv));
    assert!(
        error.contains("line 10, column UnBlendedCost: not a decimal number: \"12.3.4\""),
        "{error}"
    );
}

#[test]
fn several_files_report_each_and_fail_if_any_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = plain_csv(dir.path(), "2018-01", &[]);
    let bad = dir.path().join(dbr_name("plain", "2018-02") + ".zip");
    std::fs::write(&bad, b"not a zip").unwrap();
    let output = dbr_ingest(&[
        "summarize",
        "--json",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "the good file is still summarized"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("not a zip archive"), "{stderr}");
}
