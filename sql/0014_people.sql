-- The back office, for people: near-sold-out alerts, holder names, manual refunds confirmed at
-- the till. See docs/back-office.md ("Alerts", "Refunds and money").

-- A screening passed a threshold (nearly sold out, sold out): one row per screening and kind,
-- written by whichever process saw the crossing first (INSERT ... ON CONFLICT DO NOTHING), in
-- the transaction that queues the alerts. So an alert goes out once, with any number of web
-- processes, and a Redis restart forgets nothing.
CREATE TABLE screening_alerts (
    screening_id bigint NOT NULL REFERENCES screenings ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('screening_nearly_sold_out', 'screening_sold_out')),
    sold integer NOT NULL,
    sellable integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (screening_id, kind)
);

-- An event that names every ticket's holder (a gala, a festival pass): checkout and the box
-- office refuse a sale without a name per ticket. Other screenings ask when
-- SEATMAP_ASK_HOLDER_NAMES is on, and take a sale without them.
ALTER TABLE screenings ADD COLUMN holder_names_required boolean NOT NULL DEFAULT false;

-- Money taken at the counter goes back at the counter: staff confirm they paid it out, with the
-- till's reference (unique: one payout confirms one refund).
ALTER TABLE refunds
    ADD COLUMN confirmed_at timestamptz,
    ADD COLUMN confirmed_by bigint REFERENCES users ON DELETE SET NULL,
    ADD COLUMN till_reference text;
CREATE UNIQUE INDEX refunds_till_reference ON refunds (till_reference) WHERE till_reference IS NOT NULL;
