"""Scale-out by partitions, on the real broker and database (issue 9).

Two instances each of intake, SLA and escalation share their topics' partitions in one consumer
group; a second router stands by. Chats arrive while simulated desktops accept and solve every
offer at once, and halfway through the leading router is killed: the standby takes over.
Nothing is doubled or reordered per case, no agent is ever offered beyond capacity, and no case
is ever offered to two agents at once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict
from datetime import datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from shared.caselog.store import read_case, verify_case
from shared.infra.local import Endpoints
from tests.support.desktops import Desktops, log_in, send_chat
from tests.support.kafka import drained, wait_for
from tests.support.services import ServiceProcesses

pytestmark = pytest.mark.integration
CHATS = 60
CAPACITY = 2  # chats each test agent may carry


def max_concurrent(intervals: list[tuple[datetime, datetime | None]]) -> int:
    """The most intervals open at once (an interval closing frees its place first)."""
    edges = [(start, 1) for start, _ in intervals]
    edges += [(end, -1) for _, end in intervals if end is not None]
    level = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return peak


async def group_members(bootstrap: str, group: str) -> int:
    """Members of a consumer group: one per process and topic it consumes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups([group])
        # DescribeGroups response: groups[i] = (error, group, state, type, protocol, members)
        return len(described.groups[0][5])
    finally:
        await admin.close()


async def test_two_instances_share_the_work_and_a_standby_router_takes_over(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    # the module's router leads before the second one starts: that one must stand by
    await wait_for(lambda: b"router: leading" in services.log_bytes("router"),
                   what="the first router leading")
    for name in ("intake", "sla", "escalation", "router"):
        services.start(name, instance=2)
    await wait_for(lambda: b"standing by" in services.log_bytes("router#2"),
                   what="the second router standing by")
    epoch_before = await app_db.fetchval("SELECT epoch FROM router_leader")
    tag = uuid.uuid4().hex[:8]
    agents = [f"scale-{tag}-{i}" for i in range(3)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    desktops = Desktops(bootstrap, agents)
    working = asyncio.create_task(desktops.run(producer))
    try:
        await log_in(producer, agents, CAPACITY)
        for n in range(CHATS):
            if n == CHATS // 2:
                services.kill("router")  # the leader: the standby takes over
            await send_chat(producer, f"scale-{tag}-{n}", f"Scale {tag}")
            await asyncio.sleep(0.05)

        async def all_solved() -> list[str] | None:
            rows = await app_db.fetch(
                "SELECT o.case_id FROM case_log o WHERE o.type = 'case.opened'"
                " AND o.payload->'customer'->>'name' = $1 AND EXISTS (SELECT 1 FROM case_log s"
                " WHERE s.case_id = o.case_id AND s.type = 'case.solved')", f"Scale {tag}")
            return [r["case_id"] for r in rows] if len(rows) >= CHATS else None

        cases = await wait_for(all_solved, timeout=240, what=f"{CHATS} chats routed and solved")
        await drained(bootstrap)
    finally:
        working.cancel()
        await asyncio.gather(working, return_exceptions=True)
        await producer.stop()

    # two members in each shared group; the standby led with a new epoch
    topics = {"intake": 3, "sla": 1, "escalation": 2}  # consumed per process
    for name, n in topics.items():
        assert await group_members(bootstrap, f"switchboard-{name}") == 2 * n, name
    assert await app_db.fetchval("SELECT epoch FROM router_leader") > epoch_before

    # each chat opened one case, each case's log is complete, ordered and chained
    assert len(set(cases)) == CHATS
    for case_id in cases:
        rows = await read_case(app_db, case_id)
        types = [r.type for r in rows]
        assert types[0] == "case.opened", types
        assert types.index("contact.received") < types.index("case.classified") \
            < types.index("assignment.offered") < types.index("case.assigned") \
            < types.index("case.solved"), types
        assert Counter(types)["case.opened"] == 1 and Counter(types)["sla.started"] >= 1
        started = [json.dumps(r.payload.get("metric")) for r in rows if r.type == "sla.started"]
        assert len(started) == len(set(started)), f"an SLA clock started twice: {types}"
        assert await verify_case(app_db, case_id) is None

    # no agent beyond capacity, no case with two open offers, at any moment
    offers = await app_db.fetch(
        "SELECT offer_id, case_id, agent_id, offered_at, answered_at, state FROM router_offer"
        " WHERE agent_id = ANY($1::text[])", agents)
    by_agent: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    by_case: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for o in offers:
        interval = (o["offered_at"], o["answered_at"] if o["state"] not in ("offered",
                                                                              "accepted")
                    else None)
        by_agent[o["agent_id"]].append(interval)
        by_case[o["case_id"]].append(interval)
    assert by_agent, "no offers were made"
    assert all(max_concurrent(v) <= CAPACITY for v in by_agent.values())
    assert all(max_concurrent(v) <= 1 for v in by_case.values())
    assert len(desktops.offers) >= CHATS
