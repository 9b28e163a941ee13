-- What each statement (payer, billing entity, month) shows: exactly one ingested report version.
-- Replacing a statement deletes its row here, which cascades to its costs, then writes the new
-- ones, all in one transaction.
CREATE TABLE statements (
    payer_account_id text        NOT NULL,
    entity           text        NOT NULL,
    billing_period   date        NOT NULL,
    bucket           text        NOT NULL,
    key              text        NOT NULL,
    etag             text        NOT NULL,
    invoice_status   text        NOT NULL CHECK (invoice_status IN ('estimated', 'final')),
    ingested_at      timestamptz NOT NULL,
    PRIMARY KEY (payer_account_id, entity, billing_period)
);

-- Line items summed per day and usage. usage_date is NULL for undated line items (monthly fees,
-- tax, some credits).
CREATE TABLE daily_costs (
    payer_account_id  text    NOT NULL,
    entity            text    NOT NULL,
    billing_period    date    NOT NULL,
    linked_account_id text    NOT NULL,
    usage_date        date,
    product_name      text    NOT NULL,
    usage_type        text    NOT NULL,
    operation         text    NOT NULL,
    availability_zone text    NOT NULL,
    resource_id       text    NOT NULL,  -- '' in the plain variant
    tags              jsonb   NOT NULL,  -- {"user:Name": "web", …}, non-empty values only
    unblended_cost    numeric NOT NULL,
    blended_cost      numeric NOT NULL,
    usage_quantity    numeric NOT NULL,
    line_items        bigint  NOT NULL,
    FOREIGN KEY (payer_account_id, entity, billing_period) REFERENCES statements ON DELETE CASCADE
);
CREATE INDEX daily_costs_by_statement ON daily_costs (payer_account_id, entity, billing_period);

-- Line items summed per account and month, with the report's AccountTotal beside them.
CREATE TABLE account_months (
    payer_account_id        text    NOT NULL,
    entity                  text    NOT NULL,
    billing_period          date    NOT NULL,
    linked_account_id       text    NOT NULL,
    unblended_cost          numeric NOT NULL,
    blended_cost            numeric NOT NULL,
    usage_quantity          numeric NOT NULL,
    line_items              bigint  NOT NULL,
    account_total_unblended numeric,  -- NULL when the report has no footer
    account_total_blended   numeric,
    PRIMARY KEY (payer_account_id, entity, billing_period, linked_account_id),
    FOREIGN KEY (payer_account_id, entity, billing_period) REFERENCES statements ON DELETE CASCADE
);

-- The report's payer-level footer rows: Rounding, InvoiceTotal, StatementTotal.
CREATE TABLE report_totals (
    payer_account_id text    NOT NULL,
    entity           text    NOT NULL,
    billing_period   date    NOT NULL,
    record_type      text    NOT NULL CHECK (record_type IN ('Rounding', 'InvoiceTotal', 'StatementTotal')),
    invoice_id       text    NOT NULL,  -- '' where the row has none
    unblended_cost   numeric NOT NULL,
    blended_cost     numeric NOT NULL,
    FOREIGN KEY (payer_account_id, entity, billing_period) REFERENCES statements ON DELETE CASCADE
);
CREATE INDEX report_totals_by_statement ON report_totals (payer_account_id, entity, billing_period);
