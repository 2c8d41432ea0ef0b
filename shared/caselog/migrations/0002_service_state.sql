-- State the services keep beside the log.
-- (Kept here under its released name although it creates tables of intake, sla and router:
-- the file name is the version a deployed database recorded. Their grants and later
-- migrations are in services/<name>/migrations/.)

-- intake: which case a thread (email message id, chat session, call) belongs to.
CREATE TABLE intake_thread (
    thread_key  text        PRIMARY KEY,
    case_id     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- sla: durable clocks; the timer loop claims due ones with FOR UPDATE SKIP LOCKED.
CREATE TABLE sla_clock (
    clock_id    text        PRIMARY KEY,
    case_id     text        NOT NULL,
    metric      text        NOT NULL,
    policy      text        NOT NULL,
    started_at  timestamptz NOT NULL,
    due_at      timestamptz NOT NULL,
    state       text        NOT NULL CHECK (state IN ('running', 'met', 'breached')),
    closed_at   timestamptz,
    -- the trace of the contact that started the clock, so its breach joins the same trace
    traceparent text
);
CREATE INDEX sla_clock_due_idx ON sla_clock (due_at) WHERE state = 'running';
CREATE INDEX sla_clock_case_idx ON sla_clock (case_id);

-- router: the agents it knows and the offers it made.
CREATE TABLE router_agent (
    agent_id    text        PRIMARY KEY,
    profile     jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE router_offer (
    offer_id    text        PRIMARY KEY,
    case_id     text        NOT NULL,
    agent_id    text        NOT NULL,
    channel     text        NOT NULL,
    -- what the case needs (skill, language, queue, priority), to re-offer after a decline
    needs       jsonb       NOT NULL,
    state       text        NOT NULL
        CHECK (state IN ('offered', 'accepted', 'declined', 'expired', 'released')),
    offered_at  timestamptz NOT NULL
);
CREATE INDEX router_offer_case_idx ON router_offer (case_id);
CREATE INDEX router_offer_agent_idx ON router_offer (agent_id, state);
