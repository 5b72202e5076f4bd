-- The back office's accounts: the organizer role (seed 004), scoped to the cinemas it is given,
-- and accounts an admin has disabled (a cashier who left keeps no working login).

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('customer', 'staff', 'organizer', 'admin'));
-- Set: the account cannot log in or refresh, and its tokens were revoked when it was set.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;

-- The cinemas (venues) an organizer manages. Kept when the role changes away from organizer (a
-- promotion back restores them); gone with the user or the cinema.
CREATE TABLE organizer_cinemas (
    user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    cinema_id bigint NOT NULL REFERENCES cinemas ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, cinema_id)
);
-- Who organizes this cinema (its alerts go to them).
CREATE INDEX organizer_cinemas_cinema ON organizer_cinemas (cinema_id, user_id);
