"""Router's FastStream app: case and agent events → pure core → log, outbox and routing state.

State lives in PostgreSQL beside the log and changes in the same transaction as the events it
causes, so a restart loses or doubles no offer: `router_agent` (profiles, misses, idle since),
`router_offer` (open offers and assignments = agents' occupancy), `router_case` (waiting cases,
their requirements and next timer), `router_contact` (for repeat contacts).

Every handler that can change who carries what takes one transaction-scoped advisory lock first,
so two records consumed in parallel never offer the same free slot twice. The lock is taken
before `append_events` takes its per-case locks, in that order everywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

from services.router import core, routing
from services.router.classify import PriorContact, classify, customer_key
from shared.contracts import agents as ag
from shared.contracts import case_events as ce
from shared.contracts.envelope import Envelope
from shared.contracts.inbound import CustomerIdentity
from shared.contracts.topics import AGENT_ACTIVITY, AGENTS, CASE_EVENTS
from shared.events import NOTHING, CaseEvent, Decision
from shared.redaction import redact
from shared.runtime import Route, ServiceRuntime

log = logging.getLogger(__name__)
_ROUTER_LOCK = 7_007_004
_OPEN = "('offered', 'accepted')"
_BATCH = 100


class RouterApp:
    def __init__(self, runtime: ServiceRuntime, config: core.RouterConfig) -> None:
        self.runtime, self.config = runtime, config
        self.policy = config.policy

    # --- state -----------------------------------------------------------------------------
    async def agents(self, conn: asyncpg.Connection) -> list[routing.Agent]:
        rows = await conn.fetch(
            "SELECT a.agent_id, a.profile, a.missed, a.idle_since, o.channel,"
            " count(o.offer_id) AS n FROM router_agent a LEFT JOIN router_offer o"
            f" ON o.agent_id = a.agent_id AND o.state IN {_OPEN}"
            " GROUP BY a.agent_id, a.profile, a.missed, a.idle_since, o.channel")
        found: dict[str, routing.Agent] = {}
        for row in rows:
            agent = found.get(row["agent_id"]) or routing.Agent(
                ag.AgentProfile.model_validate_json(row["profile"]), {}, row["idle_since"],
                row["missed"])
            if row["channel"] is not None:
                agent = agent.with_load(row["channel"], row["n"])
            found[row["agent_id"]] = agent
        return sorted(found.values(), key=lambda a: a.agent_id)

    async def waiting(self, conn: asyncpg.Connection) -> list[routing.WaitingCase]:
        rows = await conn.fetch("SELECT waiting FROM router_case WHERE state = 'waiting'")
        return [core.case_from_json(json.loads(r["waiting"])) for r in rows]

    async def overflowing(self, conn: asyncpg.Connection, now: datetime) -> frozenset[str]:
        """Queues past their KPIs (waiting count, oldest wait)."""
        rows = await conn.fetch(
            "SELECT queue, channel, count(*) AS n, min(queued_at) AS oldest FROM router_case"
            " WHERE state = 'waiting' GROUP BY queue, channel")
        hot = set()
        for r in rows:
            skill = r["queue"].rsplit("-", 1)[0]
            _steps, overflow = self.policy.steps_for(skill, r["channel"])
            if r["n"] > overflow.max_waiting or \
                    (now - r["oldest"]).total_seconds() > overflow.max_oldest_wait_seconds:
                hot.add(r["queue"])
        return frozenset(hot)

    async def settle(self, conn: asyncpg.Connection, case: routing.WaitingCase,
                     routed: routing.Routed, now: datetime,
                     classification: ce.CaseClassified | None = None) -> None:
        """Store the outcome of a routing decision: an open offer, or the case waiting with
        the instant of its next relaxation step (or the end of the previous agent's hold)."""
        sel = routed.selection
        queue = routing.queue_name(case.requirements.skill, case.requirements.channel)
        next_check: datetime | None = None
        if routed.offer is not None:
            offer = routed.offer
            await conn.execute(
                "INSERT INTO router_offer (offer_id, case_id, agent_id, channel, needs, state,"
                " offered_at, expires_at) VALUES ($1,$2,$3,$4,$5,'offered',$6,$7)"
                " ON CONFLICT DO NOTHING", offer.offer_id, case.case_id, offer.agent_id,
                offer.channel, json.dumps(core.case_to_json(case)), now, offer.expires_at)
            state = "offered"
        else:
            state = "waiting"
            next_check = sel.stage.next_at
            if sel.held_for and case.previous_until is not None:
                next_check = min(filter(None, (next_check, case.previous_until)))
        await conn.execute(
            "INSERT INTO router_case (case_id, state, channel, classification, waiting, queue,"
            " step, queued_at, next_check_at, updated_at)"
            " VALUES ($1,$2,$3,COALESCE($4::jsonb, '{}'::jsonb),$5,$6,$7,$8,$9,$10)"
            " ON CONFLICT (case_id) DO UPDATE SET state = EXCLUDED.state,"
            " classification = COALESCE($4::jsonb, router_case.classification),"
            " waiting = EXCLUDED.waiting, queue = EXCLUDED.queue, step = EXCLUDED.step,"
            " queued_at = EXCLUDED.queued_at, next_check_at = EXCLUDED.next_check_at,"
            " updated_at = EXCLUDED.updated_at",
            case.case_id, state, case.requirements.channel,
            classification.model_dump_json() if classification else None,
            json.dumps(core.case_to_json(case)), queue, sel.stage.step, case.queued_at,
            next_check, now)

    async def route_one(self, conn: asyncpg.Connection, case: routing.WaitingCase,
                        cause_id: str, trigger: str, now: datetime,
                        classification: ce.CaseClassified | None = None) -> Decision:
        hot = await self.overflowing(conn, now)
        queue = routing.queue_name(case.requirements.skill, case.requirements.channel)
        routed = routing.route(case, await self.agents(conn), self.policy, cause_id, trigger,
                               now, kpi_overflow=queue in hot)
        await self.settle(conn, case, routed, now, classification)
        return routed.decision

    async def dispatch(self, conn: asyncpg.Connection, cause_id: str, trigger: str,
                       now: datetime, skip: Iterable[str] = ()) -> Decision:
        """Capacity was freed or an agent came in: offer waiting cases in queue order."""
        skipped = set(skip)
        waiting = [c for c in await self.waiting(conn) if c.case_id not in skipped]
        if not waiting:
            return NOTHING
        decision, offers = routing.dispatch(waiting, await self.agents(conn), self.policy,
                                            cause_id, trigger, now,
                                            await self.overflowing(conn, now))
        by_case = {c.case_id: c for c in waiting}
        for offer in offers:
            case = by_case[offer.case_id]
            await conn.execute(
                "INSERT INTO router_offer (offer_id, case_id, agent_id, channel, needs, state,"
                " offered_at, expires_at) VALUES ($1,$2,$3,$4,$5,'offered',$6,$7)"
                " ON CONFLICT DO NOTHING", offer.offer_id, offer.case_id, offer.agent_id,
                offer.channel, json.dumps(core.case_to_json(case)), now, offer.expires_at)
            await conn.execute("UPDATE router_case SET state = 'offered', next_check_at = NULL,"
                               " updated_at = $2 WHERE case_id = $1", offer.case_id, now)
        return decision

    async def requeue(self, conn: asyncpg.Connection, case_id: str, exclude: str | None,
                      ) -> routing.WaitingCase | None:
        raw = await conn.fetchval("SELECT waiting FROM router_case WHERE case_id = $1", case_id)
        if raw is None:
            return None
        case = core.case_from_json(json.loads(raw))
        if exclude:
            case = replace(case, excluded=case.excluded | {exclude})
        return case

    async def touch_idle(self, conn: asyncpg.Connection, agent_ids: Iterable[str],
                         now: datetime) -> None:
        """An agent left with nothing to carry is idle from now (longest idle goes first)."""
        await conn.execute(
            "UPDATE router_agent a SET idle_since = $2 WHERE a.agent_id = ANY($1::text[])"
            f" AND NOT EXISTS (SELECT 1 FROM router_offer o WHERE o.agent_id = a.agent_id"
            f" AND o.state IN {_OPEN})", list(agent_ids), now)

    # --- handlers --------------------------------------------------------------------------
    async def on_contact(self, conn: asyncpg.Connection, env: Envelope, c: ce.ContactReceived,
                         now: datetime) -> Decision:
        await _lock(conn)
        row = await conn.fetchrow(
            "SELECT state, waiting, last_agent FROM router_case WHERE case_id = $1", c.case_id)
        with_agent = row is not None and row["state"] in ("offered", "assigned")
        key = customer_key(c.customer)
        history = await self.history(conn, key, c.contact_id, now)
        classified = classify(c, self.config.classifier, self.config.taxonomy, self.policy,
                              history, now)
        if key is not None:
            await conn.execute(
                "INSERT INTO router_contact (contact_id, customer_key, case_id, intent,"
                " received_at) VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING",
                c.contact_id, key, c.case_id, classified.intent, c.received_at)
        events = [CaseEvent.derived(env.id, "case.classified", c.case_id, "case.classified",
                                    now, classified)]
        if with_agent:
            # The case stays with its agent, but the new contact is classified all the same:
            # a refund now beyond the agent's authority is what escalation acts on, and the
            # requirements are kept current for a re-queue (escalation, transfer).
            assert row is not None
            before = core.case_from_json(json.loads(row["waiting"]))
            now_needs = replace(before, requirements=core.requirements_of(classified, c.channel))
            await conn.execute("UPDATE router_case SET waiting = $2 WHERE case_id = $1",
                               c.case_id, json.dumps(core.case_to_json(now_needs)))
            return Decision(events=tuple(events))
        decision = await self.enqueue(conn, env, c, row, classified, now)
        await conn.execute("UPDATE router_case SET contact_text = $2, customer_key = $3"
                           " WHERE case_id = $1", c.case_id,
                           f"{c.subject or ''}\n{c.text}".strip()[:20_000], key)
        return Decision(events=tuple(events)) + decision

    async def enqueue(self, conn: asyncpg.Connection, env: Envelope, c: ce.ContactReceived,
                      row: asyncpg.Record | None, classified: ce.CaseClassified,
                      now: datetime) -> Decision:
        events: list[CaseEvent] = []
        if row is not None and row["state"] == "waiting":
            # the facts of a waiting case changed: re-evaluate at once, keeping its place
            before = core.case_from_json(json.loads(row["waiting"]))
            fresh = core.waiting_case(classified, c.channel, before.queued_at,
                                      excluded=before.excluded)
            case = core.raise_priority(
                replace(fresh, previous_agent=before.previous_agent,
                        previous_until=before.previous_until), before.priority)
            trigger = "reclassified"
        else:
            previous = row["last_agent"] if row is not None else None  # a reopened case
            case = core.waiting_case(classified, c.channel, now, previous,
                                     self.policy.previous_agent_hold_seconds)
            events.append(core.queued_event(env.id, case, classified.queue, now))
            trigger = "reopened" if previous else "contact received"
        decision = await self.route_one(conn, case, env.id, trigger, now, classified)
        return Decision(events=tuple(events)) + decision

    async def on_text_added(self, conn: asyncpg.Connection, env: Envelope,
                            t: ce.ContactTextAdded, now: datetime) -> Decision:
        """More words (a chat burst, an IVR selection, a transcript) for a case still waiting:
        classify it again on everything said so far and re-evaluate it at once."""
        await _lock(conn)
        row = await conn.fetchrow(
            "SELECT state, waiting, last_agent, contact_text, customer_key FROM router_case"
            " WHERE case_id = $1 AND state = 'waiting'", t.case_id)
        if row is None:
            return NOTHING
        hints = " ".join(v for k, v in sorted(t.details.items()) if "ivr" in k.lower())
        text = "\n".join(x for x in (row["contact_text"], t.text, hints) if x)[:20_000]
        contact = ce.ContactReceived(
            case_id=t.case_id, contact_id=t.contact_id, channel=t.channel,
            source_type=t.source_type, customer=CustomerIdentity(), text=text, received_at=t.at,
            details=t.details)
        history = await self.history(conn, row["customer_key"], t.contact_id, now)
        classified = classify(contact, self.config.classifier, self.config.taxonomy,
                              self.policy, history, now)
        await conn.execute("UPDATE router_case SET contact_text = $2 WHERE case_id = $1",
                           t.case_id, text)
        event = CaseEvent.derived(env.id, "case.classified", t.case_id, "case.classified", now,
                                  classified)
        return Decision(events=(event,)) + await self.enqueue(conn, env, contact, row,
                                                              classified, now)

    async def history(self, conn: asyncpg.Connection, key: str | None, contact_id: str,
                      now: datetime) -> list[PriorContact]:
        if key is None:
            return []
        since = now - timedelta(hours=self.policy.repeat_window_hours)
        return [PriorContact(r["case_id"], r["intent"], r["received_at"])
                for r in await conn.fetch(
                    "SELECT case_id, intent, received_at FROM router_contact"
                    " WHERE customer_key = $1 AND contact_id <> $2 AND received_at >= $3",
                    key, contact_id, since)]

    async def on_escalated(self, conn: asyncpg.Connection, env: Envelope, e: ce.CaseEscalated,
                           now: datetime) -> Decision:
        """An escalated case still waiting moves to the front: urgent, re-evaluated at once.
        An escalation to a higher-tier queue takes the case back and routes it there."""
        await _lock(conn)
        if e.requeue is not None:
            return await self.escalate_to_tier(conn, env, e, e.requeue, now)
        raw = await conn.fetchval(
            "SELECT waiting FROM router_case WHERE case_id = $1 AND state = 'waiting'", e.case_id)
        if raw is None:
            return NOTHING
        case = core.raise_priority(core.case_from_json(json.loads(raw)), "urgent")
        return await self.route_one(conn, case, env.id, f"escalated: {e.reason}", now)

    async def escalate_to_tier(self, conn: asyncpg.Connection, env: Envelope,
                               e: ce.CaseEscalated, to: ce.EscalationRequeue,
                               now: datetime) -> Decision:
        """Like a transfer, decided by the escalation policy: the holder's offer or assignment is
        released, and the case waits, urgent, for an agent of the tier that can act on it. The
        receiving agent's acceptance is the escalation's acknowledgement."""
        case = await self.requeue(conn, e.case_id, None)
        if case is None:
            return NOTHING
        await self.release(conn, e.case_id, now)
        req = case.requirements
        # A tier queue is staffed for authority, not product: unless the policy names a skill,
        # any agent of the tier may take it at once (a preferred skill would hold the customer
        # until the relaxation step drops it; the packet carries the product context instead).
        skill = to.skill or "general"
        moved = replace(core.raise_priority(case, "urgent"), queued_at=now, previous_agent=None,
                        previous_until=None,
                        requirements=routing.Requirements(
                            skill=skill, min_proficiency=1,
                            min_tier=max(req.min_tier, to.min_authority_tier),
                            language=req.language, channel=req.channel))
        queue = to.queue or routing.queue_name(skill, req.channel)
        decision = Decision(events=(core.queued_event(env.id, moved, queue, now),))
        decision += await self.route_one(
            conn, moved, env.id, f"escalated to tier {to.min_authority_tier}: {e.reason}", now)
        return decision + await self.dispatch(conn, env.id, "capacity freed", now,
                                              skip=[e.case_id])

    async def on_profile(self, conn: asyncpg.Connection, env: Envelope, p: ag.AgentProfile,
                         now: datetime) -> Decision:
        await _lock(conn)
        before = await conn.fetchrow(
            "SELECT profile, updated_at FROM router_agent WHERE agent_id = $1", p.agent_id)
        if before is not None and before["updated_at"] > p.changed_at:
            return NOTHING  # an older profile than the one we have (compacted topic replay)
        was = ag.AgentProfile.model_validate_json(before["profile"]) if before else None
        came_in = p.presence == "available" and (was is None or was.presence != "available")
        await conn.execute(
            "INSERT INTO router_agent (agent_id, profile, updated_at, idle_since)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id) DO UPDATE SET"
            " profile = EXCLUDED.profile, updated_at = EXCLUDED.updated_at,"
            # coming back (available again) clears the misses and starts the idle time now
            " missed = CASE WHEN $5 THEN 0 ELSE router_agent.missed END,"
            " idle_since = CASE WHEN $5 THEN EXCLUDED.idle_since"
            " ELSE router_agent.idle_since END",
            p.agent_id, p.model_dump_json(), p.changed_at, now, came_in)
        decision = NOTHING
        rerouted: list[str] = []
        if p.presence != "available":
            # offers they will not answer go back at once; a logout also hands back their cases
            states = "('offered', 'accepted')" if p.presence == "offline" else "('offered')"
            rows = await conn.fetch(
                f"UPDATE router_offer SET state = 'withdrawn', answered_at = $2"
                f" WHERE agent_id = $1 AND state IN {states} RETURNING offer_id, case_id",
                p.agent_id, now)
            for r in sorted(rows, key=lambda r: r["offer_id"]):
                reason = "agent logged out" if p.presence == "offline" else f"agent {p.presence}"
                withdrawn = ce.AssignmentWithdrawn(case_id=r["case_id"], offer_id=r["offer_id"],
                                                   agent_id=p.agent_id, reason=reason)
                decision += Decision(events=(CaseEvent.derived(
                    env.id, f"assignment.withdrawn/{r['offer_id']}", r["case_id"],
                    "assignment.withdrawn", now, withdrawn),))
                case = await self.requeue(conn, r["case_id"], None)
                if case is not None:
                    rerouted.append(case.case_id)
                    decision += await self.route_one(conn, case, f"{env.id}/{r['case_id']}",
                                                     reason, now)
        return decision + await self.dispatch(conn, env.id, "agent profile changed", now,
                                              skip=rerouted)

    async def on_accepted(self, conn: asyncpg.Connection, env: Envelope, a: ag.OfferAccepted,
                          now: datetime) -> Decision:
        await _lock(conn)
        if not await _answer(conn, a.offer_id, a.agent_id, "accepted", now):
            return NOTHING  # unknown, expired, already answered or withdrawn
        await conn.execute("UPDATE router_agent SET missed = 0 WHERE agent_id = $1", a.agent_id)
        await conn.execute("UPDATE router_case SET state = 'assigned', last_agent = $2,"
                           " next_check_at = NULL, updated_at = $3 WHERE case_id = $1",
                           a.case_id, a.agent_id, now)
        accepted = ce.AssignmentAccepted(case_id=a.case_id, offer_id=a.offer_id,
                                         agent_id=a.agent_id)
        tier = await conn.fetchval("SELECT (profile->>'authority_tier')::int FROM router_agent"
                                   " WHERE agent_id = $1", a.agent_id)
        assigned = ce.CaseAssigned(case_id=a.case_id, agent_id=a.agent_id, authority_tier=tier)
        return Decision(events=(
            CaseEvent.derived(env.id, "assignment.accepted", a.case_id, "assignment.accepted",
                              now, accepted),
            CaseEvent.derived(env.id, "case.assigned", a.case_id, "case.assigned", now,
                              assigned),
        ))

    async def on_declined(self, conn: asyncpg.Connection, env: Envelope, d: ag.OfferDeclined,
                          now: datetime) -> Decision:
        await _lock(conn)
        if not await _answer(conn, d.offer_id, d.agent_id, "declined", now):
            return NOTHING
        declined = CaseEvent.derived(
            env.id, "assignment.declined", d.case_id, "assignment.declined", now,
            ce.AssignmentDeclined(case_id=d.case_id, offer_id=d.offer_id, agent_id=d.agent_id,
                                  reason=redact(d.reason) if d.reason else None))
        await self.touch_idle(conn, [d.agent_id], now)
        decision = Decision(events=(declined,))
        case = await self.requeue(conn, d.case_id, d.agent_id)
        if case is not None:
            decision += await self.route_one(conn, case, env.id, "declined", now)
        return decision + await self.dispatch(conn, env.id, "capacity freed", now,
                                              skip=[d.case_id])

    async def on_replied(self, conn: asyncpg.Connection, env: Envelope, r: ag.AgentReplied,
                         now: datetime) -> Decision:
        # Agents' words never pass through intake: redact them here, before the log.
        data = ce.ReplySent(case_id=r.case_id, agent_id=r.agent_id, text=redact(r.text), at=r.at)
        return Decision(events=(CaseEvent.derived(env.id, "reply.sent", r.case_id,
                                                  "reply.sent", now, data),))

    async def on_status_changed(self, conn: asyncpg.Connection, env: Envelope,
                                s: ag.StatusChanged, now: datetime) -> Decision:
        """Relay the desktop's status to the case stream, where SLA clocks pause and resume."""
        data = ce.CaseStatusChanged(case_id=s.case_id, status=s.status, agent_id=s.agent_id,
                                    at=s.at)
        return Decision(events=(CaseEvent.derived(env.id, "status_changed", s.case_id,
                                                  "case.status_changed", now, data),))

    async def release(self, conn: asyncpg.Connection, case_id: str, now: datetime) -> list[str]:
        rows = await conn.fetch(
            f"UPDATE router_offer SET state = 'released', answered_at = $2 WHERE case_id = $1"
            f" AND state IN {_OPEN} RETURNING agent_id", case_id, now)
        agents = sorted({r["agent_id"] for r in rows})
        await self.touch_idle(conn, agents, now)
        return agents

    async def on_solved(self, conn: asyncpg.Connection, env: Envelope, s: ag.CaseSolved,
                        now: datetime) -> Decision:
        await _lock(conn)
        await self.release(conn, s.case_id, now)
        await conn.execute("UPDATE router_case SET state = 'solved', last_agent = $2,"
                           " next_check_at = NULL, updated_at = $3 WHERE case_id = $1",
                           s.case_id, s.agent_id, now)
        data = ce.CaseSolvedEvent(case_id=s.case_id, agent_id=s.agent_id, at=s.at)
        solved = CaseEvent.derived(env.id, "case.solved", s.case_id, "case.solved", now, data)
        return Decision(events=(solved,)) + await self.dispatch(conn, env.id, "capacity freed",
                                                                now)

    async def on_transferred(self, conn: asyncpg.Connection, env: Envelope,
                             t: ag.CaseTransferred, now: datetime) -> Decision:
        """The agent hands the case on: their capacity is released and the case is routed to
        the new skill (and tier), never back to them."""
        await _lock(conn)
        case = await self.requeue(conn, t.case_id, t.agent_id)
        await self.release(conn, t.case_id, now)
        if case is None:
            return await self.dispatch(conn, env.id, "capacity freed", now)
        req = case.requirements
        moved = replace(case, queued_at=now, previous_agent=None, previous_until=None,
                        requirements=routing.Requirements(
                            skill=t.to_skill, min_proficiency=1,
                            min_tier=max(req.min_tier, t.min_authority_tier or 1),
                            language=req.language, channel=req.channel))
        queue = routing.queue_name(t.to_skill, req.channel)
        decision = Decision(events=(core.queued_event(env.id, moved, queue, now),))
        decision += await self.route_one(conn, moved, env.id,
                                         f"transferred by {t.agent_id}", now)
        return decision + await self.dispatch(conn, env.id, "capacity freed", now,
                                              skip=[t.case_id])

    # --- timers ----------------------------------------------------------------------------
    async def expire_offers(self, conn: asyncpg.Connection, now: datetime) -> Decision:
        """Offers past their expiry: the agent missed it (N in a row → away), the case goes on
        to the next agent. Claimed with SKIP LOCKED so two router instances never expire one
        offer twice."""
        rows = await conn.fetch(
            "SELECT offer_id, case_id, agent_id FROM router_offer WHERE state = 'offered'"
            f" AND expires_at <= $1 ORDER BY expires_at LIMIT {_BATCH} FOR UPDATE SKIP LOCKED",
            now)
        decision = NOTHING
        for r in rows:
            await conn.execute("UPDATE router_offer SET state = 'expired', answered_at = $2"
                               " WHERE offer_id = $1", r["offer_id"], now)
            agents = {a.agent_id: a for a in await self.agents(conn)}
            agent = agents.get(r["agent_id"])
            missed, away = (1, False) if agent is None else routing.after_miss(agent,
                                                                               self.policy)
            if agent is not None:
                profile = agent.profile.model_copy(update={"presence": "away"}) if away \
                    else agent.profile
                # set away without moving updated_at: the agent's next profile event wins
                await conn.execute("UPDATE router_agent SET missed = $2, profile = $3"
                                   " WHERE agent_id = $1", agent.agent_id, missed,
                                   profile.model_dump_json())
            cause = f"{r['offer_id']}/expired"
            expired = ce.AssignmentExpired(case_id=r["case_id"], offer_id=r["offer_id"],
                                           agent_id=r["agent_id"], missed_in_a_row=missed,
                                           agent_set_away=away)
            decision += Decision(events=(CaseEvent.derived(
                cause, "assignment.expired", r["case_id"], "assignment.expired", now, expired),))
            if away:  # their other open offers will not be answered either
                decision += await self.withdraw_offers_of(conn, r["agent_id"], cause, now)
            case = await self.requeue(conn, r["case_id"], r["agent_id"])
            if case is not None:
                decision += await self.route_one(conn, case, cause, "offer expired", now)
        return decision

    async def withdraw_offers_of(self, conn: asyncpg.Connection, agent_id: str, cause: str,
                                 now: datetime) -> Decision:
        rows = await conn.fetch(
            "UPDATE router_offer SET state = 'withdrawn', answered_at = $2 WHERE agent_id = $1"
            " AND state = 'offered' RETURNING offer_id, case_id", agent_id, now)
        decision = NOTHING
        for r in sorted(rows, key=lambda r: r["offer_id"]):
            data = ce.AssignmentWithdrawn(case_id=r["case_id"], offer_id=r["offer_id"],
                                          agent_id=agent_id, reason="agent set away")
            decision += Decision(events=(CaseEvent.derived(
                cause, f"assignment.withdrawn/{r['offer_id']}", r["case_id"],
                "assignment.withdrawn", now, data),))
            case = await self.requeue(conn, r["case_id"], None)
            if case is not None:
                decision += await self.route_one(conn, case, f"{cause}/{r['case_id']}",
                                                 "agent set away", now)
        return decision

    async def recheck_waiting(self, conn: asyncpg.Connection, now: datetime) -> Decision:
        """Waiting cases whose next relaxation step, overflow or hold end has come, and cases
        in queues past their KPIs that have not overflowed yet."""
        hot = await self.overflowing(conn, now)
        rows = await conn.fetch(
            "SELECT case_id, waiting, generation FROM router_case WHERE state = 'waiting' AND"
            " (next_check_at <= $1 OR (queue = ANY($2::text[]) AND next_check_at IS NOT NULL))"
            f" ORDER BY next_check_at LIMIT {_BATCH} FOR UPDATE SKIP LOCKED", now, list(hot))
        decision = NOTHING
        for r in rows:
            await conn.execute("UPDATE router_case SET generation = generation + 1"
                               " WHERE case_id = $1", r["case_id"])
            case = core.case_from_json(json.loads(r["waiting"]))
            cause = f"{r['case_id']}/recheck/{r['generation']}"
            decision += await self.route_one(conn, case, cause, "waiting time", now)
        return decision

    async def tick(self) -> int:
        now = self.runtime.clock.now()
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            await _lock(conn)
            decision = await self.expire_offers(conn, now)
            decision += await self.recheck_waiting(conn, now)
            await self.runtime.persist(conn, decision)
        if decision.events:
            self.runtime.wake_relay()
        return len(decision.events)

    async def timer_loop(self, runtime: ServiceRuntime) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be restarting: the timers wait in it
                log.exception("router timer loop failed; retrying")
            await asyncio.sleep(runtime.settings.timer_tick_seconds)


async def _lock(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _ROUTER_LOCK)


async def _answer(conn: asyncpg.Connection, offer_id: str, agent_id: str, state: str,
                  now: datetime) -> bool:
    """Record the agent's answer to an offer still open; False if it was not (any more)."""
    answered = await conn.fetchval(
        "UPDATE router_offer SET state = $3, answered_at = $4 WHERE offer_id = $1"
        " AND agent_id = $2 AND state = 'offered' RETURNING offer_id",
        offer_id, agent_id, state, now)
    return answered is not None


async def load_seed_roster(runtime: ServiceRuntime) -> None:
    """Agents of the seed roster, unless the agents topic already told us better.

    A seed agent no profile event ever updated is reset at start (misses forgiven, presence
    from the file): nobody can bring such an agent back from `away` but a restart.
    """
    roster: list[dict[str, Any]] = json.loads(
        (resources.files("services.router") / "seed_roster.json").read_text("utf-8"))
    epoch = datetime(2000, 1, 1).astimezone()
    async with runtime.pool.acquire() as conn:
        for entry in roster:
            profile = ag.AgentProfile.model_validate({**entry, "changed_at": epoch})
            await conn.execute(
                "INSERT INTO router_agent (agent_id, profile, updated_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (agent_id) DO UPDATE SET profile = EXCLUDED.profile, missed = 0"
                " WHERE router_agent.updated_at <= EXCLUDED.updated_at",
                profile.agent_id, profile.model_dump_json(), epoch)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def wire(runtime: ServiceRuntime) -> ServiceRuntime:
    s = runtime.settings
    config = core.load_config(_path(s.router_policy_path), _path(s.router_taxonomy_path),
                              _path(s.router_model_path))
    app = RouterApp(runtime, config)
    runtime.subscribe(Route(CASE_EVENTS, ce.CASE_EVENT_TYPES, {
        "contact.received": app.on_contact, "contact.text_added": app.on_text_added,
        "case.escalated": app.on_escalated},
        reject_unknown_types=False))
    runtime.subscribe(Route(AGENTS, ag.AGENT_TOPIC_TYPES,
                            {"agent.profile_changed": app.on_profile}))
    runtime.subscribe(Route(AGENT_ACTIVITY, ag.AGENT_ACTIVITY_TYPES, {
        "agent.offer_accepted": app.on_accepted, "agent.offer_declined": app.on_declined,
        "agent.replied": app.on_replied, "agent.case_solved": app.on_solved,
        "agent.case_transferred": app.on_transferred,
        "agent.status_changed": app.on_status_changed}))
    runtime.startup.append(load_seed_roster)
    runtime.background.append(app.timer_loop)
    return runtime
