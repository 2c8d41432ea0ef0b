"""Escalation's FastStream app: breaches → the case's history from the log → core → outbox."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.escalation import core
from shared.caselog.store import read_case
from shared.contracts import case_events as ce
from shared.contracts.envelope import Envelope
from shared.contracts.topics import CASE_EVENTS
from shared.events import Decision
from shared.runtime import Route, ServiceRuntime


def handlers(runtime: ServiceRuntime) -> dict[str, object]:
    async def on_breach(conn: asyncpg.Connection, env: Envelope, b: ce.SlaBreached,
                        now: datetime) -> Decision:
        history = [(row.type, row.payload) for row in await read_case(conn, b.case_id)]
        return core.escalate_breach(b, history, runtime.settings.escalation_target, env.id, now)

    return {"sla.breached": on_breach}


def wire(runtime: ServiceRuntime) -> ServiceRuntime:
    runtime.subscribe(Route(CASE_EVENTS, ce.CASE_EVENT_TYPES, handlers(runtime),  # type: ignore[arg-type]
                            reject_unknown_types=False))
    return runtime
