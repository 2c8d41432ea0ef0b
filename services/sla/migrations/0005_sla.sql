-- sla (issue 5): clocks that pause and resume on business calendars, with warnings, cycles and
-- the policy version they started under; the case state the policy needs; processed inputs.

ALTER TABLE sla_clock DROP CONSTRAINT sla_clock_state_check;
ALTER TABLE sla_clock ADD CONSTRAINT sla_clock_state_check
    CHECK (state IN ('running', 'paused', 'met', 'breached', 'cancelled'));
ALTER TABLE sla_clock
    ADD COLUMN cycle           integer          NOT NULL DEFAULT 1,
    ADD COLUMN rule            text             NOT NULL DEFAULT 'skeleton',
    ADD COLUMN calendar        text             NOT NULL DEFAULT '24x7-utc',
    ADD COLUMN time_basis      text             NOT NULL DEFAULT 'calendar'
        CHECK (time_basis IN ('business', 'calendar')),
    ADD COLUMN target_seconds  double precision NOT NULL DEFAULT 0,
    -- business seconds consumed before running_since (a paused clock keeps its count here)
    ADD COLUMN elapsed_seconds double precision NOT NULL DEFAULT 0,
    ADD COLUMN running_since   timestamptz,
    -- [[label, business seconds remaining when it fires], ...], earliest first
    ADD COLUMN warnings        jsonb            NOT NULL DEFAULT '[]',
    ADD COLUMN warn_at         timestamptz[]    NOT NULL DEFAULT '{}',
    ADD COLUMN warnings_fired  integer          NOT NULL DEFAULT 0,
    -- the earliest of the next unfired warning and the due instant; NULL unless running
    ADD COLUMN next_fire_at    timestamptz;

-- Clocks of the walking skeleton keep running under the new timer.
UPDATE sla_clock
   SET running_since = started_at, next_fire_at = CASE WHEN state = 'running' THEN due_at END,
       target_seconds = extract(epoch FROM due_at - started_at);

DROP INDEX sla_clock_due_idx;
-- The timer claims by this index and sleeps until its smallest entry.
CREATE INDEX sla_clock_next_fire_idx ON sla_clock (next_fire_at) WHERE state = 'running';
CREATE UNIQUE INDEX sla_clock_cycle_idx ON sla_clock (case_id, metric, cycle);

-- What the policy needs to know about a case between its events (facts, status, cycles).
CREATE TABLE sla_case (
    case_id    text        PRIMARY KEY,
    state      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Case events already applied: a redelivered input must not start a second cycle.
-- (Rows may be pruned once older than the topic's retention.)
CREATE TABLE sla_input (
    event_id text        PRIMARY KEY,
    case_id  text        NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
