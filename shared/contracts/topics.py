"""Kafka topic names and how they are provisioned."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.channels import registry

# The built-in channels' inbound topics (shared/channels/); `inbound_topics()` has every one.
INBOUND_EMAIL = "helpdesk.inbound.email"
INBOUND_CHAT = "helpdesk.inbound.chat"
INBOUND_VOICE = "helpdesk.inbound.voice"
AGENTS = "helpdesk.agents"
AGENT_ACTIVITY = "helpdesk.agent_activity"
CASE_EVENTS = "cases.events"
ROUTING_OFFERS = "routing.offers"
SUPERVISOR_NOTIFICATIONS = "supervisor.notifications"


def inbound_topics() -> tuple[str, ...]:
    """Every registered channel's inbound topic."""
    return tuple(spec.topic for spec in registry.channels())


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)


# The card-data boundary in Kafka: the inbound topics hold what front-ends sent, as they sent it
# (intake redacts only what it writes), and a dead-letter topic's records came from them. Both
# keep records this long and no longer (`TOPIC_RETENTION_INBOUND_HOURS`,
# `TOPIC_RETENTION_DLQ_HOURS`); long enough to replay an outage of intake, or to read and
# redrive a dead letter (from the table, which keeps only the redacted copy and the sealed
# original), short enough that raw card data does not stay at rest.
DEFAULT_INBOUND_RETENTION_HOURS = 7 * 24.0
DEFAULT_DLQ_RETENTION_HOURS = 14 * 24.0


@dataclass(frozen=True)
class Retention:
    inbound_hours: float = DEFAULT_INBOUND_RETENTION_HOURS
    dlq_hours: float = DEFAULT_DLQ_RETENTION_HOURS

    def config(self, hours: float) -> dict[str, str]:
        if not hours > 0:
            raise ValueError(f"retention must be a positive number of hours, not {hours}")
        return {"retention.ms": str(round(hours * 3_600_000))}


def all_topics(retention: Retention | None = None) -> list[TopicSpec]:
    retention = retention or Retention()
    inbound = retention.config(retention.inbound_hours)
    dead = retention.config(retention.dlq_hours)
    inbound_names = inbound_topics()
    consumed = [*inbound_names, AGENT_ACTIVITY, CASE_EVENTS]
    specs = [TopicSpec(t, config=inbound if t in inbound_names else {}) for t in consumed]
    # Agent profiles: the latest record per agent id is the state; older ones may go.
    specs.append(TopicSpec(AGENTS, compacted=True))
    specs += [TopicSpec(ROUTING_OFFERS), TopicSpec(SUPERVISOR_NOTIFICATIONS)]
    specs += [TopicSpec(dlq(t), config=dead) for t in (*consumed, AGENTS)]
    return specs
