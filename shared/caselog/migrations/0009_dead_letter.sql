-- Dead letters (issue 10): every record a service could not process, kept with its reason and
-- source position, so an operator can list, inspect and redrive them (`switchboard dlq`), and so
-- a copy that Kafka cannot take (`<topic>.dlq`, through the outbox) is never lost. One row per
-- source position: a poison record redelivered after a crash is not dead-lettered twice.
CREATE TABLE dead_letter (
    id                bigserial   PRIMARY KEY,
    service           text        NOT NULL,
    source_topic      text        NOT NULL,
    source_partition  integer     NOT NULL,
    source_offset     bigint      NOT NULL,
    key               bytea,
    -- the original headers as [[name, base64 value], ...], in order
    headers           jsonb       NOT NULL,
    value             bytea       NOT NULL,
    reason            text        NOT NULL,
    failed_at         timestamptz NOT NULL,
    redriven_at       timestamptz,
    redrive_count     integer     NOT NULL DEFAULT 0,
    UNIQUE (service, source_topic, source_partition, source_offset)
);
CREATE INDEX dead_letter_topic_idx ON dead_letter (source_topic, failed_at);
