-- Accounts: users and their roles, refresh tokens, email verification codes, and the mail outbox.

CREATE TABLE users (
    id bigserial PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL DEFAULT '',
    password_hash text NOT NULL,
    role text NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'staff', 'admin')),
    email_verified_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
-- The admin's user list: filtered by role, paged by id.
CREATE INDEX users_role_id ON users (role, id);

-- Refresh tokens are stored as SHA-256 hashes. A token is used once: refreshing marks it used
-- and issues the next one of the same family; presenting a used token again revokes the family
-- (someone copied it).
CREATE TABLE refresh_tokens (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    family uuid NOT NULL,
    token_hash bytea NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);

-- One-time codes proving an email address; stored as an HMAC keyed by the server secret,
-- so a copy of the database alone does not reveal live codes. Only the newest row of a user
-- counts: issuing a new code deletes the older unused ones.
CREATE TABLE email_verifications (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_verifications_user ON email_verifications (user_id, created_at DESC);

-- Every mail the product sends is written here first, in the transaction that causes it;
-- the worker delivers it by SMTP when one is configured, otherwise it is `stored` (and shown
-- in the log in dev mode). `dead` rows failed too often and wait for a human.
CREATE TABLE mail_outbox (
    id bigserial PRIMARY KEY,
    user_id bigint REFERENCES users ON DELETE SET NULL,
    recipient text NOT NULL,
    subject text NOT NULL,
    body text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'stored', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    -- A pending row is due when this has passed. Claiming a row pushes it into the future
    -- (a lease, so a sender that dies mid-send lets another retry); a failure pushes it by
    -- the back-off.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE status = 'pending';
