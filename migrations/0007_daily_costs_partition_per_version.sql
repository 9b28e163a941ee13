-- Replacing a statement swaps partitions instead of deleting its daily rows one by one: each
-- statement version's daily costs and usages are partitions of their own, loaded while no one
-- else can see them and attached in the transaction that makes the version current, in which
-- the old version's partitions are detached and dropped. Nothing is left behind for vacuum.
--
-- The rows are narrower: they no longer repeat the statement's payer, entity and month
-- (`statement_version` names the statement: statements.version), and a usage (product, usage
-- type, operation, zone, resource, tags) is stored once per version in daily_usages, which the
-- daily rows refer to by id. A resource billed every day of the month is one usage row and
-- 31 narrow daily rows.

CREATE SEQUENCE statement_versions;
ALTER TABLE statements ADD COLUMN version bigint;
UPDATE statements SET version = nextval('statement_versions');
ALTER TABLE statements ALTER COLUMN version SET NOT NULL;
ALTER TABLE statements ADD CONSTRAINT statements_version_key UNIQUE (version);

DROP VIEW account_daily_costs;
ALTER TABLE daily_costs RENAME TO daily_costs_before_partitioning;

-- What a statement version's line items were for. A usage has one id per version, except in a
-- report whose distinct usages outgrow the memory budget, where it may have a few.
CREATE TABLE daily_usages (
    statement_version bigint NOT NULL,  -- statements.version
    usage_id          bigint NOT NULL,
    product_name      text   NOT NULL,
    usage_type        text   NOT NULL,
    operation         text   NOT NULL,
    availability_zone text   NOT NULL,
    resource_id       text   NOT NULL,  -- '' in the plain variant
    tags              jsonb  NOT NULL   -- {"user:Name": "web", …}, non-empty values only
) PARTITION BY LIST (statement_version);

-- Line items summed per account, day and usage. A (account, day, usage) has one row, or a few
-- partial sums when the report outgrew the memory budget: always sum them.
CREATE TABLE daily_costs (
    statement_version bigint  NOT NULL,  -- statements.version
    linked_account_id text    NOT NULL,
    usage_date        date,              -- NULL for undated line items (monthly fees, tax)
    usage_id          bigint  NOT NULL,  -- daily_usages.usage_id of the same version
    unblended_cost    numeric NOT NULL,
    blended_cost      numeric NOT NULL,
    usage_quantity    numeric NOT NULL,
    line_items        bigint  NOT NULL
) PARTITION BY LIST (statement_version);

-- Partitions belong to whoever owns the tables (the role that runs `migrate`); the service may
-- have no right to create, attach or drop tables, so these two functions do it for any role
-- that may insert into daily_costs (one that may already delete every row of it).

-- A new statement version with its two partitions, not attached: only the calling transaction
-- sees them. The caller fills them with COPY (`statement_version` defaults to the version),
-- then swaps them in. The columns are spelled out: `LIKE daily_costs` would lock daily_costs
-- until the end of the transaction, and two writers holding that lock deadlock in their swaps.
-- The CHECKs match the partition bounds, so attaching needs no scan of the rows.
CREATE FUNCTION new_daily_partitions() RETURNS bigint
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
             tags              jsonb  NOT NULL)',
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

-- Attaches `new_version`'s partitions and detaches and drops `old_version`'s (none for a new
-- statement). Takes ACCESS EXCLUSIVE locks on daily_costs and daily_usages until the
-- transaction ends: it waits for queries running on them, and queries arriving meanwhile wait
-- for it. Callers bound that wait with lock_timeout and try again.
CREATE FUNCTION swap_daily_partitions(new_version bigint, old_version bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    LOCK TABLE daily_costs, daily_usages IN ACCESS EXCLUSIVE MODE;
    FOREACH parent IN ARRAY ARRAY['daily_costs', 'daily_usages'] LOOP
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%s)',
                       parent, parent || '_' || new_version, new_version);
        IF old_version IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', parent, parent || '_' || old_version);
            EXECUTE format('DROP TABLE %I', parent || '_' || old_version);
        END IF;
    END LOOP;
END $$;

-- Existing statements: their usages numbered, two partitions each.
DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT payer_account_id, entity, billing_period, version FROM statements LOOP
        EXECUTE format('CREATE TABLE %I (LIKE daily_usages, CHECK (statement_version = %s))',
                       'daily_usages_' || s.version, s.version);
        EXECUTE format('CREATE TABLE %I (LIKE daily_costs, CHECK (statement_version = %s))',
                       'daily_costs_' || s.version, s.version);
        EXECUTE format(
            'CREATE TEMPORARY TABLE numbered ON COMMIT DROP AS
             SELECT d.*, dense_rank() OVER (ORDER BY product_name, usage_type, operation,
                                            availability_zone, resource_id, tags) AS usage_id
             FROM daily_costs_before_partitioning d
             WHERE payer_account_id = $1 AND entity = $2 AND billing_period = $3')
        USING s.payer_account_id, s.entity, s.billing_period;
        EXECUTE format(
            'INSERT INTO %I SELECT DISTINCT %s, usage_id, product_name, usage_type, operation,
                    availability_zone, resource_id, tags
             FROM numbered', 'daily_usages_' || s.version, s.version);
        EXECUTE format(
            'INSERT INTO %I SELECT %s, linked_account_id, usage_date, usage_id, unblended_cost,
                    blended_cost, usage_quantity, line_items
             FROM numbered', 'daily_costs_' || s.version, s.version);
        DROP TABLE numbered;
        EXECUTE format('ALTER TABLE daily_usages ATTACH PARTITION %I FOR VALUES IN (%s)',
                       'daily_usages_' || s.version, s.version);
        EXECUTE format('ALTER TABLE daily_costs ATTACH PARTITION %I FOR VALUES IN (%s)',
                       'daily_costs_' || s.version, s.version);
    END LOOP;
END $$;
DROP TABLE daily_costs_before_partitioning;

-- Unchanged for dashboards: the same columns, the statement's from statements.
CREATE VIEW account_daily_costs AS
SELECT s.payer_account_id,
       d.linked_account_id,
       s.billing_period,
       coalesce(d.usage_date, s.billing_period) AS usage_date,
       u.product_name,
       sum(d.unblended_cost) AS unblended_cost,
       sum(d.blended_cost)   AS blended_cost,
       sum(d.usage_quantity) AS usage_quantity
FROM daily_costs d
JOIN daily_usages u USING (statement_version, usage_id)
JOIN statements s ON s.version = d.statement_version
GROUP BY s.payer_account_id, d.linked_account_id, s.billing_period,
         coalesce(d.usage_date, s.billing_period), u.product_name;
