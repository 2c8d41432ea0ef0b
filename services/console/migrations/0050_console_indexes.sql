-- Console (issue 15): indexes for the supervisor console's read-only pages, so they stay fast
-- with 10,000 waiting cases, 1,000 agents and the history of every clock, offer and escalation.
-- No new tables: the console reads as the services' role and writes only events.

-- Queues: waiting cases per queue, oldest first (the aggregate and the paged list of a queue).
CREATE INDEX router_case_queue_wait_idx ON router_case (queue, queued_at, case_id)
    WHERE state = 'waiting';

-- Expected wait: offers answered (accepted) recently, per queue.
CREATE INDEX router_offer_answered_idx ON router_offer (answered_at)
    WHERE answered_at IS NOT NULL;

-- SLA risk: running clocks by due instant (0005 dropped the one on due_at), breached ones by it.
CREATE INDEX sla_clock_running_due_idx ON sla_clock (due_at) WHERE state = 'running';
CREATE INDEX sla_clock_breached_due_idx ON sla_clock (due_at) WHERE state = 'breached';

-- Escalations: the live ones (open or exhausted), newest first.
CREATE INDEX escalation_live_idx ON escalation (opened_at)
    WHERE state IN ('open', 'exhausted');

-- Agents: open offers (occupancy) per agent and channel, without reading the offers' history.
CREATE INDEX router_offer_open_idx ON router_offer (agent_id, channel)
    WHERE state IN ('offered', 'accepted');
