"""Load for the end-to-end benchmark: contacts as front-ends publish them, agents who take offers.

The mix is the one the throughput issue measured: 50 % chat (`chat.started` + `chat.message`),
30 % `email.received` carrying a small real MIME message, 20 % `call.started`. Each contact's
publish instant is its own timestamp (`started_at` / `received_at`), which intake copies into
`case.opened.opened_at`: the benchmark reads latencies back from the case log without keeping
any mapping of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.contracts.topics import (
    AGENT_ACTIVITY,
    AGENTS,
    INBOUND_CHAT,
    INBOUND_EMAIL,
    INBOUND_VOICE,
    ROUTING_OFFERS,
)

SKILLS = ("accounts", "billing", "general", "orders", "technical")
LANGUAGES = ["en", "es", "de", "fr"]
CHAT_TEXTS = (
    "Hi, I was charged twice for my order last week, can you refund one of the payments?",
    "My parcel still hasn't arrived, the tracking page says it left the depot 6 days ago.",
    "I can't log in to my account, the reset link you send me has already expired.",
    "The app crashes every time I open the settings page on my phone.",
    "I'd like to change the delivery address on order 5512 please.",
    "Where can I download the invoice for my last purchase?",
)
EMAIL_BODY = (
    "Hello,\n\nI ordered a pair of running shoes on Monday (order 88213) and was charged\n"
    "twice on my card. Could you please refund the second payment?\n\nThanks,\nMaya Patel\n"
)


def _now() -> datetime:
    return datetime.now(UTC)


def _headers(type_: str, event_id: str, source: str) -> list[tuple[str, bytes]]:
    return [("ce_specversion", b"1.0"), ("ce_id", event_id.encode()),
            ("ce_source", source.encode()), ("ce_type", type_.encode()),
            ("ce_time", _now().isoformat().encode()), ("ce_schemaversion", b"1"),
            ("content-type", b"application/json")]


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def contact_records(run: str, n: int, kind: str) -> list[Record]:
    """The records one new contact publishes, stamped now."""
    at = _now().isoformat()
    ident = f"{run}-{n}"
    if kind == "chat":
        session = f"bench-chat-{ident}"
        customer = {"name": f"Customer {n}", "email": f"customer{n}@example.org"}
        started = {"session_id": session, "customer": customer, "started_at": at,
                   "language": "en", "widget": "shop.example/help"}
        message = {"session_id": session, "message_id": f"{session}-m1", "customer": customer,
                   "text": CHAT_TEXTS[n % len(CHAT_TEXTS)], "sent_at": at}
        return [Record(INBOUND_CHAT, session.encode(), json.dumps(started).encode(),
                       _headers("chat.started", f"{session}-start", "bench/chat-widget")),
                Record(INBOUND_CHAT, session.encode(), json.dumps(message).encode(),
                       _headers("chat.message", f"{session}-m1", "bench/chat-widget"))]
    if kind == "email":
        message_id = f"<bench-{ident}@mail.example.org>"
        mail = EmailMessage()
        mail["From"] = f"Maya Patel <maya.{n}@example.org>"
        mail["To"] = "support@shop.example"
        mail["Subject"] = f"Charged twice for order {88000 + n % 1000}"
        mail["Message-ID"] = message_id
        mail["Date"] = format_datetime(_now())
        mail.set_content(EMAIL_BODY)
        body = {"mailbox": "support@shop.example",
                "raw_mime": base64.b64encode(mail.as_bytes()).decode(), "received_at": at}
        return [Record(INBOUND_EMAIL, message_id.encode(), json.dumps(body).encode(),
                       _headers("email.received", f"bench-email-{ident}", "bench/email-gateway"))]
    call = f"bench-call-{ident}"
    body = {"call_id": call, "from_number": f"+1415555{n % 10000:04d}",
            "to_number": "+18005550100", "started_at": at}
    return [Record(INBOUND_VOICE, call.encode(), json.dumps(body).encode(),
                   _headers("call.started", f"{call}-start", "bench/telephony"))]


def mix(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    kinds = ["chat"] * 5 + ["email"] * 3 + ["voice"] * 2
    return [rng.choice(kinds) for _ in range(n)]


class Publisher:
    """One idempotent producer, sending without waiting for each acknowledgement."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                         linger_ms=5, max_batch_size=256 * 1024,
                                         client_id="switchboard-bench")

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, records: list[Record]) -> list[asyncio.Future[Any]]:
        return [await self.producer.send(r.topic, r.value, key=r.key, headers=r.headers)
                for r in records]

    async def contacts(self, run: str, kinds: list[str], rate: float | None) -> tuple[float, float]:
        """Publish one contact per kind, at `rate` per second (None: as fast as possible);
        return the wall-clock instants of the first and the last publish."""
        pending: list[asyncio.Future[Any]] = []
        began = time.time()
        start = time.monotonic()
        for n, kind in enumerate(kinds):
            if rate is not None:
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            pending += await self.send(contact_records(run, n, kind))
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                pending = []
        last = time.time()
        await asyncio.gather(*pending)
        return began, last


def agent_profile(agent_id: str, presence: str = "available") -> dict[str, Any]:
    return {"agent_id": agent_id, "name": agent_id, "authority_tier": 2,
            "languages": LANGUAGES, "skills": [{"skill": s, "proficiency": 3} for s in SKILLS],
            "capacity": {"email": 5, "chat": 3, "voice": 1}, "presence": presence,
            "changed_at": _now().isoformat()}


async def log_in(publisher: Publisher, count: int, seed_agents: list[str]) -> list[str]:
    """Bench agents available with every skill; the seed roster's agents logged out, so
    nobody who never answers is offered work."""
    ids = [f"bench-agent-{i:04d}" for i in range(count)]
    records = [Record(AGENTS, a.encode(), json.dumps(agent_profile(a)).encode(),
                      _headers("agent.profile_changed", f"{a}-login-{time.time_ns()}",
                               "bench/workforce"))
               for a in ids]
    records += [Record(AGENTS, a.encode(), json.dumps(agent_profile(a, "offline")).encode(),
                       _headers("agent.profile_changed", f"{a}-logout-{time.time_ns()}",
                                "bench/workforce"))
                for a in seed_agents]
    await asyncio.gather(*await publisher.send(records))
    return ids


@dataclass
class AgentStats:
    offers: int = 0
    distinct: set[str] = field(default_factory=set)
    by_type: Counter[str] = field(default_factory=Counter)
    # The cases offered since the phase began (`Bench.run_phase` empties it): its progress,
    # counted from the offers the desktops receive instead of by polling the case log.
    phase_cases: set[str] = field(default_factory=set)

    @property
    def duplicate_offers(self) -> int:
        return self.offers - len(self.distinct)


class Agents:
    """Desktops that accept every offer at once and solve the case `hold` seconds later."""

    def __init__(self, bootstrap: str, publisher: Publisher, hold: float) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                         enable_auto_commit=False, client_id="bench-agents",
                                         max_poll_records=2_000)
        self.publisher, self.hold = publisher, hold
        self.stats = AgentStats()
        self._due: deque[tuple[float, dict[str, Any]]] = deque()  # in due order: one hold

    async def start(self) -> None:
        await self.consumer.start()
        cluster = await self.consumer._client.fetch_all_metadata()
        parts = [TopicPartition(ROUTING_OFFERS, p)
                 for p in sorted(cluster.partitions_for_topic(ROUTING_OFFERS) or ())]
        self.consumer.assign(parts)
        await self.consumer.seek_to_end(*parts)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._solver())
            while True:
                batches = await self.consumer.getmany(timeout_ms=100)
                records: list[Record] = []
                for batch in batches.values():
                    for message in batch:
                        records += self._answer(message)
                if records:
                    await self.publisher.send(records)

    def _answer(self, message: Any) -> list[Record]:
        offer = json.loads(message.value)
        self.stats.offers += 1
        if offer["offer_id"] in self.stats.distinct:
            return []  # a desktop de-duplicates on the offer id, as docs/router.md asks
        self.stats.distinct.add(offer["offer_id"])
        self.stats.phase_cases.add(offer["case_id"])
        self._due.append((time.monotonic() + self.hold, offer))
        return [self._act("agent.offer_accepted", offer, {"offer_id": offer["offer_id"]})]

    def _act(self, type_: str, offer: dict[str, Any], extra: dict[str, Any]) -> Record:
        self.stats.by_type[type_] += 1
        body = {"case_id": offer["case_id"], "agent_id": offer["agent_id"],
                "at": _now().isoformat(), **extra}
        return Record(AGENT_ACTIVITY, offer["case_id"].encode(), json.dumps(body).encode(),
                      _headers(type_, f"{offer['offer_id']}/{type_}", "bench/agent-desktop"))

    async def _solver(self) -> None:
        while True:
            now, records = time.monotonic(), list[Record]()
            while self._due and self._due[0][0] <= now and len(records) < 1_000:
                records.append(self._act("agent.case_solved", self._due.popleft()[1], {}))
            if records:
                await self.publisher.send(records)
            else:
                await asyncio.sleep(0.01)
