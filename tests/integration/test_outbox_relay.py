"""The outbox relay on the real broker and database: a pass takes at most `PASS_ROWS` rows of a
shard and says whether it left any; the relay goes on only then, and publishes every row once,
in the order it was written.

A relay ends each wake-up after a pass that did not fill a shard instead of a last empty pass to
make sure (rows committed meanwhile woke it again): these tests are what keeps that from
leaving rows behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.infra.local import Endpoints
from shared.outbox import PASS_ROWS, OutboxRecord, OutboxRelay, enqueue, shard_of
from tests.support.kafka import wait_for

pytestmark = pytest.mark.integration


async def _topic(bootstrap: str) -> str:
    name = f"test.relay.{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def _read(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, int]]:
    """The topic's first `count` records as (key, value), each partition in order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        records: list[tuple[bytes, int]] = []

        async def have_all() -> bool:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend((r.key or b"", int(r.value or b"")) for r in batch)
            return len(records) >= count

        await wait_for(have_all, timeout=60, interval=0, what=f"{count} records on {topic}")
        return records
    finally:
        await consumer.stop()


async def _write(pool: asyncpg.Pool, service: str, topic: str, key: str, first: int,
                 count: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, service, [OutboxRecord(topic, key, {"n": str(n)}, str(n).encode())
                                      for n in range(first, first + count)])


async def _left(pool: asyncpg.Pool, service: str) -> int:
    left: int = await pool.fetchval("SELECT count(*) FROM outbox WHERE service = $1", service)
    return left


async def test_a_pass_that_fills_a_shard_says_there_is_more(endpoints: Endpoints) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    topic, service = await _topic(bootstrap), f"relaytest-{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
    relay = OutboxRelay(pool, bootstrap, service)
    try:
        await _write(pool, service, topic, "case-1", 0, PASS_ROWS + 7)
        await relay._start()
        assert await relay.drain_once() == PASS_ROWS
        assert relay._more, "a full shard must send the relay round again"
        assert await relay.drain_once() == 7
        assert not relay._more
        assert await relay.drain_once() == 0
        assert await _left(pool, service) == 0
        published = await _read(bootstrap, topic, PASS_ROWS + 7)
        assert published == [(b"case-1", n) for n in range(PASS_ROWS + 7)]
    finally:
        await relay._producer.stop()
        await pool.close()


async def test_the_running_relay_publishes_every_row_once_in_order(endpoints: Endpoints) -> None:
    """Rows written before it starts, more than a pass of one shard, and rows written while it
    runs (each followed by a wake-up, as the runtime does after a commit) all go out."""
    bootstrap = endpoints.kafka_bootstrap_servers
    topic, service = await _topic(bootstrap), f"relaytest-{uuid.uuid4().hex[:8]}"
    keys = [f"case-{i}" for i in range(40)]
    assert len({shard_of(k.encode()) for k in keys}) > 1
    pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=4)
    relay = OutboxRelay(pool, bootstrap, service)
    await _write(pool, service, topic, keys[0], 0, PASS_ROWS * 2 + 3)
    task = asyncio.create_task(relay.run())
    try:
        for round_ in range(30):
            for key in keys:
                await _write(pool, service, topic, key, 10_000 + round_, 1)
            relay.wake()
        async def emptied() -> bool:
            return await _left(pool, service) == 0

        await wait_for(emptied, timeout=120, what="the relay to empty its outbox")
        assert relay.published == PASS_ROWS * 2 + 3 + 30 * len(keys)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()
    by_key: dict[bytes, list[int]] = {}
    for key_bytes, value in await _read(bootstrap, topic, PASS_ROWS * 2 + 3 + 30 * len(keys)):
        by_key.setdefault(key_bytes, []).append(value)
    assert by_key[keys[0].encode()] == [*range(PASS_ROWS * 2 + 3),
                                        *range(10_000, 10_030)]
    for key in keys[1:]:
        assert by_key[key.encode()] == list(range(10_000, 10_030))
