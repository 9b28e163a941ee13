-- A statement's rollup rows, found by their statement: rewriting a month compares the new rows
-- with these and deletes those that changed. The month-first indexes, made for the dashboards,
-- reach them only through every integration's rows of that month (service_daily_costs' names
-- the account next, tag_costs' the tag key), so each rewrite read the whole month of every
-- integration: 94 ms a statement on average with 200 small integrations (bench/integrations.sh),
-- and more with each integration added. resource_costs' index names the statement right after
-- the month, and account_months and report_totals are found by their statement already.
CREATE INDEX service_daily_costs_by_statement
    ON service_daily_costs (integration, payer_account_id, entity, billing_period);
CREATE INDEX tag_costs_by_statement
    ON tag_costs (integration, payer_account_id, entity, billing_period);
