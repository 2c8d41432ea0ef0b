"""The routing core: who may take a waiting case, who should, and the offer that follows.

Pure functions of agents, waiting cases, the policy and `now`; no Kafka, no SQL. The app keeps
the state (agents' load, waiting cases, open offers) in PostgreSQL and calls these.

Vocabulary: a case *waits* in a queue (`<skill>-<channel>`) with *requirements*; the *stage* in
force is the relaxation step reached by its waiting time (or overflow); an agent is *eligible*
when presence, capacity, language, skill, proficiency and authority tier all allow; the winner
gets an *offer* that expires.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from services.router.policy import RoutingPolicy
from shared.contracts.agents import AgentProfile
from shared.contracts.base import derive_event_id
from shared.contracts.case_events import (
    AssignmentOffered,
    Priority,
    RoutingCandidate,
    RoutingDecided,
    RoutingExclusion,
)
from shared.contracts.inbound import Channel
from shared.contracts.topics import ROUTING_OFFERS
from shared.events import CaseEvent, Decision, Outbound

Outcome = Literal["offered", "waiting", "held_for_previous_agent"]
PRIORITY_RANK: dict[str, int] = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
MAX_LISTED_CANDIDATES = 10
MAX_LISTED_EXCLUSIONS = 25


@dataclass(frozen=True)
class Requirements:
    skill: str
    min_proficiency: int
    min_tier: int
    language: str
    channel: Channel
    preferred_skills: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, str | int | list[str]]:
        return {"skill": self.skill, "min_proficiency": self.min_proficiency,
                "min_authority_tier": self.min_tier, "language": self.language,
                "channel": self.channel, "preferred_skills": list(self.preferred_skills)}


# Aware, so an agent with no idle time recorded still compares with the others' real times.
_LONG_AGO = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Agent:
    """An agent as routing sees them: profile, what they carry now, since when they are idle."""

    profile: AgentProfile
    load: Mapping[str, int] = field(default_factory=dict)  # open offers + assigned, per channel
    idle_since: datetime = _LONG_AGO
    missed: int = 0  # offers missed in a row

    @property
    def agent_id(self) -> str:
        return self.profile.agent_id

    @functools.cached_property
    def levels(self) -> dict[str, int]:
        """Proficiency by skill (the profile's list, as a lookup: computed once per agent)."""
        found: dict[str, int] = {}
        for s in self.profile.skills:
            found[s.skill] = max(found.get(s.skill, 0), s.proficiency)
        return found

    def proficiency(self, skill: str) -> int:
        return self.levels.get(skill, 0)

    def used_units(self, policy: RoutingPolicy) -> int:
        return sum(policy.capacity.weight(ch) * n for ch, n in self.load.items())

    def units(self, policy: RoutingPolicy) -> int:
        if self.profile.capacity_units is not None:
            return self.profile.capacity_units
        return policy.capacity.default_units

    def room_for(self, channel: Channel, policy: RoutingPolicy) -> str | None:
        """Why the agent cannot take one more contact on the channel, or None."""
        cap = self.profile.capacity.get(channel, 0)
        held = self.load.get(channel, 0)
        if cap <= 0:
            return f"no {channel} capacity"
        if held >= cap:
            return f"at {channel} capacity ({held}/{cap})"
        used, units = self.used_units(policy), self.units(policy)
        weight = policy.capacity.weight(channel)
        if used + weight > units:
            return f"capacity units full ({used}+{weight} > {units})"
        return None

    def with_load(self, channel: str, delta: int) -> Agent:
        load = dict(self.load)
        load[channel] = max(0, load.get(channel, 0) + delta)
        return replace(self, load=load)


@dataclass(frozen=True)
class WaitingCase:
    case_id: str
    requirements: Requirements
    priority: Priority
    queued_at: datetime
    previous_agent: str | None = None
    previous_until: datetime | None = None  # the previous agent's hold ends
    excluded: frozenset[str] = frozenset()  # agents who declined or missed this case


@dataclass(frozen=True)
class Stage:
    step: int
    name: str
    requirements: Requirements
    queue: str
    next_at: datetime | None  # when the next step (or overflow) applies; None after overflow


def queue_name(skill: str, channel: str) -> str:
    return f"{skill}-{channel}"


def order_key(case: WaitingCase, policy: RoutingPolicy) -> tuple[float, str]:
    """Queue order: earlier is served first. A priority level is worth
    `aging_seconds_per_priority_level` of waiting, so higher priority goes first and a
    lower-priority case that has waited that much longer catches up: nothing starves. The key
    does not depend on `now`, so a queue can stay sorted."""
    rank = PRIORITY_RANK[case.priority]
    return (case.queued_at.timestamp() - rank * policy.aging_seconds_per_priority_level,
            case.case_id)


def stage(case: WaitingCase, policy: RoutingPolicy, now: datetime,
          kpi_overflow: bool = False) -> Stage:
    """The requirements in force after the case's waiting time. Relaxation lowers proficiency
    and drops preferred skills; it never lowers authority, language or channel."""
    req = case.requirements
    steps, overflow = policy.steps_for(req.skill, req.channel)
    waited = (now - case.queued_at).total_seconds()
    if kpi_overflow or waited >= overflow.after_seconds:
        name = "overflow (queue KPI)" if kpi_overflow and waited < overflow.after_seconds \
            else "overflow"
        relaxed = replace(req, skill=overflow.skill, min_proficiency=1, preferred_skills=())
        return Stage(len(steps), name, relaxed, queue_name(overflow.skill, req.channel), None)
    index = max(i for i, s in enumerate(steps) if s.after_seconds <= waited)
    current = steps[index]
    relaxed = replace(
        req, min_proficiency=max(1, req.min_proficiency - current.proficiency_reduction),
        preferred_skills=() if current.drop_preferred_skills else req.preferred_skills)
    after = steps[index + 1].after_seconds if index + 1 < len(steps) else overflow.after_seconds
    return Stage(index, current.name, relaxed, queue_name(req.skill, req.channel),
                 case.queued_at + timedelta(seconds=after))


def exclusion(agent: Agent, req: Requirements, case: WaitingCase,
              policy: RoutingPolicy) -> str | None:
    """Why the agent may not take the case under these requirements, or None if eligible."""
    p = agent.profile
    if p.presence != "available":
        return f"presence {p.presence}"
    if agent.agent_id in case.excluded:
        return "declined or missed this case"
    room = agent.room_for(req.channel, policy)
    if room:
        return room
    if req.language not in p.languages:
        return f"does not speak {req.language}"
    level = agent.proficiency(req.skill)
    if level == 0:
        return f"no {req.skill} skill"
    if level < req.min_proficiency:
        return f"{req.skill} proficiency {level} < {req.min_proficiency}"
    for skill in req.preferred_skills:
        if agent.proficiency(skill) == 0:
            return f"lacks preferred skill {skill}"
    if p.authority_tier < req.min_tier:
        return f"authority tier {p.authority_tier} < {req.min_tier}"
    return None


@dataclass(frozen=True)
class Selection:
    stage: Stage
    winner: Agent | None
    ranked: tuple[Agent, ...]
    excluded: tuple[tuple[str, str], ...]
    excluded_counts: Mapping[str, int]
    held_for: str | None = None  # waiting for the previous agent


def _reason_kind(reason: str) -> str:
    """Group reasons for the counts: 'at chat capacity (3/3)' → 'at chat capacity'."""
    return reason.split(" (")[0].split(" < ")[0]


def ranking(agent: Agent, skill: str, previous: str | None) -> tuple[bool, int, datetime, str]:
    """How eligible agents are ranked, best first: the previous agent on the case, the highest
    proficiency in the skill, the longest idle, then the id (unique: ties never remain)."""
    agent_id = agent.profile.agent_id
    return (agent_id != previous, -agent.levels.get(skill, 0), agent.idle_since, agent_id)


def select(case: WaitingCase, agents: Iterable[Agent], policy: RoutingPolicy, now: datetime,
           kpi_overflow: bool = False, not_listed: Mapping[str, int] | None = None) -> Selection:
    """The best eligible agent: the previous agent on the case first, then the highest
    proficiency in the required skill, then the longest idle (then agent id, for determinism).
    While the previous agent's hold lasts and they are logged in but not free, the case waits
    for them. `not_listed` counts agents the caller did not pass (an index ruled them out)."""
    st = stage(case, policy, now, kpi_overflow)
    req = st.requirements
    eligible: list[Agent] = []
    excluded: list[tuple[str, str]] = []
    counts: dict[str, int] = dict(not_listed or {})
    previous: Agent | None = None
    for agent in agents:
        if agent.agent_id == case.previous_agent:
            previous = agent
        reason = exclusion(agent, req, case, policy)
        if reason is None:
            eligible.append(agent)
        else:
            kind = _reason_kind(reason)
            counts[kind] = counts.get(kind, 0) + 1
            if len(excluded) < MAX_LISTED_EXCLUSIONS:
                excluded.append((agent.agent_id, reason))
    prev_id = case.previous_agent
    eligible.sort(key=lambda a: ranking(a, req.skill, prev_id))
    holding = (previous is not None and case.previous_until is not None
               and now < case.previous_until and previous.profile.presence != "offline"
               and previous.agent_id not in case.excluded)
    if holding and (not eligible or eligible[0].agent_id != prev_id):
        assert previous is not None
        return Selection(st, None, tuple(eligible[:MAX_LISTED_CANDIDATES]), tuple(excluded),
                         counts, held_for=previous.agent_id)
    winner = eligible[0] if eligible else None
    return Selection(st, winner, tuple(eligible[:MAX_LISTED_CANDIDATES]), tuple(excluded),
                     counts)


@dataclass(frozen=True)
class Routed:
    decision: Decision
    selection: Selection
    offer: AssignmentOffered | None


def route(case: WaitingCase, agents: Iterable[Agent], policy: RoutingPolicy, cause_id: str,
          trigger: str, now: datetime, kpi_overflow: bool = False,
          not_listed: Mapping[str, int] | None = None) -> Routed:
    """Decide for one waiting case: `routing.decided` always, and an offer when someone wins.
    Ids derive from `cause_id`, so a redelivered cause decides identically and logs nothing new."""
    sel = select(case, agents, policy, now, kpi_overflow, not_listed)
    st = sel.stage
    decision_id = str(derive_event_id(cause_id, f"routing.decided/{case.case_id}"))
    outcome: Outcome = ("offered" if sel.winner else
               "held_for_previous_agent" if sel.held_for else "waiting")
    decided = RoutingDecided(
        case_id=case.case_id, decision_id=decision_id, trigger=trigger, queue=st.queue,
        step=st.step, step_name=st.name, requirements=st.requirements.as_dict(),
        candidates=[RoutingCandidate(agent_id=a.agent_id, proficiency=a.proficiency(
            st.requirements.skill), idle_since=a.idle_since,
            previous_agent=a.agent_id == case.previous_agent) for a in sel.ranked],
        excluded=[RoutingExclusion(agent_id=a, reason=r) for a, r in sel.excluded]
        + ([RoutingExclusion(agent_id="*", reason=f"held for previous agent {sel.held_for}")]
           if sel.held_for else []),
        excluded_counts=dict(sel.excluded_counts),
        winner=sel.winner.agent_id if sel.winner else None, outcome=outcome)
    events = [CaseEvent.derived(cause_id, f"routing.decided/{case.case_id}", case.case_id,
                                "routing.decided", now, decided)]
    if sel.winner is None:
        return Routed(Decision(events=tuple(events)), sel, None)
    agent_id = sel.winner.agent_id
    offer_id = f"offer-{derive_event_id(cause_id, f'offer/{case.case_id}/{agent_id}')}"
    data = AssignmentOffered(case_id=case.case_id, offer_id=offer_id, agent_id=agent_id,
                             queue=st.queue, channel=case.requirements.channel,
                             expires_at=now + timedelta(seconds=policy.offer_ttl_seconds))
    offered = CaseEvent.derived(cause_id, f"assignment.offered/{case.case_id}/{agent_id}",
                                case.case_id, "assignment.offered", now, data)
    to_agent = Outbound(topic=ROUTING_OFFERS, key=agent_id, type="assignment.offered",
                        event_id=offered.event_id, subject=case.case_id, time=now, data=data,
                        caused_by=offered.event_id)
    return Routed(Decision(events=(*events, offered), outbound=(to_agent,)), sel, data)


def dispatch(waiting: Sequence[WaitingCase], agents: Sequence[Agent], policy: RoutingPolicy,
             cause_id: str, trigger: str, now: datetime,
             overflowing: frozenset[str] = frozenset(), only_offers: bool = True,
             ) -> tuple[Decision, list[AssignmentOffered]]:
    """Offer waiting cases, in queue order, to the agents who are free now. Each offer takes
    capacity at once, so one pass never offers an agent more than they can carry. With
    `only_offers`, cases that still wait log no `routing.decided` (an agent freeing up would
    otherwise log a line on every waiting case)."""
    pool = {a.agent_id: a for a in agents}
    decision, offers = Decision(), []
    for case in sorted(waiting, key=lambda c: order_key(c, policy)):
        if not any(a.profile.presence == "available" for a in pool.values()):
            break
        kpi = queue_name(case.requirements.skill, case.requirements.channel) in overflowing
        routed = route(case, pool.values(), policy, f"{cause_id}/{case.case_id}", trigger, now,
                       kpi)
        if routed.offer is None:
            if not only_offers:
                decision += routed.decision
            continue
        decision += routed.decision
        offers.append(routed.offer)
        winner = pool[routed.offer.agent_id]
        pool[winner.agent_id] = winner.with_load(case.requirements.channel, +1)
    return decision, offers


def after_miss(agent: Agent, policy: RoutingPolicy) -> tuple[int, bool]:
    """An offer expired unanswered: (misses in a row, whether the agent is now set away)."""
    missed = agent.missed + 1
    return missed, missed >= policy.max_missed_offers


def queue_kpis_exceeded(queued_at: Sequence[datetime], skill: str, channel: str,
                        policy: RoutingPolicy, now: datetime) -> bool:
    """A queue overflows early when too many cases wait in it or the oldest waited too long."""
    if not queued_at:
        return False
    _steps, overflow = policy.steps_for(skill, channel)
    oldest = (now - min(queued_at)).total_seconds()
    return len(queued_at) > overflow.max_waiting or oldest > overflow.max_oldest_wait_seconds
