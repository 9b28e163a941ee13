-- The SQL contract for dashboards (README, "SQL contract"). Dashboards read these views only.

CREATE VIEW account_monthly_costs AS
SELECT m.payer_account_id,
       m.linked_account_id,
       m.billing_period,
       sum(m.unblended_cost)      AS unblended_cost,
       sum(m.blended_cost)        AS blended_cost,
       sum(m.usage_quantity)      AS usage_quantity,
       sum(m.line_items)::bigint  AS line_items,
       CASE WHEN bool_or(s.invoice_status = 'estimated') THEN 'estimated' ELSE 'final' END AS invoice_status
FROM account_months m
JOIN statements s USING (payer_account_id, entity, billing_period)
GROUP BY m.payer_account_id, m.linked_account_id, m.billing_period;

-- Undated line items (monthly fees, tax) count on the first day of the month.
CREATE VIEW account_daily_costs AS
SELECT payer_account_id,
       linked_account_id,
       billing_period,
       coalesce(usage_date, billing_period) AS usage_date,
       product_name,
       sum(unblended_cost) AS unblended_cost,
       sum(blended_cost)   AS blended_cost,
       sum(usage_quantity) AS usage_quantity
FROM daily_costs
GROUP BY payer_account_id, linked_account_id, billing_period, coalesce(usage_date, billing_period), product_name;

CREATE VIEW report_status AS
SELECT bucket, key, etag, payer_account_id, billing_period, status,
       rows_read, rows_kept, rows_dropped, error, finished_at AS ingested_at
FROM reports;

-- Does each account's sum of line items equal the report's AccountTotal?
CREATE VIEW account_reconciliation AS
SELECT payer_account_id, linked_account_id, billing_period, entity,
       unblended_cost, account_total_unblended,
       blended_cost, account_total_blended,
       CASE WHEN account_total_unblended IS NULL THEN NULL
            ELSE unblended_cost = account_total_unblended AND blended_cost = account_total_blended
       END AS reconciled
FROM account_months;
