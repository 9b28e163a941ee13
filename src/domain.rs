//! The nouns every part of the service shares: account IDs, billing periods, the monitored set, a
//! statement's identity, an object's version and a month's invoice status. Each can only hold a
//! valid value and is parsed once, at the edge. Nothing here does I/O.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// An AWS account ID: ASCII digits, leading zeros kept (`013328811177`), so never a number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

/// Text that is not an account ID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAnAccountId {
    #[error("{} is not an AWS account ID (digits only)", excerpt(.0.as_bytes()))]
    NotDigits(String),
    #[error(
        "{} is not an AWS account ID: those have 12 digits, it has {} (a leading zero lost in a spreadsheet?)",
        excerpt(.0.as_bytes()),
        .0.len()
    )]
    NotTwelveDigits(String),
}

/// How many bytes of a value from outside an error message quotes.
pub const EXCERPT_BYTES: usize = 100;

/// A value from outside (a field, a name) as an error message quotes it: in quotes, escaped, at
/// most [`EXCERPT_BYTES`] bytes of it and then `…`, so that a 30 MB field makes a short message.
pub fn excerpt(raw: &[u8]) -> String {
    let mut cut = raw.len().min(EXCERPT_BYTES);
    // Back off to a character boundary, so a cut never shows as a replacement character.
    while cut > 0 && raw.get(cut).is_some_and(|&b| b & 0xC0 == 0x80) {
        cut -= 1;
    }
    let quoted = format!("{:?}", String::from_utf8_lossy(&raw[..cut]));
    if cut < raw.len() {
        format!("{quoted}…")
    } else {
        quoted
    }
}

impl AccountId {
    /// Real IDs have 12 digits; published samples and resellers' extracts use fewer.
    const MAX_DIGITS: usize = 20;
    /// The digits of every AWS account ID.
    pub const DIGITS: usize = 12;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An ID an operator typed: exactly 12 digits, so that one missing its leading zero is
    /// refused rather than taken for another account. (Reports are read with `parse`, which
    /// takes the shorter IDs of published samples.)
    pub fn typed(text: &str) -> Result<AccountId, NotAnAccountId> {
        let id: AccountId = text.parse()?;
        if id.0.len() == Self::DIGITS {
            Ok(id)
        } else {
            Err(NotAnAccountId::NotTwelveDigits(text.to_owned()))
        }
    }
}

impl FromStr for AccountId {
    type Err = NotAnAccountId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if !text.is_empty()
            && text.len() <= Self::MAX_DIGITS
            && text.bytes().all(|b| b.is_ascii_digit())
        {
            Ok(AccountId(text.to_owned()))
        } else {
            Err(NotAnAccountId::NotDigits(text.to_owned()))
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

/// Text that is not a billing period.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a billing period (YYYY-MM)", excerpt(.0.as_bytes()))]
pub struct NotAPeriod(pub String);

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

    pub fn last_day(self) -> NaiveDate {
        let next = self.first_day.checked_add_months(chrono::Months::new(1));
        next.and_then(|next| next.pred_opt())
            .unwrap_or(NaiveDate::MAX)
    }
}

impl FromStr for Period {
    type Err = NotAPeriod;

    /// `YYYY-MM`, month 01 to 12.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || NotAPeriod(text.to_owned());
        let (year, month) = text.split_once('-').ok_or_else(invalid)?;
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if year.len() != 4 || month.len() != 2 || !all_digits(year) || !all_digits(month) {
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

/// Which linked accounts' costs are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Monitored {
    All,
    Only(BTreeSet<AccountId>),
}

/// Text that does not name a monitored set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAMonitoredSet {
    #[error(transparent)]
    Account(#[from] NotAnAccountId),
    #[error("no account IDs given (use * for every account)")]
    Empty,
}

impl Monitored {
    /// `*` for every account, else account IDs of 12 digits separated by commas, as an
    /// operator types them.
    pub fn parse(text: &str) -> Result<Monitored, NotAMonitoredSet> {
        Monitored::parse_with(text, AccountId::typed)
    }

    /// As [`Monitored::parse`], with IDs of any length: for local files such as published
    /// samples, whose IDs are often shorter.
    pub fn parse_any_length(text: &str) -> Result<Monitored, NotAMonitoredSet> {
        Monitored::parse_with(text, str::parse)
    }

    fn parse_with(
        text: &str,
        account: impl Fn(&str) -> Result<AccountId, NotAnAccountId>,
    ) -> Result<Monitored, NotAMonitoredSet> {
        if text.trim() == "*" {
            return Ok(Monitored::All);
        }
        let ids = text
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(account)
            .collect::<Result<BTreeSet<AccountId>, _>>()?;
        if ids.is_empty() {
            return Err(NotAMonitoredSet::Empty);
        }
        Ok(Monitored::Only(ids))
    }

    /// Names the set, to tell whether stored data was filtered with the set in force: `*`, or
    /// the number of accounts and a CRC-32 of their sorted IDs.
    pub fn fingerprint(&self) -> String {
        match self {
            Monitored::All => "*".into(),
            Monitored::Only(ids) => {
                let mut crc = crc32fast::Hasher::new();
                for id in ids {
                    crc.update(id.as_str().as_bytes());
                    crc.update(b",");
                }
                format!("{} accounts, crc32 {:08x}", ids.len(), crc.finalize())
            }
        }
    }

    pub fn contains(&self, account: &AccountId) -> bool {
        match self {
            Monitored::All => true,
            Monitored::Only(ids) => ids.contains(account),
        }
    }

    /// The accounts of either set: what one read of a report shared by two integrations keeps.
    pub fn union(&self, other: &Monitored) -> Monitored {
        match (self, other) {
            (Monitored::Only(a), Monitored::Only(b)) => Monitored::Only(a | b),
            _ => Monitored::All,
        }
    }
}

/// An integration's stable name: a customer's bucket, credentials and monitored accounts.
/// Lower-case letters, digits, `-` and `_`, at most 63, starting with a letter or digit, so it
/// can stand in a metric label, a lock name and a command line unquoted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntegrationName(String);

/// Text that is not an integration name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is not an integration name (lower-case letters, digits, - and _, at most 63)",
    excerpt(.0.as_bytes())
)]
pub struct NotAnIntegrationName(pub String);

impl IntegrationName {
    /// The integration of the configuration file and environment (`DBR_BUCKET`, …).
    pub const DEFAULT: &str = "default";

    pub fn default_name() -> IntegrationName {
        IntegrationName(Self::DEFAULT.to_owned())
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IntegrationName {
    type Err = NotAnIntegrationName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = text.as_bytes();
        let valid = (1..=63).contains(&bytes.len())
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(IntegrationName(text.to_owned()))
        } else {
            Err(NotAnIntegrationName(text.to_owned()))
        }
    }
}

impl fmt::Display for IntegrationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one statement is: a payer's bill for one month from one billing entity. A statement
/// shows exactly one ingested report version at a time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatementId {
    pub payer: AccountId,
    /// Billing-entity infix (`ACTS`, `AISPL`, `AWSMarketplace`, …); `None` for AWS itself.
    pub entity: Option<String>,
    pub period: Period,
}

impl StatementId {
    /// The statement AWS itself bills for the same payer and month: the one a CUR (which
    /// holds every entity's line items) is stored as.
    pub fn month(&self) -> StatementId {
        StatementId {
            entity: None,
            ..self.clone()
        }
    }

    /// The entity as stored: `''` for none.
    pub fn entity_str(&self) -> &str {
        self.entity.as_deref().unwrap_or("")
    }
}

impl fmt::Display for StatementId {
    /// `payer 123456789012 2017-01`, with ` (ACTS)` after an entity.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payer {} {}", self.payer, self.period)?;
        if let Some(entity) = &self.entity {
            write!(f, " ({entity})")?;
        }
        Ok(())
    }
}

/// One version of one object, as listed: enough to tell whether it changed since it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub etag: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

impl ObjectMeta {
    /// The last part of the key.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or_default()
    }
}

/// Whether AWS may still change a month's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoiceStatus {
    /// The month is open: AWS rewrites the report as usage comes in.
    Estimated,
    /// AWS issued the invoice.
    Final,
}

impl InvoiceStatus {
    /// `Estimated` when any row's `InvoiceID` says so.
    pub fn of_report(any_estimated_row: bool) -> InvoiceStatus {
        if any_estimated_row {
            InvoiceStatus::Estimated
        } else {
            InvoiceStatus::Final
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Estimated => "estimated",
            InvoiceStatus::Final => "final",
        }
    }
}

/// Checks a CUR report name as an operator types it: what AWS allows (letters, digits and
/// `!-_.*'()`, at most 256 characters).
pub fn report_name(text: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
    if text.is_empty() || text.len() > 256 || !text.chars().all(allowed) {
        return Err(format!(
            "{text:?} is not a Cost and Usage Report name (1 to 256 letters, digits and !-_.*'())"
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_first_day() {
        let period: Period = "2016-09".parse().unwrap();
        assert_eq!(
            period.first_day(),
            NaiveDate::from_ymd_opt(2016, 9, 1).unwrap()
        );
        let day = NaiveDate::from_ymd_opt(2016, 9, 30).unwrap();
        assert_eq!(Period::of_day(day), period);
        assert_eq!(period.last_day(), day);
        let february: Period = "2016-02".parse().unwrap();
        assert_eq!(
            february.last_day(),
            NaiveDate::from_ymd_opt(2016, 2, 29).unwrap()
        );
        for bad in [
            "2016-13",
            "2016-00",
            "2016-1",
            "16-01",
            "2016/01",
            "２０１６-01",
        ] {
            assert_eq!(bad.parse::<Period>(), Err(NotAPeriod(bad.into())), "{bad}");
        }
    }

    #[test]
    fn monitored_list_parsing() {
        assert_eq!(Monitored::parse("*"), Ok(Monitored::All));
        let only = Monitored::parse_any_length(" 000000000001, 2 ,").unwrap();
        assert!(only.contains(&"000000000001".parse().unwrap()));
        assert!(
            !only.contains(&"1".parse().unwrap()),
            "leading zeros matter"
        );
        assert_eq!(Monitored::parse(""), Err(NotAMonitoredSet::Empty));
        assert_eq!(
            Monitored::parse("12a").unwrap_err().to_string(),
            "\"12a\" is not an AWS account ID (digits only)"
        );
        assert!(Monitored::parse("000000000001,123456789012").is_ok());
        assert_eq!(
            Monitored::parse("000000000001,13328811177")
                .unwrap_err()
                .to_string(),
            "\"13328811177\" is not an AWS account ID: those have 12 digits, it has 11 (a leading zero lost in a spreadsheet?)"
        );
    }

    #[test]
    fn excerpts_are_short_and_whole_characters() {
        assert_eq!(excerpt(b"abc"), "\"abc\"");
        let long = "x".repeat(30 << 20);
        assert_eq!(
            excerpt(long.as_bytes()),
            format!("\"{}\"…", "x".repeat(100))
        );
        // 99 ASCII bytes then a two-byte character across the 100th byte: cut before it.
        let mixed = format!("{}é{}", "x".repeat(99), "y".repeat(10));
        assert_eq!(
            excerpt(mixed.as_bytes()),
            format!("\"{}\"…", "x".repeat(99))
        );
        assert_eq!(excerpt(b"a\0b"), "\"a\\0b\"");
        let error = "1"
            .repeat(1000)
            .parse::<AccountId>()
            .unwrap_err()
            .to_string();
        assert!(error.len() < 150, "{error}");
    }

    #[test]
    fn integration_names() {
        for good in ["default", "acme", "acme-prod_2", "0"] {
            assert_eq!(good.parse::<IntegrationName>().unwrap().as_str(), good);
        }
        for bad in ["", "Acme", "-acme", "a b", "a/b", &"a".repeat(64)] {
            assert!(bad.parse::<IntegrationName>().is_err(), "{bad}");
        }
        let a = Monitored::parse_any_length("1,2").unwrap();
        assert_eq!(
            a.union(&Monitored::parse_any_length("2,3").unwrap()),
            Monitored::parse_any_length("1,2,3").unwrap()
        );
        assert_eq!(a.union(&Monitored::All), Monitored::All);
    }

    #[test]
    fn a_statement_names_its_entity() {
        let mut statement = StatementId {
            payer: "123456789012".parse().unwrap(),
            entity: None,
            period: "2017-01".parse().unwrap(),
        };
        assert_eq!(statement.to_string(), "payer 123456789012 2017-01");
        assert_eq!(statement.entity_str(), "");
        statement.entity = Some("ACTS".into());
        assert_eq!(statement.to_string(), "payer 123456789012 2017-01 (ACTS)");
    }
}
