-- Narrower usages (README, "Usages and their kinds"). A usage's product, usage type, operation,
-- zone, invoice, description, category, region, purchase option, line item type, unit and list
-- price are the same for most of a month's usages: they move to `usage_kinds`, one row per
-- distinct kind and statement version, and a usage keeps its kind's id, its resource and its
-- tags. PostgreSQL copied a month of 2.45 M usages in 14.9 s as wide rows and in 6.0 s as
-- narrow ones (same machine, same load, server-side COPY in binary format).
--
-- `usage_kinds` is partitioned like `daily_usages` (by integration, then by statement version):
-- a version's kinds are swapped in and dropped with its other rows.

-- Made again after the migrations (views.sql), with the readers' views on it.
DROP VIEW IF EXISTS focus_costs CASCADE;

ALTER TABLE daily_usages RENAME TO daily_usages_wide;

-- What a statement version's line items were for, less their resource and tags.
CREATE TABLE usage_kinds (
    statement_version bigint NOT NULL,  -- statements.version
    kind_id           bigint NOT NULL,
    product_name      text   NOT NULL,
    usage_type        text   NOT NULL,
    operation         text   NOT NULL,
    availability_zone text   NOT NULL,
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

-- A statement version's usages: its kind, resource and tags.
CREATE TABLE daily_usages (
    statement_version bigint NOT NULL,  -- statements.version
    usage_id          bigint NOT NULL,
    kind_id           bigint NOT NULL,  -- usage_kinds.kind_id of the same version
    resource_id       text   NOT NULL,  -- '' in the plain variant
    tags              jsonb  NOT NULL,  -- {"user:Name": "web", …}, non-empty values only
    integration       text   NOT NULL   -- statements.integration
) PARTITION BY LIST (integration);

-- Whoever could use the usages before can use both tables now.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT t.new, a.privilege_type, a.grantee::regrole::text AS grantee
             FROM (VALUES ('daily_usages'), ('usage_kinds')) AS t(new)
             JOIN pg_class c ON c.oid = 'daily_usages_wide'::regclass,
                  aclexplode(c.relacl) a
             WHERE a.grantee <> c.relowner AND a.grantee <> 0 LOOP
        EXECUTE format('GRANT %s ON %I TO %s', g.privilege_type, g.new, g.grantee);
    END LOOP;
END $$;

-- The parents a statement version has a partition under, for the functions below.
CREATE FUNCTION daily_parents() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY['daily_costs', 'daily_usages', 'usage_kinds'] $$;

-- As in migration 13, for the three parents.
CREATE OR REPLACE FUNCTION ensure_integration_partitions(integration text) RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF to_regclass(integration_partition('usage_kinds', integration)) IS NOT NULL THEN
        RETURN;
    END IF;
    LOCK TABLE ONLY daily_costs, ONLY daily_usages, ONLY usage_kinds
        IN SHARE UPDATE EXCLUSIVE MODE;
    FOREACH parent IN ARRAY daily_parents() LOOP
        IF to_regclass(integration_partition(parent, integration)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS) PARTITION BY LIST (statement_version)',
                           integration_partition(parent, integration), parent);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%L)',
                           parent, integration_partition(parent, integration), integration);
        END IF;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION new_daily_partitions(integration text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    version bigint;
    parent text;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    version := nextval('statement_versions');
    FOREACH parent IN ARRAY daily_parents() LOOP
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

CREATE OR REPLACE FUNCTION swap_daily_partitions(integration text, new_version bigint,
                                                 old_version bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    PERFORM ensure_integration_partitions(integration);
    EXECUTE format('LOCK TABLE ONLY %I, ONLY %I, ONLY %I IN ACCESS EXCLUSIVE MODE',
                   integration_partition('daily_costs', integration),
                   integration_partition('daily_usages', integration),
                   integration_partition('usage_kinds', integration));
    FOREACH parent IN ARRAY daily_parents() LOOP
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%s)',
                       integration_partition(parent, integration), parent || '_' || new_version,
                       new_version);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT bound_version, DROP CONSTRAINT bound_integration',
                       parent || '_' || new_version);
    END LOOP;
    IF old_version IS NOT NULL THEN
        PERFORM drop_daily_partitions(integration, old_version);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION drop_daily_partitions(integration text, old_version bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent text;
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'DELETE') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    EXECUTE format('LOCK TABLE ONLY %I, ONLY %I, ONLY %I IN ACCESS EXCLUSIVE MODE',
                   integration_partition('daily_costs', integration),
                   integration_partition('daily_usages', integration),
                   integration_partition('usage_kinds', integration));
    FOREACH parent IN ARRAY daily_parents() LOOP
        EXECUTE format('ALTER TABLE %I DETACH PARTITION %I',
                       integration_partition(parent, integration), parent || '_' || old_version);
        EXECUTE format('DROP TABLE %I', parent || '_' || old_version);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION drop_integration_partitions(integration text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF NOT has_table_privilege(session_user, 'public.daily_costs', 'DELETE') THEN
        RAISE EXCEPTION 'permission denied for table daily_costs' USING ERRCODE = '42501';
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS %I, %I, %I',
                   integration_partition('daily_costs', integration),
                   integration_partition('daily_usages', integration),
                   integration_partition('usage_kinds', integration));
END $$;

-- Existing usages become narrow: each one's kind is its own (kind_id = usage_id). The wide
-- tables are renamed out of the way first, since the new ones take their names.
DO $$
DECLARE
    i record;
    s record;
BEGIN
    FOR i IN SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
             WHERE h.inhparent = 'daily_usages_wide'::regclass LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', i.relname, i.relname || '_wide');
    END LOOP;
    FOR s IN SELECT integration, version FROM statements ORDER BY integration, version LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I',
                       'daily_usages_' || s.version, 'daily_usages_' || s.version || '_wide');
    END LOOP;
    FOR s IN SELECT integration, version FROM statements ORDER BY integration, version LOOP
        PERFORM ensure_integration_partitions(s.integration);
        EXECUTE format(
            'CREATE TABLE %I (LIKE usage_kinds INCLUDING DEFAULTS INCLUDING STORAGE)',
            'usage_kinds_' || s.version);
        EXECUTE format(
            'INSERT INTO %I (statement_version, kind_id, product_name, usage_type, operation,
                             availability_zone, invoice_id, item_description, charge_category,
                             region, purchase_option, line_item_type, pricing_unit,
                             list_unit_price, integration)
             SELECT statement_version, usage_id, product_name, usage_type, operation,
                    availability_zone, invoice_id, item_description, charge_category, region,
                    purchase_option, line_item_type, pricing_unit, list_unit_price, integration
             FROM %I',
            'usage_kinds_' || s.version, 'daily_usages_' || s.version || '_wide');
        EXECUTE format(
            'CREATE TABLE %I (LIKE daily_usages INCLUDING DEFAULTS INCLUDING STORAGE)',
            'daily_usages_' || s.version);
        EXECUTE format(
            'INSERT INTO %I (statement_version, usage_id, kind_id, resource_id, tags, integration)
             SELECT statement_version, usage_id, usage_id, resource_id, tags, integration FROM %I',
            'daily_usages_' || s.version, 'daily_usages_' || s.version || '_wide');
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%s)',
                       integration_partition('usage_kinds', s.integration),
                       'usage_kinds_' || s.version, s.version);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%s)',
                       integration_partition('daily_usages', s.integration),
                       'daily_usages_' || s.version, s.version);
    END LOOP;
END $$;
DROP TABLE daily_usages_wide;
