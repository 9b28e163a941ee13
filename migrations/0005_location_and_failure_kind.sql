-- The ledger's `bucket` column holds a location (s3://bucket/prefix or dir:PATH): name it so.
-- report_status keeps its `bucket` column for dashboards; `location` is added beside it.
ALTER TABLE reports RENAME COLUMN bucket TO location;
ALTER TABLE statements RENAME COLUMN bucket TO location;

-- A failure's kind replaces the retryable flag: 'content' waits for AWS to write a new version,
-- 'transient' and 'configuration' are tried again at the next poll.
ALTER TABLE reports ADD COLUMN failure_kind text
    CHECK (failure_kind IN ('content', 'transient', 'configuration'));
UPDATE reports SET failure_kind = CASE WHEN retryable THEN 'transient' ELSE 'content' END
WHERE status = 'failed';
ALTER TABLE reports ADD CONSTRAINT reports_failed_has_a_kind
    CHECK ((status = 'failed') = (failure_kind IS NOT NULL));
ALTER TABLE reports DROP COLUMN retryable;

CREATE OR REPLACE VIEW report_status AS
SELECT location AS bucket, key, etag, payer_account_id, billing_period, status,
       rows_read, rows_kept, rows_dropped, error, finished_at AS ingested_at,
       location, failure_kind
FROM reports;
