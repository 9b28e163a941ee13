//! One report's rows folded into sums: `LineItem` rows of monitored accounts are summed per
//! (account, usage day, usage: charge category, invoice, product, usage type, operation, zone,
//! resource, description, tags), and from those, for the dashboards' rollups, per account and
//! charge category, per usage and month, and per account, day and service; every other line
//! item is counted as dropped; the footer is kept to reconcile each account's sum with its
//! `AccountTotal`. Plain computation, no I/O beyond the `Read` it is handed and the
//! temporary files of [`spill`], so it can be tested and benchmarked alone.

mod daily;
mod groups;
mod spill;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;

use crate::domain::{AccountId, InvoiceStatus, Monitored, Period, excerpt};
use crate::failure::{Classify, FailureKind};

use super::dimensions::{ChargeCategory, PurchaseOption};
use super::rows::{Columns, Layout, ParseError, RecordType, Row, RowReader, Rows, hash_usage_key};
use super::usage::{ListPrices, Usage};
use daily::DailyKey;
pub use groups::{GroupBy, GroupRow, Groups};

/// Summed line items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    pub unblended_cost: Decimal,
    pub blended_cost: Decimal,
    /// What the line items cost with commitments spread over the usage they cover (FOCUS's
    /// `EffectiveCost`); see `Row::amortized_cost`.
    pub amortized_cost: Decimal,
    pub usage_quantity: Decimal,
    pub line_items: u64,
}

impl Sums {
    /// Fails when a sum would leave rust_decimal's 96-bit range or be rounded to fit it (more
    /// than 28 significant digits), far beyond any real bill: never a silent rounding.
    pub fn add(&mut self, other: &Sums) -> Option<()> {
        self.unblended_cost = exact_sum(self.unblended_cost, other.unblended_cost)?;
        self.blended_cost = exact_sum(self.blended_cost, other.blended_cost)?;
        self.amortized_cost = exact_sum(self.amortized_cost, other.amortized_cost)?;
        self.usage_quantity = exact_sum(self.usage_quantity, other.usage_quantity)?;
        self.line_items += other.line_items;
        Some(())
    }
}

/// `a + b` at the larger scale of the two, or `None` where that needs more than rust_decimal's
/// 96 bits. (rust_decimal's own addition would round such a sum, and gives `0.0000 + 0.5` the
/// scale of `0.5`.) Called several times per row: two amounts of one scale, the common case,
/// are one integer addition.
#[inline]
fn exact_sum(a: Decimal, b: Decimal) -> Option<Decimal> {
    let scale = a.scale().max(b.scale());
    let sum = if a.scale() == b.scale() {
        // Two 96-bit mantissas: their sum fits an i128.
        a.mantissa() + b.mantissa()
    } else {
        let at_scale = |d: Decimal| d.mantissa().checked_mul(power_of_ten(scale - d.scale()));
        at_scale(a)?.checked_add(at_scale(b)?)?
    };
    Decimal::try_from_i128_with_scale(sum, scale).ok()
}

/// 10^`exponent`, for a difference of two scales (at most 28): a table, where `pow` is a loop
/// of 128-bit multiplications.
#[inline]
fn power_of_ten(exponent: u32) -> i128 {
    const POWERS: [i128; 29] = {
        let mut powers = [1; 29];
        let mut exponent = 1;
        while exponent < powers.len() {
            powers[exponent] = powers[exponent - 1] * 10;
            exponent += 1;
        }
        powers
    };
    POWERS[exponent as usize]
}

/// A sum as a 128-bit integer at the largest scale added: exact (an overflow fails, and so does
/// a sum that does not fit rust_decimal's 96 bits, once converted back), and an integer
/// addition where rust_decimal's addition aligns scales and checks for rounding every time.
#[derive(Clone, Copy, Default)]
struct Wide {
    mantissa: i128,
    scale: u32,
}

impl Wide {
    #[inline]
    fn add(&mut self, value: Decimal) -> Option<()> {
        let (mut mantissa, scale) = (value.mantissa(), value.scale());
        if scale > self.scale {
            self.mantissa = self
                .mantissa
                .checked_mul(power_of_ten(scale - self.scale))?;
            self.scale = scale;
        } else if scale < self.scale {
            mantissa = mantissa.checked_mul(power_of_ten(self.scale - scale))?;
        }
        self.mantissa = self.mantissa.checked_add(mantissa)?;
        Some(())
    }

    fn to_decimal(self) -> Option<Decimal> {
        Decimal::try_from_i128_with_scale(self.mantissa, self.scale).ok()
    }
}

/// A footer row's amounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amounts {
    pub unblended_cost: Decimal,
    pub blended_cost: Decimal,
}

/// The footer rows the report carries, as checks on the line items.
#[derive(Clone, Debug, Default)]
pub struct Footer {
    pub rounding: Option<Amounts>,
    pub invoice_totals: Vec<(String, Amounts)>,
    /// Monitored accounts only: an unmonitored account's total is none of our business.
    pub account_totals: BTreeMap<AccountId, Amounts>,
    pub statement_total: Option<Amounts>,
}

/// A payer-level footer row as stored: its record type, its invoice (or empty), its amounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FooterRow<'a> {
    pub record_type: &'static str,
    pub invoice_id: &'a str,
    pub amounts: Amounts,
}

impl Footer {
    /// The payer-level rows (account totals are kept beside each account's month).
    pub fn payer_rows(&self) -> Vec<FooterRow<'_>> {
        let row = |record_type: RecordType, invoice_id, amounts| FooterRow {
            record_type: record_type.as_str(),
            invoice_id,
            amounts,
        };
        let mut rows = Vec::new();
        if let Some(rounding) = self.rounding {
            rows.push(row(RecordType::Rounding, "", rounding));
        }
        for (invoice, total) in &self.invoice_totals {
            rows.push(row(RecordType::InvoiceTotal, invoice, *total));
        }
        if let Some(total) = self.statement_total {
            rows.push(row(RecordType::StatementTotal, "", total));
        }
        rows
    }
}

/// What happened to the data rows of a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub line_items: u64,
    pub kept: u64,
    pub dropped_unmonitored: u64,
    pub footer: u64,
    /// Kept line items whose usage day lies outside the report's billing period. They are kept
    /// (AWS's own totals include them) and counted, so someone can look.
    pub outside_period: u64,
    /// Kept line items whose amortized cost is their unblended cost because the column it is
    /// read from was absent or not a number (CUR only).
    pub amortized_as_billed: u64,
}

/// How a report's line items compare with its `AccountTotal` rows, account by account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reconciliation {
    pub accounts: usize,
    /// Accounts the report has an `AccountTotal` row for (none in a report without footer).
    pub with_total: usize,
    /// Accounts whose line items do not add up to their `AccountTotal`.
    pub mismatched: usize,
}

impl fmt::Display for Reconciliation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.accounts == 1 {
            "account"
        } else {
            "accounts"
        };
        write!(f, "{} {noun}, ", self.accounts)?;
        match (self.with_total, self.mismatched) {
            (0, _) => f.write_str("no AccountTotal rows to check against"),
            (_, 0) => f.write_str("totals match the report's AccountTotal rows"),
            (_, n) => write!(f, "{n} account(s) do NOT match their AccountTotal"),
        }
    }
}

/// What reading a report came to, in one line for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadSummary {
    pub rows: RowCounts,
    pub reconciliation: Reconciliation,
}

impl fmt::Display for ReadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = &self.rows;
        write!(
            f,
            "{} line items, {} kept, {} dropped (not monitored)",
            rows.line_items, rows.kept, rows.dropped_unmonitored
        )?;
        // report_status.rows_read counts them too: say why it is more than the line items.
        if rows.footer > 0 {
            write!(f, ", and {} footer rows", rows.footer)?;
        }
        write!(f, "; {}", self.reconciliation)
    }
}

/// What a report is known to be before it is read (from its object's name), for checking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportIdentity {
    /// Every row must carry this payer; `None` takes the first row's.
    pub payer: Option<AccountId>,
    /// Line items dated outside it are counted; `None` counts none.
    pub period: Option<Period>,
    /// Billed by the `AWSMarketplace` entity: its line items are marketplace charges.
    pub marketplace: bool,
}

/// One account's month: line-item sums and the reconciliation against its `AccountTotal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountMonth {
    pub account: AccountId,
    pub sums: Sums,
    /// The unblended cost per charge category, by [`ChargeCategory::index`]; `None` at the
    /// accounts grain, which does not look at what a line item was for.
    pub by_category: Option<CategoryCosts>,
    pub account_total: Option<Amounts>,
}

/// Unblended costs per charge category, by [`ChargeCategory::index`].
pub type CategoryCosts = [Decimal; ChargeCategory::ALL.len()];

impl AccountMonth {
    /// `None` when the report has no `AccountTotal` for the account (files without a footer).
    pub fn reconciled(&self) -> Option<bool> {
        self.account_total.map(|total| {
            total.unblended_cost == self.sums.unblended_cost
                && total.blended_cost == self.sums.blended_cost
        })
    }
}

/// One day's sums for one account and usage. `day` is `None` for undated rows (fees, tax);
/// `usage` is the id of one of [`ReportSums::usages`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyCost<'a> {
    pub account: &'a AccountId,
    pub day: Option<NaiveDate>,
    pub usage: u64,
    pub sums: Sums,
}

/// How finely a report is summed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grain {
    /// Per account only (`summarize`): constant memory whatever the report's key count.
    Accounts,
    /// Per account and per (day, product, usage type, operation, zone, resource, tags), as the
    /// store keeps them, within a memory budget.
    Daily(MemoryBudget),
}

/// How much memory the daily sums of one report may take before they are written out as a
/// sorted run to `temp_dir` (and merged back while they are stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    pub bytes: usize,
    pub temp_dir: PathBuf,
}

impl MemoryBudget {
    /// The least share of the budget one report is given: with less, runs hold so few keys
    /// that a large report writes thousands of them, and merging them reads the report's sums
    /// back many times over. The configuration refuses a budget below `concurrency` times this.
    pub const SHARE_FLOOR: usize = 4 << 20;

    /// Large enough that no test report spills unless it means to.
    #[cfg(test)]
    pub fn unlimited() -> MemoryBudget {
        MemoryBudget {
            bytes: usize::MAX,
            temp_dir: std::env::temp_dir(),
        }
    }
}

/// Why a report could not be summed.
#[derive(Debug, thiserror::Error)]
pub enum SumError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("writing partial sums to the temporary directory: {0}")]
    Spill(#[source] io::Error),
}

/// Why the daily sums could not be read out.
#[derive(Debug, thiserror::Error)]
pub enum DailyCostsError {
    #[error("reading partial sums back from the temporary directory: {0}")]
    Spill(#[from] io::Error),
    #[error(
        "the daily sums of account {account} need more than 28 significant digits, which cannot be kept exactly"
    )]
    Inexact { account: AccountId },
}

impl Classify for DailyCostsError {
    fn kind(&self) -> FailureKind {
        match self {
            DailyCostsError::Spill(_) => FailureKind::Transient,
            DailyCostsError::Inexact { .. } => FailureKind::Content,
        }
    }
}

/// The sums of one report, built row by row.
#[derive(Debug)]
pub struct ReportSums {
    grain: Grain,
    payer: Option<AccountId>,
    /// The first and last day of the report's billing period, when known.
    period: Option<(NaiveDate, NaiveDate)>,
    /// Dated line items per month, when the period is not known (to find it).
    items_by_period: BTreeMap<Period, u64>,
    monitored: Monitored,
    accounts: Vec<AccountId>,
    /// Each monitored account's month, beside `accounts`: summed row by row at the accounts
    /// grain, from the daily sums once the rows are read at the daily grain.
    account_sums: Vec<Sums>,
    /// Each monitored account's unblended cost per charge category, beside `accounts` (daily
    /// grain only), summed from the daily sums as `account_sums` are.
    account_categories: Vec<CategoryCosts>,
    /// Each monitored account's line items dated outside the period, beside `accounts`.
    account_outside_period: Vec<u64>,
    /// Every linked account seen, to its index in `accounts`, or `None` when not monitored.
    account_slots: FxHashMap<Vec<u8>, Option<u32>>,
    /// Reused for every row's usage key ([`Row::usage_key`]).
    usage_key: Vec<u8>,
    /// The distinct usages of the current generation, by id.
    usages: daily::Usages,
    /// The daily sums since the last run was written out.
    daily: daily::DailySums,
    /// The services the usages are of, each once.
    services: Services,
    /// Each DBR usage's on-demand rate, learnt as the usage is first seen (see [`ListPrices`]).
    list_prices: ListPrices,
    /// The daily sums per account, day and service (`DailyKey::usage` is a service's index),
    /// since the last run was written out to `service_runs`.
    service_days: daily::DailySums,
    service_runs: spill::Runs,
    /// The daily sums written out so far, when they outgrew the budget.
    runs: spill::Runs,
    footer: Footer,
    rows: RowCounts,
    /// The first line of a line item dated outside the period, for the warning.
    first_outside_period: Option<u64>,
    estimated: bool,
    has_resources: bool,
    marketplace: bool,
    /// The last line of the part read last, for errors found after reading it.
    last_line: u64,
    /// A part was a CUR's.
    cur: bool,
}

impl ReportSums {
    /// Sums a whole report's CSV at `grain`, read as `layout` says, splitting and summing on
    /// the calling thread (for tests, and the parse bench).
    pub fn sum_csv(
        input: impl Read,
        layout: &Layout,
        identity: ReportIdentity,
        monitored: Monitored,
        grain: Grain,
    ) -> Result<ReportSums, SumError> {
        let mut sums = ReportSums::new(identity, monitored, grain);
        let mut reader = RowReader::new(input, layout)?;
        sums.begin_part(reader.columns());
        let mut spare = None;
        while let Some(rows) = reader.next_rows(spare)? {
            sums.add_rows(&rows, reader.columns())?;
            spare = Some(rows);
        }
        sums.end_part(reader.line());
        sums.finish()?;
        Ok(sums)
    }

    /// A CSV (a report, or one part of a CUR) with these columns begins. With a payer given,
    /// every row must carry it; without, the first row's payer is taken and every later row
    /// must match.
    pub fn begin_part(&mut self, columns: &Columns) {
        self.has_resources |= columns.has_resources();
        self.cur |= columns.is_cur();
    }

    /// Adds rows of the current part, whose header `columns` mapped.
    pub fn add_rows(&mut self, rows: &Rows, columns: &Columns) -> Result<(), SumError> {
        for index in 0..rows.len() {
            let row = rows.row(index, columns)?;
            if self.spill_due() {
                self.spill(row.line())?;
            }
            self.add(&row, rows.usage_key(index))?;
        }
        Ok(())
    }

    /// The current part ended with `line`.
    pub fn end_part(&mut self, line: u64) {
        self.last_line = line;
    }

    /// Ends the sums once every part was added.
    pub fn finish(&mut self) -> Result<(), SumError> {
        if self.runs.is_empty() {
            self.sum_accounts(self.last_line)?;
        } else {
            // Once some sums are on disk, all are: they are merged from runs alone.
            self.write_daily_run(self.last_line)?;
        }
        Ok(())
    }

    pub fn new(identity: ReportIdentity, monitored: Monitored, grain: Grain) -> ReportSums {
        let (temp_dir, budget) = match &grain {
            Grain::Daily(budget) => (budget.temp_dir.clone(), budget.bytes),
            Grain::Accounts => (PathBuf::new(), 0),
        };
        ReportSums {
            grain,
            payer: identity.payer,
            period: identity.period.map(|p| (p.first_day(), p.last_day())),
            items_by_period: BTreeMap::new(),
            monitored,
            accounts: Vec::new(),
            account_sums: Vec::new(),
            account_categories: Vec::new(),
            account_outside_period: Vec::new(),
            account_slots: FxHashMap::default(),
            usage_key: Vec::new(),
            usages: daily::Usages::within(budget, 0),
            daily: daily::DailySums::default(),
            services: Services::default(),
            list_prices: ListPrices::default(),
            service_days: daily::DailySums::default(),
            service_runs: spill::Runs::new(temp_dir.clone()),
            runs: spill::Runs::new(temp_dir),
            footer: Footer::default(),
            rows: RowCounts::default(),
            first_outside_period: None,
            estimated: false,
            has_resources: false,
            marketplace: identity.marketplace,
            last_line: 0,
            cur: false,
        }
    }

    /// Adds one row; `usage_key` is its usage key and hash when made ahead
    /// ([`Rows::key_usages`]).
    fn add(&mut self, row: &Row<'_>, usage_key: Option<(&[u8], u64)>) -> Result<(), ParseError> {
        let record_type = row.record_type()?;
        self.check_payer(row)?;
        self.estimated |= row.estimated();
        let amounts = |row: &Row<'_>| -> Result<Amounts, ParseError> {
            Ok(Amounts {
                unblended_cost: row.unblended_cost()?,
                blended_cost: row.blended_cost()?,
            })
        };
        match record_type {
            RecordType::LineItem => return self.add_line_item(row, usage_key),
            RecordType::Rounding => self.footer.rounding = Some(amounts(row)?),
            RecordType::InvoiceTotal => {
                let invoice = row.invoice_id_text()?.to_owned();
                self.footer.invoice_totals.push((invoice, amounts(row)?));
            }
            RecordType::AccountTotal => {
                if let Some(slot) = self.account_slot(row)? {
                    let account = self.accounts[slot as usize].clone();
                    self.footer.account_totals.insert(account, amounts(row)?);
                }
            }
            RecordType::StatementTotal => self.footer.statement_total = Some(amounts(row)?),
        }
        self.rows.footer += 1;
        Ok(())
    }

    fn add_line_item(
        &mut self,
        row: &Row<'_>,
        usage_key: Option<(&[u8], u64)>,
    ) -> Result<(), ParseError> {
        self.rows.line_items += 1;
        let Some(account) = self.account_slot(row)? else {
            self.rows.dropped_unmonitored += 1;
            return Ok(());
        };
        self.rows.kept += 1;
        // Daily grain: the usage first, so that a field that is not text is named before a
        // date. Its key begins with the account's slot: a usage's month is one account's.
        let usage = match self.grain {
            Grain::Daily(_) => {
                let (key, hash) = usage_key.unwrap_or_else(|| {
                    self.usage_key.clear();
                    row.usage_key(&mut self.usage_key, self.marketplace);
                    (&self.usage_key, hash_usage_key(&self.usage_key))
                });
                let (services, prices) = (&mut self.services, &mut self.list_prices);
                let id = self.usages.id_of(account, key, hash, || {
                    row.check_usage(key)?;
                    let usage = Usage::decode(key);
                    prices.learn(&usage);
                    let service = services.id_of(&usage).ok_or_else(|| {
                        row.error_at_product(format!(
                            "more than {MAX_SERVICES} distinct services (product, region, charge category, purchase option) in one report"
                        ))
                    })?;
                    Ok::<_, ParseError>((usage.charge_category, service))
                })?;
                Some(id)
            }
            Grain::Accounts => None,
        };
        let day = row.usage_day()?;
        if let Some(day) = day {
            match self.period {
                Some((first, last)) if day < first || day > last => {
                    self.rows.outside_period += 1;
                    self.account_outside_period[account as usize] += 1;
                    self.first_outside_period.get_or_insert_with(|| row.line());
                }
                Some(_) => {}
                None => *self.items_by_period.entry(Period::of_day(day)).or_default() += 1,
            }
        }
        let unblended_cost = row.unblended_cost()?;
        let amortized = row.amortized_cost(unblended_cost);
        if amortized.as_billed {
            self.rows.amortized_as_billed += 1;
        }
        let sums = Sums {
            unblended_cost,
            blended_cost: row.blended_cost()?,
            amortized_cost: amortized.cost,
            usage_quantity: row.usage_quantity()?,
            line_items: 1,
        };
        let (added, what) = match usage {
            Some(usage) => {
                let key = DailyKey {
                    account,
                    day,
                    usage,
                };
                (self.daily.add(key, &sums), "daily")
            }
            None => (
                self.account_sums[account as usize]
                    .add(&sums)
                    .ok_or(account),
                "monthly",
            ),
        };
        added.map_err(|inexact| {
            if inexact == account {
                row.linked_account_error(format!(
                    "the account's {what} sums need more than 28 significant digits, which cannot be kept exactly"
                ))
            } else {
                self.inexact(row.line(), "daily", inexact)
            }
        })
    }

    /// The sums of the account in slot `account` at `grain` cannot be kept exactly.
    fn inexact(&self, line: u64, grain: &str, account: u32) -> ParseError {
        ParseError {
            line,
            column: None,
            message: format!(
                "the {grain} sums of account {} need more than 28 significant digits, which cannot be kept exactly",
                self.accounts[account as usize]
            ),
        }
    }

    /// Whether the daily sums and usages could outgrow the budget with the next key: growing
    /// a table holds the old one beside the new one, and writing a run out moves the entries
    /// into a vector to sort them, so both are counted before they happen.
    fn spill_due(&self) -> bool {
        let Grain::Daily(budget) = &self.grain else {
            return false;
        };
        budget.bytes
            < self.usages.peak_bytes_with_one_more()
                + self.daily.peak_bytes_with_one_more()
                + self.service_days.peak_bytes_with_one_more()
    }

    /// Writes the daily sums out as a sorted run and starts again with an empty table. When
    /// the usages take three quarters of the budget, they are written out too, and a new
    /// generation of usages starts. (At half, a high-cardinality month of 126 k usages went
    /// through three generations, each repeating most usages and their daily keys: 2 s more.)
    fn spill(&mut self, line: u64) -> Result<(), SumError> {
        self.write_daily_run(line)?;
        if let Grain::Daily(budget) = &self.grain
            && self.usages.peak_bytes_with_one_more() > budget.bytes / 4 * 3
        {
            self.runs
                .write_usages(self.usages.iter())
                .map_err(SumError::Spill)?;
            self.usages = self.usages.next_generation();
        }
        Ok(())
    }

    /// Writes the daily sums out as a sorted run, and the per-service sums they add to as
    /// another.
    fn write_daily_run(&mut self, line: u64) -> Result<(), SumError> {
        self.sum_accounts(line)?;
        let sorted = self.daily.take_sorted();
        let written = self
            .runs
            .write(sorted.iter().map(|(key, sums)| (*key, sums)));
        drop(sorted);
        let services = self.service_days.take_sorted();
        let written = written.and_then(|()| {
            self.service_runs
                .write(services.iter().map(|(key, sums)| (*key, sums)))
        });
        written.map_err(|error| match error {
            spill::MergeError::Io(error) => SumError::Spill(error),
            spill::MergeError::Inexact { account } => SumError::Parse(ParseError {
                line,
                column: None,
                message: DailyCostsError::Inexact {
                    account: self.accounts[account as usize].clone(),
                }
                .to_string(),
            }),
        })
    }

    /// Adds the daily sums in memory to their accounts' months and charge categories, to
    /// their usages' months and to their services' days (once per table, not per row: the hot
    /// loop stays lean). At the accounts grain they were summed row by row. The daily keys
    /// refer to usages of the current generation only.
    fn sum_accounts(&mut self, line: u64) -> Result<(), ParseError> {
        self.daily
            .close()
            .map_err(|account| self.inexact(line, "daily", account))?;
        for (key, sums) in self.daily.iter() {
            let account = key.account as usize;
            let info = self.usages.info_mut(key.usage);
            let category = &mut self.account_categories[account][info.category.index()];
            let service = DailyKey {
                usage: u64::from(info.service),
                ..key
            };
            let exact = exact_sum(*category, sums.unblended_cost)
                .map(|sum| *category = sum)
                .and_then(|()| info.month.add(sums))
                .ok_or(key.account)
                .and_then(|()| self.service_days.add(service, sums))
                .and_then(|()| self.account_sums[account].add(sums).ok_or(key.account));
            exact.map_err(|account| self.inexact(line, "monthly", account))?;
        }
        self.service_days
            .close()
            .map_err(|account| self.inexact(line, "monthly", account))
    }

    /// The row's linked account's index, or `None` when it is not monitored. An empty
    /// `LinkedAccountId` on a line item means the payer (no consolidated billing).
    fn account_slot(&mut self, row: &Row<'_>) -> Result<Option<u32>, ParseError> {
        let raw = row.linked_account();
        if let Some(&slot) = self.account_slots.get(raw) {
            return Ok(slot);
        }
        let payer = self
            .payer
            .as_ref()
            .expect("the payer is known once a row was read");
        let account: AccountId = if raw.is_empty() {
            payer.clone()
        } else {
            parse_account(raw).map_err(|message| row.linked_account_error(message))?
        };
        // An ID that lost a leading zero (a report edited in a spreadsheet) would be taken for
        // another account: dropped as not monitored, or shown apart.
        if account.as_str().len() != payer.as_str().len() {
            return Err(row.linked_account_error(format!(
                "account ID {} has {} digits, the payer {payer} has {}: a leading zero lost?",
                excerpt(raw),
                account.as_str().len(),
                payer.as_str().len()
            )));
        }
        // One slot per account, though two spellings (empty, or the payer's ID) may name it.
        let slot = match self.accounts.iter().position(|known| *known == account) {
            Some(slot) => Some(index(slot)),
            None => self.monitored.contains(&account).then(|| {
                self.accounts.push(account);
                self.account_sums.push(Sums::default());
                self.account_categories.push(CategoryCosts::default());
                self.account_outside_period.push(0);
                index(self.accounts.len() - 1)
            }),
        };
        self.account_slots.insert(raw.to_vec(), slot);
        Ok(slot)
    }

    fn check_payer(&mut self, row: &Row<'_>) -> Result<(), ParseError> {
        let raw = row.payer();
        match &self.payer {
            Some(payer) if payer.as_str().as_bytes() == raw => Ok(()),
            Some(payer) => Err(row.payer_error(format!(
                "payer {} differs from the report's payer {payer}",
                excerpt(raw)
            ))),
            None => {
                let payer = parse_account(raw).map_err(|message| row.payer_error(message))?;
                self.payer = Some(payer);
                Ok(())
            }
        }
    }

    /// The payer: the one given, or the one read from the rows (`None` for a report without rows).
    pub fn payer(&self) -> Option<&AccountId> {
        self.payer.as_ref()
    }

    pub fn rows(&self) -> RowCounts {
        self.rows
    }

    /// The row counts as they are for `only` these accounts (all when `None`): the line items
    /// of the others count as dropped.
    pub fn rows_of(&self, only: Option<&Monitored>) -> RowCounts {
        let Some(only) = only else {
            return self.rows;
        };
        let mut rows = RowCounts {
            kept: 0,
            outside_period: 0,
            ..self.rows
        };
        for (slot, account) in self.accounts.iter().enumerate() {
            if only.contains(account) {
                rows.kept += self.account_sums[slot].line_items;
                rows.outside_period += self.account_outside_period[slot];
            }
        }
        rows.dropped_unmonitored = rows.line_items - rows.kept;
        rows
    }

    /// The row counts and the reconciliation with the footer.
    pub fn summary(&self) -> ReadSummary {
        self.summary_of(None)
    }

    /// [`ReportSums::summary`] as it is for `only` these accounts (all when `None`).
    pub fn summary_of(&self, only: Option<&Monitored>) -> ReadSummary {
        let accounts = self.accounts_of(only);
        ReadSummary {
            rows: self.rows_of(only),
            reconciliation: Reconciliation {
                accounts: accounts.len(),
                with_total: accounts
                    .iter()
                    .filter(|a| a.account_total.is_some())
                    .count(),
                mismatched: accounts
                    .iter()
                    .filter(|a| a.reconciled() == Some(false))
                    .count(),
            },
        }
    }

    /// The line of the first kept line item dated outside the report's period.
    pub fn first_outside_period(&self) -> Option<u64> {
        self.first_outside_period
    }

    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// `Estimated` while the month is open; the invoice number once AWS closed it.
    pub fn invoice_status(&self) -> InvoiceStatus {
        InvoiceStatus::of_report(self.estimated)
    }

    /// Whether the header had a `ResourceId` column (the with-resources-and-tags variant).
    /// Whether it was read as a Cost and Usage Report.
    pub fn is_cur(&self) -> bool {
        self.cur
    }

    pub fn has_resources(&self) -> bool {
        self.has_resources
    }

    /// The month most line items were used in: the billing period of a report whose file name
    /// does not say it.
    /// `None` when the period was given: then line items outside it are counted instead.
    pub fn busiest_period(&self) -> Option<Period> {
        self.items_by_period
            .iter()
            .map(|(&period, &count)| (period, count))
            .max_by_key(|&(period, count)| (count, std::cmp::Reverse(period)))
            .map(|(period, _)| period)
    }

    /// The usages the daily sums refer to, each id once, one at a time: those written out with
    /// past generations, then the current generation's.
    pub fn usages(&self) -> Usages<'_> {
        Usages {
            accounts: &self.accounts,
            written: self.runs.usages(),
            current: Box::new(self.usages.iter()),
        }
    }

    /// The list price of each usage's unit ([`ListPrices`]), learnt from every usage of the
    /// report as it was read: a DBR's reserved usage takes its on-demand peers' rate.
    pub fn list_prices(&self) -> &ListPrices {
        &self.list_prices
    }

    /// The month's sums of each resource, or of each tag value, per account (of `only` these
    /// accounts, all when `None`), for the rollups: per account (and tag key) the
    /// [`Groups::KEPT_BY_NAME`] that cost most, and a row for the others.
    pub fn groups(&self, by: GroupBy, only: Option<&Monitored>) -> Result<Groups, DailyCostsError> {
        Groups::new(self.usages(), by, only, self.runs.temp_dir())
    }

    /// The sums per account, day and service, one at a time (`DailyCost::usage` is the index
    /// of one of [`ReportSums::service`]); each key once.
    pub fn service_days(&self) -> Result<DailyCosts<'_>, DailyCostsError> {
        let source = if self.service_runs.is_empty() {
            DailySource::Memory(Box::new(self.service_days.iter()))
        } else {
            DailySource::Runs(self.service_runs.merge().map_err(DailyCostsError::Spill)?)
        };
        Ok(DailyCosts {
            accounts: &self.accounts,
            source,
        })
    }

    /// A service of [`ReportSums::service_days`].
    pub fn service(&self, id: u64) -> &Service {
        &self.services.list[id as usize]
    }

    /// The daily sums, one at a time: from memory in no particular order, or merged from the
    /// runs written out, in key order. Writing them costs no copy of the month.
    pub fn daily_costs(&self) -> Result<DailyCosts<'_>, DailyCostsError> {
        let source = if self.runs.is_empty() {
            DailySource::Memory(Box::new(self.daily.iter()))
        } else {
            DailySource::Runs(self.runs.merge().map_err(DailyCostsError::Spill)?)
        };
        Ok(DailyCosts {
            accounts: &self.accounts,
            source,
        })
    }

    /// How many sorted runs the daily sums were written out as (0: they stayed in memory).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Bytes the daily and service sums wrote to the temporary directory and read back so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.runs.bytes_moved() + self.service_runs.bytes_moved()
    }

    /// [`ReportSums::accounts`] of `only` these accounts (all when `None`).
    pub fn accounts_of(&self, only: Option<&Monitored>) -> Vec<AccountMonth> {
        let mut accounts = self.accounts();
        if let Some(only) = only {
            accounts.retain(|month| only.contains(&month.account));
        }
        accounts
    }

    /// Per monitored account, ordered by ID: its line items summed, and its `AccountTotal`. An
    /// account with a total but no line items is listed too (its costs were all dropped or zero).
    pub fn accounts(&self) -> Vec<AccountMonth> {
        let mut months: BTreeMap<&AccountId, (Sums, CategoryCosts)> = self
            .accounts
            .iter()
            .zip(self.account_sums.iter().copied())
            .zip(self.account_categories.iter().copied())
            .map(|((account, sums), categories)| (account, (sums, categories)))
            .collect();
        for account in self.footer.account_totals.keys() {
            months.entry(account).or_default();
        }
        let daily = matches!(self.grain, Grain::Daily(_));
        months
            .into_iter()
            .map(|(account, (sums, categories))| AccountMonth {
                account: account.clone(),
                sums,
                by_category: daily.then_some(categories),
                account_total: self.footer.account_totals.get(account).copied(),
            })
            .collect()
    }
}

/// A report may have at most this many distinct services: what it keeps of each is small,
/// but it is kept for the whole report.
pub const MAX_SERVICES: usize = 100_000;

/// What dashboards group a day's costs by: product, region, charge category, purchase option.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Service {
    pub product: String,
    pub region: String,
    pub charge_category: ChargeCategory,
    pub purchase_option: PurchaseOption,
}

/// The services of a report, each once, by index.
#[derive(Debug, Default)]
struct Services {
    ids: FxHashMap<Service, u32>,
    list: Vec<Service>,
}

impl Services {
    /// The index of `usage`'s service; `None` beyond [`MAX_SERVICES`].
    fn id_of(&mut self, usage: &Usage<'_>) -> Option<u32> {
        let service = Service {
            product: usage.product.to_owned(),
            region: usage.region(),
            charge_category: usage.charge_category,
            purchase_option: usage.purchase_option(),
        };
        if let Some(&id) = self.ids.get(&service) {
            return Some(id);
        }
        if self.list.len() == MAX_SERVICES {
            return None;
        }
        let id = index(self.list.len());
        self.ids.insert(service.clone(), id);
        self.list.push(service);
        Some(id)
    }
}

/// A report's usages being read out; see [`ReportSums::usages`].
pub struct Usages<'a> {
    accounts: &'a [AccountId],
    written: spill::UsageReader<'a>,
    current: Box<dyn Iterator<Item = (u64, &'a [u8], &'a Sums)> + Send + 'a>,
}

/// One usage of a report: its id, the account whose it is, what it was, and its month's sums
/// (partial when the report's usages outgrew the budget: another id may carry the rest).
pub struct UsageMonth<'a> {
    pub id: u64,
    pub account: &'a AccountId,
    /// What it was; `Usage::region` and `Usage::purchase_option` derive its dimensions.
    pub usage: Usage<'a>,
    pub month: Sums,
}

impl Usages<'_> {
    /// The next usage, or `None` after the last.
    #[allow(clippy::should_implement_trait)] // It lends from itself, which `Iterator` cannot.
    pub fn next(&mut self) -> Option<Result<UsageMonth<'_>, DailyCostsError>> {
        let accounts = self.accounts;
        if let Some(written) = self.written.next() {
            return Some(
                written
                    .map(|(id, key, month)| usage_month(accounts, id, key, month))
                    .map_err(DailyCostsError::Spill),
            );
        }
        self.current
            .next()
            .map(|(id, key, month)| Ok(usage_month(accounts, id, key, *month)))
    }
}

/// A usage read back: its key begins with its account's slot.
fn usage_month<'a>(
    accounts: &'a [AccountId],
    id: u64,
    key: &'a [u8],
    month: Sums,
) -> UsageMonth<'a> {
    let (slot, usage) = key.split_first_chunk::<4>().expect("a usage key");
    UsageMonth {
        id,
        account: &accounts[u32::from_le_bytes(*slot) as usize],
        usage: Usage::decode(usage),
        month,
    }
}

/// A report's daily sums being read out; see [`ReportSums::daily_costs`].
pub struct DailyCosts<'a> {
    accounts: &'a [AccountId],
    source: DailySource<'a>,
}

enum DailySource<'a> {
    Memory(Box<dyn Iterator<Item = (DailyKey, &'a Sums)> + Send + 'a>),
    Runs(spill::Merge<'a>),
}

impl<'a> Iterator for DailyCosts<'a> {
    type Item = Result<DailyCost<'a>, DailyCostsError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (key, sums) = match &mut self.source {
            DailySource::Memory(entries) => entries.next().map(|(key, sums)| (key, *sums))?,
            DailySource::Runs(merge) => match merge.next()? {
                Ok(merged) => merged,
                Err(spill::MergeError::Io(error)) => {
                    return Some(Err(DailyCostsError::Spill(error)));
                }
                Err(spill::MergeError::Inexact { account }) => {
                    return Some(Err(DailyCostsError::Inexact {
                        account: self.accounts[account as usize].clone(),
                    }));
                }
            },
        };
        Some(Ok(DailyCost {
            account: &self.accounts[key.account as usize],
            day: key.day,
            usage: key.usage,
            sums,
        }))
    }
}

fn parse_account(raw: &[u8]) -> Result<AccountId, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_owned())?;
    text.parse()
        .map_err(|e: crate::domain::NotAnAccountId| e.to_string())
}

fn index(position: usize) -> u32 {
    u32::try_from(position).expect("fewer than 2^32 distinct accounts and usages")
}

#[cfg(test)]
mod tests {
    use crate::formats::dbr::LAYOUT;
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;

    const ACCOUNTS: [&str; 4] = ["000000000001", "123456789012", "210987654321", ""];
    const PAYER: &str = "123456789012";

    /// An amount as (mantissa, scale): any value with 0 to 14 fractional digits.
    fn amount() -> impl Strategy<Value = (i64, u32)> {
        (-10_000_000_000_000i64..10_000_000_000_000, 0u32..=14)
    }

    #[derive(Debug, Clone)]
    struct LineItem {
        account: usize,
        product: &'static str,
        day: Option<u32>,
        unblended: (i64, u32),
        blended: (i64, u32),
        quantity: (i64, u32),
    }

    fn line_item() -> impl Strategy<Value = LineItem> {
        (
            0..ACCOUNTS.len(),
            prop::sample::select(vec!["Amazon EC2", "Amazon S3, \"Standard\"", ""]),
            prop::option::of(1u32..=30),
            amount(),
            amount(),
            amount(),
        )
            .prop_map(
                |(account, product, day, unblended, blended, quantity)| LineItem {
                    account,
                    product,
                    day,
                    unblended,
                    blended,
                    quantity,
                },
            )
    }

    fn text((mantissa, scale): (i64, u32)) -> String {
        Decimal::new(mantissa, scale).to_string()
    }

    /// The same amount in units of 1e-14, for an independent integer sum.
    fn units((mantissa, scale): (i64, u32)) -> i128 {
        i128::from(mantissa) * 10i128.pow(14 - scale)
    }

    fn write_report(items: &[LineItem], crlf: bool) -> Vec<u8> {
        let terminator = if crlf {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        };
        let mut writer = csv::WriterBuilder::new()
            .terminator(terminator)
            .quote_style(csv::QuoteStyle::Always)
            .from_writer(Vec::new());
        writer
            .write_record([
                "InvoiceID",
                "PayerAccountId",
                "LinkedAccountId",
                "RecordType",
                "RecordId",
                "ProductName",
                "UsageType",
                "Operation",
                "AvailabilityZone",
                "ItemDescription",
                "UsageStartDate",
                "UsageEndDate",
                "UsageQuantity",
                "BlendedRate",
                "BlendedCost",
                "UnBlendedRate",
                "UnBlendedCost",
                "ResourceId",
                "user:Name",
            ])
            .unwrap();
        for item in items {
            let start = item
                .day
                .map(|d| format!("2017-04-{d:02} 10:00:00"))
                .unwrap_or_default();
            writer
                .write_record([
                    "Estimated",
                    PAYER,
                    ACCOUNTS[item.account],
                    "LineItem",
                    "12345678901234567890123456",
                    item.product,
                    "BoxUsage",
                    "RunInstances",
                    "",
                    "First 1,000,000 requests",
                    &start,
                    "",
                    &text(item.quantity),
                    "0.1",
                    &text(item.blended),
                    "0.1",
                    &text(item.unblended),
                    "i-1",
                    "web, \"front\"",
                ])
                .unwrap();
        }
        writer.into_inner().unwrap()
    }

    proptest! {
        #[test]
        fn random_rows_parse_back_to_the_same_totals(
            items in prop::collection::vec(line_item(), 0..200),
            monitored in prop::collection::btree_set(0..3usize, 0..=3),
            crlf: bool,
            daily: bool,
        ) {
            let grain = if daily { Grain::Daily(MemoryBudget::unlimited()) } else { Grain::Accounts };
            let report = write_report(&items, crlf);
            let only: BTreeSet<AccountId> = monitored.iter().map(|&i| ACCOUNTS[i].parse().unwrap()).collect();
            let filter = if only.is_empty() { Monitored::All } else { Monitored::Only(only.clone()) };
            let month = ReportSums::sum_csv(report.as_slice(), &LAYOUT, ReportIdentity { payer: Some(PAYER.parse().unwrap()), period: Some(Period::new(2017, 4).unwrap()), marketplace: false }, filter.clone(), grain).unwrap();

            let mut expected: BTreeMap<String, [i128; 4]> = BTreeMap::new();
            for item in &items {
                // An empty LinkedAccountId is the payer's own line item.
                let account = if ACCOUNTS[item.account].is_empty() { PAYER } else { ACCOUNTS[item.account] };
                if !filter.contains(&account.parse().unwrap()) {
                    continue;
                }
                let sums = expected.entry(account.to_owned()).or_default();
                sums[0] += units(item.unblended);
                sums[1] += units(item.blended);
                sums[2] += units(item.quantity);
                sums[3] += 1;
            }
            let actual: BTreeMap<String, [i128; 4]> = month
                .accounts()
                .into_iter()
                .map(|a| {
                    let at_scale_14 = |d: Decimal| {
                        let mut d = d;
                        d.rescale(14);
                        d.mantissa()
                    };
                    let s = a.sums;
                    (a.account.to_string(), [at_scale_14(s.unblended_cost), at_scale_14(s.blended_cost), at_scale_14(s.usage_quantity), i128::from(s.line_items)])
                })
                .collect();
            prop_assert_eq!(&actual, &expected);
            let kept: i128 = expected.values().map(|s| s[3]).sum();
            let rows = month.rows();
            prop_assert_eq!(i128::from(rows.kept), kept);
            prop_assert_eq!(rows.line_items, items.len() as u64);
            prop_assert_eq!(rows.kept + rows.dropped_unmonitored, rows.line_items);
            prop_assert!(month.invoice_status() == InvoiceStatus::Estimated || items.is_empty());
        }
    }

    proptest! {
        #![proptest_config(crate::report::proptest_config(100))]
        /// Whatever the budget, down to one that writes a run before every row, the daily and
        /// monthly sums are those of the budget that never writes one.
        #[test]
        fn spilled_sums_equal_the_sums_kept_in_memory(
            items in prop::collection::vec(line_item(), 1..150),
            budget in prop::sample::select(vec![1usize, 3_000, 30_000]),
        ) {
            // Amounts small enough that no order of adding them needs more than 28 digits.
            let small = |(mantissa, scale): (i64, u32)| (mantissa % 1_000_000_000, scale);
            let items: Vec<LineItem> = items
                .into_iter()
                .map(|item| LineItem {
                    unblended: small(item.unblended),
                    blended: small(item.blended),
                    quantity: small(item.quantity),
                    ..item
                })
                .collect();
            let report = write_report(&items, false);
            let in_memory = sum_daily(&report, Monitored::All, usize::MAX).unwrap();
            let spilled = sum_daily(&report, Monitored::All, budget).unwrap();
            prop_assert_eq!(in_memory.runs(), 0);
            prop_assert!(budget > 1_000 || spilled.runs() >= 1);
            prop_assert_eq!(daily_rows(&spilled), daily_rows(&in_memory));
            prop_assert_eq!(spilled.accounts(), in_memory.accounts());
            prop_assert_eq!(spilled.rows(), in_memory.rows());
        }
    }

    proptest! {
        #![proptest_config(crate::report::proptest_config(100))]
        /// Usage keys made ahead by the splitting thread ([`Rows::key_usages`]) give the sums
        /// of keys made while summing, a marketplace's report as any other.
        #[test]
        fn usage_keys_made_ahead_sum_as_those_made_while_summing(
            items in prop::collection::vec(line_item(), 1..150),
            marketplace: bool,
        ) {
            let report = write_report(&items, false);
            let identity = || ReportIdentity { marketplace, ..ReportIdentity::default() };
            let grain = || Grain::Daily(MemoryBudget::unlimited());
            let while_summing = ReportSums::sum_csv(report.as_slice(), &LAYOUT, identity(), Monitored::All, grain()).unwrap();
            let mut ahead = ReportSums::new(identity(), Monitored::All, grain());
            let mut reader = RowReader::new(report.as_slice(), &LAYOUT).unwrap();
            ahead.begin_part(reader.columns());
            while let Some(mut rows) = reader.next_rows(None).unwrap() {
                rows.key_usages(reader.columns(), marketplace);
                prop_assert!(rows.is_empty() || rows.usage_key(0).is_some());
                ahead.add_rows(&rows, reader.columns()).unwrap();
            }
            ahead.end_part(reader.line());
            ahead.finish().unwrap();
            prop_assert_eq!(daily_rows(&ahead), daily_rows(&while_summing));
            prop_assert_eq!(ahead.accounts(), while_summing.accounts());
        }
    }

    #[test]
    fn a_budget_spills_a_report_of_many_keys_into_runs() {
        let mut text = HEADER.to_owned();
        for resource in 0..20_000 {
            text.push_str(&format!(
                "1,9,1,LineItem,EC2,Box-{resource},Run,,2017-02-01 00:00:00,1,0.01,0.01\n"
            ));
        }
        let spilled = sum_daily(text.as_bytes(), Monitored::All, 1 << 20).unwrap();
        assert!(spilled.runs() >= 2, "{} runs", spilled.runs());
        let in_memory = month_of(&text, Monitored::All).unwrap();
        assert_eq!(daily_rows(&spilled), daily_rows(&in_memory));
    }

    fn month_of(text: &str, monitored: Monitored) -> Result<ReportSums, ParseError> {
        sum_daily(text.as_bytes(), monitored, usize::MAX).map_err(|error| match error {
            SumError::Parse(error) => error,
            SumError::Spill(error) => panic!("{error}"),
        })
    }

    fn sum_daily(text: &[u8], monitored: Monitored, budget: usize) -> Result<ReportSums, SumError> {
        let budget = MemoryBudget {
            bytes: budget,
            temp_dir: std::env::temp_dir(),
        };
        ReportSums::sum_csv(
            text,
            &LAYOUT,
            ReportIdentity::default(),
            monitored,
            Grain::Daily(budget),
        )
    }

    /// A report's daily sums, owned and sorted, to compare; partial sums of one key (written
    /// in different generations of usages) are added up.
    type DailyRow = (String, Option<NaiveDate>, String, Sums);

    ///
    /// The rollups are checked against them on the way: each usage's month is the sum of its
    /// daily sums (per account and usage, over its ids), and the service days of an account
    /// and day add up to its daily sums.
    fn daily_rows(sums: &ReportSums) -> Vec<DailyRow> {
        let mut names = std::collections::HashMap::new();
        let mut months: BTreeMap<(String, String), Sums> = BTreeMap::new();
        let mut usages = sums.usages();
        while let Some(usage) = usages.next() {
            let usage = usage.unwrap();
            let (id, name) = (usage.id, format!("{:?}", usage.usage));
            let account = usage.account.to_string();
            assert!(
                names.insert(id, (account.clone(), name.clone())).is_none(),
                "usage {id} twice"
            );
            months
                .entry((account, name))
                .or_default()
                .add(&usage.month)
                .unwrap();
        }
        let mut rows: BTreeMap<(String, Option<NaiveDate>, String), Sums> = BTreeMap::new();
        let mut summed_months: BTreeMap<(String, String), Sums> = BTreeMap::new();
        let mut days: BTreeMap<(String, Option<NaiveDate>), Sums> = BTreeMap::new();
        for cost in sums.daily_costs().unwrap() {
            let cost = cost.unwrap();
            let (account, name) = &names[&cost.usage];
            assert_eq!(
                account,
                &cost.account.to_string(),
                "a usage is one account's"
            );
            let key = (account.clone(), cost.day, name.clone());
            rows.entry(key).or_default().add(&cost.sums).unwrap();
            let month = summed_months.entry((account.clone(), name.clone()));
            month.or_default().add(&cost.sums).unwrap();
            let day = days.entry((account.clone(), cost.day));
            day.or_default().add(&cost.sums).unwrap();
        }
        fn line_items<K: Clone>(sums: &BTreeMap<K, Sums>) -> Vec<(K, Decimal, Decimal, u64)> {
            let sums = sums.iter();
            sums.map(|(k, s)| {
                (
                    k.clone(),
                    s.unblended_cost.normalize(),
                    s.blended_cost.normalize(),
                    s.line_items,
                )
            })
            .collect()
        }
        months.retain(|_, month| month.line_items > 0);
        assert_eq!(line_items(&months), line_items(&summed_months));
        let mut service_days: BTreeMap<(String, Option<NaiveDate>), Sums> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for day in sums.service_days().unwrap() {
            let day = day.unwrap();
            assert!(
                seen.insert((day.account.clone(), day.day, day.usage)),
                "a service day twice"
            );
            let entry = service_days.entry((day.account.to_string(), day.day));
            entry.or_default().add(&day.sums).unwrap();
        }
        assert_eq!(line_items(&service_days), line_items(&days));
        rows.into_iter()
            .map(|((account, day, usage), sums)| (account, day, usage, sums))
            .collect()
    }

    const HEADER: &str = "InvoiceID,PayerAccountId,LinkedAccountId,RecordType,ProductName,UsageType,Operation,AvailabilityZone,UsageStartDate,UsageQuantity,BlendedCost,UnBlendedCost\n";

    #[test]
    fn the_costliest_groups_are_kept_by_name_and_the_others_summed() {
        // Ranked in memory, then from runs (Groups::AT_ONCE is 2,048 here), merged early too.
        for resources in [1500, 5000] {
            costliest_groups_of(resources);
        }
    }

    /// Account 1: `resources` resources (two usages each, costs with ties) and 1,100 tag
    /// values; account 2: 3 resources, no others' row.
    fn costliest_groups_of(resources: i64) {
        let mut text = String::from(
            "InvoiceID,PayerAccountId,LinkedAccountId,RecordType,ProductName,UsageType,Operation,AvailabilityZone,UsageStartDate,UsageQuantity,BlendedCost,UnBlendedCost,ResourceId,user:team\n",
        );
        let mut expected: BTreeMap<(String, String), Decimal> = BTreeMap::new();
        for (account, resources) in [("1", resources), ("2", 3)] {
            for n in 0..resources {
                for (usage, cost) in [("Box", n * 37 % 101), ("Disk", n % 3)] {
                    text.push_str(&format!(
                        "1,9,{account},LineItem,EC2,{usage},Run,,2017-01-01 00:00:00,1,{cost},{cost},i-{n:04},t{:04}\n",
                        n % 1100
                    ));
                    *expected
                        .entry((account.to_owned(), format!("i-{n:04}")))
                        .or_default() += Decimal::from(cost);
                }
            }
        }
        let month = month_of(&text, Monitored::All).unwrap();
        let mut ranked: Vec<((String, String), Decimal)> = expected.into_iter().collect();
        ranked.sort_by(|a, b| (&a.0.0, b.1, &a.0.1).cmp(&(&b.0.0, a.1, &b.0.1)));
        let mut kept: Vec<(String, String, Decimal, u64)> = ranked
            .iter()
            .filter(|((account, _), _)| account == "2")
            .chain(
                ranked
                    .iter()
                    .filter(|((account, _), _)| account == "1")
                    .take(1000),
            )
            .map(|((account, resource), cost)| (account.clone(), resource.clone(), *cost, 1))
            .collect();
        let others: Vec<&Decimal> = ranked
            .iter()
            .filter(|((account, _), _)| account == "1")
            .skip(1000)
            .map(|(_, cost)| cost)
            .collect();
        let mut rows: Vec<(String, String, Decimal, u64)> = month
            .groups(GroupBy::Resource, None)
            .unwrap()
            .map(Result::unwrap)
            .map(|g| {
                let [resource, _] = g.key;
                (
                    g.account.to_string(),
                    resource,
                    g.sums.unblended_cost,
                    g.groups,
                )
            })
            .collect();
        let others_row = rows.iter().position(|row| row.1.is_empty()).unwrap();
        assert_eq!(
            rows.remove(others_row),
            (
                "1".to_owned(),
                String::new(),
                others.iter().copied().sum(),
                resources as u64 - 1000
            )
        );
        let by_rank = |a: &(String, String, Decimal, u64), b: &(String, String, Decimal, u64)| {
            (&a.0, b.2, &a.1).cmp(&(&b.0, a.2, &b.1))
        };
        rows.sort_by(by_rank);
        kept.sort_by(by_rank);
        assert_eq!(rows, kept);
        // Tags: ranked within the key, 1,100 values of which 100 are the others.
        let others: Vec<u64> = month
            .groups(GroupBy::Tag, None)
            .unwrap()
            .map(Result::unwrap)
            .filter(|g| g.key[1].is_empty())
            .map(|g| g.groups)
            .collect();
        assert_eq!(others, [100]);
    }

    #[test]
    fn resources_and_tags_are_summed_per_account_across_usages() {
        let text = "InvoiceID,PayerAccountId,LinkedAccountId,RecordType,ProductName,UsageType,Operation,AvailabilityZone,UsageStartDate,UsageQuantity,BlendedCost,UnBlendedCost,ResourceId,user:team\n\
             1,9,1,LineItem,EC2,Box,Run,,2017-01-01 00:00:00,1,1,1.5,i-1,web\n\
             1,9,1,LineItem,EC2,Disk,Run,,2017-01-02 00:00:00,2,2,2.25,i-1,db\n\
             1,9,1,LineItem,S3,Put,Put,,2017-01-02 00:00:00,1,4,4,,web\n\
             1,9,2,LineItem,EC2,Box,Run,,2017-01-02 00:00:00,1,8,8,i-1,web\n";
        let month = month_of(text, Monitored::All).unwrap();
        let groups = |by, only| {
            let mut rows: Vec<(String, String, String, Decimal, u64)> = month
                .groups(by, only)
                .unwrap()
                .map(Result::unwrap)
                .map(|g| {
                    let [a, b] = g.key;
                    (
                        g.account.to_string(),
                        a,
                        b,
                        g.sums.unblended_cost,
                        g.sums.line_items,
                    )
                })
                .collect();
            rows.sort();
            rows
        };
        let row = |account: &str, a: &str, b: &str, cost: i64, scale, items| {
            (
                account.into(),
                a.into(),
                b.into(),
                Decimal::new(cost, scale),
                items,
            )
        };
        assert_eq!(
            groups(GroupBy::Resource, None),
            [
                row("1", "i-1", "EC2", 375, 2, 2),
                row("2", "i-1", "EC2", 8, 0, 1)
            ]
        );
        assert_eq!(
            groups(GroupBy::Tag, None),
            [
                row("1", "user:team", "db", 225, 2, 1),
                row("1", "user:team", "web", 55, 1, 2),
                row("2", "user:team", "web", 8, 0, 1)
            ]
        );
        let only = Monitored::parse_any_length("2").unwrap();
        assert_eq!(
            groups(GroupBy::Tag, Some(&only)),
            [row("2", "user:team", "web", 8, 0, 1)]
        );
    }

    #[test]
    fn an_account_id_shorter_than_the_payers_is_refused_with_its_line_and_column() {
        let text = format!(
            "{HEADER}\
             1,013328811177,013328811177,LineItem,EC2,Box,Run,,2017-01-01 00:00:00,1,1,1\n\
             1,013328811177,13328811177,LineItem,EC2,Box,Run,,2017-01-01 00:00:00,1,1,1\n"
        );
        let error = month_of(&text, Monitored::All).unwrap_err().to_string();
        assert_eq!(
            error,
            "line 3, column LinkedAccountId: account ID \"13328811177\" has 11 digits, the payer 013328811177 has 12: a leading zero lost?"
        );
    }

    #[test]
    fn footer_reconciles_monitored_accounts_only() {
        let text = format!(
            "{HEADER}\
             1,9,1,LineItem,EC2,Box,Run,,2017-01-01 00:00:00,1,0.50,0.40\n\
             1,9,1,LineItem,,,,,,0,0.10,0.10\n\
             1,9,2,LineItem,EC2,Box,Run,,2017-01-02 00:00:00,1,7,7\n\
             1,9,,Rounding,,,,,,,0.01,0.02\n\
             1,9,,InvoiceTotal,,,,,,,7.61,7.52\n\
             ,9,1,AccountTotal,,,,,,,0.60,0.50\n\
             ,9,2,AccountTotal,,,,,,,7,7\n\
             ,9,3,AccountTotal,,,,,,,1,1\n\
             ,9,,StatementTotal,,,,,,,7.61,7.52\n"
        );
        let month = month_of(&text, Monitored::parse_any_length("1,3").unwrap()).unwrap();
        assert_eq!(month.payer().unwrap().as_str(), "9");
        assert_eq!(month.invoice_status(), InvoiceStatus::Final);
        let accounts = month.accounts();
        let ids: Vec<_> = accounts.iter().map(|a| a.account.as_str()).collect();
        assert_eq!(
            ids,
            ["1", "3"],
            "account 2 is not monitored; 3 has a total but no line items"
        );
        assert_eq!(accounts[0].sums.unblended_cost, Decimal::new(50, 2));
        assert_eq!(accounts[0].reconciled(), Some(true));
        assert_eq!(accounts[1].reconciled(), Some(false));
        assert_eq!(
            month.rows(),
            RowCounts {
                line_items: 3,
                kept: 2,
                dropped_unmonitored: 1,
                footer: 6,
                outside_period: 0,
                amortized_as_billed: 0,
            }
        );
        assert_eq!(month.footer().invoice_totals.len(), 1);
        assert!(
            month
                .footer()
                .account_totals
                .keys()
                .all(|a| a.as_str() != "2")
        );
        let daily = daily_rows(&month);
        assert_eq!(daily.len(), 2);
        assert_eq!(daily[0].1, None, "undated tax row first");
        assert_eq!(daily[1].1, NaiveDate::from_ymd_opt(2017, 1, 1));
    }

    #[test]
    fn busiest_month_names_an_unnamed_report() {
        let text = format!(
            "{HEADER}\
             1,9,1,LineItem,Domain,Renew,,,2016-12-15 00:00:00,1,12,12\n\
             1,9,1,LineItem,EC2,Box,Run,,2017-01-01 00:00:00,1,1,1\n\
             1,9,1,LineItem,EC2,Box,Run,,2017-01-02 00:00:00,1,1,1\n"
        );
        let month = month_of(&text, Monitored::All).unwrap();
        assert_eq!(month.busiest_period(), "2017-01".parse().ok());
    }

    #[test]
    fn a_payer_change_mid_file_is_an_error() {
        let text = format!("{HEADER}1,9,1,LineItem,EC2,,,,,1,1,1\n1,8,1,LineItem,EC2,,,,,1,1,1\n");
        let error = month_of(&text, Monitored::All).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 3, column PayerAccountId: payer \"8\" differs from the report's payer 9"
        );
    }

    #[test]
    fn a_linked_account_that_is_not_an_id_is_an_error() {
        let text = format!("{HEADER}1,9,acct-1,LineItem,EC2,,,,,1,1,1\n");
        let error = month_of(&text, Monitored::All).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2, column LinkedAccountId: \"acct-1\" is not an AWS account ID (digits only)"
        );
    }

    #[test]
    fn a_monthly_sum_that_overflows_names_the_account() {
        // Each day's sum fits 96 bits (at most about 7.9e28); the month's does not.
        let mut text = HEADER.to_owned();
        for day in 1..=8 {
            text.push_str(&format!(
                "1,9,1,LineItem,EC2,Box,Run,,2017-01-{day:02} 00:00:00,1,9999999999999999999999999999,1\n"
            ));
        }
        let error = month_of(&text, Monitored::All).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 10: the monthly sums of account 1 need more than 28 significant digits, which cannot be kept exactly"
        );
    }

    proptest! {
        /// Where the sum fits 96 bits at the larger scale (so rust_decimal adds exactly), it is
        /// rust_decimal's sum, at the larger scale of the two.
        #[test]
        fn an_exact_sum_is_the_sum_at_the_larger_scale(
            a in -(1i64 << 40)..(1i64 << 40), a_scale in 0..=12u32,
            b in -(1i64 << 40)..(1i64 << 40), b_scale in 0..=12u32,
        ) {
            let (a, b) = (Decimal::new(a, a_scale), Decimal::new(b, b_scale));
            let sum = exact_sum(a, b).unwrap();
            prop_assert_eq!(sum, a.checked_add(b).unwrap());
            prop_assert_eq!(sum.scale(), a_scale.max(b_scale));
        }
    }

    #[test]
    fn a_sum_keeps_the_larger_scale_even_of_a_zero() {
        let sum = exact_sum(Decimal::new(0, 4), Decimal::new(5, 1)).unwrap();
        assert_eq!((sum.to_string(), sum.scale()), ("0.5000".to_owned(), 4));
        let huge = Decimal::from_i128_with_scale(10i128.pow(27), 0);
        assert_eq!(exact_sum(huge, Decimal::new(1, 2)), None);
    }

    #[test]
    fn a_sum_that_would_be_rounded_is_refused() {
        let text = format!(
            "{HEADER}1,9,1,LineItem,EC2,Box,Run,,2017-01-01 00:00:00,1,10000000000000000000000000,0\n\
             1,9,1,LineItem,EC2,Box,Run,,2017-01-01 00:00:00,1,0.0000000000000000000000001,0\n"
        );
        let error = month_of(&text, Monitored::All).unwrap_err();
        // Found where the day's sums meet: at its second row, or (the daily grain sums a day's
        // rows after the first apart) once the part is read.
        assert!(error.line >= 3, "{error}");
        assert!(error.message.contains("28 significant digits"), "{error}");
    }

    #[test]
    fn line_items_outside_the_period_are_kept_and_counted() {
        let text = format!(
            "{HEADER}\
             1,9,1,LineItem,EC2,Box,Run,,2017-01-31 23:00:00,1,1,1\n\
             1,9,1,LineItem,EC2,Box,Run,,2017-02-01 00:00:00,1,2,2\n\
             1,9,1,LineItem,Tax,,,,,1,3,3\n\
             1,9,1,LineItem,EC2,Box,Run,,2016-12-31 00:00:00,1,4,4\n"
        );
        for grain in [Grain::Accounts, Grain::Daily(MemoryBudget::unlimited())] {
            let identity = ReportIdentity {
                payer: None,
                period: "2017-01".parse().ok(),
                marketplace: false,
            };
            let sums =
                ReportSums::sum_csv(text.as_bytes(), &LAYOUT, identity, Monitored::All, grain)
                    .unwrap();
            assert_eq!(sums.rows().outside_period, 2);
            assert_eq!(sums.first_outside_period(), Some(3));
            assert_eq!(sums.accounts()[0].sums.unblended_cost, Decimal::from(10));
        }
    }

    #[test]
    fn the_accounts_grain_keeps_no_daily_sums() {
        let mut text = HEADER.to_owned();
        for day in 1..=28 {
            for resource in 0..50 {
                text.push_str(&format!(
                    "1,9,1,LineItem,EC2,Box-{resource},Run,,2017-02-{day:02} 00:00:00,1,0.01,0.01\n"
                ));
            }
        }
        let sum = |grain| {
            ReportSums::sum_csv(
                text.as_bytes(),
                &LAYOUT,
                ReportIdentity::default(),
                Monitored::All,
                grain,
            )
            .unwrap()
        };
        let (accounts, daily) = (
            sum(Grain::Accounts),
            sum(Grain::Daily(MemoryBudget::unlimited())),
        );
        assert_eq!(daily_rows(&accounts).len(), 0);
        assert_eq!(daily_rows(&daily).len(), 28 * 50);
        let without_categories = |sums: &ReportSums| -> Vec<AccountMonth> {
            let mut months = sums.accounts();
            months.iter_mut().for_each(|month| month.by_category = None);
            months
        };
        assert_eq!(without_categories(&accounts), without_categories(&daily));
        assert!(daily.accounts().iter().all(|month| {
            month.by_category.unwrap().iter().sum::<Decimal>() == month.sums.unblended_cost
        }));
        assert_eq!(accounts.busiest_period(), "2017-02".parse().ok());
    }
}
