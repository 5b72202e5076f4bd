-- Checkout: orders made from holds, payments through a gateway, tickets, the webhook event log,
-- idempotency keys, and the simulated gateway's own ledger. See docs/topics/checkout.md.

-- An order snapshots what a hold covered, at the screening's prices, in integer minor units.
-- pending -> paid | expired | cancelled. Money received for an order that cannot be fulfilled
-- is marked on the payment (payments.needs_refund), which is what the refunds worker processes.
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    -- The buyer; NULL for a box-office sale to a walk-in customer (sold_by says who sold it).
    user_id bigint REFERENCES users ON DELETE RESTRICT,
    screening_id bigint NOT NULL REFERENCES screenings ON DELETE RESTRICT,
    channel text NOT NULL DEFAULT 'web' CHECK (channel IN ('web', 'boxoffice')),
    sold_by bigint REFERENCES users ON DELETE SET NULL,
    hold_token text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'expired', 'cancelled')),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    total bigint NOT NULL CHECK (total >= 0),
    -- The hold was extended to this moment when the order was made; a payment confirmed later
    -- does not become tickets.
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    paid_at timestamptz,
    closed_at timestamptz,
    -- False from the commit that sold the seats until Redis shows them sold (Holds.sell). The
    -- sweeper runs `sell` again for paid orders left false by a crash in between.
    seats_published boolean NOT NULL DEFAULT false,
    CHECK ((channel = 'web') = (user_id IS NOT NULL))
);
CREATE INDEX orders_user ON orders (user_id, id DESC);
-- One live order per hold: a second order for the same hold would sell the same seats twice.
CREATE UNIQUE INDEX orders_live_hold ON orders (hold_token) WHERE status IN ('pending', 'paid');
CREATE INDEX orders_pending_expiry ON orders (expires_at) WHERE status = 'pending';
CREATE INDEX orders_unpublished ON orders (paid_at) WHERE status = 'paid' AND NOT seats_published;

-- One line per ticket to be: a seat, or one unit of a general-admission area.
CREATE TABLE order_lines (
    order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
    position smallint NOT NULL,
    seat_label text,
    ga_area text,
    category text NOT NULL,
    price bigint NOT NULL CHECK (price >= 0),
    holder_name text,
    PRIMARY KEY (order_id, position),
    CHECK ((seat_label IS NULL) <> (ga_area IS NULL))
);

-- `POST /api/orders` with an Idempotency-Key: the same key and body return the same order.
CREATE TABLE order_requests (
    user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- Our side of every payment attempt. Statuses only move forward (created < processing <
-- paid | declined), so a webhook delivered out of order never undoes a later one.
-- needs_refund: money arrived that will not become tickets (late, seats gone, paid twice);
-- the refunds issue adds the refund states and the worker that clears it.
CREATE TABLE payments (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders ON DELETE RESTRICT,
    provider text NOT NULL,
    provider_ref text NOT NULL,
    amount bigint NOT NULL CHECK (amount >= 0),
    currency text NOT NULL,
    status text NOT NULL DEFAULT 'created'
        CHECK (status IN ('created', 'processing', 'paid', 'declined')),
    redirect_url text,
    needs_refund boolean NOT NULL DEFAULT false,
    refund_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, provider_ref)
);
CREATE INDEX payments_order ON payments (order_id);
CREATE INDEX payments_refund_due ON payments (id) WHERE needs_refund;

-- Every verified webhook event, once: a duplicate delivery finds its row and changes nothing.
CREATE TABLE payment_events (
    provider text NOT NULL,
    event_id text NOT NULL,
    type text NOT NULL,
    provider_ref text NOT NULL,
    outcome text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

CREATE TABLE tickets (
    id bigserial PRIMARY KEY,
    -- At least 96 random bits, URL-safe: the code is the ticket.
    code text NOT NULL UNIQUE,
    order_id bigint NOT NULL REFERENCES orders ON DELETE RESTRICT,
    -- RESTRICT: a screening that sold tickets is cancelled, never deleted.
    screening_id bigint NOT NULL REFERENCES screenings ON DELETE RESTRICT,
    seat_label text,
    ga_area text,
    category text NOT NULL,
    price bigint NOT NULL CHECK (price >= 0),
    holder_name text,
    status text NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'void')),
    created_at timestamptz NOT NULL DEFAULT now(),
    voided_at timestamptz,
    checked_in_at timestamptz,
    checked_in_by bigint REFERENCES users ON DELETE SET NULL,
    checked_in_gate text,
    CHECK ((seat_label IS NULL) <> (ga_area IS NULL))
);
-- The final guard against selling a seat twice (design invariant 1): Redis makes it fast,
-- this makes it correct.
CREATE UNIQUE INDEX tickets_one_live_per_seat ON tickets (screening_id, seat_label)
    WHERE status = 'valid' AND seat_label IS NOT NULL;
CREATE INDEX tickets_order ON tickets (order_id);
CREATE INDEX tickets_live_ga ON tickets (screening_id, ga_area) WHERE status = 'valid' AND ga_area IS NOT NULL;

-- The simulated gateway's own ledger (seatmap/simulated.py): what a real gateway keeps on its
-- side, in tables only it touches.
CREATE TABLE simulated_payments (
    id text PRIMARY KEY,
    reference text NOT NULL,
    amount bigint NOT NULL CHECK (amount >= 0),
    currency text NOT NULL,
    description text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'declined')),
    webhook_url text NOT NULL,
    return_url text NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    decided_at timestamptz
);

-- Refunds it made, keyed by the merchant's idempotency key like a real gateway: the same key
-- again returns the same refund and moves no more money.
CREATE TABLE simulated_refunds (
    id text PRIMARY KEY,
    payment_id text NOT NULL REFERENCES simulated_payments,
    idempotency_key text NOT NULL UNIQUE,
    amount bigint NOT NULL CHECK (amount > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
