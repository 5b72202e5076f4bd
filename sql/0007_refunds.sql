-- Cancellations, refunds and notifications. See docs/topics/refunds.md.

-- A cancelled screening keeps why and when; its seats are never sold again.
ALTER TABLE screenings ADD COLUMN cancelled_at timestamptz, ADD COLUMN cancel_reason text;

-- Orders gain the refund states: paid -> refund_pending -> refunded.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'paid', 'expired', 'cancelled', 'refund_pending', 'refunded'));
-- A cancellation finds the live orders of one screening.
CREATE INDEX orders_screening_live ON orders (screening_id) WHERE status IN ('pending', 'paid');

-- Money we owe back: at most one refund per payment, so nothing is ever refunded twice from
-- our side; the gateway's idempotency key (derived from the id) covers its side. The `refund`
-- job moves the money; its attempts and last error are the refund's.
--   pending   -> succeeded  the gateway returned the money
--   pending   -> manual     paid at the counter (cash, card present): returned there by staff
-- closes_order: the refund returns the whole order (tickets void, order refunded); false for
-- a payment that never became tickets (late, paid twice, seats gone). The job that moves the
-- money is the one with dedupe_key 'refund:<id>' (refunds.job_key).
CREATE TABLE refunds (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders ON DELETE RESTRICT,
    payment_id bigint NOT NULL UNIQUE REFERENCES payments ON DELETE RESTRICT,
    amount bigint NOT NULL CHECK (amount >= 0),
    currency text NOT NULL,
    reason text NOT NULL,
    closes_order boolean NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'manual')),
    requested_by bigint REFERENCES users ON DELETE SET NULL,
    provider_refund_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX refunds_order ON refunds (order_id);
CREATE INDEX refunds_pending ON refunds (id) WHERE status = 'pending';

-- What a user was told (booking confirmed, refund done, screening cancelled), one row per
-- notification job, so a job that runs twice tells them once. The mail itself goes through
-- the mail outbox (sent by SMTP when configured, stored otherwise).
CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    kind text NOT NULL,
    subject text NOT NULL,
    body text NOT NULL,
    order_id bigint REFERENCES orders ON DELETE SET NULL,
    screening_id bigint REFERENCES screenings ON DELETE SET NULL,
    mail_id bigint REFERENCES mail_outbox ON DELETE SET NULL,
    dedupe_key text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_user ON notifications (user_id, id DESC);
