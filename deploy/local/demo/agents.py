"""Simulated agents at their desktops: they take offers from `routing.offers` and work the cases.

Most offers are accepted after a short think, one in ten is declined (the router re-offers it);
most cases get a reply well within the SLA target, but every fourth chat or call is forgotten until
after its first-response deadline, so the demo shows a breach, an escalation and its packet. Cases
are solved a while after the reply, which is what frees the agent's channel capacity.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from bus import Bus, partitions_of

from shared.contracts import agents as ag
from shared.contracts.case_events import AssignmentOffered
from shared.contracts.envelope import Envelope, EnvelopeError
from shared.contracts.topics import AGENT_ACTIVITY, AGENTS, ROUTING_OFFERS

SOURCE = "demo/agent-desktop"
# One more agent than the router's seed roster: a second billing-capable senior.
EXTRA_AGENT: dict[str, Any] = {
    "agent_id": "agent-emi", "name": "Emi Tanaka", "authority_tier": 2, "languages": ["en", "ja"],
    "skills": [{"skill": "billing", "proficiency": 3}, {"skill": "orders", "proficiency": 4},
               {"skill": "technical", "proficiency": 2}, {"skill": "general", "proficiency": 4}],
}
THINK = {"voice": (0.5, 1.5), "chat": (1.0, 3.0), "email": (2.0, 5.0)}
REPLY_AFTER = {"voice": (1.0, 4.0), "chat": (3.0, 10.0), "email": (5.0, 15.0)}
SOLVE_AFTER = {"voice": (6.0, 12.0), "chat": (10.0, 20.0), "email": (8.0, 20.0)}
DECLINE_REASONS = ("on another call", "needs a specialist for this product", "going on a break")
REPLIES = {
    "billing": "Thanks for waiting. I can see the payment on your account; I've raised a refund "
               "for the duplicate and you'll get a confirmation within 24 hours.",
    "orders": "Thanks for getting in touch. I've checked your order and it is with the courier; "
              "here is the tracking link, and I'll keep an eye on it for you.",
    "technical": "Sorry about the trouble. I've reset the sign-in on your account; please try "
                 "again and reply here if it still fails.",
    "general": "Thanks for contacting us. I've looked into this and I'm taking care of it now.",
}


@dataclass
class AgentStats:
    offers: int = 0
    accepted: int = 0
    declined: int = 0
    replied: int = 0
    late: int = 0  # replies after the first-response deadline
    solved: int = 0
    working: Counter[str] = field(default_factory=Counter)  # open cases per channel


def roster() -> list[ag.AgentProfile]:
    """The router's seed roster plus one agent, as current profiles (presence: available)."""
    seed: list[dict[str, Any]] = json.loads(
        (resources.files("services.router") / "seed_roster.json").read_text("utf-8"))
    now = datetime.now(UTC)
    return [ag.AgentProfile.model_validate({**entry, "changed_at": now})
            for entry in [*seed, EXTRA_AGENT]]


async def publish_roster(bus: Bus) -> list[str]:
    ids = []
    for profile in roster():
        await bus.publish(AGENTS, profile.agent_id, "agent.profile_changed", profile,
                          source="demo/workforce")
        ids.append(profile.agent_id)
    return ids


async def close_leftovers(pool: asyncpg.Pool, bus: Bus,
                          wait_seconds: float = 30.0) -> tuple[int, int]:
    """Solve what earlier runs left open, so their cases stop holding agents' capacity.

    The router releases capacity only on `agent.case_solved`, and a stopped demo leaves offers and
    assignments open in its database: without this the second run would start with busy agents.
    Returns how many were closed and how many the router still holds after `wait_seconds`.
    """
    rows = await pool.fetch("SELECT offer_id, case_id, agent_id FROM router_offer"
                            " WHERE state IN ('offered', 'accepted')")
    offers = [row["offer_id"] for row in rows]
    rows = list({(row["case_id"], row["agent_id"]): row for row in rows}.values())
    for row in rows:
        solved = ag.CaseSolved(case_id=row["case_id"], agent_id=row["agent_id"],
                               at=datetime.now(UTC))
        await bus.publish(AGENT_ACTIVITY, row["case_id"], "agent.case_solved", solved,
                          source="demo/shift-handover", subject=row["case_id"])
    deadline = asyncio.get_running_loop().time() + wait_seconds
    left = len(offers)
    while left and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.5)
        # Only these offers: freed capacity may at once be offered to cases still waiting, and
        # those new offers are for the agents of this run.
        left = await pool.fetchval("SELECT count(*) FROM router_offer WHERE offer_id = ANY($1)"
                                   " AND state IN ('offered', 'accepted')", offers)
    return len(rows), left


class SimulatedAgents:
    def __init__(self, bus: Bus, bootstrap_servers: str, sla_targets: dict[str, float],
                 rng: random.Random) -> None:
        self.bus, self.rng, self.targets = bus, rng, sla_targets
        self.stats = AgentStats()
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None,
                                          enable_auto_commit=False, client_id="demo-agents")
        self._seen: set[str] = set()
        self._accepted_per_channel: Counter[str] = Counter()

    async def prepare(self) -> None:
        """Listen from the current end of `routing.offers`: offers of earlier runs are not ours.

        Called before the services start, so no offer of this run can slip in before we listen.
        """
        await self._consumer.start()
        partitions = await partitions_of(self._consumer, [ROUTING_OFFERS])
        if not partitions:
            await self._consumer.stop()
            raise RuntimeError(f"topic {ROUTING_OFFERS} does not exist; run `switchboard topics "
                               "create`")
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self._consumer.position(tp)  # resolve "end" now, not at the first fetch

    async def close(self) -> None:
        await self._consumer.stop()

    async def run(self) -> None:
        """Work offers until cancelled (which also cancels the cases in progress)."""
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    batch = await self._consumer.getmany(timeout_ms=300)
                    for records in batch.values():
                        for record in records:
                            offer = _offer(record)
                            if offer is not None and offer.offer_id not in self._seen:
                                self._seen.add(offer.offer_id)
                                tg.create_task(self._work(offer))
        finally:
            await self._consumer.stop()

    async def _work(self, offer: AssignmentOffered) -> None:
        channel, n = offer.channel, self.stats.offers
        self.stats.offers += 1
        await asyncio.sleep(self.rng.uniform(*THINK[channel]))
        if n % 10 == 4:
            await self._act("agent.offer_declined", ag.OfferDeclined(
                offer_id=offer.offer_id, case_id=offer.case_id, agent_id=offer.agent_id,
                reason=self.rng.choice(DECLINE_REASONS), at=datetime.now(UTC)))
            self.stats.declined += 1
            return
        await self._act("agent.offer_accepted", ag.OfferAccepted(
            offer_id=offer.offer_id, case_id=offer.case_id, agent_id=offer.agent_id,
            at=datetime.now(UTC)))
        self.stats.accepted += 1
        self.stats.working[channel] += 1
        k = self._accepted_per_channel[channel]
        self._accepted_per_channel[channel] += 1
        if channel == "email" and k % 5 == 2:
            return  # stays in the inbox: the email target is hours, it breaches another day
        if channel != "email" and k % 4 == 1:
            # Forgotten until a while after the deadline: a breach, then a late answer.
            await asyncio.sleep(self.targets.get(channel, 60.0) + self.rng.uniform(3.0, 6.0))
            self.stats.late += 1
        else:
            await asyncio.sleep(self.rng.uniform(*REPLY_AFTER[channel]))
        skill = offer.queue.split("-", 1)[0]
        await self._act("agent.replied", ag.AgentReplied(
            case_id=offer.case_id, agent_id=offer.agent_id, at=datetime.now(UTC),
            text=REPLIES.get(skill, REPLIES["general"])))
        self.stats.replied += 1
        await asyncio.sleep(self.rng.uniform(*SOLVE_AFTER[channel]))
        await self._act("agent.case_solved", ag.CaseSolved(
            case_id=offer.case_id, agent_id=offer.agent_id, at=datetime.now(UTC)))
        self.stats.solved += 1
        self.stats.working[channel] -= 1

    async def _act(self, type_: str, data: Any) -> None:
        await self.bus.publish(AGENT_ACTIVITY, data.case_id, type_, data, source=SOURCE,
                               subject=data.case_id)


def _offer(record: Any) -> AssignmentOffered | None:
    try:
        envelope, body = Envelope.from_kafka(dict(record.headers or ()), record.value or b"")
    except EnvelopeError:
        return None
    if envelope.type != "assignment.offered":
        return None
    return AssignmentOffered.model_validate_json(body)
