-- The ledger: one row per report object, for the version last seen and what became of it.
CREATE TABLE reports (
    bucket                text        NOT NULL,  -- s3://bucket/prefix or dir:PATH
    key                   text        NOT NULL,
    etag                  text        NOT NULL,
    size                  bigint      NOT NULL,
    last_modified         timestamptz,
    payer_account_id      text        NOT NULL,
    billing_period        date        NOT NULL,  -- first day of the month
    entity                text        NOT NULL DEFAULT '',  -- billing-entity infix, '' for none
    variant               text        NOT NULL CHECK (variant IN ('plain', 'with-resources-and-tags')),
    status                text        NOT NULL CHECK (status IN ('ingested', 'failed', 'superseded')),
    -- A failure worth trying again on the next poll (network, S3), not one in the content.
    retryable             boolean     NOT NULL DEFAULT false,
    rows_read             bigint,
    rows_kept             bigint,
    rows_dropped          bigint,
    invoice_status        text        CHECK (invoice_status IN ('estimated', 'final')),
    -- Which monitored accounts the stored data was filtered with.
    monitored_fingerprint text,
    error                 text,
    started_at            timestamptz NOT NULL,
    finished_at           timestamptz NOT NULL,
    PRIMARY KEY (bucket, key)
);
