-- The back office's lookups: bookings filtered by screening, status and time (sales/bookings.py),
-- the door list and the reports' ticket sums (sales/attendees.py, sales/reports.py).

-- Bookings of one screening, newest first; orders_screening_live covers only pending and paid ones.
CREATE INDEX orders_screening_id ON orders (screening_id, id DESC);
-- Bookings of one status, newest first (every refunded order, every cancelled one).
CREATE INDEX orders_status_id ON orders (status, id DESC);
-- Bookings made between `from` and `to`.
CREATE INDEX orders_created ON orders (created_at);
-- Every ticket of a screening, void ones too (the live-seat index is partial): the door list
-- and the report's sums by channel, category and status.
CREATE INDEX tickets_screening ON tickets (screening_id, status);
