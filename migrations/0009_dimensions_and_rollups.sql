-- What dashboards filter by, derived at ingest (README, "Dimensions"), and rollups written in
-- the transaction that replaces a statement, so that no contract view but `focus_costs` (an
-- export of the full grain) reads the daily tables.
--
-- The rollups have no foreign key to statements: checking one per row doubled the time to
-- write a high-cardinality month. They are deleted with their statement by the code that
-- replaces or removes it, and have one index each, by month first (what dashboards filter).

-- A usage now also says which invoice billed it, what AWS called it, and what the dimensions
-- derived from it are. Rows ingested before have none: their reports are read again (below).
ALTER TABLE daily_usages
    ADD COLUMN invoice_id       text NOT NULL DEFAULT '',
    ADD COLUMN item_description text NOT NULL DEFAULT '',
    ADD COLUMN charge_category  text,
    ADD COLUMN region           text,
    ADD COLUMN purchase_option  text;

CREATE OR REPLACE FUNCTION new_daily_partitions() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    version bigint;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    version := nextval('statement_versions');
    EXECUTE format(
        'CREATE TABLE %I (
             statement_version bigint NOT NULL DEFAULT %s CHECK (statement_version = %s),
             usage_id          bigint NOT NULL,
             product_name      text   NOT NULL,
             usage_type        text   NOT NULL,
             operation         text   NOT NULL,
             availability_zone text   NOT NULL,
             resource_id       text   NOT NULL,
             tags              jsonb  NOT NULL,
             invoice_id        text   NOT NULL DEFAULT '''',
             item_description  text   NOT NULL DEFAULT '''',
             charge_category   text,
             region            text,
             purchase_option   text)',
        'daily_usages_' || version, version, version);
    EXECUTE format(
        'CREATE TABLE %I (
             statement_version bigint  NOT NULL DEFAULT %s CHECK (statement_version = %s),
             linked_account_id text    NOT NULL,
             usage_date        date,
             usage_id          bigint  NOT NULL,
             unblended_cost    numeric NOT NULL,
             blended_cost      numeric NOT NULL,
             usage_quantity    numeric NOT NULL,
             line_items        bigint  NOT NULL)',
        'daily_costs_' || version, version, version);
    EXECUTE format('GRANT INSERT ON %I, %I TO %I',
                   'daily_usages_' || version, 'daily_costs_' || version, session_user);
    RETURN version;
END $$;

-- An account's month split by charge category (unblended). NULL: ingested before categories.
ALTER TABLE account_months
    ADD COLUMN usage_cost       numeric,
    ADD COLUMN fee_cost         numeric,
    ADD COLUMN tax_cost         numeric,
    ADD COLUMN credit_cost      numeric,
    ADD COLUMN refund_cost      numeric,
    ADD COLUMN ri_fee_cost      numeric,
    ADD COLUMN support_cost     numeric,
    ADD COLUMN marketplace_cost numeric;

-- Per account, day and service: the daily grain without resources and tags. Undated line items
-- count on the first day of the month.
CREATE TABLE service_daily_costs (
    integration       text    NOT NULL,
    payer_account_id  text    NOT NULL,
    entity            text    NOT NULL,
    billing_period    date    NOT NULL,
    linked_account_id text    NOT NULL,
    usage_date        date    NOT NULL,
    product_name      text    NOT NULL,
    region            text    NOT NULL,
    charge_category   text    NOT NULL,
    purchase_option   text    NOT NULL,
    unblended_cost    numeric NOT NULL,
    blended_cost      numeric NOT NULL,
    usage_quantity    numeric NOT NULL,
    line_items        bigint  NOT NULL
);
CREATE INDEX service_daily_costs_by_month
    ON service_daily_costs (billing_period, linked_account_id, integration, payer_account_id, entity);

-- Per account and month, each resource of each product (with-resources-and-tags reports).
-- A report with more resources than are grouped in memory at once has a few partial rows
-- for some: the view adds them up.
CREATE TABLE resource_costs (
    integration       text    NOT NULL,
    payer_account_id  text    NOT NULL,
    entity            text    NOT NULL,
    billing_period    date    NOT NULL,
    linked_account_id text    NOT NULL,
    resource_id       text    NOT NULL,
    product_name      text    NOT NULL,
    unblended_cost    numeric NOT NULL,
    blended_cost      numeric NOT NULL,
    usage_quantity    numeric NOT NULL,
    line_items        bigint  NOT NULL
);
CREATE INDEX resource_costs_by_month
    ON resource_costs (billing_period, integration, payer_account_id, entity);

-- Per account and month, each value of each tag: the line items carrying it, summed (in
-- partial rows, too, beyond what is grouped in memory at once).
CREATE TABLE tag_costs (
    integration       text    NOT NULL,
    payer_account_id  text    NOT NULL,
    entity            text    NOT NULL,
    billing_period    date    NOT NULL,
    linked_account_id text    NOT NULL,
    tag_key           text    NOT NULL,
    tag_value         text    NOT NULL,
    unblended_cost    numeric NOT NULL,
    blended_cost      numeric NOT NULL,
    line_items        bigint  NOT NULL
);
CREATE INDEX tag_costs_by_month
    ON tag_costs (billing_period, tag_key, integration, payer_account_id, entity);

-- The dimensions cannot be made up from what was stored: every ingested report is read again
-- at the next poll (as if its monitored set had changed), which fills them. Until then the
-- rollups hold what the full grain says, with the dimensions empty, so the views keep showing
-- every month.
UPDATE reports SET monitored_fingerprint = NULL WHERE status = 'ingested';

INSERT INTO service_daily_costs
SELECT s.integration, s.payer_account_id, s.entity, s.billing_period, d.linked_account_id,
       coalesce(d.usage_date, s.billing_period), u.product_name, '', '', '',
       sum(d.unblended_cost), sum(d.blended_cost), sum(d.usage_quantity), sum(d.line_items)
FROM daily_costs d
JOIN daily_usages u USING (statement_version, usage_id)
JOIN statements s ON s.version = d.statement_version
GROUP BY s.integration, s.payer_account_id, s.entity, s.billing_period, d.linked_account_id,
         coalesce(d.usage_date, s.billing_period), u.product_name;

INSERT INTO resource_costs
SELECT s.integration, s.payer_account_id, s.entity, s.billing_period, d.linked_account_id,
       u.resource_id, u.product_name, sum(d.unblended_cost), sum(d.blended_cost),
       sum(d.usage_quantity), sum(d.line_items)
FROM daily_costs d
JOIN daily_usages u USING (statement_version, usage_id)
JOIN statements s ON s.version = d.statement_version
WHERE u.resource_id <> ''
GROUP BY s.integration, s.payer_account_id, s.entity, s.billing_period, d.linked_account_id,
         u.resource_id, u.product_name;

INSERT INTO tag_costs
SELECT s.integration, s.payer_account_id, s.entity, s.billing_period, d.linked_account_id,
       t.key, t.value, sum(d.unblended_cost), sum(d.blended_cost), sum(d.line_items)
FROM daily_costs d
JOIN daily_usages u USING (statement_version, usage_id)
JOIN statements s ON s.version = d.statement_version,
     jsonb_each_text(u.tags) t
GROUP BY s.integration, s.payer_account_id, s.entity, s.billing_period, d.linked_account_id,
         t.key, t.value;

-- New columns go last: existing queries keep working.
CREATE OR REPLACE VIEW account_monthly_costs AS
SELECT m.payer_account_id,
       m.linked_account_id,
       m.billing_period,
       sum(m.unblended_cost)      AS unblended_cost,
       sum(m.blended_cost)        AS blended_cost,
       sum(m.usage_quantity)      AS usage_quantity,
       sum(m.line_items)::bigint  AS line_items,
       CASE WHEN bool_or(s.invoice_status = 'estimated') THEN 'estimated' ELSE 'final' END AS invoice_status,
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
       sum(m.marketplace_cost)    AS marketplace_cost
FROM account_months m
JOIN statements s USING (integration, payer_account_id, entity, billing_period)
GROUP BY m.integration, m.payer_account_id, m.linked_account_id, m.billing_period;

-- The same columns as before, from the rollup rather than the full grain.
CREATE OR REPLACE VIEW account_daily_costs AS
SELECT payer_account_id,
       linked_account_id,
       billing_period,
       usage_date,
       product_name,
       sum(unblended_cost) AS unblended_cost,
       sum(blended_cost)   AS blended_cost,
       sum(usage_quantity) AS usage_quantity,
       integration
FROM service_daily_costs
GROUP BY integration, payer_account_id, linked_account_id, billing_period, usage_date, product_name;

CREATE VIEW daily_costs_by_service AS
SELECT payer_account_id, linked_account_id, billing_period, usage_date, product_name, region,
       charge_category, purchase_option, unblended_cost, blended_cost, usage_quantity,
       line_items, integration
FROM service_daily_costs;

CREATE VIEW cost_by_tag AS
SELECT payer_account_id, linked_account_id, billing_period, tag_key, tag_value,
       sum(unblended_cost) AS unblended_cost, sum(blended_cost) AS blended_cost,
       sum(line_items)::bigint AS line_items, integration
FROM tag_costs
GROUP BY integration, payer_account_id, linked_account_id, billing_period, tag_key, tag_value;

CREATE VIEW top_resources AS
SELECT payer_account_id, linked_account_id, billing_period, resource_id, product_name,
       sum(unblended_cost) AS unblended_cost, sum(blended_cost) AS blended_cost,
       sum(usage_quantity) AS usage_quantity, sum(line_items)::bigint AS line_items, integration
FROM resource_costs
GROUP BY integration, payer_account_id, linked_account_id, billing_period, resource_id,
         product_name;

-- FOCUS 1.0 (FinOps Open Cost and Usage Specification): one row per account, day and usage,
-- the full grain. Which DBR column feeds each FOCUS column, and why some are NULL: README,
-- "FOCUS". Filter on "BillingPeriodStart" (or "SubAccountId") to read one month.
CREATE VIEW focus_costs AS
SELECT d.unblended_cost::numeric                                   AS "BilledCost",
       d.unblended_cost::numeric                                   AS "EffectiveCost",
       NULL::numeric                                               AS "ListCost",
       NULL::numeric                                               AS "ListUnitPrice",
       d.unblended_cost::numeric                                   AS "ContractedCost",
       NULL::numeric                                               AS "ContractedUnitPrice",
       s.payer_account_id                                          AS "BillingAccountId",
       NULL::text                                                  AS "BillingAccountName",
       'USD'::text                                                 AS "BillingCurrency",
       s.billing_period::timestamptz                               AS "BillingPeriodStart",
       (s.billing_period + interval '1 month')::timestamptz        AS "BillingPeriodEnd",
       coalesce(d.usage_date, s.billing_period)::timestamptz       AS "ChargePeriodStart",
       CASE WHEN d.usage_date IS NULL THEN s.billing_period + interval '1 month'
            ELSE d.usage_date + interval '1 day' END::timestamptz  AS "ChargePeriodEnd",
       CASE u.charge_category
            WHEN 'tax' THEN 'Tax'
            WHEN 'credit' THEN 'Credit'
            WHEN 'refund' THEN 'Adjustment'
            WHEN 'ri_fee' THEN 'Purchase'
            WHEN 'support' THEN 'Purchase'
            WHEN 'fee' THEN 'Purchase'
            ELSE 'Usage' END                                       AS "ChargeCategory",
       NULL::text                                                  AS "ChargeClass",
       nullif(u.item_description, '')                              AS "ChargeDescription",
       CASE WHEN u.charge_category IN ('usage', 'marketplace') THEN 'Usage-Based'
            WHEN u.charge_category IN ('ri_fee', 'support') THEN 'Recurring'
            WHEN u.charge_category = 'fee' THEN
                 CASE WHEN d.usage_date IS NULL THEN 'Recurring' ELSE 'One-Time' END
            ELSE 'One-Time' END                                    AS "ChargeFrequency",
       d.linked_account_id                                         AS "SubAccountId",
       a.name                                                      AS "SubAccountName",
       nullif(u.product_name, '')                                  AS "ServiceName",
       NULL::text                                                  AS "ServiceCategory",
       nullif(u.region, '')                                        AS "RegionId",
       NULL::text                                                  AS "RegionName",
       nullif(u.availability_zone, '')                             AS "AvailabilityZone",
       nullif(u.resource_id, '')                                   AS "ResourceId",
       NULL::text                                                  AS "ResourceName",
       NULL::text                                                  AS "ResourceType",
       u.tags                                                      AS "Tags",
       d.usage_quantity::numeric                                   AS "PricingQuantity",
       NULL::text                                                  AS "PricingUnit",
       CASE u.purchase_option WHEN 'reserved' THEN 'Committed'
            WHEN 'spot' THEN 'Dynamic' ELSE 'Standard' END         AS "PricingCategory",
       CASE WHEN u.charge_category IN ('usage', 'marketplace')
            THEN d.usage_quantity::numeric END                     AS "ConsumedQuantity",
       NULL::text                                                  AS "ConsumedUnit",
       NULL::text                                                  AS "CommitmentDiscountId",
       NULL::text                                                  AS "CommitmentDiscountName",
       NULL::text                                                  AS "CommitmentDiscountCategory",
       NULL::text                                                  AS "CommitmentDiscountType",
       NULL::text                                                  AS "CommitmentDiscountStatus",
       nullif(u.invoice_id, '')                                    AS "InvoiceId",
       CASE s.entity WHEN '' THEN 'Amazon Web Services'
            ELSE 'Amazon Web Services (' || s.entity || ')' END    AS "InvoiceIssuerName",
       'Amazon Web Services'::text                                 AS "ProviderName",
       CASE s.entity WHEN 'AWSMarketplace' THEN 'AWS Marketplace'
            ELSE 'Amazon Web Services' END                         AS "PublisherName",
       NULL::text                                                  AS "SkuId",
       NULL::text                                                  AS "SkuPriceId",
       u.usage_type                                                AS "x_UsageType",
       u.operation                                                 AS "x_Operation",
       u.charge_category                                           AS "x_ChargeCategory",
       d.blended_cost::numeric                                     AS "x_BlendedCost",
       s.integration                                               AS integration
FROM daily_costs d
JOIN daily_usages u USING (statement_version, usage_id)
JOIN statements s ON s.version = d.statement_version
LEFT JOIN monitored_accounts a
       ON a.integration = s.integration AND a.linked_account_id = d.linked_account_id;
