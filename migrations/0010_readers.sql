-- Dashboards' roles, remembered so that `migrate` can grant them again after the views
-- change, and so that no two integrations ever share a reader schema.

-- The schema whose views show one integration's rows. A name, once given, is kept.
CREATE TABLE reader_schemas (
    schema_name text PRIMARY KEY,
    integration text NOT NULL UNIQUE
);

-- Roles given to `grant-reader`: every integration's rows (integration NULL), or one's.
CREATE TABLE reader_roles (
    role_name   text PRIMARY KEY,
    integration text
);

-- Schemas granted before: their views name the integration they show.
INSERT INTO reader_schemas (schema_name, integration)
SELECT n.nspname, substring(pg_get_viewdef(c.oid) FROM $$integration = '([a-z0-9_-]+)'$$)
FROM pg_namespace n
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'report_status' AND c.relkind = 'v'
WHERE n.nspname LIKE 'dbr\_%'
  AND substring(pg_get_viewdef(c.oid) FROM $$integration = '([a-z0-9_-]+)'$$) IS NOT NULL
ON CONFLICT DO NOTHING;

-- Roles granted before: those that read such a schema, or public's views without being able
-- to write the tables (the service's role can).
INSERT INTO reader_roles (role_name, integration)
SELECT r.rolname, s.integration
FROM pg_roles r
JOIN reader_schemas s ON has_schema_privilege(r.oid, s.schema_name, 'USAGE')
WHERE NOT r.rolsuper AND r.rolname <> current_user AND r.rolname NOT LIKE 'pg\_%'
ON CONFLICT DO NOTHING;

INSERT INTO reader_roles (role_name, integration)
SELECT r.rolname, NULL
FROM pg_roles r
WHERE NOT r.rolsuper AND r.rolname <> current_user AND r.rolname NOT LIKE 'pg\_%'
  AND has_table_privilege(r.oid, 'public.account_monthly_costs', 'SELECT')
  AND NOT has_table_privilege(r.oid, 'public.reports', 'INSERT')
ON CONFLICT DO NOTHING;
