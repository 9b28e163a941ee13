//! Legacy DBR object keys: what a key says (payer, variant, billing entity, period), and which keys
//! of one listing to ingest. Keys are parsed once, here; the rest of the code works with
//! [`ReportKey`]. Deciding *when* a report changed is not done here (that needs object metadata).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

const DETAILED: &str = "aws-billing-detailed-line-items";
const WITH_RESOURCES: &str = "-with-resources-and-tags";
const ZIP_SUFFIX: &str = ".csv.zip";
const CSV_SUFFIX: &str = ".csv";

/// An AWS account ID: ASCII digits, leading zeros kept (`013328811177`), so never a number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

impl AccountId {
    /// Real IDs have 12 digits; published samples and resellers' extracts use fewer.
    const MAX_DIGITS: usize = 20;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if !text.is_empty()
            && text.len() <= Self::MAX_DIGITS
            && text.bytes().all(|b| b.is_ascii_digit())
        {
            Ok(AccountId(text.to_owned()))
        } else {
            Err(format!("{text:?} is not an AWS account ID (digits only)"))
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A billing period: one calendar month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    first_day: NaiveDate,
}

impl Period {
    pub fn new(year: i32, month: u32) -> Option<Period> {
        NaiveDate::from_ymd_opt(year, month, 1).map(|first_day| Period { first_day })
    }

    pub fn of_day(day: NaiveDate) -> Period {
        Period {
            first_day: day.with_day0(0).expect("day 1 exists in every month"),
        }
    }

    pub fn first_day(self) -> NaiveDate {
        self.first_day
    }
}

impl FromStr for Period {
    type Err = String;

    /// `YYYY-MM`, month 01 to 12.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{text:?} is not a billing period (YYYY-MM)");
        let (year, month) = text.split_once('-').ok_or_else(invalid)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(invalid());
        }
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(year) || !all_digits(month) {
            return Err(invalid());
        }
        let (year, month) = (
            year.parse().map_err(|_| invalid())?,
            month.parse().map_err(|_| invalid())?,
        );
        Period::new(year, month).ok_or_else(invalid)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}",
            self.first_day.year(),
            self.first_day.month()
        )
    }
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
    #[error("{0}")]
    BadPayer(String),
    #[error("{0}")]
    BadPeriod(String),
    #[error("billing entity {0:?} is not letters joined by '-'")]
    BadEntity(String),
    #[error(
        "name does not follow <payer>-{DETAILED}[{WITH_RESOURCES}][-<entity>]-YYYY-MM{ZIP_SUFFIX}"
    )]
    Unrecognised,
}

/// The key of a legacy DBR object, and what its name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportKey {
    pub key: String,
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
            key: key.to_owned(),
            payer,
            variant,
            entity,
            period,
        })
    }
}

impl AsRef<ReportKey> for ReportKey {
    fn as_ref(&self) -> &ReportKey {
        self
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
    let payer: AccountId = payer.parse().map_err(NotDbr::BadPayer)?;
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
    let period: Period = period.parse().map_err(NotDbr::BadPeriod)?;
    let entity = match head {
        "" => None,
        _ => {
            let entity = head.strip_suffix('-').ok_or(NotDbr::Unrecognised)?;
            let is_word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphabetic());
            if !entity.split('-').all(is_word) {
                return Err(NotDbr::BadEntity(entity.to_owned()));
            }
            Some(entity.to_owned())
        }
    };
    Ok((payer, variant, entity, period))
}

/// What to ingest from one listing, and what was passed over with the reason.
#[derive(Debug)]
pub struct Selection<T> {
    pub ingest: Vec<T>,
    pub passed_over: Vec<(T, String)>,
}

/// Chooses one report per statement (payer, billing entity, period): the with-resources-and-tags
/// variant when both exist, because ingesting both would double the month. Should the same
/// variant appear twice (under two prefixes), the greatest key wins so the choice is stable.
pub fn choose<T: AsRef<ReportKey>>(reports: impl IntoIterator<Item = T>) -> Selection<T> {
    let mut by_statement: BTreeMap<_, Vec<T>> = BTreeMap::new();
    for report in reports {
        let key = report.as_ref();
        let statement = (key.payer.clone(), key.entity.clone(), key.period);
        by_statement.entry(statement).or_default().push(report);
    }
    let mut selection = Selection {
        ingest: Vec::new(),
        passed_over: Vec::new(),
    };
    for (_, mut candidates) in by_statement {
        candidates.sort_by(|a, b| {
            let (a, b) = (a.as_ref(), b.as_ref());
            (a.variant, &a.key).cmp(&(b.variant, &b.key))
        });
        let chosen = candidates.pop().expect("every group has a member");
        for other in candidates {
            let reason = format!("same statement as {}", chosen.as_ref().key);
            selection.passed_over.push((other, reason));
        }
        selection.ingest.push(chosen);
    }
    selection
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
                Err(NotDbr::BadPeriod(
                    "\"2017-13\" is not a billing period (YYYY-MM)".into(),
                )),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-2017-00.csv.zip",
                Err(NotDbr::BadPeriod(
                    "\"2017-00\" is not a billing period (YYYY-MM)".into(),
                )),
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
                Err(NotDbr::BadPayer(
                    "\"12345678901a\" is not an AWS account ID (digits only)".into(),
                )),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-with-resources-and-tags-2017.csv.zip",
                Err(NotDbr::Unrecognised),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-ACTS_1-2020-08.csv.zip",
                Err(NotDbr::BadEntity("ACTS_1".into())),
            ),
            (
                "123456789012-aws-billing-detailed-line-items-ACTS--2020-08.csv.zip",
                Err(NotDbr::BadEntity("ACTS-".into())),
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

    #[test]
    fn period_first_day() {
        let period: Period = "2016-09".parse().unwrap();
        assert_eq!(
            period.first_day(),
            NaiveDate::from_ymd_opt(2016, 9, 1).unwrap()
        );
        let day = NaiveDate::from_ymd_opt(2016, 9, 30).unwrap();
        assert_eq!(Period::of_day(day), period);
    }

    fn keys(names: &[&str]) -> Vec<ReportKey> {
        names.iter().map(|n| ReportKey::parse(n).unwrap()).collect()
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
        let mut chosen: Vec<_> = selection.ingest.iter().map(|k| k.key.as_str()).collect();
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
            passed.key,
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
            selection.ingest[0].key,
            "b/111111111111-aws-billing-detailed-line-items-2017-01.csv.zip"
        );
        assert_eq!(selection.passed_over.len(), 1);
    }
}
