"""Baselines for the end-to-end benchmark, on the same broker and database in the same run.

- relay: a bare aiokafka consumer that produces every record it reads to another topic and
  commits, batch by batch (what any Kafka service costs at the least);
- insert: a bare consumer that writes each batch with one asyncpg INSERT and commits the
  transaction, then the offsets (what a service that only logs its input costs at the least).
Both move the same records: chat messages of the benchmark's size, with CloudEvents headers.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from e2e_load import contact_records

IN, OUT = "bench.baseline.in", "bench.baseline.out"


async def _topics(bootstrap: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t, num_partitions=partitions, replication_factor=1)
               for t in (IN, OUT) if t not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def _fill(bootstrap: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=5, client_id="bench-fill")
    await producer.start()
    try:
        pending = []
        for n in range(count):
            record = contact_records("baseline", n, "chat")[1]
            pending.append(await producer.send(IN, record.value, key=record.key,
                                               headers=record.headers))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(IN, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4()}",
                            auto_offset_reset="earliest", enable_auto_commit=False,
                            max_poll_records=500)


async def relay(bootstrap: str, count: int) -> float:
    consumer = _consumer(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=2, client_id="bench-relay")
    await consumer.start()
    await producer.start()
    try:
        moved, began = 0, None
        while moved < count:
            batches = await consumer.getmany(timeout_ms=500)
            began = began or time.perf_counter()
            sent = [await producer.send(OUT, m.value, key=m.key, headers=list(m.headers))
                    for batch in batches.values() for m in batch]
            await asyncio.gather(*sent)
            await consumer.commit()
            moved += len(sent)
        return count / (time.perf_counter() - (began or time.perf_counter()))
    finally:
        await consumer.stop()
        await producer.stop()


async def insert(bootstrap: str, database_url: str, count: int) -> float:
    conn = await asyncpg.connect(database_url)
    await conn.execute("DROP TABLE IF EXISTS bench_baseline; CREATE TABLE bench_baseline"
                       " (id bigserial PRIMARY KEY, key bytea, value bytea NOT NULL)")
    consumer = _consumer(bootstrap)
    await consumer.start()
    try:
        moved, began = 0, None
        while moved < count:
            batches = await consumer.getmany(timeout_ms=500)
            began = began or time.perf_counter()
            records = [m for batch in batches.values() for m in batch]
            if records:
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO bench_baseline (key, value)"
                        " SELECT * FROM unnest($1::bytea[], $2::bytea[])",
                        [m.key for m in records], [m.value for m in records])
                await consumer.commit()
            moved += len(records)
        return count / (time.perf_counter() - (began or time.perf_counter()))
    finally:
        await consumer.stop()
        await conn.execute("DROP TABLE IF EXISTS bench_baseline")
        await conn.close()


async def baselines(bootstrap: str, admin_database_url: str, count: int,
                    partitions: int) -> dict[str, float]:
    await _topics(bootstrap, partitions)
    await _fill(bootstrap, count)
    return {"relay": await relay(bootstrap, count),
            "insert": await insert(bootstrap, admin_database_url, count)}
