"""The router's decisions: pure functions of (floor, message, now) returning events and changes.

Each public function takes the floor, the router's configuration, the cause (the id of the event
that caused it, from which every event id derives) and `now`, and returns an `Outcome`: the case
events and offers to log and publish, and the floor `Change`s they imply. No Kafka, no SQL, no
clock. A decision that takes several steps (release an agent, then offer them the next case)
tries them on the floor inside `Floor.trial`, so each step sees the ones before, and leaves the
floor as it found it: the app applies the returned changes (and saves them) itself.

Ids derive from the cause exactly as before the floor existed, so a redelivered input decides
identically and the log absorbs the repeat.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from services.router import core, routing
from services.router.classify import PriorContact, classify, customer_key
from services.router.floor import (
    AddContact,
    AgentRecord,
    CaseRecord,
    Change,
    ContactSeen,
    Floor,
    Offer,
    PutAgent,
    PutCase,
    PutOffer,
)
from shared.contracts import agents as ag
from shared.contracts import case_events as ce
from shared.contracts.inbound import CustomerIdentity
from shared.events import NOTHING, CaseEvent, Decision
from shared.redaction import redact

TIMER_BATCH = 100  # offers expired and waiting cases re-checked per tick
MAX_CONTACT_TEXT = 20_000
EXPLAINED_AGENTS = 25  # agents with the skill whose exclusion a waiting decision explains


@dataclass(frozen=True)
class Outcome:
    decision: Decision = NOTHING
    changes: tuple[Change, ...] = ()


@dataclass
class Draft:
    """A decision in the making: its events, and its changes tried on the floor as it goes."""

    floor: Floor
    config: core.RouterConfig
    now: datetime
    decision: Decision = NOTHING
    changes: list[Change] = field(default_factory=list)

    @property
    def policy(self) -> Any:
        return self.config.policy

    def put(self, change: Change) -> None:
        self.changes.append(change)
        self.floor.apply(change)

    def emit(self, decision: Decision) -> None:
        self.decision += decision


def decide(floor: Floor, config: core.RouterConfig, now: datetime,
           step: Callable[..., None], *args: Any, keep: bool = False) -> Outcome:
    """Run a decision on the floor without changing it; return what it decided.

    With `keep`, the floor is left holding the decision's changes instead, exactly as if they
    were applied to it afterwards (in the journal of the caller's batch, if one is open): the
    router's app did that, undoing every change only to apply it again (~6 % of its CPU)."""
    draft = Draft(floor, config, now)
    with floor.transaction() if keep else floor.trial():
        hot_before = floor.hot_queues(now)
        step(draft, *args)
        overflow_newly_hot(draft, hot_before)
    return Outcome(draft.decision, tuple(draft.changes))


# --- shared steps ------------------------------------------------------------------------------
def route_one(d: Draft, case: routing.WaitingCase, cause_id: str, trigger: str,
              record: CaseRecord | None = None, classification: str | None = None) -> None:
    """Decide for one waiting case and store the outcome: an open offer, or the case waiting
    until its next relaxation step (or the end of the previous agent's hold)."""
    floor = d.floor
    queue = routing.queue_name(case.requirements.skill, case.requirements.channel)
    hot = _hot(floor, queue, d.now)
    st = routing.stage(case, d.policy, d.now, hot)
    req = st.requirements
    free = floor.free_agents(req.skill, req.language, req.channel)
    pool, not_listed = shortlist(free, req, case)
    not_listed.update(_not_listed(floor, len(free)))
    if case.previous_agent and case.previous_agent in floor.agents and \
            all(a.agent_id != case.previous_agent for a in pool):
        pool.append(floor.agents[case.previous_agent])  # the hold needs them, free or not
    routed = routing.route(case, pool, d.policy, cause_id, trigger, d.now, kpi_overflow=hot,
                           not_listed=not_listed)
    if routed.offer is None:
        # Nobody could take it: say why for the first agents with the skill (an offer needs
        # no such account, and looking at every agent would cost each decision the floor).
        listed = {a.agent_id for a in pool}
        examined = [a for a in floor.skilled_agents(req.skill, EXPLAINED_AGENTS)
                    if a.agent_id not in listed]
        routed = routing.route(case, pool + examined, d.policy, cause_id, trigger, d.now,
                               kpi_overflow=hot,
                               not_listed=_not_listed(floor, len(pool) + len(examined)))
    d.emit(routed.decision)
    base = record or floor.cases.get(case.case_id) or CaseRecord(case.case_id, "waiting", case)
    sel = routed.selection
    if routed.offer is not None:
        offer = routed.offer
        d.put(PutOffer(Offer(offer.offer_id, case.case_id, offer.agent_id, offer.channel,
                             "offered", d.now, offer.expires_at, case)))
        d.put(PutCase(replace(base, state="offered", waiting=case, step=sel.stage.step,
                              next_check_at=None, stage_skill=None, stage_req=None,
                              classification=classification or base.classification)))
        return
    next_check = sel.stage.next_at
    if sel.held_for and case.previous_until is not None:
        next_check = min(filter(None, (next_check, case.previous_until)))
    d.put(PutCase(replace(base, state="waiting", waiting=case, step=sel.stage.step,
                          next_check_at=next_check, stage_skill=st.requirements.skill,
                          stage_req=None if hot else st.requirements,
                          classification=classification or base.classification)))


def shortlist(free: list[routing.Agent], req: routing.Requirements, case: routing.WaitingCase
              ) -> tuple[list[routing.Agent], dict[str, int]]:
    """The free agents worth handing to `routing.route`: the first few eligible ones in its own
    ranking (previous agent, proficiency, idle time, id), so its winner is the one it would
    pick among all of them; the others counted by why they are not listed.

    The free index already holds presence, room on the channel, the skill and the language;
    what is left of `routing.exclusion` is checked here on each free agent, cheaply: ranking and
    explaining hundreds of free agents per decision cost more than the rest of the router.
    `free` may come in any order: the ranking ends with the agent id."""
    counts: dict[str, int] = {}
    eligible: list[tuple[tuple[bool, int, datetime, str], routing.Agent]] = []
    skill, wanted = req.skill, max(1, req.min_proficiency)
    excluded, preferred, min_tier = case.excluded, req.preferred_skills, req.min_tier
    previous = case.previous_agent
    for agent in free:
        agent_id = agent.profile.agent_id
        levels = agent.levels
        level = levels.get(skill, 0)
        why = ("declined or missed this case" if agent_id in excluded
               else f"{skill} proficiency below {wanted}" if level < wanted
               else "lacks a preferred skill" if any(p not in levels for p in preferred)
               else f"authority tier below {min_tier}"
               if agent.profile.authority_tier < min_tier else None)
        if why is None:  # ranked as `routing.route` ranks them
            eligible.append((routing.ranking(agent, skill, previous), agent))
        else:
            counts[why] = counts.get(why, 0) + 1
    # The ranking is unique (it ends with the id), so the agents themselves are never compared.
    top = [agent for _, agent in heapq.nsmallest(routing.MAX_LISTED_CANDIDATES, eligible)]
    if len(eligible) > len(top):
        counts["eligible, ranked below the candidates listed"] = len(eligible) - len(top)
    return top, dict(sorted(counts.items()))  # the same account whatever order `free` came in


def _not_listed(floor: Floor, looked_at: int) -> dict[str, int]:
    rest = len(floor.agents) - looked_at
    return {"not free, or lacks the skill or language": rest} if rest > 0 else {}


def _hot(floor: Floor, queue: str, now: datetime) -> bool:
    skill, channel = queue.rsplit("-", 1)
    _steps, overflow = floor.policy.steps_for(skill, channel)
    oldest = floor.oldest_arrival(queue)
    return floor.waiting_count(queue) > overflow.max_waiting or (
        oldest is not None and (now - oldest).total_seconds() > overflow.max_oldest_wait_seconds)


def offer_next_to(d: Draft, agent_ids: Iterable[str], cause_id: str, trigger: str,
                  skip: Iterable[str] = ()) -> None:
    """Capacity was freed or an agent came in: each of these agents takes waiting cases, in
    queue order, while they have room."""
    skipped = frozenset(skip)
    for agent_id in sorted(set(agent_ids)):
        while (agent := d.floor.agents.get(agent_id)) is not None:
            case = d.floor.next_case_for(agent, d.now, skipped)
            if case is None:
                break
            routed = routing.route(case.waiting, [agent], d.policy,
                                   f"{cause_id}/{case.case_id}", trigger, d.now,
                                   kpi_overflow=_hot(d.floor, case.queue, d.now))
            if routed.offer is None:  # held for a previous agent: it stays where it is
                skipped |= {case.case_id}
                continue
            d.emit(routed.decision)
            offer = routed.offer
            d.put(PutOffer(Offer(offer.offer_id, case.case_id, agent_id, offer.channel,
                                 "offered", d.now, offer.expires_at, case.waiting)))
            d.put(PutCase(replace(case, state="offered", next_check_at=None, stage_skill=None,
                                  stage_req=None)))


def close_offer(d: Draft, offer: Offer, state: str) -> None:
    d.put(PutOffer(replace(offer, state=state, answered_at=d.now)))  # type: ignore[arg-type]


def touch_idle(d: Draft, agent_ids: Iterable[str]) -> None:
    """An agent left with nothing to carry is idle from now (longest idle goes first)."""
    for agent_id in sorted(set(agent_ids)):
        record = d.floor.agent_records.get(agent_id)
        if record is not None and not d.floor.open_offers_of_agent(agent_id):
            d.put(PutAgent(replace(record, idle_since=d.now)))


def release(d: Draft, case_id: str) -> list[str]:
    """Close the case's open offers and assignment; return the agents freed."""
    offers = d.floor.open_offers_of_case(case_id)
    for offer in offers:
        close_offer(d, offer, "released")
    agents = sorted({o.agent_id for o in offers})
    touch_idle(d, agents)
    return agents


def requeue(d: Draft, case_id: str, exclude: str | None) -> routing.WaitingCase | None:
    record = d.floor.cases.get(case_id)
    if record is None:
        return None
    case = record.waiting
    if exclude:
        case = replace(case, excluded=case.excluded | {exclude})
    return case


def history(d: Draft, key: str | None, contact_id: str) -> list[PriorContact]:
    if key is None:
        return []
    since = d.now - timedelta(hours=d.policy.repeat_window_hours)
    return [p for cid, p in d.floor.history.get(key, ()) if cid != contact_id and p.at >= since]


def _under(cause_id: str) -> Callable[[str], str]:
    """The cause of a step about one case, under the decision's cause."""
    return lambda case_id: f"{cause_id}/{case_id}"


def withdraw(d: Draft, offers: list[Offer], cause_id: str, reason: str,
             step_cause: Callable[[str], str]) -> list[str]:
    """Withdraw offers (and assignments) and route their cases again; the cases rerouted."""
    rerouted = []
    for offer in sorted(offers, key=lambda o: o.offer_id):
        close_offer(d, offer, "withdrawn")
        d.emit(Decision(events=(CaseEvent.derived(
            cause_id, f"assignment.withdrawn/{offer.offer_id}", offer.case_id,
            "assignment.withdrawn", d.now,
            ce.AssignmentWithdrawn(case_id=offer.case_id, offer_id=offer.offer_id,
                                   agent_id=offer.agent_id, reason=reason)),)))
        case = requeue(d, offer.case_id, None)
        if case is not None:
            rerouted.append(case.case_id)
            route_one(d, case, step_cause(offer.case_id), reason)
    return rerouted


# --- case events ---------------------------------------------------------------------------
def on_contact(d: Draft, cause_id: str, c: ce.ContactReceived) -> None:
    record = d.floor.cases.get(c.case_id)
    key = customer_key(c.customer)
    classified = classify(c, d.config.classifier, d.config.taxonomy, d.policy,
                          history(d, key, c.contact_id), d.now)
    if key is not None:
        d.put(AddContact(ContactSeen(c.contact_id, key, PriorContact(
            c.case_id, classified.intent, c.received_at))))
    d.emit(Decision(events=(CaseEvent.derived(cause_id, "case.classified", c.case_id,
                                              "case.classified", d.now, classified),)))
    text = f"{c.subject or ''}\n{c.text}".strip()[:MAX_CONTACT_TEXT]
    if record is not None and record.state in ("offered", "assigned"):
        # The case stays with its agent, but the new contact is classified all the same: a
        # refund now beyond the agent's authority is what escalation acts on, and the
        # requirements are kept current for a re-queue (escalation, transfer).
        needs = replace(record.waiting,
                        requirements=core.requirements_of(classified, c.channel))
        d.put(PutCase(replace(record, waiting=needs,
                              classification=classified.model_dump_json())))
        return
    record = enqueue(d, cause_id, c, record, classified)
    d.put(PutCase(replace(record, contact_text=text, customer_key=key)))


def enqueue(d: Draft, cause_id: str, c: ce.ContactReceived, record: CaseRecord | None,
            classified: ce.CaseClassified) -> CaseRecord:
    """The case enters (or is re-evaluated in) its queue; returns its record as decided."""
    if record is not None and record.state == "waiting":
        # the facts of a waiting case changed: re-evaluate at once, keeping its place
        before = record.waiting
        fresh = core.waiting_case(classified, c.channel, before.queued_at,
                                  excluded=before.excluded)
        case = core.raise_priority(replace(fresh, previous_agent=before.previous_agent,
                                           previous_until=before.previous_until),
                                   before.priority)
        trigger = "reclassified"
    else:
        previous = record.last_agent if record is not None else None  # a reopened case
        case = core.waiting_case(classified, c.channel, d.now, previous,
                                 d.policy.previous_agent_hold_seconds)
        d.emit(Decision(events=(core.queued_event(cause_id, case, classified.queue, d.now),)))
        trigger = "reopened" if previous else "contact received"
    route_one(d, case, cause_id, trigger, record, classified.model_dump_json())
    return d.floor.cases[c.case_id]


def on_text_added(d: Draft, cause_id: str, t: ce.ContactTextAdded) -> None:
    """More words (a chat burst, an IVR selection, a transcript) for a case still waiting:
    classify it again on everything said so far and re-evaluate it at once."""
    record = d.floor.cases.get(t.case_id)
    if record is None or record.state != "waiting":
        return
    hints = " ".join(v for k, v in sorted(t.details.items()) if "ivr" in k.lower())
    text = "\n".join(x for x in (record.contact_text, t.text, hints) if x)[:MAX_CONTACT_TEXT]
    contact = ce.ContactReceived(
        case_id=t.case_id, contact_id=t.contact_id, channel=t.channel,
        source_type=t.source_type, customer=CustomerIdentity(), text=text, received_at=t.at,
        details=t.details)
    classified = classify(contact, d.config.classifier, d.config.taxonomy, d.policy,
                          history(d, record.customer_key, t.contact_id), d.now)
    d.emit(Decision(events=(CaseEvent.derived(cause_id, "case.classified", t.case_id,
                                              "case.classified", d.now, classified),)))
    enqueue(d, cause_id, contact, replace(record, contact_text=text), classified)


def on_escalated(d: Draft, cause_id: str, e: ce.CaseEscalated) -> None:
    """An escalated case still waiting moves to the front: urgent, re-evaluated at once.
    An escalation to a higher-tier queue takes the case back and routes it there."""
    if e.requeue is not None:
        escalate_to_tier(d, cause_id, e, e.requeue)
        return
    record = d.floor.cases.get(e.case_id)
    if record is None or record.state != "waiting":
        return
    case = core.raise_priority(record.waiting, "urgent")
    route_one(d, case, cause_id, f"escalated: {e.reason}")


def escalate_to_tier(d: Draft, cause_id: str, e: ce.CaseEscalated,
                     to: ce.EscalationRequeue) -> None:
    """Like a transfer, decided by the escalation policy: the holder's offer or assignment is
    released, and the case waits, urgent, for an agent of the tier that can act on it. The
    receiving agent's acceptance is the escalation's acknowledgement."""
    case = requeue(d, e.case_id, None)
    if case is None:
        return
    freed = release(d, e.case_id)
    req = case.requirements
    # A tier queue is staffed for authority, not product: unless the policy names a skill,
    # any agent of the tier may take it at once (a preferred skill would hold the customer
    # until the relaxation step drops it; the packet carries the product context instead).
    skill = to.skill or "general"
    moved = replace(core.raise_priority(case, "urgent"), queued_at=d.now, previous_agent=None,
                    previous_until=None,
                    requirements=routing.Requirements(
                        skill=skill, min_proficiency=1,
                        min_tier=max(req.min_tier, to.min_authority_tier),
                        language=req.language, channel=req.channel))
    queue = to.queue or routing.queue_name(skill, req.channel)
    d.emit(Decision(events=(core.queued_event(cause_id, moved, queue, d.now),)))
    route_one(d, moved, cause_id, f"escalated to tier {to.min_authority_tier}: {e.reason}")
    offer_next_to(d, freed, cause_id, "capacity freed", skip=[e.case_id])


# --- agents --------------------------------------------------------------------------------
def on_profile(d: Draft, cause_id: str, p: ag.AgentProfile) -> None:
    before = d.floor.agent_records.get(p.agent_id)
    if before is not None and before.updated_at > p.changed_at:
        return  # an older profile than the one we have (compacted topic replay)
    came_in = p.presence == "available" and (before is None or
                                            before.profile.presence != "available")
    d.put(PutAgent(AgentRecord(
        profile=p, updated_at=p.changed_at,
        # coming back (available again) clears the misses and starts the idle time now
        idle_since=d.now if came_in or before is None else before.idle_since,
        missed=0 if came_in or before is None else before.missed)))
    rerouted: list[str] = []
    if p.presence != "available":
        # offers they will not answer go back at once; a logout also hands back their cases
        states = ("offered", "accepted") if p.presence == "offline" else ("offered",)
        offers = [o for o in d.floor.open_offers_of_agent(p.agent_id) if o.state in states]
        reason = "agent logged out" if p.presence == "offline" else f"agent {p.presence}"
        rerouted = withdraw(d, offers, cause_id, reason, _under(cause_id))
    offer_next_to(d, [p.agent_id], cause_id, "agent profile changed", skip=rerouted)


def _answer(d: Draft, offer_id: str, agent_id: str, state: str) -> Offer | None:
    """Record the agent's answer to an offer still open; None if it was not (any more)."""
    offer = d.floor.offers.get(offer_id)
    if offer is None or offer.agent_id != agent_id or offer.state != "offered":
        return None
    close_offer(d, offer, state)
    return offer


def on_accepted(d: Draft, cause_id: str, a: ag.OfferAccepted) -> None:
    offer = _answer(d, a.offer_id, a.agent_id, "accepted")
    if offer is None:
        return  # unknown, expired, already answered or withdrawn
    record = d.floor.agent_records.get(a.agent_id)
    if record is not None:
        d.put(PutAgent(replace(record, missed=0)))
    case = d.floor.cases.get(a.case_id)
    if case is not None:
        d.put(PutCase(replace(case, state="assigned", last_agent=a.agent_id,
                              next_check_at=None, stage_skill=None, stage_req=None)))
    tier = record.profile.authority_tier if record is not None else None
    d.emit(Decision(events=(
        CaseEvent.derived(cause_id, "assignment.accepted", a.case_id, "assignment.accepted",
                          d.now, ce.AssignmentAccepted(case_id=a.case_id, offer_id=a.offer_id,
                                                       agent_id=a.agent_id)),
        CaseEvent.derived(cause_id, "case.assigned", a.case_id, "case.assigned", d.now,
                          ce.CaseAssigned(case_id=a.case_id, agent_id=a.agent_id,
                                          authority_tier=tier)),
    )))


def on_declined(d: Draft, cause_id: str, x: ag.OfferDeclined) -> None:
    if _answer(d, x.offer_id, x.agent_id, "declined") is None:
        return
    d.emit(Decision(events=(CaseEvent.derived(
        cause_id, "assignment.declined", x.case_id, "assignment.declined", d.now,
        ce.AssignmentDeclined(case_id=x.case_id, offer_id=x.offer_id, agent_id=x.agent_id,
                              reason=redact(x.reason) if x.reason else None)),)))
    touch_idle(d, [x.agent_id])
    case = requeue(d, x.case_id, x.agent_id)
    if case is not None:
        route_one(d, case, cause_id, "declined")
    offer_next_to(d, [x.agent_id], cause_id, "capacity freed", skip=[x.case_id])


def on_replied(d: Draft, cause_id: str, r: ag.AgentReplied) -> None:
    # Agents' words never pass through intake: redact them here, before the log.
    data = ce.ReplySent(case_id=r.case_id, agent_id=r.agent_id, text=redact(r.text), at=r.at)
    d.emit(Decision(events=(CaseEvent.derived(cause_id, "reply.sent", r.case_id, "reply.sent",
                                              d.now, data),)))


def on_status_changed(d: Draft, cause_id: str, s: ag.StatusChanged) -> None:
    """Relay the desktop's status to the case stream, where SLA clocks pause and resume."""
    data = ce.CaseStatusChanged(case_id=s.case_id, status=s.status, agent_id=s.agent_id,
                                at=s.at)
    d.emit(Decision(events=(CaseEvent.derived(cause_id, "status_changed", s.case_id,
                                              "case.status_changed", d.now, data),)))


def on_solved(d: Draft, cause_id: str, s: ag.CaseSolved) -> None:
    freed = release(d, s.case_id)
    case = d.floor.cases.get(s.case_id)
    if case is not None:
        d.put(PutCase(replace(case, state="solved", last_agent=s.agent_id, next_check_at=None,
                              stage_skill=None, stage_req=None)))
    d.emit(Decision(events=(CaseEvent.derived(
        cause_id, "case.solved", s.case_id, "case.solved", d.now,
        ce.CaseSolvedEvent(case_id=s.case_id, agent_id=s.agent_id, at=s.at)),)))
    offer_next_to(d, freed, cause_id, "capacity freed")


def on_transferred(d: Draft, cause_id: str, t: ag.CaseTransferred) -> None:
    """The agent hands the case on: their capacity is released and the case is routed to
    the new skill (and tier), never back to them."""
    case = requeue(d, t.case_id, t.agent_id)
    freed = release(d, t.case_id)
    if case is None:
        offer_next_to(d, freed, cause_id, "capacity freed")
        return
    req = case.requirements
    moved = replace(case, queued_at=d.now, previous_agent=None, previous_until=None,
                    requirements=routing.Requirements(
                        skill=t.to_skill, min_proficiency=1,
                        min_tier=max(req.min_tier, t.min_authority_tier or 1),
                        language=req.language, channel=req.channel))
    queue = routing.queue_name(t.to_skill, req.channel)
    d.emit(Decision(events=(core.queued_event(cause_id, moved, queue, d.now),)))
    route_one(d, moved, cause_id, f"transferred by {t.agent_id}")
    offer_next_to(d, freed, cause_id, "capacity freed", skip=[t.case_id])


# --- timers --------------------------------------------------------------------------------
def tick(d: Draft) -> None:
    expire_offers(d)
    recheck_waiting(d)


def expire_offers(d: Draft) -> None:
    """Offers past their expiry: the agent missed it (N in a row → away), the case goes on to
    the next agent, and an agent still present gets the next case."""
    for offer in d.floor.due_offers(d.now, TIMER_BATCH):
        current = d.floor.offers.get(offer.offer_id)
        if current is None or current.state != "offered":
            continue  # withdrawn by an earlier step of this tick
        close_offer(d, offer, "expired")
        cause = f"{offer.offer_id}/expired"
        record = d.floor.agent_records.get(offer.agent_id)
        agent = d.floor.agents.get(offer.agent_id)
        missed, away = (1, False) if agent is None else routing.after_miss(agent, d.policy)
        if record is not None:
            profile = record.profile.model_copy(update={"presence": "away"}) if away \
                else record.profile
            # set away without moving updated_at: the agent's next profile event wins
            d.put(PutAgent(replace(record, missed=missed, profile=profile)))
        d.emit(Decision(events=(CaseEvent.derived(
            cause, "assignment.expired", offer.case_id, "assignment.expired", d.now,
            ce.AssignmentExpired(case_id=offer.case_id, offer_id=offer.offer_id,
                                 agent_id=offer.agent_id, missed_in_a_row=missed,
                                 agent_set_away=away)),)))
        if away:  # their other open offers will not be answered either
            offers = [o for o in d.floor.open_offers_of_agent(offer.agent_id)
                      if o.state == "offered"]
            withdraw(d, offers, cause, "agent set away", _under(cause))
        case = requeue(d, offer.case_id, offer.agent_id)
        if case is not None:
            route_one(d, case, cause, "offer expired")
        if not away:
            offer_next_to(d, [offer.agent_id], f"{cause}/next", "capacity freed",
                          skip=[offer.case_id])


def overflow_newly_hot(d: Draft, hot_before: frozenset[str]) -> None:
    """A queue this decision pushed past its KPIs (a case withdrawn back into it with its old
    arrival time, one contact too many) lets its other waiting cases overflow now, not at the
    next tick: an agent of the overflow skill may be free for them already."""
    newly = d.floor.hot_queues(d.now) - hot_before
    if newly:
        route_again(d, d.floor.due_cases(d.now, newly, TIMER_BATCH, timed=False),
                    "overflow", "queue past its KPIs")


def recheck_waiting(d: Draft) -> None:
    """Waiting cases whose next relaxation step, overflow or hold end has come, and cases in
    queues past their KPIs that have not overflowed yet."""
    route_again(d, d.floor.due_cases(d.now, d.floor.hot_queues(d.now), TIMER_BATCH),
                "recheck", "waiting time")


def route_again(d: Draft, records: list[CaseRecord], step: str, trigger: str) -> None:
    """Route these cases again if they still wait (each pass a new generation: its own ids)."""
    for record in records:
        current = d.floor.cases.get(record.case_id)
        if current is None or current.state != "waiting":
            continue
        cause = f"{record.case_id}/{step}/{record.generation}"
        bumped = replace(current, generation=current.generation + 1)
        d.put(PutCase(bumped))
        route_one(d, current.waiting, cause, trigger, bumped)
