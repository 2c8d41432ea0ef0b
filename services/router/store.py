"""The router's tables: loading the floor at start and per batch, saving what changed.

`router_agent`, `router_offer`, `router_case` and `router_contact` are the floor's durable copy,
written in the same transaction as the log rows the changes came with, so a restart (or the
standby taking over) rebuilds exactly the floor that decided what the log says.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.router import core, routing
from services.router.classify import PriorContact
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
from shared.contracts.agents import AgentProfile

_CASE_COLUMNS = ("case_id, state, channel, classification, waiting, queue, step, queued_at,"
                 " next_check_at, generation, last_agent, contact_text, customer_key,"
                 " stage_skill, updated_at")


# --- loading -----------------------------------------------------------------------------------
async def load_floor(conn: asyncpg.Connection, floor: Floor) -> None:
    """Agents, open offers and the cases not solved: everything a decision may need."""
    for row in await conn.fetch("SELECT agent_id, profile, updated_at, idle_since, missed"
                                " FROM router_agent ORDER BY agent_id"):
        floor.load(PutAgent(_agent(row)))
    for row in await conn.fetch(
            "SELECT offer_id, case_id, agent_id, channel, needs, state, offered_at, expires_at,"
            " answered_at FROM router_offer WHERE state IN ('offered', 'accepted')"):
        floor.load(PutOffer(_offer(row)))
    for row in await conn.fetch(f"SELECT {_CASE_COLUMNS} FROM router_case"
                                " WHERE state IN ('waiting', 'offered', 'assigned')"):
        floor.load(PutCase(_case(row)))


async def prefetch(conn: asyncpg.Connection, floor: Floor, case_ids: Iterable[str],
                   customer_keys: Iterable[str], since: datetime) -> None:
    """Before a batch: the solved cases it names that the floor has forgotten, and the recent
    contacts of customers the floor has not seen yet (one query each)."""
    missing = sorted({c for c in case_ids if c not in floor.cases})
    if missing:
        for row in await conn.fetch(f"SELECT {_CASE_COLUMNS} FROM router_case"
                                    " WHERE case_id = ANY($1::text[])", missing):
            floor.load(PutCase(_case(row)))
    keys = sorted({k for k in customer_keys if k not in floor.history})
    if keys:
        for key in keys:
            floor.history[key] = []
        for row in await conn.fetch(
                # An index probe per customer (LATERAL: as `customer_key = ANY($1)` it was
                # planned as a sequential scan of every contact, a cost growing with the table)
                "SELECT r.* FROM unnest($1::text[]) AS u(key) CROSS JOIN LATERAL"
                " (SELECT contact_id, customer_key, case_id, intent, received_at"
                "  FROM router_contact WHERE customer_key = u.key AND received_at >= $2"
                "  OFFSET 0) AS r ORDER BY r.received_at", keys, since):
            floor.load(AddContact(ContactSeen(row["contact_id"], row["customer_key"],
                                              PriorContact(row["case_id"], row["intent"],
                                                           row["received_at"]))))


def _agent(row: asyncpg.Record) -> AgentRecord:
    return AgentRecord(AgentProfile.model_validate_json(row["profile"]), row["updated_at"],
                       row["idle_since"], row["missed"])


def _offer(row: asyncpg.Record) -> Offer:
    return Offer(row["offer_id"], row["case_id"], row["agent_id"], row["channel"], row["state"],
                 row["offered_at"], row["expires_at"],
                 core.case_from_json(json.loads(row["needs"])), row["answered_at"])


def _case(row: asyncpg.Record) -> CaseRecord:
    classification = row["classification"]
    return CaseRecord(
        case_id=row["case_id"], state=row["state"],
        waiting=core.case_from_json(json.loads(row["waiting"])),
        classification=None if classification in (None, "{}") else classification,
        step=row["step"], next_check_at=row["next_check_at"], generation=row["generation"],
        last_agent=row["last_agent"], contact_text=row["contact_text"],
        customer_key=row["customer_key"], stage_skill=row["stage_skill"])


# --- saving ------------------------------------------------------------------------------------
async def save(conn: asyncpg.Connection, changes: Sequence[Change], now: datetime) -> int:
    """The last state of every case, offer and agent the changes touched, and new contacts, in
    one statement that also reads the leadership epoch (locked FOR SHARE until commit): the
    caller compares it with its own and must not commit on a difference.

    One round trip for what were five (the epoch, then an `executemany` per table): a router
    batch at a moderate rate holds a record or two, so its fixed round trips were most of its
    cost (docs/benchmarks.md)."""
    cases: dict[str, CaseRecord] = {}
    offers: dict[str, Offer] = {}
    agents: dict[str, AgentRecord] = {}
    contacts: list[ContactSeen] = []
    for change in changes:
        if isinstance(change, PutCase):
            cases[change.record.case_id] = change.record
        elif isinstance(change, PutOffer):
            offers[change.offer.offer_id] = change.offer
        elif isinstance(change, PutAgent):
            agents[change.agent.profile.agent_id] = change.agent
        else:
            contacts.append(change.contact)
    epoch: int = await conn.fetchval(
        _SAVE,
        *_columns([(a.profile.agent_id, a.profile.model_dump_json(), a.updated_at,
                    a.idle_since, a.missed) for a in agents.values()], 5),
        *_columns([_offer_row(o) for o in offers.values()], 9),
        *_columns([_case_row(c, now) for c in cases.values()], 15),
        *_columns([(c.contact_id, c.customer_key, c.prior.case_id, c.prior.intent, c.prior.at)
                   for c in contacts], 5),
    )
    return epoch


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column, for `unnest`."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else \
        [[] for _ in range(width)]


_CASE_UPDATES = ", ".join(f"{c} = EXCLUDED.{c}" for c in _CASE_COLUMNS.split(", ")[1:])
# Each table's rows as parallel arrays; every INSERT runs whether or not its arrays are empty
# (data-modifying CTEs always do), and no key repeats within one (the dicts above).
_SAVE = (
    "WITH leader AS (SELECT epoch FROM router_leader WHERE id = 1 FOR SHARE),"
    " agents AS (INSERT INTO router_agent (agent_id, profile, updated_at, idle_since, missed)"
    "  SELECT a, p::jsonb, u, i, m FROM unnest($1::text[], $2::text[], $3::timestamptz[],"
    "  $4::timestamptz[], $5::integer[]) AS t(a, p, u, i, m)"
    "  ON CONFLICT (agent_id) DO UPDATE SET profile = EXCLUDED.profile,"
    "  updated_at = EXCLUDED.updated_at, idle_since = EXCLUDED.idle_since,"
    "  missed = EXCLUDED.missed),"
    " offers AS (INSERT INTO router_offer (offer_id, case_id, agent_id, channel, needs, state,"
    "  offered_at, expires_at, answered_at)"
    "  SELECT o, c, a, ch, n::jsonb, s, oa, e, aa FROM unnest($6::text[], $7::text[],"
    "  $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[],"
    "  $13::timestamptz[], $14::timestamptz[]) AS t(o, c, a, ch, n, s, oa, e, aa)"
    "  ON CONFLICT (offer_id) DO UPDATE SET state = EXCLUDED.state,"
    "  answered_at = EXCLUDED.answered_at),"
    f" cases AS (INSERT INTO router_case ({_CASE_COLUMNS})"
    "  SELECT c, s, ch, cl::jsonb, w::jsonb, q, st, qa, nc, g, la, ct, ck, ss, u"
    "  FROM unnest($15::text[], $16::text[], $17::text[], $18::text[], $19::text[],"
    "  $20::text[], $21::integer[], $22::timestamptz[], $23::timestamptz[], $24::integer[],"
    "  $25::text[], $26::text[], $27::text[], $28::text[], $29::timestamptz[])"
    "  AS t(c, s, ch, cl, w, q, st, qa, nc, g, la, ct, ck, ss, u)"
    f"  ON CONFLICT (case_id) DO UPDATE SET {_CASE_UPDATES}),"
    " contacts AS (INSERT INTO router_contact (contact_id, customer_key, case_id, intent,"
    "  received_at) SELECT * FROM unnest($30::text[], $31::text[], $32::text[], $33::text[],"
    "  $34::timestamptz[]) ON CONFLICT DO NOTHING)"
    " SELECT epoch FROM leader"
)


def _offer_row(o: Offer) -> tuple[Any, ...]:
    return (o.offer_id, o.case_id, o.agent_id, o.channel, json.dumps(core.case_to_json(o.needs)),
            o.state, o.offered_at, o.expires_at, o.answered_at)


def _case_row(c: CaseRecord, now: datetime) -> tuple[Any, ...]:
    w = c.waiting
    return (c.case_id, c.state, w.requirements.channel, c.classification or "{}",
            json.dumps(core.case_to_json(w)), routing.queue_name(w.requirements.skill,
                                                                 w.requirements.channel),
            c.step, w.queued_at, c.next_check_at, c.generation, c.last_agent, c.contact_text,
            c.customer_key, c.stage_skill, now)
