-- Seats taken out of sale for one screening (broken seat, camera position, house seats).
-- The live seat map in Redis is rebuilt from this table (and, later, from tickets) whenever
-- Redis has lost a screening's state.
CREATE TABLE seat_blocks (
    screening_id bigint NOT NULL REFERENCES screenings ON DELETE CASCADE,
    seat_label text NOT NULL,
    reason text NOT NULL DEFAULT '',
    created_by bigint REFERENCES users ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (screening_id, seat_label)
);
