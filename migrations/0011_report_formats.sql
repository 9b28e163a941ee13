-- Formats: a report version is a DBR object or a CUR manifest with its parts. The ledger keeps
-- its key (the DBR's key, the CUR period's manifest key) and identity (`etag`: the DBR's ETag,
-- the CUR's assemblyId), and now says which format it is and which objects it was read from.
-- A CUR's `variant` is its report's name.
ALTER TABLE reports DROP CONSTRAINT reports_variant_check;
ALTER TABLE reports
    ADD COLUMN format  text  NOT NULL DEFAULT 'dbr' CHECK (format IN ('dbr', 'cur')),
    ADD COLUMN objects jsonb;
UPDATE reports SET objects = jsonb_build_array(jsonb_build_object('key', key, 'etag', etag, 'size', size));
ALTER TABLE reports ALTER COLUMN objects SET NOT NULL;

-- The Cost and Usage Report an integration reads when its bucket has several for one payer
-- (an hourly and a daily one): NULL reads every one, and a payer with two has neither read.
ALTER TABLE integrations ADD COLUMN report_name text;

-- Which format a statement shows: a CUR's month replaces every DBR statement of its payer.
ALTER TABLE statements
    ADD COLUMN format text NOT NULL DEFAULT 'dbr' CHECK (format IN ('dbr', 'cur'));

-- A CUR line item's type as AWS wrote it (`DiscountedUsage`, `SavingsPlanNegation`, types AWS
-- adds later): the charge category is derived from it, and the full grain keeps it. '' for DBR.
ALTER TABLE daily_usages ADD COLUMN line_item_type text NOT NULL DEFAULT '';

-- The amortized cost (FOCUS's EffectiveCost: commitments spread over the usage they cover;
-- README, "Amortized cost") beside the unblended and blended costs, in the full grain, the
-- accounts' months and the rollups. Rows stored before have none: every ingested report is read
-- again at the next poll (below), and until then the views show their unblended cost.
ALTER TABLE daily_costs ADD COLUMN amortized_cost numeric;
ALTER TABLE account_months ADD COLUMN amortized_cost numeric;
ALTER TABLE service_daily_costs ADD COLUMN amortized_cost numeric;
ALTER TABLE resource_costs ADD COLUMN amortized_cost numeric;
ALTER TABLE tag_costs ADD COLUMN amortized_cost numeric;
UPDATE reports SET monitored_fingerprint = NULL WHERE status = 'ingested';

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
             purchase_option   text,
             line_item_type    text   NOT NULL DEFAULT '''')',
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
             line_items        bigint  NOT NULL,
             amortized_cost    numeric NOT NULL)',
        'daily_costs_' || version, version, version);
    EXECUTE format('GRANT INSERT ON %I, %I TO %I',
                   'daily_usages_' || version, 'daily_costs_' || version, session_user);
    RETURN version;
END $$;
