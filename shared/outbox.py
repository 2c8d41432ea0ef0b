"""The transactional outbox: messages written with the log rows, published by a relay afterwards.

Only events that were new to the log get outbox rows, so a redelivered input publishes nothing a
second time. The relay publishes in id order and deletes what it published; a crash between the
publish and the delete republishes the same records (same ids), which consumers absorb.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from faststream.kafka import KafkaBroker
from opentelemetry import context as otel_context
from opentelemetry import propagate

from shared.caselog.chain import canonical_json
from shared.contracts.envelope import Envelope
from shared.contracts.topics import CASE_EVENTS
from shared.events import CaseEvent, Outbound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxRecord:
    topic: str
    key: str
    headers: dict[str, str]
    value: bytes


def record_for_event(event: CaseEvent, source: str) -> OutboxRecord:
    envelope = Envelope(
        id=str(event.event_id), source=source, type=event.type, time=event.time,
        subject=event.case_id,
    )
    value = canonical_json(event.data.model_dump(mode="json")).encode()
    return OutboxRecord(CASE_EVENTS, event.case_id, _with_trace(envelope.to_headers()), value)


def record_for_outbound(message: Outbound, source: str) -> OutboxRecord:
    envelope = Envelope(
        id=str(message.event_id), source=source, type=message.type, time=message.time,
        subject=message.subject,
    )
    value = canonical_json(message.data.model_dump(mode="json")).encode()
    return OutboxRecord(message.topic, message.key, _with_trace(envelope.to_headers()), value)


def _with_trace(headers: dict[str, str]) -> dict[str, str]:
    # Remember the trace of the decision so the relay publishes inside it, later.
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {**headers, **{f"x-otel-{k}": v for k, v in carrier.items()}}


async def enqueue(conn: asyncpg.Connection, service: str, records: Sequence[OutboxRecord]) -> None:
    if records:
        await conn.executemany(
            "INSERT INTO outbox (service, topic, key, headers, value) VALUES ($1,$2,$3,$4,$5)",
            [(service, r.topic, r.key.encode(), json.dumps(r.headers), r.value) for r in records],
        )


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, broker: KafkaBroker, service: str) -> None:
        self._pool = pool
        self._broker = broker
        self._service = service
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Drain forever: on a wake-up, and every second for rows left by a crash."""
        backoff = 0.2
        while True:
            try:
                while await self.drain_once():
                    pass
                backoff = 0.2
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                except TimeoutError:
                    pass
                self._wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception:  # broker or database down: keep the rows, try again later
                log.exception("outbox relay of %s failed; retrying", self._service)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def drain_once(self, limit: int = 500) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            # One relay per service at a time, even with several instances: two relays
            # publishing halves of the outbox at once could reorder a case's events.
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1), 0)",
                                       f"outbox:{self._service}"):
                return 0
            rows = await conn.fetch(
                "SELECT id, topic, key, headers, value FROM outbox WHERE service = $1"
                " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                self._service, limit,
            )
            for row in rows:
                await self._publish(row)
            if rows:
                await conn.execute(
                    "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
                )
        self.published += len(rows)
        return len(rows)

    async def _publish(self, row: asyncpg.Record) -> None:
        stored: dict[str, str] = json.loads(row["headers"])
        carrier = {k[len("x-otel-"):]: v for k, v in stored.items() if k.startswith("x-otel-")}
        headers = {k: v for k, v in stored.items() if not k.startswith("x-otel-")}
        token = otel_context.attach(propagate.extract(carrier))
        try:
            await self._broker.publish(
                bytes(row["value"]), row["topic"], key=bytes(row["key"]), headers=headers
            )
        finally:
            otel_context.detach(token)
