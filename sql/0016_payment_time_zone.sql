-- The simulated gateway's payment page shows the deadline in the zone the merchant names when it
-- opens the payment (the cinema's, where its tickets and seat map speak), as a real gateway is
-- told the buyer's locale; it never reads our tables for it. NULL (payments opened before) is UTC.
ALTER TABLE simulated_payments ADD COLUMN time_zone text;
