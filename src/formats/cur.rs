//! The Cost and Usage Report (CUR 1.0, CSV): a billing period's version is named by the manifest
//! AWS rewrites at `<prefix>/<report>/<YYYYMMDD-YYYYMMDD>/<report>-Manifest.json` (its
//! `assemblyId`) and made of the parts it lists (`reportKeys`), each a gzip- or zip-packed CSV
//! with a header of its own. Both of AWS's versioning modes write that manifest: with "create new
//! report version" the parts sit in an assembly folder beside it, with "overwrite" they sit
//! beside it; older assembly folders are never read. A CUR has no footer to reconcile with.

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

use super::{Format, Part, Version};
use crate::domain::{AccountId, ObjectMeta, Period, StatementId, excerpt};
use crate::report::read::Compression;
use crate::report::records::Record;
use crate::report::rows::{Amortization, Dialect, Fields, Header, Layout};

const MANIFEST_SUFFIX: &str = "-Manifest.json";
/// A manifest lists a month's columns and parts: tens of kilobytes. More is not a manifest.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// What the key of a billing period's manifest says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestKey {
    /// The report's name (its folder, and the manifest's name before `-Manifest.json`).
    pub report: String,
    pub period: Period,
}

impl ManifestKey {
    /// `…/<report>/<YYYYMMDD-YYYYMMDD>/<report>-Manifest.json`, the range beginning on the first
    /// of a month; `None` for any other key (an assembly folder's copy of the manifest among
    /// them).
    pub fn parse(key: &str) -> Option<ManifestKey> {
        let mut segments = key.rsplit('/');
        let file = segments.next()?;
        let range = segments.next()?;
        let folder = segments.next()?;
        let report = file.strip_suffix(MANIFEST_SUFFIX)?;
        if report.is_empty() || report != folder {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        let (start, end) = (range_day(start)?, range_day(end)?);
        if start.day() != 1 || end <= start {
            return None;
        }
        Some(ManifestKey {
            report: report.to_owned(),
            period: Period::of_day(start),
        })
    }

    /// Whether `key` lies within this report's folders (a part, an assembly folder's manifest):
    /// such objects are read through the manifest, never alone.
    pub fn is_report_object(key: &str) -> bool {
        key.split('/').any(is_period_folder)
    }
}

/// In a billing period's folder of a report (`…/<report>/<YYYYMMDD-YYYYMMDD>/`), where that
/// report's objects are: `<report>-Manifest.json`, and the parts when AWS overwrites the report.
/// The rest is read through the manifest or not at all: each earlier version's assembly folder,
/// and the current one's, whose parts are listed once the manifest names them.
pub fn look_in(folder: &str) -> Option<String> {
    let mut segments = folder.strip_suffix('/')?.rsplit('/');
    let (range, report) = (segments.next()?, segments.next()?);
    (is_period_folder(range) && !report.is_empty()).then(|| format!("{folder}{report}-"))
}

/// Whether a key's segment names a billing period's folder: `YYYYMMDD-YYYYMMDD`.
pub fn is_period_folder(segment: &str) -> bool {
    segment
        .split_once('-')
        .is_some_and(|(a, b)| range_day(a).is_some() && range_day(b).is_some())
}

/// A day of a range folder's name: `YYYYMMDD`.
fn range_day(text: &str) -> Option<NaiveDate> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y%m%d").ok()
}

/// The fields of a manifest this service reads; AWS's others (`columns`, `reportId`,
/// `additionalArtifactKeys`, …) are not needed: parts are read by their own headers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    assembly_id: String,
    account: String,
    report_keys: Vec<String>,
    billing_period: Option<BillingPeriod>,
    report_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BillingPeriod {
    start: String,
}

/// Why a manifest cannot be read: its version fails as content, until AWS writes another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {key} is not a CUR manifest: {reason}")]
    NotAManifest { key: String, reason: String },
    #[error("manifest {key} lists no parts (reportKeys is empty)")]
    NoParts { key: String },
    #[error("manifest {key} is for {manifest}, its folder for {folder}")]
    OtherPeriod {
        key: String,
        manifest: String,
        folder: Period,
    },
    #[error(
        "manifest {key} names part {} outside this integration's prefix {prefix:?}: it is not read",
        excerpt(.part.as_bytes())
    )]
    OutsidePrefix {
        key: String,
        part: String,
        prefix: String,
    },
    #[error(
        "manifest {key} names part {}, which is not a .csv.gz, .csv.zip or .csv file",
        excerpt(.part.as_bytes())
    )]
    UnknownPacking { key: String, part: String },
}

/// A billing period's current version, as its manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub assembly_id: String,
    pub payer: AccountId,
    /// The parts' keys, in the manifest's order, with a leading `/` dropped.
    pub parts: Vec<String>,
    /// What the manifest says of itself (`reportName`, `billingPeriod`): a manifest read
    /// outside its folders (`summarize`) is named by them.
    pub named: Option<ManifestKey>,
}

impl Manifest {
    /// Reads the manifest at `key` (named by [`ManifestKey::parse`], when its key says): its
    /// parts must lie under `prefix`, the integration's.
    pub fn parse(
        key: &str,
        named: Option<&ManifestKey>,
        bytes: &[u8],
        prefix: &str,
    ) -> Result<Manifest, ManifestError> {
        let not_a_manifest = |reason: String| ManifestError::NotAManifest {
            key: key.to_owned(),
            reason,
        };
        let json: ManifestJson =
            serde_json::from_slice(bytes).map_err(|e| not_a_manifest(e.to_string()))?;
        if json.assembly_id.is_empty() {
            return Err(not_a_manifest("its assemblyId is empty".into()));
        }
        let payer: AccountId = json
            .account
            .parse()
            .map_err(|e: crate::domain::NotAnAccountId| not_a_manifest(format!("account: {e}")))?;
        // `20161101T000000.000Z`
        let period = json.billing_period.as_ref().map(|period| {
            let day = period.start.get(..8).and_then(range_day);
            (period.start.clone(), day.map(Period::of_day))
        });
        if let (Some((start, month)), Some(named)) = (&period, named)
            && *month != Some(named.period)
        {
            return Err(ManifestError::OtherPeriod {
                key: key.to_owned(),
                manifest: start.clone(),
                folder: named.period,
            });
        }
        if json.report_keys.is_empty() {
            return Err(ManifestError::NoParts {
                key: key.to_owned(),
            });
        }
        let mut parts = Vec::with_capacity(json.report_keys.len());
        for part in json.report_keys {
            let part = part.strip_prefix('/').unwrap_or(&part).to_owned();
            if !part.starts_with(prefix) {
                return Err(ManifestError::OutsidePrefix {
                    key: key.to_owned(),
                    part,
                    prefix: prefix.to_owned(),
                });
            }
            if part_compression(&part).is_none() {
                return Err(ManifestError::UnknownPacking {
                    key: key.to_owned(),
                    part,
                });
            }
            parts.push(part);
        }
        let named = json
            .report_name
            .zip(period.and_then(|(_, month)| month))
            .map(|(report, period)| ManifestKey { report, period });
        Ok(Manifest {
            assembly_id: json.assembly_id,
            payer,
            parts,
            named,
        })
    }

    /// The version this manifest describes, with each part found in the listing (`listed`);
    /// the parts it lacks are named in [`Version::missing`].
    pub fn version(
        &self,
        named: &ManifestKey,
        manifest: &ObjectMeta,
        listed: impl Fn(&str) -> Option<ObjectMeta>,
    ) -> Version {
        let mut parts = Vec::new();
        let mut missing = Vec::new();
        for key in &self.parts {
            match listed(key) {
                Some(object) => parts.push(Part {
                    compression: part_compression(key).expect("checked when parsed"),
                    object,
                }),
                None => missing.push(key.clone()),
            }
        }
        Version {
            format: Format::Cur,
            statement: StatementId {
                payer: self.payer.clone(),
                entity: None,
                period: named.period,
            },
            key: manifest.key.clone(),
            identity: self.assembly_id.clone(),
            variant: named.report.clone(),
            parts,
            missing,
            manifest: Some(manifest.clone()),
            marketplace: false,
        }
    }
}

/// How a part is packed, by its name.
pub fn part_compression(key: &str) -> Option<Compression> {
    if key.ends_with(".csv.gz") {
        Some(Compression::Gzip)
    } else if key.ends_with(".csv.zip") {
        Some(Compression::Zip)
    } else if key.ends_with(".csv") {
        Some(Compression::Sniff)
    } else {
        None
    }
}

/// How a CUR part's header is found (its first line) and mapped.
pub const LAYOUT: Layout = Layout {
    name: "a Cost and Usage Report",
    header_hint: "lineItem/UsageAccountId",
    header_within: 1,
    is_header,
    map: fields,
    // A fifth of a line's 200 fields is read: splitting, done on the unpacking thread, made a
    // month's `once` 1.79 s against 1.43 s.
    split_while_unpacking: false,
};

fn is_header(record: &Record<'_>) -> bool {
    record.iter().any(|f| f.starts_with(b"lineItem/"))
}

/// A CUR header's line-item fields, by name (the column set differs from month to month and
/// part to part; positions mean nothing). Tags are the `resourceTags/` columns, stored under
/// the name after that (`user:Name`, as a DBR names them); cost categories are kept as tags
/// named by their columns (`costCategory/Team`).
fn fields(names: &[String]) -> Result<Fields, Vec<&'static str>> {
    let mut header = Header::new(names);
    let payer = header.need("bill/PayerAccountId");
    let account = header.need("lineItem/UsageAccountId");
    let line_item_type = header.need("lineItem/LineItemType");
    let invoice_id = header.need("bill/InvoiceId");
    let product_code = header.need("lineItem/ProductCode");
    let usage_type = header.need("lineItem/UsageType");
    let operation = header.need("lineItem/Operation");
    let availability_zone = header.need("lineItem/AvailabilityZone");
    let usage_start = header.need("lineItem/UsageStartDate");
    let usage_quantity = header.need("lineItem/UsageAmount");
    let unblended_cost = header.need("lineItem/UnblendedCost");
    let blended_cost = header.need("lineItem/BlendedCost");
    header.lacking()?;
    let find = |name: &str| header.find(name);
    let tags = names
        .iter()
        .enumerate()
        .filter_map(|(column, name)| {
            let tag = name
                .strip_prefix("resourceTags/")
                .map(str::to_owned)
                .or_else(|| name.starts_with("costCategory/").then(|| name.clone()))?;
            Some((column, tag))
        })
        .collect();
    let (product, product_code) = match find("product/ProductName") {
        Some(name) => (name, Some(product_code)),
        None => (product_code, None),
    };
    Ok(Fields {
        payer,
        account,
        invoice_id,
        product,
        product_code,
        usage_type,
        operation,
        availability_zone,
        usage_start,
        usage_quantity,
        unblended_cost,
        blended_cost,
        resource_id: find("lineItem/ResourceId"),
        item_description: find("lineItem/LineItemDescription"),
        list_rate: find("pricing/publicOnDemandRate"),
        pricing_unit: find("pricing/unit"),
        tags,
        dialect: Dialect::Cur {
            line_item_type,
            billing_entity: find("bill/BillingEntity"),
            region: find("product/region"),
            amortization: Amortization {
                savings_plan_effective_cost: find("savingsPlan/SavingsPlanEffectiveCost"),
                total_commitment_to_date: find("savingsPlan/TotalCommitmentToDate"),
                used_commitment: find("savingsPlan/UsedCommitment"),
                reservation_effective_cost: find("reservation/EffectiveCost"),
                unused_amortized_upfront_fee: find(
                    "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod",
                ),
                unused_recurring_fee: find("reservation/UnusedRecurringFee"),
                reservation_arn: find("reservation/ReservationARN"),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_of_both_versioning_modes() {
        let named = ManifestKey::parse("billing/cur/hourly/20240501-20240601/hourly-Manifest.json");
        assert_eq!(
            named,
            Some(ManifestKey {
                report: "hourly".into(),
                period: Period::new(2024, 5).unwrap(),
            })
        );
        // AWS's documentation shows ranges ending on the month's last day.
        assert!(ManifestKey::parse("cur/20160101-20160131/cur-Manifest.json").is_some());
        for not_top_level in [
            // An assembly folder's copy.
            "cur/20240501-20240601/97ed2b49-373d-4804-9b7a-47d6cf94a286/cur-Manifest.json",
            "cur/20240502-20240601/cur-Manifest.json",
            "cur/20240501-20240401/cur-Manifest.json",
            "other/20240501-20240601/cur-Manifest.json",
            "cur/20240501-20240601/cur-1.csv.gz",
            "20240501-20240601/cur-Manifest.json",
            "cur/cur/year=2024/month=5/cur-Manifest.json",
        ] {
            assert_eq!(ManifestKey::parse(not_top_level), None, "{not_top_level}");
        }
        assert!(ManifestKey::is_report_object(
            "p/cur/20240501-20240601/abc/cur-1.csv.gz"
        ));
        assert!(!ManifestKey::is_report_object("p/cur/2024-05/cur-1.csv.gz"));
    }

    #[test]
    fn a_listing_looks_at_a_billing_periods_own_objects() {
        assert_eq!(
            look_in("p/cur/20240501-20240601/").as_deref(),
            Some("p/cur/20240501-20240601/cur-")
        );
        assert_eq!(
            look_in("20240501-20240601/").as_deref(),
            None,
            "no report folder above"
        );
        for folder in [
            "p/",
            "p/cur/",
            "p/cur/20240501-20240601/a1/",
            "p/cur/2024-05/",
        ] {
            assert_eq!(look_in(folder), None, "{folder}");
        }
    }

    /// The folders a listing passes through on its way to `key`, each with where it looks.
    fn reaches(key: &str) -> bool {
        key.match_indices('/').all(|(at, _)| {
            let folder = &key[..=at];
            key.starts_with(&look_in(folder).unwrap_or_else(|| folder.to_owned()))
        })
    }

    proptest::proptest! {
        /// Whatever the folders, a listing narrowed by `look_in` still reaches every manifest and
        /// every part of a report AWS overwrites.
        #[test]
        fn narrowing_never_hides_a_manifest(
            folders in proptest::collection::vec("[a-z0-9=-]{0,6}", 0..4),
            report in "[a-z0-9-]{1,6}",
            month in 1u32..=12,
            file in proptest::sample::select(vec!["Manifest.json", "1.csv.gz", "00002.csv.zip"]),
        ) {
            let mut key = folders.iter().map(|folder| format!("{folder}/")).collect::<String>();
            let next = if month == 12 { "20250101".to_owned() } else { format!("2024{:02}01", month + 1) };
            key.push_str(&format!("{report}/2024{month:02}01-{next}/{report}-{file}"));
            if file == "Manifest.json" {
                proptest::prop_assert!(ManifestKey::parse(&key).is_some(), "{key}");
            }
            proptest::prop_assert!(reaches(&key), "{key}");
        }
    }

    fn named() -> ManifestKey {
        ManifestKey::parse("p/cur/20240501-20240601/cur-Manifest.json").unwrap()
    }

    fn parse(json: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(
            "p/cur/20240501-20240601/cur-Manifest.json",
            Some(&named()),
            json.as_bytes(),
            "p/",
        )
    }

    #[test]
    fn a_manifest_names_its_version_and_parts() {
        let manifest = parse(
            r#"{"assemblyId":"a1","account":"123456789012","columns":[{"category":"identity","name":"LineItemId"}],
                "billingPeriod":{"start":"20240501T000000.000Z","end":"20240601T000000.000Z"},
                "reportKeys":["/p/cur/20240501-20240601/a1/cur-1.csv.gz","p/cur/20240501-20240601/a1/cur-2.csv.zip"],
                "reportName":"cur"}"#,
        )
        .unwrap();
        assert_eq!(manifest.assembly_id, "a1");
        assert_eq!(manifest.named, Some(named()));
        assert_eq!(manifest.payer.as_str(), "123456789012");
        assert_eq!(
            manifest.parts,
            [
                "p/cur/20240501-20240601/a1/cur-1.csv.gz",
                "p/cur/20240501-20240601/a1/cur-2.csv.zip"
            ]
        );
        let object = |key: &str, size| ObjectMeta {
            key: key.into(),
            etag: "e".into(),
            size,
            last_modified: None,
        };
        let version = manifest.version(
            &named(),
            &object("p/cur/20240501-20240601/cur-Manifest.json", 1),
            |key| key.ends_with("-1.csv.gz").then(|| object(key, 10)),
        );
        assert_eq!(version.identity, "a1");
        assert_eq!(version.parts.len(), 1);
        assert_eq!(version.parts[0].compression, Compression::Gzip);
        assert_eq!(
            version.missing,
            ["p/cur/20240501-20240601/a1/cur-2.csv.zip"]
        );
    }

    #[test]
    fn bad_manifests_say_why() {
        let cases = [
            ("not json", "is not a CUR manifest: expected ident"),
            (
                r#"{"assemblyId":"a","account":"1","reportKeys":[]}"#,
                "lists no parts",
            ),
            (
                r#"{"assemblyId":"","account":"1","reportKeys":["p/x.csv.gz"]}"#,
                "assemblyId is empty",
            ),
            (
                r#"{"assemblyId":"a","account":"x1","reportKeys":["p/x.csv.gz"]}"#,
                "account: \"x1\" is not an AWS account ID",
            ),
            (
                r#"{"assemblyId":"a","account":"1","reportKeys":["q/x.csv.gz"]}"#,
                "outside this integration's prefix \"p/\"",
            ),
            (
                r#"{"assemblyId":"a","account":"1","reportKeys":["p/x.parquet"]}"#,
                "not a .csv.gz, .csv.zip or .csv file",
            ),
            (
                r#"{"assemblyId":"a","account":"1","billingPeriod":{"start":"20240601T000000.000Z"},"reportKeys":["p/x.csv.gz"]}"#,
                "is for 20240601T000000.000Z, its folder for 2024-05",
            ),
        ];
        for (json, expected) in cases {
            let error = parse(json).unwrap_err().to_string();
            assert!(error.contains(expected), "{json}: {error}");
            assert!(error.starts_with("manifest p/cur/20240501-20240601/cur-Manifest.json "));
        }
    }

    mod rows {
        //! A CUR part's header and rows, read through [`LAYOUT`].

        use rust_decimal::Decimal;

        use super::super::LAYOUT;
        use crate::report::dimensions::ChargeCategory;
        use crate::report::rows::{RecordType, RowReader};
        use crate::report::usage::Usage;

        const HEADER: &str = "lineItem/LineItemType,bill/PayerAccountId,lineItem/UsageAccountId,bill/InvoiceId,bill/BillingEntity,lineItem/ProductCode,product/ProductName,product/region,lineItem/UsageType,lineItem/Operation,lineItem/AvailabilityZone,lineItem/ResourceId,lineItem/UsageStartDate,lineItem/UsageAmount,lineItem/UnblendedCost,lineItem/BlendedCost,savingsPlan/SavingsPlanEffectiveCost,savingsPlan/TotalCommitmentToDate,savingsPlan/UsedCommitment,reservation/EffectiveCost,reservation/UnusedAmortizedUpfrontFeeForBillingPeriod,reservation/UnusedRecurringFee,reservation/ReservationARN,resourceTags/user:Name,costCategory/Team";

        /// One row of `type` costing 10 (unblended), with the amortization columns given.
        fn amortized(line_item_type: &str, columns: [&str; 7]) -> (Decimal, bool) {
            let [sp, total, used, ri, unused_upfront, unused_recurring, arn] = columns;
            let text = format!(
                "{HEADER}\n{line_item_type},111122223333,444455556666,,AWS,AmazonEC2,Amazon Elastic Compute Cloud,us-east-1,BoxUsage,Run,,,2024-05-01T00:00:00Z,1,10,9,{sp},{total},{used},{ri},{unused_upfront},{unused_recurring},{arn},,\n"
            );
            let mut rows = RowReader::new(text.as_bytes(), &LAYOUT).unwrap();
            let row = rows.next_row().unwrap().unwrap();
            let amortized = row.amortized_cost(row.unblended_cost().unwrap());
            (amortized.cost, amortized.as_billed)
        }

        #[test]
        fn the_amortized_cost_follows_the_line_item_type() {
            let d = |text: &str| text.parse::<Decimal>().unwrap();
            let none = [""; 7];
            let cases = [
                ("Usage", none, (d("10"), false)),
                (
                    "SavingsPlanCoveredUsage",
                    ["7.5", "", "", "", "", "", ""],
                    (d("7.5"), false),
                ),
                (
                    "SavingsPlanRecurringFee",
                    ["", "100", "60.25", "", "", "", ""],
                    (d("39.75"), false),
                ),
                ("SavingsPlanNegation", none, (d("0"), false)),
                ("SavingsPlanUpfrontFee", none, (d("0"), false)),
                (
                    "DiscountedUsage",
                    ["", "", "", "3.25", "", "", ""],
                    (d("3.25"), false),
                ),
                ("RIFee", ["", "", "", "", "1.5", "2", ""], (d("3.5"), false)),
                (
                    "Fee",
                    ["", "", "", "", "", "", "arn:aws:ec2:reserved"],
                    (d("0"), false),
                ),
                ("Fee", none, (d("10"), false)),
                ("Tax", none, (d("10"), false)),
                // Where the column is absent or not a number (koku-nise writes `None`), the
                // line item counts at its unblended cost, and is counted.
                (
                    "SavingsPlanCoveredUsage",
                    ["None", "", "", "", "", "", ""],
                    (d("10"), true),
                ),
                ("DiscountedUsage", none, (d("10"), true)),
                ("RIFee", ["", "", "", "", "1.5", "", ""], (d("10"), true)),
            ];
            for (line_item_type, columns, expected) in cases {
                assert_eq!(
                    amortized(line_item_type, columns),
                    expected,
                    "{line_item_type} {columns:?}"
                );
            }
        }

        #[test]
        fn a_row_reads_as_a_line_item_with_its_type_region_and_tags() {
            let text = format!(
                "{HEADER}\nDiscountedUsage,111122223333,444455556666,123,AWS,AmazonEC2,,eu-west-1,BoxUsage:m5.large,RunInstances,eu-west-1a,i-1,2024-05-01 03:00:00+00:00,1.5e0,0.25,0.25,,,,,,,,web,Platform\n"
            );
            let mut rows = RowReader::new(text.as_bytes(), &LAYOUT).unwrap();
            assert!(rows.columns().has_resources());
            let row = rows.next_row().unwrap().unwrap();
            assert_eq!(row.record_type().unwrap(), RecordType::LineItem);
            assert!(!row.estimated());
            assert_eq!(row.usage_quantity().unwrap(), Decimal::new(15, 1));
            let mut key = Vec::new();
            row.usage_key(&mut key, false);
            row.check_usage(&key).unwrap();
            let usage = Usage::decode(&key);
            assert_eq!(usage.charge_category, ChargeCategory::Usage);
            assert!(usage.reserved_instance);
            // No product name: the product code names it.
            assert_eq!(usage.product, "AmazonEC2");
            assert_eq!(usage.line_item_type, "DiscountedUsage");
            assert_eq!(usage.region(), "eu-west-1");
            assert_eq!(
                usage.tags,
                [("user:Name", "web"), ("costCategory/Team", "Platform")]
            );
        }

        #[test]
        fn a_usage_keeps_its_unit_and_public_rate() {
            let header = "lineItem/LineItemType,bill/PayerAccountId,lineItem/UsageAccountId,bill/InvoiceId,lineItem/ProductCode,product/ProductName,lineItem/UsageType,lineItem/Operation,lineItem/AvailabilityZone,lineItem/UsageStartDate,lineItem/UsageAmount,lineItem/UnblendedCost,lineItem/BlendedCost,pricing/unit,pricing/publicOnDemandRate";
            let text = format!(
                "{header}\n\
                 DiscountedUsage,111122223333,111122223333,,AmazonEC2,Amazon Elastic Compute Cloud,BoxUsage:m5.large,RunInstances,,2024-05-01T03:00:00Z,1,0.05,0.05,Hrs,0.096\n\
                 Usage,111122223333,111122223333,,AmazonS3,Amazon Simple Storage Service,TimedStorage-ByteHrs,,,2024-05-01T03:00:00Z,1,0.05,0.05,GB-Mo,None\n"
            );
            let mut rows = RowReader::new(text.as_bytes(), &LAYOUT).unwrap();
            let mut usages = Vec::new();
            while let Some(row) = rows.next_row().unwrap() {
                let mut key = Vec::new();
                row.usage_key(&mut key, false);
                row.check_usage(&key).unwrap();
                let usage = Usage::decode(&key);
                usages.push((usage.pricing_unit(), usage.list_rate.to_owned()));
            }
            assert_eq!(
                usages,
                [
                    ("Hours".to_owned(), "0.096".to_owned()),
                    ("GB-Months".to_owned(), "None".to_owned())
                ]
            );
        }

        #[test]
        fn a_part_without_the_columns_sums_need_is_refused() {
            let error = RowReader::new(
                "lineItem/UsageAccountId,lineItem/UnblendedCost\n1,2\n".as_bytes(),
                &LAYOUT,
            )
            .err()
            .unwrap();
            assert!(
                error.to_string().starts_with(
                    "line 1: not a Cost and Usage Report: the header lacks bill/PayerAccountId, lineItem/LineItemType"
                ),
                "{error}"
            );
            let error = RowReader::new("identity/LineItemId\n1\n".as_bytes(), &LAYOUT)
                .err()
                .unwrap();
            assert_eq!(
                error.to_string(),
                "line 1: not a Cost and Usage Report: no header with lineItem/UsageAccountId in its first line"
            );
        }
    }
}
