//! The legacy Detailed Billing Report (DBR): what an object key says (payer, variant, billing
//! entity, period), which keys of one listing to ingest (one per statement), and how its header
//! maps to the line-item fields. A DBR version is one object, identified by its ETag. Its footer
//! (`AccountTotal` and the other totals) is what its line items are reconciled with.

use std::collections::BTreeMap;
use std::fmt;

use chrono::Datelike;

use crate::domain::{
    AccountId, NotAPeriod, NotAnAccountId, ObjectMeta, Period, StatementId, excerpt,
};
use crate::report::records::Record;
use crate::report::rows::{Dialect, Fields, Header, Layout};

const DETAILED: &str = "aws-billing-detailed-line-items";
const WITH_RESOURCES: &str = "-with-resources-and-tags";
const ZIP_SUFFIX: &str = ".csv.zip";
const CSV_SUFFIX: &str = ".csv";
/// The billing-entity infixes AWS writes: another would be a second statement for the same
/// month, doubling it in the views.
pub const KNOWN_ENTITIES: [&str; 4] = ["ACTS", "ACTS-Ningxia", "AISPL", "AWSMarketplace"];
/// Detailed billing reports began in 2012.
const FIRST_YEAR: i32 = 2012;

/// How every DBR key of `payer` begins (after the bucket's prefix): listing only this finds
/// its reports without the other objects of a crowded bucket.
pub fn payer_key_start(payer: &AccountId) -> String {
    format!("{payer}-{DETAILED}")
}

/// Which of the two DBR flavours a file is. Both hold the same line items for a month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    Plain,
    WithResourcesAndTags,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::WithResourcesAndTags => "with-resources-and-tags",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an object key is not a legacy DBR: said in logs when an object is ignored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotDbr {
    #[error("a folder")]
    Folder,
    #[error("AWS's programmatic-access test object")]
    AccessTestObject,
    #[error("the monthly report (-aws-billing-csv-), not the detailed one")]
    MonthlyReport,
    #[error("the cost-allocation report, not the detailed one")]
    CostAllocationReport,
    #[error("a .csv without .zip (AWS delivers detailed billing reports zipped)")]
    NotZipped,
    #[error(transparent)]
    BadPayer(#[from] NotAnAccountId),
    #[error(transparent)]
    BadPeriod(#[from] NotAPeriod),
    #[error("billing entity {} is not one AWS writes ({})", excerpt(.0.as_bytes()), KNOWN_ENTITIES.join(", "))]
    UnknownEntity(String),
    #[error(
        "period {0} is outside the years detailed billing reports exist ({FIRST_YEAR} to next year)"
    )]
    PeriodOutOfRange(Period),
    #[error(
        "name does not follow <payer>-{DETAILED}[{WITH_RESOURCES}][-<entity>]-YYYY-MM{ZIP_SUFFIX}"
    )]
    Unrecognised,
}

/// What the key of a legacy DBR object says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportKey {
    pub payer: AccountId,
    pub variant: Variant,
    /// Billing-entity infix (`ACTS`, `ACTS-Ningxia`, `AISPL`, `AWSMarketplace`), if any.
    pub entity: Option<String>,
    pub period: Period,
}

impl ReportKey {
    /// Parses a full object key; any prefix (`billing/2017/`) is allowed before the file name.
    pub fn parse(key: &str) -> Result<ReportKey, NotDbr> {
        if key.ends_with('/') {
            return Err(NotDbr::Folder);
        }
        let name = key.rsplit('/').next().unwrap_or(key);
        if name == "aws-programmatic-access-test-object" {
            return Err(NotDbr::AccessTestObject);
        }
        let name_parts = if let Some(stem) = name.strip_suffix(ZIP_SUFFIX) {
            parse_stem(stem)?
        } else if let Some(stem) = name.strip_suffix(CSV_SUFFIX) {
            parse_stem(stem)?;
            return Err(NotDbr::NotZipped);
        } else {
            return Err(NotDbr::Unrecognised);
        };
        let (payer, variant, entity, period) = name_parts;
        Ok(ReportKey {
            payer,
            variant,
            entity,
            period,
        })
    }
}

impl ReportKey {
    /// Billed by AWS Marketplace (the `AWSMarketplace` entity): every line item is a
    /// marketplace charge.
    pub fn is_marketplace(&self) -> bool {
        self.entity.as_deref() == Some("AWSMarketplace")
    }

    /// The statement the report is for.
    pub fn statement(&self) -> StatementId {
        StatementId {
            payer: self.payer.clone(),
            entity: self.entity.clone(),
            period: self.period,
        }
    }
}

type NameParts = (AccountId, Variant, Option<String>, Period);

/// `<payer>-aws-billing-detailed-line-items[-with-resources-and-tags][-<entity>]-YYYY-MM`
fn parse_stem(stem: &str) -> Result<NameParts, NotDbr> {
    let (payer, report) = stem.split_once('-').ok_or(NotDbr::Unrecognised)?;
    let Some(rest) = report.strip_prefix(DETAILED) else {
        return Err(if report.starts_with("aws-billing-csv-") {
            NotDbr::MonthlyReport
        } else if report.starts_with("aws-cost-allocation-") {
            NotDbr::CostAllocationReport
        } else {
            NotDbr::Unrecognised
        });
    };
    let payer: AccountId = payer.parse()?;
    let (variant, rest) = match rest.strip_prefix(WITH_RESOURCES) {
        Some(rest) => (Variant::WithResourcesAndTags, rest),
        None => (Variant::Plain, rest),
    };
    // What is left is `-YYYY-MM` or `-<entity>-YYYY-MM`.
    let rest = rest.strip_prefix('-').ok_or(NotDbr::Unrecognised)?;
    let period_at = rest.len().checked_sub(7).ok_or(NotDbr::Unrecognised)?;
    let (head, period) = rest
        .split_at_checked(period_at)
        .ok_or(NotDbr::Unrecognised)?;
    let period: Period = period.parse()?;
    let year = period.first_day().year();
    if year < FIRST_YEAR || year > chrono::Utc::now().year() + 1 {
        return Err(NotDbr::PeriodOutOfRange(period));
    }
    let entity = match head {
        "" => None,
        _ => {
            let entity = head.strip_suffix('-').ok_or(NotDbr::Unrecognised)?;
            if !KNOWN_ENTITIES.contains(&entity) {
                return Err(NotDbr::UnknownEntity(entity.to_owned()));
            }
            Some(entity.to_owned())
        }
    };
    Ok((payer, variant, entity, period))
}

/// A listed object whose key is a DBR's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedReport {
    pub report: ReportKey,
    pub object: ObjectMeta,
}

/// What to ingest from one listing, and what was passed over with the reason.
#[derive(Debug)]
pub struct Selection {
    pub ingest: Vec<ListedReport>,
    pub passed_over: Vec<(ListedReport, String)>,
}

/// Chooses one report per statement (payer, billing entity, period): the with-resources-and-tags
/// variant when both exist, because ingesting both would double the month. Should the same
/// variant appear twice (under two prefixes), the greatest key wins so the choice is stable.
pub fn choose(reports: impl IntoIterator<Item = ListedReport>) -> Selection {
    let mut by_statement: BTreeMap<StatementId, Vec<ListedReport>> = BTreeMap::new();
    for listed in reports {
        by_statement
            .entry(listed.report.statement())
            .or_default()
            .push(listed);
    }
    let mut selection = Selection {
        ingest: Vec::new(),
        passed_over: Vec::new(),
    };
    for (_, mut candidates) in by_statement {
        candidates.sort_by(|a, b| {
            (a.report.variant, &a.object.key).cmp(&(b.report.variant, &b.object.key))
        });
        let chosen = candidates.pop().expect("every group has a member");
        for other in candidates {
            let reason = format!("same statement as {}", chosen.object.key);
            selection.passed_over.push((other, reason));
        }
        selection.ingest.push(chosen);
    }
    selection
}

/// How a DBR's header is found (after a preamble line, "Don't see your tags in the report?
/// …"; a few more are tolerated) and mapped.
pub const LAYOUT: Layout = Layout {
    name: "a detailed billing report",
    header_hint: "RecordType and PayerAccountId",
    header_within: 5,
    is_header,
    map: fields,
    // Every field of a line is read, and its line is short: summing a realistic month at the
    // daily grain took 1.6 s of CPU for 1.1 s of inflating.
    split_while_unpacking: true,
};

/// True for the header record of a DBR (or of a look-alike report, refused by [`fields`]).
fn is_header(record: &Record<'_>) -> bool {
    let has = |name: &[u8]| record.iter().any(|f| f == name);
    has(b"RecordType") && has(b"PayerAccountId")
}

/// A DBR header's line-item fields. Consolidated billing has blended and unblended costs; a
/// payer without it has a single `Cost`, which is both. Tags are the `user:` and `aws:`
/// columns, stored under their column names.
fn fields(names: &[String]) -> Result<Fields, Vec<&'static str>> {
    let mut header = Header::new(names);
    let invoice_id = header.need("InvoiceID");
    let payer = header.need("PayerAccountId");
    let account = header.need("LinkedAccountId");
    let record_type = header.need("RecordType");
    let product = header.need("ProductName");
    let usage_type = header.need("UsageType");
    let operation = header.need("Operation");
    let availability_zone = header.need("AvailabilityZone");
    let usage_start = header.need("UsageStartDate");
    let usage_quantity = header.need("UsageQuantity");
    let costs = (
        header.find("BlendedCost"),
        header.find("UnBlendedCost"),
        header.find("Cost"),
    );
    let (unblended_cost, blended_cost) = match costs {
        (Some(blended), Some(unblended), _) => (unblended, blended),
        (_, _, Some(cost)) => (cost, cost),
        _ => {
            let cost = header.need("BlendedCost and UnBlendedCost, or Cost");
            (cost, cost)
        }
    };
    let (resource_id, item_description, reserved_instance) = (
        header.find("ResourceId"),
        header.find("ItemDescription"),
        header.find("ReservedInstance"),
    );
    // `Rate` beside a single `Cost`.
    let list_rate = header.find("UnBlendedRate").or_else(|| header.find("Rate"));
    header.lacking()?;
    let tags = (0..names.len())
        .filter(|&i| names[i].starts_with("user:") || names[i].starts_with("aws:"))
        .map(|i| (i, names[i].clone()))
        .collect();
    Ok(Fields {
        payer,
        account,
        invoice_id,
        product,
        product_code: None,
        usage_type,
        operation,
        availability_zone,
        usage_start,
        usage_quantity,
        unblended_cost,
        blended_cost,
        resource_id,
        // In every real report; optional, as a report without them loses nothing else.
        item_description,
        list_rate,
        pricing_unit: None,
        tags,
        dialect: Dialect::Dbr {
            record_type,
            reserved_instance,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(
        payer: &str,
        variant: Variant,
        entity: Option<&str>,
        period: &str,
    ) -> Result<(String, Variant, Option<String>, String), NotDbr> {
        Ok((payer.into(), variant, entity.map(Into::into), period.into()))
    }

    #[test]
    fn keys_are_classified() {
        use Variant::*;
        let cases: &[(&str, Result<_, NotDbr>)] = &[
            (
                "123456789012-aws-billing-detailed-line-items-2017-01.csv.zip",
                ok("123456789012", Plain, None, "2017-01"),
            ),
            (
                "013328811177-aws-billing-detailed-line-items-with-resources-and-tags-2016-12.csv.zip",
                ok("013328811177", WithResourcesAndTags, None, "2016-12"),
            ),
            (
                "billing/2017/123456789012-aws-billing-detailed-line-items-2017-02.csv.zip",
                ok("123456789012", Plain, None, "2017-02"),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-with-resources-and-tags-ACTS-Ningxia-2020-08.csv.zip",
                ok(
                    "123456789012",
                    WithResourcesAndTags,
                    Some("ACTS-Ningxia"),
                    "2020-08",
                ),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-ACTS-2020-08.csv.zip",
                ok("123456789012", Plain, Some("ACTS"), "2020-08"),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-with-resources-and-tags-AISPL-2019-03.csv.zip",
                ok(
                    "123456789012",
                    WithResourcesAndTags,
                    Some("AISPL"),
                    "2019-03",
                ),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-AWSMarketplace-2019-03.csv.zip",
                ok("123456789012", Plain, Some("AWSMarketplace"), "2019-03"),
            ),
            (
                "123456789-aws-billing-detailed-line-items-with-resources-and-tags-2016-09.csv.zip",
                ok("123456789", WithResourcesAndTags, None, "2016-09"),
            ),
            (
                "123456789012-aws-billing-csv-2017-01.csv",
                Err(NotDbr::MonthlyReport),
            ),
            (
                "123456789012-aws-cost-allocation-2017-01.csv",
                Err(NotDbr::CostAllocationReport),
            ),
            (
                "aws-programmatic-access-test-object",
                Err(NotDbr::AccessTestObject),
            ),
            (
                "billing/aws-programmatic-access-test-object",
                Err(NotDbr::AccessTestObject),
            ),
            ("cur/report/20170601-20170701/", Err(NotDbr::Folder)),
            (
                "cur/report/20170601-20170701/report-1.csv.gz",
                Err(NotDbr::Unrecognised),
            ),
            (
                "cur/report/20170601-20170701/report-Manifest.json",
                Err(NotDbr::Unrecognised),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-2017-01.csv",
                Err(NotDbr::NotZipped),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-2017-13.csv.zip",
                Err(NotDbr::BadPeriod(NotAPeriod("2017-13".into()))),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-2017-00.csv.zip",
                Err(NotDbr::BadPeriod(NotAPeriod("2017-00".into()))),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-2017-1.csv.zip",
                Err(NotDbr::Unrecognised),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-2017-01.csv.zip.bak",
                Err(NotDbr::Unrecognised),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-2017-01.zip",
                Err(NotDbr::Unrecognised),
            ),
            (
                "backup-123456789012-aws-billing-detailed-line-items-2017-01.csv.zip",
                Err(NotDbr::Unrecognised),
            ),
            (
                "12345678901a-aws-billing-detailed-line-items-2017-01.csv.zip",
                Err(NotDbr::BadPayer(NotAnAccountId::NotDigits(
                    "12345678901a".into(),
                ))),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-with-resources-and-tags-2017.csv.zip",
                Err(NotDbr::Unrecognised),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-ACTS_1-2020-08.csv.zip",
                Err(NotDbr::UnknownEntity("ACTS_1".into())),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-ACTS--2020-08.csv.zip",
                Err(NotDbr::UnknownEntity("ACTS-".into())),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-Foo-2020-08.csv.zip",
                Err(NotDbr::UnknownEntity("Foo".into())),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-0999-01.csv.zip",
                Err(NotDbr::PeriodOutOfRange(Period::new(999, 1).unwrap())),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-2011-12.csv.zip",
                Err(NotDbr::PeriodOutOfRange(Period::new(2011, 12).unwrap())),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-9999-01.csv.zip",
                Err(NotDbr::PeriodOutOfRange(Period::new(9999, 1).unwrap())),
            ),
            (
                "123456789012-aws-billing-detailed-line-items2017-01.csv.zip",
                Err(NotDbr::Unrecognised),
            ),
            ("my-notes.csv.zip", Err(NotDbr::Unrecognised)),
            ("", Err(NotDbr::Unrecognised)),
        ];
        for (key, expected) in cases {
            let parsed = ReportKey::parse(key).map(|k| {
                (
                    k.payer.to_string(),
                    k.variant,
                    k.entity,
                    k.period.to_string(),
                )
            });
            assert_eq!(&parsed, expected, "key {key:?}");
        }
    }

    fn keys(names: &[&str]) -> Vec<ListedReport> {
        names
            .iter()
            .map(|&name| ListedReport {
                report: ReportKey::parse(name).unwrap(),
                object: ObjectMeta {
                    key: name.into(),
                    etag: "e".into(),
                    size: 1,
                    last_modified: None,
                },
            })
            .collect()
    }

    #[test]
    fn with_resources_wins_and_statements_stay_apart() {
        let listing = keys(&[
            "111111111111-aws-billing-detailed-line-items-2017-01.csv.zip",
            "111111111111-aws-billing-detailed-line-items-with-resources-and-tags-2017-01.csv.zip",
            "111111111111-aws-billing-detailed-line-items-2017-02.csv.zip",
            "222222222222-aws-billing-detailed-line-items-2017-01.csv.zip",
            "111111111111-aws-billing-detailed-line-items-ACTS-2017-01.csv.zip",
        ]);
        let selection = choose(listing);
        let mut chosen: Vec<_> = selection
            .ingest
            .iter()
            .map(|l| l.object.key.as_str())
            .collect();
        chosen.sort();
        assert_eq!(
            chosen,
            [
                "111111111111-aws-billing-detailed-line-items-2017-02.csv.zip",
                "111111111111-aws-billing-detailed-line-items-ACTS-2017-01.csv.zip",
                "111111111111-aws-billing-detailed-line-items-with-resources-and-tags-2017-01.csv.zip",
                "222222222222-aws-billing-detailed-line-items-2017-01.csv.zip",
            ]
        );
        assert_eq!(selection.passed_over.len(), 1);
        let (passed, reason) = &selection.passed_over[0];
        assert_eq!(
            passed.object.key,
            "111111111111-aws-billing-detailed-line-items-2017-01.csv.zip"
        );
        assert!(
            reason.contains("with-resources-and-tags-2017-01"),
            "{reason}"
        );
    }

    #[test]
    fn same_report_under_two_prefixes_is_taken_once() {
        let listing = keys(&[
            "a/111111111111-aws-billing-detailed-line-items-2017-01.csv.zip",
            "b/111111111111-aws-billing-detailed-line-items-2017-01.csv.zip",
        ]);
        let selection = choose(listing);
        assert_eq!(selection.ingest.len(), 1);
        assert_eq!(
            selection.ingest[0].object.key,
            "b/111111111111-aws-billing-detailed-line-items-2017-01.csv.zip"
        );
        assert_eq!(selection.passed_over.len(), 1);
    }

    mod rows {
        //! A DBR's header and rows, read through [`LAYOUT`].

        use chrono::NaiveDate;

        use super::super::LAYOUT;
        use crate::report::dimensions::ChargeCategory;
        use crate::report::rows::{RecordType, RowReader};
        use crate::report::usage::Usage;

        fn reader(text: &str) -> RowReader<&[u8]> {
            RowReader::new(text.as_bytes(), &LAYOUT).unwrap()
        }

        const HEADER: &str = "InvoiceID,PayerAccountId,LinkedAccountId,RecordType,RecordId,ProductName,RateId,SubscriptionId,PricingPlanId,UsageType,Operation,AvailabilityZone,ReservedInstance,ItemDescription,UsageStartDate,UsageEndDate,UsageQuantity,BlendedRate,BlendedCost,UnBlendedRate,UnBlendedCost";

        #[test]
        fn preamble_is_skipped_and_quoted_header_read() {
            let text = format!(
                "\"Don't see your tags in the report? Activate them.\"\r\n\"{}\"\r\n\"Estimated\",\"1\",\"2\",\"LineItem\",\"26894758374659283746592837\",\"Amazon S3\",\"\",\"\",\"\",\"Requests\",\"Get\",\"\",\"N\",\"First 1,000,000 requests\",\"2017-01-01 00:00:00\",\"2017-01-01 01:00:00\",\"12.5\",\"\",\"-0.00000001\",\"\",\"0.12345678901234\"\r\n",
                HEADER.replace(',', "\",\"")
            );
            let mut rows = reader(&text);
            assert!(rows.columns().consolidated());
            assert!(!rows.columns().has_resources());
            let row = rows.next_row().unwrap().unwrap();
            assert_eq!(row.line(), 3);
            assert_eq!(row.record_type().unwrap(), RecordType::LineItem);
            assert_eq!(row.linked_account(), b"2");
            assert_eq!(
                row.unblended_cost().unwrap().to_string(),
                "0.12345678901234"
            );
            assert_eq!(row.blended_cost().unwrap().to_string(), "-0.00000001");
            assert_eq!(row.usage_quantity().unwrap().to_string(), "12.5");
            assert_eq!(
                row.usage_day().unwrap(),
                NaiveDate::from_ymd_opt(2017, 1, 1)
            );
            assert!(rows.next_row().unwrap().is_none());
        }

        #[test]
        fn a_usage_key_reads_back_as_its_usage() {
            let header = "InvoiceID,PayerAccountId,LinkedAccountId,RecordType,ProductName,UsageType,Operation,AvailabilityZone,ReservedInstance,ItemDescription,UsageStartDate,UsageQuantity,Cost,ResourceId,user:Name,user:team/app.tier,aws:createdBy";
            let text = format!(
                "{header}\n1,9,,LineItem,Amazon S3,Requests,Get,us-east-1a,Y,\"$0.01 per 1,000 requests\",,1,-1,bucket-é,web,,\"batch, nightly\"\n"
            );
            let mut rows = reader(&text);
            let row = rows.next_row().unwrap().unwrap();
            let mut key = Vec::new();
            row.usage_key(&mut key, false);
            row.check_usage(&key).unwrap();
            let usage = Usage::decode(&key);
            assert_eq!(
                usage,
                Usage {
                    charge_category: ChargeCategory::Credit,
                    reserved_instance: true,
                    invoice_id: "1",
                    product: "Amazon S3",
                    usage_type: "Requests",
                    operation: "Get",
                    availability_zone: "us-east-1a",
                    resource_id: "bucket-é",
                    item_description: "$0.01 per 1,000 requests",
                    line_item_type: "",
                    region: "",
                    list_rate: "",
                    pricing_unit: "",
                    tags: vec![("user:Name", "web"), ("aws:createdBy", "batch, nightly")],
                }
            );
            assert_eq!(Usage::category_of(&key), ChargeCategory::Credit);
        }

        #[test]
        fn the_rate_is_a_list_price_on_on_demand_usage_alone() {
            let header = "InvoiceID,PayerAccountId,LinkedAccountId,RecordType,ProductName,UsageType,Operation,AvailabilityZone,ReservedInstance,UsageStartDate,UsageQuantity,UnBlendedRate,UnBlendedCost,BlendedCost";
            let text = format!(
                "{header}\n\
                 1,9,,LineItem,EC2,BoxUsage:m4.large,RunInstances,,N,2017-01-01 00:00:00,2,0.10,0.20,0.20\n\
                 1,9,,LineItem,EC2,BoxUsage:m4.large,RunInstances,,Y,2017-01-01 00:00:00,2,0.03,0.06,0.06\n\
                 1,9,,LineItem,EC2,SpotUsage:c4.large,RunInstances,,N,2017-01-01 00:00:00,2,0.02,0.04,0.04\n"
            );
            let mut rows = reader(&text);
            let mut rates = Vec::new();
            while let Some(row) = rows.next_row().unwrap() {
                let mut key = Vec::new();
                row.usage_key(&mut key, false);
                rates.push(Usage::decode(&key).list_rate.to_owned());
            }
            assert_eq!(rates, ["0.10", "", ""]);
        }

        #[test]
        fn only_an_upfront_reservation_fee_amortizes_to_zero() {
            let header = "InvoiceID,PayerAccountId,LinkedAccountId,RecordType,ProductName,UsageType,Operation,AvailabilityZone,UsageStartDate,UsageQuantity,Cost";
            let text = format!(
                "{header}\n1,9,,LineItem,EC2,HeavyUsage:m4.large,RunInstances,,,1,1200\n1,9,,LineItem,EC2,HeavyUsage:m4.large,RunInstances,,2017-01-01 00:00:00,744,37.2\n1,9,,LineItem,EC2,BoxUsage,RunInstances,,,1,5\n"
            );
            let mut rows = reader(&text);
            let mut amortized = Vec::new();
            while let Some(row) = rows.next_row().unwrap() {
                let cost = row.amortized_cost(row.unblended_cost().unwrap());
                assert!(!cost.as_billed);
                amortized.push(cost.cost.to_string());
            }
            assert_eq!(amortized, ["0", "37.2", "5"]);
        }

        #[test]
        fn single_account_cost_is_both_costs() {
            let header = "InvoiceID,PayerAccountId,LinkedAccountId,RecordType,ProductName,UsageType,Operation,AvailabilityZone,UsageStartDate,UsageEndDate,UsageQuantity,Rate,Cost";
            let text = format!("{header}\n1,9,,LineItem,EC2,Box,Run,,,,1,0.5,0.5\n");
            let mut rows = reader(&text);
            assert!(!rows.columns().consolidated());
            let row = rows.next_row().unwrap().unwrap();
            assert_eq!(row.blended_cost().unwrap(), row.unblended_cost().unwrap());
            assert_eq!(row.usage_day().unwrap(), None);
        }

        #[test]
        fn errors_name_line_and_column() {
            let good = "1,9,9,LineItem,,EC2,,,,Box,Run,,N,,2017-01-01 00:00:00,,1,,1,,1";
            let cases = [
                (
                    format!(
                        "{HEADER}\n{good}\n1,9,9,LineItem,,EC2,,,,Box,Run,,N,,2017-01-01 00:00:00,,1,,1,,x1\n"
                    ),
                    "line 3, column UnBlendedCost: not a decimal number: \"x1\"",
                ),
                (
                    format!(
                        "{HEADER}\n{good}\n1,9,9,LineItem,,EC2,,,,Box,Run,,N,,2017-13-01 00:00:00,,1,,1,,1\n"
                    ),
                    "line 3, column UsageStartDate: not a date (YYYY-MM-DD HH:MM:SS): \"2017-13-01 00:00:00\"",
                ),
                (
                    format!("{HEADER}\n{good}\n1,9,9,LineItem,,EC2\n"),
                    "line 3: 6 fields where the header has 21",
                ),
                (
                    format!("{HEADER}\n1,9,9,Total,,EC2,,,,Box,Run,,N,,,,1,,1,,1\n"),
                    "line 2, column RecordType: unknown record type \"Total\"",
                ),
            ];
            let both_line_endings = cases.into_iter().flat_map(|(text, expected)| {
                let crlf = text.replace('\n', "\r\n");
                [(text, expected), (crlf, expected)]
            });
            for (text, expected) in both_line_endings {
                let mut rows = reader(&text);
                let error = loop {
                    let row = match rows.next_row() {
                        Ok(Some(row)) => row,
                        Ok(None) => panic!("no error for {expected}"),
                        Err(e) => break e,
                    };
                    if let Err(e) = row
                        .record_type()
                        .and(row.usage_day())
                        .and(row.unblended_cost())
                    {
                        break e;
                    }
                };
                assert_eq!(error.to_string(), expected);
            }
        }

        #[test]
        fn monthly_report_is_not_a_dbr() {
            let text = "\"InvoiceID\",\"PayerAccountId\",\"LinkedAccountId\",\"RecordType\",\"RecordID\",\"BillingPeriodStartDate\"\n";
            let error = RowReader::new(text.as_bytes(), &LAYOUT).err().unwrap();
            assert!(
                error
                    .message
                    .starts_with("not a detailed billing report: the header lacks ProductName"),
                "{error}"
            );
        }

        #[test]
        fn no_header_at_all() {
            let error = RowReader::new("a,b\n1,2\n3,4\n5,6\n7,8\n9,10\n".as_bytes(), &LAYOUT)
                .err()
                .unwrap();
            assert!(error.to_string().contains("no header"), "{error}");
            let error = RowReader::new("".as_bytes(), &LAYOUT).err().unwrap();
            assert!(error.to_string().contains("empty"), "{error}");
        }

        #[test]
        fn a_file_without_line_ends_is_not_called_empty() {
            let error = RowReader::new("x".repeat(5000).as_bytes(), &LAYOUT)
                .err()
                .unwrap();
            assert_eq!(
                error.to_string(),
                "line 2: not a detailed billing report: no header with RecordType and PayerAccountId"
            );
        }

        #[test]
        fn a_header_naming_a_column_twice_is_refused() {
            let text = format!("{HEADER},UnBlendedCost\n");
            let error = RowReader::new(text.as_bytes(), &LAYOUT).err().unwrap();
            assert_eq!(
                error.to_string(),
                "line 1: the header names column \"UnBlendedCost\" twice"
            );
        }

        #[test]
        fn a_byte_order_mark_before_a_quoted_header_is_skipped() {
            let quoted = format!("\"{}\"", HEADER.replace(',', "\",\""));
            let text = format!("\u{feff}{quoted}\n1,9,9,LineItem,,EC2,,,,Box,Run,,N,,,,1,,1,,1\n");
            let mut rows = reader(&text);
            assert_eq!(rows.next_row().unwrap().unwrap().invoice_id(), b"1");
        }

        #[test]
        fn a_nul_byte_in_stored_text_names_line_and_column() {
            let text = format!("{HEADER}\n1,9,9,LineItem,,Amazon\0EC2,,,,Box,Run,,N,,,,1,,1,,1\n");
            let mut rows = reader(&text);
            let row = rows.next_row().unwrap().unwrap();
            let mut key = Vec::new();
            row.usage_key(&mut key, false);
            assert_eq!(
                row.check_usage(&key).unwrap_err().to_string(),
                "line 2, column ProductName: a NUL byte at byte 7 of \"Amazon\\0EC2\""
            );
        }

        #[test]
        fn text_that_is_not_utf8_is_named_by_its_column() {
            let header = format!("{HEADER},user:Name");
            let line = |tag: &[u8]| {
                [
                    header.as_bytes(),
                    b"\n1,9,9,LineItem,,EC2,,,,Box,Run,,N,,,,1,,1,,1,",
                    tag,
                    b"\n",
                ]
                .concat()
            };
            for tag in [&b"web\xff"[..], b"\xc3", b"ok"] {
                let text = line(tag);
                let mut rows = RowReader::new(text.as_slice(), &LAYOUT).unwrap();
                let row = rows.next_row().unwrap().unwrap();
                let mut key = Vec::new();
                row.usage_key(&mut key, false);
                let checked = row.check_usage(&key).map_err(|error| error.to_string());
                if tag == b"ok" {
                    assert_eq!(checked, Ok(()));
                } else {
                    assert_eq!(
                        checked,
                        Err("line 2, column user:Name: not UTF-8 text".into())
                    );
                }
            }
        }
    }
}
