"""Router's pure core: classify a contact, pick an agent, make an offer.

The walking skeleton's rules: keyword classification to a skill, and the available agent with the
skill, spare capacity on the channel and the language, highest proficiency first, then least load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.contracts.agents import AgentProfile
from shared.contracts.case_events import (
    AssignmentOffered,
    CaseClassified,
    CaseQueued,
    ContactReceived,
    Priority,
)
from shared.contracts.inbound import Channel
from shared.contracts.topics import ROUTING_OFFERS
from shared.events import CaseEvent, Decision, Outbound

SKILL_KEYWORDS: list[tuple[str, re.Pattern[str]]] = [
    ("billing", re.compile(r"\b(refund|charge[ds]?|invoice|billing|payment|card|price)\b", re.I)),
    ("technical", re.compile(r"\b(error|bug|crash|broken|login|password|app|not working)\b", re.I)),
    ("orders", re.compile(r"\b(order|delivery|shipping|package|parcel|tracking)\b", re.I)),
]
URGENT = re.compile(r"\b(urgent|asap|immediately|emergency|fraud)\b", re.I)
OFFER_TTL = timedelta(seconds=60)


@dataclass(frozen=True)
class Needs:
    skill: str
    queue: str
    priority: Priority
    language: str
    channel: Channel


@dataclass(frozen=True)
class AgentLoad:
    profile: AgentProfile
    load: dict[str, int] = field(default_factory=dict)

    def has_room(self, channel: str) -> bool:
        return self.load.get(channel, 0) < self.profile.capacity.get(channel, 0)  # type: ignore[call-overload]

    def proficiency(self, skill: str) -> int:
        return max((s.proficiency for s in self.profile.skills if s.skill == skill), default=0)


def classify(contact: ContactReceived) -> CaseClassified:
    text = f"{contact.subject or ''}\n{contact.text}"
    evidence, skill = [], "general"
    for name, pattern in SKILL_KEYWORDS:
        found = pattern.search(text)
        if found:
            skill = name
            evidence.append(f"keyword {found.group(0)!r} → {name}")
            break
    priority: Priority = "normal"
    if URGENT.search(text):
        priority = "urgent"
        evidence.append("urgency keyword")
    elif contact.channel == "voice":
        priority = "high"
        evidence.append("voice contact waits live")
    return CaseClassified(
        case_id=contact.case_id, skill=skill, queue=f"{skill}-{contact.channel}",
        priority=priority, language="en", confidence=0.9 if evidence else 0.4, evidence=evidence,
    )


def choose_agent(agents: list[AgentLoad], needs: Needs, excluded: set[str]) -> AgentLoad | None:
    eligible = [
        a for a in agents
        if a.profile.presence == "available" and a.profile.agent_id not in excluded
        and a.has_room(needs.channel) and needs.language in a.profile.languages
        and (needs.skill == "general" or a.proficiency(needs.skill) > 0)
    ]
    if not eligible:
        return None
    return min(eligible, key=lambda a: (-a.proficiency(needs.skill),
                                        sum(a.load.values()), a.profile.agent_id))


def offer(
    case_id: str, needs: Needs, agents: list[AgentLoad], excluded: set[str], cause_id: str,
    now: datetime,
) -> tuple[Decision, AgentLoad | None]:
    """Queue the case and offer it to the best agent, if any is free."""
    queued = CaseEvent.derived(cause_id, "case.queued", case_id, "case.queued", now,
                               CaseQueued(case_id=case_id, queue=needs.queue,
                                          priority=needs.priority))
    chosen = choose_agent(agents, needs, excluded)
    if chosen is None:
        return Decision(events=(queued,)), None
    agent_id = chosen.profile.agent_id
    offer_id = f"offer-{cause_id}-{agent_id}"
    data = AssignmentOffered(case_id=case_id, offer_id=offer_id, agent_id=agent_id,
                             queue=needs.queue, channel=needs.channel, expires_at=now + OFFER_TTL)
    offered = CaseEvent.derived(cause_id, f"assignment.offered/{agent_id}", case_id,
                                "assignment.offered", now, data)
    to_agent = Outbound(topic=ROUTING_OFFERS, key=agent_id, type="assignment.offered",
                        event_id=offered.event_id, subject=case_id, time=now, data=data,
                        caused_by=offered.event_id)
    return Decision(events=(queued, offered), outbound=(to_agent,)), chosen


def needs_of(classified: CaseClassified, channel: Channel) -> Needs:
    return Needs(skill=classified.skill, queue=classified.queue, priority=classified.priority,
                 language=classified.language, channel=channel)
