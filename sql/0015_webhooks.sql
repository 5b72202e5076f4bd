-- Webhooks out to integrators (sales/webhooks.py, sales/webhook_admin.py). An event is written
-- in the transaction of the change it reports, with one delivery per subscribed endpoint and a
-- `webhook` job per delivery (dedupe key webhook:<delivery id>), so the outbox's retries,
-- back-off, lease and dead letter apply; the delivery keeps what the admin's log shows.
CREATE TABLE webhook_endpoints (
    id bigserial PRIMARY KEY,
    url text NOT NULL,
    description text NOT NULL DEFAULT '',
    event_types text[] NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    -- The HMAC key. It cannot be hashed (we must sign with it); it is returned once, at creation
    -- or rotation, and never again. After a rotation the previous one signs too, for a while.
    secret text NOT NULL,
    previous_secret text,
    previous_secret_until timestamptz,
    created_by bigint REFERENCES users ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One event, one body: every attempt to every endpoint sends these bytes (the signature, over
-- the attempt's timestamp and the body, is made afresh). `id` is the Webhook-Id receivers dedupe on.
CREATE TABLE webhook_events (
    id text PRIMARY KEY,
    type text NOT NULL,
    body bytea NOT NULL,
    screening_id bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id bigserial PRIMARY KEY,
    endpoint_id bigint NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
    event_id text NOT NULL REFERENCES webhook_events ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    last_status integer,          -- HTTP status of the last attempt (NULL: no answer)
    last_error text,
    last_attempt_at timestamptz,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, id);
-- What the endpoint list counts (pending, dead) without reading the delivered ones.
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (endpoint_id, status) WHERE status <> 'delivered';

-- Every attempt, for the delivery log (what each try got back, and how long it took).
CREATE TABLE webhook_attempts (
    id bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error text,
    duration_ms integer NOT NULL
);
CREATE INDEX webhook_attempts_of ON webhook_attempts (delivery_id, id);
