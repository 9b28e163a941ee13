//! The dimensions derived at ingest (charge category, region, purchase option) and the views
//! built on them, on a report whose every line item's answer is known: a credit appears as a
//! credit, a tax row as tax, a tag's cost is the sum of its line items, and FOCUS says the same.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use sqlx::{PgPool, Row};

use crate::common::*;

const HEADER: &str = "InvoiceID,PayerAccountId,LinkedAccountId,RecordType,RecordId,ProductName,RateId,SubscriptionId,PricingPlanId,UsageType,Operation,AvailabilityZone,ReservedInstance,ItemDescription,UsageStartDate,UsageEndDate,UsageQuantity,BlendedRate,BlendedCost,UnBlendedRate,UnBlendedCost,ResourceId,user:team";
const EC2: &str = "Amazon Elastic Compute Cloud";
const ACCOUNT: &str = "111111111111";

/// One line item of account `ACCOUNT` (or `account`): the fields that matter here.
#[allow(clippy::too_many_arguments)]
fn line_item(
    account: &str,
    product: &str,
    usage_type: &str,
    zone: &str,
    reserved: &str,
    description: &str,
    (start, end): (&str, &str),
    quantity: &str,
    cost: &str,
    resource: &str,
    team: &str,
) -> String {
    format!(
        "\"123\",\"123456789012\",\"{account}\",\"LineItem\",\"1\",\"{product}\",\"1\",\"1\",\"1\",\"{usage_type}\",\"Run\",\"{zone}\",\"{reserved}\",\"{description}\",\"{start}\",\"{end}\",\"{quantity}\",\"\",\"{cost}\",\"\",\"{cost}\",\"{resource}\",\"{team}\""
    )
}

const HOUR: (&str, &str) = ("2017-03-01 10:00:00", "2017-03-01 11:00:00");
const MONTH: (&str, &str) = ("2017-03-01 00:00:00", "2017-03-31 23:59:59");
const UNDATED: (&str, &str) = ("", "");

fn report_csv() -> String {
    let a = ACCOUNT;
    let rows = [
        line_item(
            a,
            EC2,
            "USW2-BoxUsage:t2.micro",
            "us-west-2a",
            "N",
            "$0.0116 per On Demand Linux t2.micro Instance Hour",
            HOUR,
            "1",
            "0.0116",
            "i-1",
            "web<b>",
        ),
        line_item(
            a,
            EC2,
            "USW2-BoxUsage:t2.micro",
            "us-west-2a",
            "N",
            "$0.0116 per On Demand Linux t2.micro Instance Hour",
            ("2017-03-02 10:00:00", "2017-03-02 11:00:00"),
            "1",
            "0.0116",
            "i-1",
            "web<b>",
        ),
        line_item(
            a,
            EC2,
            "BoxUsage:m4.large",
            "us-east-1b",
            "Y",
            "USD 0.05 hourly fee per Linux/UNIX, m4.large reserved instance applied",
            HOUR,
            "1",
            "0.05",
            "i-2",
            "batch",
        ),
        line_item(
            a,
            EC2,
            "USW2-SpotUsage:c4.large",
            "us-west-2c",
            "N",
            "$0.03 per Spot Linux c4.large Instance Hour",
            HOUR,
            "1",
            "0.03",
            "i-3",
            "web<b>",
        ),
        line_item(
            a,
            EC2,
            "USW2-HeavyUsage:m4.large",
            "",
            "Y",
            "USD 0.05 hourly fee per Linux/UNIX, m4.large instance (744 hours purchased, 744 hours used)",
            MONTH,
            "744",
            "37.20",
            "",
            "",
        ),
        line_item(
            a,
            EC2,
            "",
            "",
            "N",
            "AWS Credits, promotional",
            UNDATED,
            "",
            "-5.00",
            "",
            "",
        ),
        line_item(
            a,
            "Amazon Simple Storage Service",
            "",
            "",
            "N",
            "Refund for the SLA breach of 2017-02",
            UNDATED,
            "",
            "-1.25",
            "",
            "",
        ),
        line_item(
            a,
            "",
            "",
            "",
            "N",
            "Tax of type VAT",
            MONTH,
            "",
            "2.10",
            "",
            "",
        ),
        line_item(
            a,
            "AWS Support (Business)",
            "",
            "",
            "N",
            "AWS Support (Business)",
            UNDATED,
            "",
            "100.00",
            "",
            "",
        ),
        line_item(
            a,
            "Amazon Route 53",
            "Route53-Domains",
            "",
            "N",
            "Renewal of example.com",
            ("2017-03-14 16:18:24", "2018-03-13 16:18:24"),
            "",
            "12.00",
            "",
            "",
        ),
        line_item(
            a,
            "Amazon CloudFront",
            "EU-DataTransfer-Out-Bytes",
            "",
            "N",
            "$0.085 per GB - first 10 TB / month data transfer out",
            HOUR,
            "10",
            "0.85",
            "",
            "",
        ),
        // Not monitored: dropped, and nowhere in the views.
        line_item(
            "222222222222",
            EC2,
            "BoxUsage:m4.large",
            "us-east-1a",
            "N",
            "$0.1 per On Demand Linux m4.large Instance Hour",
            HOUR,
            "1",
            "0.10",
            "i-9",
            "web<b>",
        ),
    ];
    let footer = [
        format!("\"\",\"123456789012\",\"{ACCOUNT}\",\"AccountTotal\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"Total for linked account# {ACCOUNT}\",\"\",\"\",\"\",\"\",\"146.0032\",\"\",\"146.0032\",\"\",\"\""),
        "\"\",\"123456789012\",\"222222222222\",\"AccountTotal\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"Total for linked account# 222222222222\",\"\",\"\",\"\",\"\",\"0.10\",\"\",\"0.10\",\"\",\"\"".to_owned(),
    ];
    let mut csv = format!("{HEADER}\r\n");
    for row in rows.iter().chain(footer.iter()) {
        csv.push_str(row);
        csv.push_str("\r\n");
    }
    csv
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// The report ingested by the binary from a directory, account 111111111111 named `prod`.
pub(crate) async fn ingested() -> (TestDatabase, PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir
        .path()
        .join("123456789012-aws-billing-detailed-line-items-with-resources-and-tags-2017-03.csv");
    std::fs::write(&csv, report_csv()).unwrap();
    zip_with("info-zip", &csv);
    std::fs::remove_file(&csv).unwrap();
    let db = TestDatabase::new();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("DBR_CONFIG", "/dev/null")
            .env("DBR_SOURCE", format!("dir:{}", dir.path().display()))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    };
    run(&["accounts", "add", ACCOUNT, "--name", "prod"]);
    let once = run(&["once"]);
    assert!(once.contains("1 ingested, 0 failed"), "{once}");
    assert!(
        once.contains("totals match the report's AccountTotal rows"),
        "{once}"
    );
    let pool = PgPool::connect(&db.url).await.unwrap();
    (db, pool)
}

/// A query's rows of a name and an amount.
async fn pairs(pool: &PgPool, sql: &'static str) -> Vec<(String, Decimal)> {
    let rows = sqlx::query(sql).fetch_all(pool).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_charge_appears_under_its_category_region_and_purchase_option() {
    let (db, pool) = ingested().await;

    // The month, split by charge category, with the account's name.
    let month = sqlx::query(
        "SELECT account_name, unblended_cost, usage_cost, fee_cost, tax_cost, credit_cost,
                refund_cost, ri_fee_cost, support_cost, marketplace_cost, amortized_cost
         FROM account_monthly_costs",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        month.get::<Option<String>, _>("account_name").as_deref(),
        Some("prod")
    );
    let category = |column: &str| month.get::<Decimal, _>(column);
    assert_eq!(category("unblended_cost"), dec("146.0032"));
    assert_eq!(category("usage_cost"), dec("0.9532"));
    assert_eq!(category("ri_fee_cost"), dec("37.20"));
    assert_eq!(category("credit_cost"), dec("-5.00"));
    assert_eq!(category("refund_cost"), dec("-1.25"));
    assert_eq!(category("tax_cost"), dec("2.10"));
    assert_eq!(category("support_cost"), dec("100.00"));
    assert_eq!(category("fee_cost"), dec("12.00"));
    assert_eq!(category("marketplace_cost"), Decimal::ZERO);
    // A DBR carries no amortization, and this month bought no reservation upfront.
    assert_eq!(category("amortized_cost"), dec("146.0032"));

    // Per day and service: each usage's region, category and purchase option.
    let rows = sqlx::query(
        "SELECT usage_date::text, product_name, region, charge_category, purchase_option,
                unblended_cost
         FROM daily_costs_by_service WHERE linked_account_id = $1",
    )
    .bind(ACCOUNT)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut by_service: Vec<(String, String, String, String, String, Decimal)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    by_service.sort();
    let row = |day: &str, product: &str, region: &str, category: &str, option: &str, cost: &str| {
        (
            day.to_owned(),
            product.to_owned(),
            region.to_owned(),
            category.to_owned(),
            option.to_owned(),
            dec(cost),
        )
    };
    assert_eq!(
        by_service,
        [
            row("2017-03-01", "", "", "tax", "on_demand", "2.10"),
            row(
                "2017-03-01",
                "AWS Support (Business)",
                "",
                "support",
                "on_demand",
                "100.00"
            ),
            row(
                "2017-03-01",
                "Amazon CloudFront",
                "",
                "usage",
                "on_demand",
                "0.85"
            ),
            row("2017-03-01", EC2, "", "credit", "on_demand", "-5.00"),
            row("2017-03-01", EC2, "us-east-1", "usage", "reserved", "0.05"),
            row(
                "2017-03-01",
                EC2,
                "us-west-2",
                "ri_fee",
                "reserved",
                "37.20"
            ),
            row(
                "2017-03-01",
                EC2,
                "us-west-2",
                "usage",
                "on_demand",
                "0.0116"
            ),
            row("2017-03-01", EC2, "us-west-2", "usage", "spot", "0.03"),
            row(
                "2017-03-01",
                "Amazon Simple Storage Service",
                "",
                "refund",
                "on_demand",
                "-1.25"
            ),
            row(
                "2017-03-02",
                EC2,
                "us-west-2",
                "usage",
                "on_demand",
                "0.0116"
            ),
            row(
                "2017-03-14",
                "Amazon Route 53",
                "",
                "fee",
                "on_demand",
                "12.00"
            ),
        ]
    );

    // A tag's cost is the sum of the line items carrying it (markup kept as data).
    let tags = pairs(
        &pool,
        "SELECT tag_value, unblended_cost FROM cost_by_tag
         WHERE tag_key = 'user:team' AND billing_period = '2017-03-01'",
    )
    .await;
    assert_eq!(
        BTreeMap::from_iter(tags),
        BTreeMap::from([
            ("batch".to_owned(), dec("0.05")),
            ("web<b>".to_owned(), dec("0.0532")),
        ])
    );

    let resources = pairs(
        &pool,
        "SELECT resource_id, unblended_cost FROM top_resources
         WHERE billing_period = '2017-03-01' ORDER BY unblended_cost DESC LIMIT 20",
    )
    .await;
    assert_eq!(
        resources,
        [
            ("i-2".to_owned(), dec("0.05")),
            ("i-3".to_owned(), dec("0.03")),
            ("i-1".to_owned(), dec("0.0232")),
        ]
    );

    // FOCUS: the same money under FOCUS's five categories, with FOCUS's names and types.
    let focus = pairs(
        &pool,
        r#"SELECT "ChargeCategory", sum("BilledCost") FROM focus_costs
           WHERE "BillingPeriodStart" = '2017-03-01T00:00:00Z' GROUP BY 1"#,
    )
    .await;
    assert_eq!(
        BTreeMap::from_iter(focus),
        BTreeMap::from([
            ("Adjustment".to_owned(), dec("-1.25")),
            ("Credit".to_owned(), dec("-5.00")),
            ("Purchase".to_owned(), dec("49.20")),
            ("Tax".to_owned(), dec("2.10")),
            // Support is billed as a share of the month's usage: FOCUS usage, not a purchase.
            ("Usage".to_owned(), dec("100.9532")),
        ])
    );
    // Purchases are effective when billed: FOCUS wants their EffectiveCost 0, so the cost
    // moves to a Usage row of its own (BilledCost 0), and the total stays what was billed.
    let effective = pairs(
        &pool,
        r#"SELECT "ChargeCategory" || CASE WHEN "x_EffectiveCostOfPurchase" THEN ' (effective)' ELSE '' END,
                  sum("EffectiveCost") FROM focus_costs
           WHERE "BillingPeriodStart" = '2017-03-01T00:00:00Z' GROUP BY 1"#,
    )
    .await;
    assert_eq!(
        BTreeMap::from_iter(effective),
        BTreeMap::from([
            ("Adjustment".to_owned(), dec("-1.25")),
            ("Credit".to_owned(), dec("-5.00")),
            ("Purchase".to_owned(), dec("0")),
            ("Tax".to_owned(), dec("2.10")),
            ("Usage".to_owned(), dec("100.9532")),
            ("Usage (effective)".to_owned(), dec("49.20")),
        ])
    );
    let spot = sqlx::query(
        r#"SELECT "BillingAccountId", "SubAccountId", "SubAccountName", "InvoiceId",
                  "RegionId", "AvailabilityZone", "ResourceId", "Tags"->>'user:team',
                  "PricingCategory", "ChargePeriodStart"::text, "ChargePeriodEnd"::text,
                  "BillingPeriodEnd"::text, "ProviderName", "BillingCurrency", "ServiceName",
                  "ChargeDescription", "PricingQuantity", "ConsumedQuantity", "ListCost"
           FROM focus_costs WHERE "ResourceId" = 'i-3'"#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let text = |i: usize| spot.get::<Option<String>, _>(i);
    assert_eq!(text(0).as_deref(), Some("123456789012"));
    assert_eq!(text(1).as_deref(), Some(ACCOUNT));
    assert_eq!(text(2).as_deref(), Some("prod"));
    assert_eq!(text(3).as_deref(), Some("123"));
    assert_eq!(text(4).as_deref(), Some("us-west-2"));
    assert_eq!(text(5).as_deref(), Some("us-west-2c"));
    assert_eq!(text(7).as_deref(), Some("web<b>"));
    assert_eq!(text(8).as_deref(), Some("Dynamic"));
    assert_eq!(text(9).as_deref(), Some("2017-03-01 00:00:00+00"));
    assert_eq!(text(10).as_deref(), Some("2017-03-02 00:00:00+00"));
    assert_eq!(text(11).as_deref(), Some("2017-04-01 00:00:00+00"));
    assert_eq!(text(12).as_deref(), Some("Amazon Web Services"));
    assert_eq!(text(13).as_deref(), Some("USD"));
    assert_eq!(text(14).as_deref(), Some(EC2));
    assert_eq!(
        text(15).as_deref(),
        Some("$0.03 per Spot Linux c4.large Instance Hour")
    );
    assert_eq!(spot.get::<Decimal, _>(16), Decimal::ONE);
    assert_eq!(spot.get::<Option<Decimal>, _>(17), Some(Decimal::ONE));
    // No list price for spot usage: its ListCost is what it cost.
    assert_eq!(spot.get::<Option<Decimal>, _>(18), Some(dec("0.03")));

    // Nothing of the unmonitored account anywhere.
    for view in ["daily_costs_by_service", "cost_by_tag", "top_resources"] {
        let stray: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {view} WHERE linked_account_id = '222222222222'"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(stray, 0, "{view}");
    }
    pool.close().await;
    db.drop_database().await;
}
