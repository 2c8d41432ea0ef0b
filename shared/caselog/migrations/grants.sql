-- Re-applied after every migration run: the services' role may read and append, never rewrite.
GRANT USAGE ON SCHEMA public TO {app_role};
REVOKE ALL ON case_log FROM {app_role};
GRANT SELECT, INSERT ON case_log TO {app_role};
-- UPDATE only because the relay claims rows with SELECT ... FOR UPDATE SKIP LOCKED.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO {app_role};
GRANT USAGE ON SEQUENCE outbox_id_seq TO {app_role};
GRANT SELECT, INSERT ON outbox_parked TO {app_role};
GRANT SELECT, INSERT ON dead_letter TO {app_role};
-- `switchboard dlq redrive` records that it sent a dead letter back; nothing else changes.
GRANT UPDATE (redriven_at, redrive_count) ON dead_letter TO {app_role};
GRANT USAGE ON SEQUENCE dead_letter_id_seq TO {app_role};
