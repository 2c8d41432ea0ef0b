"""Small batches wait a moment for the records right behind them.

Each batch costs a transaction (and a few fixed round trips) whatever its size, and at moderate
rates most batches hold one record: the events of one decision reach a consumer a few
milliseconds apart. A batch smaller than `below` waits `linger_ms`, then takes what the
consumer fetched meanwhile, so one transaction handles them all. Under load batches are large
and never wait.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord


async def lingered(records: list[ConsumerRecord[Any, Any]], consumer: Any, *, linger_ms: float,
                   below: int, max_records: int) -> list[ConsumerRecord[Any, Any]]:
    """`records`, and if fewer than `below`, those `consumer` (aiokafka's) has after
    `linger_ms`, up to `max_records` in all. Each partition's order is kept (its later offsets
    come after). Only for the task that owns the consumer's polling (FastStream's loop awaits
    the handler that calls this, so nothing else reads from the consumer meanwhile)."""
    room = max_records - len(records)
    if linger_ms <= 0 or len(records) >= below or room <= 0:
        return records
    await asyncio.sleep(linger_ms / 1000)
    more = await consumer.getmany(timeout_ms=0, max_records=room)
    return records + [record for batch in more.values() for record in batch]
