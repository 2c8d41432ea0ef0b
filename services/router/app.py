"""Router's FastStream app: case events and agent events → core → log, outbox, offer state."""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg

from services.router import core
from shared.contracts import agents as ag
from shared.contracts import case_events as ce
from shared.contracts.envelope import Envelope
from shared.contracts.topics import AGENT_ACTIVITY, AGENTS, CASE_EVENTS
from shared.events import NOTHING, CaseEvent, Decision
from shared.runtime import Route, ServiceRuntime


async def on_contact(conn: asyncpg.Connection, env: Envelope, c: ce.ContactReceived,
                     now: datetime) -> Decision:
    active = await conn.fetchval(
        "SELECT count(*) FROM router_offer WHERE case_id = $1 AND state IN ('offered','accepted')",
        c.case_id)
    if active:
        return NOTHING  # the case is already with an agent; later contacts follow it
    classified = core.classify(c)
    event = CaseEvent.derived(env.id, "case.classified", c.case_id, "case.classified", now,
                              classified)
    needs = core.needs_of(classified, c.channel)
    decision = await _offer(conn, c.case_id, needs, set(), env.id, now)
    return Decision(events=(event,)) + decision


async def _offer(conn: asyncpg.Connection, case_id: str, needs: core.Needs, excluded: set[str],
                 cause_id: str, now: datetime) -> Decision:
    decision, _chosen = core.offer(case_id, needs, await _agents(conn), excluded, cause_id, now)
    for event in decision.events:
        if isinstance(event.data, ce.AssignmentOffered):
            await conn.execute(
                "INSERT INTO router_offer (offer_id, case_id, agent_id, channel, needs, state,"
                " offered_at) VALUES ($1,$2,$3,$4,$5,'offered',$6) ON CONFLICT DO NOTHING",
                event.data.offer_id, case_id, event.data.agent_id, needs.channel,
                json.dumps(needs.__dict__), now)
    return decision


async def _agents(conn: asyncpg.Connection) -> list[core.AgentLoad]:
    rows = await conn.fetch(
        "SELECT a.profile, o.channel, count(o.offer_id) AS n FROM router_agent a"
        " LEFT JOIN router_offer o ON o.agent_id = a.agent_id AND o.state IN ('offered','accepted')"
        " GROUP BY a.agent_id, a.profile, o.channel")
    loads: dict[str, core.AgentLoad] = {}
    for row in rows:
        profile = ag.AgentProfile.model_validate_json(row["profile"])
        agent = loads.setdefault(profile.agent_id, core.AgentLoad(profile, {}))
        if row["channel"] is not None:
            agent.load[row["channel"]] = row["n"]
    return list(loads.values())


async def on_profile(conn: asyncpg.Connection, env: Envelope, p: ag.AgentProfile,
                     now: datetime) -> Decision:
    await conn.execute(
        "INSERT INTO router_agent (agent_id, profile, updated_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (agent_id) DO UPDATE SET profile = EXCLUDED.profile,"
        " updated_at = EXCLUDED.updated_at WHERE router_agent.updated_at <= EXCLUDED.updated_at",
        p.agent_id, p.model_dump_json(), p.changed_at)
    return NOTHING


async def on_accepted(conn: asyncpg.Connection, env: Envelope, a: ag.OfferAccepted,
                      now: datetime) -> Decision:
    updated = await conn.fetchval(
        "UPDATE router_offer SET state = 'accepted' WHERE offer_id = $1 AND agent_id = $2"
        " AND state = 'offered' RETURNING offer_id", a.offer_id, a.agent_id)
    if updated is None:
        return NOTHING  # unknown, already answered or withdrawn: nothing to do, nothing to log
    accepted = ce.AssignmentAccepted(case_id=a.case_id, offer_id=a.offer_id, agent_id=a.agent_id)
    assigned = ce.CaseAssigned(case_id=a.case_id, agent_id=a.agent_id)
    return Decision(events=(
        CaseEvent.derived(env.id, "assignment.accepted", a.case_id, "assignment.accepted", now,
                          accepted),
        CaseEvent.derived(env.id, "case.assigned", a.case_id, "case.assigned", now, assigned),
    ))


async def on_declined(conn: asyncpg.Connection, env: Envelope, d: ag.OfferDeclined,
                      now: datetime) -> Decision:
    needs_json = await conn.fetchval(
        "UPDATE router_offer SET state = 'declined' WHERE offer_id = $1 AND agent_id = $2"
        " AND state = 'offered' RETURNING needs", d.offer_id, d.agent_id)
    if needs_json is None:
        return NOTHING
    declined = CaseEvent.derived(env.id, "assignment.declined", d.case_id, "assignment.declined",
                                 now, ce.AssignmentDeclined(case_id=d.case_id, offer_id=d.offer_id,
                                                            agent_id=d.agent_id, reason=d.reason))
    excluded = {r["agent_id"] for r in await conn.fetch(
        "SELECT agent_id FROM router_offer WHERE case_id = $1 AND state = 'declined'", d.case_id)}
    needs = core.Needs(**json.loads(needs_json))
    return Decision(events=(declined,)) + await _offer(conn, d.case_id, needs, excluded, env.id,
                                                       now)


async def on_replied(conn: asyncpg.Connection, env: Envelope, r: ag.AgentReplied,
                     now: datetime) -> Decision:
    data = ce.ReplySent(case_id=r.case_id, agent_id=r.agent_id, text=r.text, at=r.at)
    return Decision(events=(CaseEvent.derived(env.id, "reply.sent", r.case_id, "reply.sent", now,
                                              data),))


async def on_solved(conn: asyncpg.Connection, env: Envelope, s: ag.CaseSolved,
                    now: datetime) -> Decision:
    await conn.execute("UPDATE router_offer SET state = 'released' WHERE case_id = $1"
                       " AND state IN ('offered', 'accepted')", s.case_id)
    data = ce.CaseSolvedEvent(case_id=s.case_id, agent_id=s.agent_id, at=s.at)
    return Decision(events=(CaseEvent.derived(env.id, "case.solved", s.case_id, "case.solved",
                                              now, data),))


async def load_seed_roster(runtime: ServiceRuntime) -> None:
    """Agents of the seed roster, unless the agents topic already told us better."""
    roster: list[dict[str, Any]] = json.loads(
        (resources.files("services.router") / "seed_roster.json").read_text("utf-8"))
    epoch = datetime(2000, 1, 1).astimezone()
    async with runtime.pool.acquire() as conn:
        for entry in roster:
            profile = ag.AgentProfile.model_validate({**entry, "changed_at": epoch})
            await conn.execute(
                "INSERT INTO router_agent (agent_id, profile, updated_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (agent_id) DO NOTHING",
                profile.agent_id, profile.model_dump_json(), epoch)


def wire(runtime: ServiceRuntime) -> ServiceRuntime:
    runtime.subscribe(Route(CASE_EVENTS, ce.CASE_EVENT_TYPES, {"contact.received": on_contact},
                            reject_unknown_types=False))
    runtime.subscribe(Route(AGENTS, ag.AGENT_TOPIC_TYPES, {"agent.profile_changed": on_profile}))
    runtime.subscribe(Route(AGENT_ACTIVITY, ag.AGENT_ACTIVITY_TYPES, {
        "agent.offer_accepted": on_accepted, "agent.offer_declined": on_declined,
        "agent.replied": on_replied, "agent.case_solved": on_solved}))
    runtime.startup.append(load_seed_roster)
    return runtime
