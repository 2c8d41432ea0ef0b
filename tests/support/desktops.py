"""Simulated agent desktops for tests under load: log agents in, take every offer, solve it.

Desktops de-duplicate offers on their id, as docs/router.md asks of real ones, and count how
many offers reached them more than once (after a fault the outbox may republish a record).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.contracts.topics import AGENT_ACTIVITY, AGENTS, INBOUND_CHAT, ROUTING_OFFERS
from shared.settings import REPO_ROOT
from tests.support.kafka import cloudevent_headers

SEED_ROSTER = REPO_ROOT / "services" / "router" / "seed_roster.json"
SKILLS = ("general", "orders", "billing", "accounts", "technical")


def message_headers(type_: str, **extra: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in {**cloudevent_headers(type_), **extra}.items()]


async def log_in(producer: AIOKafkaProducer, agents: list[str], chat_capacity: int) -> None:
    """These agents available for chat with every default skill; the seed roster logged out
    (it never answers: its offers would wait for their expiry)."""
    seed = [a["agent_id"] for a in json.loads(SEED_ROSTER.read_text())]
    for agent_id, presence in [*((a, "offline") for a in seed),
                               *((a, "available") for a in agents)]:
        profile = {"agent_id": agent_id, "name": agent_id, "languages": ["en"],
                   "skills": [{"skill": s, "proficiency": 3} for s in SKILLS],
                   "capacity": {"email": 0, "chat": chat_capacity, "voice": 0},
                   "presence": presence, "changed_at": datetime.now(UTC).isoformat()}
        await producer.send_and_wait(AGENTS, json.dumps(profile).encode(),
                                     key=agent_id.encode(),
                                     headers=message_headers("agent.profile_changed"))


async def send_chat(producer: AIOKafkaProducer, session: str, customer: str) -> None:
    message = {"session_id": session, "message_id": f"{session}-m1",
               "sent_at": datetime.now(UTC).isoformat(), "customer": {"name": customer},
               "text": "Hello, I have a question about my account please"}
    await producer.send_and_wait(INBOUND_CHAT, json.dumps(message).encode(),
                                 key=session.encode(), headers=message_headers("chat.message"))


class Desktops:
    """Agents who accept every offer at once and solve the case right after."""

    def __init__(self, bootstrap: str, agents: list[str]) -> None:
        self.bootstrap, self.agents = bootstrap, set(agents)
        self.offers: Counter[str] = Counter()

    @property
    def duplicate_deliveries(self) -> int:
        return sum(n - 1 for n in self.offers.values())

    async def run(self, producer: AIOKafkaProducer) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            parts = [TopicPartition(ROUTING_OFFERS, p)
                     for p in cluster.partitions_for_topic(ROUTING_OFFERS) or ()]
            consumer.assign(parts)
            await consumer.seek_to_end(*parts)
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for record in (r for rs in batch.values() for r in rs):
                    offer = json.loads(record.value)
                    if offer["agent_id"] not in self.agents:
                        continue
                    self.offers[offer["offer_id"]] += 1
                    if self.offers[offer["offer_id"]] == 1:
                        await self._work(producer, offer)
        finally:
            await consumer.stop()

    async def _work(self, producer: AIOKafkaProducer, offer: dict[str, Any]) -> None:
        case_id, now = offer["case_id"], datetime.now(UTC).isoformat()
        for type_, body in (("agent.offer_accepted", {"offer_id": offer["offer_id"]}),
                            ("agent.case_solved", {})):
            await producer.send_and_wait(
                AGENT_ACTIVITY, json.dumps({"case_id": case_id, "agent_id": offer["agent_id"],
                                            "at": now, **body}).encode(),
                key=case_id.encode(), headers=message_headers(type_, ce_subject=case_id))
