"""Intake's FastStream app: inbound topics → threading lookup → core → case log and outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from services.intake import core
from shared.contracts.envelope import Envelope
from shared.contracts.inbound import INBOUND_TOPICS
from shared.events import Decision
from shared.runtime import Route, ServiceRuntime


async def handle_inbound(
    conn: asyncpg.Connection, envelope: Envelope, payload: Any, now: datetime
) -> Decision:
    contact = core.understand(envelope.type, payload, now)
    known = await _known_case(conn, contact.lookup_keys)
    decision, case_id = core.decide(contact, known, envelope.id, now)
    if case_id is not None:
        await conn.executemany(
            "INSERT INTO intake_thread (thread_key, case_id) VALUES ($1, $2)"
            " ON CONFLICT (thread_key) DO NOTHING",
            [(key, case_id) for key in contact.own_keys],
        )
    return decision


async def _known_case(conn: asyncpg.Connection, keys: tuple[str, ...]) -> str | None:
    if not keys:
        return None
    rows = await conn.fetch(
        "SELECT thread_key, case_id FROM intake_thread WHERE thread_key = ANY($1::text[])",
        list(keys),
    )
    by_key = {r["thread_key"]: r["case_id"] for r in rows}
    return next((by_key[k] for k in keys if k in by_key), None)


def wire(runtime: ServiceRuntime) -> ServiceRuntime:
    for topic, models in INBOUND_TOPICS.items():
        runtime.subscribe(Route(topic, models, {t: handle_inbound for t in models}))
    return runtime
