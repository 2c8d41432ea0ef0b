"""The service runtime: wires Kafka subscribers, PostgreSQL, the clock and the outbox to a core.

For each consumed record: decode the envelope and validate the body (failures go to `<topic>.dlq`
with the reason and the source offset), run the handler in a database transaction that also
appends the resulting case events to the log and their messages to the outbox, then acknowledge.
Infrastructure failures are retried with backoff, holding the partition (nothing is skipped);
a record that keeps failing for another reason is dead-lettered so the partition moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from aiokafka.client import AIOKafkaClient
from faststream import FastStream
from faststream.kafka import KafkaMessage
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from shared.caselog.store import append_events
from shared.clock import Clock
from shared.contracts.base import Contract
from shared.contracts.dead_letter import DeadLetterHeaders
from shared.contracts.envelope import Envelope, EnvelopeError
from shared.contracts.topics import dlq
from shared.events import Decision
from shared.failures import clean_text, is_transient, safe_reason, safe_traceback, sqlstate
from shared.kafka import make_broker, subscriber_options
from shared.linger import lingered
from shared.logs import RateLimitedLog
from shared.observe import DEFAULT_PORTS, GaugeReader, HealthServer, Metrics
from shared.outbox import (
    OutboxRecord,
    OutboxRelay,
    enqueue,
    record_for_event,
    record_for_outbound,
)
from shared.settings import Settings
from shared.telemetry import consume_attributes, current_trace_id

log = logging.getLogger(__name__)

Handler = Callable[[asyncpg.Connection, Envelope, Any, datetime], Awaitable[Decision]]
MAX_ATTEMPTS_FOR_NON_TRANSIENT = 3
# A batch that lost a deadlock or a serialisation check goes again whole this many times, then
# one record at a time (where each is retried as any failure is).
MAX_BATCH_CONFLICTS = 3
# Records a batch on a topic a service mostly skips by its type header (cases.events for the
# router, SLA and escalation): each batch costs a transaction and an offset commit, skipping a
# record almost nothing.
SKIMMED_BATCH = 1_000


class Rejected(Exception):
    """The record can never be processed: dead-letter it with this reason.

    Raised by decoding, or by a handler that finds the input unprocessable (an oversized email);
    the handler's transaction is rolled back and the record goes to the dead-letter topic at once.
    """


class _RecordFailed(Exception):
    """The record at `index` of a batch raised `error` (the transaction is rolled back)."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index, self.error = index, error


@dataclass(frozen=True)
class Traced:
    """A decision with the trace it was made in: its rows and records keep that trace even
    when they are written later, with the rest of the batch."""

    decision: Decision
    trace_id: str | None
    carrier: dict[str, str]

    @classmethod
    def now(cls, decision: Decision) -> Traced:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return cls(decision, current_trace_id(), carrier)


@dataclass(frozen=True)
class _Work:
    """A decoded record waiting for its handler."""

    record: ConsumerRecord[Any, Any]
    envelope: Envelope
    payload: Contract
    handler: Handler


class BatchHooks:
    """How a service that keeps state in memory follows the runtime's transactions.

    `begin` runs in the transaction before the records (load what they need in one go),
    `before_commit` after them (save the state they changed), `committed` once the commit
    succeeded, `rolled_back` when it did not (drop what the records changed in memory). With
    `serial`, one transaction at a time: records of different topics never interleave.
    """

    serial: asyncio.Lock | None = None

    async def begin(self, conn: asyncpg.Connection, items: list[tuple[Envelope, Any]]) -> None:
        return None

    async def before_commit(self, conn: asyncpg.Connection) -> None:
        return None

    def committed(self) -> None:
        return None

    def rolled_back(self) -> None:
        return None


@dataclass(frozen=True)
class Route:
    """A subscription: the topic, the models its types decode to, and a handler per type."""

    topic: str
    models: Mapping[str, type[Contract]]
    handlers: Mapping[str, Handler]
    # Inbound topics reject unknown types; on cases.events a service skips types it does not use.
    reject_unknown_types: bool = True
    max_bytes: int | None = None
    max_records: int = 200  # per batch; fewer where one record may take seconds

    @functools.cached_property
    def handled(self) -> frozenset[bytes]:
        return frozenset(t.encode() for t in self.handlers)


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
    # A service that keeps state in memory (the router) follows each transaction here.
    hooks: BatchHooks = field(default_factory=lambda: BatchHooks())
    # Append a batch's events once, after all its records: for services whose handlers never
    # read the case log (a handler that does would not see what earlier records appended).
    defer_appends: bool = False
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
        self._log = RateLimitedLog(log, every_seconds=10.0)
        self.ready = False  # connected to both and consuming
        self.status = "starting"  # why not ready, while not ready (a standby router says so)
        self.instance_id = self.settings.service_instance_id or \
            f"{socket.gethostname()}-{self.name}"
        self.metrics = Metrics(self.name)
        # gauges read when /metrics is scraped; a service adds its own (clocks, escalations)
        self.gauges: list[GaugeReader] = [self._lag_gauges, self._outbox_gauges]
        self._subscribers: list[tuple[str, Any]] = []
        self._health = HealthServer(self.metrics, self.readiness, self.gauges)

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
            route.topic, batch=True, **subscriber_options(self.group_id, route.max_records),
            # static membership: a restarted instance gets its partitions back at once instead
            # of after the session timeout (each topic's consumer is a member of its own)
            group_instance_id=f"{self.instance_id}:{route.topic}" if self.instance_id else None,
        )
        self._subscribers.append((route.topic, subscriber))

        async def on_batch(msg: KafkaMessage) -> None:
            settings = self.settings
            records = await lingered(list(msg.raw_message), msg.consumer,
                                     linger_ms=settings.consumer_linger_ms,
                                     below=settings.consumer_linger_below,
                                     max_records=route.max_records)
            await self.process_batch(records, route)
            # Commits the consumer's positions: the lingered records' too, processed now.
            await msg.ack()

        # Registered by a call rather than `@subscriber`: the subscriber object is untyped, and as
        # a decorator it would make on_batch untyped too.
        subscriber(on_batch)

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
        """Wait for PostgreSQL and Kafka, however long they are away (bounded backoff, one log
        line per kind every few seconds): a service started during an outage comes up after it,
        instead of exiting."""
        port = self.settings.metrics_port
        await self._health.start(DEFAULT_PORTS.get(self.name, 9470) if port == 0 else port)
        self.status = "connecting to PostgreSQL"
        self._pool = await _connect_with_retry(self.settings.database_url, self._log,
                                               self.settings.database_pool_size,
                                               f"switchboard-{self.name}")
        for step in self.startup:
            await step(self)
        self.status = "connecting to Kafka"
        await wait_for_kafka(self.settings.kafka_bootstrap_servers, self._log)
        self.status = "joining consumer groups"

    # --- health --------------------------------------------------------------------------
    async def readiness(self) -> str | None:
        """None when ready to serve; else why not."""
        if not self.ready:
            return self.status
        try:
            async with asyncio.timeout(1.0):
                await self.pool.fetchval("SELECT 1")
        except Exception as exc:
            return f"PostgreSQL: {safe_reason(exc)}"
        if not any(sub.consumer is not None and sub.consumer.assignment()
                   for _, sub in self._subscribers) and self._subscribers:
            return "no partitions assigned"
        lag = sum(v for *_, v in await self._lag_gauges())
        if lag > self.settings.ready_max_lag:
            return f"catching up: {int(lag)} records behind"
        return None

    async def _lag_gauges(self) -> list[tuple[str, str, dict[str, str], float]]:
        out = []
        for topic, sub in self._subscribers:
            consumer = sub.consumer
            if consumer is None:
                continue
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                if high is None:
                    continue
                position = await consumer.position(tp)
                out.append(("switchboard_consumer_lag", "Records not yet consumed.",
                            {"service": self.name, "topic": topic,
                             "partition": str(tp.partition)}, float(max(0, high - position))))
        return out

    async def _outbox_gauges(self) -> list[tuple[str, str, dict[str, str], float]]:
        row = await self.pool.fetchrow(
            "SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0)"
            " AS age, (SELECT count(*) FROM outbox_parked WHERE service = $1) AS parked"
            " FROM outbox WHERE service = $1", self.name)
        labels = {"service": self.name}
        return [("switchboard_outbox_backlog", "Outbox records not yet published.", labels,
                 float(row["n"])),
                ("switchboard_outbox_oldest_seconds", "Age of the oldest unpublished record.",
                 labels, float(row["age"])),
                ("switchboard_outbox_parked_records", "Records parked in outbox_parked.",
                 labels, float(row["parked"]))]

    async def _close_pool(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def _start_tasks(self) -> None:
        self._relay = OutboxRelay(self.pool, self.settings.kafka_bootstrap_servers, self.name,
                                  self.metrics)
        self.ready = True
        self._tasks = [asyncio.create_task(self._relay.run(), name=f"{self.name}-relay")]
        for job in self.background:
            self._tasks.append(asyncio.create_task(job(self), name=f"{self.name}-job"))

    async def _stop_tasks(self) -> None:
        self.ready, self.status = False, "stopping"
        await self._health.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # --- processing ------------------------------------------------------------------------
    async def process_batch(self, records: list[ConsumerRecord[Any, Any]], route: Route) -> None:
        """Decide a consumed batch in one transaction: one commit, batched log appends.

        Returns only when every record is processed or dead-lettered: the caller then
        acknowledges the batch, so nothing can be skipped. If the batch fails as a whole (a
        record the database refuses, a handler's rejection, the database going away), it is
        rolled back and its records are retried one at a time, so one bad record costs only
        itself.
        """
        began = time.perf_counter()
        self.metrics.consumed.labels(self.name, route.topic).inc(len(records))
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
        conflicts = 0
        async with self._serial():
            while work:
                try:
                    await self._transaction(work)
                    break
                except Exception as caught:
                    failed = caught if isinstance(caught, _RecordFailed) else None
                    error = failed.error if failed is not None else caught
                    if failed is not None and isinstance(error, Rejected):
                        # one record the handler refuses costs only itself: dead-letter it,
                        # and decide the rest again as a batch
                        item = work.pop(failed.index)
                        await self.dead_letter(item.record, f"{item.envelope.type}: {error}")
                        continue
                    if _lost_a_conflict(error) and conflicts < MAX_BATCH_CONFLICTS:
                        # Another transaction won a lock (deadlock) or a serialisation check:
                        # nothing is wrong with the records, so the batch goes again whole,
                        # not as one transaction per record (200 instead of 1).
                        conflicts += 1
                        self.metrics.failed.labels(self.name, route.topic,
                                                   "conflict").inc(len(work))
                        self._log.warning("%s: batch of %d lost a conflict (%s); again whole"
                                          " (%d of %d)", self.name, len(work), safe_reason(error),
                                          conflicts, MAX_BATCH_CONFLICTS)
                        await asyncio.sleep(random.uniform(0.01, 0.05 * conflicts))
                        continue
                    self._log.warning("%s: batch of %d failed (%s); one record at a time",
                                      self.name, len(work), safe_reason(error))
                    for item in work:
                        await self._run_with_retry(item)
                    return
        self.processed += len(work)
        self.wake_relay()
        self.metrics.batch_seconds.labels(self.name, route.topic).observe(
            time.perf_counter() - began)

    def _serial(self) -> contextlib.AbstractAsyncContextManager[object]:
        lock = self.hooks.serial
        return lock if lock is not None else contextlib.nullcontext()

    async def _transaction(self, work: list[_Work]) -> None:
        """The records' decisions in one transaction, followed by the service's hooks."""
        deferred: list[Traced] | None = [] if self.defer_appends else None
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await self.hooks.begin(conn, [(w.envelope, w.payload) for w in work])
                for index, item in enumerate(work):
                    try:
                        await self._decide(conn, item, deferred)
                    except Exception as exc:
                        raise _RecordFailed(index, exc) from exc
                if deferred:
                    await self.persist_traced(conn, deferred)
                await self.hooks.before_commit(conn)
        except BaseException:
            self.hooks.rolled_back()
            raise
        self.hooks.committed()

    async def _decide(self, conn: asyncpg.Connection, item: _Work,
                      deferred: list[Traced] | None) -> None:
        # Each record is handled in a span continuing its own trace (a batch's consumer span
        # only links to them), so log rows and outbox messages keep the contact's trace id.
        parent = propagate.extract(_text_headers(item.record))
        began = time.perf_counter()
        with self._tracer.start_as_current_span(
                f"{item.record.topic} handle", context=parent, kind=SpanKind.CONSUMER) as span:
            if span.is_recording():  # not built for a span nobody will read
                span.set_attributes(consume_attributes(item.record, self.group_id))
            decision = await item.handler(conn, item.envelope, item.payload, self.clock.now())
            self.metrics.handler_seconds.labels(self.name, item.record.topic).observe(
                time.perf_counter() - began)
            if deferred is None:
                await self.persist(conn, decision)
            elif decision.events:
                deferred.append(Traced.now(decision))

    def _decode(
        self, record: ConsumerRecord[Any, Any], route: Route
    ) -> tuple[Envelope, Contract] | None:
        """The envelope and payload, None for a type this service does not handle, or Rejected
        with a reason that quotes nothing of the record (whatever the decoder raised)."""
        try:
            return self._decode_unchecked(record, route)
        except Rejected:
            raise
        except Exception as exc:  # a decoder bug or a limit we did not foresee: never skip
            raise Rejected(f"undecodable: {safe_reason(exc)}") from exc

    def _decode_unchecked(
        self, record: ConsumerRecord[Any, Any], route: Route
    ) -> tuple[Envelope, Contract] | None:
        if not route.reject_unknown_types and _header(record, "ce_type") not in route.handled:
            return None  # a type this service does not act on: not worth decoding
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
                raise Rejected(f"unknown event type {envelope.type[:100]!r} on {route.topic}")
            return None
        if envelope.type not in route.handlers:
            return None
        try:
            payload = model.model_validate_json(data)
        except ValidationError as exc:
            raise Rejected(f"{envelope.type} violates its schema: {_errors(exc)}") from exc
        return envelope, payload

    async def _run_with_retry(self, item: _Work) -> None:
        """One record in its own transaction. Transient failures wait and retry, the partition
        waiting with them; anything else is retried a few times, then dead-lettered."""
        record, envelope = item.record, item.envelope
        backoff, failures = 0.2, 0
        while True:
            try:
                await self._transaction([item])
                self.processed += 1
                self.wake_relay()
                return
            except Exception as caught:
                exc = caught.error if isinstance(caught, _RecordFailed) else caught
                if isinstance(exc, Rejected):  # the handler found it unprocessable: no retry
                    await self.dead_letter(record, f"{envelope.type}: {exc}")
                    return
                if is_transient(exc):
                    self.metrics.failed.labels(self.name, record.topic, "retried").inc()
                    self._log.warning("%s: transient failure, retrying in %.1fs: %s",
                                      self.name, backoff, safe_reason(exc))
                else:  # a bug or data the database refuses: bounded retries
                    failures += 1
                    log.error("%s: %s failed (%d): %s", self.name, envelope.type, failures,
                              safe_traceback(exc))
                    if failures >= MAX_ATTEMPTS_FOR_NON_TRANSIENT:
                        await self.dead_letter(record, f"processing failed: {safe_reason(exc)}")
                        return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def persist(self, conn: asyncpg.Connection, decision: Decision) -> None:
        """Append the decision's events and queue what to publish, in the caller's transaction."""
        await self.persist_traced(conn, [Traced.now(decision)])

    async def persist_traced(self, conn: asyncpg.Connection, decisions: list[Traced]) -> None:
        """Append several decisions' events at once (one lock, one look-up of known ids and of
        chain heads, one COPY), each row with its own trace, and queue what to publish."""
        texts: dict[uuid.UUID, str] = {}  # each appended event's logged text: its value
        fresh = await append_events(
            conn, [(e, t.trace_id) for t in decisions for e in t.decision.events],
            source=self.source, texts=texts)
        fresh_ids = {e.event_id for e in fresh}
        records: list[OutboxRecord] = []
        for t in decisions:
            records += [record_for_event(e, self.source, t.carrier, texts[e.event_id])
                        for e in t.decision.events if e.event_id in fresh_ids]
            records += [record_for_outbound(m, self.source, t.carrier)
                        for m in t.decision.outbound if m.caused_by in fresh_ids]
            fresh_ids -= {e.event_id for e in t.decision.events}  # one record per new event
        await enqueue(conn, self.name, records)

    def wake_relay(self) -> None:
        if self._relay is not None:
            self._relay.wake()

    async def dead_letter(self, record: ConsumerRecord[Any, Any], reason: str) -> None:
        """Keep the record in `dead_letter` with the reason and its source position, and queue
        its copy for `<topic>.dlq`, in one transaction (retried while PostgreSQL is away: the
        partition waits). A copy Kafka cannot take is parked by the relay; the row stays.

        Both hold only a redacted copy of the record (shared/dead_letters.py); its original key,
        headers and bytes are kept sealed under SWITCHBOARD_KEY_DLQ, or not at all without it."""
        from shared import dead_letters
        from shared.redaction import redact

        reason = clean_text(redact(reason))  # a reason can quote a type or a field's name
        self.metrics.failed.labels(self.name, record.topic, "dead_lettered").inc()
        self.metrics.dead_letters.labels(self.name, record.topic, reason_kind(reason)).inc()
        original_headers = list(record.headers or ())
        copy_of = await asyncio.to_thread(  # linear, but up to the size limit: off the loop
            dead_letters.redacted_copy, record.key, original_headers, record.value)
        sealer = dead_letters.sealer_for(self.settings)
        sealed = None if sealer is None else sealer.seal(
            dead_letters.original_blob(record.key, original_headers, record.value),
            dead_letters.binding(self.name, record.topic, record.partition, record.offset))
        failed_at = self.clock.now()
        headers = DeadLetterHeaders(
            dlq_reason=reason, dlq_service=self.name, dlq_source_topic=record.topic,
            dlq_source_partition=str(record.partition), dlq_source_offset=str(record.offset),
            dlq_failed_at=failed_at.isoformat(), dlq_original_headers=json.dumps(copy_of.headers),
        ).model_dump()
        log.warning("%s: dead-lettering %s[%d]@%d: %s", self.name, record.topic,
                    record.partition, record.offset, reason)
        copy = OutboxRecord(dlq(record.topic), copy_of.key, headers, copy_of.value)
        backoff = 0.2
        while True:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    new = await conn.fetchval(
                        "INSERT INTO dead_letter (service, source_topic, source_partition,"
                        " source_offset, key, headers, value, reason, failed_at, redacted,"
                        " sealed) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,true,$10) ON CONFLICT"
                        " (service, source_topic, source_partition, source_offset) DO NOTHING"
                        " RETURNING 1",
                        self.name, record.topic, record.partition, record.offset,
                        copy_of.key, json.dumps(copy_of.headers), copy_of.value, reason,
                        failed_at, sealed)
                    if new:  # a redelivered poison record is not dead-lettered twice
                        await enqueue(conn, self.name, [copy])
                self.dead_lettered += 1
                self.wake_relay()
                return
            except Exception as exc:
                self._log.warning("%s: cannot dead-letter yet, retrying in %.1fs: %s",
                                  self.name, backoff, safe_reason(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


async def keep_session(conn: asyncpg.Connection) -> None:
    """A released pool connection keeps its session as it is (asyncpg still rolls back an open
    transaction first). The default reset (RESET ALL, pg_advisory_unlock_all, CLOSE ALL,
    UNLISTEN *) is a round trip on every release, about one in four of a contact's round trips,
    and undoes nothing here: pool connections take only transaction-scoped advisory locks and
    settings (`pg_advisory_xact_lock`, `SET LOCAL`), cursors live inside transactions, and
    nothing LISTENs. A session-scoped lock or setting belongs on its own connection, as the
    router's leadership lock and migrations have.
    """


async def _connect_with_retry(url: str, say: RateLimitedLog, size: int,
                              application_name: str) -> asyncpg.Pool:
    backoff = 0.5
    while True:
        try:
            # The service's name in pg_stat_activity and PostgreSQL's log (%a), so an operator
            # sees which service holds a session, waits on a lock or runs a slow statement.
            pool: asyncpg.Pool = await asyncpg.create_pool(
                url, min_size=1, max_size=size, reset=keep_session,
                server_settings={"application_name": application_name})
            return pool
        except Exception as exc:
            if not is_transient(exc):
                raise  # wrong password, unknown database: waiting will not mend it
            say.warning("PostgreSQL not reachable yet, retrying in %.1fs: %s", backoff,
                        safe_reason(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


async def wait_for_kafka(bootstrap_servers: str, say: RateLimitedLog) -> None:
    """Until the brokers answer a metadata request (after TLS and SASL, when configured)."""
    from shared.kafka import client_options

    backoff = 0.5
    while True:
        client = AIOKafkaClient(bootstrap_servers=bootstrap_servers,
                                client_id="switchboard-probe", request_timeout_ms=5_000,
                                **client_options())  # TLS/SASL as configured
        try:
            await client.bootstrap()
            return
        except Exception as exc:
            say.warning("Kafka not reachable yet, retrying in %.1fs: %s", backoff,
                        safe_reason(exc))
        finally:
            await client.close()
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


def reason_kind(reason: str) -> str:
    """A dead letter's reason in a few words, for a metric's label."""
    for marker, kind in (("parse_timeout", "parse_timeout"), ("parse_memory", "parse_memory"),
                         ("violates its schema", "schema"), ("envelope", "envelope"),
                         ("undecodable", "undecodable"), ("exceeds the limit", "too_large"),
                         ("unknown event type", "unknown_type"),
                         ("processing failed", "failed")):
        if marker in reason:
            return kind
    return "rejected"


def _lost_a_conflict(exc: BaseException) -> bool:
    """Deadlock detected (40P01) or serialisation failure (40001): a race with another
    transaction, which the same transaction run again normally wins."""
    return sqlstate(exc) in ("40P01", "40001")


def _header(record: ConsumerRecord[Any, Any], name: str) -> bytes | None:
    for key, value in record.headers or ():
        if key == name:
            return value if isinstance(value, bytes) else None
    return None


def _text_headers(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in record.headers or () if v is not None}


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
    )[:1500]
