-- escalation (issue 10): deliveries claimed with a lease and sent outside the claiming
-- transaction, parked (never retried forever) after their attempts; escalations remember the log
-- position they were opened at, and both keep the trace of the event that caused them.

ALTER TABLE escalation_delivery DROP CONSTRAINT escalation_delivery_state_check;
UPDATE escalation_delivery SET state = 'parked' WHERE state = 'failed';
ALTER TABLE escalation_delivery ADD CONSTRAINT escalation_delivery_state_check
    CHECK (state IN ('pending', 'delivered', 'parked'));
ALTER TABLE escalation_delivery
    -- when it was parked (state 'parked': last_error says why); NULL otherwise
    ADD COLUMN parked_at   timestamptz,
    ADD COLUMN created_at  timestamptz,
    -- the trace of the decision that wrote it: the send and escalation.notified continue it
    ADD COLUMN traceparent text;
-- The worker claims per sink (a slow sink holds only its own slots).
DROP INDEX escalation_delivery_due_idx;
CREATE INDEX escalation_delivery_due_idx ON escalation_delivery (sink, next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX escalation_delivery_parked_idx ON escalation_delivery (parked_at)
    WHERE state = 'parked';

ALTER TABLE escalation
    -- the case log's seq of the event that opened it; log events up to it never acknowledge it
    ADD COLUMN opened_seq  bigint,
    -- the trace of the event that opened it: timer-driven events continue that trace
    ADD COLUMN traceparent text;
