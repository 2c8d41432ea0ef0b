"""Property: whatever agents do and contacts arrive, the router never offers beyond an agent's
capacity (per channel and in weighted units) and never below the required authority tier."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import event, given, settings, target
from hypothesis import strategies as st

from services.router import routing
from services.router.policy import load_policy
from shared.contracts.agents import AgentProfile, SkillLevel

POLICY = load_policy()
T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
CHANNELS = ("email", "chat", "voice")
SKILLS = ("billing", "orders", "general")
LANGS = ("en", "es")
N_AGENTS = 5

profiles = st.tuples(
    st.just("profile"), st.integers(0, N_AGENTS - 1),
    st.sampled_from(["available", "available", "busy", "away", "offline"]),
    st.fixed_dictionaries({c: st.integers(0, 3) for c in CHANNELS}),
    st.integers(1, 3), st.one_of(st.none(), st.integers(30, 150)),
    st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=3),
    st.lists(st.sampled_from(LANGS), min_size=1, max_size=2, unique=True))
contacts = st.tuples(st.just("contact"), st.sampled_from(SKILLS), st.sampled_from(CHANNELS),
                     st.integers(1, 3), st.sampled_from(LANGS), st.integers(1, 5),
                     st.sampled_from(["low", "normal", "high", "urgent"]))
answers = st.tuples(st.sampled_from(["accept", "decline", "solve"]), st.integers(0, 20))
ticks = st.tuples(st.just("tick"), st.integers(1, 400))
operations = st.lists(st.one_of(profiles, contacts, answers, ticks), max_size=60)


@dataclass
class Floor:
    """A tiny in-memory router around the pure core, as the app uses it."""

    now: datetime = T0
    agents: dict[str, routing.Agent] = field(default_factory=dict)
    waiting: dict[str, routing.WaitingCase] = field(default_factory=dict)
    open: dict[str, tuple[routing.WaitingCase, str, datetime, bool]] = field(default_factory=dict)
    seq: int = 0
    offers_made: int = 0

    def load(self, agent_id: str, channel: str, delta: int) -> None:
        self.agents[agent_id] = self.agents[agent_id].with_load(channel, delta)

    def back_to_queue(self, offer_id: str, exclude: bool) -> None:
        c, agent_id, _, _ = self.open.pop(offer_id)
        self.load(agent_id, c.requirements.channel, -1)
        self.waiting[c.case_id] = replace(c, excluded=c.excluded | {agent_id}) if exclude else c

    def apply(self, op: tuple[Any, ...]) -> None:
        self.seq += 1
        kind = op[0]
        if kind == "profile":
            _, i, presence, capacity, tier, units, skills, langs = op
            agent_id = f"agent-{i}"
            old = self.agents.get(agent_id)
            profile = AgentProfile(
                agent_id=agent_id, name=agent_id, authority_tier=tier, capacity=capacity,
                capacity_units=units, presence=presence, languages=langs, changed_at=self.now,
                skills=[SkillLevel(skill=s, proficiency=p) for s, p in skills.items()])
            self.agents[agent_id] = routing.Agent(
                profile, dict(old.load) if old else {}, self.now, 0)
            if presence != "available":
                for offer_id, (_, who, _, accepted) in list(self.open.items()):
                    if who == agent_id and (presence == "offline" or not accepted):
                        self.back_to_queue(offer_id, exclude=False)
        elif kind == "contact":
            _, skill, channel, tier, lang, prof, priority = op
            req = routing.Requirements(skill=skill, min_proficiency=prof, min_tier=tier,
                                       language=lang, channel=channel)
            case_id = f"case-{self.seq}"
            self.waiting[case_id] = routing.WaitingCase(case_id, req, priority, self.now)
        elif kind in ("accept", "decline", "solve"):
            wanted = [o for o, v in sorted(self.open.items()) if v[3] == (kind == "solve")]
            if not wanted:
                return
            offer_id = wanted[op[1] % len(wanted)]
            c, agent_id, at, _ = self.open[offer_id]
            if kind == "accept":
                self.open[offer_id] = (c, agent_id, at, True)
            elif kind == "decline":
                self.back_to_queue(offer_id, exclude=True)
            else:
                del self.open[offer_id]
                self.load(agent_id, c.requirements.channel, -1)
        else:
            self.now += timedelta(seconds=op[1])
            ttl = timedelta(seconds=POLICY.offer_ttl_seconds)
            for offer_id, (_, agent_id, at, accepted) in list(self.open.items()):
                if not accepted and at + ttl <= self.now:
                    missed, away = routing.after_miss(self.agents[agent_id], POLICY)
                    a = self.agents[agent_id]
                    self.agents[agent_id] = replace(a, missed=missed, profile=a.profile.model_copy(
                        update={"presence": "away"}) if away else a.profile)
                    self.back_to_queue(offer_id, exclude=True)
        self.dispatch()

    def dispatch(self) -> None:
        _, offers = routing.dispatch(list(self.waiting.values()), list(self.agents.values()),
                                     POLICY, f"op-{self.seq}", "test", self.now)
        for offer in offers:
            c = self.waiting.pop(offer.case_id)
            a = self.agents[offer.agent_id]
            ch = c.requirements.channel
            # the invariants, checked against the state before this offer takes capacity
            assert a.profile.presence == "available"
            assert a.load.get(ch, 0) < a.profile.capacity.get(ch, 0)
            assert a.used_units(POLICY) + POLICY.capacity.weights[ch] <= a.units(POLICY)
            assert a.profile.authority_tier >= c.requirements.min_tier
            assert ch == offer.channel and c.requirements.language in a.profile.languages
            assert a.agent_id not in c.excluded
            self.load(a.agent_id, ch, +1)
            self.open[offer.offer_id] = (c, a.agent_id, self.now, False)
            self.offers_made += 1


@settings(max_examples=150, deadline=None)
@given(operations)
def test_never_beyond_capacity_and_never_below_the_required_tier(
        ops: list[tuple[Any, ...]]) -> None:
    floor = Floor()
    for op in ops:
        floor.apply(op)
    target(float(floor.offers_made))  # steer towards busy floors, where the limits bite
    event("offers made" if floor.offers_made else "no offer")
    for agent in floor.agents.values():
        carried = {ch: 0 for ch in CHANNELS}
        for c, who, _, _ in floor.open.values():
            if who == agent.agent_id:
                carried[c.requirements.channel] += 1
        assert {ch: agent.load.get(ch, 0) for ch in CHANNELS} == carried
