//! The status page at `GET /`: one server-rendered HTML page with inline CSS and SVG charts,
//! no script and nothing loaded from elsewhere. It answers what an operator asks first: did the
//! last poll run and when is the next, what failed and why, are the months estimated or final,
//! do they reconcile, how many line items were kept and dropped, and what the accounts cost.
//! Every value from outside (keys, account names, errors) is escaped.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::store::{StatusData, Store, StoreError};

/// When the daemon last finished a poll and when it starts the next: shared between the poll
/// loop, which writes it, and the page.
#[derive(Clone, Debug, Default)]
pub struct PollTimes(Arc<Mutex<Times>>);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Times {
    pub last_ended: Option<DateTime<Utc>>,
    pub next: Option<DateTime<Utc>>,
}

impl PollTimes {
    pub fn polled(&self, ended: DateTime<Utc>, next: DateTime<Utc>) {
        *self.0.lock().expect("not poisoned") = Times {
            last_ended: Some(ended),
            next: Some(next),
        };
    }

    pub fn get(&self) -> Times {
        *self.0.lock().expect("not poisoned")
    }
}

/// Reads the database and renders the page.
pub async fn render(store: &Store, times: Times, now: DateTime<Utc>) -> Result<String, StoreError> {
    Ok(page(&store.status().await?, times, now))
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// An amount as the page shows it: two decimals, thousands apart. The stored value stays exact.
fn money(amount: Decimal) -> String {
    let mut rounded =
        amount.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    if rounded.is_zero() {
        rounded.set_sign_positive(true);
    }
    let text = format!("{rounded:.2}");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, cents) = digits.split_once('.').unwrap_or((digits, "00"));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{cents}")
}

fn when(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => "not yet".into(),
        Some(at) => {
            let seconds = (at - now).num_seconds();
            let ago =
                humantime::format_duration(std::time::Duration::from_secs(seconds.unsigned_abs()));
            let relative = if seconds <= 0 {
                format!("{ago} ago")
            } else {
                format!("in {ago}")
            };
            format!("{} ({relative})", at.format("%Y-%m-%d %H:%M:%S UTC"))
        }
    }
}

/// DBR amounts are in US dollars (see the README's FOCUS table on AISPL).
const CURRENCY: &str = "USD";
/// The colours of estimated and final months.
const ESTIMATED: &str = "#e0a800";
const FINAL: &str = "#1565c0";

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;background:#fff}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#b00020}.ok{color:#1b5e20}\
svg text{font:11px system-ui,sans-serif;fill:#222}";

/// The page for `status`, polled at `times`, as of `now`.
pub fn page(status: &StatusData, times: Times, now: DateTime<Utc>) -> String {
    let mut html = String::new();
    let w = &mut html;
    let _ = write!(
        w,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>dbr-ingest status</title><style>{STYLE}</style></head><body><h1>dbr-ingest</h1>"
    );
    let _ = write!(
        w,
        "<p>Last poll ended: {}<br>Next poll: {}</p>",
        escape(&when(times.last_ended, now)),
        escape(&when(times.next, now))
    );

    let _ = write!(
        w,
        "<h2>Reports</h2><table><tr><th>integration</th><th>ingested</th><th>failed</th>\
         <th>superseded</th><th>line items kept</th><th>dropped</th><th>last ingested</th></tr>"
    );
    for i in &status.integrations {
        let failed = if i.failed > 0 {
            " class=\"n bad\""
        } else {
            " class=\"n\""
        };
        let _ = write!(
            w,
            "<tr><td>{}</td><td class=\"n\">{}</td><td{failed}>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&i.integration),
            i.ingested,
            i.failed,
            i.superseded,
            i.rows_kept,
            i.rows_dropped,
            escape(&when(i.last_ingested_at, now))
        );
    }
    let _ = write!(w, "</table>");
    if status.integrations.is_empty() {
        let _ = write!(w, "<p>No report read yet.</p>");
    }

    if !status.failures.is_empty() {
        let _ = write!(
            w,
            "<h2 class=\"bad\">Failed reports</h2><table><tr><th>integration</th><th>report</th>\
             <th>kind</th><th>error</th><th>when</th></tr>"
        );
        for f in &status.failures {
            let _ = write!(
                w,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&f.integration),
                escape(&f.key),
                escape(&f.failure_kind),
                escape(&f.error),
                escape(&when(Some(f.at), now))
            );
        }
        let _ = write!(w, "</table>");
    }

    let r = &status.reconciliation;
    let mismatched = if r.mismatched > 0 { "bad" } else { "ok" };
    let _ = write!(
        w,
        "<h2>Reconciliation</h2><p><span class=\"{mismatched}\">{} account months do not add up \
         to their AccountTotal</span>; {} do; {} have no footer to check.</p>",
        r.mismatched, r.reconciled, r.without_total
    );

    let _ = write!(
        w,
        "<h2>Last 12 months, {CURRENCY}</h2><p>Each monitored account's month once, however many \
         integrations read its payer.</p>"
    );
    if status.months.is_empty() {
        let _ = write!(w, "<p>No costs yet.</p>");
    } else {
        month_bars(w, &status.months);
    }

    if let Some((period, accounts)) = &status.latest {
        let _ = write!(
            w,
            "<h2>{} by account, {CURRENCY}</h2>",
            escape(&period.format("%Y-%m").to_string())
        );
        account_bars(w, accounts);
    }
    let _ = write!(w, "</body></html>");
    html
}

/// Vertical bars of the months' costs, estimated months in another colour.
fn month_bars(w: &mut String, months: &[crate::store::Month]) {
    let (bar, gap, height) = (52.0, 10.0, 160.0);
    let top = months
        .iter()
        .map(|m| m.unblended_cost)
        .max()
        .unwrap_or_default()
        .max(Decimal::ONE);
    let width = months.len() as f64 * (bar + gap) + gap;
    let _ = write!(
        w,
        "<svg role=\"img\" aria-label=\"cost per month\" width=\"{width}\" height=\"{}\" \
         viewBox=\"0 0 {width} {}\">",
        height + 65.0,
        height + 65.0
    );
    for (i, month) in months.iter().enumerate() {
        let share = ratio(month.unblended_cost, top);
        let h = (share * height).max(1.0);
        let x = gap + i as f64 * (bar + gap);
        let (fill, state) = if month.estimated_accounts > 0 {
            (ESTIMATED, "estimated")
        } else {
            (FINAL, "final")
        };
        let label = month.period.format("%Y-%m").to_string();
        let _ = write!(
            w,
            "<rect x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{h}\" fill=\"{fill}\">\
             <title>{} {}, from {}: {}</title></rect>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"source\">{}</text>",
            height + 10.0 - h,
            escape(&label),
            state,
            escape(&month.sources),
            money(month.unblended_cost),
            x + bar / 2.0,
            height + 25.0,
            escape(&label),
            x + bar / 2.0,
            height + 40.0,
            escape(&compact(month.unblended_cost)),
            x + bar / 2.0,
            height + 55.0,
            escape(&month.sources),
        );
    }
    let _ = write!(w, "</svg>");
    legend(w);
}

/// Horizontal bars of the accounts' costs in the latest month, and the same as a table.
fn account_bars(w: &mut String, accounts: &[crate::store::AccountCost]) {
    let (row, label, length) = (22.0, 300.0, 360.0);
    let top = accounts
        .iter()
        .map(|a| a.unblended_cost)
        .max()
        .unwrap_or_default()
        .max(Decimal::ONE);
    let height = accounts.len() as f64 * row + 10.0;
    let width = label + length + 120.0;
    let _ = write!(
        w,
        "<svg role=\"img\" aria-label=\"cost per account\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\">"
    );
    for (i, account) in accounts.iter().enumerate() {
        let y = 5.0 + i as f64 * row;
        let name = match &account.name {
            Some(name) => format!("{} {} ({name})", account.integration, account.account),
            None => format!("{} {}", account.integration, account.account),
        };
        let bar = (ratio(account.unblended_cost, top) * length).max(1.0);
        let fill = if account.invoice_status == "estimated" {
            ESTIMATED
        } else {
            FINAL
        };
        let _ = write!(
            w,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label}\" y=\"{y}\" width=\"{bar}\" height=\"{}\" fill=\"{fill}\">\
             <title>{}: {} ({})</title></rect>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            label - 8.0,
            y + 14.0,
            escape(&name),
            row - 6.0,
            escape(&name),
            money(account.unblended_cost),
            escape(&account.invoice_status),
            label + bar + 6.0,
            y + 14.0,
            escape(&money(account.unblended_cost)),
        );
    }
    let _ = write!(w, "</svg>");
    legend(w);
}

fn legend(w: &mut String) {
    let _ = write!(
        w,
        "<p><span style=\"color:{ESTIMATED}\">■</span> estimated \
         <span style=\"color:{FINAL}\">■</span> final</p>"
    );
}

/// `amount / top` for drawing, between 0 and 1 (negative months, all credits, draw empty).
fn ratio(amount: Decimal, top: Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    (amount / top).to_f64().unwrap_or(0.0).clamp(0.0, 1.0)
}

/// `12.3k`, `4.5M`: short enough to stand under a bar.
fn compact(amount: Decimal) -> String {
    use rust_decimal::prelude::ToPrimitive;
    let value = amount.to_f64().unwrap_or(0.0);
    match value.abs() {
        v if v >= 1e6 => format!("{:.1}M", value / 1e6),
        v if v >= 1e3 => format!("{:.1}k", value / 1e3),
        _ => format!("{value:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::store::{AccountCost, FailedReport, IntegrationReports, Month, Reconciliation};

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn money_is_grouped_and_exact_to_the_cent_shown() {
        for (amount, shown) in [
            ("1234567.891", "1,234,567.89"),
            ("-0.005", "-0.01"),
            ("0", "0.00"),
            ("999.995", "1,000.00"),
            ("12", "12.00"),
        ] {
            assert_eq!(money(amount.parse().unwrap()), shown, "{amount}");
        }
    }

    #[test]
    fn every_outside_value_is_escaped() {
        let markup = "<script>alert('x')</script>&\"";
        let status = StatusData {
            integrations: vec![IntegrationReports {
                integration: "acme".into(),
                ingested: 2,
                failed: 1,
                superseded: 0,
                rows_kept: 10,
                rows_dropped: 3,
                last_ingested_at: None,
            }],
            failures: vec![FailedReport {
                integration: "acme".into(),
                key: format!("in/{markup}.csv.zip"),
                failure_kind: "content".into(),
                error: format!("line 3, column ProductName: {markup}"),
                at: Utc::now(),
            }],
            months: vec![Month {
                period: day("2017-01-01"),
                unblended_cost: "100.5".parse().unwrap(),
                estimated_accounts: 1,
                accounts: 2,
                sources: markup.into(),
            }],
            reconciliation: Reconciliation::default(),
            latest: Some((
                day("2017-01-01"),
                vec![AccountCost {
                    integration: "acme".into(),
                    account: "123456789012".into(),
                    name: Some(markup.into()),
                    unblended_cost: "100.5".parse().unwrap(),
                    invoice_status: "estimated".into(),
                }],
            )),
        };
        let html = page(&status, Times::default(), Utc::now());
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert('x')"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        assert!(html.contains("100.50"), "{html}");
        assert!(html.contains("Failed reports"));
    }

    #[test]
    fn estimated_accounts_are_drawn_as_estimated_and_amounts_name_their_currency() {
        let account = |account: &str, invoice_status: &str| AccountCost {
            integration: "acme".into(),
            account: account.into(),
            name: None,
            unblended_cost: "10".parse().unwrap(),
            invoice_status: invoice_status.into(),
        };
        let status = StatusData {
            months: vec![Month {
                period: day("2017-02-01"),
                unblended_cost: "20".parse().unwrap(),
                estimated_accounts: 1,
                accounts: 2,
                sources: "CUR".into(),
            }],
            latest: Some((
                day("2017-02-01"),
                vec![
                    account("111111111111", "estimated"),
                    account("222222222222", "final"),
                ],
            )),
            ..StatusData::default()
        };
        let html = page(&status, Times::default(), Utc::now());
        let (_, by_account) = html.split_once("by account").unwrap();
        let bars: Vec<&str> = by_account
            .split("<rect ")
            .skip(1)
            .map(|rect| {
                rect.split("fill=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(bars, [ESTIMATED, FINAL]);
        assert!(html.contains("Last 12 months, USD"), "{html}");
        assert!(html.contains("2017-02 by account, USD"), "{html}");
    }
}
