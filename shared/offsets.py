"""Consumer offsets of processed batches, committed to Kafka now and then rather than per batch.

A batch's offsets may be committed only after its decisions are committed to PostgreSQL (or its
records dead-lettered): a crash before that redelivers, never loses. Committing after *every*
batch is more than that needs, and at moderate rates, when batches hold one or two records, it
is an OffsetCommit request, a write to `__consumer_offsets` and a wait in the consume loop for
each record, in every service. So processed offsets are gathered here and committed at most
every `INTERVAL` seconds, and at once when partitions are revoked (a rebalance: the next owner
starts where this one stopped) and when the service stops.

What a crash can redeliver grows from one batch to the batches of the last `INTERVAL`: the
services absorb redeliveries (inputs are recorded by event id, log appends skip known ids), the
same way they absorb a crash between the database commit and the offset commit today.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from shared.failures import safe_reason
from shared.logs import RateLimitedLog

log = logging.getLogger(__name__)

INTERVAL = 0.2  # seconds between commits while batches keep coming
# A commit at a rebalance or at shutdown waits at most this long: past it, the next owner
# redelivers what this one processed since its last commit.
FLUSH_TIMEOUT = 5.0


class PendingOffsets:
    """One subscriber's processed offsets not yet committed, and when to commit them."""

    def __init__(self, what: str, interval: float = INTERVAL) -> None:
        self.what = what
        self.interval = interval
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: Any = None
        self._last = 0.0
        self._timer: asyncio.Task[None] | None = None
        self._failed = RateLimitedLog(log, 30.0)

    async def processed(self, consumer: Any, records: Iterable[ConsumerRecord[Any, Any]]) -> None:
        """A batch is processed: its offsets are committed now if the last commit is older
        than the interval, else by a timer when it is up."""
        self._consumer = consumer
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._pending[tp] = max(self._pending.get(tp, 0), record.offset + 1)
        if time.monotonic() - self._last >= self.interval:
            await self.commit()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._later(), name=f"{self.what}-offsets")

    async def _later(self) -> None:
        await asyncio.sleep(max(0.0, self._last + self.interval - time.monotonic()))
        await self.commit()

    async def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit what is pending (of `partitions` only, if given). A failed commit keeps its
        offsets pending for the next one, unless the partition is no longer this consumer's."""
        offsets = {tp: offset for tp, offset in self._pending.items()
                   if partitions is None or tp in partitions}
        if not offsets or self._consumer is None:
            return
        for tp in offsets:
            del self._pending[tp]
        self._last = time.monotonic()
        try:
            await self._consumer.commit(offsets)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            owned = self._consumer.assignment()
            for tp, offset in offsets.items():
                if tp in owned and self._pending.get(tp, 0) < offset:
                    self._pending[tp] = offset
            self._failed.warning("%s: offset commit failed (%s); processed records may be "
                                 "redelivered, and are absorbed", self.what, safe_reason(exc))

    async def flush(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit now, waiting at most FLUSH_TIMEOUT (a rebalance, a shutdown)."""
        if self._timer is not None and partitions is None:
            self._timer.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await self.commit(partitions)


class CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits the processed offsets of partitions this consumer is losing, before the group
    hands them to another member (aiokafka awaits the callback before it rejoins)."""

    def __init__(self, pending: PendingOffsets) -> None:
        self.pending = pending

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.pending.flush(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        return None
