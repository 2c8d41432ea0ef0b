"""The console in a real browser (Playwright driving the system's Chromium) on the real stack:
Kafka, PostgreSQL, the four services and the console as processes.

A supervisor signs in, watches a voice breach appear on the SLA page without reloading, opens the
escalation's warm-transfer packet (the customer's `<script>` shows as text and never runs),
acknowledges it, and the case log gets `escalation.acknowledged` by that supervisor, with the
timeline showing every row's chain intact. A viewer sees an escalation but has no button, and a
POST of their own is refused; a supervisor reassigns it and the router logs the transfer by them.
The agents and queues pages follow the floor live. Each page is screenshotted into
`.switchboard/test/screenshots/`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, Page, async_playwright

from services.console.users import add_user
from shared.caselog.store import read_case
from shared.contracts.agents import AgentProfile
from shared.contracts.topics import AGENTS, INBOUND_VOICE
from shared.infra.local import Endpoints
from shared.infra.prereqs import chromium_path
from tests.conftest import reset_floor
from tests.support.cases import case_of, payloads
from tests.support.infra import TEST_STATE_DIR
from tests.support.kafka import cloudevent_headers, publish, wait_for
from tests.support.services import ServiceProcesses

pytestmark = pytest.mark.integration

SHOTS = TEST_STATE_DIR / "screenshots"
PASSWORDS = {"sup-ada": f"ada-{uuid.uuid4().hex}", "view-vic": f"vic-{uuid.uuid4().hex}",
             "adm-amy": f"amy-{uuid.uuid4().hex}"}
# What a hostile customer leaves on a voicemail transcript: markup, a script, a link, a pixel.
SCRIPT = "<script>window.__pwned = 1</script>"
HOSTILE = (f"I was charged twice, refund me now! {SCRIPT} <img src=x onerror=\"window.__pwned=2\">"
           " [click here](javascript:window.__pwned=3)")
# Chromium as root in a sandbox-less container, with nothing reaching out to the network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
WAIT_MS = 90_000  # the pipeline on a busy 2-core machine; a page condition, never a sleep


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def nobody_available(endpoints: Endpoints) -> None:
    """The router's seed agents go offline, so the cases of this module wait in their queues."""
    roster = json.loads((resources.files("services.router") / "seed_roster.json").read_text())
    for entry in roster:
        profile = AgentProfile.model_validate({**entry, "presence": "offline",
                                               "changed_at": datetime.now(UTC)})
        await publish(endpoints.kafka_bootstrap_servers, AGENTS,
                      profile.model_dump_json().encode(),
                      cloudevent_headers("agent.profile_changed"), key=profile.agent_id)
    conn = await asyncpg.connect(endpoints.database_url)
    try:
        async def offline() -> bool:
            rows = await conn.fetch("SELECT profile->>'presence' AS p FROM router_agent"
                                    " WHERE agent_id = ANY($1::text[])",
                                    [e["agent_id"] for e in roster])
            return len(rows) == len(roster) and {r["p"] for r in rows} == {"offline"}
        await wait_for(offline, timeout=90, what="the seed agents offline")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def console_url(endpoints: Endpoints) -> Iterator[str]:
    """The four services and the console, on a floor where nobody is available."""
    asyncio.run(reset_floor(endpoints))
    users = TEST_STATE_DIR / "console-users.json"
    users.unlink(missing_ok=True)
    for name, role in (("sup-ada", "supervisor"), ("view-vic", "viewer"), ("adm-amy", "admin")):
        add_user(users, name, role, PASSWORDS[name])
    port = free_port()
    procs = ServiceProcesses(endpoints, TEST_STATE_DIR / "logs", {
        "CONSOLE_PORT": str(port), "CONSOLE_USERS_FILE": str(users),
        "CONSOLE_SECRET_KEY": uuid.uuid4().hex, "CONSOLE_REFRESH_SECONDS": "2"})
    procs.start_all()
    procs.start("console")
    asyncio.run(nobody_available(endpoints))

    async def listening() -> bool:
        if not procs.alive()["console"]:
            raise AssertionError(f"the console exited:\n{procs.log_tail('console')}")
        return b"Switchboard console ready on" in procs.log_bytes("console")
    asyncio.run(wait_for(listening, timeout=90, what="the console to listen"))
    yield f"http://127.0.0.1:{port}"
    procs.stop_all()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    assert executable, "no Chromium: `make browser` installs Debian's package"
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable,
                                                    args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def signed_in(browser: Browser, url: str, name: str) -> Page:
    page = await (await browser.new_context(viewport={"width": 1440, "height": 900})).new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{url}/sla")
    assert "/login" in page.url  # pages need a sign-in
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORDS[name])
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{url}/sla")
    return page


async def shot(page: Page, name: str) -> None:
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000, path


async def live(page: Page) -> None:
    """The page's live stream is connected (so what appears next came over it)."""
    await page.locator('#live-status[data-state="ok"]').wait_for()


async def voicemail(bootstrap: str, db: asyncpg.Connection, text: str) -> str:
    """A voicemail nobody answers: nobody is available, so its 4 s voice SLA breaches."""
    call = f"console-{uuid.uuid4().hex[:10]}"
    await publish(bootstrap, INBOUND_VOICE, {
        "call_id": call, "from_number": "+14155550123",
        "received_at": datetime.now(UTC).isoformat(), "duration_seconds": 31,
        "transcript": text}, cloudevent_headers("voicemail.received"), key=call)
    return await case_of(db, f"call:{call}")


async def escalation_of(db: asyncpg.Connection, case_id: str) -> str:
    async def found() -> str | None:
        value: str | None = await db.fetchval(
            "SELECT escalation_id FROM escalation WHERE case_id = $1 AND state = 'open'", case_id)
        return value
    escalation_id: str = await wait_for(found, timeout=90, what=f"an escalation of {case_id}")
    return escalation_id


async def test_a_supervisor_sees_a_breach_live_opens_the_packet_and_acknowledges(
    endpoints: Endpoints, console_url: str, browser: Browser, app_db: asyncpg.Connection,
) -> None:
    page = await signed_in(browser, console_url, "sup-ada")
    await live(page)
    await shot(page, "sla-before")
    # A mark on this document: a reload or navigation would lose it.
    await page.evaluate("() => { window.__sameDocument = 'yes'; }")
    case_id = await voicemail(endpoints.kafka_bootstrap_servers, app_db, HOSTILE)

    breached = page.locator(f'#sla tr[data-case="{case_id}"][data-state="breached"]')
    await breached.wait_for()
    assert await page.evaluate("() => window.__sameDocument") == "yes"
    assert "first_response" in await breached.inner_text()
    await shot(page, "sla")

    await page.click("nav >> text=Escalations")
    row = page.locator(f'#escalations tr[data-case="{case_id}"]')
    await row.wait_for()
    assert "sla.breached:first_response" in await row.inner_text()
    await shot(page, "escalations")

    await row.locator("a", has_text="Open packet").click()
    packet = page.locator("#packet")
    await packet.locator("table").wait_for()  # the packet's Markdown table of contacts
    text = await packet.inner_text()
    assert SCRIPT in text and "[click here](javascript:window.__pwned=3)" in text
    # Shown as text: no element came from the customer's markup, and nothing ran.
    assert await packet.locator("script, img, a, iframe").count() == 0
    assert await page.evaluate("() => window.__pwned") is None
    await shot(page, "escalation")

    await page.click("#acknowledge")
    await page.locator(".flash-ok").wait_for()
    logged = await payloads(app_db, case_id, "escalation.acknowledged")
    assert logged[0]["by"] == "sup-ada"
    assert logged[0]["via"] == "agent.escalation_acknowledged"
    # The page follows the log: the status turns acknowledged, the log row is listed.
    await page.locator('#status[data-state="acknowledged"]').wait_for()
    await page.locator('#status ~ ol li[data-type="escalation.acknowledged"]').wait_for()
    await page.locator("#acknowledge").wait_for(state="hidden")  # nothing left to acknowledge
    await shot(page, "escalation-acknowledged")

    await page.goto(f"{console_url}/cases/{case_id}")
    await page.locator('#chain[data-chain="ok"]').wait_for()
    acknowledged = page.locator('#timeline tr[data-type="escalation.acknowledged"]')
    assert await acknowledged.get_attribute("data-chain") == "ok"
    rows = page.locator("#timeline tbody tr")
    statuses = {await rows.nth(i).get_attribute("data-chain") for i in range(await rows.count())}
    assert statuses == {"ok"}
    assert SCRIPT in (await page.locator("#timeline").text_content() or "")  # data, escaped
    await shot(page, "case")
    await page.context.close()


async def test_a_viewer_cannot_act_on_an_escalation_and_a_supervisor_reassigns_it(
    endpoints: Endpoints, console_url: str, browser: Browser, app_db: asyncpg.Connection,
) -> None:
    case_id = await voicemail(endpoints.kafka_bootstrap_servers, app_db,
                              "Nobody called me back about my broken order.")
    escalation_id = await escalation_of(app_db, case_id)
    page = await signed_in(browser, console_url, "view-vic")
    await page.goto(f"{console_url}/escalations/{escalation_id}")
    await page.locator("#packet table").wait_for()
    assert await page.locator("#acknowledge").count() == 0
    assert await page.locator("#reassign").count() == 0
    assert "a supervisor acknowledges" in await page.locator("#read-only").inner_text()
    await shot(page, "escalation-viewer")
    # The button is missing, and the server refuses the request too, even with the session's
    # own CSRF token.
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    response = await page.request.post(
        f"{console_url}/escalations/{escalation_id}/acknowledge", form={"csrf_token": token})
    assert response.status == 403
    assert "A viewer cannot act on escalations" in await response.text()
    assert await app_db.fetchval("SELECT state FROM escalation WHERE escalation_id = $1",
                                 escalation_id) == "open"
    # A supervisor's POST without the token is refused as well.
    supervisor = await signed_in(browser, console_url, "sup-ada")
    response = await supervisor.request.post(
        f"{console_url}/escalations/{escalation_id}/acknowledge", form={"csrf_token": "forged"})
    assert response.status == 403
    assert await app_db.fetchval("SELECT state FROM escalation WHERE escalation_id = $1",
                                 escalation_id) == "open"
    await page.context.close()

    # The supervisor reassigns it instead: the router queues the case for the new skill and
    # tier and logs who transferred it.
    await supervisor.goto(f"{console_url}/escalations/{escalation_id}")
    await supervisor.select_option("select[name=to_skill]", "orders")
    await supervisor.select_option("select[name=min_tier]", "2")
    await supervisor.fill("input[name=reason]", "needs an orders specialist")
    await supervisor.click("#reassign")
    await supervisor.locator(".flash-ok").wait_for()

    async def transferred() -> dict[str, Any] | None:
        decided = [r.payload for r in await read_case(app_db, case_id)
                   if r.type == "routing.decided"]
        return next((d for d in decided if d["trigger"] == "transferred by sup-ada"), None)
    transfer = await wait_for(transferred, timeout=90, what="the transfer's routing decision")
    assert transfer["queue"] == "orders-voice"
    assert transfer["requirements"]["min_authority_tier"] == 2
    queued = [r.payload["queue"] for r in await read_case(app_db, case_id)
              if r.type == "case.queued"]
    assert queued[-1] == "orders-voice"
    await supervisor.context.close()


async def test_the_agents_and_queues_pages_follow_the_floor_live(
    endpoints: Endpoints, console_url: str, browser: Browser, app_db: asyncpg.Connection,
) -> None:
    page = await signed_in(browser, console_url, "adm-amy")
    await page.goto(f"{console_url}/queues")
    await live(page)
    # The voice cases of the tests above wait: nobody on the floor takes voice.
    waiting = page.locator('#queues tr[data-queue$="-voice"]').first
    await waiting.wait_for()
    assert int((await waiting.locator("td").nth(3).inner_text()).replace(",", "")) >= 1
    await shot(page, "queues")

    await page.goto(f"{console_url}/agents")
    await live(page)
    await page.evaluate("() => { window.__sameDocument = 'yes'; }")
    agent = f"agent-console-{uuid.uuid4().hex[:6]}"
    # An agent without voice capacity: the waiting voice cases stay waiting for the others.
    profile = {"agent_id": agent, "name": "Console <b>Test</b>", "authority_tier": 2,
               "skills": [{"skill": "billing", "proficiency": 4}],
               "capacity": {"email": 4, "chat": 2, "voice": 0}, "presence": "available",
               "changed_at": datetime.now(UTC).isoformat()}
    await publish(endpoints.kafka_bootstrap_servers, AGENTS, json.dumps(profile).encode(),
                  cloudevent_headers("agent.profile_changed"), key=agent)
    row = page.locator(f'#agents tr[data-agent="{agent}"]')
    await row.wait_for()
    assert await page.evaluate("() => window.__sameDocument") == "yes"
    text = await row.inner_text()
    assert "available" in text and "0/4" in text and "Console <b>Test</b>" in text
    await shot(page, "agents")

    await page.goto(f"{console_url}/admin")
    assert "adm-amy" in await page.locator("table").inner_text()
    await shot(page, "admin")
    await page.context.close()
