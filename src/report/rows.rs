//! Rows of a report's CSV, by header name: finding the header (after any preamble), mapping the
//! columns once (each format's [`Layout`] says how), then reading each record into a borrowed
//! [`Row`] whose fields are parsed on demand (decimals, dates). Errors name the line and the
//! column. Nothing here knows about accounts being monitored or sums: that is `aggregate`'s job.

use std::fmt;
use std::hash::Hasher as _;
use std::io::Read;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use rustc_hash::FxHasher;

use super::dimensions::{ChargeCategory, LineItemFields, is_reserved_instance_fee, is_spot_usage};
use super::records::{Batch, Record, RecordError, Records};
use crate::domain::excerpt;

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

/// The kinds of record a report holds. Line items are costs; the rest is a DBR's footer.
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

/// Where one report's line-item fields are, by column: what a format maps its header to (see
/// `formats`). Every format has these; optional columns are `None`.
#[derive(Debug, Clone)]
pub struct Fields {
    pub payer: usize,
    /// The account that used what the line item charges for.
    pub account: usize,
    pub invoice_id: usize,
    pub product: usize,
    /// Names the product of a line item whose `product` field is empty (CUR's product code).
    pub product_code: Option<usize>,
    pub usage_type: usize,
    pub operation: usize,
    pub availability_zone: usize,
    pub usage_start: usize,
    pub usage_quantity: usize,
    pub unblended_cost: usize,
    /// `unblended_cost`'s column when the report has a single cost (no consolidated billing).
    pub blended_cost: usize,
    pub resource_id: Option<usize>,
    pub item_description: Option<usize>,
    /// The public on-demand price of one unit (CUR's `pricing/publicOnDemandRate`; a DBR's
    /// `UnBlendedRate`, read on on-demand usage only): FOCUS's ListUnitPrice.
    pub list_rate: Option<usize>,
    /// The unit the quantity is priced in (CUR's `pricing/unit`; a DBR has none).
    pub pricing_unit: Option<usize>,
    /// Tag columns, each with the name its tag is stored under.
    pub tags: Vec<(usize, String)>,
    pub dialect: Dialect,
}

impl Fields {
    /// Every column a row is read from. (Destructured whole, so that a field added to
    /// `Fields` cannot be left out: a column not listed reads as empty.)
    fn columns(&self) -> Vec<usize> {
        let Fields {
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
            resource_id,
            item_description,
            list_rate,
            pricing_unit,
            tags,
            dialect,
        } = self;
        let mut columns = vec![
            *payer,
            *account,
            *invoice_id,
            *product,
            *usage_type,
            *operation,
            *availability_zone,
            *usage_start,
            *usage_quantity,
            *unblended_cost,
            *blended_cost,
        ];
        columns.extend(
            [
                *product_code,
                *resource_id,
                *item_description,
                *list_rate,
                *pricing_unit,
            ]
            .into_iter()
            .flatten(),
        );
        columns.extend(tags.iter().map(|(column, _)| *column));
        let optional: Vec<Option<usize>> = match *dialect {
            Dialect::Dbr {
                record_type,
                reserved_instance,
            } => vec![Some(record_type), reserved_instance],
            Dialect::Cur {
                line_item_type,
                billing_entity,
                region,
                amortization:
                    Amortization {
                        savings_plan_effective_cost,
                        total_commitment_to_date,
                        used_commitment,
                        reservation_effective_cost,
                        unused_amortized_upfront_fee,
                        unused_recurring_fee,
                        reservation_arn,
                    },
            } => vec![
                Some(line_item_type),
                billing_entity,
                region,
                savings_plan_effective_cost,
                total_commitment_to_date,
                used_commitment,
                reservation_effective_cost,
                unused_amortized_upfront_fee,
                unused_recurring_fee,
                reservation_arn,
            ],
        };
        columns.extend(optional.into_iter().flatten());
        columns
    }
}

/// What differs between formats in reading a row.
#[derive(Debug, Clone, Copy)]
pub enum Dialect {
    /// DBR: `RecordType` tells line items from the footer, the charge category is derived
    /// from the line item's fields, and the invoice ID says `Estimated` until AWS invoices.
    Dbr {
        record_type: usize,
        reserved_instance: Option<usize>,
    },
    /// CUR: every row is a line item, `lineItem/LineItemType` gives the charge category, the
    /// invoice ID is empty until AWS invoices, and the product's region is a column.
    Cur {
        line_item_type: usize,
        billing_entity: Option<usize>,
        region: Option<usize>,
        amortization: Amortization,
    },
}

/// The CUR columns some line item types' amortized cost is read from (README, "Amortized
/// cost"); each is optional, as AWS writes them only for accounts with such commitments.
#[derive(Debug, Clone, Copy, Default)]
pub struct Amortization {
    pub savings_plan_effective_cost: Option<usize>,
    pub total_commitment_to_date: Option<usize>,
    pub used_commitment: Option<usize>,
    pub reservation_effective_cost: Option<usize>,
    pub unused_amortized_upfront_fee: Option<usize>,
    pub unused_recurring_fee: Option<usize>,
    pub reservation_arn: Option<usize>,
}

/// A line item's amortized cost, and whether a column it is read from was absent or not a
/// number (it is then the unblended cost, and the line item is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amortized {
    pub cost: Decimal,
    pub as_billed: bool,
}

/// A header's column names as a format maps them: each looked up by name, the ones it needs and
/// lacks collected for the error.
pub struct Header<'a> {
    names: &'a [String],
    missing: Vec<&'static str>,
}

impl<'a> Header<'a> {
    pub fn new(names: &'a [String]) -> Header<'a> {
        Header {
            names,
            missing: Vec::new(),
        }
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The column's index, or (when it lacks) 0 and the name noted as missing.
    pub fn need(&mut self, name: &'static str) -> usize {
        self.find(name).unwrap_or_else(|| {
            self.missing.push(name);
            0
        })
    }

    /// The columns needed and lacking, if any.
    pub fn lacking(&self) -> Result<(), Vec<&'static str>> {
        if self.missing.is_empty() {
            Ok(())
        } else {
            Err(self.missing.clone())
        }
    }
}

/// How a format's header is found and mapped to [`Fields`].
pub struct Layout {
    /// The format in messages: "a detailed billing report".
    pub name: &'static str,
    /// What [`Layout::is_header`] looks for, in messages: "RecordType and PayerAccountId".
    pub header_hint: &'static str,
    /// The header is among the first this many lines (a DBR may begin with a preamble).
    pub header_within: u64,
    pub is_header: fn(&Record<'_>) -> bool,
    /// The header's fields, or the columns it lacks.
    pub map: fn(&[String]) -> Result<Fields, Vec<&'static str>>,
    /// Whether the thread that unpacks the rows should split them into records when they are
    /// summed at the daily grain (see `read::SplitOn`): summing them then takes longer than
    /// inflating them.
    pub split_while_unpacking: bool,
}

/// The column layout of one report (or CUR part), taken from its header.
#[derive(Debug, Clone)]
pub struct Columns {
    names: Vec<String>,
    fields: Fields,
}

impl Columns {
    fn from_header(record: &Record<'_>, line: u64, layout: &Layout) -> Result<Columns, ParseError> {
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
        let fields = (layout.map)(&names).map_err(|missing| {
            refused(format!(
                "not {}: the header lacks {}",
                layout.name,
                missing.join(", ")
            ))
        })?;
        Ok(Columns { names, fields })
    }

    pub fn consolidated(&self) -> bool {
        self.fields.blended_cost != self.fields.unblended_cost
    }

    /// Whether the header is a CUR's.
    pub fn is_cur(&self) -> bool {
        matches!(self.fields.dialect, Dialect::Cur { .. })
    }

    /// Whether line items name their resources (DBR's with-resources-and-tags variant; a CUR
    /// with resource IDs).
    pub fn has_resources(&self) -> bool {
        self.fields.resource_id.is_some()
    }
}

/// Reads the rows of a report's CSV from any byte stream, one at a time.
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
    /// Skips any preamble, reads the header and maps its columns as `layout` says.
    pub fn new(input: R, layout: &Layout) -> Result<RowReader<R>, ParseError> {
        let mut records = Records::new(input);
        let mut lines = 0;
        let no_header = format!("not {}: no header with {}", layout.name, layout.header_hint);
        loop {
            let Some(record) = records.next_record()? else {
                let message = if lines == 0 {
                    "no header: the report is empty".into()
                } else {
                    no_header
                };
                return Err(ParseError {
                    line: lines + 1,
                    column: None,
                    message,
                });
            };
            lines = record.line();
            if (layout.is_header)(&record) {
                let columns = Columns::from_header(&record, lines, layout)?;
                records.project(columns.fields.columns(), columns.names.len());
                return Ok(RowReader { records, columns });
            }
            if lines >= layout.header_within {
                let message = match layout.header_within {
                    1 => format!("{no_header} in its first line"),
                    within => format!("{no_header} in the first {within} lines"),
                };
                return Err(ParseError {
                    line: lines,
                    column: None,
                    message,
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

    /// The next data row, or `None` at the end of the report: one at a time, for tests.
    #[cfg(test)]
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>, ParseError> {
        let Some(record) = self.records.next_record()? else {
            return Ok(None);
        };
        Row::of(record, &self.columns).map(Some)
    }

    /// The next data rows, as many as the reader's buffer held, or `None` at the end of the
    /// report: split here, to be read elsewhere ([`Rows::row`]) with these [`Columns`]. The
    /// memory of `spare`, rows read before, is reused.
    pub fn next_rows(&mut self, spare: Option<Rows>) -> Result<Option<Rows>, ParseError> {
        let (batch, mut keys) = match spare {
            Some(Rows { batch, keys }) => (Some(batch), keys),
            None => (None, UsageKeys::default()),
        };
        keys.clear();
        Ok(self
            .records
            .next_batch(batch)?
            .map(|batch| Rows { batch, keys }))
    }
}

/// Data rows split ahead by [`RowReader::next_rows`], and, when the splitting thread had time
/// to spare, their usage keys ([`Rows::key_usages`]).
pub struct Rows {
    batch: Batch,
    keys: UsageKeys,
}

/// Each row's usage key ([`Row::usage_key`]) and its hash, one after the other; none until
/// [`Rows::key_usages`] made them.
#[derive(Default)]
struct UsageKeys {
    bytes: Vec<u8>,
    /// For each row, where its key ends in `bytes`, and the key's hash.
    ends: Vec<(usize, u64)>,
}

impl UsageKeys {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

impl Rows {
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Row `index`, its fields mapped by `columns` (its header's).
    pub fn row<'a>(&'a self, index: usize, columns: &'a Columns) -> Result<Row<'a>, ParseError> {
        Row::of(self.batch.record(index), columns)
    }

    /// Makes every row's usage key and its hash ahead of the summing, on the thread that split
    /// the rows, when it would otherwise wait for the summing thread: building and hashing the
    /// keys was a sixth of the summing thread's time. A row that is not a row of `columns`
    /// gets an empty key: the summing stops at its error before looking at the key.
    pub fn key_usages(&mut self, columns: &Columns, marketplace: bool) {
        let keys = &mut self.keys;
        keys.clear();
        for index in 0..self.batch.len() {
            let start = keys.bytes.len();
            if let Ok(row) = Row::of(self.batch.record(index), columns) {
                row.usage_key(&mut keys.bytes, marketplace);
            }
            let hash = hash_usage_key(&keys.bytes[start..]);
            keys.ends.push((keys.bytes.len(), hash));
        }
    }

    /// Row `index`'s usage key and its hash, when [`Rows::key_usages`] made them.
    pub fn usage_key(&self, index: usize) -> Option<(&[u8], u64)> {
        let (end, hash) = *self.keys.ends.get(index)?;
        let start = index
            .checked_sub(1)
            .map_or(0, |before| self.keys.ends[before].0);
        Some((&self.keys.bytes[start..end], hash))
    }
}

/// The hash of a usage key, wherever it is made.
pub fn hash_usage_key(key: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(key);
    hasher.finish()
}

impl<'a> Row<'a> {
    /// `record` as a row of `columns`, if it has as many fields as they do.
    fn of(record: Record<'a>, columns: &'a Columns) -> Result<Row<'a>, ParseError> {
        if record.len() != columns.names.len() {
            return Err(ParseError {
                line: record.line(),
                column: None,
                message: format!(
                    "{} fields where the header has {}",
                    record.len(),
                    columns.names.len()
                ),
            });
        }
        Ok(Row { record, columns })
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

    fn fields(&self) -> &'a Fields {
        &self.columns.fields
    }

    /// An optional column's field, empty where the report has no such column.
    fn optional(&self, column: Option<usize>) -> &'a [u8] {
        column.map_or(&[][..], |i| self.record.get(i))
    }

    pub fn record_type(&self) -> Result<RecordType, ParseError> {
        let Dialect::Dbr { record_type, .. } = self.fields().dialect else {
            return Ok(RecordType::LineItem);
        };
        let raw = self.record.get(record_type);
        RecordType::from_bytes(raw)
            .ok_or_else(|| self.error(record_type, format!("unknown record type {}", excerpt(raw))))
    }

    pub fn payer(&self) -> &'a [u8] {
        self.record.get(self.fields().payer)
    }

    /// Empty for payer-level rows and for a payer without consolidated billing.
    pub fn linked_account(&self) -> &'a [u8] {
        self.record.get(self.fields().account)
    }

    pub fn invoice_id(&self) -> &'a [u8] {
        self.record.get(self.fields().invoice_id)
    }

    /// Whether the row says its month is not invoiced yet.
    pub fn estimated(&self) -> bool {
        match self.fields().dialect {
            Dialect::Dbr { .. } => self.invoice_id() == b"Estimated",
            Dialect::Cur { .. } => self.invoice_id().is_empty(),
        }
    }

    /// The day usage started (UTC), or `None` where the date is empty (footer, some fees).
    pub fn usage_day(&self) -> Result<Option<NaiveDate>, ParseError> {
        let column = self.fields().usage_start;
        let raw = self.record.get(column);
        if raw.is_empty() {
            return Ok(None);
        }
        parse_day(raw).map(Some).ok_or_else(|| {
            let expected = match self.fields().dialect {
                Dialect::Dbr { .. } => "YYYY-MM-DD HH:MM:SS",
                Dialect::Cur { .. } => "YYYY-MM-DDTHH:MM:SSZ, in UTC",
            };
            self.error(column, format!("not a date ({expected}): {}", excerpt(raw)))
        })
    }

    pub fn usage_quantity(&self) -> Result<Decimal, ParseError> {
        self.decimal(self.fields().usage_quantity)
    }

    pub fn unblended_cost(&self) -> Result<Decimal, ParseError> {
        self.decimal(self.fields().unblended_cost)
    }

    pub fn blended_cost(&self) -> Result<Decimal, ParseError> {
        self.decimal(self.fields().blended_cost)
    }

    /// What the line item costs amortized (FOCUS's `EffectiveCost`), given its `unblended` cost.
    /// A DBR carries no amortization: its amortized cost is the unblended one, but for an
    /// upfront reservation fee (an undated RI fee), which is 0 as FOCUS asks of purchases. A
    /// CUR's follows its line item type: the reservation's or savings plan's effective cost for
    /// covered usage, the unused part of a commitment for its recurring fee, 0 for upfront fees,
    /// savings plan negations and reservation fees, the unblended cost for everything else.
    pub fn amortized_cost(&self, unblended: Decimal) -> Amortized {
        let billed = Amortized {
            cost: unblended,
            as_billed: false,
        };
        let zero = Amortized {
            cost: Decimal::ZERO,
            as_billed: false,
        };
        let f = self.fields();
        let (line_item_type, a) = match f.dialect {
            Dialect::Dbr { .. } => {
                let upfront = self.record.get(f.usage_start).is_empty()
                    && is_reserved_instance_fee(self.record.get(f.usage_type));
                return if upfront { zero } else { billed };
            }
            Dialect::Cur {
                line_item_type,
                amortization,
                ..
            } => (self.record.get(line_item_type), amortization),
        };
        let value = |column: Option<usize>| -> Option<Decimal> {
            let raw = self.optional(column);
            if raw.is_empty() {
                return None;
            }
            parse_scientific(raw).ok()
        };
        let read = |cost: Option<Decimal>| match cost {
            Some(cost) => Amortized {
                cost,
                as_billed: false,
            },
            None => Amortized {
                as_billed: true,
                ..billed
            },
        };
        match line_item_type {
            b"SavingsPlanCoveredUsage" => read(value(a.savings_plan_effective_cost)),
            b"SavingsPlanRecurringFee" => read(
                value(a.total_commitment_to_date)
                    .zip(value(a.used_commitment))
                    .and_then(|(total, used)| total.checked_sub(used)),
            ),
            b"SavingsPlanNegation" | b"SavingsPlanUpfrontFee" => zero,
            b"DiscountedUsage" => read(value(a.reservation_effective_cost)),
            b"RIFee" => read(
                value(a.unused_amortized_upfront_fee)
                    .zip(value(a.unused_recurring_fee))
                    .and_then(|(upfront, recurring)| upfront.checked_add(recurring)),
            ),
            b"Fee" if !self.optional(a.reservation_arn).is_empty() => zero,
            _ => billed,
        }
    }

    /// The product's name; a CUR line item without one is named by its product code.
    fn product(&self) -> &'a [u8] {
        let name = self.record.get(self.fields().product);
        if name.is_empty() {
            self.optional(self.fields().product_code)
        } else {
            name
        }
    }

    /// Appends what was used to `key`: the charge category and whether it ran on a
    /// reservation (a byte each), then invoice, product, usage type, operation, zone, resource,
    /// item description, the format's line item type and region (CUR; empty for a DBR), the
    /// list rate and pricing unit, then the name and value of each non-empty tag, every field
    /// length-prefixed. Equal keys, equal usage. No UTF-8 check here: this runs for every line item; see
    /// [`Row::check_usage`]. `marketplace`: the report is billed by AWS Marketplace.
    pub fn usage_key(&self, key: &mut Vec<u8>, marketplace: bool) {
        let f = self.fields();
        let description = self.optional(f.item_description);
        let product = self.product();
        let (category, reserved, line_item_type, region, list_rate) = match f.dialect {
            Dialect::Dbr {
                reserved_instance, ..
            } => {
                let category = ChargeCategory::of_line_item(&LineItemFields {
                    product,
                    usage_type: self.record.get(f.usage_type),
                    description,
                    negative: [f.unblended_cost, f.blended_cost]
                        .iter()
                        .any(|&cost| self.record.get(cost).first() == Some(&b'-')),
                    undated: self.record.get(f.usage_start).is_empty(),
                    no_quantity: self.record.get(f.usage_quantity).is_empty(),
                    marketplace,
                });
                let reserved = self.optional(reserved_instance) == b"Y";
                // A DBR's rate is the list price on on-demand usage alone (see `ListPrices`):
                // not reserved, and not spot (a reserved-instance fee is no `Usage`).
                let on_demand = category == ChargeCategory::Usage
                    && !reserved
                    && !is_spot_usage(self.record.get(f.usage_type));
                let list_rate = if on_demand {
                    self.optional(f.list_rate)
                } else {
                    &[]
                };
                (category, reserved, &[][..], &[][..], list_rate)
            }
            Dialect::Cur {
                line_item_type,
                billing_entity,
                region,
                ..
            } => {
                let raw = self.record.get(line_item_type);
                let marketplace = self.optional(billing_entity) == b"AWS Marketplace";
                let category = ChargeCategory::of_line_item_type(raw, product, marketplace);
                let reserved = raw == b"DiscountedUsage" || raw == b"RIFee";
                let list_rate = self.optional(f.list_rate);
                (category, reserved, raw, self.optional(region), list_rate)
            }
        };
        key.push(category.index() as u8);
        key.push(u8::from(reserved));
        let mut push = |field: &[u8]| {
            key.extend_from_slice(&field_length(field.len()));
            key.extend_from_slice(field);
        };
        push(self.record.get(f.invoice_id));
        push(product);
        for column in [f.usage_type, f.operation, f.availability_zone] {
            push(self.record.get(column));
        }
        push(self.optional(f.resource_id));
        push(description);
        push(line_item_type);
        push(region);
        push(list_rate);
        push(self.optional(f.pricing_unit));
        for (column, name) in &f.tags {
            let value = self.record.get(*column);
            if !value.is_empty() {
                push(name.as_bytes());
                push(value);
            }
        }
    }

    /// Checks that the fields of [`Row::usage_key`] are text, naming the column that is not.
    /// `key` is what `usage_key` wrote. Its lengths are text without NUL bytes, so one check of
    /// the key covers every field in it; the columns one at a time only name the culprit (and
    /// check the few that a key may leave out).
    pub fn check_usage(&self, key: &[u8]) -> Result<(), ParseError> {
        let f = self.fields();
        let dialect = match f.dialect {
            Dialect::Dbr { .. } => [None, None, None],
            Dialect::Cur {
                line_item_type,
                billing_entity,
                region,
                ..
            } => [Some(line_item_type), billing_entity, region],
        };
        let fields = &key[2..];
        if memchr::memchr(0, fields).is_none() && std::str::from_utf8(fields).is_ok() {
            let left_out = [f.product_code, f.list_rate, dialect[1]];
            for column in left_out.into_iter().flatten() {
                self.text(column)?;
            }
            return Ok(());
        }
        let columns = [
            f.invoice_id,
            f.product,
            f.usage_type,
            f.operation,
            f.availability_zone,
        ];
        for column in columns
            .into_iter()
            .chain(f.product_code)
            .chain(f.resource_id)
            .chain(f.item_description)
            .chain(f.list_rate)
            .chain(f.pricing_unit)
            .chain(dialect.into_iter().flatten())
            .chain(f.tags.iter().map(|(column, _)| *column))
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
        self.text(self.fields().invoice_id)
    }

    /// An exact decimal. Empty means zero: AWS leaves amounts empty where none applies. A CUR
    /// may write an exponent (`7.25e-05`, as Python and Java print small doubles); a DBR never
    /// does.
    fn decimal(&self, column: usize) -> Result<Decimal, ParseError> {
        let raw = self.record.get(column);
        if raw.is_empty() {
            return Ok(Decimal::ZERO);
        }
        let parsed = match self.fields().dialect {
            Dialect::Dbr { .. } => parse_decimal(raw),
            Dialect::Cur { .. } => parse_scientific(raw),
        };
        parsed.map_err(|problem| self.error(column, format!("{problem}: {}", excerpt(raw))))
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
        self.error(self.fields().product, message)
    }

    /// An error about this row's linked account column.
    pub fn linked_account_error(&self, message: String) -> ParseError {
        self.error(self.fields().account, message)
    }

    /// An error about this row's payer column.
    pub fn payer_error(&self, message: String) -> ParseError {
        self.error(self.fields().payer, message)
    }
}

/// `[-+]digits[.digits]`, exactly: at most 28 significant digits and 28 decimal places (what
/// rust_decimal holds without rounding); more is refused, never rounded. Straight from bytes
/// because it runs three times per line item (via `str` and `Decimal::from_str` it was twice as
/// slow); exponents, spaces and thousands separators are refused.
fn parse_decimal(raw: &[u8]) -> Result<Decimal, &'static str> {
    const MAX_DIGITS: usize = 28; // fits rust_decimal's 96-bit mantissa
    const NOT_A_NUMBER: &str = "not a decimal number";
    const TOO_PRECISE: &str =
        "more than 28 significant digits or decimal places, which cannot be kept exactly";
    let (negative, text) = match raw.split_first().ok_or(NOT_A_NUMBER)? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, raw),
    };
    // Amounts are short: a loop finds the point sooner than a vectorised search.
    let (whole, fraction) = match text.iter().position(|&byte| byte == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &[][..]),
    };
    if whole.len() + fraction.len() == 0 {
        return Err(NOT_A_NUMBER);
    }
    let mantissa = if whole.len() + fraction.len() <= 19 {
        // Nineteen digits fit in 64 bits, and amounts rarely have more: 64-bit arithmetic,
        // several times faster than 128-bit, and nothing to check but that they are digits.
        let value = |n: u64, part: &[u8]| {
            part.iter().try_fold(n, |n, &digit| {
                digit
                    .is_ascii_digit()
                    .then(|| n * 10 + u64::from(digit - b'0'))
            })
        };
        i128::from(
            value(0, whole)
                .and_then(|n| value(n, fraction))
                .ok_or(NOT_A_NUMBER)?,
        )
    } else {
        let digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
        if !digits(whole) || !digits(fraction) {
            return Err(NOT_A_NUMBER);
        }
        // Leading zeros are not significant (the field's length is bounded anyway).
        let zeros = |part: &[u8]| part.iter().take_while(|&&digit| digit == b'0').count();
        let significant = match zeros(whole) {
            all if all == whole.len() => fraction.len() - zeros(fraction),
            leading => whole.len() - leading + fraction.len(),
        };
        if significant > MAX_DIGITS || fraction.len() > MAX_DIGITS {
            return Err(TOO_PRECISE);
        }
        let value = |n: i128, part: &[u8]| {
            part.iter()
                .fold(n, |n, &digit| n * 10 + i128::from(digit - b'0'))
        };
        value(value(0, whole), fraction)
    };
    let mantissa = if negative { -mantissa } else { mantissa };
    Decimal::try_from_i128_with_scale(mantissa, fraction.len() as u32).map_err(|_| TOO_PRECISE)
}

/// A field's length in a usage key ([`Row::usage_key`]): three base-127 digits, each stored
/// plus one, so that a key's lengths are text without NUL bytes like its fields, and the whole
/// key is checked as text at once ([`Row::check_usage`]). Fields are far shorter than the 2 M
/// bytes this holds ([`MAX_FIELD`](super::records::MAX_FIELD)).
pub(super) fn field_length(length: usize) -> [u8; 3] {
    assert!(length < KEY_BASE.pow(3), "a field of {length} bytes");
    let digit = |place: usize| (length / place % KEY_BASE + 1) as u8;
    [digit(KEY_BASE * KEY_BASE), digit(KEY_BASE), digit(1)]
}

/// The length [`field_length`] wrote.
pub(super) fn key_field_length(digits: [u8; 3]) -> usize {
    (digits.iter()).fold(0, |length, &digit| {
        length * KEY_BASE + usize::from(digit - 1)
    })
}

const KEY_BASE: usize = 127;

/// A usage's rate ([`Usage::list_rate`](super::usage::Usage::list_rate)) as a number: `None` where it is empty or not one
/// (koku-nise writes `None` where no price applies): absent, never guessed.
pub fn rate(text: &str) -> Option<Decimal> {
    parse_scientific(text.as_bytes()).ok()
}

/// A decimal as [`parse_decimal`] takes it, optionally followed by `e` or `E` and an exponent
/// of at most two digits, converted exactly (`7.25e-05` is 0.0000725); what cannot be held
/// exactly is refused.
fn parse_scientific(raw: &[u8]) -> Result<Decimal, &'static str> {
    const NOT_A_NUMBER: &str = "not a decimal number";
    const TOO_PRECISE: &str =
        "more than 28 significant digits or decimal places, which cannot be kept exactly";
    let Some(at) = raw.iter().position(|&b| b == b'e' || b == b'E') else {
        return parse_decimal(raw);
    };
    let mantissa = parse_decimal(&raw[..at])?;
    let exponent = match &raw[at + 1..] {
        [b'-', digits @ ..] => -parse_exponent(digits).ok_or(NOT_A_NUMBER)?,
        [b'+', digits @ ..] | digits => parse_exponent(digits).ok_or(NOT_A_NUMBER)?,
    };
    let scale = i64::from(mantissa.scale()) - exponent;
    let (digits, scale) = if scale >= 0 {
        (mantissa.mantissa(), scale)
    } else {
        let factor = 10i128.checked_pow(u32::try_from(-scale).map_err(|_| TOO_PRECISE)?);
        let digits = factor.and_then(|factor| mantissa.mantissa().checked_mul(factor));
        (digits.ok_or(TOO_PRECISE)?, 0)
    };
    let scale = u32::try_from(scale).map_err(|_| TOO_PRECISE)?;
    Decimal::try_from_i128_with_scale(digits, scale).map_err(|_| TOO_PRECISE)
}

/// One or two digits.
fn parse_exponent(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 2 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + i64::from(d - b'0')))
}

/// `YYYY-MM-DD HH:MM:SS` or `YYYY/MM/DD HH:MM:SS` (DBR), or the same in UTC with `T` or a
/// space, optional fractions of a second and `Z` or `+00:00` (CUR: `2024-05-01T00:00:00Z`,
/// and `2024-05-01 00:00:00+00:00` as koku-nise writes it). Only the day is kept; another
/// offset than UTC's is refused, as it would move line items to another day.
fn parse_day(raw: &[u8]) -> Option<NaiveDate> {
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        raw.get(range)?.iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let separator = *raw.get(4)?;
    if raw.len() < 19
        || !matches!(separator, b'-' | b'/')
        || raw[7] != separator
        || !matches!(raw[10], b' ' | b'T')
        || raw[13] != b':'
        || raw[16] != b':'
    {
        return None;
    }
    let zone = match &raw[19..] {
        [b'.', rest @ ..] => {
            let fraction = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            (fraction > 0).then_some(&rest[fraction..])?
        }
        rest => rest,
    };
    let utc = match zone {
        b"" => raw[10] == b' ',
        b"Z" | b"+00:00" => true,
        _ => false,
    };
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !utc || hour > 23 || minute > 59 || second > 59 {
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

    proptest::proptest! {
        /// Whatever the digits, as rust_decimal reads them exactly.
        #[test]
        fn decimals_read_as_rust_decimal_reads_them(
            sign in "[-+]?",
            zeros in "0{0,3}",
            whole in "[0-9]{0,16}",
            fraction in proptest::option::of("[0-9]{0,12}"),
        ) {
            let text = format!("{sign}{zeros}{whole}{}", fraction.map(|f| format!(".{f}")).unwrap_or_default());
            let expected = Decimal::from_str_exact(&text).ok();
            proptest::prop_assert_eq!(parse_decimal(text.as_bytes()).ok(), expected, "{}", text);
        }
    }

    #[test]
    fn exponents_are_converted_exactly() {
        for (text, expected) in [
            ("7.257606382422945e-05", "0.00007257606382422945"),
            ("1E+3", "1000"),
            ("-2.5e1", "-25"),
            ("0.125e0", "0.125"),
            ("12", "12"),
        ] {
            assert_eq!(
                parse_scientific(text.as_bytes()).map(|d| d.to_string()),
                Ok(expected.into()),
                "{text}"
            );
        }
        for bad in ["1e", "e5", "1e+", "1e123", "1.5e5.5", "1ee5"] {
            assert!(parse_scientific(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_scientific(b"1e-29").is_err());
        assert!(parse_scientific(b"1e29").is_err());
    }

    #[test]
    fn days_in_both_formats() {
        let day = NaiveDate::from_ymd_opt(2017, 3, 31);
        assert_eq!(parse_day(b"2017-03-31 23:00:00"), day);
        assert_eq!(parse_day(b"2017/03/31 23:59:59"), day);
        assert_eq!(parse_day(b"2017-03-31T23:00:00Z"), day);
        assert_eq!(parse_day(b"2017-03-31T23:00:00.000Z"), day);
        assert_eq!(parse_day(b"2017-03-31 23:00:00+00:00"), day);
        for bad in [
            "2017-03-32 00:00:00",
            "2017-03-31",
            "2017-03/31 00:00:00",
            "2017-03-31T00:00:00",
            "2017-03-31T00:00:00+02:00",
            "2017-03-31T00:00:00.Z",
            "2017-03-31 24:00:00",
            "abcd-03-31 00:00:00",
        ] {
            assert_eq!(parse_day(bad.as_bytes()), None, "{bad}");
        }
    }
}
