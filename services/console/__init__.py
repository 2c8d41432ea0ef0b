"""The supervisor console (issue 15): live queues, agents, SLA risk, escalations and case timelines.

A web application of its own (`python -m services.console`): Starlette, server-rendered Jinja2
pages, server-sent events for live updates. It reads PostgreSQL (the services' tables and the case
log, in read-only transactions) and Kafka (what changed, to refresh pages at once); it writes only
events, through the same contracts as an agent desktop (`agent.escalation_acknowledged`,
`agent.case_transferred` on `helpdesk.agent_activity`), never rows. See docs/console.md.
"""
