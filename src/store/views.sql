-- The contract views (README, "SQL contract"), as they are now: `dbr-ingest migrate` applies
-- this file after the migrations, every time, so a view dropped or changed by hand is restored
-- and `check` can hold the database to it. A view whose columns must change in a way
-- CREATE OR REPLACE cannot (a column dropped, renamed or retyped) is dropped by a migration
-- first; new columns go last, so existing queries keep working.

CREATE OR REPLACE VIEW account_monthly_costs AS
SELECT m.payer_account_id,
       m.linked_account_id,
       m.billing_period,
       sum(m.unblended_cost)      AS unblended_cost,
       sum(m.blended_cost)        AS blended_cost,
       sum(m.usage_quantity)      AS usage_quantity,
       sum(m.line_items)::bigint  AS line_items,
       CASE WHEN bool_or(m.invoice_status = 'estimated') THEN 'estimated' ELSE 'final' END AS invoice_status,
       m.integration,
       (SELECT a.name FROM monitored_accounts a
        WHERE a.integration = m.integration AND a.linked_account_id = m.linked_account_id) AS account_name,
       sum(m.usage_cost)          AS usage_cost,
       sum(m.fee_cost)            AS fee_cost,
       sum(m.tax_cost)            AS tax_cost,
       sum(m.credit_cost)         AS credit_cost,
       sum(m.refund_cost)         AS refund_cost,
       sum(m.ri_fee_cost)         AS ri_fee_cost,
       sum(m.support_cost)        AS support_cost,
       sum(m.marketplace_cost)    AS marketplace_cost,
       sum(coalesce(m.amortized_cost, m.unblended_cost)) AS amortized_cost
FROM account_months m
GROUP BY m.integration, m.payer_account_id, m.linked_account_id, m.billing_period;

-- Per day and product, from the rollup rather than the full grain.
CREATE OR REPLACE VIEW account_daily_costs AS
SELECT payer_account_id,
       linked_account_id,
       billing_period,
       usage_date,
       product_name,
       sum(unblended_cost) AS unblended_cost,
       sum(blended_cost)   AS blended_cost,
       sum(usage_quantity) AS usage_quantity,
       integration,
       sum(coalesce(amortized_cost, unblended_cost)) AS amortized_cost
FROM service_daily_costs
GROUP BY integration, payer_account_id, linked_account_id, billing_period, usage_date, product_name;

CREATE OR REPLACE VIEW daily_costs_by_service AS
SELECT payer_account_id, linked_account_id, billing_period, usage_date, product_name, region,
       charge_category, purchase_option, unblended_cost, blended_cost, usage_quantity,
       line_items, integration, coalesce(amortized_cost, unblended_cost) AS amortized_cost
FROM service_daily_costs;

-- The rollups keep per account, month and tag key the 1,000 values that cost most, and one row
-- for the others (tag_value NULL here; tag_values says how many it stands for).
CREATE OR REPLACE VIEW cost_by_tag AS
SELECT payer_account_id, linked_account_id, billing_period, tag_key, nullif(tag_value, '') AS tag_value,
       sum(unblended_cost) AS unblended_cost, sum(blended_cost) AS blended_cost,
       sum(line_items)::bigint AS line_items, integration,
       sum(coalesce(amortized_cost, unblended_cost)) AS amortized_cost,
       sum(tag_values)::bigint AS tag_values
FROM tag_costs
GROUP BY integration, payer_account_id, linked_account_id, billing_period, tag_key, tag_value;

-- Per account and month, the 1,000 resources that cost most, and one row for the others
-- (resource_id and product_name NULL here; resources says how many it stands for).
CREATE OR REPLACE VIEW top_resources AS
SELECT payer_account_id, linked_account_id, billing_period, nullif(resource_id, '') AS resource_id,
       CASE WHEN resource_id <> '' THEN product_name END AS product_name,
       sum(unblended_cost) AS unblended_cost, sum(blended_cost) AS blended_cost,
       sum(usage_quantity) AS usage_quantity, sum(line_items)::bigint AS line_items, integration,
       sum(coalesce(amortized_cost, unblended_cost)) AS amortized_cost,
       sum(resources)::bigint AS resources
FROM resource_costs
GROUP BY integration, payer_account_id, linked_account_id, billing_period, resource_id,
         product_name;

-- FOCUS 1.2 (FinOps Open Cost and Usage Specification): one row per account, day and usage,
-- the full grain, and a second row for a purchase whose cost is effective when billed (FOCUS
-- asks EffectiveCost 0 of every purchase: that cost moves to a Usage row with BilledCost 0).
-- Where each column comes from, per format, and every approximation: README, "FOCUS". Filter
-- on "BillingPeriodStart" (or "SubAccountId") to read one month, and on "x_Integration" to read
-- one integration: it is the daily tables' own column, so such a query reads (and locks) that
-- integration's partitions alone.
CREATE OR REPLACE VIEW focus_costs AS
SELECT CASE WHEN part.effective THEN 0 ELSE d.unblended_cost END::numeric   AS "BilledCost",
       CASE WHEN b.purchase AND NOT part.effective THEN 0
            ELSE coalesce(d.amortized_cost, d.unblended_cost) END::numeric  AS "EffectiveCost",
       CASE WHEN part.effective THEN 0
            ELSE coalesce(uk.list_unit_price * d.usage_quantity,
                          d.unblended_cost) END::numeric                    AS "ListCost",
       CASE WHEN NOT part.effective THEN uk.list_unit_price END::numeric    AS "ListUnitPrice",
       CASE WHEN part.effective THEN 0 ELSE d.unblended_cost END::numeric   AS "ContractedCost",
       NULL::numeric                                                        AS "ContractedUnitPrice",
       s.payer_account_id                                                   AS "BillingAccountId",
       NULL::text                                                           AS "BillingAccountName",
       NULL::text                                                           AS "BillingAccountType",
       'USD'::text                                                          AS "BillingCurrency",
       s.billing_period::timestamptz                                        AS "BillingPeriodStart",
       (s.billing_period + interval '1 month')::timestamptz                 AS "BillingPeriodEnd",
       NULL::text                                                           AS "CapacityReservationId",
       NULL::text                                                           AS "CapacityReservationStatus",
       coalesce(d.usage_date, s.billing_period)::timestamptz                AS "ChargePeriodStart",
       CASE WHEN d.usage_date IS NULL THEN s.billing_period + interval '1 month'
            ELSE d.usage_date + interval '1 day' END::timestamptz           AS "ChargePeriodEnd",
       k.category                                                           AS "ChargeCategory",
       NULL::text                                                           AS "ChargeClass",
       nullif(uk.item_description, '')                                      AS "ChargeDescription",
       CASE WHEN k.category = 'Usage' AND uk.charge_category = 'support' THEN 'Recurring'
            WHEN k.category = 'Usage' THEN 'Usage-Based'
            WHEN k.category = 'Purchase'
                 AND (uk.line_item_type IN ('RIFee', 'SavingsPlanRecurringFee')
                      OR uk.line_item_type = '' AND d.usage_date IS NOT NULL) THEN 'Recurring'
            ELSE 'One-Time' END                                             AS "ChargeFrequency",
       NULL::text                                                           AS "CommitmentDiscountId",
       NULL::text                                                           AS "CommitmentDiscountName",
       NULL::text                                                           AS "CommitmentDiscountCategory",
       NULL::text                                                           AS "CommitmentDiscountType",
       NULL::text                                                           AS "CommitmentDiscountStatus",
       NULL::numeric                                                        AS "CommitmentDiscountQuantity",
       NULL::text                                                           AS "CommitmentDiscountUnit",
       d.linked_account_id                                                  AS "SubAccountId",
       a.name                                                               AS "SubAccountName",
       NULL::text                                                           AS "SubAccountType",
       b.service                                                            AS "ServiceName",
       coalesce(c.category, 'Other')                                        AS "ServiceCategory",
       coalesce(c.subcategory, 'Other (Other)')                             AS "ServiceSubcategory",
       nullif(uk.region, '')                                                AS "RegionId",
       NULL::text                                                           AS "RegionName",
       nullif(uk.availability_zone, '')                                     AS "AvailabilityZone",
       nullif(u.resource_id, '')                                            AS "ResourceId",
       NULL::text                                                           AS "ResourceName",
       NULL::text                                                           AS "ResourceType",
       u.tags                                                               AS "Tags",
       q.quantity                                                           AS "PricingQuantity",
       CASE WHEN q.quantity IS NOT NULL
            THEN coalesce(nullif(uk.pricing_unit, ''), 'Units') END         AS "PricingUnit",
       CASE uk.purchase_option WHEN 'reserved' THEN 'Committed'
            WHEN 'spot' THEN 'Dynamic' ELSE 'Standard' END                  AS "PricingCategory",
       NULL::text                                                           AS "PricingCurrency",
       CASE WHEN uk.charge_category IN ('usage', 'marketplace') AND NOT part.effective
            THEN d.usage_quantity END::numeric                              AS "ConsumedQuantity",
       CASE WHEN uk.charge_category IN ('usage', 'marketplace') AND NOT part.effective
            THEN coalesce(nullif(uk.pricing_unit, ''), 'Units') END         AS "ConsumedUnit",
       CASE WHEN s.invoice_status = 'final' THEN nullif(uk.invoice_id, '') END AS "InvoiceId",
       b.issuer                                                             AS "InvoiceIssuerName",
       b.issuer                                                             AS "ProviderName",
       CASE WHEN s.entity = 'AWSMarketplace' OR uk.charge_category = 'marketplace'
            THEN 'AWS Marketplace' ELSE 'Amazon Web Services' END           AS "PublisherName",
       NULL::text                                                           AS "SkuId",
       NULL::text                                                           AS "SkuMeter",
       NULL::text                                                           AS "SkuPriceId",
       uk.usage_type                                                        AS "x_UsageType",
       uk.operation                                                         AS "x_Operation",
       uk.charge_category                                                   AS "x_ChargeCategory",
       CASE WHEN part.effective THEN 0 ELSE d.blended_cost END::numeric     AS "x_BlendedCost",
       d.integration                                                        AS "x_Integration",
       nullif(uk.line_item_type, '')                                        AS "x_LineItemType",
       part.effective                                                       AS "x_EffectiveCostOfPurchase"
FROM daily_costs d
JOIN daily_usages u USING (integration, statement_version, usage_id)
JOIN usage_kinds uk USING (integration, statement_version, kind_id)
JOIN statements s ON s.version = d.statement_version
CROSS JOIN LATERAL (
    SELECT CASE uk.charge_category
                WHEN 'tax' THEN 'Tax'
                WHEN 'credit' THEN 'Credit'
                WHEN 'refund' THEN 'Adjustment'
                WHEN 'ri_fee' THEN 'Purchase'
                WHEN 'fee' THEN 'Purchase'
                ELSE 'Usage' END                          AS billed_category,
           uk.charge_category IN ('ri_fee', 'fee')         AS purchase,
           coalesce(nullif(uk.product_name, ''), 'Tax')    AS service,
           CASE s.entity WHEN '' THEN 'Amazon Web Services'
                WHEN 'AWSMarketplace' THEN 'Amazon Web Services'
                WHEN 'AISPL' THEN 'Amazon Internet Services Private Limited'
                ELSE 'Amazon Web Services (' || s.entity || ')' END AS issuer
) b
CROSS JOIN LATERAL (VALUES (false), (true)) AS part(effective)
CROSS JOIN LATERAL (
    SELECT CASE WHEN part.effective THEN 'Usage' ELSE b.billed_category END AS category
) k
CROSS JOIN LATERAL (
    SELECT CASE WHEN k.category IN ('Usage', 'Purchase')
                THEN CASE WHEN part.effective THEN 0 ELSE d.usage_quantity END
           END::numeric AS quantity
) q
LEFT JOIN focus_services c ON c.name = b.service
LEFT JOIN monitored_accounts a
       ON a.integration = d.integration AND a.linked_account_id = d.linked_account_id
WHERE NOT part.effective
   OR (b.purchase AND coalesce(d.amortized_cost, d.unblended_cost) <> 0);

CREATE OR REPLACE VIEW report_status AS
SELECT location AS bucket, key, etag, payer_account_id, billing_period, status,
       rows_read, rows_kept, rows_dropped, error, finished_at AS ingested_at,
       location, failure_kind, rows_outside_period, integration, format
FROM reports;

CREATE OR REPLACE VIEW account_reconciliation AS
SELECT payer_account_id, linked_account_id, billing_period, entity,
       unblended_cost, account_total_unblended,
       blended_cost, account_total_blended,
       CASE WHEN account_total_unblended IS NULL THEN NULL
            ELSE unblended_cost = account_total_unblended AND blended_cost = account_total_blended
       END AS reconciled,
       integration
FROM account_months;
