-- Linked accounts whose costs are kept, besides those named in the configuration.
CREATE TABLE monitored_accounts (
    linked_account_id text        PRIMARY KEY CHECK (linked_account_id ~ '^[0-9]{1,20}$'),
    name              text,
    added_at          timestamptz NOT NULL DEFAULT now()
);
