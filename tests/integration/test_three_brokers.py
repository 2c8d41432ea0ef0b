"""A three-broker KRaft cluster (`switchboard infra up --brokers 3`): topics get three replicas
and `min.insync.replicas=2`, and killing one broker under load loses and doubles nothing.

The cluster is three JVMs, each a controller and a broker, started once for this module (about a
minute of a 2-core machine's time with the services); marked `cluster` as well as `integration`,
so `pytest -m "not cluster"` leaves it out.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.caselog.store import read_case, verify_case
from shared.contracts.topics import CASE_EVENTS, INBOUND_CHAT, all_topics
from shared.infra import kafka, local
from shared.infra.local import Endpoints
from tests.support import contacts
from tests.support.cases import stored_key
from tests.support.clusters import cluster
from tests.support.infra import TEST_STATE_DIR
from tests.support.kafka import cloudevent_headers, wait_for
from tests.support.services import ServiceProcesses

pytestmark = [
    pytest.mark.integration,
    pytest.mark.cluster,
    pytest.mark.skipif(os.environ.get("SWITCHBOARD_INFRA") == "external",
                       reason="starts and kills local brokers"),
]

STATE = TEST_STATE_DIR.parent / "test-three-brokers"


@pytest.fixture(scope="module")
def three() -> Iterator[Endpoints]:
    with cluster("three-brokers", brokers=3) as (endpoints, timings):
        print(f"[switchboard] three brokers ready in {timings['ready']:.1f}s ({timings})")
        yield endpoints


def _headers(type_: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in cloudevent_headers(type_).items()]


async def _topics(bootstrap: str) -> tuple[dict[str, list[dict]], dict[str, str | None]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [s.name for s in all_topics()]
        described = {t["topic"]: t["partitions"] for t in await admin.describe_topics(names)}
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        isr: dict[str, str | None] = {}  # None: the broker asked does not know the topic yet
        for response in configs:
            for resource in response.resources:
                _, _, _, name, entries = resource[:5]
                isr[name] = next((e[1] for e in entries if e[0] == "min.insync.replicas"), None)
        return described, isr
    finally:
        await admin.close()


async def _settled(bootstrap: str) -> tuple[dict[str, list[dict]], dict[str, str | None]]:
    """The topics once every one has its partitions and each partition its full ISR: creation
    is asynchronous on a cluster, and a topic made a moment ago may still describe as empty."""
    async def described() -> tuple[dict[str, list[dict]], dict[str, str | None]] | None:
        found, isr = await _topics(bootstrap)
        settled = all(ps and all(sorted(p["isr"]) == sorted(p["replicas"]) for p in ps)
                      for ps in found.values()) and None not in isr.values()
        return (found, isr) if settled else None
    result: tuple[dict[str, list[dict]], dict[str, str | None]] = await wait_for(
        described, timeout=60, interval=0.5, what="every topic's partitions and replicas")
    return result


async def test_topics_have_three_replicas_and_two_in_sync(three: Endpoints) -> None:
    assert len(three.kafka_bootstrap_servers.split(",")) == 3
    described, isr = await _settled(three.kafka_bootstrap_servers)
    assert set(described) == {s.name for s in all_topics()}
    for name, partitions in described.items():
        assert partitions, name
        for p in partitions:
            assert len(p["replicas"]) == 3, (name, p)
            assert sorted(p["isr"]) == sorted(p["replicas"]), (name, p)
        assert isr[name] == "2", (name, isr[name])
    # The leaders are spread over the three brokers.
    assert {p["leader"] for ps in described.values() for p in ps} == {1, 2, 3}


async def test_killing_a_broker_under_load_loses_and_doubles_nothing(three: Endpoints) -> None:
    bootstrap = three.kafka_bootstrap_servers
    procs = ServiceProcesses(three, STATE / "logs" / "svc", {})
    procs.start_all()
    db = await asyncpg.connect(three.database_url)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=5, request_timeout_ms=30_000)
    await producer.start()
    victim = None
    try:
        described, _ = await _topics(bootstrap)
        # The broker leading the inbound chat topic's first partition dies.
        victim = next(p["leader"] for p in described[INBOUND_CHAT] if p["partition"] == 0)
        tag = uuid.uuid4().hex[:8]
        sessions = [f"b3-{tag}-{i}" for i in range(300)]
        began = time.monotonic()
        killed_at = None
        for i in range(0, len(sessions), 20):
            if i == 100:  # a third in: SIGKILL, as a crashed machine
                pid = kafka.running_pid(STATE, victim)
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                killed_at = time.monotonic() - began
            # acks=all with min.insync.replicas=2: each batch is acknowledged by two brokers.
            await asyncio.gather(*[
                producer.send_and_wait(
                    INBOUND_CHAT, json.dumps(contacts.chat_message(s, "Order never came")).encode(),
                    key=s.encode(), headers=_headers("chat.message"))
                for s in sessions[i:i + 20]])
            await asyncio.sleep(0.1)
        published_in = time.monotonic() - began

        keyed = {stored_key(f"chat:{s}"): s for s in sessions}  # intake keeps keyed hashes

        async def all_logged() -> dict[str, str] | None:
            rows = await db.fetch("SELECT thread_key, case_id FROM intake_thread"
                                  " WHERE thread_key = ANY($1::text[])",
                                  list(keyed))
            if len(rows) < len(sessions):
                return None
            for r in rows:
                types = {e.type for e in await read_case(db, r["case_id"])}
                if not {"contact.received", "sla.started"} <= types or not (
                        {"assignment.offered", "case.queued"} & types):
                    return None
            return {r["thread_key"]: r["case_id"] for r in rows}

        cases = await wait_for(all_logged, timeout=240, interval=1.0,
                               what=f"{len(sessions)} chats in the log with a broker down")
        logged_in = time.monotonic() - began
        assert len(set(cases.values())) == len(sessions)
        for case_id in cases.values():
            counts = Counter(r.type for r in await read_case(db, case_id))
            assert counts["case.opened"] == 1 and counts["contact.received"] == 1, counts
            assert counts["sla.started"] == 1 and counts["case.classified"] == 1, counts
            assert await verify_case(db, case_id) is None
        assert all(procs.alive().values()), procs.alive()
        print(f"[switchboard] broker {victim} killed at {killed_at:.1f}s; 300 chats published "
              f"in {published_in:.1f}s, all logged once after {logged_in:.1f}s")
    finally:
        await producer.stop()
        await db.close()
        procs.stop_all()

    # The broker comes back and catches up: every partition in sync on three again.
    local.up(STATE, fast=True)

    async def in_sync() -> bool:
        described, _ = await _topics(bootstrap)
        return all(len(p["isr"]) == 3 for ps in described.values() for p in ps)

    await wait_for(in_sync, timeout=120, interval=1.0, what="all replicas back in sync")

    # Each input is on its topic once: the producer's retries to the new leaders were
    # deduplicated by idempotence, not written twice (the topic holds only this test's chats).
    count, inbound = await _read(bootstrap, INBOUND_CHAT)
    assert count == len(sessions), count
    assert Counter(r.key for r in inbound) == Counter(s.encode() for s in sessions)
    # What intake published for these cases: each case.opened event once.
    ours = set(cases.values())
    _, events = await _read(bootstrap, CASE_EVENTS)
    opened = Counter(dict(r.headers).get("ce_id") for r in events
                     if r.key and r.key.decode() in ours
                     and dict(r.headers).get("ce_type") == b"case.opened")
    assert len(opened) == len(sessions), len(opened)
    print(f"[switchboard] case.opened records on cases.events: {sum(opened.values())} "
          f"for {len(opened)} event ids")


async def _read(bootstrap: str, topic: str) -> tuple[int, list[ConsumerRecord[bytes, bytes]]]:
    """Every record of every partition of `topic` (start to end offsets), and their number by
    the offsets: each partition is read until its end, within a minute."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 60
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            assert time.monotonic() < deadline, "could not read the topic to its end"
            for batch in (await consumer.getmany(*partitions, timeout_ms=500)).values():
                records += batch
        return sum(ends[tp] - starts[tp] for tp in partitions), records
    finally:
        await consumer.stop()
