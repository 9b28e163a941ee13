-- Linked accounts whose costs are kept. Accounts named in the configuration are copied here at
-- every poll (origin 'configuration', and removed again when the configuration drops them);
-- `dbr-ingest accounts add` adds more (origin 'command').
CREATE TABLE monitored_accounts (
    linked_account_id text        PRIMARY KEY CHECK (linked_account_id ~ '^[0-9]{1,20}$'),
    name              text,
    origin            text        NOT NULL CHECK (origin IN ('configuration', 'command')),
    added_at          timestamptz NOT NULL DEFAULT now()
);
