-- Issue 11: no identifier kept as written, no dead letter's original kept in clear.
--
-- Identifiers (thread keys, customer keys, subject keys, chat session ids, suppressed message
-- ids, the router's customer keys) are written by the services as keyed hashes
-- ("<kind>~<HMAC-SHA256, base64url>", shared/keys.py). The columns stay text; rows written
-- before this version hold identifiers as written until `switchboard keys migrate` (run once
-- after `db migrate`, with the services' key configured) replaces them by their keyed form.
-- (Kept here under its released name although it alters intake's and the router's tables as
-- well as the dead letters: the file name is the version a deployed database recorded.)
COMMENT ON COLUMN intake_thread.thread_key IS
    'keyed hash (shared/keys.py) of "email:<Message-ID>", "chat:<session>", "chatmsg:…", "call:<id>", "voice:…", "ref:<token>"';
COMMENT ON COLUMN intake_case.customer_keys IS
    'keyed hashes of "customer:<id>", "email:<address>", "phone:<E.164>": the case''s participants';
COMMENT ON COLUMN intake_case.subject_key IS 'keyed hash of "subject:<normalised subject>", or empty';
COMMENT ON COLUMN intake_chat_session.session_id IS 'keyed hash of "chat:<session id>"';
COMMENT ON COLUMN intake_suppressed.message_key IS 'keyed hash of "email:<Message-ID>"';
COMMENT ON COLUMN intake_suppressed.related_keys IS 'keyed hashes of the In-Reply-To / References keys';
COMMENT ON COLUMN router_contact.customer_key IS 'keyed hash of "id:…", "email:…" or "phone:…"';

-- A released suppression's re-submission carries a Message-ID of its own: its keyed key.
ALTER TABLE intake_suppressed ADD COLUMN release_key text;
CREATE INDEX intake_suppressed_release_idx ON intake_suppressed (release_key);

-- Dead letters: `key`, `headers` and `value` hold a redacted copy (shared/dead_letters.py);
-- the original key, headers and bytes are kept only in `sealed` (AES-256-GCM under
-- SWITCHBOARD_KEY_DLQ, bound to the row's source position), or not at all when no key is
-- configured. Rows from before this version have redacted = false and their originals in
-- clear until `switchboard dlq seal` rewrites them.
ALTER TABLE dead_letter ADD COLUMN redacted boolean NOT NULL DEFAULT false;
ALTER TABLE dead_letter ADD COLUMN sealed bytea;
