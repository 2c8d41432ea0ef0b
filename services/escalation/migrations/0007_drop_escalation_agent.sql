-- case.assigned now records the agent's authority tier in the log, so the escalation service no
-- longer keeps its own copy of agent profiles.
DROP TABLE escalation_agent;
