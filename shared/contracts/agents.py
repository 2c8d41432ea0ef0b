"""Agent events from agent desktops and workforce tools.

`helpdesk.agents` is compacted and keyed by agent id: each record is the agent's whole current
profile, so a consumer that reads the topic from the start knows every agent. What agents *do* on
cases (accept an offer, reply, solve) goes to `helpdesk.agent_activity`, keyed by case id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.channels import registry
from shared.channels.registry import ChannelName
from shared.contracts.base import Contract

Presence = Literal["available", "busy", "away", "offline"]


def _default_capacity() -> dict[str, int]:
    return {spec.name: spec.default_capacity for spec in registry.channels()}


class SkillLevel(Contract):
    skill: str = Field(min_length=1, max_length=64)
    proficiency: int = Field(ge=1, le=5)


class AgentProfile(Contract):
    """`agent.profile_changed`: the agent's skills, tier, languages, capacity and presence."""

    agent_id: str = Field(min_length=1, max_length=128)
    name: str = Field(max_length=256)
    skills: list[SkillLevel] = Field(default_factory=list, max_length=200)
    authority_tier: int = Field(default=1, ge=1, le=9)
    languages: list[str] = Field(default_factory=lambda: ["en"], max_length=50)
    capacity: dict[ChannelName, int] = Field(default_factory=_default_capacity)
    # Total load the agent carries, in the units of the router's channel weights (None: the
    # routing policy's default); per-channel counts above still cap each channel.
    capacity_units: int | None = Field(default=None, ge=0, le=10_000)
    presence: Presence = "available"
    changed_at: datetime


class OfferAccepted(Contract):
    """`agent.offer_accepted`"""

    offer_id: str = Field(min_length=1, max_length=128)
    case_id: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(min_length=1, max_length=128)
    at: datetime


class OfferDeclined(Contract):
    """`agent.offer_declined`"""

    offer_id: str = Field(min_length=1, max_length=128)
    case_id: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(default=None, max_length=1024)
    at: datetime


class AgentReplied(Contract):
    """`agent.replied`: a public reply to the customer on any channel."""

    case_id: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(min_length=1, max_length=128)
    text: str = Field(max_length=100_000)
    at: datetime


class CaseSolved(Contract):
    """`agent.case_solved`"""

    case_id: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(min_length=1, max_length=128)
    at: datetime


class CaseTransferred(Contract):
    """`agent.case_transferred`: the agent hands the case to another skill (or tier); it is
    released from the agent and routed again."""

    case_id: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(min_length=1, max_length=128)
    to_skill: str = Field(min_length=1, max_length=64)
    min_authority_tier: int | None = Field(default=None, ge=1, le=9)
    reason: str | None = Field(default=None, max_length=1024)
    at: datetime


class EscalationRequested(Contract):
    """`agent.escalation_requested`: the agent on the case asks for a supervisor or higher tier."""

    case_id: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=1024)
    min_authority_tier: int | None = Field(default=None, ge=1, le=9)
    at: datetime


class EscalationAcknowledgedByAgent(Contract):
    """`agent.escalation_acknowledged`: a supervisor takes an escalation (from a notification)."""

    case_id: str = Field(min_length=1, max_length=128)
    escalation_id: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(min_length=1, max_length=128)
    at: datetime


AGENT_TOPIC_TYPES: dict[str, type[Contract]] = {"agent.profile_changed": AgentProfile}
class StatusChanged(Contract):
    """`agent.status_changed`: the agent set the case's status on the desktop.

    `pending_customer` waits on the customer (SLA policies pause clocks on it); `solved` is
    reported as `agent.case_solved`, which also releases the agent's capacity.
    """

    case_id: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(min_length=1, max_length=128)
    status: Literal["open", "pending_customer", "on_hold"]
    at: datetime


AGENT_ACTIVITY_TYPES: dict[str, type[Contract]] = {
    "agent.offer_accepted": OfferAccepted,
    "agent.offer_declined": OfferDeclined,
    "agent.replied": AgentReplied,
    "agent.case_solved": CaseSolved,
    "agent.case_transferred": CaseTransferred,
    "agent.status_changed": StatusChanged,
    "agent.escalation_requested": EscalationRequested,
    "agent.escalation_acknowledged": EscalationAcknowledgedByAgent,
}
