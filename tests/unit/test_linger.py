"""A small batch takes along what arrives within the linger; a large one never waits."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from shared.linger import lingered


def record(partition: int, offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord("t", partition, offset, 0, 0, None, b"", None, 0, 0, [])


class Consumer:
    def __init__(self, fetched: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        self.fetched = fetched
        self.asked: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int
                      ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        assert timeout_ms == 0  # the linger is the wait; the poll only takes what is there
        self.asked.append(max_records)
        return self.fetched


async def test_a_small_batch_takes_the_records_behind_it_in_partition_order() -> None:
    consumer = Consumer({TopicPartition("t", 0): [record(0, 6), record(0, 7)],
                         TopicPartition("t", 1): [record(1, 2)]})
    out = await lingered([record(0, 5)], consumer, linger_ms=1, below=32, max_records=10)
    assert [(r.partition, r.offset) for r in out] == [(0, 5), (0, 6), (0, 7), (1, 2)]
    assert consumer.asked == [9]  # never more than the route's batch size in all


async def test_a_large_or_full_batch_or_no_linger_does_not_wait() -> None:
    consumer = Consumer({TopicPartition("t", 0): [record(0, 99)]})
    batch = [record(0, n) for n in range(4)]
    assert await lingered(batch, consumer, linger_ms=1, below=4, max_records=10) == batch
    assert await lingered(batch, consumer, linger_ms=1, below=32, max_records=4) == batch
    assert await lingered(batch, consumer, linger_ms=0, below=32, max_records=10) == batch
    assert consumer.asked == []
