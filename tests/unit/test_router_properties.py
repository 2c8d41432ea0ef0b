"""Properties of the router the service runs: `decide.py` over the indexed `Floor`.

Whatever agents do (log in and out, change capacity, skills and tier, accept, decline, solve,
miss offers) and whatever contacts arrive, as time passes:
- no agent is offered beyond capacity (per channel and in weighted units), below the required
  authority tier, in a language they lack, or a case they declined or missed;
- no case has two open offers;
- no case waits while an agent who may take it now is free;
- each agent's load is exactly its open offers, and the indexes match a recomputation;
- a decision leaves the floor as it found it (it is pure), and a rolled-back batch too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import event, given, settings, target
from hypothesis import strategies as st

from services.router import decide, routing
from services.router.classify import IntentGuess
from services.router.core import RouterConfig
from services.router.floor import AgentRecord, Floor, Offer, PutAgent, PutOffer
from services.router.policy import load_policy, load_taxonomy
from shared.contracts import agents as ag
from shared.contracts.case_events import ContactReceived
from shared.contracts.inbound import CustomerIdentity

POLICY = load_policy()
TAXONOMY = load_taxonomy()
T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
CHANNELS = ("email", "chat", "voice")
SKILLS = ("billing", "orders", "general")
LANGS = ("en", "es")
N_AGENTS = 5
INTENT_OF = {s: next(i.name for i in TAXONOMY.intents if i.skill == s) for s in SKILLS}


class ChosenIntent:
    """The contact's text names its skill: routing, not classification, is under test."""

    name = "test"

    def predict(self, text: str) -> IntentGuess:
        skill = next((s for s in SKILLS if s in text), "general")
        return IntentGuess(INTENT_OF[skill], skill, 0.99, (), self.name)


CONFIG = RouterConfig(POLICY, TAXONOMY, ChosenIntent())

profiles = st.tuples(
    st.just("profile"), st.integers(0, N_AGENTS - 1),
    st.sampled_from(["available", "available", "busy", "away", "offline"]),
    st.fixed_dictionaries({c: st.integers(0, 3) for c in CHANNELS}),
    st.integers(1, 3), st.one_of(st.none(), st.integers(30, 150)),
    st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=3),
    st.lists(st.sampled_from(LANGS), min_size=1, max_size=2, unique=True))
contacts = st.tuples(st.just("contact"), st.sampled_from(SKILLS), st.sampled_from(CHANNELS),
                     st.booleans(), st.sampled_from(LANGS))
answers = st.tuples(st.sampled_from(["accept", "decline", "solve"]), st.integers(0, 20))
ticks = st.tuples(st.just("tick"), st.integers(1, 400))
operations = st.lists(st.one_of(profiles, contacts, answers, ticks), max_size=60)


@dataclass
class Run:
    floor: Floor = field(default_factory=lambda: Floor(POLICY))
    now: datetime = T0
    seq: int = 0
    offers_made: int = 0

    def step(self, op: tuple[Any, ...]) -> decide.Outcome:
        self.seq += 1
        cause = f"op-{self.seq}"
        kind = op[0]
        if kind == "tick":
            self.now += timedelta(seconds=op[1])
            return self.decide(decide.tick)
        if kind == "profile":
            _, i, presence, capacity, tier, units, skills, langs = op
            profile = ag.AgentProfile(
                agent_id=f"agent-{i}", name=f"agent-{i}", authority_tier=tier,
                capacity=capacity, capacity_units=units, presence=presence, languages=langs,
                changed_at=self.now + timedelta(microseconds=self.seq),
                skills=[ag.SkillLevel(skill=s, proficiency=p) for s, p in skills.items()])
            return self.decide(decide.on_profile, cause, profile)
        if kind == "contact":
            _, skill, channel, refund, lang = op
            text = f"{skill} question" + (" about a refund of 900 EUR" if refund else "")
            contact = ContactReceived(
                case_id=f"case-{self.seq}", contact_id=f"contact-{self.seq}", channel=channel,
                source_type="test", customer=CustomerIdentity(), text=text,
                received_at=self.now, details={"language": lang})
            return self.decide(decide.on_contact, cause, contact)
        open_offers = sorted(self.floor.offers.values(), key=lambda o: o.offer_id)
        wanted = [o for o in open_offers if (o.state == "accepted") == (kind == "solve")]
        if not wanted:
            return decide.Outcome()
        o = wanted[op[1] % len(wanted)]
        if kind == "accept":
            return self.decide(decide.on_accepted, cause, ag.OfferAccepted(
                offer_id=o.offer_id, case_id=o.case_id, agent_id=o.agent_id, at=self.now))
        if kind == "decline":
            return self.decide(decide.on_declined, cause, ag.OfferDeclined(
                offer_id=o.offer_id, case_id=o.case_id, agent_id=o.agent_id, at=self.now))
        return self.decide(decide.on_solved, cause, ag.CaseSolved(
            case_id=o.case_id, agent_id=o.agent_id, at=self.now))

    def decide(self, step: Any, *args: Any) -> decide.Outcome:
        before = snapshot(self.floor)
        outcome = decide.decide(self.floor, CONFIG, self.now, step, *args)
        assert snapshot(self.floor) == before, "a decision changed the floor"
        self.floor.begin()
        for change in outcome.changes:
            self.floor.apply(change)
        self.floor.commit()
        return outcome


def snapshot(floor: Floor) -> Any:
    return (
        {k: (a.profile, dict(a.load), a.idle_since, a.missed) for k, a in floor.agents.items()},
        dict(floor.cases), dict(floor.offers),
        {k: frozenset(v) for k, v in floor._free.items() if v},
        {k: list(v) for k, v in floor._queues.items() if v},
        {k: list(v) for k, v in floor._arrivals.items() if v},
        {k: list(v) for k, v in floor.history.items()},
    )


def check_new_offers(run: Run, outcome: decide.Outcome) -> None:
    """Every offer this step made went to an agent who may take it, within capacity."""
    made = [c.offer for c in outcome.changes
            if isinstance(c, PutOffer) and c.offer.state == "offered"
            and c.offer.offered_at == run.now]
    for offer in {o.offer_id: o for o in made}.values():
        if offer.offer_id not in run.floor.offers:
            continue  # made and closed again within the step (a withdrawal)
        run.offers_made += 1
        agent = run.floor.agents[offer.agent_id]
        req = offer.needs.requirements
        ch = offer.channel
        assert agent.profile.presence == "available"
        assert agent.load.get(ch, 0) <= agent.profile.capacity.get(ch, 0)
        assert agent.used_units(POLICY) <= agent.units(POLICY)
        assert agent.profile.authority_tier >= req.min_tier
        assert req.language in agent.profile.languages
        assert agent.agent_id not in offer.needs.excluded


def check_floor(run: Run) -> None:
    floor = run.floor
    open_by_case = Counter(o.case_id for o in floor.offers.values())
    assert all(n == 1 for n in open_by_case.values()), "a case with two open offers"
    for agent in floor.agents.values():
        carried = Counter(o.channel for o in floor.offers.values()
                          if o.agent_id == agent.agent_id)
        assert {ch: agent.load.get(ch, 0) for ch in CHANNELS} == \
            {ch: carried.get(ch, 0) for ch in CHANNELS}
        for channel in CHANNELS:
            room = agent.profile.presence == "available" and \
                agent.room_for(channel, POLICY) is None  # type: ignore[arg-type]
            for s in agent.profile.skills:
                for lang in agent.profile.languages:
                    assert (agent.agent_id in floor._free[(s.skill, lang, channel)]) == room
    for case in floor.cases.values():
        if case.state == "waiting":
            assert case.case_id not in open_by_case
            queue = routing.queue_name(case.waiting.requirements.skill, case.channel)
            hot = decide._hot(floor, queue, run.now)
            sel = routing.select(case.waiting, floor.agents.values(), POLICY, run.now, hot)
            assert sel.winner is None, f"{case.case_id} waits while {sel.winner} is free"
        elif case.state == "offered":
            assert open_by_case[case.case_id] == 1


@settings(max_examples=200, deadline=None)
@given(operations)
def test_the_router_never_offers_beyond_what_agents_may_take(ops: list[tuple[Any, ...]]) -> None:
    run = Run()
    for op in ops:
        outcome = run.step(op)
        check_new_offers(run, outcome)
        check_floor(run)
    target(float(run.offers_made))  # steer towards busy floors, where the limits bite
    event("offers made" if run.offers_made else "no offer")


@dataclass
class KeptRun(Run):
    """The router app's way: each decision keeps its changes on the floor (`keep=True`)."""

    def decide(self, step: Any, *args: Any) -> decide.Outcome:
        self.floor.begin()
        outcome = decide.decide(self.floor, CONFIG, self.now, step, *args, keep=True)
        self.floor.commit()
        return outcome


@settings(max_examples=150, deadline=None)
@given(operations)
def test_a_decision_that_keeps_its_changes_leaves_the_floor_as_applying_them_would(
        ops: list[tuple[Any, ...]]) -> None:
    applied, kept = Run(), KeptRun()
    for op in ops:
        assert kept.step(op) == applied.step(op)
        assert snapshot(kept.floor) == snapshot(applied.floor)


# Decisions applied afterwards (Run) and kept by the decision (KeptRun, as the app runs them).
@pytest.mark.parametrize("make_run", [Run, KeptRun], ids=["applied", "kept"])
@settings(max_examples=60, deadline=None)
@given(first=operations, second=operations)
def test_a_rolled_back_batch_leaves_the_floor_as_it_was(
        make_run: type[Run], first: list[tuple[Any, ...]], second: list[tuple[Any, ...]]
) -> None:
    run = make_run()
    for op in first:
        run.step(op)
    before = snapshot(run.floor)
    run.floor.begin()  # a batch: each step's changes join its journal
    for op in second:
        run.step(op)
    run.floor.rollback()
    assert snapshot(run.floor) == before


agents_st = st.lists(st.tuples(
    st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), min_size=1, max_size=3),
    st.integers(1, 3), st.integers(0, 3), st.integers(0, 600),
    st.lists(st.sampled_from(LANGS), min_size=1, max_size=2, unique=True)),
    min_size=1, max_size=25)


@settings(max_examples=300, deadline=None)
@given(agents_st, st.sampled_from(SKILLS), st.integers(1, 4), st.integers(1, 3),
       st.sampled_from(LANGS), st.lists(st.integers(0, 24), max_size=4),
       st.one_of(st.none(), st.integers(0, 24)))
def test_the_shortlist_picks_the_agent_a_full_scan_would(
        agents: list[tuple[Any, ...]], skill: str, proficiency: int, tier: int, lang: str,
        excluded: list[int], previous: int | None) -> None:
    """The router ranks only a shortlist of the free agents: its winner is the winner of
    `routing.select` over every agent on the floor."""
    floor = Floor(POLICY)
    for i, (skills, agent_tier, chats, idle, langs) in enumerate(agents):
        profile = ag.AgentProfile(
            agent_id=f"a-{i:02d}", name=f"a-{i}", authority_tier=agent_tier, languages=langs,
            capacity={"email": 0, "chat": 3, "voice": 0}, changed_at=T0,
            skills=[ag.SkillLevel(skill=k, proficiency=v) for k, v in skills.items()])
        floor.load(PutAgent(AgentRecord(profile, T0, T0 - timedelta(seconds=idle))))
        for n in range(chats):
            held = routing.WaitingCase(f"held-{i}-{n}", routing.Requirements(
                skill, 1, 1, lang, "chat"), "normal", T0)
            floor.load(PutOffer(Offer(f"o-{i}-{n}", held.case_id, profile.agent_id, "chat",
                                      "accepted", T0, T0, held)))
    req = routing.Requirements(skill=skill, min_proficiency=proficiency, min_tier=tier,
                               language=lang, channel="chat")
    case = routing.WaitingCase(
        "case-x", req, "normal", T0, excluded=frozenset(f"a-{i:02d}" for i in excluded),
        previous_agent=None if previous is None else f"a-{previous:02d}")
    outcome = decide.decide(floor, CONFIG, T0, decide.route_one, case, "cause", "test")
    offered = [c.offer.agent_id for c in outcome.changes if isinstance(c, PutOffer)]
    full = routing.select(case, floor.agents.values(), POLICY, T0)
    assert offered == ([full.winner.agent_id] if full.winner else [])
