"""Kafka topic names and how they are provisioned."""

from __future__ import annotations

from dataclasses import dataclass, field

INBOUND_EMAIL = "helpdesk.inbound.email"
INBOUND_CHAT = "helpdesk.inbound.chat"
INBOUND_VOICE = "helpdesk.inbound.voice"
INBOUND_TOPICS = (INBOUND_EMAIL, INBOUND_CHAT, INBOUND_VOICE)
AGENTS = "helpdesk.agents"
AGENT_ACTIVITY = "helpdesk.agent_activity"
CASE_EVENTS = "cases.events"
ROUTING_OFFERS = "routing.offers"
SUPERVISOR_NOTIFICATIONS = "supervisor.notifications"


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)


def all_topics() -> list[TopicSpec]:
    consumed = [*INBOUND_TOPICS, AGENT_ACTIVITY, CASE_EVENTS]
    specs = [TopicSpec(t) for t in consumed]
    # Agent profiles: the latest record per agent id is the state; older ones may go.
    specs.append(TopicSpec(AGENTS, compacted=True))
    specs += [TopicSpec(ROUTING_OFFERS), TopicSpec(SUPERVISOR_NOTIFICATIONS)]
    specs += [TopicSpec(dlq(t)) for t in (*consumed, AGENTS)]
    return specs
