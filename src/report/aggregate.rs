//! One report's rows folded into sums: `LineItem` rows of monitored accounts are summed per
//! (account, usage day, product); every other line item is counted as dropped; the footer is kept
//! to reconcile each account's sum with its `AccountTotal`. Plain computation, no I/O beyond the
//! `Read` it is handed, so it can be tested and benchmarked alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::key::{AccountId, Period};
use super::rows::{ParseError, RecordType, Row, RowReader};

/// Which linked accounts' costs are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Monitored {
    All,
    Only(BTreeSet<AccountId>),
}

impl Monitored {
    /// `*` for every account, else account IDs separated by commas.
    pub fn parse(text: &str) -> Result<Monitored, String> {
        if text.trim() == "*" {
            return Ok(Monitored::All);
        }
        let ids = text
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::parse)
            .collect::<Result<BTreeSet<AccountId>, _>>()?;
        if ids.is_empty() {
            return Err("no account IDs given (use * for every account)".into());
        }
        Ok(Monitored::Only(ids))
    }

    pub fn contains(&self, account: &AccountId) -> bool {
        match self {
            Monitored::All => true,
            Monitored::Only(ids) => ids.contains(account),
        }
    }
}

/// Summed line items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    pub unblended_cost: Decimal,
    pub blended_cost: Decimal,
    pub usage_quantity: Decimal,
    pub line_items: u64,
}

impl Sums {
    /// Fails only when a sum leaves rust_decimal's 96-bit range, far beyond any real bill.
    fn add(&mut self, other: &Sums) -> Option<()> {
        self.unblended_cost = self.unblended_cost.checked_add(other.unblended_cost)?;
        self.blended_cost = self.blended_cost.checked_add(other.blended_cost)?;
        self.usage_quantity = self.usage_quantity.checked_add(other.usage_quantity)?;
        self.line_items += other.line_items;
        Some(())
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

/// What happened to the data rows of a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub line_items: u64,
    pub kept: u64,
    pub dropped_unmonitored: u64,
    pub footer: u64,
}

/// The grain of the daily sums; account and product are indexes into [`Month`]'s tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct DailyKey {
    account: u32,
    day: Option<NaiveDate>,
    product: u32,
}

/// One account's month: line-item sums and the reconciliation against its `AccountTotal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountMonth {
    pub account: AccountId,
    pub sums: Sums,
    pub account_total: Option<Amounts>,
}

impl AccountMonth {
    /// `None` when the report has no `AccountTotal` for the account (files without a footer).
    pub fn reconciled(&self) -> Option<bool> {
        self.account_total.map(|total| {
            total.unblended_cost == self.sums.unblended_cost
                && total.blended_cost == self.sums.blended_cost
        })
    }
}

/// One day's sums for one account and product. `day` is `None` for undated rows (fees, tax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyCost<'a> {
    pub account: &'a AccountId,
    pub day: Option<NaiveDate>,
    pub product: &'a str,
    pub sums: Sums,
}

/// The sums of one report, built row by row.
#[derive(Debug)]
pub struct Month {
    payer: Option<AccountId>,
    monitored: Monitored,
    accounts: Vec<AccountId>,
    /// Every linked account seen, to its index in `accounts`, or `None` when not monitored.
    account_slots: HashMap<Vec<u8>, Option<u32>>,
    products: Vec<String>,
    product_slots: HashMap<String, u32>,
    daily: HashMap<DailyKey, Sums>,
    footer: Footer,
    rows: RowCounts,
    estimated: bool,
    has_resources: bool,
}

impl Month {
    /// Reads a whole report. With `payer` given, every row must carry it; without, the first
    /// row's payer is taken and every later row must match.
    pub fn read(
        input: impl Read,
        payer: Option<AccountId>,
        monitored: Monitored,
    ) -> Result<Month, ParseError> {
        let mut rows = RowReader::new(input)?;
        let mut month = Month::new(payer, monitored);
        month.has_resources = rows.columns().has_resources();
        while let Some(row) = rows.next_row()? {
            month.add(&row)?;
        }
        Ok(month)
    }

    pub fn new(payer: Option<AccountId>, monitored: Monitored) -> Month {
        Month {
            payer,
            monitored,
            accounts: Vec::new(),
            account_slots: HashMap::new(),
            products: Vec::new(),
            product_slots: HashMap::new(),
            daily: HashMap::new(),
            footer: Footer::default(),
            rows: RowCounts::default(),
            estimated: false,
            has_resources: false,
        }
    }

    pub fn add(&mut self, row: &Row<'_>) -> Result<(), ParseError> {
        let record_type = row.record_type()?;
        self.check_payer(row)?;
        self.estimated |= row.invoice_id() == b"Estimated";
        let amounts = |row: &Row<'_>| -> Result<Amounts, ParseError> {
            Ok(Amounts {
                unblended_cost: row.unblended_cost()?,
                blended_cost: row.blended_cost()?,
            })
        };
        match record_type {
            RecordType::LineItem => return self.add_line_item(row),
            RecordType::Rounding => self.footer.rounding = Some(amounts(row)?),
            RecordType::InvoiceTotal => {
                let invoice = String::from_utf8_lossy(row.invoice_id()).into_owned();
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

    fn add_line_item(&mut self, row: &Row<'_>) -> Result<(), ParseError> {
        self.rows.line_items += 1;
        let Some(account) = self.account_slot(row)? else {
            self.rows.dropped_unmonitored += 1;
            return Ok(());
        };
        self.rows.kept += 1;
        let product = row.product()?;
        let product = match self.product_slots.get(product) {
            Some(&slot) => slot,
            None => {
                let slot = index(self.products.len());
                self.products.push(product.to_owned());
                self.product_slots.insert(product.to_owned(), slot);
                slot
            }
        };
        let key = DailyKey {
            account,
            day: row.usage_day()?,
            product,
        };
        let sums = Sums {
            unblended_cost: row.unblended_cost()?,
            blended_cost: row.blended_cost()?,
            usage_quantity: row.usage_quantity()?,
            line_items: 1,
        };
        self.daily
            .entry(key)
            .or_default()
            .add(&sums)
            .ok_or_else(|| {
                row.linked_account_error("the account's sums overflow 96-bit decimals".into())
            })
    }

    /// The row's linked account's index, or `None` when it is not monitored. An empty
    /// `LinkedAccountId` on a line item means the payer (no consolidated billing).
    fn account_slot(&mut self, row: &Row<'_>) -> Result<Option<u32>, ParseError> {
        let raw = row.linked_account();
        if let Some(&slot) = self.account_slots.get(raw) {
            return Ok(slot);
        }
        let account: AccountId = if raw.is_empty() {
            self.payer
                .clone()
                .expect("the payer is known once a row was read")
        } else {
            std::str::from_utf8(raw)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(str::parse)
                .map_err(|message| row.linked_account_error(message))?
        };
        let slot = self.monitored.contains(&account).then(|| {
            self.accounts.push(account);
            index(self.accounts.len() - 1)
        });
        self.account_slots.insert(raw.to_vec(), slot);
        Ok(slot)
    }

    fn check_payer(&mut self, row: &Row<'_>) -> Result<(), ParseError> {
        let raw = row.payer();
        match &self.payer {
            Some(payer) if payer.as_str().as_bytes() == raw => Ok(()),
            Some(payer) => Err(row.payer_error(format!(
                "payer {:?} differs from the report's payer {payer}",
                String::from_utf8_lossy(raw)
            ))),
            None => {
                let payer = std::str::from_utf8(raw)
                    .map_err(|_| "not UTF-8".to_owned())
                    .and_then(str::parse)
                    .map_err(|message| row.payer_error(message))?;
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

    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// `Estimated` while the month is open; the invoice number once AWS closed it.
    pub fn is_estimated(&self) -> bool {
        self.estimated
    }

    /// Whether the header had a `ResourceId` column (the with-resources-and-tags variant).
    pub fn has_resources(&self) -> bool {
        self.has_resources
    }

    /// The month most line items were used in: the billing period of a report whose file name
    /// does not say it.
    pub fn busiest_period(&self) -> Option<Period> {
        let mut items: BTreeMap<Period, u64> = BTreeMap::new();
        for (key, sums) in &self.daily {
            if let Some(day) = key.day {
                *items.entry(Period::of_day(day)).or_default() += sums.line_items;
            }
        }
        items
            .into_iter()
            .max_by_key(|&(period, count)| (count, std::cmp::Reverse(period)))
            .map(|(period, _)| period)
    }

    /// Daily sums, ordered by account, day (undated first) and product.
    pub fn daily_costs(&self) -> Vec<DailyCost<'_>> {
        let mut keys: Vec<_> = self.daily.iter().collect();
        keys.sort_by(|a, b| {
            let order = |k: &DailyKey| {
                (
                    &self.accounts[k.account as usize],
                    k.day,
                    &self.products[k.product as usize],
                )
            };
            order(a.0).cmp(&order(b.0))
        });
        keys.into_iter()
            .map(|(key, sums)| DailyCost {
                account: &self.accounts[key.account as usize],
                day: key.day,
                product: &self.products[key.product as usize],
                sums: *sums,
            })
            .collect()
    }

    /// Per monitored account, ordered by ID: its line items summed, and its `AccountTotal`. An
    /// account with a total but no line items is listed too (its costs were all dropped or zero).
    pub fn accounts(&self) -> Result<Vec<AccountMonth>, String> {
        let mut months: BTreeMap<&AccountId, Sums> = BTreeMap::new();
        for (key, sums) in &self.daily {
            months
                .entry(&self.accounts[key.account as usize])
                .or_default()
                .add(sums)
                .ok_or("an account's monthly sums overflow 96-bit decimals")?;
        }
        for account in self.footer.account_totals.keys() {
            months.entry(account).or_default();
        }
        Ok(months
            .into_iter()
            .map(|(account, sums)| AccountMonth {
                account: account.clone(),
                sums,
                account_total: self.footer.account_totals.get(account).copied(),
            })
            .collect())
    }
}

fn index(position: usize) -> u32 {
    u32::try_from(position).expect("fewer than 2^32 distinct accounts and products")
}
