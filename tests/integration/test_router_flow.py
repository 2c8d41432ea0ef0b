"""The router end to end on the real broker and database: agents log in, contacts arrive,
offers are accepted, one is declined and re-offered, a logout re-routes, a restart of the router
loses and doubles no offer.

The test's agents speak German and its customers write German, so the seed roster (English,
Swedish, French, Chinese, Spanish) and cases of other tests never mix with these.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from shared.caselog.store import read_case, verify_case
from shared.contracts.topics import AGENT_ACTIVITY, AGENTS, INBOUND_CHAT, ROUTING_OFFERS
from shared.infra.local import Endpoints
from tests.support import contacts
from tests.support.cases import case_of, payloads
from tests.support.kafka import cloudevent_headers, publish, read_all, wait_for
from tests.support.services import ServiceProcesses

pytestmark = pytest.mark.integration

GERMAN = [
    ("Hallo, meine Bestellung ist nicht angekommen. Können Sie mir bitte helfen? Ich warte seit "
    "zwei Wochen."),
    "Guten Tag, ich habe eine Frage zu meinem Konto und brauche bitte Hilfe.",
    "Hallo, die Lieferung ist beschädigt angekommen, was soll ich jetzt tun?",
]


SKILLS = ("general", "orders", "billing", "accounts", "technical")


async def agent_event(bootstrap: str, agent_id: str, proficiency: int,
                      presence: str = "available") -> None:
    profile = {"agent_id": agent_id, "name": agent_id, "authority_tier": 1,
               "languages": ["de"],
               # every default skill: whatever the model reads in a German chat, they serve it
               "skills": [{"skill": s, "proficiency": proficiency} for s in SKILLS],
               "capacity": {"email": 0, "chat": 2, "voice": 0}, "presence": presence,
               "changed_at": datetime.now(UTC).isoformat()}
    await publish(bootstrap, AGENTS, profile, cloudevent_headers("agent.profile_changed"),
                  key=agent_id)


async def activity(bootstrap: str, type_: str, case_id: str, body: dict[str, Any]) -> None:
    headers = {**cloudevent_headers(type_), "ce_subject": case_id}
    await publish(bootstrap, AGENT_ACTIVITY,
                  {"case_id": case_id, "at": datetime.now(UTC).isoformat(), **body},
                  headers, key=case_id)


async def agents_known(db: asyncpg.Connection, ids: list[str], presence: str) -> None:
    async def known() -> bool:
        n = await db.fetchval("SELECT count(*) FROM router_agent WHERE agent_id = ANY($1::text[])"
                              " AND profile->>'presence' = $2", ids, presence)
        return bool(n == len(ids))
    await wait_for(known, what=f"agents {ids} {presence}")


async def new_chat(bootstrap: str, db: asyncpg.Connection, text: str) -> str:
    session = f"s-{uuid.uuid4().hex[:10]}"
    await publish(bootstrap, INBOUND_CHAT, contacts.chat_message(session, text),
                  cloudevent_headers("chat.message"), key=session)
    return await case_of(db, f"chat:{session}")


async def test_offers_accepted_declined_reoffered_and_rerouted_on_logout(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    tag = uuid.uuid4().hex[:8]
    expert, second = f"agent-de-expert-{tag}", f"agent-de-second-{tag}"
    await agent_event(bootstrap, expert, 5)
    await agent_event(bootstrap, second, 3)
    await agents_known(app_db, [expert, second], "available")

    # a German chat goes to the German speaker with the highest proficiency, with the reasons
    case1 = await new_chat(bootstrap, app_db, GERMAN[0])
    [classified] = await payloads(app_db, case1, "case.classified")
    assert classified["language"] == "de"
    [offer1] = await payloads(app_db, case1, "assignment.offered")
    assert offer1["agent_id"] == expert
    [decided] = await payloads(app_db, case1, "routing.decided")
    assert decided["winner"] == expert and decided["requirements"]["language"] == "de"
    assert [c["agent_id"] for c in decided["candidates"]][:2] == [expert, second]
    # the seed roster was not free for a German chat (an offer lists the eligible agents; a
    # decision to wait says why each agent with the skill could not take it)
    assert decided["excluded_counts"]["not free, or lacks the skill or language"] >= 1

    # declined → the next agent; accepted → assigned
    await activity(bootstrap, "agent.offer_declined", case1,
                   {"offer_id": offer1["offer_id"], "agent_id": expert, "reason": "on break"})
    offers = await payloads(app_db, case1, "assignment.offered", 2)
    assert [o["agent_id"] for o in offers] == [expert, second]
    await activity(bootstrap, "agent.offer_accepted", case1,
                   {"offer_id": offers[1]["offer_id"], "agent_id": second})
    [assigned] = await payloads(app_db, case1, "case.assigned")
    assert assigned["agent_id"] == second

    # the offers went to the agents on routing.offers, keyed by agent
    # (the outbox relay publishes after the commit that logged them: wait for both)
    async def published() -> list[Any] | None:
        found = [r for r in await read_all(bootstrap, ROUTING_OFFERS)
                 if r.headers.get("ce_subject") == case1]
        return found if len(found) >= 2 else None
    records = await wait_for(published, what="both offers on routing.offers")
    assert sorted(r.key for r in records) == sorted([expert.encode(), second.encode()])

    # a logout hands back the agent's open offer; the case goes to the next agent
    case2 = await new_chat(bootstrap, app_db, GERMAN[1])
    [offer2] = await payloads(app_db, case2, "assignment.offered")
    assert offer2["agent_id"] == expert
    await agent_event(bootstrap, expert, 5, presence="offline")
    [withdrawn] = await payloads(app_db, case2, "assignment.withdrawn")
    assert withdrawn["agent_id"] == expert and withdrawn["reason"] == "agent logged out"
    offers2 = await payloads(app_db, case2, "assignment.offered", 2)
    assert offers2[1]["agent_id"] == second

    # solving releases capacity
    await activity(bootstrap, "agent.case_solved", case1, {"agent_id": second})
    await payloads(app_db, case1, "case.solved")

    for case_id in (case1, case2):
        rows = await read_case(app_db, case_id)
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
        assert await verify_case(app_db, case_id) is None
    await agent_event(bootstrap, second, 3, presence="offline")  # leave the floor as found


async def test_a_router_restart_loses_and_doubles_no_offer(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    agent = f"agent-de-restart-{uuid.uuid4().hex[:8]}"
    await agent_event(bootstrap, agent, 4)
    await agents_known(app_db, [agent], "available")

    services.kill("router")  # contacts arrive while the router is down
    case_id = await new_chat(bootstrap, app_db, GERMAN[2])
    services.start("router")
    [offer] = await payloads(app_db, case_id, "assignment.offered")
    assert offer["agent_id"] == agent

    services.kill("router")  # the offer is open in the database, not in the process
    services.start("router")
    await activity(bootstrap, "agent.offer_accepted", case_id,
                   {"offer_id": offer["offer_id"], "agent_id": agent})
    await payloads(app_db, case_id, "case.assigned")
    open_offers = await app_db.fetchval(
        "SELECT count(*) FROM router_offer WHERE case_id = $1 AND state = 'accepted'", case_id)
    assert open_offers == 1
    counts = Counter(r.type for r in await read_case(app_db, case_id))
    assert counts["assignment.offered"] == 1 and counts["case.assigned"] == 1, counts
    assert counts["case.classified"] == 1 and counts["case.queued"] == 1, counts
    await agent_event(bootstrap, agent, 4, presence="offline")


async def test_a_status_set_on_the_desktop_reaches_the_case_stream(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    case_id = await new_chat(bootstrap, app_db, GERMAN[0])
    await activity(bootstrap, "agent.status_changed", case_id,
                   {"agent_id": "agent-bo", "status": "pending_customer"})
    [changed] = await payloads(app_db, case_id, "case.status_changed")
    assert changed["status"] == "pending_customer" and changed["agent_id"] == "agent-bo"


async def test_an_agents_reply_is_redacted_before_the_log(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    case_id = await new_chat(bootstrap, app_db, GERMAN[2])
    await activity(bootstrap, "agent.replied", case_id,
                   {"agent_id": "agent-bo", "text": "Refunded to 4111 1111 1111 1111, exp 12/27."})
    [reply] = await payloads(app_db, case_id, "reply.sent")
    assert "4111 1111 1111 1111" not in reply["text"] and "****1111" in reply["text"]
    rows = await read_case(app_db, case_id)
    assert all("4111 1111 1111 1111" not in r.data for r in rows)
