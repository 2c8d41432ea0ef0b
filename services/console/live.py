"""What changed, from Kafka: the console's wake-up calls for live pages.

A consumer without a group (it commits nothing and takes no partition from a service) reads
`cases.events` and `helpdesk.agents` from their current end. Each record bumps the version of the
areas its type touches (queues, agents, SLA, escalations) and of its case, and wakes the live
streams watching them, which then read PostgreSQL again: a record is published only after the
transaction that changed the tables committed (outbox), so the read sees the change. Streams also
refresh on a timer, so pages stay right (and clocks move into the SLA window) without Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from shared.contracts.topics import AGENTS, CASE_EVENTS

log = logging.getLogger(__name__)

AREAS = ("queues", "agents", "sla", "escalations")


def areas_of(type_: str) -> set[str]:
    """The pages an event type can change."""
    if type_.startswith("sla."):
        return {"sla"}
    if type_ == "case.escalated" or type_.startswith("escalation."):
        return {"escalations"}
    if type_.startswith("assignment.") or type_ in ("case.assigned", "case.solved",
                                                     "reply.sent", "case.status_changed"):
        return {"queues", "agents", "sla"}
    if type_ in ("case.queued", "routing.decided", "case.classified", "case.opened"):
        return {"queues"}
    if type_.startswith("agent."):
        return {"agents"}
    return set()


@dataclass(frozen=True)
class Seen:
    at: float  # time.time()
    type: str
    case_id: str | None


class Hub:
    """Versions per area and per watched case; streams wait for a version to move."""

    def __init__(self, recent: int = 30) -> None:
        self.versions: Counter[str] = Counter()
        self.recent: deque[Seen] = deque(maxlen=recent)
        self._changed = asyncio.Event()
        self._watched: Counter[str] = Counter()
        self.connected = False
        self.last_record_at: float | None = None
        self.records = 0

    def bump(self, areas: Iterable[str], case_id: str | None = None, type_: str = "") -> None:
        for area in areas:
            self.versions[area] += 1
        if case_id is not None and case_id in self._watched:
            self.versions[f"case:{case_id}"] += 1
        if type_:
            self.recent.appendleft(Seen(time.time(), type_, case_id))
            self.last_record_at = time.time()
            self.records += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def snapshot(self, keys: Iterable[str]) -> tuple[int, ...]:
        return tuple(self.versions[k] for k in keys)

    async def wait(self, keys: tuple[str, ...], seen: tuple[int, ...], within: float) -> bool:
        """Until a version of `keys` differs from `seen` (True) or `within` s pass (False)."""
        deadline = asyncio.get_running_loop().time() + within
        while self.snapshot(keys) == seen:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    @contextlib.contextmanager
    def watching_case(self, case_id: str) -> Iterator[str]:
        self._watched[case_id] += 1
        try:
            yield f"case:{case_id}"
        finally:
            self._watched[case_id] -= 1
            if self._watched[case_id] <= 0:
                del self._watched[case_id]
                self.versions.pop(f"case:{case_id}", None)


class KafkaWatcher:
    """Feeds the hub from Kafka until cancelled; reconnects after a failure."""

    def __init__(self, bootstrap_servers: str, hub: Hub) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.hub = hub

    async def run(self) -> None:
        backoff = 1.0
        while True:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                        enable_auto_commit=False,
                                        client_id="switchboard-console")
            try:
                await consumer.start()
                await self._follow(consumer)
            except (KafkaError, OSError) as exc:
                if self.hub.connected:
                    backoff = 1.0  # it worked until now: try again soon
                log.warning("Kafka watcher: %r; again in %.0f s", exc, backoff)
            finally:
                self.hub.connected = False
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        cluster = await consumer._client.fetch_all_metadata()  # fresh metadata, as bus.py does
        partitions = [TopicPartition(t, p) for t in (CASE_EVENTS, AGENTS)
                      for p in sorted(cluster.partitions_for_topic(t) or ())]
        if not partitions:
            raise KafkaError(f"topics {CASE_EVENTS} and {AGENTS} do not exist yet")
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        self.hub.connected = True
        self.hub.bump(AREAS)  # whatever happened while we were away
        log.info("Kafka watcher follows %d partitions", len(partitions))
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            for records in batch.values():
                for record in records:
                    headers = dict(record.headers or ())
                    type_ = _text(headers.get("ce_type"))
                    subject = _text(headers.get("ce_subject")) or None
                    if record.topic == AGENTS:
                        self.hub.bump({"agents"}, None, type_ or "agent.profile_changed")
                    elif type_:
                        self.hub.bump(areas_of(type_), subject, type_)


def _text(value: bytes | None) -> str:
    if not value:
        return ""
    return value.decode("utf-8", "replace")
