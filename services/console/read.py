"""The console's reads: PostgreSQL, as the services' role, in read-only transactions.

Aggregates are computed in SQL over partial indexes (`0050_console_indexes.sql`) and every list is
paged, so a page costs the same with 10,000 waiting cases and 1,000 agents as with ten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

import asyncpg

from services.console import views
from services.console.views import OpenOffer, QueueGroup
from services.router.policy import RoutingPolicy
from shared.caselog.store import read_case


@dataclass(frozen=True)
class Page:
    number: int
    size: int
    total: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def last(self) -> int:
        return max(1, -(-self.total // self.size))


def page_of(number: int, size: int, total: int) -> Page:
    last = max(1, -(-total // size))
    return Page(min(max(1, number), last), size, total)


class Reader:
    def __init__(self, pool: asyncpg.Pool, policy: RoutingPolicy, *, page_size: int,
                 throughput_window: timedelta, sla_horizon: timedelta,
                 breached_window: timedelta) -> None:
        self.pool = pool
        self.policy = policy
        self.page_size = page_size
        self.throughput_window = throughput_window
        self.sla_horizon = sla_horizon
        self.breached_window = breached_window

    # --- queues --------------------------------------------------------------------------------
    async def queues(self, now: datetime) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            groups = await conn.fetch(
                "SELECT queue, channel, COALESCE((waiting->'requirements'->>'min_authority_tier')"
                "::int, 1) AS tier, step, count(*) AS waiting, min(queued_at) AS oldest"
                " FROM router_case WHERE state = 'waiting' GROUP BY 1, 2, 3, 4")
            taken = await conn.fetch(
                "SELECT needs->'requirements'->>'skill' AS skill, channel, count(*) AS n"
                " FROM router_offer WHERE answered_at >= $1 AND answered_at <= $2"
                " AND state IN ('accepted', 'released') GROUP BY 1, 2",
                now - self.throughput_window, now)
            offered = await conn.fetchval(
                "SELECT count(*) FROM router_offer WHERE state = 'offered'")
        rows = views.queue_rows(
            [QueueGroup(**dict(g)) for g in groups],
            {(t["skill"], t["channel"]): t["n"] for t in taken}, self.policy,
            self.throughput_window.total_seconds(), now)
        return {"rows": rows, "waiting": sum(r.waiting for r in rows), "offered": offered,
                "hot": sorted({r.queue for r in rows if r.hot}),
                "window_minutes": self.throughput_window.total_seconds() / 60}

    async def queue_cases(self, queue: str, page: int, now: datetime) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            total = await conn.fetchval(
                "SELECT count(*) FROM router_case WHERE state = 'waiting' AND queue = $1", queue)
            p = page_of(page, self.page_size, total)
            rows = await conn.fetch(
                "SELECT case_id, channel, step, queued_at, last_agent, stage_skill,"
                " waiting->'requirements' AS req, waiting->>'priority' AS priority"
                " FROM router_case WHERE state = 'waiting' AND queue = $1"
                " ORDER BY queued_at, case_id LIMIT $2 OFFSET $3", queue, p.size, p.offset)
        cases = []
        for r in rows:
            req = json.loads(r["req"]) if r["req"] else {}
            cases.append({**dict(r), "req": req,
                          "waited": max(0.0, (now - r["queued_at"]).total_seconds())})
        return {"queue": queue, "cases": cases, "page": p}

    # --- agents --------------------------------------------------------------------------------
    AGENT_SORTS: ClassVar[dict[str, str]] = {
        "id": "a.agent_id",
        "load": "COALESCE(l.open, 0) DESC, a.agent_id",
        "presence": "a.profile->>'presence', a.agent_id",
        "idle": "a.idle_since, a.agent_id",
    }

    async def agents(self, page: int, presence: str | None, search: str | None, sort: str,
                     ) -> dict[str, Any]:
        order = self.AGENT_SORTS.get(sort, self.AGENT_SORTS["id"])
        pattern = f"%{_like(search)}%" if search else None
        where = ("($1::text IS NULL OR a.profile->>'presence' = $1) AND ($2::text IS NULL OR"
                 " a.agent_id ILIKE $2 OR a.profile->>'name' ILIKE $2)")
        async with self.pool.acquire() as conn:
            presence_counts = await conn.fetch(
                "SELECT COALESCE(profile->>'presence', 'offline') AS presence, count(*) AS n"
                " FROM router_agent GROUP BY 1 ORDER BY 1")
            total = await conn.fetchval(f"SELECT count(*) FROM router_agent a WHERE {where}",
                                        presence, pattern)
            p = page_of(page, self.page_size, total)
            rows = await conn.fetch(
                "SELECT a.agent_id, a.profile, a.idle_since, a.missed FROM router_agent a"
                " LEFT JOIN (SELECT agent_id, count(*) AS open FROM router_offer"
                "            WHERE state IN ('offered', 'accepted') GROUP BY agent_id) l"
                "   ON l.agent_id = a.agent_id"
                f" WHERE {where} ORDER BY {order} LIMIT $3 OFFSET $4",
                presence, pattern, p.size, p.offset)
            offers = await conn.fetch(
                "SELECT agent_id, case_id, channel, state, offered_at, expires_at FROM router_offer"
                " WHERE agent_id = ANY($1::text[]) AND state IN ('offered', 'accepted')"
                " ORDER BY offered_at", [r["agent_id"] for r in rows])
        by_agent = views.group_offers(OpenOffer(**dict(o)) for o in offers)
        agents = [views.agent_row(r["agent_id"], json.loads(r["profile"]), r["idle_since"],
                                  r["missed"], by_agent.get(r["agent_id"], []), self.policy)
                  for r in rows]
        return {"agents": agents, "page": p,
                "presence": {r["presence"]: r["n"] for r in presence_counts}}

    # --- SLA risk ------------------------------------------------------------------------------
    async def sla(self, page: int, now: datetime) -> dict[str, Any]:
        horizon, since = now + self.sla_horizon, now - self.breached_window
        # Running clocks due within the horizon, and breaches of cases not solved: each branch
        # over its own partial index. A breach's case is looked up by its key, row by row (a
        # scalar subquery, never a join the planner could answer by reading every case), and
        # the page's cases once the page is cut.
        not_solved = ("(SELECT r.state FROM router_case r WHERE r.case_id = c.case_id)"
                      " IS DISTINCT FROM 'solved'")
        columns = "c.clock_id, c.case_id, c.metric, c.policy, c.rule, c.state, c.due_at"
        risky = (f"SELECT {columns} FROM sla_clock c WHERE c.state = 'running'"
                 f" AND c.due_at <= $1 UNION ALL SELECT {columns} FROM sla_clock c"
                 f" WHERE c.state = 'breached' AND c.due_at >= $2 AND c.due_at <= $1"
                 f" AND {not_solved}")
        async with self.pool.acquire() as conn:
            counts = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM sla_clock WHERE state = 'running' AND due_at > $3"
                " AND due_at <= $1) AS due_soon, (SELECT count(*) FROM sla_clock"
                " WHERE state = 'running' AND due_at <= $3) AS overdue, (SELECT count(*)"
                " FROM sla_clock c WHERE c.state = 'breached' AND c.due_at >= $2"
                f" AND c.due_at <= $1 AND {not_solved}) AS breached", horizon, since, now)
            total = counts["due_soon"] + counts["overdue"] + counts["breached"]
            p = page_of(page, self.page_size, total)
            rows = await conn.fetch(
                f"SELECT * FROM ({risky}) r ORDER BY due_at, case_id, metric LIMIT $3 OFFSET $4",
                horizon, since, p.size, p.offset)
            cases = {r["case_id"]: r for r in await conn.fetch(
                "SELECT case_id, queue, state, last_agent FROM router_case"
                " WHERE case_id = ANY($1::text[])", list({r["case_id"] for r in rows}))}
        clocks = []
        for r in rows:
            case = cases.get(r["case_id"])
            clocks.append(views.SlaRow(
                **dict(r), seconds_left=(r["due_at"] - now).total_seconds(),
                queue=case["queue"] if case else None, case_state=case["state"] if case else None,
                agent=case["last_agent"] if case else None))
        clocks = views.by_urgency(clocks)
        return {"clocks": clocks, "counts": dict(counts), "page": p,
                "horizon_minutes": self.sla_horizon.total_seconds() / 60,
                "breached_hours": self.breached_window.total_seconds() / 3600}

    # --- escalations ---------------------------------------------------------------------------
    _ESCALATION = ("SELECT escalation_id, case_id, reason, rule, state, level, repeat,"
                   " notifications, opened_at, next_fire_at, assigned_agent, requeue_tier"
                   " FROM escalation")

    async def escalations(self, page: int) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            total = await conn.fetchval(
                "SELECT count(*) FROM escalation WHERE state IN ('open', 'exhausted')")
            p = page_of(page, self.page_size, total)
            rows = await conn.fetch(
                f"{self._ESCALATION} WHERE state IN ('open', 'exhausted')"
                " ORDER BY opened_at DESC, escalation_id LIMIT $1 OFFSET $2", p.size, p.offset)
        return {"escalations": [dict(r) for r in rows], "page": p}

    async def escalation(self, escalation_id: str) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(f"{self._ESCALATION} WHERE escalation_id = $1",
                                      escalation_id)
            if row is None:
                return None
            # Its events in the case log: the packet (case.escalated) and what happened since.
            events = await conn.fetch(
                "SELECT seq, type, time, data FROM case_log WHERE case_id = $1"
                " AND (type = 'case.escalated' OR type LIKE 'escalation.%')"
                " AND payload->>'escalation_id' = $2 ORDER BY seq", row["case_id"],
                escalation_id)
            case = await conn.fetchrow(
                "SELECT state, queue, last_agent FROM router_case WHERE case_id = $1",
                row["case_id"])
        packet = None
        history = []
        for e in events:
            data = json.loads(e["data"])
            if e["type"] == "case.escalated":
                packet = data.get("packet")
            history.append({"seq": e["seq"], "type": e["type"], "time": e["time"],
                            "summary": _event_summary(e["type"], data)})
        return {"escalation": dict(row), "packet": packet, "history": history,
                "case": dict(case) if case else None}

    # --- case timeline -------------------------------------------------------------------------
    async def case_timeline(self, case_id: str) -> list[views.TimelineRow]:
        async with self.pool.acquire() as conn:
            rows = await read_case(conn, case_id)
        return views.chain_statuses([(r, r.prev_hash, r.hash) for r in rows],
                                    [r.hash_version for r in rows])

    async def case_state(self, case_id: str) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT state, queue, channel, last_agent FROM router_case WHERE case_id = $1",
                case_id)
        return dict(row) if row else None


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _event_summary(type_: str, data: dict[str, Any]) -> str:
    if type_ == "escalation.acknowledged":
        return f"acknowledged by {data.get('by')} (via {data.get('via')})"
    if type_ == "escalation.notified":
        return f"notified {data.get('target')} by {data.get('sink')}"
    if type_ == "escalation.reescalated":
        return f"level {data.get('from_level')} → {data.get('level')}: {data.get('target')}"
    if type_ == "escalation.resolved":
        return f"resolved: {data.get('resolution')}"
    if type_ == "escalation.exhausted":
        return f"exhausted after {data.get('notifications')} notifications"
    if type_ == "case.escalated":
        return f"escalated to {data.get('target')} (level {data.get('level')})"
    return type_
