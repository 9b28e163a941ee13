-- Many integrations in one deployment: every customer's bucket, credentials and monitored
-- accounts side by side. Every stored row belongs to one integration; what existed before
-- belongs to `default`, the integration of the configuration (DBR_BUCKET, DBR_SOURCE, …),
-- which is not stored in the integrations table.

CREATE TABLE integrations (
    name              text        PRIMARY KEY
                                  CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$' AND name <> 'default'),
    source            text        NOT NULL CHECK (source IN ('s3', 'dir')),
    bucket            text,
    prefix            text        NOT NULL DEFAULT '',
    region            text,
    endpoint_url      text,
    force_path_style  boolean     NOT NULL DEFAULT false,
    dir_path          text,
    -- A role in the customer's account, assumed through STS with the default credentials.
    role_arn          text,
    external_id       text,
    role_session_name text,
    -- Every linked account of the bucket's reports, or only those in monitored_accounts.
    monitor_all       boolean     NOT NULL,
    enabled           boolean     NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((source = 's3') = (bucket IS NOT NULL)),
    CHECK ((source = 'dir') = (dir_path IS NOT NULL)),
    CHECK (role_arn IS NOT NULL OR (external_id IS NULL AND role_session_name IS NULL))
);

-- Costs hang off their statement by foreign key: drop those keys while the statement's key
-- grows by the integration, then put them back.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT conrelid::regclass AS tab, conname FROM pg_constraint
             WHERE contype = 'f' AND confrelid = 'statements'::regclass LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tab, c.conname);
    END LOOP;
END $$;

ALTER TABLE statements ADD COLUMN integration text NOT NULL DEFAULT 'default';
ALTER TABLE statements ALTER COLUMN integration DROP DEFAULT;
ALTER TABLE statements DROP CONSTRAINT statements_pkey,
    ADD PRIMARY KEY (integration, payer_account_id, entity, billing_period);

ALTER TABLE account_months ADD COLUMN integration text NOT NULL DEFAULT 'default';
ALTER TABLE account_months ALTER COLUMN integration DROP DEFAULT;
ALTER TABLE account_months DROP CONSTRAINT account_months_pkey,
    ADD PRIMARY KEY (integration, payer_account_id, entity, billing_period, linked_account_id),
    ADD FOREIGN KEY (integration, payer_account_id, entity, billing_period)
        REFERENCES statements ON DELETE CASCADE;

ALTER TABLE report_totals ADD COLUMN integration text NOT NULL DEFAULT 'default';
ALTER TABLE report_totals ALTER COLUMN integration DROP DEFAULT;
ALTER TABLE report_totals
    ADD FOREIGN KEY (integration, payer_account_id, entity, billing_period)
        REFERENCES statements ON DELETE CASCADE;
DROP INDEX report_totals_by_statement;
CREATE INDEX report_totals_by_statement
    ON report_totals (integration, payer_account_id, entity, billing_period);

ALTER TABLE reports ADD COLUMN integration text NOT NULL DEFAULT 'default';
ALTER TABLE reports ALTER COLUMN integration DROP DEFAULT;
ALTER TABLE reports DROP CONSTRAINT reports_pkey, ADD PRIMARY KEY (integration, location, key);

ALTER TABLE monitored_accounts ADD COLUMN integration text NOT NULL DEFAULT 'default';
ALTER TABLE monitored_accounts ALTER COLUMN integration DROP DEFAULT;
ALTER TABLE monitored_accounts DROP CONSTRAINT monitored_accounts_pkey,
    ADD PRIMARY KEY (integration, linked_account_id);

-- When each integration's location was last listed whole: in between, a poll lists only the
-- prefixes of the payers it knows (`<prefix><payer>-aws-billing-detailed-line-items`).
CREATE TABLE full_listings (
    integration text        NOT NULL,
    location    text        NOT NULL,
    listed_at   timestamptz NOT NULL,
    PRIMARY KEY (integration, location)
);

-- The swap locks the two parents alone (ONLY): locking a partitioned table locks every
-- partition too, and a deployment of many integrations has thousands of them, more than the
-- lock table holds by default. ATTACH and DETACH lock the partitions they move themselves.
CREATE OR REPLACE FUNCTION swap_daily_partitions(new_version bigint, old_version bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    LOCK TABLE ONLY daily_costs, ONLY daily_usages IN ACCESS EXCLUSIVE MODE;
    FOREACH parent IN ARRAY ARRAY['daily_costs', 'daily_usages'] LOOP
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%s)',
                       parent, parent || '_' || new_version, new_version);
        IF old_version IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', parent, parent || '_' || old_version);
            EXECUTE format('DROP TABLE %I', parent || '_' || old_version);
        END IF;
    END LOOP;
END $$;

-- Detaches and drops a statement version's partitions: for an integration that is removed.
CREATE FUNCTION drop_daily_partitions(old_version bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'DELETE') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    LOCK TABLE ONLY daily_costs, ONLY daily_usages IN ACCESS EXCLUSIVE MODE;
    FOREACH parent IN ARRAY ARRAY['daily_costs', 'daily_usages'] LOOP
        EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', parent, parent || '_' || old_version);
        EXECUTE format('DROP TABLE %I', parent || '_' || old_version);
    END LOOP;
END $$;

-- The contract views gain `integration`, as their last column (existing queries keep working).
CREATE OR REPLACE VIEW account_monthly_costs AS
SELECT m.payer_account_id,
       m.linked_account_id,
       m.billing_period,
       sum(m.unblended_cost)      AS unblended_cost,
       sum(m.blended_cost)        AS blended_cost,
       sum(m.usage_quantity)      AS usage_quantity,
       sum(m.line_items)::bigint  AS line_items,
       CASE WHEN bool_or(s.invoice_status = 'estimated') THEN 'estimated' ELSE 'final' END AS invoice_status,
       m.integration
FROM account_months m
JOIN statements s USING (integration, payer_account_id, entity, billing_period)
GROUP BY m.integration, m.payer_account_id, m.linked_account_id, m.billing_period;

CREATE OR REPLACE VIEW account_daily_costs AS
SELECT s.payer_account_id,
       d.linked_account_id,
       s.billing_period,
       coalesce(d.usage_date, s.billing_period) AS usage_date,
       u.product_name,
       sum(d.unblended_cost) AS unblended_cost,
       sum(d.blended_cost)   AS blended_cost,
       sum(d.usage_quantity) AS usage_quantity,
       s.integration
FROM daily_costs d
JOIN daily_usages u USING (statement_version, usage_id)
JOIN statements s ON s.version = d.statement_version
GROUP BY s.integration, s.payer_account_id, d.linked_account_id, s.billing_period,
         coalesce(d.usage_date, s.billing_period), u.product_name;

CREATE OR REPLACE VIEW report_status AS
SELECT location AS bucket, key, etag, payer_account_id, billing_period, status,
       rows_read, rows_kept, rows_dropped, error, finished_at AS ingested_at,
       location, failure_kind, rows_outside_period, integration
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
