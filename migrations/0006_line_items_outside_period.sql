-- Line items dated outside the report's billing period: kept in the report's month (AWS's own
-- totals include them) and counted, so that someone can look.
ALTER TABLE reports ADD COLUMN rows_outside_period bigint;

CREATE OR REPLACE VIEW report_status AS
SELECT location AS bucket, key, etag, payer_account_id, billing_period, status,
       rows_read, rows_kept, rows_dropped, error, finished_at AS ingested_at,
       location, failure_kind, rows_outside_period
FROM reports;
