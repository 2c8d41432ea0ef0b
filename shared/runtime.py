"""The service runtime: wires Kafka subscribers, PostgreSQL, the clock and the outbox to a core.

For each consumed record: decode the envelope and validate the body (failures go to `<topic>.dlq`
with the reason and the source offset), run the handler in a database transaction that also
appends the resulting case events to the log and their messages to the outbox, then acknowledge.
Infrastructure failures are retried with backoff, holding the partition (nothing is skipped);
a record that keeps failing for another reason is dead-lettered so the partition moves on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from faststream import FastStream
from faststream.kafka import KafkaMessage
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from shared.caselog.store import append_events
from shared.clock import Clock
from shared.contracts.base import Contract
from shared.contracts.dead_letter import DeadLetterHeaders
from shared.contracts.envelope import Envelope, EnvelopeError
from shared.contracts.topics import dlq
from shared.events import Decision
from shared.kafka import make_broker, subscriber_options
from shared.outbox import OutboxRelay, enqueue, record_for_event, record_for_outbound
from shared.settings import Settings
from shared.telemetry import current_trace_id

log = logging.getLogger(__name__)

Handler = Callable[[asyncpg.Connection, Envelope, Any, datetime], Awaitable[Decision]]
TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
             asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.TooManyConnectionsError,
             asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError,
             asyncpg.exceptions.AdminShutdownError, TimeoutError)
MAX_ATTEMPTS_FOR_NON_TRANSIENT = 3


class Rejected(Exception):
    """The record can never be processed: dead-letter it with this reason.

    Raised by decoding, or by a handler that finds the input unprocessable (an oversized email);
    the handler's transaction is rolled back and the record goes to the dead-letter topic at once.
    """


@dataclass(frozen=True)
class _Work:
    """A decoded record waiting for its handler."""

    record: ConsumerRecord[Any, Any]
    envelope: Envelope
    payload: Contract
    handler: Handler


@dataclass(frozen=True)
class Route:
    """A subscription: the topic, the models its types decode to, and a handler per type."""

    topic: str
    models: Mapping[str, type[Contract]]
    handlers: Mapping[str, Handler]
    # Inbound topics reject unknown types; on cases.events a service skips types it does not use.
    reject_unknown_types: bool = True
    max_bytes: int | None = None


@dataclass
class ServiceRuntime:
    name: str
    settings: Settings
    clock: Clock
    tracer_provider: TracerProvider | None = None
    group_suffix: str = ""
    # Run once the database pool is open, before any record is consumed.
    startup: list[Callable[[ServiceRuntime], Awaitable[None]]] = field(default_factory=list)
    # Long-running jobs (timers), started after the broker.
    background: list[Callable[[ServiceRuntime], Coroutine[Any, Any, None]]] = field(
        default_factory=list)
    dead_lettered: int = 0
    processed: int = 0

    def __post_init__(self) -> None:
        self.source = f"switchboard/{self.name}"
        self.broker = make_broker(
            self.settings.kafka_bootstrap_servers, client_id=f"switchboard-{self.name}",
            tracer_provider=self.tracer_provider,
        )
        self._tracer = trace.get_tracer("switchboard.runtime", tracer_provider=self.tracer_provider)
        self._pool: asyncpg.Pool | None = None
        self._relay: OutboxRelay | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "runtime not started"
        return self._pool

    @property
    def group_id(self) -> str:
        return f"switchboard-{self.name}{self.group_suffix}"

    # --- wiring ----------------------------------------------------------------------------
    def subscribe(self, route: Route) -> None:
        subscriber = self.broker.subscriber(
            route.topic, batch=True, **subscriber_options(self.group_id)
        )

        @subscriber
        async def on_batch(msg: KafkaMessage) -> None:
            await self.process_batch(list(msg.raw_message), route)
            await msg.ack()

    def app(self) -> FastStream:
        return FastStream(
            self.broker, on_startup=[self._open_pool], after_startup=[self._start_tasks],
            on_shutdown=[self._stop_tasks], after_shutdown=[self._close_pool],
        )

    async def start(self) -> None:
        """Start without a FastStream app (tests and the demo run services in-process)."""
        await self._open_pool()
        await self.broker.start()
        await self._start_tasks()

    async def stop(self) -> None:
        await self._stop_tasks()
        await self.broker.stop()
        await self._close_pool()

    async def _open_pool(self) -> None:
        self._pool = await _connect_with_retry(self.settings.database_url)
        for step in self.startup:
            await step(self)

    async def _close_pool(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def _start_tasks(self) -> None:
        self._relay = OutboxRelay(self.pool, self.broker, self.name)
        self._tasks = [asyncio.create_task(self._relay.run(), name=f"{self.name}-relay")]
        for job in self.background:
            self._tasks.append(asyncio.create_task(job(self), name=f"{self.name}-job"))

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # --- processing ------------------------------------------------------------------------
    async def process_batch(self, records: list[ConsumerRecord[Any, Any]], route: Route) -> None:
        """Decide a consumed batch in one transaction: one commit, batched log appends.

        If the batch fails as a whole (a record the database refuses, a handler's rejection, the
        database going away), it is rolled back and its records are retried one at a time, so
        one bad record costs only itself.
        """
        work: list[_Work] = []
        for record in records:
            try:
                decoded = self._decode(record, route)
            except Rejected as exc:
                await self.dead_letter(record, str(exc))
                continue
            if decoded is not None:
                envelope, payload = decoded
                work.append(_Work(record, envelope, payload, route.handlers[envelope.type]))
        if not work:
            return
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                for item in work:
                    await self._decide(conn, item)
        except Exception as exc:
            log.info("%s: batch of %d failed (%r); one record at a time", self.name, len(work),
                     exc)
            for item in work:
                await self._run_with_retry(item)
            return
        self.processed += len(work)
        self.wake_relay()

    async def _decide(self, conn: asyncpg.Connection, item: _Work) -> None:
        # Each record is handled in a span continuing its own trace (a batch's consumer span
        # only links to them), so log rows and outbox messages keep the contact's trace id.
        parent = propagate.extract(_text_headers(item.record))
        with self._tracer.start_as_current_span(f"{item.record.topic} handle", context=parent):
            decision = await item.handler(conn, item.envelope, item.payload, self.clock.now())
            await self.persist(conn, decision)

    def _decode(
        self, record: ConsumerRecord[Any, Any], route: Route
    ) -> tuple[Envelope, Contract] | None:
        value: bytes = record.value or b""
        limit = route.max_bytes or self.settings.max_inbound_event_bytes
        if len(value) > limit:
            raise Rejected(f"event of {len(value)} bytes exceeds the limit of {limit} bytes")
        try:
            envelope, data = Envelope.from_kafka(dict(record.headers or ()), value)
        except EnvelopeError as exc:
            raise Rejected(f"envelope: {exc}") from exc
        model = route.models.get(envelope.type)
        if model is None:
            if route.reject_unknown_types:
                raise Rejected(f"unknown event type {envelope.type!r} on {route.topic}")
            return None
        if envelope.type not in route.handlers:
            return None
        try:
            payload = model.model_validate_json(data)
        except ValidationError as exc:
            raise Rejected(f"{envelope.type} violates its schema: {_errors(exc)}") from exc
        return envelope, payload

    async def _run_with_retry(self, item: _Work) -> None:
        record, envelope = item.record, item.envelope
        backoff, failures = 0.2, 0
        while True:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await self._decide(conn, item)
                self.processed += 1
                self.wake_relay()
                return
            except Rejected as exc:  # the handler found the input unprocessable: no retry
                await self.dead_letter(record, f"{envelope.type}: {exc}")
                return
            except TRANSIENT as exc:
                log.warning("%s: transient failure, retrying in %.1fs: %r", self.name, backoff, exc)
            except Exception as exc:  # a bug or data the database refuses: bounded retries
                failures += 1
                log.exception("%s: %s failed (%d)", self.name, envelope.type, failures)
                if failures >= MAX_ATTEMPTS_FOR_NON_TRANSIENT:
                    await self.dead_letter(record, f"processing failed: {exc!r}"[:2000])
                    return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def persist(self, conn: asyncpg.Connection, decision: Decision) -> None:
        """Append the decision's events and queue what to publish, in the caller's transaction."""
        fresh = await append_events(
            conn, decision.events, source=self.source, trace_id=current_trace_id()
        )
        fresh_ids = {e.event_id for e in fresh}
        records = [record_for_event(e, self.source) for e in fresh]
        records += [
            record_for_outbound(m, self.source) for m in decision.outbound
            if m.caused_by in fresh_ids
        ]
        await enqueue(conn, self.name, records)

    def wake_relay(self) -> None:
        if self._relay is not None:
            self._relay.wake()

    async def dead_letter(self, record: ConsumerRecord[Any, Any], reason: str) -> None:
        """Publish the original bytes with the reason and the source position; retry until sent."""
        original = [[k, base64.b64encode(v or b"").decode()] for k, v in record.headers or ()]
        headers = DeadLetterHeaders(
            dlq_reason=reason, dlq_service=self.name, dlq_source_topic=record.topic,
            dlq_source_partition=str(record.partition), dlq_source_offset=str(record.offset),
            dlq_failed_at=self.clock.now().isoformat(), dlq_original_headers=json.dumps(original),
        ).model_dump()
        log.warning("%s: dead-lettering %s[%d]@%d: %s", self.name, record.topic,
                    record.partition, record.offset, reason)
        backoff = 0.2
        while True:
            try:
                await self.broker.publish(
                    record.value or b"", dlq(record.topic), key=record.key, headers=headers
                )
                self.dead_lettered += 1
                return
            except Exception:
                log.exception("%s: dead-letter publish failed; retrying", self.name)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


async def _connect_with_retry(url: str, attempts: int = 60) -> asyncpg.Pool:
    for attempt in range(attempts):
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(url, min_size=1, max_size=5)
            return pool
        except TRANSIENT:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(1.0)
    raise RuntimeError("unreachable")


def _text_headers(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in record.headers or () if v is not None}


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
    )[:1500]
