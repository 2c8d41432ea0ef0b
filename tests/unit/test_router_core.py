"""Router's core: keyword classification and agent choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router import core
from shared.contracts.agents import AgentProfile, SkillLevel
from shared.contracts.case_events import ROUTING_OFFER_TYPES, AssignmentOffered, ContactReceived
from shared.contracts.inbound import CustomerIdentity
from shared.contracts.topics import ROUTING_OFFERS

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
CHANNELS = ("email", "chat", "voice")


def contact(text: str, subject: str | None = None, channel: str = "email") -> ContactReceived:
    return ContactReceived(case_id="case-1", contact_id="contact-1", channel=channel,  # type: ignore[arg-type]
                           source_type="x", customer=CustomerIdentity(), subject=subject,
                           text=text, received_at=NOW)


def agent(agent_id: str, skills: dict[str, int] | None = None, load: dict[str, int] | None = None,
          **profile: Any) -> core.AgentLoad:
    return core.AgentLoad(AgentProfile(
        agent_id=agent_id, name=agent_id, changed_at=NOW,
        skills=[SkillLevel(skill=s, proficiency=p) for s, p in (skills or {}).items()],
        **profile), dict(load or {}))


def needs(skill: str = "billing", channel: str = "email", language: str = "en") -> core.Needs:
    return core.Needs(skill=skill, queue=f"{skill}-{channel}", priority="normal",
                      language=language, channel=channel)  # type: ignore[arg-type]


# --- classification --------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "skill"), [
    ("I want a refund", "billing"),
    ("You charged me twice", "billing"),
    ("The app shows an error on login", "technical"),
    ("My parcel never arrived", "orders"),
    ("Where is the tracking number?", "orders"),
    ("Hello, quick question", "general"),
    ("Refund please, the app is broken", "billing"),  # the first skill in the list wins
])
def test_keywords_choose_the_skill(text: str, skill: str) -> None:
    classified = core.classify(contact(text))
    assert classified.skill == skill
    assert classified.queue == f"{skill}-email"
    assert classified.case_id == "case-1"


def test_the_subject_counts_too() -> None:
    assert core.classify(contact("see subject", subject="Invoice 123")).skill == "billing"


def test_evidence_and_confidence() -> None:
    found = core.classify(contact("I want a refund"))
    assert found.evidence == ["keyword 'refund' → billing"] and found.confidence == 0.9
    nothing = core.classify(contact("Hello"))
    assert (nothing.evidence, nothing.confidence, nothing.priority) == ([], 0.4, "normal")


@pytest.mark.parametrize(("text", "channel", "priority"), [
    ("URGENT: fraud on my account", "email", "urgent"),
    ("please call asap", "chat", "urgent"),
    ("Inbound call from +1415", "voice", "high"),
    ("urgent, call me", "voice", "urgent"),
    ("a normal question", "chat", "normal"),
])
def test_priority(text: str, channel: str, priority: str) -> None:
    assert core.classify(contact(text, channel=channel)).priority == priority


# --- choosing an agent -----------------------------------------------------------------------
def chosen(agents: list[core.AgentLoad], wanted: core.Needs,
           excluded: set[str] | None = None) -> str | None:
    found = core.choose_agent(agents, wanted, excluded or set())
    return None if found is None else found.profile.agent_id


@pytest.mark.parametrize("presence", ["busy", "away", "offline"])
def test_only_available_agents(presence: str) -> None:
    agents = [agent("a", {"billing": 5}, presence=presence), agent("b", {"billing": 1})]
    assert chosen(agents, needs()) == "b"
    assert chosen(agents[:1], needs()) is None


def test_capacity_is_per_channel() -> None:
    full_chat = agent("a", {"billing": 5}, load={"chat": 3, "email": 0},
                      capacity={"email": 5, "chat": 3, "voice": 1})
    assert chosen([full_chat], needs(channel="chat")) is None
    assert chosen([full_chat], needs(channel="email")) == "a"
    no_voice = agent("v", {"billing": 5}, capacity={"email": 5, "chat": 3})
    assert chosen([no_voice], needs(channel="voice")) is None


def test_language_skill_and_exclusion() -> None:
    agents = [agent("fr", {"billing": 5}, languages=["fr"]),
              agent("tech", {"technical": 5}),
              agent("gone", {"billing": 5}),
              agent("ok", {"billing": 1})]
    assert chosen(agents, needs(), excluded={"gone"}) == "ok"
    assert chosen(agents, needs(language="fr")) == "fr"
    assert chosen(agents, needs(skill="orders")) is None


def test_general_cases_go_to_anyone_preferring_general_skill() -> None:
    agents = [agent("plain"), agent("generalist", {"general": 3})]
    assert chosen(agents, needs(skill="general")) == "generalist"
    assert chosen(agents[:1], needs(skill="general")) == "plain"


def test_higher_proficiency_first_then_lower_load_then_id() -> None:
    expert = agent("expert", {"billing": 5}, load={"email": 4})
    novice = agent("novice", {"billing": 2})
    assert chosen([novice, expert], needs()) == "expert"
    busy = agent("busy", {"billing": 4}, load={"email": 2, "chat": 1})
    idle = agent("idle", {"billing": 4}, load={"email": 1})
    assert chosen([busy, idle], needs()) == "idle"
    assert chosen([agent("b", {"billing": 4}), agent("a", {"billing": 4})], needs()) == "a"


PRESENCE = st.sampled_from(["available", "busy", "away", "offline"])
SKILLS = st.sampled_from(["billing", "technical", "orders", "general"])


@st.composite
def agent_loads(draw: st.DrawFn, index: int) -> core.AgentLoad:
    capacity = draw(st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 3)))
    return agent(
        f"agent-{index}",
        skills=draw(st.dictionaries(SKILLS, st.integers(1, 5), max_size=3)),
        load=draw(st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 4))),
        capacity=capacity, presence=draw(PRESENCE),
        languages=draw(st.lists(st.sampled_from(["en", "fr", "de"]), min_size=1, max_size=2)),
    )


@st.composite
def rosters(draw: st.DrawFn) -> list[core.AgentLoad]:
    size = draw(st.integers(0, 8))
    return [draw(agent_loads(i)) for i in range(size)]


@given(agents=rosters(), skill=SKILLS, channel=st.sampled_from(CHANNELS),
       language=st.sampled_from(["en", "fr", "de"]),
       excluded=st.sets(st.sampled_from([f"agent-{i}" for i in range(8)])))
def test_never_an_agent_at_capacity_or_unavailable(
    agents: list[core.AgentLoad], skill: str, channel: str, language: str, excluded: set[str]
) -> None:
    wanted = needs(skill, channel, language)

    def eligible(a: core.AgentLoad) -> bool:
        return (a.profile.presence == "available"
                and a.load.get(channel, 0) < a.profile.capacity.get(channel, 0)  # type: ignore[call-overload]
                and a.profile.agent_id not in excluded and language in a.profile.languages
                and (skill == "general" or any(s.skill == skill for s in a.profile.skills)))

    found = core.choose_agent(agents, wanted, excluded)
    if found is None:
        assert not any(eligible(a) for a in agents)
        return
    assert eligible(found)
    assert found.profile.presence == "available" and found.has_room(channel)
    best = max(a.proficiency(skill) for a in agents if eligible(a))
    assert found.proficiency(skill) == best
    assert sum(found.load.values()) == min(
        sum(a.load.values()) for a in agents if eligible(a) and a.proficiency(skill) == best)


# --- offers ----------------------------------------------------------------------------------
def test_an_offer_goes_to_the_agent_on_routing_offers() -> None:
    decision, found = core.offer("case-1", needs(), [agent("ada", {"billing": 5})], set(),
                                 "evt-1", NOW)
    assert found is not None and found.profile.agent_id == "ada"
    assert [e.type for e in decision.events] == ["case.queued", "assignment.offered"]
    offered = decision.events[1].data
    assert isinstance(offered, AssignmentOffered)
    assert offered.expires_at == NOW + timedelta(seconds=60)
    [message] = decision.outbound
    assert (message.topic, message.key, message.subject) == (ROUTING_OFFERS, "ada", "case-1")
    assert message.type in ROUTING_OFFER_TYPES and message.data == offered
    assert message.caused_by == decision.events[1].event_id
    again, _ = core.offer("case-1", needs(), [agent("ada", {"billing": 5})], set(), "evt-1", NOW)
    assert again == decision


def test_no_free_agent_only_queues() -> None:
    decision, found = core.offer("case-1", needs(), [], set(), "evt-1", NOW)
    assert found is None
    assert [e.type for e in decision.events] == ["case.queued"] and decision.outbound == ()
