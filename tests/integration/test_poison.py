"""A poison record among 1,000 good ones, on the real broker: nothing is lost, nothing stalls.

Poison in both Kafka modes, in the middle of what will be consumed as one batch: a structured
CloudEvent nesting 3,000 deep, one with a 4,301-digit number, a binary record whose JSON is cut
off, and one that violates its schema. Each is dead-lettered (a `dead_letter` row and a copy on
`<topic>.dlq`) with a reason that quotes none of the customer's words; all 1,000 good contacts
open their case; the intake group's position reaches the end of the topic.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared import dead_letters
from shared.contracts.topics import INBOUND_CHAT, dlq
from shared.infra.local import Endpoints
from shared.keys import sealer_from
from shared.settings import Settings
from tests.support.kafka import cloudevent_headers, drained, read_all, wait_for
from tests.support.services import ServiceProcesses

pytestmark = pytest.mark.integration
GOOD = 1_000
SECRET = "4111 1111 1111 1111 SECRET-CUSTOMER-WORDS"
PAN = b"4111 1111 1111 1111"


def _structured(data_json: str, event_id: str) -> bytes:
    return ('{"specversion":"1.0","id":"' + event_id + '","source":"test/widget",'
            '"type":"chat.started","time":"' + datetime.now(UTC).isoformat() + '","data":'
            + data_json + "}").encode()


def poison(tag: str) -> list[tuple[str, dict[str, str], bytes]]:
    """(event id, headers, body) of each poison record."""
    structured = {"content-type": "application/cloudevents+json"}
    deep, big = f"deep-{tag}", f"big-{tag}"
    cut, bad = f"cut-{tag}", f"bad-{tag}"
    return [
        (deep, structured, _structured("[" * 3000 + "]" * 3000, deep)),
        (big, structured, _structured('{"session_id": ' + "9" * 4301 + "}", big)),
        (cut, cloudevent_headers("chat.message", cut),
         ('{"session_id": "s-' + tag + '", "message_id": "m1", "text": "' + SECRET).encode()),
        (bad, cloudevent_headers("chat.started", bad),
         json.dumps({"session_id": SECRET * 20, "started_at": "not a time"}).encode()),
    ]


def chat_started(tag: str, n: int) -> dict[str, Any]:
    return {"session_id": f"poison-{tag}-{n}", "started_at": datetime.now(UTC).isoformat(),
            "customer": {"name": f"Poison test {tag}"}, "language": "en"}


async def test_a_poison_record_among_a_thousand_costs_only_itself(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    tag = uuid.uuid4().hex[:8]
    bad = poison(tag)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=20)
    await producer.start()
    try:
        sent = []
        for n in range(GOOD):
            if n == GOOD // 2:  # in the middle of a batch, on one partition (one key)
                for _event_id, headers, body in bad:
                    sent.append(await producer.send(
                        INBOUND_CHAT, body, key=b"poison-" + tag.encode(),
                        headers=[(k, v.encode()) for k, v in headers.items()]))
            headers = cloudevent_headers("chat.started", f"good-{tag}-{n}")
            sent.append(await producer.send(
                INBOUND_CHAT, json.dumps(chat_started(tag, n)).encode(),
                key=b"poison-" + tag.encode(),
                headers=[(k, v.encode()) for k, v in headers.items()]))
        for future in sent:
            await future
    finally:
        await producer.stop()

    async def opened() -> int | None:
        n: int = await app_db.fetchval(
            "SELECT count(*) FROM case_log WHERE type = 'case.opened'"
            " AND payload->'customer'->>'name' = $1", f"Poison test {tag}")
        return n if n >= GOOD else None

    assert await wait_for(opened, timeout=240, what=f"{GOOD} cases opened") == GOOD

    ids = [event_id for event_id, _, _ in bad]

    async def dead() -> list[asyncpg.Record] | None:
        rows = await app_db.fetch(
            "SELECT d.* FROM dead_letter d WHERE d.source_topic = $1"
            " AND EXISTS (SELECT 1 FROM jsonb_array_elements(d.headers) h"
            "  WHERE h->>0 = 'ce_id' AND convert_from(decode(h->>1, 'base64'), 'UTF8')"
            "  = ANY($2::text[]))", INBOUND_CHAT, ids[2:])
        structured = await app_db.fetch(
            "SELECT * FROM dead_letter WHERE source_topic = $1"
            " AND position($2::bytea in value) > 0", INBOUND_CHAT, tag.encode())
        found = {r["value"]: r for r in [*rows, *structured]}
        return list(found.values()) if len(found) >= len(bad) else None

    letters = await wait_for(dead, what="the four dead letters")
    assert len(letters) == len(bad)
    sealer = sealer_from(Settings())
    assert sealer is not None
    bodies = {body for _, _, body in bad}
    for row in letters:
        assert "4111" not in row["reason"] and "SECRET" not in row["reason"], row["reason"]
        # issue 11: the row keeps a redacted copy; the original only sealed, and it opens
        assert row["redacted"] and PAN not in bytes(row["value"]), bytes(row["value"])[:200]
        original = dead_letters.parse_original(sealer.open(bytes(row["sealed"]), dead_letters
                                               .binding(row["service"], row["source_topic"],
                                                        row["source_partition"],
                                                        row["source_offset"])))
        assert original.value in bodies

    def ours(record: Any) -> bool:
        original = {k: base64.b64decode(v).decode("utf-8", "replace")
                    for k, v in json.loads(record.headers["dlq_original_headers"])}
        return tag.encode() in record.value or original.get("ce_id") in ids

    async def copies() -> list[Any] | None:
        found = [r for r in await read_all(bootstrap, dlq(INBOUND_CHAT)) if ours(r)]
        return found if len(found) >= len(bad) else None

    for record in await wait_for(copies, what="the dead letters' copies on the DLQ topic"):
        assert "SECRET" not in record.headers["dlq_reason"]
        assert PAN not in record.value and PAN not in (record.key or b"")  # only the redacted copy

    # the intake group went past every record of the partition: nothing holds it; and the
    # thousand contacts are through every service before the next test module starts
    await drained(bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="switchboard-intake",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        parts = [TopicPartition(INBOUND_CHAT, p)
                 for p in cluster.partitions_for_topic(INBOUND_CHAT) or ()]
        ends = await consumer.end_offsets(parts)

        async def caught_up() -> bool:
            committed = {tp: await consumer.committed(tp) or 0 for tp in parts}
            return all(committed[tp] >= ends[tp] for tp in parts)

        await wait_for(caught_up, what="the intake group at the end of the chat topic")
    finally:
        await consumer.stop()
