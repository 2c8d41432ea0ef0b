"""Processed offsets are committed now and then, never past a record not yet processed."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from shared.offsets import CommitOnRevoke, PendingOffsets


class Consumer:
    """Records what aiokafka's consumer would be asked to commit."""

    def __init__(self, owned: set[TopicPartition], fail: int = 0) -> None:
        self.owned, self.fail = owned, fail
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("coordinator not available")
        self.commits.append(dict(offsets))

    def assignment(self) -> set[TopicPartition]:
        return self.owned


def records(topic: str, partition: int, *offsets: int) -> list[ConsumerRecord[Any, Any]]:
    return [ConsumerRecord(topic, partition, o, 0, 0, None, b"", None, 0, 0, []) for o in offsets]


A, B = TopicPartition("t", 0), TopicPartition("t", 1)


async def test_the_first_batch_commits_and_the_next_wait_for_the_interval() -> None:
    consumer = Consumer({A, B})
    pending = PendingOffsets("test", interval=60)
    await pending.processed(consumer, records("t", 0, 5, 6))
    await pending.processed(consumer, records("t", 0, 7) + records("t", 1, 3))
    assert consumer.commits == [{A: 7}]  # the second waits for its interval
    await pending.flush()
    assert consumer.commits == [{A: 7}, {A: 8, B: 4}]


async def test_a_timer_commits_what_the_last_batches_left() -> None:
    consumer = Consumer({A})
    pending = PendingOffsets("test", interval=0.05)
    await pending.processed(consumer, records("t", 0, 1))
    await pending.processed(consumer, records("t", 0, 2))
    for _ in range(200):  # the timer's own sleep is the interval; poll its effect
        if len(consumer.commits) == 2:
            break
        await asyncio.sleep(0.01)
    assert consumer.commits == [{A: 2}, {A: 3}]


async def test_a_failed_commit_keeps_the_offsets_of_partitions_still_owned() -> None:
    consumer = Consumer({A}, fail=1)
    pending = PendingOffsets("test", interval=60)
    await pending.processed(consumer, records("t", 0, 9) + records("t", 1, 4))
    assert consumer.commits == []
    await pending.flush()
    assert consumer.commits == [{A: 10}]  # B is another member's now: its offset is dropped


async def test_a_revoked_partition_is_committed_before_it_is_handed_over() -> None:
    consumer = Consumer({A, B})
    pending = PendingOffsets("test", interval=60)
    await pending.processed(consumer, records("t", 0, 1))
    await pending.processed(consumer, records("t", 0, 2) + records("t", 1, 7))
    await CommitOnRevoke(pending).on_partitions_revoked({B})
    assert consumer.commits == [{A: 2}, {B: 8}]
    await pending.flush()
    assert consumer.commits[-1] == {A: 3}
