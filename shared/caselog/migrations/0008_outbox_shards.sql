-- Outbox shards (issue 9): rows of one Kafka key share a shard, each shard is published in id
-- order by whichever relay holds its advisory lock, so several instances relay at once without
-- reordering a key; and parking (issue 10): a record Kafka never takes is set aside, not retried
-- for ever.
ALTER TABLE outbox ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN attempts integer NOT NULL DEFAULT 0;
DROP INDEX outbox_service_idx;
CREATE INDEX outbox_shard_idx ON outbox (service, shard, id);

CREATE TABLE outbox_parked (
    id          bigint      PRIMARY KEY,
    service     text        NOT NULL,
    topic       text        NOT NULL,
    key         bytea,
    headers     jsonb       NOT NULL,
    value       bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    reason      text        NOT NULL
);
