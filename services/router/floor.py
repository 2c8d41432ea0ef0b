"""The contact-centre floor as the router sees it: an indexed, in-memory state.

Agents (profile, load per channel, idle time, misses), open offers, the cases the router knows
(waiting, offered, assigned; solved ones only as long as they are cached), and customers' recent
contacts. The floor changes only by `Change`s — the state-level events a decision returns — and
each `apply` is journalled, so a decision can be tried and undone (decisions stay pure: see
`decide.py`) and a batch whose transaction failed can be rolled back without reloading.

Indexes, so each decision looks only where an answer can be:
- free agents by (skill, language, channel): agents present with room on the channel;
- waiting cases by queue (skill of their current stage, channel, language), each sorted by
  `routing.order_key`, which does not change with time;
- open offers by agent and by case, offers by expiry, waiting cases by next check;
- waiting counts and oldest arrival per queue (the overflow KPIs).
"""

from __future__ import annotations

import bisect
import heapq
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from services.router import routing
from services.router.classify import PriorContact
from services.router.policy import RoutingPolicy
from shared.channels import registry
from shared.contracts.agents import AgentProfile

OPEN = frozenset({"offered", "accepted"})
CaseState = Literal["waiting", "offered", "assigned", "solved"]
OfferState = Literal["offered", "accepted", "declined", "expired", "released", "withdrawn"]
SOLVED_CACHE = 20_000  # solved cases kept in memory (for reopening); older ones are reloaded
SCAN_LIMIT = 64  # queue entries looked at per queue for one agent before giving up


@dataclass(frozen=True)
class CaseRecord:
    """A case as the router knows it (a row of `router_case`)."""

    case_id: str
    state: CaseState
    waiting: routing.WaitingCase  # requirements, priority, arrival, previous agent, exclusions
    classification: str | None = None  # the last `case.classified`, as JSON
    step: int = 0
    next_check_at: datetime | None = None  # next relaxation step, overflow or hold end
    generation: int = 0  # counts timer re-evaluations, so each has its own event ids
    last_agent: str | None = None
    contact_text: str = ""
    customer_key: str | None = None
    stage_skill: str | None = None  # the skill its current stage is queued under
    # the requirements of that stage, valid until `next_check_at` (not stored: recomputed)
    stage_req: routing.Requirements | None = field(default=None, compare=False)

    @property
    def queue(self) -> str:
        r = self.waiting.requirements
        return routing.queue_name(r.skill, r.channel)

    @property
    def channel(self) -> str:
        return self.waiting.requirements.channel


@dataclass(frozen=True)
class Offer:
    """An offer of a case to an agent (a row of `router_offer`); open while offered or accepted,
    and then it counts in the agent's load."""

    offer_id: str
    case_id: str
    agent_id: str
    channel: str
    state: OfferState
    offered_at: datetime
    expires_at: datetime
    needs: routing.WaitingCase  # what the case needed, to re-offer it
    answered_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.state in OPEN


@dataclass(frozen=True)
class AgentRecord:
    """What is stored of an agent (its load is derived from open offers)."""

    profile: AgentProfile
    updated_at: datetime
    idle_since: datetime
    missed: int = 0


@dataclass(frozen=True)
class ContactSeen:
    contact_id: str
    customer_key: str
    prior: PriorContact


# --- changes: the only way the floor changes --------------------------------------------------
@dataclass(frozen=True)
class PutCase:
    record: CaseRecord


@dataclass(frozen=True)
class PutOffer:
    offer: Offer


@dataclass(frozen=True)
class PutAgent:
    agent: AgentRecord


@dataclass(frozen=True)
class AddContact:
    contact: ContactSeen


Change = PutCase | PutOffer | PutAgent | AddContact


class Floor:
    def __init__(self, policy: RoutingPolicy) -> None:
        self.policy = policy
        self.agents: dict[str, routing.Agent] = {}
        self.agent_records: dict[str, AgentRecord] = {}
        self.cases: dict[str, CaseRecord] = {}
        self.offers: dict[str, Offer] = {}  # open offers, and closed ones until persisted
        self.history: dict[str, list[tuple[str, PriorContact]]] = {}  # customer → contacts
        self._solved: OrderedDict[str, None] = OrderedDict()
        self._offers_of_agent: dict[str, set[str]] = defaultdict(set)
        self._offers_of_case: dict[str, set[str]] = defaultdict(set)
        self._free: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self._skilled: dict[str, list[str]] = defaultdict(list)  # sorted; any presence or load
        self._indexed: dict[str, frozenset[str]] = {}  # channels each agent is indexed free on
        self._queues: dict[tuple[str, str, str], list[tuple[tuple[float, str], str]]] = \
            defaultdict(list)
        self._arrivals: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        self._offer_due: list[tuple[datetime, str]] = []
        self._case_due: list[tuple[datetime, str]] = []
        self._journal: list[list[tuple[str, str, object]]] = []

    # --- reading ---------------------------------------------------------------------------
    def open_offers_of_agent(self, agent_id: str) -> list[Offer]:
        return sorted((self.offers[o] for o in self._offers_of_agent.get(agent_id, ())),
                      key=lambda o: o.offer_id)

    def open_offers_of_case(self, case_id: str) -> list[Offer]:
        return sorted((self.offers[o] for o in self._offers_of_case.get(case_id, ())),
                      key=lambda o: o.offer_id)

    def free_agents(self, skill: str, language: str, channel: str) -> list[routing.Agent]:
        """In no particular order: `decide.shortlist` ranks them (sorting every free agent for
        each decision was ~2 % of the router's time at a steady 50 contacts/s)."""
        agents = self.agents
        return [agents[a] for a in self._free.get((skill, language, channel), ())]

    def skilled_agents(self, skill: str, limit: int) -> list[routing.Agent]:
        """The first `limit` agents (by id) with the skill, whatever their presence or load."""
        return [self.agents[a] for a in self._skilled.get(skill, ())[:limit]]

    def waiting_count(self, queue: str) -> int:
        return len(self._arrivals.get(queue, ()))

    def oldest_arrival(self, queue: str) -> datetime | None:
        arrivals = self._arrivals.get(queue)
        return arrivals[0][0] if arrivals else None

    def hot_queues(self, now: datetime) -> frozenset[str]:
        """Queues past their KPIs (waiting count, oldest wait)."""
        hot = set()
        for queue, arrivals in self._arrivals.items():
            if not arrivals:
                continue
            skill, channel = queue.rsplit("-", 1)
            _steps, overflow = self.policy.steps_for(skill, channel)
            if len(arrivals) > overflow.max_waiting or \
                    (now - arrivals[0][0]).total_seconds() > overflow.max_oldest_wait_seconds:
                hot.add(queue)
        return frozenset(hot)

    def due_offers(self, now: datetime, limit: int) -> list[Offer]:
        """Offers still unanswered at their expiry, earliest first."""
        self._prune(self._offer_due, self._offer_entry_valid, len(self.offers))
        due: list[Offer] = []
        for at, offer_id in heapq.nsmallest(limit * 4, self._offer_due):
            if at > now or len(due) >= limit:
                break
            if self._offer_entry_valid(at, offer_id):
                due.append(self.offers[offer_id])
        return due

    def due_cases(self, now: datetime, hot: frozenset[str], limit: int,
                  timed: bool = True) -> list[CaseRecord]:
        """Waiting cases whose next check has come (unless not `timed`), then cases of hot
        queues not yet overflowed."""
        found: dict[str, CaseRecord] = {}
        if timed:
            self._prune(self._case_due, self._case_entry_valid, len(self.cases))
        for at, case_id in heapq.nsmallest(limit * 4, self._case_due) if timed else ():
            if at > now or len(found) >= limit:
                break
            if self._case_entry_valid(at, case_id):
                found[case_id] = self.cases[case_id]
        for queue in sorted(hot):
            for _at, case_id in self._arrivals.get(queue, ()):
                if len(found) >= limit:
                    break
                case = self.cases[case_id]
                if case.next_check_at is not None:
                    found.setdefault(case_id, case)
        return sorted(found.values(), key=lambda c: (c.next_check_at or now, c.case_id))

    def _offer_entry_valid(self, at: datetime, offer_id: str) -> bool:
        offer = self.offers.get(offer_id)
        return offer is not None and offer.state == "offered" and offer.expires_at == at

    def _case_entry_valid(self, at: datetime, case_id: str) -> bool:
        case = self.cases.get(case_id)
        return case is not None and case.state == "waiting" and case.next_check_at == at

    @staticmethod
    def _prune(heap: list[tuple[datetime, str]], valid: Callable[[datetime, str], bool],
               bound: int) -> None:
        """Drop entries that no longer hold (lazy deletion), and rebuild the heap when it is
        mostly stale (`bound`: at most this many entries can be valid)."""
        while heap and not valid(*heap[0]):
            heapq.heappop(heap)
        if len(heap) > max(4_096, 4 * bound):
            kept = [e for e in heap if valid(*e)]
            heapq.heapify(kept)
            heap[:] = kept

    def next_case_for(self, agent: routing.Agent, now: datetime,
                      skip: frozenset[str] = frozenset()) -> CaseRecord | None:
        """The first waiting case, in queue order, among the heads of the queues the agent
        serves, that the agent may take now — including cases of queues past their KPIs
        that overflow to a skill of the agent's."""
        if agent.profile.presence != "available":
            return None
        hot = self.hot_queues(now)
        best: tuple[tuple[float, str], str] | None = None
        skills = {s.skill for s in agent.profile.skills}
        for channel in registry.names():
            if agent.room_for(channel, self.policy) is not None:
                continue
            served = set(skills)
            for queue in hot:  # a hot queue's cases wait for its overflow skill too
                skill, queue_channel = queue.rsplit("-", 1)
                if queue_channel == channel and \
                        self.policy.steps_for(skill, channel)[1].skill in skills:
                    served.add(skill)
            for skill in sorted(served):
                for lang in agent.profile.languages:
                    found = self._head_for(agent, (skill, channel, lang), now, hot, skip, best)
                    if found is not None:
                        best = found
        return self.cases[best[1]] if best is not None else None

    def _head_for(self, agent: routing.Agent, key: tuple[str, str, str], now: datetime,
                  hot: frozenset[str], skip: frozenset[str],
                  best: tuple[tuple[float, str], str] | None
                  ) -> tuple[tuple[float, str], str] | None:
        """The first entry of one queue the agent may take, if it comes before `best`.

        The caller checked presence and room on the channel, and the queue's key fixes the
        language: what is left of `routing.exclusion` is checked here without building the
        full reasons (the same rules; `test_router_properties` holds them to it)."""
        levels = {s.skill: s.proficiency for s in agent.profile.skills}
        tier = agent.profile.authority_tier
        for entry in self._queues.get(key, ())[:SCAN_LIMIT]:
            if best is not None and entry >= best:
                return None
            case = self.cases[entry[1]]
            w = case.waiting
            if case.case_id in skip or tier < w.requirements.min_tier \
                    or agent.agent_id in w.excluded:
                continue  # nothing a stage relaxes
            req = self.stage_of(case, now, case.queue in hot)
            if levels.get(req.skill, 0) >= max(1, req.min_proficiency) and tier >= req.min_tier \
                    and all(p in levels for p in req.preferred_skills):
                return entry
        return None

    def stage_of(self, case: CaseRecord, now: datetime, hot: bool) -> routing.Requirements:
        """The requirements in force for a waiting case: those of the stage it was routed
        under, until its next check (relaxation step, overflow, hold end) or its queue's KPIs
        say otherwise."""
        if case.stage_req is not None and not hot and (
                case.next_check_at is None or now < case.next_check_at):
            return case.stage_req
        return routing.stage(case.waiting, self.policy, now, hot).requirements

    # --- changing --------------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        if isinstance(change, PutCase):
            self._set_case(change.record.case_id, change.record)
        elif isinstance(change, PutOffer):
            self._set_offer(change.offer.offer_id, change.offer)
        elif isinstance(change, PutAgent):
            self._set_agent(change.agent.profile.agent_id, change.agent)
        else:
            c = change.contact
            prior = self.history.setdefault(c.customer_key, [])
            self._record("contact", c.customer_key, len(prior))
            prior.append((c.contact_id, c.prior))

    def load(self, change: Change) -> None:
        """A row read from the database: applied without journalling."""
        journal, self._journal = self._journal, []
        try:
            self.apply(change)
        finally:
            self._journal = journal

    @contextmanager
    def trial(self) -> Iterator[None]:
        """Changes applied inside are undone on leaving: a decision tries its steps here."""
        self._journal.append([])
        try:
            yield
        finally:
            self._undo(self._journal.pop())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Changes applied inside are undone if the block raises (a failed database commit)."""
        self._journal.append([])
        try:
            yield
        except BaseException:
            self._undo(self._journal.pop())
            raise
        entries = self._journal.pop()
        if self._journal:
            self._journal[-1].extend(entries)

    def begin(self) -> None:
        """Start a journal kept open across awaits (a batch); `commit` or `rollback` ends it."""
        self._journal.append([])

    def commit(self) -> None:
        entries = self._journal.pop()
        if self._journal:
            self._journal[-1].extend(entries)

    def rollback(self) -> None:
        self._undo(self._journal.pop())

    def _record(self, kind: str, key: str, old: object) -> None:
        if self._journal:
            self._journal[-1].append((kind, key, old))

    def _undo(self, entries: list[tuple[str, str, object]]) -> None:
        journal, self._journal = self._journal, []
        try:
            for kind, key, old in reversed(entries):
                if kind == "case":
                    self._set_case(key, old)  # type: ignore[arg-type]
                elif kind == "offer":
                    self._set_offer(key, old)  # type: ignore[arg-type]
                elif kind == "agent":
                    self._set_agent(key, old)  # type: ignore[arg-type]
                else:
                    del self.history[key][int(old):]  # type: ignore[call-overload]
        finally:
            self._journal = journal

    # --- primitives: set one entry and keep the indexes right ------------------------------
    def _set_case(self, case_id: str, record: CaseRecord | None) -> None:
        old = self.cases.get(case_id)
        self._record("case", case_id, old)
        if old is not None:
            self._unindex_case(old)
        if record is None:
            self.cases.pop(case_id, None)
            self._solved.pop(case_id, None)
            return
        self.cases[case_id] = record
        self._index_case(record)

    def _index_case(self, case: CaseRecord) -> None:
        if case.state == "solved":
            self._solved[case.case_id] = None
            self._solved.move_to_end(case.case_id)
            return
        self._solved.pop(case.case_id, None)
        if case.state != "waiting":
            return
        w = case.waiting
        key = (case.stage_skill or w.requirements.skill, w.requirements.channel,
               w.requirements.language)
        bisect.insort(self._queues[key], (routing.order_key(w, self.policy), case.case_id))
        bisect.insort(self._arrivals[case.queue], (w.queued_at, case.case_id))
        if case.next_check_at is not None:
            heapq.heappush(self._case_due, (case.next_check_at, case.case_id))

    def _unindex_case(self, case: CaseRecord) -> None:
        if case.state != "waiting":
            return
        w = case.waiting
        key = (case.stage_skill or w.requirements.skill, w.requirements.channel,
               w.requirements.language)
        _remove(self._queues[key], (routing.order_key(w, self.policy), case.case_id))
        _remove(self._arrivals[case.queue], (w.queued_at, case.case_id))
        # the due heap is cleaned lazily: entries that no longer match are skipped

    def _set_offer(self, offer_id: str, offer: Offer | None) -> None:
        old = self.offers.get(offer_id)
        self._record("offer", offer_id, old)
        touched: set[str] = set()
        if old is not None and old.open:
            self._offers_of_agent[old.agent_id].discard(offer_id)
            self._offers_of_case[old.case_id].discard(offer_id)
            self._load(old.agent_id, old.channel, -1)
            touched.add(old.agent_id)
        if offer is None or not offer.open:
            self.offers.pop(offer_id, None)
        else:
            self.offers[offer_id] = offer
            self._offers_of_agent[offer.agent_id].add(offer_id)
            self._offers_of_case[offer.case_id].add(offer_id)
            self._load(offer.agent_id, offer.channel, +1)
            touched.add(offer.agent_id)
            if offer.state == "offered":
                heapq.heappush(self._offer_due, (offer.expires_at, offer_id))
        for agent_id in touched:
            self._reindex_agent(agent_id)

    def _load(self, agent_id: str, channel: str, delta: int) -> None:
        agent = self.agents.get(agent_id)
        if agent is not None:
            load = dict(agent.load)
            carried = load.get(channel, 0) + delta
            if carried > 0:
                load[channel] = carried
            else:  # no zero entries: a floor rolled back compares equal to the one before
                load.pop(channel, None)
            self.agents[agent_id] = replace(agent, load=load)

    def _set_agent(self, agent_id: str, record: AgentRecord | None) -> None:
        old = self.agent_records.get(agent_id)
        self._record("agent", agent_id, old)
        self._unindex_agent(agent_id)
        if old is not None:
            for s in old.profile.skills:
                _remove(self._skilled[s.skill], agent_id)
        if record is None:
            self.agent_records.pop(agent_id, None)
            self.agents.pop(agent_id, None)
            return
        self.agent_records[agent_id] = record
        load: dict[str, int] = {}
        for offer_id in self._offers_of_agent.get(agent_id, ()):
            channel = self.offers[offer_id].channel
            load[channel] = load.get(channel, 0) + 1
        self.agents[agent_id] = routing.Agent(record.profile, load, record.idle_since,
                                              record.missed)
        for s in record.profile.skills:
            bisect.insort(self._skilled[s.skill], agent_id)
        self._reindex_agent(agent_id)

    def _free_channels(self, agent: routing.Agent | None) -> frozenset[str]:
        if agent is None or agent.profile.presence != "available":
            return frozenset()
        return frozenset(c for c in registry.names() if agent.room_for(c, self.policy) is None)

    def _index_channels(self, agent: routing.Agent, channels: Iterable[str], add: bool) -> None:
        p = agent.profile
        for channel in channels:
            for s in p.skills:
                for lang in p.languages:
                    entry = self._free[(s.skill, lang, channel)]
                    if add:
                        entry.add(p.agent_id)
                    else:
                        entry.discard(p.agent_id)

    def _unindex_agent(self, agent_id: str) -> None:
        """Out of the free index entirely (before its profile changes)."""
        agent = self.agents.get(agent_id)
        if agent is not None:
            self._index_channels(agent, self._indexed.pop(agent_id, frozenset()), add=False)

    def _reindex_agent(self, agent_id: str) -> None:
        """Only the channels whose room changed move in or out of the free index."""
        agent = self.agents.get(agent_id)
        if agent is None:
            return
        before = self._indexed.get(agent_id, frozenset())
        now = self._free_channels(agent)
        if now != before:
            self._index_channels(agent, before - now, add=False)
            self._index_channels(agent, now - before, add=True)
            self._indexed[agent_id] = now

    def evict(self) -> None:
        """Forget the oldest solved cases beyond the cache (outside any journal): the database
        keeps them, and a contact that reopens one loads it again."""
        while len(self._solved) > SOLVED_CACHE and not self._journal:
            evicted, _ = self._solved.popitem(last=False)
            self.cases.pop(evicted, None)


def _remove(items: list[Any], entry: Any) -> None:
    index = bisect.bisect_left(items, entry)
    if index < len(items) and items[index] == entry:
        del items[index]


