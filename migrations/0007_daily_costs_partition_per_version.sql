-- Replacing a statement swaps a partition instead of deleting its daily rows one by one: each
-- statement version's daily costs are a partition of their own, loaded while no one else can
-- see them and attached in the transaction that makes the version current, in which the old
-- version's partition is detached and dropped. Nothing is left behind for vacuum.
--
-- The rows no longer repeat the statement's payer, entity and month: `statement_version` names
-- the statement (statements.version).

CREATE SEQUENCE statement_versions;
ALTER TABLE statements ADD COLUMN version bigint;
UPDATE statements SET version = nextval('statement_versions');
ALTER TABLE statements ALTER COLUMN version SET NOT NULL;
ALTER TABLE statements ADD CONSTRAINT statements_version_key UNIQUE (version);

DROP VIEW account_daily_costs;
ALTER TABLE daily_costs RENAME TO daily_costs_before_partitioning;

CREATE TABLE daily_costs (
    statement_version bigint  NOT NULL,  -- statements.version
    linked_account_id text    NOT NULL,
    usage_date        date,              -- NULL for undated line items (monthly fees, tax)
    product_name      text    NOT NULL,
    usage_type        text    NOT NULL,
    operation         text    NOT NULL,
    availability_zone text    NOT NULL,
    resource_id       text    NOT NULL,  -- '' in the plain variant
    tags              jsonb   NOT NULL,  -- {"user:Name": "web", …}, non-empty values only
    unblended_cost    numeric NOT NULL,
    blended_cost      numeric NOT NULL,
    usage_quantity    numeric NOT NULL,
    line_items        bigint  NOT NULL
) PARTITION BY LIST (statement_version);

-- Partitions belong to whoever owns daily_costs (the role that runs `migrate`); the service may
-- have no right to create, attach or drop tables, so these two functions do it for any role
-- that may insert into daily_costs (one that may already delete every row of it).

-- A new statement version with its partition, not attached: only the calling transaction sees
-- it. The caller fills it with COPY (its `statement_version` column defaults to the version),
-- then swaps it in.
CREATE FUNCTION new_daily_costs_partition() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    version bigint;
    partition text;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    version := nextval('statement_versions');
    partition := 'daily_costs_' || version;
    -- The columns are spelled out: `LIKE daily_costs` would lock daily_costs until the end
    -- of the transaction, and two writers holding that lock deadlock in their swaps. The
    -- CHECK matches the partition bound, so attaching the table needs no scan of its rows.
    EXECUTE format(
        'CREATE TABLE %I (
             statement_version bigint  NOT NULL DEFAULT %s CHECK (statement_version = %s),
             linked_account_id text    NOT NULL,
             usage_date        date,
             product_name      text    NOT NULL,
             usage_type        text    NOT NULL,
             operation         text    NOT NULL,
             availability_zone text    NOT NULL,
             resource_id       text    NOT NULL,
             tags              jsonb   NOT NULL,
             unblended_cost    numeric NOT NULL,
             blended_cost      numeric NOT NULL,
             usage_quantity    numeric NOT NULL,
             line_items        bigint  NOT NULL)',
        partition, version, version);
    EXECUTE format('GRANT INSERT ON %I TO %I', partition, session_user);
    RETURN version;
END $$;

-- Attaches `new_version`'s partition and detaches and drops `old_version`'s (none for a new
-- statement). Takes an ACCESS EXCLUSIVE lock on daily_costs until the transaction ends: it
-- waits for queries running on the table, and queries arriving meanwhile wait for it. Callers
-- bound that wait with lock_timeout and try again.
CREATE FUNCTION swap_daily_costs_partition(new_version bigint, old_version bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    LOCK TABLE daily_costs IN ACCESS EXCLUSIVE MODE;
    EXECUTE format('ALTER TABLE daily_costs ATTACH PARTITION %I FOR VALUES IN (%s)',
                   'daily_costs_' || new_version, new_version);
    IF old_version IS NOT NULL THEN
        EXECUTE format('ALTER TABLE daily_costs DETACH PARTITION %I', 'daily_costs_' || old_version);
        EXECUTE format('DROP TABLE %I', 'daily_costs_' || old_version);
    END IF;
END $$;

-- Existing statements: one partition each.
DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT payer_account_id, entity, billing_period, version FROM statements LOOP
        EXECUTE format('CREATE TABLE %I (LIKE daily_costs, CHECK (statement_version = %s))',
                       'daily_costs_' || s.version, s.version);
        EXECUTE format(
            'INSERT INTO %I SELECT %s, linked_account_id, usage_date, product_name, usage_type,
                    operation, availability_zone, resource_id, tags, unblended_cost,
                    blended_cost, usage_quantity, line_items
             FROM daily_costs_before_partitioning
             WHERE payer_account_id = $1 AND entity = $2 AND billing_period = $3',
            'daily_costs_' || s.version, s.version)
        USING s.payer_account_id, s.entity, s.billing_period;
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
       d.product_name,
       sum(d.unblended_cost) AS unblended_cost,
       sum(d.blended_cost)   AS blended_cost,
       sum(d.usage_quantity) AS usage_quantity
FROM daily_costs d
JOIN statements s ON s.version = d.statement_version
GROUP BY s.payer_account_id, d.linked_account_id, s.billing_period,
         coalesce(d.usage_date, s.billing_period), d.product_name;
