-- The immutable case event log: one row per case event, a gap-free sequence per case, and a hash
-- chained to the previous row of the same case. Applied as the owner role; the services' role gets
-- SELECT and INSERT only.

CREATE TABLE case_log (
    case_id     text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq >= 1),
    event_id    uuid        NOT NULL UNIQUE,
    type        text        NOT NULL,
    source      text        NOT NULL,
    time        timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    trace_id    text,
    -- The canonical JSON that was hashed, byte for byte; payload is derived from it for queries.
    data        text        NOT NULL,
    payload     jsonb       GENERATED ALWAYS AS (data::jsonb) STORED,
    prev_hash   text        NOT NULL,
    hash        text        NOT NULL,
    PRIMARY KEY (case_id, seq)
);

CREATE INDEX case_log_type_idx ON case_log (type);

CREATE FUNCTION case_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'case_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER case_log_no_update_delete
    BEFORE UPDATE OR DELETE ON case_log
    FOR EACH ROW EXECUTE FUNCTION case_log_refuse_change();

CREATE TRIGGER case_log_no_truncate
    BEFORE TRUNCATE ON case_log
    FOR EACH STATEMENT EXECUTE FUNCTION case_log_refuse_change();

-- What a service must publish after a database change: written in the same transaction as the log
-- rows, published by the service's relay, then deleted.
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    service     text        NOT NULL,
    topic       text        NOT NULL,
    key         bytea,
    headers     jsonb       NOT NULL,
    value       bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_service_idx ON outbox (service, id);
