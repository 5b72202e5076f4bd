-- The job outbox: work that must happen after a change, written in the change's transaction
-- (refunds, notifications, order expiry). Workers claim due jobs with FOR UPDATE SKIP LOCKED;
-- a claim is a lease: a worker that dies (kill -9) lets its jobs come due again when the lease
-- runs out. Failures retry with exponential back-off and jitter; after max_attempts a job is
-- `dead`, kept with its last error for an admin to see and retry.
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL CHECK (max_attempts > 0),
    run_at timestamptz NOT NULL DEFAULT now(),
    locked_by text,
    locked_until timestamptz,
    last_error text,
    -- At most one job per key (e.g. `refund:17`): enqueueing it again is a no-op.
    dedupe_key text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX jobs_dead ON jobs (kind, id) WHERE status = 'dead';
