//! What dashboards see: the monthly view read back, and what it must hold for given reports.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use sqlx::PgPool;

use super::{Report, decimal};

/// (payer, account, period) → (unblended, blended, usage, line items, invoice status), from the view.
pub type Monthly = BTreeMap<(String, String, String), (Decimal, Decimal, Decimal, i64, String)>;

#[derive(sqlx::FromRow)]
struct MonthlyRow {
    payer_account_id: String,
    linked_account_id: String,
    period: String,
    unblended_cost: Decimal,
    blended_cost: Decimal,
    usage_quantity: Decimal,
    line_items: i64,
    invoice_status: String,
}

pub async fn monthly_costs(pool: &PgPool) -> Monthly {
    let rows: Vec<MonthlyRow> = sqlx::query_as(
        "SELECT payer_account_id, linked_account_id, to_char(billing_period, 'YYYY-MM') AS period,
                unblended_cost, blended_cost, usage_quantity, line_items, invoice_status
         FROM account_monthly_costs",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| {
            let key = (r.payer_account_id, r.linked_account_id, r.period);
            (
                key,
                (
                    r.unblended_cost,
                    r.blended_cost,
                    r.usage_quantity,
                    r.line_items,
                    r.invoice_status,
                ),
            )
        })
        .collect()
}

/// What the view must hold for these reports, from the generator's own totals.
pub fn expected_monthly(reports: &[&Report]) -> Monthly {
    let mut monthly = Monthly::new();
    for report in reports {
        let r = &report.expected["report"];
        for account in report.expected["accounts"].as_array().unwrap() {
            let key = (
                r["payer_account_id"].as_str().unwrap().to_owned(),
                account["linked_account_id"].as_str().unwrap().to_owned(),
                r["billing_period"].as_str().unwrap().to_owned(),
            );
            let value = (
                decimal(&account["unblended_cost"]).unwrap(),
                decimal(&account["blended_cost"]).unwrap(),
                decimal(&account["usage_quantity"]).unwrap(),
                account["line_items"].as_i64().unwrap(),
                r["invoice_status"].as_str().unwrap().to_owned(),
            );
            monthly.insert(key, value);
        }
    }
    monthly
}

/// The view's values equal the expected ones as decimals (NUMERIC keeps the file's scale).
pub fn assert_monthly(actual: &Monthly, expected: &Monthly) {
    let keys: Vec<_> = actual.keys().collect();
    assert_eq!(keys, expected.keys().collect::<Vec<_>>());
    for (key, value) in expected {
        assert_eq!(&actual[key], value, "{key:?}");
    }
}
