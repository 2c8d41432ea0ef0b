-- escalation (issue 6): escalations with levels and acknowledgement deadlines (durable timers),
-- deliveries to external sinks keyed by notification id, agent tiers, digest items, inputs seen.

CREATE TABLE escalation (
    escalation_id  text        PRIMARY KEY,
    case_id        text        NOT NULL,
    reason         text        NOT NULL,
    rule           text        NOT NULL,
    episode        integer     NOT NULL,
    state          text        NOT NULL
        CHECK (state IN ('open', 'acknowledged', 'exhausted', 'resolved')),
    level          integer     NOT NULL,
    repeat         integer     NOT NULL,
    notifications  integer     NOT NULL,
    opened_at      timestamptz NOT NULL,
    -- the acknowledgement deadline; NULL unless open
    next_fire_at   timestamptz,
    assigned_agent text,
    requeue_tier   integer,
    UNIQUE (case_id, reason, episode)
);
CREATE INDEX escalation_case_idx ON escalation (case_id);
-- The timer claims by this index.
CREATE INDEX escalation_next_fire_idx ON escalation (next_fire_at) WHERE state = 'open';

-- One row per notification and external sink, written in the transaction that decided to notify;
-- the delivery worker marks it delivered, so a restart never sends a delivered one again.
CREATE TABLE escalation_delivery (
    notification_id text        NOT NULL,
    sink            text        NOT NULL,
    case_id         text,
    body            jsonb       NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    delivered_at    timestamptz,
    PRIMARY KEY (notification_id, sink)
);
CREATE INDEX escalation_delivery_due_idx ON escalation_delivery (next_attempt_at)
    WHERE state = 'pending';

-- Authority tiers from helpdesk.agents (the escalation service's own copy).
CREATE TABLE escalation_agent (
    agent_id       text        PRIMARY KEY,
    authority_tier integer     NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- Low-priority triggers waiting for their target's digest; digest_id once sent.
CREATE TABLE escalation_digest_item (
    target    text        NOT NULL,
    case_id   text        NOT NULL,
    reason    text        NOT NULL,
    at        timestamptz NOT NULL,
    summary   text        NOT NULL,
    digest_id text
);
CREATE UNIQUE INDEX escalation_digest_pending_idx ON escalation_digest_item (target, case_id, reason)
    WHERE digest_id IS NULL;

-- Inputs already applied: a redelivered breach must not open a second episode.
CREATE TABLE escalation_input (
    event_id text        PRIMARY KEY,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
