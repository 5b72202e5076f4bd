-- Smart seating: the no-stranded-single-seat rule is a per-screening choice (on by default,
-- as cinemas want it; an event with free seating may turn it off).
ALTER TABLE screenings ADD COLUMN no_single_seats boolean NOT NULL DEFAULT true;
