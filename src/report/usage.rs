//! A distinct usage (what a line item was for, beyond its account and day), as the daily grain
//! keeps it: decoded from the key [`Row::usage_key`] writes, with the dimensions derived from
//! it (`dimensions`), and the list prices learnt from a report's usages.
//!
//! [`Row::usage_key`]: super::rows::Row::usage_key

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::dimensions::{ChargeCategory, PurchaseOption, focus_unit, region, unit_of_usage_type};
use super::rows::{key_field_length, rate};

/// What a line item was for: the daily grain beyond account and day. Borrowed from a usage key
/// (see [`Row::usage_key`](super::rows::Row::usage_key)), the compact form a month keeps of each distinct usage.
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
    /// CUR's `lineItem/LineItemType`, as written; empty for a DBR.
    pub line_item_type: &'a str,
    /// CUR's `product/region`; empty for a DBR, whose region is derived (see `dimensions`).
    pub region: &'a str,
    /// The public on-demand price of a unit as written (see [`Fields::list_rate`](super::rows::Fields::list_rate)), or empty.
    pub list_rate: &'a str,
    /// CUR's `pricing/unit` as written; empty for a DBR (see `dimensions`).
    pub pricing_unit: &'a str,
    /// Non-empty tag values by tag name (`user:Name`), in file order.
    pub tags: Vec<(&'a str, &'a str)>,
}

impl<'a> Usage<'a> {
    /// Reads a usage key written by [`Row::usage_key`](super::rows::Row::usage_key) for a row that passed
    /// [`Row::check_usage`](super::rows::Row::check_usage).
    pub fn decode(key: &'a [u8]) -> Usage<'a> {
        let ([category, reserved], fields) = key.split_first_chunk::<2>().expect("a usage key");
        let fields = std::str::from_utf8(fields).expect("usage keys are checked text");
        let mut fields = UsageFields(fields);
        let mut next = || fields.next().expect("a usage key has its eleven fields");
        let (invoice_id, product, usage_type, operation, availability_zone, resource_id) =
            (next(), next(), next(), next(), next(), next());
        let (item_description, line_item_type, region) = (next(), next(), next());
        let (list_rate, pricing_unit) = (next(), next());
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
            line_item_type,
            region,
            list_rate,
            pricing_unit,
            tags,
        }
    }

    /// The charge category of a usage key, without decoding the rest.
    pub fn category_of(key: &[u8]) -> ChargeCategory {
        ChargeCategory::from_index(key[0]).expect("a category index")
    }
}

/// The length-prefixed fields of a usage key, as text (checked once for the whole key).
struct UsageFields<'a>(&'a str);

impl<'a> Iterator for UsageFields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (&length, _) = self.0.as_bytes().split_first_chunk::<3>()?;
        let length = key_field_length(length);
        let (field, rest) = self.0[3..].split_at(length);
        self.0 = rest;
        Some(field)
    }
}

impl Usage<'_> {
    /// The region the usage ran in: CUR's `product/region` when it has one, else derived; see
    /// [`region`].
    pub fn region(&self) -> String {
        if !self.region.is_empty() {
            return self.region.to_owned();
        }
        region(self.product, self.usage_type, self.availability_zone)
    }

    pub fn purchase_option(&self) -> PurchaseOption {
        PurchaseOption::of(self.usage_type.as_bytes(), self.reserved_instance)
    }

    /// The unit its quantity is priced in, as FOCUS writes units (`Hours`, `GB-Months`,
    /// `Requests`): CUR's `pricing/unit` rewritten ([`focus_unit`]), else derived from the
    /// usage type ([`unit_of_usage_type`]).
    pub fn pricing_unit(&self) -> String {
        match focus_unit(self.pricing_unit) {
            Some(unit) => unit,
            None => unit_of_usage_type(self.usage_type).to_owned(),
        }
    }
}

/// The public on-demand price of a unit of each usage of a report (FOCUS's ListUnitPrice): a
/// CUR's `pricing/publicOnDemandRate`; a DBR's `UnBlendedRate` on on-demand usage, and for its
/// other usage (reserved) the highest on-demand rate of the same product, usage type,
/// operation and region in the report. `None` where neither applies (spot, fees, tax,
/// credits, a usage type never run on demand that month).
#[derive(Debug, Default)]
pub struct ListPrices {
    on_demand: HashMap<(String, String, String, String), Decimal>,
}

impl ListPrices {
    /// At most this many (product, usage type, operation, region) are remembered, so that a
    /// hostile report cannot grow the table without bound; others get no derived price.
    pub const MAX_PEERS: usize = 20_000;

    /// Remembers a DBR usage's on-demand rate: every usage of a report passes here before
    /// [`ListPrices::of`] is asked.
    pub fn learn(&mut self, usage: &Usage<'_>) {
        let Some(rate) = rate(usage.list_rate) else {
            return;
        };
        if !usage.line_item_type.is_empty() {
            return;
        }
        let peer = ListPrices::peer(usage);
        if self.on_demand.len() >= ListPrices::MAX_PEERS && !self.on_demand.contains_key(&peer) {
            return;
        }
        let known = self.on_demand.entry(peer).or_insert(rate);
        *known = (*known).max(rate);
    }

    pub fn of(&self, usage: &Usage<'_>) -> Option<Decimal> {
        if let Some(rate) = rate(usage.list_rate) {
            return Some(rate);
        }
        let derived = usage.line_item_type.is_empty()
            && usage.charge_category == ChargeCategory::Usage
            && usage.purchase_option() == PurchaseOption::Reserved;
        derived
            .then(|| self.on_demand.get(&ListPrices::peer(usage)).copied())
            .flatten()
    }

    fn peer(usage: &Usage<'_>) -> (String, String, String, String) {
        (
            usage.product.to_owned(),
            usage.usage_type.to_owned(),
            usage.operation.to_owned(),
            usage.region(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::rows::field_length;

    #[test]
    fn a_field_length_is_text_without_nul_and_reads_back() {
        for length in (0..1000).chain([16_128, 16_129, 65_535, 65_536, 127 * 127 * 127 - 1]) {
            let prefix = field_length(length);
            assert!(
                prefix.iter().all(|&byte| (1..0x80).contains(&byte)),
                "{length}"
            );
            let field = "é".repeat(length / 2) + &"x".repeat(length % 2);
            let key = [&prefix[..], field.as_bytes(), &field_length(0)].concat();
            let key = std::str::from_utf8(&key).unwrap();
            assert_eq!(UsageFields(key).collect::<Vec<_>>(), [field.as_str(), ""]);
        }
    }

    fn usage<'a>(usage_type: &'a str, reserved: bool, rate: &'a str) -> Usage<'a> {
        Usage {
            charge_category: ChargeCategory::Usage,
            reserved_instance: reserved,
            invoice_id: "",
            product: "Amazon Elastic Compute Cloud",
            usage_type,
            operation: "RunInstances",
            availability_zone: "us-east-1a",
            resource_id: "",
            item_description: "",
            line_item_type: "",
            region: "",
            list_rate: rate,
            pricing_unit: "",
            tags: Vec::new(),
        }
    }

    #[test]
    fn reserved_usage_takes_its_on_demand_peers_list_price() {
        let mut prices = ListPrices::default();
        let tiers = [
            usage("BoxUsage:m4.large", false, "0.10"),
            usage("BoxUsage:m4.large", false, "0.12"),
        ];
        for on_demand in &tiers {
            prices.learn(on_demand);
        }
        let reserved = usage("BoxUsage:m4.large", true, "");
        assert_eq!(prices.of(&tiers[0]), Some(Decimal::new(10, 2)));
        assert_eq!(
            prices.of(&reserved),
            Some(Decimal::new(12, 2)),
            "the highest"
        );
        assert_eq!(prices.of(&usage("BoxUsage:c4.large", true, "")), None);
        assert_eq!(prices.of(&usage("SpotUsage:m4.large", false, "")), None);
        assert_eq!(prices.of(&usage("BoxUsage:m4.large", false, "None")), None);
    }
}
