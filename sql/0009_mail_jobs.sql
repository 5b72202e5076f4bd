-- Mail is sent by the job worker: each pending mail has a `mail` job (dedupe key mail:<id>) with
-- the jobs' retry, back-off, lease and dead letter, so the mail row keeps only what was sent to
-- whom and how it ended. Mails pending from before get their jobs here.
INSERT INTO jobs (kind, payload, max_attempts, dedupe_key)
SELECT 'mail', jsonb_build_object('mail_id', id), 8, 'mail:' || id FROM mail_outbox WHERE status = 'pending'
ON CONFLICT (dedupe_key) DO NOTHING;
DROP INDEX mail_outbox_due;
ALTER TABLE mail_outbox DROP COLUMN attempts, DROP COLUMN next_attempt_at, DROP COLUMN last_error;
