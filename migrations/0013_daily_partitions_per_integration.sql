-- Storage that scales with statements (README, "Many statements"). The daily tables are
-- partitioned by integration first, and each integration's table by statement version below
-- it. A query that names its integration as a constant (every reader schema's view does)
-- plans and locks that integration's partitions alone: before, a query on `focus_costs` locked
-- every statement's, and with thousands of statements ran out of PostgreSQL's lock table. A
-- swap now locks one integration's tables, not everyone's, and attaching a partition rebuilds
-- the partition list of one integration's table, not that of every statement.
--
-- The version's partitions gain an `integration` column: a partition key must be a column. It
-- has the integration as its default, so COPY does not send it.

-- Made again after the migrations (views.sql), with the readers' views on it.
DROP VIEW focus_costs CASCADE;
ALTER TABLE daily_costs RENAME TO daily_costs_by_version;
ALTER TABLE daily_usages RENAME TO daily_usages_by_version;

-- What a statement version's line items were for (README, "SQL contract": finer detail).
CREATE TABLE daily_usages (
    statement_version bigint NOT NULL,  -- statements.version
    usage_id          bigint NOT NULL,
    product_name      text   NOT NULL,
    usage_type        text   NOT NULL,
    operation         text   NOT NULL,
    availability_zone text   NOT NULL,
    resource_id       text   NOT NULL,  -- '' in the plain variant
    tags              jsonb  NOT NULL,  -- {"user:Name": "web", …}, non-empty values only
    invoice_id        text   NOT NULL DEFAULT '',
    item_description  text   NOT NULL DEFAULT '',
    charge_category   text,
    region            text,
    purchase_option   text,
    line_item_type    text   NOT NULL DEFAULT '',
    pricing_unit      text   NOT NULL DEFAULT '',
    list_unit_price   numeric,
    integration       text   NOT NULL   -- statements.integration
) PARTITION BY LIST (integration);

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
    line_items        bigint  NOT NULL,
    amortized_cost    numeric,
    integration       text    NOT NULL   -- statements.integration
) PARTITION BY LIST (integration);
-- Small values: kept in the row (no TOAST), so a version's partition is made without a TOAST
-- table, in about half the time.
ALTER TABLE daily_costs
    ALTER linked_account_id SET STORAGE PLAIN,
    ALTER unblended_cost SET STORAGE PLAIN,
    ALTER blended_cost SET STORAGE PLAIN,
    ALTER usage_quantity SET STORAGE PLAIN,
    ALTER amortized_cost SET STORAGE PLAIN,
    ALTER integration SET STORAGE PLAIN;

-- Whoever could write the tables before can write them now.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT t.new, a.privilege_type, a.grantee::regrole::text AS grantee
             FROM (VALUES ('daily_costs_by_version', 'daily_costs'),
                          ('daily_usages_by_version', 'daily_usages')) AS t(old, new)
             JOIN pg_class c ON c.oid = t.old::regclass,
                  aclexplode(c.relacl) a
             WHERE a.grantee <> c.relowner AND a.grantee <> 0 LOOP
        EXECUTE format('GRANT %s ON %I TO %s', g.privilege_type, g.new, g.grantee);
    END LOOP;
END $$;

DROP FUNCTION new_daily_partitions();
DROP FUNCTION swap_daily_partitions(bigint, bigint);
DROP FUNCTION drop_daily_partitions(bigint);

-- The name of an integration's table under `parent`: an integration's name may be 63
-- characters long, too long for a table's name beside a prefix.
CREATE FUNCTION integration_partition(parent text, integration text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT parent || '_of_' || md5(integration) $$;

-- An integration's two tables, made and attached when missing. Writers making them take turns
-- on the lock that attaching takes anyway (SHARE UPDATE EXCLUSIVE on the parents, which does
-- not stop queries); taking a table lock also shows this transaction the tables that another
-- made meanwhile.
CREATE FUNCTION ensure_integration_partitions(integration text) RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF to_regclass(integration_partition('daily_usages', integration)) IS NOT NULL THEN
        RETURN;
    END IF;
    LOCK TABLE ONLY daily_costs, ONLY daily_usages IN SHARE UPDATE EXCLUSIVE MODE;
    IF to_regclass(integration_partition('daily_usages', integration)) IS NOT NULL THEN
        RETURN;
    END IF;
    FOREACH parent IN ARRAY ARRAY['daily_costs', 'daily_usages'] LOOP
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS) PARTITION BY LIST (statement_version)',
                       integration_partition(parent, integration), parent);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%L)',
                       parent, integration_partition(parent, integration), integration);
    END LOOP;
END $$;

-- Partitions belong to whoever owns the tables (the role that runs `migrate`); the service may
-- have no right to create, attach or drop tables, so the functions below do it for any role
-- that may insert into daily_costs (one that may already delete every row of it).

-- A new statement version of `integration` with its two partitions, not attached: only the
-- calling transaction sees them. The caller fills them with COPY (`statement_version` and
-- `integration` default to theirs), then swaps them in. They are made like their parents, whose
-- lock (ACCESS SHARE, until the transaction ends) no swap waits for: swaps lock integrations'
-- tables. The CHECKs (`bound_*`) match the partition bounds, so attaching needs no scan of the
-- rows; the swap drops them once attached (see there).
CREATE FUNCTION new_daily_partitions(integration text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    version bigint;
    parent text;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    version := nextval('statement_versions');
    FOREACH parent IN ARRAY ARRAY['daily_costs', 'daily_usages'] LOOP
        EXECUTE format(
            'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING STORAGE,
                              CONSTRAINT bound_version CHECK (statement_version = %s),
                              CONSTRAINT bound_integration CHECK (integration = %L))',
            parent || '_' || version, parent, version, integration);
        EXECUTE format('ALTER TABLE %I ALTER statement_version SET DEFAULT %s,
                                       ALTER integration SET DEFAULT %L',
                       parent || '_' || version, version, integration);
        EXECUTE format('GRANT INSERT ON %I TO %I', parent || '_' || version, session_user);
    END LOOP;
    RETURN version;
END $$;

-- Attaches `new_version`'s partitions under `integration`'s tables (made at its first
-- statement), and detaches and drops `old_version`'s (none for a new statement). Takes ACCESS
-- EXCLUSIVE locks on that integration's two tables alone, until the transaction ends: it waits
-- for queries running on them, and queries of that integration arriving meanwhile wait for
-- it. Callers bound that wait with lock_timeout and try again.
--
-- Once attached, a partition's bound is its constraint, and its CHECKs are dropped: attaching
-- reads every CHECK of the database (PostgreSQL looks for foreign keys to clone without an
-- index), so CHECKs kept on every partition would make each swap slower than the last.
CREATE FUNCTION swap_daily_partitions(integration text, new_version bigint, old_version bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    PERFORM ensure_integration_partitions(integration);
    EXECUTE format('LOCK TABLE ONLY %I, ONLY %I IN ACCESS EXCLUSIVE MODE',
                   integration_partition('daily_costs', integration),
                   integration_partition('daily_usages', integration));
    FOREACH parent IN ARRAY ARRAY['daily_costs', 'daily_usages'] LOOP
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%s)',
                       integration_partition(parent, integration), parent || '_' || new_version,
                       new_version);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT bound_version, DROP CONSTRAINT bound_integration',
                       parent || '_' || new_version);
        IF old_version IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %I',
                           integration_partition(parent, integration), parent || '_' || old_version);
            EXECUTE format('DROP TABLE %I', parent || '_' || old_version);
        END IF;
    END LOOP;
END $$;

-- Detaches and drops a statement version's partitions: for a statement that leaves the views
-- (a DBR entity's month that a CUR now delivers).
CREATE FUNCTION drop_daily_partitions(integration text, old_version bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'DELETE') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    EXECUTE format('LOCK TABLE ONLY %I, ONLY %I IN ACCESS EXCLUSIVE MODE',
                   integration_partition('daily_costs', integration),
                   integration_partition('daily_usages', integration));
    FOREACH parent IN ARRAY ARRAY['daily_costs', 'daily_usages'] LOOP
        EXECUTE format('ALTER TABLE %I DETACH PARTITION %I',
                       integration_partition(parent, integration), parent || '_' || old_version);
        EXECUTE format('DROP TABLE %I', parent || '_' || old_version);
    END LOOP;
END $$;

-- Drops an integration's tables with every version's partitions: for an integration that is
-- removed. Locks daily_costs and daily_usages whole until the transaction ends (a partition
-- leaves its parent so), so it waits for every query running on them.
CREATE FUNCTION drop_integration_partitions(integration text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'DELETE') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS %I, %I',
                   integration_partition('daily_costs', integration),
                   integration_partition('daily_usages', integration));
END $$;

-- Existing statements' partitions move under their integration's tables, without CHECKs once
-- attached (as the swap leaves them).
DO $$
DECLARE
    s record;
    parent text;
    c text;
BEGIN
    FOR s IN SELECT integration, version FROM statements ORDER BY integration, version LOOP
        PERFORM ensure_integration_partitions(s.integration);
        FOREACH parent IN ARRAY ARRAY['daily_costs', 'daily_usages'] LOOP
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %I',
                           parent || '_by_version', parent || '_' || s.version);
            EXECUTE format('ALTER TABLE %I ADD COLUMN integration text NOT NULL DEFAULT %L,
                                          ADD CHECK (integration = %L)',
                           parent || '_' || s.version, s.integration, s.integration);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%s)',
                           integration_partition(parent, s.integration),
                           parent || '_' || s.version, s.version);
            FOR c IN SELECT conname FROM pg_constraint
                     WHERE conrelid = (parent || '_' || s.version)::regclass AND contype = 'c' LOOP
                EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', parent || '_' || s.version, c);
            END LOOP;
        END LOOP;
    END LOOP;
END $$;
DROP TABLE daily_costs_by_version, daily_usages_by_version;
REVOKE EXECUTE ON FUNCTION ensure_integration_partitions(text) FROM PUBLIC;
