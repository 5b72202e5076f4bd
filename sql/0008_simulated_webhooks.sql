-- The simulated gateway's webhooks still to deliver. A real gateway keeps trying to deliver an
-- event until the merchant acknowledges it, across its own restarts, for days; a webhook held
-- only in a process's memory (a late confirmation, a merchant that was down) would be lost
-- with the process, and a paid payment would never reach us.
CREATE TABLE simulated_webhooks (
    id bigserial PRIMARY KEY,
    payment_id text NOT NULL REFERENCES simulated_payments,
    url text NOT NULL,
    body bytea NOT NULL,                 -- signed afresh at each attempt (the timestamp is part of it)
    due_at timestamptz NOT NULL,         -- next attempt; while one runs, the lease's end
    attempts integer NOT NULL DEFAULT 0,
    last_status integer,                 -- HTTP status of the last attempt (NULL: no answer)
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX simulated_webhooks_due ON simulated_webhooks (due_at) WHERE delivered_at IS NULL;
