"""SLA's FastStream app: case events start and stop clocks; a timer loop fires due ones."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg
from opentelemetry import propagate, trace

from services.sla import core
from shared.contracts import case_events as ce
from shared.contracts.envelope import Envelope
from shared.contracts.topics import CASE_EVENTS
from shared.events import NOTHING, Decision
from shared.runtime import Route, ServiceRuntime

log = logging.getLogger(__name__)
_COLUMNS = "clock_id, case_id, metric, policy, started_at, due_at, state"


def _clock(row: asyncpg.Record) -> core.SlaClock:
    return core.SlaClock(**{k: row[k] for k in _COLUMNS.split(", ")})


def handlers(runtime: ServiceRuntime) -> dict[str, object]:
    async def on_contact(conn: asyncpg.Connection, env: Envelope, c: ce.ContactReceived,
                         now: datetime) -> Decision:
        if await conn.fetchval("SELECT 1 FROM sla_clock WHERE case_id = $1", c.case_id):
            return NOTHING
        targets = runtime.settings.sla_first_response_seconds
        decision, clock = core.start_first_response(c, targets, env.id, now)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        await conn.execute(
            f"INSERT INTO sla_clock ({_COLUMNS}, traceparent) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
            " ON CONFLICT (clock_id) DO NOTHING",
            clock.clock_id, clock.case_id, clock.metric, clock.policy, clock.started_at,
            clock.due_at, clock.state, carrier.get("traceparent"))
        return decision

    async def on_reply(conn: asyncpg.Connection, env: Envelope, r: ce.ReplySent,
                       now: datetime) -> Decision:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM sla_clock WHERE case_id = $1 AND metric = 'first_response'"
            " FOR UPDATE", r.case_id)
        if row is None:
            return NOTHING
        decision, clock = core.stop_on_reply(_clock(row), r.at, now)
        await _save_state(conn, clock, now)
        return decision

    return {"contact.received": on_contact, "reply.sent": on_reply}


async def _save_state(conn: asyncpg.Connection, clock: core.SlaClock, now: datetime) -> None:
    await conn.execute(
        "UPDATE sla_clock SET state = $2::text, closed_at = CASE WHEN $2::text = 'running'"
        " THEN NULL ELSE $3::timestamptz END WHERE clock_id = $1", clock.clock_id, clock.state, now)


async def fire_due_clocks(runtime: ServiceRuntime) -> int:
    """Breach every running clock whose due instant has passed; each exactly once.

    `FOR UPDATE SKIP LOCKED` lets several instances share the work without firing a clock twice;
    the state change and the log rows commit together.
    """
    tracer = trace.get_tracer("switchboard.sla", tracer_provider=runtime.tracer_provider)
    now = runtime.clock.now()
    async with runtime.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"SELECT {_COLUMNS}, traceparent FROM sla_clock WHERE state = 'running'"
            " AND due_at <= $1 ORDER BY due_at LIMIT 200 FOR UPDATE SKIP LOCKED", now)
        for row in rows:
            parent = propagate.extract({"traceparent": row["traceparent"] or ""})
            with tracer.start_as_current_span("sla.fire", context=parent):
                decision, clock = core.fire_if_due(_clock(row), now)
                await _save_state(conn, clock, now)
                await runtime.persist(conn, decision)
    if rows:
        runtime.wake_relay()
    return len(rows)


async def timer_loop(runtime: ServiceRuntime) -> None:
    while True:
        try:
            await fire_due_clocks(runtime)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database may be restarting: the clocks wait in it
            log.exception("sla timer loop failed; retrying")
        await asyncio.sleep(runtime.settings.timer_tick_seconds)


def wire(runtime: ServiceRuntime) -> ServiceRuntime:
    runtime.subscribe(Route(CASE_EVENTS, ce.CASE_EVENT_TYPES, handlers(runtime),  # type: ignore[arg-type]
                            reject_unknown_types=False))
    runtime.background.append(timer_loop)
    return runtime
