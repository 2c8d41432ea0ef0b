"""Authority end to end: a refund beyond the assigned agent's tier escalates, the router re-queues
the case to the tier that can approve it, and that agent's acceptance acknowledges the escalation.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from shared.caselog.store import read_case
from shared.contracts.topics import AGENT_ACTIVITY, AGENTS, INBOUND_EMAIL
from shared.infra.local import Endpoints
from shared.settings import REPO_ROOT
from tests.support import contacts
from tests.support.cases import case_of, payloads
from tests.support.kafka import cloudevent_headers, publish, wait_for
from tests.support.services import ServiceProcesses

pytestmark = pytest.mark.integration

ROSTER = {a["agent_id"]: a for a in json.loads(
    (REPO_ROOT / "services/router/seed_roster.json").read_text())}


async def presence(bootstrap: str, agent_id: str, state: str) -> None:
    profile = {**ROSTER[agent_id], "presence": state, "changed_at": datetime.now(UTC).isoformat()}
    await publish(bootstrap, AGENTS, profile, cloudevent_headers("agent.profile_changed"),
                  key=agent_id)


async def accept(bootstrap: str, offer: dict[str, Any]) -> None:
    body = {"offer_id": offer["offer_id"], "case_id": offer["case_id"],
            "agent_id": offer["agent_id"], "at": datetime.now(UTC).isoformat()}
    headers = {**cloudevent_headers("agent.offer_accepted"), "ce_subject": offer["case_id"]}
    await publish(bootstrap, AGENT_ACTIVITY, body, headers, key=offer["case_id"])


async def test_a_refund_beyond_the_agents_tier_is_requeued_to_a_tier_that_can_approve_it(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    await presence(bootstrap, "agent-ada", "away")  # the only tier-2 agent steps out

    async def ada_away() -> bool:
        return await app_db.fetchval("SELECT profile->>'presence' FROM router_agent"
                                     " WHERE agent_id = 'agent-ada'") == "away"
    await wait_for(ada_away, what="agent-ada away")

    first, tag = f"<{uuid.uuid4().hex}@mail.example.com>", uuid.uuid4().hex[:6]
    raw = contacts.raw_email(first, f"My order {tag} has not arrived",
                             "Hello, my order 5512 has not arrived yet. Where is it?")
    await publish(bootstrap, INBOUND_EMAIL, contacts.email_event(raw),
                  cloudevent_headers("email.received"), key=first)
    case_id = await case_of(app_db, f"email:{first}")
    [offer] = await payloads(app_db, case_id, "assignment.offered")
    assert offer["agent_id"] != "agent-ada"
    await accept(bootstrap, offer)
    [assigned] = await payloads(app_db, case_id, "case.assigned")
    assert assigned["authority_tier"] == 1

    await presence(bootstrap, "agent-ada", "available")
    follow_up = f"<{uuid.uuid4().hex}@mail.example.com>"
    raw = contacts.raw_email(follow_up, f"Re: My order {tag} has not arrived",
                             "Thanks, it arrived today. I would like to return it: please "
                             "refund the 900 EUR I paid.",
                             in_reply_to=first)
    await publish(bootstrap, INBOUND_EMAIL, contacts.email_event(raw),
                  cloudevent_headers("email.received"), key=follow_up)

    classified = await payloads(app_db, case_id, "case.classified", 2)
    assert classified[1]["min_authority_tier"] == 2
    async def authority_escalation() -> dict[str, Any] | None:
        return next((p for p in await payloads(app_db, case_id, "case.escalated")
                     if p["reason"] == "authority:tier2"), None)
    escalated = await wait_for(authority_escalation, what="the authority escalation")
    assert escalated["requeue"]["min_authority_tier"] == 2
    packet = escalated["packet"]
    assert len(packet["contacts"]) == 2 and "900" in packet["contacts"][1]["text"]

    offers = await payloads(app_db, case_id, "assignment.offered", 2)
    assert offers[1]["agent_id"] == "agent-ada"
    await accept(bootstrap, offers[1])
    [acknowledged] = await payloads(app_db, case_id, "escalation.acknowledged")
    assert acknowledged["escalation_id"] == escalated["escalation_id"]
    counts = Counter(r.type for r in await read_case(app_db, case_id))
    assert counts["case.assigned"] == 2, counts
