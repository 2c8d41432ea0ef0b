"""The transactional outbox: messages written with the log rows, published by a relay afterwards.

Only events that were new to the log get outbox rows, so a redelivered input publishes nothing a
second time. Rows are spread over `SHARDS` shards by a hash of their Kafka key, so every record
of one key (a case, an agent) is in one shard. A relay holds a shard's advisory lock while it
publishes that shard's rows in id order, so:

- per-key order holds however many instances of a service relay at once (instances share the
  shards between them: a shard another instance is publishing is skipped this pass);
- a pass sends a whole batch without waiting for each acknowledgement (the producer pipelines
  them per partition, in order), then deletes what was acknowledged in one statement.

A crash between the acknowledgement and the delete republishes the same records (same ids),
which consumers absorb; the window is one pass. A record Kafka can never take (too large, an
invalid topic) or one that keeps failing while others go through is *parked* in
`outbox_parked` with the reason, logged, and the rest flows on: nothing is retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidMessageError,
    InvalidTimestampError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from opentelemetry import propagate

from shared.caselog.chain import canonical_json
from shared.caselog.store import event_data
from shared.contracts.envelope import Envelope
from shared.contracts.topics import CASE_EVENTS
from shared.events import CaseEvent, Outbound
from shared.failures import safe_reason
from shared.logs import RateLimitedLog
from shared.observe import Metrics

log = logging.getLogger(__name__)

SHARDS = 16
PASS_ROWS = 2_000  # rows per shard per pass
# A row that failed this many passes while other rows were acknowledged is parked.
MAX_FAILED_PASSES = 10
# Errors that no retry can mend: the record is parked at once.
UNSENDABLE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError,
              InvalidTopicError, InvalidMessageError, InvalidTimestampError)


@dataclass(frozen=True)
class OutboxRecord:
    topic: str
    key: str | bytes
    headers: dict[str, str]
    value: bytes


def shard_of(key: bytes) -> int:
    return zlib.crc32(key) % SHARDS


def record_for_event(event: CaseEvent, source: str, carrier: dict[str, str] | None = None,
                     data: str | None = None) -> OutboxRecord:
    """The record of a case event on `cases.events`: its value is the text the log stores
    (`data`, RFC 8785 canonical JSON; computed when not given), byte for byte, so a consumer
    holds exactly what the chain's hash covers, and the writer serialises each event once."""
    envelope = Envelope(
        id=str(event.event_id), source=source, type=event.type, time=event.time,
        subject=event.case_id,
    )
    value = (event_data(event) if data is None else data).encode()
    return OutboxRecord(CASE_EVENTS, event.case_id, _with_trace(envelope.to_headers(), carrier),
                        value)


def record_for_outbound(message: Outbound, source: str,
                        carrier: dict[str, str] | None = None) -> OutboxRecord:
    envelope = Envelope(
        id=str(message.event_id), source=source, type=message.type, time=message.time,
        subject=message.subject,
    )
    value = canonical_json(message.data.model_dump(mode="json")).encode()
    return OutboxRecord(message.topic, message.key, _with_trace(envelope.to_headers(), carrier),
                        value)


def _with_trace(headers: dict[str, str], carrier: dict[str, str] | None) -> dict[str, str]:
    # Remember the trace of the decision so the relay publishes inside it, later.
    if carrier is None:
        carrier = {}
        propagate.inject(carrier)
    return {**headers, **{f"x-otel-{k}": v for k, v in carrier.items()}}


async def enqueue(conn: asyncpg.Connection, service: str, records: Sequence[OutboxRecord]) -> None:
    if records:
        # COPY: one statement for the batch's rows instead of an INSERT executed per row; ids
        # are drawn in the records' order, the order the relay publishes in.
        await conn.copy_records_to_table(
            "outbox", columns=("service", "shard", "topic", "key", "headers", "value"),
            records=[(service, shard_of(k), r.topic, k, json.dumps(r.headers), r.value)
                     for r in records for k in (_key_bytes(r.key),)],
        )


_CLAIM = (
    # The shards with rows whose lock this pass gets (the CTE is evaluated once: the lock
    # function is volatile), then each shard's oldest rows in id order.
    "WITH mine AS (SELECT s FROM generate_series(0, $2 - 1) AS s"
    " WHERE EXISTS (SELECT 1 FROM outbox WHERE service = $1 AND shard = s)"
    " AND pg_try_advisory_xact_lock(hashtext('outbox:' || $1), s))"
    " SELECT mine.s AS shard, o.id, o.topic, o.key, o.headers, o.value, o.attempts"
    " FROM mine CROSS JOIN LATERAL"
    " (SELECT id, topic, key, headers, value, attempts FROM outbox"
    "  WHERE service = $1 AND shard = mine.s ORDER BY id LIMIT $3) AS o"
)


class OutboxRelay:
    """Publishes one service's outbox with a producer of its own.

    A plain idempotent aiokafka producer, not the FastStream broker: the relay only forwards
    bytes already encoded, and the broker's per-message command, codec and middleware cost
    more CPU than the send itself (a third of the router's under load). The trace context
    saved with each row goes out as the W3C `traceparent` header, so the consumer's span
    continues the decision's trace.
    """

    def __init__(self, pool: asyncpg.Pool, bootstrap_servers: str, service: str,
                 metrics: Metrics | None = None) -> None:
        self._pool = pool
        self._metrics = metrics
        self._producer = make_producer(bootstrap_servers, f"switchboard-{service}-relay")
        self._started = False
        self._service = service
        self._wake = asyncio.Event()
        self._log = RateLimitedLog(log, every_seconds=10.0)
        self.published = 0
        self.parked = 0
        self._more = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Drain forever: on a wake-up, and twice a second for rows of other instances or
        left by a crash."""
        backoff = 0.2
        try:
            while True:
                try:
                    await self._start()
                    # Again only after a pass that hit a shard's limit: rows committed since
                    # it began have woken the relay, so an empty pass to make sure would be a
                    # transaction for nothing after every wake-up.
                    await self.drain_once()
                    while self._more:
                        await self.drain_once()
                    backoff = 0.2
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=0.5)
                    self._wake.clear()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # broker or database down: keep the rows, retry
                    self._log.warning("outbox relay of %s failed; retrying in %.1fs: %s",
                                      self._service, backoff, safe_reason(exc))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            if self._started:
                await self._producer.stop()

    async def _start(self) -> None:
        if not self._started:
            await self._producer.start()
            self._started = True

    async def drain_once(self) -> int:
        """One pass over the shards this relay can lock; the number of rows settled.

        Sets `_more` when a shard had more rows than one pass takes, so `run` goes on."""
        self._more = False
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self._service, SHARDS, PASS_ROWS)
            if not rows:
                return 0
            full = max(Counter(row["shard"] for row in rows).values()) >= PASS_ROWS
            sent, parked, failed = await self._send(rows)
            if failed and not sent and not parked:
                raise failed[0][1]  # nothing got through: the broker is away, back off
            await self._settle(conn, sent, parked, failed)
        self.published += len(sent)
        if self._metrics is not None:
            self._metrics.published.labels(self._service).inc(len(sent))
        self._more = full
        return len(sent) + len(parked)

    async def _send(self, rows: list[asyncpg.Record]) -> tuple[
            list[int], list[tuple[asyncpg.Record, str]], list[tuple[asyncpg.Record, Exception]]]:
        futures: list[tuple[asyncpg.Record, Any]] = []
        parked: list[tuple[asyncpg.Record, str]] = []
        for row in rows:
            try:
                futures.append((row, await self._publish(row)))
            except UNSENDABLE as exc:
                parked.append((row, _reason(exc)))
        results = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
        sent: list[int] = []
        failed: list[tuple[asyncpg.Record, Exception]] = []
        for (row, _), result in zip(futures, results, strict=True):
            if isinstance(result, UNSENDABLE):
                parked.append((row, _reason(result)))
            elif isinstance(result, Exception):
                failed.append((row, result))
            else:
                sent.append(row["id"])
        return sent, parked, failed

    async def _settle(self, conn: asyncpg.Connection, sent: list[int],
                      parked: list[tuple[asyncpg.Record, str]],
                      failed: list[tuple[asyncpg.Record, Exception]]) -> None:
        # A row that fails while others are acknowledged is not the broker's outage: count it.
        worn = [(row, f"failed {MAX_FAILED_PASSES} passes: {_reason(exc)}") for row, exc in failed
                if row["attempts"] + 1 >= MAX_FAILED_PASSES]
        parked = parked + worn
        if parked:
            await conn.executemany(
                "INSERT INTO outbox_parked (id, service, topic, key, headers, value, created_at,"
                " reason) SELECT id, service, topic, key, headers, value, created_at, $2"
                " FROM outbox WHERE id = $1 ON CONFLICT (id) DO NOTHING",
                [(row["id"], reason) for row, reason in parked])
            for row, reason in parked:
                log.error("outbox of %s: parked record %d for %s (%d bytes): %s", self._service,
                          row["id"], row["topic"], len(row["value"]), reason)
            self.parked += len(parked)
            if self._metrics is not None:
                self._metrics.parked.labels(self._service).inc(len(parked))
        done = sent + [row["id"] for row, _ in parked]
        if done:
            # Committed without waiting for the disk (in the same round trip as the delete):
            # losing this commit in a crash only republishes records consumers absorb.
            await conn.execute("WITH gone AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]))"
                               " SELECT set_config('synchronous_commit', 'off', true)", done)
        retry = [row["id"] for row, _ in failed if row["attempts"] + 1 < MAX_FAILED_PASSES]
        if retry:
            await conn.execute("UPDATE outbox SET attempts = attempts + 1"
                               " WHERE id = ANY($1::bigint[])", retry)

    async def _publish(self, row: asyncpg.Record) -> Any:
        stored: dict[str, str] = json.loads(row["headers"])
        headers = [(k.removeprefix("x-otel-"), v.encode()) for k, v in stored.items()]
        return await self._producer.send(row["topic"], bytes(row["value"]),
                                         key=bytes(row["key"]), headers=headers)


def make_producer(bootstrap_servers: str, client_id: str) -> AIOKafkaProducer:
    """Idempotent (acks from all in-sync replicas, no duplicates from the producer's own
    retries), batching a few milliseconds, large batches for bursts; TLS/SASL as configured."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, client_id=client_id,
                            enable_idempotence=True, linger_ms=2,
                            max_batch_size=256 * 1024, request_timeout_ms=30_000,
                            **_security())


def _security() -> dict[str, Any]:
    from shared.kafka import client_options  # deferred: shared.kafka imports FastStream

    return client_options()


def _key_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
