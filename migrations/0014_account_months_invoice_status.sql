-- Each account's month carries its statement's invoice status, written with it in the
-- statement's transaction: account_monthly_costs reads it there instead of joining every
-- statement. With 36,000 statements that join was about half the time of a one-year query over
-- every integration (bench/statements.sh).
ALTER TABLE account_months ADD COLUMN invoice_status text;
UPDATE account_months m SET invoice_status = s.invoice_status
FROM statements s
WHERE (s.integration, s.payer_account_id, s.entity, s.billing_period)
    = (m.integration, m.payer_account_id, m.entity, m.billing_period);
ALTER TABLE account_months
    ALTER COLUMN invoice_status SET NOT NULL,
    ADD CHECK (invoice_status IN ('estimated', 'final'));
