"""Test helpers for the real broker: publish CloudEvents, read topics, wait with a deadline."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, str]
    value: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.value)


def cloudevent_headers(type_: str, event_id: str | None = None,
                       source: str = "test/front-end") -> dict[str, str]:
    return {
        "ce_specversion": "1.0", "ce_id": event_id or str(uuid.uuid4()), "ce_source": source,
        "ce_type": type_, "ce_time": datetime.now(UTC).isoformat(),
        "content-type": "application/json",
    }


async def publish(bootstrap: str, topic: str, value: bytes | dict[str, Any],
                  headers: dict[str, str], key: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        await producer.send_and_wait(
            topic, body, key=key.encode() if key else None,
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list[Record]:
    """Every record now on the topic, read without a consumer group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, p)
                      for p in sorted(cluster.partitions_for_topic(topic) or [])]
        assert partitions, f"topic {topic} does not exist"
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Record] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for tp_records in batch.values():
                records += [Record(r.topic, r.partition, r.offset, r.key,
                                   {k: v.decode("utf-8", "replace") for k, v in r.headers},
                                   r.value or b"") for r in tp_records]
        return records
    finally:
        await consumer.stop()


async def wait_for(condition: Callable[[], Any], timeout: float = 60.0,  # noqa: ASYNC109
                   interval: float = 0.25, what: str = "condition") -> Any:
    """Poll an async or sync condition until it returns something truthy, or fail at deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


async def drained(bootstrap: str, timeout: float = 300.0) -> None:  # noqa: ASYNC109
    """Until every Switchboard consumer group has committed the end of every topic it reads."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        async def lag() -> bool:
            behind = 0
            for group, *_ in await admin.list_consumer_groups():
                if not str(group).startswith("switchboard-"):
                    continue
                offsets = await admin.list_consumer_group_offsets(group)
                ends = await consumer.end_offsets(list(offsets))
                behind += sum(ends[tp] - meta.offset for tp, meta in offsets.items())
            return behind == 0

        await wait_for(lag, timeout=timeout, interval=0.5, what="every consumer group caught up")
    finally:
        await consumer.stop()
        await admin.close()
