//! Rows of a DBR CSV, by header name: finding the header (after any preamble), mapping the columns
//! once, then reading each record into a borrowed [`Row`] whose fields are parsed on demand
//! (decimals, dates). Errors name the line and the column. Nothing here knows about accounts
//! being monitored or sums: that is `aggregate`'s job.

use std::fmt;
use std::io::Read;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::dimensions::{ChargeCategory, LineItemFields};
use super::records::{Record, RecordError, Records};
use crate::domain::excerpt;

/// A preamble ("Don't see your tags in the report? …") is one line; a few more are tolerated.
const MAX_LINES_BEFORE_HEADER: u64 = 5;

/// A problem with the CSV content, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub line: u64,
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(column) = &self.column {
            write!(f, ", column {column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What a line item was for: the daily grain beyond account and day. Borrowed from a usage key
/// (see [`Row::usage_key`]), the compact form a month keeps of each distinct usage.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Usage<'a> {
    pub charge_category: ChargeCategory,
    /// `ReservedInstance` is `Y`.
    pub reserved_instance: bool,
    pub invoice_id: &'a str,
    pub product: &'a str,
    pub usage_type: &'a str,
    pub operation: &'a str,
    pub availability_zone: &'a str,
    /// Empty in the plain variant, which has no `ResourceId` column.
    pub resource_id: &'a str,
    pub item_description: &'a str,
    /// Non-empty tag values by column name (`user:Name`), in file order.
    pub tags: Vec<(&'a str, &'a str)>,
}

impl<'a> Usage<'a> {
    /// Reads a usage key written by [`Row::usage_key`] for a row that passed
    /// [`Row::check_usage`].
    pub fn decode(key: &'a [u8]) -> Usage<'a> {
        let ([category, reserved], fields) = key.split_first_chunk::<2>().expect("a usage key");
        let mut fields = UsageFields(fields);
        let mut next = || fields.next().expect("a usage key has its seven fields");
        let (invoice_id, product, usage_type, operation, availability_zone, resource_id) =
            (next(), next(), next(), next(), next(), next());
        let item_description = next();
        let mut tags = Vec::new();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            tags.push((name, value));
        }
        Usage {
            charge_category: ChargeCategory::from_index(*category).expect("a category index"),
            reserved_instance: *reserved != 0,
            invoice_id,
            product,
            usage_type,
            operation,
            availability_zone,
            resource_id,
            item_description,
            tags,
        }
    }

    /// The charge category of a usage key, without decoding the rest.
    pub fn category_of(key: &[u8]) -> ChargeCategory {
        ChargeCategory::from_index(key[0]).expect("a category index")
    }
}

/// The length-prefixed fields of a usage key.
struct UsageFields<'a>(&'a [u8]);

impl<'a> Iterator for UsageFields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (length, rest) = self.0.split_first_chunk::<4>()?;
        let (field, rest) = rest.split_at(u32::from_le_bytes(*length) as usize);
        self.0 = rest;
        Some(std::str::from_utf8(field).expect("usage keys are checked text"))
    }
}

/// The kinds of record a DBR holds. Line items are costs; the rest is the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    LineItem,
    Rounding,
    InvoiceTotal,
    AccountTotal,
    StatementTotal,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::LineItem => "LineItem",
            RecordType::Rounding => "Rounding",
            RecordType::InvoiceTotal => "InvoiceTotal",
            RecordType::AccountTotal => "AccountTotal",
            RecordType::StatementTotal => "StatementTotal",
        }
    }

    fn from_bytes(text: &[u8]) -> Option<RecordType> {
        Some(match text {
            b"LineItem" => RecordType::LineItem,
            b"Rounding" => RecordType::Rounding,
            b"InvoiceTotal" => RecordType::InvoiceTotal,
            b"AccountTotal" => RecordType::AccountTotal,
            b"StatementTotal" => RecordType::StatementTotal,
            _ => return None,
        })
    }
}

/// Where the cost columns are: consolidated billing has blended and unblended costs; a payer
/// without it has a single `Cost`, which is both.
#[derive(Debug, Clone, Copy)]
enum CostColumns {
    Consolidated { blended: usize, unblended: usize },
    SingleAccount { cost: usize },
}

/// The column layout of one report, taken from its header.
#[derive(Debug, Clone)]
pub struct Columns {
    names: Vec<String>,
    invoice_id: usize,
    payer: usize,
    linked_account: usize,
    record_type: usize,
    product: usize,
    usage_type: usize,
    operation: usize,
    availability_zone: usize,
    /// In every real report; optional, as a report without them loses nothing else.
    item_description: Option<usize>,
    reserved_instance: Option<usize>,
    usage_start: usize,
    usage_quantity: usize,
    costs: CostColumns,
    resource_id: Option<usize>,
    tags: Vec<usize>,
}

impl Columns {
    /// True for the header record of a DBR (or of a look-alike report, refused by `from_header`).
    fn is_header(record: &Record<'_>) -> bool {
        let has = |name: &[u8]| record.iter().any(|f| f == name);
        has(b"RecordType") && has(b"PayerAccountId")
    }

    fn from_header(record: &Record<'_>, line: u64) -> Result<Columns, ParseError> {
        let refused = |message: String| ParseError {
            line,
            column: None,
            message,
        };
        let mut names: Vec<String> = Vec::with_capacity(record.len());
        for field in record.iter() {
            let name = std::str::from_utf8(field)
                .ok()
                .filter(|name| !name.contains('\0'))
                .ok_or_else(|| {
                    refused(format!(
                        "the header's column name {} is not text",
                        excerpt(field)
                    ))
                })?;
            let name = name.trim();
            // Which of two same-named columns holds the costs or a tag's value is anyone's guess.
            if !name.is_empty() && names.iter().any(|known| known == name) {
                return Err(refused(format!(
                    "the header names column {} twice",
                    excerpt(name.as_bytes())
                )));
            }
            names.push(name.to_owned());
        }
        let find = |name: &str| names.iter().position(|n| n == name);
        let mut missing = Vec::new();
        let mut need = |name: &'static str| {
            find(name).unwrap_or_else(|| {
                missing.push(name);
                0
            })
        };
        let invoice_id = need("InvoiceID");
        let payer = need("PayerAccountId");
        let linked_account = need("LinkedAccountId");
        let record_type = need("RecordType");
        let product = need("ProductName");
        let usage_type = need("UsageType");
        let operation = need("Operation");
        let availability_zone = need("AvailabilityZone");
        let usage_start = need("UsageStartDate");
        let usage_quantity = need("UsageQuantity");
        let costs = match (find("BlendedCost"), find("UnBlendedCost"), find("Cost")) {
            (Some(blended), Some(unblended), _) => CostColumns::Consolidated { blended, unblended },
            (_, _, Some(cost)) => CostColumns::SingleAccount { cost },
            _ => CostColumns::SingleAccount {
                cost: need("BlendedCost and UnBlendedCost, or Cost"),
            },
        };
        if !missing.is_empty() {
            return Err(ParseError {
                line,
                column: None,
                message: format!(
                    "not a detailed billing report: the header lacks {}",
                    missing.join(", ")
                ),
            });
        }
        let tags = (0..names.len())
            .filter(|&i| names[i].starts_with("user:") || names[i].starts_with("aws:"))
            .collect();
        Ok(Columns {
            resource_id: find("ResourceId"),
            item_description: find("ItemDescription"),
            reserved_instance: find("ReservedInstance"),
            names,
            invoice_id,
            payer,
            linked_account,
            record_type,
            product,
            usage_type,
            operation,
            availability_zone,
            usage_start,
            usage_quantity,
            costs,
            tags,
        })
    }

    pub fn consolidated(&self) -> bool {
        matches!(self.costs, CostColumns::Consolidated { .. })
    }

    /// The with-resources-and-tags variant has a `ResourceId` column; the plain one does not.
    pub fn has_resources(&self) -> bool {
        self.resource_id.is_some()
    }
}

/// Reads the rows of a DBR CSV from any byte stream, one at a time.
pub struct RowReader<R> {
    records: Records<R>,
    columns: Columns,
}

impl From<RecordError> for ParseError {
    fn from(error: RecordError) -> ParseError {
        ParseError {
            line: error.line,
            column: None,
            message: error.message,
        }
    }
}

impl<R: Read> RowReader<R> {
    /// Skips any preamble, reads the header and maps its columns.
    pub fn new(input: R) -> Result<RowReader<R>, ParseError> {
        let mut records = Records::new(input);
        let mut lines = 0;
        loop {
            let Some(record) = records.next_record()? else {
                let message = if lines == 0 {
                    "no header: the report is empty".into()
                } else {
                    "not a detailed billing report: no header with RecordType and PayerAccountId"
                        .into()
                };
                return Err(ParseError {
                    line: lines + 1,
                    column: None,
                    message,
                });
            };
            lines = record.line();
            if Columns::is_header(&record) {
                let columns = Columns::from_header(&record, lines)?;
                return Ok(RowReader { records, columns });
            }
            if lines >= MAX_LINES_BEFORE_HEADER {
                return Err(ParseError {
                    line: lines,
                    column: None,
                    message: format!(
                        "not a detailed billing report: no header with RecordType and PayerAccountId in the first {MAX_LINES_BEFORE_HEADER} lines"
                    ),
                });
            }
        }
    }

    /// The line reached: after the last row read.
    pub fn line(&self) -> u64 {
        self.records.line()
    }

    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// The next data row, or `None` at the end of the report.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>, ParseError> {
        let Some(record) = self.records.next_record()? else {
            return Ok(None);
        };
        if record.len() != self.columns.names.len() {
            return Err(ParseError {
                line: record.line(),
                column: None,
                message: format!(
                    "{} fields where the header has {}",
                    record.len(),
                    self.columns.names.len()
                ),
            });
        }
        Ok(Some(Row {
            record,
            columns: &self.columns,
        }))
    }
}

/// One data row, borrowed from the reader. Fields are parsed when asked for.
pub struct Row<'a> {
    record: Record<'a>,
    columns: &'a Columns,
}

impl<'a> Row<'a> {
    /// The line the row starts on (counted on demand: it is for error messages).
    pub fn line(&self) -> u64 {
        self.record.line()
    }

    pub fn record_type(&self) -> Result<RecordType, ParseError> {
        let raw = self.record.get(self.columns.record_type);
        RecordType::from_bytes(raw).ok_or_else(|| {
            self.error(
                self.columns.record_type,
                format!("unknown record type {}", excerpt(raw)),
            )
        })
    }

    pub fn payer(&self) -> &'a [u8] {
        self.record.get(self.columns.payer)
    }

    /// Empty for payer-level rows and for a payer without consolidated billing.
    pub fn linked_account(&self) -> &'a [u8] {
        self.record.get(self.columns.linked_account)
    }

    pub fn invoice_id(&self) -> &'a [u8] {
        self.record.get(self.columns.invoice_id)
    }

    /// The day usage started (UTC), or `None` where the date is empty (footer, some fees).
    pub fn usage_day(&self) -> Result<Option<NaiveDate>, ParseError> {
        let column = self.columns.usage_start;
        let raw = self.record.get(column);
        if raw.is_empty() {
            return Ok(None);
        }
        parse_day(raw).map(Some).ok_or_else(|| {
            self.error(
                column,
                format!("not a date (YYYY-MM-DD HH:MM:SS): {}", excerpt(raw)),
            )
        })
    }

    pub fn usage_quantity(&self) -> Result<Decimal, ParseError> {
        self.decimal(self.columns.usage_quantity)
    }

    pub fn unblended_cost(&self) -> Result<Decimal, ParseError> {
        match self.columns.costs {
            CostColumns::Consolidated { unblended, .. } => self.decimal(unblended),
            CostColumns::SingleAccount { cost } => self.decimal(cost),
        }
    }

    pub fn blended_cost(&self) -> Result<Decimal, ParseError> {
        match self.columns.costs {
            CostColumns::Consolidated { blended, .. } => self.decimal(blended),
            CostColumns::SingleAccount { cost } => self.decimal(cost),
        }
    }

    /// Appends what was used to `key`: the charge category and whether `ReservedInstance` is
    /// `Y` (a byte each), then invoice, product, usage type, operation, zone, resource and item
    /// description, then the name and value of each non-empty tag, every field length-prefixed.
    /// Equal keys, equal usage. No UTF-8 check here: this runs for every line item; see
    /// [`Row::check_usage`]. `marketplace`: the report is billed by AWS Marketplace.
    pub fn usage_key(&self, key: &mut Vec<u8>, marketplace: bool) {
        let c = self.columns;
        let optional = |column: Option<usize>| column.map_or(&[][..], |i| self.record.get(i));
        let description = optional(c.item_description);
        let category = ChargeCategory::of_line_item(&LineItemFields {
            product: self.record.get(c.product),
            usage_type: self.record.get(c.usage_type),
            description,
            negative: self
                .cost_fields()
                .iter()
                .any(|cost| cost.first() == Some(&b'-')),
            undated: self.record.get(c.usage_start).is_empty(),
            no_quantity: self.record.get(c.usage_quantity).is_empty(),
            marketplace,
        });
        key.push(category.index() as u8);
        key.push(u8::from(optional(c.reserved_instance) == b"Y"));
        let mut push = |field: &[u8]| {
            key.extend_from_slice(&(field.len() as u32).to_le_bytes());
            key.extend_from_slice(field);
        };
        push(self.record.get(c.invoice_id));
        for column in [c.product, c.usage_type, c.operation, c.availability_zone] {
            push(self.record.get(column));
        }
        push(optional(c.resource_id));
        push(description);
        for &column in &c.tags {
            let value = self.record.get(column);
            if !value.is_empty() {
                push(c.names[column].as_bytes());
                push(value);
            }
        }
    }

    /// The raw cost fields: unblended and blended, or the single `Cost`.
    fn cost_fields(&self) -> [&'a [u8]; 2] {
        match self.columns.costs {
            CostColumns::Consolidated { blended, unblended } => {
                [self.record.get(unblended), self.record.get(blended)]
            }
            CostColumns::SingleAccount { cost } => [self.record.get(cost); 2],
        }
    }

    /// Checks that the fields of [`Row::usage_key`] are text, naming the column that is not.
    pub fn check_usage(&self) -> Result<(), ParseError> {
        let c = self.columns;
        let columns = [
            c.invoice_id,
            c.product,
            c.usage_type,
            c.operation,
            c.availability_zone,
        ];
        for column in columns
            .into_iter()
            .chain(c.resource_id)
            .chain(c.item_description)
            .chain(c.tags.iter().copied())
        {
            self.text(column)?;
        }
        Ok(())
    }

    /// A field as text PostgreSQL stores: UTF-8 without NUL bytes.
    fn text(&self, column: usize) -> Result<&'a str, ParseError> {
        let raw = self.record.get(column);
        let text =
            std::str::from_utf8(raw).map_err(|_| self.error(column, "not UTF-8 text".into()))?;
        if let Some(at) = memchr::memchr(0, raw) {
            return Err(self.error(
                column,
                format!("a NUL byte at byte {} of {}", at + 1, excerpt(raw)),
            ));
        }
        Ok(text)
    }

    /// The invoice ID as text (footer rows store it).
    pub fn invoice_id_text(&self) -> Result<&'a str, ParseError> {
        self.text(self.columns.invoice_id)
    }

    /// An exact decimal. Empty means zero: AWS leaves amounts empty where none applies.
    fn decimal(&self, column: usize) -> Result<Decimal, ParseError> {
        let raw = self.record.get(column);
        if raw.is_empty() {
            return Ok(Decimal::ZERO);
        }
        parse_decimal(raw)
            .map_err(|problem| self.error(column, format!("{problem}: {}", excerpt(raw))))
    }

    pub fn error(&self, column: usize, message: String) -> ParseError {
        ParseError {
            line: self.line(),
            column: Some(self.columns.names[column].clone()),
            message,
        }
    }

    /// An error about this row's product column.
    pub fn error_at_product(&self, message: String) -> ParseError {
        self.error(self.columns.product, message)
    }

    /// An error about this row's linked account column.
    pub fn linked_account_error(&self, message: String) -> ParseError {
        self.error(self.columns.linked_account, message)
    }

    /// An error about this row's payer column.
    pub fn payer_error(&self, message: String) -> ParseError {
        self.error(self.columns.payer, message)
    }
}

/// `[-+]digits[.digits]`, exactly: at most 28 significant digits and 28 decimal places (what
/// rust_decimal holds without rounding); more is refused, never rounded. Straight from bytes
/// because it runs three times per line item (via `str` and `Decimal::from_str` it was twice as
/// slow); exponents, spaces and thousands separators are refused.
fn parse_decimal(raw: &[u8]) -> Result<Decimal, &'static str> {
    const MAX_DIGITS: u32 = 28; // fits rust_decimal's 96-bit mantissa
    const NOT_A_NUMBER: &str = "not a decimal number";
    const TOO_PRECISE: &str =
        "more than 28 significant digits or decimal places, which cannot be kept exactly";
    let (negative, text) = match raw.split_first().ok_or(NOT_A_NUMBER)? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, raw),
    };
    let (mut mantissa, mut significant, mut any_digit, mut scale) =
        (0i128, 0u32, false, None::<u32>);
    for &byte in text {
        match byte {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + i128::from(byte - b'0');
                any_digit = true;
                // Leading zeros are not significant (the field's length is bounded anyway).
                significant += u32::from(mantissa != 0);
                if let Some(scale) = scale.as_mut() {
                    *scale += 1;
                }
                if significant > MAX_DIGITS {
                    return Err(TOO_PRECISE);
                }
            }
            b'.' if scale.is_none() => scale = Some(0),
            _ => return Err(NOT_A_NUMBER),
        }
    }
    if !any_digit {
        return Err(NOT_A_NUMBER);
    }
    let mantissa = if negative { -mantissa } else { mantissa };
    Decimal::try_from_i128_with_scale(mantissa, scale.unwrap_or(0)).map_err(|_| TOO_PRECISE)
}

/// `YYYY-MM-DD HH:MM:SS` or `YYYY/MM/DD HH:MM:SS`; only the day is kept.
fn parse_day(raw: &[u8]) -> Option<NaiveDate> {
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        raw.get(range)?.iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let separator = *raw.get(4)?;
    if raw.len() != 19
        || !matches!(separator, b'-' | b'/')
        || raw[7] != separator
        || raw[10] != b' '
        || raw[13] != b':'
        || raw[16] != b':'
    {
        return None;
    }
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    NaiveDate::from_ymd_opt(
        i32::try_from(digits(0..4)?).ok()?,
        digits(5..7)?,
        digits(8..10)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &str) -> RowReader<&[u8]> {
        RowReader::new(text.as_bytes()).unwrap()
    }

    const HEADER: &str = "InvoiceID,PayerAccountId,LinkedAccountId,RecordType,RecordId,ProductName,RateId,SubscriptionId,PricingPlanId,UsageType,Operation,AvailabilityZone,ReservedInstance,ItemDescription,UsageStartDate,UsageEndDate,UsageQuantity,BlendedRate,BlendedCost,UnBlendedRate,UnBlendedCost";

    #[test]
    fn decimals_are_exact() {
        for (text, expected) in [
            ("0.11997536721028", "0.11997536721028"),
            ("150", "150"),
            ("12.00", "12.00"),
            ("-0.00000001", "-0.00000001"),
            ("+3.5", "3.5"),
            (".5", "0.5"),
            (
                "1234567890123456.789012345678",
                "1234567890123456.789012345678",
            ),
            (
                "0.0000000000000000000000000001",
                "0.0000000000000000000000000001",
            ),
            ("000000000000000000000000000001.5", "1.5"),
        ] {
            assert_eq!(
                parse_decimal(text.as_bytes()).map(|d| d.to_string()),
                Ok(expected.into()),
                "{text}"
            );
        }
        for bad in ["", "-", ".", "1.2.3", "1e5", " 1", "1,000", "abc"] {
            assert_eq!(
                parse_decimal(bad.as_bytes()),
                Err("not a decimal number"),
                "{bad:?}"
            );
        }
        for too_precise in [
            "12345678901234567890123456789",
            "10000000000000000000000000.0000000000000000000000001",
            "0.00000000000000000000000000001",
        ] {
            let refused = parse_decimal(too_precise.as_bytes()).unwrap_err();
            assert!(refused.starts_with("more than 28"), "{too_precise}");
        }
    }

    #[test]
    fn days_in_both_formats() {
        let day = NaiveDate::from_ymd_opt(2017, 3, 31);
        assert_eq!(parse_day(b"2017-03-31 23:00:00"), day);
        assert_eq!(parse_day(b"2017/03/31 23:59:59"), day);
        for bad in [
            "2017-03-32 00:00:00",
            "2017-03-31",
            "2017-03/31 00:00:00",
            "2017-03-31T00:00:00",
            "2017-03-31 24:00:00",
            "abcd-03-31 00:00:00",
        ] {
            assert_eq!(parse_day(bad.as_bytes()), None, "{bad}");
        }
    }

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
        row.check_usage().unwrap();
        let mut key = Vec::new();
        row.usage_key(&mut key, false);
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
                tags: vec![("user:Name", "web"), ("aws:createdBy", "batch, nightly")],
            }
        );
        assert_eq!(Usage::category_of(&key), ChargeCategory::Credit);
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
        let error = RowReader::new(text.as_bytes()).err().unwrap();
        assert!(
            error
                .message
                .starts_with("not a detailed billing report: the header lacks ProductName"),
            "{error}"
        );
    }

    #[test]
    fn no_header_at_all() {
        let error = RowReader::new("a,b\n1,2\n3,4\n5,6\n7,8\n9,10\n".as_bytes())
            .err()
            .unwrap();
        assert!(error.to_string().contains("no header"), "{error}");
        let error = RowReader::new("".as_bytes()).err().unwrap();
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn a_file_without_line_ends_is_not_called_empty() {
        let error = RowReader::new("x".repeat(5000).as_bytes()).err().unwrap();
        assert_eq!(
            error.to_string(),
            "line 2: not a detailed billing report: no header with RecordType and PayerAccountId"
        );
    }

    #[test]
    fn a_header_naming_a_column_twice_is_refused() {
        let text = format!("{HEADER},UnBlendedCost\n");
        let error = RowReader::new(text.as_bytes()).err().unwrap();
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
        assert_eq!(
            row.check_usage().unwrap_err().to_string(),
            "line 2, column ProductName: a NUL byte at byte 7 of \"Amazon\\0EC2\""
        );
    }
}
